/**
 * {@link RunStore}: runs on SQLite with optimistic concurrency, idempotency
 * keys and leases; every change is audited in the same transaction. It holds
 * the SQL and the transactions; the rules it applies are pure and live apart:
 * `transition` (state_machine.ts), `decideClaim` (_lease.ts),
 * `decideIdempotency` (_idempotency.ts), the page cursor (_cursor.ts), the
 * event checks (_event.ts) and the row mapping (_row.ts).
 *
 * @module
 */
import {
  checkInteger,
  checkText,
  type Clock,
  type Identity,
  INPUT_LIMITS,
  invalidArgument,
  type JsonValue,
  PlmError,
  systemClock,
} from "../../shared/mod.ts";
import type { AuditActor, AuditSink } from "../audit/types.ts";
import { actorOf, resolveActor } from "../audit/actor.ts";
import { requireIdentity } from "../identity/context.ts";
import type { Database, Statement } from "../store/database.ts";
import { parseTraceparent } from "../trace/traceparent.ts";
import { TraceState } from "../trace/tracestate.ts";
import { decodeCursor, encodeCursor } from "./_cursor.ts";
import { checkEvent, reasonOf, traceIdOf } from "./_event.ts";
import { decideIdempotency, requestDigest } from "./_idempotency.ts";
import { decideClaim, holdsLease } from "./_lease.ts";
import { COLUMNS, fromRow, type RunRow } from "./_row.ts";
import { parseTask, type TaskInput } from "./task.ts";
import {
  isTerminal,
  type Run,
  RUN_STATES,
  type RunEvent,
  type RunEventInput,
  type RunState,
  transition,
} from "./state_machine.ts";

/** The most characters of an idempotency key. */
const IDEMPOTENCY_KEY_LENGTH = 256;

/** The most characters of a `traceparent` or `tracestate` given to {@link RunStore.create}. */
const TRACE_HEADER_LENGTH = 512;

/** Options for {@link RunStore}. */
export interface RunStoreOptions {
  /** Where every creation, transition and lease change is recorded. */
  audit: AuditSink;
  /**
   * The clock that stamps events and leases.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Makes run ids.
   *
   * @default {() => crypto.randomUUID()}
   */
  generateId?: () => string;
}

/** What {@link RunStore.create} needs. */
export interface CreateRunInput {
  /** The task to run; checked and completed by `parseTask`. */
  task: TaskInput;
  /**
   * Who asks.
   *
   * @default {the identity bound to the async context}
   */
  requester?: Identity;
  /** The same key always gives the same run. */
  idempotencyKey?: string;
  /** The W3C `traceparent` the run carries. */
  traceparent: string;
  /**
   * The W3C `tracestate`.
   *
   * @default {""}
   */
  tracestate?: string;
}

/** Options of a single store call. */
export interface RunCallOptions {
  /**
   * Who does it, for the audit record; with none given and none bound, the call fails.
   *
   * @default {the identity bound to the async context}
   */
  actor?: AuditActor;
  /** Fail with `ERR_RUN_VERSION_CONFLICT` unless the run is still at this version. */
  expectedVersion?: number;
  /** Fail with `ERR_RUN_LEASE_LOST` unless this owner holds a live lease. */
  owner?: string;
  /** Extra structured details for the audit record. */
  data?: { readonly [key: string]: JsonValue };
}

/** Which page {@link RunStore.page} returns. */
export interface RunPageOptions {
  /**
   * Only runs in these states.
   *
   * @default {undefined} (every state)
   */
  states?: readonly RunState[];
  /**
   * At most this many runs: an integer 1..`INPUT_LIMITS.listLimit` (1,000).
   *
   * @default {100}
   */
  limit?: number;
  /**
   * The `nextCursor` of the page before; without it, the first (newest) page.
   *
   * @default {undefined}
   */
  cursor?: string;
}

/** One page of runs from {@link RunStore.page}, newest first. */
export interface RunPage {
  /** The runs, newest first (by `createdAt`, then id). */
  items: Run[];
  /** Pass it as `cursor` for the next (older) page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * Runs on SQLite. Every write runs in one `BEGIN IMMEDIATE` transaction (or a
 * savepoint of the caller's), together with its audit record: state and audit
 * never disagree. Versions give optimistic concurrency; leases give one worker
 * at a time, and {@link RunStore.reclaimExpired} hands a crashed worker's runs back.
 *
 * @example Create, claim, run and finish a run
 * ```ts
 * import { AuditLog, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const clock = new FakeClock(1_000);
 * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
 * const actor = { subject: "alice", kind: "human" } as const;
 * const { run } = runs.create({
 *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null, risk: "low", attributes: {} },
 *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
 *   idempotencyKey: "k-1",
 *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
 * }, { actor });
 * runs.claim(run.id, "worker-1", 30_000, { actor });
 * runs.apply(run.id, { type: "start", agentId: "reader" }, { actor, owner: "worker-1" });
 * const done = runs.apply(run.id, { type: "succeed", result: "ok" }, { actor, owner: "worker-1" });
 * assert.equal(done.state, "succeeded");
 * assert.equal(done.lease, null);
 * ```
 */
export class RunStore {
  #db: Database;
  #audit: AuditSink;
  #clock: Clock;
  #generateId: () => string;
  #insert: Statement;
  #byId: Statement<RunRow>;
  #byKey: Statement<RunRow>;
  #update: Statement;
  #setLease: Statement;
  #expired: Statement<{ id: string }>;
  #newest: Statement<RunRow>;
  #olderThan: Statement<RunRow>;
  #byStates = new Map<string, Statement<RunRow>>();
  #ready: Statement<RunRow>;

  /**
   * Creates a store on a migrated database.
   *
   * @param db A database from `openDatabase`.
   * @param options The audit sink, clock and id generator.
   */
  constructor(db: Database, options: RunStoreOptions) {
    const { audit, clock = systemClock, generateId = () => crypto.randomUUID() } = options;
    this.#db = db;
    this.#audit = audit;
    this.#clock = clock;
    this.#generateId = generateId;
    this.#insert = db.prepare(
      `INSERT INTO runs (${COLUMNS}) VALUES (${COLUMNS.replace(/\w+/g, "?")})`,
    );
    this.#byId = db.prepare<RunRow>(`SELECT ${COLUMNS} FROM runs WHERE id = ?`);
    this.#byKey = db.prepare<RunRow>(`SELECT ${COLUMNS} FROM runs WHERE idempotency_key = ?`);
    this.#update = db.prepare(
      `UPDATE runs SET state = ?, version = version + 1, attempt = ?, escalations = ?,
       cost_units = ?, agent_id = ?, approval_id = ?, result = ?, error = ?, lease_owner = ?,
       lease_expires_at = ?, updated_at = ? WHERE id = ? AND version = ?`,
    );
    this.#setLease = db.prepare(
      `UPDATE runs SET lease_owner = ?, lease_expires_at = ?, version = version + 1
       WHERE id = ? AND version = ?`,
    );
    this.#expired = db.prepare<{ id: string }>(
      `SELECT id FROM runs WHERE lease_owner IS NOT NULL AND lease_expires_at <= ?
       ORDER BY lease_expires_at LIMIT ?`,
    );
    this.#newest = db.prepare<RunRow>(
      `SELECT ${COLUMNS} FROM runs ORDER BY created_at DESC, id DESC LIMIT ?`,
    );
    this.#olderThan = db.prepare<RunRow>(
      `SELECT ${COLUMNS} FROM runs WHERE (created_at, id) < (?, ?)
       ORDER BY created_at DESC, id DESC LIMIT ?`,
    );
    // INDEXED BY: the planner would otherwise pick runs_state_created and sort the whole backlog.
    // The WHERE repeats the partial index's condition word for word, which lets SQLite use it.
    this.#ready = db.prepare<RunRow>(
      `SELECT ${COLUMNS} FROM runs INDEXED BY runs_ready
       WHERE state IN ('queued', 'retrying', 'escalated')
         AND (lease_owner IS NULL OR lease_expires_at <= ?)
       ORDER BY created_at, id LIMIT ?`,
    );
  }

  /**
   * Creates a `queued` run, or returns the run already created with the same
   * idempotency key (`created: false`).
   *
   * @param input The task, requester, key and trace.
   * @param options The audit actor.
   * @returns The run and whether this call created it.
   * @throws {PlmError} `ERR_RUN_IDEMPOTENCY_CONFLICT` when the key was used for another request;
   * `ERR_INVALID_ARGUMENT` naming the field when the task (see `TaskInputSchema`), the
   * idempotency key (at most 256 characters, no U+0000 or lone surrogate), the traceparent
   * or the tracestate is invalid (nothing is written);
   * `ERR_IDENTITY_REQUIRED` without a requester.
   *
   * @example The same key returns the same run
   * ```ts
   * import { AuditLog, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const runs = new RunStore(db, { audit: new AuditLog(db) });
   * const input = {
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: { rev: "B" },
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   idempotencyKey: "order-17",
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * } as const;
   * const first = runs.create(input);
   * const again = runs.create(input);
   * assert.deepEqual([first.created, again.created], [true, false]);
   * assert.equal(again.run.id, first.run.id);
   * assert.equal(first.run.state, "queued");
   * assert.throws(
   *   () => runs.create({ ...input, task: { ...input.task, input: { rev: "C" } } }),
   *   { code: "ERR_RUN_IDEMPOTENCY_CONFLICT" },
   * );
   * ```
   */
  create(input: CreateRunInput, options: RunCallOptions = {}): { run: Run; created: boolean } {
    const requester = requireIdentity(input.requester, {
      field: "requester",
      action: "create a run",
    });
    const actor = options.actor ?? actorOf(requester);
    const task = parseTask(input.task);
    const idempotencyKey = input.idempotencyKey === undefined
      ? undefined
      : checkText("idempotencyKey", input.idempotencyKey, IDEMPOTENCY_KEY_LENGTH);
    const traceparent = checkText("traceparent", input.traceparent, TRACE_HEADER_LENGTH);
    if (parseTraceparent(traceparent) === null) {
      throw invalidArgument(
        "traceparent",
        "expected a W3C traceparent (00-<trace id>-<span id>-<flags>)",
      );
    }
    const tracestate = input.tracestate === undefined
      ? ""
      : checkText("tracestate", input.tracestate, TRACE_HEADER_LENGTH);
    if (tracestate !== "" && TraceState.parse(tracestate) === null) {
      throw invalidArgument("tracestate", "expected a W3C tracestate (key=value,...)");
    }
    const digest = requestDigest(task, requester);
    return this.#db.transaction(() => {
      if (idempotencyKey !== undefined) {
        const existing = this.#byKey.get(idempotencyKey);
        const decision = decideIdempotency(idempotencyKey, digest, existing?.request_digest);
        if (decision.refused !== undefined) throw decision.refused;
        if (decision.reuse && existing !== undefined) {
          return { run: fromRow(existing), created: false };
        }
      }
      const now = this.#clock.now();
      const run: Run = {
        id: this.#generateId(),
        state: "queued",
        version: 1,
        task,
        requester: {
          subject: requester.subject,
          kind: requester.actorKind,
          ...(requester.tenant === undefined ? {} : { tenant: requester.tenant }),
        },
        idempotencyKey: idempotencyKey ?? null,
        traceparent,
        tracestate,
        attempt: 0,
        escalations: 0,
        costUnits: 0,
        agentId: null,
        approvalId: null,
        result: null,
        error: null,
        createdAt: now,
        updatedAt: now,
        lease: null,
      };
      this.#insert.run(
        run.id,
        run.state,
        run.version,
        JSON.stringify(run.task),
        JSON.stringify(run.requester),
        run.idempotencyKey,
        digest,
        run.traceparent,
        run.tracestate,
        0,
        0,
        0,
        null,
        null,
        "null",
        null,
        null,
        null,
        now,
        now,
      );
      this.#audit.append({
        actor,
        action: "run.created",
        resource: `run:${run.id}`,
        outcome: "queued",
        runId: run.id,
        traceId: traceIdOf(run),
        data: { action: run.task.action, resource: run.task.resource, ...(options.data ?? {}) },
      });
      return { run, created: true };
    });
  }

  /**
   * The run with this id, or `undefined`.
   *
   * @param id The run id.
   * @returns The run, if it exists.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id` when it is not a text.
   *
   * @example Look a run up without throwing
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * assert.equal(runs.find(run.id)?.state, "queued");
   * assert.equal(runs.find("no-such-run"), undefined);
   * ```
   */
  find(id: string): Run | undefined {
    checkText("id", id);
    const row = this.#byId.get(id);
    return row === undefined ? undefined : fromRow(row);
  }

  /**
   * The run with this id.
   *
   * @param id The run id.
   * @returns The run.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id`; `ERR_RUN_NOT_FOUND`.
   *
   * @example Read a run, or fail with a code
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * assert.deepEqual(runs.get(run.id), run);
   * assert.throws(() => runs.get("no-such-run"), { code: "ERR_RUN_NOT_FOUND" });
   * ```
   */
  get(id: string): Run {
    const run = this.find(id);
    if (run === undefined) throw new PlmError("ERR_RUN_NOT_FOUND", `Cannot find run ${id}`);
    return run;
  }

  /**
   * One page of runs, newest first (by `createdAt`, then id), and the cursor of
   * the next, older page. Keyset pagination: a page reads at most `limit` + 1
   * rows (per state asked for) from an index, however long the history and
   * however deep the page. Paging on while runs are created never returns a
   * run twice nor skips one that existed at the first page (new runs sort
   * before the cursor, unless the clock went back). The cursor is opaque: pass
   * back the `nextCursor` you got. It is meant to back an HTTP list endpoint
   * (query parameters `state`, `limit` and `cursor`, a body `{ items, nextCursor }`);
   * this package serves none itself.
   *
   * @param options States, limit (1..1,000, default 100) and cursor.
   * @returns The runs and the next cursor (`null` on the last page).
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `states`, `limit` or
   * `cursor` when one is not valid (a cursor this method did not make).
   *
   * @example Page through the queued runs, newest first
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * let n = 0;
   * const runs = new RunStore(db, { audit: new AuditLog(db), clock, generateId: () => `r${++n}` });
   * for (let i = 0; i < 3; i++) {
   *   runs.create({
   *     task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *       risk: "low", attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   });
   *   clock.advance(1);
   * }
   * const first = runs.page({ states: ["queued"], limit: 2 });
   * assert.deepEqual(first.items.map((run) => run.id), ["r3", "r2"]);
   * const next = runs.page({ states: ["queued"], limit: 2, cursor: first.nextCursor! });
   * assert.deepEqual([next.items.map((run) => run.id), next.nextCursor], [["r1"], null]);
   * assert.throws(() => runs.page({ cursor: "not-a-cursor" }), { code: "ERR_INVALID_ARGUMENT" });
   * ```
   */
  page(options: RunPageOptions = {}): RunPage {
    const { states, limit = 100, cursor } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const keyset = after === undefined ? [] : [after.createdAt, after.id];
    // One row more than asked tells whether an older page exists.
    const rows = states === undefined
      ? (after === undefined ? this.#newest : this.#olderThan).all(...keyset, limit + 1)
      : this.#pageByStates(checkStates(states), keyset, limit + 1);
    const items = rows.slice(0, limit).map(fromRow);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last) : null,
    };
  }

  /**
   * The newest `take` runs in any of `states`, older than the keyset. Each state
   * is read from `runs_state_created` in index order (at most `take` rows each);
   * for several states SQLite then merges those rows: the cost is bounded by
   * states × take, not by history.
   */
  #pageByStates(states: RunState[], keyset: (string | number)[], take: number): RunRow[] {
    if (states.length === 0) return [];
    const key = `${states.length}:${keyset.length > 0}`;
    let stmt = this.#byStates.get(key);
    if (stmt === undefined) {
      const one = `SELECT ${COLUMNS} FROM runs WHERE state = ?${
        keyset.length > 0 ? " AND (created_at, id) < (?, ?)" : ""
      } ORDER BY created_at DESC, id DESC LIMIT ?`;
      stmt = this.#db.prepare<RunRow>(
        states.length === 1
          ? one
          : `${
            states.map(() => `SELECT * FROM (${one})`).join(" UNION ALL ")
          } ORDER BY created_at DESC, id DESC LIMIT ?`,
      );
      this.#byStates.set(key, stmt);
    }
    const params = states.flatMap((state) => [state, ...keyset, take]);
    return states.length === 1 ? stmt.all(...params) : stmt.all(...params, take);
  }

  /**
   * The runs a worker can take now, oldest first (FIFO by `createdAt`, then
   * id): `queued`, `retrying` or `escalated`, with no lease or an expired one.
   * It reads the partial index `runs_ready` in order and stops after `limit`
   * rows, so its cost is bounded by `limit` plus the ready runs under a live
   * lease (at most what the workers hold), not by the backlog. Ask for what the
   * worker can take (its free slots), then `claim` each: a run another worker
   * claimed in between fails the claim with `ERR_RUN_LEASE_HELD`.
   *
   * @param limit How many at most: an integer 1..1,000.
   * @param now The time leases are compared with. Defaults to the clock.
   * @returns The ready runs, oldest first.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `limit` or `now` when it is not valid.
   *
   * @example Take the oldest ready run, skipping one under a live lease
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * let n = 0;
   * const runs = new RunStore(db, { audit: new AuditLog(db), clock, generateId: () => `r${++n}` });
   * const actor = { subject: "worker-1", kind: "service" } as const;
   * for (let i = 0; i < 3; i++) {
   *   runs.create({
   *     task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *       risk: "low", attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   });
   *   clock.advance(1);
   * }
   * runs.claim("r1", "worker-1", 30_000, { actor }); // r1 is taken
   * assert.deepEqual(runs.listReady(1).map((run) => run.id), ["r2"]);
   * clock.advance(30_000); // r1's lease expired: it is ready again, and the oldest
   * assert.deepEqual(runs.listReady(16).map((run) => run.id), ["r1", "r2", "r3"]);
   * ```
   */
  listReady(limit: number, now?: number): Run[] {
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const at = now === undefined ? this.#clock.now() : checkInteger("now", now);
    return this.#ready.all(at, limit).map(fromRow);
  }

  /**
   * Applies an event through {@link transition}, persists the next run and
   * appends its audit record, in one transaction. A terminal state releases
   * the lease.
   *
   * @param id The run id.
   * @param event What happened (the store stamps the time).
   * @param options Actor, expected version, lease owner, audit details.
   * @returns The run after the event.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id`, `event.result` (not JSON as it is)
   * or `event.error`, before anything is read; `ERR_RUN_NOT_FOUND`, `ERR_RUN_ILLEGAL_TRANSITION`,
   * `ERR_RUN_VERSION_CONFLICT`, `ERR_RUN_LEASE_LOST`.
   *
   * @example Start a claimed run, and refuse a stale version
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * const running = runs.apply(run.id, { type: "start", agentId: "reader" }, {
   *   actor: worker,
   *   owner: "worker-1",
   * });
   * assert.equal(running.state, "running");
   * assert.equal(running.attempt, 1);
   * assert.throws(
   *   () => runs.apply(run.id, { type: "cancel", reason: "Stop" }, { actor: worker, expectedVersion: run.version }),
   *   { code: "ERR_RUN_VERSION_CONFLICT" },
   * );
   * ```
   */
  apply(id: string, event: RunEventInput, options: RunCallOptions = {}): Run {
    const resultJson = checkEvent(event);
    const actor = resolveActor(options.actor);
    return this.#db.transaction(() => {
      const run = this.get(id);
      const now = this.#clock.now();
      this.#checkVersion(run, options.expectedVersion);
      if (options.owner !== undefined) this.#checkLease(run, options.owner, now);
      const next = transition(run, { ...event, at: now } as RunEvent);
      const lease = isTerminal(next.state) || event.type === "lease_expired" ? null : next.lease;
      const changed = this.#update.run(
        next.state,
        next.attempt,
        next.escalations,
        next.costUnits,
        next.agentId,
        next.approvalId,
        resultJson ?? JSON.stringify(next.result),
        next.error === null ? null : JSON.stringify(next.error),
        lease?.owner ?? null,
        lease?.expiresAt ?? null,
        now,
        id,
        run.version,
      );
      if (Number(changed.changes) !== 1) throw conflict(id, run.version);
      const stored: Run = { ...next, version: run.version + 1, lease };
      this.#audit.append({
        actor,
        action: "run.transition",
        resource: `run:${id}`,
        outcome: stored.state,
        ...(reasonOf(event, stored) === undefined ? {} : { reason: reasonOf(event, stored)! }),
        runId: id,
        traceId: traceIdOf(stored),
        data: {
          from: run.state,
          to: stored.state,
          event: event.type,
          version: stored.version,
          attempt: stored.attempt,
          agentId: stored.agentId,
          ...(options.data ?? {}),
        },
      });
      return stored;
    });
  }

  /**
   * Takes the lease on a run for `ttlMs`. Only one owner holds a live lease;
   * an expired lease can be taken over.
   *
   * @param id The run id.
   * @param owner The worker taking the lease.
   * @param ttlMs How long the lease lives without a heartbeat.
   * @param options The audit actor.
   * @returns The run with its lease.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `ttlMs` (an integer >= 1);
   * `ERR_RUN_LEASE_HELD` when another owner's lease is live,
   * `ERR_RUN_ILLEGAL_TRANSITION` when the run is finished.
   *
   * @example One worker at a time, until the lease expires
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const claimed = runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * assert.deepEqual(claimed.lease, { owner: "worker-1", expiresAt: 31_000 });
   * const other = { subject: "worker-2", kind: "service" } as const;
   * assert.throws(() => runs.claim(run.id, "worker-2", 30_000, { actor: other }), {
   *   code: "ERR_RUN_LEASE_HELD",
   * });
   * clock.advance(30_000);
   * assert.equal(runs.claim(run.id, "worker-2", 30_000, { actor: other }).lease?.owner, "worker-2");
   * ```
   */
  claim(id: string, owner: string, ttlMs: number, options: RunCallOptions = {}): Run {
    checkInteger("ttlMs", ttlMs, 1);
    const actor = resolveActor(options.actor);
    return this.#db.transaction(() => {
      const run = this.get(id);
      const now = this.#clock.now();
      this.#checkVersion(run, options.expectedVersion);
      const decision = decideClaim(run, owner, now);
      if (decision.refused !== undefined) throw decision.refused;
      // Taking over another worker's expired lease is a reclaim: a running run becomes retrying.
      const from = decision.takeover ? this.#reclaim(run, actor) : run;
      const stored = this.#writeLease(from, { owner, expiresAt: now + ttlMs });
      this.#audit.append({
        actor,
        action: "run.lease.claimed",
        resource: `run:${id}`,
        outcome: "claimed",
        runId: id,
        traceId: traceIdOf(run),
        data: { owner, expiresAt: now + ttlMs, previousOwner: run.lease?.owner ?? null },
      });
      return stored;
    });
  }

  /**
   * Extends a lease the owner still holds. Not audited (it is frequent and
   * changes no state).
   *
   * @param id The run id.
   * @param owner The lease holder.
   * @param ttlMs The new time to live from now.
   * @returns The run with its extended lease.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `ttlMs` (an integer >= 1);
   * `ERR_RUN_LEASE_LOST` when the owner no longer holds a live lease.
   *
   * @example Keep a lease alive while the agent works
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * clock.advance(10_000);
   * assert.equal(runs.heartbeat(run.id, "worker-1", 30_000).lease?.expiresAt, 41_000);
   * clock.advance(30_000); // no heartbeat in time: the lease is gone
   * assert.throws(() => runs.heartbeat(run.id, "worker-1", 30_000), { code: "ERR_RUN_LEASE_LOST" });
   * ```
   */
  heartbeat(id: string, owner: string, ttlMs: number): Run {
    checkInteger("ttlMs", ttlMs, 1);
    return this.#db.transaction(() => {
      const run = this.get(id);
      const now = this.#clock.now();
      this.#checkLease(run, owner, now);
      return this.#writeLease(run, { owner, expiresAt: now + ttlMs });
    });
  }

  /**
   * Gives back a lease without changing the run's state; audited.
   *
   * @param id The run id.
   * @param owner The lease holder.
   * @param options The audit actor (default: the owner, as a service).
   * @returns The run without its lease.
   * @throws {PlmError} `ERR_RUN_LEASE_LOST` when the owner does not hold the lease;
   * `ERR_RUN_NOT_FOUND`.
   *
   * @example Give a run back so another worker can take it at once
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * const back = runs.release(run.id, "worker-1");
   * assert.deepEqual([back.state, back.lease], ["queued", null]);
   * const other = { subject: "worker-2", kind: "service" } as const;
   * assert.equal(runs.claim(run.id, "worker-2", 30_000, { actor: other }).lease?.owner, "worker-2");
   * assert.throws(() => runs.release(run.id, "worker-1"), { code: "ERR_RUN_LEASE_LOST" });
   * ```
   */
  release(id: string, owner: string, options: RunCallOptions = {}): Run {
    const actor = options.actor ?? { subject: owner, kind: "service" };
    return this.#db.transaction(() => {
      const run = this.get(id);
      if (run.lease?.owner !== owner) {
        throw new PlmError(
          "ERR_RUN_LEASE_LOST",
          `Cannot release run ${id} as ${owner} holds no lease`,
        );
      }
      const stored = this.#writeLease(run, null);
      this.#audit.append({
        actor,
        action: "run.lease.released",
        resource: `run:${id}`,
        outcome: stored.state,
        runId: id,
        traceId: traceIdOf(run),
        data: { owner },
      });
      return stored;
    });
  }

  /**
   * Takes back every lease that expired by `now`: a `running` run becomes
   * `retrying` (its worker is presumed dead; the next attempt is
   * at-least-once), any other run just loses the lease. Each is audited.
   *
   * @param now The time to compare leases with. Defaults to the clock.
   * @param options The audit actor and how many at most (`limit`, 1..1,000, default 1,000).
   * @returns The runs reclaimed, after the change.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `limit` when it is not valid.
   *
   * @example Hand a dead worker's run back
   * ```ts
   * import { AuditLog, FakeClock, openDatabase, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(db, { audit: new AuditLog(db), clock });
   * const actor = { subject: "worker-1", kind: "service" } as const;
   * const { run } = runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * runs.claim(run.id, "worker-1", 30_000, { actor });
   * runs.apply(run.id, { type: "start", agentId: "reader" }, { actor, owner: "worker-1" });
   * clock.advance(30_000); // worker-1 died: no heartbeat
   * const [back] = runs.reclaimExpired(undefined, { actor: { subject: "worker-2", kind: "service" } });
   * assert.deepEqual([back?.state, back?.lease], ["retrying", null]);
   * ```
   */
  reclaimExpired(now?: number, options: RunCallOptions & { limit?: number } = {}): Run[] {
    const { limit = INPUT_LIMITS.listLimit } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const actor = resolveActor(options.actor);
    const at = now ?? this.#clock.now();
    return this.#db.transaction(() => {
      const reclaimed: Run[] = [];
      for (const { id } of this.#expired.all(at, limit)) {
        reclaimed.push(this.#reclaim(this.get(id), actor));
      }
      return reclaimed;
    });
  }

  /** Clears an expired lease (a running run becomes retrying) and audits the reclaim. */
  #reclaim(run: Run, actor: AuditActor): Run {
    const previousOwner = run.lease?.owner ?? null;
    const next = run.state === "running"
      ? this.apply(run.id, { type: "lease_expired" }, { actor, data: { previousOwner } })
      : this.#writeLease(run, null);
    this.#audit.append({
      actor,
      action: "run.lease.reclaimed",
      resource: `run:${run.id}`,
      outcome: next.state,
      runId: run.id,
      traceId: traceIdOf(run),
      data: { previousOwner, expiredAt: run.lease?.expiresAt ?? null },
    });
    return next;
  }

  #writeLease(run: Run, lease: Run["lease"]): Run {
    const changed = this.#setLease.run(
      lease?.owner ?? null,
      lease?.expiresAt ?? null,
      run.id,
      run.version,
    );
    if (Number(changed.changes) !== 1) throw conflict(run.id, run.version);
    return { ...run, lease, version: run.version + 1 };
  }

  #checkVersion(run: Run, expected: number | undefined): void {
    if (expected !== undefined && run.version !== expected) throw conflict(run.id, expected);
  }

  #checkLease(run: Run, owner: string, now: number): void {
    if (!holdsLease(run, owner, now)) {
      throw new PlmError(
        "ERR_RUN_LEASE_LOST",
        `Cannot act on run ${run.id} as ${owner} no longer holds its lease`,
      );
    }
  }
}

/** `states` as given, checked, without repeats. */
function checkStates(states: readonly RunState[]): RunState[] {
  if (!Array.isArray(states)) throw invalidArgument("states", "expected a list of run states");
  for (const [i, state] of states.entries()) {
    if (!RUN_STATES.includes(state)) {
      throw invalidArgument(`states.${i}`, `unknown run state ${JSON.stringify(state)}`);
    }
  }
  return [...new Set(states)];
}

function conflict(id: string, version: number): PlmError {
  return new PlmError(
    "ERR_RUN_VERSION_CONFLICT",
    `Cannot update run ${id} as it changed since version ${version}`,
  );
}
