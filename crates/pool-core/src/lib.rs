//! pool-core: a sans-IO connection pool.
//!
//! **Architecture invariant.** This crate is fully deterministic: it performs
//! no IO, reads no clock, draws no randomness and spawns nothing. Time is a
//! value passed in (`now`), never read. Everything a pool does is decided by
//! the sequence of inputs it is given, so a simulator can drive it through
//! any interleaving, from a seed, and get the same answer every time.
//!
//! The shape follows quinn-proto and str0m: inputs go in through
//! `Pool::handle_*` (or `Pool::handle` with an [`Input`]), commands come out
//! of `Pool::poll_command` until it returns `None`, and `Pool::poll_timeout`
//! says when the pool next wants `Pool::handle_timeout`.
//!
//! Errors come from bad input (a caller returning a connection it does not
//! hold): they are values, and the pool is unchanged. Events the transport
//! may legitimately deliver late or twice (a `Connected` after `Closed`) are
//! not errors: they are ignored and counted in [`Stats`].
//!
//! Beside the pool: the dynamic-pool [`Registry`] (one pool per key, as
//! pg_doorman has) and the orphan [`Watchdog`] of a process that owns a pool
//! (as postgres-mcp needed). With the `mutations` feature, each can run with
//! one of the seed reports' bugs put back ([`Mutation`]).

mod canon;
mod config;
mod error;
mod mutation;
mod pool;
mod protocol;
mod registry;
mod stats;
mod types;
mod watchdog;

pub use canon::StateSink;
pub use config::Config;
pub use error::{AcquireError, CancelError, CloseError, InputError, ReturnError};
pub use mutation::{Mutation, UnknownMutation};
pub use pool::{ConnState, Pool};
pub use protocol::{AbortReason, Command, DisconnectReason, Input, RejectReason};
pub use registry::{Key, Login, PoolId, Registry, RegistryError};
pub use stats::{Lifecycle, Stats};
pub use types::{ConnId, RequestId, Setting, Time};
pub use watchdog::{Watchdog, WatchdogAction};
