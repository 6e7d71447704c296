import assert from "node:assert/strict";
import type { Approval } from "../../control_plane/mod.ts";
import { tallyVote, type VoteInput } from "../../control_plane/hitl/_tally.ts";
import type { Identity } from "../../shared/mod.ts";

const DIGEST = "d".repeat(64);
const ANN: Identity = { subject: "ann", actorKind: "human", roles: ["cm"], scopes: [] };
const approval: Approval = {
  id: "a-1",
  runId: "r-1",
  kind: "approval",
  state: "pending",
  spec: { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 60, onExpiry: "deny" },
  subject: { action: "bom.release" },
  digest: DIGEST,
  requester: { subject: "agent-7", kind: "agent" },
  traceId: null,
  reason: null,
  createdAt: 0,
  deadline: 60_000,
  decidedAt: null,
  votes: [],
};
const vote = (overrides: Partial<VoteInput> = {}): VoteInput => ({
  approval,
  identity: ANN,
  decision: "approve",
  digest: DIGEST,
  comment: undefined,
  now: 1_000,
  approverKinds: ["human"],
  ...overrides,
});
const code = (input: VoteInput) => tallyVote(input).refused?.code;

Deno.test("tallyVote() refuses in a fixed order", () => {
  assert.equal(
    code(vote({ approval: { ...approval, state: "approved" } })),
    "ERR_APPROVAL_NOT_PENDING",
  );
  assert.equal(code(vote({ now: 60_000 })), "ERR_APPROVAL_EXPIRED");
  assert.equal(code(vote({ digest: "e".repeat(64) })), "ERR_APPROVAL_DIGEST_MISMATCH");
  const requester: Identity = { ...ANN, subject: "agent-7" };
  assert.equal(code(vote({ identity: requester })), "ERR_APPROVAL_SELF");
  assert.equal(code(vote({ identity: { ...ANN, roles: ["viewer"] } })), "ERR_APPROVER_NOT_ALLOWED");
  assert.equal(
    code(vote({ identity: { ...ANN, actorKind: "agent" } })),
    "ERR_APPROVER_NOT_ALLOWED",
  );
  const voted = {
    ...approval,
    votes: [{
      approver: { subject: "ann", kind: "human" as const },
      decision: "approve" as const,
      comment: null,
      at: 0,
    }],
  };
  assert.equal(code(vote({ approval: voted })), "ERR_APPROVAL_DUPLICATE");
  // Expired and self at once: the earlier rule wins.
  assert.equal(code(vote({ now: 60_000, identity: requester })), "ERR_APPROVAL_EXPIRED");
});

Deno.test("tallyVote() ends on quorum, and a reject is a veto", () => {
  assert.deepEqual(tallyVote(vote()), { approvals: 1, ending: undefined, reason: undefined });
  const one = {
    ...approval,
    votes: [{
      approver: { subject: "bob", kind: "human" as const },
      decision: "approve" as const,
      comment: null,
      at: 0,
    }],
  };
  assert.deepEqual(tallyVote(vote({ approval: one })), {
    approvals: 2,
    ending: "approved",
    reason: "Approved by 2 of 2 required approvers",
  });
  assert.deepEqual(tallyVote(vote({ approval: one, decision: "reject", comment: "wrong bom" })), {
    approvals: 1,
    ending: "rejected",
    reason: "Rejected by ann: wrong bom",
  });
});
