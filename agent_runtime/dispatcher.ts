/**
 * {@link Dispatcher}: runs allowed runs on agents, under leases, limits,
 * deadlines, retries and escalation, recording every step through the
 * control plane.
 *
 * @module
 */
import {
  type AuditActor,
  type AutonomyOutcome,
  type CancelRunOptions,
  canonicalJson,
  childTraceContext,
  type Clock,
  type ControlPlane,
  type Identity,
  invalidArgument,
  isTerminal,
  type JsonValue,
  type LeaseHold,
  parseTraceparent,
  PlmError,
  type Random,
  type Run,
  type RunMode,
  sleep,
  type StoreTx,
  systemTimer,
  type Timer,
  type TraceContext,
  TraceState,
  unsafeTextReason,
} from "../control_plane/mod.ts";
import { Turns } from "./_turns.ts";
import { type Agent, AgentError, toAgentError } from "./agent.ts";
import { CircuitBreakers, type CircuitBreakersOptions } from "./circuit_breaker.ts";
import { EscalationLadder } from "./escalation.ts";
import { InFlightCounter } from "./limiter.ts";
import { checkOption } from "../shared/validate.ts";
import { nextDelay, RetryExhaustedError, RetryPolicy, type RetryPolicyOptions } from "./retry.ts";
import { NoAgentError, selectAgent } from "./selector.ts";

/** Options for {@link Dispatcher}. */
export interface DispatcherOptions {
  /** Where verdicts, runs, approvals and the audit live. */
  controlPlane: ControlPlane;
  /** The agents to choose from. */
  agents: readonly Agent[];
  /**
   * This worker's lease owner name (unique per process).
   *
   * @default {`dispatcher-<uuid>`}
   */
  owner?: string;
  /**
   * Runs executing at once, across all agents.
   *
   * @default {16}
   */
  concurrency?: number;
  /**
   * Runs waiting for a slot; beyond it `dispatch` throws `ERR_QUEUE_FULL`.
   *
   * @default {1024}
   */
  maxQueue?: number;
  /**
   * The retry policy within one escalation step.
   *
   * @default {new RetryPolicy()}
   */
  retry?: RetryPolicy | RetryPolicyOptions;
  /**
   * Where a task goes when retries are exhausted.
   *
   * @default {new EscalationLadder([])} (fail)
   */
  escalation?: EscalationLadder;
  /**
   * One attempt's time limit in milliseconds.
   *
   * @default {30_000}
   */
  attemptTimeoutMs?: number;
  /**
   * The overall deadline of a run, from its creation, in milliseconds.
   *
   * @default {300_000}
   */
  runTimeoutMs?: number;
  /**
   * How long a lease lives without a heartbeat; heartbeats come every third of it.
   *
   * @default {30_000}
   */
  leaseTtlMs?: number;
  /**
   * Circuit breaker settings, one breaker per agent.
   *
   * @default {{}}
   */
  breakers?: CircuitBreakersOptions;
  /**
   * The clock (deadlines, timeouts, breakers). Leases use the control plane's.
   *
   * @default {controlPlane.clock}
   */
  clock?: Clock;
  /**
   * Randomness for jitter, in [0, 1).
   *
   * @default {Math.random}
   */
  random?: Random;
  /**
   * The timer for timeouts, backoff and heartbeats.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
}

/** What every write of an attempt carries: the worker as audit actor, and its lease. */
interface Own {
  readonly actor: AuditActor;
  readonly lease: LeaseHold;
}

/** One run executing (or waiting for a slot) here. */
interface Execution {
  /** Dispatch order: slots and agents are handed out by it (FIFO). */
  readonly seq: number;
  readonly controller: AbortController;
  /** Aborted by {@link Dispatcher.releaseAll}: give the run back, do not cancel it. */
  released: boolean;
  /** Who cancelled it, for the `cancel` transition its loop records. */
  cancelledBy?: AuditActor;
}

/** A run waiting for one of `agentIds` (each capable, each full) to free a slot. */
interface AgentWaiter {
  readonly seq: number;
  readonly agentIds: ReadonlySet<string>;
  /** Resolves the wait with the agent whose slot is handed over, or none (choose again). */
  readonly wake: (agentId: string | undefined) => void;
}

/**
 * Attempts that may start between two turns of the event loop. Measured with
 * bench/burst.ts: 4 costs the same CPU time as 16 and halves the typical timer gap.
 */
const YIELD_EVERY = 4;
/** The longest agent error message recorded, in UTF-16 code units. */
const MAX_ERROR_MESSAGE = 2_048;
/** An error code an agent may set; anything else is recorded as `ERR_AGENT_FAILED`. */
const ERROR_CODE = /^ERR_[A-Z0-9_]{1,60}$/;
/** The codes by which a store call says another worker got to the run first. */
const LOST_RACE_CODES: readonly string[] = [
  "ERR_RUN_LEASE_HELD",
  "ERR_RUN_LEASE_LOST",
  "ERR_RUN_VERSION_CONFLICT",
  "ERR_RUN_ILLEGAL_TRANSITION",
];

/**
 * Runs allowed runs on agents. For each run it takes the lease (heartbeated
 * while the agent works), selects an agent, invokes it under the global and
 * per-agent concurrency limits with an attempt timeout, the run's deadline and
 * an `AbortSignal`, then retries, escalates or finishes, each step a
 * transition recorded through the control plane. Work is at-least-once: the
 * run's idempotency key (or id) goes to the agent so it can deduplicate.
 *
 * Runs are served first come, first served: global slots and agent slots go
 * to the run dispatched first. Losing a run to another worker (it claimed or
 * finished the run first, or took it over after this worker's lease expired)
 * is not an error: the dispatch settles with the run as it is.
 *
 * @example Dispatch a run to an in-process agent
 * ```ts
 * import { ControlPlane, Dispatcher, defineAgent, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const cp = new ControlPlane(store, { policies: { rules: [] } });
 * const echo = defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) });
 * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [echo] });
 * const { run } = await cp.runs.create({
 *   task: { action: "echo", resource: "x", capabilities: [], input: 42, risk: "low", attributes: {} },
 *   requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
 *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
 * });
 * const done = await dispatcher.dispatch(run.id);
 * assert.equal(done.state, "succeeded");
 * assert.equal(done.result, 42);
 * ```
 */
export class Dispatcher {
  /** This worker's lease owner name. */
  readonly owner: string;
  /** The per-agent circuit breakers. */
  readonly breakers: CircuitBreakers;
  #cp: ControlPlane;
  #agents: readonly Agent[];
  #agentsById: ReadonlyMap<string, Agent>;
  #retry: RetryPolicy;
  #ladder: EscalationLadder;
  #attemptTimeoutMs: number;
  #runTimeoutMs: number;
  #leaseTtlMs: number;
  #concurrency: number;
  #maxQueue: number;
  #clock: Clock;
  #random: Random;
  #timer: Timer;
  #actor: AuditActor;
  /** Calls each agent has in flight. */
  #agentLoad = new InFlightCounter();
  /** Agent slots handed to a woken waiter that has not taken them yet. */
  #handedOver = new InFlightCounter();
  #executions = new Map<string, { readonly execution: Execution; readonly done: Promise<Run> }>();
  #seq = 0;
  /** Runs holding a global slot. */
  #active = 0;
  /** Runs waiting for a global slot, in dispatch order. */
  #waiting: (() => void)[] = [];
  /** Runs waiting for an agent slot, in dispatch order (`seq`). */
  #agentWaiters: AgentWaiter[] = [];
  /** Attempts let the event loop turn every {@link YIELD_EVERY} (see `Turns`). */
  #turns = new Turns(YIELD_EVERY);

  /**
   * Creates a dispatcher; options are validated here, once.
   *
   * @param options The control plane, agents, limits, policies and injected time.
   * @throws {RangeError} When a limit is not a positive integer or two agents share an id.
   */
  constructor(options: DispatcherOptions) {
    const {
      controlPlane,
      agents,
      owner = `dispatcher-${crypto.randomUUID()}`,
      concurrency = 16,
      maxQueue = 1024,
      retry = new RetryPolicy(),
      escalation = new EscalationLadder([]),
      attemptTimeoutMs = 30_000,
      runTimeoutMs = 300_000,
      leaseTtlMs = 30_000,
      breakers = {},
      clock = controlPlane.clock,
      random = Math.random,
      timer = systemTimer,
    } = options;
    const byId = new Map(agents.map((a) => [a.id, a]));
    if (byId.size !== agents.length) {
      throw new RangeError("Cannot dispatch to agents sharing an id");
    }
    this.#cp = controlPlane;
    this.#agents = [...agents];
    this.#agentsById = byId;
    this.owner = owner;
    this.#concurrency = checkOption("concurrency", concurrency, 1);
    this.#maxQueue = checkOption("maxQueue", maxQueue, 0);
    this.#retry = retry instanceof RetryPolicy ? retry : new RetryPolicy(retry);
    this.#ladder = escalation;
    this.#attemptTimeoutMs = checkOption("attemptTimeoutMs", attemptTimeoutMs, 1);
    this.#runTimeoutMs = checkOption("runTimeoutMs", runTimeoutMs, 1);
    this.#leaseTtlMs = checkOption("leaseTtlMs", leaseTtlMs, 1);
    this.#clock = clock;
    this.#random = random;
    this.#timer = timer;
    this.breakers = new CircuitBreakers({ ...breakers, clock });
    this.#actor = { subject: owner, kind: "service" };
  }

  /**
   * Runs holding one of the `concurrency` slots now (executing, or waiting for an agent).
   *
   * @example One run in flight until its agent answers
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer, concurrency: 2 });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const done = dispatcher.dispatch(await submit());
   * await timers.advance(0); // the agent is working
   * assert.equal(dispatcher.inFlight, 1);
   * finish[0]?.();
   * assert.equal((await done).state, "succeeded");
   * assert.equal(dispatcher.inFlight, 0);
   * ```
   */
  get inFlight(): number {
    return this.#active;
  }

  /**
   * Runs waiting for a slot.
   *
   * @example The second run waits for the only slot
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer, concurrency: 1 });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const runs = [dispatcher.dispatch(await submit()), dispatcher.dispatch(await submit())];
   * await timers.advance(0);
   * assert.deepEqual([dispatcher.inFlight, dispatcher.queued], [1, 1]);
   * finish[0]?.();
   * await timers.advance(0); // the second run takes the slot
   * assert.equal(dispatcher.queued, 0);
   * finish[1]?.();
   * await Promise.all(runs);
   * ```
   */
  get queued(): number {
    return this.#waiting.length;
  }

  /**
   * Runs holding a slot but waiting for a capable agent to free one of its own.
   *
   * @example Two slots, but the only agent takes one call at a time
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   maxConcurrency: 1,
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer, concurrency: 2 });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const runs = [dispatcher.dispatch(await submit()), dispatcher.dispatch(await submit())];
   * await timers.advance(0);
   * assert.deepEqual([dispatcher.inFlight, dispatcher.waitingForAgent], [2, 1]);
   * finish[0]?.();
   * await timers.advance(0); // the waiting run gets the agent
   * assert.equal(dispatcher.waitingForAgent, 0);
   * finish[1]?.();
   * await Promise.all(runs);
   * ```
   */
  get waitingForAgent(): number {
    return this.#agentWaiters.length;
  }

  /**
   * Slots free now: how many more runs would start at once.
   *
   * @example Take only the work that can start now
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer, concurrency: 2 });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * assert.equal(dispatcher.freeSlots, 2);
   * const done = dispatcher.dispatch(await submit());
   * assert.equal(dispatcher.freeSlots, 1);
   * await timers.advance(0);
   * finish[0]?.();
   * await done;
   * assert.equal(dispatcher.freeSlots, 2);
   * ```
   */
  get freeSlots(): number {
    return Math.max(0, this.#concurrency - this.#active - this.#waiting.length);
  }

  /**
   * Whether {@link Dispatcher.dispatch} would refuse a new run now.
   *
   * @example Check before dispatching rather than catch `ERR_QUEUE_FULL`
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer, concurrency: 1, maxQueue: 0 });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * assert.equal(dispatcher.full, false);
   * const done = dispatcher.dispatch(await submit());
   * assert.equal(dispatcher.full, true);
   * const extra = await submit();
   * assert.throws(() => dispatcher.dispatch(extra), { code: "ERR_QUEUE_FULL" });
   * await timers.advance(0);
   * finish[0]?.();
   * await done;
   * assert.equal(dispatcher.full, false);
   * ```
   */
  get full(): boolean {
    return this.#active >= this.#concurrency && this.#waiting.length >= this.#maxQueue;
  }

  /**
   * The promise of a run executing (or queued) here, if it is.
   *
   * @param runId The run.
   * @returns What {@link Dispatcher.dispatch} returned for it, or `undefined`.
   *
   * @example Join a run that is executing
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const id = await submit();
   * const done = dispatcher.dispatch(id);
   * assert.equal(dispatcher.execution(id), done);
   * await timers.advance(0);
   * finish[0]?.();
   * await done;
   * assert.equal(dispatcher.execution(id), undefined);
   * ```
   */
  execution(runId: string): Promise<Run> | undefined {
    return this.#executions.get(runId)?.done;
  }

  /**
   * How long a lease taken here lives without a heartbeat, in milliseconds.
   *
   * @example The default lease time to live
   * ```ts
   * import { ControlPlane, Dispatcher, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * assert.equal(new Dispatcher({ controlPlane: cp, agents: [] }).leaseTtlMs, 30_000);
   * ```
   */
  get leaseTtlMs(): number {
    return this.#leaseTtlMs;
  }

  /**
   * The agents this dispatcher chooses from.
   *
   * @example List the agents' ids
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * const echo = defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) });
   * const upper = defineAgent({
   *   id: "upper",
   *   invoke: (task) => Promise.resolve(String(task.input).toUpperCase()),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [echo, upper] });
   * assert.deepEqual(dispatcher.agents.map((agent) => agent.id), ["echo", "upper"]);
   * ```
   */
  get agents(): readonly Agent[] {
    return this.#agents;
  }

  /**
   * Executes a run until it finishes or parks (awaiting approval, or lost to
   * another worker). A run already executing here returns the same promise.
   * Runs get slots in the order they were dispatched.
   *
   * @param runId A run in `queued`, `retrying` or `escalated`.
   * @returns The run when this dispatch settles: finished, parked, or as
   * another worker left it when that worker got to it first.
   * @throws {PlmError} `ERR_QUEUE_FULL` (synchronously) when every slot and the queue are taken.
   *
   * @example Dispatching a run twice joins the same execution
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const id = await submit();
   * const first = dispatcher.dispatch(id);
   * assert.equal(dispatcher.dispatch(id), first);
   * await timers.advance(0);
   * finish[0]?.();
   * const run = await first;
   * assert.deepEqual([run.state, run.result, run.attempt], ["succeeded", "done", 1]);
   * assert.equal(finish.length, 1);
   * ```
   */
  dispatch(runId: string): Promise<Run> {
    return this.#begin(runId, undefined);
  }

  /**
   * Executes a run this worker has already claimed (one of the runs
   * `RunStore.claimReady` returned for {@link Dispatcher.owner}), under the
   * lease the claim gave it: no second claim is made. The worker loop of
   * `AgentRuntime` claims up to {@link Dispatcher.freeSlots} runs in one
   * statement and hands each here. When the run already executes here the
   * claimed lease is given back and the same promise returned. The lease is
   * heartbeated from when the run takes a slot; should it lapse while the run
   * waits for one, its writes are refused (fenced) and the run is left to
   * whoever took it.
   *
   * @param run The run as the claim returned it, with this worker's lease.
   * @returns The run when this dispatch settles, as {@link Dispatcher.dispatch}.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `run.lease` when this worker does not
   * hold the run's lease; `ERR_QUEUE_FULL` (synchronously) when every slot and the queue are
   * taken (the caller gives the lease back).
   *
   * @example Claim ready runs in one statement, then execute them
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const cp = new ControlPlane(store, { policies: { rules: [] } });
   * const echo = defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [echo], owner: "worker-1" });
   * await cp.runs.create({
   *   task: { action: "echo", resource: "x", capabilities: [], input: 42, risk: "low", attributes: {} },
   *   requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const actor = { subject: "worker-1", kind: "service" } as const;
   * const claimed = await cp.runs.claimReady("worker-1", 30_000, dispatcher.freeSlots, { actor });
   * const [done] = await Promise.all(claimed.map((run) => dispatcher.dispatchClaimed(run)));
   * assert.deepEqual([done?.state, done?.result, done?.lease], ["succeeded", 42, null]);
   * ```
   */
  dispatchClaimed(run: Run): Promise<Run> {
    if (run.lease === null || run.lease.owner !== this.owner) {
      throw invalidArgument("run.lease", `expected a lease held by ${this.owner}`);
    }
    return this.#begin(run.id, run);
  }

  #begin(runId: string, claimed: Run | undefined): Promise<Run> {
    const existing = this.#executions.get(runId);
    if (existing !== undefined) {
      // Executing here already (its own claim comes, or came, after this one's): give back
      // the extra lease; when the execution claims after this, the release is refused quietly.
      if (claimed !== undefined) this.#giveBack(claimed).catch(() => {});
      return existing.done;
    }
    if (this.full) {
      throw new PlmError(
        "ERR_QUEUE_FULL",
        `Cannot queue run ${runId} as ${this.#active} runs execute and ${this.#waiting.length} wait`,
      );
    }
    const execution: Execution = {
      seq: this.#seq++,
      controller: new AbortController(),
      released: false,
    };
    const done = this.#slot(execution.controller.signal).then(async (slot) => {
      if (!slot) { // cancelled or given back while it waited: it never ran here
        try {
          if (claimed !== undefined) return await this.#giveBack(claimed);
          return await this.#cp.runs.get(runId);
        } finally {
          this.#executions.delete(runId);
        }
      }
      try {
        return await this.#execute(runId, execution, claimed);
      } finally {
        this.#release();
        this.#executions.delete(runId);
      }
    });
    this.#executions.set(runId, { execution, done });
    return done;
  }

  /**
   * Cancels a run, governed and audited like every mutation: the identity
   * (given, else bound) must be allowed `run.cancel` on the run
   * ({@link ControlPlane.authorizeCancel}). An executing run's agent then sees
   * its signal abort and the run ends `cancelled`; a run not executing here is
   * cancelled directly. Either way the cancelling identity is recorded.
   *
   * @param runId The run.
   * @param options Who cancels and why.
   * @returns The run after cancellation (a finished run as it is).
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED` without an identity, `ERR_FORBIDDEN` when the
   * identity may not cancel the run (the refusal is audited), `ERR_INVALID_ARGUMENT` for a bad
   * id or reason, `ERR_RUN_NOT_FOUND`.
   *
   * @example The requester cancels its run while the agent works
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const id = await submit();
   * const done = dispatcher.dispatch(id);
   * await timers.advance(0); // the agent is working
   * const svc = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const run = await dispatcher.cancel(id, { identity: svc, reason: "No longer needed" });
   * assert.equal(run.state, "cancelled");
   * assert.equal((await done).state, "cancelled");
   * const [record] = await cp.audit.list({ actionPrefix: "run.cancel" });
   * assert.deepEqual([record?.actor.subject, record?.outcome], ["svc", "allowed"]);
   * ```
   */
  async cancel(runId: string, options: CancelRunOptions = {}): Promise<Run> {
    const { reason, actor } = await this.#cp.authorizeCancel(runId, options);
    const executing = this.#executions.get(runId);
    if (executing !== undefined) {
      executing.execution.cancelledBy = actor;
      executing.execution.controller.abort(new PlmError("ERR_CANCELLED", reason));
      const run = await executing.done;
      if (isTerminal(run.state)) return run;
    }
    const run = await this.#cp.runs.get(runId);
    if (isTerminal(run.state)) return run;
    return await this.#cp.runs.apply(runId, { type: "cancel", reason }, { actor });
  }

  /**
   * Gives back every run executing or waiting here, for a worker that stops:
   * agents see their signal abort, a running attempt goes back to `retrying`,
   * and each lease is released (audited), so another worker can take the
   * runs at once. Runs still waiting for a slot are not claimed. Dispatching
   * again afterwards works as before.
   *
   * @returns When every run given back has settled.
   *
   * @example Give a run back to the queue
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const done = dispatcher.dispatch(await submit());
   * await timers.advance(0); // the agent is working
   * await dispatcher.releaseAll();
   * const back = await done;
   * assert.equal(back.state, "retrying");
   * assert.equal(back.lease, null);
   * ```
   */
  async releaseAll(): Promise<void> {
    for (const { execution } of this.#executions.values()) {
      execution.released = true;
      execution.controller.abort(
        new PlmError("ERR_CANCELLED", `Worker ${this.owner} stopped and gave the run back`),
      );
    }
    await this.idle();
  }

  /**
   * Resolves when every run dispatched so far has settled.
   *
   * @returns A promise that resolves once nothing executes or waits here.
   *
   * @example Wait for a batch to finish
   * ```ts
   * import { ControlPlane, defineAgent, Dispatcher, FakeClock, FakeTimers, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
   * const finish: (() => void)[] = [];
   * const agent = defineAgent({
   *   id: "gated",
   *   maxConcurrency: 2,
   *   invoke: () => new Promise((resolve) => finish.push(() => resolve("done"))),
   * });
   * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [agent], timer: timers.timer });
   * const submit = async () =>
   *   (await cp.runs.create({
   *     task: { action: "echo", resource: "x", capabilities: [], input: 1, risk: "low", attributes: {} },
   *     requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *     traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   *   })).run.id;
   * const ids = [await submit(), await submit()];
   * for (const id of ids) dispatcher.dispatch(id);
   * await timers.advance(0);
   * for (const done of finish) done();
   * await dispatcher.idle();
   * const runs = await Promise.all(ids.map((id) => cp.runs.get(id)));
   * assert.deepEqual(runs.map((run) => run.state), ["succeeded", "succeeded"]);
   * assert.equal(dispatcher.inFlight, 0);
   * ```
   */
  async idle(): Promise<void> {
    while (this.#executions.size > 0) {
      await Promise.allSettled([...this.#executions.values()].map((e) => e.done));
    }
  }

  /**
   * Takes a slot, or joins the line for one (first come, first served). A
   * waiter whose signal aborts (a cancel, `releaseAll`) leaves the line at once
   * and resolves `false` without a slot, so it never holds up the cancel or
   * the runs behind it.
   */
  #slot(signal: AbortSignal): Promise<boolean> {
    if (this.#active < this.#concurrency) {
      this.#active++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const take = () => {
        signal.removeEventListener("abort", leave);
        resolve(true);
      };
      const leave = () => {
        const i = this.#waiting.indexOf(take);
        if (i !== -1) this.#waiting.splice(i, 1);
        resolve(false);
      };
      this.#waiting.push(take);
      signal.addEventListener("abort", leave, { once: true });
    });
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#active--;
    else next(); // the slot passes to the oldest waiter: #active is unchanged
  }

  /**
   * Claims the run (unless the worker loop claimed it already), then runs its
   * loop under the lease. Invariants: every write of the attempt names the
   * lease ({@link LeaseHold}: owner and token), so once another worker has
   * claimed the run (after this lease expired) the store refuses them all
   * with `ERR_RUN_LEASE_LOST` and nothing more is written for it from here;
   * that refusal ends the attempt quietly. Anything else still gives the run
   * back before it is rethrown.
   */
  async #execute(runId: string, execution: Execution, claimed: Run | undefined): Promise<Run> {
    const runs = this.#cp.runs;
    const cancelSignal = execution.controller.signal;
    let run: Run;
    if (claimed === undefined) {
      run = await runs.get(runId);
      if (isTerminal(run.state) || run.state === "awaiting_approval") return run;
      if (cancelSignal.aborted && execution.released) return run; // given back before it began
      // A claim takes over an expired lease (a dead worker's `running` run becomes `retrying`).
      try {
        run = await runs.claim(runId, this.owner, this.#leaseTtlMs, { actor: this.#actor });
      } catch (err) {
        if (isLostRace(err)) return await runs.get(runId); // another worker claimed or finished it
        throw err;
      }
    } else {
      run = claimed;
    }
    const hold: LeaseHold = { owner: this.owner, token: run.lease?.token ?? 0 };
    const lease = new AbortController();
    const stopHeartbeat = this.#heartbeat(runId, hold, lease);
    try {
      if (!isDispatchable(run)) return await this.#letGo(run, hold); // it changed before the claim
      const signal = AbortSignal.any([cancelSignal, lease.signal]);
      return await this.#letGo(await this.#loop(run, hold, signal, execution), hold);
    } catch (err) {
      // A store call refused because another worker took the run over (this
      // worker's lease expired and was reclaimed) or finished it: it is theirs.
      const now = await runs.find(runId);
      if (isLostRace(err) && (now === undefined || !holds(now, hold))) return now ?? run;
      if (now !== undefined) await this.#letGo(now, hold).catch(() => {});
      throw err;
    } finally {
      stopHeartbeat();
    }
  }

  /** Gives back the lease of a claimed run that never executed here; a lost lease is quiet. */
  async #giveBack(claimed: Run): Promise<Run> {
    const hold: LeaseHold = { owner: this.owner, token: claimed.lease?.token ?? 0 };
    try {
      return await this.#letGo(claimed, hold);
    } catch (err) {
      if (isLostRace(err)) return await this.#cp.runs.get(claimed.id);
      throw err;
    }
  }

  /**
   * Gives back a run that is not finished but that this worker stops working
   * on. A `running` run goes back to `retrying` (its attempt was cut short)
   * with the lease cleared in the same transition; any other state just has
   * its lease released. Either way another worker can take it at once: a run
   * is never left `running` without a lease, which no query would pick up.
   * Both writes name the lease: when it is lost they change nothing.
   */
  async #letGo(run: Run, hold: LeaseHold): Promise<Run> {
    const runs = this.#cp.runs;
    if (!holds(run, hold) || isTerminal(run.state)) return run;
    const now = await runs.find(run.id);
    if (now === undefined || !holds(now, hold) || isTerminal(now.state)) return now ?? run;
    if (now.state === "running") {
      return await runs.apply(now.id, { type: "lease_expired" }, {
        actor: this.#actor,
        lease: hold,
        data: { previousOwner: this.owner, givenBack: true },
      });
    }
    return await runs.release(run.id, hold);
  }

  /**
   * Renews the lease every third of its life. A lost race (another worker
   * holds or finished the run) aborts the attempt at once; any other failure
   * (the database busy with another process's write) is tried again at the
   * next beat, since the lease is still good until it expires, and aborts
   * only once the lease has run out without a successful renewal. One beat
   * at a time: the next is armed only after the last settled.
   */
  #heartbeat(runId: string, hold: LeaseHold, lease: AbortController): () => void {
    let stopped = false;
    let cancel = () => {};
    let expiresAt = this.#clock.now() + this.#leaseTtlMs;
    const every = Math.ceil(this.#leaseTtlMs / 3);
    const beat = async () => {
      try {
        const run = await this.#cp.runs.heartbeat(runId, hold, this.#leaseTtlMs);
        expiresAt = run.lease?.expiresAt ?? expiresAt;
      } catch (err) {
        if (isLostRace(err) || this.#clock.now() + every >= expiresAt) return lease.abort(err);
      }
      if (!stopped) cancel = this.#timer(() => void beat(), every);
    };
    cancel = this.#timer(() => void beat(), every);
    return () => {
      stopped = true;
      cancel();
    };
  }

  /**
   * One run's attempts, escalations and ending. Invariants: every write names
   * the lease (`own`), so a lost lease changes nothing and ends the loop by
   * `ERR_RUN_LEASE_LOST`; the deadline and the run budget are checked before
   * each attempt; a handed-over agent slot is either used or passed on, never
   * dropped; an outcome and its autonomy streak commit in one transaction.
   */
  async #loop(
    start: Run,
    hold: LeaseHold,
    signal: AbortSignal,
    execution: Execution,
  ): Promise<Run> {
    const runs = this.#cp.runs;
    const own: Own = { actor: this.#actor, lease: hold };
    const deadline = start.createdAt + this.#runTimeoutMs;
    const identity: Identity = {
      subject: start.requester.subject,
      actorKind: start.requester.kind as Identity["actorKind"],
      roles: [],
      scopes: [],
      ...(start.requester.tenant === undefined ? {} : { tenant: start.requester.tenant }),
    };
    const parent: TraceContext = {
      ...parseTraceparent(start.traceparent)!,
      traceState: TraceState.parse(start.tracestate) ?? TraceState.EMPTY,
    };
    const mode = await this.#cp.runMode(start);
    let run = start;
    let attemptsInStep = 0;
    /** An agent slot handed over by the agent that freed it, still counted in #handedOver. */
    let handed: string | undefined;
    const giveBack = () => {
      if (handed === undefined) return;
      this.#handedOver.decrement(handed);
      this.#passOn(handed);
      handed = undefined;
    };
    for (;;) {
      await this.#turns.next();
      if (signal.aborted) {
        giveBack();
        return await this.#stopped(run, hold, execution);
      }
      const now = this.#clock.now();
      if (now >= deadline) {
        giveBack();
        return await runs.apply(run.id, {
          type: "fail",
          retry: false,
          error: {
            code: "ERR_DEADLINE_EXCEEDED",
            message: `Run deadline passed at ${iso(deadline)}`,
          },
        }, own);
      }
      const budget = this.#cp.checkRunBudget({
        attempts: run.attempt + 1,
        escalations: run.escalations,
        costUnits: run.costUnits,
      });
      if (!budget.ok) {
        giveBack();
        return await this.#finishFailed(run, { code: budget.code, message: budget.reason }, own);
      }
      if (handed !== undefined) this.#handedOver.decrement(handed); // the selector sees it free
      let agent: Agent | undefined;
      let refusal: unknown;
      try {
        agent = selectAgent(run.task, this.#agents, {
          inFlight: (id) => this.#agentLoad.inFlight(id) + this.#handedOver.inFlight(id),
          isAvailable: (id) => this.breakers.isAvailable(id),
        }, { minTier: this.#ladder.minTier(run.escalations) }).agent;
      } catch (err) {
        refusal = err;
      }
      // A handed slot the selector did not use is still free: it goes to the next in line.
      if (handed !== undefined && agent?.id !== handed) this.#passOn(handed);
      handed = undefined;
      if (agent === undefined) {
        if (refusal instanceof NoAgentError) {
          const full = refusal.reasons.filter((r) => r.outcome === "full").map((r) => r.agentId);
          if (full.length > 0) {
            // Capable agents are busy: wait in line for one, spending no attempt.
            handed = await this.#agentFreed(execution.seq, new Set(full), signal);
            continue;
          }
        }
        if (!(refusal instanceof PlmError) || refusal.code !== "ERR_NO_AGENT") throw refusal;
        const next = await this.#escalateOrFail(run, toAgentError(refusal), own);
        if (next.state !== "escalated") return next;
        run = next;
        attemptsInStep = 0;
        continue;
      }
      // The agent's slot is taken at selection, before the `start` write is awaited, so
      // runs selecting meanwhile see it taken; #invoke frees it when the agent settles,
      // and a failed write frees it here.
      this.#agentLoad.increment(agent.id);
      try {
        run = await runs.apply(run.id, { type: "start", agentId: agent.id }, {
          ...own,
          data: { tier: agent.tier, owner: this.owner },
        });
      } catch (err) {
        this.#agentLoad.decrement(agent.id);
        this.#passOn(agent.id);
        throw err;
      }
      attemptsInStep++;
      const outcome = await this.#invoke(agent, run, identity, parent, signal, deadline, mode);
      if ("result" in outcome) {
        const id = run.id;
        return await this.#withOutcome(run, "succeeded", (inTx) =>
          runs.apply(id, {
            type: mode === "suggest" ? "suggest" : "succeed",
            result: outcome.result,
            costUnits: agent.costPerRun,
          }, { ...own, ...inTx }));
      }
      if (signal.aborted) return await this.#stopped(run, hold, execution);
      const error = outcome.error;
      const budgetSpent = this.#retry.retryBudget !== undefined &&
        run.attempt >= this.#retry.retryBudget;
      const exhausted = attemptsInStep >= this.#retry.maxAttempts || budgetSpent;
      const retryable = error.retryable && !this.#retry.nonRetryableCodes.includes(error.code);
      if (retryable && !exhausted && !this.#ladder.escalatesNow(error.code)) {
        run = await runs.apply(run.id, {
          type: "fail",
          retry: true,
          error: { code: error.code, message: error.message },
          costUnits: agent.costPerRun,
        }, own);
        const delay = Math.min(
          this.#retry.maxDelayMs,
          error.retryAfterMs ?? nextDelay(this.#retry, attemptsInStep, this.#random),
        );
        await sleep(delay, { timer: this.#timer, signal });
        continue;
      }
      const final = retryable
        ? new RetryExhaustedError(`Gave up on ${agent.id} after ${attemptsInStep} attempts`, {
          cause: error,
          attempts: attemptsInStep,
          reason: budgetSpent ? "budget" : "max_attempts",
        })
        : error;
      const next = await this.#escalateOrFail(run, final, own, agent.costPerRun);
      if (next.state !== "escalated") return next;
      run = next;
      attemptsInStep = 0;
    }
  }

  /** Invokes the agent, whose slot the caller took (see #loop); frees it when the agent settles. */
  async #invoke(
    agent: Agent,
    run: Run,
    identity: Identity,
    parent: TraceContext,
    signal: AbortSignal,
    deadline: number,
    mode: RunMode,
  ): Promise<{ result: JsonValue } | { error: AgentError }> {
    const now = this.#clock.now();
    const attemptDeadline = Math.min(deadline, now + this.#attemptTimeoutMs);
    const timeout = new AbortController();
    const cancelTimer = this.#timer(
      () =>
        timeout.abort(
          new PlmError(
            "ERR_TIMEOUT",
            `Attempt ${run.attempt} timed out at ${iso(attemptDeadline)}`,
          ),
        ),
      attemptDeadline - now,
    );
    const attemptSignal = AbortSignal.any([signal, timeout.signal]);
    const breaker = this.breakers.get(agent.id);
    breaker.tryAcquire();
    const invocation = Promise.resolve().then(() =>
      agent.invoke(run.task, {
        signal: attemptSignal,
        deadline: attemptDeadline,
        attempt: run.attempt,
        identity,
        trace: childTraceContext(parent),
        runId: run.id,
        idempotencyKey: run.idempotencyKey ?? run.id,
        mode,
      })
    );
    // The agent's slot is held until the agent itself settles, even if we stop
    // waiting for it; then it goes to the first run in line for this agent.
    const free = () => {
      this.#agentLoad.decrement(agent.id);
      this.#passOn(agent.id);
    };
    invocation.then(free, free);
    const stop = aborted(attemptSignal);
    try {
      const result = await Promise.race([invocation, stop.promise]);
      checkResult(result);
      breaker.recordSuccess();
      return { result };
    } catch (err) {
      breaker.recordFailure();
      const reason = attemptSignal.aborted ? attemptSignal.reason : err;
      return { error: boundedError(toAgentError(reason)) };
    } finally {
      stop.dispose();
      cancelTimer();
    }
  }

  /**
   * Escalates a run whose attempts gave up, or fails it when the ladder or
   * the budget ends here. A human step escalates and asks for the approval in
   * one transaction (the run parks `awaiting_approval`), both under the lease.
   */
  async #escalateOrFail(
    run: Run,
    error: PlmError,
    own: Own,
    costUnits = 0,
  ): Promise<Run> {
    const runs = this.#cp.runs;
    const step = this.#ladder.next(run.escalations);
    const message = error.cause instanceof PlmError
      ? `${error.message}: ${error.cause.code}: ${error.cause.message}`
      : error.message;
    if (step === undefined || step.kind === "fail") {
      return await this.#finishFailed(run, { code: error.code, message }, own, costUnits);
    }
    const budget = this.#cp.checkRunBudget({
      attempts: run.attempt,
      escalations: run.escalations + 1,
      costUnits: run.costUnits + costUnits,
    });
    if (!budget.ok) {
      return await this.#finishFailed(
        run,
        { code: budget.code, message: budget.reason },
        own,
        costUnits,
      );
    }
    const reason = `${step.kind === "tier" ? `Tier ${step.minTier}` : "Human tier"}: ${message}`;
    return await this.#cp.transaction(async (tx) => {
      const escalated = await runs.apply(run.id, { type: "escalate", reason }, {
        ...own,
        tx,
        data: { step: run.escalations + 1, kind: step.kind, code: error.code },
      });
      if (step.kind === "tier") return escalated;
      // In the escalation's transaction, fenced as it is: under a lost lease neither is written.
      const { run: parked } = await this.#cp.requestApproval(run.id, step.approval, {
        kind: "escalation",
        actor: own.actor,
        lease: own.lease,
        tx,
      });
      return parked;
    });
  }

  async #finishFailed(
    run: Run,
    error: { code: string; message: string },
    own: Own,
    costUnits = 0,
  ): Promise<Run> {
    const fail = run.state === "running"
      ? { type: "fail", retry: false, error, costUnits } as const
      : { type: "fail", retry: false, error } as const;
    return await this.#withOutcome(
      run,
      "failed",
      (inTx) => this.#cp.runs.apply(run.id, fail, { ...own, ...inTx }),
    );
  }

  /**
   * Records the agent's autonomy outcome and the run transition that follows
   * from it in one transaction: the shared streak (and any drop, with its audit
   * record) commits with the transition or not at all; a lost lease rolls both back.
   */
  async #withOutcome(
    run: Run,
    outcome: AutonomyOutcome,
    step: (inTx: { tx?: StoreTx }) => Promise<Run>,
  ): Promise<Run> {
    const autonomy = this.#cp.autonomy;
    // Autonomy is about agents acting: as in authorize(), other requesters have no streak.
    if (autonomy === undefined || run.requester.kind !== "agent") return await step({});
    const agentId = run.requester.subject;
    return await this.#cp.transaction(async (tx) => {
      await autonomy.recordOutcome(agentId, outcome, { tx });
      return await step({ tx });
    });
  }

  async #stopped(run: Run, hold: LeaseHold, execution: Execution): Promise<Run> {
    const runs = this.#cp.runs;
    const cancelSignal = execution.controller.signal;
    if (cancelSignal.aborted && execution.released) {
      // Given back: a running attempt goes back to the queue; the lease is released after.
      if (run.state !== "running") return run;
      return await runs.apply(run.id, {
        type: "fail",
        retry: true,
        error: { code: "ERR_CANCELLED", message: `Worker ${this.owner} stopped mid-attempt` },
      }, { actor: this.#actor, lease: hold });
    }
    if (cancelSignal.aborted) {
      const reason = cancelSignal.reason instanceof Error
        ? cancelSignal.reason.message
        : "Cancelled";
      const actor = execution.cancelledBy ?? this.#actor;
      return await runs.apply(run.id, { type: "cancel", reason }, { actor });
    }
    // The lease was lost: another worker owns the run now; leave it alone.
    return await runs.get(run.id);
  }

  /**
   * Waits in line (by `seq`) until one of `agentIds` frees a slot and hands
   * it over; resolves `undefined` when `signal` aborts first. The abort
   * listener is removed either way.
   */
  #agentFreed(
    seq: number,
    agentIds: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<string | undefined> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve(undefined);
      const onAbort = () => {
        const i = this.#agentWaiters.indexOf(waiter);
        if (i !== -1) this.#agentWaiters.splice(i, 1);
        resolve(undefined);
      };
      const waiter: AgentWaiter = {
        seq,
        agentIds,
        wake: (agentId) => {
          signal.removeEventListener("abort", onAbort);
          resolve(agentId);
        },
      };
      signal.addEventListener("abort", onAbort, { once: true });
      const line = this.#agentWaiters;
      let i = line.length;
      while (i > 0 && line[i - 1]!.seq > seq) i--;
      line.splice(i, 0, waiter);
    });
  }

  /**
   * Hands a free slot of `agentId` to the first run in line that can use it:
   * exactly one waiter is woken per free slot, and the slot stays counted
   * (in #handedOver) until that run selects, so a newcomer cannot take it.
   */
  #passOn(agentId: string): void {
    const agent = this.#agentsById.get(agentId);
    if (agent === undefined) return;
    const taken = this.#agentLoad.inFlight(agentId) + this.#handedOver.inFlight(agentId);
    if (taken >= agent.maxConcurrency) return;
    if (!this.breakers.isAvailable(agentId)) {
      // Its circuit is open: no slot to hand over, and no call left to free one. Every
      // run waiting for it chooses again (another agent, another wait, or escalation).
      const line = this.#agentWaiters;
      this.#agentWaiters = line.filter((w) => !w.agentIds.has(agentId));
      for (const waiter of line) if (waiter.agentIds.has(agentId)) waiter.wake(undefined);
      return;
    }
    const i = this.#agentWaiters.findIndex((w) => w.agentIds.has(agentId));
    if (i === -1) return;
    const [waiter] = this.#agentWaiters.splice(i, 1);
    this.#handedOver.increment(agentId);
    waiter!.wake(agentId);
  }
}

function isDispatchable(run: Run): boolean {
  return run.state === "queued" || run.state === "retrying" || run.state === "escalated";
}

/** Whether `run` is still under the lease `hold` names (owner and token). */
function holds(run: Run, hold: LeaseHold): boolean {
  return run.lease !== null && run.lease.owner === hold.owner && run.lease.token === hold.token;
}

function isLostRace(err: unknown): boolean {
  return err instanceof PlmError && LOST_RACE_CODES.includes(err.code);
}

/** A promise that rejects when `signal` aborts, and the disposer of its listener. */
function aborted(signal: AbortSignal): { promise: Promise<never>; dispose: () => void } {
  let dispose = () => {};
  const promise = new Promise<never>((_, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    dispose = () => signal.removeEventListener("abort", onAbort);
  });
  return { promise, dispose };
}

/**
 * Refuses a result the store could not keep exactly (a lone surrogate, NaN,
 * BigInt, a Date, too deep or too long): the attempt fails, not the dispatcher.
 */
function checkResult(result: JsonValue): void {
  try {
    canonicalJson(result, { field: "result" });
  } catch (err) {
    throw new AgentError(
      "ERR_AGENT_FAILED",
      `Agent returned a result JSON cannot carry: ${err instanceof Error ? err.message : err}`,
      { retryable: false, cause: err },
    );
  }
}

/**
 * An agent's error as it may be recorded: a well-formed code, and a message
 * without U+0000 or lone surrogates, at most {@link MAX_ERROR_MESSAGE} long,
 * so the audit never refuses the transition that records it.
 */
function boundedError(error: AgentError): AgentError {
  const code = ERROR_CODE.test(error.code) ? error.code : "ERR_AGENT_FAILED";
  let message = error.message;
  if (message.length > MAX_ERROR_MESSAGE) message = `${message.slice(0, MAX_ERROR_MESSAGE)}…`;
  if (unsafeTextReason(message) !== undefined) {
    message = message.replaceAll("\0", "\uFFFD").toWellFormed();
  }
  if (code === error.code && message === error.message) return error;
  return new AgentError(code as AgentError["code"], message, {
    cause: error.cause ?? error,
    retryable: error.retryable,
    ...(error.retryAfterMs === undefined ? {} : { retryAfterMs: error.retryAfterMs }),
  });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
