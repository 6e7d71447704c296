/**
 * The shapes of audit entries and records.
 *
 * @module
 */
import type { ActorKind, JsonValue } from "../../shared/mod.ts";
import type { StoreTx } from "../store/port.ts";

/** Who performed an audited action. */
export interface AuditActor {
  /** The identity's subject. */
  readonly subject: string;
  /** The identity's actor kind. */
  readonly kind: ActorKind;
}

/** What a caller hands to `AuditLog.append`. */
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

/** A stored, hash-chained audit record. */
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

/** Anything that can append audit entries; `AuditLog` is the real one. */
export interface AuditSink {
  /**
   * Appends one entry, in `options.tx` when given (it commits with the
   * caller's changes), else in a transaction of its own. No record is
   * returned: on PostgreSQL a record gets its seq and hash when sealed.
   */
  append(entry: AuditEntryInput, options?: { tx?: StoreTx }): Promise<void>;
}
