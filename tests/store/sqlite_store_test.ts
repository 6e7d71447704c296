import assert from "node:assert/strict";
import { isPlmError } from "../../shared/mod.ts";
import { openDatabase } from "../../control_plane/store/database.ts";
import { type Migration, MIGRATIONS } from "../../control_plane/store/migrations.ts";
import { openStore } from "../../control_plane/store/open.ts";
import type { StoreTx } from "../../control_plane/store/port.ts";
import { makeRun } from "./conformance.ts";

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "plm_sqlite_store_test_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const NEXT: Migration = {
  version: MIGRATIONS.length + 1,
  name: "from_the_future",
  sql: "CREATE TABLE future (id INTEGER PRIMARY KEY) STRICT;",
};

Deno.test("openStore() opens SQLite at the latest schema, named by its path", async () => {
  await using store = await openStore(":memory:");
  assert.equal(store.kind, "sqlite");
  assert.equal(store.location, ":memory:");
  assert.equal(store.readOnly, false);
  assert.equal(await store.schemaVersion(), MIGRATIONS.length);
  assert.equal(await store.read((tx) => Promise.resolve(tx.audit.chaining)), "write");
});

Deno.test("openStore() refuses a location that is not a text, a path or a postgres URL", async (t) => {
  const bad: [string, unknown][] = [
    ["an empty text", ""],
    ["U+0000", "plm\0.db"],
    ["a lone surrogate", "plm\ud800.db"],
    ["a number", 7],
    ["undefined", undefined],
    ["a mysql URL", "mysql://db.example/plm"],
    ["an http URL", "http://db.example/plm"],
    ["a file URL", "file:///tmp/plm.db"],
    ["a file: URI", "file:plm.db?mode=ro"],
  ];
  for (const [what, location] of bad) {
    await t.step(what, async () => {
      await assert.rejects(
        openStore(location as string),
        (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /\blocation\b/.test(err.message),
      );
    });
  }
  await t.step("the other engine's options", async () => {
    await assert.rejects(openStore(":memory:", { schema: "plm" }), TypeError);
    await assert.rejects(openStore(":memory:", { poolSize: 2 }), TypeError);
  });
  await t.step("readOnly in memory", async () => {
    await assert.rejects(openStore(":memory:", { readOnly: true }), TypeError);
  });
});

Deno.test("openStore() in read-only mode refuses every write with ERR_STORE_READ_ONLY", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/plm.db`;
    await assert.rejects(
      openStore(path, { readOnly: true }),
      (err) => isPlmError(err, "ERR_STORE_NOT_FOUND"),
    );
    {
      await using store = await openStore(path);
      await store.transaction((tx) =>
        tx.runs.insert({ run: makeRun("r-1", 10), requestDigest: "d" })
      );
    }
    await using store = await openStore(path, { readOnly: true });
    assert.equal(store.readOnly, true);
    const writes: ((tx: StoreTx) => Promise<unknown>)[] = [
      (tx) => tx.runs.insert({ run: makeRun("r-2", 20), requestDigest: "d" }),
      (tx) => tx.runs.claimReady({ owner: "w-1", now: 0, expiresAt: 10, limit: 1 }),
      (tx) => tx.governance.insertStart("agent-1", 1),
      (tx) => tx.audit.insertChained([]).then(() => tx.approvals.resolve("a", "expired", "x", 1)),
    ];
    for (const write of writes) {
      await assert.rejects(
        store.transaction(write),
        (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
      );
      await assert.rejects(
        store.lead("reaper", write),
        (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
      );
    }
    await assert.rejects(
      store.transaction((tx) => tx.governance.insertStart("agent-1", 1)),
      (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
    );
    // Reads work, in write and read transactions alike.
    assert.equal((await store.transaction((tx) => tx.runs.byId("r-1")))?.id, "r-1");
    assert.deepEqual(await store.read((tx) => tx.runs.ready(100, 10)).then((r) => r.length), 1);
    assert.equal((await store.read((tx) => tx.runs.byId("r-1")))?.lease, null);
  });
});

Deno.test("openStore() refuses a file newer than the code with ERR_STORE_SCHEMA_TOO_NEW", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/new.db`;
    openDatabase(path, { migrations: [...MIGRATIONS, NEXT] }).close();
    await assert.rejects(openStore(path), (err) => isPlmError(err, "ERR_STORE_SCHEMA_TOO_NEW"));
    await assert.rejects(
      openStore(path, { readOnly: true }),
      (err) => isPlmError(err, "ERR_STORE_SCHEMA_TOO_NEW"),
    );
    await using store = await openStore(path, { migrations: [...MIGRATIONS, NEXT] });
    assert.equal(await store.schemaVersion(), MIGRATIONS.length + 1);
  });
});

Deno.test("openStore() migrates a version 5 file to 6 (runs.lease_token), keeping its runs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/v5.db`;
    {
      using db = openDatabase(path, { migrations: MIGRATIONS.slice(0, 5) });
      assert.equal(db.schemaVersion, 5);
      db.exec(
        `INSERT INTO runs VALUES
         ('r-1', 'queued', 1, '{"action":"bom.read"}', '{"subject":"alice","kind":"human"}', 'k-1',
          'd', 'tp', '', 0, 0, 0, NULL, NULL, 'null', NULL, NULL, NULL, 5, 5),
         ('r-2', 'running', 3, '{}', '{}', NULL, 'd', 'tp', '', 1, 0, 0.5, 'reader', NULL,
          'null', NULL, 'w-1', 900, 6, 7)`,
      );
    }
    await using store = await openStore(path);
    assert.equal(await store.schemaVersion(), MIGRATIONS.length);
    const [r1, r2] = await store.read((tx) =>
      Promise.all([tx.runs.byIdempotencyKey("k-1"), tx.runs.byId("r-2")])
    );
    assert.deepEqual([r1?.run.id, r1?.run.task, r1?.requestDigest], [
      "r-1",
      { action: "bom.read" },
      "d",
    ]);
    // A lease taken before migration 6 has token 0: its holder fences with 0 until it ends.
    assert.deepEqual(r2?.lease, { owner: "w-1", token: 0, expiresAt: 900 });
    assert.deepEqual([r2?.state, r2?.version, r2?.costUnits, r2?.agentId], [
      "running",
      3,
      0.5,
      "reader",
    ]);
    const claimed = await store.transaction((tx) =>
      tx.runs.claimReady({ owner: "w-2", now: 1_000, expiresAt: 2_000, limit: 1 })
    );
    assert.deepEqual(claimed.map((c) => [c.run.id, c.run.lease?.token]), [["r-1", 1]]);
  });
});

Deno.test("openStore() migrates a version 6 file to 7 (policy_versions), keeping its runs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/v6.db`;
    {
      using db = openDatabase(path, { migrations: MIGRATIONS.slice(0, 6) });
      assert.equal(db.schemaVersion, 6);
      db.exec(
        `INSERT INTO runs VALUES
         ('r-1', 'queued', 1, '{"action":"bom.read"}', '{"subject":"alice","kind":"human"}', 'k-1',
          'd', 'tp', '', 0, 0, 0, NULL, NULL, 'null', NULL, NULL, NULL, 5, 5, 0)`,
      );
    }
    await using store = await openStore(path);
    assert.equal(await store.schemaVersion(), 7);
    assert.equal((await store.read((tx) => tx.runs.byId("r-1")))?.state, "queued");
    assert.equal(await store.read((tx) => tx.policies.active()), undefined);
    const row = {
      version: 1,
      content: '{"rules":[]}',
      hash: "a".repeat(64),
      appliedAt: 9,
      appliedBy: "ops",
      reason: null,
    };
    assert.equal(await store.transaction((tx) => tx.policies.insert(row)), true);
    assert.deepEqual(await store.read((tx) => tx.policies.active()), row);
  });
});

Deno.test("transaction() serialises many concurrent async callers on one connection", async () => {
  await withTempDir(async (dir) => {
    await using store = await openStore(`${dir}/plm.db`);
    let inside = 0;
    let most = 0;
    const callers = Array.from({ length: 40 }, (_, i) => {
      const write = async (tx: StoreTx) => {
        inside++;
        most = Math.max(most, inside);
        await tx.governance.insertStart("agent-1", i);
        await Promise.resolve();
        await tx.governance.insertStart("agent-2", i);
        inside--;
        return i;
      };
      if (i % 4 === 1) return store.read((tx) => tx.governance.countStarts("agent-1", -1));
      return i % 4 === 3 ? store.lead("reaper", write) : store.transaction(write);
    });
    const results = await Promise.all(callers);
    assert.equal(results.length, 40);
    assert.equal(most, 1, "one transaction at a time");
    const writers = results.filter((_, i) => i % 4 !== 1).length;
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", -1)), writers);
    assert.equal(await store.read((tx) => tx.governance.countStarts("agent-2", -1)), writers);
  });
});

Deno.test("transaction() inside a transaction of the same store is refused, not deadlocked", async () => {
  await using store = await openStore(":memory:");
  await assert.rejects(
    store.transaction(() => store.transaction(() => Promise.resolve(1))),
    (err) => isPlmError(err, "ERR_INTERNAL") && /inside a transaction/.test(err.message),
  );
  await assert.rejects(
    store.transaction(() => store.read(() => Promise.resolve(1))),
    (err) => isPlmError(err, "ERR_INTERNAL"),
  );
  // The store is still usable, and a wake listener may open a transaction.
  const counted: number[] = [];
  store.onWake(() => {
    store.read((tx) => tx.governance.countStarts("agent-1", 0)).then((n) => counted.push(n));
  });
  await store.transaction(async (tx) => {
    await tx.governance.insertStart("agent-1", 1);
    tx.wake("runs");
  });
  await store.transaction(() => Promise.resolve()); // runs after the listener's read
  assert.deepEqual(counted, [1]);
});

Deno.test("a transaction handle kept past its transaction is refused", async () => {
  await using store = await openStore(":memory:");
  let kept: StoreTx | undefined;
  await store.transaction((tx) => {
    kept = tx;
    return Promise.resolve();
  });
  await assert.rejects(
    store.transaction(() => kept!.governance.insertStart("agent-1", 1)),
    (err) => isPlmError(err, "ERR_INTERNAL"),
  );
  assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 0);
});

Deno.test("read() on SQLite refuses writes and leaves the connection writable", async () => {
  await using store = await openStore(":memory:");
  await assert.rejects(
    store.read((tx) => tx.approvals.resolve("a-1", "expired", "Late", 1)),
    (err) => isPlmError(err, "ERR_STORE_READ_ONLY"),
  );
  await store.transaction((tx) => tx.governance.insertStart("agent-1", 1));
  assert.equal(await store.read((tx) => tx.governance.countStarts("agent-1", 0)), 1);
});

Deno.test("write transactions of two processes on one file take turns", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/shared.db`;
    await (await openStore(path)).close();
    const open = new URL("../../control_plane/store/open.ts", import.meta.url).href;
    const script = `
      import { openStore } from ${JSON.stringify(open)};
      const [path, agent] = Deno.args;
      await using store = await openStore(path, { busyTimeoutMs: 10000 });
      for (let i = 0; i < 25; i++) {
        await store.transaction(async (tx) => {
          const n = await tx.governance.countStarts("shared", -1);
          await tx.governance.insertStart(agent, i);
          await tx.governance.insertStart("shared", n);
        });
      }
    `;
    const run = (agent: string) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--no-check", script, path, agent],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const outputs = await Promise.all([run("agent-a"), run("agent-b")]);
    for (const output of outputs) {
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
    }
    await using store = await openStore(path);
    await store.read(async (tx) => {
      assert.equal(await tx.governance.countStarts("agent-a", -1), 25);
      assert.equal(await tx.governance.countStarts("agent-b", -1), 25);
      // Each transaction read the count and wrote it: taking turns, the counts are 0..49 once each.
      const shared = [];
      for (let i = 0; i < 50; i++) shared.push(await tx.governance.nthStart("shared", -1, i));
      assert.deepEqual(shared, Array.from({ length: 50 }, (_, i) => i));
    });
  });
});
