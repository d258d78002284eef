//! A throwaway PostgreSQL cluster on loopback for `cargo xtask conformance`: initdb in a fresh temporary directory as an unprivileged user, a free port, stopped (immediate) and removed when the guard drops, also on failure and panic.

use std::fmt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

/// Where Debian's `postgresql-15` puts the server binaries; `PG_BIN`
/// overrides it.
pub const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The unprivileged user the cluster runs as when we are root (PostgreSQL
/// refuses to run as root).
const PG_USER: &str = "postgres";

/// A running cluster. Dropping it stops the server (`pg_ctl stop -m
/// immediate`) and removes its directory.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `Some(user)` when commands run as `user` through `runuser` (we are root).
    run_as: Option<&'static str>,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish()
    }
}

impl PgCluster {
    /// [`PgCluster::start`] for `command`: says what it does, and prints
    /// why if it cannot (`None`).
    pub fn start_for(command: &str) -> Option<PgCluster> {
        println!("{command}: starting a throwaway PostgreSQL cluster");
        PgCluster::start()
            .inspect_err(|e| eprintln!("error: cannot start PostgreSQL: {e}"))
            .ok()
    }

    /// initdb, configure and start a cluster on `127.0.0.1:<free port>`.
    /// The error says exactly which step failed and why.
    pub fn start() -> Result<PgCluster, String> {
        let bin =
            std::env::var_os("PG_BIN").map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from);
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "PostgreSQL is not installed where expected: {} is missing (install Debian's postgresql-15, or point PG_BIN at a directory with initdb, pg_ctl and postgres)",
                    bin.join(tool).display()
                ));
            }
        }
        let root = is_root()?;
        let run_as = if root {
            let known = Command::new("id")
                .arg(PG_USER)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !known {
                return Err(format!(
                    "running as root, and PostgreSQL refuses to run as root, but there is no `{PG_USER}` user to run it as (create one: useradd --system {PG_USER})"
                ));
            }
            Some(PG_USER)
        } else {
            None
        };
        let dir = make_temp_dir()?;
        // From here on the guard owns the directory: an early return drops
        // it, which removes the directory (and stops a started server).
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            run_as,
        };
        if let Some(user) = run_as {
            let chown = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(&cluster.dir)
                .output()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            check("chown of the temporary directory", &chown)?;
        }
        let data = cluster.data_dir();
        let initdb = cluster
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .map_err(|e| format!("cannot run initdb: {e}"))?;
        check("initdb", &initdb)?;
        cluster.port = free_port()?;
        let conf = format!(
            "\n# cargo xtask conformance\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\nshared_buffers = 16MB\n",
            cluster.port,
            cluster.dir.display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path)
            .map_err(|e| format!("cannot read {}: {e}", conf_path.display()))?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text)
            .map_err(|e| format!("cannot write {}: {e}", conf_path.display()))?;
        cluster.pg_start()?;
        Ok(cluster)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log so far (empty if unreadable).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl start -w`: back to accepting connections.
    pub fn pg_start(&self) -> Result<(), String> {
        let log = self.dir.join("server.log");
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "start"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl start: {e}"))?;
        check("pg_ctl start", &out).map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "{e}\n  server log ({}):\n    {}",
                log.display(),
                tail.join("\n    ")
            )
        })
    }

    /// `pg_ctl stop -m MODE -w`.
    pub fn pg_stop(&self, mode: &str) -> Result<(), String> {
        let out = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-w", "-t", "30", "-m", mode, "stop"])
            .output()
            .map_err(|e| format!("cannot run pg_ctl stop: {e}"))?;
        check(&format!("pg_ctl stop -m {mode}"), &out)
    }

    /// Runs `sql` (simple protocol) as the superuser, on a connection of
    /// its own.
    pub async fn admin(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>, String> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname("postgres")
            .application_name("xtask-admin")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("admin connect to 127.0.0.1:{}: {e}", self.port))?;
        tokio::spawn(connection);
        client
            .simple_query(sql)
            .await
            .map_err(|e| match e.as_db_error() {
                Some(db) => format!(
                    "admin `{sql}`: {} {}: {}",
                    db.severity(),
                    db.code().code(),
                    db.message()
                ),
                None => format!("admin `{sql}`: {e}"),
            })
    }

    /// The first column of the first row of `sql`, as an integer.
    pub async fn count(&self, sql: &str) -> Result<i64, String> {
        self.admin(sql)
            .await?
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
                _ => None,
            })
            .ok_or_else(|| format!("admin `{sql}` returned no integer"))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A PostgreSQL binary, as the unprivileged user when we are root, in a
    /// process group of its own: a Ctrl-C at the terminal must reach us
    /// (and our guard) only, not stop the postmaster behind our back.
    fn pg_command(&self, tool: &str) -> Command {
        use std::os::unix::process::CommandExt;
        let program = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .process_group(0);
        cmd
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            if let Err(e) = self.pg_stop("immediate") {
                eprintln!("warning: stopping the throwaway cluster: {e}");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("warning: cannot remove {}: {e}", self.dir.display());
        }
    }
}

fn is_root() -> Result<bool, String> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("cannot run `id -u`: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A new directory under the system's temporary directory, readable by the
/// cluster's user.
fn make_temp_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for n in 0..1000 {
        let dir = base.join(format!("pool-sim-pg-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
        }
    }
    Err(format!(
        "cannot create a fresh directory under {}",
        base.display()
    ))
}

/// A port nobody listens on right now (the kernel's pick).
fn free_port() -> Result<u16, String> {
    let probe = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

fn check(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    Err(format!("{what} failed ({}): {}", out.status, said.trim()))
}
