//! Netsim runs: pool-tokio with tokio-postgres against the fake server in
//! turmoil, faults from the seed, the pools must converge.

use pool_netsim::netsim::{NetOutcome, run};

#[test]
fn a_bounded_netsim_sweep_passes() {
    for seed in 0..12 {
        let report = run(seed);
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
        let (a, b) = (run(seed), run(seed));
        assert_eq!(a.outcome, b.outcome, "seed {seed}");
        assert_eq!(
            (
                a.gets_ok,
                a.gets_failed,
                a.queries_ok,
                a.sim_ms,
                a.steps,
                a.accepted
            ),
            (
                b.gets_ok,
                b.gets_failed,
                b.queries_ok,
                b.sim_ms,
                b.steps,
                b.accepted
            ),
            "seed {seed}"
        );
        assert_eq!(a.faults, b.faults, "seed {seed}");
    }
}
