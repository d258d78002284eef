//! Swarm testing: the seed draws every option of a run (pool config, world,
//! workload shape, which faults are on and how often), so a sweep over seeds
//! explores configurations as well as interleavings.

use pool_core::Config;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use serde::Serialize;

use crate::world::WorldConfig;

/// The seeded random source of a run; everything random comes from here.
#[derive(Debug)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        // Lemire's multiply-shift; the bias is below 2^-32 for our ranges.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u8) -> bool {
        self.below(100) < u64::from(pct)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// 0 with probability `off_pct`, else uniform in `lo..=hi`.
    fn maybe(&mut self, off_pct: u8, lo: u64, hi: u64) -> u64 {
        if self.chance(off_pct) {
            0
        } else {
            self.range(lo, hi)
        }
    }

    /// 0 (off) with probability `off_pct`, else one of `items`.
    fn maybe_pick<T: Copy + Default>(&mut self, off_pct: u8, items: &[T]) -> T {
        if self.chance(off_pct) {
            T::default()
        } else {
            self.pick(items)
        }
    }
}

/// Every option of a seeded run.
#[derive(Clone, Debug, Serialize)]
pub struct Swarm {
    pub pool: Config,
    pub world: WorldConfig,
    pub workload: Workload,
    pub faults: Faults,
}

/// What the clients do.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    /// The first `listeners` clients are LISTEN-style: acquire, detach at
    /// once, hold until the server kills the session, reconnect (seed 000).
    pub listeners: u32,
    /// Distinct settings the other clients ask for (0: none).
    pub settings: u32,
    /// Longest pause between a client's acquires.
    pub think_ms: u64,
    /// Longest hold of a borrowed connection.
    pub hold_ms: u64,
    /// 0: acquires use the pool's default timeout; else the longest
    /// per-acquire timeout.
    pub timeout_ms: u32,
    pub cancel_pct: u8,
    pub taint_pct: u8,
    pub detach_pct: u8,
    /// 0: never; else how often the capacity is changed.
    pub resize_every_ms: u64,
    /// 0: never; else the step from which the pool is closed (as soon as a
    /// request waits, or a hundred steps later).
    pub close_at_step: u64,
    /// Chance that a client holding a connection at Close holds on past
    /// the close deadline.
    pub linger_pct: u8,
    /// Chance that an acquire carries no timeout of its own (the pool's
    /// default applies; with `acquire_timeout_ms = 0`, none).
    pub untimed_pct: u8,
    /// Processes: 0 never; else mean interval between orphanings.
    pub orphan_every_ms: u64,
    /// Processes: how long after an orphaning a new process starts (0:
    /// never).
    pub respawn_ms: u64,
    /// Registry: 0 never; else how often GC sweeps.
    pub gc_every_ms: u64,
}

/// What goes wrong, and how often.
#[derive(Clone, Debug, Serialize)]
pub struct Faults {
    /// Longest connect latency.
    pub connect_latency_ms: u64,
    pub connect_error_pct: u8,
    /// Connects that never answer until aborted (or healed).
    pub hang_pct: u8,
    /// Handshakes that complete and close in one I/O tick (seed 001).
    pub ready_then_fin_pct: u8,
    /// 0: off; else mean interval between single-session kills.
    pub kill_every_ms: u64,
    /// 0: off; else mean interval between terminate-all events.
    pub kill_all_every_ms: u64,
    /// 0: off; else sessions idle this long are killed (seed 000).
    pub server_idle_timeout_ms: u64,
    /// Chance that a signal's delivery is deferred (a microtask that runs
    /// after later synchronous callbacks), and by how long at most.
    pub defer_pct: u8,
    pub defer_ms: u64,
    /// Events planned for the same millisecond happen in a random order.
    pub reorder: bool,
    /// Chance that the transport reports a signal twice.
    pub echo_pct: u8,
}

impl Swarm {
    /// Draw every option from `rng`; `events` is the safety phase's length.
    pub fn draw(rng: &mut Rng, events: u64) -> Swarm {
        let max_size = rng.maybe(3, 1, 8) as usize;
        let pool = Config {
            max_size,
            min_idle: rng.maybe(50, 1, max_size.max(1) as u64) as usize,
            idle_timeout_ms: rng.pick(&[0, 20, 200, 2_000, 600_000]),
            max_lifetime_ms: rng.pick(&[0, 50, 500, 5_000, 1_800_000]),
            acquire_timeout_ms: rng.pick(&[0, 20, 200, 2_000, 30_000]),
            connect_timeout_ms: rng.pick(&[0, 10, 100, 1_000, 10_000]),
            reconnect_backoff_ms: rng.pick(&[0, 10, 100, 1_000]),
            validate_idle_ms: rng.pick(&[0, 1, 10, 100, 1_000]),
        };
        let clients = rng.range(1, 12) as u32;
        // The topology: one process (most runs), several processes sharing
        // the backend, or a pooler with a dynamic-pool registry.
        let topology = rng.below(100);
        let (processes, keys) = match topology {
            0..60 => (1, 0),
            60..80 => (rng.range(2, 4) as u32, 0),
            _ => (1, rng.range(1, 3) as u32),
        };
        let world = WorldConfig {
            clients: clients.max(processes),
            role_conn_limit: rng.maybe(70, 1, (max_size as u64 + 2) * u64::from(processes)) as u32,
            processes,
            keys,
            watchdog_interval_ms: rng.pick(&[100, 1_000, 2_000]),
            ..WorldConfig::default()
        };
        let workload = Workload {
            listeners: rng.maybe(60, 1, u64::from(clients.min(2))) as u32,
            settings: rng.maybe(50, 1, 3) as u32,
            think_ms: rng.pick(&[1, 10, 100]),
            hold_ms: rng.pick(&[1, 10, 100, 1_000]),
            timeout_ms: rng.maybe_pick(40, &[5, 50, 500, 5_000]),
            cancel_pct: rng.maybe(50, 1, 20) as u8,
            taint_pct: rng.maybe(50, 1, 20) as u8,
            detach_pct: rng.maybe(70, 1, 10) as u8,
            resize_every_ms: rng.maybe_pick(60, &[10, 100, 1_000]),
            close_at_step: if rng.chance(70) || events < 2 {
                0
            } else {
                rng.range(events / 2, events - 1)
            },
            linger_pct: rng.maybe(30, 10, 60) as u8,
            untimed_pct: rng.maybe(50, 10, 50) as u8,
            orphan_every_ms: if processes > 1 && rng.chance(80) {
                rng.pick(&[100, 1_000, 5_000])
            } else {
                0
            },
            respawn_ms: rng.pick(&[0, 10, 100, 1_000]),
            gc_every_ms: if keys > 0 {
                rng.pick(&[10, 100, 1_000])
            } else {
                0
            },
        };
        let faults = Faults {
            connect_latency_ms: rng.pick(&[0, 1, 10, 100]),
            connect_error_pct: rng.maybe(50, 1, 30) as u8,
            hang_pct: rng.maybe(50, 1, 10) as u8,
            ready_then_fin_pct: rng.maybe(50, 1, 20) as u8,
            kill_every_ms: rng.maybe_pick(50, &[10, 100, 1_000]),
            kill_all_every_ms: rng.maybe_pick(70, &[100, 1_000, 10_000]),
            server_idle_timeout_ms: rng.maybe_pick(60, &[10, 100, 1_000]),
            defer_pct: rng.maybe(50, 1, 50) as u8,
            defer_ms: rng.range(1, 10),
            reorder: rng.chance(50),
            echo_pct: rng.maybe(70, 1, 20) as u8,
        };
        Swarm {
            pool,
            world,
            workload,
            faults,
        }
    }
}
