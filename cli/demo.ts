/**
 * `plm demo`: the main job. On a file SQLite database in a temporary folder
 * (or the PostgreSQL database `--db` names), with in-process demo agents, it
 * walks every governed flow end to end and verifies the audit chain.
 *
 * @module
 */
import { parseArgs } from "node:util";
import {
  type Agent,
  AgentError,
  AgentRuntime,
  ControlPlane,
  defineAgent,
  EscalationLadder,
  extractTraceContext,
  Hs256JwtIdentityProvider,
  identityMiddleware,
  injectTraceContext,
  isTerminal,
  newTraceContext,
  openStore,
  type PolicySet,
  requireIdentity,
  type Run,
} from "../agent_runtime/mod.ts";
import type { Identity, JsonValue } from "../shared/mod.ts";
import { type CliCommand, type CliIo, redactPasswords, storeLocation, UsageError } from "./io.ts";

const HELP = `plm demo: run the end-to-end demonstration (the main job)

USAGE:
  plm demo [--keep] [--db postgres://user@host/db] [--json]

Creates a SQLite file in a temporary folder (or works in the PostgreSQL
database --db names, adding its runs to what is there), issues tokens, serves one HTTP
endpoint on 127.0.0.1 behind the identity middleware, and runs: an allowed
task, a denied one, one that needs a human approval, one that fails twice and
succeeds on retry, one that escalates to a stronger agent, and one whose worker
process is killed mid-run and recovered on restart. Prints the timeline and the
audit chain verification.

OPTIONS:
      --db LOCATION  Run on this store instead: a postgres:// URL, or a SQLite file
                     (default: a new SQLite file in a temporary folder; $PLM_DB is not read)
      --keep         Keep the temporary database file and print its path (default: delete it)
      --json         Print the story on stderr, and on stdout one JSON document:
                     {"runs": {NAME: {"id","state"}}, "audit": {"ok","checked","head"}}
  -h, --help         Show this help`;

const POLICIES: PolicySet = {
  id: "demo",
  rules: [
    {
      id: "engineering-work",
      effect: "allow",
      actions: ["bom.update", "cad.render", "plm.reconcile", "sim.run"],
    },
    {
      id: "no-deletes",
      effect: "deny",
      actions: ["bom.delete"],
      description: "BOMs are never deleted",
    },
    {
      id: "release-needs-manager",
      effect: "require_approval",
      actions: ["bom.release"],
      approval: {
        approverRoles: ["release-manager"],
        quorum: 1,
        timeoutSeconds: 3600,
        onExpiry: "deny",
      },
    },
  ],
};

const LEASE_TTL_MS = 1_000;
const SECRET = "demo-only-secret-at-least-32-bytes-long!";

function shortId(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** The demo agents. `hang` makes the simulator hang (the child that gets killed). */
function demoAgents(hang: boolean, log: (line: string) => void): Agent[] {
  const flakyCalls = new Map<string, number>();
  return [
    defineAgent({
      id: "clerk",
      capabilities: ["bom"],
      invoke: (task) => Promise.resolve({ updated: task.resource }),
    }),
    defineAgent({
      id: "renderer",
      capabilities: ["cad"],
      invoke: (_task, ctx) => {
        const n = (flakyCalls.get(ctx.runId) ?? 0) + 1;
        flakyCalls.set(ctx.runId, n);
        if (n <= 2) {
          return Promise.reject(
            new AgentError("ERR_AGENT_FAILED", `GPU busy (call ${n})`, { retryable: true }),
          );
        }
        return Promise.resolve({ frames: 24 });
      },
    }),
    defineAgent({
      id: "junior-reconciler",
      capabilities: ["plm"],
      tier: 1,
      invoke: () => Promise.reject(new Error("cannot reconcile 3 conflicting revisions")),
    }),
    defineAgent({
      id: "senior-reconciler",
      capabilities: ["plm"],
      tier: 2,
      costPerRun: 10,
      invoke: () => Promise.resolve({ merged: 3 }),
    }),
    defineAgent({
      id: "simulator",
      capabilities: ["sim"],
      invoke: (_task, ctx) => {
        if (!hang) return Promise.resolve({ stress: "ok", dedupKey: ctx.idempotencyKey });
        log(`started ${ctx.runId}`);
        return new Promise<JsonValue>(() => {}); // hangs until the process is killed
      },
    }),
  ];
}

async function makeRuntime(
  location: string,
  owner: string,
  hang: boolean,
  log: (line: string) => void,
) {
  const store = await openStore(location);
  const controlPlane = new ControlPlane(store, { policies: POLICIES, generateId: shortId });
  const runtime = new AgentRuntime({
    controlPlane,
    agents: demoAgents(hang, log),
    owner,
    leaseTtlMs: LEASE_TTL_MS,
    retry: { maxAttempts: 3, initialDelayMs: 20, jitter: "none" },
    escalation: new EscalationLadder([{ kind: "tier", minTier: 2 }, { kind: "fail" }]),
  });
  return { store, controlPlane, runtime };
}

/** The child process: submits the simulation and hangs inside the agent until killed. */
async function child(location: string, key: string, io: CliIo): Promise<number> {
  const { runtime } = await makeRuntime(location, "worker-child", true, io.out);
  const identity: Identity = {
    subject: "planner-agent",
    actorKind: "agent",
    roles: [],
    scopes: [],
  };
  await runtime.submit({ action: "sim.run", resource: "model:wing-7", capabilities: ["sim"] }, {
    identity,
    idempotencyKey: key,
  });
  await new Promise(() => {}); // killed with SIGKILL by the parent
  return 0;
}

/**
 * Waits until a run another loop step picks up (reclaim, then claim) has
 * finished: `wait` joins it once it executes here.
 */
async function finished(runtime: AgentRuntime, id: string): Promise<Run> {
  for (let waited = 0;; waited += 50) {
    const run = await runtime.wait(id);
    if (isTerminal(run.state) || waited >= 30_000) return run;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The `plm demo` command. */
export const demoCommand: CliCommand = {
  summary: "Run the end-to-end demonstration (the main job)",
  help: HELP,
  async run(args, io) {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        strict: true,
        options: {
          keep: { type: "boolean" },
          db: { type: "string" },
          child: { type: "string" },
          "child-key": { type: "string" },
          json: { type: "boolean" },
        },
      }));
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    if (values.child !== undefined) {
      return await child(values.child, values["child-key"] ?? "stress-test-wing-7", io);
    }
    if (values.db !== undefined) {
      if (values.keep) throw new UsageError("--keep applies to the temporary database only");
      const location = storeLocation(values.db, { ...io, env: () => undefined });
      if (location === ":memory:") {
        throw new UsageError("--db :memory: cannot be shared with the demo's child process");
      }
      return await demo(location, io, values.json === true);
    }
    const dir = await Deno.makeTempDir({ prefix: "plm-demo-" });
    const path = `${dir}/plm.db`;
    try {
      return await demo(path, io, values.json === true);
    } finally {
      if (values.keep) (values.json === true ? io.err : io.out)(`\nkept ${path}`);
      else await Deno.remove(dir, { recursive: true });
    }
  },
};

async function demo(location: string, io: CliIo, json: boolean): Promise<number> {
  const started = Date.now();
  // With --json the story goes to stderr and stdout holds the summary only.
  const say = (line = "") => (json ? io.err : io.out)(line);
  let { store, controlPlane: cp, runtime } = await makeRuntime(location, "worker-1", false, say);
  say(`plm demo: ${store.kind} database ${redactPasswords(store.location)}`);
  // The timeline shows this demo's records only (a PostgreSQL database may hold earlier ones).
  const firstSeq = (await cp.audit.head()).seq + 1;
  const provider = new Hs256JwtIdentityProvider({
    secret: SECRET,
    issuer: "plm-demo",
    audience: "plm",
  });

  // 1. Identity: tokens, and the HTTP edge behind the middleware.
  say("\n1. Identity");
  const plannerToken = await provider.issueToken({ subject: "planner-agent", actorKind: "agent" });
  const ritaToken = await provider.issueToken({
    subject: "rita",
    actorKind: "human",
    roles: ["release-manager"],
  });
  say(`   issued tokens: planner-agent (agent), rita (human, release-manager)`);
  const handler = identityMiddleware(provider, { audit: cp.audit })(async (req) => {
    const task = await req.json();
    const trace = extractTraceContext(req.headers) ?? undefined;
    const id = await runtime.submit(task, {
      identity: requireIdentity(),
      ...(trace ? { trace } : {}),
    });
    return Response.json({ id }, { status: 202 });
  });
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, handler);
  const base = `http://127.0.0.1:${server.addr.port}`;
  const post = (token: string, body: JsonValue) => {
    const headers = new Headers({
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
    });
    injectTraceContext(newTraceContext(), headers);
    return fetch(`${base}/runs`, { method: "POST", headers, body: JSON.stringify(body) });
  };
  const ids: Record<string, string> = {};
  try {
    const ok = await post(plannerToken, {
      action: "bom.update",
      resource: "bom:A-100",
      capabilities: ["bom"],
    });
    ids.allowed = ((await ok.json()) as { id: string }).id;
    say(`   POST ${base}/runs with planner-agent's token -> ${ok.status}, run ${ids.allowed}`);
    const [h, p] = plannerToken.split(".");
    const forged = await post(`${h}.${p}.${"A".repeat(43)}`, {
      action: "bom.delete",
      resource: "bom:A-100",
    });
    const body = await forged.json();
    say(
      `   POST with a forged signature -> ${forged.status} ${body.error} (audited, token never logged)`,
    );
  } finally {
    await server.shutdown();
  }

  // 2-6. The governed flows.
  const planner = await provider.verifyToken(plannerToken);
  const rita = await provider.verifyToken(ritaToken);
  const show = (run: Run) =>
    `${run.state}${run.agentId ? ` by ${run.agentId}` : ""} (attempt ${run.attempt}` +
    `${run.escalations > 0 ? `, ${run.escalations} escalation` : ""})` +
    `${run.error && run.state !== "succeeded" ? `: ${run.error.message}` : ""}`;

  say("\n2. Allowed: bom.update -> " + show(await runtime.wait(ids.allowed!)));

  ids.denied = await runtime.submit({ action: "bom.delete", resource: "bom:A-100" }, {
    identity: planner,
  });
  say("3. Denied: bom.delete -> " + show(await runtime.wait(ids.denied)));

  ids.approval = await runtime.submit({ action: "bom.release", resource: "bom:A-100" }, {
    identity: planner,
  });
  const parked = await cp.runs.get(ids.approval);
  const approval = await cp.approvals.get(parked.approvalId!);
  say(
    `4. Needs approval: bom.release -> ${parked.state} (approval ${approval.id}, quorum ${approval.spec.quorum})`,
  );
  try {
    await runtime.decideApproval(approval.id, "approve", {
      identity: planner,
      digest: approval.digest,
    });
  } catch (err) {
    say(`   planner-agent tries to approve its own request -> ${(err as { code: string }).code}`);
  }
  await runtime.decideApproval(approval.id, "approve", {
    identity: rita,
    digest: approval.digest,
    comment: "ship it",
  });
  say(`   rita (verified token) approves -> ${show(await runtime.wait(ids.approval))}`);

  ids.retry = await runtime.submit({
    action: "cad.render",
    resource: "cad:wing-7",
    capabilities: ["cad"],
  }, {
    identity: planner,
  });
  say("5. Retry: cad.render -> " + show(await runtime.wait(ids.retry)));

  ids.escalation = await runtime.submit(
    { action: "plm.reconcile", resource: "part:7734", capabilities: ["plm"] },
    { identity: planner },
  );
  say("6. Escalation: plm.reconcile -> " + show(await runtime.wait(ids.escalation)));
  await runtime.idle();
  await store.close();

  // 7. A worker process killed mid-run, recovered on restart.
  const cli = new URL("../cli.ts", import.meta.url);
  const proc = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      cli.href,
      "demo",
      "--child",
      location,
      "--child-key",
      `stress-test-wing-7-${shortId()}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    line += value;
  }
  ids.crash = line.trim().split(" ")[1] ?? "";
  proc.kill("SIGKILL");
  await proc.status;
  reader.releaseLock();
  await proc.stdout.cancel().catch(() => {});
  ({ store, controlPlane: cp, runtime } = await makeRuntime(location, "worker-2", false, say));
  say(
    `7. Crash: sim.run started in a child process, killed with SIGKILL while ${
      (await cp.runs.get(ids.crash)).state
    }`,
  );
  while (((await cp.runs.get(ids.crash)).lease?.expiresAt ?? 0) > Date.now()) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  runtime.start(); // the worker loop: the elected reaper takes back expired leases, claims ready runs
  say(`   restart: the worker loop reclaimed the expired lease and resumed the run`);
  say(`   -> ${show(await finished(runtime, ids.crash))}`);
  await runtime.stop();

  // Timeline and verification.
  say("\nTimeline (state changes, with trace ids)");
  const names = new Map(Object.entries(ids).map(([k, v]) => [v, k]));
  for (const r of await cp.audit.list({ fromSeq: firstSeq })) {
    if (
      !r.action.startsWith("run.") && !r.action.startsWith("approval.") &&
      !r.action.startsWith("auth.")
    ) {
      continue;
    }
    const at = ((r.at - started) / 1000).toFixed(3).padStart(7);
    const run = r.runId === null ? "" : `${names.get(r.runId) ?? r.runId}`;
    say(
      `  +${at}s  ${(r.traceId ?? "-").slice(0, 12).padEnd(12)}  ${run.padEnd(10)} ` +
        `${r.action.padEnd(19)} ${r.outcome.padEnd(17)} ${r.actor.subject}`,
    );
  }
  const result = await cp.audit.verify();
  const head = await cp.audit.head();
  const runs: Record<string, { id: string; state: string }> = {};
  for (const [name, id] of Object.entries(ids)) {
    runs[name] = { id, state: (await cp.runs.get(id)).state };
  }
  await store.close();
  if (json) {
    io.out(JSON.stringify({
      runs,
      audit: { ok: result.ok, checked: result.checked, head: `${head.seq}:${head.hash}` },
    }));
  }
  say(
    `\nAudit chain: ${
      result.ok ? `${result.checked} records valid` : `BROKEN at ${result.firstBadSeq}`
    }; ` +
      `head #${head.seq} ${head.hash.slice(0, 16)}...  (${
        ((Date.now() - started) / 1000).toFixed(1)
      } s)`,
  );
  return result.ok ? 0 : 1;
}
