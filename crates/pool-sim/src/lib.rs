//! pool-sim: a seeded deterministic simulator for sans-IO connection pools.
//!
//! A run is a sequence of world [`Step`]s (the one transition vocabulary),
//! applied to a [`World`] around a pool that implements [`SimPool`]. The
//! world keeps its own ground truth and checks every invariant after every
//! event. Steps come from a driver: the seeded swarm generator, a scenario
//! file, or (in the liveness phase) the healed autopilot.
//!
//! No wall clock, no threads, no hash-ordered iteration: the same steps give
//! the same trace, byte for byte.

mod contract;
pub mod driver;
pub mod explore;
pub mod fuzz;
pub mod invariant;
pub mod perfetto;
pub mod pool;
pub mod run;
pub mod scenario;
pub mod shrink;
pub mod strategy;
pub mod swarm;
pub mod trace;
pub mod transition;
pub mod world;

pub use invariant::{Invariant, Kind, Violation};
pub use pool::SimPool;
pub use pool_core::Mutation;
pub use run::{Options, Outcome, Report, run_scenario, run_seed};
pub use scenario::{Expect, Scenario, ScenarioError};
pub use swarm::Swarm;
pub use trace::{Event, Keep, Line, Target, Trace};
pub use transition::{Step, Transition};
pub use world::{MakePool, World, WorldConfig};
