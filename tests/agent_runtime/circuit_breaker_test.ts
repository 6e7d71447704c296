import assert from "node:assert/strict";
import {
  CircuitBreaker,
  type CircuitBreakerOptions,
  CircuitBreakers,
  CircuitOpenError,
  FakeClock,
  isPlmError,
  PlmError,
} from "../../agent_runtime/mod.ts";

function setup(options: CircuitBreakerOptions = {}) {
  const clock = new FakeClock(1_000);
  const changes: string[] = [];
  const breaker = new CircuitBreaker({
    failureThreshold: 3,
    cooldownMs: 10_000,
    clock,
    onStateChange: (from, to) => changes.push(`${from}->${to}`),
    ...options,
  });
  return { clock, changes, breaker };
}

function openIt(breaker: CircuitBreaker, failures = 3): void {
  for (let i = 0; i < failures; i++) breaker.recordFailure();
}

Deno.test("CircuitBreaker starts closed and lets calls through", () => {
  const { breaker, changes } = setup();
  assert.equal(breaker.state, "closed");
  assert.ok(breaker.isAvailable());
  assert.ok(breaker.tryAcquire());
  assert.ok(breaker.tryAcquire());
  assert.equal(breaker.remainingCooldownMs, 0);
  assert.deepEqual(changes, []);
});

Deno.test("CircuitBreaker closed -> open after failureThreshold consecutive failures", () => {
  const { breaker, changes } = setup();
  breaker.recordFailure();
  breaker.recordFailure();
  assert.equal(breaker.state, "closed");
  assert.equal(breaker.failures, 2);
  breaker.recordFailure();
  assert.equal(breaker.state, "open");
  assert.deepEqual(changes, ["closed->open"]);
  assert.equal(breaker.isAvailable(), false);
  assert.equal(breaker.tryAcquire(), false);
});

Deno.test("CircuitBreaker counts only consecutive failures: a success resets the count", () => {
  const { breaker, changes } = setup();
  breaker.recordFailure();
  breaker.recordFailure();
  breaker.recordSuccess();
  assert.equal(breaker.failures, 0);
  breaker.recordFailure();
  breaker.recordFailure();
  assert.equal(breaker.state, "closed");
  assert.deepEqual(changes, []);
});

Deno.test("CircuitBreaker open -> half_open once cooldownMs has passed on the clock", () => {
  const { breaker, changes, clock } = setup();
  openIt(breaker);
  clock.advance(9_999);
  assert.equal(breaker.state, "open");
  assert.equal(breaker.remainingCooldownMs, 1);
  assert.equal(breaker.tryAcquire(), false);
  clock.advance(1);
  assert.equal(breaker.state, "half_open");
  assert.deepEqual(changes, ["closed->open", "open->half_open"]);
});

Deno.test("CircuitBreaker half_open lets halfOpenMaxCalls trial calls through", async (t) => {
  await t.step("one trial by default", () => {
    const { breaker, clock } = setup();
    openIt(breaker);
    clock.advance(10_000);
    assert.ok(breaker.isAvailable());
    assert.ok(breaker.tryAcquire());
    assert.equal(breaker.isAvailable(), false);
    assert.equal(breaker.tryAcquire(), false);
    assert.equal(breaker.state, "half_open");
  });
  await t.step("two trials when configured", () => {
    const { breaker, clock } = setup({ halfOpenMaxCalls: 2 });
    openIt(breaker);
    clock.advance(10_000);
    assert.ok(breaker.tryAcquire());
    assert.ok(breaker.tryAcquire());
    assert.equal(breaker.tryAcquire(), false);
  });
  await t.step("release() gives a trial slot back without a state change", () => {
    const { breaker, clock, changes } = setup();
    openIt(breaker);
    clock.advance(10_000);
    assert.ok(breaker.tryAcquire());
    breaker.release();
    assert.equal(breaker.state, "half_open");
    assert.ok(breaker.tryAcquire());
    assert.deepEqual(changes, ["closed->open", "open->half_open"]);
  });
});

Deno.test("CircuitBreaker half_open -> closed on a trial success", () => {
  const { breaker, clock, changes } = setup();
  openIt(breaker);
  clock.advance(10_000);
  assert.ok(breaker.tryAcquire());
  breaker.recordSuccess();
  assert.equal(breaker.state, "closed");
  assert.equal(breaker.failures, 0);
  assert.deepEqual(changes, ["closed->open", "open->half_open", "half_open->closed"]);
  // the count starts over after closing
  openIt(breaker, 2);
  assert.equal(breaker.state, "closed");
});

Deno.test("CircuitBreaker half_open -> open on a trial failure, for a new cool-down", () => {
  const { breaker, clock, changes } = setup();
  openIt(breaker);
  clock.advance(10_000);
  assert.ok(breaker.tryAcquire());
  clock.advance(500);
  breaker.recordFailure();
  assert.equal(breaker.state, "open");
  assert.equal(breaker.remainingCooldownMs, 10_000);
  clock.advance(9_999);
  assert.equal(breaker.state, "open");
  clock.advance(1);
  assert.equal(breaker.state, "half_open");
  assert.ok(breaker.tryAcquire(), "the new half-open period has a fresh trial slot");
  assert.deepEqual(changes, [
    "closed->open",
    "open->half_open",
    "half_open->open",
    "open->half_open",
  ]);
});

Deno.test("CircuitBreaker ignores results recorded while open", () => {
  const { breaker, clock, changes } = setup();
  openIt(breaker);
  clock.advance(5_000);
  breaker.recordSuccess();
  breaker.recordFailure();
  assert.equal(breaker.state, "open");
  assert.equal(breaker.remainingCooldownMs, 5_000, "a late failure does not restart the cool-down");
  assert.deepEqual(changes, ["closed->open"]);
});

Deno.test("CircuitBreaker.reset() closes from any state", () => {
  const { breaker, changes } = setup();
  openIt(breaker);
  breaker.reset();
  assert.equal(breaker.state, "closed");
  assert.equal(breaker.failures, 0);
  breaker.reset();
  assert.deepEqual(changes, ["closed->open", "open->closed"]);
});

Deno.test("CircuitBreaker.execute() records outcomes and refuses while open", async () => {
  const { breaker, clock, changes } = setup({ failureThreshold: 2 });
  assert.equal(await breaker.execute(() => Promise.resolve(7)), 7);
  const boom = new Error("down");
  await assert.rejects(breaker.execute(() => Promise.reject(boom)), (err) => err === boom);
  await assert.rejects(breaker.execute(() => Promise.reject(boom)), (err) => err === boom);
  assert.equal(breaker.state, "open");
  let called = false;
  await assert.rejects(
    breaker.execute(() => {
      called = true;
      return Promise.resolve(1);
    }),
    (err) => {
      assert.ok(err instanceof CircuitOpenError);
      assert.ok(isPlmError(err, "ERR_CIRCUIT_OPEN"));
      assert.equal(err.retryAfterMs, 10_000);
      assert.equal(err.retryable, true);
      return true;
    },
  );
  assert.equal(called, false);
  clock.advance(10_000);
  assert.equal(await breaker.execute(() => Promise.resolve(8)), 8);
  assert.deepEqual(changes, ["closed->open", "open->half_open", "half_open->closed"]);
});

Deno.test("CircuitBreaker.execute() counts a cancelled call as neither outcome", async () => {
  const { breaker, clock } = setup({ failureThreshold: 1 });
  const cancelled = new PlmError("ERR_CANCELLED", "Stopped");
  await assert.rejects(breaker.execute(() => Promise.reject(cancelled)));
  assert.equal(breaker.state, "closed");
  breaker.recordFailure();
  clock.advance(10_000);
  await assert.rejects(breaker.execute(() => Promise.reject(cancelled)));
  assert.equal(breaker.state, "half_open");
  assert.ok(breaker.isAvailable(), "the trial slot was given back");
});

Deno.test("CircuitBreaker validates its options", () => {
  assert.throws(() => new CircuitBreaker({ failureThreshold: 0 }), RangeError);
  assert.throws(() => new CircuitBreaker({ failureThreshold: 1.5 }), RangeError);
  assert.throws(() => new CircuitBreaker({ cooldownMs: -1 }), RangeError);
  assert.throws(() => new CircuitBreaker({ cooldownMs: Infinity }), RangeError);
  assert.throws(() => new CircuitBreaker({ halfOpenMaxCalls: 0 }), RangeError);
  assert.throws(() => new CircuitBreaker({ clock: {} as never }), TypeError);
  const defaults = new CircuitBreaker({ clock: new FakeClock() });
  for (let i = 0; i < 4; i++) defaults.recordFailure();
  assert.equal(defaults.state, "closed", "the default threshold is 5");
  defaults.recordFailure();
  assert.equal(defaults.remainingCooldownMs, 30_000, "the default cool-down is 30 s");
});

Deno.test("CircuitBreakers keeps one breaker per agent with a keyed hook", () => {
  const clock = new FakeClock();
  const changes: string[] = [];
  const breakers = new CircuitBreakers({
    failureThreshold: 1,
    cooldownMs: 100,
    clock,
    onStateChange: (id, from, to) => changes.push(`${id}:${from}->${to}`),
  });
  assert.equal(breakers.get("a"), breakers.get("a"));
  assert.equal(breakers.state("never-seen"), "closed");
  assert.ok(breakers.isAvailable("never-seen"));
  breakers.get("a").recordFailure();
  assert.equal(breakers.isAvailable("a"), false);
  assert.ok(breakers.isAvailable("b"));
  clock.advance(100);
  assert.equal(breakers.state("a"), "half_open");
  assert.deepEqual(changes, ["a:closed->open", "a:open->half_open"]);
  assert.throws(() => new CircuitBreakers({ cooldownMs: -5 }), RangeError);
});
