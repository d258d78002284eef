//! Canonical state hashing, for explorers that deduplicate visited states
//! (pool-sim's `explore`).
//!
//! Ids and times are not hashed as they are: ids are generations (`c7` is
//! the eighth connection ever opened) and times are absolute, so two states
//! that differ only by history would never meet. The explorer's sink renames
//! each id to its rank among the ids live in the world, and each time to its
//! distance from now; a state machine only says which values are ids and
//! which are times.

use crate::types::{ConnId, RequestId, Time};

/// Where a state machine writes its state for a canonical hash.
pub trait StateSink {
    /// A plain value (a count, a flag, an enum's tag).
    fn word(&mut self, word: u64);
    /// A point in time (hashed relative to now by the explorer).
    fn time(&mut self, time: Time);
    /// A connection id (renamed by rank).
    fn conn(&mut self, conn: ConnId);
    /// A request id (renamed by rank).
    fn request(&mut self, request: RequestId);

    /// An optional time, told apart from every `Some`.
    fn opt_time(&mut self, time: Option<Time>) {
        match time {
            None => self.word(0),
            Some(t) => {
                self.word(1);
                self.time(t);
            }
        }
    }
}
