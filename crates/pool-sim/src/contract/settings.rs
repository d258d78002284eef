//! Settings: a connection carries exactly the session setting it should.
//!
//! Rules:
//! - **setting-lost**: a grant hands the request a connection carrying
//!   exactly the setting it asked for (applied on grant, or already there:
//!   no state leaks from the last client, a reset is not skipped); and a
//!   connection retired at its lifetime is replaced with its setting,
//!   whichever path refills it: a reopen (`Open` with `replaces`) keeps the
//!   setting of the one it names, and a refill of the floor in the same
//!   drain (an `Open` beyond what the waiters need) carries the setting of
//!   one retired there.

use pool_core::{ConnId, RequestId, Setting};

use crate::invariant::Invariant;
use crate::pool::SimPool;
use crate::world::{Census, Qualified, World};

impl<P: SimPool> World<P> {
    pub(super) fn check_reopen_setting(
        &mut self,
        px: u32,
        conn: ConnId,
        setting: Option<Setting>,
        replaces: Option<ConnId>,
        census: &Census,
    ) {
        let slot = &mut self.pools[px as usize];
        let retired = &mut slot.contract.drain.retired;
        let Some(old) = replaces else {
            // A refill of the floor right after a retirement stands in for
            // the retired connection: it keeps one of their settings.
            if retired.is_empty() || census.opening < slot.waiting.len() {
                return;
            }
            self.counters.count(Invariant::SettingLost);
            match retired.iter().position(|&(_, s)| s == setting) {
                Some(i) => {
                    retired.remove(i);
                }
                None => {
                    let lost: Vec<String> = retired
                        .iter()
                        .map(|(id, s)| format!("{id} ({s:?})"))
                        .collect();
                    let detail = format!(
                        "P{px} refills its floor with {conn} ({setting:?}) after retiring {}: the setting is lost",
                        lost.join(", ")
                    );
                    self.violate(Invariant::SettingLost, detail);
                }
            }
            return;
        };
        retired.retain(|&(id, _)| id != old);
        self.counters.count(Invariant::SettingLost);
        let slot = &self.pools[px as usize];
        let before = slot
            .retired
            .iter()
            .find(|(id, _)| *id == old)
            .map(|&(_, s)| s)
            .or_else(|| slot.conns.get(&old).map(|c| c.setting));
        if let Some(before) = before
            && before != setting
        {
            let detail = format!(
                "P{px} reopens {old} as {conn} with setting {setting:?}; {old} had {before:?}"
            );
            self.violate(Invariant::SettingLost, detail);
        }
    }

    pub(super) fn check_grant_setting(
        &mut self,
        px: u32,
        request: RequestId,
        conn: ConnId,
        setting: Option<Setting>,
        apply_setting: bool,
    ) {
        self.counters.count(Invariant::SettingLost);
        let slot = &self.pools[px as usize];
        let (Some(waiting), Some(truth)) = (slot.waiting.get(&request), slot.conns.get(&conn))
        else {
            return;
        };
        let carried = if apply_setting {
            setting
        } else {
            truth.setting
        };
        if waiting.setting != carried {
            let detail = format!(
                "{request} wanted setting {:?} but {} carries {carried:?}",
                waiting.setting,
                Qualified(px, conn)
            );
            self.violate(Invariant::SettingLost, detail);
        }
    }
}
