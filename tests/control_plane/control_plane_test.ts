import assert from "node:assert/strict";
import {
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
