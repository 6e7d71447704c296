/**
 * The agent contract: {@link Agent}, the {@link AgentContext} of one attempt,
 * {@link AgentError} and {@link defineAgent} for in-process function agents.
 *
 * @module
 */
import {
  type ErrorCode,
  type Identity,
  type JsonValue,
  PlmError,
  type RunMode,
  type RunTask,
  type TraceContext,
} from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";

/** What an agent gets for one attempt at a task, besides the task itself. */
export interface AgentContext {
  /** Aborted when the attempt is cancelled or its deadline passes; stop work then. */
  readonly signal: AbortSignal;
  /** When the attempt must be over, in epoch milliseconds. */
  readonly deadline: number;
  /** The attempt number, 1-based, counted across retries of the run. */
  readonly attempt: number;
  /** Who the work is done for. */
  readonly identity: Identity;
  /** The trace context of this attempt: a child of the run's context. */
  readonly trace: TraceContext;
  /** The run the attempt belongs to. */
  readonly runId: string;
  /**
   * A key the agent uses to deduplicate repeated attempts at the same work:
   * the same for every attempt of a run.
   */
  readonly idempotencyKey: string;
  /**
   * `suggest` when the run's requester is an agent at autonomy `L1`: the agent must only
   * propose (change nothing); its result ends the run `suggested`, for a human to carry
   * out. The dispatcher always sets it.
   *
   * @default {"act"}
   */
  readonly mode?: RunMode;
}

/**
 * Something that can carry out tasks: a function in process, a service over
 * HTTP ({@link httpAgent}). The selector picks one by capabilities, tier, cost
 * and load; the dispatcher calls {@link Agent.invoke} under a concurrency
 * limit, a deadline and a signal.
 *
 * `invoke` reports failure by throwing: an {@link AgentError} says whether a
 * retry may help; any other error counts as a retryable `ERR_AGENT_FAILED`.
 */
export interface Agent {
  /** A unique id, also the tie-breaker of selection. */
  readonly id: string;
  /** What the agent can do; a task needs all of its `capabilities`. */
  readonly capabilities: readonly string[];
  /** Escalation tier: a lower tier is cheaper and weaker. A non-negative integer. */
  readonly tier: number;
  /** Cost units one run spends; a non-negative finite number. */
  readonly costPerRun: number;
  /** How many tasks the agent takes at once; a positive integer. */
  readonly maxConcurrency: number;
  /**
   * Carries out one attempt at `task`.
   *
   * @param task The task.
   * @param ctx The attempt's signal, deadline, identity, trace and keys.
   * @returns The result, a JSON value.
   */
  invoke(task: RunTask, ctx: AgentContext): Promise<JsonValue>;
}

/** Options for {@link AgentError}. */
export interface AgentErrorOptions {
  /** The underlying error, kept for diagnostics. */
  cause?: unknown;
  /**
   * Whether another attempt may succeed.
   *
   * @default {true}
   */
  retryable?: boolean;
  /**
   * How long the agent asks to be left alone before the next attempt, in
   * milliseconds (an HTTP `Retry-After`). A non-negative finite number.
   */
  retryAfterMs?: number;
}

/**
 * An agent's attempt failed. `retryable` says whether another attempt may
 * succeed; `retryAfterMs`, when set, how long to wait first. Retry policies
 * read these fields and `code`, never the class, so any error with the same
 * fields is treated alike.
 *
 * @example Refuse a task for good
 * ```ts
 * import { AgentError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = new AgentError("ERR_AGENT_FAILED", "Agent rejected the input", { retryable: false });
 * assert.equal(err.name, "AgentError");
 * assert.equal(err.retryable, false);
 * assert.equal(err.retryAfterMs, undefined);
 * ```
 */
export class AgentError extends PlmError {
  /** Whether another attempt may succeed. */
  readonly retryable: boolean;
  /** How long to wait before the next attempt, in milliseconds, when the agent said. */
  readonly retryAfterMs: number | undefined;

  /**
   * Creates an agent error.
   *
   * @param code The stable error code, usually `ERR_AGENT_FAILED`, `ERR_TIMEOUT` or `ERR_CANCELLED`.
   * @param message A sentence-case message without a trailing period.
   * @param options The cause, whether to retry, and how long to wait.
   * @throws {RangeError} When `retryAfterMs` is negative or not finite.
   */
  constructor(code: ErrorCode, message: string, options?: AgentErrorOptions) {
    const { cause, retryable = true, retryAfterMs } = options ?? {};
    super(code, message, cause === undefined ? undefined : { cause });
    if (retryAfterMs !== undefined && !(Number.isFinite(retryAfterMs) && retryAfterMs >= 0)) {
      throw new RangeError(`Cannot create an agent error with retryAfterMs ${retryAfterMs}`);
    }
    this.name = "AgentError";
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Turns anything an agent threw into an {@link AgentError}: an `AgentError`
 * is returned as is; another error with a known `ERR_*` code keeps its code
 * (and a `retryable: false` or `retryAfterMs` field, when it has one);
 * anything else becomes a retryable `ERR_AGENT_FAILED` with the original as
 * `cause`.
 *
 * @param error What the agent threw.
 * @returns The error as an `AgentError`.
 *
 * @example Classify an unknown failure
 * ```ts
 * import { toAgentError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = toAgentError(new Error("socket hang up"));
 * assert.equal(err.code, "ERR_AGENT_FAILED");
 * assert.equal(err.retryable, true);
 * assert.equal((err.cause as Error).message, "socket hang up");
 * ```
 */
export function toAgentError(error: unknown): AgentError {
  if (error instanceof AgentError) return error;
  if (error instanceof PlmError) {
    const fields = error as { retryable?: unknown; retryAfterMs?: unknown };
    const options: AgentErrorOptions = { cause: error, retryable: fields.retryable !== false };
    const after = fields.retryAfterMs;
    if (typeof after === "number" && Number.isFinite(after) && after >= 0) {
      options.retryAfterMs = after;
    }
    return new AgentError(error.code, error.message, options);
  }
  const message = error instanceof Error ? error.message : String(error);
  return new AgentError("ERR_AGENT_FAILED", `Agent failed: ${message}`, { cause: error });
}

/** What {@link defineAgent} needs to build an {@link Agent}. */
export interface AgentDefinition {
  /** A unique, non-empty id. */
  id: string;
  /** Carries out one attempt; see {@link Agent.invoke}. */
  invoke: (task: RunTask, ctx: AgentContext) => Promise<JsonValue>;
  /**
   * What the agent can do: non-empty, distinct strings.
   *
   * @default {[]}
   */
  capabilities?: readonly string[];
  /**
   * Escalation tier, a non-negative integer; lower is cheaper and weaker.
   *
   * @default {0}
   */
  tier?: number;
  /**
   * Cost units one run spends, a non-negative finite number.
   *
   * @default {0}
   */
  costPerRun?: number;
  /**
   * How many tasks the agent takes at once, a positive integer.
   *
   * @default {1}
   */
  maxConcurrency?: number;
}

/**
 * Builds a frozen {@link Agent} from a definition, checking every field once.
 *
 * @param definition The id, the invoke function and the optional fields.
 * @returns The agent.
 * @throws {TypeError} When `id` is empty, `invoke` is not a function, or a
 * capability is empty or repeated.
 * @throws {RangeError} When `tier`, `costPerRun` or `maxConcurrency` is out of range.
 *
 * @example Define an in-process agent
 * ```ts
 * import { defineAgent } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const upper = defineAgent({
 *   id: "upper",
 *   capabilities: ["text.upper"],
 *   maxConcurrency: 8,
 *   invoke: (task) => Promise.resolve(String(task.input).toUpperCase()),
 * });
 * assert.equal(upper.tier, 0);
 * assert.deepEqual(upper.capabilities, ["text.upper"]);
 * assert.throws(() => defineAgent({ id: "", invoke: upper.invoke }), TypeError);
 * ```
 */
export function defineAgent(definition: AgentDefinition): Agent {
  const { id, invoke, capabilities = [], tier = 0, costPerRun = 0, maxConcurrency = 1 } =
    definition;
  if (typeof id !== "string" || id === "") {
    throw new TypeError("Cannot define an agent without an id");
  }
  if (typeof invoke !== "function") {
    throw new TypeError(`Cannot define agent ${id} as its invoke is not a function`);
  }
  if (!Array.isArray(capabilities)) {
    throw new TypeError(`Cannot define agent ${id} as its capabilities are not an array`);
  }
  const seen = new Set<string>();
  for (const capability of capabilities) {
    if (typeof capability !== "string" || capability === "") {
      throw new TypeError(`Cannot define agent ${id} with an empty capability`);
    }
    if (seen.has(capability)) {
      throw new TypeError(`Cannot define agent ${id} with capability ${capability} twice`);
    }
    seen.add(capability);
  }
  checkOption("tier", tier, 0);
  if (!Number.isFinite(costPerRun) || costPerRun < 0) {
    throw new RangeError(`Cannot define agent ${id} with costPerRun ${costPerRun}`);
  }
  checkOption("maxConcurrency", maxConcurrency, 1);
  return Object.freeze({
    id,
    capabilities: Object.freeze([...capabilities]),
    tier,
    costPerRun,
    maxConcurrency,
    invoke,
  });
}
