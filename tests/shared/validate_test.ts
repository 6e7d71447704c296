import assert from "node:assert/strict";
import {
  checkInteger,
  checkText,
  IdentitySchema,
  INPUT_LIMITS,
  parseArgument,
  sleep,
  unsafeTextReason,
} from "../../shared/mod.ts";
import { textSchema } from "../../shared/validate.ts";
import { FakeClock, FakeTimers } from "../../shared/mod.ts";

const refused = { code: "ERR_INVALID_ARGUMENT" };

Deno.test("unsafeTextReason() finds U+0000 and lone surrogates, nothing else", () => {
  for (const ok of ["", "bom:1", "é€😀", "\u2028", "\u00a0"]) {
    assert.equal(unsafeTextReason(ok), undefined);
  }
  for (const bad of ["a\0", "\ud800", "x\udfff", "\ud83d"]) {
    assert.notEqual(unsafeTextReason(bad), undefined);
  }
});

Deno.test("textSchema() bounds length and refuses unstorable text", () => {
  const schema = textSchema();
  assert.equal(schema.safeParse("x".repeat(INPUT_LIMITS.textLength)).success, true);
  assert.equal(schema.safeParse("x".repeat(INPUT_LIMITS.textLength + 1)).success, false);
  assert.equal(schema.safeParse("").success, false);
  assert.equal(textSchema({ min: 0 }).safeParse("").success, true);
  assert.equal(schema.safeParse("job\0A").success, false);
  assert.equal(schema.safeParse(7).success, false);
});

Deno.test("parseArgument() names the field and its path", () => {
  const bad = { subject: "a", actorKind: "human", roles: ["ok", 7], scopes: [] };
  assert.throws(() => parseArgument(IdentitySchema, bad, "identity"), {
    ...refused,
    message: /identity\.roles\[1\]/,
  });
  const good = { subject: "a", actorKind: "human", roles: [], scopes: [] };
  assert.deepEqual(parseArgument(IdentitySchema, good, "identity"), good);
});

Deno.test("checkInteger() and checkText() refuse with ERR_INVALID_ARGUMENT", () => {
  for (const bad of [-1, 1.5, NaN, Infinity, -Infinity, "5", null, 2 ** 53]) {
    assert.throws(() => checkInteger("limit", bad, 0), { ...refused, message: /limit/ });
  }
  assert.equal(checkInteger("limit", 0, 0, 1), 0);
  assert.throws(() => checkText("reason", "a".repeat(11), 10), refused);
  assert.throws(() => checkText("reason", { toString: () => "x" }), refused);
  assert.equal(checkText("reason", "ok"), "ok");
});

Deno.test("sleep() resolves on time or on abort and leaves nothing behind", async () => {
  const clock = new FakeClock(0);
  const timers = new FakeTimers(clock);
  let woke = 0;
  sleep(100, { timer: timers.timer }).then(() => (woke = clock.now()));
  await timers.advance(99);
  assert.equal(woke, 0);
  await timers.advance(1);
  assert.equal(woke, 100);
  const stop = new AbortController();
  let listeners = 0;
  const signal = stop.signal;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  Object.assign(signal, {
    addEventListener: (...args: Parameters<typeof add>) => (listeners++, add(...args)),
    removeEventListener: (...args: Parameters<typeof remove>) => (listeners--, remove(...args)),
  });
  const slept = sleep(1_000, { timer: timers.timer, signal });
  assert.equal(listeners, 1);
  stop.abort();
  await slept;
  assert.equal(timers.pending, 0);
  assert.equal(listeners, 0);
  await timers.advance(5_000);
  assert.equal(timers.pending, 0);
});
