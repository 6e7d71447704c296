import assert from "node:assert/strict";
import { seededRandom } from "../_seeded_random.ts";
import {
  DEFAULT_NON_RETRYABLE_CODES,
  nextDelay,
  RetryExhaustedError,
  RetryPolicy,
} from "../../agent_runtime/mod.ts";

// ---------------------------------------------------------------------------
// RetryPolicy

Deno.test("RetryPolicy has Temporal's defaults", () => {
  const policy = new RetryPolicy();
  assert.deepEqual(
    [
      policy.maxAttempts,
      policy.initialDelayMs,
      policy.backoffCoefficient,
      policy.maxDelayMs,
      policy.jitter,
      policy.retryBudget,
    ],
    [3, 1_000, 2, 100_000, "full", undefined],
  );
  assert.deepEqual(policy.nonRetryableCodes, DEFAULT_NON_RETRYABLE_CODES);
  assert.ok(Object.isFrozen(policy));
  assert.equal(new RetryPolicy({ initialDelayMs: 50 }).maxDelayMs, 5_000);
});

Deno.test("RetryPolicy rejects bad options once, at construction", async (t) => {
  await t.step("range errors", () => {
    for (
      const options of [
        { maxAttempts: 0 },
        { maxAttempts: 1.5 },
        { initialDelayMs: -1 },
        { initialDelayMs: Infinity },
        { backoffCoefficient: 0.9 },
        { backoffCoefficient: NaN },
        { maxDelayMs: 10, initialDelayMs: 100 },
        { maxDelayMs: Infinity },
        { retryBudget: 0 },
      ]
    ) assert.throws(() => new RetryPolicy(options), RangeError, JSON.stringify(options));
  });
  await t.step("type errors", () => {
    assert.throws(() => new RetryPolicy({ jitter: "some" as never }), TypeError);
    assert.throws(() => new RetryPolicy({ nonRetryableCodes: "ERR_X" as never }), TypeError);
    assert.throws(() => new RetryPolicy({ nonRetryableCodes: [1] as never }), TypeError);
  });
  await t.step("Infinity attempts are allowed", () => {
    assert.equal(new RetryPolicy({ maxAttempts: Infinity }).maxAttempts, Infinity);
  });
});

// ---------------------------------------------------------------------------
// nextDelay

Deno.test("nextDelay() grows exponentially and caps at maxDelayMs (jitter none)", () => {
  const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 1_000, jitter: "none" });
  const delays = [1, 2, 3, 4, 5, 6].map((n) => nextDelay(policy, n, () => 0.5));
  assert.deepEqual(delays, [100, 200, 400, 800, 1_000, 1_000]);
  const slow = new RetryPolicy({ initialDelayMs: 100, backoffCoefficient: 1, jitter: "none" });
  assert.deepEqual([1, 2, 3].map((n) => nextDelay(slow, n, Math.random)), [100, 100, 100]);
});

Deno.test("nextDelay() with full jitter stays in [0, base] and spreads over it", () => {
  const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 3_000 });
  const random = seededRandom(7);
  const replay = seededRandom(7);
  for (let attempt = 1; attempt <= 8; attempt++) {
    const base = Math.min(3_000, 100 * 2 ** (attempt - 1));
    const samples = Array.from({ length: 200 }, () => nextDelay(policy, attempt, random));
    samples.forEach((d) => assert.equal(d, replay() * base));
    assert.ok(samples.every((d) => d >= 0 && d <= base), `attempt ${attempt} out of bounds`);
    assert.ok(Math.min(...samples) < base * 0.1, `attempt ${attempt} never low`);
    assert.ok(Math.max(...samples) > base * 0.9, `attempt ${attempt} never high`);
  }
});

Deno.test("nextDelay() with equal jitter stays in [base / 2, base]", () => {
  const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 3_000, jitter: "equal" });
  const random = seededRandom(11);
  const replay = seededRandom(11);
  for (let attempt = 1; attempt <= 8; attempt++) {
    const base = Math.min(3_000, 100 * 2 ** (attempt - 1));
    const samples = Array.from({ length: 200 }, () => nextDelay(policy, attempt, random));
    samples.forEach((d) => assert.equal(d, base / 2 + replay() * base / 2));
    assert.ok(samples.every((d) => d >= base / 2 && d <= base), `attempt ${attempt} out of bounds`);
    assert.ok(Math.min(...samples) < base * 0.55);
    assert.ok(Math.max(...samples) > base * 0.95);
  }
});

Deno.test("nextDelay() never exceeds maxDelayMs, jitter included", () => {
  for (const jitter of ["full", "equal", "none"] as const) {
    const policy = new RetryPolicy({ initialDelayMs: 250, maxDelayMs: 4_000, jitter });
    for (const attempt of [1, 5, 6, 50, 5_000]) {
      for (const r of [0, 0.5, 0.999999, 1]) {
        const d = nextDelay(policy, attempt, () => r);
        assert.ok(d >= 0 && d <= 4_000, `${jitter} attempt ${attempt} r ${r}: ${d}`);
      }
    }
    assert.equal(nextDelay(policy, 5_000, () => 1), 4_000, `${jitter} reaches the cap`);
  }
  const zero = new RetryPolicy({ initialDelayMs: 0, backoffCoefficient: 10, jitter: "none" });
  assert.equal(nextDelay(zero, 1_000, () => 1), 0, "0 * Infinity is not NaN");
});

Deno.test("nextDelay() rejects a bad attempt or random value", () => {
  const policy = new RetryPolicy();
  assert.throws(() => nextDelay(policy, 0, () => 0.5), RangeError);
  assert.throws(() => nextDelay(policy, 1.5, () => 0.5), RangeError);
  assert.throws(() => nextDelay(policy, 1, () => 1.5), RangeError);
  assert.throws(() => nextDelay(policy, 1, () => NaN), RangeError);
});

Deno.test("RetryExhaustedError keeps the attempts, the reason and the last error", () => {
  const last = new Error("flaky");
  const err = new RetryExhaustedError("Cannot retry as the budget is spent", {
    cause: last,
    attempts: 4,
    reason: "budget",
  });
  assert.deepEqual([err.code, err.attempts, err.reason, err.cause], [
    "ERR_RETRY_EXHAUSTED",
    4,
    "budget",
    last,
  ]);
});
