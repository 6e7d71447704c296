/**
 * Agent selection: {@link selectAgent} picks the agent for a task by
 * capability, health, load, tier and cost, and says why.
 *
 * @module
 */
import { assertNever, PlmError, type RunTask } from "../control_plane/mod.ts";
import { checkOption } from "../shared/validate.ts";
import type { Agent } from "./agent.ts";

/** What the selector needs to know about the agents at this moment. */
export interface SelectorState {
  /**
   * Calls the agent has in flight now.
   *
   * @param agentId The agent id.
   * @returns A non-negative integer.
   */
  inFlight(agentId: string): number;
  /**
   * Whether the agent is healthy enough for a call: its circuit is closed, or
   * half-open with a trial slot free (see `CircuitBreakers.isAvailable`).
   *
   * @param agentId The agent id.
   * @returns `false` to skip the agent.
   */
  isAvailable(agentId: string): boolean;
}

/** Options for {@link selectAgent}. */
export interface SelectAgentOptions {
  /**
   * Skip agents below this tier (escalation asks for a stronger agent).
   *
   * @default {0}
   */
  minTier?: number;
}

/**
 * Why an agent was or was not chosen:
 *
 * - `chosen`: the agent picked;
 * - `missing_capability`: it lacks a capability the task needs;
 * - `below_min_tier`: its tier is under `minTier`;
 * - `unhealthy`: its circuit lets no call through;
 * - `full`: it has `maxConcurrency` calls in flight;
 * - `outranked`: it fits, but another agent came first (lower tier, then
 *   lower cost, then lower load, then smaller id).
 *
 * @example Every reason has one of the outcomes
 * ```ts
 * import {
 *   defineAgent,
 *   selectAgent,
 *   SELECTION_OUTCOMES,
 * } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const invoke = () => Promise.resolve(null);
 * const agents = [
 *   defineAgent({ id: "reader", capabilities: ["bom.read"], invoke }),
 *   defineAgent({ id: "writer", capabilities: ["bom.write"], invoke }),
 * ];
 * const state = { inFlight: () => 0, isAvailable: () => true };
 * const { reasons } = selectAgent({ capabilities: ["bom.read"] }, agents, state);
 * assert.deepEqual(reasons.map((r) => r.outcome), ["chosen", "missing_capability"]);
 * assert.ok(reasons.every((r) => SELECTION_OUTCOMES.includes(r.outcome)));
 * ```
 */
export const SELECTION_OUTCOMES = [
  "chosen",
  "missing_capability",
  "below_min_tier",
  "unhealthy",
  "full",
  "outranked",
] as const;

/** One of {@link SELECTION_OUTCOMES}. */
export type SelectionOutcome = typeof SELECTION_OUTCOMES[number];

/** What the selector decided about one agent. */
export interface SelectionReason {
  /** The agent. */
  readonly agentId: string;
  /** The decision. */
  readonly outcome: SelectionOutcome;
  /** The decision in words, e.g. `tier 2 is above tier 1 of a-1`. */
  readonly detail: string;
}

/** The result of {@link selectAgent}. */
export interface AgentSelection {
  /** The agent to run the task. */
  readonly agent: Agent;
  /** One reason per agent considered, in the order the agents were given. */
  readonly reasons: readonly SelectionReason[];
}

/** Options for {@link NoAgentError}. */
export interface NoAgentErrorOptions {
  /** One reason per agent considered. */
  reasons?: readonly SelectionReason[];
}

/**
 * No agent fits the task. Code `ERR_NO_AGENT`; the message says what was
 * missing and `reasons` holds the decision about each agent.
 *
 * @example Read why no agent fits
 * ```ts
 * import { NoAgentError } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const err = new NoAgentError("No agent has capability x", { reasons: [] });
 * assert.equal(err.code, "ERR_NO_AGENT");
 * assert.equal(err.name, "NoAgentError");
 * assert.deepEqual(err.reasons, []);
 * ```
 */
export class NoAgentError extends PlmError {
  /** The decision about each agent considered. */
  readonly reasons: readonly SelectionReason[];

  /**
   * Creates the error.
   *
   * @param message A sentence-case message without a trailing period.
   * @param options The decision about each agent.
   */
  constructor(message: string, options?: NoAgentErrorOptions) {
    super("ERR_NO_AGENT", message);
    this.name = "NoAgentError";
    this.reasons = options?.reasons ?? [];
  }
}

function hasAll(agent: Agent, needed: readonly string[]): boolean {
  const own = agent.capabilities;
  for (let i = 0; i < needed.length; i++) {
    if (!own.includes(needed[i] as string)) return false;
  }
  return true;
}

/**
 * Negative when `a` ranks before `b`: lower tier, then lower cost, then lower
 * load (`inFlight / maxConcurrency`, compared without division), then smaller id.
 */
function rank(a: Agent, aLoad: number, b: Agent, bLoad: number): number {
  if (a.tier !== b.tier) return a.tier - b.tier;
  if (a.costPerRun !== b.costPerRun) return a.costPerRun - b.costPerRun;
  const load = aLoad * b.maxConcurrency - bLoad * a.maxConcurrency;
  if (load !== 0) return load;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function whyOutranked(agent: Agent, load: number, best: Agent, bestLoad: number): string {
  if (agent.tier !== best.tier) {
    return `tier ${agent.tier} is above tier ${best.tier} of ${best.id}`;
  }
  if (agent.costPerRun !== best.costPerRun) {
    return `cost ${agent.costPerRun} is above cost ${best.costPerRun} of ${best.id}`;
  }
  if (load * best.maxConcurrency !== bestLoad * agent.maxConcurrency) {
    return `load ${load}/${agent.maxConcurrency} is above load ${bestLoad}/${best.maxConcurrency} of ${best.id}`;
  }
  return `ties with ${best.id}, which comes first by id`;
}

/**
 * Picks the agent to run `task`. Of the agents that have every capability in
 * `task.capabilities`, skips those below `minTier`, those whose circuit lets
 * no call through and those with `maxConcurrency` calls in flight; of the
 * rest, prefers the lowest tier, then the lowest `costPerRun`, then the least
 * loaded (`inFlight / maxConcurrency`), then the smallest id (code-unit
 * order), so the same inputs always give the same agent. Pure: it reads
 * `state` and changes nothing; the caller takes the slot (and, for a
 * half-open circuit, the trial) and selects again if that fails.
 *
 * @param task The task; only its `capabilities` are read.
 * @param agents The candidates, with distinct ids.
 * @param state Calls in flight and health, per agent id.
 * @param options The lowest tier to consider.
 * @returns The agent, and one reason per candidate.
 * @throws {NoAgentError} `ERR_NO_AGENT` when no agent fits; the message says
 * which capabilities no agent has, or how many capable agents are below the
 * tier, unhealthy or full.
 * @throws {RangeError} When `minTier` is not a non-negative integer.
 *
 * @example Prefer the cheaper of two agents
 * ```ts
 * import { defineAgent, selectAgent } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const invoke = () => Promise.resolve(null);
 * const agents = [
 *   defineAgent({ id: "big", capabilities: ["bom.read"], costPerRun: 5, invoke }),
 *   defineAgent({ id: "small", capabilities: ["bom.read"], costPerRun: 1, invoke }),
 * ];
 * const state = { inFlight: () => 0, isAvailable: () => true };
 * const { agent, reasons } = selectAgent({ capabilities: ["bom.read"] }, agents, state);
 * assert.equal(agent.id, "small");
 * assert.deepEqual(reasons.map((r) => r.outcome), ["outranked", "chosen"]);
 * ```
 */
export function selectAgent(
  task: Pick<RunTask, "capabilities">,
  agents: readonly Agent[],
  state: SelectorState,
  options?: SelectAgentOptions,
): AgentSelection {
  const minTier = checkOption("minTier", options?.minTier ?? 0, 0);
  const needed = task.capabilities;
  const count = agents.length;
  const loads = new Array<number>(count);
  const outcomes = new Array<SelectionOutcome>(count);
  let best = -1;
  let bestLoad = 0;
  let capable = 0;
  let belowTier = 0;
  let unhealthy = 0;
  let full = 0;
  for (let i = 0; i < count; i++) {
    const agent = agents[i] as Agent;
    if (!hasAll(agent, needed)) {
      outcomes[i] = "missing_capability";
      continue;
    }
    capable++;
    if (agent.tier < minTier) {
      outcomes[i] = "below_min_tier";
      belowTier++;
      continue;
    }
    if (!state.isAvailable(agent.id)) {
      outcomes[i] = "unhealthy";
      unhealthy++;
      continue;
    }
    const load = state.inFlight(agent.id);
    loads[i] = load;
    if (load >= agent.maxConcurrency) {
      outcomes[i] = "full";
      full++;
      continue;
    }
    outcomes[i] = "outranked";
    if (best === -1 || rank(agent, load, agents[best] as Agent, bestLoad) < 0) {
      best = i;
      bestLoad = load;
    }
  }
  if (best !== -1) outcomes[best] = "chosen";
  const chosen = best === -1 ? undefined : agents[best] as Agent;
  const reasons = new Array<SelectionReason>(count);
  for (let i = 0; i < count; i++) {
    const agent = agents[i] as Agent;
    const outcome = outcomes[i] as SelectionOutcome;
    reasons[i] = {
      agentId: agent.id,
      outcome,
      detail: describe(agent, outcome, loads[i] ?? 0, needed, minTier, chosen, bestLoad),
    };
  }
  if (chosen !== undefined) return { agent: chosen, reasons };
  throw new NoAgentError(
    noAgentMessage(needed, agents, capable, belowTier, unhealthy, full, minTier),
    { reasons },
  );
}

function describe(
  agent: Agent,
  outcome: SelectionOutcome,
  load: number,
  needed: readonly string[],
  minTier: number,
  chosen: Agent | undefined,
  chosenLoad: number,
): string {
  switch (outcome) {
    case "chosen":
      return `tier ${agent.tier}, cost ${agent.costPerRun}, load ${load}/${agent.maxConcurrency}`;
    case "missing_capability":
      return `lacks ${needed.filter((c) => !agent.capabilities.includes(c)).join(", ")}`;
    case "below_min_tier":
      return `tier ${agent.tier} is below tier ${minTier}`;
    case "unhealthy":
      return "circuit lets no call through";
    case "full":
      return `${load} of ${agent.maxConcurrency} calls in flight`;
    case "outranked":
      return whyOutranked(agent, load, chosen as Agent, chosenLoad);
    default:
      return assertNever(outcome);
  }
}

function noAgentMessage(
  needed: readonly string[],
  agents: readonly Agent[],
  capable: number,
  belowTier: number,
  unhealthy: number,
  full: number,
  minTier: number,
): string {
  if (capable === 0) {
    if (agents.length === 0) return "No agent is registered";
    const nowhere = needed.filter((c) => !agents.some((a) => a.capabilities.includes(c)));
    if (nowhere.length > 0) {
      return `No agent has capability ${nowhere.join(" or ")}`;
    }
    return `No agent has all of the capabilities ${needed.join(", ")}`;
  }
  const parts: [count: number, what: string][] = [];
  if (belowTier > 0) parts.push([belowTier, `below tier ${minTier}`]);
  if (unhealthy > 0) parts.push([unhealthy, "unhealthy"]);
  if (full > 0) parts.push([full, "full"]);
  const text = parts.map(([n, what], i) => {
    const verb = n === 1 ? "is" : "are";
    if (i > 0) return `${n} ${verb} ${what}`;
    return `${n} ${n === 1 ? "agent" : "agents"} with the capabilities ${verb} ${what}`;
  });
  return `No agent can take the task: ${text.join(", ")}`;
}
