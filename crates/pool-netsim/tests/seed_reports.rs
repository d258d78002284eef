//! Two seed reports' races, at the protocol level, against every pool under test (pool-tokio, bb8, deadpool) with tokio-postgres and the fake server, inside turmoil.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_netsim::adapters::{bb8::Bb8, deadpool::Deadpool, pool_tokio::PoolTokio};
use pool_netsim::netsim::live_sessions;
use pool_netsim::socket::Sockets;
use pool_netsim::under_test::{PoolUnderTest, Setup};
use pool_netsim::{ConnectFault, FaultKind, Server, ServerConfig};
use tokio::time::{sleep, timeout};

fn sim(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .build()
}

fn setup(role: &str, max_size: usize) -> Setup {
    Setup {
        role: role.to_owned(),
        max_size,
        min_idle: 0,
        get_timeout: Duration::from_secs(3),
        sockets: Sockets::default(),
    }
}

async fn select_one<P: PoolUnderTest>(pool: &P) -> Result<(), String> {
    let conn = pool.get().await?;
    match timeout(
        Duration::from_secs(2),
        P::client(&conn).simple_query("SELECT 1"),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        other => {
            pool.taint(conn);
            Err(format!("query: {other:?}"))
        }
    }
}

/// Runs `client` as host "app" next to a fresh server; its result.
fn with_server<T: Send + 'static>(
    seed: u64,
    config: ServerConfig,
    client: impl FnOnce(Server) -> std::pin::Pin<Box<dyn Future<Output = T>>> + 'static,
) -> (T, Server) {
    let mut sim = sim(seed);
    let server = Server::new(config);
    let db = server.clone();
    sim.host("db", move || db.clone().run());
    let outcome: Arc<Mutex<Option<T>>> = Arc::default();
    let (out, server_in) = (outcome.clone(), server.clone());
    let mut client = Some(client);
    sim.client("app", async move {
        let run = client.take().expect("runs once");
        *out.lock().unwrap() = Some(run(server_in).await);
        Ok(())
    });
    sim.run().unwrap();
    let result = outcome.lock().unwrap().take().expect("the client ran");
    (result, server)
}

/// Bun (seed 001): a full pool's sessions are all killed, and every
/// reconnect gets ReadyForQuery, then 57P01 and FIN, in one write. The pool
/// must not keep a dead connection (a ghost) and wedge: once the server
/// behaves, every query succeeds, and the pool counts exactly its live
/// sessions.
fn bun<P: PoolUnderTest>() {
    const SIZE: usize = 3;
    let (result, server) = with_server(1, ServerConfig::default(), |server| {
        Box::pin(async move {
            let setup = setup("bun", SIZE);
            let pool = P::build(&setup, &P::Options::default());
            // A full pool: every slot connected, queried, returned.
            let mut held = Vec::new();
            for _ in 0..SIZE {
                held.push(pool.get().await?);
            }
            for conn in &held {
                P::client(conn)
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            drop(held);
            sleep(Duration::from_millis(100)).await;
            if pool.gauges().open != SIZE {
                return Err(format!("not full: {:?}", pool.gauges()));
            }
            // pg_terminate_backend on every session, and the next SIZE
            // connects get the Bun answer.
            let mut left = SIZE;
            server.set_plan(move |_| {
                if left > 0 {
                    left -= 1;
                    ConnectFault::ReadyThenFin
                } else {
                    ConnectFault::Normal
                }
            });
            server.terminate_all();
            sleep(Duration::from_millis(100)).await;
            // Queries through the storm: the ones that draw a Bun reconnect
            // may fail, none hangs.
            let storm = futures_join(SIZE, || select_one(&pool)).await;
            let failed = storm.iter().filter(|r| r.is_err()).count();
            sleep(Duration::from_millis(500)).await;
            // The server behaves again: the pool serves every query.
            for round in 0..3 {
                for r in futures_join(SIZE, || select_one(&pool)).await {
                    r.map_err(|e| format!("round {round} after the storm: {e}"))?;
                }
            }
            sleep(Duration::from_millis(200)).await;
            pool.check()?;
            let open = pool.gauges().open;
            let sessions = live_sessions(&server, &setup.sockets, "bun");
            if open != sessions {
                return Err(format!(
                    "a ghost: the pool counts {open} open, the server and sockets {sessions} live"
                ));
            }
            Ok(format!("storm: {failed} of {SIZE} queries failed"))
        })
    });
    let summary = result.unwrap_or_else(|e| panic!("{}: {e}", P::KIND));
    let stats = server.stats();
    assert_eq!(
        stats.fault_count(FaultKind::ReadyThenFin),
        SIZE as u64,
        "{summary}"
    );
    assert_eq!(
        stats.fault_count(FaultKind::Terminated),
        SIZE as u64,
        "{summary}"
    );
}

#[test]
fn bun_ready_for_query_and_fin_in_one_write_pool_tokio() {
    bun::<PoolTokio>();
}

#[test]
fn bun_ready_for_query_and_fin_in_one_write_bb8() {
    bun::<Bb8>();
}

#[test]
fn bun_ready_for_query_and_fin_in_one_write_deadpool() {
    bun::<Deadpool>();
}

const HATCHET_SIZE: usize = 2;
const HATCHET_CYCLES: u64 = 3 * HATCHET_SIZE as u64;

/// Hatchet (seed 000): a LISTEN client takes its connection out of the pool
/// for good (detach; a pool without detach: it holds a pooled one), the
/// server kills it when idle, the client gets another; many more cycles
/// than the pool's size, while queries run. The pool never starves, never
/// holds more than its size, and once closed (or dropped) leaves no session.
fn hatchet<P: PoolUnderTest>(build: fn(&Setup) -> P) -> Result<u64, String> {
    let config = ServerConfig {
        idle_session_timeout: Some(Duration::from_secs(2)),
        ..ServerConfig::default()
    };
    let (result, server) = with_server(2, config, move |server| {
        Box::pin(async move {
            let setup = setup("hatchet", HATCHET_SIZE);
            let pool = build(&setup);
            let queries = {
                let pool = pool.clone();
                tokio::spawn(async move {
                    for i in 0..40 {
                        select_one(&pool)
                            .await
                            .map_err(|e| format!("query {i}: {e}"))?;
                        sleep(Duration::from_millis(400)).await;
                    }
                    Ok::<_, String>(())
                })
            };
            for cycle in 0..HATCHET_CYCLES {
                let conn = pool
                    .get()
                    .await
                    .map_err(|e| format!("cycle {cycle}: the pool starved: {e}"))?;
                let socket = pool.socket(&conn).ok_or("no socket")?;
                P::client(&conn)
                    .batch_execute("LISTEN jobs")
                    .await
                    .map_err(|e| e.to_string())?;
                let held: Box<dyn Send> = match pool.detach(conn) {
                    Ok(detached) => {
                        setup.sockets.mark_detached(socket);
                        detached
                    }
                    Err(conn) => Box::new(conn),
                };
                let sessions = live_sessions(&server, &setup.sockets, "hatchet");
                if sessions > HATCHET_SIZE {
                    return Err(format!("cycle {cycle}: {sessions} live sessions"));
                }
                // Held until the server's idle-session timeout kills it.
                timeout(Duration::from_secs(10), async {
                    while !setup.sockets.has_ended(socket) {
                        sleep(Duration::from_millis(50)).await;
                    }
                })
                .await
                .map_err(|_| format!("cycle {cycle}: never killed"))?;
                drop(held);
            }
            queries.await.map_err(|e| e.to_string())??;
            pool.check()?;
            if let Some(closed) = pool.close().await
                && closed.leaked.unwrap_or(0) != 0
            {
                return Err(format!("close leaked {:?}", closed.leaked));
            }
            drop(pool);
            sleep(Duration::from_millis(200)).await;
            let left = server.stats().sessions_of_role("hatchet");
            if left != 0 {
                return Err(format!("after close: {left} sessions"));
            }
            Ok(HATCHET_CYCLES)
        })
    });
    if let Ok(cycles) = result {
        assert!(server.stats().fault_count(FaultKind::IdleKill) >= cycles);
    }
    result
}

fn built<P: PoolUnderTest>(setup: &Setup) -> P {
    P::build(setup, &P::Options::default())
}

#[test]
fn hatchet_listen_conns_killed_by_idle_timeout_and_reacquired_pool_tokio() {
    assert_eq!(hatchet(built::<PoolTokio>), Ok(HATCHET_CYCLES));
}

#[test]
fn hatchet_listen_conns_killed_by_idle_timeout_and_reacquired_bb8() {
    assert_eq!(hatchet(built::<Bb8>), Ok(HATCHET_CYCLES));
}

#[test]
fn hatchet_listen_conns_killed_by_idle_timeout_and_reacquired_deadpool() {
    assert_eq!(hatchet(built::<Deadpool>), Ok(HATCHET_CYCLES));
}

/// The same test catches Hatchet's bug: with `Conn()` instead of
/// `Hijack()` (every detach keeps its slot) pool-tokio starves within
/// max_size cycles.
#[cfg(feature = "mutations")]
#[test]
fn the_hatchet_test_catches_detach_keeps_slot() {
    let error = hatchet(|setup| {
        let options = pool_netsim::adapters::pool_tokio::Options::default();
        let builder =
            PoolTokio::builder(setup, &options).mutation(pool_core::Mutation::DetachKeepsSlot);
        PoolTokio::from_builder(builder, setup)
    })
    .expect_err("the mutated pool must starve");
    assert!(error.contains("the pool starved"), "{error}");
}

/// `n` futures at once, in order.
async fn futures_join<T, F, Fut>(n: usize, mut make: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let futures: Vec<_> = (0..n).map(|_| Box::pin(make())).collect();
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in futures.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        results[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}
