import assert from "node:assert/strict";
import { FakeClock, FakeTimers, sleep, systemTimer } from "../../shared/mod.ts";

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

Deno.test("systemTimer() waits out a delay longer than setTimeout keeps instead of firing at once", async () => {
  let fired = false;
  const cancel = systemTimer(() => (fired = true), 2 ** 31 + 5); // setTimeout alone fires in ~1 ms
  let soon = false;
  const cancelSoon = systemTimer(() => (soon = true), 5);
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.equal(soon, true, "a short timer fires");
  assert.equal(fired, false, "the long one does not");
  cancel();
  cancelSoon();
});
