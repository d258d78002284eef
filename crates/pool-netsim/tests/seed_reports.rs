//! Two seed reports' races, at the protocol level: pool-tokio with
//! tokio-postgres against the fake server, inside turmoil.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_netsim::manager::PgManager;
use pool_netsim::{ConnectFault, FaultKind, Server, ServerConfig};
use pool_tokio::Pool;
use tokio::time::{sleep, timeout};

fn sim(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(120))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(10))
        .build()
}

async fn select_one(pool: &Pool<PgManager>) -> Result<(), String> {
    let conn = pool
        .get_with(None, Some(Duration::from_secs(3)))
        .await
        .map_err(|e| e.to_string())?;
    match timeout(Duration::from_secs(2), conn.client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Ok(()),
        other => {
            conn.taint();
            Err(format!("query: {other:?}"))
        }
    }
}

/// Bun (seed 001): a full pool's sessions are all killed, and every
/// reconnect gets ReadyForQuery, then 57P01 and FIN, in one write. The
/// Connected and the Closed of each land together. The pool must not pool a
/// dead conn (a ghost) and wedge: once the server behaves, every query
/// succeeds, and every idle conn of the pool is a live session.
#[test]
fn bun_ready_for_query_and_fin_in_one_write_to_every_conn_of_a_full_pool() {
    const SIZE: usize = 3;
    let mut sim = sim(1);
    let server = Server::new(ServerConfig::default());
    let db = server.clone();
    sim.host("db", move || db.clone().run());
    let outcome: Arc<Mutex<Option<Result<String, String>>>> = Arc::default();
    let (out, server_in) = (outcome.clone(), server.clone());
    sim.client("app", async move {
        let pool = Pool::builder(PgManager::new("bun"))
            .max_size(SIZE)
            .connect_timeout(Duration::from_secs(1))
            .reconnect_backoff(Duration::from_millis(100))
            .build();
        let result = async {
            // A full pool: every slot connected, queried, returned.
            let held: Vec<_> = futures_join(SIZE, || pool.get()).await;
            for conn in &held {
                let conn = conn.as_ref().map_err(|e| e.to_string())?;
                conn.client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| e.to_string())?;
            }
            drop(held);
            sleep(Duration::from_millis(100)).await;
            if pool.stats().idle != SIZE {
                return Err(format!("not full: {:?}", pool.stats()));
            }
            // pg_terminate_backend on every session, and the next SIZE
            // connects get the Bun answer.
            let mut left = SIZE;
            server_in.set_plan(move |_| {
                if left > 0 {
                    left -= 1;
                    ConnectFault::ReadyThenFin
                } else {
                    ConnectFault::Normal
                }
            });
            server_in.terminate_all();
            sleep(Duration::from_millis(100)).await;
            // Queries through the storm: the ones that draw a Bun reconnect
            // fail, none hangs.
            let storm = futures_join(SIZE, || select_one(&pool)).await;
            let failed = storm.iter().filter(|r| r.is_err()).count();
            sleep(Duration::from_millis(500)).await;
            // The server behaves again: the pool keeps reconnecting cleanly.
            for round in 0..3 {
                for r in futures_join(SIZE, || select_one(&pool)).await {
                    r.map_err(|e| format!("round {round} after the storm: {e}"))?;
                }
            }
            sleep(Duration::from_millis(200)).await;
            pool.check()?;
            let stats = pool.stats();
            let sessions = server_in.stats().sessions_of_role("bun");
            if stats.idle != sessions || stats.held != sessions {
                return Err(format!(
                    "a ghost: the pool holds {} idle ({} held), the server has {sessions} sessions",
                    stats.idle, stats.held
                ));
            }
            Ok(format!(
                "storm: {failed} of {SIZE} queries failed; after: {stats:?}"
            ))
        }
        .await;
        *out.lock().unwrap() = Some(result);
        Ok(())
    });
    sim.run().unwrap();
    let result = outcome.lock().unwrap().take().expect("the client ran");
    let summary = result.unwrap_or_else(|e| panic!("{e}"));
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

/// Hatchet (seed 000): a LISTEN client takes its conn out of the pool for
/// good (detach, pgx's Hijack), the server kills it when idle, the client
/// reconnects; many more cycles than the pool's size. Each detach frees its
/// slot, so the pool never starves: every cycle and every query gets a conn.
#[test]
fn hatchet_listen_conns_killed_by_idle_timeout_and_reacquired_beyond_max_size() {
    let (result, server) = hatchet(None);
    let detached = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(detached, HATCHET_CYCLES);
    assert!(server.stats().fault_count(FaultKind::IdleKill) >= HATCHET_CYCLES);
}

/// The same test catches Hatchet's bug: with `Conn()` instead of
/// `Hijack()` (every detach keeps its slot) the pool starves within
/// max_size cycles.
#[cfg(feature = "mutations")]
#[test]
fn the_hatchet_test_catches_detach_keeps_slot() {
    let (result, _) = hatchet(Some(pool_core::Mutation::DetachKeepsSlot));
    let error = result.expect_err("the mutated pool must starve");
    assert!(error.contains("the pool starved"), "{error}");
}

const HATCHET_SIZE: usize = 2;
const HATCHET_CYCLES: u64 = 3 * HATCHET_SIZE as u64;

fn hatchet(mutation: Option<pool_core::Mutation>) -> (Result<u64, String>, Server) {
    let mut sim = sim(2);
    let server = Server::new(ServerConfig {
        idle_session_timeout: Some(Duration::from_secs(2)),
        ..ServerConfig::default()
    });
    let db = server.clone();
    sim.host("db", move || db.clone().run());
    let outcome: Arc<Mutex<Option<Result<u64, String>>>> = Arc::default();
    let (out, server_in) = (outcome.clone(), server.clone());
    sim.client("app", async move {
        #[cfg_attr(not(feature = "mutations"), allow(unused_mut))]
        let mut builder = Pool::builder(PgManager::new("hatchet"))
            .max_size(HATCHET_SIZE)
            .connect_timeout(Duration::from_secs(1));
        #[cfg(feature = "mutations")]
        if let Some(m) = mutation {
            builder = builder.mutation(m);
        }
        #[cfg(not(feature = "mutations"))]
        let _ = mutation;
        let pool = builder.build();
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
        let result = async {
            for cycle in 0..HATCHET_CYCLES {
                let conn = pool
                    .get_with(None, Some(Duration::from_secs(3)))
                    .await
                    .map_err(|e| format!("cycle {cycle}: the pool starved: {e}"))?;
                let mut listener = conn.detach();
                listener
                    .client
                    .batch_execute("LISTEN jobs")
                    .await
                    .map_err(|e| e.to_string())?;
                let stats = pool.stats();
                if stats.held > HATCHET_SIZE {
                    return Err(format!("cycle {cycle}: {stats:?}"));
                }
                // Held until the server's idle-session timeout kills it.
                timeout(Duration::from_secs(10), listener.ended())
                    .await
                    .map_err(|_| format!("cycle {cycle}: never killed"))?;
            }
            queries.await.map_err(|e| e.to_string())??;
            let stats = pool.stats();
            if stats.detached != HATCHET_CYCLES {
                return Err(format!("detached {} of {HATCHET_CYCLES}", stats.detached));
            }
            pool.check()?;
            let report = pool.close().await;
            sleep(Duration::from_millis(200)).await;
            let left = server_in.stats().sessions_of_role("hatchet");
            if report.leaked != 0 || left != 0 {
                return Err(format!(
                    "after close: leaked {}, {left} sessions",
                    report.leaked
                ));
            }
            Ok(stats.detached)
        }
        .await;
        *out.lock().unwrap() = Some(result);
        Ok(())
    });
    sim.run().unwrap();
    let result = outcome.lock().unwrap().take().expect("the client ran");
    (result, server)
}

/// `n` futures at once, in order.
async fn futures_join<T, F, Fut>(n: usize, mut make: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
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
