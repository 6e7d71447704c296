/**
 * The conformance suite of the store port: every repository behaviour the
 * services rely on, tested through the port (`control_plane/store/port.ts`)
 * and nothing else, so that every adapter runs the same tests.
 *
 * `storeConformance("sqlite", () => openStore(":memory:"))` registers the
 * tests, named `[sqlite] ...`; each opens a fresh store and closes it. Time is
 * fixed numbers, never a clock; nothing sleeps.
 *
 * @module
 */
import assert from "node:assert/strict";
import { isPlmError } from "../../shared/mod.ts";
import type { AuditRecord } from "../../control_plane/audit/types.ts";
import type { Run } from "../../control_plane/runs/state_machine.ts";
import type {
  ApprovalInsert,
  AuditDraft,
  AuditSeal,
  PolicyVersionRow,
  SealedHead,
  Store,
  StoreTx,
} from "../../control_plane/store/port.ts";

const GENESIS: SealedHead = { seq: 0, hash: "0".repeat(64) };
const TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/** A queued run created at `createdAt`, with `extra` fields over the defaults. */
export function makeRun(id: string, createdAt: number, extra: Partial<Run> = {}): Run {
  return {
    id,
    state: "queued",
    version: 1,
    task: {
      action: "bom.read",
      resource: "bom:1",
      capabilities: ["bom"],
      input: { part: 7 },
      risk: "low",
      attributes: { site: "lyon" },
    },
    requester: { subject: "alice", kind: "human" },
    idempotencyKey: null,
    traceparent: TRACEPARENT,
    tracestate: "",
    attempt: 0,
    escalations: 0,
    costUnits: 0,
    agentId: null,
    approvalId: null,
    result: null,
    error: null,
    createdAt,
    updatedAt: createdAt,
    lease: null,
    ...extra,
  };
}

/** An audit record before chaining, its `data` as canonical JSON. */
export function makeDraft(n: number, extra: Partial<AuditDraft> = {}): AuditDraft {
  const data = extra.data ?? { n };
  return {
    at: 1_000 + n,
    actor: { subject: "svc", kind: "service" },
    action: "run.transition",
    resource: `run:r-${n}`,
    outcome: "succeeded",
    reason: null,
    runId: null,
    traceId: null,
    ...extra,
    data,
    dataJson: JSON.stringify(data),
  };
}

/** A 64-hex-digit stand-in hash for the record at `seq` (the port stores what it is given). */
function hashOf(seq: number, salt = 0): string {
  return (seq * 1_000 + salt).toString(16).padStart(64, "a");
}

/** Writes `drafts` the way the store chains them: chained now, or pending until sealed. */
export async function appendAudit(tx: StoreTx, drafts: readonly AuditDraft[]): Promise<void> {
  if (tx.audit.chaining === "seal") {
    await tx.audit.insertPending(drafts);
    return;
  }
  let head = await tx.audit.head();
  const records = drafts.map((draft) => {
    const seq = head.seq + 1;
    const record = { ...draft, seq, prevHash: head.hash, hash: hashOf(seq) };
    head = { seq, hash: record.hash };
    return record;
  });
  await tx.audit.insertChained(records);
}

/** Seals every pending record (`"seal"` chaining); nothing to do with `"write"`. */
export async function sealAll(store: Store): Promise<number> {
  const sealed = await store.lead("sealer", async (tx) => {
    if (tx.audit.chaining === "write") return 0;
    const pending = await tx.audit.pending(1_000);
    if (pending.length === 0) return 0;
    const head = await tx.audit.head();
    const seals = chainSeals(head, pending.map((p) => p.key));
    assert.equal(await tx.audit.seal(seals, head), true);
    return seals.length;
  });
  assert.notEqual(sealed, undefined, "this process leads the sealer role");
  return sealed ?? 0;
}

function chainSeals(head: SealedHead, keys: readonly string[], salt = 0): AuditSeal[] {
  let last = head;
  return keys.map((key) => {
    const seq = last.seq + 1;
    const seal = { key, seq, prevHash: last.hash, hash: hashOf(seq, salt) };
    last = { seq, hash: seal.hash };
    return seal;
  });
}

function withoutChain(record: AuditRecord): Omit<AuditRecord, "seq" | "prevHash" | "hash"> {
  const { seq: _seq, prevHash: _prev, hash: _hash, ...rest } = record;
  return rest;
}

function withoutJson(draft: AuditDraft): Omit<AuditDraft, "dataJson"> {
  const { dataJson: _json, ...rest } = draft;
  return rest;
}

function approval(id: string, createdAt: number, extra: Partial<ApprovalInsert> = {}) {
  return {
    id,
    runId: "r-1",
    kind: "approval",
    spec: { approverRoles: ["lead"], quorum: 2, timeoutSeconds: 60, onExpiry: "deny" },
    subject: { action: "bom.release", resource: "bom:1" },
    digest: "d".repeat(64),
    requester: { subject: "agent-7", kind: "agent" },
    traceId: "0af7651916cd43dd8448eb211c80319c",
    createdAt,
    deadline: createdAt + 60_000,
    ...extra,
  } satisfies ApprovalInsert;
}

async function insertRuns(store: Store, runs: readonly Run[]): Promise<void> {
  await store.transaction(async (tx) => {
    for (const run of runs) assert.equal(await tx.runs.insert({ run, requestDigest: "r" }), true);
  });
}

function ids(runs: readonly { id: string }[]): string[] {
  return runs.map((run) => run.id);
}

/** A stored policy version numbered `version`, with fixed fields. */
export function makePolicyVersion(version: number): PolicyVersionRow {
  const content = `{"rules":[{"actions":["bom.read"],"effect":"allow","id":"r${version}"}]}`;
  return {
    version,
    content,
    hash: version.toString(16).padStart(64, "c"),
    appliedAt: 1_000 * version,
    appliedBy: "ops",
    reason: `change ${version}`,
  };
}

/** Yields to the event loop `n` times without a timer. */
async function yieldTurns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => queueMicrotask(resolve));
}

/**
 * Registers the conformance tests of one adapter, named `[${engine}] ...`.
 *
 * @param engine The adapter's name in the test names (`sqlite`, `postgres`).
 * @param open Opens a fresh, empty store at the latest schema.
 */
export function storeConformance(engine: string, open: () => Promise<Store>): void {
  function test(name: string, fn: (store: Store) => Promise<void>): void {
    Deno.test({
      name: `[${engine}] ${name}`,
      sanitizeResources: false, // a PostgreSQL pool may keep its sockets until end() settles
      async fn() {
        const store = await open();
        try {
          await fn(store);
        } finally {
          await store.close();
        }
      },
    });
  }

  // -------------------------------------------------------------------------
  // Runs

  test("runs.insert() stores a run that byId() and byIdempotencyKey() read back", async (store) => {
    const run = makeRun("r-1", 10, { idempotencyKey: "k-1", tracestate: "v=1" });
    const plain = makeRun("r-2", 11);
    await store.transaction(async (tx) => {
      assert.equal(await tx.runs.insert({ run, requestDigest: "digest-1" }), true);
      assert.equal(await tx.runs.insert({ run: plain, requestDigest: "digest-2" }), true);
    });
    await store.read(async (tx) => {
      assert.deepEqual(await tx.runs.byId("r-1"), run);
      assert.deepEqual(await tx.runs.byId("r-2"), plain);
      assert.deepEqual(await tx.runs.byIdempotencyKey("k-1"), { run, requestDigest: "digest-1" });
      assert.equal(await tx.runs.byId("missing"), undefined);
      assert.equal(await tx.runs.byIdempotencyKey("missing"), undefined);
    });
    await store.transaction(async (tx) => {
      assert.deepEqual(await tx.runs.byId("r-1", { lock: true }), run);
      assert.equal(await tx.runs.byId("missing", { lock: true }), undefined);
    });
  });

  test("runs.insert() resolves false and writes nothing when the idempotency key is taken", async (store) => {
    const first = makeRun("r-1", 10, { idempotencyKey: "k-1" });
    const second = makeRun("r-2", 20, { idempotencyKey: "k-1" });
    await insertRuns(store, [first]);
    const inserted = await store.transaction((tx) =>
      tx.runs.insert({ run: second, requestDigest: "other" })
    );
    assert.equal(inserted, false);
    await store.read(async (tx) => {
      assert.equal(await tx.runs.byId("r-2"), undefined);
      assert.deepEqual(await tx.runs.byIdempotencyKey("k-1"), {
        run: first,
        requestDigest: "r",
      });
    });
    // Runs without a key never conflict.
    await insertRuns(store, [makeRun("r-3", 30), makeRun("r-4", 40)]);
  });

  test("runs.update() writes every mutable field, fenced by the version", async (store) => {
    const run = makeRun("r-1", 10);
    await insertRuns(store, [run]);
    const next: Run = {
      ...run,
      state: "succeeded",
      version: 2,
      attempt: 1,
      escalations: 1,
      costUnits: 2.5,
      agentId: "reader",
      approvalId: "a-1",
      result: { ok: [1, "two"] },
      error: { code: "ERR_AGENT_FAILED", message: "First try failed" },
      updatedAt: 99,
    };
    assert.equal(
      await store.transaction((tx) => tx.runs.update({ run: next, expectedVersion: 1 })),
      true,
    );
    assert.deepEqual(await store.read((tx) => tx.runs.byId("r-1")), next);
    const stale: Run = { ...next, state: "failed", version: 2, updatedAt: 100 };
    assert.equal(
      await store.transaction((tx) => tx.runs.update({ run: stale, expectedVersion: 1 })),
      false,
    );
    assert.deepEqual(await store.read((tx) => tx.runs.byId("r-1")), next);
    assert.equal(
      await store.transaction((tx) =>
        tx.runs.update({ run: { ...stale, id: "missing" }, expectedVersion: 2 })
      ),
      false,
    );
  });

  test("runs.update() with leaseToken changes the run only while that lease is held", async (store) => {
    await insertRuns(store, [makeRun("r-1", 10)]);
    const [claim] = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-1", now: 100, expiresAt: 200, limit: 1 })
    );
    const run = claim!.run;
    assert.deepEqual(run.lease, { owner: "w-1", token: 1, expiresAt: 200 });
    const started: Run = { ...run, state: "running", version: run.version + 1, attempt: 1 };
    const write = (next: Run, expectedVersion: number, leaseToken: number) =>
      store.transaction((tx) => tx.runs.update({ run: next, expectedVersion, leaseToken }));
    assert.equal(await write(started, run.version, 2), false, "another token");
    assert.equal(await write(started, run.version, 1), true, "the token held");
    // A heartbeat keeps the token.
    const beat: Run = {
      ...started,
      version: started.version + 1,
      lease: { owner: "w-1", token: 1, expiresAt: 300 },
    };
    assert.equal(await write(beat, started.version, 1), true);
    assert.deepEqual((await store.read((tx) => tx.runs.byId("r-1")))?.lease, beat.lease);
    // Released: the old token fences nothing any more.
    const released: Run = { ...beat, state: "retrying", version: beat.version + 1, lease: null };
    assert.equal(await write(released, beat.version, 1), true);
    const late: Run = { ...released, state: "failed", version: released.version + 1 };
    assert.equal(await write(late, released.version, 1), false, "a released lease");
    // The next claim takes a greater token.
    const [again] = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-2", now: 400, expiresAt: 500, limit: 1 })
    );
    assert.deepEqual(again?.run.lease, { owner: "w-2", token: 2, expiresAt: 500 });
    assert.equal(
      await write({ ...late, version: again!.run.version + 1 }, again!.run.version, 1),
      false,
    );
  });

  test("runs.claimReady() takes the oldest ready runs, skipping live leases and taking expired ones", async (store) => {
    await insertRuns(store, [
      makeRun("r-4", 40, { state: "escalated" }),
      makeRun("r-1", 10),
      makeRun("r-3", 30, { state: "retrying" }),
      makeRun("r-2", 20),
      makeRun("r-0", 5, { state: "awaiting_approval" }),
      makeRun("r-9", 1, { state: "succeeded" }),
      makeRun("r-8", 2, { state: "running" }),
    ]);
    const first = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-1", now: 100, expiresAt: 1_000, limit: 2 })
    );
    assert.deepEqual(ids(first.map((c) => c.run)), ["r-1", "r-2"]);
    for (const { run, previousOwner } of first) {
      assert.equal(previousOwner, null);
      assert.deepEqual(run.lease, { owner: "w-1", token: 1, expiresAt: 1_000 });
      assert.equal(run.version, 2);
      assert.equal(run.state, "queued");
      assert.deepEqual(await store.read((tx) => tx.runs.byId(run.id)), run);
    }
    const second = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-2", now: 999, expiresAt: 2_000, limit: 10 })
    );
    assert.deepEqual(ids(second.map((c) => c.run)), ["r-3", "r-4"], "live leases are skipped");
    assert.deepEqual(
      await store.transaction((tx) =>
        tx.runs.claimReady({ owner: "w-3", now: 999, expiresAt: 3_000, limit: 10 })
      ),
      [],
    );
    // At 1,000 the leases of w-1 have expired (expiry <= now): they are taken with a new token.
    const third = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-3", now: 1_000, expiresAt: 3_000, limit: 10 })
    );
    assert.deepEqual(
      third.map(({ run, previousOwner }) => [run.id, previousOwner, run.lease, run.version]),
      [
        ["r-1", "w-1", { owner: "w-3", token: 2, expiresAt: 3_000 }, 3],
        ["r-2", "w-1", { owner: "w-3", token: 2, expiresAt: 3_000 }, 3],
      ],
    );
    const untouched = await store.read((tx) => tx.runs.byId("r-8"));
    assert.deepEqual([untouched?.version, untouched?.lease], [1, null]);
  });

  test("runs.ready() lists the runs claimReady() would take, without taking them", async (store) => {
    await insertRuns(store, [
      makeRun("r-3", 30),
      makeRun("r-1", 10),
      makeRun("r-2", 20, { state: "retrying" }),
      makeRun("r-x", 5, { state: "cancelled" }),
    ]);
    await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-1", now: 0, expiresAt: 50, limit: 1 })
    );
    await store.read(async (tx) => {
      assert.deepEqual(ids(await tx.runs.ready(49, 10)), ["r-2", "r-3"]);
      assert.deepEqual(ids(await tx.runs.ready(50, 10)), ["r-1", "r-2", "r-3"]);
      assert.deepEqual(ids(await tx.runs.ready(50, 2)), ["r-1", "r-2"]);
    });
    const r1 = await store.read((tx) => tx.runs.byId("r-1"));
    assert.equal(r1?.lease?.owner, "w-1");
  });

  test("runs.expired() lists runs whose lease expired by now, oldest expiry first", async (store) => {
    await insertRuns(store, [makeRun("r-1", 10), makeRun("r-2", 20), makeRun("r-3", 30)]);
    for (const [owner, expiresAt] of [["w-1", 300], ["w-2", 100], ["w-3", 200]] as const) {
      await store.transaction((tx) => tx.runs.claimReady({ owner, now: 0, expiresAt, limit: 1 }));
    }
    await store.transaction(async (tx) => {
      assert.deepEqual(await tx.runs.expired(99, 10), []);
      assert.deepEqual(ids(await tx.runs.expired(200, 10)), ["r-2", "r-3"]);
      assert.deepEqual(ids(await tx.runs.expired(1_000, 2)), ["r-2", "r-3"]);
      const all = await tx.runs.expired(1_000, 10);
      assert.deepEqual(all.map((run) => run.lease?.owner), ["w-2", "w-3", "w-1"]);
    });
  });

  test("runs.page() pages newest first by keyset, in any of the states", async (store) => {
    await insertRuns(store, [
      makeRun("r-a", 10),
      makeRun("r-b", 20, { state: "running" }),
      makeRun("r-c", 20),
      makeRun("r-d", 30, { state: "failed" }),
      makeRun("r-e", 40),
    ]);
    await store.read(async (tx) => {
      const first = await tx.runs.page(undefined, undefined, 2);
      assert.deepEqual(ids(first), ["r-e", "r-d"]);
      const next = await tx.runs.page(undefined, { createdAt: 30, id: "r-d" }, 2);
      assert.deepEqual(ids(next), ["r-c", "r-b"]);
      assert.deepEqual(ids(await tx.runs.page(undefined, { createdAt: 20, id: "r-b" }, 5)), [
        "r-a",
      ]);
      assert.deepEqual(ids(await tx.runs.page(["queued"], undefined, 10)), ["r-e", "r-c", "r-a"]);
      assert.deepEqual(ids(await tx.runs.page(["queued"], { createdAt: 20, id: "r-c" }, 10)), [
        "r-a",
      ]);
      assert.deepEqual(ids(await tx.runs.page(["failed", "running"], undefined, 10)), [
        "r-d",
        "r-b",
      ]);
      assert.deepEqual(
        ids(await tx.runs.page(["queued", "running"], { createdAt: 40, id: "r-e" }, 2)),
        ["r-c", "r-b"],
      );
      assert.deepEqual(await tx.runs.page([], undefined, 10), []);
      assert.deepEqual(await tx.runs.page(["expired"], undefined, 10), []);
    });
  });

  // -------------------------------------------------------------------------
  // Approvals

  test("approvals.insert() stores a pending approval that byId() reads with its votes", async (store) => {
    const asked = approval("a-1", 100);
    await store.transaction((tx) => tx.approvals.insert(asked));
    const read = await store.read((tx) => tx.approvals.byId("a-1"));
    assert.deepEqual(read, {
      ...asked,
      state: "pending",
      reason: null,
      decidedAt: null,
      votes: [],
    });
    assert.equal(await store.read((tx) => tx.approvals.byId("missing")), undefined);
    assert.deepEqual(
      await store.transaction((tx) => tx.approvals.byId("a-1", { lock: true })),
      read,
    );
    const untraced = approval("a-2", 100, { traceId: null, subject: "bom:2" });
    await store.transaction((tx) => tx.approvals.insert(untraced));
    const other = await store.read((tx) => tx.approvals.byId("a-2"));
    assert.deepEqual([other?.traceId, other?.subject], [null, "bom:2"]);
  });

  test("approvals.insertVote() counts each approver once, votes read oldest first", async (store) => {
    await store.transaction((tx) => tx.approvals.insert(approval("a-1", 100)));
    const vote = (
      subject: string,
      decision: string,
      at: number,
      comment: string | null = null,
    ) => ({
      approvalId: "a-1",
      approver: { subject, kind: "human" as const },
      decision,
      comment,
      digest: "d".repeat(64),
      at,
    });
    await store.transaction(async (tx) => {
      assert.equal(await tx.approvals.insertVote(vote("bob", "approve", 120, "Fine")), true);
      assert.equal(await tx.approvals.insertVote(vote("ann", "approve", 110)), true);
    });
    assert.equal(
      await store.transaction((tx) => tx.approvals.insertVote(vote("ann", "reject", 130))),
      false,
    );
    const read = await store.read((tx) => tx.approvals.byId("a-1"));
    assert.deepEqual(read?.votes, [
      { approver: { subject: "ann", kind: "human" }, decision: "approve", comment: null, at: 110 },
      {
        approver: { subject: "bob", kind: "human" },
        decision: "approve",
        comment: "Fine",
        at: 120,
      },
    ]);
  });

  test("approvals.resolve() ends an approval only while it is pending", async (store) => {
    await store.transaction((tx) => tx.approvals.insert(approval("a-1", 100)));
    assert.equal(
      await store.transaction((tx) => tx.approvals.resolve("a-1", "approved", "Quorum", 150)),
      true,
    );
    assert.equal(
      await store.transaction((tx) => tx.approvals.resolve("a-1", "rejected", "Late", 160)),
      false,
    );
    assert.equal(
      await store.transaction((tx) => tx.approvals.resolve("missing", "rejected", "No", 160)),
      false,
    );
    const read = await store.read((tx) => tx.approvals.byId("a-1"));
    assert.deepEqual([read?.state, read?.reason, read?.decidedAt], ["approved", "Quorum", 150]);
  });

  test("approvals.due() lists pending approvals due by now, earliest deadline first", async (store) => {
    await store.transaction(async (tx) => {
      await tx.approvals.insert(approval("a-late", 0, { deadline: 300 }));
      await tx.approvals.insert(approval("a-early", 0, { deadline: 100 }));
      await tx.approvals.insert(approval("a-done", 0, { deadline: 50 }));
      await tx.approvals.insert(approval("a-mid", 0, { deadline: 200 }));
      await tx.approvals.resolve("a-done", "approved", "Quorum", 10);
    });
    await store.transaction(async (tx) => {
      assert.deepEqual(ids(await tx.approvals.due(99, 10)), []);
      assert.deepEqual(ids(await tx.approvals.due(200, 10)), ["a-early", "a-mid"]);
      assert.deepEqual(ids(await tx.approvals.due(1_000, 2)), ["a-early", "a-mid"]);
      const [first] = await tx.approvals.due(1_000, 1);
      assert.deepEqual([first?.state, first?.votes], ["pending", []]);
    });
  });

  test("approvals.list() filters by state and run, oldest first, up to the limit", async (store) => {
    await store.transaction(async (tx) => {
      await tx.approvals.insert(approval("a-3", 30, { runId: "r-2" }));
      await tx.approvals.insert(approval("a-1", 10));
      await tx.approvals.insert(approval("a-2b", 20));
      await tx.approvals.insert(approval("a-2a", 20, { runId: "r-2" }));
      await tx.approvals.resolve("a-1", "rejected", "No", 40);
    });
    await store.read(async (tx) => {
      assert.deepEqual(ids(await tx.approvals.list({ limit: 10 })), ["a-1", "a-2a", "a-2b", "a-3"]);
      assert.deepEqual(ids(await tx.approvals.list({ limit: 2 })), ["a-1", "a-2a"]);
      assert.deepEqual(ids(await tx.approvals.list({ state: "pending", limit: 10 })), [
        "a-2a",
        "a-2b",
        "a-3",
      ]);
      assert.deepEqual(ids(await tx.approvals.list({ runId: "r-2", limit: 10 })), ["a-2a", "a-3"]);
      assert.deepEqual(
        ids(await tx.approvals.list({ state: "rejected", runId: "r-1", limit: 10 })),
        ["a-1"],
      );
      assert.deepEqual(await tx.approvals.list({ state: "expired", limit: 10 }), []);
    });
  });

  // -------------------------------------------------------------------------
  // Audit

  test("audit chains records by its chaining: head and insertChained, or pending and seal", async (store) => {
    const chaining = await store.read((tx) => Promise.resolve(tx.audit.chaining));
    assert.ok(chaining === "write" || chaining === "seal");
    assert.deepEqual(await store.read((tx) => tx.audit.head()), GENESIS);
    const drafts = [makeDraft(1), makeDraft(2, { runId: "r-1" }), makeDraft(3)];
    if (chaining === "write") {
      const calls: ((tx: StoreTx) => Promise<unknown>)[] = [
        (tx) => tx.audit.insertPending(drafts),
        (tx) => tx.audit.pending(10),
        (tx) => tx.audit.seal([], GENESIS),
      ];
      for (const call of calls) {
        await assert.rejects(store.transaction(call), (err) => isPlmError(err, "ERR_INTERNAL"));
      }
      await store.transaction(async (tx) => {
        const records = [
          { ...drafts[0]!, seq: 1, prevHash: GENESIS.hash, hash: hashOf(1) },
          { ...drafts[1]!, seq: 2, prevHash: hashOf(1), hash: hashOf(2) },
        ];
        await tx.audit.insertChained(records);
        assert.deepEqual(await tx.audit.head(), { seq: 2, hash: hashOf(2) });
        await tx.audit.insertChained([
          { ...drafts[2]!, seq: 3, prevHash: hashOf(2), hash: hashOf(3) },
        ]);
      });
    } else {
      await store.transaction((tx) => tx.audit.insertPending(drafts.slice(0, 2)));
      await store.transaction((tx) => tx.audit.insertPending(drafts.slice(2)));
      assert.equal(await store.read((tx) => tx.audit.pendingCount()), 3);
      assert.deepEqual(await store.read((tx) => tx.audit.list({ order: "asc", limit: 10 })), []);
      await store.lead("sealer", async (tx) => {
        const pending = await tx.audit.pending(10);
        assert.deepEqual(pending.map((p) => p.draft), drafts, "in the order they were written");
        const first = chainSeals(GENESIS, pending.slice(0, 2).map((p) => p.key));
        assert.equal(await tx.audit.seal(first, GENESIS), true);
        // Another sealer's seal made from the stale head changes nothing.
        const stale = chainSeals(GENESIS, pending.slice(0, 1).map((p) => p.key), 7);
        assert.equal(await tx.audit.seal(stale, GENESIS), false);
        const head = await tx.audit.head();
        assert.deepEqual(head, { seq: 2, hash: hashOf(2) });
        assert.equal(await tx.audit.seal(chainSeals(head, [pending[2]!.key]), head), true);
      });
      assert.equal(await store.read((tx) => tx.audit.pendingCount()), 0);
    }
    assert.equal(await store.read((tx) => tx.audit.pendingCount()), 0);
    assert.deepEqual(await store.read((tx) => tx.audit.head()), { seq: 3, hash: hashOf(3) });
    const records = await store.read((tx) => tx.audit.list({ order: "asc", limit: 10 }));
    assert.deepEqual(
      records.map((r) => [r.seq, r.prevHash, r.hash]),
      [[1, GENESIS.hash, hashOf(1)], [2, hashOf(1), hashOf(2)], [3, hashOf(2), hashOf(3)]],
    );
    assert.deepEqual(records.map(withoutChain), drafts.map(withoutJson));
  });

  test("audit.list() filters by seq range, run, actor, action or its prefix, resource and time, in seq order", async (store) => {
    const drafts = [
      makeDraft(1, { runId: "r-1", action: "run.created", resource: "run:r-1" }),
      makeDraft(2, { runId: "r-1", action: "run.transition", resource: "run:r-1" }),
      makeDraft(3, { actor: { subject: "ann", kind: "human" }, action: "approval.decide" }),
      makeDraft(4, { runId: "r-2", action: "run.transition", resource: "run:r-2" }),
      makeDraft(5, {
        action: "run.lease.reclaimed",
        reason: "Lease lost",
        traceId: "t-1",
        data: { nested: [1, { a: null }] },
      }),
    ];
    await store.transaction((tx) => appendAudit(tx, drafts.slice(0, 3)));
    await store.transaction((tx) => appendAudit(tx, drafts.slice(3)));
    await sealAll(store);
    await store.read(async (tx) => {
      const seqs = async (query: Parameters<typeof tx.audit.list>[0]) =>
        (await tx.audit.list(query)).map((r) => r.seq);
      assert.deepEqual(await seqs({ order: "asc", limit: 10 }), [1, 2, 3, 4, 5]);
      assert.deepEqual(await seqs({ order: "desc", limit: 2 }), [5, 4]);
      assert.deepEqual(await seqs({ order: "asc", limit: 2, afterSeq: 2 }), [3, 4]);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, runId: "r-1" }), [1, 2]);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, actor: "ann" }), [3]);
      assert.deepEqual(await seqs({ order: "desc", limit: 10, action: "run.transition" }), [4, 2]);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, resource: "run:r-2" }), [4]);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, since: 1_004 }), [4, 5]);
      assert.deepEqual(
        await seqs({ order: "asc", limit: 10, runId: "r-1", action: "run.transition" }),
        [2],
      );
      assert.deepEqual(await seqs({ order: "asc", limit: 10, action: "run." }), []);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, actionPrefix: "run." }), [1, 2, 4, 5]);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, actionPrefix: "RUN." }), []);
      assert.deepEqual(await seqs({ order: "asc", limit: 10, actionPrefix: "run.%" }), []);
      assert.deepEqual(
        await seqs({ order: "desc", limit: 2, actionPrefix: "run.", throughSeq: 4 }),
        [4, 2],
      );
      assert.deepEqual(await seqs({ order: "asc", limit: 10, throughSeq: 2 }), [1, 2]);
      const [last] = await tx.audit.list({ order: "desc", limit: 1 });
      assert.deepEqual(last && withoutChain(last), withoutJson(drafts[4]!));
    });
  });

  test("audit.missingGuards() is empty on a fresh store", async (store) => {
    assert.deepEqual(await store.read((tx) => tx.audit.missingGuards()), []);
  });

  // -------------------------------------------------------------------------
  // Governance

  test("governance autonomy rows are written fenced by their version", async (store) => {
    assert.equal(await store.read((tx) => tx.governance.autonomy("agent-1")), undefined);
    const write = (capLevel: string | null, streak: number, expected: number, at: number) =>
      store.transaction((tx) =>
        tx.governance.writeAutonomy("agent-1", { capLevel, streak }, expected, at)
      );
    assert.equal(await write(null, 1, 0, 10), true);
    assert.deepEqual(await store.read((tx) => tx.governance.autonomy("agent-1")), {
      capLevel: null,
      streak: 1,
      version: 1,
    });
    assert.equal(await write("L1", 9, 0, 20), false, "a row exists");
    assert.equal(await write("L1", 2, 1, 30), true);
    assert.equal(await write("L0", 3, 1, 40), false, "a stale version");
    assert.equal(await write("L0", 3, 5, 40), false, "a version never reached");
    assert.deepEqual(await store.read((tx) => tx.governance.autonomy("agent-1")), {
      capLevel: "L1",
      streak: 2,
      version: 2,
    });
    assert.equal(
      await store.transaction((tx) =>
        tx.governance.writeAutonomy("agent-2", { capLevel: "L2", streak: 0 }, 3, 50)
      ),
      false,
      "no row to update",
    );
    assert.equal(await store.read((tx) => tx.governance.autonomy("agent-2")), undefined);
  });

  test("governance run starts are counted, ranked and pruned per agent", async (store) => {
    await store.transaction(async (tx) => {
      for (const at of [30, 10, 20, 40]) await tx.governance.insertStart("agent-1", at);
      await tx.governance.insertStart("agent-2", 25);
    });
    await store.read(async (tx) => {
      assert.equal(await tx.governance.countStarts("agent-1", 0), 4);
      assert.equal(await tx.governance.countStarts("agent-1", 20), 2);
      assert.equal(await tx.governance.countStarts("agent-3", 0), 0);
      assert.equal(await tx.governance.nthStart("agent-1", 0, 0), 10);
      assert.equal(await tx.governance.nthStart("agent-1", 10, 1), 30);
      assert.equal(await tx.governance.nthStart("agent-1", 0, 4), undefined);
    });
    await store.transaction((tx) => tx.governance.pruneStarts("agent-1", 20));
    await store.read(async (tx) => {
      assert.equal(await tx.governance.countStarts("agent-1", 0), 2);
      assert.equal(await tx.governance.nthStart("agent-1", 0, 0), 30);
      assert.equal(await tx.governance.countStarts("agent-2", 0), 1);
    });
  });

  test("governance.lockAgent() serialises two transactions on the same agent", async (store) => {
    const order: string[] = [];
    const bump = (name: string) =>
      store.transaction(async (tx) => {
        await tx.governance.lockAgent("agent-1");
        order.push(`${name} locked`);
        const row = await tx.governance.autonomy("agent-1");
        await yieldTurns(20); // the other transaction runs meanwhile, unless it waits
        const streak = (row?.streak ?? 0) + 1;
        const written = await tx.governance.writeAutonomy(
          "agent-1",
          { capLevel: null, streak },
          row?.version ?? 0,
          streak,
        );
        order.push(`${name} done`);
        return written;
      });
    assert.deepEqual(await Promise.all([bump("a"), bump("b")]), [true, true]);
    const first = order[0]![0]!;
    const second = first === "a" ? "b" : "a";
    assert.deepEqual(order, [
      `${first} locked`,
      `${first} done`,
      `${second} locked`,
      `${second} done`,
    ]);
    const row = await store.read((tx) => tx.governance.autonomy("agent-1"));
    assert.deepEqual([row?.streak, row?.version], [2, 2]);
  });

  // -------------------------------------------------------------------------
  // Transactions

  test("transaction() rolls back the state change and its audit record when fn throws", async (store) => {
    await insertRuns(store, [makeRun("r-0", 1)]);
    const boom = new Error("Changed my mind");
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.runs.insert({ run: makeRun("r-1", 10), requestDigest: "r" });
        await tx.runs.update({
          run: { ...makeRun("r-0", 1), state: "cancelled", version: 2 },
          expectedVersion: 1,
        });
        await tx.approvals.insert(approval("a-1", 10));
        await tx.governance.insertStart("agent-1", 10);
        await appendAudit(tx, [makeDraft(1, { runId: "r-1" })]);
        tx.wake("runs");
        throw boom;
      }),
      (err) => err === boom,
    );
    await sealAll(store);
    await store.read(async (tx) => {
      assert.equal(await tx.runs.byId("r-1"), undefined);
      assert.deepEqual(await tx.runs.byId("r-0"), makeRun("r-0", 1));
      assert.equal(await tx.approvals.byId("a-1"), undefined);
      assert.equal(await tx.governance.countStarts("agent-1", 0), 0);
      assert.deepEqual(await tx.audit.head(), GENESIS);
      assert.equal(await tx.audit.pendingCount(), 0);
      assert.deepEqual(await tx.audit.list({ order: "asc", limit: 10 }), []);
    });
  });

  test("transaction() resolves what fn returns and commits what it wrote", async (store) => {
    const value = await store.transaction(async (tx) => {
      await tx.runs.insert({ run: makeRun("r-1", 10), requestDigest: "r" });
      await appendAudit(tx, [makeDraft(1, { runId: "r-1" })]);
      return { ok: 42 };
    });
    assert.deepEqual(value, { ok: 42 });
    await sealAll(store);
    assert.equal((await store.read((tx) => tx.runs.byId("r-1")))?.id, "r-1");
    assert.deepEqual(
      (await store.read((tx) => tx.audit.list({ order: "asc", limit: 10, runId: "r-1" }))).length,
      1,
    );
  });

  test("onWake() hears a topic once its transaction commits, never after a rollback", async (store) => {
    const heard: string[] = [];
    const unsubscribe = store.onWake((topic) => heard.push(topic));
    await store.transaction(async (tx) => {
      tx.wake("runs");
      tx.wake("approvals");
      tx.wake("runs");
      await tx.governance.insertStart("agent-1", 1);
      assert.deepEqual(heard, [], "not before the commit");
    });
    assert.deepEqual([...heard].sort(), ["approvals", "runs"]);
    heard.length = 0;
    await assert.rejects(store.transaction((tx) => {
      tx.wake("approvals");
      return Promise.reject(new Error("Rolled back"));
    }));
    assert.deepEqual(heard, []);
    unsubscribe();
    await store.transaction((tx) => {
      tx.wake("runs");
      return Promise.resolve();
    });
    assert.deepEqual(heard, [], "unsubscribed");
  });

  test("onWake() listeners that throw do not fail the commit", async (store) => {
    const heard: string[] = [];
    store.onWake(() => {
      throw new Error("Listener bug");
    });
    store.onWake((topic) => heard.push(topic));
    await store.transaction(async (tx) => {
      await tx.governance.insertStart("agent-1", 1);
      tx.wake("approvals");
    });
    assert.deepEqual(heard, ["approvals"]);
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
  });

  test("read() refuses writes with ERR_STORE_READ_ONLY and sees committed data", async (store) => {
    await insertRuns(store, [makeRun("r-1", 10)]);
    await assert.rejects(
      store.read((tx) => tx.governance.insertStart("agent-1", 1)),
      (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
    );
    await assert.rejects(
      store.read((tx) => tx.runs.insert({ run: makeRun("r-2", 20), requestDigest: "r" })),
      (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
    );
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 0);
    assert.equal((await store.read((tx) => tx.runs.byId("r-1")))?.id, "r-1");
    // The store still writes afterwards.
    await store.transaction((tx) => tx.governance.insertStart("agent-1", 1));
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
  });

  test("lead() runs fn in a write transaction when this process leads the role", async (store) => {
    const reaped = await store.lead("reaper", async (tx) => {
      await tx.governance.insertStart("agent-1", 1);
      return "reaped";
    });
    assert.equal(reaped, "reaped");
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
    assert.equal(await store.lead("sealer", () => Promise.resolve(7)), 7);
  });

  test("schemaVersion() is the latest and kind, location and readOnly describe the store", async (store) => {
    const version = await store.schemaVersion();
    assert.ok(Number.isSafeInteger(version) && version >= 1, `schema version ${version}`);
    assert.ok(store.kind === "sqlite" || store.kind === "postgres", store.kind);
    assert.equal(typeof store.location, "string");
    assert.equal(store.readOnly, false);
  });

  test("close() is idempotent and later transactions are refused", async (store) => {
    await store.transaction((tx) => tx.governance.insertStart("agent-1", 1));
    await Promise.all([store.close(), store.close()]);
    await store.close();
    await assert.rejects(store.transaction((tx) => tx.governance.insertStart("agent-1", 2)));
    await assert.rejects(store.read((tx) => tx.governance.countStarts("agent-1", 0)));
  });

  test("close() waits for the transaction in flight", async (store) => {
    let finished = false;
    const inFlight = store.transaction(async (tx) => {
      await yieldTurns(10);
      await tx.governance.insertStart("agent-1", 1);
      finished = true;
    });
    await store.close();
    assert.equal(finished, true);
    await inFlight;
  });

  // -------------------------------------------------------------------------
  // Policies

  test("policies.insert() stores versions that active(), byVersion() and history() read back", async (store) => {
    assert.equal(await store.read((tx) => tx.policies.active()), undefined);
    assert.deepEqual(await store.read((tx) => tx.policies.history(10)), []);
    const rows = [1, 2, 3].map((version) => makePolicyVersion(version));
    await store.transaction(async (tx) => {
      for (const row of rows) assert.equal(await tx.policies.insert(row), true);
    });
    await store.read(async (tx) => {
      assert.deepEqual(await tx.policies.active(), rows[2]);
      assert.deepEqual(await tx.policies.byVersion(2), rows[1]);
      assert.equal(await tx.policies.byVersion(4), undefined);
      assert.deepEqual(await tx.policies.history(2), [rows[2], rows[1]]);
      assert.deepEqual(await tx.policies.history(100), [...rows].reverse());
    });
  });

  test("policies.insert() resolves false and writes nothing when the version is taken", async (store) => {
    await store.transaction((tx) => tx.policies.insert(makePolicyVersion(1)));
    const other = { ...makePolicyVersion(1), hash: "f".repeat(64), appliedBy: "mallory" };
    assert.equal(await store.transaction((tx) => tx.policies.insert(other)), false);
    assert.deepEqual(await store.read((tx) => tx.policies.history(10)), [makePolicyVersion(1)]);
  });

  test("policies keep the content text exactly, and the reason may be null", async (store) => {
    const content = '{"id":"\u00e9t\u00e9 \\u0000","rules":[]}';
    const row = { ...makePolicyVersion(1), content, reason: null };
    await store.transaction((tx) => tx.policies.insert(row));
    assert.deepEqual(await store.read((tx) => tx.policies.byVersion(1)), row);
  });

  test("two concurrent applies never both get version N: the loser retries with N + 1", async (store) => {
    await store.transaction((tx) => tx.policies.insert(makePolicyVersion(1)));
    const apply = (by: string) =>
      store.transaction(async (tx) => {
        const tries: number[] = [];
        for (;;) {
          const version = ((await tx.policies.active())?.version ?? 0) + 1;
          await yieldTurns(5);
          tries.push(version);
          if (await tx.policies.insert({ ...makePolicyVersion(version), appliedBy: by })) {
            return tries;
          }
          assert.ok(tries.length < 5, `retries: ${tries}`);
        }
      });
    const [a, b] = await Promise.all([apply("a"), apply("b")]);
    const won = [a.at(-1), b.at(-1)].sort();
    assert.deepEqual(won, [2, 3], `a tried ${a}, b tried ${b}`);
    const history = await store.read((tx) => tx.policies.history(10));
    assert.deepEqual(history.map((row) => row.version), [3, 2, 1]);
    assert.deepEqual(history.slice(0, 2).map((row) => row.appliedBy).sort(), ["a", "b"]);
  });

  // -------------------------------------------------------------------------
  // Concurrency

  test("two claimReady() in parallel transactions never take the same run", async (store) => {
    await insertRuns(store, [1, 2, 3, 4].map((n) => makeRun(`r-${n}`, n * 10)));
    const claim = (owner: string) =>
      store.transaction(async (tx) => {
        const taken = await tx.runs.claimReady({ owner, now: 100, expiresAt: 1_000, limit: 3 });
        await yieldTurns(5);
        return ids(taken.map((c) => c.run));
      });
    const [a, b] = await Promise.all([claim("w-a"), claim("w-b")]);
    const all = [...a!, ...b!];
    assert.equal(new Set(all).size, all.length, `no run taken twice: ${a} / ${b}`);
    assert.deepEqual([...all].sort(), ["r-1", "r-2", "r-3", "r-4"]);
    await store.read(async (tx) => {
      for (const id of a!) assert.equal((await tx.runs.byId(id))?.lease?.owner, "w-a");
      for (const id of b!) assert.equal((await tx.runs.byId(id))?.lease?.owner, "w-b");
    });
  });

  test("many concurrent transactions on one agent all commit, each in its turn", async (store) => {
    const n = 20;
    await Promise.all(
      Array.from({ length: n }, (_, i) =>
        store.transaction(async (tx) => {
          await tx.governance.lockAgent("agent-1");
          const row = await tx.governance.autonomy("agent-1");
          await yieldTurns(i % 3);
          assert.equal(
            await tx.governance.writeAutonomy(
              "agent-1",
              { capLevel: null, streak: (row?.streak ?? 0) + 1 },
              row?.version ?? 0,
              i,
            ),
            true,
          );
          await appendAudit(tx, [makeDraft(i)]);
        })),
    );
    await sealAll(store);
    const row = await store.read((tx) => tx.governance.autonomy("agent-1"));
    assert.deepEqual([row?.streak, row?.version], [n, n]);
    const seqs = (await store.read((tx) => tx.audit.list({ order: "asc", limit: 100 }))).map((r) =>
      r.seq
    );
    assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
  });
}
