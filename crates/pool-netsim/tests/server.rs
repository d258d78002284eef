//! The fake PostgreSQL server against a real client library: tokio-postgres over turmoil TCP, one seeded `Sim` per test.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_netsim::{
    CloseReason, ConnectFault, ConnectInfo, FaultKind, Server, ServerConfig, ServerStats,
};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Connection, NoTls, SimpleQueryMessage};
use turmoil::net::TcpStream;

type PgConnection = Connection<TcpStream, NoTlsStream>;

/// Long enough for every test; turmoil's default is 10 s of sim time.
const SIM_DURATION: Duration = Duration::from_secs(120);
/// Longer than turmoil's largest default message latency (100 ms), so the
/// server has seen whatever the client sent before we look at its counters.
const SETTLE: Duration = Duration::from_millis(500);

fn sim(seed: u64) -> turmoil::Sim<'static> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_DURATION)
        .build()
}

fn start_db(sim: &mut turmoil::Sim<'static>, server: &Server) {
    let server = server.clone();
    sim.host("db", move || server.clone().run());
}

async fn connect(
    user: &str,
    application_name: Option<&str>,
) -> Result<(Client, PgConnection), tokio_postgres::Error> {
    let stream = TcpStream::connect(("db", 5432))
        .await
        .expect("the db host accepts TCP");
    let mut config = tokio_postgres::Config::new();
    config.user(user).dbname("appdb");
    if let Some(name) = application_name {
        config.application_name(name);
    }
    config.connect_raw(stream, NoTls).await
}

/// Connects and spawns the connection future, as an application would.
async fn connect_spawned(
    user: &str,
    application_name: Option<&str>,
) -> (Client, JoinHandle<Result<(), tokio_postgres::Error>>) {
    let (client, connection) = connect(user, application_name)
        .await
        .expect("handshake completes");
    (client, tokio::spawn(connection))
}

/// Connects and expects the handshake to fail.
async fn connect_failure(user: &str) -> tokio_postgres::Error {
    match connect(user, None).await {
        Ok(_) => panic!("the handshake of {user} should fail"),
        Err(e) => e,
    }
}

fn code(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(|d| d.code())
}

fn rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn map<K: Ord + Clone, const N: usize>(entries: [(K, u64); N]) -> BTreeMap<K, u64> {
    entries.into_iter().collect()
}

fn roles<const N: usize>(entries: [(&str, usize); N]) -> BTreeMap<String, usize> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[test]
fn normal_connect_runs_select_one_and_listen() {
    let server = Server::new(ServerConfig::default());
    let mut sim = sim(1);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        let (client, connection) = connect_spawned("app", None).await;

        let messages = client.simple_query("SELECT 1").await?;
        assert_eq!(rows(&messages), vec![vec![Some("1".to_owned())]]);
        assert!(matches!(
            messages.last(),
            Some(SimpleQueryMessage::CommandComplete(1))
        ));

        client.batch_execute("LISTEN jobs").await?;
        client.batch_execute("BEGIN; LISTEN a; COMMIT").await?;
        let messages = client
            .simple_query("SELECT pg_backend_pid() AS pid, current_user, 'x;y', NULL")
            .await?;
        assert_eq!(
            rows(&messages),
            vec![vec![
                Some("1".to_owned()),
                Some("app".to_owned()),
                Some("x;y".to_owned()),
                None
            ]]
        );

        let stats = observer.stats();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.sessions_by_role, roles([("app", 1)]));
        assert_eq!(stats.sessions_started, 1);
        assert_eq!(stats.queries, 4);
        assert_eq!(stats.faults, BTreeMap::new());

        // Dropping the client makes the connection send Terminate and end cleanly.
        drop(client);
        connection.await?.expect("connection ends without error");
        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_open, 0);
        assert_eq!(stats.connections_open, 0);
        assert_eq!(stats.closes, map([(CloseReason::ClientTerminate, 1)]));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn ready_then_fin_ends_the_connection_with_admin_shutdown() {
    let server = Server::with_plan(ServerConfig::default(), |_: &ConnectInfo| {
        ConnectFault::ReadyThenFin
    });
    let mut sim = sim(2);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        // The handshake itself succeeds: ReadyForQuery ends connect_raw, and
        // the FATAL that arrived in the same segment waits in the codec's
        // buffer for the Connection future.
        let (client, connection) = connect("app", None)
            .await
            .expect("connect_raw returns at ReadyForQuery");
        let ended = connection.await.expect_err("the connection future fails");
        assert_eq!(code(&ended), Some(&SqlState::ADMIN_SHUTDOWN));
        assert_eq!(
            ended.as_db_error().map(|d| d.message()),
            Some("terminating connection due to administrator command")
        );

        let query = client
            .simple_query("SELECT 1")
            .await
            .expect_err("a query on the dead conn fails");
        assert!(query.is_closed());
        assert_eq!(code(&query), None);

        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.accepted, 1);
        assert_eq!(stats.sessions_started, 0);
        assert_eq!(stats.sessions_open, 0);
        assert_eq!(stats.connections_open, 0);
        assert_eq!(stats.faults, map([(FaultKind::ReadyThenFin, 1)]));
        assert_eq!(stats.closes, map([(CloseReason::ReadyThenFin, 1)]));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn hang_never_completes_the_handshake() {
    let server = Server::with_plan(ServerConfig::default(), |_: &ConnectInfo| {
        ConnectFault::Hang
    });
    let mut sim = sim(3);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        let started = Instant::now();
        let attempt = timeout(Duration::from_secs(30), connect("app", None)).await;
        assert!(attempt.is_err(), "connect must time out");
        assert_eq!(started.elapsed(), Duration::from_secs(30));

        // The timed-out connect dropped its socket; until the FIN lands the
        // server still holds the hung connection.
        let stats = observer.stats();
        assert_eq!(stats.hanging, 1);
        assert_eq!(stats.sessions_open, 0);
        assert_eq!(stats.faults, map([(FaultKind::Hang, 1)]));

        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.hanging, 0);
        assert_eq!(stats.connections_open, 0);
        assert_eq!(stats.closes, map([(CloseReason::ClientEof, 1)]));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn role_limit_refuses_the_second_session_of_a_role() {
    let config = ServerConfig {
        role_conn_limit: 1,
        ..ServerConfig::default()
    };
    let server = Server::new(config);
    let mut sim = sim(4);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        let (first, first_conn) = connect_spawned("app", None).await;

        let refused = connect_failure("app").await;
        assert_eq!(code(&refused), Some(&SqlState::TOO_MANY_CONNECTIONS));
        assert_eq!(
            refused.as_db_error().map(|d| d.message()),
            Some("too many connections for role \"app\"")
        );

        // The limit is per role.
        let (other, other_conn) = connect_spawned("other", None).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, roles([("app", 1), ("other", 1)]));
        assert_eq!(stats.faults, map([(FaultKind::RefuseRole, 1)]));
        assert_eq!(stats.accepted, 3);

        // A freed slot admits the role again.
        drop(first);
        first_conn.await?.expect("clean close");
        sleep(SETTLE).await;
        let (again, again_conn) = connect_spawned("app", None).await;
        assert_eq!(
            rows(&again.simple_query("SELECT current_user").await?),
            vec![vec![Some("app".to_owned())]]
        );
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, roles([("app", 1), ("other", 1)]));
        assert_eq!(
            stats.peak_sessions_by_role,
            roles([("app", 1), ("other", 1)])
        );
        assert_eq!(
            stats.closes,
            map([
                (CloseReason::ClientTerminate, 1),
                (CloseReason::RefusedRole, 1)
            ])
        );

        drop((other, again));
        other_conn.await?.expect("clean close");
        again_conn.await?.expect("clean close");
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn idle_session_timeout_kills_an_idle_listen_conn() {
    let config = ServerConfig {
        idle_session_timeout: Some(Duration::from_secs(10)),
        ..ServerConfig::default()
    };
    let server = Server::new(config);
    let mut sim = sim(5);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("listener", async move {
        let (client, connection) = connect_spawned("hatchet", None).await;
        client.batch_execute("LISTEN jobs").await?;
        let listened_at = Instant::now();

        // Activity resets the timer: a query 6 s in keeps it alive past 10 s.
        sleep(Duration::from_secs(6)).await;
        client.simple_query("SELECT 1").await?;
        let queried_at = Instant::now();
        sleep_until_offset(listened_at, Duration::from_secs(12)).await;
        assert!(!connection.is_finished(), "alive 12 s after LISTEN");
        assert_eq!(observer.stats().sessions_of_role("hatchet"), 1);

        let ended = connection.await?.expect_err("the server kills the session");
        assert_eq!(code(&ended), Some(&SqlState::IDLE_SESSION_TIMEOUT));
        assert_eq!(
            ended.as_db_error().map(|d| d.message()),
            Some("terminating connection due to idle-session timeout")
        );
        // Killed 10 s after the server saw the query, seen here at most one
        // message latency (100 ms) later each way.
        let since_query = queried_at.elapsed();
        assert!(
            since_query >= Duration::from_millis(9_800)
                && since_query <= Duration::from_millis(10_200),
            "killed {since_query:?} after the last query"
        );

        let stats = observer.stats();
        assert_eq!(stats.sessions_open, 0);
        assert_eq!(stats.faults, map([(FaultKind::IdleKill, 1)]));
        assert_eq!(stats.closes, map([(CloseReason::IdleKill, 1)]));
        assert!(client.is_closed());
        Ok(())
    });
    sim.run().unwrap();
}

async fn sleep_until_offset(start: Instant, offset: Duration) {
    tokio::time::sleep_until(start + offset).await;
}

#[test]
fn terminate_all_closes_every_session_and_hung_connect() {
    // The fourth connect hangs; the rest are normal.
    let server = Server::with_plan(ServerConfig::default(), |info: &ConnectInfo| {
        if info.conn_id == 4 {
            ConnectFault::Hang
        } else {
            ConnectFault::Normal
        }
    });
    let mut sim = sim(6);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        let mut sessions = Vec::new();
        for user in ["a", "a", "b"] {
            sessions.push(connect_spawned(user, None).await);
        }
        let hung = tokio::spawn(connect_failure("a"));
        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, roles([("a", 2), ("b", 1)]));
        assert_eq!(stats.hanging, 1);

        assert_eq!(observer.terminate_all(), 4);
        // A second call before the tasks ran signals nobody new.
        assert_eq!(observer.terminate_all(), 0);

        for (client, connection) in sessions {
            let ended = connection.await?.expect_err("terminated");
            assert_eq!(code(&ended), Some(&SqlState::ADMIN_SHUTDOWN));
            assert!(client.is_closed());
        }
        let hung = hung.await?;
        assert_eq!(code(&hung), Some(&SqlState::ADMIN_SHUTDOWN));

        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, BTreeMap::new());
        assert_eq!(stats.connections_open, 0);
        assert_eq!(
            stats.faults,
            map([(FaultKind::Hang, 1), (FaultKind::Terminated, 4)])
        );
        assert_eq!(stats.closes, map([(CloseReason::Terminated, 4)]));
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn session_counts_per_role_go_up_and_down() {
    let server = Server::new(ServerConfig::default());
    let mut sim = sim(7);
    start_db(&mut sim, &server);
    let observer = server.clone();
    sim.client("app", async move {
        assert_eq!(observer.stats(), ServerStats::default());

        let (a1, a1_conn) = connect_spawned("a", Some("pool-1")).await;
        let (a2, a2_conn) = connect_spawned("a", Some("pool-2")).await;
        let (b1, b1_conn) = connect_spawned("b", Some("pool-1")).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, roles([("a", 2), ("b", 1)]));
        assert_eq!(
            stats.sessions_by_application,
            roles([("pool-1", 2), ("pool-2", 1)])
        );
        assert_eq!(stats.sessions_open, 3);
        assert_eq!(stats.sessions_of_role("a"), 2);

        drop(a1);
        a1_conn.await?.expect("clean close");
        sleep(SETTLE).await;
        assert_eq!(
            observer.stats().sessions_by_role,
            roles([("a", 1), ("b", 1)])
        );

        drop(b1);
        b1_conn.await?.expect("clean close");
        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, roles([("a", 1)]));
        assert_eq!(stats.sessions_by_application, roles([("pool-2", 1)]));

        drop(a2);
        a2_conn.await?.expect("clean close");
        sleep(SETTLE).await;
        let stats = observer.stats();
        assert_eq!(stats.sessions_by_role, BTreeMap::new());
        assert_eq!(stats.peak_sessions_by_role, roles([("a", 2), ("b", 1)]));
        assert_eq!(stats.accepted, 3);
        assert_eq!(stats.sessions_started, 3);
        assert_eq!(stats.connections_open, 0);
        assert_eq!(stats.closes, map([(CloseReason::ClientTerminate, 3)]));
        Ok(())
    });
    sim.run().unwrap();
}

/// conn_id, role, database, application_name, role_sessions.
type Seen<'a> = (u64, &'a str, Option<&'a str>, Option<&'a str>, usize);

#[test]
fn plan_sees_each_connect_once_with_its_startup_parameters() {
    let seen: Arc<Mutex<Vec<ConnectInfo>>> = Arc::default();
    let record = seen.clone();
    let server = Server::with_plan(ServerConfig::default(), move |info: &ConnectInfo| {
        record.lock().unwrap().push(info.clone());
        ConnectFault::Normal
    });
    let mut sim = sim(8);
    start_db(&mut sim, &server);
    sim.client("app", async move {
        let (first, first_conn) = connect_spawned("a", Some("pool-1")).await;
        let (second, second_conn) = connect_spawned("a", None).await;
        drop((first, second));
        first_conn.await?.expect("clean close");
        second_conn.await?.expect("clean close");
        Ok(())
    });
    sim.run().unwrap();

    let seen = seen.lock().unwrap();
    let summary: Vec<Seen<'_>> = seen
        .iter()
        .map(|i| {
            (
                i.conn_id,
                i.role.as_str(),
                i.database.as_deref(),
                i.application_name.as_deref(),
                i.role_sessions,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "a", Some("appdb"), Some("pool-1"), 0),
            (2, "a", Some("appdb"), None, 1),
        ]
    );
}

#[test]
fn unsupported_messages_get_0a000_and_the_session_goes_on() {
    let server = Server::new(ServerConfig::default());
    let mut sim = sim(9);
    start_db(&mut sim, &server);
    sim.client("app", async move {
        let (client, connection) = connect_spawned("app", None).await;
        // The extended protocol (Parse/Describe/Sync) is not spoken.
        let prepared = client
            .query("SELECT 1", &[])
            .await
            .expect_err("extended protocol is refused");
        assert_eq!(code(&prepared), Some(&SqlState::FEATURE_NOT_SUPPORTED));
        let unknown_sql = client
            .simple_query("SELECT now()")
            .await
            .expect_err("unknown SQL is refused");
        assert_eq!(code(&unknown_sql), Some(&SqlState::FEATURE_NOT_SUPPORTED));
        assert_eq!(
            rows(&client.simple_query("SELECT 2").await?),
            vec![vec![Some("2".to_owned())]]
        );
        drop(client);
        connection.await?.expect("clean close");
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn ready_then_fin_puts_ready_and_fatal_in_one_segment_then_fin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = Server::with_plan(ServerConfig::default(), |_: &ConnectInfo| {
        ConnectFault::ReadyThenFin
    });
    let mut sim = sim(10);
    start_db(&mut sim, &server);
    sim.client("raw", async move {
        let mut stream = TcpStream::connect(("db", 5432)).await?;
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        body.extend_from_slice(b"user\0raw\0\0");
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        stream.write_all(&packet).await?;

        // turmoil delivers one write as one segment, and one read returns it whole.
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await?;
        let mut tags = Vec::new();
        let mut at = 0;
        while at < n {
            tags.push(buf[at]);
            let len = i32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]);
            at += 1 + len as usize;
        }
        assert_eq!(at, n, "whole messages only");
        // AuthenticationOk, 13 ParameterStatus (as PostgreSQL 15 sends), BackendKeyData,
        // ReadyForQuery, ErrorResponse.
        let mut expected = vec![b'R'];
        expected.extend([b'S'; 13]);
        expected.extend([b'K', b'Z', b'E']);
        assert_eq!(tags, expected);
        let fatal = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(fatal.ends_with(
            "SFATAL\0VFATAL\0C57P01\0Mterminating connection due to administrator command\0\0"
        ));

        // Then the FIN: end of stream.
        assert_eq!(stream.read(&mut buf).await?, 0);
        Ok(())
    });
    sim.run().unwrap();
}

/// The caller's seeded RNG behind the plan (a tiny LCG here; the netsim
/// driver will use its ChaCha). Returns the plan and nothing else: the
/// server itself draws no randomness.
fn lcg_plan(seed: u64) -> impl FnMut(&ConnectInfo) -> ConnectFault + Send + 'static {
    let mut x = seed;
    move |_: &ConnectInfo| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        match (x >> 33) % 4 {
            0 => ConnectFault::Normal,
            1 => ConnectFault::ReadyThenFin,
            2 => ConnectFault::RefuseRole,
            _ => ConnectFault::Hang,
        }
    }
}

/// Twenty connects under the seeded plan; what each saw and when (sim ns).
fn seeded_run(seed: u64) -> (Vec<(String, u128)>, ServerStats) {
    let server = Server::with_plan(ServerConfig::default(), lcg_plan(seed));
    let mut sim = sim(seed);
    start_db(&mut sim, &server);
    let seen: Arc<Mutex<Vec<(String, u128)>>> = Arc::default();
    let record = seen.clone();
    sim.client("app", async move {
        let start = Instant::now();
        for _ in 0..20 {
            let outcome = match timeout(Duration::from_secs(2), connect("app", None)).await {
                Err(_) => "timeout".to_owned(),
                Ok(Err(e)) => format!("connect error {:?}", code(&e).map(SqlState::code)),
                Ok(Ok((client, connection))) => {
                    let connection = tokio::spawn(connection);
                    match client.simple_query("SELECT 1").await {
                        Ok(m) => {
                            drop(client);
                            connection.await?.expect("clean close");
                            format!("rows {:?}", rows(&m))
                        }
                        Err(_) => {
                            let ended = connection.await?.expect_err("conn died");
                            format!("conn error {:?}", code(&ended).map(SqlState::code))
                        }
                    }
                }
            };
            record
                .lock()
                .unwrap()
                .push((outcome, start.elapsed().as_nanos()));
        }
        sleep(SETTLE).await;
        Ok(())
    });
    sim.run().unwrap();
    let seen = seen.lock().unwrap().clone();
    (seen, server.stats())
}

#[test]
fn a_seeded_plan_replays_identically() {
    let (first, first_stats) = seeded_run(42);
    let (second, second_stats) = seeded_run(42);
    assert_eq!(first, second);
    assert_eq!(first_stats, second_stats);

    // Each connect saw exactly what the plan drew for it.
    let mut plan = lcg_plan(42);
    let info = ConnectInfo {
        conn_id: 0,
        peer: "127.0.0.1:1".parse().unwrap(),
        role: "app".to_owned(),
        database: None,
        application_name: None,
        role_sessions: 0,
    };
    let mut expected_faults = BTreeMap::new();
    for (outcome, _) in &first {
        let fault = plan(&info);
        let expected = match fault {
            ConnectFault::Normal => r#"rows [[Some("1")]]"#,
            ConnectFault::ReadyThenFin => r#"conn error Some("57P01")"#,
            ConnectFault::RefuseRole => r#"connect error Some("53300")"#,
            ConnectFault::Hang => "timeout",
        };
        assert_eq!(outcome, expected);
        if let Some(kind) = fault.kind() {
            *expected_faults.entry(kind).or_insert(0) += 1;
        }
    }
    assert_eq!(first_stats.faults, expected_faults);
    assert_eq!(first_stats.accepted, 20);
    assert_eq!(first_stats.connections_open, 0);
    // The seed exercises every fault.
    assert_eq!(expected_faults.len(), 3, "{expected_faults:?}");
}

#[test]
fn flush_gets_no_answer_and_the_next_query_runs() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = Server::new(ServerConfig::default());
    let mut sim = sim(31);
    start_db(&mut sim, &server);
    sim.client("raw", async move {
        let mut stream = TcpStream::connect(("db", 5432)).await?;
        let mut body = Vec::new();
        body.extend_from_slice(&196_608i32.to_be_bytes());
        body.extend_from_slice(b"user\0raw\0\0");
        let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        stream.write_all(&packet).await?;
        // Reads whole messages until a ReadyForQuery; returns their tags.
        async fn until_ready(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
            let mut tags = Vec::new();
            loop {
                let mut head = [0u8; 5];
                stream.read_exact(&mut head).await?;
                let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                let mut rest = vec![0u8; len - 4];
                stream.read_exact(&mut rest).await?;
                tags.push(head[0]);
                if head[0] == b'Z' {
                    return Ok(tags);
                }
            }
        }
        until_ready(&mut stream).await?;
        // Flush (`H`, no body) then a simple query, in one write as Bun.SQL
        // 1.3.13 may send them: the query's answer must come first, with no
        // ErrorResponse for the Flush.
        let mut msgs = vec![b'H', 0, 0, 0, 4];
        let sql = b"SELECT 1\0";
        msgs.push(b'Q');
        msgs.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
        msgs.extend_from_slice(sql);
        stream.write_all(&msgs).await?;
        assert_eq!(
            until_ready(&mut stream).await?,
            vec![b'T', b'D', b'C', b'Z']
        );
        Ok(())
    });
    sim.run().unwrap();
}
