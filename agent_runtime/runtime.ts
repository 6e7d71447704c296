/**
 * {@link AgentRuntime}: the facade that submits tasks through the control
 * plane and runs the allowed ones on agents.
 *
 * @module
 */
import {
  actorOf,
  type ApprovalDecision,
  type AuditActor,
  checkTraceContext,
  childTraceContext,
  type Clock,
  type ControlPlane,
  currentTraceContext,
  DEFAULT_AUTONOMY_APPROVAL,
  formatTraceparent,
  type Identity,
  INPUT_LIMITS,
  newTraceContext,
  PlmError,
  type Random,
  requireIdentity,
  type Run,
  type RunState,
  sleep,
  systemTimer,
  type TaskInput,
  type Timer,
  type TraceContext,
} from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";
import { Turns } from "./_turns.ts";
import { Dispatcher, type DispatcherOptions } from "./dispatcher.ts";

/** Submits between two turns of the event loop (a SQLite transaction settles without one). */
const SUBMITS_PER_TURN = 8;

/** Options for {@link AgentRuntime}: those of the {@link Dispatcher}, and an error hook. */
export interface AgentRuntimeOptions extends DispatcherOptions {
  /**
   * Called when a background dispatch (`runId` set) or a step of the worker
   * loop (`runId` undefined) fails unexpectedly: the store failing, say. The
   * run keeps its recorded state; its lease expires and a worker loop
   * ({@link AgentRuntime.start}) takes it back. Losing a run to another worker
   * is not an error and is not reported.
   *
   * @default {console.error}
   */
  onError?: (runId: string | undefined, error: unknown) => void;
}

/** Options of {@link AgentRuntime.start}: how often the worker loop does each of its jobs. */
export interface StartOptions {
  /**
   * The shortest wait between two polls for ready runs (`queued`, `retrying`,
   * `escalated`, no live lease), in milliseconds: the wait after a poll that
   * found work. Each poll that finds nothing doubles the wait, up to
   * `maxPollIntervalMs`; every wait is jittered by ±20%.
   *
   * @default {200}
   */
  pollIntervalMs?: number;
  /**
   * The longest wait between two polls, in milliseconds (at least `pollIntervalMs`).
   *
   * @default {5_000}
   */
  maxPollIntervalMs?: number;
  /**
   * How soon to poll after a `"runs"` wake-up hint from the store, in
   * milliseconds; hints within it make one poll.
   *
   * @default {20}
   */
  wakeDebounceMs?: number;
  /**
   * How often to take back expired leases (a dead worker's runs), in
   * milliseconds, when this worker is the elected reaper. At half the lease
   * time to live, an expired lease is taken back within 1.5 of it.
   *
   * @default {half the dispatcher's leaseTtlMs}
   */
  reclaimIntervalMs?: number;
  /**
   * How often to chain pending audit records (`AuditLog.seal`; a no-op on SQLite), in milliseconds.
   *
   * @default {1_000}
   */
  sealIntervalMs?: number;
  /**
   * How often to expire overdue approvals, in milliseconds.
   *
   * @default {10_000}
   */
  approvalIntervalMs?: number;
}

/** Options of {@link AgentRuntime.stop}. */
export interface StopOptions {
  /**
   * How long runs in flight may take to finish before they are aborted and
   * given back, in milliseconds.
   *
   * @default {30_000}
   */
  graceMs?: number;
}

/** The states a worker claims runs in. */
const READY: readonly RunState[] = ["queued", "retrying", "escalated"];

/** Options of {@link AgentRuntime.submit}. */
export interface SubmitOptions {
  /**
   * Who asks; with none given and none bound, the submission fails closed.
   *
   * @default {the identity bound to the async context}
   */
  identity?: Identity;
  /** The same key always gives the same run (and never a second one). */
  idempotencyKey?: string;
  /**
   * The caller's trace context; the run gets a child of it.
   *
   * @default {the bound trace context, else a new trace}
   */
  trace?: TraceContext;
}

/**
 * The agent runtime: `submit` asks the control plane first (deny gives a
 * `rejected` run, require_approval parks it in `awaiting_approval`), then
 * dispatches allowed runs. Approval decisions resume parked runs; the worker
 * loop ({@link AgentRuntime.start}) keeps claiming ready runs, takes back the
 * runs of dead workers and expires overdue approvals. A runtime without
 * agents only submits: allowed runs stay `queued` for a worker process.
 *
 * @example Submit a task and wait for it
 * ```ts
 * import { AgentRuntime, ControlPlane, defineAgent, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const controlPlane = new ControlPlane(store, {
 *   policies: { rules: [{ id: "reads", effect: "allow", actions: ["bom.read"] }] },
 * });
 * const reader = defineAgent({ id: "reader", capabilities: ["bom"], invoke: () => Promise.resolve("ok") });
 * const runtime = new AgentRuntime({ controlPlane, agents: [reader] });
 * const identity = { subject: "svc", actorKind: "service" as const, roles: [], scopes: [] };
 * const id = await runtime.submit({ action: "bom.read", resource: "bom:1", capabilities: ["bom"] }, { identity });
 * assert.equal((await runtime.wait(id)).state, "succeeded");
 * const denied = await runtime.submit({ action: "bom.delete", resource: "bom:1" }, { identity });
 * assert.equal((await runtime.wait(denied)).state, "rejected");
 * ```
 */
export class AgentRuntime {
  /** The control plane every verdict and transition goes through. */
  readonly controlPlane: ControlPlane;
  /** The dispatcher that executes allowed runs. */
  readonly dispatcher: Dispatcher;

  /**
   * Creates a runtime; options are validated once, here.
   *
   * @param options The control plane, agents, limits, retry and escalation policies, injected time.
   * @throws {RangeError} When a limit is malformed.
   */
  constructor(options: AgentRuntimeOptions) {
    this.controlPlane = options.controlPlane;
    this.dispatcher = new Dispatcher(options);
    this.#timer = options.timer ?? systemTimer;
    this.#clock = options.clock ?? options.controlPlane.clock;
    this.#random = options.random ?? Math.random;
    this.#actor = { subject: this.dispatcher.owner, kind: "service" };
    this.#onError = options.onError ?? ((runId, err) => {
      console.error(
        runId === undefined ? "plm: worker loop step failed:" : `plm: run ${runId} failed:`,
        err,
      );
    });
  }

  #onError: (runId: string | undefined, error: unknown) => void;
  #timer: Timer;
  #clock: Clock;
  #random: Random;
  #actor: AuditActor;
  /** `idle`: never started, dispatches what it submits; `started`: the loop runs; `stopped`: dispatches nothing. */
  #state: "idle" | "started" | "stopped" = "idle";
  /** Submits let the event loop turn every {@link SUBMITS_PER_TURN}. */
  #turns = new Turns(SUBMITS_PER_TURN);
  /** Cancels the loop's pending timers and its wake-up subscription. */
  #cancelLoop: (() => void)[] = [];
  /** Loop steps in flight: stop() waits for them, so none claims after it resolves. */
  #steps = new Set<Promise<void>>();
  /** The poller's state while started (see #poll). */
  #poller: Poller | undefined;
  #stopping: Promise<void> | undefined;

  /**
   * Creates a run for a task, decides it and, when allowed, dispatches it.
   * Creation, the verdict and its consequence (reject or park) land in one
   * transaction: there is never a run without its verdict.
   *
   * @param task What to do.
   * @param options Identity, idempotency key and trace context.
   * @returns The run id (the existing one for a repeated idempotency key).
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED`, `ERR_QUEUE_FULL` (nothing is created),
   * `ERR_RUN_IDEMPOTENCY_CONFLICT`; `ERR_INVALID_ARGUMENT` naming the field when the
   * task, the identity, the idempotency key or the trace context is invalid (nothing is
   * created).
   *
   * @example Allowed, denied and parked for approval
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   FakeClock,
   *   FakeTimers,
   *   defineAgent,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { clock, policies: { rules: [
   *   { id: "reads", effect: "allow", actions: ["bom.read"] },
   *   {
   *     id: "release", effect: "require_approval", actions: ["bom.release"],
   *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
   *   },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const read = await runtime.submit({ action: "bom.read", resource: "bom:1" }, { identity });
   * const drop = await runtime.submit({ action: "bom.delete", resource: "bom:1" }, { identity });
   * const ship = await runtime.submit({ action: "bom.release", resource: "bom:1" }, { identity });
   * assert.equal((await runtime.wait(read)).state, "succeeded");
   * assert.equal((await controlPlane.runs.get(drop)).state, "rejected");
   * assert.equal((await controlPlane.runs.get(ship)).state, "awaiting_approval");
   * await assert.rejects(runtime.submit({ action: "bom.read", resource: "bom:1" }), {
   *   code: "ERR_IDENTITY_REQUIRED",
   * });
   * await assert.rejects(runtime.submit({ action: "", resource: "bom:1" }, { identity }), {
   *   code: "ERR_INVALID_ARGUMENT",
   * });
   * ```
   */
  async submit(task: TaskInput, options: SubmitOptions = {}): Promise<string> {
    const id = await this.#submit(task, options);
    // A SQLite transaction settles in microtasks: a caller awaiting submits in a loop
    // would otherwise keep every timer (heartbeats, timeouts) waiting until it ends.
    await this.#turns.next();
    return id;
  }

  async #submit(input: TaskInput, options: SubmitOptions): Promise<string> {
    const identity = requireIdentity(options.identity, { action: "submit a task" });
    if (this.dispatcher.full) {
      throw new PlmError("ERR_QUEUE_FULL", "Cannot accept a task as the dispatch queue is full");
    }
    const parent = options.trace === undefined
      ? currentTraceContext()
      : checkTraceContext(options.trace, "trace");
    const trace = parent === undefined ? newTraceContext() : childTraceContext(parent);
    const cp = this.controlPlane;
    const run = await cp.transaction(async (tx) => {
      const { run, created } = await cp.runs.create({
        task: input,
        requester: identity,
        traceparent: formatTraceparent(trace),
        tracestate: trace.traceState.header,
        ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
      }, { actor: actorOf(identity), tx });
      if (!created) return run;
      const { task } = run;
      const verdict = await cp.authorize({
        identity,
        action: task.action,
        resource: task.resource,
        risk: task.risk,
        attributes: task.attributes,
        runId: run.id,
        traceId: trace.traceId,
      }, { tx });
      const actor = actorOf(identity);
      switch (verdict.decision) {
        case "allow":
          return run;
        case "deny":
          return await cp.runs.apply(run.id, { type: "reject", reason: verdict.reason }, {
            actor,
            tx,
          });
        case "require_approval": {
          const spec = verdict.approval ?? DEFAULT_AUTONOMY_APPROVAL;
          const { run: parked } = await cp.requestApproval(run.id, spec, {
            actor,
            mode: verdict.suggestOnly === true ? "suggest" : "act",
            tx,
          });
          return parked;
        }
      }
    });
    if (run.state === "queued") this.#dispatch(run.id);
    return run.id;
  }

  /**
   * Waits for a run's current dispatch to settle and returns the run; a run
   * not executing here is returned as it is.
   *
   * @param runId The run.
   * @returns The run.
   * @throws {PlmError} `ERR_RUN_NOT_FOUND`.
   *
   * @example Wait for a result; a submit-only runtime leaves the run queued
   * ```ts
   * import { AgentRuntime, ControlPlane, defineAgent, openStore } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const controlPlane = new ControlPlane(store, {
   *   policies: { rules: [{ id: "reads", effect: "allow", actions: ["bom.read"] }] },
   * });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const task = { action: "bom.read", resource: "bom:1", input: { rev: "B" } };
   * const submitOnly = new AgentRuntime({ controlPlane, agents: [] });
   * const queued = await submitOnly.submit(task, { identity });
   * assert.equal((await submitOnly.wait(queued)).state, "queued");
   * const echo = defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) });
   * const runtime = new AgentRuntime({ controlPlane, agents: [echo] });
   * const run = await runtime.wait(await runtime.submit(task, { identity }));
   * assert.deepEqual([run.state, run.result], ["succeeded", { rev: "B" }]);
   * await assert.rejects(runtime.wait("no-such-run"), { code: "ERR_RUN_NOT_FOUND" });
   * ```
   */
  async wait(runId: string): Promise<Run> {
    const executing = this.dispatcher.execution(runId);
    if (executing !== undefined) return await executing;
    const run = await this.controlPlane.runs.get(runId);
    if (this.#runsHere && READY.includes(run.state)) {
      try {
        return await this.dispatcher.dispatch(runId);
      } catch (err) {
        if (!(err instanceof PlmError) || err.code !== "ERR_QUEUE_FULL") throw err;
      }
    }
    return run;
  }

  /**
   * Cancels a run (its agent's signal aborts), when the bound identity may:
   * see {@link ControlPlane.authorizeCancel}. The cancel is audited with who
   * cancelled; a refused one too.
   *
   * @param runId The run.
   * @param reason Why.
   * @returns The run after cancellation.
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED`, `ERR_FORBIDDEN`, `ERR_INVALID_ARGUMENT`
   * (`reason`), `ERR_RUN_NOT_FOUND`.
   *
   * @example The requester cancels its own run while the agent works
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   FakeClock,
   *   FakeTimers,
   *   defineAgent,
   *   openStore,
   *   withIdentity,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { clock, policies: { rules: [
   *   { id: "reads", effect: "allow", actions: ["bom.read"] },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => new Promise(() => {}) });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const id = await runtime.submit({ action: "bom.read", resource: "bom:1" }, { identity });
   * await timers.advance(0); // the agent is working
   * await assert.rejects(runtime.cancel(id), { code: "ERR_IDENTITY_REQUIRED" });
   * const run = await withIdentity(identity, () => runtime.cancel(id, "No longer needed"));
   * assert.equal(run.state, "cancelled");
   * const [record] = await controlPlane.audit.list({ actionPrefix: "run.cancel" });
   * assert.equal(record?.actor.subject, "svc");
   * ```
   */
  cancel(runId: string, reason?: string): Promise<Run> {
    return this.dispatcher.cancel(runId, reason === undefined ? {} : { reason });
  }

  /**
   * Decides an approval (through the control plane) and dispatches the run
   * when the approval lets it go on.
   *
   * @param approvalId The approval.
   * @param decision `approve` or `reject`.
   * @param options The approver's identity, the digest they saw, a comment.
   * @returns The run after the decision.
   * @throws {PlmError} The codes of {@link ControlPlane.decideApproval}: `ERR_IDENTITY_REQUIRED`,
   * `ERR_INVALID_ARGUMENT`, `ERR_APPROVAL_NOT_FOUND`, `ERR_APPROVAL_NOT_PENDING`,
   * `ERR_APPROVAL_EXPIRED`, `ERR_APPROVAL_DIGEST_MISMATCH`, `ERR_APPROVAL_SELF`,
   * `ERR_APPROVER_NOT_ALLOWED`, `ERR_APPROVAL_DUPLICATE`.
   *
   * @example A lead approves and the run executes
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   FakeClock,
   *   FakeTimers,
   *   defineAgent,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { clock, policies: { rules: [
   *   {
   *     id: "release", effect: "require_approval", actions: ["bom.release"],
   *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
   *   },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const id = await runtime.submit({ action: "bom.release", resource: "bom:1" }, { identity });
   * const approval = await controlPlane.approvals.get((await controlPlane.runs.get(id)).approvalId!);
   * const lead = { subject: "ann", actorKind: "human", roles: ["lead"], scopes: [] } as const;
   * await assert.rejects(runtime.decideApproval(approval.id, "approve", { identity, digest: approval.digest }), {
   *   code: "ERR_APPROVAL_SELF",
   * });
   * const run = await runtime.decideApproval(approval.id, "approve", { identity: lead, digest: approval.digest });
   * assert.equal(run.state, "queued");
   * assert.equal((await runtime.wait(id)).state, "succeeded");
   * ```
   */
  async decideApproval(
    approvalId: string,
    decision: ApprovalDecision,
    options: { identity?: Identity; digest: string; comment?: string },
  ): Promise<Run> {
    const { run } = await this.controlPlane.decideApproval(approvalId, decision, options);
    if (run.state === "queued") this.#dispatch(run.id);
    return run;
  }

  /**
   * Expires overdue approvals and dispatches the runs whose expiry rule escalates them.
   *
   * @param now The time to compare deadlines with. Defaults to the clock.
   * @returns The runs affected.
   *
   * @example Nobody answered in ten minutes
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   FakeClock,
   *   FakeTimers,
   *   defineAgent,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { clock, policies: { rules: [
   *   {
   *     id: "release", effect: "require_approval", actions: ["bom.release"],
   *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
   *   },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const id = await runtime.submit({ action: "bom.release", resource: "bom:1" }, { identity });
   * assert.deepEqual(await runtime.expireApprovals(), []);
   * clock.advance(600_000);
   * const expired = await runtime.expireApprovals();
   * assert.deepEqual(expired.map((run) => [run.id, run.state]), [[id, "expired"]]);
   * ```
   */
  async expireApprovals(now?: number): Promise<Run[]> {
    return (await this.controlPlane.expireApprovals(now)).map(({ run }) => {
      if (run.state === "escalated") this.#dispatch(run.id);
      return run;
    });
  }

  /**
   * Starts the worker loop, at once and then on the injected timer: claims
   * ready runs (`queued`, `retrying`, `escalated`, no live lease), oldest
   * first, up to the free slots, in one statement (`RunStore.claimReady`),
   * polling adaptively (see {@link StartOptions}) and sooner on the store's
   * wake-up hints; as the elected reaper (`Store.lead`), takes back expired
   * leases (a dead worker's `running` runs become `retrying`); seals pending
   * audit records (`AuditLog.seal`); expires overdue approvals. Calling it
   * while started does nothing; after {@link AgentRuntime.stop} it starts
   * again. At-least-once: agents get the run's idempotency key to deduplicate.
   *
   * @param options The intervals of the loop's jobs.
   * @throws {RangeError} When an interval is not a positive integer.
   *
   * @example A worker finishes what a dead worker left running
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   defineAgent,
   *   FakeClock,
   *   FakeTimers,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { policies: { rules: [] }, clock });
   * const { run } = await controlPlane.runs.create({
   *   task: { action: "x", resource: "y", capabilities: [], input: null, risk: "low", attributes: {} },
   *   requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const actor = { subject: "dead", kind: "service" } as const;
   * const { lease } = await controlPlane.runs.claim(run.id, "dead", 30_000, { actor });
   * await controlPlane.runs.apply(run.id, { type: "start", agentId: "a" }, {
   *   actor,
   *   lease: { owner: "dead", token: lease!.token },
   * }); // then it died
   *
   * const agent = defineAgent({ id: "a", invoke: () => Promise.resolve("done") });
   * const worker = new AgentRuntime({ controlPlane, agents: [agent], clock, timer: timers.timer });
   * worker.start({ reclaimIntervalMs: 5_000 });
   * await timers.advance(35_000); // the lease expired, a reclaim and a poll followed
   * assert.equal((await worker.wait(run.id)).state, "succeeded");
   * await worker.stop();
   * ```
   */
  start(options: StartOptions = {}): void {
    const {
      pollIntervalMs = 200,
      maxPollIntervalMs = 5_000,
      wakeDebounceMs = 20,
      reclaimIntervalMs = Math.max(1, Math.floor(this.dispatcher.leaseTtlMs / 2)),
      sealIntervalMs = 1_000,
      approvalIntervalMs = 10_000,
    } = options;
    checkOption("pollIntervalMs", pollIntervalMs, 1);
    checkOption("maxPollIntervalMs", maxPollIntervalMs, pollIntervalMs);
    checkOption("wakeDebounceMs", wakeDebounceMs, 0);
    checkOption("reclaimIntervalMs", reclaimIntervalMs, 1);
    checkOption("sealIntervalMs", sealIntervalMs, 1);
    checkOption("approvalIntervalMs", approvalIntervalMs, 1);
    if (this.#state === "started") return;
    this.#state = "started";
    // Invariants: each job re-arms its own timer only after its step settled, so
    // no job overlaps itself; a step that throws is reported and re-armed (a busy
    // store must not end the loop); stop() flips #state and cancels every pending
    // timer and the wake-up subscription first, so nothing queued runs after it,
    // then waits for the steps in flight. One poll at a time (see #pollSoon).
    // A reclaim that took runs back brings a poll forward: a dead worker's runs
    // are ready at once. Polling is the correctness path; wake-up hints only
    // bring a poll forward.
    const store = this.controlPlane.store;
    this.#poller = {
      min: pollIntervalMs,
      max: maxPollIntervalMs,
      debounce: wakeDebounceMs,
      delay: pollIntervalMs,
      dueAt: undefined,
      cancel: () => {},
      polling: false,
      again: undefined,
      full: false,
    };
    this.#every(reclaimIntervalMs, async () => {
      // One reaper at a time across processes (an advisory lock on PostgreSQL).
      const reclaimed = await store.lead(
        "reaper",
        (tx) => this.controlPlane.runs.reclaimExpired(undefined, { actor: this.#actor, tx }),
      );
      if (reclaimed !== undefined && reclaimed.length > 0) this.#pollSoon(0);
    });
    this.#every(sealIntervalMs, async () => {
      await this.controlPlane.audit.seal();
    });
    this.#every(approvalIntervalMs, async () => {
      await this.expireApprovals();
    });
    const unsubscribe = store.onWake((topic) => {
      const poller = this.#poller;
      if (poller === undefined) return;
      if (topic === "reconnected") {
        // Hints may have been missed while the listener was away: poll fully, at once.
        poller.delay = poller.min;
        this.#pollSoon(0);
      } else if (topic === "runs" || topic === "approvals") {
        this.#pollSoon(poller.debounce);
      }
    });
    this.#cancelLoop.push(unsubscribe);
    this.#pollSoon(0);
  }

  /**
   * Stops the worker loop: nothing more is claimed or dispatched (submitted
   * runs stay `queued` for other workers); runs in flight get `graceMs` to
   * finish, then their agents' signals abort, a running attempt goes back to
   * `retrying` and every lease is released (audited), so another worker takes
   * the runs at once. Calling it again while it stops returns the same promise.
   *
   * @param options The grace period.
   * @returns When every loop step and every run in flight has finished or been given back.
   * @throws {RangeError} When `graceMs` is not a non-negative integer.
   *
   * @example Give back a run that outlives the grace period
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   defineAgent,
   *   FakeClock,
   *   FakeTimers,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, {
   *   policies: { rules: [{ id: "all", effect: "allow", actions: ["**"] }] },
   *   clock,
   * });
   * const stuck = defineAgent({ id: "stuck", invoke: () => new Promise(() => {}) });
   * const worker = new AgentRuntime({ controlPlane, agents: [stuck], clock, timer: timers.timer });
   * worker.start();
   * const identity = { subject: "svc", actorKind: "service" as const, roles: [], scopes: [] };
   * const id = await worker.submit({ action: "bom.read", resource: "bom:1" }, { identity });
   * const stopped = worker.stop({ graceMs: 1_000 });
   * await timers.advance(1_000);
   * await stopped;
   * const run = await controlPlane.runs.get(id);
   * assert.equal(run.state, "retrying");
   * assert.equal(run.lease, null);
   * ```
   */
  stop(options: StopOptions = {}): Promise<void> {
    const { graceMs = 30_000 } = options;
    checkOption("graceMs", graceMs, 0);
    this.#state = "stopped";
    this.#cancelLoop.splice(0).forEach((cancel) => cancel());
    this.#poller?.cancel();
    this.#poller = undefined;
    this.#stopping ??= this.#drain(graceMs).finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  async #drain(graceMs: number): Promise<void> {
    // A claim in flight gives back what it took (the state is `stopped`) before this goes on.
    while (this.#steps.size > 0) await Promise.allSettled([...this.#steps]);
    const settled = new AbortController();
    const idle = this.dispatcher.idle().then(() => settled.abort());
    await sleep(graceMs, { timer: this.#timer, signal: settled.signal });
    if (!settled.signal.aborted) await this.dispatcher.releaseAll();
    await idle;
  }

  /** Runs `job` now and then every `ms` after it settled, while started (see start()). */
  #every(ms: number, job: () => Promise<void>): void {
    const slot = this.#cancelLoop.length;
    this.#cancelLoop.push(() => {});
    const tick = () => {
      if (this.#state !== "started") return;
      this.#step(job).then(() => {
        if (this.#state === "started") this.#cancelLoop[slot] = this.#timer(tick, ms);
      });
    };
    tick();
  }

  /**
   * Runs one loop step, tracked for stop() from before it begins (a stop() the
   * step itself causes still waits for it); a failure is reported, never thrown.
   */
  #step(job: () => Promise<void>): Promise<void> {
    const step = Promise.resolve().then(job).catch((err) => this.#onError(undefined, err));
    this.#steps.add(step);
    return step.finally(() => this.#steps.delete(step));
  }

  /**
   * Brings the next poll forward to `ms` from now, unless one is due sooner.
   * During a poll it is remembered and applied when the poll ends, so one
   * poll runs at a time and hints that come together make one poll.
   */
  #pollSoon(ms: number): void {
    const poller = this.#poller;
    if (poller === undefined || this.#state !== "started") return;
    if (poller.polling) {
      poller.again = Math.min(poller.again ?? ms, ms);
      return;
    }
    const at = this.#clock.now() + ms;
    if (poller.dueAt !== undefined && poller.dueAt <= at) return;
    poller.cancel();
    poller.dueAt = at;
    poller.cancel = this.#timer(() => this.#poll(poller), ms);
  }

  /**
   * One poll: claims ready runs up to the free slots, then arms the next. The
   * wait doubles after a poll that found nothing (up to the maximum) and goes
   * back to the minimum after one that found work or had no free slot (a busy
   * worker checks often that a slot came free); each wait is jittered ±20%
   * with the injected randomness, so idle workers do not poll in step.
   */
  #poll(poller: Poller): void {
    poller.dueAt = undefined;
    poller.cancel = () => {};
    if (this.#poller !== poller) return; // stopped (and maybe started again) meanwhile
    poller.polling = true;
    this.#step(async () => {
      const asked = Math.min(this.dispatcher.freeSlots, INPUT_LIMITS.listLimit);
      const claimed = await this.#claimReady();
      poller.delay = claimed === 0 ? Math.min(poller.max, poller.delay * 2) : poller.min;
      poller.full = claimed !== undefined && claimed > 0 && claimed === asked;
    }).then(() => {
      poller.polling = false;
      const again = poller.again;
      poller.again = undefined;
      const jitter = 0.8 + 0.4 * this.#random();
      const wait = Math.max(1, Math.round(poller.delay * jitter));
      this.#pollSoon(again === undefined ? wait : Math.min(again, wait));
    });
  }

  /**
   * Claims ready runs, oldest first, up to the dispatcher's free slots, in one
   * statement, and dispatches each under the lease it got.
   *
   * @returns How many it claimed, or `undefined` when no slot was free (nothing was asked).
   */
  async #claimReady(): Promise<number | undefined> {
    const free = Math.min(this.dispatcher.freeSlots, INPUT_LIMITS.listLimit);
    if (free === 0 || this.dispatcher.agents.length === 0) return undefined;
    const claimed = await this.controlPlane.runs.claimReady(
      this.dispatcher.owner,
      this.dispatcher.leaseTtlMs,
      free,
      { actor: this.#actor },
    );
    await Promise.all(claimed.map((run) => this.#dispatchClaimed(run)));
    return claimed.length;
  }

  /**
   * Resolves when every dispatched run has settled.
   *
   * @returns A promise that resolves once no run executes or waits here.
   *
   * @example Submit a batch, then wait for all of it
   * ```ts
   * import {
   *   AgentRuntime,
   *   ControlPlane,
   *   FakeClock,
   *   FakeTimers,
   *   defineAgent,
   *   openStore,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(store, { clock, policies: { rules: [
   *   { id: "reads", effect: "allow", actions: ["bom.read"] },
   * ] } });
   * const reader = defineAgent({ id: "reader", maxConcurrency: 4, invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const ids = await Promise.all(
   *   ["bom:1", "bom:2", "bom:3"].map((resource) => runtime.submit({ action: "bom.read", resource }, { identity })),
   * );
   * await runtime.idle();
   * const runs = await Promise.all(ids.map((id) => controlPlane.runs.get(id)));
   * assert.deepEqual(runs.map((run) => run.state), ["succeeded", "succeeded", "succeeded"]);
   * ```
   */
  idle(): Promise<void> {
    return this.dispatcher.idle();
  }

  /**
   * Whether this runtime executes runs itself: not when it has no agents
   * (submit-only: workers elsewhere run them) nor once stopped (another worker
   * claims them).
   */
  get #runsHere(): boolean {
    return this.dispatcher.agents.length > 0 && this.#state !== "stopped";
  }

  #dispatch(runId: string): void {
    if (!this.#runsHere) return;
    try {
      // An unexpected error (the store failing) leaves the lease to expire; a worker loop takes it back.
      this.dispatcher.dispatch(runId).catch((err) => this.#onError(runId, err));
    } catch (err) {
      if (!(err instanceof PlmError) || err.code !== "ERR_QUEUE_FULL") throw err;
    }
  }

  /**
   * A run claimed by the loop ended here. When the last poll filled every free
   * slot, more runs are likely ready: poll now rather than on the timer (a busy
   * worker would otherwise take at most its slots per poll interval). Polls
   * asked for together still make one (see #pollSoon).
   */
  #slotFreed(): void {
    if (this.#poller?.full === true) this.#pollSoon(0);
  }

  /**
   * Executes a run claimed here (without waiting for it), or, when it cannot
   * run here now (stopped meanwhile, or no room), gives its lease back and
   * resolves once that is done.
   */
  async #dispatchClaimed(run: Run): Promise<void> {
    if (this.#runsHere) {
      try {
        this.dispatcher.dispatchClaimed(run).catch((err) => this.#onError(run.id, err)).finally(
          () => this.#slotFreed(),
        );
        return;
      } catch (err) {
        if (!(err instanceof PlmError) || err.code !== "ERR_QUEUE_FULL") throw err;
      }
    }
    const hold = { owner: this.dispatcher.owner, token: run.lease?.token ?? 0 };
    try {
      await this.controlPlane.runs.release(run.id, hold, { actor: this.#actor });
    } catch (err) {
      if (!(err instanceof PlmError) || err.code !== "ERR_RUN_LEASE_LOST") {
        this.#onError(run.id, err);
      }
    }
  }
}

/** The poller's state while the loop runs. */
interface Poller {
  /** The shortest and longest wait between polls, and the debounce of wake-up hints. */
  readonly min: number;
  readonly max: number;
  readonly debounce: number;
  /** The wait after the last poll, before jitter. */
  delay: number;
  /** When the armed poll is due, if one is armed. */
  dueAt: number | undefined;
  /** Disarms the armed poll. */
  cancel: () => void;
  /** Whether a poll is in flight. */
  polling: boolean;
  /** A hint that came during the poll in flight: poll again this soon after it. */
  again: number | undefined;
  /** The last poll took as many runs as it had slots: more may be ready when one frees. */
  full: boolean;
}
