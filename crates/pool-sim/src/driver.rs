//! Drivers choose the world's next step: the seeded swarm generator, a
//! scenario's script, and the healed autopilot of the liveness phase.

use std::collections::BTreeMap;

use pool_core::{ConnId, RequestId, Time};

use crate::contract::PhaseEnd;
use crate::pool::SimPool;
use crate::swarm::{Rng, Swarm};
use crate::transition::{Step, Transition};
use crate::world::{ClientState, Notice, Owner, Service, Session, SignalKind, World};

/// Chooses steps. A driver may read the world (and take its notices), but
/// changes it only through the steps it returns.
pub trait Driver<P: SimPool> {
    /// The next step, or `None` when this driver is done.
    fn next(&mut self, world: &mut World<P>) -> Option<Step>;
    /// The step just handed out was applied and resolved to `target`.
    fn applied(&mut self, world: &mut World<P>, target: &crate::trace::Target) {
        let _ = (world, target);
    }
    /// Why the driver stopped the run short (a script's failed assertion,
    /// a step that resolved to nothing), if it did.
    fn stop(&self) -> Option<&crate::scenario::ScriptStop> {
        None
    }
}

/// How many steps the generator's Close waits, past its step, for a
/// request to be waiting.
const CLOSE_WAIT_STEPS: u64 = 100;

/// The seeded generator of the safety phase. It keeps an agenda of planned
/// events (a connect's answer after its latency, a client's release after
/// its hold, periodic faults) and turns the earliest into a transition,
/// naming entities by their index among the current candidates.
#[derive(Debug)]
pub struct Generator {
    swarm: Swarm,
    rng: Rng,
    events: u64,
    emitted: u64,
    /// The workload's Close was issued.
    closed: bool,
    /// Clients that hold on through a Close, until when.
    lingering: BTreeMap<u32, Time>,
    agenda: BTreeMap<(Time, u64, u64), Plan>,
    planned: u64,
    /// The world's notices, taken each step (kept to reuse its buffer).
    notices: Vec<Notice>,
}

#[derive(Clone, Copy, Debug)]
enum Plan {
    /// A client's next move, decided by its state when it comes.
    Client(u32),
    CancelIfWaiting(u32, RequestId),
    Answer(u32, ConnId, Answer),
    Deliver(u64),
    /// Report a queued signal a second time.
    Echo(u64),
    Kill(u32, ConnId),
    RandomKill,
    KillAll,
    IdleReaper,
    Resize,
    Orphan,
    Spawn(u32),
    Gc,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Fail,
    ReadyThenFin,
}

impl Generator {
    /// A generator for `events` steps with options `swarm`, drawing from `rng`.
    pub fn new(swarm: Swarm, rng: Rng, events: u64) -> Generator {
        let mut generator = Generator {
            swarm,
            rng,
            events,
            emitted: 0,
            closed: false,
            lingering: BTreeMap::new(),
            agenda: BTreeMap::new(),
            planned: 0,
            notices: Vec::new(),
        };
        for client in 0..generator.swarm.world.clients {
            let at = generator.rng.below(generator.swarm.workload.think_ms + 1);
            generator.plan(Time::from_millis(at), Plan::Client(client));
        }
        let (f, w) = (&generator.swarm.faults, &generator.swarm.workload);
        let periodic = [
            (f.kill_every_ms, Plan::RandomKill),
            (f.kill_all_every_ms, Plan::KillAll),
            (f.server_idle_timeout_ms / 4, Plan::IdleReaper),
            (w.resize_every_ms, Plan::Resize),
            (w.orphan_every_ms, Plan::Orphan),
            (w.gc_every_ms, Plan::Gc),
        ];
        for (every, p) in periodic {
            if every > 0 {
                let at = generator.rng.range(1, every * 2);
                generator.plan(Time::from_millis(at), p);
            }
        }
        generator
    }

    fn plan(&mut self, at: Time, p: Plan) {
        self.planned += 1;
        // Without reordering, plans for one millisecond keep their order.
        let tiebreak = if self.swarm.faults.reorder {
            self.rng.next_u64()
        } else {
            0
        };
        self.agenda.insert((at, tiebreak, self.planned), p);
    }

    /// Plan `p` again around `every` milliseconds after `now`.
    fn again(&mut self, now: Time, every: u64, p: Plan) {
        let at = now.plus_ms(self.rng.range(1, every.max(1) * 2));
        self.plan(at, p);
    }

    fn after(&mut self, now: Time, max_ms: u64) -> Time {
        now.plus_ms(self.rng.below(max_ms + 1))
    }

    fn on_notice<P: SimPool>(&mut self, world: &World<P>, notice: Notice) {
        let now = world.now();
        let w = &self.swarm.workload;
        let f = &self.swarm.faults;
        match notice {
            Notice::Opened { pool, conn } => {
                let (hang, error, fin, latency) = (
                    f.hang_pct,
                    f.connect_error_pct,
                    f.ready_then_fin_pct,
                    f.connect_latency_ms,
                );
                let roll = self.rng.below(100) as u8;
                let answer = if roll < hang {
                    return; // never answered; the pool must abort it
                } else if roll < hang.saturating_add(error) {
                    Answer::Fail
                } else if roll < hang.saturating_add(error).saturating_add(fin) {
                    Answer::ReadyThenFin
                } else {
                    Answer::Ok
                };
                let at = self.after(now, latency);
                self.plan(at, Plan::Answer(pool, conn, answer));
            }
            Notice::Queued(seq) => {
                let delay = if self.rng.chance(f.defer_pct) {
                    self.rng.range(1, f.defer_ms)
                } else {
                    0
                };
                let echo_pct = f.echo_pct;
                self.plan(now.plus_ms(delay), Plan::Deliver(seq));
                if self.rng.chance(echo_pct) {
                    self.plan(now, Plan::Echo(seq));
                }
            }
            Notice::Waiting { client, request } => {
                if self.rng.chance(w.cancel_pct) {
                    let at = self.after(now, w.hold_ms);
                    self.plan(at, Plan::CancelIfWaiting(client, request));
                }
            }
            Notice::Granted { client } => {
                let hold = if self.is_listener(client) {
                    0
                } else {
                    w.hold_ms
                };
                let at = self.after(now, hold);
                self.plan(at, Plan::Client(client));
            }
            Notice::ClientIdle { client } => {
                let at = self.after(now, w.think_ms);
                self.plan(at, Plan::Client(client));
            }
            Notice::Orphaned { slot } => {
                if w.respawn_ms > 0 {
                    let at = self.after(now, w.respawn_ms);
                    self.plan(at, Plan::Spawn(slot));
                }
            }
            Notice::ListenerLost { .. } => {}
        }
    }

    fn is_listener(&self, client: u32) -> bool {
        client < self.swarm.workload.listeners
    }

    /// Turn a plan into a transition at `now` (the plan's time, or the
    /// world's if later), if it still applies. Periodic plans plan their
    /// next turn from `now`, so virtual time always moves on.
    fn transition<P: SimPool>(
        &mut self,
        world: &World<P>,
        now: Time,
        plan: Plan,
    ) -> Option<Transition> {
        let (f, w) = (&self.swarm.faults, &self.swarm.workload);
        match plan {
            Plan::Client(client) => self.client_move(world, client),
            Plan::CancelIfWaiting(client, request) => {
                let state = world.clients()[client as usize].state;
                (state == ClientState::Waiting { request }).then_some(Transition::Cancel { client })
            }
            Plan::Answer(pool, conn, answer) => {
                let attempt = world.attempts().position(|a| a == (pool, conn))? as u32;
                Some(match answer {
                    Answer::Ok => Transition::ConnectOk { attempt },
                    Answer::Fail => Transition::ConnectFail { attempt },
                    Answer::ReadyThenFin => Transition::ReadyThenFin { attempt },
                })
            }
            Plan::Deliver(seq) => {
                let signal = world.inbox().iter().position(|q| q.seq == seq)? as u32;
                Some(Transition::Deliver { signal })
            }
            Plan::Echo(seq) => {
                // Index among the signals that can be repeated.
                let signal = world
                    .inbox()
                    .iter()
                    .filter(|q| !matches!(q.signal.kind, SignalKind::Validated { .. }))
                    .position(|q| q.seq == seq)? as u32;
                Some(Transition::Echo { signal })
            }
            Plan::Kill(pool, conn) => {
                let session = world.open_sessions().position(|s| s == (pool, conn))? as u32;
                Some(Transition::Kill { session })
            }
            Plan::RandomKill => {
                self.again(now, f.kill_every_ms, Plan::RandomKill);
                let open = world.open_session_count() as u64;
                (open > 0).then(|| Transition::Kill {
                    session: self.rng.below(open) as u32,
                })
            }
            Plan::KillAll => {
                self.again(now, f.kill_all_every_ms, Plan::KillAll);
                Some(Transition::KillAll)
            }
            Plan::IdleReaper => {
                let timeout = f.server_idle_timeout_ms;
                for (px, slot) in world.pools().iter().enumerate() {
                    for (&conn, c) in &slot.conns {
                        if c.session == Session::Open && c.last_active.plus_ms(timeout) <= now {
                            self.plan(now, Plan::Kill(px as u32, conn));
                        }
                    }
                }
                self.plan(now.plus_ms((timeout / 4).max(1)), Plan::IdleReaper);
                None
            }
            Plan::Resize => {
                self.again(now, w.resize_every_ms, Plan::Resize);
                let max = self.swarm.pool.max_size as u64;
                let capacity = self.rng.range(max.saturating_sub(2), max + 2) as u32;
                let pool = self.rng.below(4) as u32;
                Some(Transition::SetCapacity { capacity, pool })
            }
            Plan::Orphan => {
                self.again(now, w.orphan_every_ms, Plan::Orphan);
                let process = self.rng.below(u64::from(world.config().processes)) as u32;
                Some(Transition::Orphan { process })
            }
            Plan::Spawn(process) => Some(Transition::Spawn { process }),
            Plan::Gc => {
                self.again(now, w.gc_every_ms, Plan::Gc);
                Some(Transition::Gc)
            }
        }
    }

    fn client_move<P: SimPool>(&mut self, world: &World<P>, client: u32) -> Option<Transition> {
        let w = &self.swarm.workload;
        let listener = self.is_listener(client);
        match world.clients()[client as usize].state {
            // A client of an orphaned process is gone: it starts nothing.
            ClientState::Idle if world.client_orphaned(client) => None,
            ClientState::Idle if world.config().keys > 0 => {
                let key = self.rng.below(u64::from(world.config().keys)) as u32;
                let timeout = u64::from(w.timeout_ms);
                let timeout_ms = (timeout > 0).then(|| self.rng.range(1, timeout) as u32);
                Some(Transition::Login {
                    client,
                    key,
                    timeout_ms,
                })
            }
            ClientState::Idle if listener => Some(Transition::Acquire {
                client,
                setting: None,
                timeout_ms: None,
            }),
            ClientState::Idle => {
                let settings = u64::from(w.settings);
                let timeout = u64::from(w.timeout_ms);
                let setting = (settings > 0 && self.rng.chance(50))
                    .then(|| self.rng.range(1, settings) as u32);
                // Untimed: the pool's own acquire timeout applies (none when
                // it is 0: a waiter without a deadline).
                let timed = timeout > 0 && !self.rng.chance(w.untimed_pct);
                let timeout_ms = timed.then(|| self.rng.range(1, timeout) as u32);
                Some(Transition::Acquire {
                    client,
                    setting,
                    timeout_ms,
                })
            }
            ClientState::Holding { .. } if listener => Some(Transition::Detach { client }),
            ClientState::Holding { .. }
                if self
                    .lingering
                    .get(&client)
                    .is_some_and(|&t| t > world.now()) =>
            {
                let until = self.lingering[&client];
                self.plan(until, Plan::Client(client));
                None
            }
            ClientState::Holding { .. } => {
                let dead = world
                    .client_conn(client)
                    .is_some_and(|c| c.session == Session::Closed);
                let (taint, detach) = (w.taint_pct, w.detach_pct);
                // Using a dead connection fails, and the client says so.
                if dead && self.rng.chance(95) {
                    return Some(Transition::Taint { client });
                }
                let roll = self.rng.below(100) as u8;
                Some(if roll < detach {
                    Transition::Detach { client }
                } else if roll < detach.saturating_add(taint) {
                    Transition::Taint { client }
                } else {
                    Transition::Release { client }
                })
            }
            ClientState::Listening { .. } if listener => None,
            ClientState::Listening { .. } => Some(Transition::Unlisten { client }),
            ClientState::Waiting { .. } => None,
        }
    }
}

impl<P: SimPool> Driver<P> for Generator {
    fn next(&mut self, world: &mut World<P>) -> Option<Step> {
        if self.emitted >= self.events {
            return None;
        }
        let mut notices = std::mem::take(&mut self.notices);
        world.take_notices(&mut notices);
        for &notice in &notices {
            self.on_notice(world, notice);
        }
        self.notices = notices;
        self.emitted += 1;
        let now = world.now();
        // Close once its step has come and requests wait (so Close has
        // waiters to reject), or some steps later in any case.
        let close_at = self.swarm.workload.close_at_step;
        if close_at > 0
            && !self.closed
            && self.emitted >= close_at
            && (world.waiting() > 0 || self.emitted >= close_at + CLOSE_WAIT_STEPS)
        {
            self.closed = true;
            let timeout_ms = self
                .rng
                .pick(&[None, Some(0), Some(10), Some(100), Some(1_000)]);
            let pool = self.rng.below(4) as u32;
            // Some borrowers hold on past the close deadline (and its slack),
            // so Close must complete at its deadline with them still out.
            let linger = u64::from(timeout_ms.unwrap_or(500)) + 2 * world.config().slack_ms + 1;
            for (client, c) in world.clients().iter().enumerate() {
                if matches!(c.state, ClientState::Holding { .. })
                    && self.rng.chance(self.swarm.workload.linger_pct)
                {
                    let until = now.plus_ms(linger + self.rng.below(linger));
                    self.lingering.insert(client as u32, until);
                }
            }
            let transition = Transition::Close { timeout_ms, pool };
            return Some(Step {
                at: now,
                transition,
            });
        }
        // A plan that no longer applies takes no step (its entity moved on),
        // but periodic plans always re-plan: after a run of them, let time
        // pass, so the pools' own timers fire and clients move on.
        let mut passed_over = 0;
        while let Some(((at, _, _), plan)) = self.agenda.pop_first() {
            let at = at.max(now);
            if let Some(transition) = self.transition(world, at, plan) {
                return Some(Step { at, transition });
            }
            passed_over += 1;
            if passed_over == 16 {
                return Some(Step {
                    at,
                    transition: Transition::Wait,
                });
            }
        }
        // Nothing planned: let time pass to the next timer.
        let at = world
            .next_timer()
            .filter(|&t| t > now)
            .unwrap_or(now.plus_ms(100));
        Some(Step {
            at,
            transition: Transition::Wait,
        })
    }
}

/// The liveness phase's autopilot: faults are healed, so every queued signal
/// is delivered in order, every new connect succeeds after a short latency,
/// every client returns what it holds, and each orphaned process is replaced
/// by a new one. It does not hold the pool's hand: a connect that hung before
/// the heal stays hung (the pool's connect timeout must abort it), and
/// nothing refills the floor but the pool. Once the world is quiet it probes every pool with acquires (which
/// must all succeed), then lets virtual time run past every bound (idle
/// timeout, close deadline) before the final checks.
#[derive(Debug)]
pub struct Healer {
    healed_at: Time,
    /// The phase ends here even if the world never goes quiet (a pool that
    /// reconnects without backoff against a full role limit keeps it busy).
    horizon: Time,
    /// One full round after the heal (every timeout, backoff and bound the
    /// pool and world have): by then a waiter is owed its answer whatever
    /// hung before the heal.
    round_end: Time,
    steps: u64,
    probes: Probes,
    /// Quiet after the probes: the phase runs on to here (past the idle
    /// timeout and every bound), still answering connects, so the pools'
    /// timers fire each at its own time and the contract sees them.
    quiet_until: Option<Time>,
    done: bool,
    /// How the phase ended, once it has.
    end: PhaseEnd,
}

#[derive(Debug, PartialEq, Eq)]
enum Probes {
    NotStarted,
    /// Probe acquires (or logins) still to send.
    Sending(Vec<Transition>),
    Sent,
}

/// Most steps the liveness phase takes.
const HEAL_MAX_STEPS: u64 = 20_000;

impl Healer {
    pub fn new<P: SimPool>(world: &World<P>) -> Healer {
        let healed_at = world.now();
        let (pool, w) = (world.pool_config(), world.config());
        let round = pool.acquire_timeout_ms
            + pool.connect_timeout_ms
            + pool.reconnect_backoff_ms
            + w.probe_timeout_ms
            + w.heal_connect_latency_ms
            + w.heal_hold_ms
            + w.liveness_bound_ms
            + w.watchdog_interval_ms;
        // A close deadline does not stretch the phase: the healed world
        // returns every borrowed conn, and a close must then complete within
        // the bound (close-stalled), however far its deadline.
        let horizon = healed_at.plus_ms(4 * round + pool.idle_timeout_ms);
        Healer {
            healed_at,
            horizon,
            round_end: healed_at.plus_ms(round),
            steps: 0,
            probes: Probes::NotStarted,
            quiet_until: None,
            done: false,
            end: PhaseEnd::Horizon,
        }
    }

    /// How the phase ended: the end-of-phase checks depend on it.
    pub fn end(&self) -> PhaseEnd {
        self.end
    }

    /// Healed work due: restart orphaned processes, answer connects, return
    /// connections.
    fn work<P: SimPool>(&self, world: &World<P>) -> Option<Step> {
        let now = world.now();
        for slot in 0..world.config().processes {
            if world
                .process_in(slot)
                .is_some_and(|p| p.orphaned_at.is_some())
            {
                let transition = Transition::Spawn { process: slot };
                return Some(Step {
                    at: now,
                    transition,
                });
            }
        }
        // A healed backend answers in time: within the pool's own connect
        // timeout, however short (found by proptest: a 5 ms timeout against
        // a 5 ms healed latency starved every probe).
        let latency = match world.pool_config().connect_timeout_ms {
            0 => world.config().heal_connect_latency_ms,
            timeout => world.config().heal_connect_latency_ms.min(timeout - 1),
        };
        let hold = world.config().heal_hold_ms;
        let mut best: Option<Step> = None;
        let mut consider = |at: Time, transition: Transition| {
            let at = at.max(now);
            if best.as_ref().is_none_or(|b| at < b.at) {
                best = Some(Step { at, transition });
            }
        };
        // The healed server answers the connects made from now on. One that
        // hung before the heal stays hung if the pool has a connect timeout:
        // the pool must abort it itself (without one, nothing could).
        let abortable = world.pool_config().connect_timeout_ms > 0;
        for (attempt, (pool, conn)) in world.attempts().enumerate() {
            let opened = world.conn(pool, conn).map_or(now, |c| c.opened_at);
            if abortable && opened < self.healed_at {
                continue;
            }
            let opened = opened.max(self.healed_at);
            let attempt = attempt as u32;
            consider(opened.plus_ms(latency), Transition::ConnectOk { attempt });
        }
        for (client, c) in world.clients().iter().enumerate() {
            if let ClientState::Holding { since, .. } = c.state {
                let client = client as u32;
                let dead = world
                    .client_conn(client)
                    .is_some_and(|t| t.session == Session::Closed);
                let transition = if dead {
                    Transition::Taint { client }
                } else {
                    Transition::Release { client }
                };
                consider(since.max(self.healed_at).plus_ms(hold), transition);
            }
        }
        best
    }

    /// Whether a connect that hung before the heal is still pending, for the
    /// pool to abort (it has a connect timeout).
    fn hung_before_heal<P: SimPool>(&self, world: &World<P>) -> bool {
        world.pool_config().connect_timeout_ms > 0
            && world.attempts().any(|(pool, conn)| {
                world
                    .conn(pool, conn)
                    .is_some_and(|c| c.opened_at < self.healed_at)
            })
    }

    /// The probes: idle clients acquire from every pool in service (a login
    /// per key with a registry), as many as the capacity and the role limit
    /// leave room for.
    fn probes<P: SimPool>(world: &mut World<P>) -> Vec<Transition> {
        let timeout_ms = Some(world.config().probe_timeout_ms as u32);
        let mut idle: Vec<u32> = (0..world.clients().len() as u32)
            .filter(|&c| {
                world.clients()[c as usize].state == ClientState::Idle && !world.client_orphaned(c)
            })
            .collect();
        let limit = world.config().role_conn_limit as usize;
        let mut room = if limit == 0 {
            usize::MAX
        } else {
            limit.saturating_sub(world.open_session_count())
        };
        let mut probes = Vec::new();
        let keys = world.config().keys;
        if keys > 0 {
            for key in 0..keys {
                // A key's pool must be able to serve: in service, open, with
                // capacity (a key without a pool gets a fresh one).
                let serving = world.pools().iter().find(|p| {
                    p.service == Service::Serving
                        && matches!(p.owner, Owner::Registry { key: k, .. } if k.0 == key)
                });
                let able = match serving {
                    Some(p) => p.capacity > 0 && p.close.is_none(),
                    None => world.pool_config().max_size > 0,
                };
                if !able {
                    continue;
                }
                let Some(client) = idle.pop() else { break };
                if room == 0 {
                    break;
                }
                room -= 1;
                world.mark_probe(client);
                probes.push(Transition::Login {
                    client,
                    key,
                    timeout_ms,
                });
            }
            return probes;
        }
        for slot in 0..world.config().processes {
            let Some(process) = world.process_in(slot) else {
                continue;
            };
            let px = process.pool;
            let pool = &world.pools()[px as usize];
            if pool.service != Service::Serving || pool.close.is_some() {
                continue;
            }
            let pooled = pool.census().pooled;
            let mut n = 0;
            let mut candidates: Vec<u32> = idle
                .iter()
                .copied()
                .filter(|c| c % world.config().processes == slot)
                .collect();
            while n < pool.capacity
                && let Some(client) = candidates.pop()
            {
                // Beyond the pool's idle conns, each probe needs a session.
                if n >= pooled {
                    if room == 0 {
                        break;
                    }
                    room -= 1;
                }
                n += 1;
                idle.retain(|&c| c != client);
                probes.push(Transition::Acquire {
                    client,
                    setting: None,
                    timeout_ms,
                });
            }
        }
        for p in &probes {
            if let Transition::Acquire { client, .. } = p {
                world.mark_probe(*client);
            }
        }
        probes
    }
}

impl<P: SimPool> Driver<P> for Healer {
    fn next(&mut self, world: &mut World<P>) -> Option<Step> {
        if self.done {
            return None;
        }
        world.take_notices(&mut Vec::new());
        let now = world.now();
        self.steps += 1;
        let end = self.quiet_until.unwrap_or(self.horizon);
        if now >= end || self.steps > HEAL_MAX_STEPS {
            self.done = true;
            self.end = if self.quiet_until.is_some_and(|until| now >= until) {
                PhaseEnd::Quiet
            } else if now < self.round_end {
                // A pool that churns legitimately (a 1 ms max_lifetime
                // against a min_idle floor) spends the step budget before a
                // connect that hung before the heal is due to be aborted.
                PhaseEnd::StepLimit
            } else {
                PhaseEnd::Horizon
            };
            return None;
        }
        let step = |transition| {
            Some(Step {
                at: now,
                transition,
            })
        };
        // Signals first, in the order they arrived: the I/O loop is healthy.
        if !world.inbox().is_empty() {
            return step(Transition::Deliver { signal: 0 });
        }
        // Probes go out together, so the whole capacity is tried at once.
        if let Probes::Sending(probes) = &mut self.probes {
            match probes.pop() {
                Some(probe) => return step(probe),
                None => self.probes = Probes::Sent,
            }
        }
        match self.work(world) {
            Some(step) if step.at < end => return Some(step),
            // Work left at the horizon: the world never went quiet.
            Some(_) if self.quiet_until.is_none() => {
                self.done = true;
                return None;
            }
            // Past the end of the quiet stretch: not this phase's business.
            _ => {}
        }
        let bound = world.config().liveness_bound_ms;
        let next_timer = world.next_timer().filter(|&t| t > now);
        if self.quiet_until.is_none() && (world.waiting() > 0 || self.hung_before_heal(world)) {
            // The pools owe the waiters an answer, and the connects that hung
            // before the heal an abort: let their timers run. A pool that
            // never answers is caught by waiter-stalled (or by starved at the
            // end of the phase), one that never aborts by connect-stalled.
            let at = next_timer.unwrap_or(now.plus_ms(bound)).min(end);
            return Some(Step {
                at,
                transition: Transition::Wait,
            });
        }
        // The pools refill their floors by their own timers (the backoff
        // included) before a probe's acquire could do it for them.
        let probe_at = self
            .healed_at
            .plus_ms(world.pool_config().reconnect_backoff_ms + bound + 1);
        if self.probes == Probes::NotStarted && now < probe_at {
            return Some(Step {
                at: next_timer.unwrap_or(probe_at).min(probe_at),
                transition: Transition::Wait,
            });
        }
        if self.probes == Probes::NotStarted {
            let mut probes = Healer::probes(world);
            probes.reverse();
            self.probes = Probes::Sending(probes);
            return self.next(world);
        }
        // Quiet after the probes: run on past every bound, timer by timer.
        let until = *self
            .quiet_until
            .get_or_insert(now.plus_ms(world.pool_config().idle_timeout_ms + bound + 1));
        Some(Step {
            at: next_timer.unwrap_or(until).min(until),
            transition: Transition::Wait,
        })
    }
}
