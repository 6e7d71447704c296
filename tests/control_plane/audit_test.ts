import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { canonicalJson, type Clock, FakeClock, isPlmError, sha256Hex } from "../../shared/mod.ts";
import type { JsonValue } from "../../shared/mod.ts";
import { seededRandom } from "../_seeded_random.ts";
import { openStore, type StoreTx } from "../../control_plane/store/mod.ts";
import {
  AUDIT_GENESIS_HASH,
  type AuditEntryInput,
  AuditEntryInputSchema,
  type AuditListFilter,
  AuditLog,
  type AuditRecord,
  type AuditSink,
  type AuditVerifyResult,
  computeAuditHash,
} from "../../control_plane/audit/mod.ts";
import {
  ALICE,
  dropTriggers,
  entry,
  forge,
  restoreTriggers,
  rewriteFrom,
  seeded,
} from "./_audit_fixture.ts";

function failure(result: AuditVerifyResult): [number, string, number] | "ok" {
  return result.ok ? "ok" : [result.firstBadSeq, result.problem, result.checked];
}

/** An independent rendering of the documented hash: sorted-key JSON via JSON.stringify. */
function referenceHash(record: AuditRecord): string {
  const sortKeys = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(sortKeys);
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(
        Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]),
      );
    }
    return value;
  };
  const body = {
    seq: record.seq,
    at: record.at,
    actor: { subject: record.actor.subject, kind: record.actor.kind },
    action: record.action,
    resource: record.resource,
    outcome: record.outcome,
    reason: record.reason,
    runId: record.runId,
    traceId: record.traceId,
    data: record.data,
  };
  return createHash("sha256").update(record.prevHash + JSON.stringify(sortKeys(body))).digest(
    "hex",
  );
}

Deno.test("AuditLog.append() chains records from the genesis hash with the injected clock", async () => {
  await using store = await openStore(":memory:");
  const clock = new FakeClock(5_000);
  const audit = new AuditLog(store, { clock });
  const sink: AuditSink = audit;
  assert.deepEqual(await audit.head(), { seq: 0, hash: AUDIT_GENESIS_HASH });

  assert.equal(await sink.append(entry(1, { reason: "Policy p-1 allows it" })), undefined);
  clock.advance(250);
  await sink.append({
    actor: ALICE,
    action: "auth.login",
    resource: "http:/login",
    outcome: "allowed",
  });
  const [first, second, ...rest] = await audit.list();
  assert.ok(first !== undefined && second !== undefined);
  assert.deepEqual(rest, []);

  assert.equal(first.seq, 1);
  assert.equal(first.at, 5_000);
  assert.equal(first.prevHash, "0".repeat(64));
  assert.match(first.hash, /^[0-9a-f]{64}$/);
  assert.equal(first.reason, "Policy p-1 allows it");
  assert.deepEqual(first.data, { i: 1, tags: ["a", "b"], nested: { z: 1, a: null } });
  assert.equal(second.seq, 2);
  assert.equal(second.at, 5_250);
  assert.equal(second.prevHash, first.hash);
  assert.equal(second.reason, null);
  assert.equal(second.runId, null);
  assert.equal(second.traceId, null);
  assert.equal(second.data, null);
  assert.deepEqual(await audit.head(), { seq: 2, hash: second.hash });
  assert.deepEqual(await audit.list(), [first, second]);
  assert.deepEqual(await audit.verify(), {
    ok: true,
    checked: 2,
    head: { seq: 2, hash: second.hash },
    sealedThrough: 2,
    pending: 0,
  });
  assert.equal(await audit.seal(), 0, "SQLite chains as it writes: nothing to seal");
});

Deno.test("AuditLog.append() hashes exactly the documented fields", async () => {
  await using seed = await seeded(5);
  const { audit } = seed;
  await audit.append({
    actor: ALICE,
    action: "odd.text",
    resource: 'quote:"x"\n\u2028é',
    outcome: "ok",
    data: { "é": [1.5, -0, 1e21, true, "\u0000"], "a": { "b": [] } },
  });
  for (const record of await audit.list()) {
    assert.equal(computeAuditHash(record), record.hash);
    assert.equal(referenceHash(record), record.hash);
  }
});

Deno.test("AuditLog.list() filters by run, action prefix, actor, seq range, limit and order", async (t) => {
  await using seed = await seeded(12);
  const { audit } = seed;
  const seqs = (records: AuditRecord[]) => records.map((r) => r.seq);

  await t.step("everything, oldest first", async () => {
    assert.deepEqual(seqs(await audit.list()), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });
  await t.step("runId", async () => {
    assert.deepEqual(seqs(await audit.list({ runId: "r-1" })), [1, 5, 9]);
  });
  await t.step("actionPrefix is a literal prefix", async () => {
    assert.deepEqual(seqs(await audit.list({ actionPrefix: "policy." })), [3, 6, 9, 12]);
    assert.deepEqual(seqs(await audit.list({ actionPrefix: "run" })), [1, 2, 4, 5, 7, 8, 10, 11]);
    await audit.append({ actor: ALICE, action: "x", resource: "r", outcome: "ok" });
    assert.deepEqual(seqs(await audit.list({ actionPrefix: "*" })), []);
    assert.deepEqual(seqs(await audit.list({ actionPrefix: "[p]olicy" })), []);
  });
  await t.step("actorSubject", async () => {
    assert.deepEqual(seqs(await audit.list({ actorSubject: "agent-7", toSeq: 12 })), [
      1,
      3,
      5,
      7,
      9,
      11,
    ]);
  });
  await t.step("seq range", async () => {
    assert.deepEqual(seqs(await audit.list({ fromSeq: 4, toSeq: 6 })), [4, 5, 6]);
  });
  await t.step("newest first with a limit, combined with a filter", async () => {
    assert.deepEqual(seqs(await audit.list({ newestFirst: true, limit: 3 })), [13, 12, 11]);
    assert.deepEqual(
      seqs(await audit.list({ actorSubject: "alice", newestFirst: true, limit: 2 })),
      [
        13,
        12,
      ],
    );
    assert.equal((await audit.list({ limit: 1_000 })).length, 13);
  });
});

Deno.test("AuditLog.list() refuses bad criteria with ERR_INVALID_ARGUMENT naming the field", async (t) => {
  await using seed = await seeded(3);
  const { audit } = seed;
  const bad: [string, AuditListFilter, RegExp][] = [
    ["limit -1", { limit: -1 }, /limit/],
    ["limit 0", { limit: 0 }, /limit/],
    ["limit 1,001", { limit: 1_001 }, /limit/],
    ["limit NaN", { limit: NaN }, /limit/],
    ["limit 1.5", { limit: 1.5 }, /limit/],
    ["limit Infinity", { limit: Infinity }, /limit/],
    ["limit as a string", { limit: "10" as unknown as number }, /limit/],
    ["fromSeq 1.5", { fromSeq: 1.5 }, /fromSeq/],
    ["fromSeq -1", { fromSeq: -1 }, /fromSeq/],
    ["toSeq NaN", { toSeq: NaN }, /toSeq/],
    ["toSeq as an object", { toSeq: {} as unknown as number }, /toSeq/],
    ["runId as a number", { runId: 7 as unknown as string }, /runId/],
    ["runId with U+0000", { runId: "r-1\0" }, /runId/],
    ["actionPrefix with a lone surrogate", { actionPrefix: "run\ud800" }, /actionPrefix/],
    ["actorSubject too long", { actorSubject: "a".repeat(1_025) }, /actorSubject/],
  ];
  for (const [name, filter, field] of bad) {
    await t.step(name, async () => {
      await assert.rejects(
        () => audit.list(filter),
        (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && field.test(err.message),
      );
    });
  }
});

Deno.test("audit_log triggers refuse UPDATE and DELETE with ERR_AUDIT_APPEND_ONLY", async () => {
  await using seed = await seeded(3);
  const { db, audit } = seed;
  assert.throws(
    () => db.exec("UPDATE audit_log SET outcome = 'denied' WHERE seq = 2"),
    (err) => isPlmError(err, "ERR_AUDIT_APPEND_ONLY"),
  );
  assert.throws(
    () => db.prepare("DELETE FROM audit_log WHERE seq = ?").run(3),
    (err) => isPlmError(err, "ERR_AUDIT_APPEND_ONLY"),
  );
  assert.equal((await audit.list({ fromSeq: 2, toSeq: 2 }))[0]?.outcome, "succeeded");
  assert.equal((await audit.head()).seq, 3);
  assert.equal((await audit.verify()).ok, true);
});

Deno.test("AuditLog.verify() finds the first edited, deleted, inserted or reordered record", async (t) => {
  await t.step("a field edited", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    db.exec("UPDATE audit_log SET outcome = 'denied' WHERE seq = 5");
    assert.deepEqual(failure(await audit.verify()), [5, "hash_mismatch", 4]);
  });
  await t.step("data edited", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    db.exec("UPDATE audit_log SET data = json_set(data, '$.i', 999) WHERE seq = 5");
    assert.deepEqual(failure(await audit.verify()), [5, "hash_mismatch", 4]);
  });
  await t.step("a field edited and the record's hash recomputed", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    const victim = (await audit.list({ fromSeq: 5, toSeq: 5 }))[0]!;
    db.exec("DELETE FROM audit_log WHERE seq = 5");
    forge(db, { ...victim, outcome: "denied" }, true);
    assert.deepEqual(failure(await audit.verify()), [6, "prev_hash_mismatch", 5]);
  });
  await t.step("a record deleted", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    db.exec("DELETE FROM audit_log WHERE seq = 5");
    assert.deepEqual(failure(await audit.verify()), [5, "seq_gap", 4]);
  });
  await t.step("a record inserted and linked to its predecessor", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    const five = (await audit.list({ fromSeq: 5, toSeq: 5 }))[0]!;
    db.exec("UPDATE audit_log SET seq = seq + 1000 WHERE seq > 5");
    db.exec("UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000");
    forge(db, { ...five, seq: 6, prevHash: five.hash, outcome: "approved" }, true);
    assert.equal((await audit.head()).seq, 11);
    assert.deepEqual(failure(await audit.verify()), [7, "prev_hash_mismatch", 6]);
  });
  await t.step("two records swapped", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    db.exec(`
      UPDATE audit_log SET seq = 1005 WHERE seq = 5;
      UPDATE audit_log SET seq = 5 WHERE seq = 6;
      UPDATE audit_log SET seq = 6 WHERE seq = 1005;
    `);
    assert.deepEqual(failure(await audit.verify()), [5, "prev_hash_mismatch", 4]);
  });
  await t.step("two records swapped and relinked", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    dropTriggers(db);
    const [five, six] = await audit.list({ fromSeq: 5, toSeq: 6 }) as [AuditRecord, AuditRecord];
    db.exec("DELETE FROM audit_log WHERE seq IN (5, 6)");
    forge(db, { ...six, seq: 5, prevHash: five.prevHash }, false);
    forge(db, { ...five, seq: 6, prevHash: six.hash }, false);
    assert.deepEqual(failure(await audit.verify()), [5, "hash_mismatch", 4]);
  });
  await t.step("an untouched log passes", async () => {
    await using seed = await seeded(10);
    const { audit } = seed;
    assert.deepEqual(failure(await audit.verify()), "ok");
  });
});

Deno.test("AuditLog.verify() with expectedHead catches truncation and rewritten history", async (t) => {
  await t.step("tail truncated", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    const witness = await audit.head();
    dropTriggers(db);
    db.exec("DELETE FROM audit_log WHERE seq > 7");
    assert.deepEqual(failure(await audit.verify()), [0, "append_only_disabled", 7]);
    restoreTriggers(db);
    assert.equal((await audit.verify()).ok, true);
    assert.deepEqual(failure(await audit.verify({ expectedHead: witness })), [8, "truncated", 7]);
  });
  await t.step("everything deleted", async () => {
    await using seed = await seeded(3);
    const { db, audit } = seed;
    const witness = await audit.head();
    dropTriggers(db);
    db.exec("DELETE FROM audit_log");
    assert.deepEqual(failure(await audit.verify({ expectedHead: witness })), [1, "truncated", 0]);
  });
  await t.step("history rewritten from record 5 with every hash recomputed", async () => {
    await using seed = await seeded(10);
    const { db, audit } = seed;
    const witness = await audit.head();
    await rewriteFrom(db, audit, 5);
    assert.equal((await audit.verify()).ok, true);
    assert.deepEqual(failure(await audit.verify({ expectedHead: witness })), [
      10,
      "head_mismatch",
      10,
    ]);
  });
  await t.step("an older witness still holds after more appends", async () => {
    await using seed = await seeded(5);
    const { audit } = seed;
    const witness = await audit.head();
    await audit.append(entry(6));
    assert.deepEqual(await audit.verify({ expectedHead: witness }), {
      ok: true,
      checked: 6,
      head: await audit.head(),
      sealedThrough: 6,
      pending: 0,
    });
    assert.equal(
      (await audit.verify({ expectedHead: { seq: 0, hash: AUDIT_GENESIS_HASH } })).ok,
      true,
    );
  });
  await t.step("a malformed witness is refused", async () => {
    await using seed = await seeded(1);
    const { audit } = seed;
    await assert.rejects(
      () => audit.verify({ expectedHead: { seq: -1, hash: AUDIT_GENESIS_HASH } }),
      (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /seq/.test(err.message),
    );
    await assert.rejects(
      () => audit.verify({ expectedHead: { seq: 1, hash: "ABC" } }),
      (err: unknown) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /hash/.test(err.message),
    );
  });
});

Deno.test("AuditLog.append() rejects malformed entries with ERR_AUDIT_INVALID_RECORD", async (t) => {
  await using store = await openStore(":memory:");
  const audit = new AuditLog(store);
  const good = entry(1);
  const cases: Record<string, unknown> = {
    "not an object": "hello",
    "missing actor": { ...good, actor: undefined },
    "unknown actor kind": { ...good, actor: { subject: "x", kind: "robot" } },
    "empty subject": { ...good, actor: { subject: "", kind: "human" } },
    "empty action": { ...good, action: "" },
    "action not dotted words": { ...good, action: "run..transition" },
    "empty resource": { ...good, resource: "" },
    "malformed trace id": { ...good, traceId: "XYZ" },
    "unknown key": { ...good, extra: 1 },
    "non-finite number in data": { ...good, data: { n: Infinity } },
    "date in data": { ...good, data: { when: new Date(0) } },
    "BigInt in data": { ...good, data: { n: 1n } },
    "data nested deeper than 32": { ...good, data: nested(40) },
    "undefined optional": { ...good, reason: undefined },
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.step(name, async () => {
      await assert.rejects(
        () => audit.append(input as AuditEntryInput),
        (err) => isPlmError(err, "ERR_AUDIT_INVALID_RECORD"),
      );
    });
  }
  assert.equal((await audit.head()).seq, 0);
});

function nested(depth: number): JsonValue {
  let value: JsonValue = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

Deno.test("AuditEntryInputSchema checks data as the log does: canonical JSON within bounds", async (t) => {
  const good = entry(1);
  await t.step("accepts data at the depth bound", () => {
    assert.ok(AuditEntryInputSchema.safeParse({ ...good, data: nested(31) }).success);
  });
  for (
    const [name, data] of [
      ["too deep", nested(40)],
      ["a BigInt", { n: 1n }],
      ["a Map", new Map()],
      ["NaN", [NaN]],
    ] as const
  ) {
    await t.step(`refuses ${name}`, () => {
      const result = AuditEntryInputSchema.safeParse({ ...good, data });
      assert.equal(result.success, false);
      if (!result.success) assert.deepEqual(result.error.issues[0]?.path.slice(0, 1), ["data"]);
    });
  }
});

/** A string drawn from characters JSON escapes or leaves alone in surprising ways. */
function randomText(random: () => number, withNul: boolean): string {
  const pieces = [
    '"',
    "\\",
    "\u2028",
    "\u2029",
    "😀",
    "é",
    "\n",
    "\t",
    "\u001f",
    "\u007f",
    "a",
    "Z",
    "/",
    " ",
  ];
  if (withNul) pieces.push("\u0000");
  let text = "";
  const length = Math.floor(random() * 12) + 1;
  for (let i = 0; i < length; i++) {
    text += random() < 0.2
      ? String.fromCharCode(0x20 + Math.floor(random() * 0xd7e0)) // any BMP scalar below surrogates
      : pieces[Math.floor(random() * pieces.length)];
  }
  return text;
}

function randomJson(random: () => number, depth: number): JsonValue {
  const pick = random();
  if (depth > 3 || pick < 0.35) {
    const scalars: JsonValue[] = [
      null,
      true,
      false,
      Math.floor(random() * 2_000_000) - 1_000_000,
      (random() - 0.5) * 1e6,
      1e21,
      5e-324,
      randomText(random, true),
    ];
    return scalars[Math.floor(random() * scalars.length)]!;
  }
  const size = Math.floor(random() * 4);
  if (pick < 0.65) return Array.from({ length: size }, () => randomJson(random, depth + 1));
  const object: Record<string, JsonValue> = {};
  for (let i = 0; i < size; i++) object[randomText(random, true)] = randomJson(random, depth + 1);
  return object;
}

Deno.test("computeAuditHash()'s hand-written body equals sha256(prevHash + canonicalJson(body))", async (t) => {
  const random = seededRandom(2026);
  const maybe = (text: string) => (random() < 0.3 ? null : text);
  await t.step("over 500 random records", () => {
    for (let i = 0; i < 500; i++) {
      const record = {
        seq: 1 + Math.floor(random() * 1e9),
        at: Math.floor(random() * 4e12),
        actor: { subject: randomText(random, false), kind: random() < 0.5 ? "human" : "agent" },
        action: `a${i}.b`,
        resource: randomText(random, false),
        outcome: randomText(random, false),
        reason: maybe(randomText(random, false)),
        runId: maybe(randomText(random, false)),
        traceId: maybe("4bf92f3577b34da6a3ce929d0e0e4736"),
        data: randomJson(random, 0),
        prevHash: sha256Hex(String(i)),
      } as const;
      const { prevHash, ...body } = record;
      assert.equal(
        computeAuditHash(record),
        sha256Hex(prevHash + canonicalJson(body)),
        `record ${i}`,
      );
    }
  });
  await t.step("over 100 records stored and verified", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store, { clock: new FakeClock(1_700_000_000_000) });
    for (let i = 0; i < 100; i++) {
      await audit.append({
        actor: { subject: randomText(random, false), kind: "service" },
        action: "fuzz.append",
        resource: randomText(random, false),
        outcome: randomText(random, false),
        reason: randomText(random, false),
        data: randomJson(random, 0),
      });
      const [record] = await audit.list({ newestFirst: true, limit: 1 });
      assert.ok(record !== undefined);
      const { prevHash, hash, ...body } = record;
      const text = canonicalJson(body as unknown as JsonValue);
      assert.equal(hash, sha256Hex(prevHash + text), `record ${record.seq}`);
    }
    assert.equal((await audit.verify()).ok, true);
  });
});

Deno.test("AuditLog.appendMany() stores the whole batch or nothing", async (t) => {
  await t.step("a valid batch is chained in order", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store, { clock: new FakeClock(7) });
    await audit.append(entry(0));
    assert.equal(await audit.appendMany([entry(1), entry(2), entry(3)]), undefined);
    const records = await audit.list({ fromSeq: 2 });
    assert.deepEqual(records.map((r) => r.seq), [2, 3, 4]);
    assert.deepEqual(records.map((r) => (r.data as { i: number }).i), [1, 2, 3]);
    assert.equal(records[1]?.prevHash, records[0]?.hash);
    assert.equal((await audit.verify()).ok, true);
    await audit.appendMany([]);
    assert.equal((await audit.head()).seq, 4);
  });
  await t.step("one malformed entry stores nothing", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store);
    await assert.rejects(
      () => audit.appendMany([entry(1), { ...entry(2), outcome: "" }, entry(3)]),
      (err) => isPlmError(err, "ERR_AUDIT_INVALID_RECORD"),
    );
    assert.equal((await audit.head()).seq, 0);
  });
  await t.step("a failure half-way through the writes stores nothing", async () => {
    await using store = await openStore(":memory:");
    let calls = 0;
    const flaky: Clock = {
      now() {
        if (++calls === 3) throw new Error("clock failed");
        return calls;
      },
    };
    const audit = new AuditLog(store, { clock: flaky });
    await assert.rejects(
      () => audit.appendMany([entry(1), entry(2), entry(3), entry(4)]),
      /clock failed/,
    );
    assert.equal(calls, 3);
    assert.equal((await audit.head()).seq, 0);
    await audit.append(entry(5)); // the store is usable: nothing was left open
  });
  await t.step("entries that are not a list are refused", async () => {
    await using store = await openStore(":memory:");
    await assert.rejects(
      () => new AuditLog(store).appendMany("x" as unknown as AuditEntryInput[]),
      { code: "ERR_AUDIT_INVALID_RECORD" },
    );
  });
});

Deno.test("AuditLog.append() inside a caller's transaction commits and rolls back with it", async (t) => {
  await using store = await openStore(":memory:");
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  // The caller's state change: a run start of an agent, counted per time.
  const setState = (tx: StoreTx, at: number) => tx.governance.insertStart("agent-1", at);
  const states = () => store.read((tx) => tx.governance.countStarts("agent-1", -1));

  await t.step("the caller fails after the append: both are rolled back", async () => {
    await assert.rejects(
      store.transaction(async (tx) => {
        await setState(tx, 1);
        await audit.append(entry(1), { tx });
        assert.equal((await audit.head({ tx })).seq, 1, "the transaction reads its own write");
        throw new Error("state change failed");
      }),
      /state change failed/,
    );
    assert.equal(await states(), 0);
    assert.equal((await audit.head()).seq, 0);
  });
  await t.step("the caller commits: both are stored", async () => {
    await store.transaction(async (tx) => {
      await setState(tx, 2);
      await audit.append(entry(2), { tx });
    });
    assert.equal(await states(), 1);
    const [record] = await audit.list();
    assert.equal(record?.outcome, entry(2).outcome);
    assert.deepEqual(await audit.head(), { seq: 1, hash: record?.hash });
  });
  await t.step(
    "a failed append in the transaction leaves the caller's work and the chain intact",
    async () => {
      let calls = 0;
      const failing = new AuditLog(store, {
        clock: {
          now() {
            if (++calls === 1) throw new Error("clock failed");
            return 0;
          },
        },
      });
      await store.transaction(async (tx) => {
        await setState(tx, 3);
        await assert.rejects(failing.append(entry(3), { tx }), /clock failed/);
        await failing.append(entry(4), { tx });
      });
      assert.equal(await states(), 2);
      assert.equal((await audit.head()).seq, 2);
      assert.equal((await audit.verify()).ok, true);
    },
  );
});

Deno.test("AuditLog.append() from two processes on one file keeps one unbroken chain", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_audit_test_" });
  try {
    const path = `${dir}/audit.store`;
    await (await openStore(path)).close();
    const perProcess = 200;
    const storeUrl = new URL("../../control_plane/store/mod.ts", import.meta.url).href;
    const auditUrl = new URL("../../control_plane/audit/mod.ts", import.meta.url).href;
    const code = `
      import { openStore } from ${JSON.stringify(storeUrl)};
      import { AuditLog } from ${JSON.stringify(auditUrl)};
      const store = await openStore(Deno.env.get("PLM_TEST_DB"));
      const audit = new AuditLog(store);
      const subject = Deno.env.get("PLM_TEST_WHO");
      console.log("ready");
      await new Response(Deno.stdin.readable).text(); // wait for the start signal (EOF)
      for (let i = 0; i < ${perProcess}; i++) {
        await audit.append({ actor: { subject, kind: "agent" }, action: "test.append", resource: "item:" + i, outcome: "ok", data: { i } });
      }
      await store.close();
    `;
    const configPath = new URL("../../deno.json", import.meta.url).pathname;
    const children = ["writer-a", "writer-b"].map((who) =>
      new Deno.Command(Deno.execPath(), {
        args: ["eval", "--config", configPath, code],
        env: { PLM_TEST_DB: path, PLM_TEST_WHO: who },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn()
    );
    // Start both writers together: each prints "ready", then waits for stdin to close.
    const readers = children.map((child) => child.stdout.getReader());
    await Promise.all(readers.map(async (reader) => {
      let seen = "";
      while (!seen.includes("ready")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += new TextDecoder().decode(value);
      }
    }));
    await Promise.all(children.map((child) => child.stdin.close()));
    const outputs = await Promise.all(children.map(async (child, i) => {
      while (!(await readers[i]!.read()).done) { /* drain */ }
      const stderr = await new Response(child.stderr).text();
      return { status: await child.status, stderr };
    }));
    for (const { status, stderr } of outputs) assert.equal(status.code, 0, stderr);

    await using store = await openStore(path);
    const audit = new AuditLog(store);
    const records = await audit.list();
    assert.equal(records.length, 2 * perProcess);
    assert.deepEqual(await audit.verify(), {
      ok: true,
      checked: 2 * perProcess,
      head: await audit.head(),
      sealedThrough: 2 * perProcess,
      pending: 0,
    });
    for (const who of ["writer-a", "writer-b"]) {
      const mine = records.filter((r) => r.actor.subject === who).map((r) => r.data);
      assert.deepEqual(mine, Array.from({ length: perProcess }, (_, i) => ({ i })));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("AuditLog.verify() reports append-only triggers that are missing or altered", async (t) => {
  await t.step("a dropped trigger", async () => {
    await using seed = await seeded(3);
    const { db, audit } = seed;
    assert.equal(failure(await audit.verify()), "ok");
    db.exec("DROP TRIGGER audit_log_no_delete");
    assert.deepEqual(failure(await audit.verify()), [0, "append_only_disabled", 3]);
  });
  await t.step("a trigger replaced by a no-op of the same name", async () => {
    await using seed = await seeded(2);
    const { db, audit } = seed;
    db.exec(`DROP TRIGGER audit_log_no_update;
      CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log WHEN 0 BEGIN SELECT 1; END;`);
    const result = await audit.verify();
    assert.deepEqual(failure(result), [0, "append_only_disabled", 2]);
    assert.ok(!result.ok && result.reason.includes("audit_log_no_update"));
  });
  await t.step("a broken chain is still reported first", async () => {
    await using seed = await seeded(3);
    const { db, audit } = seed;
    dropTriggers(db);
    db.exec("UPDATE audit_log SET outcome = 'forged' WHERE seq = 2");
    assert.deepEqual(failure(await audit.verify()), [2, "hash_mismatch", 1]);
  });
});

Deno.test("AuditLog stores every accepted text byte-exact, so verify() keeps holding", async (t) => {
  await t.step(
    "U+0000 and lone surrogates in texts are refused before anything is stored",
    async () => {
      await using store = await openStore(":memory:");
      const audit = new AuditLog(store);
      const bad: Partial<AuditEntryInput>[] = [
        { resource: "run:\0x" },
        { reason: "why\0" },
        { outcome: "\ud800" },
        { runId: "r\udfff" },
        { actor: { subject: "eve\0", kind: "human" } },
      ];
      for (const overrides of bad) {
        await assert.rejects(() => audit.append(entry(1, overrides)), {
          code: "ERR_AUDIT_INVALID_RECORD",
        });
      }
      assert.equal((await audit.head()).seq, 0);
    },
  );
  await t.step("U+0000, emoji and escapes inside data survive the round trip", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store);
    const data = { nul: "a\0b", emoji: "\ud83d\ude00", key: { "\u2028": '\\"' } };
    await audit.append(entry(1, { data, resource: "bom:é€😀" }));
    const [stored] = await audit.list();
    assert.equal(stored?.resource, "bom:é€😀");
    assert.deepEqual(stored?.data, data);
    assert.equal(stored && computeAuditHash(stored), stored?.hash);
    assert.equal(failure(await audit.verify()), "ok");
  });
  await t.step("a lone surrogate inside data is refused", async () => {
    await using store = await openStore(":memory:");
    const audit = new AuditLog(store);
    // Like every malformed entry (one check of data, in the entry schema).
    await assert.rejects(() => audit.append(entry(1, { data: { s: "\ud800" } })), {
      code: "ERR_AUDIT_INVALID_RECORD",
    });
    assert.equal((await audit.head()).seq, 0);
  });
});

Deno.test("AuditLog.list() returns at most 1,000 records by default; fromSeq pages on", async () => {
  await using seed = await seeded(1_005);
  const { audit } = seed;
  const first = await audit.list();
  assert.equal(first.length, 1_000);
  const rest = await audit.list({ fromSeq: first.at(-1)!.seq + 1 });
  assert.deepEqual(rest.map((r) => r.seq), [1_001, 1_002, 1_003, 1_004, 1_005]);
});
