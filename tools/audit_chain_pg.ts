/**
 * The measurement behind ADR 0008's audit-chain decision (issue 10, point 5):
 * how one linear, gap-free audit chain keeps pace with N concurrent writers on
 * PostgreSQL. A design measurement, not the product's benchmark: it is to be
 * replaced by the PostgreSQL adapter's benchmark once the adapter exists.
 *
 *   deno run -A tools/audit_chain_pg.ts [--url postgres://...] [--seconds 5]
 *     [--writers 1,4,16,32] [--pause-ms 10]
 *
 * In a fresh schema (created, then dropped), each writer holds its own
 * connection from one `pg.Pool` and appends one audit record per transaction,
 * together with a small state-change row, as a governed transition does. For
 * each writer count it measures, for a fixed time, four designs (ADR 0008's
 * (a) to (d)):
 *
 * - (a) `unchained`: plain inserts of the same rows, no chain (the floor);
 * - (b) `locked`: the chain under one lock: `SELECT ... FOR UPDATE` of a one-row
 *   head, `chainHash` in JS, insert and head update, in the writer's
 *   transaction;
 * - (c) `sealed`: deferred sealing by update: writers insert unchained rows (seq, prev_hash,
 *   hash NULL); one sealer, elected by `pg_try_advisory_lock`, chains committed
 *   unsealed rows in batches, in seal order, and moves a `sealed_through`
 *   watermark in the same transaction. It takes any unsealed row regardless of
 *   id (`WHERE seq IS NULL ORDER BY id ... FOR UPDATE SKIP LOCKED`), never
 *   "id > last sealed id": ids come from a sequence, and a row with a lower id
 *   can commit after one with a higher id, so a watermark on ids would skip it;
 * - (d) `sealed_xid`: insert-only deferred sealing, the design ADR 0008 chose:
 *   writers insert unchained rows keyed by (inserting transaction id,
 *   id); the sealer never updates them but inserts a narrow seal row (seq,
 *   key, prev_hash, hash), taking rows in (transaction id, id) order after its
 *   watermark and only below `pg_snapshot_xmin(pg_current_snapshot())`: every
 *   transaction older than that has ended, so no row can still appear below it.
 *
 * It prints records/s per design and writer count with the ratio to the floor,
 * the seal lag (writer's COMMIT returned to sealer's COMMIT returned) p50/p99,
 * the backlog when the writers stop, then walks the three chains from genesis with
 * the package's own verifier (`chainHash`, the walk `AuditLog.verify` uses),
 * and checks that every sealed-design row was sealed exactly once.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import { parseArgs } from "node:util";
import { canonicalJson, sleep } from "../shared/mod.ts";
import { AUDIT_GENESIS_HASH, chainHash } from "../control_plane/audit/hash.ts";

/** The four designs measured. */
export const MODES = ["unchained", "locked", "sealed", "sealed_xid"] as const;
/** One of {@link MODES}. */
export type Mode = typeof MODES[number];
/** The designs with a sealer. */
export type SealedMode = "sealed" | "sealed_xid";

const COLUMNS =
  "at, actor_subject, actor_kind, action, resource, outcome, reason, run_id, trace_id, data";
const RECORD_COLUMNS = `
  at bigint NOT NULL,
  actor_subject text NOT NULL,
  actor_kind text NOT NULL,
  action text NOT NULL,
  resource text NOT NULL,
  outcome text NOT NULL,
  reason text,
  run_id text,
  trace_id text,
  data text NOT NULL`;

/** The tables of the three designs, created in the connection's `search_path`. */
export const SCHEMA_SQL = `
CREATE TABLE state_change (
  id bigserial PRIMARY KEY, run_id text NOT NULL, state text NOT NULL, at bigint NOT NULL);
CREATE TABLE audit_plain (id bigserial PRIMARY KEY, ${RECORD_COLUMNS});
CREATE TABLE audit_locked (seq bigint PRIMARY KEY, ${RECORD_COLUMNS},
  prev_hash text NOT NULL, hash text NOT NULL);
CREATE TABLE audit_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL);
INSERT INTO audit_head VALUES (1, 0, '${AUDIT_GENESIS_HASH}');
CREATE TABLE audit_sealed (id bigserial PRIMARY KEY, ${RECORD_COLUMNS},
  seq bigint, prev_hash text, hash text);
CREATE UNIQUE INDEX audit_sealed_seq ON audit_sealed (seq) WHERE seq IS NOT NULL;
CREATE INDEX audit_sealed_unsealed ON audit_sealed (id) WHERE seq IS NULL;
CREATE TABLE audit_seal_state (
  id int PRIMARY KEY CHECK (id = 1), sealed_through bigint NOT NULL, head_hash text NOT NULL);
INSERT INTO audit_seal_state VALUES (1, 0, '${AUDIT_GENESIS_HASH}');
CREATE FUNCTION audit_sealed_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' OR OLD.seq IS NOT NULL THEN
    RAISE EXCEPTION 'sealed audit records are immutable';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER audit_sealed_immutable BEFORE UPDATE OR DELETE ON audit_sealed
  FOR EACH ROW EXECUTE FUNCTION audit_sealed_immutable();
CREATE TABLE audit_tx (tx xid8 NOT NULL DEFAULT pg_current_xact_id(), id bigserial,
  ${RECORD_COLUMNS}, PRIMARY KEY (tx, id));
CREATE TABLE audit_seal (seq bigint PRIMARY KEY, tx xid8 NOT NULL, id bigint NOT NULL,
  prev_hash text NOT NULL, hash text NOT NULL, UNIQUE (tx, id));
CREATE TABLE audit_tx_state (id int PRIMARY KEY CHECK (id = 1), sealed_through bigint NOT NULL,
  head_hash text NOT NULL, last_tx xid8 NOT NULL, last_id bigint NOT NULL);
INSERT INTO audit_tx_state VALUES (1, 0, '${AUDIT_GENESIS_HASH}', '0', 0);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only';
END $$;
CREATE TRIGGER audit_tx_append_only BEFORE UPDATE OR DELETE ON audit_tx
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_seal_append_only BEFORE UPDATE OR DELETE ON audit_seal
  FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
`;

/** An audit record's stored columns, `data` as its canonical JSON text. */
export interface RecordRow {
  readonly at: number;
  readonly actorSubject: string;
  readonly actorKind: string;
  readonly action: string;
  readonly resource: string;
  readonly outcome: string;
  readonly reason: string | null;
  readonly runId: string | null;
  readonly traceId: string | null;
  readonly data: string;
}

function recordOf(writer: number, n: number): RecordRow {
  const runId = `r-${writer}-${n}`;
  return {
    at: Date.now(),
    actorSubject: `worker-${writer}`,
    actorKind: "service",
    action: "run.transition",
    resource: `run:${runId}`,
    outcome: "succeeded",
    reason: null,
    runId,
    traceId: null,
    data: canonicalJson({ attempt: 1, from: "running", to: "succeeded" }),
  };
}

function paramsOf(r: RecordRow): unknown[] {
  return [
    r.at,
    r.actorSubject,
    r.actorKind,
    r.action,
    r.resource,
    r.outcome,
    r.reason,
    r.runId,
    r.traceId,
    r.data,
  ];
}

const VALUES_1_10 = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10";
const INSERT_STATE = "INSERT INTO state_change (run_id, state, at) VALUES ($1, $2, $3)";
const INSERT_PLAIN = `INSERT INTO audit_plain (${COLUMNS}) VALUES (${VALUES_1_10})`;
const INSERT_UNSEALED =
  `INSERT INTO audit_sealed (${COLUMNS}) VALUES (${VALUES_1_10}) RETURNING id`;
const INSERT_XID = `INSERT INTO audit_tx (${COLUMNS}) VALUES (${VALUES_1_10}) RETURNING id`;
// The locked design's best setup: the state row is written before the lock is
// taken, and the record and the new head go in one statement, so the lock is
// held for two round trips and the commit.
const LOCK_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";
const INSERT_LOCKED = `WITH ins AS (
  INSERT INTO audit_locked (${COLUMNS}, seq, prev_hash, hash)
  VALUES (${VALUES_1_10}, $11, $12, $13))
UPDATE audit_head SET seq = $11, hash = $13 WHERE id = 1`;

function hashOf(prevHash: string, seq: number, r: RecordRow): string {
  return chainHash(
    prevHash,
    seq,
    r.at,
    r.actorSubject,
    r.actorKind,
    r.action,
    r.resource,
    r.outcome,
    r.reason,
    r.runId,
    r.traceId,
    r.data,
  );
}

/**
 * Appends one record in `mode`, in its own transaction with a state-change
 * row. Returns the row's id for a {@link SealedMode} (to follow it to its seal), else
 * `undefined`.
 */
export async function appendOne(
  client: pg.ClientBase,
  mode: Mode,
  record: RecordRow,
): Promise<string | undefined> {
  await client.query("BEGIN");
  try {
    await client.query(INSERT_STATE, [record.runId, "succeeded", record.at]);
    let id: string | undefined;
    switch (mode) {
      case "unchained":
        await client.query(INSERT_PLAIN, paramsOf(record));
        break;
      case "locked": {
        const head = (await client.query<{ seq: string; hash: string }>(LOCK_HEAD)).rows[0]!;
        const seq = Number(head.seq) + 1;
        const hash = hashOf(head.hash, seq, record);
        await client.query(INSERT_LOCKED, [...paramsOf(record), seq, head.hash, hash]);
        break;
      }
      case "sealed":
        id = (await client.query<{ id: string }>(INSERT_UNSEALED, paramsOf(record))).rows[0]!.id;
        break;
      case "sealed_xid":
        id = (await client.query<{ id: string }>(INSERT_XID, paramsOf(record))).rows[0]!.id;
        break;
      default:
        throw new Error(`unknown mode ${mode satisfies never}`);
    }
    await client.query("COMMIT");
    return id;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

const SELECT_UNSEALED = `SELECT id, ${COLUMNS} FROM audit_sealed WHERE seq IS NULL
  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`;
// Seals a batch and moves the watermark in one statement; the watermark's old
// value fences a second sealer (0 rows: it lost the election).
const SEAL_BATCH = `WITH s AS (
  UPDATE audit_sealed a SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS u(id, seq, prev_hash, hash)
  WHERE a.id = u.id AND a.seq IS NULL RETURNING 1)
UPDATE audit_seal_state SET sealed_through = $5, head_hash = $6
WHERE id = 1 AND sealed_through = $7
RETURNING (SELECT count(*) FROM s)::int AS sealed`;
// Only rows of transactions older than the snapshot's xmin: all of them have
// ended, so nothing can still commit at a position before the ones taken.
const SELECT_ENDED = `SELECT tx::text, id, ${COLUMNS} FROM audit_tx
  WHERE (tx, id) > ($1::xid8, $2::bigint) AND tx < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY tx, id LIMIT $3`;
const SEAL_XID_BATCH = `WITH s AS (
  INSERT INTO audit_seal (seq, tx, id, prev_hash, hash)
  SELECT * FROM unnest($1::bigint[], $2::xid8[], $3::bigint[], $4::text[], $5::text[])
  RETURNING 1)
UPDATE audit_tx_state SET sealed_through = $6, head_hash = $7, last_tx = $8::xid8, last_id = $9
WHERE id = 1 AND sealed_through = $10
RETURNING (SELECT count(*) FROM s)::int AS sealed`;
// The election key: one sealer per schema (the product: per database).
const SEALER_LOCK = "hashtext('plm.audit_sealer.' || current_schema())";

interface UnsealedRow {
  tx?: string;
  id: string;
  at: string;
  actor_subject: string;
  actor_kind: string;
  action: string;
  resource: string;
  outcome: string;
  reason: string | null;
  run_id: string | null;
  trace_id: string | null;
  data: string;
}

/**
 * The newest sealed record: the `sealed_through` watermark and its hash; for
 * `sealed_xid`, also its (transaction id, id) key, where the next seal resumes.
 */
export interface SealHead {
  readonly seq: number;
  readonly hash: string;
  readonly tx: string;
  readonly id: string;
}

/** Reads the watermark row of `mode`: the head the next seal links to. */
export async function readSealHead(
  client: pg.ClientBase,
  mode: SealedMode = "sealed",
): Promise<SealHead> {
  const { rows } = await client.query<
    { sealed_through: string; head_hash: string; tx: string; id: string }
  >(
    mode === "sealed"
      ? "SELECT sealed_through, head_hash, '0' AS tx, '0' AS id FROM audit_seal_state WHERE id = 1"
      : `SELECT sealed_through, head_hash, last_tx::text AS tx, last_id AS id
         FROM audit_tx_state WHERE id = 1`,
  );
  const row = rows[0]!;
  return { seq: Number(row.sealed_through), hash: row.head_hash, tx: row.tx, id: row.id };
}

function chainRows(head: SealHead, rows: readonly UnsealedRow[]) {
  const seqs: number[] = [], prevs: string[] = [], hashes: string[] = [];
  let prev = head.hash;
  rows.forEach((row, i) => {
    const seq = head.seq + i + 1;
    const hash = chainHash(
      prev,
      seq,
      Number(row.at),
      row.actor_subject,
      row.actor_kind,
      row.action,
      row.resource,
      row.outcome,
      row.reason,
      row.run_id,
      row.trace_id,
      row.data,
    );
    seqs.push(seq), prevs.push(prev), hashes.push(hash);
    prev = hash;
  });
  return { seqs, prevs, hashes };
}

/**
 * One seal transaction: takes up to `batch` committed unsealed rows (any id,
 * lowest first), chains them after `head` with `chainHash` (seq in seal
 * order), writes seq, prev_hash and hash and moves the watermark, and commits.
 * Returns the new head and the ids sealed, in seq order (none: `head` as is).
 */
export async function sealBatch(
  client: pg.ClientBase,
  head: SealHead,
  batch: number,
): Promise<{ head: SealHead; ids: string[] }> {
  await client.query("BEGIN");
  try {
    const { rows } = await client.query<UnsealedRow>(SELECT_UNSEALED, [batch]);
    if (rows.length === 0) {
      await client.query("COMMIT");
      return { head, ids: [] };
    }
    const ids = rows.map((row) => row.id);
    const { seqs, prevs, hashes } = chainRows(head, rows);
    const next = { ...head, seq: head.seq + rows.length, hash: hashes.at(-1)! };
    const sealed = await client.query<{ sealed: number }>(SEAL_BATCH, [
      ids,
      seqs,
      prevs,
      hashes,
      next.seq,
      next.hash,
      head.seq,
    ]);
    if (sealed.rows[0]?.sealed !== rows.length) {
      throw new Error(`seal of ${rows.length} rows after seq ${head.seq} did not apply`);
    }
    await client.query("COMMIT");
    return { head: next, ids };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

/**
 * One seal of the `sealed_xid` design: reads up to `batch` rows after `head`
 * in (transaction id, id) order from transactions that have all ended, chains
 * them, and inserts their seal rows and moves the watermark in one statement
 * (its own transaction). Returns the new head and the ids sealed.
 */
export async function sealBatchXid(
  client: pg.ClientBase,
  head: SealHead,
  batch: number,
): Promise<{ head: SealHead; ids: string[] }> {
  const { rows } = await client.query<UnsealedRow>(SELECT_ENDED, [head.tx, head.id, batch]);
  if (rows.length === 0) return { head, ids: [] };
  const ids = rows.map((row) => row.id);
  const { seqs, prevs, hashes } = chainRows(head, rows);
  const last = rows.at(-1)!;
  const next = { seq: head.seq + rows.length, hash: hashes.at(-1)!, tx: last.tx!, id: last.id };
  const sealed = await client.query<{ sealed: number }>(SEAL_XID_BATCH, [
    seqs,
    rows.map((row) => row.tx),
    ids,
    prevs,
    hashes,
    next.seq,
    next.hash,
    next.tx,
    next.id,
    head.seq,
  ]);
  if (sealed.rows[0]?.sealed !== rows.length) {
    throw new Error(`seal of ${rows.length} rows after seq ${head.seq} did not apply`);
  }
  return { head: next, ids };
}

async function pending(client: pg.ClientBase, mode: SealedMode, head: SealHead) {
  const { rows } = await client.query<{ pending: boolean }>(
    mode === "sealed"
      ? "SELECT EXISTS (SELECT 1 FROM audit_sealed WHERE seq IS NULL) AS pending"
      : `SELECT EXISTS (SELECT 1 FROM audit_tx WHERE (tx, id) > ($1::xid8, $2::bigint)) AS pending`,
    mode === "sealed" ? [] : [head.tx, head.id],
  );
  return rows[0]!.pending;
}

/** Options for {@link startSealer}. */
export interface SealerOptions {
  /** The design sealed. @default {"sealed"} */
  readonly mode?: SealedMode;
  /** Rows chained per transaction. @default 1000 */
  readonly batch?: number;
  /**
   * Pause after a batch that was not full, in ms: fewer, larger seal
   * transactions (each one a WAL flush of its own) for a little more lag.
   * @default 10
   */
  readonly pauseMs?: number;
}

/** A running sealer, from {@link startSealer}. */
export interface Sealer {
  /** When each row was sealed (`performance.now()` after the seal's COMMIT), by id. */
  readonly sealedAt: Map<string, number>;
  /** Ids sealed, in seal order, repeats included (there must be none). */
  readonly sealedIds: string[];
  /** Seals until nothing committed is left unsealed, then gives up the election. */
  drain(): Promise<{ batches: number }>;
}

/**
 * Starts the sealer loop on `client` (a connection of its own) if it wins the
 * election (`pg_try_advisory_lock`); returns `undefined` when another holds it.
 *
 * Invariants: one sealer at a time (the session advisory lock, and the
 * watermark's old value in each seal's `WHERE`); seq is assigned in seal order,
 * contiguous from the watermark; only committed rows are visible to it (READ
 * COMMITTED), so a row that commits late is sealed by a later batch, never
 * skipped.
 */
export async function startSealer(
  client: pg.ClientBase,
  options: SealerOptions = {},
): Promise<Sealer | undefined> {
  const { mode = "sealed", batch = 1000, pauseMs = 10 } = options;
  const seal = mode === "sealed" ? sealBatch : sealBatchXid;
  const won = await client.query<{ won: boolean }>(
    `SELECT pg_try_advisory_lock(${SEALER_LOCK}) AS won`,
  );
  if (!won.rows[0]!.won) return undefined;
  let head = await readSealHead(client, mode);
  const sealedAt = new Map<string, number>();
  const sealedIds: string[] = [];
  let draining = false;
  let batches = 0;
  const loop = (async () => {
    try {
      while (true) {
        const sealed = await seal(client, head, batch);
        head = sealed.head;
        const now = performance.now();
        for (const id of sealed.ids) sealedAt.set(id, now), sealedIds.push(id);
        if (sealed.ids.length > 0) batches++;
        // Writers have all committed once draining starts: an empty batch with
        // nothing left after the head then means done (`sealed_xid` may still
        // wait for older transactions elsewhere on the server to end).
        if (sealed.ids.length === 0 && draining && !(await pending(client, mode, head))) break;
        if (sealed.ids.length < batch) await sleep(pauseMs);
      }
    } finally {
      await client.query(`SELECT pg_advisory_unlock(${SEALER_LOCK})`);
    }
  })();
  return {
    sealedAt,
    sealedIds,
    async drain() {
      draining = true;
      await loop;
      return { batches };
    },
  };
}

/** When a measured point ends: after `count` appends in all, or after `durationMs`. */
export type PointLimit = { readonly count: number } | { readonly durationMs: number };

/** What the sealer did during a point of a {@link SealedMode}. */
export interface SealStats {
  readonly sealed: number;
  readonly batches: number;
  /** Rows committed but not yet sealed when the writers stopped. */
  readonly backlogAtStop: number;
  /** From the writers' stop to the last seal, in ms. */
  readonly drainMs: number;
  /** Writer's COMMIT returned to sealer's COMMIT returned, in ms (0 when the seal came first). */
  readonly lagP50Ms: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
  /** Rows the writers committed that the sealer did not seal (must be 0). */
  readonly missing: number;
  /** Rows sealed more than once, or not written in this point (must be 0). */
  readonly extra: number;
}

/** One measured point. */
export interface PointResult {
  readonly mode: Mode;
  readonly writers: number;
  readonly appends: number;
  readonly seconds: number;
  readonly perSecond: number;
  readonly seal?: SealStats;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.floor(p * (sorted.length - 1))]!;
}

/**
 * Runs `writers` concurrent writers in `mode` until `limit`, each on its own
 * pool connection (taken before the clock starts). For a {@link SealedMode}, the sealer
 * runs on `sealerClient` alongside and drains after the writers stop.
 */
export async function runPoint(
  pool: pg.Pool,
  sealerClient: pg.ClientBase,
  mode: Mode,
  writers: number,
  limit: PointLimit,
  sealerOptions: SealerOptions = {},
): Promise<PointResult> {
  const clients = await Promise.all(Array.from({ length: writers }, () => pool.connect()));
  const committedAt = new Map<string, number>();
  let sealer: Sealer | undefined;
  if (mode === "sealed" || mode === "sealed_xid") {
    sealer = await startSealer(sealerClient, { ...sealerOptions, mode });
    if (sealer === undefined) throw new Error("another sealer holds the election");
  }
  let appends = 0;
  let tickets = "count" in limit ? limit.count : Infinity;
  const start = performance.now();
  const deadline = "durationMs" in limit ? start + limit.durationMs : Infinity;
  try {
    await Promise.all(clients.map(async (client, w) => {
      let n = 0;
      while (tickets > 0 && performance.now() < deadline) {
        tickets--;
        const id = await appendOne(client, mode, recordOf(w, n++));
        if (id !== undefined) committedAt.set(id, performance.now());
        appends++;
      }
    }));
  } finally {
    for (const client of clients) client.release();
  }
  const stop = performance.now();
  const seconds = (stop - start) / 1000;
  const result = { mode, writers, appends, seconds, perSecond: appends / seconds };
  if (sealer === undefined) return result;
  const backlogAtStop = appends - sealer.sealedIds.length;
  const { batches } = await sealer.drain();
  const lags: number[] = [];
  let missing = 0;
  let lastSeal = stop;
  for (const [id, at] of committedAt) {
    const sealedAt = sealer.sealedAt.get(id);
    if (sealedAt === undefined) missing++;
    else lags.push(Math.max(0, sealedAt - at)), lastSeal = Math.max(lastSeal, sealedAt);
  }
  lags.sort((a, b) => a - b);
  const extra = sealer.sealedIds.length - (committedAt.size - missing);
  return {
    ...result,
    seal: {
      sealed: sealer.sealedIds.length,
      batches,
      backlogAtStop,
      drainMs: lastSeal - stop,
      lagP50Ms: percentile(lags, 0.5),
      lagP99Ms: percentile(lags, 0.99),
      lagMaxMs: lags.at(-1) ?? 0,
      missing,
      extra,
    },
  };
}

/** What walking a chain from genesis found: valid through `checked`, or the first bad seq. */
export type ChainWalk =
  | { readonly ok: true; readonly checked: number }
  | { readonly ok: false; readonly checked: number; readonly badSeq: number; readonly why: string };

/** A chain walked from genesis, with the table's own counts beside it. */
export interface ChainCheck {
  readonly result: ChainWalk;
  readonly rows: number;
  /** Rows without a seq (the sealing designs: not sealed yet). */
  readonly unsealed: number;
}

const CHAINS = {
  locked: {
    counts: "SELECT count(*)::int AS rows, 0 AS unsealed FROM audit_locked",
    page: `SELECT seq, ${COLUMNS}, prev_hash, hash FROM audit_locked
      WHERE seq > $1 ORDER BY seq LIMIT 5000`,
  },
  sealed: {
    counts: `SELECT count(*)::int AS rows, count(*) FILTER (WHERE seq IS NULL)::int AS unsealed
      FROM audit_sealed`,
    page: `SELECT seq, ${COLUMNS}, prev_hash, hash FROM audit_sealed
      WHERE seq > $1 ORDER BY seq LIMIT 5000`,
  },
  sealed_xid: {
    counts: `SELECT count(*)::int AS rows, count(*) FILTER (WHERE s.seq IS NULL)::int AS unsealed
      FROM audit_tx r LEFT JOIN audit_seal s USING (tx, id)`,
    page: `SELECT s.seq, ${COLUMNS}, s.prev_hash, s.hash FROM audit_seal s
      JOIN audit_tx r USING (tx, id) WHERE s.seq > $1 ORDER BY s.seq LIMIT 5000`,
  },
} as const;

/**
 * Walks the chain of a design (`locked`, `sealed` or `sealed_xid`) in seq
 * order with the package's verifier (every hash recomputed with `chainHash`,
 * no gaps), in one snapshot, and counts its records and the unsealed ones.
 */
export async function verifyTable(
  client: pg.ClientBase,
  design: keyof typeof CHAINS,
): Promise<ChainCheck> {
  const sql = CHAINS[design];
  await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  try {
    const counts = await client.query<{ rows: number; unsealed: number }>(sql.counts);
    // The walk: seq 1, 2, 3... each linked to its predecessor and hashed by chainHash.
    let result: ChainWalk | undefined;
    let prevHash = AUDIT_GENESIS_HASH;
    let checked = 0;
    for (let after = 0; result === undefined;) {
      const { rows } = await client.query<Record<string, string | null>>(sql.page, [after]);
      if (rows.length === 0) break;
      for (const r of rows) {
        const seq = Number(r.seq);
        const hash = chainHash(
          prevHash,
          seq,
          Number(r.at),
          r.actor_subject!,
          r.actor_kind!,
          r.action!,
          r.resource!,
          r.outcome!,
          r.reason ?? null,
          r.run_id ?? null,
          r.trace_id ?? null,
          r.data!,
        );
        const why = seq !== checked + 1
          ? "seq_gap"
          : r.prev_hash !== prevHash
          ? "prev_hash_mismatch"
          : r.hash !== hash
          ? "hash_mismatch"
          : undefined;
        if (why !== undefined) {
          result = { ok: false, checked, badSeq: seq, why };
          break;
        }
        prevHash = hash;
        checked = seq;
      }
      after = Number(rows.at(-1)!.seq);
    }
    await client.query("COMMIT");
    return { result: result ?? { ok: true, checked }, ...counts.rows[0]! };
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

/** One table line per writer count: records/s of each design and its ratio to `unchained`. */
export function formatRow(points: readonly PointResult[]): string {
  const by = (mode: Mode) => points.find((p) => p.mode === mode)!;
  const floor = by("unchained").perSecond;
  const cell = (p: PointResult) => `${fmt(p.perSecond)} (${(p.perSecond / floor).toFixed(2)}x)`;
  const seal = (p: PointResult) => {
    const s = p.seal!;
    return `${cell(p)} | ${s.lagP50Ms.toFixed(1)} / ${s.lagP99Ms.toFixed(1)} | ` +
      `${fmt(s.backlogAtStop)} / ${s.drainMs.toFixed(0)} ms / ${fmt(s.sealed / s.batches)}`;
  };
  return `| ${points[0]!.writers} | ${fmt(floor)} | ${cell(by("locked"))} | ` +
    `${seal(by("sealed"))} | ${seal(by("sealed_xid"))} |`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      url: {
        type: "string",
        default: Deno.env.get("PLM_TEST_POSTGRES_URL") ||
          "postgres://postgres@127.0.0.1:5432/test",
      },
      seconds: { type: "string", default: "5" },
      writers: { type: "string", default: "1,4,16,32" },
      "pause-ms": { type: "string", default: "10" },
    },
  });
  const durationMs = Number(values.seconds) * 1000;
  const sealerOptions = { pauseMs: Number(values["pause-ms"]) };
  const counts = values.writers.split(",").map(Number);
  const schema = `audit_chain_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = new pg.Client({ connectionString: values.url });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const options = `-c search_path=${schema}`;
  const pool = new pg.Pool({
    connectionString: values.url,
    options,
    max: Math.max(...counts),
  });
  const sealerClient = new pg.Client({ connectionString: values.url, options });
  let failed = false;
  try {
    await sealerClient.connect();
    await sealerClient.query(SCHEMA_SQL);
    const server = await admin.query<{ v: string; sc: string }>(
      "SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc",
    );
    console.log(
      `PostgreSQL ${server.rows[0]!.v}, synchronous_commit=${server.rows[0]!.sc}, ` +
        `${values.seconds} s per point, sealer pause ${sealerOptions.pauseMs} ms, schema ${schema}`,
    );
    // Warm-up (JIT, connections, plans), not reported; its records stay in the chains.
    for (const mode of MODES) {
      await runPoint(pool, sealerClient, mode, 4, { count: 400 }, sealerOptions);
    }
    console.log(
      "| writers | (a) unchained rec/s | (b) one lock rec/s (x a) " +
        "| (c) deferred sealing rec/s (x a) | (c) seal lag p50 / p99 ms " +
        "| (c) backlog at stop / drain / rows per seal " +
        "| (d) insert-only sealing rec/s (x a) | (d) seal lag p50 / p99 ms " +
        "| (d) backlog at stop / drain / rows per seal |",
    );
    console.log("| --: | --: | --: | --: | --: | --: | --: | --: | --: |");
    for (const writers of counts) {
      const points: PointResult[] = [];
      for (const mode of MODES) {
        points.push(
          await runPoint(pool, sealerClient, mode, writers, { durationMs }, sealerOptions),
        );
      }
      console.log(formatRow(points));
      for (const { mode, seal } of points) {
        if (seal === undefined || (seal.missing === 0 && seal.extra === 0)) continue;
        console.log(`  ${mode}, ${writers} writers: ${seal.missing} missing, ${seal.extra} extra`);
        failed = true;
      }
    }
    for (const table of ["locked", "sealed", "sealed_xid"] as const) {
      const check = await verifyTable(sealerClient, table);
      const ok = check.result.ok && check.result.checked === check.rows &&
        check.unsealed === 0;
      failed ||= !ok;
      console.log(
        `${table}: ${check.rows} rows, ${check.unsealed} unsealed, chain from genesis ` +
          (check.result.ok
            ? `valid through seq ${check.result.checked}`
            : `broken: ${JSON.stringify(check.result)}`),
      );
    }
  } finally {
    await sealerClient.end().catch(() => {});
    await pool.end();
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
