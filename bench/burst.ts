/**
 * A burst on the README's setup: `--runs` tasks (default 10,000) submitted
 * to an {@link AgentRuntime} with the README's in-process agent (`clerk`,
 * `maxConcurrency` 1, it settles without I/O) on a file database, then
 * awaited. It reports:
 *
 * - whether every run succeeded, and whether they finished in the order they
 *   were submitted (first submitted, first finished);
 * - throughput: runs / seconds from the first submit to `idle()`;
 * - the longest gap between ticks of a `setInterval(10 ms)` probe, from
 *   before the first submit to after `idle()`: how long timers (heartbeats,
 *   timeouts, the worker loop) waited at worst;
 * - RSS and heap before the burst, at their peak (sampled by the probe) and
 *   after it (after a full GC when run with `--v8-flags=--expose-gc`).
 *
 * Submissions arrive `--batch` at a time (default 10), each batch in its own
 * turn of the event loop, as requests through a server do. `--batch 0`
 * submits everything from one loop without yielding: then the submitting
 * loop itself holds the event loop, whatever the dispatcher does.
 *
 * A timed run, not a test: it prints its figures and exits 1 when a run did
 * not succeed, the order was not kept or a timer gap passed 100 ms.
 *
 * ```sh
 * deno run -A --v8-flags=--expose-gc bench/burst.ts   # 10,000 runs, batches of 10
 * deno run -A bench/burst.ts --runs 2000 --batch 0
 * ```
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { parseArgs } from "node:util";
import { setImmediate } from "node:timers";
import {
  AgentRuntime,
  ControlPlane,
  defineAgent,
  EscalationLadder,
  type Identity,
  openStore,
} from "../agent_runtime/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { runs: { type: "string", default: "10000" }, batch: { type: "string", default: "10" } },
});
const RUNS = Number(values.runs);
const BATCH = Number(values.batch);
const MAX_GAP_MS = 100;

const dir = Deno.makeTempDirSync({ prefix: "plm_burst_" });
const db = await openStore(`${dir}/plm.db`); // WAL, migrations applied
// The README's control plane and runtime; maxQueue raised so the whole burst is accepted.
const controlPlane = new ControlPlane(db, {
  policies: {
    rules: [
      { id: "edits", effect: "allow", actions: ["bom.update"] },
      { id: "no-deletes", effect: "deny", actions: ["bom.delete"] },
    ],
  },
  autonomy: { defaultLevel: "L3" },
});
const runtime = new AgentRuntime({
  controlPlane,
  agents: [
    defineAgent({
      id: "clerk",
      capabilities: ["bom"],
      invoke: (task) => Promise.resolve(task.input),
    }),
  ],
  retry: { maxAttempts: 3, initialDelayMs: 500 },
  escalation: new EscalationLadder([{ kind: "tier", minTier: 2 }, { kind: "fail" }]),
  maxQueue: RUNS,
});
const planner: Identity = { subject: "planner", actorKind: "agent", roles: [], scopes: [] };

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const before = Deno.memoryUsage();
let peakRss = before.rss;
let peakHeap = before.heapUsed;
let last = performance.now();
let maxGap = 0;
const gaps: number[] = [];
const probe = setInterval(() => {
  const now = performance.now();
  maxGap = Math.max(maxGap, now - last);
  gaps.push(now - last);
  last = now;
  const memory = Deno.memoryUsage();
  peakRss = Math.max(peakRss, memory.rss);
  peakHeap = Math.max(peakHeap, memory.heapUsed);
}, 10);
await new Promise((resolve) => setTimeout(resolve, 50)); // the probe is ticking

const started = performance.now();
const finished: number[] = [];
const waits: Promise<unknown>[] = [];
for (let n = 0; n < RUNS; n++) {
  const id = await runtime.submit(
    { action: "bom.update", resource: `bom:${n}`, capabilities: ["bom"], input: { line: n } },
    { identity: planner },
  );
  waits.push(runtime.wait(id).then(() => finished.push(n)));
  if (BATCH > 0 && (n + 1) % BATCH === 0) await new Promise((resolve) => setImmediate(resolve));
}
await Promise.all(waits);
await runtime.idle();
const seconds = (performance.now() - started) / 1000;
await new Promise((resolve) => setTimeout(resolve, 50)); // one last probe tick
clearInterval(probe);
(globalThis as { gc?: () => void }).gc?.(); // with --v8-flags=--expose-gc: what stays retained
const after = Deno.memoryUsage();

const count = new DatabaseSync(`${dir}/plm.db`, { readOnly: true });
const succeeded = Number(
  (count.prepare("SELECT count(*) AS n FROM runs WHERE state = 'succeeded'").get() as { n: number })
    .n,
);
count.close();
const inOrder = finished.every((n, i) => n === i);
let displaced = 0;
finished.forEach((n, i) => (displaced = Math.max(displaced, Math.abs(n - i))));

function percentile(p: number): number {
  const sorted = gaps.toSorted((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
}

console.log(
  [
    `burst: ${RUNS} runs, README agent, file database (WAL, NORMAL), ` +
    `submitted ${BATCH > 0 ? `${BATCH} per turn of the event loop` : "from one loop"}`,
    `  succeeded:      ${succeeded} of ${RUNS}`,
    `  finish order:   ${inOrder ? "as submitted" : `out of order, by up to ${displaced} places`}`,
    `  throughput:     ${(RUNS / seconds).toFixed(0)} runs/s (${seconds.toFixed(2)} s)`,
    `  timer gaps:     max ${maxGap.toFixed(1)} ms, p99 ${percentile(0.99).toFixed(1)} ms, ` +
    `p50 ${percentile(0.5).toFixed(1)} ms, ${gaps.filter((g) => g > MAX_GAP_MS).length} over ` +
    `${MAX_GAP_MS} ms (setInterval 10 ms, ${gaps.length} ticks)`,
    `  RSS:            ${mib(before.rss)} MiB before, ${mib(peakRss)} MiB peak, ${
      mib(after.rss)
    } MiB after`,
    `  heap used:      ${mib(before.heapUsed)} MiB before, ${mib(peakHeap)} MiB peak, ${
      mib(after.heapUsed)
    } MiB after`,
  ].join("\n"),
);
await db.close();
Deno.removeSync(dir, { recursive: true });
const ok = succeeded === RUNS && inOrder && maxGap <= MAX_GAP_MS;
if (!ok) console.log("FAIL");
Deno.exit(ok ? 0 : 1);
