//! Traces for people: a run as Chrome Trace Event JSON, which opens in
//! ui.perfetto.dev. Each pool is a process with a track per connection
//! (spans: opening, idle, borrowed, detached, tainted, and closing: from the
//! server closing the session until the pool hears of it); the world is a
//! process with a track per client (waits and holds) and a track of events
//! (faults, processes, the registry) and the violation.
//!
//! Events that share a virtual millisecond are spread over its microseconds
//! in trace order, so the order of a race stays visible.

use std::collections::BTreeMap;

use pool_core::{Command, ConnId, Input, RequestId};
use serde_json::{Value, json};

use crate::trace::{Event, Line, Target};
use crate::transition::Transition;
use crate::world::SignalKind;

/// The Chrome Trace Event JSON of a run's trace lines.
pub fn chrome_trace(lines: &[Line]) -> String {
    let mut b = Builder::default();
    let mut last_ms = u64::MAX;
    let mut within = 0;
    for line in lines {
        let ms = line.at.as_millis();
        within = if ms == last_ms { within + 1 } else { 0 };
        last_ms = ms;
        b.now = ms * 1_000 + within.min(999);
        b.line(&line.event);
    }
    b.finish()
}

/// The world's process id; pool `n` is process `n + 1`.
const WORLD: u64 = 0;
/// The world's track of events; client `n` is track `n + 1`.
const EVENTS: u64 = 0;
/// A pool's own track (capacity, close); connection `cN` is track `N + 1`.
const POOL: u64 = 0;

#[derive(Default)]
struct Builder {
    /// Microseconds.
    now: u64,
    events: Vec<Value>,
    /// Open span per (pid, tid): its name and start.
    open: BTreeMap<(u64, u64), (String, u64)>,
    /// Tracks seen, for their names: (pid, tid) -> name.
    tracks: BTreeMap<(u64, u64), String>,
    pools: BTreeMap<u64, String>,
    /// Which client made each request (from the steps).
    requests: BTreeMap<RequestId, u32>,
    /// Which client holds each connection.
    holders: BTreeMap<(u64, ConnId), u32>,
}

impl Builder {
    fn line(&mut self, event: &Event) {
        match event {
            Event::Step {
                transition, target, ..
            } => {
                if let Target::Client {
                    client,
                    request: Some(request),
                    ..
                } = *target
                {
                    self.requests.insert(request, client);
                }
                let fault = matches!(
                    transition,
                    Transition::Kill { .. }
                        | Transition::KillAll
                        | Transition::ConnectFail { .. }
                        | Transition::ReadyThenFin { .. }
                        | Transition::Orphan { .. }
                );
                if fault && !matches!(target, Target::Skipped(_)) {
                    let name = format!("fault: {}", transition.name());
                    self.instant((WORLD, EVENTS), &name);
                }
            }
            Event::Input(pool, input) => self.input(u64::from(*pool) + 1, input),
            Event::Command(pool, command) => self.command(u64::from(*pool) + 1, command),
            Event::Timeout(_) => {}
            Event::Signal(signal) => {
                let pid = u64::from(signal.pool) + 1;
                let track = (pid, signal.conn.0 + 1);
                match signal.kind {
                    SignalKind::Closed | SignalKind::ConnectFailed => {
                        let what = match signal.kind {
                            SignalKind::Closed => "server closed",
                            _ => "connect failed",
                        };
                        self.instant(track, what);
                        self.begin(track, "closing".to_owned());
                    }
                    SignalKind::Connected => self.instant(track, "handshake done"),
                    SignalKind::Validated { ok } => {
                        self.instant(track, if ok { "ping: alive" } else { "ping: dead" });
                    }
                }
            }
            Event::Phase(phase) => self.instant((WORLD, EVENTS), phase),
            Event::World(event) => self.instant((WORLD, EVENTS), &event.to_string()),
            Event::Violation(invariant) => {
                let name = format!("{invariant} violated");
                self.events.push(json!({
                    "name": name, "ph": "i", "s": "g", "ts": self.now,
                    "pid": WORLD, "tid": EVENTS, "cat": "violation",
                }));
            }
        }
    }

    fn input(&mut self, pid: u64, input: &Input) {
        match *input {
            Input::Acquire { request, .. } => {
                if let Some(&client) = self.requests.get(&request) {
                    self.begin(client_track(client), format!("wait {request}"));
                }
            }
            Input::Cancel { request } => {
                if let Some(&client) = self.requests.get(&request) {
                    self.end(client_track(client));
                    self.instant(client_track(client), "cancel");
                }
            }
            Input::Recycle { conn } => self.returned(pid, conn, "idle"),
            Input::Taint { conn } => self.returned(pid, conn, "tainted"),
            Input::Detach { conn } => self.returned(pid, conn, "detached"),
            Input::Validated { conn, ok } => {
                let track = (pid, conn.0 + 1);
                let verdict = if ok {
                    "validated: alive"
                } else {
                    "validated: dead"
                };
                self.instant(track, verdict);
                if !ok {
                    self.end(track);
                }
            }
            Input::Connected { conn } => {
                // The pool hears of the handshake: opening ends, idle begins
                // (or, if the session already closed, it stays closing).
                let track = (pid, conn.0 + 1);
                match self.open.get(&track).map(|(n, _)| n.as_str()) {
                    Some("opening") => self.begin(track, "idle".to_owned()),
                    Some(_) => self.instant(track, "pool hears: connected"),
                    None => self.instant(track, "pool hears: connected (late: stale)"),
                }
            }
            Input::ConnectFailed { conn } | Input::Closed { conn } => {
                let track = (pid, conn.0 + 1);
                self.end(track);
                self.instant(track, "pool hears: closed");
            }
            Input::SetCapacity { capacity } => {
                self.instant((pid, POOL), &format!("set-capacity {capacity}"))
            }
            Input::Close { .. } => self.instant((pid, POOL), "close"),
        }
    }

    /// A client returns a connection; the conn's next state is `next`.
    fn returned(&mut self, pid: u64, conn: ConnId, next: &str) {
        if let Some(client) = self.holders.remove(&(pid, conn)) {
            self.end(client_track(client));
        }
        self.begin((pid, conn.0 + 1), next.to_owned());
    }

    fn command(&mut self, pid: u64, command: &Command) {
        match *command {
            Command::Open { conn, .. } => {
                self.begin((pid, conn.0 + 1), "opening".to_owned());
            }
            Command::Abort { conn, reason } => {
                let track = (pid, conn.0 + 1);
                self.end(track);
                self.instant(track, &format!("abort ({reason:?})"));
            }
            Command::Disconnect { conn, reason } => {
                let track = (pid, conn.0 + 1);
                self.end(track);
                self.instant(track, &format!("disconnect ({reason:?})"));
            }
            Command::Grant { request, conn, .. } => {
                let track = (pid, conn.0 + 1);
                self.begin(track, format!("borrowed by {request}"));
                if let Some(&client) = self.requests.get(&request) {
                    self.end(client_track(client));
                    self.begin(client_track(client), format!("hold {conn}"));
                    self.holders.insert((pid, conn), client);
                }
            }
            Command::Reject { request, reason } => {
                if let Some(&client) = self.requests.get(&request) {
                    self.end(client_track(client));
                    self.instant(client_track(client), &format!("rejected ({reason:?})"));
                }
            }
            Command::CloseComplete { leaked } => {
                self.instant((pid, POOL), &format!("close complete, {leaked} leaked"))
            }
        }
        self.pools
            .entry(pid)
            .or_insert_with(|| format!("P{}", pid - 1));
    }

    /// End the track's open span, if any, and start `name`.
    fn begin(&mut self, track: (u64, u64), name: String) {
        self.end(track);
        self.note_track(track);
        self.open.insert(track, (name, self.now));
    }

    fn end(&mut self, track: (u64, u64)) {
        if let Some((name, start)) = self.open.remove(&track) {
            self.span(track, &name, start, self.now);
        }
    }

    fn span(&mut self, (pid, tid): (u64, u64), name: &str, start: u64, end: u64) {
        self.events.push(json!({
            "name": name, "ph": "X", "ts": start, "dur": end.saturating_sub(start).max(1),
            "pid": pid, "tid": tid, "cat": cat(pid),
        }));
    }

    fn instant(&mut self, track: (u64, u64), name: &str) {
        self.note_track(track);
        let (pid, tid) = track;
        self.events.push(json!({
            "name": name, "ph": "i", "s": "t", "ts": self.now,
            "pid": pid, "tid": tid, "cat": cat(pid),
        }));
    }

    fn note_track(&mut self, (pid, tid): (u64, u64)) {
        if pid != WORLD {
            self.pools
                .entry(pid)
                .or_insert_with(|| format!("P{}", pid - 1));
        }
        self.tracks
            .entry((pid, tid))
            .or_insert_with(|| match (pid, tid) {
                (WORLD, EVENTS) => "events".to_owned(),
                (WORLD, t) => format!("client {}", t - 1),
                (_, POOL) => "pool".to_owned(),
                (_, t) => format!("c{}", t - 1),
            });
    }

    fn finish(mut self) -> String {
        // Spans still open end with the trace.
        let open: Vec<_> = std::mem::take(&mut self.open).into_iter().collect();
        for (track, (name, start)) in open {
            self.span(track, &name, start, self.now);
        }
        let mut events = vec![json!({
            "name": "process_name", "ph": "M", "pid": WORLD, "args": {"name": "world"},
        })];
        for (&pid, name) in &self.pools {
            events.push(json!({
                "name": "process_name", "ph": "M", "pid": pid, "args": {"name": name},
            }));
        }
        for (&(pid, tid), name) in &self.tracks {
            events.push(json!({
                "name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name},
            }));
        }
        events.append(&mut self.events);
        json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}

fn client_track(client: u32) -> (u64, u64) {
    (WORLD, u64::from(client) + 1)
}

fn cat(pid: u64) -> &'static str {
    if pid == WORLD { "world" } else { "pool" }
}
