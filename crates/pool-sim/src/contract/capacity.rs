//! Capacity: the pool never exceeds it by its own act, and a shrink
//! converges once its borrowers are back.
//!
//! Rules:
//! - **over-capacity**: no `Open` makes held (opening + idle + borrowed)
//!   exceed the capacity (the config's `max_size`, then the last
//!   `SetCapacity`; 0 means zero). Held can exceed it only after a shrink,
//!   by connections that were already held.
//! - **unjustified-disconnect**: `OverCapacity` (a disconnect or an abort)
//!   only while held exceeds the capacity.
//! - **capacity-stalled**: after a shrink, once every connection borrowed
//!   at the shrink has come back, held is within capacity within the
//!   liveness bound (a returned connection is closed, not handed from
//!   waiter to waiter).

use pool_core::{ConnId, Time};

use super::Owed;
use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, Qualified, ShrinkWatch, View, World};

impl<P: SimPool> World<P> {
    pub(super) fn check_open_capacity(&mut self, px: u32, conn: ConnId, census: &Census) {
        self.counters.count(Invariant::OverCapacity);
        let capacity = self.pools[px as usize].capacity;
        if census.held() + 1 > capacity {
            let detail = format!(
                "P{px} opens {conn}, making {} held with capacity {capacity}",
                census.held() + 1
            );
            self.violate(Invariant::OverCapacity, detail);
        }
    }

    /// `OverCapacity` only while over capacity.
    pub(super) fn check_over_capacity_reason(&mut self, px: u32, conn: ConnId, census: &Census) {
        let capacity = self.pools[px as usize].capacity;
        if census.held() <= capacity {
            let detail = format!(
                "P{px} closes {} as over capacity, with {} held and capacity {capacity}",
                Qualified(px, conn),
                census.held()
            );
            self.violate(Invariant::UnjustifiedDisconnect, detail);
        }
    }

    /// A shrink in progress: once its borrowers are back, the bound runs.
    pub(super) fn owed_shrink(&mut self, px: usize, census: &Census) -> Option<(Time, Owed)> {
        let now = self.now;
        let bound = self.config.liveness_bound_ms;
        let slot = &mut self.pools[px];
        if slot.closing() || census.held() <= slot.capacity {
            slot.shrink = None;
            return None;
        }
        self.counters.count(Invariant::CapacityStalled);
        let conns = &slot.conns;
        let watch = slot.shrink.get_or_insert_with(|| ShrinkWatch {
            outstanding: conns
                .iter()
                .filter(|(_, c)| matches!(c.view, View::Borrowed { .. }))
                .map(|(&id, _)| id)
                .collect(),
            all_back_at: None,
        });
        if !watch.outstanding.is_empty() {
            return None;
        }
        let since = *watch.all_back_at.get_or_insert(now);
        Some((since.plus_ms(bound).plus_ms(1), Owed::Shrink { since }))
    }
}
