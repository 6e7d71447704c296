/**
 * The forward-only schema migrations of the PostgreSQL store, embedded in code,
 * and {@link migratePostgres}, which applies them under an advisory lock.
 *
 * The tables mean what the SQLite store's do (`control_plane/store/migrations.ts`),
 * with two differences of design (ADR 0008): runs carry a `lease_token`, and the
 * audit log is chained by insert-only deferred sealing: `audit_log` holds the
 * records as written, keyed by `(tx, id)` (the writing transaction's id and a
 * sequence), `audit_seal` one row per chained record, and `audit_head` the
 * watermark the sealer moves.
 *
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { PlmError } from "../../../shared/mod.ts";
import type { Migration } from "../migrations.ts";

export type { Migration };

/** The prefix of the error every append-only guard raises (the SQLite triggers' code). */
export const APPEND_ONLY_CODE = "ERR_AUDIT_APPEND_ONLY";

/** The append-only guards: statement triggers on the audit tables. */
export const AUDIT_GUARDS: readonly { readonly name: string; readonly table: string }[] = Object
  .freeze([
    { name: "audit_log_append_only", table: "audit_log" },
    { name: "audit_seal_append_only", table: "audit_seal" },
  ]);

/**
 * Every PostgreSQL migration the code knows, oldest first. Append new entries at
 * the end with the next version number; never edit or reorder a published one.
 *
 * - 1 `initial`: `runs` (with `lease_token` and the ready-queue indexes),
 *   `approvals` and `approval_decisions`, `autonomy_state` and
 *   `agent_run_starts`, and the audit tables `audit_log`, `audit_seal` and
 *   `audit_head`, whose records and seals statement triggers keep append-only
 *   (`UPDATE`, `DELETE` and `TRUNCATE` raise `ERR_AUDIT_APPEND_ONLY`).
 * - 2 `policy_versions`: the versions of the policy set, as SQLite's
 *   migration 7: `version` is the primary key, so two concurrent applies
 *   cannot both store version N (the second's insert does nothing, and it
 *   retries with the next number); rows are insert-only, as the audit tables.
 *
 * @example The versions run from 1 without gaps
 * ```ts
 * import { POSTGRES_MIGRATIONS } from "./migrations.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(POSTGRES_MIGRATIONS.every((m, i) => m.version === i + 1));
 * ```
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: "initial",
    sql: `
CREATE TABLE runs (
  id text COLLATE "C" PRIMARY KEY,
  state text NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  task text NOT NULL,
  requester text NOT NULL,
  idempotency_key text UNIQUE,
  request_digest text NOT NULL,
  traceparent text NOT NULL,
  tracestate text NOT NULL,
  attempt integer NOT NULL,
  escalations integer NOT NULL,
  cost_units double precision NOT NULL,
  agent_id text,
  approval_id text,
  result text NOT NULL,
  error text,
  lease_owner text,
  lease_expires_at bigint,
  lease_token bigint NOT NULL DEFAULT 0,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_state_created ON runs (state, created_at, id);
CREATE INDEX runs_ready ON runs (created_at, id) WHERE state IN ('queued', 'retrying', 'escalated');
CREATE INDEX runs_lease ON runs (lease_expires_at, id) WHERE lease_owner IS NOT NULL;

CREATE TABLE approvals (
  id text COLLATE "C" PRIMARY KEY,
  run_id text NOT NULL,
  kind text NOT NULL,
  state text NOT NULL,
  spec text NOT NULL,
  subject text NOT NULL,
  digest text NOT NULL,
  requester_subject text NOT NULL,
  requester_kind text NOT NULL,
  trace_id text,
  reason text,
  created_at bigint NOT NULL,
  deadline bigint NOT NULL,
  decided_at bigint
);
CREATE INDEX approvals_pending ON approvals (deadline, id) WHERE state = 'pending';
CREATE INDEX approvals_state_created ON approvals (state, created_at, id);
CREATE INDEX approvals_run ON approvals (run_id, created_at, id);
CREATE TABLE approval_decisions (
  n bigserial PRIMARY KEY,
  approval_id text COLLATE "C" NOT NULL REFERENCES approvals (id),
  approver_subject text NOT NULL,
  approver_kind text NOT NULL,
  decision text NOT NULL,
  comment text,
  digest text NOT NULL,
  at bigint NOT NULL,
  UNIQUE (approval_id, approver_subject)
);

CREATE TABLE autonomy_state (
  agent_id text PRIMARY KEY,
  cap_level text CHECK (cap_level IN ('L0', 'L1', 'L2', 'L3', 'L4')),
  streak integer NOT NULL CHECK (streak >= 0),
  updated_at bigint NOT NULL,
  version integer NOT NULL CHECK (version >= 1)
);
CREATE TABLE agent_run_starts (
  agent_id text NOT NULL,
  at bigint NOT NULL
);
CREATE INDEX agent_run_starts_agent ON agent_run_starts (agent_id, at);

CREATE TABLE audit_log (
  tx xid8 NOT NULL DEFAULT pg_current_xact_id(),
  id bigserial,
  at bigint NOT NULL,
  actor_subject text NOT NULL,
  actor_kind text NOT NULL,
  action text NOT NULL,
  resource text NOT NULL,
  outcome text NOT NULL,
  reason text,
  run_id text,
  trace_id text,
  data text NOT NULL,
  PRIMARY KEY (tx, id)
);
CREATE INDEX audit_log_run_id ON audit_log (run_id) WHERE run_id IS NOT NULL;
CREATE INDEX audit_log_action ON audit_log (action);
CREATE INDEX audit_log_actor ON audit_log (actor_subject);
CREATE TABLE audit_seal (
  seq bigint PRIMARY KEY CHECK (seq >= 1),
  tx xid8 NOT NULL,
  id bigint NOT NULL,
  prev_hash text NOT NULL,
  hash text NOT NULL,
  UNIQUE (tx, id)
);
CREATE TABLE audit_head (
  one boolean PRIMARY KEY DEFAULT true CHECK (one),
  sealed_through bigint NOT NULL CHECK (sealed_through >= 0),
  hash text NOT NULL,
  tx xid8 NOT NULL,
  id bigint NOT NULL
);
INSERT INTO audit_head (sealed_through, hash, tx, id) VALUES (0, repeat('0', 64), '0', 0);

CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '${APPEND_ONLY_CODE}: Cannot % % as it is append-only', lower(TG_OP), TG_TABLE_NAME;
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_seal
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
`,
  },
  {
    version: 2,
    name: "policy_versions",
    sql: `
CREATE TABLE policy_versions (
  version integer PRIMARY KEY CHECK (version >= 1),
  content text NOT NULL,
  hash text NOT NULL CHECK (length(hash) = 64),
  applied_at bigint NOT NULL,
  applied_by text NOT NULL,
  reason text
);
CREATE TRIGGER policy_versions_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON policy_versions
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
`,
  },
]);

/** Options of {@link migratePostgres}. */
export interface MigrateOptions {
  /** The migrations to apply. @default {POSTGRES_MIGRATIONS} */
  readonly migrations?: readonly Migration[];
  /** A schema to create if missing (it must be the connection's `search_path`). @default {undefined} */
  readonly schema?: string;
  /** Epoch ms stamped on `schema_migrations.applied_at`. @default {Date.now} */
  readonly now?: () => number;
  /** Never create, write or migrate: only check the version. @default {false} */
  readonly readOnly?: boolean;
}

const LOCK_KEY = "hashtextextended('plm:migrate:' || coalesce($1::text, current_schema()), 0)";

/**
 * Brings the database on `client` to the latest schema, each migration in a
 * transaction of its own, under a session `pg_advisory_lock` so that two
 * processes starting at once do not race. A database at a newer version than
 * `migrations` knows is refused before anything is written.
 *
 * @param client A connection whose `search_path` is the store's schema.
 * @param options The migrations, the schema, the clock and read-only mode.
 * @returns The schema version the database is at.
 * @throws {PlmError} `ERR_STORE_SCHEMA_TOO_NEW` for a newer schema;
 * read-only: `ERR_STORE_NOT_FOUND` when no schema was ever applied,
 * `ERR_STORE_SCHEMA_TOO_OLD` when it is older; `ERR_STORE_MIGRATION_FAILED`
 * when a migration's SQL fails (nothing of it is kept).
 *
 * @example Check the signature (applying needs a server)
 * ```ts
 * import { migratePostgres } from "./migrations.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(typeof migratePostgres, "function");
 * ```
 */
export async function migratePostgres(
  client: pg.ClientBase,
  options: MigrateOptions = {},
): Promise<number> {
  const { migrations = POSTGRES_MIGRATIONS, schema, now = Date.now, readOnly = false } = options;
  const latest = migrations.length;
  if (readOnly) {
    const current = await readVersion(client);
    if (current === undefined || current === 0) {
      throw new PlmError("ERR_STORE_NOT_FOUND", "Cannot open a read-only store with no schema");
    }
    checkNotNewer(current, latest);
    if (current < latest) {
      throw new PlmError(
        "ERR_STORE_SCHEMA_TOO_OLD",
        `Cannot open a read-only store at schema ${current} (the code needs ${latest})`,
      );
    }
    return current;
  }
  await client.query(`SELECT pg_advisory_lock(${LOCK_KEY})`, [schema ?? null]);
  try {
    if (schema !== undefined) await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`,
    );
    const current = (await readVersion(client)) ?? 0;
    checkNotNewer(current, latest);
    for (const migration of migrations.slice(current)) {
      await client.query("BEGIN");
      try {
        await client.query(migration.sql);
        await client.query(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
          [migration.version, migration.name, now()],
        );
        await client.query("COMMIT");
      } catch (error) {
        await client.query("ROLLBACK").catch(() => {});
        throw new PlmError(
          "ERR_STORE_MIGRATION_FAILED",
          `Cannot apply migration ${migration.version} (${migration.name}): ${messageOf(error)}`,
          { cause: error },
        );
      }
    }
    return Math.max(current, latest);
  } finally {
    await client.query(`SELECT pg_advisory_unlock(${LOCK_KEY})`, [schema ?? null]).catch(() => {});
  }
}

function checkNotNewer(current: number, latest: number): void {
  if (current > latest) {
    throw new PlmError(
      "ERR_STORE_SCHEMA_TOO_NEW",
      `Cannot open a store at schema ${current}: this code knows up to ${latest}`,
    );
  }
}

/** The schema version, or `undefined` when `schema_migrations` does not exist. */
export async function readVersion(client: pg.ClientBase): Promise<number | undefined> {
  const exists = await client.query<{ t: string | null }>(
    "SELECT to_regclass('schema_migrations')::text AS t",
  );
  if (exists.rows[0]?.t == null) return undefined;
  const { rows } = await client.query<{ v: number | null }>(
    "SELECT max(version) AS v FROM schema_migrations",
  );
  return rows[0]?.v ?? 0;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
