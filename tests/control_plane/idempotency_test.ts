import assert from "node:assert/strict";
import { decideIdempotency, requestDigest } from "../../control_plane/runs/_idempotency.ts";
import { ALICE, task } from "./_runs_fixture.ts";

Deno.test("decideIdempotency() creates under a new key and reuses under the same request", () => {
  const digest = requestDigest(task(), ALICE);
  assert.deepEqual(decideIdempotency("order-17", digest, undefined), { reuse: false });
  assert.deepEqual(decideIdempotency("order-17", digest, digest), { reuse: true });
});

Deno.test("decideIdempotency() refuses a key reused for another request", () => {
  const digest = requestDigest(task(), ALICE);
  const other = requestDigest(task({ input: { rev: "C" } }), ALICE);
  const decision = decideIdempotency("order-17", other, digest);
  assert.equal(decision.refused?.code, "ERR_RUN_IDEMPOTENCY_CONFLICT");
});

Deno.test("requestDigest() names the task and who asks, and nothing else", async (t) => {
  const digest = requestDigest(task(), ALICE);
  await t.step("the same request, keys in another order, is the same", () => {
    const { action, resource, ...rest } = task();
    assert.equal(requestDigest({ ...rest, resource, action }, { ...ALICE }), digest);
  });
  await t.step("roles and scopes do not count", () => {
    assert.equal(requestDigest(task(), { ...ALICE, roles: [], scopes: ["x"] }), digest);
  });
  await t.step("another task, subject or tenant is another request", () => {
    assert.notEqual(requestDigest(task({ resource: "bom:2" }), ALICE), digest);
    assert.notEqual(requestDigest(task(), { ...ALICE, subject: "bob" }), digest);
    assert.notEqual(requestDigest(task(), { ...ALICE, tenant: "acme" }), digest);
  });
});
