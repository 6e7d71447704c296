/**
 * The run lifecycle as one pure state machine: {@link transition}.
 *
 * @module
 */
import { assertNever, type JsonValue, PlmError } from "../../shared/mod.ts";
import type { RiskLevel } from "../governance/policy.ts";

/**
 * Every state a run can be in.
 *
 * @example Every state is either terminal or live
 * ```ts
 * import { isTerminal, RUN_STATES } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(RUN_STATES[0], "queued");
 * const live = RUN_STATES.filter((state) => !isTerminal(state));
 * assert.deepEqual(live, ["queued", "awaiting_approval", "running", "retrying", "escalated"]);
 * ```
 */
export const RUN_STATES = [
  "queued",
  "awaiting_approval",
  "running",
  "retrying",
  "escalated",
  "succeeded",
  "failed",
  "rejected",
  "cancelled",
  "expired",
  "suggested",
] as const;

/** One of {@link RUN_STATES}. */
export type RunState = typeof RUN_STATES[number];

/**
 * The states a run never leaves.
 *
 * @example Terminal states accept no event
 * ```ts
 * import { RUN_TRANSITIONS, TERMINAL_RUN_STATES } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(TERMINAL_RUN_STATES.includes("succeeded"));
 * assert.ok(!TERMINAL_RUN_STATES.includes("retrying"));
 * for (const state of TERMINAL_RUN_STATES) {
 *   assert.deepEqual(RUN_TRANSITIONS[state], {});
 * }
 * ```
 */
export const TERMINAL_RUN_STATES: readonly RunState[] = [
  "succeeded",
  "failed",
  "rejected",
  "cancelled",
  "expired",
  "suggested",
];

/**
 * Whether a run in `state` is finished.
 *
 * @param state A run state.
 * @returns `true` for `succeeded`, `failed`, `rejected`, `cancelled`, `expired` and
 * `suggested`.
 *
 * @example Terminal states
 * ```ts
 * import { isTerminal } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.ok(isTerminal("succeeded"));
 * assert.ok(!isTerminal("retrying"));
 * ```
 */
export function isTerminal(state: RunState): boolean {
  return TERMINAL_RUN_STATES.includes(state);
}

/** What the run asks an agent to do. */
export interface RunTask {
  /** The governed action, dotted: `bom.update`. */
  readonly action: string;
  /** What the action is about: `bom:42`. */
  readonly resource: string;
  /** Capabilities an agent needs for this task. */
  readonly capabilities: readonly string[];
  /** The task's input, handed to the agent. */
  readonly input: JsonValue;
  /** The risk governance weighs. */
  readonly risk: RiskLevel;
  /** Request attributes for policy conditions. */
  readonly attributes: { readonly [key: string]: JsonValue };
}

/** A failure recorded on a run. */
export interface RunError {
  /** A stable `ERR_*` code (or the agent's own code). */
  readonly code: string;
  /** What happened. */
  readonly message: string;
}

/** A run: one governed execution of a task. */
export interface Run {
  /** The run id. */
  readonly id: string;
  /** The current state. */
  readonly state: RunState;
  /** Optimistic-concurrency version, incremented by every stored change. */
  readonly version: number;
  /** The task. */
  readonly task: RunTask;
  /** Who asked for it. */
  readonly requester: { readonly subject: string; readonly kind: string; readonly tenant?: string };
  /** The idempotency key it was created with, or `null`. */
  readonly idempotencyKey: string | null;
  /** The W3C `traceparent` the run carries (it survives approval pauses and restarts). */
  readonly traceparent: string;
  /** The W3C `tracestate`, or `""`. */
  readonly tracestate: string;
  /** Attempts started so far. */
  readonly attempt: number;
  /** Escalation steps taken so far. */
  readonly escalations: number;
  /** Cost units spent so far. */
  readonly costUnits: number;
  /** The agent of the current or last attempt. */
  readonly agentId: string | null;
  /** The approval the run waits for, or last waited for. */
  readonly approvalId: string | null;
  /** The agent's result once `succeeded`, or its suggestion once `suggested`. */
  readonly result: JsonValue;
  /** The last error, or why it was rejected, expired or cancelled. */
  readonly error: RunError | null;
  /** Created at, epoch ms. */
  readonly createdAt: number;
  /** Last changed at, epoch ms. */
  readonly updatedAt: number;
  /** The lease a worker holds on the run, or `null`. */
  readonly lease: RunLease | null;
}

/**
 * A worker's lease on a run. Every write the worker makes for that attempt
 * names the lease (`owner` and `token`), so a worker that lost it changes
 * nothing: the next claim gives the run a greater token.
 */
export interface RunLease {
  /** The worker holding it. */
  readonly owner: string;
  /**
   * The fencing token: greater at every claim of the run than at any claim
   * before (`RunStore.claim` gives the run's new version, so a first claim
   * gets 2; `claimReady` gives the last token + 1). Compare tokens for equality only.
   */
  readonly token: number;
  /** When it lapses without a heartbeat, epoch ms. */
  readonly expiresAt: number;
}

/** The lease a writer says it holds: the owner and token its claim returned. */
export type LeaseHold = Pick<RunLease, "owner" | "token">;

/** Everything that can happen to a run. Each event carries the time it happened. */
export type RunEvent =
  | { readonly type: "request_approval"; readonly at: number; readonly approvalId: string }
  | { readonly type: "approve"; readonly at: number }
  | { readonly type: "reject"; readonly at: number; readonly reason: string }
  | { readonly type: "expire"; readonly at: number; readonly reason: string }
  | { readonly type: "start"; readonly at: number; readonly agentId: string }
  | {
    readonly type: "succeed";
    readonly at: number;
    readonly result: JsonValue;
    readonly costUnits?: number;
  }
  | {
    readonly type: "fail";
    readonly at: number;
    readonly error: RunError;
    readonly retry: boolean;
    readonly costUnits?: number;
  }
  | {
    readonly type: "suggest";
    readonly at: number;
    readonly result: JsonValue;
    readonly costUnits?: number;
  }
  | { readonly type: "escalate"; readonly at: number; readonly reason: string }
  | { readonly type: "cancel"; readonly at: number; readonly reason: string }
  | { readonly type: "lease_expired"; readonly at: number };

/** A {@link RunEvent} without its time, which the store stamps from its clock. */
export type RunEventInput = RunEvent extends infer E ? E extends RunEvent ? Omit<E, "at"> : never
  : never;

/** The type of a {@link RunEvent}. */
export type RunEventType = RunEvent["type"];

/**
 * The legal moves: for each state, the events it accepts and the state each
 * leads to. `fail` leads to `retrying` when the event says `retry`, else `failed`.
 * `suggest` ends a suggest-only run (autonomy `L1`) in `suggested`: the agent's
 * result is a suggestion that a human must carry out.
 *
 * @example Where a running run can go
 * ```ts
 * import { RUN_TRANSITIONS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(RUN_TRANSITIONS.running.fail, ["retrying", "failed"]);
 * assert.deepEqual(RUN_TRANSITIONS.running.suggest, ["suggested"]);
 * assert.deepEqual(RUN_TRANSITIONS.awaiting_approval.approve, ["queued"]);
 * assert.equal(RUN_TRANSITIONS.queued.succeed, undefined); // a run must start first
 * ```
 */
export const RUN_TRANSITIONS: {
  readonly [S in RunState]: { readonly [E in RunEventType]?: readonly RunState[] };
} = {
  queued: {
    request_approval: ["awaiting_approval"],
    start: ["running"],
    reject: ["rejected"],
    escalate: ["escalated"],
    fail: ["failed"],
    cancel: ["cancelled"],
  },
  awaiting_approval: {
    approve: ["queued"],
    reject: ["rejected"],
    expire: ["expired"],
    escalate: ["escalated"],
    cancel: ["cancelled"],
  },
  running: {
    succeed: ["succeeded"],
    suggest: ["suggested"],
    fail: ["retrying", "failed"],
    escalate: ["escalated"],
    cancel: ["cancelled"],
    lease_expired: ["retrying"],
  },
  retrying: {
    start: ["running"],
    escalate: ["escalated"],
    fail: ["failed"],
    cancel: ["cancelled"],
  },
  escalated: {
    start: ["running"],
    request_approval: ["awaiting_approval"],
    fail: ["failed"],
    cancel: ["cancelled"],
  },
  succeeded: {},
  failed: {},
  rejected: {},
  cancelled: {},
  expired: {},
  suggested: {},
};

/**
 * Applies `event` to `run` and returns the next run. Pure: no I/O, no clock;
 * the store persists the result (and bumps `version`).
 *
 * @param run The current run.
 * @param event What happened.
 * @returns The run after the event.
 * @throws {PlmError} `ERR_RUN_ILLEGAL_TRANSITION` when `run.state` does not accept `event`.
 *
 * @example Start and finish a run
 * ```ts
 * import { transition, type Run } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const run: Run = {
 *   id: "r-1", state: "queued", version: 1,
 *   task: { action: "bom.read", resource: "bom:1", capabilities: [], input: null, risk: "low", attributes: {} },
 *   requester: { subject: "alice", kind: "human" }, idempotencyKey: null,
 *   traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", tracestate: "",
 *   attempt: 0, escalations: 0, costUnits: 0, agentId: null, approvalId: null,
 *   result: null, error: null, createdAt: 0, updatedAt: 0, lease: null,
 * };
 * const running = transition(run, { type: "start", at: 5, agentId: "a-1" });
 * const done = transition(running, { type: "succeed", at: 9, result: { ok: true } });
 * assert.equal(done.state, "succeeded");
 * assert.equal(done.attempt, 1);
 * assert.throws(() => transition(done, { type: "start", at: 10, agentId: "a-1" }));
 * ```
 */
export function transition(run: Run, event: RunEvent): Run {
  const allowed = RUN_TRANSITIONS[run.state][event.type];
  if (allowed === undefined) {
    throw new PlmError(
      "ERR_RUN_ILLEGAL_TRANSITION",
      `Cannot apply ${event.type} to run ${run.id} as it is ${run.state}`,
    );
  }
  const base = { ...run, updatedAt: event.at };
  switch (event.type) {
    case "request_approval":
      return { ...base, state: "awaiting_approval", approvalId: event.approvalId };
    case "approve":
      return { ...base, state: "queued" };
    case "reject":
      return {
        ...base,
        state: "rejected",
        error: { code: "ERR_FORBIDDEN", message: event.reason },
      };
    case "expire":
      return {
        ...base,
        state: "expired",
        error: { code: "ERR_APPROVAL_EXPIRED", message: event.reason },
      };
    case "start":
      return { ...base, state: "running", agentId: event.agentId, attempt: run.attempt + 1 };
    case "succeed":
      return {
        ...base,
        state: "succeeded",
        result: event.result,
        error: null,
        costUnits: run.costUnits + (event.costUnits ?? 0),
      };
    case "suggest":
      return {
        ...base,
        state: "suggested",
        result: event.result,
        error: null,
        costUnits: run.costUnits + (event.costUnits ?? 0),
      };
    case "fail":
      return {
        ...base,
        state: event.retry && allowed.includes("retrying") ? "retrying" : "failed",
        error: event.error,
        costUnits: run.costUnits + (event.costUnits ?? 0),
      };
    case "escalate":
      return { ...base, state: "escalated", escalations: run.escalations + 1 };
    case "cancel":
      return {
        ...base,
        state: "cancelled",
        error: { code: "ERR_CANCELLED", message: event.reason },
      };
    case "lease_expired":
      return {
        ...base,
        state: "retrying",
        error: { code: "ERR_RUN_LEASE_LOST", message: "The lease expired before the run finished" },
      };
    default:
      return assertNever(event);
  }
}
