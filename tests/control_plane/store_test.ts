import assert from "node:assert/strict";
import { FakeClock, isPlmError, PlmError } from "../../shared/mod.ts";
import { type Migration, MIGRATIONS, openDatabase } from "../../control_plane/store/mod.ts";

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
