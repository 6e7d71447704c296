/**
 * {@link AgentRuntime}: the facade that submits tasks through the control
 * plane and runs the allowed ones on agents.
 *
 * @module
 */
import {
  actorOf,
  type ApprovalDecision,
  checkTraceContext,
  childTraceContext,
  type ControlPlane,
  currentTraceContext,
  DEFAULT_AUTONOMY_APPROVAL,
  formatTraceparent,
  type Identity,
  INPUT_LIMITS,
  newTraceContext,
  PlmError,
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

/** Submits between two turns of the event loop (each is a synchronous transaction). */
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
   * How often to claim ready runs (`queued`, `retrying`, `escalated`, no live
   * lease) up to the free slots, in milliseconds.
   *
   * @default {1_000}
   */
  pollIntervalMs?: number;
  /**
   * How often to take back expired leases (a dead worker's runs), in milliseconds.
   *
   * @default {5_000}
   */
  reclaimIntervalMs?: number;
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
 * import { AgentRuntime, ControlPlane, defineAgent, openDatabase } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const controlPlane = new ControlPlane(db, {
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
    this.#onError = options.onError ?? ((runId, err) => {
      console.error(
        runId === undefined ? "plm: worker loop step failed:" : `plm: run ${runId} failed:`,
        err,
      );
    });
  }

  #onError: (runId: string | undefined, error: unknown) => void;
  #timer: Timer;
  /** `idle`: never started, dispatches what it submits; `started`: the loop runs; `stopped`: dispatches nothing. */
  #state: "idle" | "started" | "stopped" = "idle";
  /** Submits let the event loop turn every {@link SUBMITS_PER_TURN}. */
  #turns = new Turns(SUBMITS_PER_TURN);
  /** Cancels the loop's pending timers. */
  #cancelLoop: (() => void)[] = [];
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { clock, policies: { rules: [
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
   * assert.equal(controlPlane.runs.get(drop).state, "rejected");
   * assert.equal(controlPlane.runs.get(ship).state, "awaiting_approval");
   * await assert.rejects(runtime.submit({ action: "bom.read", resource: "bom:1" }), {
   *   code: "ERR_IDENTITY_REQUIRED",
   * });
   * await assert.rejects(runtime.submit({ action: "", resource: "bom:1" }, { identity }), {
   *   code: "ERR_INVALID_ARGUMENT",
   * });
   * ```
   */
  submit(task: TaskInput, options: SubmitOptions = {}): Promise<string> {
    try {
      const id = this.#submit(task, options);
      // Each submit is synchronous SQLite work: a caller awaiting submits in a loop
      // would otherwise keep every timer (heartbeats, timeouts) waiting until it ends.
      const turn = this.#turns.next();
      return turn === undefined ? Promise.resolve(id) : turn.then(() => id);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #submit(input: TaskInput, options: SubmitOptions): string {
    const identity = requireIdentity(options.identity, { action: "submit a task" });
    if (this.dispatcher.full) {
      throw new PlmError("ERR_QUEUE_FULL", "Cannot accept a task as the dispatch queue is full");
    }
    const parent = options.trace === undefined
      ? currentTraceContext()
      : checkTraceContext(options.trace, "trace");
    const trace = parent === undefined ? newTraceContext() : childTraceContext(parent);
    const cp = this.controlPlane;
    const run = cp.transaction(() => {
      const { run, created } = cp.runs.create({
        task: input,
        requester: identity,
        traceparent: formatTraceparent(trace),
        tracestate: trace.traceState.header,
        ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey }),
      }, { actor: actorOf(identity) });
      if (!created) return run;
      const { task } = run;
      const verdict = cp.authorize({
        identity,
        action: task.action,
        resource: task.resource,
        risk: task.risk,
        attributes: task.attributes,
        runId: run.id,
        traceId: trace.traceId,
      });
      const actor = actorOf(identity);
      switch (verdict.decision) {
        case "allow":
          return run;
        case "deny":
          return cp.runs.apply(run.id, { type: "reject", reason: verdict.reason }, { actor });
        case "require_approval":
          return cp.requestApproval(run.id, verdict.approval ?? DEFAULT_AUTONOMY_APPROVAL, {
            actor,
            mode: verdict.suggestOnly === true ? "suggest" : "act",
          })
            .run;
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
   * import { AgentRuntime, ControlPlane, defineAgent, openDatabase } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const controlPlane = new ControlPlane(db, {
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
    const run = this.controlPlane.runs.get(runId);
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
   *   openDatabase,
   *   withIdentity,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { clock, policies: { rules: [
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
   * const [record] = controlPlane.audit.list({ actionPrefix: "run.cancel" });
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { clock, policies: { rules: [
   *   {
   *     id: "release", effect: "require_approval", actions: ["bom.release"],
   *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
   *   },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const id = await runtime.submit({ action: "bom.release", resource: "bom:1" }, { identity });
   * const approval = controlPlane.approvals.get(controlPlane.runs.get(id).approvalId!);
   * const lead = { subject: "ann", actorKind: "human", roles: ["lead"], scopes: [] } as const;
   * assert.throws(() => runtime.decideApproval(approval.id, "approve", { identity, digest: approval.digest }), {
   *   code: "ERR_APPROVAL_SELF",
   * });
   * const run = runtime.decideApproval(approval.id, "approve", { identity: lead, digest: approval.digest });
   * assert.equal(run.state, "queued");
   * assert.equal((await runtime.wait(id)).state, "succeeded");
   * ```
   */
  decideApproval(
    approvalId: string,
    decision: ApprovalDecision,
    options: { identity?: Identity; digest: string; comment?: string },
  ): Run {
    const { run } = this.controlPlane.decideApproval(approvalId, decision, options);
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { clock, policies: { rules: [
   *   {
   *     id: "release", effect: "require_approval", actions: ["bom.release"],
   *     approval: { approverRoles: ["lead"], quorum: 1, timeoutSeconds: 600, onExpiry: "deny" },
   *   },
   * ] } });
   * const reader = defineAgent({ id: "reader", invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const id = await runtime.submit({ action: "bom.release", resource: "bom:1" }, { identity });
   * assert.deepEqual(runtime.expireApprovals(), []);
   * clock.advance(600_000);
   * assert.deepEqual(runtime.expireApprovals().map((run) => [run.id, run.state]), [[id, "expired"]]);
   * ```
   */
  expireApprovals(now?: number): Run[] {
    return this.controlPlane.expireApprovals(now).map(({ run }) => {
      if (run.state === "escalated") this.#dispatch(run.id);
      return run;
    });
  }

  /**
   * Starts the worker loop, at once and then on the injected timer: takes
   * back expired leases (a dead worker's `running` runs become `retrying`),
   * expires overdue approvals, and claims ready runs (`queued`, `retrying`,
   * `escalated`, no live lease), oldest first, up to the free slots. Calling
   * it while started does nothing; after {@link AgentRuntime.stop} it starts
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { policies: { rules: [] }, clock });
   * const { run } = controlPlane.runs.create({
   *   task: { action: "x", resource: "y", capabilities: [], input: null, risk: "low", attributes: {} },
   *   requester: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
   *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
   * });
   * const dead = { actor: { subject: "dead", kind: "service" as const }, owner: "dead" };
   * controlPlane.runs.claim(run.id, "dead", 30_000, dead);
   * controlPlane.runs.apply(run.id, { type: "start", agentId: "a" }, dead); // then it died
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
    const { pollIntervalMs = 1_000, reclaimIntervalMs = 5_000, approvalIntervalMs = 10_000 } =
      options;
    checkOption("pollIntervalMs", pollIntervalMs, 1);
    checkOption("reclaimIntervalMs", reclaimIntervalMs, 1);
    checkOption("approvalIntervalMs", approvalIntervalMs, 1);
    if (this.#state === "started") return;
    this.#state = "started";
    // Invariants: each job re-arms its own timer only after it ran, so one job
    // never overlaps itself; a job that throws is reported and re-armed (a
    // busy store must not end the loop); stop() cancels every pending timer
    // and flips #state first, so a job already queued on the timer runs no
    // more. Reclaim goes before claim: a dead worker's runs are ready at once.
    this.#every(reclaimIntervalMs, () => {
      this.controlPlane.runs.reclaimExpired(undefined, {
        actor: { subject: this.dispatcher.owner, kind: "service" },
      });
    });
    this.#every(approvalIntervalMs, () => this.expireApprovals());
    this.#every(pollIntervalMs, () => this.#claimReady());
  }

  /**
   * Stops the worker loop: nothing more is claimed or dispatched (submitted
   * runs stay `queued` for other workers); runs in flight get `graceMs` to
   * finish, then their agents' signals abort, a running attempt goes back to
   * `retrying` and every lease is released (audited), so another worker takes
   * the runs at once. Calling it again while it stops returns the same promise.
   *
   * @param options The grace period.
   * @returns When every run in flight has finished or been given back.
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, {
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
   * const run = controlPlane.runs.get(id);
   * assert.equal(run.state, "retrying");
   * assert.equal(run.lease, null);
   * ```
   */
  stop(options: StopOptions = {}): Promise<void> {
    const { graceMs = 30_000 } = options;
    checkOption("graceMs", graceMs, 0);
    this.#state = "stopped";
    this.#cancelLoop.splice(0).forEach((cancel) => cancel());
    this.#stopping ??= this.#drain(graceMs).finally(() => (this.#stopping = undefined));
    return this.#stopping;
  }

  async #drain(graceMs: number): Promise<void> {
    const settled = new AbortController();
    const idle = this.dispatcher.idle().then(() => settled.abort());
    await sleep(graceMs, { timer: this.#timer, signal: settled.signal });
    if (!settled.signal.aborted) await this.dispatcher.releaseAll();
    await idle;
  }

  /** Runs `job` now and then every `ms` while started (see the invariants in start()). */
  #every(ms: number, job: () => void): void {
    const slot = this.#cancelLoop.length;
    const tick = () => {
      if (this.#state !== "started") return;
      try {
        job();
      } catch (err) {
        this.#onError(undefined, err);
      }
      if (this.#state === "started") this.#cancelLoop[slot] = this.#timer(tick, ms);
    };
    this.#cancelLoop.push(() => {});
    tick();
  }

  /** Claims ready runs, oldest first, up to the dispatcher's free slots. */
  #claimReady(): void {
    const free = this.dispatcher.freeSlots;
    if (free === 0 || this.dispatcher.agents.length === 0) return;
    // Oldest first, no live lease, at most what the slots take (and what one read may return).
    for (const run of this.controlPlane.runs.listReady(Math.min(free, INPUT_LIMITS.listLimit))) {
      this.#dispatch(run.id);
    }
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
   *   openDatabase,
   * } from "@tracepulse/plm-engine-core/agent-runtime";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const clock = new FakeClock(0);
   * const timers = new FakeTimers(clock);
   * const controlPlane = new ControlPlane(db, { clock, policies: { rules: [
   *   { id: "reads", effect: "allow", actions: ["bom.read"] },
   * ] } });
   * const reader = defineAgent({ id: "reader", maxConcurrency: 4, invoke: () => Promise.resolve("ok") });
   * const runtime = new AgentRuntime({ controlPlane, agents: [reader], clock, timer: timers.timer });
   * const identity = { subject: "svc", actorKind: "service", roles: [], scopes: [] } as const;
   * const ids = await Promise.all(
   *   ["bom:1", "bom:2", "bom:3"].map((resource) => runtime.submit({ action: "bom.read", resource }, { identity })),
   * );
   * await runtime.idle();
   * assert.deepEqual(ids.map((id) => controlPlane.runs.get(id).state), ["succeeded", "succeeded", "succeeded"]);
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
}
