import assert from "node:assert/strict";
import type { Run, RunEventInput } from "../../control_plane/mod.ts";
import { checkEvent, reasonOf, traceIdOf } from "../../control_plane/runs/_event.ts";
import { TRACEPARENT } from "./_runs_fixture.ts";

const run = (overrides: Partial<Run> = {}): Run =>
  ({ id: "r-1", state: "retrying", error: null, traceparent: TRACEPARENT, ...overrides }) as Run;

Deno.test("checkEvent() returns a result's canonical JSON and refuses what is not JSON", () => {
  assert.equal(checkEvent({ type: "succeed", result: { b: 1, a: [true] } }), '{"a":[true],"b":1}');
  assert.equal(checkEvent({ type: "suggest", result: null }), "null");
  assert.equal(checkEvent({ type: "start", agentId: "reader" }), undefined);
  for (const result of [NaN, new Date(0), { n: 1n }]) {
    assert.throws(() => checkEvent({ type: "succeed", result } as unknown as RunEventInput), {
      code: "ERR_INVALID_ARGUMENT",
    });
  }
});

Deno.test("checkEvent() refuses a fail event whose error is not bounded text", () => {
  const fail = (error: unknown) => ({ type: "fail", error, retry: false }) as RunEventInput;
  assert.equal(checkEvent(fail({ code: "ERR_TIMEOUT", message: "Timed out" })), undefined);
  for (const error of [undefined, { code: "" }, { code: "E", message: "x".repeat(4097) }]) {
    assert.throws(() => checkEvent(fail(error)), { code: "ERR_INVALID_ARGUMENT" });
  }
});

Deno.test("reasonOf() gives the reason an event carries, or the run's error after a lost lease", () => {
  assert.equal(reasonOf({ type: "cancel", reason: "No longer needed" }, run()), "No longer needed");
  assert.equal(
    reasonOf({ type: "fail", error: { code: "ERR_X", message: "Boom" }, retry: true }, run()),
    "ERR_X: Boom",
  );
  const lost = run({ error: { code: "ERR_RUN_LEASE_LOST", message: "Lease expired" } });
  assert.equal(reasonOf({ type: "lease_expired" }, lost), "Lease expired");
  assert.equal(reasonOf({ type: "lease_expired" }, run()), undefined);
  assert.equal(reasonOf({ type: "approve" }, run()), undefined);
});

Deno.test("traceIdOf() is the trace id of the run's traceparent", () => {
  assert.equal(traceIdOf(run()), "0af7651916cd43dd8448eb211c80319c");
});
