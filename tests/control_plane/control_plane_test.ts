import assert from "node:assert/strict";
import {
  type AutonomyNotification,
  ControlPlane,
  openStore,
  parseTraceparent,
  PolicyEngine,
  type PolicySet,
  type Store,
  type StoreTx,
  withIdentity,
  withTraceContext,
} from "../../control_plane/mod.ts";
import { FakeClock, type Identity, isPlmError } from "../../shared/mod.ts";
import { task, TRACEPARENT } from "./_runs_fixture.ts";

const POLICIES: PolicySet = {
  id: "test",
  rules: [
    { id: "read", effect: "allow", actions: ["bom.read"] },
    { id: "update", effect: "allow", actions: ["bom.update"], roles: ["editor"] },
    {
      id: "release",
      effect: "require_approval",
      actions: ["bom.release"],
      approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 60, onExpiry: "deny" },
    },
    {
      id: "scrap",
      effect: "require_approval",
      actions: ["bom.scrap"],
      approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 60, onExpiry: "escalate" },
    },
  ],
};

const AGENT: Identity = { subject: "agent-7", actorKind: "agent", roles: ["editor"], scopes: [] };
const LEAD: Identity = { subject: "lena", actorKind: "human", roles: ["lead"], scopes: [] };

/** A control plane on a fresh store: SQLite in memory unless another factory is given. */
async function setUp(open: () => Promise<Store> = () => openStore(":memory:")) {
  const store = await open();
  const clock = new FakeClock(Date.UTC(2026, 10, 25, 9));
  let n = 0;
  const cp = new ControlPlane(store, {
    policies: POLICIES,
    clock,
    generateId: () => `id-${++n}`,
    autonomy: { defaultLevel: "L4", agents: { "agent-2": { level: "L2" } } },
    runBudget: { maxAttempts: 3 },
  });
  return { store, clock, cp };
}

Deno.test("ControlPlane.authorize() decides, folds autonomy and budgets, and audits", async (t) => {
  const { store, cp } = await setUp();
  await t.step("allow", async () => {
    const v = await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
    assert.equal(v.decision, "allow");
    assert.deepEqual(v.matchedRuleIds, ["update"]);
    assert.equal(v.autonomyLevel, "L4");
  });
  await t.step("default deny", async () => {
    const v = await cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
    assert.equal(v.decision, "deny");
    assert.deepEqual(v.matchedRuleIds, []);
  });
  await t.step("an agent at L2 needs approval for an allowed action", async () => {
    const v = await cp.authorize({
      identity: { ...AGENT, subject: "agent-2" },
      action: "bom.update",
      resource: "bom:1",
    });
    assert.equal(v.decision, "require_approval");
    assert.equal(v.autonomyLevel, "L2");
  });
  await t.step("over the run budget", async () => {
    const v = await cp.authorize({
      identity: AGENT,
      action: "bom.update",
      resource: "bom:1",
      usage: { attempts: 4, escalations: 0, costUnits: 0 },
    });
    assert.equal(v.decision, "deny");
    assert.equal(v.code, "ERR_BUDGET_EXCEEDED");
  });
  await t.step("no identity fails closed", async () => {
    await assert.rejects(
      () => cp.authorize({ action: "bom.read", resource: "bom:1" }),
      (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
    );
  });
  await t.step("the bound identity and trace context are used", async () => {
    const trace = parseTraceparent(TRACEPARENT)!;
    withIdentity(
      AGENT,
      () => withTraceContext(trace, () => cp.authorize({ action: "bom.read", resource: "bom:9" })),
    );
    const [last] = await cp.audit.list({
      actionPrefix: "policy.decide",
      newestFirst: true,
      limit: 1,
    });
    assert.equal(last?.actor.subject, "agent-7");
    assert.equal(last?.traceId, trace.traceId);
    assert.equal(last?.outcome, "allow");
  });
  assert.equal((await cp.audit.list({ actionPrefix: "policy.decide" })).length, 5);
  assert.equal((await cp.audit.verify()).ok, true);
  await store.close();
});

Deno.test("ControlPlane.authorize() refuses a bad request before consuming or writing", async (t) => {
  await using store = await openStore(":memory:");
  const cp = new ControlPlane(store, {
    policies: POLICIES,
    clock: new FakeClock(0),
    autonomy: { defaultLevel: "L4" },
    runBudget: { maxAttempts: 3 },
    agentRateLimit: { maxRuns: 1 },
  });
  const ok = { identity: AGENT, action: "bom.update", resource: "bom:1" };
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["an unknown risk", { ...ok, risk: "extreme" }, /request\.risk/],
    ["a negative attempt count", {
      ...ok,
      usage: { attempts: -1, escalations: 0, costUnits: 0 },
    }, /request\.usage\.attempts/],
    ["a NaN cost", {
      ...ok,
      usage: { attempts: 1, escalations: 0, costUnits: NaN },
    }, /request\.usage\.costUnits/],
    ["a BigInt attribute", { ...ok, attributes: { amount: 10n } }, /request\.attributes\.amount/],
    ["a NaN attribute", { ...ok, attributes: { amount: NaN } }, /request\.attributes\.amount/],
    ["a Date attribute", { ...ok, attributes: { at: new Date(0) } }, /request\.attributes\.at/],
    ["a string as attributes", { ...ok, attributes: "amount" }, /request\.attributes/],
    ["a run id with U+0000", { ...ok, runId: "r\0" }, /request\.runId/],
    ["a tenant that is not text", { ...ok, tenant: 7 }, /request\.tenant/],
    ["a trace id that is not hex", { ...ok, traceId: "x".repeat(32) }, /request\.traceId/],
    ["an unknown key", { ...ok, role: "admin" }, /request/],
    ["a bad identity", { ...ok, identity: { ...AGENT, roles: "admin" } }, /request\.identity/],
  ];
  for (const [name, request, field] of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () => cp.authorize(request as never),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
  await t.step("nothing was written or consumed", async () => {
    assert.equal((await cp.audit.head()).seq, 0);
    assert.equal((await cp.authorize(ok)).decision, "allow"); // the one rate slot is still free
    assert.equal((await cp.authorize(ok)).code, "ERR_BUDGET_EXCEEDED");
  });
});

Deno.test("ControlPlane.requestApproval() refuses a malformed spec and leaves the run queued", async () => {
  const { store, cp } = await setUp();
  const { run } = await cp.runs.create({
    task: task(),
    requester: AGENT,
    traceparent: TRACEPARENT,
  });
  const spec = { approverRoles: ["lead"], quorum: Infinity, timeoutSeconds: 60, onExpiry: "deny" };
  await assert.rejects(
    () => cp.requestApproval(run.id, spec as never, { actor: { subject: "svc", kind: "service" } }),
    (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /spec\.quorum/.test(err.message),
  );
  assert.equal((await cp.runs.get(run.id)).state, "queued");
  assert.deepEqual(await cp.approvals.list(), []);
  await store.close();
});

Deno.test("ControlPlane audits enough to re-decide a request with whatIf", async () => {
  const { store, cp } = await setUp();
  await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  const [record] = await cp.audit.list({ actionPrefix: "policy.decide" });
  const data = record?.data as { request: { action: string; resource: string; roles: string[] } };
  const recorded = {
    identity: { ...AGENT, roles: data.request.roles },
    action: data.request.action,
    resource: data.request.resource,
  };
  const stricter = { rules: POLICIES.rules.filter((r) => r.id !== "update") };
  const result = cp.policy.whatIf(recorded, stricter);
  assert.equal(result.current.decision, "allow");
  assert.equal(result.candidate.decision, "deny");
  assert.equal(result.differs, true);
  assert.notEqual(result.candidate.policyVersion, new PolicyEngine(POLICIES).version);
  await store.close();
});

Deno.test("ControlPlane carries approval outcomes to the run; the trace survives the pause", async (t) => {
  const { store, cp, clock } = await setUp();
  const actor = { subject: "agent-7", kind: "agent" } as const;
  const park = async (action: string) => {
    const { run } = await cp.runs.create({
      task: task({ action }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    });
    return await cp.requestApproval(
      run.id,
      POLICIES.rules.find((r) => r.actions[0] === action)!.approval!,
      {
        actor,
      },
    );
  };
  await t.step("approved: back to queued", async () => {
    const { approval, run } = await park("bom.release");
    assert.equal(run.state, "awaiting_approval");
    await assert.rejects(
      () => cp.decideApproval(approval.id, "approve", { identity: AGENT, digest: approval.digest }),
      (err: unknown) => isPlmError(err, "ERR_APPROVAL_SELF"),
    );
    clock.advance(30_000);
    const after = await cp.decideApproval(approval.id, "approve", {
      identity: LEAD,
      digest: approval.digest,
    });
    assert.equal(after.run.state, "queued");
    assert.equal(after.run.traceparent, TRACEPARENT);
    const traced = (await cp.audit.list({ runId: run.id })).filter((r) =>
      r.traceId === TRACEPARENT.slice(3, 35)
    );
    assert.equal(
      traced.length,
      (await cp.audit.list({ runId: run.id })).length,
      "every record carries the trace",
    );
  });
  await t.step("rejected: the run ends rejected with the reason", async () => {
    const { approval } = await park("bom.release");
    const after = await cp.decideApproval(approval.id, "reject", {
      identity: LEAD,
      digest: approval.digest,
      comment: "not this week",
    });
    assert.equal(after.run.state, "rejected");
    assert.match(after.run.error?.message ?? "", /not this week/);
  });
  await t.step("expired with onExpiry deny: expired, not rejected", async () => {
    const { run } = await park("bom.release");
    clock.advance(61_000);
    const expired = await cp.expireApprovals();
    assert.deepEqual(expired.map((e) => [e.run.id, e.run.state]), [[run.id, "expired"]]);
  });
  await t.step("expired with onExpiry escalate: escalated", async () => {
    const { run } = await park("bom.scrap");
    clock.advance(61_000);
    const [e] = await cp.expireApprovals();
    assert.equal(e?.run.id, run.id);
    assert.equal(e?.run.state, "escalated");
    assert.equal(e?.approval.state, "expired");
  });
  assert.equal((await cp.audit.verify()).ok, true);
  await store.close();
});

Deno.test("ControlPlane drops an agent's autonomy after repeated denials and audits it", async () => {
  const store = await openStore(":memory:");
  const cp = new ControlPlane(store, {
    policies: POLICIES,
    clock: new FakeClock(0),
    autonomy: { defaultLevel: "L4" },
  });
  for (let i = 0; i < 3; i++) {
    await cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
  }
  assert.equal(await cp.autonomy?.levelOf("agent-7"), "L3");
  const [change] = await cp.audit.list({ actionPrefix: "autonomy.level.changed" });
  assert.equal(change?.outcome, "L3");
  assert.equal(change?.resource, "agent:agent-7");
  const allowed = await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  assert.equal(allowed.autonomyLevel, "L3");
  assert.equal(allowed.notify, true);
  await store.close();
});

const ALICE: Identity = { subject: "alice", actorKind: "human", roles: [], scopes: [] };
const MALLORY: Identity = { subject: "mallory", actorKind: "human", roles: ["lead"], scopes: [] };
const OPS: Identity = { subject: "ops", actorKind: "human", roles: ["run-admin"], scopes: [] };

async function parkedRun(cp: ControlPlane, requester: Identity = ALICE) {
  const { run } = await cp.runs.create({
    task: task({ action: "bom.release" }),
    requester,
    traceparent: TRACEPARENT,
  });
  const spec = POLICIES.rules.find((r) => r.id === "release")!.approval!;
  return (await cp.requestApproval(run.id, spec, {
    actor: { subject: requester.subject, kind: "human" },
  })).run;
}

Deno.test("ControlPlane.authorizeCancel() refuses another identity and audits the refusal", async () => {
  const { store, cp } = await setUp();
  const run = await parkedRun(cp);
  await assert.rejects(
    () => cp.authorizeCancel(run.id, { identity: MALLORY, reason: "mine now" }),
    (err: unknown) => isPlmError(err, "ERR_FORBIDDEN"),
  );
  assert.equal((await cp.runs.get(run.id)).state, "awaiting_approval");
  const [refusal] = await cp.audit.list({ actionPrefix: "run.cancel" });
  assert.equal(refusal?.outcome, "denied");
  assert.equal(refusal?.actor.subject, "mallory");
  assert.equal(refusal?.resource, `run:${run.id}`);
  assert.equal(refusal?.runId, run.id);
  assert.match(refusal?.reason ?? "", /default deny/);
  const data = refusal?.data as { code: string; cancelReason: string; request: { action: string } };
  assert.deepEqual([data.code, data.cancelReason, data.request.action], [
    "ERR_FORBIDDEN",
    "mine now",
    "run.cancel",
  ]);
  assert.equal((await cp.audit.verify()).ok, true);
  await store.close();
});

Deno.test("ControlPlane.authorizeCancel() lets the requester and a run-admin cancel", async (t) => {
  const { store, cp } = await setUp();
  for (
    const [name, who, rule] of [["requester", ALICE, "run-cancel-own"], [
      "run-admin",
      OPS,
      "run-cancel-admin",
    ]] as const
  ) {
    await t.step(name, async () => {
      const run = await parkedRun(cp);
      const allowed = await cp.authorizeCancel(run.id, { identity: who, reason: "stop" });
      assert.deepEqual(allowed.actor, { subject: who.subject, kind: "human" });
      assert.equal(allowed.reason, "stop");
      const record = (await cp.audit.list({ runId: run.id })).findLast((r) =>
        r.action === "run.cancel"
      );
      assert.equal(record?.outcome, "allowed");
      assert.deepEqual((record?.data as { matchedRuleIds: string[] }).matchedRuleIds, [rule]);
    });
  }
  await t.step("the bound identity, when none is given", async () => {
    const run = await parkedRun(cp);
    assert.equal(
      (await withIdentity(ALICE, () => cp.authorizeCancel(run.id))).actor.subject,
      "alice",
    );
    assert.equal((await withIdentity(ALICE, () => cp.authorizeCancel(run.id))).reason, "Cancelled");
  });
  await store.close();
});

Deno.test("ControlPlane.authorizeCancel() fails closed without an identity", async () => {
  const { store, cp } = await setUp();
  const run = await parkedRun(cp);
  await assert.rejects(
    () => cp.authorizeCancel(run.id),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  await store.close();
});

Deno.test("ControlPlane.authorizeCancel() refuses a bad reason, run id or identity, naming it", async (t) => {
  const { store, cp } = await setUp();
  const run = await parkedRun(cp);
  const bad: [string, unknown, unknown][] = [
    ["reason", run.id, "stop\0now"],
    ["reason", run.id, "half \ud800 a pair"],
    ["reason", run.id, "x".repeat(4_097)],
    ["reason", run.id, 42],
    ["runId", { id: run.id }, "stop"],
    ["runId", "r\0", "stop"],
  ];
  for (const [field, runId, reason] of bad) {
    await t.step(
      `${field} ${JSON.stringify(runId).slice(0, 20)} ${String(reason).slice(0, 20)}`,
      async () => {
        await assert.rejects(
          () => cp.authorizeCancel(runId as string, { identity: ALICE, reason: reason as string }),
          (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && err.message.includes(field),
        );
      },
    );
  }
  await t.step("an identity whose roles are a string", async () => {
    const identity = { ...OPS, roles: "run-admin" } as unknown as Identity;
    await assert.rejects(
      () => cp.authorizeCancel(run.id, { identity }),
      (err: unknown) =>
        isPlmError(err, "ERR_INVALID_ARGUMENT") && /identity\.roles/.test(err.message),
    );
  });
  assert.equal(
    (await cp.authorizeCancel(run.id, { identity: ALICE, reason: "x".repeat(4_096) })).reason
      .length,
    4_096,
  );
  await store.close();
});

Deno.test("ControlPlane.authorizeCancel() composes the built-in rules with the policy set", async (t) => {
  const decide = async (rules: PolicySet["rules"], who: Identity, requester: Identity = ALICE) => {
    await using store = await openStore(":memory:");
    const cp = new ControlPlane(store, { policies: { rules }, clock: new FakeClock(0) });
    const run = await parkedRunWith(cp, requester);
    try {
      await cp.authorizeCancel(run.id, { identity: who });
      return "allowed";
    } catch (err) {
      if (isPlmError(err, "ERR_FORBIDDEN")) return "denied";
      throw err;
    }
  };
  const oncall: Identity = { subject: "olga", actorKind: "human", roles: ["oncall"], scopes: [] };
  await t.step("an allow rule extends who may cancel", async () => {
    const rules = [{
      id: "oncall",
      effect: "allow" as const,
      actions: ["run.cancel"],
      roles: ["oncall"],
    }];
    assert.equal(await decide([], oncall), "denied");
    assert.equal(await decide(rules, oncall), "allowed");
  });
  await t.step("a deny rule overrides the built-in ones", async () => {
    const rules = [{
      id: "no-cancel-releases",
      effect: "deny" as const,
      actions: ["run.cancel"],
      conditions: [{ attr: "runAction", op: "eq" as const, value: "bom.release" }],
    }];
    assert.equal(await decide(rules, ALICE), "denied");
    assert.equal(await decide(rules, OPS), "denied");
  });
  await t.step("a rule with a built-in id replaces it", async () => {
    const rules = [{ id: "run-cancel-own", effect: "deny" as const, actions: ["nothing.here"] }];
    assert.equal(await decide(rules, ALICE), "denied");
    assert.equal(await decide(rules, OPS), "allowed");
  });
  await t.step("a run-admin of another tenant may not", async () => {
    const tenant = (t: string) => ({ tenant: t });
    assert.equal(
      await decide([], { ...OPS, ...tenant("b") }, { ...ALICE, ...tenant("a") }),
      "denied",
    );
    assert.equal(
      await decide([], { ...OPS, ...tenant("a") }, { ...ALICE, ...tenant("a") }),
      "allowed",
    );
  });
  await t.step("a cancel that would need an approval is refused", async () => {
    const rules = [{
      id: "ask",
      effect: "require_approval" as const,
      actions: ["run.cancel"],
      approval: {
        approverRoles: ["lead"],
        quorum: 1,
        timeoutSeconds: 60,
        onExpiry: "deny" as const,
      },
    }];
    assert.equal(await decide(rules, ALICE), "denied");
  });
  await t.step("setPolicies() keeps the built-in rules", async () => {
    await using store = await openStore(":memory:");
    const cp = new ControlPlane(store, { policies: { rules: [] }, clock: new FakeClock(0) });
    await cp.setPolicies({ rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] }, {
      subject: "admin",
      kind: "human",
    });
    const run = await parkedRunWith(cp, ALICE);
    assert.equal((await cp.authorizeCancel(run.id, { identity: ALICE })).actor.subject, "alice");
    await assert.rejects(() => cp.authorizeCancel(run.id, { identity: MALLORY }));
  });
});

async function parkedRunWith(cp: ControlPlane, requester: Identity) {
  return (await cp.runs.create({
    task: task({ action: "bom.release" }),
    requester,
    traceparent: TRACEPARENT,
  })).run;
}

Deno.test("ControlPlane.decideApproval() commits the refusal record although it throws", async (t) => {
  const { store, cp, clock } = await setUp();
  const refused = () => cp.audit.list({ actionPrefix: "approval.decide" });
  const { run, approval } = await (async () => {
    const { run } = await cp.runs.create({
      task: task({ action: "bom.release" }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    });
    return await cp.requestApproval(run.id, POLICIES.rules[2]!.approval!, {
      actor: { subject: "agent-7", kind: "agent" },
    });
  })();
  const cases: [string, () => unknown, string][] = [
    [
      "self-approval",
      () => cp.decideApproval(approval.id, "approve", { identity: AGENT, digest: approval.digest }),
      "ERR_APPROVAL_SELF",
    ],
    [
      "a wrong digest",
      () => cp.decideApproval(approval.id, "approve", { identity: LEAD, digest: "0".repeat(64) }),
      "ERR_APPROVAL_DIGEST_MISMATCH",
    ],
    [
      "a missing role",
      () => cp.decideApproval(approval.id, "approve", { identity: ALICE, digest: approval.digest }),
      "ERR_APPROVER_NOT_ALLOWED",
    ],
  ];
  for (const [name, attempt, code] of cases) {
    await t.step(name, async () => {
      const before = (await refused()).length;
      await assert.rejects(
        async () => await attempt(),
        (err: unknown) => isPlmError(err, code as "ERR_APPROVAL_SELF"),
      );
      const record = (await refused()).at(-1);
      assert.equal((await refused()).length, before + 1);
      assert.equal(record?.outcome, "refused");
      assert.equal(record?.runId, run.id);
      assert.equal(record?.resource, `approval:${approval.id}`);
      assert.equal(record?.traceId, TRACEPARENT.slice(3, 35));
      assert.equal((record?.data as { code: string }).code, code);
      assert.ok((record?.reason ?? "").length > 0);
      assert.equal((await cp.runs.get(run.id)).state, "awaiting_approval");
      assert.equal((await cp.approvals.get(approval.id)).votes.length, 0);
    });
  }
  await t.step("expired", async () => {
    clock.advance(61_000);
    await assert.rejects(
      () => cp.decideApproval(approval.id, "approve", { identity: LEAD, digest: approval.digest }),
      (err: unknown) => isPlmError(err, "ERR_APPROVAL_EXPIRED"),
    );
    assert.equal(((await refused()).at(-1)?.data as { code: string }).code, "ERR_APPROVAL_EXPIRED");
  });
  assert.equal((await cp.audit.verify()).ok, true);
  await store.close();
});

Deno.test("ControlPlane.decideApproval() refuses malformed input naming the field", async (t) => {
  const { store, cp } = await setUp();
  const { run } = await cp.runs.create({
    task: task({ action: "bom.release" }),
    requester: AGENT,
    traceparent: TRACEPARENT,
  });
  const { approval } = await cp.requestApproval(run.id, POLICIES.rules[2]!.approval!, {
    actor: { subject: "agent-7", kind: "agent" },
  });
  const records = (await cp.audit.list({})).length;
  const ok = { identity: LEAD, digest: approval.digest };
  const bad: [string, unknown, unknown, Record<string, unknown>][] = [
    ["decision", approval.id, "approved", ok],
    ["decision", approval.id, undefined, ok],
    ["digest", approval.id, "approve", { ...ok, digest: approval.digest.toUpperCase() }],
    ["digest", approval.id, "approve", { ...ok, digest: approval.digest.slice(1) }],
    ["digest", approval.id, "approve", { ...ok, digest: 7 }],
    ["comment", approval.id, "reject", { ...ok, comment: "no\0" }],
    ["comment", approval.id, "reject", { ...ok, comment: "\udc00" }],
    ["comment", approval.id, "reject", { ...ok, comment: "x".repeat(4_097) }],
    ["approvalId", { id: approval.id }, "approve", ok],
    ["approvalId", "a".repeat(1_025), "approve", ok],
  ];
  for (const [field, id, decision, options] of bad) {
    await t.step(
      `${field}: ${String(decision)} ${JSON.stringify(options).slice(0, 40)}`,
      async () => {
        await assert.rejects(
          () => cp.decideApproval(id as string, decision as "approve", options as typeof ok),
          (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && err.message.includes(field),
        );
      },
    );
  }
  assert.equal((await cp.audit.list({})).length, records, "malformed input writes nothing");
  assert.equal((await cp.approvals.get(approval.id)).state, "pending");
  await store.close();
});

Deno.test("ControlPlane.authorize() notifies an L3 action: audited, then delivered after commit", async (t) => {
  const store = await openStore(":memory:");
  const inbox: AutonomyNotification[] = [];
  const cp = new ControlPlane(store, {
    policies: POLICIES,
    clock: new FakeClock(5_000),
    autonomy: { defaultLevel: "L3", agents: { "agent-4": { level: "L4" } } },
    onNotify: (notification) => void inbox.push(notification),
  });
  await t.step("outside a transaction: at once", async () => {
    await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1", runId: "r-1" });
    const [record] = await cp.audit.list({ actionPrefix: "autonomy.notify" });
    assert.equal(record?.outcome, "notified");
    assert.equal(record?.actor.subject, "agent-7");
    assert.equal(record?.runId, "r-1");
    assert.deepEqual(inbox, [{
      agentId: "agent-7",
      action: "bom.update",
      resource: "bom:1",
      decision: "allow",
      autonomyLevel: "L3",
      reason: record?.reason,
      runId: "r-1",
      traceId: null,
      at: 5_000,
    }]);
  });
  await t.step("inside a transaction: once it commits", async () => {
    inbox.length = 0;
    await cp.transaction(async (tx) => {
      await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:2" }, { tx });
      assert.equal(inbox.length, 0);
    });
    assert.deepEqual(inbox.map((n) => n.resource), ["bom:2"]);
  });
  await t.step("a rolled-back transaction notifies nobody", async () => {
    inbox.length = 0;
    const before = (await cp.audit.list({ actionPrefix: "autonomy.notify" })).length;
    await assert.rejects(
      cp.transaction(async (tx) => {
        await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:3" }, { tx });
        throw new Error("abandon");
      }),
    );
    assert.equal(inbox.length, 0);
    assert.equal((await cp.audit.list({ actionPrefix: "autonomy.notify" })).length, before);
  });
  await t.step("a raw store transaction notifies nobody, committed or not", async () => {
    inbox.length = 0;
    await assert.rejects(
      store.transaction(async (tx) => {
        await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:4" }, { tx });
        throw new Error("abandon");
      }),
    );
    await store.transaction(async (tx: StoreTx) => {
      await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:6" }, { tx });
    });
    assert.equal(inbox.length, 0, "only ControlPlane.transaction knows when it commits");
    // The next commit delivers what committed, and only that.
    await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:5" });
    assert.deepEqual(inbox.map((n) => n.resource), ["bom:5"]);
  });
  await t.step("no notification for a deny, an L4 agent or a non-agent", async () => {
    inbox.length = 0;
    await cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
    await cp.authorize({
      identity: { ...AGENT, subject: "agent-4" },
      action: "bom.update",
      resource: "bom:1",
    });
    await cp.authorize({ identity: LEAD, action: "bom.read", resource: "bom:1" });
    assert.equal(inbox.length, 0);
  });
  assert.equal((await cp.audit.verify()).ok, true);
  await store.close();
});

Deno.test("ControlPlane.authorize() survives an onNotify hook that throws", async () => {
  await using store = await openStore(":memory:");
  let calls = 0;
  const cp = new ControlPlane(store, {
    policies: POLICIES,
    autonomy: { defaultLevel: "L3" },
    onNotify: () => {
      calls++;
      throw new Error("mail server down (expected in this test)");
    },
  });
  const verdict = await cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  assert.equal(verdict.decision, "allow");
  assert.equal(calls, 1);
  assert.equal((await cp.audit.list({ actionPrefix: "autonomy.notify" })).length, 1);
});

Deno.test("ControlPlane.runMode() is suggest for an L1 run, bound into its approvals", async () => {
  const { store, cp } = await setUp();
  const actor = { subject: "agent-7", kind: "agent" } as const;
  const create = async () =>
    (await cp.runs.create({
      task: task({ action: "bom.scrap" }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    })).run;
  const spec = POLICIES.rules.find((r) => r.id === "scrap")!.approval!;
  const acting = await cp.requestApproval((await create()).id, spec, { actor });
  const suggesting = await cp.requestApproval((await create()).id, spec, {
    actor,
    mode: "suggest",
  });
  assert.equal(await cp.runMode(acting.run), "act");
  assert.equal(await cp.runMode(suggesting.run), "suggest");
  assert.equal((suggesting.approval.subject as { mode?: string }).mode, "suggest");
  assert.equal((acting.approval.subject as { mode?: string }).mode, undefined);
  // An escalation's approval keeps the mode.
  const escalated = await cp.runs.apply(suggesting.run.id, { type: "escalate", reason: "stuck" }, {
    actor,
  });
  const again = await cp.requestApproval(escalated.id, spec, { actor, kind: "escalation" });
  assert.notEqual(again.approval.id, suggesting.approval.id);
  assert.equal(await cp.runMode(again.run), "suggest");
  await store.close();
});

Deno.test("ControlPlane.authorizeCancel() treats the same subject in another tenant as someone else", async (t) => {
  const { store, cp } = await setUp();
  const acmeAlice: Identity = { ...ALICE, tenant: "acme" };
  const run = await parkedRun(cp, acmeAlice);
  for (
    const [name, who] of [
      ["no tenant", ALICE],
      ["another tenant", { ...ALICE, tenant: "globex" }],
    ] as const
  ) {
    await t.step(name, async () => {
      await assert.rejects(
        () => cp.authorizeCancel(run.id, { identity: who }),
        (err: unknown) => isPlmError(err, "ERR_FORBIDDEN"),
      );
    });
  }
  await t.step("the same tenant", async () => {
    assert.equal(
      (await cp.authorizeCancel(run.id, { identity: acmeAlice })).actor.subject,
      "alice",
    );
  });
  await store.close();
});

// ---------------------------------------------------------------------------
// governance state shared through the database (ADR 0007)

/** A file database in a fresh folder, and a way to open control planes on it. */
async function fileStore() {
  const dir = await Deno.makeTempDir({ prefix: "plm_govstate_test_" });
  const path = `${dir}/plm.store`;
  const opened: Store[] = [];
  const open = async (options: { maxRuns?: number; now?: number } = {}) => {
    const store = await openStore(path);
    opened.push(store);
    const cp = new ControlPlane(store, {
      policies: POLICIES,
      clock: new FakeClock(options.now ?? 0),
      autonomy: { defaultLevel: "L4" },
      ...(options.maxRuns === undefined
        ? {}
        : { agentRateLimit: { maxRuns: options.maxRuns, windowMs: 3_600_000 } }),
    });
    return { store, cp };
  };
  return {
    path,
    open,
    async [Symbol.asyncDispose]() {
      for (const store of opened) await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const DENIED = { identity: AGENT, action: "bom.delete", resource: "bom:1" } as const;
const EDIT = { identity: AGENT, action: "bom.update", resource: "bom:1" } as const;

Deno.test("ControlPlane keeps a demoted agent demoted after a restart on the same file", async () => {
  await using files = await fileStore();
  const first = await files.open();
  for (let i = 0; i < 3; i++) await first.cp.authorize(DENIED);
  assert.equal(await first.cp.autonomy?.levelOf("agent-7"), "L3");
  await first.store.close();

  const second = await files.open();
  assert.equal(await second.cp.autonomy?.levelOf("agent-7"), "L3");
  assert.equal((await second.cp.authorize(EDIT)).autonomyLevel, "L3");
  assert.equal((await second.cp.audit.list({ actionPrefix: "autonomy.level.changed" })).length, 1);
  await second.cp.autonomy?.restore("agent-7");
  assert.equal(await (await files.open()).cp.autonomy?.levelOf("agent-7"), "L4");
});

Deno.test("ControlPlane keeps a failure streak across a restart", async () => {
  await using files = await fileStore();
  const first = await files.open();
  await first.cp.authorize(DENIED);
  await first.cp.autonomy?.recordOutcome("agent-7", "failed");
  await first.store.close();

  const second = await files.open();
  assert.equal(await second.cp.autonomy?.consecutiveFailures("agent-7"), 2);
  assert.equal(await second.cp.autonomy?.recordOutcome("agent-7", "failed"), "L3");
  assert.equal(await second.cp.autonomy?.consecutiveFailures("agent-7"), 0);
});

Deno.test("ControlPlane instances on one file share one agent run window and one streak", async (t) => {
  await using files = await fileStore();
  const a = await files.open({ maxRuns: 3 });
  const b = await files.open({ maxRuns: 3 });
  await t.step("the fourth run is refused wherever it comes from", async () => {
    assert.equal((await a.cp.authorize(EDIT)).decision, "allow");
    assert.equal((await b.cp.authorize(EDIT)).decision, "allow");
    assert.equal((await a.cp.authorize(EDIT)).decision, "allow");
    const fourth = await b.cp.authorize(EDIT);
    assert.equal(fourth.decision, "deny");
    assert.equal(fourth.code, "ERR_BUDGET_EXCEEDED");
    assert.equal((await a.cp.authorize(EDIT)).code, "ERR_BUDGET_EXCEEDED");
  });
  await t.step("denials from both count in one streak, and the drop is seen by both", async () => {
    await a.cp.authorize(DENIED);
    await b.cp.authorize(DENIED);
    assert.equal(await a.cp.autonomy?.consecutiveFailures("agent-7"), 2);
    await a.cp.authorize(DENIED);
    assert.deepEqual([
      await a.cp.autonomy?.levelOf("agent-7"),
      await b.cp.autonomy?.levelOf("agent-7"),
    ], [
      "L3",
      "L3",
    ]);
    assert.equal((await b.cp.audit.list({ actionPrefix: "autonomy.level.changed" })).length, 1);
  });
});

Deno.test("ControlPlane.authorize() counts agent runs exactly once across processes", async () => {
  await using files = await fileStore();
  const maxRuns = 150;
  const tries = 100; // each of three processes, so half of them must be refused
  const now = 1_000_000;
  await (await files.open()).store.close(); // create and migrate the file before the workers race to it
  const worker = new URL("./_budget_worker.ts", import.meta.url).pathname;
  const children = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", worker, files.path, String(now), String(maxRuns), String(tries)],
      stdin: "piped",
      stdout: "piped",
    }).spawn()
  );
  const lines = children.map((child) =>
    child.stdout.pipeThrough(new TextDecoderStream()).values()[Symbol.asyncIterator]()
  );
  for (const line of lines) assert.equal((await line.next()).value?.trim(), "ready");
  const { cp } = await files.open({ maxRuns, now });
  const go = children.map(async (child) => {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
  });
  let allowed = 0;
  for (let i = 0; i < tries; i++) {
    if ((await cp.authorize(EDIT)).decision === "allow") allowed++;
    await new Promise((resolve) => setTimeout(resolve, 0)); // a turn: let the workers write
  }
  await Promise.all(go);
  for (const [i, child] of children.entries()) {
    let out = "";
    for (let next = await lines[i]!.next(); !next.done; next = await lines[i]!.next()) {
      out += next.value;
    }
    assert.equal((await child.status).code, 0);
    const match = /allowed (\d+)/.exec(out);
    assert.ok(match !== null, out);
    allowed += Number(match[1]);
  }
  assert.equal(allowed, maxRuns);
  const decisions = await cp.audit.list({ actionPrefix: "policy.decide", limit: 1_000 });
  assert.equal(decisions.length, 3 * tries);
  assert.equal(decisions.filter((record) => record.outcome === "allow").length, maxRuns);
  assert.equal((await cp.audit.verify()).ok, true);
});

Deno.test("ControlPlane.authorize() leaves governance state unchanged when the caller rolls back", async (t) => {
  await using files = await fileStore();
  const { store, cp } = await files.open({ maxRuns: 1 });
  const rolledBack = (run: (fn: (tx: StoreTx) => Promise<void>) => Promise<void>) => async () => {
    await assert.rejects(
      run(async (tx) => {
        for (let i = 0; i < 3; i++) await cp.authorize(DENIED, { tx }); // a drop to L3, audited
        assert.equal(await cp.autonomy?.levelOf("agent-7", { tx }), "L3");
        assert.equal((await cp.authorize(EDIT, { tx })).decision, "allow"); // the only rate slot
        throw new Error("The caller's next step failed");
      }),
      /next step failed/,
    );
    assert.equal(await cp.autonomy?.levelOf("agent-7"), "L4");
    assert.equal(await cp.autonomy?.consecutiveFailures("agent-7"), 0);
    assert.equal((await cp.audit.list()).length, 0);
    assert.equal(await (await files.open({ maxRuns: 1 })).cp.autonomy?.levelOf("agent-7"), "L4");
  };
  await t.step("ControlPlane.transaction()", rolledBack((fn) => cp.transaction(fn)));
  await t.step("Store.transaction()", rolledBack((fn) => store.transaction(fn)));
  assert.equal((await cp.authorize(EDIT)).decision, "allow", "the rate slot was given back");
});

Deno.test("ControlPlane.requestApproval() with a lost lease parks nothing and opens no approval", async () => {
  const { store, cp, clock } = await setUp();
  const worker = { subject: "w1", kind: "service" } as const;
  const { run } = await cp.runs.create({
    task: task({ action: "bom.release" }),
    requester: AGENT,
    traceparent: TRACEPARENT,
  });
  const claimed = await cp.runs.claim(run.id, "w1", 1_000, { actor: worker });
  const hold = { owner: "w1", token: claimed.lease!.token };
  clock.advance(1_000); // w1's lease lapses and w2 takes the run
  await cp.runs.claim(run.id, "w2", 1_000, { actor: { subject: "w2", kind: "service" } });
  const head = await cp.audit.head();
  const spec = POLICIES.rules.find((r) => r.id === "release")!.approval!;
  await assert.rejects(
    cp.requestApproval(run.id, spec, { actor: worker, lease: hold }),
    (err: unknown) => isPlmError(err, "ERR_RUN_LEASE_LOST"),
  );
  assert.deepEqual(await cp.approvals.list({ runId: run.id }), []);
  assert.equal((await cp.runs.get(run.id)).state, "queued");
  assert.deepEqual(await cp.audit.head(), head, "no audit record either");
  // With the live lease, the same call parks the run.
  const live = await cp.runs.get(run.id);
  const parked = await cp.requestApproval(run.id, spec, {
    actor: worker,
    lease: { owner: "w2", token: live.lease!.token },
  });
  assert.equal(parked.run.state, "awaiting_approval");
  assert.equal(cp.store, store);
  await store.close();
});
