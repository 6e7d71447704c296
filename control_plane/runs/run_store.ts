/**
 * {@link RunStore}: runs over the store port with optimistic concurrency,
 * idempotency keys and fenced leases; every change is audited in the same
 * transaction. It calls the run repository in transactions; the rules it
 * applies are pure and live apart: `transition` (state_machine.ts),
 * `decideClaim`/`holdsLease` (_lease.ts), `decideIdempotency`
 * (_idempotency.ts), the page cursor (_cursor.ts) and the event checks
 * (_event.ts). The SQL is the adapters'.
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
import type { Store, StoreTx } from "../store/port.ts";
import { parseTraceparent } from "../trace/traceparent.ts";
import { TraceState } from "../trace/tracestate.ts";
import { decodeCursor, encodeCursor } from "./_cursor.ts";
import { checkEvent, reasonOf, traceIdOf } from "./_event.ts";
import { decideIdempotency, requestDigest } from "./_idempotency.ts";
import { checkHold, decideClaim, holdsLease, namesLease, nextLeaseToken } from "./_lease.ts";
import { parseTask, type TaskInput } from "./task.ts";
import {
  isTerminal,
  type LeaseHold,
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
  /**
   * Fail with `ERR_RUN_LEASE_LOST` (writing nothing) unless this lease (owner
   * and token, as the claim returned them) is the run's live lease.
   *
   * @default {undefined} (no lease check)
   */
  lease?: LeaseHold;
  /** Extra structured details for the audit record. */
  data?: { readonly [key: string]: JsonValue };
  /**
   * Write in this transaction (it commits or rolls back with the caller's
   * changes); without it, the call opens its own.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
}

/** Options of a read: the transaction to read in. */
export interface RunReadOptions {
  /**
   * Read in this transaction (it sees its own writes); without it, a read
   * transaction of its own.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
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
  /**
   * Read in this transaction.
   *
   * @default {undefined}
   */
  tx?: StoreTx;
}

/** One page of runs from {@link RunStore.page}, newest first. */
export interface RunPage {
  /** The runs, newest first (by `createdAt`, then id). */
  items: Run[];
  /** Pass it as `cursor` for the next (older) page; `null` on the last page. */
  nextCursor: string | null;
}

/**
 * Runs over the store port. Every write runs in one transaction (its own, or
 * the caller's `tx`), together with its audit record: state and audit never
 * disagree. Versions give optimistic concurrency; leases give one worker at a
 * time, fenced by a token: a write under a lease names it (`LeaseHold`), and
 * a worker whose lease was taken over changes nothing. {@link RunStore.reclaimExpired}
 * hands a crashed worker's runs back.
 *
 * @example Create, claim, run and finish a run
 * ```ts
 * import { AuditLog, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const clock = new FakeClock(1_000);
 * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
 * const actor = { subject: "alice", kind: "human" } as const;
 * const { run } = await runs.create({
 *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null, risk: "low", attributes: {} },
 *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
 *   idempotencyKey: "k-1",
 *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
 * }, { actor });
 * const { lease } = await runs.claim(run.id, "worker-1", 30_000, { actor });
 * const hold = { owner: lease!.owner, token: lease!.token };
 * await runs.apply(run.id, { type: "start", agentId: "reader" }, { actor, lease: hold });
 * const done = await runs.apply(run.id, { type: "succeed", result: "ok" }, { actor, lease: hold });
 * assert.equal(done.state, "succeeded");
 * assert.equal(done.lease, null);
 * ```
 */
export class RunStore {
  #store: Store;
  #audit: AuditSink;
  #clock: Clock;
  #generateId: () => string;

  /**
   * Creates a run store on an open store.
   *
   * @param store The store, from `openStore`.
   * @param options The audit sink, clock and id generator.
   */
  constructor(store: Store, options: RunStoreOptions) {
    const { audit, clock = systemClock, generateId = () => crypto.randomUUID() } = options;
    this.#store = store;
    this.#audit = audit;
    this.#clock = clock;
    this.#generateId = generateId;
  }

  /**
   * Creates a `queued` run, or returns the run already created with the same
   * idempotency key (`created: false`). Two creates racing with one key give
   * one run: the insert of the second writes nothing and reads the first's.
   *
   * @param input The task, requester, key and trace.
   * @param options The audit actor and the transaction to join.
   * @returns The run and whether this call created it.
   * @throws {PlmError} `ERR_RUN_IDEMPOTENCY_CONFLICT` when the key was used for another request;
   * `ERR_INVALID_ARGUMENT` naming the field when the task (see `TaskInputSchema`), the
   * idempotency key (at most 256 characters, no U+0000 or lone surrogate), the traceparent
   * or the tracestate is invalid (nothing is written);
   * `ERR_IDENTITY_REQUIRED` without a requester.
   *
   * @example The same key returns the same run
   * ```ts
   * import { AuditLog, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const runs = new RunStore(store, { audit: new AuditLog(store) });
   * const input = {
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: { rev: "B" },
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   idempotencyKey: "order-17",
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * } as const;
   * const first = await runs.create(input);
   * const again = await runs.create(input);
   * assert.deepEqual([first.created, again.created], [true, false]);
   * assert.equal(again.run.id, first.run.id);
   * assert.equal(first.run.state, "queued");
   * await assert.rejects(
   *   runs.create({ ...input, task: { ...input.task, input: { rev: "C" } } }),
   *   { code: "ERR_RUN_IDEMPOTENCY_CONFLICT" },
   * );
   * ```
   */
  async create(
    input: CreateRunInput,
    options: RunCallOptions = {},
  ): Promise<{ run: Run; created: boolean }> {
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
    return await this.#within(options.tx, async (tx) => {
      /** The run stored under the key, or `undefined` when there is none yet. */
      const reuse = async (key: string): Promise<Run | undefined> => {
        const existing = await tx.runs.byIdempotencyKey(key);
        const decision = decideIdempotency(key, digest, existing?.requestDigest);
        if (decision.refused !== undefined) throw decision.refused;
        return decision.reuse ? existing?.run : undefined;
      };
      if (idempotencyKey !== undefined) {
        const existing = await reuse(idempotencyKey);
        if (existing !== undefined) return { run: existing, created: false };
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
      if (!await tx.runs.insert({ run, requestDigest: digest })) {
        // The key was taken since it was read (a concurrent create committed first).
        const existing = idempotencyKey === undefined ? undefined : await reuse(idempotencyKey);
        if (existing !== undefined) return { run: existing, created: false };
        throw new PlmError("ERR_INTERNAL", `Cannot insert run ${run.id}`);
      }
      tx.wake("runs");
      await this.#audit.append({
        actor,
        action: "run.created",
        resource: `run:${run.id}`,
        outcome: "queued",
        runId: run.id,
        traceId: traceIdOf(run),
        data: { action: run.task.action, resource: run.task.resource, ...(options.data ?? {}) },
      }, { tx });
      return { run, created: true };
    });
  }

  /**
   * The run with this id, or `undefined`.
   *
   * @param id The run id.
   * @param options The transaction to read in.
   * @returns The run, if it exists.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id` when it is not a text.
   *
   * @example Look a run up without throwing
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * assert.equal((await runs.find(run.id))?.state, "queued");
   * assert.equal(await runs.find("no-such-run"), undefined);
   * ```
   */
  async find(id: string, options: RunReadOptions = {}): Promise<Run | undefined> {
    checkText("id", id);
    return await this.#reading(options.tx, (tx) => tx.runs.byId(id));
  }

  /**
   * The run with this id.
   *
   * @param id The run id.
   * @param options The transaction to read in.
   * @returns The run.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id`; `ERR_RUN_NOT_FOUND`.
   *
   * @example Read a run, or fail with a code
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * assert.deepEqual(await runs.get(run.id), run);
   * await assert.rejects(runs.get("no-such-run"), { code: "ERR_RUN_NOT_FOUND" });
   * ```
   */
  async get(id: string, options: RunReadOptions = {}): Promise<Run> {
    const run = await this.find(id, options);
    if (run === undefined) throw notFound(id);
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
   * @param options States, limit (1..1,000, default 100), cursor and transaction.
   * @returns The runs and the next cursor (`null` on the last page).
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `states`, `limit` or
   * `cursor` when one is not valid (a cursor this method did not make).
   *
   * @example Page through the queued runs, newest first
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * let n = 0;
   * const runs = new RunStore(store, { audit: new AuditLog(store), clock, generateId: () => `r${++n}` });
   * for (let i = 0; i < 3; i++) {
   *   await runs.create({
   *     task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *       risk: "low", attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   });
   *   clock.advance(1);
   * }
   * const first = await runs.page({ states: ["queued"], limit: 2 });
   * assert.deepEqual(first.items.map((run) => run.id), ["r3", "r2"]);
   * const next = await runs.page({ states: ["queued"], limit: 2, cursor: first.nextCursor! });
   * assert.deepEqual([next.items.map((run) => run.id), next.nextCursor], [["r1"], null]);
   * await assert.rejects(runs.page({ cursor: "not-a-cursor" }), { code: "ERR_INVALID_ARGUMENT" });
   * ```
   */
  async page(options: RunPageOptions = {}): Promise<RunPage> {
    const { states, limit = 100, cursor } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const after = cursor === undefined ? undefined : decodeCursor(cursor);
    const checked = states === undefined ? undefined : checkStates(states);
    if (checked !== undefined && checked.length === 0) return { items: [], nextCursor: null };
    // One row more than asked tells whether an older page exists.
    const rows = await this.#reading(options.tx, (tx) => tx.runs.page(checked, after, limit + 1));
    const items = rows.slice(0, limit);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last) : null,
    };
  }

  /**
   * The runs a worker can take now, oldest first (FIFO by `createdAt`, then
   * id): `queued`, `retrying` or `escalated`, with no lease or an expired one.
   * Its cost is bounded by `limit` plus the ready runs under a live lease, not
   * by the backlog. A worker takes runs with {@link RunStore.claimReady} (one
   * statement); this only looks.
   *
   * @param limit How many at most: an integer 1..1,000.
   * @param now The time leases are compared with. Defaults to the clock.
   * @param options The transaction to read in.
   * @returns The ready runs, oldest first.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `limit` or `now` when it is not valid.
   *
   * @example The oldest ready run, skipping one under a live lease
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * let n = 0;
   * const runs = new RunStore(store, { audit: new AuditLog(store), clock, generateId: () => `r${++n}` });
   * const actor = { subject: "worker-1", kind: "service" } as const;
   * for (let i = 0; i < 3; i++) {
   *   await runs.create({
   *     task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *       risk: "low", attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   });
   *   clock.advance(1);
   * }
   * await runs.claim("r1", "worker-1", 30_000, { actor }); // r1 is taken
   * assert.deepEqual((await runs.listReady(1)).map((run) => run.id), ["r2"]);
   * clock.advance(30_000); // r1's lease expired: it is ready again, and the oldest
   * assert.deepEqual((await runs.listReady(16)).map((run) => run.id), ["r1", "r2", "r3"]);
   * ```
   */
  async listReady(limit: number, now?: number, options: RunReadOptions = {}): Promise<Run[]> {
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const at = now === undefined ? this.#clock.now() : checkInteger("now", now);
    return await this.#reading(options.tx, (tx) => tx.runs.ready(at, limit));
  }

  /**
   * Applies an event through {@link transition}, persists the next run and
   * appends its audit record, in one transaction. A terminal state releases
   * the lease. With `options.lease`, the write is fenced: it happens only if
   * that lease is still the run's live lease, else nothing is written.
   *
   * @param id The run id.
   * @param event What happened (the store stamps the time).
   * @param options Actor, expected version, lease held, audit details, transaction.
   * @returns The run after the event.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `id`, `event.result` (not JSON as it is),
   * `event.error` or `lease`, before anything is read; `ERR_RUN_NOT_FOUND`,
   * `ERR_RUN_ILLEGAL_TRANSITION`, `ERR_RUN_VERSION_CONFLICT`, `ERR_RUN_LEASE_LOST`.
   *
   * @example Start a claimed run, and refuse a stale version
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const { lease } = await runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * const running = await runs.apply(run.id, { type: "start", agentId: "reader" }, {
   *   actor: worker,
   *   lease: { owner: "worker-1", token: lease!.token },
   * });
   * assert.equal(running.state, "running");
   * assert.equal(running.attempt, 1);
   * await assert.rejects(
   *   runs.apply(run.id, { type: "cancel", reason: "Stop" }, { actor: worker, expectedVersion: run.version }),
   *   { code: "ERR_RUN_VERSION_CONFLICT" },
   * );
   * ```
   */
  async apply(id: string, event: RunEventInput, options: RunCallOptions = {}): Promise<Run> {
    checkText("id", id);
    checkEvent(event);
    const hold = options.lease === undefined ? undefined : checkHold("lease", options.lease);
    const actor = resolveActor(options.actor);
    return await this.#within(options.tx, async (tx) => {
      const run = await this.#lock(tx, id);
      this.#checkVersion(run, options.expectedVersion);
      if (hold !== undefined) this.#checkLease(run, hold, this.#clock.now());
      return await this.#transition(tx, run, event, actor, options.data, hold);
    });
  }

  /**
   * Takes the lease on a run for `ttlMs`, with a new fencing token. Only one
   * owner holds a live lease; an expired lease can be taken over (a `running`
   * run then becomes `retrying` first, as {@link RunStore.reclaimExpired} does).
   *
   * @param id The run id.
   * @param owner The worker taking the lease.
   * @param ttlMs How long the lease lives without a heartbeat.
   * @param options The audit actor, expected version, transaction.
   * @returns The run with its lease (name it as `{ owner, token }` in later writes).
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `owner` or `ttlMs` (an integer >= 1);
   * `ERR_RUN_LEASE_HELD` when another owner's lease is live,
   * `ERR_RUN_ILLEGAL_TRANSITION` when the run is finished.
   *
   * @example One worker at a time, until the lease expires
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const claimed = await runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * assert.deepEqual(claimed.lease, { owner: "worker-1", token: 2, expiresAt: 31_000 });
   * const other = { subject: "worker-2", kind: "service" } as const;
   * await assert.rejects(runs.claim(run.id, "worker-2", 30_000, { actor: other }), {
   *   code: "ERR_RUN_LEASE_HELD",
   * });
   * clock.advance(30_000);
   * const taken = await runs.claim(run.id, "worker-2", 30_000, { actor: other });
   * assert.equal(taken.lease?.owner, "worker-2");
   * assert.ok(taken.lease!.token > claimed.lease!.token);
   * ```
   */
  async claim(
    id: string,
    owner: string,
    ttlMs: number,
    options: RunCallOptions = {},
  ): Promise<Run> {
    checkText("id", id);
    checkText("owner", owner);
    checkInteger("ttlMs", ttlMs, 1);
    const actor = resolveActor(options.actor);
    return await this.#within(options.tx, async (tx) => {
      // The row stays locked to the end of the transaction: no other claim, heartbeat or
      // reclaim can interleave between this read and the write below.
      const run = await this.#lock(tx, id);
      const now = this.#clock.now();
      this.#checkVersion(run, options.expectedVersion);
      const decision = decideClaim(run, owner, now);
      if (decision.refused !== undefined) throw decision.refused;
      // Taking over another worker's expired lease is a reclaim: a running run becomes retrying.
      const from = decision.takeover ? await this.#reclaim(tx, run, actor) : run;
      const lease = { owner, token: nextLeaseToken(from), expiresAt: now + ttlMs };
      const stored = await this.#writeLease(tx, from, lease);
      await this.#audit.append({
        actor,
        action: "run.lease.claimed",
        resource: `run:${id}`,
        outcome: "claimed",
        runId: id,
        traceId: traceIdOf(run),
        data: {
          owner,
          token: lease.token,
          expiresAt: lease.expiresAt,
          previousOwner: run.lease?.owner ?? null,
        },
      }, { tx });
      return stored;
    });
  }

  /**
   * Takes up to `limit` of the oldest ready runs (`queued`, `retrying`,
   * `escalated`, with no lease or an expired one) in one statement, skipping
   * runs other transactions hold (PostgreSQL `FOR UPDATE SKIP LOCKED`), each
   * with a new fencing token; one `run.lease.claimed` audit record per run.
   * A `running` run whose lease expired is not taken here: the reaper
   * ({@link RunStore.reclaimExpired}) first makes it `retrying`.
   *
   * @param owner The worker taking the leases.
   * @param ttlMs How long the leases live without a heartbeat.
   * @param limit How many at most (the worker's free slots): an integer 1..1,000.
   * @param options The audit actor (default: the owner, as a service) and transaction.
   * @returns The runs claimed, oldest first, with their leases.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `owner`, `ttlMs` or `limit`.
   *
   * @example Two free slots take the two oldest runs
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * let n = 0;
   * const audit = new AuditLog(store, { clock });
   * const runs = new RunStore(store, { audit, clock, generateId: () => `r${++n}` });
   * for (let i = 0; i < 3; i++) {
   *   await runs.create({
   *     task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *       risk: "low", attributes: {} },
   *     requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   });
   *   clock.advance(1);
   * }
   * const taken = await runs.claimReady("worker-1", 30_000, 2);
   * assert.deepEqual(taken.map((run) => [run.id, run.lease?.owner]), [["r1", "worker-1"], ["r2", "worker-1"]]);
   * assert.equal((await audit.list({ actionPrefix: "run.lease.claimed" })).length, 2);
   * ```
   */
  async claimReady(
    owner: string,
    ttlMs: number,
    limit: number,
    options: RunCallOptions = {},
  ): Promise<Run[]> {
    checkText("owner", owner);
    checkInteger("ttlMs", ttlMs, 1);
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const actor = options.actor ?? { subject: owner, kind: "service" };
    return await this.#within(options.tx, async (tx) => {
      const now = this.#clock.now();
      const claimed = await tx.runs.claimReady({ owner, now, expiresAt: now + ttlMs, limit });
      for (const { run, previousOwner } of claimed) {
        await this.#audit.append({
          actor,
          action: "run.lease.claimed",
          resource: `run:${run.id}`,
          outcome: "claimed",
          runId: run.id,
          traceId: traceIdOf(run),
          data: {
            owner,
            token: run.lease?.token ?? null,
            expiresAt: now + ttlMs,
            previousOwner,
            ...(options.data ?? {}),
          },
        }, { tx });
      }
      return claimed.map(({ run }) => run);
    });
  }

  /**
   * Extends a lease the holder still holds (owner and token, live). Not
   * audited (it is frequent and changes no state).
   *
   * @param id The run id.
   * @param hold The lease held, as the claim returned it.
   * @param ttlMs The new time to live from now.
   * @param options The transaction to join.
   * @returns The run with its extended lease.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `hold` or `ttlMs` (an integer >= 1);
   * `ERR_RUN_LEASE_LOST` when the hold is no longer the live lease (nothing is written).
   *
   * @example Keep a lease alive while the agent works
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const { lease } = await runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * const hold = { owner: "worker-1", token: lease!.token };
   * clock.advance(10_000);
   * assert.equal((await runs.heartbeat(run.id, hold, 30_000)).lease?.expiresAt, 41_000);
   * clock.advance(30_000); // no heartbeat in time: the lease is gone
   * await assert.rejects(runs.heartbeat(run.id, hold, 30_000), { code: "ERR_RUN_LEASE_LOST" });
   * ```
   */
  async heartbeat(
    id: string,
    hold: LeaseHold,
    ttlMs: number,
    options: Pick<RunCallOptions, "tx"> = {},
  ): Promise<Run> {
    checkText("id", id);
    const held = checkHold("hold", hold);
    checkInteger("ttlMs", ttlMs, 1);
    return await this.#within(options.tx, async (tx) => {
      const run = await this.#lock(tx, id);
      const now = this.#clock.now();
      this.#checkLease(run, held, now);
      return await this.#writeLease(tx, run, { ...held, expiresAt: now + ttlMs }, held);
    });
  }

  /**
   * Gives back a lease without changing the run's state; audited. The hold
   * must name the run's lease (owner and token; an expired one of one's own
   * may be given back too).
   *
   * @param id The run id.
   * @param hold The lease held, as the claim returned it.
   * @param options The audit actor (default: the owner, as a service) and transaction.
   * @returns The run without its lease.
   * @throws {PlmError} `ERR_RUN_LEASE_LOST` when the run's lease is another (nothing is
   * written); `ERR_RUN_NOT_FOUND`; `ERR_INVALID_ARGUMENT` naming `hold`.
   *
   * @example Give a run back so another worker can take it at once
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store, { clock }), clock });
   * const worker = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const { lease } = await runs.claim(run.id, "worker-1", 30_000, { actor: worker });
   * const hold = { owner: "worker-1", token: lease!.token };
   * const back = await runs.release(run.id, hold);
   * assert.deepEqual([back.state, back.lease], ["queued", null]);
   * const other = { subject: "worker-2", kind: "service" } as const;
   * assert.equal((await runs.claim(run.id, "worker-2", 30_000, { actor: other })).lease?.owner, "worker-2");
   * await assert.rejects(runs.release(run.id, hold), { code: "ERR_RUN_LEASE_LOST" });
   * ```
   */
  async release(id: string, hold: LeaseHold, options: RunCallOptions = {}): Promise<Run> {
    checkText("id", id);
    const held = checkHold("hold", hold);
    const actor = options.actor ?? { subject: held.owner, kind: "service" };
    return await this.#within(options.tx, async (tx) => {
      const run = await this.#lock(tx, id);
      if (!namesLease(run, held)) {
        throw new PlmError(
          "ERR_RUN_LEASE_LOST",
          `Cannot release run ${id} as ${held.owner} holds no lease with token ${held.token}`,
        );
      }
      const stored = await this.#writeLease(tx, run, null, held);
      await this.#audit.append({
        actor,
        action: "run.lease.released",
        resource: `run:${id}`,
        outcome: stored.state,
        runId: id,
        traceId: traceIdOf(run),
        data: { owner: held.owner, token: held.token },
      }, { tx });
      return stored;
    });
  }

  /**
   * Takes back every lease that expired by `now`: a `running` run becomes
   * `retrying` (its worker is presumed dead; the next attempt is
   * at-least-once), any other run just loses the lease. Each is audited. The
   * expired runs are read locked (rows other transactions hold are skipped),
   * so two reapers never reclaim one run twice; the dead worker's token no
   * longer matches after the write, so nothing it still sends is written.
   *
   * @param now The time to compare leases with. Defaults to the clock.
   * @param options The audit actor, how many at most (`limit`, 1..1,000, default 1,000), transaction.
   * @returns The runs reclaimed, after the change.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `limit` when it is not valid.
   *
   * @example Hand a dead worker's run back
   * ```ts
   * import { AuditLog, FakeClock, openStore, RunStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(1_000);
   * const runs = new RunStore(store, { audit: new AuditLog(store), clock });
   * const actor = { subject: "worker-1", kind: "service" } as const;
   * const { run } = await runs.create({
   *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null,
   *     risk: "low", attributes: {} },
   *   requester: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const { lease } = await runs.claim(run.id, "worker-1", 30_000, { actor });
   * await runs.apply(run.id, { type: "start", agentId: "reader" }, {
   *   actor,
   *   lease: { owner: "worker-1", token: lease!.token },
   * });
   * clock.advance(30_000); // worker-1 died: no heartbeat
   * const [back] = await runs.reclaimExpired(undefined, { actor: { subject: "worker-2", kind: "service" } });
   * assert.deepEqual([back?.state, back?.lease], ["retrying", null]);
   * ```
   */
  async reclaimExpired(
    now?: number,
    options: RunCallOptions & { limit?: number } = {},
  ): Promise<Run[]> {
    const { limit = INPUT_LIMITS.listLimit } = options;
    checkInteger("limit", limit, 1, INPUT_LIMITS.listLimit);
    const actor = resolveActor(options.actor);
    const at = now ?? this.#clock.now();
    return await this.#within(options.tx, async (tx) => {
      const reclaimed: Run[] = [];
      for (const run of await tx.runs.expired(at, limit)) {
        reclaimed.push(await this.#reclaim(tx, run, actor));
      }
      return reclaimed;
    });
  }

  /** Runs `fn` in `tx`, or in a write transaction of its own. */
  #within<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.transaction(fn) : fn(tx);
  }

  /** Runs `fn` in `tx`, or in a read transaction of its own. */
  #reading<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.read(fn) : fn(tx);
  }

  /** The run, its row locked to the end of `tx` (read-modify-write). */
  async #lock(tx: StoreTx, id: string): Promise<Run> {
    const run = await tx.runs.byId(id, { lock: true });
    if (run === undefined) throw notFound(id);
    return run;
  }

  /**
   * Applies `event` to `run` (read locked in `tx`), writes it fenced by its
   * version (and by `hold`'s token), and audits it.
   */
  async #transition(
    tx: StoreTx,
    run: Run,
    event: RunEventInput,
    actor: AuditActor,
    data: RunCallOptions["data"],
    hold: LeaseHold | undefined,
  ): Promise<Run> {
    const now = this.#clock.now();
    const next = transition(run, { ...event, at: now } as RunEvent);
    const lease = isTerminal(next.state) || event.type === "lease_expired" ? null : next.lease;
    const stored: Run = { ...next, version: run.version + 1, lease };
    await this.#update(tx, run, stored, hold);
    const reason = reasonOf(event, stored);
    await this.#audit.append({
      actor,
      action: "run.transition",
      resource: `run:${run.id}`,
      outcome: stored.state,
      ...(reason === undefined ? {} : { reason }),
      runId: run.id,
      traceId: traceIdOf(stored),
      data: {
        from: run.state,
        to: stored.state,
        event: event.type,
        version: stored.version,
        attempt: stored.attempt,
        agentId: stored.agentId,
        ...(data ?? {}),
      },
    }, { tx });
    return stored;
  }

  /** Clears an expired lease (a running run becomes retrying) and audits the reclaim. */
  async #reclaim(tx: StoreTx, run: Run, actor: AuditActor): Promise<Run> {
    const previousOwner = run.lease?.owner ?? null;
    const next = run.state === "running"
      ? await this.#transition(
        tx,
        run,
        { type: "lease_expired" },
        actor,
        { previousOwner },
        undefined,
      )
      : await this.#writeLease(tx, run, null);
    await this.#audit.append({
      actor,
      action: "run.lease.reclaimed",
      resource: `run:${run.id}`,
      outcome: next.state,
      runId: run.id,
      traceId: traceIdOf(run),
      data: { previousOwner, expiredAt: run.lease?.expiresAt ?? null },
    }, { tx });
    return next;
  }

  /** Writes `lease` on `run` (state unchanged), fenced by version and `hold`. */
  async #writeLease(
    tx: StoreTx,
    run: Run,
    lease: Run["lease"],
    hold?: LeaseHold,
  ): Promise<Run> {
    const stored: Run = { ...run, lease, version: run.version + 1 };
    await this.#update(tx, run, stored, hold);
    return stored;
  }

  /**
   * Writes `stored` over `run` if the row is still at `run.version` (and holds
   * `hold`'s token). The row was read locked in `tx`, so 0 rows means the
   * lease moved under a writer that did not lock, or a version race.
   */
  async #update(tx: StoreTx, run: Run, stored: Run, hold: LeaseHold | undefined): Promise<void> {
    const changed = await tx.runs.update({
      run: stored,
      expectedVersion: run.version,
      ...(hold === undefined ? {} : { leaseToken: hold.token }),
    });
    if (changed) {
      if (readyToClaim(stored)) tx.wake("runs");
      return;
    }
    if (hold !== undefined) {
      const now = await tx.runs.byId(run.id);
      if (now !== undefined && now.lease?.token !== hold.token) throw lost(run.id, hold);
    }
    throw conflict(run.id, run.version);
  }

  #checkVersion(run: Run, expected: number | undefined): void {
    if (expected !== undefined && run.version !== expected) throw conflict(run.id, expected);
  }

  #checkLease(run: Run, hold: LeaseHold, now: number): void {
    if (!holdsLease(run, hold, now)) throw lost(run.id, hold);
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

function notFound(id: string): PlmError {
  return new PlmError("ERR_RUN_NOT_FOUND", `Cannot find run ${id}`);
}

function lost(id: string, hold: LeaseHold): PlmError {
  return new PlmError(
    "ERR_RUN_LEASE_LOST",
    `Cannot act on run ${id} as ${hold.owner} no longer holds its lease (token ${hold.token})`,
  );
}

/** Whether a worker could claim `run` now: a wake-up hint is worth sending. */
function readyToClaim(run: Run): boolean {
  return run.lease === null &&
    (run.state === "queued" || run.state === "retrying" || run.state === "escalated");
}
