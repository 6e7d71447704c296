import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type ErrorCode, FakeClock, isPlmError, PlmError } from "../../shared/mod.ts";
import { openDatabase } from "../../control_plane/store/database.ts";
import { type Migration, MIGRATIONS } from "../../control_plane/store/migrations.ts";

const NOTES: Migration = {
  version: 2,
  name: "notes",
  sql: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL) STRICT;",
};

function tableNames(db: ReturnType<typeof openDatabase>): string[] {
  return db.prepare<{ name: string }>(
    "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name",
  ).all().map((row) => row.name);
}

async function withTempDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_store_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("openDatabase() creates a fresh database at the latest schema version", async (t) => {
  await t.step("in memory", () => {
    using db = openDatabase(":memory:", { clock: new FakeClock(1_234) });
    assert.equal(db.path, ":memory:");
    assert.equal(db.schemaVersion, MIGRATIONS.length);
    const tables = tableNames(db);
    assert.ok(tables.includes("schema_migrations"));
    assert.ok(tables.includes("audit_log"));
    const applied = db.prepare("SELECT version, name, applied_at FROM schema_migrations").all();
    assert.deepEqual(
      applied.map((row) => ({ ...row })),
      MIGRATIONS.map((m) => ({ version: m.version, name: m.name, applied_at: 1_234 })),
    );
  });
  await t.step("on a file", async () => {
    await withTempDir((dir) => {
      const path = `${dir}/fresh.db`;
      using db = openDatabase(path);
      assert.equal(db.path, path);
      assert.equal(db.schemaVersion, MIGRATIONS.length);
      assert.ok(Deno.statSync(path).isFile);
    });
  });
});

Deno.test("MIGRATIONS numbers versions 1, 2, 3, ... without gaps", () => {
  assert.ok(MIGRATIONS.length >= 1);
  MIGRATIONS.forEach((m, i) => {
    assert.equal(m.version, i + 1);
    assert.match(m.name, /^[a-z0-9_]+$/);
  });
});

Deno.test("openDatabase() migrates an older database forward", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/old.db`;
    const v1 = MIGRATIONS.slice(0, 1);
    {
      using db = openDatabase(path, { migrations: v1, clock: new FakeClock(100) });
      assert.equal(db.schemaVersion, 1);
      db.exec(
        "INSERT INTO audit_log VALUES (1, 0, 's', 'human', 'a', 'r', 'o', NULL, NULL, NULL, 'null', 'p', 'h')",
      );
    }
    using db = openDatabase(path, { migrations: [...v1, NOTES], clock: new FakeClock(200) });
    assert.equal(db.schemaVersion, 2);
    assert.ok(tableNames(db).includes("notes"));
    const applied = db.prepare<{ version: number; applied_at: number }>(
      "SELECT version, applied_at FROM schema_migrations ORDER BY version",
    ).all();
    assert.deepEqual(applied.map((r) => [r.version, r.applied_at]), [[1, 100], [2, 200]]);
    const kept = db.prepare<{ n: number }>("SELECT count(*) AS n FROM audit_log").get();
    assert.equal(kept?.n, 1);
  });
});

Deno.test("openDatabase() migrates a version 3 database to the runs keyset indexes, keeping its runs", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/v3.db`;
    {
      using db = openDatabase(path, { migrations: MIGRATIONS.slice(0, 3) });
      db.exec(
        `INSERT INTO runs VALUES ('run-1', 'queued', 1, '{}', '{}', NULL, 'd', 'tp', '', 0, 0, 0,
         NULL, NULL, 'null', NULL, NULL, NULL, 5, 5)`,
      );
    }
    using db = openDatabase(path);
    assert.ok(db.schemaVersion >= 4);
    const indexes = db.prepare<{ name: string; sql: string }>(
      "SELECT name, sql FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'runs' AND sql IS NOT NULL ORDER BY name",
    ).all().map((row) => ({ ...row }));
    assert.deepEqual(indexes.map((row) => row.name), [
      "runs_created",
      "runs_lease",
      "runs_ready",
      "runs_state_created",
    ]);
    assert.match(indexes[2]!.sql, /WHERE state IN \('queued', 'retrying', 'escalated'\)$/);
    assert.equal(db.prepare("SELECT id FROM runs").all().length, 1);
  });
});

Deno.test("openDatabase() refuses a database newer than the code with ERR_STORE_SCHEMA_TOO_NEW", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/new.db`;
    openDatabase(path, { migrations: [...MIGRATIONS.slice(0, 1), NOTES] }).close();
    assert.throws(
      () => openDatabase(path, { migrations: MIGRATIONS.slice(0, 1) }),
      (err) => isPlmError(err, "ERR_STORE_SCHEMA_TOO_NEW"),
    );
    using db = openDatabase(path, { migrations: [...MIGRATIONS.slice(0, 1), NOTES] });
    assert.equal(db.schemaVersion, 2);
  });
});

Deno.test("openDatabase() rolls a failing migration back and throws ERR_STORE_MIGRATION_FAILED", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/broken.db`;
    const bad: Migration = {
      version: 2,
      name: "half_done",
      sql:
        "CREATE TABLE half (x INTEGER); INSERT INTO half VALUES (1); INSERT INTO missing VALUES (1);",
    };
    let caught: unknown;
    try {
      openDatabase(path, { migrations: [...MIGRATIONS.slice(0, 1), bad] });
    } catch (err) {
      caught = err;
    }
    assert.ok(caught instanceof PlmError);
    assert.equal(caught.code, "ERR_STORE_MIGRATION_FAILED");
    assert.ok(caught.cause instanceof Error);

    using db = openDatabase(path, { migrations: MIGRATIONS.slice(0, 1) });
    assert.equal(db.schemaVersion, 1);
    assert.ok(!tableNames(db).includes("half"));
    const rows = db.prepare("SELECT version FROM schema_migrations").all();
    assert.equal(rows.length, 1);
  });
});

Deno.test("openDatabase() sets WAL, synchronous, busy timeout and foreign keys", async (t) => {
  function pragma(db: ReturnType<typeof openDatabase>, name: string): unknown {
    return Object.values(db.prepare(`PRAGMA ${name}`).get() ?? {})[0];
  }
  await withTempDir(async (dir) => {
    await t.step("defaults", () => {
      using db = openDatabase(`${dir}/defaults.db`);
      assert.equal(pragma(db, "journal_mode"), "wal");
      assert.equal(pragma(db, "synchronous"), 1); // NORMAL
      assert.equal(pragma(db, "busy_timeout"), 5000);
      assert.equal(pragma(db, "foreign_keys"), 1);
    });
    await t.step("synchronous full and a custom busy timeout", () => {
      using db = openDatabase(`${dir}/full.db`, { synchronous: "full", busyTimeoutMs: 250 });
      assert.equal(pragma(db, "synchronous"), 2); // FULL
      assert.equal(pragma(db, "busy_timeout"), 250);
    });
    await t.step("foreign keys are enforced", () => {
      using db = openDatabase(`${dir}/fk.db`);
      db.exec(
        "CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (pid INTEGER REFERENCES p (id));",
      );
      assert.throws(() => db.exec("INSERT INTO c VALUES (7)"), /FOREIGN KEY/);
    });
  });
});

Deno.test("openDatabase() rejects malformed options", async (t) => {
  await t.step("empty path", () => {
    assert.throws(() => openDatabase(""), TypeError);
  });
  await t.step("unknown synchronous mode", () => {
    assert.throws(
      () => openDatabase(":memory:", { synchronous: "off" as "full" }),
      TypeError,
    );
  });
  await t.step("negative busy timeout", () => {
    assert.throws(() => openDatabase(":memory:", { busyTimeoutMs: -1 }), RangeError);
  });
  await t.step("a busy timeout that is not an integer names the option", () => {
    assert.throws(
      () => openDatabase(":memory:", { busyTimeoutMs: 1.5 }),
      (err) => err instanceof RangeError && /busyTimeoutMs/.test(err.message),
    );
  });
  await t.step("migrations with a gap", () => {
    assert.throws(
      () => openDatabase(":memory:", { migrations: [{ ...NOTES, version: 2 }] }),
      RangeError,
    );
  });
});

Deno.test("Database.transaction() commits, rolls back and nests as savepoints", async (t) => {
  using db = openDatabase(":memory:");
  db.exec("CREATE TABLE t (x INTEGER) STRICT");
  const insert = db.prepare("INSERT INTO t VALUES (?)");
  const values = () =>
    db.prepare<{ x: number }>("SELECT x FROM t ORDER BY x").all().map((r) => r.x);

  await t.step("commits and returns the result", () => {
    assert.equal(db.transaction(() => insert.run(1).changes), 1);
    assert.deepEqual(values(), [1]);
    assert.equal(db.inTransaction, false);
  });
  await t.step("rolls back when the function throws", () => {
    const boom = new Error("boom");
    assert.throws(() =>
      db.transaction(() => {
        insert.run(2);
        throw boom;
      }), (err) => err === boom);
    assert.deepEqual(values(), [1]);
    assert.equal(db.inTransaction, false);
  });
  await t.step("a failed nested transaction rolls back only its own work", () => {
    db.transaction(() => {
      insert.run(3);
      assert.throws(() =>
        db.transaction(() => {
          assert.equal(db.inTransaction, true);
          insert.run(4);
          throw new Error("inner");
        })
      );
      insert.run(5);
    });
    assert.deepEqual(values(), [1, 3, 5]);
  });
  await t.step("an outer failure rolls back committed nested work", () => {
    assert.throws(() =>
      db.transaction(() => {
        db.transaction(() => insert.run(6));
        throw new Error("outer");
      })
    );
    assert.deepEqual(values(), [1, 3, 5]);
  });
  await t.step("nests inside a transaction begun with raw SQL", () => {
    db.exec("BEGIN");
    db.transaction(() => insert.run(7));
    db.exec("ROLLBACK");
    assert.deepEqual(values(), [1, 3, 5]);
  });
  await t.step("refuses an async function and rolls its work back", () => {
    assert.throws(
      () =>
        db.transaction(async () => {
          insert.run(8);
          await Promise.resolve();
        }),
      TypeError,
    );
    assert.deepEqual(values(), [1, 3, 5]);
    assert.equal(db.inTransaction, false);
  });
});

Deno.test("Database surfaces trigger errors with a known code as PlmError", () => {
  using db = openDatabase(":memory:");
  db.exec(`
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER t_known BEFORE INSERT ON t WHEN NEW.x = 1
    BEGIN SELECT RAISE(ABORT, 'ERR_FORBIDDEN: Cannot insert 1'); END;
    CREATE TRIGGER t_unknown BEFORE INSERT ON t WHEN NEW.x = 2
    BEGIN SELECT RAISE(ABORT, 'ERR_NOT_A_CODE: Cannot insert 2'); END;
  `);
  const insert = db.prepare("INSERT INTO t VALUES (?)");
  assert.throws(() => insert.run(1), (err) => {
    assert.ok(isPlmError(err, "ERR_FORBIDDEN"));
    assert.equal(err.message, "Cannot insert 1");
    return true;
  });
  assert.throws(
    () => db.exec("INSERT INTO t VALUES (1)"),
    (err) => isPlmError(err, "ERR_FORBIDDEN"),
  );
  assert.throws(() => insert.run(2), (err) => err instanceof Error && !(err instanceof PlmError));
});

Deno.test("Database.close() closes once and then is a no-op", () => {
  const db = openDatabase(":memory:");
  assert.equal(db.isOpen, true);
  db.close();
  db.close();
  assert.equal(db.isOpen, false);
});

Deno.test("openDatabase() lets two connections share one file", async () => {
  await withTempDir((dir) => {
    const path = `${dir}/shared.db`;
    using a = openDatabase(path);
    using b = openDatabase(path, { busyTimeoutMs: 0 });
    a.exec("CREATE TABLE t (x INTEGER) STRICT");
    const count = () => b.prepare<{ n: number }>("SELECT count(*) AS n FROM t").get()?.n;

    a.transaction(() => {
      a.prepare("INSERT INTO t VALUES (1)").run();
      // WAL: the other connection still reads, and sees the last commit only.
      assert.equal(count(), 0);
      // BEGIN IMMEDIATE: the other connection cannot write meanwhile.
      assert.throws(
        () => b.transaction(() => {}),
        (err: unknown) => isPlmError(err, "ERR_STORE_BUSY"),
      );
    });
    assert.equal(count(), 1);
    b.transaction(() => b.prepare("INSERT INTO t VALUES (2)").run());
    assert.equal(a.prepare<{ n: number }>("SELECT count(*) AS n FROM t").get()?.n, 2);
  });
});

/** A file database at the latest schema whose audit log fills about 40 pages. */
function seedFile(path: string): void {
  using db = openDatabase(path);
  const insert = db.prepare(
    "INSERT INTO audit_log VALUES (?, 0, 's', 'human', 'a', 'r', 'o', NULL, NULL, NULL, ?, 'p', 'h')",
  );
  db.transaction(() => {
    for (let seq = 1; seq <= 300; seq++) insert.run(seq, JSON.stringify("x".repeat(400)));
  });
}

function storeError(code: ErrorCode): (err: unknown) => boolean {
  return (err) => isPlmError(err, code);
}

Deno.test("openDatabase() with readOnly never creates, writes or migrates the file", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a missing file is ERR_STORE_NOT_FOUND and stays missing", () => {
      const path = `${dir}/missing.db`;
      assert.throws(
        () => openDatabase(path, { readOnly: true }),
        storeError("ERR_STORE_NOT_FOUND"),
      );
      assert.throws(() => Deno.statSync(path), Deno.errors.NotFound);
    });
    await t.step("a 0-byte file is ERR_STORE_SCHEMA_TOO_OLD and stays empty", () => {
      const path = `${dir}/empty.db`;
      Deno.writeFileSync(path, new Uint8Array());
      assert.throws(
        () => openDatabase(path, { readOnly: true }),
        storeError("ERR_STORE_SCHEMA_TOO_OLD"),
      );
      assert.equal(Deno.statSync(path).size, 0);
    });
    await t.step("an older schema is ERR_STORE_SCHEMA_TOO_OLD and is not migrated", () => {
      const path = `${dir}/old.db`;
      openDatabase(path, { migrations: MIGRATIONS.slice(0, 1) }).close();
      assert.throws(
        () =>
          openDatabase(path, { readOnly: true, migrations: [...MIGRATIONS.slice(0, 1), NOTES] }),
        storeError("ERR_STORE_SCHEMA_TOO_OLD"),
      );
      using db = openDatabase(path, { readOnly: true, migrations: MIGRATIONS.slice(0, 1) });
      assert.equal(db.schemaVersion, 1);
      assert.ok(!tableNames(db).includes("notes"));
    });
    await t.step("a newer schema is ERR_STORE_SCHEMA_TOO_NEW", () => {
      const path = `${dir}/new.db`;
      openDatabase(path, { migrations: [...MIGRATIONS.slice(0, 1), NOTES] }).close();
      assert.throws(
        () => openDatabase(path, { readOnly: true, migrations: MIGRATIONS.slice(0, 1) }),
        storeError("ERR_STORE_SCHEMA_TOO_NEW"),
      );
    });
    await t.step("a current database reads; a write is ERR_STORE_READ_ONLY", () => {
      const path = `${dir}/current.db`;
      openDatabase(path).close();
      using db = openDatabase(path, { readOnly: true });
      assert.equal(db.schemaVersion, MIGRATIONS.length);
      assert.throws(
        () => db.exec("CREATE TABLE t (x INTEGER)"),
        storeError("ERR_STORE_READ_ONLY"),
      );
      const write = () => db.prepare("DELETE FROM schema_migrations").run();
      assert.throws(() => db.transaction(write), storeError("ERR_STORE_READ_ONLY"));
      assert.equal(db.schemaVersion, MIGRATIONS.length);
      assert.ok(!tableNames(db).includes("t"));
    });
    await t.step("in memory is a TypeError", () => {
      assert.throws(() => openDatabase(":memory:", { readOnly: true }), TypeError);
    });
  });
});

Deno.test("openDatabase() refuses corrupt and truncated files with ERR_STORE_CORRUPT", async (t) => {
  await withTempDir(async (dir) => {
    const real = `${dir}/real.db`;
    seedFile(real);
    const bytes = Deno.readFileSync(real);
    assert.ok(bytes.length >= 16 * 4096);
    const cases: Record<string, Uint8Array> = {
      "random bytes": new Uint8Array(8192).map((_, i) => (i * 7919 + 13) % 251),
      "a copy cut at a page boundary": bytes.slice(0, 8 * 4096),
      "a copy cut mid-page": bytes.slice(0, 8 * 4096 + 1000),
    };
    for (const [name, content] of Object.entries(cases)) {
      for (const readOnly of [false, true]) {
        await t.step(`${name}${readOnly ? ", read-only" : ""}`, () => {
          const path = `${dir}/${name.replaceAll(" ", "_")}_${readOnly}.db`;
          Deno.writeFileSync(path, content);
          assert.throws(() => openDatabase(path, { readOnly }), storeError("ERR_STORE_CORRUPT"));
          assert.deepEqual(Deno.readFileSync(path), content);
        });
      }
    }
  });
});

Deno.test("openDatabase() reports a lock held past the busy timeout as ERR_STORE_BUSY", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a rollback-journal database under BEGIN EXCLUSIVE", () => {
      const path = `${dir}/journal.db`;
      openDatabase(path).close();
      using holder = new DatabaseSync(path);
      holder.exec("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE; DELETE FROM schema_migrations;");
      for (const readOnly of [false, true]) {
        assert.throws(
          () => openDatabase(path, { readOnly, busyTimeoutMs: 0 }),
          storeError("ERR_STORE_BUSY"),
        );
      }
      holder.exec("ROLLBACK");
    });
    await t.step("a WAL database under BEGIN EXCLUSIVE still reads", () => {
      const path = `${dir}/wal.db`;
      openDatabase(path).close();
      using holder = new DatabaseSync(path);
      holder.exec("BEGIN EXCLUSIVE; DELETE FROM schema_migrations;");
      using db = openDatabase(path, { readOnly: true, busyTimeoutMs: 0 });
      assert.equal(db.schemaVersion, MIGRATIONS.length);
      holder.exec("ROLLBACK");
    });
  });
});

Deno.test("Statement keeps its SQL and streams rows with iterate()", () => {
  using db = openDatabase(":memory:");
  db.exec("CREATE TABLE t (x INTEGER) STRICT");
  const insert = db.prepare("INSERT INTO t VALUES (?)");
  for (const x of [3, 1, 2]) insert.run(x);
  const select = db.prepare<{ x: number }>("SELECT x FROM t ORDER BY x");
  assert.equal(select.sql, "SELECT x FROM t ORDER BY x");
  assert.deepEqual([...select.iterate()].map((row) => row.x), [1, 2, 3]);
});

Deno.test("policy_versions refuses UPDATE and DELETE with ERR_AUDIT_APPEND_ONLY", () => {
  using db = openDatabase(":memory:");
  db.exec(
    `INSERT INTO policy_versions (version, content, hash, applied_at, applied_by, reason)
     VALUES (1, '{}', '${"a".repeat(64)}', 1, 'ops', NULL)`,
  );
  for (const sql of ["UPDATE policy_versions SET reason = 'x'", "DELETE FROM policy_versions"]) {
    assert.throws(() => db.exec(sql), (err) => isPlmError(err, "ERR_AUDIT_APPEND_ONLY"), sql);
  }
  const rows = db.prepare<{ n: number }>("SELECT count(*) AS n FROM policy_versions").get();
  assert.equal(rows?.n, 1);
});
