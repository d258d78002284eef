//! The pools under test, one short adapter each: pool-tokio, bb8 and deadpool.

pub mod bb8;
pub mod deadpool;
pub mod pool_tokio;
