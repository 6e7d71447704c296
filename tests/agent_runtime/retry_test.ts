import assert from "node:assert/strict";
import { seededRandom } from "../_seeded_random.ts";
import {
  AgentError,
  DEFAULT_NON_RETRYABLE_CODES,
  errorCode,
  FakeClock,
  isPlmError,
  nextDelay,
  PlmError,
  retry,
  RetryBudget,
  RetryExhaustedError,
  type RetryOptions,
  RetryPolicy,
  shouldRetry,
} from "../../agent_runtime/mod.ts";

/** A fake sleeper: records each wait and advances the clock; never waits for real. */
function fakeSleep(clock: FakeClock) {
  const waits: number[] = [];
  const sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    if (signal?.aborted) return Promise.reject(signal.reason);
    waits.push(ms);
    clock.advance(ms);
    return Promise.resolve();
  };
  return { waits, sleep };
}

function failing(errors: unknown[], result = "ok") {
  const attempts: number[] = [];
  const fn = (attempt: number): Promise<string> => {
    attempts.push(attempt);
    const error = errors[attempt - 1];
    return error === undefined ? Promise.resolve(result) : Promise.reject(error);
  };
  return { attempts, fn };
}

function harness(extra: Partial<RetryOptions> = {}) {
  const clock = new FakeClock(0);
  const { waits, sleep } = fakeSleep(clock);
  const options: RetryOptions = { clock, sleep, random: seededRandom(42), ...extra };
  return { clock, waits, options };
}

const flaky = () => new Error("flaky");

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

// ---------------------------------------------------------------------------
// shouldRetry and errorCode

Deno.test("errorCode() reads a string code or defaults to ERR_AGENT_FAILED", () => {
  assert.equal(errorCode(new PlmError("ERR_TIMEOUT", "Slow")), "ERR_TIMEOUT");
  assert.equal(errorCode({ code: "ERR_VENDOR_X" }), "ERR_VENDOR_X");
  assert.equal(errorCode({ code: 42 }), "ERR_AGENT_FAILED");
  assert.equal(errorCode(new Error("x")), "ERR_AGENT_FAILED");
  assert.equal(errorCode("text"), "ERR_AGENT_FAILED");
  assert.equal(errorCode(null), "ERR_AGENT_FAILED");
});

Deno.test("shouldRetry() decides by code, retryable flag, attempts and budget", async (t) => {
  const policy = new RetryPolicy({ maxAttempts: 3, nonRetryableCodes: ["ERR_FORBIDDEN"] });
  await t.step("retryable errors until maxAttempts", () => {
    assert.ok(shouldRetry(policy, flaky(), 1));
    assert.ok(shouldRetry(policy, flaky(), 2));
    assert.ok(!shouldRetry(policy, flaky(), 3));
  });
  await t.step("by code, not by class", () => {
    assert.ok(!shouldRetry(policy, new PlmError("ERR_FORBIDDEN", "No"), 1));
    assert.ok(!shouldRetry(policy, { code: "ERR_FORBIDDEN" }, 1), "a plain object with the code");
    assert.ok(shouldRetry(policy, new PlmError("ERR_CANCELLED", "Stop"), 1), "defaults replaced");
  });
  await t.step("retryable: false", () => {
    const err = new AgentError("ERR_AGENT_FAILED", "Bad input", { retryable: false });
    assert.ok(!shouldRetry(policy, err, 1));
    assert.ok(!shouldRetry(policy, { retryable: false }, 1));
    assert.ok(shouldRetry(policy, new AgentError("ERR_AGENT_FAILED", "Down"), 1));
  });
  await t.step("budget", () => {
    const budget = new RetryBudget(2);
    assert.ok(shouldRetry(policy, flaky(), 1, budget));
    budget.tryConsume();
    budget.tryConsume();
    assert.ok(!shouldRetry(policy, flaky(), 1, budget));
  });
});

// ---------------------------------------------------------------------------
// retry

Deno.test("retry() returns the first success without waiting", async () => {
  const { waits, options } = harness();
  const { attempts, fn } = failing([]);
  assert.equal(await retry(fn, new RetryPolicy(), options), "ok");
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(waits, []);
});

Deno.test("retry() waits the backoff sequence between attempts", async (t) => {
  await t.step("jitter none: exact sequence", async () => {
    const { waits, clock, options } = harness();
    const policy = new RetryPolicy({ maxAttempts: 5, initialDelayMs: 100, jitter: "none" });
    const { attempts, fn } = failing([flaky(), flaky(), flaky(), flaky()]);
    assert.equal(await retry(fn, policy, options), "ok");
    assert.deepEqual(attempts, [1, 2, 3, 4, 5]);
    assert.deepEqual(waits, [100, 200, 400, 800]);
    assert.equal(clock.now(), 1_500);
  });
  await t.step("full jitter: the seeded sequence, each within its base", async () => {
    const { waits, options } = harness({ random: seededRandom(3) });
    const policy = new RetryPolicy({ maxAttempts: 5, initialDelayMs: 100 });
    const { fn } = failing([flaky(), flaky(), flaky(), flaky()]);
    await retry(fn, policy, options);
    const replay = seededRandom(3);
    assert.deepEqual(waits, [100, 200, 400, 800].map((base) => replay() * base));
    waits.forEach((w, i) => assert.ok(w >= 0 && w <= 100 * 2 ** i));
  });
  await t.step("equal jitter: within [base / 2, base]", async () => {
    const { waits, options } = harness({ random: seededRandom(5) });
    const policy = new RetryPolicy({ maxAttempts: 5, initialDelayMs: 100, jitter: "equal" });
    const { fn } = failing([flaky(), flaky(), flaky(), flaky()]);
    await retry(fn, policy, options);
    waits.forEach((w, i) => assert.ok(w >= 50 * 2 ** i && w <= 100 * 2 ** i, `${i}: ${w}`));
  });
});

Deno.test("retry() throws RetryExhaustedError with the last error as cause", async () => {
  const { waits, options } = harness();
  const policy = new RetryPolicy({ maxAttempts: 3, initialDelayMs: 10, jitter: "none" });
  const errors = [flaky(), flaky(), flaky()];
  const { attempts, fn } = failing(errors);
  await assert.rejects(retry(fn, policy, options), (err) => {
    assert.ok(err instanceof RetryExhaustedError);
    assert.ok(isPlmError(err, "ERR_RETRY_EXHAUSTED"));
    assert.equal(err.name, "RetryExhaustedError");
    assert.equal(err.cause, errors[2]);
    assert.equal(err.attempts, 3);
    assert.equal(err.reason, "max_attempts");
    return true;
  });
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.deepEqual(waits, [10, 20]);
});

Deno.test("retry() stops at once on a non-retryable error and rethrows it", async (t) => {
  const policy = new RetryPolicy({ maxAttempts: 5, initialDelayMs: 10 });
  for (
    const [name, error] of [
      ["default code ERR_CANCELLED", new PlmError("ERR_CANCELLED", "Stop")],
      ["default code ERR_FORBIDDEN", { code: "ERR_FORBIDDEN", message: "plain object" }],
      ["retryable: false", new AgentError("ERR_AGENT_FAILED", "Bad", { retryable: false })],
    ] as const
  ) {
    await t.step(name, async () => {
      const { waits, options } = harness();
      const { attempts, fn } = failing([error]);
      await assert.rejects(retry(fn, policy, options), (err) => err === error);
      assert.deepEqual(attempts, [1]);
      assert.deepEqual(waits, []);
    });
  }
  await t.step("a custom list", async () => {
    const { options } = harness();
    const custom = new RetryPolicy({ nonRetryableCodes: ["ERR_VENDOR_QUOTA"] });
    const error = { code: "ERR_VENDOR_QUOTA" };
    const { attempts, fn } = failing([error]);
    await assert.rejects(retry(fn, custom, options), (err) => err === error);
    assert.deepEqual(attempts, [1]);
  });
});

Deno.test("retry() honours retryAfterMs, capped at maxDelayMs", async (t) => {
  const policy = new RetryPolicy({ initialDelayMs: 100, maxDelayMs: 10_000, jitter: "none" });
  const limited = (retryAfterMs: number) =>
    new AgentError("ERR_AGENT_FAILED", "Too many requests", { retryAfterMs });
  await t.step("waits the longer Retry-After", async () => {
    const { waits, options } = harness();
    await retry(failing([limited(5_000)]).fn, policy, options);
    assert.deepEqual(waits, [5_000]);
  });
  await t.step("caps a Retry-After above maxDelayMs", async () => {
    const { waits, options } = harness();
    await retry(failing([limited(60_000)]).fn, policy, options);
    assert.deepEqual(waits, [10_000]);
  });
  await t.step("keeps the backoff when Retry-After is shorter", async () => {
    const { waits, options } = harness();
    await retry(failing([limited(10)]).fn, policy, options);
    assert.deepEqual(waits, [100]);
  });
});

Deno.test("retry() shares a run's budget across calls (escalation steps)", async () => {
  const policy = new RetryPolicy({ maxAttempts: 3, initialDelayMs: 1, retryBudget: 4 });
  const budget = new RetryBudget(policy.retryBudget ?? Infinity);
  const { options } = harness({ budget });
  const step1 = failing([flaky(), flaky(), flaky()]);
  await assert.rejects(
    retry(step1.fn, policy, options),
    (err) => err instanceof RetryExhaustedError && err.reason === "max_attempts",
  );
  assert.equal(budget.remaining, 1);
  const last = flaky();
  const step2 = failing([last, flaky()]);
  await assert.rejects(retry(step2.fn, policy, options), (err) => {
    assert.ok(err instanceof RetryExhaustedError);
    assert.equal(err.reason, "budget");
    assert.equal(err.attempts, 1);
    assert.equal(err.cause, last);
    return true;
  });
  assert.deepEqual(step2.attempts, [1]);
  const step3 = failing([]);
  await assert.rejects(retry(step3.fn, policy, options), (err) => {
    assert.ok(err instanceof RetryExhaustedError);
    assert.equal(err.reason, "budget");
    assert.equal(err.attempts, 0);
    return true;
  });
  assert.deepEqual(step3.attempts, [], "no attempt once the budget is spent");
  assert.equal(budget.used, 4);
});

Deno.test("RetryBudget counts attempts and refuses past its maximum", () => {
  const budget = new RetryBudget(2);
  assert.ok(budget.tryConsume());
  assert.ok(budget.tryConsume());
  assert.ok(!budget.tryConsume());
  assert.deepEqual([budget.used, budget.remaining], [2, 0]);
  assert.throws(() => new RetryBudget(0), RangeError);
  assert.throws(() => new RetryBudget(2.5), RangeError);
});

Deno.test("retry() makes no retry whose wait would end at or after the deadline", async () => {
  const { waits, options } = harness({ deadline: 350 });
  const policy = new RetryPolicy({ maxAttempts: 10, initialDelayMs: 100, jitter: "none" });
  const { attempts, fn } = failing(Array.from({ length: 10 }, flaky));
  await assert.rejects(
    retry(fn, policy, options),
    (err) => err instanceof RetryExhaustedError && err.reason === "deadline" && err.attempts === 3,
  );
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.deepEqual(waits, [100, 200]); // ends at 100, then 300 (< 350); then 300 + 400 >= 350
});

Deno.test("retry() stops with ERR_CANCELLED when its signal aborts", async (t) => {
  const policy = new RetryPolicy({ maxAttempts: 5, initialDelayMs: 10 });
  await t.step("before the first attempt", async () => {
    const controller = new AbortController();
    controller.abort(new Error("stop"));
    const { options } = harness({ signal: controller.signal });
    const { attempts, fn } = failing([]);
    await assert.rejects(retry(fn, policy, options), (err) => isPlmError(err, "ERR_CANCELLED"));
    assert.deepEqual(attempts, []);
  });
  await t.step("during an attempt", async () => {
    const controller = new AbortController();
    const { options, waits } = harness({ signal: controller.signal });
    const fn = () => {
      controller.abort();
      return Promise.reject(flaky());
    };
    await assert.rejects(retry(fn, policy, options), (err) => isPlmError(err, "ERR_CANCELLED"));
    assert.deepEqual(waits, []);
  });
  await t.step("during the wait", async () => {
    const controller = new AbortController();
    const clock = new FakeClock();
    const sleep = (_ms: number, signal?: AbortSignal) => {
      controller.abort(new Error("stop"));
      return Promise.reject(signal?.reason);
    };
    const { attempts, fn } = failing([flaky(), flaky()]);
    await assert.rejects(
      retry(fn, policy, { clock, sleep, signal: controller.signal }),
      (err) => isPlmError(err, "ERR_CANCELLED") && (err.cause as Error).message === "stop",
    );
    assert.deepEqual(attempts, [1]);
  });
});

Deno.test("retry() tells onRetry about each wait", async () => {
  const events: [number, number][] = [];
  const { options } = harness({ onRetry: (e) => events.push([e.attempt, e.delayMs]) });
  const policy = new RetryPolicy({ maxAttempts: 3, initialDelayMs: 5, jitter: "none" });
  await retry(failing([flaky(), flaky()]).fn, policy, options);
  assert.deepEqual(events, [[1, 5], [2, 10]]);
});
