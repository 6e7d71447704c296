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
      if (mode === "sealed") {
        assert.equal(point.seal?.sealed, 200);
        assert.equal(point.seal?.missing, 0);
        assert.equal(point.seal?.extra, 0);
      }
    }
    const plain = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_plain");
    assert.equal(plain.rows[0]?.n, 200);
    for (const table of ["audit_locked", "audit_sealed"] as const) {
      const check = await verifyTable(client, table);
      assert.deepEqual(
        { ok: check.result.ok, checked: check.result.checked, rows: check.rows },
        { ok: true, checked: 200, rows: 200 },
        table,
      );
      assert.equal(check.unsealed, 0, table);
    }
    const watermark = await readSealHead(client);
    assert.equal(watermark.seq, 200);
    await assert.rejects(
      client.query("UPDATE audit_sealed SET outcome = 'failed' WHERE seq = 1"),
      /immutable/,
    );
  },
);

postgresTest(
  "audit_chain_pg: a row that commits after a higher id is sealed later, not skipped",
  async ({ client, schema }) => {
    await client.query(SCHEMA_SQL);
    await using db = await connect(schema);
    const late = await db.pool.connect();
    try {
      // The lower id, left uncommitted while a higher id commits.
      await late.query("BEGIN");
      const lowId = (await late.query<{ id: string }>(
        `INSERT INTO audit_sealed (at, actor_subject, actor_kind, action, resource, outcome, data)
         VALUES (1, 'w', 'service', 'run.transition', 'run:late', 'succeeded', 'null')
         RETURNING id`,
      )).rows[0]!.id;
      const highId = await appendOne(db.a, "sealed", {
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
      const first = await sealBatch(db.b, await readSealHead(db.b), 100);
      assert.deepEqual(first.ids, [highId], "only the committed row is sealed");
      await late.query("COMMIT");
      const second = await sealBatch(db.b, first.head, 100);
      assert.deepEqual(second.ids, [lowId], "the late row is sealed by the next batch");
      assert.deepEqual(second.head.seq, 2);
    } finally {
      late.release();
    }
    const check = await verifyTable(client, "audit_sealed");
    assert.deepEqual([check.result.ok, check.result.checked, check.unsealed], [true, 2, 0]);
  },
);

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
