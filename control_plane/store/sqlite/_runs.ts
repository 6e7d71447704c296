/**
 * The SQLite repository of runs and leases: the SQL of `runs` and the mapping
 * of its rows to {@link Run}s.
 *
 * @module
 */
import type { Run, RunState } from "../../runs/state_machine.ts";
import type { ClaimSpec, RunKeyset, RunRepository, RunWrite, StoredRun } from "../port.ts";
import type { SqlValue } from "../database.ts";
import { changes, type TxScope } from "./_sql.ts";
import { RUN_COLUMNS, runFromRow, type RunRow } from "../rows.ts";

const COLUMNS = RUN_COLUMNS;

/** The ready runs' condition, word for word the partial index `runs_ready`'s (so SQLite uses it). */
const READY = "state IN ('queued', 'retrying', 'escalated')";

const INSERT = `INSERT INTO runs (${COLUMNS}) VALUES (${COLUMNS.replace(/\w+/g, "?")})
  ON CONFLICT (idempotency_key) DO NOTHING`;
const BY_ID = `SELECT ${COLUMNS} FROM runs WHERE id = ?`;
const BY_KEY = `SELECT ${COLUMNS} FROM runs WHERE idempotency_key = ?`;
// The lease token is written when the run gets a lease and kept when it loses it, and it
// never goes down; the fence holds only while a lease is held (a released one fences nothing).
// Numbered parameters (?NNN): node:sqlite binds named ones by looking each name up, a cost
// this statement, run at every transition, does not need.
const UPDATE = `UPDATE runs SET state = ?1, version = ?2 + 1, attempt = ?3,
  escalations = ?4, cost_units = ?5, agent_id = ?6, approval_id = ?7,
  result = ?8, error = ?9, lease_owner = ?10, lease_expires_at = ?11,
  lease_token = coalesce(?12, lease_token), updated_at = ?13
  WHERE id = ?14 AND version = ?2
    AND (?12 IS NULL OR ?12 >= lease_token)
    AND (?15 IS NULL OR (lease_owner IS NOT NULL AND lease_token = ?15))`;
// INDEXED BY: the planner would otherwise pick runs_state_created and sort the whole backlog.
const READY_IDS = `SELECT id FROM runs INDEXED BY runs_ready
  WHERE ${READY} AND (lease_owner IS NULL OR lease_expires_at <= :now)
  ORDER BY created_at, id LIMIT :limit`;
const READY_OWNERS = `SELECT id, lease_owner FROM runs INDEXED BY runs_ready
  WHERE ${READY} AND (lease_owner IS NULL OR lease_expires_at <= :now)
  ORDER BY created_at, id LIMIT :limit`;
const CLAIM = `UPDATE runs SET lease_owner = :owner, lease_expires_at = :expires,
  lease_token = lease_token + 1, version = version + 1
  WHERE id IN (${READY_IDS})
  RETURNING ${COLUMNS}`;
const READY_RUNS = `SELECT ${COLUMNS} FROM runs INDEXED BY runs_ready
  WHERE ${READY} AND (lease_owner IS NULL OR lease_expires_at <= ?)
  ORDER BY created_at, id LIMIT ?`;
const EXPIRED = `SELECT ${COLUMNS} FROM runs
  WHERE lease_owner IS NOT NULL AND lease_expires_at <= ?
  ORDER BY lease_expires_at, id LIMIT ?`;
const NEWEST = `SELECT ${COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?`;
const OLDER_THAN = `SELECT ${COLUMNS} FROM runs WHERE (created_at, id) < (?, ?)
  ORDER BY created_at DESC, id DESC LIMIT ?`;

/** {@link RunRepository} on SQLite. Rows need no locks: write transactions take turns. */
export class SqliteRunRepository implements RunRepository {
  readonly #scope: TxScope;

  constructor(scope: TxScope) {
    this.#scope = scope;
  }

  insert(stored: StoredRun): Promise<boolean> {
    const { run, requestDigest } = stored;
    const row = toRow(run);
    const inserted = this.#scope.use().get(INSERT).run(
      row.id,
      row.state,
      row.version,
      row.task,
      row.requester,
      row.idempotency_key,
      requestDigest,
      row.traceparent,
      row.tracestate,
      row.attempt,
      row.escalations,
      row.cost_units,
      row.agent_id,
      row.approval_id,
      row.result,
      row.error,
      row.lease_owner,
      row.lease_expires_at,
      row.lease_token,
      row.created_at,
      row.updated_at,
    );
    return Promise.resolve(changes(inserted) === 1);
  }

  byId(id: string, _options?: { lock?: boolean }): Promise<Run | undefined> {
    const row = this.#scope.use().get<RunRow>(BY_ID).get(id);
    return Promise.resolve(row === undefined ? undefined : runFromRow(row));
  }

  byIdempotencyKey(key: string): Promise<StoredRun | undefined> {
    const row = this.#scope.use().get<RunRow>(BY_KEY).get(key);
    return Promise.resolve(
      row === undefined ? undefined : { run: runFromRow(row), requestDigest: row.request_digest },
    );
  }

  update(write: RunWrite): Promise<boolean> {
    const { run, expectedVersion, leaseToken } = write;
    const row = toRow(run);
    const changed = this.#scope.use().get(UPDATE).run(
      row.state,
      expectedVersion,
      row.attempt,
      row.escalations,
      row.cost_units,
      row.agent_id,
      row.approval_id,
      row.result,
      row.error,
      row.lease_owner,
      row.lease_expires_at,
      run.lease === null ? null : run.lease.token,
      row.updated_at,
      row.id,
      leaseToken ?? null,
    );
    return Promise.resolve(changes(changed) === 1);
  }

  claimReady(spec: ClaimSpec): Promise<{ run: Run; previousOwner: string | null }[]> {
    const sql = this.#scope.use();
    const ready = { now: spec.now, limit: spec.limit };
    // Write transactions take turns, so the rows read here are the rows the claim takes.
    const owners = new Map(
      sql.get<{ id: string; lease_owner: string | null }>(READY_OWNERS).all(ready).map((
        row,
      ) => [row.id, row.lease_owner]),
    );
    if (owners.size === 0) return Promise.resolve([]);
    const rows = sql.get<RunRow>(CLAIM).all({
      ...ready,
      owner: spec.owner,
      expires: spec.expiresAt,
    });
    const claimed = rows.map(runFromRow).sort(byCreation);
    return Promise.resolve(
      claimed.map((run) => ({ run, previousOwner: owners.get(run.id) ?? null })),
    );
  }

  ready(now: number, limit: number): Promise<Run[]> {
    return Promise.resolve(
      this.#scope.use().get<RunRow>(READY_RUNS).all(now, limit).map(runFromRow),
    );
  }

  expired(now: number, limit: number): Promise<Run[]> {
    return Promise.resolve(this.#scope.use().get<RunRow>(EXPIRED).all(now, limit).map(runFromRow));
  }

  page(
    states: readonly RunState[] | undefined,
    after: RunKeyset | undefined,
    take: number,
  ): Promise<Run[]> {
    const sql = this.#scope.use();
    const keyset: SqlValue[] = after === undefined ? [] : [after.createdAt, after.id];
    if (states === undefined) {
      const rows = sql.get<RunRow>(after === undefined ? NEWEST : OLDER_THAN).all(...keyset, take);
      return Promise.resolve(rows.map(runFromRow));
    }
    const distinct = [...new Set(states)];
    if (distinct.length === 0) return Promise.resolve([]);
    // Each state is read from runs_state_created in index order (at most `take` rows each);
    // SQLite then merges them: the cost is bounded by states × take, not by history.
    const one = `SELECT ${COLUMNS} FROM runs WHERE state = ?${
      after === undefined ? "" : " AND (created_at, id) < (?, ?)"
    } ORDER BY created_at DESC, id DESC LIMIT ?`;
    const params = distinct.flatMap((state) => [state, ...keyset, take]);
    const rows = distinct.length === 1 ? sql.get<RunRow>(one).all(...params) : sql.get<RunRow>(
      `${
        distinct.map(() => `SELECT * FROM (${one})`).join(" UNION ALL ")
      } ORDER BY created_at DESC, id DESC LIMIT ?`,
    ).all(...params, take);
    return Promise.resolve(rows.map(runFromRow));
  }
}

function byCreation(a: Run, b: Run): number {
  return a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The row of a run, but its request digest. */
function toRow(run: Run): Omit<RunRow, "request_digest"> {
  return {
    id: run.id,
    state: run.state,
    version: run.version,
    task: JSON.stringify(run.task),
    requester: JSON.stringify(run.requester),
    idempotency_key: run.idempotencyKey,
    traceparent: run.traceparent,
    tracestate: run.tracestate,
    attempt: run.attempt,
    escalations: run.escalations,
    cost_units: run.costUnits,
    agent_id: run.agentId,
    approval_id: run.approvalId,
    result: JSON.stringify(run.result),
    error: run.error === null ? null : JSON.stringify(run.error),
    lease_owner: run.lease?.owner ?? null,
    lease_expires_at: run.lease?.expiresAt ?? null,
    lease_token: run.lease?.token ?? 0,
    created_at: run.createdAt,
    updated_at: run.updatedAt,
  };
}
