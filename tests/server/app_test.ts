import assert from "node:assert/strict";
import type { z } from "@hono/zod-openapi";
import { Hono } from "hono";
import {
  type Approval,
  type AuditRecord,
  Hs256JwtIdentityProvider,
  MIGRATIONS,
  PlmError,
  type PolicySet,
  type Run,
} from "../../control_plane/mod.ts";
import {
  ApprovalListSchema,
  type ApprovalSchema,
  ApprovalViewSchema,
  AuditHeadSchema,
  AuditRecordSchema,
  AuditVerifySchema,
  DecisionResultSchema,
  problemOf,
  RunPageSchema,
  RunSchema,
} from "../../server/mod.ts";
import { assertProblem, POLICY, testApp } from "./_app.ts";

// The response schemas take the library's own types, field for field (a compile-time check).
const _run = (run: Run): z.input<typeof RunSchema> => run;
const _approval = (approval: Approval): z.input<typeof ApprovalSchema> => approval;
const _record = (record: AuditRecord): z.input<typeof AuditRecordSchema> => record;
void [_run, _approval, _record];

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

Deno.test("GET /healthz and /readyz answer 200; /readyz is 503 when the schema is behind", async () => {
  await using t = await testApp();
  assert.deepEqual(await (await t.call("GET", "/healthz")).json(), { status: "ok" });
  const ready = await t.call("GET", "/readyz");
  assert.equal(ready.status, 200);
  assert.equal((await ready.json()).schemaVersion, MIGRATIONS.length);
  await using behind = await testApp({ schemaVersion: MIGRATIONS.length + 1 });
  await assertProblem(await behind.call("GET", "/readyz"), 503, "ERR_STORE_SCHEMA_TOO_OLD");
  await t.store.close();
  await assertProblem(await t.call("GET", "/readyz"), 503, "ERR_STORE_UNAVAILABLE");
  await using counted = await testApp({ inFlight: () => 3 });
  assert.deepEqual(await (await counted.call("GET", "/healthz")).json(), {
    status: "ok",
    inFlight: 3,
  });
});

Deno.test("/v1 needs a bearer token: missing, forged and repeated tokens are 401 problems", async () => {
  await using t = await testApp();
  const missing = await t.call("GET", "/v1/runs");
  assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="plm"');
  await assertProblem(missing, 401, "ERR_TOKEN_MISSING");
  const forger = new Hs256JwtIdentityProvider({
    secret: "another-secret-of-at-least-32-bytes-long",
    clock: t.clock,
  });
  const forged = await forger.issueToken({ subject: "mallory", actorKind: "human", roles: [] });
  const res = await t.call("GET", "/v1/runs", { token: forged });
  assert.match(res.headers.get("www-authenticate") ?? "", /error="invalid_token"/);
  await assertProblem(res, 401, "ERR_TOKEN_SIGNATURE_INVALID");
  const token = await t.token("alice");
  const twice = new Headers([["authorization", `Bearer ${token}`], [
    "authorization",
    `Bearer ${forged}`,
  ]]);
  await assertProblem(
    await t.call("GET", "/v1/runs", { headers: twice }),
    401,
    "ERR_TOKEN_MALFORMED",
  );
  assert.equal((await t.call("GET", "/v1/runs", { token })).status, 200);
});

Deno.test("POST /v1/runs creates a governed run that carries the caller's trace", async () => {
  await using t = await testApp();
  const token = await t.token("alice");
  const res = await t.call("POST", "/v1/runs", {
    token,
    body: { action: "bom.read", resource: "bom:1", input: { rev: "B" } },
    headers: { traceparent: TRACEPARENT },
  });
  assert.equal(res.status, 201);
  const run = RunSchema.parse(await res.json());
  assert.equal(run.state, "queued");
  assert.equal(res.headers.get("location"), `/v1/runs/${run.id}`);
  assert.deepEqual(run.task.input, { rev: "B" });
  assert.equal(run.requester.subject, "alice");
  // A child of the caller's context: the same trace, a span of its own.
  assert.equal(run.traceparent.slice(3, 35), "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.notEqual(run.traceparent, TRACEPARENT);
  // The library's own value is the body, exactly.
  const stored = await t.app.request(`/v1/runs/${run.id}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.deepEqual(await stored.json(), run);

  const denied = await t.call("POST", "/v1/runs", {
    token,
    body: { action: "bom.delete", resource: "bom:1" },
  });
  assert.equal(denied.status, 201);
  assert.equal((await denied.json()).state, "rejected");
});

Deno.test("POST /v1/runs refuses a bad body with 422 naming the field, before the store", async () => {
  await using t = await testApp();
  const token = await t.token("alice");
  const before = await t.store.read((tx) => tx.audit.head());
  const cases: [unknown, string][] = [
    [{ action: "bom.read" }, "resource"],
    [{ action: "bom.read", resource: "bom:1", capabilities: "bom" }, "capabilities"],
    [{ action: "bom.read", resource: "bom:1", risk: "extreme" }, "risk"],
    [{ action: "bom read", resource: "bom:1" }, "action"],
    [{ action: "bom.read", resource: "bom:1", extra: 1 }, "body"],
    ["{not json", "body"],
  ];
  for (const [body, field] of cases) {
    const res = await t.call("POST", "/v1/runs", {
      token,
      body,
      headers: { "content-type": "application/json" },
    });
    const problem = await assertProblem(res, 422, "ERR_INVALID_ARGUMENT");
    assert.equal(problem.field, field, JSON.stringify(problem));
  }
  const text = await t.call("POST", "/v1/runs", {
    token,
    body: "action=bom.read",
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  await assertProblem(text, 415, "ERR_INVALID_ARGUMENT");
  assert.deepEqual(await t.store.read((tx) => tx.audit.head()), before);
  assert.deepEqual((await t.call("GET", "/v1/runs", { token }).then((r) => r.json())).items, []);
});

Deno.test("POST /v1/runs with an Idempotency-Key: the same run again, another body is a 409", async () => {
  await using t = await testApp();
  const token = await t.token("alice");
  const submit = (resource: string, headers: HeadersInit = { "idempotency-key": "k-1" }) =>
    t.call("POST", "/v1/runs", { token, body: { action: "bom.read", resource }, headers });
  const first = await (await submit("bom:1")).json();
  const again = await (await submit("bom:1")).json();
  assert.equal(again.id, first.id);
  assert.equal(first.idempotencyKey, "k-1");
  await assertProblem(await submit("bom:2"), 409, "ERR_RUN_IDEMPOTENCY_CONFLICT");
  const twice = new Headers([["idempotency-key", "k-2"], ["idempotency-key", "k-3"]]);
  const problem = await assertProblem(await submit("bom:3", twice), 422, "ERR_INVALID_ARGUMENT");
  assert.equal(problem.field, "Idempotency-Key");
});

Deno.test("GET /v1/runs pages newest first with a cursor and filters by state", async () => {
  await using t = await testApp();
  const token = await t.token("alice");
  const ids: string[] = [];
  for (const resource of ["bom:1", "bom:2", "bom:3"]) {
    t.clock.advance(1000);
    const res = await t.call("POST", "/v1/runs", { token, body: { action: "bom.read", resource } });
    ids.push((await res.json()).id);
  }
  await t.call("POST", "/v1/runs", { token, body: { action: "bom.delete", resource: "bom:1" } });
  const first = RunPageSchema.parse(
    await (await t.call("GET", "/v1/runs?state=queued&limit=2", { token })).json(),
  );
  assert.deepEqual(first.items.map((r) => r.id), [ids[2], ids[1]]);
  assert.notEqual(first.nextCursor, null);
  const second = RunPageSchema.parse(
    await (await t.call(
      "GET",
      `/v1/runs?state=queued&limit=2&cursor=${encodeURIComponent(first.nextCursor ?? "")}`,
      { token },
    )).json(),
  );
  assert.deepEqual(second.items.map((r) => r.id), [ids[0]]);
  assert.equal(second.nextCursor, null);
  const both = await (await t.call("GET", "/v1/runs?state=queued,rejected", { token })).json();
  assert.equal(both.items.length, 4);
  const badState = await t.call("GET", "/v1/runs?state=bogus", { token });
  assert.equal((await assertProblem(badState, 422, "ERR_INVALID_ARGUMENT")).field, "state");
  const badLimit = await t.call("GET", "/v1/runs?limit=0", { token });
  assert.equal((await assertProblem(badLimit, 422, "ERR_INVALID_ARGUMENT")).field, "limit");
  const notNumber = await t.call("GET", "/v1/runs?limit=ten", { token });
  assert.equal((await assertProblem(notNumber, 422, "ERR_INVALID_ARGUMENT")).field, "limit");
  const badCursor = await t.call("GET", "/v1/runs?cursor=zzz", { token });
  assert.equal((await assertProblem(badCursor, 422, "ERR_INVALID_ARGUMENT")).field, "cursor");
});

Deno.test("GET /v1/runs/{id} and its events; an unknown run is a 404 problem", async () => {
  await using t = await testApp();
  const token = await t.token("alice");
  const run = await (await t.call("POST", "/v1/runs", {
    token,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  await assertProblem(await t.call("GET", "/v1/runs/nope", { token }), 404, "ERR_RUN_NOT_FOUND");
  await assertProblem(
    await t.call("GET", "/v1/runs/nope/events", { token }),
    404,
    "ERR_RUN_NOT_FOUND",
  );
  const events = await (await t.call("GET", `/v1/runs/${run.id}/events`, { token })).json();
  const records = events.items.map((r: unknown) => AuditRecordSchema.parse(r));
  assert.ok(records.length >= 2);
  assert.deepEqual(
    records.map((r: AuditRecord) => r.seq),
    records.map((r: AuditRecord) => r.seq).sort((a: number, b: number) => a - b),
  );
  assert.ok(records.every((r: AuditRecord) => r.runId === run.id));
  assert.ok(records.some((r: AuditRecord) => r.action === "policy.decide"));
});

Deno.test("POST /v1/runs/{id}/cancel is governed: 403 for another user, 200 for the requester", async () => {
  await using t = await testApp();
  const alice = await t.token("alice");
  const mallory = await t.token("mallory");
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  await assertProblem(
    await t.call("POST", `/v1/runs/${run.id}/cancel`, { token: mallory, body: {} }),
    403,
    "ERR_FORBIDDEN",
  );
  await assertProblem(
    await t.call("POST", "/v1/runs/nope/cancel", { token: alice }),
    404,
    "ERR_RUN_NOT_FOUND",
  );
  const bad = await t.call("POST", `/v1/runs/${run.id}/cancel`, {
    token: alice,
    body: { reason: 7 },
  });
  assert.equal((await assertProblem(bad, 422, "ERR_INVALID_ARGUMENT")).field, "reason");
  const res = await t.call("POST", `/v1/runs/${run.id}/cancel`, {
    token: alice,
    body: { reason: "Not needed" },
  });
  assert.equal(res.status, 200);
  const cancelled = RunSchema.parse(await res.json());
  assert.equal(cancelled.state, "cancelled");
  assert.equal(cancelled.error?.message, "Not needed");
  // Without a body, too (the default reason).
  const other = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:2" },
  })).json();
  const bare = await t.call("POST", `/v1/runs/${other.id}/cancel`, { token: alice });
  assert.equal((await bare.json()).state, "cancelled");
});

Deno.test("approvals: the lead sees what is asked and decides; self, role, digest, decided are refused", async () => {
  await using t = await testApp();
  const alice = await t.token("alice");
  const bob = await t.token("bob", ["lead"]);
  const carol = await t.token("carol", ["lead"]);
  const dave = await t.token("dave", ["viewer"]);
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.release", resource: "bom:9", input: { rev: "C" }, risk: "high" },
  })).json();
  assert.equal(run.state, "awaiting_approval");

  const list = ApprovalListSchema.parse(
    await (await t.call("GET", "/v1/approvals?state=pending", { token: bob })).json(),
  );
  assert.equal(list.items.length, 1);
  const [item] = list.items;
  assert.ok(item !== undefined);
  assert.equal(item.id, run.approvalId);
  assert.deepEqual(item.subject, {
    action: "bom.release",
    resource: "bom:9",
    input: { rev: "C" },
    risk: "high",
  });
  assert.equal(item.requester.subject, "alice");
  assert.deepEqual(item.ruleIds, ["release-needs-lead"]);
  assert.match(item.policyReason ?? "", /lead/);
  assert.equal(item.spec.quorum, 1);
  assert.equal(item.spec.onExpiry, "deny");
  assert.equal(item.deadline, t.clock.now() + 600_000);
  for (const who of [alice, dave]) {
    const none = await (await t.call("GET", "/v1/approvals", { token: who })).json();
    assert.deepEqual(none.items, []);
  }
  const one = await t.call("GET", `/v1/approvals/${item.id}`, { token: dave });
  assert.deepEqual(ApprovalViewSchema.parse(await one.json()), item);
  await assertProblem(
    await t.call("GET", "/v1/approvals/nope", { token: bob }),
    404,
    "ERR_APPROVAL_NOT_FOUND",
  );

  const decide = (token: string, body: unknown, id = item.id) =>
    t.call("POST", `/v1/approvals/${id}/decisions`, { token, body });
  const approve = { decision: "approve", digest: item.digest };
  await assertProblem(await decide(alice, approve), 403, "ERR_APPROVAL_SELF");
  await assertProblem(await decide(dave, approve), 403, "ERR_APPROVER_NOT_ALLOWED");
  await assertProblem(
    await decide(bob, { decision: "approve", digest: "0".repeat(64) }),
    409,
    "ERR_APPROVAL_DIGEST_MISMATCH",
  );
  const noComment = await decide(bob, { decision: "reject", digest: item.digest });
  assert.equal((await assertProblem(noComment, 422, "ERR_INVALID_ARGUMENT")).field, "comment");
  await assertProblem(await decide(bob, approve, "nope"), 404, "ERR_APPROVAL_NOT_FOUND");

  const res = await decide(bob, { ...approve, comment: "Checked" });
  assert.equal(res.status, 200);
  const decided = DecisionResultSchema.parse(await res.json());
  assert.equal(decided.approval.state, "approved");
  assert.equal(decided.approval.votes[0]?.approver.subject, "bob");
  assert.equal(decided.run.state, "queued");
  await assertProblem(await decide(carol, approve), 409, "ERR_APPROVAL_NOT_PENDING");
});

Deno.test("approvals: an expired approval is a 409, a rejection ends the run", async () => {
  await using t = await testApp();
  const alice = await t.token("alice");
  const bob = await t.token("bob", ["lead"]);
  const submit = async (resource: string) =>
    await (await t.call("POST", "/v1/runs", {
      token: alice,
      body: { action: "bom.release", resource },
    })).json();
  const first = await submit("bom:1");
  const second = await submit("bom:2");
  const view = async (id: string) =>
    await (await t.call("GET", `/v1/approvals/${id}`, { token: bob })).json();
  const a2 = await view(second.approvalId);
  const rejected = await t.call("POST", `/v1/approvals/${a2.id}/decisions`, {
    token: bob,
    body: { decision: "reject", digest: a2.digest, comment: "Wrong revision" },
  });
  const result = await rejected.json();
  assert.deepEqual([result.approval.state, result.run.state], ["rejected", "rejected"]);
  const a1 = await view(first.approvalId);
  t.clock.advance(600_001);
  const late = await t.call("POST", `/v1/approvals/${a1.id}/decisions`, {
    token: bob,
    body: { decision: "approve", digest: a1.digest },
  });
  await assertProblem(late, 409, "ERR_APPROVAL_EXPIRED");
});

Deno.test("GET /v1/audit/head for anyone, /v1/audit/verify for auditors only", async () => {
  await using t = await testApp();
  const alice = await t.token("alice");
  const auditor = await t.token("ann", ["auditor"]);
  await t.call("POST", "/v1/runs", { token: alice, body: { action: "bom.read", resource: "b:1" } });
  const head = AuditHeadSchema.parse(
    await (await t.call("GET", "/v1/audit/head", { token: alice })).json(),
  );
  assert.ok(head.seq > 0);
  await assertProblem(
    await t.call("GET", "/v1/audit/verify", { token: alice }),
    403,
    "ERR_FORBIDDEN",
  );
  const verified = AuditVerifySchema.parse(
    await (await t.call("GET", "/v1/audit/verify", { token: auditor })).json(),
  );
  assert.equal(verified.ok, true);
  assert.ok(verified.checked >= head.seq);
});

Deno.test("a body over --max-body-bytes is a 413, declared or chunked, before the store", async () => {
  await using t = await testApp({ maxBodyBytes: 256 });
  const token = await t.token("alice");
  const big = { action: "bom.read", resource: "bom:1", input: "x".repeat(300) };
  await assertProblem(
    await t.call("POST", "/v1/runs", { token, body: big }),
    413,
    "ERR_INVALID_ARGUMENT",
  );
  const bytes = new TextEncoder().encode(JSON.stringify(big));
  const chunked = new ReadableStream<Uint8Array>({
    start(c) {
      for (let i = 0; i < bytes.length; i += 64) c.enqueue(bytes.slice(i, i + 64));
      c.close();
    },
  });
  const res = await t.call("POST", "/v1/runs", {
    token,
    body: chunked,
    headers: { "content-type": "application/json" },
  });
  assert.equal(res.headers.get("content-length"), null);
  assert.equal((await assertProblem(res, 413, "ERR_INVALID_ARGUMENT")).field, "body");
  assert.deepEqual((await (await t.call("GET", "/v1/runs", { token })).json()).items, []);
});

Deno.test("a body that stalls is a 408 once the read timeout passes", async () => {
  await using t = await testApp({ bodyTimeoutMs: 5000 });
  const token = await t.token("alice");
  const stalled = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode('{"action":'));
    },
  });
  const pending = t.call("POST", "/v1/runs", {
    token,
    body: stalled,
    headers: { "content-type": "application/json" },
  });
  await t.timers.advance(4999);
  let settled = false;
  pending.then(() => settled = true);
  await t.timers.advance(0);
  assert.equal(settled, false);
  await t.timers.advance(1);
  await assertProblem(await pending, 408, "ERR_TIMEOUT");
});

Deno.test("an internal error is a 500 problem that leaks nothing", async () => {
  await using t = await testApp({
    policies: () => {
      throw new Error("cannot reach postgres://admin:hunter2@db");
    },
  });
  const token = await t.token("alice");
  const res = await t.call("POST", "/v1/runs", {
    token,
    body: { action: "bom.read", resource: "bom:1" },
  });
  const problem = await assertProblem(res, 500, "ERR_INTERNAL");
  assert.equal(problem.detail, "The server failed");
  assert.equal(t.errors.length, 1);
  await assertProblem(await t.call("GET", "/v1/nothing", { token }), 404, "ERR_INVALID_ARGUMENT");
});

Deno.test("the policy source is asked at each governed request: a new version applies at once", async () => {
  let policies: PolicySet = POLICY;
  let asked = 0;
  await using t = await testApp({
    policies: () => {
      asked++;
      return policies;
    },
  });
  const token = await t.token("alice");
  const submit = async () =>
    (await (await t.call("POST", "/v1/runs", {
      token,
      body: { action: "bom.delete", resource: "bom:1" },
    })).json()).state;
  assert.equal(await submit(), "rejected");
  policies = {
    rules: [...POLICY.rules, { id: "deletes", effect: "allow", actions: ["bom.delete"] }],
  };
  assert.equal(await submit(), "queued");
  // A copy of the same set is the same version: the decision records it.
  policies = structuredClone(policies);
  assert.equal(await submit(), "queued");
  assert.equal(asked, 3);
  const decisions = await (await t.call("GET", "/v1/runs?state=queued", { token })).json();
  const versions = new Set<unknown>();
  for (const run of decisions.items) {
    const events = await (await t.call("GET", `/v1/runs/${run.id}/events`, { token })).json();
    const decide = events.items.find((r: AuditRecord) => r.action === "policy.decide");
    versions.add((decide.data as { policyVersion: string }).policyVersion);
  }
  assert.equal(versions.size, 1);
});

Deno.test("mounted sub-apps get the body limits and the bytes, not the /v1 token or JSON rules", async () => {
  const inbox = new Hono();
  inbox.get("/", (c) => c.text("inbox"));
  inbox.post("/decide", async (c) => c.text(`got ${await c.req.text()}`));
  await using t = await testApp({ mounts: { "/inbox": inbox }, maxBodyBytes: 64 });
  assert.equal(await (await t.call("GET", "/inbox")).text(), "inbox");
  const form = await t.call("POST", "/inbox/decide", {
    body: "decision=approve&comment=ok",
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  assert.equal(await form.text(), "got decision=approve&comment=ok");
  await assertProblem(
    await t.call("POST", "/inbox/decide", {
      body: "comment=" + "x".repeat(100),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    }),
    413,
    "ERR_INVALID_ARGUMENT",
  );
});

Deno.test("a store fault answers 503 with its code and nothing of the server behind it", () => {
  const problem = problemOf(
    new PlmError(
      "ERR_STORE_UNAVAILABLE",
      "Cannot reach the PostgreSQL store at postgres://plm:***@db.internal:5432/plm: connect ECONNREFUSED 10.0.0.5:5432",
    ),
  );
  assert.deepEqual([problem.status, problem.code], [503, "ERR_STORE_UNAVAILABLE"]);
  assert.doesNotMatch(JSON.stringify(problem), /db\.internal|10\.0\.0\.5|plm:\*|ECONNREFUSED/);
});
