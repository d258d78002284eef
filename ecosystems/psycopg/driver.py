"""psycopg_pool's AsyncConnectionPool under the workload of ../common.mjs.

The same phases, settings (environment) and `RESULT {json}` last line as
the JavaScript drivers, so `cargo xtask ecosystem` reads all three alike.
"""

import asyncio
import importlib.metadata
import json
import os
import sys
import time

import psycopg
import psycopg_pool


def env(k, d):
    return os.environ.get(k, d)


HOST = env("PGHOST", "127.0.0.1")
PORT = int(env("PGPORT", "5433"))
USER = env("PGUSER", "proc0")
DB = env("PGDATABASE", "sim")
MAX = int(env("EC_MAX", "2"))
WORKERS = int(env("EC_WORKERS", "3"))
FAULT_MS = int(env("EC_FAULT_MS", "3000"))
RECOVER_MS = int(env("EC_RECOVER_MS", "3000"))
BOUND_MS = int(env("EC_BOUND_MS", "5000"))
IDLE_MS = int(env("EC_IDLE_MS", "0"))
# The pool's own bound plus 2 s: the project's waiter-stalled rule.
STALL_S = BOUND_MS / 1000 + 2


def text(e):
    s = str(e).split("\n")[0][:160]
    return s or type(e).__name__


def phase(name):
    return {"name": name, "ok": 0, "failed": 0, "stalled": 0, "errors": {}}


async def main():
    version = importlib.metadata.version("psycopg-pool")
    conninfo = f"host={HOST} port={PORT} user={USER} dbname={DB} sslmode=disable"
    # ClientCursor: the simple query protocol for a query without
    # parameters, all the fake server speaks. The pool is the library's
    # default shape otherwise (fixed size, no check on getconn).
    pool = psycopg_pool.AsyncConnectionPool(
        conninfo,
        min_size=MAX,
        max_size=MAX,
        timeout=BOUND_MS / 1000,
        kwargs={"cursor_factory": psycopg.AsyncClientCursor, "connect_timeout": max(1, BOUND_MS // 1000)},
        open=False,
    )
    faults, healed = phase("faults"), phase("healed")
    t0 = time.monotonic()
    heal_at = t0 + FAULT_MS / 1000 + 0.5
    resume_at = heal_at + IDLE_MS / 1000
    end_at = resume_at + RECOVER_MS / 1000
    last_healed = []
    try:
        # open(wait=False): a pool that cannot fill still serves waiters,
        # which is how an application starts it during an outage.
        await pool.open(wait=False)
    except Exception as e:  # noqa: BLE001 - report whatever the user saw
        return report({"pool": "psycopg_pool", "version": version, "fatal": "open: " + text(e)})

    async def one():
        async with pool.connection() as conn:
            await conn.execute("SELECT 1 AS n")

    async def worker():
        while time.monotonic() < end_at:
            if heal_at <= time.monotonic() < resume_at:
                await asyncio.sleep(resume_at - time.monotonic())
                continue
            ph = healed if time.monotonic() >= heal_at else faults
            ok = False
            try:
                await asyncio.wait_for(one(), STALL_S)
                ph["ok"] += 1
                ok = True
            except asyncio.TimeoutError:
                ph["stalled"] += 1
            except Exception as e:  # noqa: BLE001
                ph["failed"] += 1
                k = text(e)
                ph["errors"][k] = ph["errors"].get(k, 0) + 1
            if ph is healed:
                last_healed.append(ok)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    try:
        await asyncio.wait_for(pool.close(timeout=1), STALL_S)
        closed = "ok"
    except asyncio.TimeoutError:
        closed = f"stalled (no answer in {STALL_S * 1000:.0f} ms)"
    except Exception as e:  # noqa: BLE001
        closed = "error: " + text(e)
    tail = last_healed[-WORKERS:]
    report({
        "pool": "psycopg_pool",
        "version": version,
        "faults": faults,
        "healed": healed,
        "poolErrors": {},
        "closed": closed,
        "recovered": bool(tail) and all(tail),
    })


def report(r):
    print("RESULT " + json.dumps(r), flush=True)
    # Leave at once, as the JavaScript drivers do: a stuck pool thread must
    # not keep us alive (the xtask bounds us anyway).
    os._exit(0)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
