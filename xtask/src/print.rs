//! Shared output: the options a seed drew, run summaries, failure reports.

use pool_sim::{Invariant, Keep, Outcome, Report, Swarm};

/// One line per option group: `pool: max_size=3 min_idle=0 ...`.
pub fn options(swarm: &Swarm) -> String {
    let mut out = String::from("options drawn from the seed:\n");
    let groups: [(&str, toml::Value); 4] = [
        ("pool", to_value(&swarm.pool)),
        ("world", to_value(&swarm.world)),
        ("workload", to_value(&swarm.workload)),
        ("faults", to_value(&swarm.faults)),
    ];
    for (name, value) in groups {
        out.push_str(&format!("  {name:<9} {}\n", key_values(&value)));
    }
    out
}

fn to_value<T: serde::Serialize>(v: &T) -> toml::Value {
    toml::Value::try_from(v).expect("options serialize")
}

/// A table as `key=value key=value ...` on one line.
pub fn key_values(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => t
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// The summary block of a run.
pub fn summary(report: &Report) -> String {
    let c = &report.counters;
    let mut out = String::from("summary:\n");
    out.push_str(&format!(
        "  outcome       {}\n",
        outcome_line(&report.outcome)
    ));
    out.push_str(&format!(
        "  events        {} steps ({} skipped), {} timer firings, {} pool inputs, {} commands\n",
        c.steps, c.skipped, c.timeouts, c.inputs, c.commands
    ));
    out.push_str(&format!(
        "  virtual time  {}\n",
        seconds(report.end.as_millis())
    ));
    out.push_str(&format!(
        "  trace         {} lines, hash {:016x}\n",
        report.trace_lines, report.trace_hash
    ));
    out.push_str("  checks        ");
    let checks: Vec<String> = Invariant::ALL
        .iter()
        .zip(c.checks.iter())
        .map(|(i, n)| format!("{i} {n}"))
        .collect();
    out.push_str(&wrap(&checks, 16));
    if c.faults.is_empty() {
        out.push_str("  faults fired  none\n");
    } else {
        let faults: Vec<String> = c.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!("  faults fired  {}\n", faults.join(", ")));
    }
    let s = &report.pool_stats;
    out.push_str(&format!(
        "  pool          opened {} connected {} failed {} aborted {} disconnected {} granted {} rejected {} (timeout {}) detached {} stale {} unknown {}\n",
        s.opened,
        s.connected,
        s.connect_failures,
        s.aborted,
        s.disconnected,
        s.granted,
        s.rejected,
        s.timed_out,
        s.detached,
        s.stale_events,
        s.unknown_events
    ));
    out
}

fn wrap(items: &[String], indent: usize) -> String {
    let mut out = String::new();
    let mut width = indent;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            if width + item.len() + 2 > 100 {
                out.push_str(",\n");
                out.push_str(&" ".repeat(indent));
                width = indent;
            } else {
                out.push_str(", ");
                width += 2;
            }
        }
        out.push_str(item);
        width += item.len();
    }
    out.push('\n');
    out
}

pub fn outcome_line(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass => "pass".to_owned(),
        Outcome::Violated(v) => format!(
            "FAIL: {} ({:?}) at t={}",
            v.invariant,
            v.invariant.kind(),
            v.at
        ),
        Outcome::Panicked { at, message } => format!("PANIC at t={at}: {message}"),
        Outcome::Script(stop) => format!("FAIL: {}", script_stop(stop)),
    }
}

/// A script's stop: which step, on which line, and why.
pub fn script_stop(stop: &pool_sim::scenario::ScriptStop) -> String {
    use pool_sim::scenario::StopKind;
    let what = match stop.kind {
        StopKind::Assertion => "assertion failed",
        StopKind::Skipped => "step resolved to nothing",
        StopKind::Unresolved => "step did not resolve",
    };
    let line = stop.line.map(|l| format!("line {l}, ")).unwrap_or_default();
    format!("{what} ({line}step {}): {}", stop.step, stop.message)
}

/// What a person needs when a run fails: what broke, when, the story so far.
pub fn failure(report: &Report) -> String {
    let mut out = String::new();
    match &report.outcome {
        Outcome::Pass => return out,
        Outcome::Violated(v) => {
            out.push_str(&format!(
                "\n{} violated ({:?}) at virtual time {}:\n  {}\n",
                v.invariant,
                v.invariant.kind(),
                v.at,
                v.detail
            ));
        }
        Outcome::Panicked { at, message } => {
            out.push_str(&format!("\npanic at virtual time {at}:\n  {message}\n"));
        }
        Outcome::Script(stop) => {
            out.push_str(&format!("\n{}\n", script_stop(stop)));
        }
    }
    out.push_str(&format!("\nlast {} trace lines:\n", report.tail.len()));
    for line in &report.tail {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

/// The end of a batch that failed (`sweep`, `netsim`): the command that
/// reproduces each of the first `show` failures, with what it showed, and
/// how many more there are. `line` gives a failure's (command, outcome).
pub fn reproduce_list<T>(failures: &[T], show: usize, line: impl Fn(&T) -> (String, String)) {
    println!("\nreproduce:");
    for f in failures.iter().take(show) {
        let (command, outcome) = line(f);
        println!("  {command}    # {outcome}");
    }
    if failures.len() > show {
        println!(
            "  ... and {} more (--show N lists more)",
            failures.len() - show
        );
    }
}

pub fn seconds(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

/// What a recorded step resolved to, as a comment for scenario files.
pub fn target_note(target: &pool_sim::Target) -> String {
    use pool_sim::Target;
    match target {
        Target::World => String::new(),
        Target::Client {
            client,
            request,
            conn,
        } => {
            let mut s = format!("client {client}");
            if let Some(r) = request {
                s.push_str(&format!(" {r}"));
            }
            if let Some(c) = conn {
                s.push_str(&format!(" {c}"));
            }
            s
        }
        Target::Conn(p, c) => pool_sim::world::Qualified(*p, *c).to_string(),
        Target::Pool(p) => format!("P{p}"),
        Target::Signal(s) => s.to_string(),
        Target::Skipped(why) => format!("skipped: {why}"),
    }
}

/// What of the trace a run keeps: every line echoed as it happens with
/// --verbose, every line kept for --perfetto, else only the tail a failure
/// report shows.
pub fn keep(verbose: bool, perfetto: bool) -> Keep {
    match (verbose, perfetto) {
        (true, _) => Keep::Echo,
        (false, true) => Keep::All,
        (false, false) => Keep::Tail,
    }
}

/// Write a run's trace as Chrome Trace Event JSON; `Err` carries the exit
/// code after saying what went wrong.
pub fn write_perfetto(path: &std::path::Path, report: &Report) -> Result<(), i32> {
    let json = pool_sim::perfetto::chrome_trace(&report.trace);
    match std::fs::write(path, json) {
        Ok(()) => {
            println!(
                "wrote {} ({} trace lines): open it in https://ui.perfetto.dev",
                path.display(),
                report.trace.len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            Err(1)
        }
    }
}
