// node-postgres's pg.Pool under the shared workload (../common.mjs).
import { createRequire } from "node:module";
import { run } from "../common.mjs";

// The xtask installs pg under EC_PREFIX (target/ecosystems/pg-<version>/).
const require = createRequire(process.env.EC_PREFIX + "/node_modules/");
const pg = require("pg");
const version = require("pg/package.json").version;

await run({
  pool: "pg.Pool",
  version,
  create: (cfg, onPoolError) => {
    const pool = new pg.Pool({
      host: cfg.host, port: cfg.port, user: cfg.user, database: cfg.database,
      max: cfg.max,
      connectionTimeoutMillis: cfg.boundMs,
    });
    // Without a listener, an idle client's error (a server-side kill)
    // crashes node; every pg.Pool user has to add one.
    pool.on("error", onPoolError);
    return pool;
  },
  query: (pool) => pool.query("SELECT 1 AS n"),
  close: (pool) => pool.end(),
});
