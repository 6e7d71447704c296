/**
 * Benchmarks of the run store on file databases (WAL, synchronous NORMAL).
 *
 * - A run transition with its audit record: one `BEGIN IMMEDIATE` transaction
 *   that reads the run, updates it with its version check and appends the
 *   hash-chained audit record.
 * - Reads whose cost must not grow with history: the first page of
 *   `RunStore.page()` (every state, and one state) and `RunStore.listReady(16)`,
 *   each at 1,000 and at 100,000 runs, against the same query written naively
 *   in raw `node:sqlite` (`NOT INDEXED`: a full scan and a sort, which is what
 *   `list()` cost before the keyset indexes).
 *
 * ```sh
 * deno bench -A bench/runs_bench.ts
 * ```
 *
 * @module
 */
import { DatabaseSync } from "node:sqlite";
import { AuditLog, openStore, RunStore, type Store, transition } from "../control_plane/mod.ts";

const dir = await Deno.makeTempDir({ prefix: "runs_bench_" });
const db = await openStore(`${dir}/runs.db`);
const audit = new AuditLog(db);
const runs = new RunStore(db, { audit });
const actor = { subject: "bench", kind: "service" } as const;
const requester = { subject: "bench", actorKind: "service", roles: [], scopes: [] } as const;
const traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const task = {
  action: "bom.update",
  resource: "bom:1",
  capabilities: [],
  input: { line: 1 },
  risk: "low",
  attributes: {},
} as const;

async function freshRun(): Promise<string> {
  return (await runs.create({ task, requester, traceparent }, { actor })).run.id;
}

// One run goes start -> fail(retry) -> start -> fail(retry) ... forever: two transitions per loop.
const cycling = await freshRun();
await runs.apply(cycling, { type: "start", agentId: "a" }, { actor });
let flip = false;

Deno.bench(
  "run transition + audit record (file db)",
  { group: "transition", baseline: true },
  async () => {
    flip = !flip;
    if (flip) {
      await runs.apply(cycling, {
        type: "fail",
        error: { code: "ERR_AGENT_FAILED", message: "x" },
        retry: true,
      }, { actor });
    } else {
      await runs.apply(cycling, { type: "start", agentId: "a" }, { actor });
    }
  },
);

Deno.bench("run create + audit record (file db)", { group: "transition" }, async () => {
  await freshRun();
});

const snapshot = await runs.get(cycling);
Deno.bench("RunStore.get() (file db read)", { group: "transition" }, async () => {
  await runs.get(cycling);
});

Deno.bench("transition() alone (pure, no I/O)", { group: "transition" }, () => {
  const running = transition({ ...snapshot, state: "retrying" }, {
    type: "start",
    at: 1,
    agentId: "a",
  });
  if (running.state !== "running") throw new Error("unexpected state");
});

// --- reads over a history: 1,000 and 100,000 runs ------------------------------------------
// The history is written with one SQL statement (outside any timed loop): 80 % succeeded, 10 %
// failed, 10 % queued (the backlog: 10,000 queued runs at 100,000), random UUID-like ids, one run
// per 10 ms. The 16 oldest queued runs are under a live lease, as a busy worker holds them.
const SIZES = [1_000, 100_000] as const;
const PAGE = 100;
const READY = 16;

async function history(
  runs: number,
): Promise<{ store: RunStore; raw: DatabaseSync; close(): Promise<void> }> {
  const path = `${dir}/history_${runs}.db`;
  const db: Store = await openStore(path); // creates and migrates the file
  const raw = new DatabaseSync(path, { timeout: 5_000 });
  raw.exec("BEGIN IMMEDIATE");
  {
    raw.prepare(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
       INSERT INTO runs (id, state, version, task, requester, idempotency_key, request_digest,
         traceparent, tracestate, attempt, escalations, cost_units, agent_id, approval_id, result,
         error, lease_owner, lease_expires_at, created_at, updated_at)
       SELECT lower(hex(randomblob(16))),
         CASE i % 10 WHEN 0 THEN 'queued' WHEN 1 THEN 'failed' ELSE 'succeeded' END,
         3, ?, ?, NULL, lower(hex(randomblob(32))), ?, '', 1, 0, 1, 'agent-1', NULL,
         CASE i % 10 WHEN 0 THEN 'null' ELSE '"ok"' END,
         CASE i % 10 WHEN 1 THEN '{"code":"ERR_AGENT_FAILED","message":"x"}' END,
         NULL, NULL, 1764000000000 + i * 10, 1764000000000 + i * 10
       FROM n`,
    ).run(
      runs,
      JSON.stringify(task),
      JSON.stringify({ subject: "bench", kind: "service" }),
      traceparent,
    );
    raw.exec(
      `UPDATE runs SET lease_owner = 'worker-1', lease_expires_at = 9000000000000000
       WHERE id IN (SELECT id FROM runs WHERE state = 'queued' ORDER BY created_at LIMIT ${READY})`,
    );
  }
  raw.exec("COMMIT");
  raw.exec("ANALYZE");
  return {
    store: new RunStore(db, { audit: new AuditLog(db) }),
    raw,
    async close() {
      raw.close();
      await db.close();
    },
  };
}

const COLS = "id, state, version, task, requester, idempotency_key, request_digest, traceparent, " +
  "tracestate, attempt, escalations, cost_units, agent_id, approval_id, result, error, " +
  "lease_owner, lease_expires_at, created_at, updated_at";

function expect(got: number, wanted: number): void {
  if (got !== wanted) throw new Error(`expected ${wanted} rows, got ${got}`);
}

const histories: ({ size: number } & Awaited<ReturnType<typeof history>>)[] = [];
for (const size of SIZES) histories.push({ size, ...(await history(size)) });
for (const { size, store, raw } of histories) {
  const label = size.toLocaleString("en");
  const naiveNewest = raw.prepare(
    `SELECT ${COLS} FROM runs NOT INDEXED ORDER BY created_at DESC, id DESC LIMIT ${PAGE}`,
  );
  const naiveByState = raw.prepare(
    `SELECT ${COLS} FROM runs NOT INDEXED WHERE state IN (?)
     ORDER BY created_at DESC, id DESC LIMIT ${PAGE}`,
  );
  const naiveReady = raw.prepare(
    `SELECT ${COLS} FROM runs NOT INDEXED
     WHERE state IN ('queued', 'retrying', 'escalated')
       AND (lease_owner IS NULL OR lease_expires_at <= ?)
     ORDER BY created_at, id LIMIT ${READY}`,
  );
  const failed = size / 10;

  Deno.bench(`naive scan + sort, newest ${PAGE} (${label} runs)`, {
    group: `page, every state, ${label} runs`,
    baseline: true,
  }, () => expect(naiveNewest.all().length, PAGE));
  Deno.bench(`RunStore.page({ limit: ${PAGE} }) (${label} runs)`, {
    group: `page, every state, ${label} runs`,
  }, async () => expect((await store.page({ limit: PAGE })).items.length, PAGE));

  Deno.bench(`naive scan + sort, newest ${PAGE} failed (${label} runs)`, {
    group: `page, one state, ${label} runs`,
    baseline: true,
  }, () => expect(naiveByState.all("failed").length, Math.min(PAGE, failed)));
  Deno.bench(
    `RunStore.page({ states: ["failed"], limit: ${PAGE} }) (${label} runs)`,
    {
      group: `page, one state, ${label} runs`,
    },
    async () =>
      expect(
        (await store.page({ states: ["failed"], limit: PAGE })).items.length,
        Math.min(PAGE, failed),
      ),
  );

  Deno.bench(`naive scan + sort, oldest ${READY} ready (${label} runs)`, {
    group: `ready runs, ${label} runs`,
    baseline: true,
  }, () => expect(naiveReady.all(Date.now()).length, READY));
  Deno.bench(`RunStore.listReady(${READY}) (${label} runs)`, {
    group: `ready runs, ${label} runs`,
  }, async () => expect((await store.listReady(READY)).length, READY));
}

globalThis.addEventListener("unload", () => {
  // Closing is best effort here: the process ends, and the files are removed.
  for (const { close } of histories) void close();
  void db.close();
  Deno.removeSync(dir, { recursive: true });
});
