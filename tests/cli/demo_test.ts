/**
 * `plm demo` end to end, as a subprocess: on its embedded SQLite file, and
 * (when `PLM_TEST_POSTGRES_URL` is set) on a PostgreSQL database of its own.
 *
 * @module
 */
import assert from "node:assert/strict";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";
import { runPlm } from "./_subprocess.ts";

/** Checks the demo's report: every flow ended as it should and the chain verified. */
function assertFlows(stdout: string): void {
  const expected = [
    /^2\. Allowed: bom\.update -> succeeded by clerk \(attempt 1\)$/m,
    /^3\. Denied: bom\.delete -> rejected /m,
    /^ {3}planner-agent tries to approve its own request -> ERR_APPROVAL_SELF$/m,
    /^ {3}rita \(verified token\) approves -> succeeded by clerk/m,
    /^5\. Retry: cad\.render -> succeeded by renderer \(attempt 3\)$/m,
    /^6\. Escalation: plm\.reconcile -> succeeded by senior-reconciler \(attempt 4, 1 escalation\)$/m,
    /^7\. Crash: sim\.run started in a child process, killed with SIGKILL while running$/m,
    /^ {3}-> succeeded by simulator \(attempt 2\)$/m,
    /^Audit chain: \d+ records valid; head #\d+ [0-9a-f]{16}\.\.\./m,
  ];
  for (const line of expected) assert.match(stdout, line);
  assert.match(stdout, /run\.lease\.reclaimed\s+retrying\s+worker-2/, "the reaper took it back");
}

Deno.test("plm demo runs every flow on an embedded SQLite file and removes it", async () => {
  const demo = await runPlm(["demo"]);
  assert.equal(demo.code, 0, demo.stderr);
  assertFlows(demo.stdout);
  const path = /^plm demo: sqlite database (.+)$/m.exec(demo.stdout)?.[1];
  assert.ok(path !== undefined, demo.stdout.slice(0, 200));
  assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
});

Deno.test("plm demo --json: the story on stderr, one JSON summary on stdout", async () => {
  const demo = await runPlm(["demo", "--json"]);
  assert.equal(demo.code, 0, demo.stderr);
  assertFlows(demo.stderr);
  const summary = JSON.parse(demo.stdout);
  assert.deepEqual(
    Object.fromEntries(
      Object.entries(summary.runs).map(([name, run]) => [name, (run as { state: string }).state]),
    ),
    {
      allowed: "succeeded",
      denied: "rejected",
      approval: "succeeded",
      retry: "succeeded",
      escalation: "succeeded",
      crash: "succeeded",
    },
  );
  assert.equal(summary.audit.ok, true);
  assert.match(summary.audit.head, /^\d+:[0-9a-f]{64}$/);
});

Deno.test("plm demo refuses --db :memory: and --keep with --db", async () => {
  const memory = await runPlm(["demo", "--db", ":memory:"]);
  assert.equal(memory.code, 2);
  assert.match(memory.stderr, /^error: --db :memory: cannot be shared/);
  const keep = await runPlm(["demo", "--keep", "--db", "postgres://127.0.0.1:1/plm"]);
  assert.equal(keep.code, 2);
  assert.match(keep.stderr, /^error: --keep applies to the temporary database only/);
});

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test({
    name: "[postgres] plm demo --db postgres://... runs the same flows, password never printed",
    sanitizeResources: false, // pg keeps its socket until end() settles
    async fn() {
      await withPostgresDatabase(url, async (location) => {
        // Exactly as the README says: `deno task demo -- --db URL` (the task passes the `--` on).
        const output = await new Deno.Command(Deno.execPath(), {
          args: ["task", "demo", "--", "--db", location],
          cwd: new URL("../../", import.meta.url).pathname,
          stdin: "null",
        }).output();
        const demo = {
          code: output.code,
          stdout: new TextDecoder().decode(output.stdout),
          stderr: new TextDecoder().decode(output.stderr),
        };
        assert.equal(demo.code, 0, demo.stderr);
        assertFlows(demo.stdout);
        assert.match(demo.stdout, /^plm demo: postgres database postgres(ql)?:\/\/[^\n]*\*\*\*@/m);
        // `deno task` itself echoes its command line ("Task demo deno run ... --db URL"): ours
        // is the rest (PLM_DB keeps the URL off the command line altogether).
        const ours = demo.stderr.split("\n").filter((line) => !/^\S*Task\S* /.test(line));
        assert.doesNotMatch(demo.stdout + ours.join("\n"), /pw-never-printed/);
      });
    },
  });
}
