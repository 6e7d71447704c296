import assert from "node:assert/strict";
import type { Run } from "../../control_plane/mod.ts";
import { decideClaim, holdsLease } from "../../control_plane/runs/_lease.ts";

const run = (
  overrides: Partial<Run>,
): Run => ({ id: "r-1", state: "queued", lease: null, ...overrides } as Run);

Deno.test("decideClaim() refuses a finished run and a live lease of another owner", () => {
  assert.equal(
    decideClaim(run({ state: "succeeded" }), "w1", 0).refused?.code,
    "ERR_RUN_ILLEGAL_TRANSITION",
  );
  const held = run({ lease: { owner: "w2", expiresAt: 1_000 } });
  assert.equal(decideClaim(held, "w1", 999).refused?.code, "ERR_RUN_LEASE_HELD");
});

Deno.test("decideClaim() renews its own lease and takes over an expired one", () => {
  assert.deepEqual(decideClaim(run({}), "w1", 0), { takeover: false });
  const mine = run({ lease: { owner: "w1", expiresAt: 1_000 } });
  assert.deepEqual(decideClaim(mine, "w1", 500), { takeover: false });
  const expired = run({ state: "running", lease: { owner: "w2", expiresAt: 1_000 } });
  assert.deepEqual(decideClaim(expired, "w1", 1_000), { takeover: true }, "expiry is exclusive");
});

Deno.test("holdsLease() is false at and after expiry, and for anyone else", () => {
  const leased = run({ lease: { owner: "w1", expiresAt: 1_000 } });
  assert.equal(holdsLease(leased, "w1", 999), true);
  assert.equal(holdsLease(leased, "w1", 1_000), false);
  assert.equal(holdsLease(leased, "w2", 0), false);
  assert.equal(holdsLease(run({}), "w1", 0), false);
});
