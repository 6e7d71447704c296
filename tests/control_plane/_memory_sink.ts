/** Test doubles shared by the identity tests. */
import type { AuditEntryInput, AuditSink } from "../../control_plane/audit/types.ts";

/** An audit sink that keeps the entries it is given, for assertions. */
export class MemorySink implements AuditSink {
  readonly entries: AuditEntryInput[] = [];
  append(entry: AuditEntryInput): Promise<void> {
    this.entries.push(entry);
    return Promise.resolve();
  }
}

/** A promise with its resolver, for ordering concurrent steps. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
