import assert from "node:assert/strict";
import {
  type ChainRow,
  verifyChain,
  type Witness,
  witnessesOf,
} from "../../control_plane/audit/_verify_chain.ts";
import { AUDIT_GENESIS_HASH, chainHash } from "../../control_plane/audit/hash.ts";

/** A valid chain of `n` hand-made rows, as `audit_log` would hold them. */
function chain(n: number): ChainRow[] {
  const rows: ChainRow[] = [];
  let prevHash = AUDIT_GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const fields = [
      seq,
      1_000 + seq,
      "svc",
      "service",
      "run.transition",
      `run:r-${seq}`,
      "ok",
      null,
      `r-${seq}`,
      null,
      `{"n":${seq}}`,
    ] as const;
    const hash = chainHash(prevHash, ...fields);
    rows.push([...fields, prevHash, hash]);
    prevHash = hash;
  }
  return rows;
}

/** The row with `changes` applied, its hash left as it was. */
function edit(row: ChainRow, changes: { [index: number]: string | number | null }): ChainRow {
  const copy = [...row];
  for (const [index, value] of Object.entries(changes)) copy[Number(index)] = value;
  return copy as unknown as ChainRow;
}

const problemOf = async (pages: ChainRow[][], witnesses: Witness[] = []) => {
  const result = await verifyChain(pages, witnesses);
  return result.ok ? { ok: true, checked: result.checked } : {
    problem: result.problem,
    checked: result.checked,
    firstBadSeq: result.firstBadSeq,
    ...(result.checkpointIndex === undefined ? {} : { checkpointIndex: result.checkpointIndex }),
  };
};

Deno.test("await verifyChain() accepts an intact chain however it is paged", async () => {
  const rows = chain(5);
  const head = { seq: 5, hash: rows[4]![12] };
  for (const pages of [[rows], [rows.slice(0, 2), rows.slice(2)], rows.map((r) => [r]), []]) {
    const result = await verifyChain(pages, []);
    const expected = pages.length === 0
      ? { ok: true, checked: 0, head: { seq: 0, hash: AUDIT_GENESIS_HASH } }
      : { ok: true, checked: 5, head };
    assert.deepEqual(result, expected);
  }
  assert.equal((await verifyChain([[]], [])).ok, true, "an empty page ends nothing wrongly");
});

Deno.test("await verifyChain() reports a missing record and one out of place as seq_gap", async (t) => {
  const rows = chain(4);
  await t.step("a deleted record", async () => {
    assert.deepEqual(await problemOf([[rows[0]!, rows[2]!, rows[3]!]]), {
      problem: "seq_gap",
      checked: 1,
      firstBadSeq: 2,
    });
  });
  await t.step("a record inserted again out of place", async () => {
    assert.deepEqual(await problemOf([rows.slice(0, 3), [rows[1]!]]), {
      problem: "seq_gap",
      checked: 3,
      firstBadSeq: 2,
    });
  });
  await t.step("a chain that does not start at 1", async () => {
    assert.deepEqual(await problemOf([rows.slice(1)]), {
      problem: "seq_gap",
      checked: 0,
      firstBadSeq: 1,
    });
  });
});

Deno.test("await verifyChain() reports a relinked record as prev_hash_mismatch", async () => {
  const rows = chain(3);
  const relinked = edit(rows[1]!, { 11: "f".repeat(64) });
  assert.deepEqual(await problemOf([[rows[0]!, relinked, rows[2]!]]), {
    problem: "prev_hash_mismatch",
    checked: 1,
    firstBadSeq: 2,
  });
});

Deno.test("await verifyChain() reports any altered field as hash_mismatch", async (t) => {
  const rows = chain(3);
  const fields: [string, number, string | number | null][] = [
    ["at", 1, 9_999],
    ["actor subject", 2, "mallory"],
    ["actor kind", 3, "human"],
    ["action", 4, "run.cancel"],
    ["resource", 5, "run:r-x"],
    ["outcome", 6, "denied"],
    ["reason", 7, "because"],
    ["run id", 8, null],
    ["trace id", 9, "0af7651916cd43dd8448eb211c80319c"],
    ["data", 10, `{"n":99}`],
    ["hash", 12, "e".repeat(64)],
  ];
  for (const [name, index, value] of fields) {
    await t.step(name, async () => {
      const altered = edit(rows[1]!, { [index]: value });
      assert.deepEqual(await problemOf([[rows[0]!, altered, rows[2]!]]), {
        problem: "hash_mismatch",
        checked: 1,
        firstBadSeq: 2,
      });
    });
  }
});

Deno.test("await verifyChain() reports a chain ending before a witness as truncated", async () => {
  const rows = chain(5);
  const witnesses = witnessesOf({ expectedHead: { seq: 5, hash: rows[4]![12] } });
  assert.deepEqual(await problemOf([rows.slice(0, 3)], witnesses), {
    problem: "truncated",
    checked: 3,
    firstBadSeq: 4,
  });
  assert.equal((await verifyChain([rows], witnesses)).ok, true);
});

Deno.test("await verifyChain() reports another hash at a witness's seq as head_mismatch", async () => {
  const rows = chain(4);
  const witnesses = witnessesOf({ expectedHead: { seq: 2, hash: rows[2]![12] } });
  assert.deepEqual(await problemOf([rows], witnesses), {
    problem: "head_mismatch",
    checked: 4,
    firstBadSeq: 2,
  });
  const genesis = witnessesOf({ expectedHead: { seq: 0, hash: "a".repeat(64) } });
  assert.deepEqual(await problemOf([rows], genesis), {
    problem: "head_mismatch",
    checked: 4,
    firstBadSeq: 0,
  });
});

Deno.test("await verifyChain() reports a chain problem before a witness problem, lowest witness first", async () => {
  const rows = chain(4);
  const witnesses: Witness[] = [
    { seq: 1, hash: rows[0]![12] },
    { seq: 3, hash: "c".repeat(64), checkpointIndex: 1 },
    { seq: 9, hash: "d".repeat(64), checkpointIndex: 0 },
  ];
  assert.deepEqual(await problemOf([rows], witnesses), {
    problem: "head_mismatch",
    checked: 4,
    firstBadSeq: 3,
    checkpointIndex: 1,
  });
  const altered = edit(rows[3]!, { 6: "changed" });
  assert.deepEqual(await problemOf([[...rows.slice(0, 3), altered]], witnesses), {
    problem: "hash_mismatch",
    checked: 3,
    firstBadSeq: 4,
  });
});

Deno.test("await verifyChain() stops reading pages at the first problem", async () => {
  const rows = chain(3);
  let read = 0;
  function* pages() {
    read++;
    yield [rows[0]!, edit(rows[1]!, { 6: "changed" })];
    read++;
    yield [rows[2]!];
  }
  assert.equal((await verifyChain(pages(), [])).ok, false);
  assert.equal(read, 1);
});

Deno.test("witnessesOf() sorts heads by seq, the expected head first, and refuses bad ones", () => {
  const hash = "a".repeat(64);
  const checkpoint = (seq: number) => ({
    version: 1 as const,
    seq,
    hash,
    at: 0,
    keyId: "0123456789abcdef",
    signature: "A".repeat(86),
  });
  const witnesses = witnessesOf({
    expectedHead: { seq: 2, hash },
    checkpoints: [checkpoint(5), checkpoint(2)],
  });
  assert.deepEqual(witnesses.map((w) => [w.seq, w.checkpointIndex]), [
    [2, undefined],
    [2, 1],
    [5, 0],
  ]);
  assert.throws(() => witnessesOf({ expectedHead: { seq: -1, hash } }), {
    code: "ERR_INVALID_ARGUMENT",
  });
  assert.throws(() => witnessesOf({ checkpoints: "no" as never }), {
    code: "ERR_INVALID_ARGUMENT",
  });
  assert.throws(() => witnessesOf({ checkpoints: [{ seq: 1 }] as never }), {
    code: "ERR_INVALID_ARGUMENT",
  });
});
