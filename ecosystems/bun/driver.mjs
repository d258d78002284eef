// Bun.SQL's pool under the shared workload (../common.mjs); run with the
// bun binary the xtask installed from npm.
import { SQL } from "bun";
import { run } from "../common.mjs";

await run({
  pool: "Bun.SQL",
  version: Bun.version,
  create: (cfg) =>
    new SQL({
      adapter: "postgres",
      hostname: cfg.host, port: cfg.port, username: cfg.user, database: cfg.database,
      max: cfg.max,
      connectionTimeout: Math.ceil(cfg.boundMs / 1000),
      tls: false,
    }),
  // `.simple()`: the simple query protocol, all the fake server speaks (and
  // what pg.Pool and psycopg's ClientCursor send for a query without
  // parameters), so every pool meets the same server.
  query: (sql) => sql`SELECT 1 AS n`.simple(),
  close: (sql) => sql.close({ timeout: 1 }),
});
