/**
 * The worker of `crash_test.ts`, and the setup it shares with the test.
 *
 * Run as `deno run -A _crash_worker.ts DB SIDE_FILE`: opens the file database,
 * submits {@link RUNS} runs as owner `w1` on the real clock and prints
 * `succeeded <count>` after each run it finishes, until the test kills it.
 *
 * @module
 */
import {
  type Agent,
  AgentRuntime,
  type Clock,
  ControlPlane,
  defineAgent,
  type Identity,
  type JsonValue,
  openStore,
  type PolicySet,
  type TaskInput,
} from "../../agent_runtime/mod.ts";

/** How many runs the workers submit, keyed `job-0` ... `job-199`. */
export const RUNS = 200;
/** The lease time to live of both workers. */
export const LEASE_TTL_MS = 2_000;
/** Runs executing at once in each worker. */
export const CONCURRENCY = 8;

/** Only the action the runs do is allowed. */
export const POLICIES: PolicySet = {
  rules: [{ id: "work", effect: "allow", actions: ["bom.update"] }],
};

/** Who submits every run. */
export const SVC: Identity = { subject: "planner", actorKind: "service", roles: [], scopes: [] };

/** The idempotency key of job `n`. */
export function keyOf(n: number): string {
  return `job-${n}`;
}

/** The task of job `n`: the same in both processes (the idempotency digest covers it). */
export function taskOf(n: number): TaskInput {
  return { action: "bom.update", resource: `bom:${n}`, capabilities: ["bom"], input: { n } };
}

/**
 * An agent that appends `runId attempt owner` to `sideFile` when invoked, then
 * works 10 to 30 ms of real time, honouring its signal.
 */
export function recordingAgent(owner: string, sideFile: string): Agent {
  return defineAgent({
    id: "worker",
    capabilities: ["bom"],
    maxConcurrency: CONCURRENCY,
    invoke: (task, ctx) => {
      // One small O_APPEND write per invocation: a kill cannot tear it.
      Deno.writeTextFileSync(sideFile, `${ctx.runId} ${ctx.attempt} ${owner}\n`, { append: true });
      const n = (task.input as { n: number }).n;
      return new Promise<JsonValue>((resolve, reject) => {
        if (ctx.signal.aborted) return reject(ctx.signal.reason);
        const onAbort = () => {
          clearTimeout(id);
          reject(ctx.signal.reason);
        };
        const id = setTimeout(() => {
          ctx.signal.removeEventListener("abort", onAbort);
          resolve({ n, by: owner });
        }, 10 + (n * 7) % 21);
        ctx.signal.addEventListener("abort", onAbort, { once: true });
      });
    },
  });
}

/** Opens the store at `path` and builds a control plane and runtime for `owner`. */
export async function openWorker(path: string, owner: string, sideFile: string, clock?: Clock) {
  const db = await openStore(path);
  const controlPlane = new ControlPlane(db, {
    policies: POLICIES,
    ...(clock === undefined ? {} : { clock }),
  });
  const runtime = new AgentRuntime({
    controlPlane,
    agents: [recordingAgent(owner, sideFile)],
    owner,
    concurrency: CONCURRENCY,
    leaseTtlMs: LEASE_TTL_MS,
    ...(clock === undefined ? {} : { clock }),
    onError: (runId, err) => console.error(`dispatch of ${runId} failed:`, err),
  });
  return { db, controlPlane, runtime };
}

if (import.meta.main) {
  const [path, sideFile] = Deno.args;
  if (path === undefined || sideFile === undefined) {
    console.error("usage: _crash_worker.ts DB SIDE_FILE");
    Deno.exit(2);
  }
  const { db, runtime } = await openWorker(path, "w1", sideFile);
  let succeeded = 0;
  const waits: Promise<void>[] = [];
  for (let n = 0; n < RUNS; n++) {
    const id = await runtime.submit(taskOf(n), { identity: SVC, idempotencyKey: keyOf(n) });
    waits.push(
      runtime.wait(id).then((run) => {
        if (run.state === "succeeded") console.log(`succeeded ${++succeeded}`);
      }),
    );
  }
  await Promise.all(waits);
  await runtime.idle();
  console.log("all done");
  await db.close();
}
