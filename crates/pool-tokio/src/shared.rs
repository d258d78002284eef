//! The shell's shared state: the sans-IO core behind one lock, the
//! transport objects of the connections it holds idle, and the hand-off
//! slots of waiting `get`s. No async runtime here, so loom can check it.
//!
//! Every method takes the state lock, gives the core one input, and drains
//! its commands while still holding the lock: a grant moves the transport
//! into the waiter's slot, a reject marks it, a disconnect hands the
//! transport back to be closed. What needs IO (connects, closes) is returned
//! as [`Work`] for the async side to do after the lock is released.

use std::collections::BTreeMap;
use std::task::Waker;

use pool_core::{
    Command, Config, ConnId, ConnState, Input, Pool as Core, RejectReason, RequestId, Setting,
    Stats, Time,
};

use crate::sync::{Arc, Mutex, lock};

/// IO for the async side, in the order the core decided it.
#[derive(Debug)]
pub enum Work<C> {
    /// Connect `conn`, with `setting`.
    Open {
        conn: ConnId,
        setting: Option<Setting>,
    },
    /// Cancel the connect of `conn` (if it finished, its transport is closed
    /// when it reports in: the core no longer wants it).
    Abort { conn: ConnId },
    /// Close this transport (dropping it closes it).
    Close { conn: ConnId, transport: C },
    /// The core wants a timer earlier than the one the timer task sleeps
    /// to: wake it. (Waking it on every input cost a task switch per get
    /// and per return.)
    Rearm,
}

/// Where a waiting `get` stands; filled under the state lock.
#[derive(Debug)]
pub enum SlotState<C> {
    Waiting(Option<Waker>),
    /// Granted: the transport, whether to validate it first, and the
    /// setting to apply then, if any.
    Granted {
        conn: ConnId,
        transport: C,
        validate: bool,
        apply: Option<Option<Setting>>,
    },
    Rejected(RejectReason),
    /// The `get` took its grant or gave up.
    Done,
}

/// One waiting `get`'s hand-off slot.
#[derive(Debug)]
pub struct Slot<C> {
    state: Mutex<SlotState<C>>,
}

impl<C> Slot<C> {
    fn new() -> Slot<C> {
        Slot {
            state: Mutex::new(SlotState::Waiting(None)),
        }
    }

    /// Take the outcome if there is one; else remember `waker` for it.
    pub fn poll(&self, waker: Option<&Waker>) -> Option<SlotState<C>> {
        let mut state = lock(&self.state);
        match &mut *state {
            SlotState::Waiting(w) => {
                if let Some(waker) = waker {
                    *w = Some(waker.clone());
                }
                None
            }
            SlotState::Done => None,
            _ => Some(std::mem::replace(&mut *state, SlotState::Done)),
        }
    }

    /// Wait again (a granted connection failed its validation, and the
    /// core put the request back first in line).
    fn rearm(&self) {
        *lock(&self.state) = SlotState::Waiting(None);
    }

    fn fill(&self, outcome: SlotState<C>) {
        let mut state = lock(&self.state);
        if let SlotState::Waiting(waker) = std::mem::replace(&mut *state, outcome)
            && let Some(waker) = waker
        {
            waker.wake();
        }
    }
}

#[derive(Debug)]
struct State<C> {
    core: Core,
    next_request: u64,
    /// Transports of connections the core holds idle (or was just handed
    /// back: a release puts the transport here before the core decides).
    idle: BTreeMap<ConnId, C>,
    waiting: BTreeMap<RequestId, Arc<Slot<C>>>,
    /// Set when the core reports `CloseComplete`: how many were leaked.
    closed: Option<usize>,
    close_wakers: Vec<Waker>,
    /// The deadline the timer task last read (`next_timeout`) and sleeps
    /// to; `None`: it sleeps until woken.
    armed: Option<Time>,
}

/// The shared state of one pool.
#[derive(Debug)]
pub struct Shared<C> {
    state: Mutex<State<C>>,
}

impl<C> Shared<C> {
    /// A pool made at `now`, and the work its creation asks for (min_idle).
    pub fn new(now: Time, config: Config) -> (Shared<C>, Vec<Work<C>>) {
        let mut state = State {
            core: Core::new(now, config),
            next_request: 0,
            idle: BTreeMap::new(),
            waiting: BTreeMap::new(),
            closed: None,
            close_wakers: Vec::new(),
            armed: None,
        };
        let mut work = Vec::new();
        state.drain(&mut work);
        let shared = Shared {
            state: Mutex::new(state),
        };
        (shared, work)
    }

    /// Put a seed report's bug back into the core (tests of harnesses).
    #[cfg(feature = "mutations")]
    pub fn set_mutation(&self, mutation: Option<pool_core::Mutation>) {
        lock(&self.state).core.set_mutation(mutation);
    }

    /// Register a `get`: the slot it waits on and its request id.
    pub fn acquire(
        &self,
        now: Time,
        setting: Option<Setting>,
        deadline: Option<Time>,
    ) -> (Arc<Slot<C>>, RequestId, Vec<Work<C>>) {
        let mut state = lock(&self.state);
        let request = RequestId(state.next_request);
        state.next_request += 1;
        let slot = Arc::new(Slot::new());
        state.waiting.insert(request, slot.clone());
        let mut work = Vec::new();
        state.input(
            now,
            Input::Acquire {
                request,
                setting,
                deadline,
            },
            &mut work,
        );
        (slot, request, work)
    }

    /// A `get` is dropped before it took its outcome. If the grant already
    /// landed in its slot, the connection goes back to the pool: nobody else
    /// will ever return it (the cancel-safety step).
    pub fn abandon(&self, now: Time, request: RequestId, slot: &Slot<C>) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        match slot.poll(None) {
            None => {
                // Still waiting: the core forgets the request.
                if state.waiting.remove(&request).is_some() {
                    state.input(now, Input::Cancel { request }, &mut work);
                }
            }
            #[cfg(not(pool_tokio_skip_cancel_safety))]
            Some(SlotState::Granted {
                conn, transport, ..
            }) => {
                state.idle.insert(conn, transport);
                state.input(now, Input::Recycle { conn }, &mut work);
            }
            Some(_) => {}
        }
        work
    }

    /// A borrowed connection comes back healthy.
    pub fn release(&self, now: Time, conn: ConnId, transport: C) -> Vec<Work<C>> {
        self.give_back(now, conn, transport, Input::Recycle { conn })
    }

    /// A borrowed connection comes back broken.
    pub fn taint(&self, now: Time, conn: ConnId, transport: C) -> Vec<Work<C>> {
        self.give_back(now, conn, transport, Input::Taint { conn })
    }

    fn give_back(&self, now: Time, conn: ConnId, transport: C, input: Input) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        state.idle.insert(conn, transport);
        state.input(now, input, &mut work);
        state.drop_unheld(conn, &mut work);
        work
    }

    /// A connection granted with `validate` is alive: the grant stands.
    pub fn valid(&self, now: Time, conn: ConnId) -> Vec<Work<C>> {
        self.input(now, Input::Validated { conn, ok: true })
    }

    /// A connection granted with `validate` is dead: its transport is
    /// closed, and the `get` waits again on `slot`, first in line (the core
    /// may hand it the next connection at once).
    pub fn invalid(
        &self,
        now: Time,
        conn: ConnId,
        transport: C,
        request: RequestId,
        slot: &Arc<Slot<C>>,
    ) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = vec![Work::Close { conn, transport }];
        slot.rearm();
        state.waiting.insert(request, slot.clone());
        state.input(now, Input::Validated { conn, ok: false }, &mut work);
        work
    }

    /// A borrowed connection leaves the pool for good; its slot is free.
    pub fn detach(&self, now: Time, conn: ConnId) -> Vec<Work<C>> {
        self.input(now, Input::Detach { conn })
    }

    /// A connect finished.
    pub fn connected(&self, now: Time, conn: ConnId, transport: C) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        state.idle.insert(conn, transport);
        state.input(now, Input::Connected { conn }, &mut work);
        // A stale connect (aborted, or closed before it reported): the core
        // does not take it, so its transport is closed here.
        state.drop_unheld(conn, &mut work);
        work
    }

    pub fn connect_failed(&self, now: Time, conn: ConnId) -> Vec<Work<C>> {
        self.input(now, Input::ConnectFailed { conn })
    }

    /// The transport of `conn` closed (server FIN, kill, error).
    pub fn closed(&self, now: Time, conn: ConnId) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        state.input(now, Input::Closed { conn }, &mut work);
        state.drop_unheld(conn, &mut work);
        work
    }

    pub fn set_capacity(&self, now: Time, capacity: usize) -> Vec<Work<C>> {
        self.input(now, Input::SetCapacity { capacity })
    }

    pub fn close(&self, now: Time, deadline: Option<Time>) -> Vec<Work<C>> {
        self.input(now, Input::Close { deadline })
    }

    /// Fire the core's timers due at `now`.
    pub fn timeout(&self, now: Time) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        state.core.handle_timeout(now);
        state.drain(&mut work);
        work
    }

    /// The core's next deadline, for the timer task, which sleeps to it:
    /// an input that wants an earlier one returns [`Work::Rearm`].
    pub fn next_timeout(&self) -> Option<Time> {
        let mut state = lock(&self.state);
        state.armed = state.core.poll_timeout();
        state.armed
    }

    pub fn stats(&self) -> Stats {
        lock(&self.state).core.stats()
    }

    /// Whether close completed (and how many were leaked); else remember
    /// `waker` for it.
    pub fn poll_closed(&self, waker: &Waker) -> Option<usize> {
        let mut state = lock(&self.state);
        if state.closed.is_none() {
            state.close_wakers.push(waker.clone());
        }
        state.closed
    }

    /// The core's own consistency check, plus the shell's: a transport is
    /// held for exactly the connections the core holds idle.
    pub fn check(&self) -> Result<(), String> {
        let state = lock(&self.state);
        state.core.check_consistency()?;
        let idle: Vec<ConnId> = state
            .core
            .conns()
            .filter(|&(_, s)| s == ConnState::Idle)
            .map(|(id, _)| id)
            .collect();
        let held: Vec<ConnId> = state.idle.keys().copied().collect();
        if idle != held {
            return Err(format!("core idle {idle:?}, shell holds {held:?}"));
        }
        Ok(())
    }

    fn input(&self, now: Time, input: Input) -> Vec<Work<C>> {
        let mut state = lock(&self.state);
        let mut work = Vec::new();
        state.input(now, input, &mut work);
        work
    }
}

impl<C> State<C> {
    /// One input, then its commands. A caller's mistake (the core refuses)
    /// changes nothing.
    fn input(&mut self, now: Time, input: Input, work: &mut Vec<Work<C>>) {
        let _ = self.core.handle(now, input);
        self.drain(work);
    }

    /// Carry out the core's commands; timers that are already due too.
    fn drain(&mut self, work: &mut Vec<Work<C>>) {
        while let Some(command) = self.core.poll_command() {
            match command {
                Command::Open { conn, setting, .. } => work.push(Work::Open { conn, setting }),
                Command::Abort { conn, .. } => work.push(Work::Abort { conn }),
                Command::Disconnect { conn, .. } => {
                    if let Some(transport) = self.idle.remove(&conn) {
                        work.push(Work::Close { conn, transport });
                    }
                }
                Command::Grant {
                    request,
                    conn,
                    setting,
                    apply_setting,
                    validate,
                } => {
                    let transport = self
                        .idle
                        .remove(&conn)
                        .expect("the core grants only connections it holds idle");
                    let apply = apply_setting.then_some(setting);
                    match self.waiting.remove(&request) {
                        Some(slot) => slot.fill(SlotState::Granted {
                            conn,
                            transport,
                            validate,
                            apply,
                        }),
                        // Unreachable: a request leaves `waiting` only under
                        // this lock, with a Cancel the core has seen.
                        None => {
                            self.idle.insert(conn, transport);
                            let _ = self.core.handle_recycle(self.core_now(), conn);
                        }
                    }
                }
                Command::Reject { request, reason } => {
                    if let Some(slot) = self.waiting.remove(&request) {
                        slot.fill(SlotState::Rejected(reason));
                    }
                }
                Command::CloseComplete { leaked } => {
                    self.closed = Some(leaked);
                    for waker in self.close_wakers.drain(..) {
                        waker.wake();
                    }
                }
            }
        }
        if let Some(next) = self.core.poll_timeout()
            && self.armed.is_none_or(|armed| next < armed)
        {
            // Marked armed now, so a burst of inputs wakes it once.
            self.armed = Some(next);
            work.push(Work::Rearm);
        }
    }

    /// If the core does not hold `conn` idle, the transport parked for it
    /// is closed.
    fn drop_unheld(&mut self, conn: ConnId, work: &mut Vec<Work<C>>) {
        if self.core.conn_state(conn) != Some(ConnState::Idle)
            && let Some(transport) = self.idle.remove(&conn)
        {
            work.push(Work::Close { conn, transport });
        }
    }

    fn core_now(&self) -> Time {
        self.core.now()
    }
}
