import assert from "node:assert/strict";
import { FakeClock, FakeTimers, sleep } from "../../shared/mod.ts";
import { MAX_TIMEOUT_MS, scheduleOn } from "../../shared/_timer.ts";

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

Deno.test("systemTimer() waits out a delay longer than setTimeout keeps, in steps", () => {
  const armed: { ms: number; callback: () => void }[] = [];
  const cleared: number[] = [];
  const host = {
    set: (callback: () => void, ms: number) => armed.push({ ms, callback }) - 1,
    clear: (id: number) => void cleared.push(id),
  };
  let fired = 0;
  const cancel = scheduleOn(host, () => fired++, 2 * MAX_TIMEOUT_MS + 5);
  assert.deepEqual(armed.map((a) => a.ms), [MAX_TIMEOUT_MS], "never more than setTimeout keeps");
  armed[0]!.callback();
  armed[1]!.callback();
  assert.deepEqual(armed.map((a) => a.ms), [MAX_TIMEOUT_MS, MAX_TIMEOUT_MS, 5]);
  assert.equal(fired, 0);
  armed[2]!.callback();
  assert.equal(fired, 1);
  cancel();
  assert.deepEqual(cleared, [2], "cancel clears the step armed last");
  scheduleOn(host, () => fired++, 10);
  assert.equal(armed.at(-1)?.ms, 10, "a short delay is one step");
});
