/**
 * {@link Dispatcher}: runs allowed runs on agents, under leases, limits,
 * deadlines, retries and escalation, recording every step through the
 * control plane.
 *
 * @module
 */
import {
  type AuditActor,
  childTraceContext,
  type Clock,
  type ControlPlane,
  type Identity,
  isTerminal,
  type JsonValue,
  parseTraceparent,
  PlmError,
  type Run,
  type RunMode,
  systemTimer,
  type Timer,
  type TraceContext,
  TraceState,
} from "../control_plane/mod.ts";
import { type Agent, type AgentError, toAgentError } from "./agent.ts";
import { CircuitBreakers, type CircuitBreakersOptions } from "./circuit_breaker.ts";
import { EscalationLadder } from "./escalation.ts";
import { InFlightCounter } from "./limiter.ts";
import { nextDelay, RetryExhaustedError, RetryPolicy, type RetryPolicyOptions } from "./retry.ts";
import { NoAgentError, selectAgent } from "./selector.ts";

/**
 * Options for {@link Dispatcher}.
 *
 * @example Tune limits and retries
 * ```ts
 * import {
 *   ControlPlane,
 *   defineAgent,
 *   Dispatcher,
 *   type DispatcherOptions,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const options: DispatcherOptions = {
 *   controlPlane: new ControlPlane(db, { policies: { rules: [] } }),
 *   agents: [defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) })],
 *   concurrency: 4,
 *   maxQueue: 100,
 *   retry: { maxAttempts: 2, initialDelayMs: 10, jitter: "none" },
 *   attemptTimeoutMs: 5_000,
 * };
 * assert.ok(new Dispatcher(options));
 * assert.throws(() => new Dispatcher({ ...options, concurrency: 0 }), RangeError);
 * ```
 */
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
  random?: () => number;
  /**
   * The timer for timeouts, backoff and heartbeats.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
}

interface Execution {
  readonly controller: AbortController;
  readonly done: Promise<Run>;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Cannot use ${name} ${value}: it must be a positive integer`);
  }
  return value;
}

/**
 * Runs allowed runs on agents. For each run it takes the lease (heartbeated
 * while the agent works), selects an agent, invokes it under the global and
 * per-agent concurrency limits with an attempt timeout, the run's deadline and
 * an `AbortSignal`, then retries, escalates or finishes, each step a
 * transition recorded through the control plane. Work is at-least-once: the
 * run's idempotency key (or id) goes to the agent so it can deduplicate.
 *
 * @example Dispatch a run to an in-process agent
 * ```ts
 * import { ControlPlane, Dispatcher, defineAgent, openDatabase } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const cp = new ControlPlane(db, { policies: { rules: [] } });
 * const echo = defineAgent({ id: "echo", invoke: (task) => Promise.resolve(task.input) });
 * const dispatcher = new Dispatcher({ controlPlane: cp, agents: [echo] });
 * const { run } = cp.runs.create({
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
  #retry: RetryPolicy;
  #ladder: EscalationLadder;
  #attemptTimeoutMs: number;
  #runTimeoutMs: number;
  #leaseTtlMs: number;
  #concurrency: number;
  #maxQueue: number;
  #clock: Clock;
  #random: () => number;
  #timer: Timer;
  #actor: AuditActor;
  #agentLoad = new InFlightCounter();
  #executions = new Map<string, Execution>();
  /** Who cancelled an executing run, for the `cancel` transition its loop records. */
  #cancelledBy = new Map<string, AuditActor>();
  #active = 0;
  #waiting: (() => void)[] = [];
  #freed: (() => void)[] = [];

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
    const ids = new Set(agents.map((a) => a.id));
    if (ids.size !== agents.length) throw new RangeError("Cannot dispatch to agents sharing an id");
    this.#cp = controlPlane;
    this.#agents = [...agents];
    this.owner = owner;
    this.#concurrency = positiveInt("concurrency", concurrency);
    if (!Number.isSafeInteger(maxQueue) || maxQueue < 0) {
      throw new RangeError(`Cannot use maxQueue ${maxQueue}: it must be a non-negative integer`);
    }
    this.#maxQueue = maxQueue;
    this.#retry = retry instanceof RetryPolicy ? retry : new RetryPolicy(retry);
    this.#ladder = escalation;
    this.#attemptTimeoutMs = positiveInt("attemptTimeoutMs", attemptTimeoutMs);
    this.#runTimeoutMs = positiveInt("runTimeoutMs", runTimeoutMs);
    this.#leaseTtlMs = positiveInt("leaseTtlMs", leaseTtlMs);
    this.#clock = clock;
    this.#random = random;
    this.#timer = timer;
    this.breakers = new CircuitBreakers({ ...breakers, clock });
    this.#actor = { subject: owner, kind: "service" };
  }

  /** Runs executing now. */
  get inFlight(): number {
    return this.#active;
  }

  /** Runs waiting for a slot. */
  get queued(): number {
    return this.#waiting.length;
  }

  /** Whether {@link Dispatcher.dispatch} would refuse a new run now. */
  get full(): boolean {
    return this.#active >= this.#concurrency && this.#waiting.length >= this.#maxQueue;
  }

  /**
   * The promise of a run executing (or queued) here, if it is.
   *
   * @param runId The run.
   * @returns What {@link Dispatcher.dispatch} returned for it, or `undefined`.
   */
  execution(runId: string): Promise<Run> | undefined {
    return this.#executions.get(runId)?.done;
  }

  /** The agents this dispatcher chooses from. */
  get agents(): readonly Agent[] {
    return this.#agents;
  }

  /**
   * Executes a run until it finishes or parks (awaiting approval, or lost to
   * another worker). A run already executing here returns the same promise.
   *
   * @param runId A run in `queued`, `retrying` or `escalated`.
   * @returns The run when this dispatch settles.
   * @throws {PlmError} `ERR_QUEUE_FULL` (synchronously) when every slot and the queue are taken.
   */
  dispatch(runId: string): Promise<Run> {
    const existing = this.#executions.get(runId);
    if (existing !== undefined) return existing.done;
    if (this.full) {
      throw new PlmError(
        "ERR_QUEUE_FULL",
        `Cannot queue run ${runId} as ${this.#active} runs execute and ${this.#waiting.length} wait`,
      );
    }
    const controller = new AbortController();
    const done = this.#slot().then(async () => {
      try {
        return await this.#execute(runId, controller.signal);
      } finally {
        this.#release();
        this.#executions.delete(runId);
        this.#cancelledBy.delete(runId);
      }
    });
    this.#executions.set(runId, { controller, done });
    return done;
  }

  /**
   * Cancels a run: an executing run's agent sees its signal abort and the run
   * ends `cancelled`; a run not executing here is cancelled directly.
   *
   * @param runId The run.
   * @param reason Why, for the run and the audit.
   * @param actor Who cancels. Defaults to the bound identity, else this dispatcher.
   * @returns The run after cancellation.
   */
  async cancel(runId: string, reason = "Cancelled", actor?: AuditActor): Promise<Run> {
    const execution = this.#executions.get(runId);
    if (execution !== undefined) {
      if (actor !== undefined) this.#cancelledBy.set(runId, actor);
      execution.controller.abort(new PlmError("ERR_CANCELLED", reason));
      const run = await execution.done;
      if (run.state === "cancelled" || isTerminal(run.state)) return run;
    }
    const run = this.#cp.runs.get(runId);
    if (isTerminal(run.state)) return run;
    return this.#cp.runs.apply(runId, { type: "cancel", reason }, { actor: actor ?? this.#actor });
  }

  /**
   * Resolves when every run dispatched so far has settled.
   *
   * @returns Nothing.
   */
  async idle(): Promise<void> {
    while (this.#executions.size > 0) {
      await Promise.allSettled([...this.#executions.values()].map((e) => e.done));
    }
  }

  #slot(): Promise<void> {
    if (this.#active < this.#concurrency) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#active--;
    else next();
  }

  async #execute(runId: string, cancelSignal: AbortSignal): Promise<Run> {
    const runs = this.#cp.runs;
    let run = runs.get(runId);
    if (isTerminal(run.state) || run.state === "awaiting_approval") return run;
    try {
      run = runs.claim(runId, this.owner, this.#leaseTtlMs, { actor: this.#actor });
    } catch (err) {
      if (err instanceof PlmError && err.code === "ERR_RUN_LEASE_HELD") return runs.get(runId);
      throw err;
    }
    const lease = new AbortController();
    const stopHeartbeat = this.#heartbeat(runId, lease);
    try {
      return await this.#loop(run, AbortSignal.any([cancelSignal, lease.signal]), cancelSignal);
    } finally {
      stopHeartbeat();
      const after = runs.find(runId);
      if (after !== undefined && after.lease?.owner === this.owner && !isTerminal(after.state)) {
        runs.release(runId, this.owner);
      }
    }
  }

  #heartbeat(runId: string, lease: AbortController): () => void {
    let cancel = () => {};
    const beat = () => {
      try {
        this.#cp.runs.heartbeat(runId, this.owner, this.#leaseTtlMs);
        cancel = this.#timer(beat, Math.ceil(this.#leaseTtlMs / 3));
      } catch (err) {
        lease.abort(err);
      }
    };
    cancel = this.#timer(beat, Math.ceil(this.#leaseTtlMs / 3));
    return () => cancel();
  }

  async #loop(start: Run, signal: AbortSignal, cancelSignal: AbortSignal): Promise<Run> {
    const runs = this.#cp.runs;
    const own = { actor: this.#actor, owner: this.owner };
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
    const mode = this.#cp.runMode(start);
    let run = start;
    let attemptsInStep = 0;
    for (;;) {
      if (signal.aborted) return this.#stopped(run, cancelSignal);
      const now = this.#clock.now();
      if (now >= deadline) {
        return runs.apply(run.id, {
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
        return this.#finishFailed(run, { code: budget.code, message: budget.reason }, own);
      }
      let agent: Agent;
      try {
        const selection = selectAgent(run.task, this.#agents, {
          inFlight: (id) => this.#agentLoad.inFlight(id),
          isAvailable: (id) => this.breakers.isAvailable(id),
        }, { minTier: this.#ladder.minTier(run.escalations) });
        agent = selection.agent;
      } catch (err) {
        if (err instanceof NoAgentError && err.reasons.some((r) => r.outcome === "full")) {
          await this.#agentFreed(signal); // a capable agent is busy: wait for it, spend no attempt
          continue;
        }
        if (!(err instanceof PlmError) || err.code !== "ERR_NO_AGENT") throw err;
        const next = this.#escalateOrFail(run, toAgentError(err), own);
        if (next.state !== "escalated") return next;
        run = next;
        attemptsInStep = 0;
        continue;
      }
      run = runs.apply(run.id, { type: "start", agentId: agent.id }, {
        ...own,
        data: { tier: agent.tier, owner: this.owner },
      });
      attemptsInStep++;
      const outcome = await this.#invoke(agent, run, identity, parent, signal, deadline, mode);
      if ("result" in outcome) {
        this.#cp.autonomy?.recordOutcome(identity.subject, "succeeded");
        return runs.apply(run.id, {
          type: mode === "suggest" ? "suggest" : "succeed",
          result: outcome.result,
          costUnits: agent.costPerRun,
        }, own);
      }
      if (signal.aborted) return this.#stopped(run, cancelSignal);
      const error = outcome.error;
      const budgetSpent = this.#retry.retryBudget !== undefined &&
        run.attempt >= this.#retry.retryBudget;
      const exhausted = attemptsInStep >= this.#retry.maxAttempts || budgetSpent;
      const retryable = error.retryable && !this.#retry.nonRetryableCodes.includes(error.code);
      if (retryable && !exhausted && !this.#ladder.escalatesNow(error.code)) {
        run = runs.apply(run.id, {
          type: "fail",
          retry: true,
          error: { code: error.code, message: error.message },
          costUnits: agent.costPerRun,
        }, own);
        const delay = Math.min(
          this.#retry.maxDelayMs,
          error.retryAfterMs ?? nextDelay(this.#retry, attemptsInStep, this.#random),
        );
        await this.#sleep(delay, signal);
        continue;
      }
      const final = retryable
        ? new RetryExhaustedError(`Gave up on ${agent.id} after ${attemptsInStep} attempts`, {
          cause: error,
          attempts: attemptsInStep,
          reason: budgetSpent ? "budget" : "max_attempts",
        })
        : error;
      const next = this.#escalateOrFail(run, final, own, agent.costPerRun);
      if (next.state !== "escalated") return next;
      run = next;
      attemptsInStep = 0;
    }
  }

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
    this.#agentLoad.increment(agent.id);
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
    // The agent's slot is held until the agent itself settles, even if we stop waiting for it.
    const free = () => {
      this.#agentLoad.decrement(agent.id);
      this.#freed.splice(0).forEach((wake) => wake());
    };
    invocation.then(free, free);
    try {
      const result = await Promise.race([invocation, aborted(attemptSignal)]);
      breaker.recordSuccess();
      return { result };
    } catch (err) {
      breaker.recordFailure();
      const reason = attemptSignal.aborted ? attemptSignal.reason : err;
      return { error: toAgentError(reason) };
    } finally {
      cancelTimer();
    }
  }

  #escalateOrFail(
    run: Run,
    error: PlmError,
    own: { actor: AuditActor; owner: string },
    costUnits = 0,
  ): Run {
    const runs = this.#cp.runs;
    const step = this.#ladder.next(run.escalations);
    const message = error.cause instanceof PlmError
      ? `${error.message}: ${error.cause.code}: ${error.cause.message}`
      : error.message;
    if (step === undefined || step.kind === "fail") {
      return this.#finishFailed(run, { code: error.code, message }, own, costUnits);
    }
    const budget = this.#cp.checkRunBudget({
      attempts: run.attempt,
      escalations: run.escalations + 1,
      costUnits: run.costUnits + costUnits,
    });
    if (!budget.ok) {
      return this.#finishFailed(run, { code: budget.code, message: budget.reason }, own, costUnits);
    }
    const reason = `${step.kind === "tier" ? `Tier ${step.minTier}` : "Human tier"}: ${message}`;
    return this.#cp.transaction(() => {
      const escalated = runs.apply(run.id, { type: "escalate", reason }, {
        ...own,
        data: { step: run.escalations + 1, kind: step.kind, code: error.code },
      });
      if (step.kind === "tier") return escalated;
      return this.#cp.requestApproval(run.id, step.approval, {
        kind: "escalation",
        actor: own.actor,
      })
        .run;
    });
  }

  #finishFailed(
    run: Run,
    error: { code: string; message: string },
    own: { actor: AuditActor; owner: string },
    costUnits = 0,
  ): Run {
    this.#cp.autonomy?.recordOutcome(run.requester.subject, "failed");
    if (run.state === "running") {
      return this.#cp.runs.apply(run.id, { type: "fail", retry: false, error, costUnits }, own);
    }
    return this.#cp.runs.apply(run.id, { type: "fail", retry: false, error }, own);
  }

  #stopped(run: Run, cancelSignal: AbortSignal): Run {
    if (cancelSignal.aborted) {
      const reason = cancelSignal.reason instanceof Error
        ? cancelSignal.reason.message
        : "Cancelled";
      const actor = this.#cancelledBy.get(run.id) ?? this.#actor;
      return this.#cp.runs.apply(run.id, { type: "cancel", reason }, { actor });
    }
    // The lease was lost: another worker owns the run now; leave it alone.
    return this.#cp.runs.get(run.id);
  }

  #agentFreed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      this.#freed.push(resolve);
      signal.addEventListener("abort", () => resolve(), { once: true });
    });
  }

  #sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted || ms <= 0) return resolve();
      const done = () => {
        cancel();
        signal.removeEventListener("abort", done);
        resolve();
      };
      const cancel = this.#timer(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) return reject(signal.reason);
    signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
