//! `cargo xtask serve`: the fake PostgreSQL server on real loopback TCP with a netsim seed's faults, for pools that cannot run inside turmoil, and the server-side invariants when it stops.

use std::collections::BTreeMap;
use std::time::Duration;

use pool_netsim::loopback::LoopbackHost;
use pool_netsim::plan::{Event, NetScenario};
use pool_netsim::under_test::PoolKind;
use pool_netsim::{ConnectFault, FaultKind, Server};

use crate::print;

/// Serve the fake PostgreSQL server on 127.0.0.1 with the server-side
/// faults of a netsim seed (or faults named on the command line): its role connection limit (53300), its
/// idle-session kill (57P05), its connect faults (ReadyForQuery + FATAL
/// 57P01 + FIN in one write, hung handshakes) and, at their times from the
/// start, its terminate-alls (57P01) and db crashes (served as
/// PostgreSQL's immediate shutdown: a WARNING 57P01 notice to every
/// connection, FIN, the port closed for the crash's length). Partitions and resizes are the simulation's, not the server's,
/// and are skipped. After the seed's faults phase every connect is normal.
///
/// Clients connect with any role; each role stands for one of the seed's
/// processes (`procN` for process N, other roles in order of first connect)
/// and meets that process's planned connect faults.
///
/// On stop (`--for` elapsed or Ctrl-C) it prints the sessions each role
/// held at most against `--max-per-role`, the sessions still open, and the
/// connects the role limit refused; exit 1 if a role went over its max or
/// sessions were left open.
#[derive(clap::Args)]
pub struct Args {
    /// The netsim seed whose server faults to serve.
    #[arg(long)]
    seed: u64,
    /// Port on 127.0.0.1; 0 picks a free one (printed).
    #[arg(long, default_value_t = 5433)]
    port: u16,
    /// Stop after this many seconds (default: at Ctrl-C).
    #[arg(long = "for", value_name = "S", value_parser = parse_seconds)]
    for_secs: Option<Duration>,
    /// The most sessions a role may hold at once: the clients' pool size
    /// (default: the seed's max_size).
    #[arg(long, value_name = "N")]
    max_per_role: Option<usize>,
    /// Instead of the seed's: sessions allowed per role (0: no limit).
    #[arg(long, value_name = "N")]
    role_limit: Option<u32>,
    /// Instead of the seed's: kill sessions idle this many seconds (0: off).
    #[arg(long, value_name = "S", value_parser = parse_seconds_or_zero)]
    idle_timeout: Option<Duration>,
    /// Instead of the seed's connect faults: every connect of the faults
    /// phase gets this one (normal, hang, ready-then-fin, refuse-role).
    #[arg(long, value_name = "FAULT", value_parser = parse_connect_fault)]
    every_connect: Option<ConnectFault>,
    /// Instead of the seed's: how long the faults phase lasts, in seconds.
    #[arg(long, value_name = "S", value_parser = parse_seconds)]
    faults_for: Option<Duration>,
    /// Leave out the seed's timed faults (terminate-alls, crashes).
    #[arg(long)]
    no_timed_faults: bool,
}

fn parse_seconds_or_zero(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more)")),
    }
}

fn parse_connect_fault(s: &str) -> Result<ConnectFault, String> {
    match s {
        "normal" => Ok(ConnectFault::Normal),
        "hang" => Ok(ConnectFault::Hang),
        "ready-then-fin" => Ok(ConnectFault::ReadyThenFin),
        "refuse-role" => Ok(ConnectFault::RefuseRole),
        _ => Err(format!(
            "unknown connect fault `{s}`; one of normal, hang, ready-then-fin, refuse-role"
        )),
    }
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("`{s}` is not a positive number of seconds")),
    }
}

pub fn run(args: Args) -> i32 {
    let mut scenario = NetScenario::draw(args.seed, PoolKind::PoolTokio);
    // Faults named on the command line replace the seed's.
    if let Some(n) = args.role_limit {
        scenario.options.role_conn_limit = n;
    }
    if let Some(t) = args.idle_timeout {
        scenario.options.idle_session_timeout_ms = t.as_millis() as u64;
    }
    if let Some(t) = args.faults_for {
        scenario.options.faults_ms = t.as_millis() as u64;
    }
    if args.no_timed_faults {
        scenario.plan.events.clear();
    }
    let options = &scenario.options;
    let max_per_role = args.max_per_role.unwrap_or(options.max_size);
    if max_per_role == 0 {
        eprintln!("error: --max-per-role must be at least 1");
        return 2;
    }
    let server = Server::with_plan(
        options.server_config(),
        plan_by_role(&scenario, args.every_connect),
    );
    let host = match LoopbackHost::start(server.clone(), args.port) {
        Ok(host) => host,
        Err(e) => {
            eprintln!("error: {e}");
            if args.port != 0 {
                eprintln!("       pick another port with --port, or --port 0 for any free one");
            }
            return 1;
        }
    };
    let addr = host.addr();
    println!("serve: seed {} on {addr}", args.seed);
    println!(
        "  role limit        {}",
        match options.role_conn_limit {
            0 => "none".to_owned(),
            n => format!("{n} sessions per role (FATAL 53300 beyond)"),
        }
    );
    println!(
        "  idle-session kill {}",
        match options.idle_session_timeout_ms {
            0 => "off".to_owned(),
            ms => format!("after {} idle (FATAL 57P05)", print::seconds(ms)),
        }
    );
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for c in &scenario.plan.connects {
        *kinds.entry(format!("{:?}", c.fault)).or_default() += 1;
    }
    let planned: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    match args.every_connect {
        Some(fault) => println!("  connect faults    every connect: {fault:?}"),
        None => println!(
            "  connect faults    {} over the first {} connects of each of {} role(s)",
            if planned.is_empty() {
                "none".to_owned()
            } else {
                planned.join(", ")
            },
            pool_netsim::plan::PLANNED_CONNECTS,
            options.processes
        ),
    }
    let events: Vec<(Duration, Event)> = scenario
        .plan
        .events
        .iter()
        .filter(|e| matches!(e.event, Event::TerminateAll | Event::CrashDb { .. }))
        .map(|e| (Duration::from_millis(e.at_ms), e.event))
        .collect();
    println!(
        "  timed faults      {} terminate-all, {} crashes within the first {}; then healed",
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::TerminateAll))
            .count(),
        events
            .iter()
            .filter(|(_, e)| matches!(e, Event::CrashDb { .. }))
            .count(),
        print::seconds(options.faults_ms)
    );
    println!("  sessions per role must stay within {max_per_role} (--max-per-role)");
    println!(
        "  connect with: postgres://USER@{addr}/DB  (any user; stop with Ctrl-C{})",
        args.for_secs
            .map(|d| format!(" or after {:.1}s", d.as_secs_f64()))
            .unwrap_or_default()
    );

    let Some(runtime) = crate::tokio_runtime(None) else {
        return 1;
    };
    let faults_until = Duration::from_millis(options.faults_ms);
    let stopped_by = runtime.block_on(drive(&host, events, faults_until, args.for_secs));
    println!("serve: stopped ({stopped_by})");
    summary(&host.server().stats(), max_per_role)
}

/// The seed's connect faults, by role: `procN` is process N, any other role
/// the next process in order of first connect (wrapping).
fn plan_by_role(
    scenario: &NetScenario,
    every_connect: Option<ConnectFault>,
) -> impl FnMut(&pool_netsim::ConnectInfo) -> ConnectFault + Send + use<> {
    let planned = scenario.plan.connect_faults();
    let processes = scenario.options.processes.max(1);
    let mut process_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut connects_seen: BTreeMap<String, u32> = BTreeMap::new();
    move |info| {
        if let Some(fault) = every_connect {
            return fault;
        }
        let next = process_of.len() as u32 % processes;
        let process = *process_of.entry(info.role.clone()).or_insert_with(|| {
            info.role
                .strip_prefix("proc")
                .and_then(|p| p.parse().ok())
                .filter(|p| *p < processes)
                .unwrap_or(next)
        });
        let nth = connects_seen.entry(info.role.clone()).or_default();
        let fault = planned
            .get(&(process, *nth))
            .copied()
            .unwrap_or(ConnectFault::Normal);
        *nth += 1;
        fault
    }
}

/// Fires the timed faults at their times, heals at the end of the faults
/// phase, and returns why it stopped.
async fn drive(
    host: &LoopbackHost,
    events: Vec<(Duration, Event)>,
    faults_until: Duration,
    for_secs: Option<Duration>,
) -> String {
    let start = tokio::time::Instant::now();
    let end = for_secs.map(|d| start + d);
    let mut events = events.into_iter().peekable();
    let mut healed = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next_at = match (events.peek(), healed) {
            (Some((at, _)), _) if *at < faults_until => start + *at,
            (_, false) => start + faults_until,
            (_, true) => start + Duration::from_secs(86_400 * 365),
        };
        let until_end = async {
            match end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut ctrl_c => return "Ctrl-C".to_owned(),
            () = until_end => return format!("--for {:.1}s elapsed", for_secs.unwrap_or_default().as_secs_f64()),
            () = tokio::time::sleep_until(next_at) => {}
        }
        let elapsed = print::seconds(start.elapsed().as_millis() as u64);
        match events.next_if(|(at, _)| *at < faults_until && start + *at <= next_at) {
            Some((_, Event::TerminateAll)) => {
                let n = host.server().terminate_all();
                println!("  {elapsed:>8}  terminate-all: {n} connection(s) get FATAL 57P01");
            }
            Some((_, Event::CrashDb { for_ms })) => {
                let n = host.server().stats().connections_open;
                host.crash().await;
                println!(
                    "  {elapsed:>8}  crash: {n} connection(s) get WARNING 57P01 (immediate shutdown), port closed for {}",
                    print::seconds(for_ms)
                );
                tokio::time::sleep(Duration::from_millis(for_ms)).await;
                if let Err(e) = host.restart().await {
                    return format!("the restart failed: {e}");
                }
            }
            Some(_) => {}
            None => {
                host.server().set_plan(|_| ConnectFault::Normal);
                healed = true;
                println!("  {elapsed:>8}  faults healed: every connect is normal from now on");
            }
        }
    }
}

/// Prints the server-side invariants; 0 if they hold, 1 if not.
fn summary(stats: &pool_netsim::ServerStats, max_per_role: usize) -> i32 {
    println!("summary:");
    println!(
        "  connections   {} accepted, {} sessions started, {} queries",
        stats.accepted, stats.sessions_started, stats.queries
    );
    let mut failed = false;
    if stats.peak_sessions_by_role.is_empty() {
        println!("  over-capacity ok: no session was started");
    }
    for (role, peak) in &stats.peak_sessions_by_role {
        let over = *peak > max_per_role;
        failed |= over;
        println!(
            "  over-capacity {}: role {role} held at most {peak} sessions at once (max {max_per_role})",
            if over { "FAIL" } else { "ok" }
        );
    }
    if stats.sessions_open == 0 {
        println!("  footprint     ok: no session left open at stop");
    } else {
        failed = true;
        let left: Vec<String> = stats
            .sessions_by_role
            .iter()
            .map(|(role, n)| format!("{role} {n}"))
            .collect();
        println!(
            "  footprint     FAIL: {} session(s) still open at stop ({}); stop the server after the clients have gone",
            stats.sessions_open,
            left.join(", ")
        );
    }
    println!(
        "  role limit    {} connect(s) refused with 53300",
        stats.fault_count(FaultKind::RefuseRole)
    );
    let fired: Vec<String> = stats
        .faults
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "  faults fired  {}",
        if fired.is_empty() {
            "none".to_owned()
        } else {
            fired.join(", ")
        }
    );
    i32::from(failed)
}
