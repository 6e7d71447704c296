// The PostgreSQL adapter of the store port: what only a server shows (concurrent
// opens, SKIP LOCKED claims, advisory-lock roles, LISTEN/NOTIFY, the late-commit
// case of the sealed audit chain, the append-only triggers). Registered only when
// PLM_TEST_POSTGRES_URL is set.
// @ts-types="@types/pg"
import pg from "pg";
import assert from "node:assert/strict";
import { FakeClock, FakeTimers, isPlmError, PlmError } from "../../shared/mod.ts";
import { AUDIT_GENESIS_HASH, computeAuditHash } from "../../control_plane/audit/hash.ts";
import type { AuditDraft, AuditSeal, StoreTx } from "../../control_plane/store/port.ts";
import type { Run } from "../../control_plane/runs/state_machine.ts";
import { openPostgresStore, POSTGRES_MIGRATIONS } from "../../control_plane/store/postgres/mod.ts";
import type { PostgresStore } from "../../control_plane/store/postgres/_store.ts";
import { redactUrl, redactUrls, toPlmError } from "../../control_plane/store/postgres/_errors.ts";
import { freshSchema, openTestPostgresStore, POSTGRES_URL } from "../_postgres.ts";
import { openStore } from "../../control_plane/store/open.ts";
import { makeRun } from "./conformance.ts";

function pgTest(name: string, fn: (url: string) => Promise<void>): void {
  if (POSTGRES_URL === undefined) return;
  const url = POSTGRES_URL;
  Deno.test({ name: `[postgres] ${name}`, sanitizeResources: false, fn: () => fn(url) });
}

/** A raw connection for what the store does not do (inspect, kill, tamper). */
async function admin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function dropSchema(url: string, schema: string): Promise<void> {
  await admin(url, (c) => c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`));
}

function code(expected: string) {
  return (error: unknown) => {
    assert.ok(isPlmError(error), `a PlmError, got ${error}`);
    assert.equal(error.code, expected, error.message);
    return true;
  };
}

/** A deferred: a promise and its resolver. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Polls a real server condition (a round trip each time), up to `tries`. */
async function until(check: () => Promise<boolean>, what: string, tries = 500): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`Timed out waiting for ${what}`);
}

/**
 * Awaits `work`, failing (after `release`, so nothing hangs) if it waits on a
 * lock on the server instead: a statement whose text has `marker`.
 */
async function unblocked<T>(
  url: string,
  work: Promise<T>,
  marker: string,
  release: () => void,
): Promise<T> {
  let settled = false;
  work.then(() => (settled = true), () => (settled = true));
  while (!settled) {
    const waiting = await admin(url, async (c) =>
      (await c.query(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0",
        [marker],
      )).rowCount! > 0);
    if (waiting) {
      release();
      await work.catch(() => {});
      throw new Error(`Blocked on a lock (${marker}) instead of skipping it`);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return await work;
}

function queuedRun(id: string, createdAt: number, key: string | null = null): Run {
  return {
    id,
    state: "queued",
    version: 1,
    task: {
      action: "bom.update",
      resource: "bom:1",
      capabilities: ["bom"],
      input: { n: 1 },
      risk: "low",
      attributes: {},
    },
    requester: { subject: "ann", kind: "human" },
    idempotencyKey: key,
    traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
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
  };
}

function draft(action: string, n: number): AuditDraft {
  const data = { n };
  return {
    at: 1_000 + n,
    actor: { subject: "svc", kind: "service" },
    action,
    resource: `run:r-${n}`,
    outcome: "succeeded",
    reason: null,
    runId: `r-${n}`,
    traceId: null,
    data,
    dataJson: JSON.stringify(data),
  };
}

// ---------------------------------------------------------------------------

pgTest("migrations apply once across two concurrent opens, and reopen", async (url) => {
  const schema = freshSchema();
  try {
    const clock = new FakeClock(42);
    const [a, b] = await Promise.all([
      openPostgresStore(url, { schema, clock }),
      openPostgresStore(url, { schema, clock }),
    ]);
    assert.equal(await a.schemaVersion(), POSTGRES_MIGRATIONS.length);
    assert.equal(await b.schemaVersion(), POSTGRES_MIGRATIONS.length);
    await Promise.all([a.close(), b.close()]);
    await using again = await openPostgresStore(url, { schema });
    assert.equal(await again.schemaVersion(), POSTGRES_MIGRATIONS.length);
    const rows = await admin(
      url,
      async (c) =>
        (await c.query(`SELECT version, applied_at FROM ${schema}.schema_migrations ORDER BY 1`))
          .rows,
    );
    assert.deepEqual(
      rows,
      POSTGRES_MIGRATIONS.map((m) => ({ version: m.version, applied_at: "42" })),
    );
  } finally {
    await dropSchema(url, schema);
  }
});

pgTest("an upgrade applies the new migration; a newer schema is refused", async (url) => {
  const schema = freshSchema();
  try {
    (await openPostgresStore(url, { schema })).close();
    const extended = [
      ...POSTGRES_MIGRATIONS,
      {
        version: POSTGRES_MIGRATIONS.length + 1,
        name: "extra",
        sql: "CREATE TABLE extra (x int)",
      },
    ];
    const upgraded = await openPostgresStore(url, { schema, migrations: extended });
    assert.equal(await upgraded.schemaVersion(), extended.length);
    await upgraded.close();
    await assert.rejects(openPostgresStore(url, { schema }), code("ERR_STORE_SCHEMA_TOO_NEW"));
    await assert.rejects(
      openPostgresStore(url, { schema, readOnly: true }),
      code("ERR_STORE_SCHEMA_TOO_NEW"),
    );
    const broken = [...extended, { version: extended.length + 1, name: "bad", sql: "NOT SQL" }];
    await assert.rejects(
      openPostgresStore(url, { schema, migrations: broken }),
      code("ERR_STORE_MIGRATION_FAILED"),
    );
    const after = await openPostgresStore(url, { schema, migrations: extended });
    assert.equal(await after.schemaVersion(), extended.length, "the failed one left nothing");
    await after.close();
  } finally {
    await dropSchema(url, schema);
  }
});

pgTest("a store at schema 1 migrates to 2 (policy_versions), keeping its runs", async (url) => {
  const schema = freshSchema();
  try {
    const first = await openPostgresStore(url, {
      schema,
      migrations: POSTGRES_MIGRATIONS.slice(0, 1),
    });
    await first.transaction((tx) => tx.runs.insert({ run: makeRun("r-1", 5), requestDigest: "d" }));
    await first.close();
    await using store = await openPostgresStore(url, { schema });
    assert.equal(await store.schemaVersion(), 2);
    assert.equal((await store.read((tx) => tx.runs.byId("r-1")))?.state, "queued");
    const row = {
      version: 1,
      content: '{"rules":[]}',
      hash: "a".repeat(64),
      appliedAt: 9,
      appliedBy: "ops",
      reason: null,
    };
    assert.equal(await store.transaction((tx) => tx.policies.insert(row)), true);
    assert.deepEqual(await store.read((tx) => tx.policies.active()), row);
  } finally {
    await dropSchema(url, schema);
  }
});

pgTest("a read-only store reads and refuses every write", async (url) => {
  await using store = await openTestPostgresStore();
  await store.transaction((tx) => tx.runs.insert({ run: queuedRun("r-1", 1), requestDigest: "d" }));
  await using ro = await openTestPostgresStore({ schema: store.schema, readOnly: true });
  assert.equal(ro.readOnly, true);
  assert.equal((await ro.read((tx) => tx.runs.byId("r-1")))?.id, "r-1");
  await assert.rejects(
    ro.transaction((tx) => tx.runs.insert({ run: queuedRun("r-2", 2), requestDigest: "d" })),
    code("ERR_STORE_READ_ONLY"),
  );
  await assert.rejects(
    ro.transaction((tx) => tx.audit.insertPending([draft("a", 1)])),
    code("ERR_STORE_READ_ONLY"),
  );
  // A read transaction is read-only on a writable store too.
  await assert.rejects(
    store.read((tx) => tx.governance.insertStart("agent", 1)),
    code("ERR_STORE_READ_ONLY"),
  );
  const empty = freshSchema();
  await assert.rejects(
    openPostgresStore(url, { schema: empty, readOnly: true }),
    code("ERR_STORE_NOT_FOUND"),
  );
  const created = await admin(
    url,
    async (c) => (await c.query("SELECT 1 FROM pg_namespace WHERE nspname = $1", [empty])).rowCount,
  );
  assert.equal(created, 0, "a read-only open creates nothing");
});

pgTest("an unreachable server is ERR_STORE_UNAVAILABLE and the password never shows", async () => {
  const url = "postgres://postgres:s3cret-pw@127.0.0.1:1/test";
  await assert.rejects(openPostgresStore(url), (error: unknown) => {
    assert.ok(isPlmError(error, "ERR_STORE_UNAVAILABLE"), String(error));
    assert.ok(!error.message.includes("s3cret-pw"), error.message);
    assert.ok(error.message.includes("postgres:***@127.0.0.1:1"), error.message);
    return true;
  });
  await using store = await openTestPostgresStore();
  assert.ok(!store.location.includes("s3cret"));
  await store.close();
  await assert.rejects(store.transaction(async () => {}), code("ERR_STORE_UNAVAILABLE"));
  await store.close(); // idempotent
});

pgTest("a wrong password is ERR_STORE_UNAVAILABLE", async (url) => {
  // The test server trusts local logins; a role that does not exist is refused at login.
  const bad = url.replace(/^postgres(ql)?:\/\/[^@/]*@/, "postgres://no_such_role_plm:pw@");
  await assert.rejects(openPostgresStore(bad), (error: unknown) => {
    assert.ok(isPlmError(error, "ERR_STORE_UNAVAILABLE"), String(error));
    assert.ok(!error.message.includes(":pw@"), error.message);
    return true;
  });
});

pgTest("repositories: runs, fences, pages", async () => {
  await using store = await openTestPostgresStore();
  await store.transaction(async (tx) => {
    assert.equal(
      await tx.runs.insert({ run: queuedRun("r-1", 10, "k-1"), requestDigest: "d1" }),
      true,
    );
    assert.equal(
      await tx.runs.insert({ run: queuedRun("r-2", 10, "k-1"), requestDigest: "d2" }),
      false,
    );
    assert.equal(await tx.runs.insert({ run: queuedRun("r-3", 20), requestDigest: "d3" }), true);
    assert.equal(await tx.runs.insert({ run: queuedRun("r-4", 20), requestDigest: "d4" }), true);
  });
  const run = await store.read((tx) => tx.runs.byId("r-1"));
  assert.deepEqual(run, queuedRun("r-1", 10, "k-1"));
  assert.deepEqual(await store.read((tx) => tx.runs.byIdempotencyKey("k-1")), {
    run: queuedRun("r-1", 10, "k-1"),
    requestDigest: "d1",
  });
  assert.equal(await store.read((tx) => tx.runs.byId("nope")), undefined);

  const [claimed] = await store.transaction((tx) =>
    tx.runs.claimReady({ owner: "w1", now: 100, expiresAt: 200, limit: 1 })
  );
  assert.deepEqual(claimed, {
    run: {
      ...queuedRun("r-1", 10, "k-1"),
      version: 2,
      lease: { owner: "w1", token: 1, expiresAt: 200 },
    },
    previousOwner: null,
  });
  const running: Run = {
    ...claimed!.run,
    state: "running",
    version: 3,
    attempt: 1,
    agentId: "agent-a",
    updatedAt: 150,
    costUnits: 1.5,
    error: { code: "ERR_X", message: "m" },
    result: { ok: [1, "two"] },
  };
  const write = (expectedVersion: number, leaseToken?: number) =>
    store.transaction((tx) =>
      tx.runs.update({
        run: running,
        expectedVersion,
        ...(leaseToken === undefined ? {} : { leaseToken }),
      })
    );
  assert.equal(await write(1), false, "stale version");
  assert.equal(await write(2, 7), false, "another lease token");
  assert.equal(await write(2, 1), true);
  assert.deepEqual(await store.read((tx) => tx.runs.byId("r-1")), running);

  // The expired lease: the reaper finds it, a claim takes it with the next token.
  assert.deepEqual(
    (await store.transaction((tx) => tx.runs.expired(199, 10))).map((r) => r.id),
    [],
  );
  assert.deepEqual(
    (await store.transaction((tx) => tx.runs.expired(200, 10))).map((r) => r.id),
    ["r-1"],
  );
  const retrying: Run = { ...running, state: "retrying", version: 4 };
  assert.equal(
    await store.transaction((tx) => tx.runs.update({ run: retrying, expectedVersion: 3 })),
    true,
  );
  assert.deepEqual(
    (await store.read((tx) => tx.runs.ready(199, 10))).map((r) => r.id),
    ["r-3", "r-4"],
    "a live lease is not ready",
  );
  assert.deepEqual(
    (await store.read((tx) => tx.runs.ready(200, 10))).map((r) => r.id),
    ["r-1", "r-3", "r-4"],
  );
  const again = await store.transaction((tx) =>
    tx.runs.claimReady({ owner: "w2", now: 200, expiresAt: 300, limit: 1 })
  );
  assert.equal(again[0]?.previousOwner, "w1");
  assert.deepEqual(again[0]?.run.lease, { owner: "w2", token: 2, expiresAt: 300 });
  assert.equal(again[0]?.run.version, 5);
  // A write with the old token changes nothing.
  assert.equal(
    await store.transaction((tx) =>
      tx.runs.update({ run: { ...retrying, version: 6 }, expectedVersion: 5, leaseToken: 1 })
    ),
    false,
  );

  const page = (states?: Run["state"][], after?: { createdAt: number; id: string }) =>
    store.read(async (tx) => (await tx.runs.page(states, after, 2)).map((r) => r.id));
  assert.deepEqual(await page(), ["r-4", "r-3"]);
  assert.deepEqual(await page(undefined, { createdAt: 20, id: "r-3" }), ["r-1"]);
  assert.deepEqual(await page(["retrying"]), ["r-1"]);
  assert.deepEqual(await page(["queued", "succeeded"]), ["r-4", "r-3"]);
});

pgTest("repositories: approvals and governance", async () => {
  await using store = await openTestPostgresStore();
  const requester = { subject: "ann", kind: "human" } as const;
  const insert = (id: string, runId: string, createdAt: number, deadline: number) =>
    store.transaction((tx) =>
      tx.approvals.insert({
        id,
        runId,
        kind: "approval",
        spec: { quorum: 2 },
        subject: { bom: 1 },
        digest: "dg",
        requester,
        traceId: null,
        createdAt,
        deadline,
      })
    );
  await insert("a-1", "r-1", 10, 100);
  await insert("a-2", "r-2", 20, 50);
  await store.transaction(async (tx) => {
    const vote = (subject: string, at: number) =>
      tx.approvals.insertVote({
        approvalId: "a-1",
        approver: { subject, kind: "human" },
        decision: "approve",
        comment: subject === "bob" ? "ok" : null,
        digest: "dg",
        at,
      });
    assert.equal(await vote("bob", 30), true);
    assert.equal(await vote("cid", 31), true);
    assert.equal(await vote("bob", 32), false);
  });
  const a1 = await store.read((tx) => tx.approvals.byId("a-1", {}));
  assert.deepEqual(a1, {
    id: "a-1",
    runId: "r-1",
    kind: "approval",
    spec: { quorum: 2 },
    subject: { bom: 1 },
    digest: "dg",
    requester,
    traceId: null,
    createdAt: 10,
    deadline: 100,
    state: "pending",
    reason: null,
    decidedAt: null,
    votes: [
      { approver: { subject: "bob", kind: "human" }, decision: "approve", comment: "ok", at: 30 },
      { approver: { subject: "cid", kind: "human" }, decision: "approve", comment: null, at: 31 },
    ],
  });
  assert.deepEqual(
    (await store.transaction((tx) => tx.approvals.due(60, 10))).map((a) => [a.id, a.votes]),
    [["a-2", []]],
  );
  assert.equal(
    await store.transaction((tx) => tx.approvals.resolve("a-2", "expired", "late", 60)),
    true,
  );
  assert.equal(
    await store.transaction((tx) => tx.approvals.resolve("a-2", "approved", "x", 61)),
    false,
  );
  const list = (q: { state?: string; runId?: string }) =>
    store.read(async (tx) => (await tx.approvals.list({ ...q, limit: 10 })).map((a) => a.id));
  assert.deepEqual(await list({}), ["a-1", "a-2"]);
  assert.deepEqual(await list({ state: "pending" }), ["a-1"]);
  assert.deepEqual(await list({ runId: "r-2" }), ["a-2"]);
  const a2 = await store.read((tx) => tx.approvals.byId("a-2", { lock: false }));
  assert.deepEqual([a2?.state, a2?.reason, a2?.decidedAt], ["expired", "late", 60]);

  await store.transaction(async (tx) => {
    await tx.governance.lockAgent("agent-a");
    assert.equal(await tx.governance.autonomy("agent-a"), undefined);
    assert.equal(
      await tx.governance.writeAutonomy("agent-a", { capLevel: "L1", streak: 2 }, 1, 5),
      false,
    );
    assert.equal(
      await tx.governance.writeAutonomy("agent-a", { capLevel: "L1", streak: 2 }, 0, 5),
      true,
    );
    assert.equal(
      await tx.governance.writeAutonomy("agent-a", { capLevel: null, streak: 0 }, 0, 6),
      false,
    );
    assert.equal(
      await tx.governance.writeAutonomy("agent-a", { capLevel: null, streak: 3 }, 1, 6),
      true,
    );
    assert.deepEqual(await tx.governance.autonomy("agent-a"), {
      capLevel: null,
      streak: 3,
      version: 2,
    });
    for (const at of [10, 20, 30, 40]) await tx.governance.insertStart("agent-a", at);
    await tx.governance.insertStart("agent-b", 35);
    assert.equal(await tx.governance.countStarts("agent-a", 15), 3);
    assert.equal(await tx.governance.nthStart("agent-a", 15, 0), 20);
    assert.equal(await tx.governance.nthStart("agent-a", 15, 2), 40);
    assert.equal(await tx.governance.nthStart("agent-a", 15, 3), undefined);
    await tx.governance.pruneStarts("agent-a", 20);
    assert.equal(await tx.governance.countStarts("agent-a", 0), 2);
    assert.equal(await tx.governance.countStarts("agent-b", 0), 1);
  });
});

pgTest("lockAgent serialises two transactions on the same agent", async (url) => {
  await using store = await openTestPostgresStore();
  const release = deferred();
  const order: string[] = [];
  const first = store.transaction(async (tx) => {
    await tx.governance.lockAgent("agent-a");
    order.push("first locked");
    await release.promise;
    order.push("first done");
  });
  await until(() => Promise.resolve(order.length === 1), "the first lock");
  const second = store.transaction(async (tx) => {
    await tx.governance.lockAgent("agent-a");
    order.push("second locked");
  });
  await until(
    () =>
      admin(url, async (c) =>
        (await c.query(
          "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        )).rowCount! > 0),
    "the second to wait",
  );
  // Another agent is not held up.
  await store.transaction((tx) => tx.governance.lockAgent("agent-b"));
  assert.deepEqual(order, ["first locked"]);
  release.resolve();
  await Promise.all([first, second]);
  assert.deepEqual(order, ["first locked", "first done", "second locked"]);
});

pgTest("two concurrent claimReady on two connections never share a run", async (url) => {
  await using store = await openTestPostgresStore();
  await store.transaction(async (tx) => {
    for (let i = 0; i < 20; i++) {
      await tx.runs.insert({
        run: queuedRun(`r-${String(i).padStart(2, "0")}`, i),
        requestDigest: "d",
      });
    }
  });
  const hold = deferred();
  const firstClaimed = deferred<string[]>();
  const first = store.transaction(async (tx) => {
    const runs = await tx.runs.claimReady({ owner: "w1", now: 0, expiresAt: 1_000, limit: 15 });
    firstClaimed.resolve(runs.map((r) => r.run.id));
    await hold.promise; // keep the rows locked while the second claims
    return runs;
  });
  const firstIds = await firstClaimed.promise;
  const second = await unblocked(
    url,
    store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w2", now: 0, expiresAt: 1_000, limit: 15 })
    ),
    "claimed AS",
    hold.resolve,
  );
  hold.resolve();
  await first;
  const secondIds = second.map((r) => r.run.id);
  assert.equal(firstIds.length, 15);
  assert.deepEqual(firstIds, [...firstIds].sort(), "oldest first");
  assert.equal(secondIds.length, 5, "the second skipped the locked rows, not blocked on them");
  assert.ok(secondIds.every((id) => !firstIds.includes(id)));
  assert.equal(new Set([...firstIds, ...secondIds]).size, 20);
  // Many racing claimers: every run once.
  await store.transaction(async (tx) => {
    for (let i = 20; i < 60; i++) {
      await tx.runs.insert({ run: queuedRun(`q-${i}`, 100 + i), requestDigest: "d" });
    }
  });
  const all = await Promise.all(
    Array.from(
      { length: 6 },
      (_, w) =>
        store.transaction((tx) =>
          tx.runs.claimReady({ owner: `x${w}`, now: 0, expiresAt: 1_000, limit: 10 })
        ),
    ),
  );
  const ids = all.flat().map((c) => c.run.id);
  assert.equal(ids.length, new Set(ids).size);
  assert.ok(ids.every((id) => id.startsWith("q-")));
});

pgTest("lead gives a role to one of two concurrent callers", async (url) => {
  await using store = await openTestPostgresStore();
  await using other = await openTestPostgresStore({ schema: store.schema });
  const hold = deferred();
  const entered = deferred();
  const first = store.lead("sealer", async () => {
    entered.resolve();
    await hold.promise;
    return "first";
  });
  await entered.promise;
  let ran = false;
  assert.equal(
    await unblocked(
      url,
      other.lead("sealer", () => Promise.resolve(ran = true)),
      "plm:role:",
      hold.resolve,
    ),
    undefined,
  );
  assert.equal(ran, false);
  assert.equal(
    await other.lead("reaper", () => Promise.resolve("reaper")),
    "reaper",
    "another role is free",
  );
  hold.resolve();
  assert.equal(await first, "first");
  assert.equal(
    await other.lead("sealer", () => Promise.resolve("now")),
    "now",
    "released at commit",
  );
  await assert.rejects(
    store.lead("nope" as "sealer", async () => {}),
    code("ERR_INVALID_ARGUMENT"),
  );
});

pgTest(
  "onWake: a hint after commit, none after rollback, and reconnected after a kill",
  async (url) => {
    const schema = freshSchema();
    const timers = new FakeTimers(new FakeClock(0));
    const listening = await openPostgresStore(url, {
      schema,
      timer: timers.timer,
    }) as PostgresStore;
    const writer = await openPostgresStore(url, { schema });
    try {
      const got: string[] = [];
      let waiter: { topic: string; resolve: () => void } | undefined;
      const next = (topic: string) => {
        const d = deferred();
        waiter = { topic, resolve: d.resolve };
        if (got.includes(topic)) d.resolve();
        return d.promise;
      };
      listening.onWake(() => {
        throw new Error("a subscriber that throws");
      });
      const unsubscribe = listening.onWake((topic) => {
        got.push(topic);
        if (waiter?.topic === topic) waiter.resolve();
      });
      await listening.wakeListener.ready;

      await assert.rejects(
        writer.transaction((tx) => {
          tx.wake("approvals");
          return Promise.reject(new PlmError("ERR_INTERNAL", "roll back"));
        }),
        code("ERR_INTERNAL"),
      );
      await writer.transaction((tx) => {
        tx.wake("runs");
        tx.wake("runs");
        return Promise.resolve();
      });
      await writer.transaction((tx) => Promise.resolve(tx.wake("approvals")));
      await next("approvals");
      assert.deepEqual(got, ["runs", "approvals"], "once per transaction, never after a rollback");

      const pid = listening.wakeListener.pid;
      assert.ok(pid !== undefined);
      await admin(url, (c) => c.query("SELECT pg_terminate_backend($1)", [pid]));
      await until(() => Promise.resolve(timers.pending > 0), "the reconnection to be scheduled");
      const reconnected = next("reconnected");
      await timers.advance(10_000);
      await reconnected;
      await listening.wakeListener.ready;
      assert.notEqual(listening.wakeListener.pid, pid);
      got.length = 0;
      await writer.transaction((tx) => Promise.resolve(tx.wake("approvals")));
      await next("approvals");
      assert.deepEqual(got, ["approvals"], "hints flow again after the reconnection");
      unsubscribe();
      await writer.transaction((tx) => Promise.resolve(tx.wake("runs")));
    } finally {
      await listening.close();
      await listening.close();
      await writer.close();
      await dropSchema(url, schema);
    }
  },
);

pgTest(
  "audit: a late commit is not passed over; seals are fenced; records are append-only",
  async (url) => {
    await using store = await openTestPostgresStore();
    // A takes its transaction id first (a run insert), then waits; B writes its
    // record and commits; then A writes its own: A's row has the lower tx and
    // the higher id.
    const aStarted = deferred();
    const aRelease = deferred();
    const a = store.transaction(async (tx) => {
      await tx.runs.insert({ run: queuedRun("r-a", 1), requestDigest: "d" });
      aStarted.resolve();
      await aRelease.promise;
      await tx.audit.insertPending([draft("a.first", 1)]);
    });
    try {
      await aStarted.promise;
      await store.transaction((tx) =>
        tx.audit.insertPending([draft("b.first", 2), draft("b.second", 3)])
      );
      assert.deepEqual(
        await store.read((tx) => tx.audit.pending(10)),
        [],
        "A, still open, may write before B",
      );
      assert.equal(await store.read((tx) => tx.audit.pendingCount()), 2);
    } finally {
      aRelease.resolve();
      await a;
    }

    let pending: Awaited<ReturnType<StoreTx["audit"]["pending"]>> = [];
    await until(async () => {
      pending = await store.read((tx) => tx.audit.pending(10));
      return pending.length === 3;
    }, "every writer to end");
    assert.deepEqual(pending.map((p) => p.draft.action), ["a.first", "b.first", "b.second"]);
    assert.deepEqual(pending[0]?.draft, draft("a.first", 1));

    const head = await store.read((tx) => tx.audit.head());
    assert.deepEqual(head, { seq: 0, hash: AUDIT_GENESIS_HASH });
    const seals: AuditSeal[] = [];
    let prevHash = head.hash;
    for (const [i, p] of pending.entries()) {
      const { dataJson: _, ...fields } = p.draft;
      const hash = computeAuditHash({ ...fields, seq: i + 1, prevHash });
      seals.push({ key: p.key, seq: i + 1, prevHash, hash });
      prevHash = hash;
    }
    assert.equal(await store.lead("sealer", (tx) => tx.audit.seal(seals.slice(0, 2), head)), true);
    assert.equal(
      await store.lead("sealer", (tx) => tx.audit.seal(seals.slice(0, 2), head)),
      false,
      "a stale watermark seals nothing",
    );
    const after2 = { seq: 2, hash: seals[1]!.hash };
    assert.deepEqual(await store.read((tx) => tx.audit.head()), after2);
    assert.equal(await store.read((tx) => tx.audit.pendingCount()), 1);
    assert.deepEqual(
      (await store.read((tx) => tx.audit.pending(10))).map((p) => p.key),
      [pending[2]!.key],
    );
    assert.equal(await store.lead("sealer", (tx) => tx.audit.seal(seals.slice(2), after2)), true);
    assert.equal(await store.read((tx) => tx.audit.pendingCount()), 0);

    const listed = await store.read((tx) => tx.audit.list({ order: "asc", limit: 10 }));
    assert.deepEqual(listed.map((r) => [r.seq, r.action]), [[1, "a.first"], [2, "b.first"], [
      3,
      "b.second",
    ]]);
    for (const record of listed) assert.equal(computeAuditHash(record), record.hash);
    const list = (q: Partial<Parameters<StoreTx["audit"]["list"]>[0]>) =>
      store.read(async (tx) =>
        (await tx.audit.list({ order: "asc", limit: 10, ...q })).map((r) => r.seq)
      );
    assert.deepEqual(await list({ order: "desc", limit: 2 }), [3, 2]);
    assert.deepEqual(await list({ afterSeq: 1 }), [2, 3]);
    assert.deepEqual(await list({ runId: "r-2" }), [2]);
    assert.deepEqual(await list({ action: "b.second" }), [3]);
    assert.deepEqual(await list({ resource: "run:r-1" }), [1]);
    assert.deepEqual(await list({ actor: "svc", since: 1_002 }), [2, 3]);
    assert.deepEqual(await list({ actor: "nobody" }), []);

    await assert.rejects(
      store.transaction((tx) => tx.audit.insertChained([])),
      code("ERR_INTERNAL"),
    );
    assert.deepEqual(await store.read((tx) => tx.audit.missingGuards()), []);
    await admin(url, async (c) => {
      for (
        const sql of [
          `UPDATE ${store.schema}.audit_log SET outcome = 'x'`,
          `DELETE FROM ${store.schema}.audit_seal WHERE seq = 1`,
          `TRUNCATE ${store.schema}.audit_log CASCADE`,
          `TRUNCATE ${store.schema}.audit_seal`,
          `UPDATE ${store.schema}.audit_seal SET hash = 'x'`,
          `UPDATE ${store.schema}.policy_versions SET reason = 'x'`,
          `DELETE FROM ${store.schema}.policy_versions`,
          `TRUNCATE ${store.schema}.policy_versions`,
        ]
      ) {
        const error = await c.query(sql).then(() => undefined, (e: unknown) => e);
        assert.ok(error instanceof Error, sql);
        assert.match(error.message, /^ERR_AUDIT_APPEND_ONLY: /, sql);
        assert.ok(isPlmError(toPlmError(error, url), "ERR_AUDIT_APPEND_ONLY"));
      }
      await c.query(`ALTER TABLE ${store.schema}.audit_log DISABLE TRIGGER audit_log_append_only`);
    });
    assert.deepEqual(await store.read((tx) => tx.audit.missingGuards()), ["audit_log_append_only"]);
    await admin(
      url,
      (c) => c.query(`DROP TRIGGER audit_seal_append_only ON ${store.schema}.audit_seal`),
    );
    assert.deepEqual(
      await store.read((tx) => tx.audit.missingGuards()),
      [
        "audit_log_append_only",
        "audit_seal_append_only",
      ],
    );
    assert.equal(
      await store.read((tx) => tx.audit.list({ order: "asc", limit: 10 })).then((r) => r.length),
      3,
    );
  },
);

pgTest("a transaction handle is dead once its transaction ends", async () => {
  await using store = await openTestPostgresStore();
  let kept: StoreTx | undefined;
  await store.transaction((tx) => Promise.resolve(void (kept = tx)));
  await assert.rejects(kept!.runs.byId("r-1"), code("ERR_INTERNAL"));
  assert.throws(() => kept!.wake("runs"), code("ERR_INTERNAL"));
  // A failed statement rolls the whole transaction back.
  await assert.rejects(
    store.transaction(async (tx) => {
      await tx.runs.insert({ run: queuedRun("r-1", 1), requestDigest: "d" });
      await tx.runs.insert({ run: queuedRun("r-1", 1), requestDigest: "d" }); // same id
    }),
    (error: unknown) => error instanceof PlmError,
  );
  assert.equal(await store.read((tx) => tx.runs.byId("r-1")), undefined);
});

pgTest(
  "audit: a transaction that is not a store writer does not hold sealing back",
  async (url) => {
    await using store = await openTestPostgresStore();
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    try {
      // A long transaction with a transaction id, of another schema's tables.
      await other.query("BEGIN");
      await other.query("CREATE TEMP TABLE held (x int)");
      await other.query("INSERT INTO held VALUES (1)");
      await store.transaction((tx) => tx.audit.insertPending([draft("late", 1)]));
      // Other transactions of the server that end while the sealer reads may hold one pass
      // back (that errs on the safe side); the long one must not hold every pass back.
      let actions: string[] = [];
      for (let pass = 0; pass < 100 && actions.length === 0; pass++) {
        actions = (await store.read((tx) => tx.audit.pending(10))).map((p) => p.draft.action);
      }
      assert.deepEqual(actions, ["late"]);
    } finally {
      await other.query("ROLLBACK").catch(() => {});
      await other.end();
    }
  },
);

pgTest("openStore opens a postgres:// URL with the PostgreSQL adapter", async (url) => {
  const schema = freshSchema();
  try {
    await using store = await openStore(url, { schema, poolSize: 2 });
    assert.equal(store.kind, "postgres");
    assert.equal(await store.schemaVersion(), POSTGRES_MIGRATIONS.length);
    assert.equal(await store.read((tx) => Promise.resolve(tx.audit.chaining)), "seal");
    await assert.rejects(openStore(url, { schema, synchronous: "full" }), TypeError);
  } finally {
    await dropSchema(url, schema);
  }
});

Deno.test("openStore reports an unreachable PostgreSQL server without its password", async () => {
  await assert.rejects(openStore("postgresql://plm:hunter2@127.0.0.1:1/plm"), (error: unknown) => {
    assert.ok(isPlmError(error, "ERR_STORE_UNAVAILABLE"), String(error));
    assert.ok(!error.message.includes("hunter2"), error.message);
    return true;
  });
});

pgTest(
  "audit: writers and a sealer side by side: every record sealed once, in a gap-free chain",
  async () => {
    await using store = await openTestPostgresStore({ poolSize: 6 });
    const writers = 4, each = 15;
    let writing = true;
    const sealed: string[] = [];
    const sealOnce = () =>
      store.lead("sealer", async (tx) => {
        const pending = await tx.audit.pending(7);
        if (pending.length === 0) return 0;
        const head = await tx.audit.head();
        let prevHash = head.hash;
        const seals = pending.map((p, i) => {
          const { dataJson: _, ...fields } = p.draft;
          const hash = computeAuditHash({ ...fields, seq: head.seq + i + 1, prevHash });
          const seal = { key: p.key, seq: head.seq + i + 1, prevHash, hash };
          prevHash = hash;
          return seal;
        });
        assert.equal(await tx.audit.seal(seals, head), true);
        sealed.push(...pending.map((p) => p.key));
        return seals.length;
      });
    const sealer = (async () => {
      while (writing) await sealOnce();
    })();
    await Promise.all(
      Array.from({ length: writers }, async (_, w) => {
        for (let n = 0; n < each; n++) {
          await store.transaction(async (tx) => {
            await tx.governance.insertStart(`agent-${w}`, n); // a state change first
            await tx.audit.insertPending([draft(`w${w}`, n)]);
          });
        }
      }),
    );
    writing = false;
    await sealer;
    await until(
      async () =>
        (await sealOnce()) === 0 && await store.read((tx) => tx.audit.pendingCount()) === 0,
      "the backlog to drain",
    );
    assert.equal(sealed.length, writers * each);
    assert.equal(new Set(sealed).size, sealed.length, "each record sealed once");
    const records = await store.read((tx) => tx.audit.list({ order: "asc", limit: 1_000 }));
    assert.deepEqual(
      records.map((r) => r.seq),
      Array.from({ length: writers * each }, (_, i) => i + 1),
    );
    let prev = AUDIT_GENESIS_HASH;
    for (const record of records) {
      assert.equal(record.prevHash, prev);
      assert.equal(computeAuditHash(record), record.hash);
      prev = record.hash;
    }
    await assert.rejects(
      store.lead("sealer", async (tx) => {
        const head = await tx.audit.head();
        return await tx.audit.seal([{
          key: "1:1",
          seq: head.seq + 1,
          prevHash: head.hash,
          hash: "x",
        }], head);
      }),
      code("ERR_INTERNAL"),
      "a key that is no pending record",
    );
  },
);

pgTest(
  "a connection killed mid-transaction is ERR_STORE_UNAVAILABLE; the next transaction works",
  async (url) => {
    await using store = await openTestPostgresStore({ poolSize: 1 });
    await assert.rejects(
      store.transaction(async (tx) => {
        await tx.governance.insertStart("agent-1", 1);
        await admin(url, (c) =>
          c.query(
            `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
           WHERE state = 'idle in transaction' AND query LIKE 'INSERT INTO agent_run_starts%'`,
          ));
        await tx.governance.insertStart("agent-1", 2);
      }),
      code("ERR_STORE_UNAVAILABLE"),
    );
    await store.transaction((tx) => tx.governance.insertStart("agent-1", 3));
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
  },
);

Deno.test("redactUrl hides the password of the user info and of a password parameter", () => {
  assert.equal(
    redactUrl("postgres://plm:s3cr%40t@db:5432/plm?sslmode=require&password=x2"),
    "postgres://plm:***@db:5432/plm?sslmode=require&password=***",
  );
  assert.equal(redactUrl("postgresql://plm@db/plm"), "postgresql://plm@db/plm");
  assert.equal(redactUrl("postgres://db/plm?password=x&a=1"), "postgres://db/plm?password=***&a=1");
  // A password holding "@" is hidden whole (the user info ends at the last "@").
  assert.equal(redactUrl("postgres://plm:p@ss@db/plm"), "postgres://plm:***@db/plm");
  assert.equal(
    redactUrls("error at postgres://plm:p@ss@db/plm?password=s3cret and postgres://a:b@c/d"),
    "error at postgres://plm:***@db/plm?password=*** and postgres://a:***@c/d",
  );
});

Deno.test("openPostgresStore refuses a URL that sets application_name or options", async () => {
  for (const param of ["application_name=serve", "options=-c%20search_path%3Dpublic"]) {
    await assert.rejects(
      openPostgresStore(`postgres://postgres@127.0.0.1:1/test?${param}`),
      (err: unknown) =>
        isPlmError(err, "ERR_INVALID_ARGUMENT") && /^url: /.test((err as Error).message),
      param,
    );
  }
});
