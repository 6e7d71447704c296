import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MIGRATIONS, openStore } from "../../control_plane/store/mod.ts";
import { AUDIT_GENESIS_HASH } from "../../control_plane/audit/mod.ts";
import { main } from "../../cli.ts";
import { fakeIo } from "./_fake_io.ts";
import { runPlm } from "./_subprocess.ts";
import { seed, tamper, withTempDir } from "./_audit_db.ts";

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
    await seed(path, 12);
    const env = { PLM_DB: path };
    let head = "";

    await t.step("head prints SEQ:HASH", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "head"], io), 0);
      assert.equal(io.stdout.length, 1);
      head = io.stdout[0]!;
      assert.match(head, /^12:[0-9a-f]{64}$/);
    });
    await t.step("tail prints the last 10 records as JSON lines, oldest first", async () => {
      const io = fakeIo(env);
      assert.equal(await main(["audit", "tail"], io), 0);
      const records = io.stdout.map((line) => JSON.parse(line));
      assert.deepEqual(records.map((r) => r.seq), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      assert.deepEqual(records[0].data, { i: 3 });
      assert.equal(records[9].hash, head.split(":")[1]);
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
      assert.equal(await main(["audit", "verify", "--expected-head", head], io), 0);
      assert.deepEqual(io.stdout, ["12 records valid"]);
    });
  });
});

Deno.test("plm audit verify exits 1 and names the first bad seq", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("an edited record", async () => {
      const path = `${dir}/edited.db`;
      await seed(path, 6);
      tamper(path, "UPDATE audit_log SET outcome = 'failed' WHERE seq = 4");
      const io = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], io), 1);
      assert.equal(io.stdout[0], "3 records valid");
      assert.match(io.stdout[1] ?? "", /^record 4 invalid: hash_mismatch: /);
    });
    await t.step("a truncated log against the expected head", async () => {
      const path = `${dir}/truncated.db`;
      await seed(path, 6);
      const before = fakeIo({ PLM_DB: path });
      await main(["audit", "head"], before);
      tamper(path, "DELETE FROM audit_log WHERE seq > 4");
      const plain = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], plain), 0);
      const io = fakeIo({ PLM_DB: path });
      const expected = before.stdout[0]!;
      assert.equal(await main(["audit", "verify", "--expected-head", expected], io), 1);
      assert.deepEqual(io.stdout[0], "4 records valid");
      assert.match(io.stdout[1] ?? "", /^record 5 invalid: truncated: /);
    });
  });
});

Deno.test("plm audit, runs list and runs show refuse a missing database and create none", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/missing.db`;
    const commands = [
      ["audit", "verify"],
      ["audit", "head"],
      ["audit", "tail"],
      ["runs", "list"],
      ["runs", "show", "r-1"],
    ];
    for (const args of commands) {
      await t.step(args.join(" "), async () => {
        const io = fakeIo({ PLM_DB: path });
        assert.equal(await main(args, io), 1);
        assert.deepEqual(io.stdout, []);
        assert.equal(io.stderr.length, 1);
        assert.match(io.stderr[0] ?? "", /^error: ERR_STORE_NOT_FOUND: .*--db/);
        assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
      });
    }
    await t.step("--db :memory: is ERR_INVALID_ARGUMENT", async () => {
      const io = fakeIo();
      assert.equal(await main(["audit", "verify", "--db", ":memory:"], io), 1);
      assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: /);
    });
  });
});

Deno.test("plm audit verify never migrates or writes the file it checks", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a 0-byte file is refused and stays empty", async () => {
      const path = `${dir}/empty.db`;
      Deno.writeFileSync(path, new Uint8Array());
      const io = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], io), 1);
      assert.deepEqual(io.stdout, []);
      assert.match(io.stderr[0] ?? "", /^error: ERR_STORE_SCHEMA_TOO_OLD: /);
      assert.equal(Deno.statSync(path).size, 0);
    });
    await t.step("an older schema is refused, not migrated", async () => {
      const path = `${dir}/old.db`;
      await (await openStore(path, { migrations: MIGRATIONS.slice(0, 1) })).close();
      const before = Deno.readFileSync(path);
      const io = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], io), 1);
      assert.match(io.stderr[0] ?? "", /^error: ERR_STORE_SCHEMA_TOO_OLD: .*plm db migrate/);
      assert.deepEqual(Deno.readFileSync(path), before);
      await using db = await openStore(path, {
        readOnly: true,
        migrations: MIGRATIONS.slice(0, 1),
      });
      assert.equal(await db.schemaVersion(), 1);
    });
  });
});

Deno.test("plm reports corrupt, truncated and locked databases with their own codes", async (t) => {
  await withTempDir(async (dir) => {
    const real = `${dir}/real.db`;
    await seed(real, 200);
    const bytes = Deno.readFileSync(real);
    const cases: [string, Uint8Array][] = [
      ["random bytes", new Uint8Array(8192).map((_, i) => (i * 7919 + 13) % 251)],
      ["a truncated copy", bytes.slice(0, Math.floor(bytes.length / 2))],
    ];
    for (const [name, content] of cases) {
      for (const args of [["audit", "verify"], ["db", "migrate"]]) {
        await t.step(`${name}: ${args.join(" ")}`, async () => {
          const path = `${dir}/${name.replaceAll(" ", "_")}.db`;
          Deno.writeFileSync(path, content);
          const io = fakeIo({ PLM_DB: path });
          assert.equal(await main(args, io), 1);
          assert.deepEqual(io.stdout, []);
          assert.equal(io.stderr.length, 1);
          assert.match(io.stderr[0] ?? "", /^error: ERR_STORE_CORRUPT: /);
          assert.deepEqual(Deno.readFileSync(path), content);
        });
      }
    }
    await t.step("a database locked by BEGIN EXCLUSIVE", async () => {
      const path = `${dir}/locked.db`;
      await seed(path, 3);
      using holder = new DatabaseSync(path);
      holder.exec("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; DELETE FROM schema_migrations;");
      const io = fakeIo({ PLM_DB: path });
      assert.equal(await main(["audit", "verify"], io), 1); // after the 5 s busy timeout
      assert.match(io.stderr[0] ?? "", /^error: ERR_STORE_BUSY: /);
      holder.exec("ROLLBACK");
    });
  });
});

Deno.test("plm audit runs as a subprocess: head prints SEQ:HASH, verify exits 1 when broken", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/sub.db`;
    await seed(path, 3);
    const head = await runPlm(["audit", "head"], { env: { PLM_DB: path } });
    assert.equal(head.code, 0, head.stderr);
    assert.match(head.stdout, /^3:[0-9a-f]{64}\n$/);

    tamper(path, "DELETE FROM audit_log WHERE seq = 2");
    const verify = await runPlm(["audit", "verify", "--db", path]);
    assert.equal(verify.code, 1);
    assert.equal(
      verify.stdout,
      "1 record valid\nrecord 2 invalid: seq_gap: Record 2 is missing (the next one is 3)\n",
    );
  });
});

Deno.test("plm audit verify reads an archived database in a read-only folder", async () => {
  await withTempDir(async (dir) => {
    const archive = `${dir}/archive`;
    Deno.mkdirSync(archive);
    const path = `${archive}/audit.db`;
    await seed(path, 3);
    Deno.chmodSync(archive, 0o555);
    try {
      const verify = await runPlm(["audit", "verify", "--db", path], { honourFileModes: true });
      assert.equal(verify.stderr, "");
      assert.equal(verify.code, 0);
      assert.equal(verify.stdout, "3 records valid\n");
      const readOnly = await runPlm(["audit", "verify", "--db", path], {
        honourFileModes: true,
        permissions: [`--allow-read=${dir}`],
      });
      assert.equal(readOnly.code, 1, "without -A, the -shm index is needed");
      assert.match(readOnly.stderr, /^error: ERR_STORE_READ_ONLY: [^\n]*-shm[^\n]*\n$/);
      const migrate = await runPlm(["db", "migrate", "--db", `${archive}/new.db`], {
        honourFileModes: true,
      });
      assert.equal(migrate.code, 1);
      assert.match(migrate.stderr, /^error: ERR_PERMISSION: /);
    } finally {
      Deno.chmodSync(archive, 0o755);
    }
    assert.deepEqual([...Deno.readDirSync(archive)].map((entry) => entry.name), ["audit.db"]);
  });
});

Deno.test("plm reports a read-only database file as ERR_STORE_READ_ONLY", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/old.db`;
    await (await openStore(path, { migrations: MIGRATIONS.slice(0, 1) })).close();
    Deno.chmodSync(path, 0o444);
    const migrate = await runPlm(["db", "migrate", "--db", path], { honourFileModes: true });
    assert.equal(migrate.code, 1);
    assert.equal(migrate.stdout, "");
    assert.match(migrate.stderr, /^error: ERR_STORE_READ_ONLY: [^\n]*\n$/);
    await using db = await openStore(path, { readOnly: true, migrations: MIGRATIONS.slice(0, 1) });
    assert.equal(await db.schemaVersion(), 1);
  });
});

Deno.test("plm reports missing Deno permissions as ERR_PERMISSION", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/plm.db`;
    await seed(path, 2);
    await t.step("no permissions at all", async () => {
      const verify = await runPlm(["audit", "verify", "--db", path], { permissions: [] });
      assert.equal(verify.code, 1);
      assert.match(verify.stderr, /^error: ERR_PERMISSION: [^\n]*--allow-read[^\n]*\n$/);
    });
    await t.step("read only: audit verify works, db migrate is refused", async () => {
      const read = [`--allow-read=${dir}`];
      const verify = await runPlm(["audit", "verify", "--db", path], { permissions: read });
      assert.equal(verify.stderr, "");
      assert.equal(verify.stdout, "2 records valid\n");
      const migrate = await runPlm(["db", "migrate", "--db", `${dir}/new.db`], {
        permissions: read,
      });
      assert.equal(migrate.code, 1);
      assert.match(migrate.stderr, /^error: ERR_PERMISSION: [^\n]*--allow-write[^\n]*\n$/);
    });
  });
});

Deno.test("plm audit export writes every record, and tools/verify_audit.ts checks it alone", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/export.db`;
    await seed(path, 2_345); // more than two export pages
    const io = fakeIo({ PLM_DB: path });
    assert.equal(await main(["audit", "export"], io), 0);
    assert.deepEqual(io.stdout.map((line) => JSON.parse(line).seq).slice(-2), [2_344, 2_345]);
    assert.equal(io.stdout.length, 2_345);
    const file = `${dir}/audit.jsonl`;
    await Deno.writeTextFile(file, io.stdout.join("\n") + "\n");
    const verifyExport = async (...extra: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-read", "tools/verify_audit.ts", file, ...extra],
        stdout: "piped",
      }).output();
      return [out.code, new TextDecoder().decode(out.stdout).trim()];
    };
    await t.step("the intact export", async () => {
      const head = JSON.parse(io.stdout.at(-1)!);
      assert.deepEqual(await verifyExport("--expected-head", `2345:${head.hash}`), [
        0,
        "2345 records valid",
      ]);
    });
    await t.step("an edited line", async () => {
      const lines = [...io.stdout];
      lines[99] = lines[99]!.replace('"succeeded"', '"failed"');
      await Deno.writeTextFile(file, lines.join("\n"));
      assert.deepEqual(await verifyExport(), [
        1,
        "99 records valid\nrecord 100 invalid: hash_mismatch",
      ]);
    });
  });
});

Deno.test("plm audit tail refuses -n outside 1..1000 as a usage error", async () => {
  for (const n of ["0", "1001"]) {
    const io = fakeIo({ PLM_DB: "unused.db" });
    assert.equal(await main(["audit", "tail", "-n", n], io), 2);
    assert.match(io.stderr.join("\n"), /1\.\.1000/);
  }
});

Deno.test("plm refuses a --db location that is no store, naming --db", async (t) => {
  const cases: [string, Record<string, string>, string[]][] = [
    ["an empty --db", {}, ["audit", "head", "--db", ""]],
    ["an empty PLM_DB", { PLM_DB: "" }, ["runs", "list"]],
    ["another URL scheme", {}, ["db", "migrate", "--db", "mysql://db.example/plm"]],
    ["a postgres URL that does not parse", {}, ["audit", "verify", "--db", "postgres://[::1/plm"]],
    ["a control character", {}, ["audit", "head", "--db", "plm\u0001.db"]],
  ];
  for (const [name, env, args] of cases) {
    await t.step(name, async () => {
      const io = fakeIo(env);
      assert.equal(await main(args, io), 1);
      assert.deepEqual(io.stdout, []);
      assert.match(io.stderr[0] ?? "", /^error: ERR_INVALID_ARGUMENT: .*--db/);
    });
  }
});

Deno.test("plm never prints the password of a postgres:// --db", async (t) => {
  // Port 1 on the loopback: nothing listens, so every command fails to connect.
  const url = "postgres://plm:s3cret-pw@127.0.0.1:1/plm";
  for (const args of [["audit", "head"], ["db", "migrate"], ["runs", "list"]]) {
    await t.step(args.join(" "), async () => {
      const io = fakeIo({ PLM_DB: url });
      assert.equal(await main(args, io), 1);
      const printed = [...io.stdout, ...io.stderr].join("\n");
      assert.match(printed, /^error: ERR_/);
      assert.doesNotMatch(printed, /s3cret-pw/);
    });
  }
});
