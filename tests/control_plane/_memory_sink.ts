/** Test doubles shared by the identity tests. */
import type { AuditEntryInput, AuditRecord, AuditSink } from "../../control_plane/audit/types.ts";

/** An audit sink that keeps the entries it is given, for assertions. */
export class MemorySink implements AuditSink {
  readonly entries: AuditEntryInput[] = [];
  append(entry: AuditEntryInput): AuditRecord {
    this.entries.push(entry);
    return {
      seq: this.entries.length,
      at: 0,
      actor: entry.actor,
      action: entry.action,
      resource: entry.resource,
      outcome: entry.outcome,
      reason: entry.reason ?? null,
      runId: entry.runId ?? null,
      traceId: entry.traceId ?? null,
      data: entry.data ?? null,
      prevHash: "0".repeat(64),
      hash: "0".repeat(64),
    };
  }
}

/** A promise with its resolver, for ordering concurrent steps. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
