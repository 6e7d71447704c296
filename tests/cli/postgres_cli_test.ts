/**
 * `plm db`, `plm audit` and `plm runs` on PostgreSQL (when
 * `PLM_TEST_POSTGRES_URL` is set), each test in a database of its own.
 *
 * @module
 */
import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { AuditLog, FakeClock, openStore } from "../../control_plane/mod.ts";
import { POSTGRES_URL } from "../_postgres.ts";
import { withPostgresDatabase as withDatabase } from "../_postgres_database.ts";
import { fakeIo } from "./_fake_io.ts";
import { withTempDir } from "./_audit_db.ts";

/** Runs `plm` in-process; fails the test if it printed the password. */
async function plm(env: Record<string, string>, ...args: string[]) {
  const io = fakeIo(env);
  const code = await main(args, io);
  assert.doesNotMatch([...io.stdout, ...io.stderr].join("\n"), /pw-never-printed/);
  return { code, out: io.stdout, err: io.stderr };
}

if (POSTGRES_URL !== undefined) {
  const url = POSTGRES_URL;
  Deno.test({
    name: "[postgres] plm db migrate, audit head|tail|verify|export|checkpoint work on PostgreSQL",
    sanitizeResources: false, // pg keeps its sockets until end() settles
    sanitizeOps: false,
    async fn(t) {
      await withDatabase(url, async (location) => {
        const env = { PLM_DB: location };
        await t.step("db migrate", async () => {
          const { code, out } = await plm(env, "db", "migrate");
          assert.equal(code, 0);
          assert.match(out[0] ?? "", /^schema version \d+$/);
        });
        {
          await using store = await openStore(location);
          const clock = new FakeClock(Date.UTC(2026, 10, 30));
          const audit = new AuditLog(store, { clock });
          for (let i = 1; i <= 12; i++) {
            await audit.append({
              actor: { subject: "alice", kind: "human" },
              action: "run.transition",
              resource: `run:r-${i}`,
              outcome: "succeeded",
              runId: `r-${i}`,
              data: { i },
            });
            clock.advance(1_000);
          }
          assert.equal(await audit.seal(), 12, "the sealer chains what was written");
        }
        let head = "";
        await t.step("head", async () => {
          const { code, out } = await plm(env, "audit", "head");
          assert.equal(code, 0);
          head = out[0] ?? "";
          assert.match(head, /^12:[0-9a-f]{64}$/);
        });
        await t.step("tail -n 2", async () => {
          const { code, out } = await plm(env, "audit", "tail", "-n", "2");
          assert.equal(code, 0);
          assert.deepEqual(out.map((line) => JSON.parse(line).seq), [11, 12]);
        });
        await t.step("verify --expected-head", async () => {
          const expected = head;
          const { code, out } = await plm(env, "audit", "verify", "--expected-head", expected);
          assert.equal(code, 0);
          assert.equal(out[0], "12 records valid");
        });
        await t.step("export, checked by tools/verify_audit.ts", async () => {
          const { code, out } = await plm(env, "audit", "export");
          assert.equal(code, 0);
          assert.equal(out.length, 12);
          await withTempDir(async (dir) => {
            await Deno.writeTextFile(`${dir}/audit.jsonl`, out.join("\n") + "\n");
            const check = await new Deno.Command(Deno.execPath(), {
              args: ["run", "--allow-read", "tools/verify_audit.ts", `${dir}/audit.jsonl`],
              stdout: "piped",
            }).output();
            assert.equal(new TextDecoder().decode(check.stdout).trim(), "12 records valid");
          });
        });
        await t.step(
          "records not sealed yet: the read-only commands read the sealed chain",
          async () => {
            {
              await using store = await openStore(location);
              await new AuditLog(store).append({
                actor: { subject: "bob", kind: "human" },
                action: "run.transition",
                resource: "run:r-13",
                outcome: "succeeded",
                runId: "r-13",
              });
            }
            const heads = await plm(env, "audit", "head");
            assert.equal(heads.code, 0, heads.err.join("\n"));
            assert.equal(heads.out[0], head, "a pending record is not in the sealed head");
            const verified = await plm(env, "audit", "verify");
            assert.equal(verified.code, 0, verified.err.join("\n"));
            assert.equal(verified.out[0], "12 records valid");
          },
        );
        await t.step("checkpoint, then verify against it", async () => {
          await withTempDir(async (dir) => {
            const key = `${dir}/signer.pem`;
            const pub = `${dir}/signer.pub.pem`;
            const file = `${dir}/checkpoint.json`;
            const keys = await plm(
              {},
              "audit",
              "keygen",
              "--out-private",
              key,
              "--out-public",
              pub,
            );
            assert.equal(keys.code, 0);
            const signed = await plm(env, "audit", "checkpoint", "--key", key, "--out", file);
            assert.equal(signed.code, 0, signed.err.join("\n"));
            assert.match(signed.out[0] ?? "", /^checkpoint of record 12 written to /);
            const args = ["--checkpoint", file, "--public-key", pub];
            const verified = await plm(env, "audit", "verify", ...args);
            assert.equal(verified.code, 0, verified.err.join("\n"));
            assert.equal(verified.out[0], "12 records valid");
            assert.match(verified.out[1] ?? "", /^checkpoint .* holds: record 12, signed by /);
          });
        });
      });
    },
  });

  Deno.test({
    name: "[postgres] plm runs submit, list and show on PostgreSQL",
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      await withDatabase(url, async (location) => {
        await withTempDir(async (dir) => {
          const secret = "cli-postgres-test-secret-of-at-least-32-bytes";
          await Deno.writeTextFile(
            `${dir}/policy.json`,
            JSON.stringify({
              rules: [{ id: "updates", effect: "allow", actions: ["bom.update"] }],
            }),
          );
          const issued = await plm(
            { PLM_JWT_SECRET: secret },
            "auth",
            "issue-token",
            "--subject",
            "planner",
            "--actor-kind",
            "agent",
          );
          assert.equal(issued.code, 0, issued.err.join("\n"));
          const env = {
            PLM_DB: location,
            PLM_JWT_SECRET: secret,
            PLM_TOKEN: issued.out[0] ?? "",
            PLM_POLICY: `${dir}/policy.json`,
          };
          assert.equal((await plm(env, "db", "migrate")).code, 0);
          const submitted = await plm(
            env,
            "runs",
            "submit",
            "--action",
            "bom.update",
            "--resource",
            "bom:1",
          );
          assert.equal(submitted.code, 0, submitted.err.join("\n"));
          const [id, state] = (submitted.out[0] ?? "").split(" ");
          assert.equal(state, "queued");
          const listed = await plm(env, "runs", "list");
          assert.deepEqual(listed.out.map((line) => JSON.parse(line).id), [id]);
          const shown = await plm(env, "runs", "show", id!);
          assert.equal(shown.code, 0, shown.err.join("\n"));
          assert.match(shown.out.join("\n"), /run\.created\s+queued\s+planner/);
          const cancelled = await plm(env, "runs", "cancel", id!, "--reason", "changed plan");
          assert.deepEqual(cancelled.out, [`${id} cancelled`], cancelled.err.join("\n"));
          const after = await plm(env, "runs", "show", id!);
          assert.match(after.out.join("\n"), /run\.transition\s+cancelled\s+planner/);
        });
      });
    },
  });
}
