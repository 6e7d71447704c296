/**
 * Keeps tools/audit_chain_pg.ts (the measurement behind ADR 0008) from
 * rotting: its functions run briefly against PostgreSQL, and the chains they
 * build must verify from genesis with nothing lost.
 */
// @ts-types="@types/pg"
import pg from "pg";
import assert from "node:assert/strict";
import { POSTGRES_URL, postgresTest } from "../_postgres.ts";
import {
  appendOne,
  MODES,
  readSealHead,
  runPoint,
  SCHEMA_SQL,
  sealBatch,
  sealBatchXid,
  startSealer,
  verifyTable,
} from "../../tools/audit_chain_pg.ts";

/** Connections on the test's schema: a pool for writers and two more clients. */
async function connect(schema: string) {
  const options = `-c search_path=${schema}`;
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, options, max: 4 });
  const a = new pg.Client({ connectionString: POSTGRES_URL, options });
  const b = new pg.Client({ connectionString: POSTGRES_URL, options });
  await a.connect();
  await b.connect();
  return {
    pool,
    a,
    b,
    async [Symbol.asyncDispose]() {
      await a.end();
      await b.end();
      await pool.end();
    },
  };
}

postgresTest(
  "audit_chain_pg: 200 appends by 4 writers in each design, chains verify, none lost",
  async ({ client, schema }) => {
    await client.query(SCHEMA_SQL);
    await using db = await connect(schema);
    for (const mode of MODES) {
      const point = await runPoint(db.pool, db.a, mode, 4, { count: 200 });
      assert.equal(point.appends, 200, mode);
      if (mode === "sealed" || mode === "sealed_xid") {
        assert.deepEqual(
          [point.seal?.sealed, point.seal?.missing, point.seal?.extra],
          [200, 0, 0],
          mode,
        );
      }
    }
    const plain = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_plain");
    assert.equal(plain.rows[0]?.n, 200);
    for (const design of ["locked", "sealed", "sealed_xid"] as const) {
      const check = await verifyTable(client, design);
      assert.deepEqual(
        { ok: check.result.ok, checked: check.result.checked, rows: check.rows },
        { ok: true, checked: 200, rows: 200 },
        design,
      );
      assert.equal(check.unsealed, 0, design);
    }
    const watermark = await readSealHead(client);
    assert.equal(watermark.seq, 200);
    await assert.rejects(
      client.query("UPDATE audit_sealed SET outcome = 'failed' WHERE seq = 1"),
      /immutable/,
    );
  },
);

const SEAL = { sealed: sealBatch, sealed_xid: sealBatchXid } as const;
const TABLE = { sealed: "audit_sealed", sealed_xid: "audit_tx" } as const;

for (const mode of ["sealed", "sealed_xid"] as const) {
  postgresTest(
    `audit_chain_pg: ${mode}, a row that commits after a higher id is sealed later, not skipped`,
    async ({ client, schema }) => {
      await client.query(SCHEMA_SQL);
      await using db = await connect(schema);
      const late = await db.pool.connect();
      try {
        // The lower id, left uncommitted while a higher id commits.
        await late.query("BEGIN");
        const lowId = (await late.query<{ id: string }>(
          `INSERT INTO ${TABLE[mode]}
             (at, actor_subject, actor_kind, action, resource, outcome, data)
           VALUES (1, 'w', 'service', 'run.transition', 'run:late', 'succeeded', 'null')
           RETURNING id`,
        )).rows[0]!.id;
        const highId = await appendOne(db.a, mode, {
          at: 2,
          actorSubject: "w",
          actorKind: "service",
          action: "run.transition",
          resource: "run:early",
          outcome: "succeeded",
          reason: null,
          runId: "r-early",
          traceId: null,
          data: "null",
        });
        assert.ok(Number(highId) > Number(lowId));
        const first = await SEAL[mode](db.b, await readSealHead(db.b, mode), 100);
        // sealed: only the committed row; sealed_xid: nothing past the open transaction.
        assert.deepEqual(first.ids, mode === "sealed" ? [highId] : []);
        await late.query("COMMIT");
        // sealed_xid waits for every older writing transaction on the server to
        // end, parallel tests' included: retry (bounded) until they have.
        // A pass may seal part of what is due (a transaction between the two still open
        // elsewhere): keep sealing, bounded, and look at the order the rows were sealed in.
        const want = mode === "sealed" ? [lowId] : [lowId, highId];
        const sealedIds: string[] = [];
        let head = first.head;
        for (let i = 0; i < 1000 && sealedIds.length < want.length; i++) {
          const pass = await SEAL[mode](db.b, head, 100);
          sealedIds.push(...pass.ids);
          head = pass.head;
        }
        assert.deepEqual(sealedIds, want, "the late row is sealed, in (tx, id) order");
        assert.equal(head.seq, 2);
      } finally {
        late.release();
      }
      const check = await verifyTable(client, mode);
      assert.deepEqual([check.result.ok, check.result.checked, check.unsealed], [true, 2, 0]);
    },
  );
}

postgresTest(
  "audit_chain_pg: a second sealer loses the election while one runs",
  async ({ client, schema }) => {
    await client.query(SCHEMA_SQL);
    await using db = await connect(schema);
    const sealer = await startSealer(db.a);
    assert.ok(sealer !== undefined);
    assert.equal(await startSealer(db.b), undefined);
    await sealer.drain();
    const next = await startSealer(db.b);
    assert.ok(next !== undefined, "the election is free once the sealer stops");
    await next.drain();
  },
);

postgresTest(
  "audit_chain_pg: verifyTable() finds an edited or removed record",
  async ({ client, schema }) => {
    await client.query(SCHEMA_SQL);
    await using db = await connect(schema);
    await runPoint(db.pool, db.a, "locked", 2, { count: 20 });
    await client.query("UPDATE audit_locked SET outcome = 'forged' WHERE seq = 7");
    const edited = await verifyTable(client, "locked");
    assert.deepEqual(
      edited.result.ok ? "ok" : [edited.result.badSeq, edited.result.why, edited.result.checked],
      [7, "hash_mismatch", 6],
    );
    await client.query("DELETE FROM audit_locked WHERE seq >= 7 AND seq < 9");
    const removed = await verifyTable(client, "locked");
    assert.deepEqual(removed.result.ok ? "ok" : [removed.result.badSeq, removed.result.why], [
      9,
      "seq_gap",
    ]);
  },
);
