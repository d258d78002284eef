// The workload every JavaScript driver runs (pg.Pool under node, Bun.SQL
// under bun), so their results compare: fill the pool, keep querying while
// the server's faults are on, keep querying after they heal, close.
//
// Settings come from the environment (`cargo xtask ecosystem` sets them):
//   PGHOST PGPORT PGUSER PGDATABASE   where the fake server listens
//   EC_MAX        the pool's max size (the server's --max-per-role)
//   EC_WORKERS    concurrent query loops (max + 1, so one always waits)
//   EC_FAULT_MS   how long the server's faults phase lasts
//   EC_RECOVER_MS how long to keep querying once the faults are healed
//   EC_BOUND_MS   the pool's own timeouts; a query not settled within
//                 this plus 2 s is waiter-stalled (the project's rule)
//   EC_IDLE_MS    at the heal, every worker pauses this long, so the
//                 server's idle-session kill (Hatchet, seed 000) meets an
//                 idle pool; the first queries after it show what the pool
//                 hands out
// The last stdout line is `RESULT {json}`; the xtask reads only that.

const env = (k, d) => (process.env[k] === undefined ? d : process.env[k]);
export const cfg = {
  host: env("PGHOST", "127.0.0.1"),
  port: Number(env("PGPORT", "5433")),
  user: env("PGUSER", "proc0"),
  database: env("PGDATABASE", "sim"),
  max: Number(env("EC_MAX", "2")),
  workers: Number(env("EC_WORKERS", "3")),
  faultMs: Number(env("EC_FAULT_MS", "3000")),
  recoverMs: Number(env("EC_RECOVER_MS", "3000")),
  boundMs: Number(env("EC_BOUND_MS", "5000")),
  idleMs: Number(env("EC_IDLE_MS", "0")),
};
// The pool's own bound plus 2 s, as docs/testing-other-pools.md words
// waiter-stalled: a pool that times out at its bound is not stalled.
const stallMs = () => cfg.boundMs + 2000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const STALLED = Symbol("stalled");
// A bound on a promise without cancelling it: the pools have no common
// cancel, and an abandoned query is exactly what a user's timeout leaves.
const bounded = (p, ms) => {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((r) => { t = setTimeout(() => r(STALLED), ms); }),
  ]);
};

// One line per distinct error text, so a wedged pool's thousand identical
// failures read as one row.
const text = (e) => String((e && e.message) || e).split("\n")[0].slice(0, 160);

export async function run({ pool, version, create, query, close }) {
  const phase = (name) => ({ name, ok: 0, failed: 0, stalled: 0, errors: {} });
  const faults = phase("faults");
  const healed = phase("healed");
  let current = faults;
  const sink = { poolErrors: {} };
  let p;
  try {
    p = create(cfg, (e) => {
      const k = text(e);
      sink.poolErrors[k] = (sink.poolErrors[k] || 0) + 1;
    });
  } catch (e) {
    return report({ pool, version, fatal: "create: " + text(e) });
  }
  const t0 = Date.now();
  // The heal is the server's; half a second after it the pool has had
  // time to see that connects work again.
  const healAt = t0 + cfg.faultMs + 500;
  const resumeAt = healAt + cfg.idleMs;
  const endAt = resumeAt + cfg.recoverMs;
  let lastHealed = [];
  const worker = async (w) => {
    while (Date.now() < endAt) {
      if (Date.now() >= healAt && Date.now() < resumeAt) {
        await sleep(resumeAt - Date.now());
        continue;
      }
      const ph = Date.now() >= healAt ? healed : faults;
      current = ph;
      let r;
      try {
        r = await bounded(query(p).then(() => "ok"), stallMs());
      } catch (e) {
        r = e;
      }
      if (r === "ok") ph.ok++;
      else if (r === STALLED) ph.stalled++;
      else {
        ph.failed++;
        const k = text(r);
        ph.errors[k] = (ph.errors[k] || 0) + 1;
      }
      if (ph === healed) lastHealed.push(r === "ok");
      await sleep(50);
    }
  };
  await Promise.all(Array.from({ length: cfg.workers }, (_, w) => worker(w)));
  void current;
  let closed;
  try {
    const r = await bounded(close(p).then(() => "ok"), stallMs());
    closed = r === STALLED ? `stalled (no answer in ${stallMs()} ms)` : "ok";
  } catch (e) {
    closed = "error: " + text(e);
  }
  // Recovered: the last round (one query per worker) after the heal all ran.
  const tail = lastHealed.slice(-cfg.workers);
  return report({
    pool, version, faults, healed, poolErrors: sink.poolErrors, closed,
    recovered: tail.length > 0 && tail.every(Boolean),
  });
}

function report(r) {
  console.log("RESULT " + JSON.stringify(r));
  // Leave at once: a wedged pool may hold timers or sockets that keep the
  // event loop alive, and the xtask bounds us anyway.
  process.exit(0);
}
