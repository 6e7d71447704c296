import assert from "node:assert/strict";
import type { Run } from "../../control_plane/mod.ts";
import {
  checkHold,
  decideClaim,
  holdsLease,
  namesLease,
  nextLeaseToken,
} from "../../control_plane/runs/_lease.ts";
import { isPlmError } from "../../shared/mod.ts";

const run = (
  overrides: Partial<Run>,
): Run => ({ id: "r-1", state: "queued", version: 1, lease: null, ...overrides } as Run);

Deno.test("decideClaim() refuses a finished run and a live lease of another owner", () => {
  assert.equal(
    decideClaim(run({ state: "succeeded" }), "w1", 0).refused?.code,
    "ERR_RUN_ILLEGAL_TRANSITION",
  );
  const held = run({ lease: { owner: "w2", token: 1, expiresAt: 1_000 } });
  assert.equal(decideClaim(held, "w1", 999).refused?.code, "ERR_RUN_LEASE_HELD");
});

Deno.test("decideClaim() renews its own lease and takes over an expired one", () => {
  assert.deepEqual(decideClaim(run({}), "w1", 0), { takeover: false });
  const mine = run({ lease: { owner: "w1", token: 1, expiresAt: 1_000 } });
  assert.deepEqual(decideClaim(mine, "w1", 500), { takeover: false });
  const expired = run({ state: "running", lease: { owner: "w2", token: 1, expiresAt: 1_000 } });
  assert.deepEqual(decideClaim(expired, "w1", 1_000), { takeover: true }, "expiry is exclusive");
});

Deno.test("holdsLease() needs the same owner and token, before expiry", () => {
  const leased = run({ lease: { owner: "w1", token: 4, expiresAt: 1_000 } });
  assert.equal(holdsLease(leased, { owner: "w1", token: 4 }, 999), true);
  assert.equal(holdsLease(leased, { owner: "w1", token: 4 }, 1_000), false);
  assert.equal(holdsLease(leased, { owner: "w1", token: 3 }, 0), false, "an older claim");
  assert.equal(holdsLease(leased, { owner: "w2", token: 4 }, 0), false, "another owner");
  assert.equal(holdsLease(run({}), { owner: "w1", token: 4 }, 0), false);
});

Deno.test("namesLease() ignores expiry but not owner or token", () => {
  const leased = run({ lease: { owner: "w1", token: 4, expiresAt: 1_000 } });
  assert.equal(namesLease(leased, { owner: "w1", token: 4 }), true);
  assert.equal(namesLease(leased, { owner: "w1", token: 5 }), false);
  assert.equal(namesLease(leased, { owner: "w2", token: 4 }), false);
  assert.equal(namesLease(run({}), { owner: "w1", token: 4 }), false);
});

Deno.test("nextLeaseToken() is above every token the run can have had", () => {
  // A token is at most the version it was written with; a claim writes version + 1.
  const claimed = run({ version: 7, lease: { owner: "w1", token: 7, expiresAt: 0 } });
  assert.equal(nextLeaseToken(claimed), 8);
  assert.ok(nextLeaseToken(run({ version: 1 })) > 0);
});

Deno.test("checkHold() refuses a hold that is not { owner: text, token: integer }", () => {
  assert.deepEqual(checkHold("lease", { owner: "w1", token: 0 }), { owner: "w1", token: 0 });
  for (
    const bad of [null, "w1", { owner: "w1" }, { owner: 1, token: 1 }, { owner: "w", token: 1.5 }]
  ) {
    assert.throws(
      () => checkHold("lease", bad as never),
      (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /lease/.test(err.message),
    );
  }
});
