/**
 * `plm worker` as a black box: real worker processes on a SQLite file (and on
 * PostgreSQL with `PLM_TEST_POSTGRES_URL`), runs submitted with
 * `plm runs submit --wait`, SIGTERM drains, a second signal stops at once.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  ControlPlane,
  Hs256JwtIdentityProvider,
  openStore,
  type PolicySet,
} from "../../control_plane/mod.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { runPlm } from "./_subprocess.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const AGENTS = fileURLToPath(new URL("./_agents.ts", import.meta.url));
const SECRET = "cli-worker-test-secret-of-32-bytes-at-least";
const POLICY: PolicySet = { rules: [{ id: "work", effect: "allow", actions: ["bom.*"] }] };

/** A running `plm worker` process and the lines it printed. */
class Worker {
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #done: Promise<void>;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(args: string[], env: Record<string, string>) {
    const keep: Record<string, string> = {};
    for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) keep[name] = value;
    }
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "-A", "cli.ts", "worker", ...args],
      cwd: REPO,
      clearEnv: true,
      env: { ...keep, NO_COLOR: "1", ...env },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#done = Promise.all([
      collect(this.#child.stdout, this.lines),
      collect(this.#child.stderr, this.stderr),
    ]).then(() => {});
    this.status = this.#child.status;
  }

  /** The JSON log lines so far. */
  get events(): Record<string, unknown>[] {
    return this.lines.map((line) => JSON.parse(line));
  }

  /** Waits until a log line satisfies `test` (a 60 s cap reports the log). */
  async waitFor(
    test: (event: Record<string, unknown>) => boolean,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const found = this.events.find(test);
      if (found !== undefined) return found;
      if (Date.now() > deadline) {
        throw new Error(`no such log line:\n${this.lines.join("\n")}\n${this.stderr.join("\n")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Kills it if it still runs (cleanup after a failed assertion). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // it has exited already
    }
    await this.exit();
  }

  /** Waits for the exit, and for every line it wrote. */
  async exit(): Promise<number> {
    const { code } = await this.status;
    await this.#done;
    return code;
  }
}

async function collect(stream: ReadableStream<Uint8Array>, into: string[]): Promise<void> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop() ?? "";
    into.push(...parts);
  }
  if (rest !== "") into.push(rest);
}

async function setUp(dir: string, location: string) {
  await Deno.writeTextFile(`${dir}/policy.json`, JSON.stringify(POLICY));
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
  const token = await provider.issueToken({ subject: "planner", actorKind: "agent" });
  const env = {
    PLM_DB: location,
    PLM_JWT_SECRET: SECRET,
    PLM_TOKEN: token,
    PLM_POLICY: `${dir}/policy.json`,
  };
  const migrated = await runPlm(["db", "migrate"], { env });
  assert.equal(migrated.code, 0, migrated.stderr);
  const start = (...extra: string[]) =>
    new Worker([
      "--agents",
      AGENTS,
      "--log",
      "json",
      "--max-poll-ms",
      "100",
      "--health-port",
      "0",
      ...extra,
    ], env);
  const submit = async (resource: string, input: unknown, ...extra: string[]) => {
    const result = await runPlm([
      "runs",
      "submit",
      "--action",
      "bom.update",
      "--resource",
      resource,
      "--input",
      JSON.stringify(input),
      ...extra,
    ], { env });
    return { ...result, id: result.stdout.split(" ")[0]! };
  };
  return { env, start, submit };
}

async function health(worker: Worker): Promise<{ status: number; body: unknown }> {
  const { port } = await worker.waitFor((e) => e.event === "worker.health");
  const response = await fetch(`http://127.0.0.1:${port}/healthz`);
  return { status: response.status, body: await response.json() };
}

/** The worker's drain, on a store at `location`. */
async function drainScenario(dir: string, location: string): Promise<void> {
  const { start, submit } = await setUp(dir, location);
  const worker = start("--id", "worker-a", "--grace-seconds", "3");
  try {
    await worker.waitFor((e) => e.event === "worker.started");
    assert.deepEqual(await health(worker), { status: 200, body: { status: "running" } });

    // Runs submitted with --wait are executed by the worker process.
    const waited = await Promise.all([
      submit("bom:1", { n: 1 }, "--wait"),
      submit("bom:2", { n: 2 }, "--wait"),
    ]);
    for (const result of waited) {
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, / succeeded\n$/);
      assert.match(result.stderr, /queued→running echo\n.*running→succeeded echo\n$/);
    }
    for (const { id } of waited) {
      await worker.waitFor((e) => e.runId === id && e.to === "succeeded");
    }

    // A short run finishes within the grace period; a long one is given back.
    const short = await submit("bom:short", { ms: 1_000 });
    const long = await submit("bom:long", { ms: 600_000 });
    await worker.waitFor((e) => e.runId === short.id && e.to === "running");
    await worker.waitFor((e) => e.runId === long.id && e.to === "running");
    worker.signal("SIGTERM");
    await worker.waitFor((e) => e.event === "worker.draining");
    assert.deepEqual(await health(worker), { status: 503, body: { status: "draining" } });
    assert.equal(await worker.exit(), 0, worker.stderr.join("\n"));
    const events = worker.events;
    assert.equal(events.at(-1)?.event, "worker.stopped");
    assert.ok(
      events.some((e) => e.runId === short.id && e.from === "running" && e.to === "succeeded"),
      "the short run finished within the grace period",
    );
    assert.ok(
      events.some((e) => e.runId === long.id && e.from === "running" && e.to === "retrying"),
      "the long run was given back",
    );
    for (const e of events.filter((e) => e.event === "run.transition")) {
      assert.equal(e.worker, "worker-a");
      assert.match(String(e.time), /^\d{4}-\d\d-\d\dT/);
    }

    await using store = await openStore(location);
    const cp = new ControlPlane(store, { policies: POLICY });
    assert.equal((await cp.runs.get(short.id)).state, "succeeded");
    const given = await cp.runs.get(long.id);
    assert.equal(given.state, "retrying");
    assert.equal(given.lease, null, "released: another worker takes it at once");
  } finally {
    await worker.kill();
  }
}

/** A second signal while draining stops at once: exit 143, the run keeps its lease. */
async function forcedScenario(dir: string, location: string): Promise<void> {
  const { start, submit } = await setUp(dir, location);
  const worker = start("--id", "worker-b", "--grace-seconds", "600");
  try {
    await worker.waitFor((e) => e.event === "worker.started");
    const long = await submit("bom:long", { ms: 600_000 });
    await worker.waitFor((e) => e.runId === long.id && e.to === "running");
    worker.signal("SIGTERM");
    await worker.waitFor((e) => e.event === "worker.draining");
    worker.signal("SIGINT");
    assert.equal(await worker.exit(), 130);
    assert.equal(worker.events.at(-1)?.event, "worker.killed");
    await using store = await openStore(location);
    const cp = new ControlPlane(store, { policies: POLICY });
    const run = await cp.runs.get(long.id);
    assert.equal(run.state, "running");
    assert.equal(run.lease?.owner, "worker-b", "left to expire and be taken back");
  } finally {
    await worker.kill();
  }
}

Deno.test("plm worker on SQLite: runs submitted with --wait succeed; SIGTERM drains, exit 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_worker_test_" });
  try {
    await drainScenario(dir, `${dir}/plm.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm worker on SQLite: a second signal stops at once (exit 130)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_worker_test_" });
  try {
    await forcedScenario(dir, `${dir}/plm.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("plm worker: text log lines, idle drain, and refused arguments", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "plm_worker_test_" });
  try {
    const { env, submit } = await setUp(dir, `${dir}/plm.db`);
    await t.step("text: TIME RUN_ID FROM→TO AGENT", async () => {
      const worker = new Worker(["--agents", AGENTS, "--max-poll-ms", "100", "--id", "w-t"], env);
      try {
        await waitForLine(worker, / worker w-t started$/);
        const { id, code } = await submit("bom:t", null, "--wait");
        assert.equal(code, 0);
        await waitForLine(worker, new RegExp(`^\\S+Z ${id} running→succeeded echo$`));
        assert.ok(
          worker.lines.some((l) => new RegExp(`^\\S+Z ${id} queued→running echo$`).test(l)),
        );
        worker.signal("SIGINT");
        assert.equal(await worker.exit(), 0);
        assert.match(worker.lines.at(-1)!, / worker w-t stopped$/);
      } finally {
        await worker.kill();
      }
    });
    const refused = async (args: string[], code: number, message: RegExp) => {
      const result = await runPlm(["worker", ...args], { env });
      assert.equal(result.code, code, result.stderr);
      assert.match(result.stderr, message);
    };
    await t.step("usage errors exit 2", async () => {
      await refused([], 2, /worker needs --agents FILE/);
      await refused(["--agents", AGENTS, "--log", "xml"], 2, /--log must be text or json/);
      await refused(["--agents", AGENTS, "--log", "text", "--json"], 2, /--json is --log json/);
      await refused(["--agents", AGENTS, "--concurrency", "0"], 2, /--concurrency/);
      await refused(["--agents", AGENTS, "--grace-seconds", "-1"], 2, /grace-seconds/);
      await refused(["--agents", AGENTS, "--health-port", "70000"], 2, /--health-port/);
      await refused(["--agents", AGENTS, "extra"], 2, /extra/);
    });
    await t.step(
      "an agents module that is not a list of agents: ERR_INVALID_ARGUMENT",
      async () => {
        const cases: [string, RegExp][] = [
          ["export default 42;", /default export must be a list of agents/],
          ["export default [];", /empty list/],
          ["export default [{ id: 'x' }];", /\(default\[0\]\)\.capabilities/],
          [
            "export default [{ id: 'x', capabilities: [], tier: 0, costPerRun: 0, maxConcurrency: 1 }];",
            /\(default\[0\]\)\.invoke: expected a function/,
          ],
          ["throw new Error('boom');", /cannot import it \(.*boom/],
        ];
        for (const [i, [source, message]] of cases.entries()) {
          const file = `${dir}/agents_${i}.ts`;
          await Deno.writeTextFile(file, source);
          await refused(
            ["--agents", file],
            1,
            new RegExp(`^error: ERR_INVALID_ARGUMENT: Invalid --agents ${file}.*${message.source}`),
          );
        }
        await refused(
          ["--agents", `${dir}/missing.ts`],
          1,
          /ERR_INVALID_ARGUMENT: Invalid --agents/,
        );
        await Deno.writeTextFile(`${dir}/agents.json`, '[{"id":"a","url":"ftp://x"}]');
        await refused(
          ["--agents", `${dir}/agents.json`],
          1,
          /ERR_INVALID_ARGUMENT: .*agents\[0\]\.url/,
        );
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function waitForLine(worker: Worker, pattern: RegExp): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!worker.lines.some((line) => pattern.test(line))) {
    if (Date.now() > deadline) throw new Error(`no line ${pattern}:\n${worker.lines.join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const POSTGRES_URL = Deno.env.get("PLM_TEST_POSTGRES_URL");
if (POSTGRES_URL !== undefined) {
  Deno.test("[postgres] plm worker: --wait runs succeed; SIGTERM drains, exit 0", async () => {
    const dir = await Deno.makeTempDir({ prefix: "plm_worker_pg_test_" });
    try {
      await withPostgresDatabase(POSTGRES_URL, (location) => drainScenario(dir, location));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  Deno.test("[postgres] plm worker: a second signal stops at once", async () => {
    const dir = await Deno.makeTempDir({ prefix: "plm_worker_pg_test_" });
    try {
      await withPostgresDatabase(POSTGRES_URL, (location) => forcedScenario(dir, location));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
