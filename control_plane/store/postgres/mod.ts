/**
 * The PostgreSQL adapter of the store port (ADR 0008): {@link openPostgresStore}.
 *
 * - Transactions: `READ COMMITTED` on a pooled connection (`read`: `REPEATABLE
 *   READ READ ONLY`); rows locked where a repository method says so; claims,
 *   reaps and due approvals skip locked rows.
 * - Roles (`lead`): `pg_try_advisory_xact_lock` on a key of the role and the
 *   schema; agents (`lockAgent`): `pg_advisory_xact_lock`.
 * - Wake-ups: `pg_notify('plm_wake', '<schema>/<topic>')` at commit, heard by
 *   one `LISTEN` connection per store (reconnecting with backoff, then
 *   `"reconnected"`); this process's own listeners hear their commits at once.
 * - Audit (`"seal"` chaining): writers insert records keyed by `(tx, id)`;
 *   the elected sealer takes them in that order below a horizon. Every
 *   connection of the store carries the `application_name` `plm:<schema>`;
 *   the horizon is the least transaction running at the sealer's snapshot
 *   that is not known to be someone else's (`pg_stat_activity` shows it under
 *   another name). It is never above the transaction id of a writer still
 *   running, so no row can appear below what was sealed, and a long
 *   transaction of another schema or database does not stall sealing (the
 *   server-wide `xmin` would).
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { type Clock, PlmError, systemClock, systemTimer, type Timer } from "../../../shared/mod.ts";
import type { Store } from "../port.ts";
import { toPlmError } from "./_errors.ts";
import { storeApplicationName } from "./_repositories.ts";
import { PostgresStore } from "./_store.ts";
import { WakeListener } from "./_wake.ts";
import { migratePostgres, type Migration, POSTGRES_MIGRATIONS } from "./migrations.ts";

export { POSTGRES_MIGRATIONS };
export { redactUrls } from "./_errors.ts";
export type { Migration };

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions {
  /**
   * A schema to work in: created if missing and set as the `search_path` of
   * every connection (tests give each store a schema of its own).
   *
   * @default {undefined} (the server's `search_path`)
   */
  readonly schema?: string;
  /**
   * The most connections the pool opens (the wake listener takes one more).
   *
   * @default {10}
   */
  readonly poolSize?: number;
  /**
   * Never create, write or migrate: the schema must be current, and every
   * write fails with `ERR_STORE_READ_ONLY`.
   *
   * @default {false}
   */
  readonly readOnly?: boolean;
  /**
   * The clock that stamps `schema_migrations.applied_at`.
   *
   * @default {systemClock}
   */
  readonly clock?: Clock;
  /**
   * The migrations to apply (tests of upgrades pass a prefix or an extension).
   *
   * @default {POSTGRES_MIGRATIONS}
   */
  readonly migrations?: readonly Migration[];
  /**
   * The timer the wake listener waits on between reconnection attempts.
   *
   * @default {systemTimer}
   */
  readonly timer?: Timer;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
const INT8_OID = 20;

/** int8 (`bigint`, `count(*)`) as a number: every one the store keeps is an epoch ms or a count. */
const TYPES = {
  getTypeParser(oid: number, format?: string) {
    if (oid === INT8_OID && format !== "binary") return (value: string) => Number(value);
    return (pg.types.getTypeParser as (oid: number, format?: string) => unknown)(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

/**
 * Opens a PostgreSQL store at `url`: a connection pool, the schema migrated to
 * the latest version (under an advisory lock, so concurrent opens do not
 * race), `"seal"` audit chaining, roles by advisory transaction locks and
 * wake-ups by `LISTEN/NOTIFY` on `plm_wake`. `openStore` calls it for
 * `postgres://` and `postgresql://` locations.
 *
 * @param url A `postgres://` or `postgresql://` connection URL.
 * @param options The schema, pool size, read-only mode, clock, migrations and timer.
 * @returns The open store; close it (or `await using` it).
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` for a URL that is not `postgres://`, a bad
 * `schema` or `poolSize`; `ERR_STORE_UNAVAILABLE` when the server cannot be reached or
 * refuses the login; `ERR_STORE_SCHEMA_TOO_NEW` for a database at a newer schema;
 * read-only: `ERR_STORE_NOT_FOUND` (no schema) or `ERR_STORE_SCHEMA_TOO_OLD`;
 * `ERR_STORE_MIGRATION_FAILED` when a migration fails.
 *
 * @example A URL that is not PostgreSQL's is refused before connecting
 * ```ts
 * import { openPostgresStore } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(openPostgresStore("mysql://db/plm"), { code: "ERR_INVALID_ARGUMENT" });
 * await assert.rejects(openPostgresStore("postgres://db/plm", { schema: "No-Such" }), {
 *   code: "ERR_INVALID_ARGUMENT",
 * });
 * ```
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<Store> {
  const {
    schema,
    poolSize = 10,
    readOnly = false,
    clock = systemClock,
    migrations = POSTGRES_MIGRATIONS,
    timer = systemTimer,
  } = options;
  if (typeof url !== "string" || !/^postgres(?:ql)?:\/\//i.test(url)) {
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      "url: expected a postgres:// or postgresql:// connection URL",
    );
  }
  // The store's own connection settings must hold: the sealer tells the store's transactions
  // by their application_name, and the schema comes in through options. pg lets the URL's
  // parameters override the configuration, so a URL that sets them is refused (fail closed:
  // a foreign application_name would let the sealer pass over a transaction still writing).
  let params: URLSearchParams;
  try {
    params = new URL(url.replace(/^postgres(?:ql)?:/i, "http:")).searchParams;
  } catch {
    throw new PlmError("ERR_INVALID_ARGUMENT", "url: not a valid connection URL");
  }
  for (const name of ["application_name", "options", "fallback_application_name"]) {
    if (params.has(name)) {
      throw new PlmError(
        "ERR_INVALID_ARGUMENT",
        `url: the store sets ${name} itself; remove it from the connection URL`,
      );
    }
  }
  if (schema !== undefined && !SCHEMA_NAME.test(schema)) {
    throw new PlmError(
      "ERR_INVALID_ARGUMENT",
      "schema: expected a lowercase identifier of at most 63 characters",
    );
  }
  if (!Number.isInteger(poolSize) || poolSize < 1 || poolSize > 1_000) {
    throw new PlmError("ERR_INVALID_ARGUMENT", "poolSize: expected an integer from 1 to 1000");
  }
  const settings = [
    // Statements are prepared once per connection (see _store.ts), and planned at every
    // execution with its values: a generic plan of "($1 IS NULL OR run_id = $1)" would
    // read the whole table where the values allow an index.
    "-c plan_cache_mode=force_custom_plan",
    ...(schema === undefined ? [] : [`-c search_path=${schema}`]),
    ...(readOnly ? ["-c default_transaction_read_only=on"] : []),
  ];
  const config: pg.ClientConfig = {
    connectionString: url,
    types: TYPES,
    application_name: storeApplicationName(schema),
    options: settings.join(" "),
  };
  const pool = new pg.Pool({ ...config, max: poolSize });
  // An idle connection the server drops is removed from the pool; without a
  // listener the error would end the process.
  pool.on("error", () => {});
  // The backends of this pool: the wake listener drops their notifications'
  // echo, delivered in-process at commit.
  const ownPids = new Set<number>();
  const pidOf = (client: pg.PoolClient) => (client as unknown as { processID?: number }).processID;
  pool.on("connect", (client) => {
    // A checked-out connection the server drops fails its query; the event
    // itself must not end the process.
    client.on("error", () => {});
    const pid = pidOf(client);
    if (pid !== undefined) ownPids.add(pid);
  });
  pool.on("remove", (client) => {
    const pid = pidOf(client);
    if (pid !== undefined) ownPids.delete(pid);
  });
  try {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await migratePostgres(client, {
        migrations,
        ...(schema === undefined ? {} : { schema }),
        now: () => clock.now(),
        readOnly,
      });
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error));
      throw error;
    } finally {
      client.release(broken);
    }
  } catch (error) {
    await pool.end().catch(() => {});
    throw toPlmError(error, url);
  }
  return new PostgresStore(url, pool, new WakeListener(config, timer, ownPids), readOnly, timer);
}
