//! `cargo xtask realpg`: two seed reports' cycles (Hatchet, postgres-mcp) run by the pools under test, unchanged, against a throwaway real PostgreSQL, checked from `pg_stat_activity`; bounded in count and time, and not deterministic.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use pool_netsim::adapters::{bb8::Bb8, deadpool::Deadpool, pool_tokio::PoolTokio};
use pool_netsim::socket::Sockets;
use pool_netsim::under_test::{PoolKind, PoolUnderTest, Setup};
use tokio::time::{Instant, sleep, timeout};

use crate::pgcluster::PgCluster;

/// Run two seed reports against a throwaway PostgreSQL 15 with each pool
/// under test (pool-tokio, bb8, deadpool over tokio-postgres), checked from
/// the server's `pg_stat_activity`:
///
/// - Hatchet (seed 000): LISTEN connections taken out of the pool (detach;
///   a pool without detach holds a pooled one), killed by
///   `idle_session_timeout` (1 s), re-acquired twice the pool's size over,
///   while a client queries. Over-capacity: the role never holds more than
///   max_size sessions besides the one taken out; starved: a get fails;
///   footprint: no session once the pool is closed (or dropped).
/// - postgres-mcp (seed 004): two orphaned processes' pools hold every
///   session a role's CONNECTION LIMIT allows; a new process's connect is
///   refused (53300); once the orphans' pools are closed (or dropped) their
///   sessions must go, and the new process must get a connection.
///
/// Real time and a real kernel: the runs are bounded (a few cycles each,
/// every wait capped) but their timing is not reproducible.
#[derive(clap::Args)]
pub struct Args {
    /// The pools: comma separated, or `all`.
    #[arg(long, default_value = "all")]
    pools: String,
}

/// Sessions a pool may hold in these runs.
const MAX_SIZE: usize = 2;
/// Hatchet's kill.
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// Hatchet's cycles: twice the pool's size.
const HATCHET_CYCLES: usize = 2 * MAX_SIZE;
/// How long a session may outlive its client's close before it counts as
/// left behind (a backend exits on the client's Terminate or FIN).
const SETTLE: Duration = Duration::from_secs(3);
/// The whole command.
const OVERALL: Duration = Duration::from_secs(90);

pub fn run(args: Args) -> i32 {
    let pools: Vec<PoolKind> = if args.pools == "all" {
        PoolKind::ALL.to_vec()
    } else {
        match args.pools.split(',').map(str::parse).collect() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: --pools: {e}");
                return 2;
            }
        }
    };
    #[allow(clippy::disallowed_methods)] // wall time, reported only
    let started = std::time::Instant::now();
    let Some(cluster) = PgCluster::start_for("realpg") else {
        return 1;
    };
    let Some(runtime) = crate::tokio_runtime(Some(2)) else {
        return 1;
    };
    let code = runtime.block_on(async {
        tokio::select! {
            code = timeout(OVERALL, run_all(&cluster, &pools)) => code.unwrap_or_else(|_| {
                eprintln!("error: the runs took longer than {OVERALL:?}; stopped");
                1
            }),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted; stopping the throwaway cluster");
                130
            }
        }
    });
    drop(runtime);
    drop(cluster);
    println!(
        "realpg: done in {:.1}s (cluster stopped and removed)",
        started.elapsed().as_secs_f64()
    );
    code
}

async fn run_all(cluster: &PgCluster, pools: &[PoolKind]) -> i32 {
    if let Err(e) = cluster.admin("CREATE DATABASE app").await {
        eprintln!("error: {e}");
        return 1;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], cluster.port()));
    println!(
        "realpg: PostgreSQL on {addr}; pools of {MAX_SIZE}; Hatchet: {HATCHET_CYCLES} cycles, idle_session_timeout {IDLE_TIMEOUT:?}; postgres-mcp: CONNECTION LIMIT {}",
        2 * MAX_SIZE
    );
    let mut rows = Vec::new();
    for &kind in pools {
        let hatchet = match kind {
            PoolKind::PoolTokio => hatchet::<PoolTokio>(cluster, addr).await,
            PoolKind::Bb8 => hatchet::<Bb8>(cluster, addr).await,
            PoolKind::Deadpool => hatchet::<Deadpool>(cluster, addr).await,
        };
        let mcp = match kind {
            PoolKind::PoolTokio => mcp::<PoolTokio>(cluster, addr).await,
            PoolKind::Bb8 => mcp::<Bb8>(cluster, addr).await,
            PoolKind::Deadpool => mcp::<Deadpool>(cluster, addr).await,
        };
        rows.push((kind, "hatchet (seed 000)", hatchet));
        rows.push((kind, "postgres-mcp (seed 004)", mcp));
    }
    println!();
    println!(
        "{:<11} {:<24} {:<6} detail",
        "pool", "seed report", "result"
    );
    let mut failed = 0;
    for (kind, name, outcome) in &rows {
        let (result, detail) = match outcome {
            Ok(detail) => ("pass", detail.as_str()),
            Err(detail) => {
                failed += 1;
                ("FAIL", detail.as_str())
            }
        };
        println!("{:<11} {name:<24} {result:<6} {detail}", kind.name());
    }
    println!();
    println!("realpg: {} runs, {failed} failed", rows.len());
    i32::from(failed > 0)
}

fn setup(role: &str, addr: SocketAddr) -> Setup {
    Setup {
        role: role.to_owned(),
        max_size: MAX_SIZE,
        min_idle: 0,
        get_timeout: Duration::from_secs(3),
        sockets: Sockets::real(addr),
    }
}

/// Sessions of `role` at the server (`pg_stat_activity`), leaving out the
/// process ids in `except`.
async fn sessions(cluster: &PgCluster, role: &str, except: &[i32]) -> Result<i64, String> {
    let except = if except.is_empty() {
        String::new()
    } else {
        let pids: Vec<String> = except.iter().map(i32::to_string).collect();
        format!(" AND pid NOT IN ({})", pids.join(","))
    };
    cluster
        .count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'{except}"
        ))
        .await
}

/// Waits until `role` has at most `most` sessions (besides `except`);
/// returns the count when it got there, or the last one seen at [`SETTLE`].
async fn settle(cluster: &PgCluster, role: &str, except: &[i32], most: i64) -> Result<i64, String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let n = sessions(cluster, role, except).await?;
        if n <= most || Instant::now() >= deadline {
            return Ok(n);
        }
        sleep(Duration::from_millis(20)).await;
    }
}

async fn query<P: PoolUnderTest>(pool: &P) -> Result<(), String> {
    let conn = pool.get().await?;
    match timeout(
        Duration::from_secs(2),
        P::client(&conn).simple_query("SELECT 1"),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => {
            pool.taint(conn);
            Err(e.to_string())
        }
        Err(_) => {
            pool.taint(conn);
            Err("no answer within 2s".to_owned())
        }
    }
}

async fn backend_pid(client: &tokio_postgres::Client) -> Result<i32, String> {
    client
        .simple_query("SELECT pg_backend_pid()")
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .ok_or_else(|| "no pid".to_owned())
}

/// Closes the pool if it can, else drops it; then the role's sessions
/// must go within [`SETTLE`].
async fn close_and_check<P: PoolUnderTest>(
    cluster: &PgCluster,
    pool: P,
    role: &str,
) -> Result<&'static str, String> {
    let how = if P::CAPABILITIES.close {
        if let Some(closed) = pool.close().await
            && closed.leaked.unwrap_or(0) != 0
        {
            return Err(format!("close leaked {:?}", closed.leaked));
        }
        "closed"
    } else {
        "dropped"
    };
    drop(pool);
    let left = settle(cluster, role, &[], 0).await?;
    if left != 0 {
        return Err(format!(
            "footprint: {left} sessions of {role} {SETTLE:?} after the pool was {how}"
        ));
    }
    Ok(how)
}

/// Hatchet (seed 000) against the real server.
async fn hatchet<P: PoolUnderTest>(
    cluster: &PgCluster,
    addr: SocketAddr,
) -> Result<String, String> {
    let role = format!("hatchet_{}", P::KIND.name().replace('-', "_"));
    cluster
        .admin(&format!(
            "CREATE ROLE {role} LOGIN; ALTER ROLE {role} SET idle_session_timeout = '{}ms'",
            IDLE_TIMEOUT.as_millis()
        ))
        .await?;
    let setup = setup(&role, addr);
    let pool = P::build(&setup, &P::Options::default());
    let querier = {
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut failed = Vec::new();
            for i in 0..15 {
                if let Err(e) = query(&pool).await {
                    failed.push(format!("query {i}: {e}"));
                }
                sleep(Duration::from_millis(300)).await;
            }
            failed
        })
    };
    let mut over = None;
    for cycle in 0..HATCHET_CYCLES {
        let conn = timeout(Duration::from_secs(5), pool.get())
            .await
            .map_err(|_| format!("starved: cycle {cycle}: get not answered in 5s"))?
            .map_err(|e| format!("starved: cycle {cycle}: {e}"))?;
        let socket = pool
            .socket(&conn)
            .ok_or("no socket for a handed-out connection")?;
        let pid = backend_pid(P::client(&conn)).await?;
        P::client(&conn)
            .batch_execute("LISTEN jobs")
            .await
            .map_err(|e| format!("cycle {cycle}: LISTEN: {e}"))?;
        let held: Box<dyn Send> = match pool.detach(conn) {
            Ok(detached) => {
                setup.sockets.mark_detached(socket);
                detached
            }
            Err(conn) => Box::new(conn),
        };
        // Besides the LISTEN session, the pool's own: a count above
        // max_size that outlasts a settle is over capacity.
        let n = settle(cluster, &role, &[pid], MAX_SIZE as i64).await?;
        if n > MAX_SIZE as i64 && over.is_none() {
            over = Some(format!(
                "over-capacity: cycle {cycle}: {n} sessions besides the LISTEN one (max {MAX_SIZE})"
            ));
        }
        // Held until the server's idle-session timeout kills it.
        timeout(Duration::from_secs(5), async {
            while !setup.sockets.has_ended(socket) {
                sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .map_err(|_| format!("cycle {cycle}: the LISTEN session was never killed"))?;
        drop(held);
    }
    let failed_queries = querier.await.map_err(|e| e.to_string())?;
    if let Some(over) = over {
        return Err(over);
    }
    pool.check()?;
    let how = close_and_check(cluster, pool, &role).await?;
    let queries = if failed_queries.is_empty() {
        "15 of 15 queries ok".to_owned()
    } else {
        format!(
            "{} of 15 queries failed (first: {})",
            failed_queries.len(),
            failed_queries[0]
        )
    };
    Ok(format!(
        "{HATCHET_CYCLES} LISTEN sessions killed by 57P05 and re-acquired, never over {MAX_SIZE} besides; {queries}; 0 sessions after the pool was {how}"
    ))
}

/// postgres-mcp (seed 004) against the real server.
async fn mcp<P: PoolUnderTest>(cluster: &PgCluster, addr: SocketAddr) -> Result<String, String> {
    let role = format!("mcp_{}", P::KIND.name().replace('-', "_"));
    let limit = 2 * MAX_SIZE;
    cluster
        .admin(&format!(
            "CREATE ROLE {role} LOGIN CONNECTION LIMIT {limit}"
        ))
        .await?;
    // Two processes fill their pools, then are orphaned: their pools stay
    // (nobody closes them) with every session idle.
    let mut orphans = Vec::new();
    for _ in 0..2 {
        let pool = P::build(&setup(&role, addr), &P::Options::default());
        let mut held = Vec::new();
        for _ in 0..MAX_SIZE {
            held.push(
                pool.get()
                    .await
                    .map_err(|e| format!("an orphan's get: {e}"))?,
            );
        }
        drop(held);
        orphans.push(pool);
    }
    let held = settle(cluster, &role, &[], limit as i64).await?;
    // A new process at the limit: its connect is refused.
    let newcomer = P::build(&setup(&role, addr), &P::Options::default());
    let refused = match timeout(Duration::from_secs(5), newcomer.get()).await {
        Ok(Ok(_)) => {
            return Err(format!(
                "the role held {held} sessions (limit {limit}), yet a new pool connected"
            ));
        }
        Ok(Err(e)) => e,
        Err(_) => "no answer within 5s".to_owned(),
    };
    // The pools' errors need not name the cause (bb8 retries until its
    // timeout); the server's log does.
    let refusals = cluster
        .log()
        .matches(&format!("too many connections for role \"{role}\""))
        .count();
    if refusals == 0 {
        return Err(format!(
            "a new pool at the role limit failed, but the server refused no connect: {refused}"
        ));
    }
    // The fix: the orphans' pools close (or are dropped) and give their
    // sessions back.
    let mut how = "";
    for pool in orphans {
        how = if P::CAPABILITIES.close {
            pool.close().await;
            "closed"
        } else {
            drop(pool);
            "dropped"
        };
    }
    let left = settle(cluster, &role, &[], 0).await?;
    if left != 0 {
        return Err(format!(
            "footprint: {left} sessions of {role} {SETTLE:?} after the orphans' pools were {how}"
        ));
    }
    with_retry(|| query(&newcomer))
        .await
        .map_err(|e| format!("the new pool after the orphans went: {e}"))?;
    let how_new = close_and_check(cluster, newcomer, &role).await?;
    Ok(format!(
        "orphans held {held} of {limit}; the server refused {refusals} connects (53300), the new pool's get said \"{}\"; 0 sessions after the orphans' pools were {how}; the new pool served, 0 after it was {how_new}",
        short(&refused)
    ))
}

/// A first query may meet the connect that failed with 53300 still in the
/// pool's backoff; three tries, 200 ms apart.
async fn with_retry<F, Fut>(mut f: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut last = String::new();
    for _ in 0..3 {
        match f().await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

fn short(s: &str) -> String {
    let s: String = s.chars().take(90).collect();
    s.replace('\n', " ")
}
