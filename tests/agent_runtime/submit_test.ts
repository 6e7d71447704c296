/**
 * `AgentRuntime.submit` at the edge: every bad field is refused with
 * ERR_INVALID_ARGUMENT naming it, nothing is written, and whatever is accepted
 * keeps the audit chain verifiable.
 */
import assert from "node:assert/strict";
import { allRuns } from "../_all_runs.ts";
import {
  AgentRuntime,
  AuditLog,
  ControlPlane,
  openStore,
  TASK_LIMITS,
  type TaskInput,
  TraceState,
} from "../../agent_runtime/mod.ts";
import { FakeClock, type Identity, type JsonValue } from "../../shared/mod.ts";

const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };
const TASK = { action: "bom.update", resource: "bom:1" };

async function setUp() {
  const db = await openStore(":memory:");
  const clock = new FakeClock(Date.UTC(2026, 10, 30, 12));
  const controlPlane = new ControlPlane(db, {
    policies: { rules: [{ id: "work", effect: "allow", actions: ["bom.**"] }] },
    clock,
  });
  const runtime = new AgentRuntime({ controlPlane, agents: [], clock }); // submit only
  const audit = new AuditLog(db);
  return { db, runtime, controlPlane, audit };
}

function deep(levels: number): JsonValue {
  let value: JsonValue = "leaf";
  for (let i = 0; i < levels; i++) value = { next: value };
  return value;
}

Deno.test("AgentRuntime.submit() refuses every bad task field by name and writes nothing", async (t) => {
  const cycle: Record<string, unknown> = { a: 1 };
  cycle.self = cycle;
  const cases: [string, unknown, RegExp][] = [
    ["capabilities given as a string", { ...TASK, capabilities: "bom" }, /task\.capabilities/],
    ["a BigInt input", { ...TASK, input: { n: 10n } }, /task\.input/],
    ["a NaN input", { ...TASK, input: [NaN] }, /task\.input/],
    ["an Infinity attribute", { ...TASK, attributes: { amount: Infinity } }, /task\.attributes/],
    ["a function input", { ...TASK, input: () => 1 }, /task\.input/],
    ["a Date input", { ...TASK, input: { at: new Date(0) } }, /Date/],
    ["a Map input", { ...TASK, input: new Map() }, /Map/],
    ["a cyclic input", { ...TASK, input: cycle }, /task\.input/],
    ["100,000 levels of nesting", { ...TASK, input: deep(100_000) }, /deep/],
    ["33 levels of nesting", { ...TASK, input: deep(TASK_LIMITS.inputDepth) }, /deep/],
    ["an input over the size limit", {
      ...TASK,
      input: "x".repeat(TASK_LIMITS.inputLength),
    }, /task\.input/],
    ["U+0000 in the resource", { ...TASK, resource: "bom:\0" }, /task\.resource/],
    ["a lone surrogate in the resource", { ...TASK, resource: "bom:\ud800" }, /task\.resource/],
    ["a resource of 1,025 characters", { ...TASK, resource: "r".repeat(1_025) }, /task\.resource/],
    ["an action that is not dotted words", { ...TASK, action: "bom update" }, /task\.action/],
    ["an unknown key", { ...TASK, priority: 1 }, /priority/],
    ["a risk that does not exist", { ...TASK, risk: "extreme" }, /task\.risk/],
    ["a task that is not an object", "bom.update", /task/],
    ["a capability with U+0000", { ...TASK, capabilities: ["bom\0"] }, /task\.capabilities\[0\]/],
  ];
  for (const [name, task, message] of cases) {
    await t.step(name, async () => {
      const { db, runtime, controlPlane, audit } = await setUp();
      await using _db = db;
      await assert.rejects(runtime.submit(task as TaskInput, { identity: SVC }), {
        code: "ERR_INVALID_ARGUMENT",
        message,
      });
      assert.deepEqual(await allRuns(controlPlane.runs), []);
      assert.equal((await audit.head()).seq, 0);
    });
  }
});

Deno.test("AgentRuntime.submit() refuses idempotency keys that cannot be stored exactly", async (t) => {
  for (
    const [name, key] of [
      ["U+0000", "job\0A"],
      ["a lone surrogate", "job\udc00"],
      ["an object (bound as named SQL parameters before)", { $id: "x" }],
      ["a number", 42],
      ["257 characters", "k".repeat(257)],
    ] as const
  ) {
    await t.step(name, async () => {
      const { db, runtime, controlPlane } = await setUp();
      await using _db = db;
      await assert.rejects(
        runtime.submit(TASK, { identity: SVC, idempotencyKey: key as unknown as string }),
        { code: "ERR_INVALID_ARGUMENT", message: /idempotencyKey/ },
      );
      assert.deepEqual(await allRuns(controlPlane.runs), []);
    });
  }
  await t.step("keys differing after U+0000 no longer collapse into one run", async () => {
    const { db, runtime } = await setUp();
    await using _db = db;
    const submit = (key: string) => runtime.submit(TASK, { identity: SVC, idempotencyKey: key });
    await assert.rejects(submit("job\0A"), { code: "ERR_INVALID_ARGUMENT" });
    await assert.rejects(submit("job\0B"), { code: "ERR_INVALID_ARGUMENT" });
    assert.notEqual(await submit("job-A"), await submit("job-B"));
  });
});

Deno.test("AgentRuntime.submit() treats attributes differing only in key order as one request", async () => {
  const { db, runtime, controlPlane } = await setUp();
  await using _db = db;
  const options = { identity: SVC, idempotencyKey: "order-7" };
  const first = await runtime.submit({ ...TASK, attributes: { a: 1, b: { c: 2, d: 3 } } }, options);
  const again = await runtime.submit({ ...TASK, attributes: { b: { d: 3, c: 2 }, a: 1 } }, options);
  assert.equal(again, first);
  await assert.rejects(runtime.submit({ ...TASK, attributes: { a: 2 } }, options), {
    code: "ERR_RUN_IDEMPOTENCY_CONFLICT",
  });
  assert.equal((await allRuns(controlPlane.runs)).length, 1);
});

Deno.test("AgentRuntime.submit() refuses a malformed trace option by field", async () => {
  const { db, runtime, controlPlane } = await setUp();
  await using _db = db;
  const trace = {
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    spanId: "00f067aa0ba902b7",
    traceFlags: 1,
    traceState: TraceState.EMPTY,
  };
  // checkTraceContext's cases are in trace_test.ts; here, that submit runs it first.
  await assert.rejects(
    runtime.submit(TASK, { identity: SVC, trace: { ...trace, spanId: "0".repeat(16) } }),
    { code: "ERR_INVALID_ARGUMENT", message: /trace\.spanId/ },
  );
  assert.deepEqual(await allRuns(controlPlane.runs), []);
  const id = await runtime.submit(TASK, { identity: SVC, trace });
  assert.match(
    (await controlPlane.runs.get(id)).traceparent,
    /^00-4bf92f3577b34da6a3ce929d0e0e4736-/,
  );
});

Deno.test("AgentRuntime.submit() keeps the audit chain verifiable for every accepted text", async () => {
  const { db, runtime, controlPlane, audit } = await setUp();
  await using _db = db;
  const texts = ["bom:é€😀", "bom:\u2028\u2029", "bom:'; DROP TABLE runs; --", 'bom:"\\'];
  for (const resource of texts) {
    const id = await runtime.submit({
      ...TASK,
      resource,
      input: { nul: "a\0b", emoji: "😀", sql: "' OR 1=1 --" },
      attributes: { note: "\u0000 inside JSON is escaped" },
    }, { identity: SVC, idempotencyKey: `key-${resource}` });
    assert.equal((await controlPlane.runs.get(id)).task.resource, resource);
  }
  assert.equal((await audit.verify()).ok, true);
  assert.ok((await audit.head()).seq >= texts.length);
});

Deno.test("AgentRuntime.wait() on a submit-only runtime leaves a queued run for the workers", async () => {
  const { db, runtime, controlPlane } = await setUp();
  await using _db = db;
  const id = await runtime.submit(TASK, { identity: SVC });
  const waited = await runtime.wait(id);
  assert.equal(waited.state, "queued");
  assert.equal(waited.attempt, 0);
  assert.equal((await controlPlane.runs.get(id)).lease, null, "never claimed here");
});

Deno.test("AgentRuntime.submit() awaited in a loop lets timers fire before the loop ends", async () => {
  const { db, runtime } = await setUp();
  await using _db = db;
  let submitted = 0;
  let submittedWhenTimerFired = -1;
  setTimeout(() => (submittedWhenTimerFired = submitted), 0);
  for (let n = 0; n < 64; n++) {
    await runtime.submit({ ...TASK, resource: `bom:${n}` }, { identity: SVC });
    submitted++;
  }
  assert.ok(submittedWhenTimerFired >= 0, "the timer fired during the loop");
  assert.ok(submittedWhenTimerFired < 64, `it fired after ${submittedWhenTimerFired} submits`);
});
