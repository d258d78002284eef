//! The fake server on real loopback TCP (what `cargo xtask serve` and `conformance` run): tokio-postgres connects and queries, a stop sends FATAL 57P01 and closes the port, a restart serves again, and a busy port is named in the error.

use std::time::Duration;

use pool_netsim::loopback::{LoopbackHost, bind};
use pool_netsim::{FaultKind, Server, ServerConfig};
use tokio::time::timeout;

async fn connect(
    host: &LoopbackHost,
) -> Result<
    (
        tokio_postgres::Client,
        tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    ),
    tokio_postgres::Error,
> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(host.addr().port())
        .user("app")
        .dbname("app");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok((client, tokio::spawn(connection)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn serves_stops_with_57p01_and_restarts_on_the_same_port() {
    let host = LoopbackHost::start(Server::new(ServerConfig::default()), 0).unwrap();
    let (client, connection) = connect(&host).await.unwrap();
    let rows = client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(rows.len(), 3, "RowDescription, the row, CommandComplete");
    assert_eq!(host.server().stats().sessions_open, 1);

    assert_eq!(host.stop().await, 1);
    let ended = timeout(Duration::from_secs(5), connection)
        .await
        .expect("the connection ends")
        .unwrap();
    let error = ended.expect_err("ended by the server's FATAL");
    let db = error.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "57P01");
    assert_eq!(db.severity(), "FATAL");
    let refused = connect(&host).await.expect_err("the port is closed");
    assert!(
        refused.to_string().contains("error connecting"),
        "{refused}"
    );
    assert_eq!(host.server().stats().fault_count(FaultKind::Terminated), 1);

    host.restart().await.unwrap();
    let (client, _connection) = connect(&host).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert_eq!(host.server().stats().sessions_started, 2);
}

#[test]
fn a_busy_port_is_named() {
    let taken = bind(0).unwrap();
    let port = taken.local_addr().unwrap().port();
    let error = bind(port).expect_err("the port is taken");
    assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    assert!(
        error.to_string().contains(&format!(
            "cannot listen on 127.0.0.1:{port}: the port is in use"
        )),
        "{error}"
    );
}

/// PostgreSQL's immediate shutdown, as `cargo xtask conformance` measured
/// it: a NoticeResponse WARNING 57P01, then FIN; no ErrorResponse.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn crash_sends_the_immediate_shutdown_warning_then_fin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let host = LoopbackHost::start(Server::new(ServerConfig::default()), 0).unwrap();
    let mut stream = tokio::net::TcpStream::connect(host.addr()).await.unwrap();
    let mut body = 196_608i32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0raw\0\0");
    let mut packet = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    stream.write_all(&packet).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"Z\0\0\0\x05I") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the handshake ends with ReadyForQuery");
        got.extend_from_slice(&buf[..n]);
    }

    host.crash().await;
    let mut rest = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("FIN within 5 s")
        .unwrap();
    assert_eq!(rest[0], b'N', "a NoticeResponse, not an ErrorResponse");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.contains("SWARNING\0VWARNING\0C57P01\0Mterminating connection due to immediate shutdown command\0"),
        "{text:?}"
    );
    let refused = tokio::net::TcpStream::connect(host.addr()).await;
    assert!(refused.is_err(), "the port is closed after the crash");
    host.restart().await.unwrap();
    tokio::net::TcpStream::connect(host.addr()).await.unwrap();
}
