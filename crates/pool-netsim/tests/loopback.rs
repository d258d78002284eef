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
