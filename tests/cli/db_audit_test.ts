import assert from "node:assert/strict";
import { FakeClock } from "../../shared/mod.ts";
import { MIGRATIONS, openDatabase } from "../../control_plane/store/mod.ts";
import { AUDIT_GENESIS_HASH, AuditLog } from "../../control_plane/audit/mod.ts";
import { main } from "../../cli.ts";
import { fakeIo } from "./_fake_io.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_cli_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A database file with `n` audit records. */
function seed(path: string, n: number): void {
  using db = openDatabase(path);
  const clock = new FakeClock(Date.UTC(2026, 10, 25));
  const audit = new AuditLog(db, { clock });
  for (let i = 1; i <= n; i++) {
    audit.append({
      actor: { subject: "alice", kind: "human" },
      action: "run.transition",
      resource: `run:r-${i}`,
      outcome: "succeeded",
      runId: `r-${i}`,
      data: { i },
    });
    clock.advance(1_000);
  }
}

/** Edits the file as a careful attacker would: triggers dropped, then put back as they were. */
function tamper(path: string, sql: string): void {
  using db = openDatabase(path);
  const triggers = db.prepare<{ sql: string }>(
    "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_log'",
  ).all();
  db.exec("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;");
  db.exec(sql);
  for (const trigger of triggers) db.exec(trigger.sql);
}

Deno.test("plm db migrate creates the database and prints the schema version", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("path from PLM_DB", async () => {
      const io = fakeIo({ PLM_DB: `${dir}/env.db` });
      assert.equal(await main(["db", "migrate"], io), 0);
      assert.deepEqual(io.stdout, [`schema version ${MIGRATIONS.length}`]);
      assert.ok(Deno.statSync(`${dir}/env.db`).isFile);
    });
    await t.step("--db wins over PLM_DB", async () => {
      const io = fakeIo({ PLM_DB: `${dir}/ignored.db` });
      assert.equal(await main(["db", "migrate", "--db", `${dir}/flag.db`], io), 0);
      assert.ok(Deno.statSync(`${dir}/flag.db`).isFile);
      assert.throws(() => Deno.statSync(`${dir}/ignored.db`), Deno.errors.NotFound);
    });
  });
});

Deno.test("plm db and plm audit report usage errors with exit 2 and help on stderr", async (t) => {
  const cases: Record<string, string[]> = {
    "db without subcommand": ["db"],
    "db unknown subcommand": ["db", "drop"],
    "db unknown option": ["db", "migrate", "--force"],
    "audit without subcommand": ["audit"],
    "audit unknown subcommand": ["audit", "rewrite"],
    "audit extra argument": ["audit", "head", "extra"],
    "expected head without a hash": ["audit", "verify", "--expected-head", "3"],
    "expected head with a short hash": ["audit", "verify", "--expected-head", "3:abc"],
    "expected head on tail": ["audit", "tail", "--expected-head", `1:${AUDIT_GENESIS_HASH}`],
    "lines not a number": ["audit", "tail", "-n", "ten"],
    "lines on head": ["audit", "head", "-n", "3"],
  };
  for (const [name, args] of Object.entries(cases)) {
    await t.step(name, async () => {
      const io = fakeIo({ PLM_DB: ":memory:" });
      assert.equal(await main(args, io), 2);
      assert.match(io.stderr.join("\n"), /^error: .+[\s\S]*USAGE:[\s\S]*OPTIONS:/);
    });
  }
});

Deno.test("plm db --help and plm audit --help print USAGE and OPTIONS with defaults", async () => {
  for (const command of ["db", "audit"]) {
    const io = fakeIo();
    assert.equal(await main([command, "--help"], io), 0);
    const help = io.stdout.join("\n");
    assert.match(help, /USAGE:/);
    assert.match(help, /OPTIONS:/);
    assert.match(help, /default: \$PLM_DB, else plm\.db/);
  }
});

Deno.test("plm audit head, tail and verify read an intact log", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/audit.db`;
    seed(path, 12);
    const env = { PLM_DB: path };
    let head = "";

    await t.step("head prints SEQ HASH", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "head"], io), 0);
      assert.equal(io.stdout.length, 1);
      head = io.stdout[0]!;
      assert.match(head, /^12 [0-9a-f]{64}$/);
    });
    await t.step("tail prints the last 10 records as JSON lines, oldest first", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "tail"], io), 0);
      const records = io.stdout.map((line) => JSON.parse(line));
      assert.deepEqual(records.map((r) => r.seq), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      assert.deepEqual(records[0].data, { i: 3 });
      assert.equal(records[9].hash, head.split(" ")[1]);
    });
    await t.step("tail -n 2", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "tail", "-n", "2"], io), 0);
      assert.deepEqual(io.stdout.map((line) => JSON.parse(line).seq), [11, 12]);
    });
    await t.step("verify prints the count", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "verify"], io), 0);
      assert.deepEqual(io.stdout, ["12 records valid"]);
    });
    await t.step("verify --expected-head with the head printed earlier", async () => {
      const io = fakeIo(env);
      const expected = head.replace(" ", ":");
      assert.equal(await main(["audit", "verify", "--expected-head", expected], io), 0);
      assert.deepEqual(io.stdout, ["12 records valid"]);
    });
  });
});

Deno.test("plm audit verify exits 1 and names the first bad seq", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("an edited record", async () => {
      const path = `${dir}/edited.db`;
      seed(path, 6);
      tamper(path, "UPDATE audit_log SET outcome = 'failed' WHERE seq = 4");
      const io = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], io), 1);
      assert.equal(io.stdout[0], "3 records valid");
      assert.match(io.stdout[1] ?? "", /^record 4 invalid: hash_mismatch: /);
    });
    await t.step("a truncated log against the expected head", async () => {
      const path = `${dir}/truncated.db`;
      seed(path, 6);
      const before = fakeIo({ PLM_DB: path });
      await main(["audit", "head"], before);
      tamper(path, "DELETE FROM audit_log WHERE seq > 4");
      const plain = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], plain), 0);
      const io = fakeIo({ PLM_DB: path });
      const expected = before.stdout[0]!.replace(" ", ":");
      assert.equal(await main(["audit", "verify", "--expected-head", expected], io), 1);
      assert.deepEqual(io.stdout[0], "4 records valid");
      assert.match(io.stdout[1] ?? "", /^record 5 invalid: truncated: /);
    });
  });
});

Deno.test("plm audit refuses a database file that does not exist", async () => {
  await withTempDir(async (dir) => {
    const io = fakeIo({ PLM_DB: `${dir}/missing.db` });
    assert.equal(await main(["audit", "head"], io), 1);
    assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: /);
    assert.throws(() => Deno.statSync(`${dir}/missing.db`), Deno.errors.NotFound);
  });
});

Deno.test("plm audit runs as a subprocess: head prints SEQ HASH, verify exits 1 when broken", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sub.db`;
    seed(path, 3);
    const cli = new URL("../../cli.ts", import.meta.url).pathname;
    const run = (args: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", cli, ...args],
        env: { PLM_DB: path },
        stdout: "piped",
        stderr: "piped",
      }).output();

    const head = await run(["audit", "head"]);
    const decoder = new TextDecoder();
    assert.equal(head.code, 0, decoder.decode(head.stderr));
    assert.match(decoder.decode(head.stdout), /^3 [0-9a-f]{64}\n$/);

    tamper(path, "DELETE FROM audit_log WHERE seq = 2");
    const verify = await run(["audit", "verify", "--db", path]);
    assert.equal(verify.code, 1);
    assert.equal(
      decoder.decode(verify.stdout),
      "1 record valid\nrecord 2 invalid: seq_gap: Record 2 is missing (the next one is 3)\n",
    );
  });
});
