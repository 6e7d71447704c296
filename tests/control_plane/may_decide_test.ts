import assert from "node:assert/strict";
import {
  ApprovalService,
  AuditLog,
  FakeClock,
  type Identity,
  mayDecide,
  openStore,
} from "../../control_plane/mod.ts";

const SPEC = { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 60, onExpiry: "deny" } as const;
const ann: Identity = { subject: "ann", actorKind: "human", roles: ["cm"], scopes: [] };
const bob: Identity = { ...ann, subject: "bob" };

Deno.test("mayDecide() follows the service: kind, role, requester, one vote each, pending, deadline", async () => {
  await using store = await openStore(":memory:");
  const clock = new FakeClock(1_000);
  const approvals = new ApprovalService(store, { audit: new AuditLog(store, { clock }), clock });
  const approval = await approvals.request("run-1", SPEC, {
    requester: { subject: "req", kind: "agent" },
    subject: { action: "bom.release" },
  });
  const now = clock.now();
  assert.equal(mayDecide(approval, ann, { now }), true);
  assert.equal(mayDecide(approval, { ...ann, actorKind: "service" }, { now }), false, "kind");
  assert.equal(
    mayDecide(approval, { ...ann, actorKind: "service" }, { now, approverKinds: ["service"] }),
    true,
    "a kind the service allows",
  );
  assert.equal(mayDecide(approval, { ...ann, subject: "req" }, { now }), false, "requester");
  assert.equal(mayDecide(approval, ann, { now: approval.deadline }), false, "expired");
  const voted = await approvals.decide(approval.id, "approve", {
    identity: ann,
    digest: approval.digest,
  });
  assert.equal(mayDecide(voted, ann, { now }), false, "already decided");
  assert.equal(mayDecide(voted, bob, { now }), true, "quorum 2: bob still may");
  const done = await approvals.decide(approval.id, "approve", {
    identity: bob,
    digest: voted.digest,
  });
  assert.equal(done.state, "approved");
  assert.equal(mayDecide(done, { ...ann, subject: "cy" }, { now }), false, "no longer pending");
});
