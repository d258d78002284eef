//! pool-netsim: a fake PostgreSQL backend for turmoil network simulations, with the seed reports' faults at the protocol level.
//!
//! [`pgwire`] is the sans-IO wire codec (frontend decoding, backend
//! encoding); [`server`] is the host that runs on a turmoil node and speaks
//! enough of protocol v3 for `tokio_postgres::Config::connect_raw` over a
//! `turmoil::net::TcpStream`: startup, simple queries, Terminate.
//!
//! Faults, chosen per connection by a caller-supplied plan (backed by the
//! caller's seeded RNG; the server draws no randomness and reads no wall
//! clock): a handshake that never completes, ReadyForQuery + FATAL 57P01 +
//! FIN in one write (Bun), the role connection limit (53300,
//! postgres-mcp). Server-wide: idle-session kill (57P05, Hatchet),
//! terminate-all (57P01) and PostgreSQL's immediate shutdown (a WARNING
//! 57P01 notice). Counters for checkers are in [`ServerStats`].
//!
//! [`loopback`] serves the same server on a real TCP port of this machine.
//!
//! [`manager`] is the pool side: a pool-tokio manager for tokio-postgres over
//! turmoil TCP. [`netsim`] runs processes with pools against the server in
//! one seeded simulation, with faults, then heals them and checks the pools
//! converge, under pool-sim's invariant names.

pub mod adapters;
pub mod known;
pub mod loopback;
pub mod manager;
pub mod netsim;
pub mod pgwire;
pub mod plan;
pub mod server;
pub mod shrink;
pub mod socket;
pub mod under_test;

pub use server::{
    CloseReason, ConnSnapshot, ConnectFault, ConnectInfo, FaultKind, FaultPlan, Phase, Server,
    ServerConfig, ServerStats,
};
