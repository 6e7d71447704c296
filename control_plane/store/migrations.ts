/**
 * The forward-only schema migrations of the SQLite store, embedded in code.
 *
 * @module
 */

/**
 * One forward-only schema change. `openDatabase` applies each migration whose
 * `version` is above the database's in its own `BEGIN IMMEDIATE` transaction
 * and records it in `schema_migrations(version, name, applied_at)`.
 *
 * `sql` may hold several statements but no transaction control (`BEGIN`,
 * `COMMIT`, `SAVEPOINT`) and no `PRAGMA foreign_keys` (a no-op inside a
 * transaction).
 */
export interface Migration {
  /** Position in the list: 1, 2, 3, ... without gaps. */
  readonly version: number;
  /** A short snake_case name, stored next to the version. */
  readonly name: string;
  /** The DDL (and data fixes) to run. */
  readonly sql: string;
}

/**
 * Every migration the code knows, oldest first. Append new entries at the end
 * with the next version number; never edit or reorder a published one.
 *
 * - 1 `audit_log`: the hash-chained, append-only audit table. `UPDATE` and
 *   `DELETE` are refused by triggers that raise `ERR_AUDIT_APPEND_ONLY`.
 * - 2 `runs`: run state, optimistic-concurrency version, idempotency key, lease.
 * - 3 `approvals`: approval requests and one decision row per approver (the
 *   primary key makes each approver count once, across processes).
 * - 4 `runs_keyset_indexes`: indexes whose order is the order runs are read in,
 *   so no read sorts or scans the history: `runs_created (created_at, id)` for
 *   the newest-first page, `runs_state_created (state, created_at, id)` (it
 *   replaces `runs_state`) for a page by state, and the partial `runs_ready
 *   (created_at, id)` over `queued`, `retrying` and `escalated` runs for the
 *   oldest-first ready query.
 * - 5 `governance_state`: what governs agents across processes and restarts
 *   (ADR 0007). `autonomy_state` holds one row per agent that ever had a
 *   drop or a failure streak: its automatic cap (`cap_level`, NULL when
 *   none), its consecutive denial/failure count (`streak`), `updated_at` and
 *   an optimistic `version`. `agent_run_starts` holds one row per run an
 *   agent started within its budget window; every write prunes the agent's
 *   rows that left the window, so an agent keeps at most `maxRuns` rows
 *   (index `agent_run_starts_agent (agent_id, at)`).
 * - 6 `runs_lease_token`: `runs.lease_token`, the fencing token of a run's
 *   lease (ADR 0008): one greater at every claim, kept when the lease ends,
 *   so a worker that lost its lease can no longer write (0 before any claim).
 * - 7 `policy_versions`: the versions of the policy set, one row each
 *   (`version` 1, 2, ... without gaps, the highest in force): the set's
 *   canonical JSON (`content`) exactly as hashed, its SHA-256 (`hash`), when
 *   (`applied_at`), by whom (`applied_by`, a subject) and why (`reason`).
 *   Rows are only ever inserted (triggers refuse `UPDATE` and `DELETE` with
 *   `ERR_AUDIT_APPEND_ONLY`): history is kept.
 *
 * @example Read the latest schema version
 * ```ts
 * import { MIGRATIONS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(MIGRATIONS[0]?.version, 1);
 * assert.ok(MIGRATIONS.every((m, i) => m.version === i + 1));
 * ```
 */
export const MIGRATIONS: readonly Migration[] = Object.freeze([
  {
    version: 1,
    name: "audit_log",
    sql: `
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY CHECK (seq >= 1),
  at INTEGER NOT NULL,
  actor_subject TEXT NOT NULL,
  actor_kind TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  outcome TEXT NOT NULL,
  reason TEXT,
  run_id TEXT,
  trace_id TEXT,
  data TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_run_id ON audit_log (run_id, seq) WHERE run_id IS NOT NULL;
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_subject, seq);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'ERR_AUDIT_APPEND_ONLY: Cannot update audit_log as it is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
  SELECT RAISE(ABORT, 'ERR_AUDIT_APPEND_ONLY: Cannot delete from audit_log as it is append-only');
END;
`,
  },
  {
    version: 2,
    name: "runs",
    sql: `
CREATE TABLE runs (
  id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1),
  task TEXT NOT NULL,
  requester TEXT NOT NULL,
  idempotency_key TEXT UNIQUE,
  request_digest TEXT NOT NULL,
  traceparent TEXT NOT NULL,
  tracestate TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  escalations INTEGER NOT NULL,
  cost_units REAL NOT NULL,
  agent_id TEXT,
  approval_id TEXT,
  result TEXT NOT NULL,
  error TEXT,
  lease_owner TEXT,
  lease_expires_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) STRICT;
CREATE INDEX runs_state ON runs (state, created_at);
CREATE INDEX runs_lease ON runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
`,
  },
  {
    version: 3,
    name: "approvals",
    sql: `
CREATE TABLE approvals (
  id TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  state TEXT NOT NULL,
  spec TEXT NOT NULL,
  subject TEXT NOT NULL,
  digest TEXT NOT NULL,
  requester_subject TEXT NOT NULL,
  requester_kind TEXT NOT NULL,
  trace_id TEXT,
  reason TEXT,
  created_at INTEGER NOT NULL,
  deadline INTEGER NOT NULL,
  decided_at INTEGER
) STRICT;
CREATE INDEX approvals_pending ON approvals (state, deadline);
CREATE INDEX approvals_run ON approvals (run_id);
CREATE TABLE approval_decisions (
  approval_id TEXT NOT NULL REFERENCES approvals (id),
  approver_subject TEXT NOT NULL,
  approver_kind TEXT NOT NULL,
  decision TEXT NOT NULL,
  comment TEXT,
  digest TEXT NOT NULL,
  at INTEGER NOT NULL,
  PRIMARY KEY (approval_id, approver_subject)
) STRICT;
`,
  },
  {
    version: 4,
    name: "runs_keyset_indexes",
    sql: `
DROP INDEX runs_state;
CREATE INDEX runs_created ON runs (created_at, id);
CREATE INDEX runs_state_created ON runs (state, created_at, id);
CREATE INDEX runs_ready ON runs (created_at, id) WHERE state IN ('queued', 'retrying', 'escalated');
`,
  },
  {
    version: 5,
    name: "governance_state",
    sql: `
CREATE TABLE autonomy_state (
  agent_id TEXT PRIMARY KEY,
  cap_level TEXT CHECK (cap_level IN ('L0', 'L1', 'L2', 'L3', 'L4')),
  streak INTEGER NOT NULL CHECK (streak >= 0),
  updated_at INTEGER NOT NULL,
  version INTEGER NOT NULL CHECK (version >= 1)
) STRICT, WITHOUT ROWID;
CREATE TABLE agent_run_starts (
  agent_id TEXT NOT NULL,
  at INTEGER NOT NULL
) STRICT;
CREATE INDEX agent_run_starts_agent ON agent_run_starts (agent_id, at);
`,
  },
  {
    version: 6,
    name: "runs_lease_token",
    sql: `
ALTER TABLE runs ADD COLUMN lease_token INTEGER NOT NULL DEFAULT 0 CHECK (lease_token >= 0);
`,
  },
  {
    version: 7,
    name: "policy_versions",
    sql: `
CREATE TABLE policy_versions (
  version INTEGER PRIMARY KEY CHECK (version >= 1),
  content TEXT NOT NULL,
  hash TEXT NOT NULL CHECK (length(hash) = 64),
  applied_at INTEGER NOT NULL,
  applied_by TEXT NOT NULL,
  reason TEXT
) STRICT;
CREATE TRIGGER policy_versions_no_update BEFORE UPDATE ON policy_versions
BEGIN
  SELECT RAISE(ABORT, 'ERR_AUDIT_APPEND_ONLY: Cannot update policy_versions as it is append-only');
END;
CREATE TRIGGER policy_versions_no_delete BEFORE DELETE ON policy_versions
BEGIN
  SELECT RAISE(ABORT, 'ERR_AUDIT_APPEND_ONLY: Cannot delete from policy_versions as it is append-only');
END;
`,
  },
]);
