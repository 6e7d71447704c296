import assert from "node:assert/strict";
import {
  type AutonomyNotification,
  ControlPlane,
  openDatabase,
  parseTraceparent,
  PolicyEngine,
  type PolicySet,
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

function setUp() {
  const db = openDatabase(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 25, 9));
  let n = 0;
  const cp = new ControlPlane(db, {
    policies: POLICIES,
    clock,
    generateId: () => `id-${++n}`,
    autonomy: { defaultLevel: "L4", agents: { "agent-2": { level: "L2" } } },
    runBudget: { maxAttempts: 3 },
  });
  return { db, clock, cp };
}

Deno.test("ControlPlane.authorize() decides, folds autonomy and budgets, and audits", async (t) => {
  const { db, cp } = setUp();
  await t.step("allow", () => {
    const v = cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
    assert.equal(v.decision, "allow");
    assert.deepEqual(v.matchedRuleIds, ["update"]);
    assert.equal(v.autonomyLevel, "L4");
  });
  await t.step("default deny", () => {
    const v = cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
    assert.equal(v.decision, "deny");
    assert.deepEqual(v.matchedRuleIds, []);
  });
  await t.step("an agent at L2 needs approval for an allowed action", () => {
    const v = cp.authorize({
      identity: { ...AGENT, subject: "agent-2" },
      action: "bom.update",
      resource: "bom:1",
    });
    assert.equal(v.decision, "require_approval");
    assert.equal(v.autonomyLevel, "L2");
  });
  await t.step("over the run budget", () => {
    const v = cp.authorize({
      identity: AGENT,
      action: "bom.update",
      resource: "bom:1",
      usage: { attempts: 4, escalations: 0, costUnits: 0 },
    });
    assert.equal(v.decision, "deny");
    assert.equal(v.code, "ERR_BUDGET_EXCEEDED");
  });
  await t.step("no identity fails closed", () => {
    assert.throws(
      () => cp.authorize({ action: "bom.read", resource: "bom:1" }),
      (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
    );
  });
  await t.step("the bound identity and trace context are used", () => {
    const trace = parseTraceparent(TRACEPARENT)!;
    withIdentity(
      AGENT,
      () => withTraceContext(trace, () => cp.authorize({ action: "bom.read", resource: "bom:9" })),
    );
    const [last] = cp.audit.list({ actionPrefix: "policy.decide", newestFirst: true, limit: 1 });
    assert.equal(last?.actor.subject, "agent-7");
    assert.equal(last?.traceId, trace.traceId);
    assert.equal(last?.outcome, "allow");
  });
  assert.equal(cp.audit.list({ actionPrefix: "policy.decide" }).length, 5);
  assert.equal(cp.audit.verify().ok, true);
  db.close();
});

Deno.test("ControlPlane.authorize() refuses a bad request before consuming or writing", async (t) => {
  using db = openDatabase(":memory:");
  const cp = new ControlPlane(db, {
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
    await t.step(name, () => {
      assert.throws(
        () => cp.authorize(request as never),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
  await t.step("nothing was written or consumed", () => {
    assert.equal(cp.audit.head().seq, 0);
    assert.equal(cp.authorize(ok).decision, "allow"); // the one rate slot is still free
    assert.equal(cp.authorize(ok).code, "ERR_BUDGET_EXCEEDED");
  });
});

Deno.test("ControlPlane.requestApproval() refuses a malformed spec and leaves the run queued", () => {
  const { db, cp } = setUp();
  const { run } = cp.runs.create({ task: task(), requester: AGENT, traceparent: TRACEPARENT });
  const spec = { approverRoles: ["lead"], quorum: Infinity, timeoutSeconds: 60, onExpiry: "deny" };
  assert.throws(
    () => cp.requestApproval(run.id, spec as never, { actor: { subject: "svc", kind: "service" } }),
    (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /spec\.quorum/.test(err.message),
  );
  assert.equal(cp.runs.get(run.id).state, "queued");
  assert.deepEqual(cp.approvals.list(), []);
  db.close();
});

Deno.test("ControlPlane audits enough to re-decide a request with whatIf", () => {
  const { db, cp } = setUp();
  cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  const [record] = cp.audit.list({ actionPrefix: "policy.decide" });
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
  db.close();
});

Deno.test("ControlPlane carries approval outcomes to the run; the trace survives the pause", async (t) => {
  const { db, cp, clock } = setUp();
  const actor = { subject: "agent-7", kind: "agent" } as const;
  const park = (action: string) => {
    const { run } = cp.runs.create({
      task: task({ action }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    });
    return cp.requestApproval(
      run.id,
      POLICIES.rules.find((r) => r.actions[0] === action)!.approval!,
      {
        actor,
      },
    );
  };
  await t.step("approved: back to queued", () => {
    const { approval, run } = park("bom.release");
    assert.equal(run.state, "awaiting_approval");
    assert.throws(
      () => cp.decideApproval(approval.id, "approve", { identity: AGENT, digest: approval.digest }),
      (err: unknown) => isPlmError(err, "ERR_APPROVAL_SELF"),
    );
    clock.advance(30_000);
    const after = cp.decideApproval(approval.id, "approve", {
      identity: LEAD,
      digest: approval.digest,
    });
    assert.equal(after.run.state, "queued");
    assert.equal(after.run.traceparent, TRACEPARENT);
    const traced = cp.audit.list({ runId: run.id }).filter((r) =>
      r.traceId === TRACEPARENT.slice(3, 35)
    );
    assert.equal(
      traced.length,
      cp.audit.list({ runId: run.id }).length,
      "every record carries the trace",
    );
  });
  await t.step("rejected: the run ends rejected with the reason", () => {
    const { approval } = park("bom.release");
    const after = cp.decideApproval(approval.id, "reject", {
      identity: LEAD,
      digest: approval.digest,
      comment: "not this week",
    });
    assert.equal(after.run.state, "rejected");
    assert.match(after.run.error?.message ?? "", /not this week/);
  });
  await t.step("expired with onExpiry deny: expired, not rejected", () => {
    const { run } = park("bom.release");
    clock.advance(61_000);
    const expired = cp.expireApprovals();
    assert.deepEqual(expired.map((e) => [e.run.id, e.run.state]), [[run.id, "expired"]]);
  });
  await t.step("expired with onExpiry escalate: escalated", () => {
    const { run } = park("bom.scrap");
    clock.advance(61_000);
    const [e] = cp.expireApprovals();
    assert.equal(e?.run.id, run.id);
    assert.equal(e?.run.state, "escalated");
    assert.equal(e?.approval.state, "expired");
  });
  assert.equal(cp.audit.verify().ok, true);
  db.close();
});

Deno.test("ControlPlane drops an agent's autonomy after repeated denials and audits it", () => {
  const db = openDatabase(":memory:");
  const cp = new ControlPlane(db, {
    policies: POLICIES,
    clock: new FakeClock(0),
    autonomy: { defaultLevel: "L4" },
  });
  for (let i = 0; i < 3; i++) {
    cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
  }
  assert.equal(cp.autonomy?.levelOf("agent-7"), "L3");
  const [change] = cp.audit.list({ actionPrefix: "autonomy.level.changed" });
  assert.equal(change?.outcome, "L3");
  assert.equal(change?.resource, "agent:agent-7");
  const allowed = cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  assert.equal(allowed.autonomyLevel, "L3");
  assert.equal(allowed.notify, true);
  db.close();
});

const ALICE: Identity = { subject: "alice", actorKind: "human", roles: [], scopes: [] };
const MALLORY: Identity = { subject: "mallory", actorKind: "human", roles: ["lead"], scopes: [] };
const OPS: Identity = { subject: "ops", actorKind: "human", roles: ["run-admin"], scopes: [] };

function parkedRun(cp: ControlPlane, requester: Identity = ALICE) {
  const { run } = cp.runs.create({
    task: task({ action: "bom.release" }),
    requester,
    traceparent: TRACEPARENT,
  });
  const spec = POLICIES.rules.find((r) => r.id === "release")!.approval!;
  return cp.requestApproval(run.id, spec, { actor: { subject: requester.subject, kind: "human" } })
    .run;
}

Deno.test("ControlPlane.authorizeCancel() refuses another identity and audits the refusal", () => {
  const { db, cp } = setUp();
  const run = parkedRun(cp);
  assert.throws(
    () => cp.authorizeCancel(run.id, { identity: MALLORY, reason: "mine now" }),
    (err: unknown) => isPlmError(err, "ERR_FORBIDDEN"),
  );
  assert.equal(cp.runs.get(run.id).state, "awaiting_approval");
  const [refusal] = cp.audit.list({ actionPrefix: "run.cancel" });
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
  assert.equal(cp.audit.verify().ok, true);
  db.close();
});

Deno.test("ControlPlane.authorizeCancel() lets the requester and a run-admin cancel", async (t) => {
  const { db, cp } = setUp();
  for (
    const [name, who, rule] of [["requester", ALICE, "run-cancel-own"], [
      "run-admin",
      OPS,
      "run-cancel-admin",
    ]] as const
  ) {
    await t.step(name, () => {
      const run = parkedRun(cp);
      const allowed = cp.authorizeCancel(run.id, { identity: who, reason: "stop" });
      assert.deepEqual(allowed.actor, { subject: who.subject, kind: "human" });
      assert.equal(allowed.reason, "stop");
      const record = cp.audit.list({ runId: run.id }).findLast((r) => r.action === "run.cancel");
      assert.equal(record?.outcome, "allowed");
      assert.deepEqual((record?.data as { matchedRuleIds: string[] }).matchedRuleIds, [rule]);
    });
  }
  await t.step("the bound identity, when none is given", () => {
    const run = parkedRun(cp);
    assert.equal(withIdentity(ALICE, () => cp.authorizeCancel(run.id)).actor.subject, "alice");
    assert.equal(withIdentity(ALICE, () => cp.authorizeCancel(run.id)).reason, "Cancelled");
  });
  db.close();
});

Deno.test("ControlPlane.authorizeCancel() fails closed without an identity", () => {
  const { db, cp } = setUp();
  const run = parkedRun(cp);
  assert.throws(
    () => cp.authorizeCancel(run.id),
    (err: unknown) => isPlmError(err, "ERR_IDENTITY_REQUIRED"),
  );
  db.close();
});

Deno.test("ControlPlane.authorizeCancel() refuses a bad reason, run id or identity, naming it", async (t) => {
  const { db, cp } = setUp();
  const run = parkedRun(cp);
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
      () => {
        assert.throws(
          () => cp.authorizeCancel(runId as string, { identity: ALICE, reason: reason as string }),
          (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && err.message.includes(field),
        );
      },
    );
  }
  await t.step("an identity whose roles are a string", () => {
    const identity = { ...OPS, roles: "run-admin" } as unknown as Identity;
    assert.throws(
      () => cp.authorizeCancel(run.id, { identity }),
      (err: unknown) =>
        isPlmError(err, "ERR_INVALID_ARGUMENT") && /identity\.roles/.test(err.message),
    );
  });
  assert.equal(
    cp.authorizeCancel(run.id, { identity: ALICE, reason: "x".repeat(4_096) }).reason.length,
    4_096,
  );
  db.close();
});

Deno.test("ControlPlane.authorizeCancel() composes the built-in rules with the policy set", async (t) => {
  const decide = (rules: PolicySet["rules"], who: Identity, requester: Identity = ALICE) => {
    using db = openDatabase(":memory:");
    const cp = new ControlPlane(db, { policies: { rules }, clock: new FakeClock(0) });
    const run = parkedRunWith(cp, requester);
    try {
      cp.authorizeCancel(run.id, { identity: who });
      return "allowed";
    } catch (err) {
      if (isPlmError(err, "ERR_FORBIDDEN")) return "denied";
      throw err;
    }
  };
  const oncall: Identity = { subject: "olga", actorKind: "human", roles: ["oncall"], scopes: [] };
  await t.step("an allow rule extends who may cancel", () => {
    const rules = [{
      id: "oncall",
      effect: "allow" as const,
      actions: ["run.cancel"],
      roles: ["oncall"],
    }];
    assert.equal(decide([], oncall), "denied");
    assert.equal(decide(rules, oncall), "allowed");
  });
  await t.step("a deny rule overrides the built-in ones", () => {
    const rules = [{
      id: "no-cancel-releases",
      effect: "deny" as const,
      actions: ["run.cancel"],
      conditions: [{ attr: "runAction", op: "eq" as const, value: "bom.release" }],
    }];
    assert.equal(decide(rules, ALICE), "denied");
    assert.equal(decide(rules, OPS), "denied");
  });
  await t.step("a rule with a built-in id replaces it", () => {
    const rules = [{ id: "run-cancel-own", effect: "deny" as const, actions: ["nothing.here"] }];
    assert.equal(decide(rules, ALICE), "denied");
    assert.equal(decide(rules, OPS), "allowed");
  });
  await t.step("a run-admin of another tenant may not", () => {
    const tenant = (t: string) => ({ tenant: t });
    assert.equal(decide([], { ...OPS, ...tenant("b") }, { ...ALICE, ...tenant("a") }), "denied");
    assert.equal(decide([], { ...OPS, ...tenant("a") }, { ...ALICE, ...tenant("a") }), "allowed");
  });
  await t.step("a cancel that would need an approval is refused", () => {
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
    assert.equal(decide(rules, ALICE), "denied");
  });
  await t.step("setPolicies() keeps the built-in rules", () => {
    using db = openDatabase(":memory:");
    const cp = new ControlPlane(db, { policies: { rules: [] }, clock: new FakeClock(0) });
    cp.setPolicies({ rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] }, {
      subject: "admin",
      kind: "human",
    });
    const run = parkedRunWith(cp, ALICE);
    assert.equal(cp.authorizeCancel(run.id, { identity: ALICE }).actor.subject, "alice");
    assert.throws(() => cp.authorizeCancel(run.id, { identity: MALLORY }));
  });
});

function parkedRunWith(cp: ControlPlane, requester: Identity) {
  return cp.runs.create({
    task: task({ action: "bom.release" }),
    requester,
    traceparent: TRACEPARENT,
  })
    .run;
}

Deno.test("ControlPlane.decideApproval() commits the refusal record although it throws", async (t) => {
  const { db, cp, clock } = setUp();
  const refused = () => cp.audit.list({ actionPrefix: "approval.decide" });
  const { run, approval } = (() => {
    const { run } = cp.runs.create({
      task: task({ action: "bom.release" }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    });
    return cp.requestApproval(run.id, POLICIES.rules[2]!.approval!, {
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
    await t.step(name, () => {
      const before = refused().length;
      assert.throws(attempt, (err: unknown) => isPlmError(err, code as "ERR_APPROVAL_SELF"));
      const record = refused().at(-1);
      assert.equal(refused().length, before + 1);
      assert.equal(record?.outcome, "refused");
      assert.equal(record?.runId, run.id);
      assert.equal(record?.resource, `approval:${approval.id}`);
      assert.equal(record?.traceId, TRACEPARENT.slice(3, 35));
      assert.equal((record?.data as { code: string }).code, code);
      assert.ok((record?.reason ?? "").length > 0);
      assert.equal(cp.runs.get(run.id).state, "awaiting_approval");
      assert.equal(cp.approvals.get(approval.id).votes.length, 0);
    });
  }
  await t.step("expired", () => {
    clock.advance(61_000);
    assert.throws(
      () => cp.decideApproval(approval.id, "approve", { identity: LEAD, digest: approval.digest }),
      (err: unknown) => isPlmError(err, "ERR_APPROVAL_EXPIRED"),
    );
    assert.equal((refused().at(-1)?.data as { code: string }).code, "ERR_APPROVAL_EXPIRED");
  });
  assert.equal(cp.audit.verify().ok, true);
  db.close();
});

Deno.test("ControlPlane.decideApproval() refuses malformed input naming the field", async (t) => {
  const { db, cp } = setUp();
  const { run } = cp.runs.create({
    task: task({ action: "bom.release" }),
    requester: AGENT,
    traceparent: TRACEPARENT,
  });
  const { approval } = cp.requestApproval(run.id, POLICIES.rules[2]!.approval!, {
    actor: { subject: "agent-7", kind: "agent" },
  });
  const records = cp.audit.list({}).length;
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
    await t.step(`${field}: ${String(decision)} ${JSON.stringify(options).slice(0, 40)}`, () => {
      assert.throws(
        () => cp.decideApproval(id as string, decision as "approve", options as typeof ok),
        (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && err.message.includes(field),
      );
    });
  }
  assert.equal(cp.audit.list({}).length, records, "malformed input writes nothing");
  assert.equal(cp.approvals.get(approval.id).state, "pending");
  db.close();
});

Deno.test("ControlPlane.authorize() notifies an L3 action: audited, then delivered after commit", async (t) => {
  const db = openDatabase(":memory:");
  const inbox: AutonomyNotification[] = [];
  const cp = new ControlPlane(db, {
    policies: POLICIES,
    clock: new FakeClock(5_000),
    autonomy: { defaultLevel: "L3", agents: { "agent-4": { level: "L4" } } },
    onNotify: (notification) => void inbox.push(notification),
  });
  await t.step("outside a transaction: at once", () => {
    cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1", runId: "r-1" });
    const [record] = cp.audit.list({ actionPrefix: "autonomy.notify" });
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
      auditSeq: record?.seq,
      at: 5_000,
    }]);
  });
  await t.step("inside a transaction: once it commits", () => {
    inbox.length = 0;
    cp.transaction(() => {
      cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:2" });
      assert.equal(inbox.length, 0);
    });
    assert.deepEqual(inbox.map((n) => n.resource), ["bom:2"]);
  });
  await t.step("a rolled-back transaction notifies nobody", () => {
    inbox.length = 0;
    const before = cp.audit.list({ actionPrefix: "autonomy.notify" }).length;
    assert.throws(() =>
      cp.transaction(() => {
        cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:3" });
        throw new Error("abandon");
      })
    );
    assert.equal(inbox.length, 0);
    assert.equal(cp.audit.list({ actionPrefix: "autonomy.notify" }).length, before);
  });
  await t.step("a raw database transaction that rolled back notifies nobody", () => {
    inbox.length = 0;
    assert.throws(() =>
      db.transaction(() => {
        cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:4" });
        throw new Error("abandon");
      })
    );
    // The next commit delivers what committed, and only that.
    cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:5" });
    assert.deepEqual(inbox.map((n) => n.resource), ["bom:5"]);
  });
  await t.step("no notification for a deny, an L4 agent or a non-agent", () => {
    inbox.length = 0;
    cp.authorize({ identity: AGENT, action: "bom.delete", resource: "bom:1" });
    cp.authorize({
      identity: { ...AGENT, subject: "agent-4" },
      action: "bom.update",
      resource: "bom:1",
    });
    cp.authorize({ identity: LEAD, action: "bom.read", resource: "bom:1" });
    assert.equal(inbox.length, 0);
  });
  assert.equal(cp.audit.verify().ok, true);
  db.close();
});

Deno.test("ControlPlane.authorize() survives an onNotify hook that throws", () => {
  using db = openDatabase(":memory:");
  let calls = 0;
  const cp = new ControlPlane(db, {
    policies: POLICIES,
    autonomy: { defaultLevel: "L3" },
    onNotify: () => {
      calls++;
      throw new Error("mail server down (expected in this test)");
    },
  });
  const verdict = cp.authorize({ identity: AGENT, action: "bom.update", resource: "bom:1" });
  assert.equal(verdict.decision, "allow");
  assert.equal(calls, 1);
  assert.equal(cp.audit.list({ actionPrefix: "autonomy.notify" }).length, 1);
});

Deno.test("ControlPlane.runMode() is suggest for an L1 run, bound into its approvals", () => {
  const { db, cp } = setUp();
  const actor = { subject: "agent-7", kind: "agent" } as const;
  const create = () =>
    cp.runs.create({
      task: task({ action: "bom.scrap" }),
      requester: AGENT,
      traceparent: TRACEPARENT,
    })
      .run;
  const spec = POLICIES.rules.find((r) => r.id === "scrap")!.approval!;
  const acting = cp.requestApproval(create().id, spec, { actor });
  const suggesting = cp.requestApproval(create().id, spec, { actor, mode: "suggest" });
  assert.equal(cp.runMode(acting.run), "act");
  assert.equal(cp.runMode(suggesting.run), "suggest");
  assert.equal((suggesting.approval.subject as { mode?: string }).mode, "suggest");
  assert.equal((acting.approval.subject as { mode?: string }).mode, undefined);
  // An escalation's approval keeps the mode.
  const escalated = cp.runs.apply(suggesting.run.id, { type: "escalate", reason: "stuck" }, {
    actor,
  });
  const again = cp.requestApproval(escalated.id, spec, { actor, kind: "escalation" });
  assert.notEqual(again.approval.id, suggesting.approval.id);
  assert.equal(cp.runMode(again.run), "suggest");
  db.close();
});

Deno.test("ControlPlane.authorizeCancel() treats the same subject in another tenant as someone else", async (t) => {
  const { db, cp } = setUp();
  const acmeAlice: Identity = { ...ALICE, tenant: "acme" };
  const run = parkedRun(cp, acmeAlice);
  for (
    const [name, who] of [
      ["no tenant", ALICE],
      ["another tenant", { ...ALICE, tenant: "globex" }],
    ] as const
  ) {
    await t.step(name, () => {
      assert.throws(
        () => cp.authorizeCancel(run.id, { identity: who }),
        (err: unknown) => isPlmError(err, "ERR_FORBIDDEN"),
      );
    });
  }
  await t.step("the same tenant", () => {
    assert.equal(cp.authorizeCancel(run.id, { identity: acmeAlice }).actor.subject, "alice");
  });
  db.close();
});

// ---------------------------------------------------------------------------
// governance state shared through the database (ADR 0007)

/** A file database in a fresh folder, and a way to open control planes on it. */
async function fileStore() {
  const dir = await Deno.makeTempDir({ prefix: "plm_govstate_test_" });
  const path = `${dir}/plm.db`;
  const opened: ReturnType<typeof openDatabase>[] = [];
  const open = (options: { maxRuns?: number; now?: number } = {}) => {
    const db = openDatabase(path);
    opened.push(db);
    const cp = new ControlPlane(db, {
      policies: POLICIES,
      clock: new FakeClock(options.now ?? 0),
      autonomy: { defaultLevel: "L4" },
      ...(options.maxRuns === undefined
        ? {}
        : { agentRateLimit: { maxRuns: options.maxRuns, windowMs: 3_600_000 } }),
    });
    return { db, cp };
  };
  return {
    path,
    open,
    async [Symbol.asyncDispose]() {
      for (const db of opened) db.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const DENIED = { identity: AGENT, action: "bom.delete", resource: "bom:1" } as const;
const EDIT = { identity: AGENT, action: "bom.update", resource: "bom:1" } as const;

Deno.test("ControlPlane keeps a demoted agent demoted after a restart on the same file", async () => {
  await using store = await fileStore();
  const first = store.open();
  for (let i = 0; i < 3; i++) first.cp.authorize(DENIED);
  assert.equal(first.cp.autonomy?.levelOf("agent-7"), "L3");
  first.db.close();

  const second = store.open();
  assert.equal(second.cp.autonomy?.levelOf("agent-7"), "L3");
  assert.equal(second.cp.authorize(EDIT).autonomyLevel, "L3");
  assert.equal(second.cp.audit.list({ actionPrefix: "autonomy.level.changed" }).length, 1);
  second.cp.autonomy?.restore("agent-7");
  assert.equal(store.open().cp.autonomy?.levelOf("agent-7"), "L4");
});

Deno.test("ControlPlane keeps a failure streak across a restart", async () => {
  await using store = await fileStore();
  const first = store.open();
  first.cp.authorize(DENIED);
  first.cp.autonomy?.recordOutcome("agent-7", "failed");
  first.db.close();

  const second = store.open();
  assert.equal(second.cp.autonomy?.consecutiveFailures("agent-7"), 2);
  assert.equal(second.cp.autonomy?.recordOutcome("agent-7", "failed"), "L3");
  assert.equal(second.cp.autonomy?.consecutiveFailures("agent-7"), 0);
});

Deno.test("ControlPlane instances on one file share one agent run window and one streak", async (t) => {
  await using store = await fileStore();
  const a = store.open({ maxRuns: 3 });
  const b = store.open({ maxRuns: 3 });
  await t.step("the fourth run is refused wherever it comes from", () => {
    assert.equal(a.cp.authorize(EDIT).decision, "allow");
    assert.equal(b.cp.authorize(EDIT).decision, "allow");
    assert.equal(a.cp.authorize(EDIT).decision, "allow");
    const fourth = b.cp.authorize(EDIT);
    assert.equal(fourth.decision, "deny");
    assert.equal(fourth.code, "ERR_BUDGET_EXCEEDED");
    assert.equal(a.cp.authorize(EDIT).code, "ERR_BUDGET_EXCEEDED");
  });
  await t.step("denials from both count in one streak, and the drop is seen by both", () => {
    a.cp.authorize(DENIED);
    b.cp.authorize(DENIED);
    assert.equal(a.cp.autonomy?.consecutiveFailures("agent-7"), 2);
    a.cp.authorize(DENIED);
    assert.deepEqual([a.cp.autonomy?.levelOf("agent-7"), b.cp.autonomy?.levelOf("agent-7")], [
      "L3",
      "L3",
    ]);
    assert.equal(b.cp.audit.list({ actionPrefix: "autonomy.level.changed" }).length, 1);
  });
});

Deno.test("ControlPlane.authorize() counts agent runs exactly once across processes", async () => {
  await using store = await fileStore();
  const maxRuns = 150;
  const tries = 100; // each of three processes, so half of them must be refused
  const now = 1_000_000;
  store.open().db.close(); // create and migrate the file before the workers race to it
  const worker = new URL("./_budget_worker.ts", import.meta.url).pathname;
  const children = [0, 1].map(() =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", worker, store.path, String(now), String(maxRuns), String(tries)],
      stdin: "piped",
      stdout: "piped",
    }).spawn()
  );
  const lines = children.map((child) =>
    child.stdout.pipeThrough(new TextDecoderStream()).values()[Symbol.asyncIterator]()
  );
  for (const line of lines) assert.equal((await line.next()).value?.trim(), "ready");
  const { cp } = store.open({ maxRuns, now });
  const go = children.map(async (child) => {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
  });
  let allowed = 0;
  for (let i = 0; i < tries; i++) {
    if (cp.authorize(EDIT).decision === "allow") allowed++;
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
  const decisions = cp.audit.list({ actionPrefix: "policy.decide", limit: 1_000 });
  assert.equal(decisions.length, 3 * tries);
  assert.equal(decisions.filter((record) => record.outcome === "allow").length, maxRuns);
  assert.equal(cp.audit.verify().ok, true);
});

Deno.test("ControlPlane.authorize() leaves governance state unchanged when the caller rolls back", async (t) => {
  await using store = await fileStore();
  const { db, cp } = store.open({ maxRuns: 1 });
  const rolledBack = (run: (fn: () => void) => void) => () => {
    assert.throws(() =>
      run(() => {
        for (let i = 0; i < 3; i++) cp.authorize(DENIED); // a drop to L3, audited
        assert.equal(cp.autonomy?.levelOf("agent-7"), "L3");
        assert.equal(cp.authorize(EDIT).decision, "allow"); // the only rate slot
        throw new Error("The caller's next step failed");
      })
    );
    assert.equal(cp.autonomy?.levelOf("agent-7"), "L4");
    assert.equal(cp.autonomy?.consecutiveFailures("agent-7"), 0);
    assert.equal(cp.audit.list().length, 0);
    assert.equal(store.open({ maxRuns: 1 }).cp.autonomy?.levelOf("agent-7"), "L4");
  };
  await t.step("ControlPlane.transaction()", rolledBack((fn) => cp.transaction(fn)));
  await t.step("Database.transaction()", rolledBack((fn) => db.transaction(fn)));
  assert.equal(cp.authorize(EDIT).decision, "allow", "the rate slot was given back");
});
