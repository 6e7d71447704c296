/**
 * The shapes of audit entries and records.
 *
 * @module
 */
import type { ActorKind, JsonValue } from "../../shared/mod.ts";

/**
 * Who performed an audited action.
 *
 * @example Attribute an entry to an agent
 * ```ts
 * import {
 *   type AuditActor,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const actor: AuditActor = { subject: "agent-7", kind: "agent" };
 * using db = openDatabase(":memory:");
 * const audit = new AuditLog(db);
 * audit.append({ actor, action: "tool.invoke", resource: "tool:search", outcome: "succeeded" });
 * assert.deepEqual(audit.list({ actorSubject: "agent-7" })[0]?.actor, actor);
 * ```
 */
export interface AuditActor {
  /** The identity's subject. */
  readonly subject: string;
  /** The identity's actor kind. */
  readonly kind: ActorKind;
}

/**
 * What a caller hands to `AuditLog.append`.
 *
 * @example Record a decision
 * ```ts
 * import {
 *   type AuditEntryInput,
 *   AuditEntryInputSchema,
 *   AuditLog,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const entry: AuditEntryInput = {
 *   actor: { subject: "planner-1", kind: "agent" },
 *   action: "policy.decide",
 *   resource: "bom:42",
 *   outcome: "allowed",
 *   reason: "Allowed by rule planners",
 *   runId: "r-1",
 *   data: { matchedRuleIds: ["planners"] },
 * };
 * assert.ok(AuditEntryInputSchema.safeParse(entry).success);
 * using db = openDatabase(":memory:");
 * assert.equal(new AuditLog(db).append(entry).outcome, "allowed");
 * ```
 */
export interface AuditEntryInput {
  /** Who did it. */
  readonly actor: AuditActor;
  /** What was done, dotted: `auth.token.rejected`, `run.transition`, `policy.decide`. */
  readonly action: string;
  /** What it was done to: `run:r-1`, `http:/path`, `approval:a-1`. */
  readonly resource: string;
  /** How it ended: `allowed`, `denied`, `rejected`, `succeeded`, `failed`, ... */
  readonly outcome: string;
  /** A one-line reason, when there is one. */
  readonly reason?: string;
  /** The run this entry belongs to. */
  readonly runId?: string;
  /** The W3C trace id in force. */
  readonly traceId?: string;
  /** Structured details. */
  readonly data?: JsonValue;
}

/**
 * A stored, hash-chained audit record.
 *
 * @example A stored record and its hash
 * ```ts
 * import {
 *   AUDIT_GENESIS_HASH,
 *   AuditLog,
 *   type AuditRecord,
 *   computeAuditHash,
 *   FakeClock,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const audit = new AuditLog(db, { clock: new FakeClock(1_000) });
 * const record: AuditRecord = audit.append({
 *   actor: { subject: "alice", kind: "human" },
 *   action: "run.cancel",
 *   resource: "run:r-1",
 *   outcome: "cancelled",
 * });
 * assert.equal(record.seq, 1);
 * assert.equal(record.at, 1_000);
 * assert.equal(record.reason, null);
 * assert.equal(record.prevHash, AUDIT_GENESIS_HASH);
 * const { hash, ...rest } = record;
 * assert.equal(computeAuditHash(rest), hash);
 * ```
 */
export interface AuditRecord {
  /** Position in the chain, from 1, without gaps. */
  readonly seq: number;
  /** When it was appended, epoch milliseconds from the injected clock. */
  readonly at: number;
  /** Who did it. */
  readonly actor: AuditActor;
  /** What was done. */
  readonly action: string;
  /** What it was done to. */
  readonly resource: string;
  /** How it ended. */
  readonly outcome: string;
  /** The reason, or `null`. */
  readonly reason: string | null;
  /** The run, or `null`. */
  readonly runId: string | null;
  /** The trace id, or `null`. */
  readonly traceId: string | null;
  /** Structured details (`null` when none). */
  readonly data: JsonValue;
  /** The previous record's hash (64 zeros for the first). */
  readonly prevHash: string;
  /** `SHA-256(prevHash + canonical JSON of the record)`, lowercase hex. */
  readonly hash: string;
}

/**
 * Anything that can append audit entries; `AuditLog` is the real one.
 *
 * @example Wrap the audit log in a counting sink
 * ```ts
 * import {
 *   AuditLog,
 *   type AuditSink,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const log = new AuditLog(db);
 * const actions: string[] = [];
 * const sink: AuditSink = { append: (entry) => (actions.push(entry.action), log.append(entry)) };
 * const actor = { subject: "svc", kind: "service" } as const;
 * const record = sink.append({ actor, action: "run.create", resource: "r-1", outcome: "queued" });
 * assert.deepEqual(actions, ["run.create"]);
 * assert.deepEqual(log.head(), { seq: 1, hash: record.hash });
 * ```
 */
export interface AuditSink {
  /** Appends one entry and returns the stored record. */
  append(entry: AuditEntryInput): AuditRecord;
}
