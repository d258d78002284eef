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
