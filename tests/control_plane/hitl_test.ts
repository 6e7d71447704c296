import assert from "node:assert/strict";
import {
  ApprovalService,
  type ApprovalSpec,
  AuditLog,
  openStore,
  type Store,
} from "../../control_plane/mod.ts";
import { FakeClock, type Identity, isPlmError } from "../../shared/mod.ts";

const SPEC: ApprovalSpec = {
  approverRoles: ["lead"],
  quorum: 2,
  timeoutSeconds: 60,
  onExpiry: "deny",
};
const REQUESTER = { subject: "agent-7", kind: "agent" } as const;

function human(subject: string, roles = ["lead"]): Identity {
  return { subject, actorKind: "human", roles, scopes: [] };
}

/** Opens a store: SQLite in memory unless a path (or another engine's factory) is given. */
async function setUp(open: string | (() => Promise<Store>) = ":memory:") {
  const store = typeof open === "string" ? await openStore(open) : await open();
  const clock = new FakeClock(Date.UTC(2026, 10, 25, 10));
  const audit = new AuditLog(store, { clock });
  let n = 0;
  const approvals = new ApprovalService(store, { audit, clock, generateId: () => `ap-${++n}` });
  return { store, clock, audit, approvals };
}

function code(expected: string) {
  return (err: unknown) => isPlmError(err) && err.code === expected;
}

Deno.test("ApprovalService.decide() approves at quorum, each approver counting once", async () => {
  const { store, approvals, audit } = await setUp();
  const a = await approvals.request("run-1", SPEC, {
    requester: REQUESTER,
    subject: { action: "bom.release" },
  });
  assert.equal(a.state, "pending");
  const one = await approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest });
  assert.equal(one.state, "pending");
  await assert.rejects(
    () => approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest }),
    code("ERR_APPROVAL_DUPLICATE"),
  );
  const two = await approvals.decide(a.id, "approve", { identity: human("bob"), digest: a.digest });
  assert.equal(two.state, "approved");
  assert.deepEqual(two.votes.map((v) => v.approver.subject), ["ann", "bob"]);
  await assert.rejects(
    () => approvals.decide(a.id, "approve", { identity: human("cat"), digest: a.digest }),
    code("ERR_APPROVAL_NOT_PENDING"),
  );
  const trail = (await audit.list({ runId: "run-1" })).map((r) => `${r.action}:${r.actor.subject}`);
  assert.deepEqual(trail, [
    "approval.requested:agent-7",
    "approval.decided:ann",
    "approval.decide:ann", // the refused second vote
    "approval.decided:bob",
    "approval.approved:bob",
    "approval.decide:cat", // refused: no longer pending
  ]);
  await store.close();
});

Deno.test("ApprovalService.decide() ends the request on any rejection (veto)", async () => {
  const { store, approvals } = await setUp();
  const a = await approvals.request("run-1", SPEC, { requester: REQUESTER, subject: null });
  await approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest });
  const vetoed = await approvals.decide(a.id, "reject", {
    identity: human("bob"),
    digest: a.digest,
    comment: "wrong supplier",
  });
  assert.equal(vetoed.state, "rejected");
  assert.equal(vetoed.reason, "Rejected by bob: wrong supplier");
  await store.close();
});

Deno.test("ApprovalService.decide() refuses the requester, wrong roles and kinds", async (t) => {
  const { store, approvals } = await setUp();
  const a = await approvals.request("run-1", SPEC, {
    requester: { subject: "ann", kind: "human" },
    subject: null,
  });
  await t.step("self-approval", async () => {
    await assert.rejects(
      () => approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest }),
      code("ERR_APPROVAL_SELF"),
    );
  });
  await t.step("a role not in the spec", async () => {
    await assert.rejects(
      () =>
        approvals.decide(a.id, "approve", { identity: human("bob", ["viewer"]), digest: a.digest }),
      code("ERR_APPROVER_NOT_ALLOWED"),
    );
  });
  await t.step("an agent holding the role", async () => {
    await assert.rejects(
      () =>
        approvals.decide(a.id, "approve", {
          identity: { subject: "bot", actorKind: "agent", roles: ["lead"], scopes: [] },
          digest: a.digest,
        }),
      code("ERR_APPROVER_NOT_ALLOWED"),
    );
  });
  await t.step("an invalid identity is bad input, naming options.identity", async () => {
    for (
      const identity of [{ ...human(""), roles: ["lead"] }, { ...human("ann"), roles: "lead" }]
    ) {
      await assert.rejects(
        () =>
          approvals.decide(a.id, "approve", { identity: identity as Identity, digest: a.digest }),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /options\.identity/.test(err.message),
      );
    }
  });
  await t.step("no identity given or bound", async () => {
    await assert.rejects(
      () => approvals.decide(a.id, "approve", { identity: undefined as never, digest: a.digest }),
      code("ERR_IDENTITY_REQUIRED"),
    );
  });
  assert.equal((await approvals.get(a.id)).votes.length, 0, "no refused decision was counted");
  await store.close();
});

Deno.test("ApprovalService.decide() refuses a decision replayed onto another request", async () => {
  const { store, approvals } = await setUp();
  const a = await approvals.request("run-1", SPEC, {
    requester: REQUESTER,
    subject: { amount: 10 },
  });
  const b = await approvals.request("run-2", SPEC, {
    requester: REQUESTER,
    subject: { amount: 10 },
  });
  assert.notEqual(a.digest, b.digest, "identical content still gives distinct digests");
  await assert.rejects(
    () => approvals.decide(b.id, "approve", { identity: human("ann"), digest: a.digest }),
    code("ERR_APPROVAL_DIGEST_MISMATCH"),
  );
  await assert.rejects(() => approvals.get("nope"), code("ERR_APPROVAL_NOT_FOUND"));
  await store.close();
});

Deno.test("ApprovalService.expireDue() expires, which is not a rejection", async () => {
  const { store, approvals, clock, audit } = await setUp();
  const a = await approvals.request("run-1", { ...SPEC, onExpiry: "escalate" }, {
    requester: REQUESTER,
    subject: null,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  });
  await approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest });
  clock.advance(59_999);
  assert.deepEqual(await approvals.expireDue(), []);
  clock.advance(1);
  await assert.rejects(
    () => approvals.decide(a.id, "approve", { identity: human("bob"), digest: a.digest }),
    code("ERR_APPROVAL_EXPIRED"),
  );
  const [expired] = await approvals.expireDue();
  assert.equal(expired?.state, "expired");
  assert.equal(expired?.spec.onExpiry, "escalate");
  assert.equal((await approvals.list({ state: "rejected" })).length, 0);
  assert.equal((await audit.list({ actionPrefix: "approval.rejected" })).length, 0);
  assert.equal((await audit.list({ actionPrefix: "approval.expired" }))[0]?.outcome, "expired");
  assert.ok(
    (await audit.list({ runId: "run-1" })).every((r) =>
      r.traceId === "4bf92f3577b34da6a3ce929d0e0e4736"
    ),
    "every record of the approval, expiry included, carries the run's trace",
  );
  assert.deepEqual(await approvals.expireDue(), [], "expiry happens once");
  await store.close();
});

Deno.test("ApprovalService never double-counts two processes deciding at once", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/approvals.store`;
  const { store, approvals, audit, clock } = await setUp(path);
  try {
    const a = await approvals.request("run-1", SPEC, { requester: REQUESTER, subject: null });
    const worker = new URL("./_approve_worker.ts", import.meta.url).pathname;
    const outputs = await Promise.all(
      ["ann", "ann", "bob", "bob", "cat"].map(async (subject) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", worker, path, a.id, subject, a.digest, String(clock.now())],
          stdout: "piped",
        }).output();
        return new TextDecoder().decode(out.stdout).trim();
      }),
    );
    const after = await approvals.get(a.id);
    assert.equal(after.state, "approved");
    assert.equal(after.votes.length, 2, outputs.join(", "));
    assert.equal(new Set(after.votes.map((v) => v.approver.subject)).size, 2);
    assert.equal(outputs.filter((o) => o.startsWith("ok")).length, 2, outputs.join(", "));
    assert.ok(
      outputs.every((o) => /^ok|ERR_APPROVAL_DUPLICATE|ERR_APPROVAL_NOT_PENDING/.test(o)),
      outputs.join(", "),
    );
    assert.equal((await audit.list({ actionPrefix: "approval.approved" })).length, 1);
    assert.equal((await audit.verify()).ok, true);
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ApprovalService.list() and expireDue() refuse a bad filter or limit with ERR_INVALID_ARGUMENT", async (t) => {
  const { store, approvals } = await setUp();
  for (let i = 0; i < 3; i++) {
    await approvals.request(`run-${i}`, SPEC, { requester: REQUESTER, subject: null });
  }
  const invalid = (field: RegExp) => (err: unknown) =>
    isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message);
  for (const limit of [-1, 0, 1_001, NaN, 1.5, Infinity, "2", {}]) {
    await t.step(`limit ${String(limit)}`, async () => {
      await assert.rejects(() => approvals.list({ limit: limit as number }), invalid(/limit/));
      await assert.rejects(
        () => approvals.expireDue(undefined, { limit: limit as number }),
        invalid(/limit/),
      );
    });
  }
  await t.step("state and runId", async () => {
    await assert.rejects(() => approvals.list({ state: "done" as never }), invalid(/state/));
    await assert.rejects(() => approvals.list({ runId: 7 as unknown as string }), invalid(/runId/));
    await assert.rejects(() => approvals.list({ runId: "run-1\0" }), invalid(/runId/));
  });
  assert.equal((await approvals.list({ limit: 2 })).length, 2);
  await store.close();
});

Deno.test("ApprovalService.decide() audits every refused attempt, then throws its code", async (t) => {
  const { store, clock, audit, approvals } = await setUp();
  const a = await approvals.request("run-1", { ...SPEC, quorum: 1 }, {
    requester: REQUESTER,
    subject: { action: "bom.release" },
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  });
  const other = await approvals.request("run-2", SPEC, { requester: REQUESTER, subject: "other" });
  const attempts: [string, string, () => unknown][] = [
    ["self-approval", "ERR_APPROVAL_SELF", () =>
      approvals.decide(a.id, "approve", {
        identity: { ...human("agent-7"), actorKind: "agent" },
        digest: a.digest,
      })],
    [
      "a digest of another request",
      "ERR_APPROVAL_DIGEST_MISMATCH",
      () => approvals.decide(a.id, "approve", { identity: human("ann"), digest: other.digest }),
    ],
    [
      "a missing role",
      "ERR_APPROVER_NOT_ALLOWED",
      () =>
        approvals.decide(a.id, "reject", { identity: human("bob", ["viewer"]), digest: a.digest }),
    ],
  ];
  for (const [name, expected, attempt] of attempts) {
    await t.step(name, async () => {
      await assert.rejects(async () => await attempt(), code(expected));
      const record = (await audit.list({ actionPrefix: "approval.decide" })).at(-1);
      assert.equal(record?.outcome, "refused");
      assert.equal(record?.runId, "run-1");
      assert.equal(record?.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
      assert.equal((record?.data as { code: string }).code, expected);
      assert.equal((await approvals.get(a.id)).votes.length, 0, "a refusal records no vote");
    });
  }
  await t.step("decided", async () => {
    await approvals.decide(a.id, "approve", { identity: human("ann"), digest: a.digest });
    await assert.rejects(
      () => approvals.decide(a.id, "approve", { identity: human("cat"), digest: a.digest }),
      code("ERR_APPROVAL_NOT_PENDING"),
    );
    const record = (await audit.list({ actionPrefix: "approval.decide" })).at(-1);
    assert.deepEqual([record?.actor.subject, (record?.data as { code: string }).code], [
      "cat",
      "ERR_APPROVAL_NOT_PENDING",
    ]);
  });
  await t.step("expired", async () => {
    clock.advance(60_000);
    await assert.rejects(
      () => approvals.decide(other.id, "approve", { identity: human("ann"), digest: other.digest }),
      code("ERR_APPROVAL_EXPIRED"),
    );
    const record = (await audit.list({ actionPrefix: "approval.decide" })).at(-1);
    assert.deepEqual([record?.runId, (record?.data as { code: string }).code], [
      "run-2",
      "ERR_APPROVAL_EXPIRED",
    ]);
  });
  assert.equal((await audit.verify()).ok, true);
  await store.close();
});

Deno.test("ApprovalService.request() refuses a malformed spec naming the field", async (t) => {
  const { store, audit, approvals } = await setUp();
  const cases: [string, unknown, RegExp][] = [
    ["no approver roles", { ...SPEC, approverRoles: [] }, /spec\.approverRoles/],
    ["roles given as a string", { ...SPEC, approverRoles: "lead" }, /spec\.approverRoles/],
    ["a zero quorum", { ...SPEC, quorum: 0 }, /spec\.quorum/],
    ["a fractional timeout", { ...SPEC, timeoutSeconds: 1.5 }, /spec\.timeoutSeconds/],
    ["a timeout past a year", { ...SPEC, timeoutSeconds: 366 * 86_400 }, /spec\.timeoutSeconds/],
    ["an unknown onExpiry", { ...SPEC, onExpiry: "approve" }, /spec\.onExpiry/],
    ["an unknown key", { ...SPEC, escalateTo: "cto" }, /spec/],
    ["no spec", undefined, /spec/],
  ];
  for (const [name, spec, field] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () =>
          approvals.request("run-1", spec as ApprovalSpec, { requester: REQUESTER, subject: "x" }),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
  assert.deepEqual(await approvals.list(), []);
  assert.equal((await audit.head()).seq, 0);
  await store.close();
});

Deno.test("ApprovalService.decide() refuses an unknown decision with ERR_INVALID_ARGUMENT", async () => {
  const { store, approvals } = await setUp();
  const a = await approvals.request("run-1", SPEC, { requester: REQUESTER, subject: "x" });
  for (const decision of ["approved", "APPROVE", "", null]) {
    await assert.rejects(
      () =>
        approvals.decide(a.id, decision as "approve", { identity: human("ann"), digest: a.digest }),
      (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && err.message.includes("decision"),
    );
  }
  assert.equal((await approvals.get(a.id)).votes.length, 0);
  await store.close();
});
