/**
 * AuditLog over a store with `"seal"` chaining (PostgreSQL's, ADR 0008), on an
 * in-memory fake of the audit repository: the sealer loop, its fence, and
 * reads that seal first. The PostgreSQL adapter's own tests run the same
 * paths on a server.
 */
import assert from "node:assert/strict";
import { AUDIT_GENESIS_HASH, AuditLog, computeAuditHash } from "../../control_plane/audit/mod.ts";
import { FakeClock } from "../../shared/mod.ts";
import { entry } from "./_audit_fixture.ts";
import { sealStore } from "./_seal_store.ts";

Deno.test("AuditLog.append() with seal chaining writes drafts that list() seals first", async () => {
  const { store, state } = sealStore();
  const clock = new FakeClock(1_000);
  const audit = new AuditLog(store, { clock });
  await audit.append(entry(1));
  clock.advance(5);
  await audit.appendMany([entry(2), entry(3)]);
  assert.equal(state.drafts.length, 3);
  assert.equal(state.sealed.length, 0, "a writer never chains");

  const records = await audit.list();
  assert.deepEqual(records.map((r) => r.seq), [1, 2, 3]);
  assert.deepEqual(records.map((r) => r.at), [1_000, 1_005, 1_005]);
  assert.equal(records[0]?.prevHash, AUDIT_GENESIS_HASH);
  for (const [i, record] of records.entries()) {
    assert.equal(computeAuditHash(record), record.hash);
    if (i > 0) assert.equal(record.prevHash, records[i - 1]?.hash);
  }
  assert.deepEqual(await audit.head(), { seq: 3, hash: records[2]?.hash });
  assert.deepEqual(await audit.verify(), {
    ok: true,
    checked: 3,
    head: { seq: 3, hash: records[2]?.hash },
    sealedThrough: 3,
    pending: 0,
  });
});

Deno.test("AuditLog.seal() seals in batches of 500 until a batch is not full", async () => {
  const { store, state } = sealStore();
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  await audit.appendMany(Array.from({ length: 1_200 }, (_, i) => entry(i)));
  assert.equal(await audit.seal(), 1_200);
  assert.equal(state.sealed.length, 1_200);
  assert.deepEqual(state.sealed.map((r) => r.seq), Array.from({ length: 1_200 }, (_, i) => i + 1));
  assert.deepEqual(
    state.sealed.map((r) => (r.data as { i: number }).i),
    Array.from({ length: 1_200 }, (_, i) => i),
    "seal order is commit order",
  );
  assert.equal(await audit.seal(), 0, "nothing left");
  await audit.append(entry(1_200));
  assert.equal(await audit.seal(), 1);
  assert.equal((await audit.verify()).checked, 1_201);
});

Deno.test("AuditLog.seal() is 0 when another process holds the sealer role", async () => {
  const { store, state } = sealStore();
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  await audit.appendMany([entry(1), entry(2)]);
  state.leads = false;
  assert.equal(await audit.seal(), 0);
  assert.equal(state.sealed.length, 0);
  // verify reports what it could not seal: the watermark and the records still waiting.
  assert.deepEqual(await audit.verify(), {
    ok: true,
    checked: 0,
    head: { seq: 0, hash: AUDIT_GENESIS_HASH },
    sealedThrough: 0,
    pending: 2,
  });
  state.leads = true;
  assert.deepEqual((await audit.verify()).pending, 0);
});

Deno.test("AuditLog.seal() stops when another sealer moved the watermark first", async () => {
  const { store, state } = sealStore();
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  await audit.appendMany([entry(1), entry(2)]);
  state.raceSeals = 1;
  assert.equal(await audit.seal(), 0, "the fenced batch wrote nothing");
  assert.equal(state.sealed.length, 0);
  assert.equal(await audit.seal(), 2, "the next round seals from the new head");
  assert.equal((await audit.verify()).ok, true);
});

Deno.test("AuditLog.append() with seal chaining in a rolled-back transaction leaves no draft", async () => {
  const { store, state } = sealStore();
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  await assert.rejects(
    store.transaction(async (tx) => {
      await audit.append(entry(1), { tx });
      throw new Error("the state change failed");
    }),
    /state change failed/,
  );
  assert.equal(state.drafts.length, 0);
  assert.equal(await audit.seal(), 0);
});

Deno.test("AuditLog.verify() with seal chaining reports a sealed record altered and guards missing", async () => {
  const { store, state } = sealStore();
  const audit = new AuditLog(store, { clock: new FakeClock(0) });
  await audit.appendMany([entry(1), entry(2), entry(3)]);
  await audit.seal();
  state.missing = ["audit_seal_no_update"];
  const disabled = await audit.verify();
  assert.deepEqual(
    disabled.ok ? "ok" : [disabled.problem, disabled.firstBadSeq, disabled.sealedThrough],
    ["append_only_disabled", 0, 3],
  );
  state.missing = [];
  state.sealed[1] = { ...state.sealed[1]!, outcome: "forged" };
  const forged = await audit.verify();
  assert.deepEqual(forged.ok ? "ok" : [forged.problem, forged.firstBadSeq], ["hash_mismatch", 2]);
});

Deno.test("AuditLog on a read-only store never seals: it reads what is sealed", async () => {
  const { store: writer, state } = sealStore();
  const audit = new AuditLog(writer, { clock: new FakeClock(0) });
  await audit.appendMany([entry(1), entry(2)]);
  await audit.seal();
  await audit.append(entry(3));
  // A reader opened read-only on the same data (the CLI's `plm audit verify`).
  const { store: reader, state: view } = sealStore({ readOnly: true });
  view.drafts.push(...state.drafts);
  view.sealed.push(...state.sealed);
  const readOnly = new AuditLog(reader);
  assert.equal(await readOnly.seal(), 0);
  assert.deepEqual((await readOnly.list()).map((r) => r.seq), [1, 2]);
  assert.equal((await readOnly.head()).seq, 2);
  const result = await readOnly.verify();
  assert.deepEqual([result.ok, result.sealedThrough, result.pending], [true, 2, 1]);
  assert.equal(view.sealed.length, 2, "nothing was sealed through the reader");
});
