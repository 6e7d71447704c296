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
  newTraceContext,
  PlmError,
  requireIdentity,
  type Run,
  type TaskInput,
  type TraceContext,
} from "../control_plane/mod.ts";
import { Dispatcher, type DispatcherOptions } from "./dispatcher.ts";

/**
 * Options for {@link AgentRuntime}: those of the {@link Dispatcher}, and an error hook.
 *
 * @example Fail a run after a single attempt
 * ```ts
 * import {
 *   AgentRuntime,
 *   type AgentRuntimeOptions,
 *   ControlPlane,
 *   defineAgent,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const controlPlane = new ControlPlane(db, {
 *   policies: { rules: [{ id: "reads", effect: "allow", actions: ["bom.read"] }] },
 * });
 * const down = defineAgent({ id: "down", invoke: () => Promise.reject(new Error("down")) });
 * const options: AgentRuntimeOptions = { controlPlane, agents: [down], retry: { maxAttempts: 1 } };
 * const runtime = new AgentRuntime(options);
 * const identity = { subject: "svc", actorKind: "service" as const, roles: [], scopes: [] };
 * const id = await runtime.submit({ action: "bom.read", resource: "bom:1" }, { identity });
 * const run = await runtime.wait(id);
 * assert.equal(run.state, "failed");
 * assert.equal(run.attempt, 1);
 * ```
 */
export interface AgentRuntimeOptions extends DispatcherOptions {
  /**
   * Called when a background dispatch fails unexpectedly (the store failing,
   * say). The run keeps its recorded state; its lease expires and
   * {@link AgentRuntime.recover} picks it up.
   *
   * @default {console.error}
   */
  onError?: (runId: string, error: unknown) => void;
}

/**
 * Options of {@link AgentRuntime.submit}.
 *
 * @example Submit twice with one idempotency key
 * ```ts
 * import {
 *   AgentRuntime,
 *   ControlPlane,
 *   openDatabase,
 *   type SubmitOptions,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const controlPlane = new ControlPlane(db, {
 *   policies: { rules: [{ id: "reads", effect: "allow", actions: ["bom.read"] }] },
 * });
 * const runtime = new AgentRuntime({ controlPlane, agents: [] }); // submits only
 * const options: SubmitOptions = {
 *   identity: { subject: "svc", actorKind: "service", roles: [], scopes: [] },
 *   idempotencyKey: "order-42",
 * };
 * const task = { action: "bom.read", resource: "bom:1" };
 * const first = await runtime.submit(task, options);
 * assert.equal(await runtime.submit(task, options), first);
 * assert.equal(controlPlane.runs.get(first).requester.subject, "svc");
 * ```
 */
export interface SubmitOptions {
  /** Who asks. Defaults to the identity bound to the async context; none fails closed. */
  identity?: Identity;
  /** The same key always gives the same run (and never a second one). */
  idempotencyKey?: string;
  /** The caller's trace context; the run gets a child of it. Defaults to the bound one, else a new trace. */
  trace?: TraceContext;
}

/**
 * The agent runtime: `submit` asks the control plane first (deny gives a
 * `rejected` run, require_approval parks it in `awaiting_approval`), then
 * dispatches allowed runs. Approval decisions and start-up recovery resume
 * parked and orphaned runs. A runtime without agents only submits: allowed
 * runs stay `queued` for a worker process that calls {@link AgentRuntime.recover}.
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
    this.#onError = options.onError ?? ((runId, err) => {
      console.error(`plm: dispatch of run ${runId} failed:`, err);
    });
  }

  #onError: (runId: string, error: unknown) => void;

  /**
   * Creates a run for a task, decides it and, when allowed, dispatches it.
   * Creation, the verdict and its consequence (reject or park) land in one
   * transaction: there is never a run without its verdict.
   *
   * @param task What to do.
   * @param options Identity, idempotency key and trace context.
   * @returns The run id (the existing one for a repeated idempotency key).
   * @throws {PlmError} `ERR_IDENTITY_REQUIRED`, `ERR_QUEUE_FULL` (nothing is created),
   * `ERR_RUN_IDEMPOTENCY_CONFLICT`.
   */
  submit(task: TaskInput, options: SubmitOptions = {}): Promise<string> {
    try {
      return Promise.resolve(this.#submit(task, options));
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
   */
  async wait(runId: string): Promise<Run> {
    const executing = this.dispatcher.execution(runId);
    if (executing !== undefined) return await executing;
    const run = this.controlPlane.runs.get(runId);
    if (run.state === "queued" || run.state === "retrying" || run.state === "escalated") {
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
   */
  cancel(runId: string, reason?: string): Promise<Run> {
    try {
      const allowed = this.controlPlane.authorizeCancel(
        runId,
        reason === undefined ? {} : { reason },
      );
      return this.dispatcher.cancel(runId, allowed.reason, allowed.actor);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Decides an approval (through the control plane) and dispatches the run
   * when the approval lets it go on.
   *
   * @param approvalId The approval.
   * @param decision `approve` or `reject`.
   * @param options The approver's identity, the digest they saw, a comment.
   * @returns The run after the decision.
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
   */
  expireApprovals(now?: number): Run[] {
    return this.controlPlane.expireApprovals(now).map(({ run }) => {
      if (run.state === "escalated") this.#dispatch(run.id);
      return run;
    });
  }

  /**
   * Start-up recovery: takes back leases that expired (their worker died) and
   * dispatches every run that is ready and unowned: `queued` (allowed or
   * approved), `retrying` and `escalated`. At-least-once: agents get the run's
   * idempotency key to deduplicate.
   *
   * @param options How many runs to pick up at most (default 10,000).
   * @returns The ids of the runs dispatched.
   */
  recover(options: { limit?: number } = {}): string[] {
    const cp = this.controlPlane;
    cp.runs.reclaimExpired(undefined, {
      actor: { subject: this.dispatcher.owner, kind: "service" },
    });
    const ready = cp.runs.list({
      states: ["queued", "retrying", "escalated"],
      limit: options.limit ?? 10_000,
    });
    const ids: string[] = [];
    for (const run of ready) {
      if (run.lease !== null) continue;
      if (this.#dispatch(run.id)) ids.push(run.id);
    }
    return ids;
  }

  /**
   * Resolves when every dispatched run has settled.
   *
   * @returns Nothing.
   */
  idle(): Promise<void> {
    return this.dispatcher.idle();
  }

  #dispatch(runId: string): boolean {
    if (this.dispatcher.agents.length === 0) return false; // submit-only: workers elsewhere run it
    try {
      // An unexpected error (the store failing) leaves the lease to expire; recovery picks the run up.
      this.dispatcher.dispatch(runId).catch((err) => this.#onError(runId, err));
      return true;
    } catch (err) {
      if (err instanceof PlmError && err.code === "ERR_QUEUE_FULL") return false;
      throw err;
    }
  }
}
