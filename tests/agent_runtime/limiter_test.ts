import assert from "node:assert/strict";
import { ConcurrencyLimiter, InFlightCounter, isPlmError } from "../../agent_runtime/mod.ts";

/** Lets every pending microtask run; no timers. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

/** A task that starts, records itself, and finishes only when told to. */
function instrumented(limiter: ConcurrencyLimiter) {
  let active = 0;
  let peak = 0;
  const started: number[] = [];
  const finish = new Map<number, (value: number) => void>();
  const task = (n: number) => () => {
    active++;
    peak = Math.max(peak, active);
    assert.ok(limiter.inFlight <= limiter.concurrency);
    started.push(n);
    const { promise, resolve } = Promise.withResolvers<number>();
    finish.set(n, (value) => {
      active--;
      resolve(value);
    });
    return promise;
  };
  return {
    task,
    started,
    finish,
    get active() {
      return active;
    },
    get peak() {
      return peak;
    },
  };
}

Deno.test("ConcurrencyLimiter never runs more than `concurrency` calls at once", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 3 });
  const probe = instrumented(limiter);
  const results = Array.from({ length: 20 }, (_, n) => limiter.run(probe.task(n)));
  await settle();
  assert.equal(probe.active, 3);
  assert.equal(limiter.inFlight, 3);
  assert.equal(limiter.queued, 17);
  // finish in a scrambled order, checking the bound after each step
  const order = [2, 0, 1];
  while (probe.finish.size > 0) {
    const running = [...probe.finish.keys()];
    const pick = running[(order[running.length % 3] ?? 0) % running.length] as number;
    const done = probe.finish.get(pick);
    probe.finish.delete(pick);
    done?.(pick * 2);
    await settle();
    assert.ok(probe.active <= 3, `active ${probe.active}`);
  }
  assert.deepEqual(await Promise.all(results), Array.from({ length: 20 }, (_, n) => n * 2));
  assert.equal(probe.peak, 3);
  assert.equal(limiter.inFlight, 0);
  assert.equal(limiter.queued, 0);
});

Deno.test("ConcurrencyLimiter starts queued calls in FIFO order", async (t) => {
  await t.step("concurrency 1", async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 1 });
    const probe = instrumented(limiter);
    const all = Array.from({ length: 6 }, (_, n) => limiter.run(probe.task(n)));
    for (let n = 0; n < 6; n++) {
      await settle();
      probe.finish.get(n)?.(n);
    }
    await Promise.all(all);
    assert.deepEqual(probe.started, [0, 1, 2, 3, 4, 5]);
  });
  await t.step("concurrency 2, finishing last-started first", async () => {
    const limiter = new ConcurrencyLimiter({ concurrency: 2 });
    const probe = instrumented(limiter);
    const all = Array.from({ length: 6 }, (_, n) => limiter.run(probe.task(n)));
    await settle();
    while (probe.finish.size > 0) {
      const last = Math.max(...probe.finish.keys());
      probe.finish.get(last)?.(last);
      probe.finish.delete(last);
      await settle();
    }
    await Promise.all(all);
    assert.deepEqual(probe.started, [0, 1, 2, 3, 4, 5]);
  });
});

Deno.test("ConcurrencyLimiter refuses a call with ERR_QUEUE_FULL before touching it", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 1, maxQueue: 2 });
  const probe = instrumented(limiter);
  const accepted = [0, 1, 2].map((n) => limiter.run(probe.task(n)));
  assert.equal(limiter.queued, 2);
  let touched = false;
  await assert.rejects(
    limiter.run(() => {
      touched = true;
      return 0;
    }),
    (err) => isPlmError(err, "ERR_QUEUE_FULL"),
  );
  assert.equal(touched, false);
  assert.equal(limiter.queued, 2);
  assert.equal(limiter.inFlight, 1);
  for (let n = 0; n < 3; n++) {
    await settle();
    probe.finish.get(n)?.(n);
  }
  assert.deepEqual(await Promise.all(accepted), [0, 1, 2]);
});

Deno.test("ConcurrencyLimiter with maxQueue 0 only runs calls that find a free slot", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 2, maxQueue: 0 });
  const probe = instrumented(limiter);
  const a = limiter.run(probe.task(0));
  const b = limiter.run(probe.task(1));
  await assert.rejects(limiter.run(() => 1), (err) => isPlmError(err, "ERR_QUEUE_FULL"));
  await settle();
  probe.finish.get(0)?.(0);
  await a;
  assert.equal(await limiter.run(() => 5), 5, "a freed slot takes a new call");
  probe.finish.get(1)?.(1);
  await b;
});

Deno.test("ConcurrencyLimiter frees the slot when a call fails", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 1 });
  const boom = new Error("boom");
  await assert.rejects(limiter.run(() => Promise.reject(boom)), (err) => err === boom);
  await assert.rejects(
    limiter.run(() => {
      throw boom;
    }),
    (err) => err === boom,
  );
  assert.equal(limiter.inFlight, 0);
  assert.equal(await limiter.run(() => "sync value"), "sync value");
});

Deno.test("ConcurrencyLimiter.run() takes an aborted call out of the queue", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 1 });
  const probe = instrumented(limiter);
  const controller = new AbortController();
  const first = limiter.run(probe.task(0));
  const cancelled = limiter.run(probe.task(1), { signal: controller.signal });
  const third = limiter.run(probe.task(2), { signal: new AbortController().signal });
  assert.equal(limiter.queued, 2);
  controller.abort(new Error("user cancelled"));
  await assert.rejects(
    cancelled,
    (err) => isPlmError(err, "ERR_CANCELLED") && (err.cause as Error).message === "user cancelled",
  );
  assert.equal(limiter.queued, 1);
  await settle();
  probe.finish.get(0)?.(0);
  await settle();
  probe.finish.get(2)?.(2);
  assert.deepEqual(await Promise.all([first, third]), [0, 2]);
  assert.deepEqual(probe.started, [0, 2]);
  assert.equal(limiter.inFlight, 0);
  const already = AbortSignal.abort();
  const holder = limiter.run(probe.task(3));
  await assert.rejects(
    limiter.run(probe.task(4), { signal: already }),
    (err) => isPlmError(err, "ERR_CANCELLED"),
  );
  await settle();
  probe.finish.get(3)?.(3);
  await holder;
  assert.deepEqual(probe.started, [0, 2, 3]);
});

Deno.test("ConcurrencyLimiter.tryAcquire() takes a free slot or none", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 2 });
  const r1 = limiter.tryAcquire();
  const r2 = limiter.tryAcquire();
  assert.ok(r1 !== undefined && r2 !== undefined);
  assert.equal(limiter.tryAcquire(), undefined);
  assert.equal(limiter.inFlight, 2);
  let ran = false;
  const queued = limiter.run(() => {
    ran = true;
  });
  await settle();
  assert.equal(ran, false);
  r1();
  r1(); // a second release does nothing
  await queued;
  assert.equal(ran, true);
  assert.equal(limiter.inFlight, 1, "only r2 still holds a slot");
  r2();
  assert.equal(limiter.inFlight, 0);
});

Deno.test("ConcurrencyLimiter handles long queues (compaction keeps FIFO)", async () => {
  const limiter = new ConcurrencyLimiter({ concurrency: 1 });
  const order: number[] = [];
  const all = Array.from({ length: 5_000 }, (_, n) => limiter.run(() => order.push(n)));
  await Promise.all(all);
  assert.equal(order.length, 5_000);
  assert.ok(order.every((v, i) => v === i));
  assert.equal(limiter.queued, 0);
});

Deno.test("ConcurrencyLimiter validates its options", () => {
  assert.throws(() => new ConcurrencyLimiter({ concurrency: 0 }), RangeError);
  assert.throws(() => new ConcurrencyLimiter({ concurrency: 1.5 }), RangeError);
  assert.throws(() => new ConcurrencyLimiter({ concurrency: Infinity }), RangeError);
  assert.throws(() => new ConcurrencyLimiter({ maxQueue: -1 }), RangeError);
  assert.throws(() => new ConcurrencyLimiter({ maxQueue: 0.5 }), RangeError);
  const defaults = new ConcurrencyLimiter();
  assert.equal(defaults.concurrency, 1);
});

Deno.test("InFlightCounter counts per key and in total", () => {
  const counter = new InFlightCounter();
  counter.increment("a");
  counter.increment("a");
  assert.ok(counter.tryIncrement("b", 1));
  assert.ok(!counter.tryIncrement("b", 1));
  assert.deepEqual([counter.inFlight("a"), counter.inFlight("b"), counter.total], [2, 1, 3]);
  counter.decrement("a");
  counter.decrement("b");
  assert.deepEqual([counter.inFlight("a"), counter.inFlight("b"), counter.total], [1, 0, 1]);
  assert.throws(() => counter.decrement("b"), RangeError);
  assert.equal(counter.inFlight("never"), 0);
});
