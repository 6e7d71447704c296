/**
 * The store port (ADR 0008): the async repositories every adapter implements,
 * and the {@link Store} that opens transactions over them. An adapter holds SQL
 * and row mapping only; the rules (leases, idempotency, quorum, chain hashing)
 * are pure functions beside the services that call the repositories.
 *
 * Every repository method is one SQL operation (a read of a row and its
 * children counts as one). Every method is called with the {@link StoreTx} of
 * a transaction opened by {@link Store.transaction} or {@link Store.read}; a
 * state change and its audit record are written through the same handle, so
 * they commit together on every engine.
 *
 * @module
 */
import type { JsonValue } from "../../shared/mod.ts";
import type { AuditActor, AuditRecord } from "../audit/types.ts";
import type { Run, RunState } from "../runs/state_machine.ts";

/** The engines a store runs on. */
export type StoreKind = "sqlite" | "postgres";

/** The roles a process can be elected to, one holder at a time across processes. */
export type StoreRole = "reaper" | "sealer";

/** What a wake-up hint is about. */
export type WakeTopic = "runs" | "approvals";

/**
 * An open store: a SQLite file or `:memory:`, or a PostgreSQL database. Made
 * by `openStore`.
 */
export interface Store extends AsyncDisposable {
  /** The engine. */
  readonly kind: StoreKind;
  /** Where it is, as given to `openStore` with any password replaced by `***`. */
  readonly location: string;
  /** Whether it was opened read-only (every write fails with `ERR_STORE_READ_ONLY`). */
  readonly readOnly: boolean;
  /**
   * Runs `fn` in one write transaction and commits what it wrote, or rolls it
   * all back when it throws. On SQLite, write transactions take turns within
   * the process and across processes (`BEGIN IMMEDIATE`); on PostgreSQL they
   * run side by side under `READ COMMITTED`, rows locked where a repository
   * method says so. `fn` must do only store work: no waiting on agents.
   */
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /** Runs `fn` in a read-only transaction (one consistent snapshot). */
  read<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` in a write transaction only if this process is the one holder of
   * `role` for that transaction (PostgreSQL: `pg_try_advisory_xact_lock`;
   * SQLite: always, writes take turns anyway). Resolves to `undefined` when
   * another process holds the role.
   */
  lead<T>(role: StoreRole, fn: (tx: StoreTx) => Promise<T>): Promise<T | undefined>;
  /**
   * Subscribes to wake-up hints: `topic` after a transaction that called
   * {@link StoreTx.wake} commits, here or (PostgreSQL `LISTEN/NOTIFY`) in
   * another process; `"reconnected"` after the listener lost its connection
   * and got it back (hints may have been missed: poll fully). Hints are not
   * the correctness path: a subscriber must still poll.
   *
   * @returns A function that unsubscribes.
   */
  onWake(listener: (topic: WakeTopic | "reconnected") => void): () => void;
  /** The schema version the store is at. */
  schemaVersion(): Promise<number>;
  /** Closes the store (waits for transactions in flight). Idempotent. */
  close(): Promise<void>;
}

/** The handle of one transaction: the repositories, bound to it. */
export interface StoreTx {
  /** Runs and their leases. */
  readonly runs: RunRepository;
  /** Approvals and their decisions. */
  readonly approvals: ApprovalRepository;
  /** The audit log. */
  readonly audit: AuditRepository;
  /** Durable governance state: autonomy caps, failure streaks, budget windows. */
  readonly governance: GovernanceRepository;
  /** The versions of the policy set, the newest one in force. */
  readonly policies: PolicyRepository;
  /** Sends `topic` to {@link Store.onWake} listeners once this transaction commits. */
  wake(topic: WakeTopic): void;
}

// ---------------------------------------------------------------------------
// Runs

/** A run as stored: the run and the digest its idempotency key was used with. */
export interface StoredRun {
  /** The run. */
  readonly run: Run;
  /** SHA-256 of the canonical request the run was created for. */
  readonly requestDigest: string;
}

/** The keyset position of a page of runs (newest first). */
export interface RunKeyset {
  /** `createdAt` of the last run of the previous page. */
  readonly createdAt: number;
  /** Its id. */
  readonly id: string;
}

/** What a one-statement claim sets on each run it takes. */
export interface ClaimSpec {
  /** The worker taking the leases. */
  readonly owner: string;
  /** The time readiness is judged at (an expired lease counts as none). */
  readonly now: number;
  /** When the leases expire. */
  readonly expiresAt: number;
  /** How many runs at most. */
  readonly limit: number;
}

/** A run's row as changed: the whole run after the change, its old version, and the lease fence. */
export interface RunWrite {
  /** The run after the change (its `version` is the new one: old + 1). */
  readonly run: Run;
  /** The version read before the change; 0 rows match when it moved. */
  readonly expectedVersion: number;
  /**
   * The lease token the writer holds, when it writes as a lease holder: 0 rows
   * match when the run's lease token is another (the lease was lost).
   */
  readonly leaseToken?: number;
}

/** Runs and leases. */
export interface RunRepository {
  /**
   * Inserts a new run. Resolves `false` (writing nothing) when its idempotency
   * key is taken, by a committed run or one being inserted concurrently
   * (`ON CONFLICT DO NOTHING`): read it with {@link byIdempotencyKey}.
   */
  insert(stored: StoredRun): Promise<boolean>;
  /** The run with this id; with `lock`, the row stays locked until the transaction ends. */
  byId(id: string, options?: { lock?: boolean }): Promise<Run | undefined>;
  /** The run created with this idempotency key, and its request digest. */
  byIdempotencyKey(key: string): Promise<StoredRun | undefined>;
  /**
   * Writes every mutable field of `write.run` (state, counters, agent,
   * approval, result, error, lease, `updatedAt`) and sets the version to
   * `expectedVersion + 1`, if the row is still at `expectedVersion` (and holds
   * `leaseToken`, when given). Resolves whether the row changed.
   */
  update(write: RunWrite): Promise<boolean>;
  /**
   * Takes the oldest ready runs (`queued`, `retrying`, `escalated`, with no
   * lease or one expired by `spec.now`) in one statement, oldest first, up to
   * `spec.limit`, skipping rows other transactions hold (`FOR UPDATE SKIP
   * LOCKED`): each gets `spec.owner`, `spec.expiresAt`, a lease token one
   * greater than its last, and version + 1. Resolves the runs after the claim,
   * each with the lease owner it had before (for the audit record).
   */
  claimReady(spec: ClaimSpec): Promise<{ run: Run; previousOwner: string | null }[]>;
  /** The oldest ready runs (as {@link claimReady} picks them) without taking them. */
  ready(now: number, limit: number): Promise<Run[]>;
  /**
   * The runs whose lease expired by `now`, oldest expiry first, locked for this
   * transaction (other transactions' locked rows are skipped).
   */
  expired(now: number, limit: number): Promise<Run[]>;
  /**
   * Up to `take` runs, newest first (`createdAt` then `id`, descending), in any
   * of `states` (every state when `undefined`), older than `after`.
   */
  page(
    states: readonly RunState[] | undefined,
    after: RunKeyset | undefined,
    take: number,
  ): Promise<Run[]>;
}

// ---------------------------------------------------------------------------
// Approvals

/** An approval row as written at request time (no decisions yet). */
export interface ApprovalInsert {
  /** The approval id. */
  readonly id: string;
  /** The run that waits for it. */
  readonly runId: string;
  /** `approval` or `escalation`. */
  readonly kind: string;
  /** The checked spec, as JSON. */
  readonly spec: JsonValue;
  /** What is being approved. */
  readonly subject: JsonValue;
  /** SHA-256 of the exact request. */
  readonly digest: string;
  /** Who asked. */
  readonly requester: AuditActor;
  /** The run's trace id, or `null`. */
  readonly traceId: string | null;
  /** When it was asked, epoch ms. */
  readonly createdAt: number;
  /** When it expires, epoch ms. */
  readonly deadline: number;
}

/** An approval row with its decisions, oldest first, as an adapter maps it. */
export interface ApprovalRecord extends ApprovalInsert {
  /** `pending`, `approved`, `rejected` or `expired`. */
  readonly state: string;
  /** Why it ended, or `null`. */
  readonly reason: string | null;
  /** When it ended, or `null`. */
  readonly decidedAt: number | null;
  /** The decisions so far, oldest first. */
  readonly votes: readonly {
    readonly approver: AuditActor;
    readonly decision: string;
    readonly comment: string | null;
    readonly at: number;
  }[];
}

/** One approver's decision as written. */
export interface VoteInsert {
  /** The approval. */
  readonly approvalId: string;
  /** Who decided. */
  readonly approver: AuditActor;
  /** `approve` or `reject`. */
  readonly decision: string;
  /** Their comment, or `null`. */
  readonly comment: string | null;
  /** The digest they quoted. */
  readonly digest: string;
  /** When, epoch ms. */
  readonly at: number;
}

/** Filters of {@link ApprovalRepository.list}. */
export interface ApprovalQuery {
  /** Only in this state. */
  readonly state?: string;
  /** Only of this run. */
  readonly runId?: string;
  /** How many at most (oldest first). */
  readonly limit: number;
}

/** Approvals and decisions. */
export interface ApprovalRepository {
  /** Inserts a pending approval. */
  insert(approval: ApprovalInsert): Promise<void>;
  /** The approval and its votes; with `lock`, its row stays locked until the transaction ends. */
  byId(id: string, options?: { lock?: boolean }): Promise<ApprovalRecord | undefined>;
  /** Inserts a decision; resolves `false` when this approver already decided (unique key). */
  insertVote(vote: VoteInsert): Promise<boolean>;
  /** Ends a pending approval; resolves `false` when it was no longer pending. */
  resolve(id: string, state: string, reason: string, at: number): Promise<boolean>;
  /** Pending approvals due by `now`, earliest deadline first, locked (locked rows skipped). */
  due(now: number, limit: number): Promise<ApprovalRecord[]>;
  /** Approvals by state and run, oldest first (`createdAt`, then id). */
  list(query: ApprovalQuery): Promise<ApprovalRecord[]>;
}

// ---------------------------------------------------------------------------
// Audit

/** An audit record before it is chained: everything but `seq`, `prevHash` and `hash`. */
export type AuditDraft = Omit<AuditRecord, "seq" | "prevHash" | "hash"> & {
  /** `data` as its canonical JSON text, the exact text that is stored and hashed. */
  readonly dataJson: string;
};

/** A record waiting to be sealed, with the adapter's key for it. */
export interface PendingAudit {
  /** The adapter's opaque key of the row (PostgreSQL: its `(tx, id)`). */
  readonly key: string;
  /** The record. */
  readonly draft: AuditDraft;
}

/** One record's place in the chain, as the sealer computed it. */
export interface AuditSeal {
  /** The pending row's key. */
  readonly key: string;
  /** Its position, contiguous after the watermark. */
  readonly seq: number;
  /** The previous record's hash. */
  readonly prevHash: string;
  /** This record's hash. */
  readonly hash: string;
}

/** The chain's sealed head: the last chained record (seq 0 and 64 zeros when none). */
export interface SealedHead {
  /** The last sealed sequence number. */
  readonly seq: number;
  /** Its hash. */
  readonly hash: string;
}

/** Filters of {@link AuditRepository.list}, all optional but `limit`. */
export interface AuditQuery {
  /** Only records with seq greater than this. */
  readonly afterSeq?: number;
  /** Only of this run. */
  readonly runId?: string;
  /** Only by this actor subject. */
  readonly actor?: string;
  /** Only with this action. */
  readonly action?: string;
  /** Only with an action that starts with this text (case-sensitive). */
  readonly actionPrefix?: string;
  /** Only records with seq at most this. */
  readonly throughSeq?: number;
  /** Only with this resource. */
  readonly resource?: string;
  /** Only records at or after this time, epoch ms. */
  readonly since?: number;
  /** `asc` (oldest first) or `desc`. */
  readonly order: "asc" | "desc";
  /** How many at most. */
  readonly limit: number;
}

/** The audit log. */
export interface AuditRepository {
  /**
   * How records get their place in the chain. `"write"` (SQLite, whose writes
   * take turns): the writer reads {@link head} and inserts chained records with
   * {@link insertChained}. `"seal"` (PostgreSQL): the writer inserts drafts with
   * {@link insertPending}, and an elected sealer chains them later in the order
   * {@link pending} gives ({@link seal}).
   */
  readonly chaining: "write" | "seal";
  /** The sealed head. */
  head(): Promise<SealedHead>;
  /** Inserts chained records (`"write"` chaining only). */
  insertChained(records: readonly (AuditRecord & { dataJson: string })[]): Promise<void>;
  /** Inserts drafts to be sealed (`"seal"` chaining only). */
  insertPending(drafts: readonly AuditDraft[]): Promise<void>;
  /**
   * Up to `limit` pending records that can be sealed now, in seal order: only
   * rows of transactions that ended before every transaction still running
   * began, so that no row can later appear before them (`"seal"` only).
   */
  pending(limit: number): Promise<PendingAudit[]>;
  /**
   * Writes `seals` (contiguous after `expected`) and moves the watermark to
   * the last, if it is still at `expected`. Resolves `false` (writing nothing)
   * when another sealer moved it first (`"seal"` only).
   */
  seal(seals: readonly AuditSeal[], expected: SealedHead): Promise<boolean>;
  /** How many records wait to be sealed (0 with `"write"` chaining). */
  pendingCount(): Promise<number>;
  /** Sealed records by the query's filters, in seq order. */
  list(query: AuditQuery): Promise<AuditRecord[]>;
  /** The names of the append-only guards (triggers) that are missing or altered. */
  missingGuards(): Promise<string[]>;
}

// ---------------------------------------------------------------------------
// Governance state

/** An agent's stored autonomy state (the shape of `autonomy/_rules.ts`). */
export interface AutonomyRow {
  /** The automatic cap's level name, or `null`. */
  readonly capLevel: string | null;
  /** Consecutive denied/failed outcomes. */
  readonly streak: number;
  /** The row's version (absent rows read as `undefined`). */
  readonly version: number;
}

/** Durable governance state. */
export interface GovernanceRepository {
  /**
   * Serialises this transaction with every other transaction that locks the
   * same agent, until it ends (PostgreSQL: `pg_advisory_xact_lock`; SQLite:
   * writes take turns already). Call it before reading an agent's state.
   */
  lockAgent(agentId: string): Promise<void>;
  /** The agent's autonomy row, or `undefined`. */
  autonomy(agentId: string): Promise<AutonomyRow | undefined>;
  /**
   * Inserts or updates the agent's autonomy row if it is still at
   * `expectedVersion` (0: no row). Resolves whether it changed.
   */
  writeAutonomy(
    agentId: string,
    next: { capLevel: string | null; streak: number },
    expectedVersion: number,
    at: number,
  ): Promise<boolean>;
  /** How many run starts of the agent are after `since`. */
  countStarts(agentId: string, since: number): Promise<number>;
  /** The time of the agent's `offset`-th run start after `since` (0 = oldest), if any. */
  nthStart(agentId: string, since: number, offset: number): Promise<number | undefined>;
  /** Deletes the agent's run starts at or before `before`. */
  pruneStarts(agentId: string, before: number): Promise<void>;
  /** Records one run start of the agent. */
  insertStart(agentId: string, at: number): Promise<void>;
}

// ---------------------------------------------------------------------------
// Policies

/** One stored version of the policy set, as written and as read. */
export interface PolicyVersionRow {
  /** 1, 2, 3, ... without gaps; the highest is the active version. */
  readonly version: number;
  /** The policy set as canonical JSON: the exact text {@link hash} is the SHA-256 of. */
  readonly content: string;
  /** Lowercase hex SHA-256 of `content` (the set's `policySetVersion`). */
  readonly hash: string;
  /** When it was applied, epoch ms. */
  readonly appliedAt: number;
  /** The subject of who applied it. */
  readonly appliedBy: string;
  /** Why, or `null`. */
  readonly reason: string | null;
}

/** The versions of the policy set; the newest is in force. */
export interface PolicyRepository {
  /**
   * Inserts a version. Resolves `false` (writing nothing) when that version
   * number is taken, by a committed row or one being inserted concurrently
   * (`ON CONFLICT DO NOTHING`): read {@link active} again and retry with the next.
   */
  insert(row: PolicyVersionRow): Promise<boolean>;
  /** The version with the highest number, or `undefined` when none was applied. */
  active(): Promise<PolicyVersionRow | undefined>;
  /** The version numbered `version`, or `undefined`. */
  byVersion(version: number): Promise<PolicyVersionRow | undefined>;
  /** Up to `limit` versions, newest first. */
  history(limit: number): Promise<PolicyVersionRow[]>;
}
