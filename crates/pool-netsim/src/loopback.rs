//! The fake server on a real TCP port of this machine, on a thread of its own: what `cargo xtask serve` and `cargo xtask conformance` run.
//!
//! The server's serving future is not `Send` (it polls its connections
//! itself, see [`Server::serve`]), so it gets a current-thread runtime on a
//! dedicated thread, and callers on any runtime (or none) drive it through
//! [`LoopbackHost`]: stop it as PostgreSQL's fast shutdown does (every
//! connection gets FATAL 57P01 and FIN, then the port closes) and start it
//! again on the same port.

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::server::Server;

/// How long a stop waits for the server's connections to close after their
/// FATAL (their linger ends at the client's FIN, or after `linger`).
const STOP_DRAIN: Duration = Duration::from_secs(3);

enum Command {
    Stop(oneshot::Sender<usize>),
    Crash(oneshot::Sender<()>),
    Start(oneshot::Sender<io::Result<()>>),
}

/// A [`Server`] listening on `127.0.0.1:port` from its own thread.
#[derive(Debug)]
pub struct LoopbackHost {
    server: Server,
    addr: SocketAddr,
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
}

/// Binds `127.0.0.1:port` (0: any free port), naming the address in the
/// error: a busy port is the usual reason this fails.
pub fn bind(port: u16) -> io::Result<std::net::TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AddrInUse {
            "the port is in use (another server listens there)".to_owned()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("cannot listen on {addr}: {why}"))
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

impl LoopbackHost {
    /// Starts serving `server` on `127.0.0.1:port` (0: any free port). The
    /// server's `bind_ip` and `port` settings are not used.
    pub fn start(server: Server, port: u16) -> io::Result<LoopbackHost> {
        let listener = bind(port)?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let host_server = server.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fake-pg-{}", addr.port()))
            .spawn(move || runtime.block_on(host_loop(host_server, addr, listener, rx)))?;
        Ok(LoopbackHost {
            server,
            addr,
            commands: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server, to observe it and act on it.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// As PostgreSQL's fast shutdown: every connection gets FATAL 57P01 and
    /// FIN, then the port closes (connects are refused) once they are gone
    /// (or after 3 s). Returns how many connections were signalled.
    pub async fn stop(&self) -> usize {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Stop(reply)) {
            answer.await.unwrap_or(0)
        } else {
            0
        }
    }

    /// As PostgreSQL's immediate shutdown (`pg_ctl stop -m immediate`):
    /// every connection gets a WARNING 57P01 notice and FIN, then the port
    /// closes. (The simulation's db crash is turmoil's host crash, which
    /// sends nothing: a machine's crash.)
    pub async fn crash(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Crash(reply)) {
            let _ = answer.await;
        }
    }

    /// Listens on the same port again after [`LoopbackHost::stop`] or
    /// [`LoopbackHost::crash`].
    pub async fn restart(&self) -> io::Result<()> {
        let (reply, answer) = oneshot::channel();
        if !self.send(Command::Start(reply)) {
            return Err(io::Error::other("the fake server's thread has ended"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the fake server's thread has ended")))
    }

    fn send(&self, command: Command) -> bool {
        self.commands
            .as_ref()
            .is_some_and(|tx| tx.send(command).is_ok())
    }
}

impl Drop for LoopbackHost {
    fn drop(&mut self) {
        // Closing the channel ends the host's loop; its runtime then drops
        // every connection and the listener.
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Serving = Pin<Box<dyn Future<Output = io::Result<()>>>>;

async fn host_loop(
    server: Server,
    addr: SocketAddr,
    listener: std::net::TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut serving: Option<Serving> = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => Some(Box::pin(server.clone().serve(l))),
        Err(e) => {
            eprintln!("fake server on {addr}: {e}");
            None
        }
    };
    loop {
        let command = match serving.as_mut() {
            Some(serve) => tokio::select! {
                ended = serve => {
                    if let Err(e) = ended {
                        eprintln!("fake server on {addr}: accept failed: {e}");
                    }
                    serving = None;
                    continue;
                }
                command = commands.recv() => command,
            },
            None => commands.recv().await,
        };
        match command {
            None => return,
            Some(Command::Stop(reply)) => {
                let signalled = server.terminate_all();
                if let Some(serve) = serving.as_mut() {
                    drain(&server, serve).await;
                }
                serving = None;
                let _ = reply.send(signalled);
            }
            Some(Command::Crash(reply)) => {
                server.shutdown_immediate();
                if let Some(serve) = serving.as_mut() {
                    drain(&server, serve).await;
                }
                serving = None;
                let _ = reply.send(());
            }
            Some(Command::Start(reply)) => {
                let bound = if serving.is_some() {
                    Ok(())
                } else {
                    bind(addr.port())
                        .and_then(tokio::net::TcpListener::from_std)
                        .map(|l| serving = Some(Box::pin(server.clone().serve(l))))
                };
                let _ = reply.send(bound);
            }
        }
    }
}

/// Polls the server until it holds no connection, for at most [`STOP_DRAIN`].
async fn drain(server: &Server, serve: &mut Serving) {
    let give_up = tokio::time::sleep(STOP_DRAIN);
    tokio::pin!(give_up);
    loop {
        if server.stats().connections_open == 0 {
            return;
        }
        tokio::select! {
            _ = serve.as_mut() => return,
            () = &mut give_up => return,
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}
