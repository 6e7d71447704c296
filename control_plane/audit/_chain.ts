/**
 * Chaining, pure: the place and hash of records after a head, as a `"write"`
 * writer inserts them and as the `"seal"` sealer seals them. No I/O:
 * `AuditLog` reads the head and the drafts, asks these, and writes the result.
 *
 * @module
 */
import { type JsonValue, PlmError } from "../../shared/mod.ts";
import type { AuditDraft, AuditSeal, PendingAudit, SealedHead } from "../store/port.ts";
import type { WritableEntry } from "./_entry.ts";
import { chainHash } from "./hash.ts";
import type { AuditRecord } from "./types.ts";

/** A draft of a checked entry, stamped `at` (whole milliseconds). */
export function draftOf({ entry, dataJson }: WritableEntry, now: number): AuditDraft {
  const at = Math.trunc(now);
  if (!Number.isSafeInteger(at)) {
    throw new PlmError("ERR_INTERNAL", `Cannot stamp an audit record with the time ${now}`);
  }
  return {
    at,
    actor: { subject: entry.actor.subject, kind: entry.actor.kind },
    action: entry.action,
    resource: entry.resource,
    outcome: entry.outcome,
    reason: entry.reason ?? null,
    runId: entry.runId ?? null,
    traceId: entry.traceId ?? null,
    data: (entry.data ?? null) as JsonValue,
    dataJson,
  };
}

/** The hash of `draft` placed at `seq` after a record hashed `prevHash`. */
function hashAt(draft: AuditDraft, seq: number, prevHash: string): string {
  return chainHash(
    prevHash,
    seq,
    draft.at,
    draft.actor.subject,
    draft.actor.kind,
    draft.action,
    draft.resource,
    draft.outcome,
    draft.reason,
    draft.runId,
    draft.traceId,
    draft.dataJson,
  );
}

/**
 * `drafts` chained after `head`, in order: seq contiguous from `head.seq + 1`,
 * each linked to the one before.
 */
export function chainAfter(
  head: SealedHead,
  drafts: readonly AuditDraft[],
): (AuditRecord & { dataJson: string })[] {
  let { seq, hash } = head;
  return drafts.map((draft) => {
    const prevHash = hash;
    seq += 1;
    hash = hashAt(draft, seq, prevHash);
    return { ...draft, seq, prevHash, hash };
  });
}

/**
 * The seals of `pending` (in the order given, the seal order) after `head`:
 * seq contiguous from `head.seq + 1`. Resolves also the new head.
 */
export function sealAfter(
  head: SealedHead,
  pending: readonly PendingAudit[],
): { seals: AuditSeal[]; head: SealedHead } {
  const records = chainAfter(head, pending.map((p) => p.draft));
  const seals = records.map((record, i) => ({
    key: pending[i]!.key,
    seq: record.seq,
    prevHash: record.prevHash,
    hash: record.hash,
  }));
  const last = records.at(-1);
  return { seals, head: last === undefined ? head : { seq: last.seq, hash: last.hash } };
}
