/**
 * The autonomy controller: resolves an agent's level for an action, folds it
 * into verdicts, and drops the agent's level after repeated denials or
 * failures.
 *
 * @module
 */
import { type Clock, systemClock } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import {
  type ApprovalSpec,
  ApprovalSpecSchema,
  compileGlob,
  type GlobMatcher,
  type Verdict,
} from "../governance/mod.ts";
import { type AutonomyVerdict, DEFAULT_AUTONOMY_APPROVAL, foldAutonomy } from "./fold.ts";
import {
  AUTONOMY_LEVELS,
  type AutonomyLevel,
  type AutonomyPolicy,
  parseAutonomyPolicy,
} from "./levels.ts";

/**
 * Outcomes of an agent's action, fed to {@link AutonomyController.recordOutcome}.
 *
 * @example Record each outcome of an agent's actions
 * ```ts
 * import {
 *   AUTONOMY_OUTCOMES,
 *   AutonomyController,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const autonomy = new AutonomyController({ defaultLevel: "L4" }, { demoteAfter: 5 });
 * for (const outcome of AUTONOMY_OUTCOMES) autonomy.recordOutcome("a-1", outcome);
 * assert.equal(autonomy.levelOf("a-1"), "L4");
 * ```
 */
export const AUTONOMY_OUTCOMES = ["succeeded", "denied", "failed"] as const;

/**
 * One of {@link AUTONOMY_OUTCOMES}.
 *
 * @example Feed outcomes until the agent drops a level
 * ```ts
 * import {
 *   AutonomyController,
 *   type AutonomyOutcome,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const autonomy = new AutonomyController({ defaultLevel: "L3" }, { demoteAfter: 2 });
 * const outcomes: AutonomyOutcome[] = ["denied", "failed"];
 * for (const outcome of outcomes) autonomy.recordOutcome("a-1", outcome);
 * assert.equal(autonomy.levelOf("a-1"), "L2");
 * ```
 */
export type AutonomyOutcome = typeof AUTONOMY_OUTCOMES[number];

/**
 * Why an agent's level changed.
 *
 * @example Demote, then restore
 * ```ts
 * import {
 *   AUTONOMY_CHANGE_CAUSES,
 *   AutonomyController,
 *   type AutonomyLevelChange,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   { defaultLevel: "L4" },
 *   { demoteAfter: 1, onLevelChange: (change) => changes.push(change) },
 * );
 * autonomy.recordOutcome("a-1", "failed");
 * autonomy.restore("a-1");
 * assert.deepEqual(changes.map((c) => c.cause), [...AUTONOMY_CHANGE_CAUSES]);
 * ```
 */
export const AUTONOMY_CHANGE_CAUSES = ["demoted", "restored"] as const;

/**
 * One of {@link AUTONOMY_CHANGE_CAUSES}.
 *
 * @example Tell drops from restores
 * ```ts
 * import {
 *   type AutonomyChangeCause,
 *   AutonomyController,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const causes: AutonomyChangeCause[] = [];
 * const autonomy = new AutonomyController(
 *   { defaultLevel: "L3" },
 *   { demoteAfter: 1, onLevelChange: (change) => causes.push(change.cause) },
 * );
 * autonomy.recordOutcome("a-1", "denied");
 * autonomy.restore("a-1");
 * assert.deepEqual(causes, ["demoted", "restored"]);
 * ```
 */
export type AutonomyChangeCause = typeof AUTONOMY_CHANGE_CAUSES[number];

/**
 * A change of an agent's level, handed to `onLevelChange` (for the audit log).
 *
 * @example Capture a level drop for the audit log
 * ```ts
 * import {
 *   AutonomyController,
 *   type AutonomyLevelChange,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import { FakeClock } from "@tracepulse/plm-engine-core/shared";
 * import assert from "node:assert/strict";
 *
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   { defaultLevel: "L2" },
 *   { clock: new FakeClock(5_000), demoteAfter: 1, onLevelChange: (c) => changes.push(c) },
 * );
 * autonomy.recordOutcome("a-1", "failed");
 * assert.equal(changes[0]?.cause, "demoted");
 * assert.deepEqual([changes[0]?.from, changes[0]?.to, changes[0]?.at], ["L2", "L1", 5_000]);
 * ```
 */
export interface AutonomyLevelChange {
  /** The agent. */
  readonly agentId: string;
  /** The level before. */
  readonly from: AutonomyLevel;
  /** The level after. */
  readonly to: AutonomyLevel;
  /** Why it changed. */
  readonly cause: AutonomyChangeCause;
  /** One line explaining the change. */
  readonly reason: string;
  /** When, in epoch milliseconds from the injected clock. */
  readonly at: number;
}

/**
 * Options for {@link AutonomyController}.
 *
 * @example Drop after every failure, but never below L2
 * ```ts
 * import {
 *   AutonomyController,
 *   type AutonomyControllerOptions,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const options: AutonomyControllerOptions = { demoteAfter: 1, floor: "L2" };
 * const autonomy = new AutonomyController({ defaultLevel: "L3" }, options);
 * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L2");
 * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L2"); // the floor holds
 * ```
 */
export interface AutonomyControllerOptions {
  /**
   * The clock that stamps level changes.
   *
   * @default {systemClock}
   */
  readonly clock?: Clock;
  /**
   * After how many consecutive `denied` or `failed` outcomes the agent's
   * level drops one step; a positive integer. A `succeeded` outcome resets
   * the count.
   *
   * @default {3}
   */
  readonly demoteAfter?: number;
  /**
   * The lowest level automatic drops reach. Agents configured below it are
   * never dropped.
   *
   * @default {"L1"}
   */
  readonly floor?: AutonomyLevel;
  /**
   * The approval spec used when autonomy turns an `allow` into
   * `require_approval`.
   *
   * @default {DEFAULT_AUTONOMY_APPROVAL}
   */
  readonly approval?: ApprovalSpec;
  /** Called after every level change, with the change. */
  readonly onLevelChange?: (change: AutonomyLevelChange) => void;
}

interface CompiledAgent {
  readonly level: number;
  readonly actions: readonly { readonly match: GlobMatcher; readonly level: number }[];
}

function rank(level: AutonomyLevel): number {
  return AUTONOMY_LEVELS.indexOf(level);
}

function levelAt(index: number): AutonomyLevel {
  return AUTONOMY_LEVELS[index]!;
}

/**
 * Holds the autonomy policy and, in memory, each agent's consecutive
 * denial/failure count and any automatic drop of its level.
 *
 * An agent's current level is its configured level, capped by drops. The
 * level for an action is the first matching action pattern's level (or the
 * agent's level), capped the same way. Drops go one step down per
 * `demoteAfter` consecutive `denied`/`failed` outcomes, never below `floor`;
 * {@link AutonomyController.restore} lifts them.
 *
 * @example Fold autonomy and drop a failing agent
 * ```ts
 * import {
 *   AutonomyController,
 *   type AutonomyLevelChange,
 *   FakeClock,
 *   type Verdict,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   { defaultLevel: "L1", agents: { "a-1": { level: "L4" } } },
 *   { clock: new FakeClock(0), demoteAfter: 2, onLevelChange: (c) => changes.push(c) },
 * );
 * const allow: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["r1"],
 *   reason: "Allowed by rule r1",
 *   policyVersion: "v1",
 * };
 * assert.equal(autonomy.fold(allow, "a-1", "bom.update").decision, "allow");
 *
 * autonomy.recordOutcome("a-1", "failed");
 * autonomy.recordOutcome("a-1", "denied");
 * assert.equal(autonomy.levelOf("a-1"), "L3");
 * assert.equal(changes[0]?.to, "L3");
 * assert.equal(autonomy.fold(allow, "a-1", "bom.update").notify, true);
 * ```
 */
export class AutonomyController {
  readonly #policy: AutonomyPolicy;
  readonly #default: number;
  readonly #agents: ReadonlyMap<string, CompiledAgent>;
  readonly #clock: Clock;
  readonly #demoteAfter: number;
  readonly #floor: number;
  readonly #approval: ApprovalSpec;
  readonly #onLevelChange: ((change: AutonomyLevelChange) => void) | undefined;
  readonly #caps = new Map<string, number>();
  readonly #streaks = new Map<string, number>();

  /**
   * Validates the policy and options.
   *
   * @param policy The autonomy policy.
   * @param options Clock, drop threshold and floor, approval spec, hook.
   * @throws {PolicyError} `ERR_POLICY_INVALID` when the policy is invalid.
   * @throws {RangeError} When `demoteAfter`, `floor` or `approval` is invalid.
   */
  constructor(policy: AutonomyPolicy, options?: AutonomyControllerOptions) {
    const {
      clock = systemClock,
      demoteAfter = 3,
      floor = "L1",
      approval = DEFAULT_AUTONOMY_APPROVAL,
      onLevelChange,
    } = options ?? {};
    checkOption("demoteAfter", demoteAfter, 1);
    if (!AUTONOMY_LEVELS.includes(floor)) throw new RangeError(`Unknown autonomy level: ${floor}`);
    if (!ApprovalSpecSchema.safeParse(approval).success) {
      throw new RangeError("Cannot use an invalid approval spec");
    }
    this.#policy = parseAutonomyPolicy(policy);
    this.#default = rank(this.#policy.defaultLevel);
    this.#agents = new Map(
      Object.entries(this.#policy.agents ?? {}).map(([agentId, agent]) => [agentId, {
        level: rank(agent.level),
        actions: (agent.actions ?? []).map((entry) => ({
          match: compileGlob(entry.pattern),
          level: rank(entry.level),
        })),
      }]),
    );
    this.#clock = clock;
    this.#demoteAfter = demoteAfter;
    this.#floor = rank(floor);
    this.#approval = approval;
    this.#onLevelChange = onLevelChange;
  }

  /**
   * The validated autonomy policy.
   *
   * @example Read the levels back
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({
   *   defaultLevel: "L1",
   *   agents: { "a-1": { level: "L4" } },
   * });
   * assert.equal(autonomy.policy.defaultLevel, "L1");
   * assert.equal(autonomy.policy.agents?.["a-1"]?.level, "L4");
   * ```
   */
  get policy(): AutonomyPolicy {
    return this.#policy;
  }

  /**
   * The agent's current level: its configured level (or the default), capped
   * by automatic drops.
   *
   * @param agentId The agent.
   * @returns The current level.
   *
   * @example Unknown agents get the default
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({ defaultLevel: "L2" });
   * assert.equal(autonomy.levelOf("anyone"), "L2");
   * ```
   */
  levelOf(agentId: string): AutonomyLevel {
    return levelAt(this.#capped(agentId, this.#agents.get(agentId)?.level ?? this.#default));
  }

  /**
   * The agent's level for one action: the first matching action pattern's
   * level, else the agent's level, else the default; capped by drops.
   *
   * @param agentId The agent.
   * @param action The dotted action.
   * @returns The level that applies.
   *
   * @example Per-action levels
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({
   *   defaultLevel: "L0",
   *   agents: { "a-1": { level: "L4", actions: [{ pattern: "bom.delete", level: "L2" }] } },
   * });
   * assert.equal(autonomy.levelFor("a-1", "bom.delete"), "L2");
   * assert.equal(autonomy.levelFor("a-1", "bom.update"), "L4");
   * ```
   */
  levelFor(agentId: string, action: string): AutonomyLevel {
    const agent = this.#agents.get(agentId);
    if (agent === undefined) return levelAt(this.#capped(agentId, this.#default));
    const entry = agent.actions.find((candidate) => candidate.match(action));
    return levelAt(this.#capped(agentId, entry?.level ?? agent.level));
  }

  /**
   * Folds the agent's level for the action into a verdict
   * ({@link foldAutonomy}, with this controller's approval spec).
   *
   * @param verdict The governance verdict.
   * @param agentId The agent (the identity's subject).
   * @param action The dotted action.
   * @returns The folded verdict, recording the level.
   *
   * @example L2 needs approval
   * ```ts
   * import { AutonomyController, type Verdict } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({ defaultLevel: "L2" });
   * const allow: Verdict = {
   *   decision: "allow",
   *   matchedRuleIds: [],
   *   reason: "Allowed",
   *   policyVersion: "v",
   * };
   * const folded = autonomy.fold(allow, "a-1", "bom.update");
   * assert.equal(folded.decision, "require_approval");
   * assert.equal(folded.autonomyLevel, "L2");
   * ```
   */
  fold(verdict: Verdict, agentId: string, action: string): AutonomyVerdict {
    return foldAutonomy(verdict, this.levelFor(agentId, action), { approval: this.#approval });
  }

  /**
   * Records the outcome of an agent's action. `denied` and `failed` add to
   * the agent's consecutive count; on reaching `demoteAfter` the level drops
   * one step (not below `floor`), `onLevelChange` is called, and the count
   * restarts. `succeeded` resets the count.
   *
   * @param agentId The agent.
   * @param outcome What happened.
   * @returns The agent's level afterwards.
   * @throws {RangeError} When `outcome` is not one of {@link AUTONOMY_OUTCOMES}.
   *
   * @example Success resets the count
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({ defaultLevel: "L3" }, { demoteAfter: 2 });
   * autonomy.recordOutcome("a-1", "failed");
   * autonomy.recordOutcome("a-1", "succeeded");
   * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L3");
   * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L2");
   * ```
   */
  recordOutcome(agentId: string, outcome: AutonomyOutcome): AutonomyLevel {
    if (!AUTONOMY_OUTCOMES.includes(outcome)) {
      throw new RangeError(`Unknown outcome: ${String(outcome)}`);
    }
    if (outcome === "succeeded") {
      this.#streaks.delete(agentId);
      return this.levelOf(agentId);
    }
    const streak = (this.#streaks.get(agentId) ?? 0) + 1;
    if (streak < this.#demoteAfter) {
      this.#streaks.set(agentId, streak);
      return this.levelOf(agentId);
    }
    this.#streaks.delete(agentId);
    const from = this.levelOf(agentId);
    const current = rank(from);
    if (current <= this.#floor) return from;
    const to = levelAt(current - 1);
    this.#caps.set(agentId, current - 1);
    this.#onLevelChange?.({
      agentId,
      from,
      to,
      cause: "demoted",
      reason:
        `Agent ${agentId} dropped from ${from} to ${to} after ${this.#demoteAfter} consecutive denials or failures`,
      at: this.#clock.now(),
    });
    return to;
  }

  /**
   * The agent's current count of consecutive `denied`/`failed` outcomes.
   *
   * @param agentId The agent.
   * @returns The count, 0 after a success or a drop.
   *
   * @example Count failures
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({ defaultLevel: "L3" });
   * autonomy.recordOutcome("a-1", "denied");
   * assert.equal(autonomy.consecutiveFailures("a-1"), 1);
   * ```
   */
  consecutiveFailures(agentId: string): number {
    return this.#streaks.get(agentId) ?? 0;
  }

  /**
   * Lifts automatic drops of an agent (a human decision) and resets its
   * count. Calls `onLevelChange` when the level changes.
   *
   * @param agentId The agent.
   * @returns The agent's level afterwards.
   *
   * @example Restore a dropped agent
   * ```ts
   * import { AutonomyController } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const autonomy = new AutonomyController({ defaultLevel: "L4" }, { demoteAfter: 1 });
   * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L3");
   * assert.equal(autonomy.restore("a-1"), "L4");
   * ```
   */
  restore(agentId: string): AutonomyLevel {
    const from = this.levelOf(agentId);
    this.#caps.delete(agentId);
    this.#streaks.delete(agentId);
    const to = this.levelOf(agentId);
    if (to !== from) {
      this.#onLevelChange?.({
        agentId,
        from,
        to,
        cause: "restored",
        reason: `Agent ${agentId} restored from ${from} to ${to}`,
        at: this.#clock.now(),
      });
    }
    return to;
  }

  #capped(agentId: string, level: number): number {
    const cap = this.#caps.get(agentId);
    return cap === undefined ? level : Math.min(level, cap);
  }
}
