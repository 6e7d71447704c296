// `plm policy`: apply/show/history/diff on a SQLite file (and PostgreSQL when
// PLM_TEST_POSTGRES_URL is set), and check/eval/test/schema on files.
import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import {
  AuditLog,
  openStore,
  policySetJsonSchema,
  policySetVersion,
  PolicyStore,
} from "../../control_plane/mod.ts";
import { fakeIo } from "./_fake_io.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase } from "../_postgres_database.ts";

const REPO = decodeURIComponent(new URL("../../", import.meta.url).pathname);

const V1 = {
  id: "plm",
  rules: [
    { id: "read", effect: "allow", actions: ["bom.read"] },
    { id: "no-delete", effect: "deny", actions: ["bom.delete"] },
  ],
};
const V2 = {
  id: "plm",
  rules: [
    { id: "read", effect: "allow", actions: ["bom.*"] },
    {
      id: "big",
      effect: "require_approval",
      actions: ["bom.update"],
      conditions: [{ attr: "amount", op: "gt", value: 1000 }],
      approval: { approverRoles: ["cm"], quorum: 2, timeoutSeconds: 3600, onExpiry: "deny" },
    },
  ],
};
const ALICE = { subject: "alice", actorKind: "human", roles: [], scopes: [] };

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_policy_cli_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function plm(args: string[], env: Record<string, string> = {}) {
  const io = fakeIo(env);
  const code = await main(["policy", ...args], io);
  return { code, out: io.stdout, err: io.stderr };
}

async function write(dir: string, name: string, value: unknown): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(
    path,
    typeof value === "string" ? value : JSON.stringify(value, null, 2),
  );
  return path;
}

/** Runs `fn` with a store location of its own: a SQLite file, or a PostgreSQL database. */
type WithLocation = (dir: string, fn: (location: string) => Promise<void>) => Promise<void>;
const LOCATIONS: [string, WithLocation][] = [["sqlite", (dir, fn) => fn(`${dir}/plm.db`)]];
if (POSTGRES_URL !== undefined) {
  LOCATIONS.push(["postgres", (_dir, fn) => withPostgresDatabase(POSTGRES_URL!, fn)]);
}

for (const [engine, withLocation] of LOCATIONS) {
  Deno.test({
    name:
      `[${engine}] plm policy apply stores versions as the system, the OS user as reason; show, history, diff read them`,
    sanitizeResources: false,
    async fn() {
      await withDir((dir) =>
        withLocation(dir, async (db) => {
          const v1 = await write(dir, "v1.json", V1);
          const v2 = await write(dir, "v2.json", V2);
          const env = { USER: "alice", PLM_DB: db };
          const first = await plm(["apply", v1, "--reason", "initial rules"], env);
          assert.equal(first.code, 0, first.err.join("\n"));
          assert.equal(
            first.out[0],
            `policy version 1 applied (hash ${policySetVersion(V1 as never)}, 2 rules)`,
          );
          const again = await plm(["apply", v1, "--db", db], { USER: "bob" });
          assert.match(again.out[0] ?? "", /^policy unchanged: version 1 /);
          const againJson = await plm(["apply", v1, "--db", db, "--json"], { USER: "bob" });
          assert.deepEqual(JSON.parse(againJson.out[0]!), {
            version: 1,
            hash: policySetVersion(V1 as never),
            changed: false,
            rules: 2,
          });
          const second = await plm(["apply", v2, "--db", db], { USER: "bob" });
          assert.match(second.out[0] ?? "", /^policy version 2 applied/);

          // The store and the audit log say who and why.
          {
            await using store = await openStore(db, { readOnly: true });
            const history = await new PolicyStore(store).history();
            assert.deepEqual(
              history.map((p) => [p.version, p.appliedBy, p.reason]),
              [
                [2, "system", "applied by bob with plm policy apply"],
                [1, "system", "applied by alice with plm policy apply: initial rules"],
              ],
            );
            const records = await new AuditLog(store).list({ actionPrefix: "policy.applied" });
            assert.deepEqual(
              records.map((
                r,
              ) => [r.actor.subject, r.actor.kind, (r.data as { hash: string }).hash]),
              [
                ["system", "system", policySetVersion(V1 as never)],
                ["system", "system", policySetVersion(V2 as never)],
              ],
            );
            const bound = await new AuditLog(store).list({ actionPrefix: "system.identity.bound" });
            assert.equal(bound.length, 4, "every apply binds the system identity, audited");
          }

          // show: the active set as JSON (stdout) that applies back unchanged.
          const shown = await plm(["show"], { PLM_DB: db });
          assert.equal(shown.code, 0);
          assert.deepEqual(JSON.parse(shown.out.join("\n")), V2);
          assert.match(shown.err[0] ?? "", /^version 2 .* system {2}applied by bob/);
          const reapplied = await write(dir, "shown.json", shown.out.join("\n"));
          assert.match((await plm(["apply", reapplied], env)).out[0] ?? "", /unchanged/);
          const shownOld = await plm(["show", "1", "--json"], { PLM_DB: db });
          const doc = JSON.parse(shownOld.out[0]!);
          assert.deepEqual([doc.version, doc.hash, doc.policySet], [
            1,
            policySetVersion(V1 as never),
            V1,
          ]);
          assert.equal((await plm(["show", "7"], { PLM_DB: db })).code, 1);

          const history = await plm(["history", "--json"], { PLM_DB: db });
          assert.deepEqual(history.out.map((l) => JSON.parse(l).version), [2, 1]);
          assert.equal((await plm(["history", "-n", "1"], { PLM_DB: db })).out.length, 1);

          // diff: the previous version to the active one, two versions, a version and a file.
          const diffed = await plm(["diff"], { PLM_DB: db });
          assert.deepEqual(diffed.out.slice(2), ["+ big", "- no-delete", "~ read"]);
          const json = JSON.parse(
            (await plm(["diff", "2", "1", "--json"], { PLM_DB: db })).out[0]!,
          );
          assert.deepEqual([json.added, json.removed, json.changed], [["no-delete"], ["big"], [
            "read",
          ]]);
          const vsFile = await plm(["diff", "2", v2], { PLM_DB: db });
          assert.equal(vsFile.out.at(-1), "no changes");
        })
      );
    },
  });
}

Deno.test("plm policy apply refuses hostile files naming the field and stores nothing", async () => {
  await withDir(async (dir) => {
    const db = `${dir}/plm.db`;
    const env = { PLM_DB: db, USER: "alice" };
    const cases: [string, string | Uint8Array, RegExp][] = [
      [
        "wrong-type.json",
        JSON.stringify({ rules: [{ id: "r", effect: "allow", actions: 7 }] }),
        /ERR_POLICY_INVALID: .*rules\[0\]\.actions/,
      ],
      [
        "unknown-key.json",
        JSON.stringify({ rules: [], extra: true }),
        /ERR_POLICY_INVALID: .*extra/,
      ],
      ["nul-raw.json", '{"rules":[]}\u0000', /ERR_POLICY_INVALID: Cannot parse policy JSON/],
      [
        "nul-escaped.json",
        '{"rules":[{"id":"a\\u0000b","effect":"allow","actions":["*"]}]}',
        /ERR_POLICY_INVALID: .*rules\[0\]\.id: Text contains U\+0000/,
      ],
      ["deep.json", "[".repeat(200_000) + "]".repeat(200_000), /ERR_POLICY_INVALID: /],
      [
        "latin1.json",
        new Uint8Array([0x7b, 0x22, 0xe9, 0x22, 0x7d]),
        /ERR_INVALID_ARGUMENT: Invalid FILE .*not UTF-8/,
      ],
      [
        "huge.json",
        " ".repeat(4 * 1024 * 1024 + 1),
        /ERR_INVALID_ARGUMENT: Invalid FILE .*larger than/,
      ],
    ];
    for (const [name, content, expected] of cases) {
      const path = `${dir}/${name}`;
      if (typeof content === "string") await Deno.writeTextFile(path, content);
      else await Deno.writeFile(path, content);
      const result = await plm(["apply", path], env);
      assert.equal(result.code, 1, name);
      assert.match(result.err[0] ?? "", expected, name);
    }
    const missing = await plm(["apply", `${dir}/nope.json`], env);
    assert.match(
      missing.err[0] ?? "",
      /ERR_INVALID_ARGUMENT: Invalid FILE .*nope\.json: cannot read it/,
    );
    // Canonical JSON over the limit: refused naming the policy set.
    const big = {
      rules: Array.from({ length: 5_000 }, (_, i) => ({
        id: `r${i}`,
        effect: "allow",
        actions: [`bom.${"x".repeat(250)}`],
      })),
    };
    const bigPath = await write(dir, "big.json", JSON.stringify(big));
    const tooBig = await plm(["apply", bigPath], env);
    assert.match(
      tooBig.err[0] ?? "",
      /ERR_INVALID_ARGUMENT: Cannot accept policySet: its JSON is more than/,
    );
    // Refused before the store is opened: nothing was created.
    await assert.rejects(Deno.stat(db), Deno.errors.NotFound);
    assert.equal(await main(["db", "migrate"], fakeIo(env)), 0);
    const shown = await plm(["show"], env);
    assert.equal(shown.code, 1);
    assert.match(shown.err[0] ?? "", /ERR_POLICY_NOT_FOUND: .*plm policy apply FILE/);
  });
});

Deno.test("plm policy check reports schema problems and lint findings, exit 1", async () => {
  await withDir(async (dir) => {
    const clean = await write(dir, "clean.json", V2);
    const ok = await plm(["check", clean]);
    assert.equal(ok.code, 0);
    assert.match(ok.out[0] ?? "", /clean\.json: ok \(2 rules, hash [0-9a-f]{64}\)/);

    const invalid = await write(dir, "invalid.json", {
      rules: [{ id: "r", effect: "permit", actions: ["*"] }, {
        id: "r",
        effect: "allow",
        actions: [],
      }],
    });
    const bad = await plm(["check", invalid]);
    assert.equal(bad.code, 1);
    assert.ok(
      bad.out.some((l) => /invalid\.json: rules\[0\]\.effect: /.test(l)),
      bad.out.join("\n"),
    );
    assert.ok(bad.out.some((l) => /rules\[1\]\.actions: /.test(l)), bad.out.join("\n"));

    const linted = await write(dir, "lint.json", {
      rules: [
        { id: "boms", effect: "allow", actions: ["bom.**"] },
        { id: "bom-read", effect: "allow", actions: ["bom.read"], roles: ["planner"] },
        { id: "deny-all", effect: "deny", actions: ["**"] },
        { id: "typo", effect: "deny", actions: ["bom..delete"] },
        {
          id: "never",
          effect: "deny",
          actions: ["po.create"],
          conditions: [{ attr: "amount", op: "eq", value: 1 }, {
            attr: "amount",
            op: "eq",
            value: 2,
          }],
        },
        {
          id: "system-roles",
          effect: "deny",
          actions: ["x.y"],
          actorKinds: ["system"],
          roles: ["a"],
        },
      ],
    });
    const findings = await plm(["check", linted, "--json"]);
    assert.equal(findings.code, 1);
    const report = JSON.parse(findings.out[0]!);
    assert.equal(report.ok, false);
    assert.deepEqual(
      report.findings.map((f: { kind: string; ruleId: string }) => `${f.kind} ${f.ruleId}`),
      [
        "unreachable boms",
        "unreachable bom-read",
        "never_matches typo",
        "shadowed typo",
        "never_matches never",
        "shadowed never",
        "never_matches system-roles",
        "shadowed system-roles",
      ],
    );
    assert.deepEqual(report.findings[2].path, ["rules", 3, "actions", 0]);
  });
});

Deno.test("plm policy eval prints the verdict with matched rules and reason", async () => {
  await withDir(async (dir) => {
    const file = await write(dir, "p.json", V2);
    const identity = JSON.stringify(ALICE);
    const asked = await plm([
      "eval",
      file,
      "--action",
      "bom.update",
      "--resource",
      "bom:1",
      "--identity",
      identity,
      "--attributes",
      '{"amount":5000}',
    ]);
    assert.equal(asked.code, 0, asked.err.join("\n"));
    assert.equal(asked.out[0], "decision: require_approval");
    assert.equal(asked.out[1], "matched: read, big");
    assert.match(asked.out[2] ?? "", /^reason: /);
    assert.match(asked.out[3] ?? "", /^approval: .*"quorum":2/);
    const json = await plm([
      "eval",
      file,
      "--action",
      "bom.delete.all",
      "--resource",
      "bom:1",
      "--identity",
      identity,
      "--json",
    ]);
    const verdict = JSON.parse(json.out[0]!);
    assert.deepEqual([verdict.decision, verdict.matchedRuleIds, verdict.code], [
      "deny",
      [],
      "ERR_FORBIDDEN",
    ]);
    const badIdentity = await plm([
      "eval",
      file,
      "--action",
      "bom.read",
      "--resource",
      "bom:1",
      "--identity",
      '{"subject":"a","actorKind":"robot","roles":[],"scopes":[]}',
    ]);
    assert.equal(badIdentity.code, 1);
    assert.match(
      badIdentity.err[0] ?? "",
      /ERR_INVALID_ARGUMENT: Invalid --identity: --identity\.actorKind/,
    );
    const notJson = await plm([
      "eval",
      file,
      "--action",
      "a",
      "--resource",
      "r",
      "--identity",
      "{",
    ]);
    assert.match(notJson.err[0] ?? "", /Invalid --identity: not JSON/);
    const badRisk = await plm([
      "eval",
      file,
      "--action",
      "a",
      "--resource",
      "r",
      "--identity",
      identity,
      "--risk",
      "extreme",
    ]);
    assert.match(badRisk.err[0] ?? "", /ERR_INVALID_ARGUMENT: Invalid request: request\.risk/);
    assert.equal((await plm(["eval", file, "--action", "a"])).code, 2);
  });
});

Deno.test("plm policy test prints PASS/FAIL per case and exits 1 on any failure", async () => {
  await withDir(async (dir) => {
    const file = await write(dir, "p.json", V1);
    const request = (action: string) => ({ identity: ALICE, action, resource: "bom:1" });
    const passing = await write(dir, "pass.json", {
      cases: [
        { name: "reads", request: request("bom.read"), expect: "allow" },
        {
          name: "deletes",
          request: request("bom.delete"),
          expect: { decision: "deny", matchedRuleIds: ["no-delete"], code: "ERR_FORBIDDEN" },
        },
      ],
    });
    const ok = await plm(["test", file, passing]);
    assert.equal(ok.code, 0, ok.out.join("\n"));
    assert.deepEqual(ok.out, ["PASS reads", "PASS deletes", "2 passed, 0 failed"]);

    const failing = await write(dir, "fail.json", [
      { request: request("bom.read"), expect: "allow" },
      { name: "updates", request: request("bom.update"), expect: "allow" },
    ]);
    const failed = await plm(["test", file, failing]);
    assert.equal(failed.code, 1);
    assert.equal(failed.out[0], "PASS case 1");
    assert.match(
      failed.out[1] ?? "",
      /^FAIL updates: expected \{"decision":"allow"\}, got \{"decision":"deny"/,
    );
    assert.equal(failed.out[2], "1 passed, 1 failed");
    const json = await plm(["test", file, failing, "--json"]);
    assert.deepEqual(json.out.map((l) => JSON.parse(l).pass), [true, false]);

    const malformed = await write(dir, "bad.json", [{
      request: request("bom.read"),
      expect: "maybe",
    }]);
    const refused = await plm(["test", file, malformed]);
    assert.equal(refused.code, 1);
    assert.match(
      refused.err[0] ?? "",
      /ERR_INVALID_ARGUMENT: Invalid CASES .*bad\.json: .*\[0\]\.expect/,
    );
    assert.equal((await plm(["test", file])).code, 2);
  });
});

Deno.test("docs/policy.schema.json is what the code generates (regenerate: plm policy schema)", async () => {
  const committed = JSON.parse(await Deno.readTextFile(`${REPO}docs/policy.schema.json`));
  assert.deepEqual(committed, policySetJsonSchema());
  const printed = await plm(["schema"]);
  assert.deepEqual(JSON.parse(printed.out.join("\n")), committed);
});

Deno.test("the README's policy file applies and lints clean; its $schema is not stored", async () => {
  const readme = await Deno.readTextFile(`${REPO}README.md`);
  const section = readme.slice(readme.indexOf("## Policies"));
  const text = /```json\n([\s\S]*?)```/.exec(section)![1]!;
  await withDir(async (dir) => {
    const file = await write(dir, "readme-policy.json", text);
    const checked = await plm(["check", file]);
    assert.equal(checked.code, 0, checked.out.join("\n"));
    const db = `${dir}/plm.db`;
    assert.equal((await plm(["apply", file, "--db", db], { USER: "ops" })).code, 0);
    const { $schema: _, ...policy } = JSON.parse(text);
    const shown = await plm(["show", "--db", db]);
    assert.deepEqual(JSON.parse(shown.out.join("\n")), policy);
  });
});

Deno.test("plm policy without a subcommand or with an unknown one is a usage error", async () => {
  assert.equal((await plm([])).code, 2);
  assert.equal((await plm(["frob"])).code, 2);
  const help = await plm(["--help"]);
  assert.match(help.out[0] ?? "", /^plm policy: /);
});

Deno.test("plm serve refuses to start with no policy in the store, saying how to apply one", async () => {
  await withDir(async (dir) => {
    const io = fakeIo({ PLM_JWT_SECRET: "serve-test-secret-of-at-least-32-bytes!!" });
    const code = await main(["serve", "--db", `${dir}/plm.db`, "--port", "0"], io);
    assert.equal(code, 1);
    assert.match(io.stderr.join("\n"), /ERR_POLICY_NOT_FOUND: .*plm policy apply/);
    assert.deepEqual(io.stdout.filter((line) => line.startsWith("listening")), []);
  });
});
