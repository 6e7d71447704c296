/**
 * An in-memory store whose audit repository chains as PostgreSQL's does
 * (`"seal"`): writers insert drafts, a sealer chains them. Only the audit
 * repository exists (the other repositories throw): it drives
 * `AuditLog.seal()`, `list`, `head` and `verify` through the sealing path
 * without a server. Transactions buffer their writes and apply them at
 * commit, so a rolled-back draft is never seen.
 */
import type {
  AuditDraft,
  AuditQuery,
  AuditRepository,
  AuditSeal,
  PendingAudit,
  SealedHead,
  Store,
  StoreRole,
  StoreTx,
  WakeTopic,
} from "../../control_plane/store/port.ts";
import { AUDIT_GENESIS_HASH, type AuditRecord } from "../../control_plane/audit/mod.ts";

/** The state of a fake sealing store, open to the test. */
export interface SealStoreState {
  /** Committed drafts, in commit order, with their keys. */
  readonly drafts: PendingAudit[];
  /** Sealed records by seq (index seq - 1). */
  readonly sealed: (AuditRecord & { key: string })[];
  /** Whether this process wins the sealer role. */
  leads: boolean;
  /** How many `seal` calls to refuse as if another sealer moved the watermark first. */
  raceSeals: number;
  /** Guards reported missing by `missingGuards`. */
  missing: string[];
}

function notHere(): never {
  throw new Error("The seal store has only an audit repository");
}

/** A fake store with `"seal"` audit chaining, and its state. */
export function sealStore(options: { readOnly?: boolean } = {}): {
  store: Store;
  state: SealStoreState;
} {
  const state: SealStoreState = { drafts: [], sealed: [], leads: true, raceSeals: 0, missing: [] };
  let nextKey = 0;
  const head = (): SealedHead => {
    const last = state.sealed.at(-1);
    return last === undefined
      ? { seq: 0, hash: AUDIT_GENESIS_HASH }
      : { seq: last.seq, hash: last.hash };
  };
  const sealedKeys = () => new Set(state.sealed.map((r) => r.key));
  const run = async <T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> => {
    const inserted: AuditDraft[] = [];
    const audit: AuditRepository = {
      chaining: "seal",
      head: () => Promise.resolve(head()),
      insertChained: () => Promise.reject(new Error("insertChained with seal chaining")),
      insertPending: (drafts) => {
        inserted.push(...drafts);
        return Promise.resolve();
      },
      pending: (limit) => {
        const done = sealedKeys();
        return Promise.resolve(state.drafts.filter((p) => !done.has(p.key)).slice(0, limit));
      },
      seal: (seals: readonly AuditSeal[], expected: SealedHead) => {
        const now = head();
        if (state.raceSeals > 0) {
          state.raceSeals--;
          return Promise.resolve(false);
        }
        if (now.seq !== expected.seq || now.hash !== expected.hash) return Promise.resolve(false);
        const byKey = new Map(state.drafts.map((p) => [p.key, p.draft]));
        for (const [i, seal] of seals.entries()) {
          if (seal.seq !== now.seq + 1 + i) throw new Error(`Seal ${seal.seq} is not contiguous`);
          const draft = byKey.get(seal.key)!;
          const { dataJson: _, ...fields } = draft;
          state.sealed.push({
            ...fields,
            seq: seal.seq,
            prevHash: seal.prevHash,
            hash: seal.hash,
            key: seal.key,
          });
        }
        return Promise.resolve(true);
      },
      pendingCount: () => Promise.resolve(state.drafts.length - state.sealed.length),
      list: (query: AuditQuery) => {
        let records: AuditRecord[] = state.sealed.map(({ key: _, ...record }) => record);
        if (query.afterSeq !== undefined) records = records.filter((r) => r.seq > query.afterSeq!);
        if (query.runId !== undefined) records = records.filter((r) => r.runId === query.runId);
        if (query.actor !== undefined) {
          records = records.filter((r) => r.actor.subject === query.actor);
        }
        if (query.action !== undefined) records = records.filter((r) => r.action === query.action);
        if (query.order === "desc") records = records.toReversed();
        return Promise.resolve(records.slice(0, query.limit));
      },
      missingGuards: () => Promise.resolve([...state.missing]),
    };
    const tx = {
      get runs() {
        return notHere();
      },
      get approvals() {
        return notHere();
      },
      get governance() {
        return notHere();
      },
      audit,
      wake: (_topic: WakeTopic) => {},
    };
    const result = await fn(tx as unknown as StoreTx);
    // Commit: the drafts become visible (and sealable) in commit order.
    for (const draft of inserted) state.drafts.push({ key: `k${++nextKey}`, draft });
    return result;
  };
  const store: Store = {
    kind: "postgres",
    location: "memory://seal",
    readOnly: options.readOnly === true,
    transaction: run,
    read: run,
    lead: <T>(_role: StoreRole, fn: (tx: StoreTx) => Promise<T>) =>
      state.leads ? run(fn) : Promise.resolve(undefined),
    onWake: () => () => {},
    schemaVersion: () => Promise.resolve(0),
    close: () => Promise.resolve(),
    [Symbol.asyncDispose]: () => Promise.resolve(),
  };
  return { store, state };
}
