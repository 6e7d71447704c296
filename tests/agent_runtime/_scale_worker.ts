/**
 * The worker process of `scale_test.ts`, and the setup it shares with the test.
 *
 * Run as `deno run -A _scale_worker.ts LOCATION SCHEMA OWNER FIRST COUNT`
 * (`SCHEMA` is `-` for SQLite): opens the store, submits jobs FIRST ..
 * FIRST+COUNT-1 of {@link PLANNER} and {@link FLAKY_PER_WORKER} jobs of
 * {@link FLAKY}, prints `submitted`, then runs `AgentRuntime.start()` on the
 * real clock until SIGTERM, when it stops with a grace period, prints
 * `stopped` and exits 0.
 *
 * @module
 */
import {
  type Agent,
  AgentError,
  AgentRuntime,
  ControlPlane,
  defineAgent,
  type Identity,
  type JsonValue,
  openStore,
  type PolicySet,
  type Store,
  type TaskInput,
} from "../../agent_runtime/mod.ts";

/** The lease time to live: the reaper passes every half of it. */
export const LEASE_TTL_MS = 1_500;
/** Runs executing at once in each worker. */
export const CONCURRENCY = 8;
/** The planner's run budget for the hour: fewer than it submits, so the surplus is refused. */
export const PLANNER_BUDGET = 1_900;
/** Runs of the flaky requester each worker submits: every one fails, once. */
export const FLAKY_PER_WORKER = 5;
/** The flaky requester's autonomy drops one level after this many failures in a row. */
export const DEMOTE_AFTER = 8;

/** Only the actions the runs do are allowed. */
export const POLICIES: PolicySet = {
  rules: [{ id: "work", effect: "allow", actions: ["bom.update", "bom.check"] }],
};

/** The agent requester whose runs all succeed (within its budget). */
export const PLANNER: Identity = {
  subject: "planner",
  actorKind: "agent",
  roles: [],
  scopes: [],
};

/** The agent requester whose runs all fail: its streak and drop are shared state. */
export const FLAKY: Identity = { subject: "flaky", actorKind: "agent", roles: [], scopes: [] };

/** The task of planner job `n`. */
export function taskOf(n: number): TaskInput {
  return { action: "bom.update", resource: `bom:${n}`, capabilities: ["bom"], input: { n } };
}

/** The task of flaky job `n`. */
export function flakyTaskOf(n: number): TaskInput {
  return {
    action: "bom.check",
    resource: `bom:${n}`,
    capabilities: ["bom"],
    input: { n, fail: true },
  };
}

/**
 * An agent that works 1 to 4 ms of real time (honouring its signal), and fails
 * for good on a task whose input says `fail`.
 */
export function scaleAgent(): Agent {
  return defineAgent({
    id: "worker",
    capabilities: ["bom"],
    maxConcurrency: CONCURRENCY,
    invoke: (task, ctx) => {
      const input = task.input as { n: number; fail?: boolean };
      return new Promise<JsonValue>((resolve, reject) => {
        if (ctx.signal.aborted) return reject(ctx.signal.reason);
        const onAbort = () => {
          clearTimeout(id);
          reject(ctx.signal.reason);
        };
        const id = setTimeout(() => {
          ctx.signal.removeEventListener("abort", onAbort);
          if (input.fail === true) {
            reject(new AgentError("ERR_AGENT_FAILED", "flaky by design", { retryable: false }));
          } else {
            resolve({ n: input.n });
          }
        }, 1 + (input.n % 4));
        ctx.signal.addEventListener("abort", onAbort, { once: true });
      });
    },
  });
}

/** Opens the store at `location` and builds a control plane and runtime for `owner`. */
export async function openScaleWorker(location: string, schema: string | undefined, owner: string) {
  const store: Store = await openStore(location, schema === undefined ? {} : { schema });
  const controlPlane = new ControlPlane(store, {
    policies: POLICIES,
    autonomy: { defaultLevel: "L4" },
    autonomyOptions: { demoteAfter: DEMOTE_AFTER, floor: "L3" },
    agentRateLimit: { maxRuns: PLANNER_BUDGET, windowMs: 3_600_000 },
  });
  const runtime = new AgentRuntime({
    controlPlane,
    agents: [scaleAgent()],
    owner,
    concurrency: CONCURRENCY,
    leaseTtlMs: LEASE_TTL_MS,
    breakers: { failureThreshold: 1_000_000 },
    onError: (runId, err) => console.error(`dispatch of ${runId} failed:`, err),
  });
  // Submits only (no agents): the work goes through the queue, claimed by whichever worker.
  const submitter = new AgentRuntime({ controlPlane, agents: [], owner: `${owner}-submit` });
  return { store, controlPlane, runtime, submitter };
}

if (import.meta.main) {
  const [location, schemaArg, owner, firstArg, countArg] = Deno.args;
  if (
    location === undefined || schemaArg === undefined || owner === undefined ||
    firstArg === undefined || countArg === undefined
  ) {
    console.error("usage: _scale_worker.ts LOCATION SCHEMA|- OWNER FIRST COUNT");
    Deno.exit(2);
  }
  const first = Number(firstArg);
  const count = Number(countArg);
  const { store, runtime, submitter } = await openScaleWorker(
    location,
    schemaArg === "-" ? undefined : schemaArg,
    owner,
  );
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= runtime.stop({ graceMs: 5_000 }).then(async () => {
      await store.close();
      console.log("stopped");
      Deno.exit(0);
    });
  };
  Deno.addSignalListener("SIGTERM", stop);
  if (count > 0) {
    for (let n = first; n < first + count; n++) {
      await submitter.submit(taskOf(n), { identity: PLANNER, idempotencyKey: `job-${n}` });
    }
    for (let i = 0; i < FLAKY_PER_WORKER; i++) {
      const n = first + i;
      await submitter.submit(flakyTaskOf(n), { identity: FLAKY, idempotencyKey: `flaky-${n}` });
    }
  }
  console.log("submitted");
  runtime.start({ pollIntervalMs: 20, maxPollIntervalMs: 200 });
}
