// PolicyStore (versions of the policy set in the store), diffPolicySets and
// followPolicies, on SQLite and, when PLM_TEST_POSTGRES_URL is set, PostgreSQL.
import assert from "node:assert/strict";
import {
  AuditLog,
  ControlPlane,
  diffPolicySets,
  FakeClock,
  FakeTimers,
  followPolicies,
  isPlmError,
  openStore,
  PolicyEngine,
  PolicyError,
  type PolicySet,
  policySetVersion,
  PolicyStore,
  sha256Hex,
  type Store,
  withIdentity,
} from "../../control_plane/mod.ts";
import { withSystemIdentity } from "../../control_plane/identity/mod.ts";
import { openTestPostgresStore, POSTGRES_URL } from "../_postgres.ts";

const OPS = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;

const READ: PolicySet = {
  id: "plm",
  rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }],
};
const READ_DELETE: PolicySet = {
  id: "plm",
  rules: [
    { id: "read", effect: "allow", actions: ["bom.read"] },
    { id: "no-delete", effect: "deny", actions: ["bom.delete"] },
  ],
};

const ENGINES: [string, () => Promise<Store>][] = [["sqlite", () => openStore(":memory:")]];
if (POSTGRES_URL !== undefined) ENGINES.push(["postgres", () => openTestPostgresStore()]);

function both(name: string, fn: (store: Store) => Promise<void>): void {
  for (const [engine, open] of ENGINES) {
    Deno.test({
      name: `[${engine}] ${name}`,
      sanitizeResources: false,
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
}

both(
  "apply() stores version 1 with its canonical text and hash, audited in the same transaction",
  async (store) => {
    const clock = new FakeClock(1_000);
    const audit = new AuditLog(store, { clock });
    const policies = new PolicyStore(store, { audit, clock });
    const result = await policies.apply(READ, { identity: OPS, reason: "first rules" });
    assert.equal(result.changed, true);
    assert.equal(result.previous, undefined);
    assert.equal(result.policy.version, 1);
    assert.equal(result.policy.hash, policySetVersion(READ));
    assert.equal(result.policy.hash, new PolicyEngine(READ).version);
    assert.deepEqual(
      [result.policy.appliedAt, result.policy.appliedBy, result.policy.reason],
      [1_000, "ops", "first rules"],
    );
    const row = await store.read((tx) => tx.policies.active());
    assert.equal(
      row?.content,
      '{"id":"plm","rules":[{"actions":["bom.read"],"effect":"allow","id":"read"}]}',
    );
    assert.equal(row?.hash, sha256Hex(row!.content));
    const [record] = await audit.list({ actionPrefix: "policy.applied" });
    assert.deepEqual(
      [record?.actor, record?.resource, record?.outcome, record?.reason],
      [{ subject: "ops", kind: "human" }, "policy:plm", "applied", "first rules"],
    );
    assert.deepEqual(record?.data, {
      version: 1,
      hash: result.policy.hash,
      previousHash: null,
      rules: 1,
    });
  },
);

both("apply() stores a new version only when the content hash differs", async (store) => {
  const policies = new PolicyStore(store, { clock: new FakeClock(0) });
  await policies.apply(READ, { identity: OPS });
  // The same content with keys in another order: the same hash, nothing written.
  const reordered = { rules: [{ actions: ["bom.read"], effect: "allow", id: "read" }], id: "plm" };
  const same = await policies.apply(JSON.stringify(reordered), { identity: OPS });
  assert.deepEqual([same.changed, same.policy.version, same.previous?.version], [false, 1, 1]);
  const next = await policies.apply(READ_DELETE, { identity: OPS });
  assert.deepEqual([next.changed, next.policy.version, next.previous?.version], [true, 2, 1]);
  const back = await policies.apply(READ, { identity: OPS });
  assert.deepEqual([back.changed, back.policy.version], [true, 3], "going back is a new version");
  assert.deepEqual((await policies.history()).map((p) => p.version), [3, 2, 1]);
  assert.deepEqual((await policies.history({ limit: 1 })).map((p) => p.version), [3]);
  const audit = new AuditLog(store);
  const records = await audit.list({ actionPrefix: "policy.applied" });
  assert.deepEqual(records.map((r) => r.data), [
    { version: 1, hash: policySetVersion(READ), previousHash: null, rules: 1 },
    {
      version: 2,
      hash: policySetVersion(READ_DELETE),
      previousHash: policySetVersion(READ),
      rules: 2,
    },
    {
      version: 3,
      hash: policySetVersion(READ),
      previousHash: policySetVersion(READ_DELETE),
      rules: 1,
    },
  ]);
});

both(
  "apply() in a caller's transaction that rolls back leaves no version and no audit record",
  async (store) => {
    const policies = new PolicyStore(store);
    await assert.rejects(
      store.transaction(async (tx) => {
        await policies.apply(READ, { identity: OPS, tx });
        throw new Error("later step failed");
      }),
      /later step failed/,
    );
    assert.equal(await policies.active(), undefined);
    assert.deepEqual(await new AuditLog(store).list({ actionPrefix: "policy.applied" }), []);
  },
);

both("concurrent applies of different sets get contiguous versions, none twice", async (store) => {
  const policies = new PolicyStore(store);
  const sets = Array.from({ length: 8 }, (_, i) => ({
    rules: [{ id: `r${i}`, effect: "allow" as const, actions: [`bom.op${i}`] }],
  }));
  const results = await Promise.all(sets.map((set) => policies.apply(set, { identity: OPS })));
  assert.deepEqual(results.map((r) => r.policy.version).sort((a, b) => a - b), [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
  ]);
  const history = await policies.history({ limit: 100 });
  assert.deepEqual(history.map((p) => p.version), [8, 7, 6, 5, 4, 3, 2, 1]);
  assert.equal(new Set(history.map((p) => p.hash)).size, 8);
  await new AuditLog(store).seal();
  const records = await new AuditLog(store).list({ actionPrefix: "policy.applied" });
  assert.deepEqual(
    records.map((r) => (r.data as { version: number }).version).sort((a, b) => a - b),
    [
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
    ],
  );
});

both("concurrent applies of the same set store it once", async (store) => {
  const policies = new PolicyStore(store);
  await policies.apply(READ, { identity: OPS });
  const results = await Promise.all(
    Array.from({ length: 6 }, () => policies.apply(READ_DELETE, { identity: OPS })),
  );
  assert.deepEqual(results.map((r) => r.policy.version), [2, 2, 2, 2, 2, 2]);
  assert.equal(results.filter((r) => r.changed).length, 1);
  assert.deepEqual((await policies.history()).map((p) => p.version), [2, 1]);
});

both("apply() as the system identity records the system actor and the reason", async (store) => {
  const audit = new AuditLog(store);
  const policies = new PolicyStore(store, { audit });
  const result = await withSystemIdentity(
    "plm policy apply",
    () => policies.apply(READ, { reason: "applied by alice with plm policy apply" }),
  );
  assert.equal(result.policy.appliedBy, "system");
  const [record] = await audit.list({ actionPrefix: "policy.applied" });
  assert.deepEqual(record?.actor, { subject: "system", kind: "system" });
  assert.equal(record?.reason, "applied by alice with plm policy apply");
  await assert.rejects(
    policies.apply(READ_DELETE),
    (err) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  const bound = await withIdentity(OPS, () => policies.apply(READ_DELETE));
  assert.equal(bound.policy.appliedBy, "ops");
});

both("apply() refuses hostile input naming the field, and stores nothing", async (store) => {
  const policies = new PolicyStore(store);
  const refused = async (input: unknown, code: string, message: RegExp, reason?: string) => {
    await assert.rejects(
      policies.apply(input, { identity: OPS, ...(reason === undefined ? {} : { reason }) }),
      (err) => isPlmError(err, code as never) && message.test(err.message),
    );
  };
  // Wrong types, named by path.
  await refused(
    { rules: [{ id: "r", effect: "allow", actions: "bom.read" }] },
    "ERR_POLICY_INVALID",
    /rules\[0\]\.actions/,
  );
  await refused(
    { rules: [{ id: 7, effect: "allow", actions: ["*"] }] },
    "ERR_POLICY_INVALID",
    /rules\[0\]\.id/,
  );
  await refused({ rules: "all" }, "ERR_POLICY_INVALID", /rules/);
  await refused(null, "ERR_POLICY_INVALID", /\(root\)/);
  // U+0000: raw in the file (not JSON), escaped in a string (refused by name).
  await refused('{"rules":[]}\u0000', "ERR_POLICY_INVALID", /Cannot parse policy JSON/);
  await refused(
    '{"rules":[{"id":"r\\u0000","effect":"allow","actions":["*"]}]}',
    "ERR_POLICY_INVALID",
    /rules\[0\]\.id: Text contains U\+0000/,
  );
  await refused(
    { rules: [{ id: "r", effect: "allow", actions: ["bom\u0000"] }] },
    "ERR_POLICY_INVALID",
    /rules\[0\]\.actions\[0\]/,
  );
  await refused(
    { description: "\ud800", rules: [] },
    "ERR_POLICY_INVALID",
    /description: Text contains a lone surrogate/,
  );
  // Deeply nested: refused by the schema before anything is hashed.
  const deep = "[".repeat(100_000) + "]".repeat(100_000);
  await refused(deep, "ERR_POLICY_INVALID", /\(root\)/);
  await refused(
    {
      rules: [{
        id: "r",
        effect: "allow",
        actions: ["*"],
        conditions: [{ attr: "a", op: "eq", value: JSON.parse("[".repeat(50) + "]".repeat(50)) }],
      }],
    },
    "ERR_POLICY_INVALID",
    /rules\[0\]\.conditions\[0\]\.value/,
  );
  // Huge: more canonical JSON than JSON_LIMITS allows.
  const huge = {
    rules: Array.from({ length: 5_000 }, (_, i) => ({
      id: `r${i}`,
      effect: "allow",
      actions: [`bom.${"x".repeat(250)}`],
    })),
  };
  await refused(
    huge,
    "ERR_INVALID_ARGUMENT",
    /policySet: its JSON is more than 1000000 characters/,
  );
  // A bad reason.
  await refused(READ, "ERR_INVALID_ARGUMENT", /reason/, "why\u0000");
  assert.equal(await policies.active(), undefined);
  assert.deepEqual(await new AuditLog(store).list(), []);
});

both("the same errors as the loader: a PolicyError with the issues", async (store) => {
  const policies = new PolicyStore(store);
  const bad = { rules: [{ id: "r", effect: "require_approval", actions: ["*"] }] };
  const err = await policies.apply(bad, { identity: OPS }).catch((e) => e);
  assert.ok(err instanceof PolicyError);
  assert.deepEqual(err.issues[0]?.path, ["rules", 0, "approval"]);
});

both("active(), require(), byVersion() and diff() read the versions", async (store) => {
  const policies = new PolicyStore(store);
  await assert.rejects(policies.require(), (err) => isPlmError(err, "ERR_POLICY_NOT_FOUND"));
  await policies.apply(READ, { identity: OPS });
  await policies.apply(READ_DELETE, { identity: OPS });
  assert.equal((await policies.require()).version, 2);
  assert.deepEqual((await policies.active())?.policySet, READ_DELETE);
  assert.ok(Object.isFrozen((await policies.active())?.policySet));
  assert.deepEqual((await policies.byVersion(1))?.policySet, READ);
  assert.equal(await policies.byVersion(9), undefined);
  const diff = await policies.diff(1, 2);
  assert.deepEqual([diff.added, diff.removed, diff.changed], [["no-delete"], [], []]);
  assert.deepEqual([diff.from, diff.to], [policySetVersion(READ), policySetVersion(READ_DELETE)]);
  await assert.rejects(
    policies.diff(1, 3),
    (err) => isPlmError(err, "ERR_POLICY_NOT_FOUND") && /version 3/.test(err.message),
  );
  await assert.rejects(policies.byVersion(0), (err) => isPlmError(err, "ERR_INVALID_ARGUMENT"));
  await assert.rejects(
    policies.history({ limit: 0 }),
    (err) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
});

both("a stored version whose text no longer has its hash is refused as corrupt", async (store) => {
  await store.transaction((tx) =>
    tx.policies.insert({
      version: 1,
      content: '{"rules":[]}',
      hash: "0".repeat(64),
      appliedAt: 0,
      appliedBy: "mallory",
      reason: null,
    })
  );
  await assert.rejects(
    new PolicyStore(store).active(),
    (err) => isPlmError(err, "ERR_STORE_CORRUPT"),
  );
});

Deno.test("diffPolicySets() reports added, removed, changed rules, order and metadata", () => {
  const a: PolicySet = {
    id: "a",
    rules: [
      { id: "x", effect: "allow", actions: ["bom.read"] },
      { id: "y", effect: "deny", actions: ["bom.delete"] },
      { id: "z", effect: "allow", actions: ["part.read"] },
    ],
  };
  const b: PolicySet = {
    id: "b",
    rules: [
      { id: "y", effect: "deny", actions: ["bom.delete"], actorKinds: ["agent"] },
      { id: "x", effect: "allow", actions: ["bom.read"] },
      { id: "w", effect: "allow", actions: ["doc.read"] },
    ],
  };
  const diff = diffPolicySets(a, b);
  assert.deepEqual(diff.added, ["w"]);
  assert.deepEqual(diff.removed, ["z"]);
  assert.deepEqual(diff.changed, ["y"]);
  assert.equal(diff.reordered, true);
  assert.equal(diff.metadataChanged, true);
  const none = diffPolicySets(a, a);
  assert.deepEqual([none.added, none.removed, none.changed, none.reordered, none.metadataChanged], [
    [],
    [],
    [],
    false,
    false,
  ]);
  assert.equal(none.from, none.to);
});

both(
  "followPolicies() switches the control plane within one interval of a new version",
  async (store) => {
    const clock = new FakeClock(0);
    const timers = new FakeTimers(clock);
    const policyStore = new PolicyStore(store, { clock });
    await policyStore.apply(READ, { identity: OPS });
    const cp = new ControlPlane(store, {
      clock,
      policies: (await policyStore.require()).policySet,
    });
    const changes: number[] = [];
    const follower = followPolicies(cp, policyStore, {
      intervalMs: 3_000,
      timer: timers.timer,
      onChange: (p) => changes.push(p.version),
    });
    try {
      const identity = { subject: "a", actorKind: "agent", roles: [], scopes: [] } as const;
      const decide = () => cp.policy.decide({ identity, action: "bom.delete", resource: "bom:1" });
      assert.equal(decide().matchedRuleIds.length, 0);
      assert.equal(await follower.check(), false, "already on the active version");
      await policyStore.apply(READ_DELETE, { identity: OPS });
      await timers.advance(2_999);
      assert.equal(cp.policy.version, policySetVersion(READ), "not checked before the interval");
      await timers.advance(1);
      await follower.check(); // waits for the check the timer started
      assert.deepEqual(decide().matchedRuleIds, ["no-delete"]);
      assert.equal(cp.policy.version, policySetVersion(READ_DELETE));
      const updated = await cp.audit.list({ actionPrefix: "policy.updated" });
      assert.equal(updated.at(-1)?.actor.subject, "system:policy-follower");
      assert.equal(timers.pending, 1, "the next check is scheduled");
    } finally {
      await follower.stop();
    }
    assert.equal(timers.pending, 0, "stop() cancels the next check");
    assert.ok(changes.includes(2));
  },
);

Deno.test("followPolicies() checks on the timer only, goes on after an error, and stops", async () => {
  await using store = await openStore(":memory:");
  const clock = new FakeClock(0);
  const timers = new FakeTimers(clock);
  const policyStore = new PolicyStore(store, { clock });
  const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
  const errors: unknown[] = [];
  let failNext = false;
  const flaky = Object.create(policyStore, {
    active: {
      value: () => {
        if (failNext) {
          failNext = false;
          return Promise.reject(new Error("store unreachable"));
        }
        return policyStore.active();
      },
    },
  }) as PolicyStore;
  const follower = followPolicies(cp, flaky, {
    intervalMs: 1_000,
    timer: timers.timer,
    onError: (e) => errors.push(e),
  });
  await policyStore.apply(READ, { identity: OPS });
  assert.notEqual(cp.policy.version, policySetVersion(READ), "no check before the first interval");
  failNext = true;
  await timers.advance(1_000);
  await follower.check().catch(() => {});
  // The failed timer check was reported; the manual check after it switched.
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /store unreachable/);
  assert.equal(cp.policy.version, policySetVersion(READ));
  await policyStore.apply(READ_DELETE, { identity: OPS });
  await timers.advance(1_000);
  await follower.check();
  assert.equal(cp.policy.version, policySetVersion(READ_DELETE));
  await follower.stop();
  await follower.stop();
  await policyStore.apply(READ, { identity: OPS });
  await timers.advance(10_000);
  assert.equal(cp.policy.version, policySetVersion(READ_DELETE), "stopped: no more checks");
  assert.throws(
    () => followPolicies(cp, policyStore, { intervalMs: 0 }),
    (err) => isPlmError(err, "ERR_INVALID_ARGUMENT"),
  );
});

if (POSTGRES_URL !== undefined) {
  Deno.test({
    name: "[postgres] a control plane on another pool follows a version applied elsewhere",
    sanitizeResources: false,
    async fn() {
      await using writer = await openTestPostgresStore();
      await using reader = await openTestPostgresStore({ schema: writer.schema });
      const clock = new FakeClock(0);
      const timers = new FakeTimers(clock);
      const applier = new PolicyStore(writer, { clock });
      await applier.apply(READ, { identity: OPS });
      const follower = new PolicyStore(reader, { clock });
      const cp = new ControlPlane(reader, {
        clock,
        policies: (await follower.require()).policySet,
      });
      await using following = followPolicies(cp, follower, {
        intervalMs: 5_000,
        timer: timers.timer,
      });
      await applier.apply(READ_DELETE, { identity: OPS });
      await timers.advance(5_000);
      await following.check();
      assert.equal(cp.policy.version, policySetVersion(READ_DELETE));
    },
  });
}
