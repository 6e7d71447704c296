/**
 * A run transition with its audit record, on a file database (WAL,
 * synchronous NORMAL): each transition is one `BEGIN IMMEDIATE` transaction
 * that reads the run, updates it with its version check and appends the
 * hash-chained audit record.
 */
import { AuditLog, openDatabase, RunStore, transition } from "../control_plane/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "runs_bench_" });
const db = openDatabase(`${dir}/runs.db`);
const audit = new AuditLog(db);
const runs = new RunStore(db, { audit });
const actor = { subject: "bench", kind: "service" } as const;
const requester = { subject: "bench", actorKind: "service", roles: [], scopes: [] } as const;
const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const task = {
  action: "bom.update",
  resource: "bom:1",
  capabilities: [],
  input: { line: 1 },
  risk: "low",
  attributes: {},
} as const;

function freshRun(): string {
  return runs.create({ task, requester, traceparent }, { actor }).run.id;
}

// One run goes start -> fail(retry) -> start -> fail(retry) ... forever: two transitions per loop.
const cycling = freshRun();
runs.apply(cycling, { type: "start", agentId: "a" }, { actor });
let flip = false;

Deno.bench(
  "run transition + audit record (file db)",
  { group: "transition", baseline: true },
  () => {
    flip = !flip;
    if (flip) {
      runs.apply(cycling, {
        type: "fail",
        error: { code: "ERR_AGENT_FAILED", message: "x" },
        retry: true,
      }, { actor });
    } else {
      runs.apply(cycling, { type: "start", agentId: "a" }, { actor });
    }
  },
);

Deno.bench("run create + audit record (file db)", { group: "transition" }, () => {
  freshRun();
});

const snapshot = runs.get(cycling);
Deno.bench("RunStore.get() (file db read)", { group: "transition" }, () => {
  runs.get(cycling);
});

Deno.bench("transition() alone (pure, no I/O)", { group: "transition" }, () => {
  const running = transition({ ...snapshot, state: "retrying" }, {
    type: "start",
    at: 1,
    agentId: "a",
  });
  if (running.state !== "running") throw new Error("unexpected state");
});

globalThis.addEventListener("unload", () => {
  db.close();
  Deno.removeSync(dir, { recursive: true });
});
