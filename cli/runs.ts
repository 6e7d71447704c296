/**
 * `plm runs`: submit, cancel, list and show governed runs.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { AgentRuntime } from "../agent_runtime/mod.ts";
import {
  type AuditRecord,
  ControlPlane,
  isTerminal,
  openStore,
  RISK_LEVELS,
  type RiskLevel,
  type Run,
  RUN_STATES,
  type RunState,
  sleep,
} from "../control_plane/mod.ts";
import { INPUT_LIMITS, type JsonValue } from "../shared/mod.ts";
import { callerIdentity, KEY_OPTIONS } from "./auth.ts";
import { loadAgents } from "./agents_file.ts";
import { loadPolicies } from "./policies.ts";
import { openForReading } from "./db.ts";
import { type CliCommand, type CliIo, parseCount, storeLocation, UsageError } from "./io.ts";

const HELP = `plm runs: submit, cancel, list and show governed runs

USAGE:
  plm runs submit --action A --resource R [--wait [--timeout S]] [options] [--json]
  plm runs cancel RUN_ID [--reason TEXT] [--json]
  plm runs list [--state STATE]... [-n N] [--cursor C] [--json]
  plm runs show RUN_ID [--json]

COMMANDS:
  submit  Create a run, decide it under the policy set and print "ID STATE"; with --wait,
          wait until it ends (run here on --agents, else by a 'plm worker'; through
          awaiting_approval too), print each state change to stderr as
          "TIME RUN_ID FROM→TO AGENT [REASON]", then the final "ID STATE [CODE: MESSAGE]"
  cancel  Cancel a run that has not finished, if the caller may: its requester may, a
          run-admin may, and the policy set may allow others or deny (refusals are audited)
  list    Print a page of runs as JSON lines, newest first; when older runs remain, print
          the cursor of the next page to stderr as 'next: --cursor C'
  show    Print a run as JSON, then its audit timeline

OPTIONS:
      --db LOCATION         A SQLite file or a postgres://user@host/db URL
                            (default: $PLM_DB, else plm.db)
      --action A            submit: the governed action, such as bom.update (required)
      --resource R          submit: the resource, such as bom:42 (required)
      --capability C        submit: a capability the agent needs (repeatable; default: none)
      --input JSON          submit: the task input (default: null)
      --risk LEVEL          submit: low, medium, high or critical (default: low)
      --idempotency-key K   submit: the same key always gives the same run (default: none)
      --policy FILE         submit, cancel: a policy set file overriding the store's
                            version in force (default: $PLM_POLICY, else the store's
                            version, plm policy apply; with none, every submit is denied
                            and only the built-in cancel rules apply)
      --agents FILE         submit: JSON list of HTTP agents {id, url, capabilities, tier,
                            costPerRun, maxConcurrency}, or a .ts/.js module whose default
                            export is a list of agents, to run it here with --wait
                            (default: none; the run stays queued for 'plm worker')
      --wait                submit: wait until the run ends, and exit with its code (below)
                            (default: off; exit 0 once it is created)
      --timeout S           submit --wait: give up waiting after S seconds, exit 7 (the run
                            goes on) (default: wait for ever)
      --reason TEXT         cancel: why (default: "Cancelled from the CLI")
      --state STATE         list: only runs in this state (repeatable; default: all)
  -n, --lines N             list: how many runs, 1..1000 (default: 20)
      --cursor C            list: the page after the one that printed this cursor (default:
                            the newest runs)
      --secret-file PATH    The HS256 secret (default: $PLM_JWT_SECRET)
      --issuer ISS          The required issuer (default: $PLM_JWT_ISSUER)
      --audience AUD        The required audience (default: $PLM_JWT_AUDIENCE)
      --json                stdout is JSON only: submit, cancel: the run; list: one document
                            {"items": [runs], "nextCursor": C or null}; show: one document
                            {"run": run, "events": [audit records, oldest first]}; submit
                            --wait's progress lines on stderr are JSON lines too
  -h, --help                Show this help

ENVIRONMENT:
  PLM_TOKEN   the caller's bearer token (submit, cancel); it is verified, never printed

EXIT CODES:
  0  done (submit --wait: the run succeeded or ended suggested)
  1  a runtime error (error: CODE: message on stderr)
  2  a usage error
  3  submit --wait: the run failed
  4  submit --wait: the run was rejected (by policy or by an approver)
  5  submit --wait: the run was cancelled
  6  submit --wait: the run expired (its approval was not given in time)
  7  submit --wait --timeout: the run had not ended in time`;

/** The exit code of `runs submit --wait` for each terminal state. */
export const WAIT_EXIT_CODES: Readonly<Record<string, number>> = {
  succeeded: 0,
  suggested: 0,
  failed: 3,
  rejected: 4,
  cancelled: 5,
  expired: 6,
};
/** The exit code of `runs submit --wait --timeout` when the run has not ended. */
const WAIT_TIMEOUT_EXIT = 7;
/** How often `runs submit --wait` reads the run's progress, in milliseconds. */
const WAIT_POLL_MS = 200;

/** The `plm runs` command. */
export const runsCommand: CliCommand = {
  summary: "Submit, cancel, list and show governed runs",
  help: HELP,
  async run(args, io) {
    const parsed = parse(args);
    const [sub, ...positionals] = parsed.positionals;
    const v = parsed.values;
    const location = storeLocation(str(v.db), io);
    switch (sub) {
      case "submit": {
        const action = str(v.action);
        const resource = str(v.resource);
        if (action === undefined || resource === undefined) {
          throw new UsageError("submit needs --action and --resource");
        }
        const risk = str(v.risk) ?? "low";
        if (!RISK_LEVELS.includes(risk as RiskLevel)) {
          throw new UsageError(`--risk must be one of ${RISK_LEVELS.join(", ")}`);
        }
        if (v.timeout !== undefined && v.wait !== true) {
          throw new UsageError("--timeout goes with --wait");
        }
        const timeoutMs = str(v.timeout) === undefined
          ? undefined
          : parseCount(str(v.timeout)!, "--timeout", 1, 31_536_000) * 1_000;
        const identity = await callerIdentity(v, io);
        const agentsFile = str(v.agents);
        const agents = agentsFile === undefined
          ? []
          : await loadAgents(agentsFile, io.env("PLM_TOKEN") ?? "");
        await using store = await openStore(location);
        const { policies } = await loadPolicies(str(v.policy) ?? io.env("PLM_POLICY"), store);
        const runtime = new AgentRuntime({
          controlPlane: new ControlPlane(store, { policies }),
          agents,
          owner: `cli-${crypto.randomUUID()}`,
        });
        const key = str(v["idempotency-key"]);
        const id = await runtime.submit({
          action,
          resource,
          capabilities: list(v.capability),
          input: parseInput(str(v.input)),
          risk: risk as RiskLevel,
        }, { identity, ...(key === undefined ? {} : { idempotencyKey: key }) });
        const json = v.json === true;
        let run = await runtime.controlPlane.runs.get(id);
        let code = 0;
        if (v.wait === true) {
          const waited = await waitForRun(runtime, id, io, json, timeoutMs);
          run = waited.run;
          code = waited.timedOut ? WAIT_TIMEOUT_EXIT : WAIT_EXIT_CODES[run.state] ?? 0;
        }
        await runtime.idle();
        // No worker may be running: chain this command's records now (PostgreSQL; a no-op on
        // SQLite), so read-only commands (`runs show`, `audit ...`) see them at once.
        await runtime.controlPlane.audit.seal();
        io.out(
          json
            ? JSON.stringify(run)
            : `${run.id} ${run.state}${
              run.error === null ? "" : ` ${run.error.code}: ${run.error.message}`
            }`,
        );
        return code;
      }
      case "cancel": {
        const id = one(positionals, "RUN_ID");
        const identity = await callerIdentity(v, io);
        await using store = await openStore(location);
        const { policies } = await loadPolicies(str(v.policy) ?? io.env("PLM_POLICY"), store);
        // Governed like every cancel: run.cancel under the policy set and its defaults
        // (a requester its own runs, role run-admin any run); a refusal is audited.
        const runtime = new AgentRuntime({
          controlPlane: new ControlPlane(store, { policies }),
          agents: [],
          owner: `cli-${crypto.randomUUID()}`,
        });
        const run = await runtime.dispatcher.cancel(id, {
          identity,
          reason: str(v.reason) ?? "Cancelled from the CLI",
        });
        await runtime.controlPlane.audit.seal(); // as after submit
        io.out(v.json === true ? JSON.stringify(run) : `${run.id} ${run.state}`);
        return 0;
      }
      case "list": {
        const states = list(v.state);
        for (const s of states) {
          if (!RUN_STATES.includes(s as RunState)) throw new UsageError(`unknown state '${s}'`);
        }
        const limit = parseCount(str(v.lines) ?? "20", "-n", 1, INPUT_LIMITS.listLimit);
        const cursor = str(v.cursor);
        await using store = await openForReading(location);
        const cp = new ControlPlane(store, { policies: { rules: [] } });
        const page = await cp.runs.page({
          ...(states.length > 0 ? { states: states as RunState[] } : {}),
          limit,
          ...(cursor === undefined ? {} : { cursor }),
        });
        if (v.json === true) {
          io.out(JSON.stringify({ items: page.items, nextCursor: page.nextCursor }));
          return 0;
        }
        for (const run of page.items) io.out(JSON.stringify(run));
        if (page.nextCursor !== null) io.err(`next: --cursor ${page.nextCursor}`);
        return 0;
      }
      case "show": {
        const id = one(positionals, "RUN_ID");
        await using store = await openForReading(location);
        const cp = new ControlPlane(store, { policies: { rules: [] } });
        const run = await cp.runs.get(id);
        const events = await runEvents(cp, id);
        if (v.json === true) {
          io.out(JSON.stringify({ run, events }));
          return 0;
        }
        io.out(JSON.stringify(run, null, 2));
        for (const r of events) {
          io.out(
            `${new Date(r.at).toISOString()}  #${r.seq}  ${r.action.padEnd(18)} ${
              r.outcome.padEnd(18)
            } ` +
              `${r.actor.subject}${r.reason === null ? "" : `  ${r.reason}`}`,
          );
        }
        return 0;
      }
      case undefined:
        throw new UsageError("missing subcommand: submit, cancel, list or show");
      default:
        throw new UsageError(`unknown subcommand '${sub}'`);
    }
  },
};

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      strict: true,
      options: {
        ...KEY_OPTIONS,
        db: { type: "string" },
        action: { type: "string" },
        resource: { type: "string" },
        capability: { type: "string", multiple: true },
        input: { type: "string" },
        risk: { type: "string" },
        "idempotency-key": { type: "string" },
        policy: { type: "string" },
        agents: { type: "string" },
        wait: { type: "boolean" },
        timeout: { type: "string" },
        json: { type: "boolean" },
        reason: { type: "string" },
        state: { type: "string", multiple: true },
        lines: { type: "string", short: "n" },
        cursor: { type: "string" },
      },
    });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function str(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function list(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

function one(positionals: string[], name: string): string {
  const [first, ...extra] = positionals;
  if (first === undefined) throw new UsageError(`missing ${name}`);
  if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'`);
  return first;
}

function parseInput(text: string | undefined): JsonValue {
  if (text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError("--input must be JSON");
  }
}

/** Every audit record of a run, oldest first (paged: a run may have more than one page). */
async function runEvents(cp: ControlPlane, runId: string): Promise<AuditRecord[]> {
  const events: AuditRecord[] = [];
  for (let fromSeq = 1;;) {
    const page = await cp.audit.list({ runId, fromSeq, limit: INPUT_LIMITS.listLimit });
    events.push(...page);
    if (page.length < INPUT_LIMITS.listLimit) return events;
    fromSeq = page[page.length - 1]!.seq + 1;
  }
}

/**
 * Waits until the run ends (or `timeoutMs` passes), printing each of its state
 * changes to stderr as it reads them from the audit log. A run this process
 * can execute (`--agents`) is executed here; any other waits for a worker.
 */
async function waitForRun(
  runtime: AgentRuntime,
  id: string,
  io: CliIo,
  json: boolean,
  timeoutMs: number | undefined,
): Promise<{ run: Run; timedOut: boolean }> {
  const cp = runtime.controlPlane;
  const deadline = timeoutMs === undefined ? Infinity : cp.clock.now() + timeoutMs;
  let next = 1;
  const progress = async () => {
    for (;;) {
      const page = await cp.audit.list({
        runId: id,
        actionPrefix: "run.transition",
        fromSeq: next,
        limit: INPUT_LIMITS.listLimit,
      });
      for (const record of page) {
        io.err(progressLine(record, json));
        next = record.seq + 1;
      }
      if (page.length < INPUT_LIMITS.listLimit) return;
    }
  };
  // Executes it here when there are agents (a runtime without them leaves it queued), and
  // again whenever it becomes ready once more (approved while waiting, say).
  const executions = [runtime.wait(id)];
  const runsHere = runtime.dispatcher.agents.length > 0;
  let run = await cp.runs.get(id);
  await progress();
  for (;;) {
    if (isTerminal(run.state)) break;
    if (cp.clock.now() >= deadline) {
      await Promise.allSettled(executions);
      return { run, timedOut: true };
    }
    await sleep(Math.min(WAIT_POLL_MS, Math.max(0, deadline - cp.clock.now())));
    run = await cp.runs.get(id);
    await progress();
    if (runsHere && READY_STATES.includes(run.state) && !runtime.dispatcher.execution(id)) {
      executions.push(runtime.wait(id));
    }
  }
  await Promise.all(executions);
  await progress();
  return { run, timedOut: false };
}

/** The states a run is claimed in. */
const READY_STATES: readonly RunState[] = ["queued", "retrying", "escalated"];

/** One state change of `runs submit --wait`, as text or JSON. */
function progressLine(record: AuditRecord, json: boolean): string {
  const data = (record.data ?? {}) as Record<string, unknown>;
  const from = String(data.from ?? "?");
  const to = String(data.to ?? record.outcome);
  const agent = typeof data.agentId === "string" ? data.agentId : null;
  const time = new Date(record.at).toISOString();
  if (json) {
    return JSON.stringify({ time, runId: record.runId, from, to, agent, reason: record.reason });
  }
  return `${time} ${record.runId} ${from}→${to} ${agent ?? "-"}${
    record.reason === null ? "" : ` ${record.reason}`
  }`;
}
