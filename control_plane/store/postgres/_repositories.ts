/**
 * The PostgreSQL repositories of the store port: SQL and row mapping only.
 * Each method is one statement, run on the transaction's connection through a
 * {@link Query}.
 *
 * @module
 */
import { type ActorKind, type JsonValue, PlmError } from "../../../shared/mod.ts";
import type { AuditRecord } from "../../audit/types.ts";
import type { Run, RunState } from "../../runs/state_machine.ts";
import type {
  ApprovalInsert,
  ApprovalQuery,
  ApprovalRecord,
  ApprovalRepository,
  AuditDraft,
  AuditQuery,
  AuditRepository,
  AuditSeal,
  AutonomyRow,
  ClaimSpec,
  GovernanceRepository,
  PendingAudit,
  PolicyRepository,
  PolicyVersionRow,
  RunKeyset,
  RunRepository,
  RunWrite,
  SealedHead,
  StoredRun,
  VoteInsert,
} from "../port.ts";
import { AUDIT_GUARDS } from "./migrations.ts";
import {
  approvalFromRow,
  type ApprovalRow,
  RUN_COLUMNS,
  runFromRow,
  type RunRow,
  type VoteRow,
} from "../rows.ts";

/** Runs one statement on the transaction's connection (errors already mapped). */
export type Query = <R extends Record<string, unknown>>(
  sql: string,
  params?: readonly unknown[],
) => Promise<{ rows: R[]; rowCount: number }>;

// ---------------------------------------------------------------------------
// Runs

const R_COLUMNS = RUN_COLUMNS.split(", ").map((c) => `r.${c}`).join(", ");
const READY = "state IN ('queued', 'retrying', 'escalated') " +
  "AND (lease_owner IS NULL OR lease_expires_at <= $1)";

/** The runs repository on one transaction. */
export class PostgresRunRepository implements RunRepository {
  readonly #q: Query;

  /** Binds the repository to a transaction's {@link Query}. */
  constructor(query: Query) {
    this.#q = query;
  }

  /** Inserts a run; `false` when its idempotency key is taken. */
  async insert(stored: StoredRun): Promise<boolean> {
    const { run } = stored;
    const { rowCount } = await this.#q(
      `INSERT INTO runs (${RUN_COLUMNS})
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
               $19, $20, $21)
       ON CONFLICT (idempotency_key) DO NOTHING`,
      [
        run.id,
        run.state,
        run.version,
        JSON.stringify(run.task),
        JSON.stringify(run.requester),
        run.idempotencyKey,
        stored.requestDigest,
        run.traceparent,
        run.tracestate,
        run.attempt,
        run.escalations,
        run.costUnits,
        run.agentId,
        run.approvalId,
        JSON.stringify(run.result),
        run.error === null ? null : JSON.stringify(run.error),
        run.lease?.owner ?? null,
        run.lease?.expiresAt ?? null,
        run.lease?.token ?? 0,
        run.createdAt,
        run.updatedAt,
      ],
    );
    return rowCount === 1;
  }

  /** The run with this id, locked with `lock`. */
  async byId(id: string, options: { lock?: boolean } = {}): Promise<Run | undefined> {
    const { rows } = await this.#q<RunRow & Record<string, unknown>>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE id = $1${options.lock ? " FOR UPDATE" : ""}`,
      [id],
    );
    return rows[0] === undefined ? undefined : runFromRow(rows[0]);
  }

  /** The run created with this idempotency key, and its request digest. */
  async byIdempotencyKey(key: string): Promise<StoredRun | undefined> {
    const { rows } = await this.#q<RunRow & Record<string, unknown>>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE idempotency_key = $1`,
      [key],
    );
    const row = rows[0];
    return row === undefined
      ? undefined
      : { run: runFromRow(row), requestDigest: row.request_digest };
  }

  /** Writes the run's mutable fields if still at the expected version (and lease token). */
  async update(write: RunWrite): Promise<boolean> {
    const { run } = write;
    const { rowCount } = await this.#q(
      `UPDATE runs SET state = $3, version = $2 + 1, attempt = $4, escalations = $5,
         cost_units = $6, agent_id = $7, approval_id = $8, result = $9, error = $10,
         lease_owner = $11, lease_expires_at = $12, lease_token = coalesce($13::bigint, lease_token),
         updated_at = $14
       WHERE id = $1 AND version = $2
         AND ($13::bigint IS NULL OR $13 >= lease_token)
         AND ($15::bigint IS NULL OR (lease_owner IS NOT NULL AND lease_token = $15))`,
      [
        run.id,
        write.expectedVersion,
        run.state,
        run.attempt,
        run.escalations,
        run.costUnits,
        run.agentId,
        run.approvalId,
        JSON.stringify(run.result),
        run.error === null ? null : JSON.stringify(run.error),
        run.lease?.owner ?? null,
        run.lease?.expiresAt ?? null,
        run.lease?.token ?? null,
        run.updatedAt,
        write.leaseToken ?? null,
      ],
    );
    return rowCount === 1;
  }

  /** Claims the oldest ready runs in one statement, skipping locked rows. */
  async claimReady(spec: ClaimSpec): Promise<{ run: Run; previousOwner: string | null }[]> {
    if (spec.limit <= 0) return [];
    const { rows } = await this.#q<
      RunRow & { previous_owner: string | null } & Record<string, unknown>
    >(
      `WITH claimed AS (
         UPDATE runs r SET lease_owner = $3, lease_expires_at = $4,
           lease_token = r.lease_token + 1, version = r.version + 1
         FROM (SELECT id, lease_owner FROM runs WHERE ${READY}
               ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) p
         WHERE r.id = p.id
         RETURNING ${R_COLUMNS}, p.lease_owner AS previous_owner)
       SELECT * FROM claimed ORDER BY created_at, id`,
      [spec.now, spec.limit, spec.owner, spec.expiresAt],
    );
    return rows.map((row) => ({ run: runFromRow(row), previousOwner: row.previous_owner }));
  }

  /** The oldest ready runs, not taken. */
  async ready(now: number, limit: number): Promise<Run[]> {
    const { rows } = await this.#q<RunRow & Record<string, unknown>>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE ${READY} ORDER BY created_at, id LIMIT $2`,
      [now, limit],
    );
    return rows.map(runFromRow);
  }

  /** Runs whose lease expired by `now`, oldest expiry first, locked (locked rows skipped). */
  async expired(now: number, limit: number): Promise<Run[]> {
    const { rows } = await this.#q<RunRow & Record<string, unknown>>(
      `SELECT ${RUN_COLUMNS} FROM runs WHERE lease_owner IS NOT NULL AND lease_expires_at <= $1
       ORDER BY lease_expires_at, id LIMIT $2 FOR UPDATE SKIP LOCKED`,
      [now, limit],
    );
    return rows.map(runFromRow);
  }

  /** A page of runs, newest first. */
  async page(
    states: readonly RunState[] | undefined,
    after: RunKeyset | undefined,
    take: number,
  ): Promise<Run[]> {
    const { rows } = await this.#q<RunRow & Record<string, unknown>>(
      `SELECT ${RUN_COLUMNS} FROM runs
       WHERE ($1::text[] IS NULL OR state = ANY ($1::text[]))
         AND ($2::bigint IS NULL OR (created_at, id) < ($2::bigint, $3::text))
       ORDER BY created_at DESC, id DESC LIMIT $4`,
      [
        states === undefined ? null : [...states],
        after?.createdAt ?? null,
        after?.id ?? null,
        take,
      ],
    );
    return rows.map(runFromRow);
  }
}

// ---------------------------------------------------------------------------
// Approvals

const APPROVAL_SELECT = `SELECT a.id, a.run_id, a.kind, a.state, a.spec, a.subject, a.digest,
  a.requester_subject, a.requester_kind, a.trace_id, a.reason, a.created_at, a.deadline,
  a.decided_at,
  (SELECT coalesce(json_agg(json_build_object('subject', d.approver_subject,
     'kind', d.approver_kind, 'decision', d.decision, 'comment', d.comment, 'at', d.at)
     ORDER BY d.at, d.n), '[]'::json)
   FROM approval_decisions d WHERE d.approval_id = a.id) AS votes
  FROM approvals a`;

type ApprovalWithVotes = ApprovalRow & { votes: VoteRow[] } & Record<string, unknown>;

function approvalOf(row: ApprovalWithVotes): ApprovalRecord {
  return approvalFromRow(row, row.votes);
}

/** The approvals repository on one transaction. */
export class PostgresApprovalRepository implements ApprovalRepository {
  readonly #q: Query;

  /** Binds the repository to a transaction's {@link Query}. */
  constructor(query: Query) {
    this.#q = query;
  }

  /** Inserts a pending approval. */
  async insert(a: ApprovalInsert): Promise<void> {
    await this.#q(
      `INSERT INTO approvals (id, run_id, kind, state, spec, subject, digest, requester_subject,
         requester_kind, trace_id, reason, created_at, deadline, decided_at)
       VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, NULL, $10, $11, NULL)`,
      [
        a.id,
        a.runId,
        a.kind,
        JSON.stringify(a.spec),
        JSON.stringify(a.subject),
        a.digest,
        a.requester.subject,
        a.requester.kind,
        a.traceId,
        a.createdAt,
        a.deadline,
      ],
    );
  }

  /** The approval with its votes, locked with `lock`. */
  async byId(id: string, options: { lock?: boolean } = {}): Promise<ApprovalRecord | undefined> {
    const { rows } = await this.#q<ApprovalWithVotes>(
      `${APPROVAL_SELECT} WHERE a.id = $1${options.lock ? " FOR UPDATE OF a" : ""}`,
      [id],
    );
    return rows[0] === undefined ? undefined : approvalOf(rows[0]);
  }

  /** Inserts a decision; `false` when this approver already decided. */
  async insertVote(vote: VoteInsert): Promise<boolean> {
    const { rowCount } = await this.#q(
      `INSERT INTO approval_decisions
         (approval_id, approver_subject, approver_kind, decision, comment, digest, at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (approval_id, approver_subject) DO NOTHING`,
      [
        vote.approvalId,
        vote.approver.subject,
        vote.approver.kind,
        vote.decision,
        vote.comment,
        vote.digest,
        vote.at,
      ],
    );
    return rowCount === 1;
  }

  /** Ends a pending approval; `false` when it was no longer pending. */
  async resolve(id: string, state: string, reason: string, at: number): Promise<boolean> {
    const { rowCount } = await this.#q(
      `UPDATE approvals SET state = $2, reason = $3, decided_at = $4
       WHERE id = $1 AND state = 'pending'`,
      [id, state, reason, at],
    );
    return rowCount === 1;
  }

  /** Pending approvals due by `now`, earliest deadline first, locked (locked rows skipped). */
  async due(now: number, limit: number): Promise<ApprovalRecord[]> {
    const { rows } = await this.#q<ApprovalWithVotes>(
      `${APPROVAL_SELECT} WHERE a.state = 'pending' AND a.deadline <= $1
       ORDER BY a.deadline, a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED`,
      [now, limit],
    );
    return rows.map(approvalOf);
  }

  /** Approvals by state and run, oldest first. */
  async list(query: ApprovalQuery): Promise<ApprovalRecord[]> {
    const { rows } = await this.#q<ApprovalWithVotes>(
      `${APPROVAL_SELECT} WHERE ($1::text IS NULL OR a.state = $1) AND ($2::text IS NULL OR a.run_id = $2)
       ORDER BY a.created_at, a.id LIMIT $3`,
      [query.state ?? null, query.runId ?? null, query.limit],
    );
    return rows.map(approvalOf);
  }
}

// ---------------------------------------------------------------------------
// Audit

const AUDIT_COLUMNS =
  "at, actor_subject, actor_kind, action, resource, outcome, reason, run_id, trace_id, data";
const A_COLUMNS = AUDIT_COLUMNS.split(", ").map((c) => `a.${c}`).join(", ");

interface AuditRow extends Record<string, unknown> {
  at: number;
  actor_subject: string;
  actor_kind: string;
  action: string;
  resource: string;
  outcome: string;
  reason: string | null;
  run_id: string | null;
  trace_id: string | null;
  data: string;
}

function draftOf(row: AuditRow): AuditDraft {
  return {
    at: row.at,
    actor: { subject: row.actor_subject, kind: row.actor_kind as ActorKind },
    action: row.action,
    resource: row.resource,
    outcome: row.outcome,
    reason: row.reason,
    runId: row.run_id,
    traceId: row.trace_id,
    data: JSON.parse(row.data) as JsonValue,
    dataJson: row.data,
  };
}

/**
 * The `application_name` of every connection of a store working in `schema`:
 * how the sealer tells this store's transactions from the rest of the server.
 */
export function storeApplicationName(schema: string | undefined): string {
  return `plm:${schema ?? ""}`.slice(0, 63);
}

/**
 * CTEs ending in `horizon(xid)`: the lowest transaction id that may still
 * insert an audit row of this store. It is the least transaction that was
 * running when the statement's snapshot was taken (`pg_snapshot_xip`) and is
 * not known to be someone else's: a backend `pg_stat_activity` shows holding
 * that transaction id under another `application_name` than this store's
 * connections carry ({@link storeApplicationName}); else the snapshot's `xmax`.
 * A transaction that ended since the snapshot, or that the view does not show
 * (it is another user's and this one may not read it), counts: that only holds
 * sealing back one pass. Transactions that begin later get greater ids. Unlike
 * the snapshot's `xmin`, a long transaction of another schema or database does
 * not hold sealing back; and unlike a lock taken by every writer, it costs the
 * writers nothing.
 */
const SEAL_HORIZON = `
  others AS MATERIALIZED (
    SELECT backend_xid FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL
      AND application_name IS DISTINCT FROM current_setting('application_name')),
  snap AS (SELECT pg_current_snapshot() AS s),
  horizon AS (
    SELECT coalesce(min(x), (SELECT pg_snapshot_xmax(s) FROM snap)) AS xid
    FROM snap, pg_snapshot_xip(snap.s) AS x
    WHERE x::xid NOT IN (SELECT backend_xid FROM others))`;

/** A pending row's key `tx:id`, split; throws `ERR_INTERNAL` when it is not one of ours. */
function parseKey(key: string): [string, string] {
  const match = /^(\d{1,20}):(\d{1,19})$/.exec(key);
  if (match === null) throw new PlmError("ERR_INTERNAL", `Cannot seal an unknown audit key ${key}`);
  return [match[1]!, match[2]!];
}

/** The audit repository on one transaction: `"seal"` chaining (ADR 0008). */
export class PostgresAuditRepository implements AuditRepository {
  /** Records are chained later by the elected sealer. */
  readonly chaining = "seal" as const;
  readonly #q: Query;

  /** Binds the repository to a transaction's {@link Query}. */
  constructor(query: Query) {
    this.#q = query;
  }

  /** The sealed head (the watermark). */
  async head(): Promise<SealedHead> {
    const { rows } = await this.#q<{ sealed_through: number; hash: string }>(
      "SELECT sealed_through, hash FROM audit_head",
    );
    const row = rows[0];
    if (row === undefined) throw new PlmError("ERR_INTERNAL", "The audit watermark row is missing");
    return { seq: row.sealed_through, hash: row.hash };
  }

  /** Not used with `"seal"` chaining. */
  insertChained(_records: readonly (AuditRecord & { dataJson: string })[]): Promise<void> {
    return Promise.reject(
      new PlmError("ERR_INTERNAL", "The PostgreSQL audit log is chained by sealing, not on write"),
    );
  }

  /** Inserts drafts in one statement. */
  async insertPending(drafts: readonly AuditDraft[]): Promise<void> {
    if (drafts.length === 0) return;
    await this.#q(
      `INSERT INTO audit_log (${AUDIT_COLUMNS})
       SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
         $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])`,
      [
        drafts.map((d) => d.at),
        drafts.map((d) => d.actor.subject),
        drafts.map((d) => d.actor.kind),
        drafts.map((d) => d.action),
        drafts.map((d) => d.resource),
        drafts.map((d) => d.outcome),
        drafts.map((d) => d.reason),
        drafts.map((d) => d.runId),
        drafts.map((d) => d.traceId),
        drafts.map((d) => d.dataJson),
      ],
    );
  }

  /**
   * Pending rows after the watermark in `(tx, id)` order, only of transactions
   * that can no longer be followed by a row before them: below the
   * {@link SEAL_HORIZON} (every store write transaction running when the
   * statement's snapshot was taken has a greater id).
   */
  async pending(limit: number): Promise<PendingAudit[]> {
    const { rows } = await this.#q<AuditRow & { tx: string; id: string }>(
      `WITH ${SEAL_HORIZON}
       SELECT a.tx::text AS tx, a.id::text AS id, ${A_COLUMNS}
       FROM audit_log a, audit_head h, horizon
       WHERE (a.tx, a.id) > (h.tx, h.id) AND a.tx < horizon.xid
       ORDER BY a.tx, a.id LIMIT $1`,
      [limit],
    );
    return rows.map((row) => ({ key: `${row.tx}:${row.id}`, draft: draftOf(row) }));
  }

  /** Inserts the seals and moves the watermark in one statement, fenced on `expected`. */
  async seal(seals: readonly AuditSeal[], expected: SealedHead): Promise<boolean> {
    if (seals.length === 0) return true;
    seals.forEach((s, i) => {
      if (s.seq !== expected.seq + i + 1) {
        throw new PlmError(
          "ERR_INTERNAL",
          `Cannot seal seq ${s.seq} at position ${i} after ${expected.seq}: seals must be contiguous`,
        );
      }
    });
    const keys = seals.map((s) => parseKey(s.key));
    keys.forEach(([tx, id], i) => {
      const before = keys[i - 1];
      if (
        before !== undefined &&
        (BigInt(tx) < BigInt(before[0]) || (tx === before[0] && BigInt(id) <= BigInt(before[1])))
      ) {
        throw new PlmError(
          "ERR_INTERNAL",
          `Cannot seal ${seals[i]!.key} after ${seals[i - 1]!.key}: seals follow the pending order`,
        );
      }
    });
    const last = seals.at(-1)!;
    const [lastTx, lastId] = keys.at(-1)!;
    // Every seal must name a record: checked in the statement by a plain read of the
    // records (a foreign key would lock each record row, a write of the record's page, at
    // every seal), and nothing moves unless all are there.
    const { rowCount } = await this.#q(
      `WITH u AS (
         SELECT * FROM unnest($1::bigint[], $2::xid8[], $3::bigint[], $4::text[], $5::text[])
           AS u(seq, tx, id, prev_hash, hash)),
       found AS (SELECT count(*) AS n FROM u JOIN audit_log a ON a.tx = u.tx AND a.id = u.id),
       moved AS (
         UPDATE audit_head SET sealed_through = $6, hash = $7, tx = $8::xid8, id = $9
         WHERE sealed_through = $10 AND hash = $11 AND (SELECT n FROM found) = $12
         RETURNING 1)
       INSERT INTO audit_seal (seq, tx, id, prev_hash, hash)
       SELECT u.seq, u.tx, u.id, u.prev_hash, u.hash FROM u, moved`,
      [
        seals.map((s) => s.seq),
        keys.map(([tx]) => tx),
        keys.map(([, id]) => id),
        seals.map((s) => s.prevHash),
        seals.map((s) => s.hash),
        last.seq,
        last.hash,
        lastTx,
        lastId,
        expected.seq,
        expected.hash,
        seals.length,
      ],
    );
    if (rowCount === seals.length) return true;
    // Nothing was written: another sealer moved the head (a lost race), or a seal names
    // no record (a sealer's bug, never to be passed over as a race).
    const head = await this.head();
    if (head.seq === expected.seq && head.hash === expected.hash) {
      throw new PlmError("ERR_INTERNAL", "Cannot seal a key that is no audit record");
    }
    return false;
  }

  /** How many records wait to be sealed. */
  async pendingCount(): Promise<number> {
    const { rows } = await this.#q<{ n: number }>(
      `SELECT count(*) AS n FROM audit_log a, audit_head h WHERE (a.tx, a.id) > (h.tx, h.id)`,
    );
    return rows[0]?.n ?? 0;
  }

  /** Sealed records by the query's filters, in seq order. */
  async list(query: AuditQuery): Promise<AuditRecord[]> {
    const order = query.order === "desc" ? "DESC" : "ASC";
    const { rows } = await this.#q<AuditRow & { seq: number; prev_hash: string; hash: string }>(
      `SELECT s.seq, s.prev_hash, s.hash, ${A_COLUMNS}
       FROM audit_seal s JOIN audit_log a ON a.tx = s.tx AND a.id = s.id
       WHERE ($1::bigint IS NULL OR s.seq > $1)
         AND ($2::text IS NULL OR a.run_id = $2)
         AND ($3::text IS NULL OR a.actor_subject = $3)
         AND ($4::text IS NULL OR a.action = $4)
         AND ($5::text IS NULL OR a.resource = $5)
         AND ($6::bigint IS NULL OR a.at >= $6)
         AND ($8::text IS NULL OR starts_with(a.action, $8))
         AND ($9::bigint IS NULL OR s.seq <= $9)
       ORDER BY s.seq ${order} LIMIT $7`,
      [
        query.afterSeq ?? null,
        query.runId ?? null,
        query.actor ?? null,
        query.action ?? null,
        query.resource ?? null,
        query.since ?? null,
        query.limit,
        query.actionPrefix ?? null,
        query.throughSeq ?? null,
      ],
    );
    return rows.map((row) => {
      const { dataJson: _, ...draft } = draftOf(row);
      return { seq: row.seq, ...draft, prevHash: row.prev_hash, hash: row.hash };
    });
  }

  /** The append-only triggers that are missing, disabled or altered. */
  async missingGuards(): Promise<string[]> {
    // tgtype 58 = BEFORE (2) | DELETE (8) | UPDATE (16) | TRUNCATE (32), FOR EACH STATEMENT.
    const { rows } = await this.#q<{ name: string }>(
      `SELECT g.name FROM unnest($1::text[], $2::text[]) AS g(name, tbl)
       WHERE NOT EXISTS (
         SELECT 1 FROM pg_trigger t
         JOIN pg_class c ON c.oid = t.tgrelid
         JOIN pg_proc p ON p.oid = t.tgfoid
         WHERE t.tgname = g.name AND c.relname = g.tbl
           AND c.relnamespace = current_schema()::regnamespace
           AND t.tgtype = 58 AND t.tgenabled IN ('O', 'A')
           AND p.prosrc LIKE '%RAISE EXCEPTION ''ERR_AUDIT_APPEND_ONLY:%')
       ORDER BY g.name`,
      [AUDIT_GUARDS.map((g) => g.name), AUDIT_GUARDS.map((g) => g.table)],
    );
    return rows.map((row) => row.name);
  }
}

// ---------------------------------------------------------------------------
// Governance

/** The governance repository on one transaction. */
export class PostgresGovernanceRepository implements GovernanceRepository {
  readonly #q: Query;

  /** Binds the repository to a transaction's {@link Query}. */
  constructor(query: Query) {
    this.#q = query;
  }

  /** Locks the agent until the transaction ends (`pg_advisory_xact_lock`). */
  async lockAgent(agentId: string): Promise<void> {
    await this.#q(
      "SELECT pg_advisory_xact_lock(hashtextextended('plm:agent:' || current_schema() || ':' || $1, 0))",
      [agentId],
    );
  }

  /** The agent's autonomy row. */
  async autonomy(agentId: string): Promise<AutonomyRow | undefined> {
    const { rows } = await this.#q<{ cap_level: string | null; streak: number; version: number }>(
      "SELECT cap_level, streak, version FROM autonomy_state WHERE agent_id = $1",
      [agentId],
    );
    const row = rows[0];
    return row === undefined
      ? undefined
      : { capLevel: row.cap_level, streak: row.streak, version: row.version };
  }

  /** Inserts (expected 0) or updates the agent's autonomy row if still at `expectedVersion`. */
  async writeAutonomy(
    agentId: string,
    next: { capLevel: string | null; streak: number },
    expectedVersion: number,
    at: number,
  ): Promise<boolean> {
    const { rowCount } = expectedVersion === 0
      ? await this.#q(
        `INSERT INTO autonomy_state (agent_id, cap_level, streak, updated_at, version)
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT (agent_id) DO NOTHING`,
        [agentId, next.capLevel, next.streak, at],
      )
      : await this.#q(
        `UPDATE autonomy_state SET cap_level = $2, streak = $3, updated_at = $4, version = $5 + 1
         WHERE agent_id = $1 AND version = $5`,
        [agentId, next.capLevel, next.streak, at, expectedVersion],
      );
    return rowCount === 1;
  }

  /** How many run starts of the agent are after `since`. */
  async countStarts(agentId: string, since: number): Promise<number> {
    const { rows } = await this.#q<{ n: number }>(
      "SELECT count(*) AS n FROM agent_run_starts WHERE agent_id = $1 AND at > $2",
      [agentId, since],
    );
    return rows[0]?.n ?? 0;
  }

  /** The time of the agent's `offset`-th run start after `since`. */
  async nthStart(agentId: string, since: number, offset: number): Promise<number | undefined> {
    const { rows } = await this.#q<{ at: number }>(
      `SELECT at FROM agent_run_starts WHERE agent_id = $1 AND at > $2
       ORDER BY at OFFSET $3 LIMIT 1`,
      [agentId, since, offset],
    );
    return rows[0]?.at;
  }

  /** Deletes the agent's run starts at or before `before`. */
  async pruneStarts(agentId: string, before: number): Promise<void> {
    await this.#q("DELETE FROM agent_run_starts WHERE agent_id = $1 AND at <= $2", [
      agentId,
      before,
    ]);
  }

  /** Records one run start. */
  async insertStart(agentId: string, at: number): Promise<void> {
    await this.#q("INSERT INTO agent_run_starts (agent_id, at) VALUES ($1, $2)", [agentId, at]);
  }
}

// ---------------------------------------------------------------------------
// Policies

const POLICY_COLUMNS = "version, content, hash, applied_at, applied_by, reason";

interface PolicyRow extends Record<string, unknown> {
  version: number;
  content: string;
  hash: string;
  applied_at: number;
  applied_by: string;
  reason: string | null;
}

function policyOf(row: PolicyRow): PolicyVersionRow {
  return {
    version: row.version,
    content: row.content,
    hash: row.hash,
    appliedAt: row.applied_at,
    appliedBy: row.applied_by,
    reason: row.reason,
  };
}

/** The policy-version repository on one transaction. */
export class PostgresPolicyRepository implements PolicyRepository {
  readonly #q: Query;

  /** Binds the repository to a transaction's {@link Query}. */
  constructor(query: Query) {
    this.#q = query;
  }

  /**
   * Inserts a version; `false` when the number is taken. A concurrent insert of
   * the same number makes this one wait for it to end (the primary key).
   */
  async insert(row: PolicyVersionRow): Promise<boolean> {
    const { rowCount } = await this.#q(
      `INSERT INTO policy_versions (${POLICY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (version) DO NOTHING`,
      [row.version, row.content, row.hash, row.appliedAt, row.appliedBy, row.reason],
    );
    return rowCount === 1;
  }

  /** The highest version. */
  async active(): Promise<PolicyVersionRow | undefined> {
    const { rows } = await this.#q<PolicyRow>(
      `SELECT ${POLICY_COLUMNS} FROM policy_versions ORDER BY version DESC LIMIT 1`,
    );
    return rows[0] === undefined ? undefined : policyOf(rows[0]);
  }

  /** The version numbered `version`. */
  async byVersion(version: number): Promise<PolicyVersionRow | undefined> {
    const { rows } = await this.#q<PolicyRow>(
      `SELECT ${POLICY_COLUMNS} FROM policy_versions WHERE version = $1`,
      [version],
    );
    return rows[0] === undefined ? undefined : policyOf(rows[0]);
  }

  /** Up to `limit` versions, newest first. */
  async history(limit: number): Promise<PolicyVersionRow[]> {
    const { rows } = await this.#q<PolicyRow>(
      `SELECT ${POLICY_COLUMNS} FROM policy_versions ORDER BY version DESC LIMIT $1`,
      [limit],
    );
    return rows.map(policyOf);
  }
}
