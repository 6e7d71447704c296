/**
 * The CLI as scripts use it: `--json` purity, `runs submit --wait` exit codes
 * and progress, `runs list --cursor`, `approvals`, `audit head` and `audit export`.
 */
import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import {
  ControlPlane,
  Hs256JwtIdentityProvider,
  openStore,
  type PolicySet,
} from "../../control_plane/mod.ts";
import { verifyLines } from "../../tools/verify_audit.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { fakeIo } from "./_fake_io.ts";

const SECRET = "cli-scripting-test-secret-of-32-bytes-at-least";
const POSTGRES_URL = Deno.env.get("PLM_TEST_POSTGRES_URL");

/** The stores the flows run on: a SQLite file, and PostgreSQL when PLM_TEST_POSTGRES_URL is set. */
const ENGINES: {
  prefix: string;
  run: (fn: (location?: string) => Promise<void>) => Promise<void>;
}[] = [
  { prefix: "", run: (fn) => fn() },
  ...(POSTGRES_URL === undefined ? [] : [{
    prefix: "[postgres] ",
    run: (fn: (location?: string) => Promise<void>) => withPostgresDatabase(POSTGRES_URL, fn),
  }]),
];
const AGENTS = new URL("./_agents.ts", import.meta.url).pathname;

const POLICY: PolicySet = {
  rules: [
    { id: "work", effect: "allow", actions: ["bom.update", "bom.fail"] },
    { id: "no-deletes", effect: "deny", actions: ["bom.delete"] },
    {
      id: "release",
      effect: "require_approval",
      actions: ["bom.release"],
      approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
    },
  ],
};

async function setUp(location?: string) {
  const dir = await Deno.makeTempDir({ prefix: "plm_cli_scripting_" });
  await Deno.writeTextFile(`${dir}/policy.json`, JSON.stringify(POLICY));
  const provider = new Hs256JwtIdentityProvider({ secret: SECRET });
  const planner = await provider.issueToken({ subject: "planner", actorKind: "agent" });
  const lead = await provider.issueToken({ subject: "lena", actorKind: "human", roles: ["lead"] });
  const env: Record<string, string> = {
    PLM_DB: location ?? `${dir}/plm.db`,
    PLM_JWT_SECRET: SECRET,
    PLM_TOKEN: planner,
    PLM_POLICY: `${dir}/policy.json`,
  };
  const plm = async (args: string[], overrides: Record<string, string> = {}) => {
    const io = fakeIo({ ...env, ...overrides });
    const code = await main(args, io);
    return { code, out: io.stdout, err: io.stderr, stdout: io.stdout.join("\n") };
  };
  return { dir, plm, db: location ?? `${dir}/plm.db`, lead, planner };
}

type Plm = Awaited<ReturnType<typeof setUp>>["plm"];

async function submit(plm: Plm, action: string, ...extra: string[]) {
  const result = await plm(["runs", "submit", "--action", action, "--resource", "bom:1", ...extra]);
  assert.equal(result.code, 0, result.err.join("\n"));
  return result.out[0]!.split(" ")[0]!;
}

Deno.test("--json: stdout is one JSON document (or JSON lines) on every command", async () => {
  const { dir, plm, db } = await setUp();
  try {
    const json = async (args: string[]) => {
      const result = await plm([...args, "--json"]);
      assert.equal(result.code, 0, `${args.join(" ")}: ${result.err.join("\n")}`);
      assert.equal(result.out.length, 1, `${args.join(" ")}: one line`);
      return JSON.parse(result.out[0]!);
    };
    const lines = async (args: string[]) => {
      const result = await plm([...args, "--json"]);
      assert.equal(result.code, 0, `${args.join(" ")}: ${result.err.join("\n")}`);
      return result.out.map((line) => JSON.parse(line));
    };
    assert.equal(typeof (await json(["db", "migrate"])).schemaVersion, "number");
    const { token } = await json([
      "auth",
      "issue-token",
      "--subject",
      "x",
      "--actor-kind",
      "human",
    ]);
    assert.equal((await json(["auth", "verify", token])).subject, "x");

    const submitted = await json(["runs", "submit", "--action", "bom.update", "--resource", "b:1"]);
    assert.equal(submitted.state, "queued");
    const listed = await json(["runs", "list"]);
    assert.deepEqual(listed.items.map((r: { id: string }) => r.id), [submitted.id]);
    assert.equal(listed.nextCursor, null);
    const shown = await json(["runs", "show", submitted.id]);
    assert.equal(shown.run.id, submitted.id);
    assert.deepEqual(shown.events.map((e: { action: string }) => e.action).slice(0, 2), [
      "run.created",
      "policy.decide",
    ]);
    const cancelled = await json(["runs", "cancel", submitted.id]);
    assert.equal(cancelled.state, "cancelled");

    await submit(plm, "bom.release");
    const [approval] = await lines(["approvals", "list"]);
    assert.equal(approval.state, "pending");
    assert.equal((await json(["approvals", "show", approval.id])).digest, approval.digest);

    const head = await json(["audit", "head"]);
    assert.equal(head.expectedHead, `${head.seq}:${head.hash}`);
    const verified = await json(["audit", "verify"]);
    assert.deepEqual([verified.ok, verified.checked, verified.head], [
      true,
      head.seq,
      head.expectedHead,
    ]);
    assert.equal((await lines(["audit", "export"])).length, head.seq);
    const keys = await json([
      "audit",
      "keygen",
      "--out-private",
      `${dir}/k.pem`,
      "--out-public",
      `${dir}/k.pub`,
    ]);
    assert.match(keys.keyId, /\S/);
    const checkpoint = await json(["audit", "checkpoint", "--key", `${dir}/k.pem`, "--db", db]);
    assert.equal(checkpoint.seq, head.seq);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--json: an error is one JSON line on stderr, nothing on stdout", async () => {
  const { dir, plm } = await setUp();
  try {
    const missing = await plm(["runs", "show", "no-such-run", "--json"]);
    assert.equal(missing.code, 1);
    assert.deepEqual(missing.out, []);
    assert.equal(missing.err.length, 1);
    const error = JSON.parse(missing.err[0]!).error;
    assert.equal(error.code, "ERR_STORE_NOT_FOUND", "no database yet");
    await submit(plm, "bom.update");
    const notFound = await plm(["runs", "show", "no-such-run", "--json"]);
    assert.equal(JSON.parse(notFound.err[0]!).error.code, "ERR_RUN_NOT_FOUND");
    const usage = await plm(["runs", "list", "--state", "nope", "--json"]);
    assert.equal(usage.code, 2);
    assert.deepEqual(JSON.parse(usage.err.join("\n")), {
      error: { code: "ERR_USAGE", message: "unknown state 'nope'" },
    });
    const text = await plm(["runs", "show", "no-such-run"]);
    assert.match(text.err[0]!, /^error: ERR_RUN_NOT_FOUND: /);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("runs list --json pages newest first: nextCursor in the document", async () => {
  const { dir, plm } = await setUp();
  try {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await submit(plm, "bom.update"));
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { code: number; out: string[]; err: string[] } = await plm([
        "runs",
        "list",
        "-n",
        "2",
        "--json",
        ...(cursor === null ? [] : ["--cursor", cursor]),
      ]);
      assert.equal(page.code, 0, page.err.join("\n"));
      assert.deepEqual(page.err, [], "nothing on stderr in JSON mode");
      const doc = JSON.parse(page.out.join("\n"));
      seen.push(...doc.items.map((r: { id: string }) => r.id));
      cursor = doc.nextCursor;
    } while (cursor !== null);
    assert.deepEqual(seen, [...ids].reverse(), "newest first, every run once");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const engine of ENGINES) {
  Deno.test({
    name:
      `${engine.prefix}runs submit --wait: progress on stderr, the exit code says how the run ended`,
    sanitizeResources: false, // pg keeps its socket until end() settles
    fn: (t) =>
      engine.run(async (location) => {
        const { dir, plm, db, lead } = await setUp(location);
        try {
          await t.step("succeeded: 0, each state change on stderr", async () => {
            const result = await plm([
              "runs",
              "submit",
              "--action",
              "bom.update",
              "--resource",
              "bom:1",
              "--input",
              '{"n":1}',
              "--agents",
              AGENTS,
              "--wait",
            ]);
            assert.equal(result.code, 0, result.err.join("\n"));
            const [id, state] = result.out[0]!.split(" ");
            assert.equal(state, "succeeded");
            assert.deepEqual(
              result.err.map((line) => line.split(" ").slice(1, 4).join(" ")),
              [`${id} queued→running echo`, `${id} running→succeeded echo`],
            );
            assert.ok(result.err.every((line) => /^\d{4}-\d\d-\d\dT[\d:.]+Z /.test(line)));
          });
          await t.step("failed: 3, and --json prints the run and JSON progress", async () => {
            const result = await plm([
              "runs",
              "submit",
              "--action",
              "bom.fail",
              "--resource",
              "bom:1",
              "--capability",
              "fail",
              "--agents",
              AGENTS,
              "--wait",
              "--json",
            ]);
            assert.equal(result.code, 3, result.err.join("\n"));
            const run = JSON.parse(result.stdout);
            assert.equal(run.state, "failed");
            const progress = result.err.map((line) => JSON.parse(line));
            assert.deepEqual(progress.at(-1).to, "failed");
            assert.equal(progress.at(-1).runId, run.id);
          });
          await t.step("rejected by the policy: 4", async () => {
            const result = await plm([
              "runs",
              "submit",
              "--action",
              "bom.delete",
              "--resource",
              "b",
              "--wait",
            ]);
            assert.equal(result.code, 4);
            assert.match(result.out[0]!, / rejected ERR_FORBIDDEN: /);
            assert.match(result.err.at(-1)!, / queued→rejected - /);
          });
          await t.step(
            "rejected by an approver: 4, waiting through awaiting_approval",
            async () => {
              const waiting = plm([
                "runs",
                "submit",
                "--action",
                "bom.release",
                "--resource",
                "bom:2",
                "--wait",
              ]);
              const approval = await pendingApproval(plm);
              const rejected = await plm(
                ["approvals", "reject", approval.id, "--comment", "not this week"],
                { PLM_TOKEN: lead },
              );
              assert.equal(rejected.code, 0, rejected.err.join("\n"));
              const result = await waiting;
              assert.equal(result.code, 4, result.err.join("\n"));
              assert.match(result.err.join("\n"), /queued→awaiting_approval/);
              assert.match(
                result.err.at(-1)!,
                /awaiting_approval→rejected - Rejected by lena: not this week$/,
              );
            },
          );
          await t.step("with --agents, a run approved while waiting runs here: 0", async () => {
            const waiting = plm([
              "runs",
              "submit",
              "--action",
              "bom.release",
              "--resource",
              "bom:4",
              "--agents",
              AGENTS,
              "--wait",
            ]);
            const approval = await pendingApproval(plm);
            const approved = await plm(["approvals", "approve", approval.id], { PLM_TOKEN: lead });
            assert.equal(approved.code, 0, approved.err.join("\n"));
            const result = await waiting;
            assert.equal(result.code, 0, result.err.join("\n"));
            assert.match(result.out[0]!, / succeeded$/);
            assert.match(
              result.err.join("\n"),
              /awaiting_approval→queued .*\n.*queued→running echo/,
            );
          });
          await t.step("cancelled: 5", async () => {
            const waiting = plm([
              "runs",
              "submit",
              "--action",
              "bom.update",
              "--resource",
              "c",
              "--wait",
            ]);
            const id = await queuedRun(plm, "c");
            assert.equal((await plm(["runs", "cancel", id])).code, 0);
            const result = await waiting;
            assert.equal(result.code, 5, result.err.join("\n"));
            assert.match(result.out[0]!, new RegExp(`^${id} cancelled`));
            assert.match(result.err.at(-1)!, / queued→cancelled - Cancelled from the CLI$/);
          });
          await t.step("expired: 6", async () => {
            const waiting = plm([
              "runs",
              "submit",
              "--action",
              "bom.release",
              "--resource",
              "bom:3",
              "--wait",
            ]);
            await pendingApproval(plm);
            {
              await using store = await openStore(db);
              const cp = new ControlPlane(store, { policies: POLICY });
              const expired = await cp.expireApprovals(Date.now() + 3_600_000);
              assert.equal(expired.length, 1);
            }
            const result = await waiting;
            assert.equal(result.code, 6, result.err.join("\n"));
            assert.match(result.out[0]!, / expired/);
          });
          await t.step("--timeout: 7, the run goes on", async () => {
            const result = await plm([
              "runs",
              "submit",
              "--action",
              "bom.update",
              "--resource",
              "t",
              "--wait",
              "--timeout",
              "1",
            ]);
            assert.equal(result.code, 7);
            assert.match(result.out[0]!, / queued$/);
          });
          await t.step("usage: --timeout without --wait, or not a count", async () => {
            const base = ["runs", "submit", "--action", "bom.update", "--resource", "t"];
            assert.equal((await plm([...base, "--timeout", "5"])).code, 2);
            assert.equal((await plm([...base, "--wait", "--timeout", "0"])).code, 2);
          });
          await t.step("--help documents the exit codes", async () => {
            const help = (await plm(["runs", "--help"])).stdout;
            for (const code of ["3  submit --wait: the run failed", "4  ", "5  ", "6  ", "7  "]) {
              assert.ok(help.includes(`\n  ${code}`), code);
            }
          });
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }),
  });
}
/** Polls until exactly one pending approval exists (the waiting submit created it). */
async function pendingApproval(plm: Plm): Promise<{ id: string; digest: string }> {
  for (;;) {
    const listed = await plm(["approvals", "list", "--json"]);
    if (listed.code === 0 && listed.out.length === 1) return JSON.parse(listed.out[0]!);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls until the queued run of `resource` exists. */
async function queuedRun(plm: Plm, resource: string): Promise<string> {
  for (;;) {
    const listed = await plm(["runs", "list", "--state", "queued", "--json"]);
    if (listed.code === 0) {
      const run = JSON.parse(listed.stdout).items.find((r: { task: { resource: string } }) =>
        r.task.resource === resource
      );
      if (run !== undefined) return run.id;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const engine of ENGINES) {
  Deno.test({
    name: `${engine.prefix}approvals list|show|approve|reject with the approver's PLM_TOKEN`,
    sanitizeResources: false, // pg keeps its socket until end() settles
    fn: (t) =>
      engine.run(async (location) => {
        const { dir, plm, lead, planner } = await setUp(location);
        try {
          const first = await submit(plm, "bom.release");
          const second = await submit(plm, "bom.release");
          const listed = await plm(["approvals", "list"]);
          assert.equal(listed.code, 0, listed.err.join("\n"));
          assert.equal(listed.out.length, 2);
          assert.match(
            listed.out[0]!,
            new RegExp(
              `^\\S+ pending ${first} bom\\.release bom:1 requester=planner approvals=0/1 deadline=\\S+Z$`,
            ),
          );
          const [a1, a2] = listed.out.map((line) => line.split(" ")[0]!);
          const shown = JSON.parse((await plm(["approvals", "show", a1!])).stdout);
          assert.equal(shown.runId, first);
          assert.deepEqual(shown.subject.action, "bom.release");

          await t.step("the requester cannot approve its own request", async () => {
            const self = await plm(["approvals", "approve", a1!], { PLM_TOKEN: planner });
            assert.equal(self.code, 1);
            assert.match(self.err[0]!, /^error: ERR_APPROVAL_SELF: /);
          });
          await t.step("a stale digest is refused", async () => {
            const stale = await plm(["approvals", "approve", a1!, "--digest", "0".repeat(64)], {
              PLM_TOKEN: lead,
            });
            assert.equal(stale.code, 1);
            assert.match(stale.err[0]!, /^error: ERR_APPROVAL_DIGEST_MISMATCH: /);
          });
          await t.step("without a token, nothing is decided", async () => {
            const none = await plm(["approvals", "approve", a1!], { PLM_TOKEN: "" });
            assert.equal(none.code, 1);
            assert.match(none.err[0]!, /^error: ERR_IDENTITY_REQUIRED: /);
          });
          await t.step(
            "approve with the digest shown: the run is queued for a worker",
            async () => {
              const approved = await plm(
                [
                  "approvals",
                  "approve",
                  a1!,
                  "--digest",
                  shown.digest,
                  "--comment",
                  "ok",
                  "--json",
                ],
                { PLM_TOKEN: lead },
              );
              assert.equal(approved.code, 0, approved.err.join("\n"));
              const { approval, run } = JSON.parse(approved.stdout);
              assert.deepEqual([approval.state, run.id, run.state], ["approved", first, "queued"]);
              const again = await plm(["approvals", "approve", a1!], { PLM_TOKEN: lead });
              assert.equal(again.code, 1);
              assert.match(again.err[0]!, /^error: ERR_APPROVAL_(NOT_PENDING|DUPLICATE): /);
            },
          );
          await t.step("reject needs a comment; with one the run is rejected", async () => {
            const bare = await plm(["approvals", "reject", a2!], { PLM_TOKEN: lead });
            assert.equal(bare.code, 2);
            const rejected = await plm(["approvals", "reject", a2!, "--comment", "no"], {
              PLM_TOKEN: lead,
            });
            assert.equal(rejected.code, 0, rejected.err.join("\n"));
            assert.equal(rejected.out[0], `${a2} rejected (run ${second} rejected)`);
          });
          await t.step("list filters by state and run", async () => {
            assert.deepEqual((await plm(["approvals", "list"])).out, [], "none pending");
            const all = await plm(["approvals", "list", "--state", "all", "--json"]);
            assert.deepEqual(all.out.map((l) => JSON.parse(l).state), ["approved", "rejected"]);
            const ofRun = await plm([
              "approvals",
              "list",
              "--state",
              "all",
              "--run",
              second,
              "--json",
            ]);
            assert.deepEqual(ofRun.out.map((l) => JSON.parse(l).id), [a2]);
          });
          await t.step("usage errors exit 2", async () => {
            for (
              const args of [
                ["approvals"],
                ["approvals", "frob"],
                ["approvals", "list", "--state", "maybe"],
                ["approvals", "list", "--digest", "x"],
                ["approvals", "show"],
                ["approvals", "approve", "a", "b"],
                ["approvals", "show", "a", "--comment", "x"],
              ]
            ) {
              assert.equal((await plm(args)).code, 2, args.join(" "));
            }
            const missing = await plm(["approvals", "show", "nope"]);
            assert.equal(missing.code, 1);
            assert.match(missing.err[0]!, /^error: ERR_APPROVAL_NOT_FOUND: /);
          });
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }),
  });
}
Deno.test("audit head prints exactly what verify --expected-head takes, both ways", async () => {
  const { dir, plm } = await setUp();
  try {
    await submit(plm, "bom.update");
    const head = (await plm(["audit", "head"])).out;
    assert.equal(head.length, 1);
    assert.match(head[0]!, /^\d+:[0-9a-f]{64}$/);
    const verified = await plm(["audit", "verify", "--expected-head", head[0]!]);
    assert.equal(verified.code, 0, verified.out.join("\n"));
    // And back: the head verify reports is the one head printed.
    const json = JSON.parse((await plm(["audit", "verify", "--json"])).stdout);
    assert.equal(json.head, head[0]);
    // A head the log does not reach (later than the log) is refused.
    await submit(plm, "bom.update");
    const later = (await plm(["audit", "head"])).out[0]!;
    const wrong = later.replace(/:(.)/, (_, c) => `:${c === "0" ? "1" : "0"}`);
    assert.equal((await plm(["audit", "verify", "--expected-head", wrong])).code, 1);
    assert.equal((await plm(["audit", "verify", "--expected-head", later])).code, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

for (const engine of ENGINES) {
  Deno.test({
    name:
      `${engine.prefix}audit export: filters by --since, --run, --actor, --action; whole export verifies`,
    sanitizeResources: false, // pg keeps its socket until end() settles
    fn: () =>
      engine.run(async (location) => {
        const { dir, plm, lead } = await setUp(location);
        try {
          const a = await submit(plm, "bom.update");
          const b = await submit(plm, "bom.release");
          const approval = JSON.parse((await plm(["approvals", "list", "--json"])).out[0]!);
          await plm(["approvals", "approve", approval.id], { PLM_TOKEN: lead });
          const exported = async (...args: string[]) => {
            const result = await plm(["audit", "export", ...args]);
            assert.equal(result.code, 0, result.err.join("\n"));
            return result.out.map((line) => JSON.parse(line));
          };
          const all = await exported();
          const verdict = verifyLines((await plm(["audit", "export"])).out);
          assert.equal(verdict.ok, true, JSON.stringify(verdict));
          assert.equal(verdict.checked, all.length);

          const since = await exported("--since", "3");
          assert.deepEqual(since.map((r) => r.seq), all.filter((r) => r.seq > 3).map((r) => r.seq));
          assert.equal(since[0].prevHash, all[2].hash, "--since continues the chain");
          const ofRun = await exported("--run", b);
          assert.ok(ofRun.length > 0 && ofRun.every((r) => r.runId === b));
          assert.deepEqual(ofRun, all.filter((r) => r.runId === b));
          const byLead = await exported("--actor", "lena");
          assert.ok(byLead.length > 0 && byLead.every((r) => r.actor.subject === "lena"));
          const approvals = await exported("--action", "approval.");
          assert.ok(
            approvals.length > 0 && approvals.every((r) => r.action.startsWith("approval.")),
          );
          assert.deepEqual(approvals, all.filter((r) => r.action.startsWith("approval.")));
          const combined = await exported("--run", a, "--action", "run.created");
          assert.deepEqual(combined.map((r) => [r.runId, r.action]), [[a, "run.created"]]);

          // An export --since the last seq of an earlier one continues it: both verify together.
          const earlier = (await plm(["audit", "export"])).out;
          await submit(plm, "bom.update");
          const more = (await plm(["audit", "export", "--since", String(all.at(-1).seq)])).out;
          assert.ok(more.length > 0);
          assert.equal(verifyLines([...earlier, ...more]).ok, true);

          const filtered = (await plm(["audit", "export", "--run", b])).out;
          assert.equal(verifyLines(filtered).ok, false, "a filtered export is not a chain");
          assert.match((await plm(["audit", "--help"])).stdout, /NOT a chain/);
          for (
            const args of [
              ["audit", "export", "--since", "x"],
              ["audit", "export", "--run", ""],
              ["audit", "tail", "--run", "r"],
              ["audit", "head", "--since", "1"],
            ]
          ) {
            assert.equal((await plm(args)).code, 2, args.join(" "));
          }
        } finally {
          await Deno.remove(dir, { recursive: true });
        }
      }),
  });
}

Deno.test("without --policy, runs submit decides under the store's version in force", async () => {
  const { dir, plm } = await setUp();
  try {
    const noFile = { PLM_POLICY: "" };
    // Nothing applied yet: no rule allows anything.
    const before = await plm(
      ["runs", "submit", "--action", "bom.update", "--resource", "b:1", "--json"],
      noFile,
    );
    assert.equal(before.code, 0, before.err.join("\n"));
    assert.equal(JSON.parse(before.out[0]!).state, "rejected");
    const applied = await plm(["policy", "apply", `${dir}/policy.json`], noFile);
    assert.equal(applied.code, 0, applied.err.join("\n"));
    const after = await plm(
      ["runs", "submit", "--action", "bom.update", "--resource", "b:2", "--json"],
      noFile,
    );
    assert.equal(after.code, 0, after.err.join("\n"));
    assert.equal(JSON.parse(after.out[0]!).state, "queued");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("approvals list --mine shows only what the caller may decide now", async () => {
  const { dir, plm, lead, planner } = await setUp();
  try {
    await submit(plm, "bom.release"); // by the planner (PLM_TOKEN), needing a lead
    const mine = async (token: string) => {
      const result = await plm(["approvals", "list", "--mine", "--json"], { PLM_TOKEN: token });
      assert.equal(result.code, 0, result.err.join("\n"));
      return result.out.map((line) => JSON.parse(line).id as string);
    };
    const all = (await plm(["approvals", "list", "--json"])).out.map((l) => JSON.parse(l).id);
    assert.equal(all.length, 1);
    assert.deepEqual(await mine(lead), all, "a lead may decide it");
    assert.deepEqual(await mine(planner), [], "the requester may not");
    const approved = await plm(["approvals", "approve", all[0]!], { PLM_TOKEN: lead });
    assert.equal(approved.code, 0, approved.err.join("\n"));
    assert.deepEqual(await mine(lead), [], "decided: no longer the lead's to decide");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
