/**
 * The deployment end to end, as a black box: `plm policy apply`, then one real
 * `plm serve` and two real `plm worker` processes on one store (a SQLite file,
 * and a PostgreSQL database of its own when `PLM_TEST_POSTGRES_URL` is set),
 * driven over HTTP only: submit and follow the event stream, approve through
 * the API, approve through the inbox in headless Chromium (hostile input
 * inert, the requester without an approve button), cancel, every error
 * status; then SIGTERM to all three, each exits 0. The policy and the agents
 * module are the ones the README's "Deploy" section writes, so the README
 * cannot drift from what is tested.
 *
 * Every wait is bounded: a cross-process wait polls on real time with a
 * deadline ({@link until}), and the children are always killed in `finally`.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Hs256JwtIdentityProvider } from "../../control_plane/mod.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { approvalCard, signInInbox, watchedPage, withChromium } from "./_inbox_browser.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const SECRET = "deploy-e2e-secret-of-at-least-32-bytes!";
/** How long one cross-process wait may take before the test fails. */
const WAIT_MS = 20_000;

/**
 * A file the README's "Deploy" section writes with `cat > NAME <<'EOF'`: the
 * test deploys what the README says (its policy, its agents module).
 */
async function readmeDeployFile(name: string): Promise<string> {
  const readme = await Deno.readTextFile(join(REPO, "README.md"));
  const section = /\n## Deploy\b[\s\S]*?(?=\n## )/.exec(readme)?.[0] ?? "";
  const body = new RegExp(`\\ncat > ${name} <<'EOF'\\n([\\s\\S]*?)\\nEOF\\n`).exec(section)?.[1];
  assert.ok(body !== undefined, `the README's Deploy section writes ${name}`);
  return `${body}\n`;
}

const RITA = { subject: "rita", actorKind: "human", roles: ["engineer"] } as const;
const ANN = { subject: "ann", actorKind: "human", roles: ["approver"] } as const;
const VIC = { subject: "vic", actorKind: "human", roles: ["engineer"] } as const;
const AUDITOR = { subject: "aud", actorKind: "human", roles: ["auditor"] } as const;
const HOSTILE = { note: "<script>alert(1)</script>", title: '"><img src=x onerror=alert(2)>' };

/** Polls `probe` on real time until it returns a value other than `undefined`, for at most `ms`. */
async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The environment a child gets: the basics only, so the caller's PLM_* cannot leak in. */
function childEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "PATH", "DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "USER"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return { ...env, ...extra };
}

/** A running `deno run -A cli.ts ...` process and what it printed. */
class Plm {
  readonly out: string[] = [];
  readonly err: string[] = [];
  readonly name: string;
  readonly #child: Deno.ChildProcess;
  readonly #read: Promise<void>;
  #exited = false;

  constructor(name: string, args: string[], env: Record<string, string>) {
    this.name = name;
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "-A", "cli.ts", ...args],
      cwd: REPO,
      clearEnv: true,
      env: childEnv(env),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child.status.then(() => this.#exited = true);
    this.#read = Promise.all([
      collect(this.#child.stdout, this.out),
      collect(this.#child.stderr, this.err),
    ]).then(() => {});
  }

  /** Waits (bounded) for a stdout line matching `pattern`; returns its match. */
  line(pattern: RegExp): Promise<RegExpExecArray> {
    return until(`${this.name} to print ${pattern}\n${this.log()}`, () => {
      for (const line of this.out) {
        const match = pattern.exec(line);
        if (match !== null) return match;
      }
      if (this.#exited) {
        throw new Error(`${this.name} exited before printing ${pattern}\n${this.log()}`);
      }
      return undefined;
    });
  }

  /** Everything it printed, for failure messages. */
  log(): string {
    return `--- ${this.name} stdout:\n${this.out.join("\n")}\n--- stderr:\n${this.err.join("\n")}`;
  }

  signal(signal: Deno.Signal): void {
    this.#child.kill(signal);
  }

  /** Waits (bounded) for the exit and every line written; returns the exit code. */
  async exit(): Promise<number> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${this.name} to exit\n${this.log()}`)),
        WAIT_MS,
      );
    });
    try {
      const { code } = await Promise.race([this.#child.status, timeout]);
      await this.#read;
      return code;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills it if it still runs (cleanup, whatever happened). */
  async kill(): Promise<void> {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // it has exited already
    }
    await this.#child.status;
    await this.#read;
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

/** Runs a short `plm` command to its end (bounded). */
async function plm(args: string[], env: Record<string, string>) {
  const child = new Plm(`plm ${args[0]}`, args, env);
  try {
    const code = await child.exit();
    return { code, stdout: child.out.join("\n"), stderr: child.err.join("\n") };
  } finally {
    await child.kill();
  }
}

interface Answer {
  readonly status: number;
  readonly type: string | null;
  // deno-lint-ignore no-explicit-any
  readonly body: any;
}

/** One HTTP call as JSON. */
async function call(
  base: string,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const { token, body, headers = {} } = options;
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...headers,
    },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  return {
    status: res.status,
    type: res.headers.get("content-type"),
    body: text === "" ? null : JSON.parse(text),
  };
}

/** Asserts an RFC 9457 problem with this status and code. */
function assertProblem(answer: Answer, status: number, code: string): void {
  assert.equal(answer.type, "application/problem+json", JSON.stringify(answer.body));
  assert.deepEqual(
    [answer.status, answer.body.status, answer.body.code],
    [status, status, code],
    JSON.stringify(answer.body),
  );
  assert.equal(typeof answer.body.detail, "string");
  assert.equal(answer.body.type, `urn:plm:error:${code}`);
}

/** Follows `GET /v1/runs/{id}/events` as server-sent events until `end`; returns its events. */
async function followEvents(
  base: string,
  token: string,
  runId: string,
): Promise<{ audit: { action: string; outcome: string }[]; end: { state: string } }> {
  const abort = AbortSignal.timeout(WAIT_MS);
  const res = await fetch(`${base}/v1/runs/${runId}/events`, {
    headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" },
    signal: abort,
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  const text = await res.text(); // the server ends the stream after `end` (or the timeout aborts)
  const events = text.split("\n\n").filter((e) => e.trim() !== "").map((block) => {
    const lines = block.split("\n");
    const event = lines.find((l) => l.startsWith("event: "))?.slice(7);
    const data = JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6));
    return { event, data };
  });
  const end = events.at(-1);
  assert.equal(end?.event, "end", text);
  return { audit: events.filter((e) => e.event === "audit").map((e) => e.data), end: end.data };
}

async function scenario(location: string, dir: string): Promise<void> {
  const started = Date.now();
  // The README's policy (reads allowed, a release needs one "approver") and agents module
  // (its relative import made absolute, since it is written here and not in the clone).
  const policyFile = join(dir, "policy.json");
  await Deno.writeTextFile(policyFile, await readmeDeployFile("policy.json"));
  const agentsFile = join(dir, "agents.ts");
  const agentsSource = await readmeDeployFile("agents.ts");
  assert.ok(agentsSource.includes('"./agent_runtime/mod.ts"'));
  await Deno.writeTextFile(
    agentsFile,
    agentsSource.replace(
      '"./agent_runtime/mod.ts"',
      JSON.stringify(join(REPO, "agent_runtime/mod.ts")),
    ),
  );
  const applied = await plm(["policy", "apply", policyFile, "--db", location], {});
  assert.equal(applied.code, 0, applied.stderr);

  const env = { PLM_JWT_SECRET: SECRET };
  const children: Plm[] = [];
  try {
    const serve = new Plm("serve", ["serve", "--db", location, "--port", "0"], env);
    children.push(serve);
    const workers = ["w1", "w2"].map((id) => {
      const worker = new Plm(id, [
        "worker",
        "--db",
        location,
        "--agents",
        agentsFile,
        "--id",
        id,
        "--log",
        "json",
        "--max-poll-ms",
        "200",
      ], env);
      children.push(worker);
      return worker;
    });
    const base = (await serve.line(/^listening on (http:\/\/\S+)$/))[1]!;
    for (const worker of workers) await worker.line(/"event":"worker\.started"/);

    const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
    const rita = await provider.issueToken(RITA);
    const vic = await provider.issueToken(VIC);
    const auditor = await provider.issueToken(AUDITOR);
    // The approver's token as an operator would make it: plm auth issue-token.
    const issued = await plm(
      ["auth", "issue-token", "--subject", "ann", "--actor-kind", "human", "--role", "approver"],
      env,
    );
    assert.equal(issued.code, 0, issued.stderr);
    const ann = issued.stdout.trim();
    const forged = await new Hs256JwtIdentityProvider({
      secret: "another-secret-of-at-least-32-bytes-long",
    }).issueToken(ANN);

    assert.equal((await call(base, "GET", "/healthz")).status, 200);
    assert.equal((await call(base, "GET", "/readyz")).status, 200);

    // 401: no token, a forged one.
    const read = { action: "bom.read", resource: "bom:1", input: { n: 1 } };
    assertProblem(await call(base, "POST", "/v1/runs", { body: read }), 401, "ERR_TOKEN_MISSING");
    assertProblem(
      await call(base, "POST", "/v1/runs", { token: forged, body: read }),
      401,
      "ERR_TOKEN_SIGNATURE_INVALID",
    );

    // An allowed run: submitted, executed by a worker, followed on the event stream.
    const submitted = await call(base, "POST", "/v1/runs", { token: rita, body: read });
    assert.equal(submitted.status, 201, JSON.stringify(submitted.body));
    assert.equal(submitted.body.state, "queued");
    const followed = await followEvents(base, rita, submitted.body.id);
    assert.equal(followed.end.state, "succeeded");
    assert.deepEqual((followed.end as { result?: unknown }).result, { done: "bom:1" });
    assert.ok(followed.audit.some((r) => r.action === "policy.decide" && r.outcome === "allow"));

    // 422 naming the field, 404, 413 (over the default 1 MiB).
    const invalid = await call(base, "POST", "/v1/runs", { token: rita, body: { action: "x" } });
    assertProblem(invalid, 422, "ERR_INVALID_ARGUMENT");
    assert.equal(invalid.body.field, "resource");
    assertProblem(
      await call(base, "GET", "/v1/runs/nope", { token: rita }),
      404,
      "ERR_RUN_NOT_FOUND",
    );
    assertProblem(
      await call(base, "GET", "/v1/approvals/nope", { token: ann }),
      404,
      "ERR_APPROVAL_NOT_FOUND",
    );
    const huge = { ...read, input: "x".repeat(1_100_000) };
    assertProblem(
      await call(base, "POST", "/v1/runs", { token: rita, body: huge }),
      413,
      "ERR_INVALID_ARGUMENT",
    );

    // Idempotency: the same key and body is the same run; another body is a 409.
    const once = { token: rita, headers: { "idempotency-key": "deploy-e2e-1" } };
    const first = await call(base, "POST", "/v1/runs", { ...once, body: read });
    const again = await call(base, "POST", "/v1/runs", { ...once, body: read });
    assert.equal(first.status, 201);
    assert.equal(again.body.id, first.body.id);
    assertProblem(
      await call(base, "POST", "/v1/runs", { ...once, body: { ...read, resource: "bom:2" } }),
      409,
      "ERR_RUN_IDEMPOTENCY_CONFLICT",
    );

    // A release approved through the API.
    const release = await call(base, "POST", "/v1/runs", {
      token: rita,
      body: { action: "bom.release", resource: "bom:7", input: { rev: "B" } },
    });
    assert.equal(release.body.state, "awaiting_approval");
    const pending = await call(base, "GET", "/v1/approvals?state=pending", { token: ann });
    const approval = pending.body.items.find((a: { runId: string }) => a.runId === release.body.id);
    assert.ok(approval !== undefined, JSON.stringify(pending.body));
    const decide = (token: string, body: unknown) =>
      call(base, "POST", `/v1/approvals/${approval.id}/decisions`, { token, body });
    const approve = { decision: "approve", digest: approval.digest, comment: "Looks right" };
    assertProblem(await decide(rita, approve), 403, "ERR_APPROVAL_SELF");
    assertProblem(await decide(vic, approve), 403, "ERR_APPROVER_NOT_ALLOWED");
    assertProblem(
      await decide(ann, { ...approve, digest: "0".repeat(64) }),
      409,
      "ERR_APPROVAL_DIGEST_MISMATCH",
    );
    const decided = await decide(ann, approve);
    assert.equal(decided.status, 200, JSON.stringify(decided.body));
    assert.equal(decided.body.approval.state, "approved");
    assertProblem(await decide(ann, approve), 409, "ERR_APPROVAL_NOT_PENDING");
    assert.equal((await followEvents(base, rita, release.body.id)).end.state, "succeeded");

    // Cancel a run awaiting its approval: not by someone else (403), by its requester.
    const doomed = await call(base, "POST", "/v1/runs", {
      token: rita,
      body: { action: "bom.release", resource: "bom:8" },
    });
    assert.equal(doomed.body.state, "awaiting_approval");
    const cancel = (token: string) =>
      call(base, "POST", `/v1/runs/${doomed.body.id}/cancel`, { token, body: { reason: "No" } });
    assertProblem(await cancel(ann), 403, "ERR_FORBIDDEN");
    const cancelled = await cancel(rita);
    assert.deepEqual([cancelled.status, cancelled.body.state], [200, "cancelled"]);
    assert.equal((await followEvents(base, rita, doomed.body.id)).end.state, "cancelled");

    // A release with hostile input, approved through the inbox in Chromium.
    const hostile = await call(base, "POST", "/v1/runs", {
      token: rita,
      body: { action: "bom.release", resource: "bom:9", input: HOSTILE },
    });
    assert.equal(hostile.body.state, "awaiting_approval");
    const hostileApproval = (await call(base, "GET", "/v1/approvals?state=pending", { token: ann }))
      .body.items.find((a: { runId: string }) => a.runId === hostile.body.id);
    assert.ok(hostileApproval !== undefined);
    await withChromium(async (browser) => {
      const requester = await watchedPage(browser);
      await signInInbox(requester.page, base, rita, "rita");
      assert.equal(await approvalCard(requester.page, hostileApproval.id).count(), 1);
      assert.equal(await requester.page.locator('button[value="approve"]').count(), 0);

      const approver = await watchedPage(browser);
      const page = approver.page;
      await signInInbox(page, base, ann, "ann");
      const card = approvalCard(page, hostileApproval.id);
      assert.deepEqual(JSON.parse(await card.locator("pre.input").textContent() ?? ""), HOSTILE);
      assert.equal(await page.locator("script").count(), 0);
      assert.equal(await page.locator("main img").count(), 0);
      const screenshot = join(dir, "inbox.png");
      await page.screenshot({ path: screenshot, fullPage: true });
      assert.ok((await Deno.stat(screenshot)).size > 1_000);
      await card.locator('textarea[name="comment"]').first().fill("Ship it");
      await card.locator('button[value="approve"]').click();
      await page.waitForSelector(
        `article[data-approval-id="${hostileApproval.id}"][data-state="approved"]`,
      );
      for (const seen of [requester, approver]) {
        assert.deepEqual(seen.dialogs, [], "no dialog fired");
        assert.deepEqual(seen.violations, [], "no Content-Security-Policy violation");
      }
    });
    const done = await until("the inbox-approved run to succeed", async () => {
      const run = (await call(base, "GET", `/v1/runs/${hostile.body.id}`, { token: rita })).body;
      return run.state === "succeeded" ? run : undefined;
    });
    assert.deepEqual(done.result, { done: "bom:9" });

    // The runs were executed by the two workers; the audit chain holds.
    const executed = new Set<string>();
    await until("the workers to log their runs", () => {
      executed.clear();
      for (const worker of workers) {
        for (const line of worker.out) {
          const event = JSON.parse(line);
          if (event.to === "succeeded") executed.add(event.runId);
        }
      }
      const want = [submitted.body.id, first.body.id, release.body.id, hostile.body.id];
      return want.every((id) => executed.has(id)) ? true : undefined;
    });
    const verified = await call(base, "GET", "/v1/audit/verify", { token: auditor });
    assert.equal(verified.status, 200, JSON.stringify(verified.body));
    assert.equal(verified.body.ok, true, JSON.stringify(verified.body));

    // SIGTERM: each process drains and exits 0.
    for (const child of children) child.signal("SIGTERM");
    for (const child of children) assert.equal(await child.exit(), 0, child.log());
    assert.match(serve.err.join("\n"), /SIGTERM: stopping[\s\S]*\nstopped$/);
    for (const worker of workers) assert.match(worker.out.at(-1)!, /"event":"worker\.stopped"/);
    // A password in the location is never printed.
    for (const child of children) assert.ok(!child.log().includes("pw-never-printed"));
    console.log(
      `deploy e2e on ${location.startsWith("postgres") ? "PostgreSQL" : "SQLite"}: ${
        Date.now() - started
      } ms`,
    );
  } finally {
    for (const child of children) await child.kill();
  }
}

/** Runs `fn` in a temporary folder, kept when it fails (the screenshot is there). */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_deploy_e2e_" });
  try {
    await fn(dir);
  } catch (err) {
    console.error(`kept ${dir}`);
    throw err;
  }
  await Deno.remove(dir, { recursive: true });
}

Deno.test("deploy on a SQLite file: policy apply, serve, two workers, over HTTP and the inbox", async () => {
  await inTempDir((dir) => scenario(join(dir, "plm.db"), dir));
});

Deno.test("plm serve --secure-cookies: the inbox's cookies are Secure behind a TLS proxy", async () => {
  await inTempDir(async (dir) => {
    const location = join(dir, "plm.db");
    const policyFile = join(dir, "policy.json");
    await Deno.writeTextFile(policyFile, await readmeDeployFile("policy.json"));
    const applied = await plm(["policy", "apply", policyFile, "--db", location], {});
    assert.equal(applied.code, 0, applied.stderr);
    const env = { PLM_JWT_SECRET: SECRET };
    const plain = new Plm("serve", ["serve", "--db", location, "--port", "0"], env);
    const behindProxy = new Plm("serve --secure-cookies", [
      "serve",
      "--db",
      location,
      "--port",
      "0",
      "--secure-cookies",
    ], env);
    try {
      const cookieOf = async (serve: Plm) => {
        const base = (await serve.line(/^listening on (http:\/\/\S+)$/))[1]!;
        const res = await fetch(`${base}/inbox`);
        await res.body?.cancel();
        assert.equal(res.status, 200);
        return res.headers.get("set-cookie") ?? "";
      };
      // Over plain http the sign-in cookie is not Secure; told a proxy ends TLS, it is.
      const [plainCookie, proxiedCookie] = await Promise.all([
        cookieOf(plain),
        cookieOf(behindProxy),
      ]);
      assert.match(plainCookie, /^plm_inbox_signin=.*HttpOnly/);
      assert.doesNotMatch(plainCookie, /;\s*Secure/i);
      assert.match(proxiedCookie, /^plm_inbox_signin=.*;\s*Secure/i);
      for (const serve of [plain, behindProxy]) serve.signal("SIGTERM");
      for (const serve of [plain, behindProxy]) assert.equal(await serve.exit(), 0, serve.log());
    } finally {
      await plain.kill();
      await behindProxy.kill();
    }
  });
});

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test("deploy on PostgreSQL: policy apply, serve, two workers, over HTTP and the inbox", async () => {
    await inTempDir((dir) => withPostgresDatabase(url, (location) => scenario(location, dir)));
  });
}
