//! `cargo xtask ecosystem`: real pools of other languages (node-postgres's pg.Pool, psycopg_pool, Bun.SQL), installed from their registries into `target/ecosystems/`, run against `cargo xtask serve` on loopback and reported by the project's invariant names.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pool_netsim::plan::{Event, NetScenario, PlannedFault};
use pool_netsim::under_test::PoolKind;
use serde_json::Value;

use crate::print;
use crate::sweep::parse_range;

/// The most seeds one run takes: each costs its faults phase (5 or 15 s)
/// plus the recovery window, and these are real-time runs.
const MAX_SEEDS: u64 = 20;

/// Install a pool of another language at a version from its registry (npm
/// or PyPI) into `target/ecosystems/<name>-<version>/` (git-ignored; kept
/// between runs), then for each seed start `cargo xtask serve` with that
/// seed's server faults on a free loopback port, run the pool's driver from
/// `ecosystems/<name>/` against it (bounded in time) and print a table:
/// the faults, the outcome by invariant, and the error text the pool's user
/// saw.
///
/// The invariants: waiter-stalled (a query neither answered nor failed
/// within --bound), ghost-idle (a query failed after the faults healed: the
/// pool handed out a dead connection), not recovered (the last round of
/// queries after the heal did not all run), over-capacity (the server saw
/// the role hold more sessions than the pool's max) and footprint (sessions
/// still open after the pool was closed). Exit 1 if any broke.
#[derive(clap::Args)]
pub struct Args {
    /// The pool: pg (npm `pg`, pg.Pool under node), psycopg (PyPI
    /// `psycopg-pool` with `psycopg[binary]`), bun (npm `bun`, Bun.SQL).
    name: Eco,
    /// The pool's version in its registry (for psycopg, psycopg-pool's).
    #[arg(long, default_value = "latest")]
    version: String,
    /// Netsim seeds whose server faults to serve, A..B (B excluded).
    #[arg(long, value_parser = parse_range, default_value = "0..3")]
    seeds: Range<u64>,
    /// Seed report 001's fault (Bun.SQL): ReadyForQuery, FATAL 57P01 and FIN
    /// in one write to every connect for --faults-for (default 3 s), no
    /// role limit, no idle kill, no timed faults; then healed.
    #[arg(long, conflicts_with = "seed_000")]
    seed_001: bool,
    /// Seed report 000's server fault (Hatchet): the idle-session kill
    /// (57P05) after 1 s, met by a pool left idle for --idle-gap (default
    /// 2 s) once a 1 s warm-up is over; no other fault. The report's LISTEN
    /// sessions are not part of the drivers' workload.
    #[arg(long)]
    seed_000: bool,
    /// Passed to serve: sessions allowed per role (0: no limit).
    #[arg(long, value_name = "N")]
    role_limit: Option<u32>,
    /// Passed to serve: kill sessions idle this many seconds (0: off).
    #[arg(long, value_name = "S")]
    idle_timeout: Option<f64>,
    /// At the heal, every worker pauses this many seconds (the pool idle).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    idle_gap: f64,
    /// Passed to serve: every connect of the faults phase gets this fault.
    #[arg(long, value_name = "FAULT")]
    every_connect: Option<String>,
    /// Passed to serve: leave out the seed's terminate-alls and crashes.
    #[arg(long)]
    no_timed_faults: bool,
    /// Passed to serve: the faults phase lasts this many seconds.
    #[arg(long, value_name = "S")]
    faults_for: Option<f64>,
    /// The pool's max size (default: the seed's max_size).
    #[arg(long, value_name = "N")]
    pool_size: Option<usize>,
    /// Keep querying this long after the faults heal, in seconds.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    recover_for: f64,
    /// A query (or the pool's close) not settled within this is stalled.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    bound: f64,
    /// Serve on this port (default 0: a free one per seed).
    #[arg(long, default_value_t = 0)]
    port: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Eco {
    Pg,
    Psycopg,
    Bun,
}

impl Eco {
    fn name(self) -> &'static str {
        match self {
            Eco::Pg => "pg",
            Eco::Psycopg => "psycopg",
            Eco::Bun => "bun",
        }
    }
}

/// How to run an installed pool's driver.
struct Installed {
    version: String,
    program: PathBuf,
    args: Vec<PathBuf>,
    prefix: PathBuf,
}

pub fn run(mut args: Args) -> i32 {
    if args.seed_001 {
        args.every_connect = Some("ready-then-fin".to_owned());
        args.no_timed_faults = true;
        args.faults_for.get_or_insert(3.0);
        // The report's fault alone: the seed's other server faults off.
        args.role_limit.get_or_insert(0);
        args.idle_timeout.get_or_insert(0.0);
    }
    if args.seed_000 {
        args.every_connect = Some("normal".to_owned());
        args.no_timed_faults = true;
        args.faults_for.get_or_insert(1.0);
        args.role_limit.get_or_insert(0);
        args.idle_timeout.get_or_insert(1.0);
        if args.idle_gap == 0.0 {
            args.idle_gap = 2.0;
        }
    }
    if args.seeds.end - args.seeds.start > MAX_SEEDS {
        eprintln!(
            "error: at most {MAX_SEEDS} seeds per run (real time: each takes its faults phase and more)"
        );
        return 2;
    }
    for (what, v) in [("--recover-for", args.recover_for), ("--bound", args.bound)] {
        if !(v.is_finite() && v > 0.0 && v <= 60.0) {
            eprintln!("error: {what} must be between 0 and 60 seconds");
            return 2;
        }
    }
    if let Some(f) = args.faults_for
        && !(f.is_finite() && f > 0.0 && f <= 60.0)
    {
        eprintln!("error: --faults-for must be between 0 and 60 seconds");
        return 2;
    }
    for (what, v) in [
        ("--idle-gap", Some(args.idle_gap)),
        ("--idle-timeout", args.idle_timeout),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && (0.0..=60.0).contains(&v))
        {
            eprintln!("error: {what} must be between 0 and 60 seconds");
            return 2;
        }
    }
    let root = crate::project_root();
    let installed = match install(&root, args.name, &args.version) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    println!(
        "ecosystem {} {} (in {})",
        args.name.name(),
        installed.version,
        installed.prefix.display()
    );
    let xtask = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot find the xtask binary to run serve: {e}");
            return 1;
        }
    };
    let mut rows = Vec::new();
    let mut broke = false;
    for seed in args.seeds.clone() {
        let row = match run_seed(&args, &installed, &xtask, seed) {
            Ok(row) => row,
            Err(e) => {
                eprintln!("error: seed {seed}: {e}");
                return 1;
            }
        };
        broke |= row.outcome != "pass";
        println!(
            "  seed {seed}: {} ({:.1}s; server: {})",
            row.outcome,
            row.took.as_secs_f64(),
            row.served
        );
        rows.push(row);
    }
    println!();
    println!(
        "| seed | faults | outcome | queries ok/failed/stalled (faults; after heal) | what the pool's user saw |"
    );
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.seed, r.faults, r.outcome, r.counts, r.errors
        );
    }
    println!();
    println!(
        "{} {}: {} seed(s), {} with a broken invariant",
        args.name.name(),
        installed.version,
        rows.len(),
        rows.iter().filter(|r| r.outcome != "pass").count()
    );
    i32::from(broke)
}

struct Row {
    seed: u64,
    faults: String,
    outcome: String,
    counts: String,
    errors: String,
    /// Serve's count of connections, sessions and queries.
    served: String,
    took: Duration,
}

fn run_seed(args: &Args, installed: &Installed, xtask: &Path, seed: u64) -> Result<Row, String> {
    let started = now();
    let scenario = NetScenario::draw(seed, PoolKind::PoolTokio);
    let max = args.pool_size.unwrap_or(scenario.options.max_size).max(1);
    let faults_ms = args
        .faults_for
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(scenario.options.faults_ms);
    let heal_ms = heal_at(&scenario, args.no_timed_faults, faults_ms);
    let bound_ms = (args.bound * 1000.0) as u64;
    let recover_ms = (args.recover_for * 1000.0) as u64;
    let idle_ms = (args.idle_gap * 1000.0) as u64;
    // The driver's own phases, a last query in flight and the close (each
    // stalled at the bound plus 2 s), and the runtime's start; past this
    // the driver is killed and counted stalled.
    let driver_limit = Duration::from_millis(
        heal_ms + 500 + idle_ms + recover_ms + 2 * (bound_ms + 2_000) + 10_000,
    );

    let mut serve_args: Vec<String> = vec![
        "serve".into(),
        "--seed".into(),
        seed.to_string(),
        "--port".into(),
        args.port.to_string(),
        "--max-per-role".into(),
        max.to_string(),
        // A backstop only: we stop it with SIGINT once the driver is done.
        "--for".into(),
        format!("{}", driver_limit.as_secs() + 10),
    ];
    if let Some(f) = &args.every_connect {
        serve_args.extend(["--every-connect".into(), f.clone()]);
    }
    if args.no_timed_faults {
        serve_args.push("--no-timed-faults".into());
    }
    if let Some(f) = args.faults_for {
        serve_args.extend(["--faults-for".into(), format!("{f}")]);
    }
    if let Some(n) = args.role_limit {
        serve_args.extend(["--role-limit".into(), n.to_string()]);
    }
    if let Some(t) = args.idle_timeout {
        serve_args.extend(["--idle-timeout".into(), format!("{t}")]);
    }
    let faults = describe_faults(&scenario, args, faults_ms, heal_ms);

    let mut serve = Command::new(xtask)
        .args(&serve_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start serve: {e}"))?;
    let lines = lines_of(serve.stdout.take().expect("piped"));
    let serve_err = drain(serve.stderr.take().expect("piped"));
    let addr = match wait_for_addr(&lines, Duration::from_secs(10)) {
        Some(addr) => addr,
        None => {
            let _ = serve.kill();
            let _ = serve.wait();
            let err = serve_err.recv().unwrap_or_default();
            return Err(format!(
                "serve did not start: {}",
                err.trim().lines().next().unwrap_or("no output within 10 s")
            ));
        }
    };
    let port = addr.rsplit(':').next().unwrap_or_default().to_owned();

    let mut cmd = Command::new(&installed.program);
    cmd.args(&installed.args)
        .current_dir(crate::project_root())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .env("PGUSER", "proc0")
        .env("PGDATABASE", "sim")
        .env("EC_MAX", max.to_string())
        .env("EC_WORKERS", (max + 1).to_string())
        .env("EC_FAULT_MS", heal_ms.to_string())
        .env("EC_IDLE_MS", idle_ms.to_string())
        .env("EC_RECOVER_MS", recover_ms.to_string())
        .env("EC_BOUND_MS", bound_ms.to_string())
        .env("EC_PREFIX", &installed.prefix)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let driver = cmd.spawn();
    let result = match driver {
        Err(e) => Err(format!("cannot run {}: {e}", installed.program.display())),
        Ok(mut child) => {
            let out = drain(child.stdout.take().expect("piped"));
            let err = drain(child.stderr.take().expect("piped"));
            let finished = wait_bounded(&mut child, driver_limit);
            let out = out.recv().unwrap_or_default();
            let err = err.recv().unwrap_or_default();
            match (
                finished,
                out.lines().rev().find_map(|l| l.strip_prefix("RESULT ")),
            ) {
                (false, _) => Ok(None),
                (true, Some(json)) => serde_json::from_str::<Value>(json)
                    .map(Some)
                    .map_err(|e| format!("the driver's RESULT is not JSON ({e}): {json}")),
                (true, None) => Err(format!(
                    "the driver ended without a RESULT line; its stderr ends: {}",
                    tail(&err, 5)
                )),
            }
        }
    };
    // Give the server a moment to see the closed pool's FINs before it
    // counts the sessions left open.
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut serve);
    let serve_out: Vec<String> = lines.try_iter().collect();
    let result = result?;

    let mut outcome = Vec::new();
    let (counts, errors) = match &result {
        None => {
            outcome.push(format!(
                "waiter-stalled: the driver did not finish within {}s (killed)",
                driver_limit.as_secs()
            ));
            ("-".to_owned(), "-".to_owned())
        }
        Some(r) => judge(r, args.bound, &mut outcome),
    };
    let served = serve_out
        .iter()
        .map(|l| l.trim())
        .find_map(|l| l.strip_prefix("connections"))
        .map(|l| l.trim().to_owned())
        .unwrap_or_else(|| "no summary from serve".to_owned());
    for l in serve_out.iter().map(|l| l.trim()) {
        if l.starts_with("over-capacity FAIL") || (l.starts_with("footprint") && l.contains("FAIL"))
        {
            let l = l.split(';').next().unwrap_or(l);
            outcome.push(l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    Ok(Row {
        seed,
        faults,
        outcome: if outcome.is_empty() {
            "pass".to_owned()
        } else {
            outcome.join("; ")
        },
        counts,
        errors,
        served,
        took: started.elapsed(),
    })
}

/// The outcome by invariant from a driver's RESULT; returns the query counts
/// and the distinct error texts.
fn judge(r: &Value, bound: f64, outcome: &mut Vec<String>) -> (String, String) {
    if let Some(fatal) = r.get("fatal").and_then(Value::as_str) {
        outcome.push(format!("the pool could not be created: {fatal}"));
        return ("-".to_owned(), fatal.to_owned());
    }
    let n = |phase: &str, k: &str| r[phase][k].as_u64().unwrap_or(0);
    let stalled = n("faults", "stalled") + n("healed", "stalled");
    if stalled > 0 {
        outcome.push(format!(
            "waiter-stalled: {stalled} queries unanswered within {}s",
            bound + 2.0
        ));
    }
    // A 53300 after the heal is the role limit (a server fault that stays),
    // not a dead connection handed out.
    let ghost: u64 = r["healed"]["errors"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(text, _)| !text.contains("too many connections"))
                .map(|(_, c)| c.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    if ghost > 0 {
        outcome.push(format!(
            "ghost-idle: {ghost} of {} queries failed after the heal",
            n("healed", "ok") + n("healed", "failed") + n("healed", "stalled")
        ));
    }
    if r["recovered"] != Value::Bool(true) {
        outcome.push("not recovered".to_owned());
    }
    match r["closed"].as_str() {
        Some("ok") => {}
        Some(other) => outcome.push(format!("close {other}")),
        None => outcome.push("close: no answer".to_owned()),
    }
    let counts = format!(
        "{}/{}/{}; {}/{}/{}",
        n("faults", "ok"),
        n("faults", "failed"),
        n("faults", "stalled"),
        n("healed", "ok"),
        n("healed", "failed"),
        n("healed", "stalled")
    );
    let mut texts: BTreeMap<String, u64> = BTreeMap::new();
    for phase in ["faults", "healed"] {
        if let Some(m) = r[phase]["errors"].as_object() {
            for (t, c) in m {
                *texts.entry(t.clone()).or_default() += c.as_u64().unwrap_or(0);
            }
        }
    }
    if let Some(m) = r["poolErrors"].as_object() {
        for (t, c) in m {
            *texts.entry(format!("(pool error event) {t}")).or_default() += c.as_u64().unwrap_or(0);
        }
    }
    let mut texts: Vec<(String, u64)> = texts.into_iter().collect();
    texts.sort_by_key(|t| std::cmp::Reverse(t.1));
    let errors = if texts.is_empty() {
        "no error".to_owned()
    } else {
        texts
            .iter()
            .take(3)
            .map(|(t, c)| format!("\"{}\" ×{c}", t.replace('|', "/")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    (counts, errors)
}

/// The seed's server faults as served (after the command line's overrides).
/// When the server is healed: the end of the faults phase, or later when
/// crashes in it keep the port closed past it, so queries refused by a
/// closed port are not counted as after the heal. Serve takes its timed
/// faults one after another and sleeps through each crash before the next
/// event, so a crash due during another starts when that one ends.
fn heal_at(scenario: &NetScenario, no_timed_faults: bool, faults_ms: u64) -> u64 {
    if no_timed_faults {
        return faults_ms;
    }
    let mut free_at = 0;
    for e in scenario.plan.events.iter().filter(|e| e.at_ms < faults_ms) {
        if let Event::CrashDb { for_ms } = e.event {
            free_at = e.at_ms.max(free_at) + for_ms;
        }
    }
    faults_ms.max(free_at)
}

fn describe_faults(scenario: &NetScenario, args: &Args, faults_ms: u64, heal_ms: u64) -> String {
    let o = &scenario.options;
    let mut parts = Vec::new();
    match &args.every_connect {
        Some(f) => parts.push(format!("every connect {f}")),
        None => {
            let rtf = scenario
                .plan
                .connects
                .iter()
                .filter(|c| c.fault == PlannedFault::ReadyThenFin)
                .count();
            let hang = scenario
                .plan
                .connects
                .iter()
                .filter(|c| c.fault == PlannedFault::Hang)
                .count();
            let other = scenario.plan.connects.len() - rtf - hang;
            for (n, what) in [(rtf, "ready-then-fin"), (hang, "hang"), (other, "other")] {
                if n > 0 {
                    parts.push(format!("{n} {what}"));
                }
            }
        }
    }
    let role_limit = args.role_limit.unwrap_or(o.role_conn_limit);
    if role_limit > 0 {
        parts.push(format!("role limit {role_limit}"));
    }
    let idle_ms = args
        .idle_timeout
        .map(|t| (t * 1000.0) as u64)
        .unwrap_or(o.idle_session_timeout_ms);
    if idle_ms > 0 {
        parts.push(format!("idle kill {}", print::seconds(idle_ms)));
    }
    if !args.no_timed_faults {
        let (mut term, mut crash) = (0, 0);
        for e in &scenario.plan.events {
            if e.at_ms >= faults_ms {
                continue;
            }
            match e.event {
                Event::TerminateAll => term += 1,
                Event::CrashDb { .. } => crash += 1,
                _ => {}
            }
        }
        if term > 0 {
            parts.push(format!("{term} terminate-all"));
        }
        if crash > 0 {
            parts.push(format!("{crash} crash"));
        }
    }
    let max = args.pool_size.unwrap_or(o.max_size).max(1);
    format!(
        "{}; healed at {}; pool max {max}",
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        },
        print::seconds(heal_ms)
    ) + &if args.idle_gap > 0.0 {
        format!("; pool idle {}s at the heal", args.idle_gap)
    } else {
        String::new()
    }
}

/// Wall time: these are real processes on real sockets, so every bound
/// here is on the clock, not the simulation's virtual time.
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// Lines of a child's stdout as they come, so we can wait for serve's
/// address with a timeout and read its summary after it stops.
fn lines_of(out: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// All of a pipe, read on a thread so a chatty child never blocks on it.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

fn wait_for_addr(lines: &mpsc::Receiver<String>, limit: Duration) -> Option<String> {
    let deadline = now() + limit;
    loop {
        let left = deadline.checked_duration_since(now())?;
        let line = lines.recv_timeout(left).ok()?;
        if let Some(rest) = line.strip_prefix("serve: seed ")
            && let Some((_, addr)) = rest.split_once(" on ")
        {
            return Some(addr.trim().to_owned());
        }
    }
}

/// Waits for the child at most `limit`; kills it past that. True if it
/// ended by itself.
fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = now() + limit;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        if now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops serve as Ctrl-C would (SIGINT, so it prints its summary), and
/// kills it if it has not ended within 5 s.
fn stop(serve: &mut Child) {
    let _ = Command::new("kill")
        .args(["-INT", &serve.id().to_string()])
        .status();
    wait_bounded(serve, Duration::from_secs(5));
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs an install step; on failure, the error carries its output's tail.
fn step(what: &str, cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run {:?}: {e}", cmd.get_program()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            tail(&text, 20)
        ))
    }
}

fn require(program: &str, why: &str) -> Result<(), String> {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!(
            "`{program}` is not installed or does not run; {why}"
        )),
    }
}

/// Installs the pool at `version` into `target/ecosystems/<name>-<version>/`
/// unless already there (npm's versions resolved to the exact one first;
/// psycopg's as given, `latest` included, the installed one read after),
/// and says how to run its driver.
fn install(root: &Path, eco: Eco, version: &str) -> Result<Installed, String> {
    let base = root.join("target").join("ecosystems");
    let drivers = root.join("ecosystems");
    match eco {
        Eco::Pg | Eco::Bun => {
            require(
                "npm",
                "it installs pg and bun from npm (Debian: apt-get install npm)",
            )?;
            let package = if eco == Eco::Pg { "pg" } else { "bun" };
            // The exact version first, so `latest` gets its own directory
            // and the table names what ran.
            let exact = step(
                &format!("npm view {package}@{version}"),
                Command::new("npm").args(["view", &format!("{package}@{version}"), "version"]),
            )?;
            // A range answers with several `pkg@v 'v'` lines; take the newest.
            let exact = exact
                .lines()
                .last()
                .map(|l| {
                    l.rsplit(' ')
                        .next()
                        .unwrap_or(l)
                        .trim_matches('\'')
                        .trim()
                        .to_owned()
                })
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("npm has no {package}@{version}"))?;
            let prefix = base.join(format!("{}-{exact}", eco.name()));
            if !prefix.join(".installed").exists() {
                std::fs::create_dir_all(&prefix)
                    .map_err(|e| format!("cannot create {}: {e}", prefix.display()))?;
                // A package.json of its own, so npm installs here and not
                // into whatever project lies above.
                std::fs::write(prefix.join("package.json"), "{\"private\": true}\n")
                    .map_err(|e| format!("cannot write {}: {e}", prefix.display()))?;
                println!("installing {package}@{exact} into {} ...", prefix.display());
                step(
                    &format!("npm install {package}@{exact}"),
                    Command::new("npm")
                        .args([
                            "install",
                            "--no-audit",
                            "--no-fund",
                            &format!("{package}@{exact}"),
                        ])
                        .current_dir(&prefix),
                )?;
                let _ = std::fs::write(prefix.join(".installed"), &exact);
            }
            if eco == Eco::Pg {
                require("node", "pg.Pool's driver runs under node")?;
                return Ok(Installed {
                    version: exact,
                    program: "node".into(),
                    args: vec![drivers.join("pg").join("driver.mjs")],
                    prefix,
                });
            }
            // npm's `bun` ships the binary in the platform packages
            // (@oven/bun-linux-x64...) and, with its install script or
            // without, as bin/bun.exe; take the first that runs here.
            let candidates = [
                "node_modules/bun/bin/bun.exe",
                "node_modules/@oven/bun-linux-x64/bin/bun",
                "node_modules/@oven/bun-linux-x64-baseline/bin/bun",
                "node_modules/@oven/bun-linux-aarch64/bin/bun",
            ];
            let mut tried = Vec::new();
            for c in candidates {
                let path = prefix.join(c);
                match Command::new(&path).arg("--version").output() {
                    Ok(out) if out.status.success() => {
                        return Ok(Installed {
                            version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
                            program: path,
                            args: vec![drivers.join("bun").join("driver.mjs")],
                            prefix,
                        });
                    }
                    Ok(out) => tried.push(format!(
                        "{c}: {} {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                    Err(e) => tried.push(format!("{c}: {e}")),
                }
            }
            Err(format!(
                "no bun binary in {} runs here:\n  {}",
                prefix.display(),
                tried.join("\n  ")
            ))
        }
        Eco::Psycopg => {
            require("python3", "psycopg_pool's driver runs under python3")?;
            let spec = if version == "latest" {
                "psycopg-pool".to_owned()
            } else {
                format!("psycopg-pool=={version}")
            };
            let prefix = base.join(format!("psycopg-{version}"));
            let python = prefix.join("bin").join("python");
            if !prefix.join(".installed").exists() {
                println!(
                    "installing {spec} and psycopg[binary] into {} ...",
                    prefix.display()
                );
                step(
                    "python3 -m venv (Debian: apt-get install python3-venv)",
                    Command::new("python3").arg("-m").arg("venv").arg(&prefix),
                )?;
                step(
                    &format!("pip install {spec} psycopg[binary]"),
                    Command::new(&python).args([
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "-q",
                        "psycopg[binary]",
                        &spec,
                    ]),
                )?;
                let _ = std::fs::write(prefix.join(".installed"), &spec);
            }
            let exact = step(
                "reading the installed psycopg_pool's version",
                Command::new(&python).args([
                    "-c",
                    "import importlib.metadata as m; print(m.version('psycopg-pool'), 'with psycopg', m.version('psycopg'))",
                ]),
            )?;
            Ok(Installed {
                version: exact.trim().to_owned(),
                program: python,
                args: vec![drivers.join("psycopg").join("driver.py")],
                prefix,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_netsim::plan::TimedEvent;

    #[test]
    fn a_crash_due_during_another_starts_when_it_ends() {
        let mut scenario = NetScenario::draw(0, PoolKind::PoolTokio);
        scenario.plan.events = vec![
            TimedEvent {
                at_ms: 1_000,
                event: Event::CrashDb { for_ms: 3_000 },
            },
            TimedEvent {
                at_ms: 2_000,
                event: Event::CrashDb { for_ms: 3_000 },
            },
            // After the faults phase: serve never fires it.
            TimedEvent {
                at_ms: 6_000,
                event: Event::CrashDb { for_ms: 9_000 },
            },
        ];
        // Serve: the first crash 1..4 s, the second 4..7 s, heal at 7 s.
        assert_eq!(heal_at(&scenario, false, 5_000), 7_000);
        assert_eq!(heal_at(&scenario, true, 5_000), 5_000);
        scenario.plan.events.clear();
        assert_eq!(heal_at(&scenario, false, 5_000), 5_000);
    }

    fn result(healed_errors: Value, recovered: bool, closed: &str) -> Value {
        serde_json::json!({
            "faults": {"ok": 0, "failed": 3, "stalled": 0, "errors": {"x": 3}},
            "healed": {"ok": 1, "failed": 2, "stalled": 0, "errors": healed_errors},
            "poolErrors": {},
            "closed": closed,
            "recovered": recovered,
        })
    }

    #[test]
    fn a_wedged_pool_is_ghost_idle_not_recovered_and_close_stalled() {
        let mut outcome = Vec::new();
        let r = result(
            serde_json::json!({"connection must be a PostgresSQLConnection": 2}),
            false,
            "stalled (no answer in 7000 ms)",
        );
        let (counts, errors) = judge(&r, 5.0, &mut outcome);
        assert_eq!(
            outcome,
            vec![
                "ghost-idle: 2 of 3 queries failed after the heal",
                "not recovered",
                "close stalled (no answer in 7000 ms)"
            ]
        );
        assert_eq!(counts, "0/3/0; 1/2/0");
        assert!(errors.starts_with("\"x\" ×3"), "{errors}");
    }

    #[test]
    fn a_role_limit_refusal_after_the_heal_is_not_a_ghost() {
        let mut outcome = Vec::new();
        let r = result(
            serde_json::json!({"too many connections for role \"proc0\"": 2}),
            true,
            "ok",
        );
        judge(&r, 5.0, &mut outcome);
        assert!(outcome.is_empty(), "{outcome:?}");
    }
}
