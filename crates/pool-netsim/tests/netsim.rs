//! Netsim runs: pool-tokio with tokio-postgres against the fake server in
//! turmoil, faults from the seed, the pools must converge.

use pool_netsim::netsim::{NetOutcome, run};
use pool_netsim::under_test::PoolKind;

#[test]
fn a_bounded_netsim_sweep_passes() {
    for seed in 0..12 {
        let report = run(seed, PoolKind::PoolTokio);
        assert_eq!(
            report.outcome,
            NetOutcome::Pass,
            "seed {seed}: {report:#?}\nreproduce: cargo xtask netsim --seed {seed}"
        );
        assert!(report.gets_ok > 0, "seed {seed}: nothing was served");
    }
}

#[test]
fn a_netsim_seed_replays_identically() {
    // 87, 106, 128, 227 and 249 crash the db host: before the server kept
    // its connections in accept order, the second run of each in one
    // process came out differently (tokio drops a crashed runtime's tasks
    // in an order set by process-wide task ids).
    for seed in [3, 7, 87, 106, 128, 227, 249] {
        let (a, b) = (
            run(seed, PoolKind::PoolTokio),
            run(seed, PoolKind::PoolTokio),
        );
        assert_eq!(a, b, "seed {seed}");
    }
}
