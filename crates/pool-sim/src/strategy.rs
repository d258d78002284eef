//! proptest strategies over the one transition vocabulary: worlds, every
//! kind of transition, whole scenarios. Shrinking works on their structure
//! (fewer steps, smaller indices), so a failure comes back small.

use pool_core::{Config, Time};
use proptest::prelude::*;

use crate::fuzz::CoreCase;
use crate::scenario::{Expect, Scenario};
use crate::transition::{Step, Transition};
use crate::world::WorldConfig;

/// Any transition, every kind, with small indices (they are taken modulo
/// the candidates anyway). Backend answers and deliveries are weighted up:
/// without them little happens.
pub fn transition() -> impl Strategy<Value = Transition> {
    let index = || 0u32..6;
    let timeout = || proptest::option::weighted(0.3, 1u32..2_000);
    prop_oneof![
        4 => (index(), proptest::option::weighted(0.3, 1u32..3), timeout())
            .prop_map(|(client, setting, timeout_ms)| Transition::Acquire { client, setting, timeout_ms }),
        1 => index().prop_map(|client| Transition::Cancel { client }),
        3 => index().prop_map(|client| Transition::Release { client }),
        1 => index().prop_map(|client| Transition::Taint { client }),
        1 => index().prop_map(|client| Transition::Detach { client }),
        1 => index().prop_map(|client| Transition::Unlisten { client }),
        4 => index().prop_map(|attempt| Transition::ConnectOk { attempt }),
        1 => index().prop_map(|attempt| Transition::ConnectFail { attempt }),
        1 => index().prop_map(|attempt| Transition::ReadyThenFin { attempt }),
        1 => index().prop_map(|session| Transition::Kill { session }),
        1 => Just(Transition::KillAll),
        5 => (0u32..3).prop_map(|signal| Transition::Deliver { signal }),
        1 => (0u32..3).prop_map(|signal| Transition::Echo { signal }),
        1 => (0u32..6, 0u32..3).prop_map(|(capacity, pool)| Transition::SetCapacity { capacity, pool }),
        1 => (timeout(), 0u32..3).prop_map(|(timeout_ms, pool)| Transition::Close { timeout_ms, pool }),
        2 => (index(), 0u32..3, timeout())
            .prop_map(|(client, key, timeout_ms)| Transition::Login { client, key, timeout_ms }),
        1 => Just(Transition::Gc),
        1 => (0u32..3).prop_map(|process| Transition::Orphan { process }),
        1 => (0u32..3).prop_map(|process| Transition::Spawn { process }),
        1 => Just(Transition::Wait),
    ]
}

/// A pool config: small, every timer either off or one of a few values.
pub fn pool_config() -> impl Strategy<Value = Config> {
    let timer = || prop_oneof![Just(0u64), Just(5), Just(50), Just(1_000), Just(30_000)];
    (
        0usize..5,
        0usize..3,
        timer(),
        timer(),
        timer(),
        timer(),
        timer(),
    )
        .prop_map(
            |(max_size, min_idle, idle, lifetime, acquire, connect, backoff)| Config {
                max_size,
                min_idle: min_idle.min(max_size),
                idle_timeout_ms: idle,
                max_lifetime_ms: lifetime,
                acquire_timeout_ms: acquire,
                connect_timeout_ms: connect,
                reconnect_backoff_ms: backoff,
                validate_idle_ms: idle.min(1_000),
            },
        )
}

/// A world: one process, several, or a pooler with a registry.
pub fn world_config() -> impl Strategy<Value = WorldConfig> {
    (1u32..5, 0u32..3, prop_oneof![Just(0u32), 1u32..6]).prop_map(
        |(clients, topology, role_conn_limit)| {
            let (processes, keys) = match topology {
                0 => (1, 0),
                1 => (2, 0),
                _ => (1, 2),
            };
            WorldConfig {
                clients,
                role_conn_limit,
                processes,
                keys,
                ..WorldConfig::default()
            }
        },
    )
}

/// A whole scenario: a world and up to `max_steps` transitions, each a few
/// milliseconds (now and then seconds) after the one before.
pub fn scenario(max_steps: usize) -> impl Strategy<Value = Scenario> {
    let delay = prop_oneof![8 => 0u64..20, 1 => 500u64..5_000];
    let steps = proptest::collection::vec((delay, transition()), 0..max_steps);
    (pool_config(), world_config(), steps).prop_map(|(pool, world, steps)| {
        let mut at = 0;
        let steps = steps
            .into_iter()
            .map(|(delay, transition)| {
                at += delay;
                Step {
                    at: Time::from_millis(at),
                    transition,
                }
            })
            .collect();
        Scenario {
            name: "proptest".to_owned(),
            about: String::new(),
            expect: Expect::Pass,
            mutation: None,
            seed: None,
            pool,
            world,
            steps,
            meta: Vec::new(),
        }
    })
}

/// Raw pool-core inputs, from bytes through the fuzzers' decoder.
pub fn core_case() -> impl Strategy<Value = CoreCase> {
    proptest::collection::vec(any::<u8>(), 0..2_000)
        .prop_filter_map("decodes", |bytes| CoreCase::from_bytes(&bytes).ok())
}
