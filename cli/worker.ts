/**
 * `plm worker`: a long-running process that claims ready runs and executes
 * them on its agents until SIGTERM or SIGINT, then drains.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { AgentRuntime } from "../agent_runtime/mod.ts";
import {
  type AuditLog,
  type AuditRecord,
  ControlPlane,
  followPolicies,
  openStore,
  PolicyStore,
  sleep,
} from "../control_plane/mod.ts";
import { loadAgents } from "./agents_file.ts";
import { loadPolicies } from "./policies.ts";
import {
  type CliCommand,
  type CliIo,
  parseCount,
  redactPasswords,
  storeLocation,
  UsageError,
} from "./io.ts";

/** Exit code of a worker stopped at once by a second signal: 128 + the signal's number. */
const FORCED_EXIT: Readonly<Record<WorkerSignal, number>> = { SIGINT: 130, SIGTERM: 143 };
/** How often the worker reads its own new audit records for the log, in milliseconds. */
const LOG_POLL_MS = 250;

const HELP = `plm worker: claim ready runs and execute them on agents until stopped

USAGE:
  plm worker --db LOCATION --agents FILE [options]

  Runs the worker loop (claim ready runs, take back expired leases, seal the
  audit log, expire overdue approvals) until SIGTERM or SIGINT. Then it drains:
  it stops claiming, lets runs in flight finish within the grace period, then
  aborts the rest and gives them back (a running attempt becomes retrying, its
  lease is released) so another worker takes them at once; it exits 0. A second
  SIGTERM or SIGINT while draining stops at once: runs in flight keep their
  leases until they expire and another worker takes them back.

  It logs one line per run state change it makes (read from the audit records
  it wrote), and lines when it starts, drains and stops, on stdout.
  text: TIME RUN_ID FROM→TO AGENT [REASON]
  json: {"time","event":"run.transition","worker","runId","from","to","agent",
         "attempt","reason","seq"}, and {"time","event":"worker.started"|
         "worker.draining"|"worker.stopped"|"worker.killed",...}
  Unexpected errors (the store failing) go to stderr (as JSON with --log json).

OPTIONS:
      --db LOCATION        A SQLite file or a postgres://user@host/db URL (created and
                           migrated if needed) (default: $PLM_DB, else plm.db)
      --agents FILE        The agents: a .ts/.mts/.js/.mjs module whose default export is a
                           list of agents (made with defineAgent), or a JSON list of HTTP
                           agents {id, url, capabilities, tier, costPerRun, maxConcurrency}
                           (required)
      --concurrency N      Runs executing at once, 1..10000 (default: 16)
      --id NAME            The worker's name: the lease owner and audit actor of its
                           writes; unique per process (default: worker-HOST-PID-RANDOM)
      --grace-seconds N    How long runs in flight may finish after the first signal,
                           0..86400 (default: 30)
      --max-poll-ms N      The longest wait between two polls for ready runs while idle (it
                           doubles from 200 ms after each empty poll; PostgreSQL's wake-ups
                           bring a poll forward), 1..60000 (default: 5000)
      --log FORMAT         text or json (default: text)
      --json               The same as --log json
      --health-port P      Serve GET /healthz on this port, 0..65535 (0: any free port,
                           printed when listening): 200 {"status":"running"} while running,
                           503 {"status":"draining"} while draining (default: none)
      --health-hostname H  The address /healthz listens on (default: 127.0.0.1)
      --policy FILE        A policy set file overriding the store's (default:
                           $PLM_POLICY, else the store's version in force, followed as
                           plm policy apply changes it; with none, nothing is allowed)
  -h, --help               Show this help

ENVIRONMENT:
  PLM_TOKEN   the bearer token HTTP agents are called with (default: none)

EXIT CODES:
  0    drained after SIGTERM or SIGINT
  1    a runtime error (error: CODE: message on stderr)
  2    a usage error
  130  a second SIGINT stopped it at once (143: a second SIGTERM)`;

/** The signals that stop a worker. */
export type WorkerSignal = "SIGTERM" | "SIGINT";

/** Where the worker hears stop signals; the real process's by default. */
export interface WorkerSignals {
  /** Calls `handler` on each signal until the returned function is called. */
  listen(handler: (signal: WorkerSignal) => void): () => void;
}

/** Options of {@link runWorker}, as parsed from the command line. */
export interface WorkerOptions {
  readonly location: string;
  readonly agentsFile: string;
  readonly concurrency: number;
  readonly id: string;
  readonly graceMs: number;
  readonly maxPollMs: number;
  readonly log: "text" | "json";
  readonly healthPort?: number;
  readonly healthHostname: string;
  readonly policyFile?: string;
}

/** The `plm worker` command. */
export const workerCommand: CliCommand = {
  summary: "Claim ready runs and execute them on agents until SIGTERM",
  help: HELP,
  async run(args, io) {
    return await runWorker(parseWorkerArgs(args, io), io, processSignals);
  },
};

/** The real process's SIGTERM and SIGINT. */
const processSignals: WorkerSignals = {
  listen(handler) {
    const onTerm = () => handler("SIGTERM");
    const onInt = () => handler("SIGINT");
    Deno.addSignalListener("SIGTERM", onTerm);
    Deno.addSignalListener("SIGINT", onInt);
    return () => {
      Deno.removeSignalListener("SIGTERM", onTerm);
      Deno.removeSignalListener("SIGINT", onInt);
    };
  },
};

function parseWorkerArgs(args: string[], io: CliIo): WorkerOptions {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: false,
      strict: true,
      options: {
        db: { type: "string" },
        agents: { type: "string" },
        concurrency: { type: "string" },
        id: { type: "string" },
        "grace-seconds": { type: "string" },
        "max-poll-ms": { type: "string" },
        log: { type: "string" },
        "health-port": { type: "string" },
        "health-hostname": { type: "string" },
        policy: { type: "string" },
        json: { type: "boolean" },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  const v = parsed.values;
  if (v.agents === undefined) throw new UsageError("worker needs --agents FILE");
  if (v.json === true && v.log !== undefined && v.log !== "json") {
    throw new UsageError("--json is --log json");
  }
  const log = v.log ?? (v.json === true ? "json" : "text");
  if (log !== "text" && log !== "json") {
    throw new UsageError(`--log must be text or json, got '${log}'`);
  }
  if (v.id === "") throw new UsageError("--id must not be empty");
  const policyFile = v.policy ?? io.env("PLM_POLICY");
  const random = crypto.randomUUID().slice(0, 8);
  return {
    location: storeLocation(v.db, io),
    agentsFile: v.agents,
    concurrency: parseCount(v.concurrency ?? "16", "--concurrency", 1, 10_000),
    id: v.id ?? `worker-${Deno.hostname()}-${Deno.pid}-${random}`,
    graceMs: parseCount(v["grace-seconds"] ?? "30", "--grace-seconds", 0, 86_400) * 1_000,
    maxPollMs: parseCount(v["max-poll-ms"] ?? "5000", "--max-poll-ms", 1, 60_000),
    log,
    healthHostname: v["health-hostname"] ?? "127.0.0.1",
    ...(v["health-port"] === undefined
      ? {}
      : { healthPort: parseCount(v["health-port"], "--health-port", 0, 65_535) }),
    ...(policyFile === undefined || policyFile === "" ? {} : { policyFile }),
  };
}

/**
 * Runs a worker until a signal, then drains it.
 *
 * @param options The parsed options.
 * @param io Where the log lines go.
 * @param signals Where stop signals come from.
 * @returns The exit code: 0 drained, 130/143 stopped at once by a second signal.
 */
export async function runWorker(
  options: WorkerOptions,
  io: CliIo,
  signals: WorkerSignals,
): Promise<number> {
  const agents = await loadAgents(options.agentsFile, io.env("PLM_TOKEN") ?? "");
  const logger = new WorkerLog(options.log, options.id, io);
  // Signals are heard from before the store opens: a SIGTERM during start-up still drains.
  let first!: (signal: WorkerSignal) => void;
  let second!: (signal: WorkerSignal) => void;
  const firstSignal = new Promise<WorkerSignal>((resolve) => (first = resolve));
  const secondSignal = new Promise<WorkerSignal>((resolve) => (second = resolve));
  let heard = 0;
  const unlisten = signals.listen((signal) => {
    heard += 1;
    if (heard === 1) first(signal);
    else second(signal);
  });
  let forced = false;
  const store = await openStore(options.location);
  let follower: { stop(): Promise<void> } | undefined;
  try {
    const { policies, fromStore } = await loadPolicies(options.policyFile, store);
    const controlPlane = new ControlPlane(store, { policies });
    // Without a file, the worker decides under the store's version in force, and takes up a
    // new one (plm policy apply) within seconds.
    if (fromStore) follower = followPolicies(controlPlane, new PolicyStore(store));
    const runtime = new AgentRuntime({
      controlPlane,
      agents,
      owner: options.id,
      concurrency: options.concurrency,
      onError: (runId, error) => logger.error(runId, error),
    });
    const tail = new TransitionTail(controlPlane.audit, options.id, logger);
    await tail.begin();
    let draining = false;
    const health = options.healthPort === undefined
      ? undefined
      : serveHealth(options.healthHostname, options.healthPort, () => draining, logger);
    runtime.start({
      pollIntervalMs: Math.min(200, options.maxPollMs),
      maxPollIntervalMs: options.maxPollMs,
    });
    tail.run();
    logger.event("worker.started", `worker ${options.id} started`, {
      db: redactPasswords(options.location),
      agents: agents.map((agent) => agent.id),
      concurrency: options.concurrency,
    });
    const signal = await firstSignal;
    draining = true;
    logger.event(
      "worker.draining",
      `worker ${options.id} draining after ${signal} (grace ${options.graceMs / 1_000}s)`,
      { signal, graceSeconds: options.graceMs / 1_000 },
    );
    const outcome = await Promise.race([
      runtime.stop({ graceMs: options.graceMs }).then(() => undefined),
      secondSignal,
    ]);
    if (outcome !== undefined) {
      forced = true;
      await tail.stop().catch(() => {});
      logger.event("worker.killed", `worker ${options.id} stopped at once after ${outcome}`, {
        signal: outcome,
      });
      return FORCED_EXIT[outcome];
    }
    await controlPlane.audit.seal(); // what this worker wrote last, chained (PostgreSQL)
    await tail.stop();
    await health?.shutdown();
    logger.event("worker.stopped", `worker ${options.id} stopped`, {});
    return 0;
  } finally {
    unlisten();
    await follower?.stop();
    // Stopped at once: runs in flight still write; the process exits without waiting for them.
    if (!forced) await store.close();
  }
}

/** Writes the worker's log lines in its format. */
class WorkerLog {
  constructor(
    readonly format: "text" | "json",
    readonly worker: string,
    readonly io: CliIo,
  ) {}

  /** A line about the worker itself. */
  event(event: string, text: string, fields: Record<string, unknown>): void {
    const time = new Date().toISOString();
    this.io.out(
      this.format === "json"
        ? JSON.stringify({ time, event, worker: this.worker, ...fields })
        : `${time} ${text}`,
    );
  }

  /** A run state change this worker made. */
  transition(record: AuditRecord): void {
    const data = (record.data ?? {}) as Record<string, unknown>;
    const from = String(data.from ?? "?");
    const to = String(data.to ?? record.outcome);
    const agent = typeof data.agentId === "string" ? data.agentId : null;
    const time = new Date(record.at).toISOString();
    if (this.format === "json") {
      this.io.out(JSON.stringify({
        time,
        event: "run.transition",
        worker: this.worker,
        runId: record.runId,
        from,
        to,
        agent,
        attempt: data.attempt ?? null,
        reason: record.reason,
        seq: record.seq,
      }));
    } else {
      this.io.out(
        `${time} ${record.runId} ${from}→${to} ${agent ?? "-"}${
          record.reason === null ? "" : ` ${record.reason}`
        }`,
      );
    }
  }

  /** An unexpected error, on stderr. */
  error(runId: string | undefined, error: unknown): void {
    const code = (error as { code?: unknown })?.code;
    const message = redactPasswords(error instanceof Error ? error.message : String(error));
    const time = new Date().toISOString();
    this.io.err(
      this.format === "json"
        ? JSON.stringify({
          time,
          event: "worker.error",
          worker: this.worker,
          runId: runId ?? null,
          code: typeof code === "string" ? code : "ERR_INTERNAL",
          message,
        })
        : `${time} error${runId === undefined ? "" : ` run ${runId}`}: ${
          typeof code === "string" ? `${code}: ` : ""
        }${message}`,
    );
  }
}

/**
 * Follows the run transitions this worker wrote, from the audit log (the
 * dispatcher has no transition hook): each poll reads the records after the
 * last one seen whose actor is this worker.
 */
class TransitionTail {
  #next = 1;
  #stopped = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(
    readonly audit: AuditLog,
    readonly worker: string,
    readonly log: WorkerLog,
  ) {}

  /** Starts after the current head: earlier records are not this process's. */
  async begin(): Promise<void> {
    this.#next = (await this.audit.head()).seq + 1;
  }

  run(): void {
    this.#loop = (async () => {
      while (!this.#stopped.signal.aborted) {
        try {
          await this.poll();
        } catch (err) {
          this.log.error(undefined, err);
        }
        await sleep(LOG_POLL_MS, { signal: this.#stopped.signal });
      }
    })();
  }

  /** Prints every new transition of this worker. */
  async poll(): Promise<void> {
    for (;;) {
      const page = await this.audit.list({
        fromSeq: this.#next,
        actorSubject: this.worker,
        actionPrefix: "run.transition",
        limit: 1_000,
      });
      for (const record of page) {
        this.log.transition(record);
        this.#next = record.seq + 1;
      }
      if (page.length < 1_000) return;
    }
  }

  /** Stops polling after one last poll. */
  async stop(): Promise<void> {
    this.#stopped.abort();
    await this.#loop;
    await this.poll();
  }
}

/** Serves `GET /healthz`: 200 while running, 503 while draining. */
function serveHealth(
  hostname: string,
  port: number,
  draining: () => boolean,
  log: WorkerLog,
): Deno.HttpServer {
  return Deno.serve({
    hostname,
    port,
    onListen: (addr) => {
      log.event(
        "worker.health",
        `health on http://${addr.hostname}:${addr.port}/healthz`,
        { hostname: addr.hostname, port: addr.port },
      );
    },
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (path !== "/healthz") return new Response("Not Found\n", { status: 404 });
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method Not Allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    const status = draining() ? "draining" : "running";
    return Response.json({ status }, { status: status === "running" ? 200 : 503 });
  });
}
