/**
 * The autonomy controller: resolves an agent's level for an action, folds it
 * into verdicts, and drops the agent's level after repeated denials or
 * failures.
 *
 * @module
 */
import { type Clock, systemClock } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import type { Database } from "../store/database.ts";
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
import {
  type AutonomyState,
  type AutonomyStep,
  cappedRank,
  decideOutcome,
  decideRestore,
} from "./_rules.ts";
import { AutonomyStateRepository } from "./_state_repository.ts";

/**
 * Outcomes of an agent's action, fed to {@link AutonomyController.recordOutcome}.
 *
 * @example Record each outcome of an agent's actions
 * ```ts
 * import {
 *   AUTONOMY_OUTCOMES,
 *   AutonomyController,
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const autonomy = new AutonomyController(db, { defaultLevel: "L4" }, { demoteAfter: 5 });
 * for (const outcome of AUTONOMY_OUTCOMES) autonomy.recordOutcome("a-1", outcome);
 * assert.equal(autonomy.levelOf("a-1"), "L4");
 * ```
 */
export const AUTONOMY_OUTCOMES = ["succeeded", "denied", "failed"] as const;

/** One of {@link AUTONOMY_OUTCOMES}. */
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
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   db,
 *   { defaultLevel: "L4" },
 *   { demoteAfter: 1, onLevelChange: (change) => changes.push(change) },
 * );
 * autonomy.recordOutcome("a-1", "failed");
 * autonomy.restore("a-1");
 * assert.deepEqual(changes.map((c) => c.cause), [...AUTONOMY_CHANGE_CAUSES]);
 * ```
 */
export const AUTONOMY_CHANGE_CAUSES = ["demoted", "restored"] as const;

/** One of {@link AUTONOMY_CHANGE_CAUSES}. */
export type AutonomyChangeCause = typeof AUTONOMY_CHANGE_CAUSES[number];

/** A change of an agent's level, handed to `onLevelChange` (for the audit log). */
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

/** Options for {@link AutonomyController}. */
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
  /**
   * Called after every level change, with the change, inside the transaction
   * that stores it: what it writes to the same database (an audit record)
   * commits with the change or not at all.
   */
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
 * Holds the autonomy policy; each agent's consecutive denial/failure count
 * and any automatic drop of its level live in the database (table
 * `autonomy_state`, ADR 0007), so every connection and process on that
 * database sees the same level, and a restart changes nothing. Each change
 * is one transaction (a savepoint inside the caller's), and concurrent
 * writers take turns through `BEGIN IMMEDIATE`.
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
 *   openDatabase,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   db,
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
 *
 * @example A drop outlives the controller: another one on the same database sees it
 * ```ts
 * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const path = `${await Deno.makeTempDir()}/plm.db`;
 * {
 *   using db = openDatabase(path);
 *   const autonomy = new AutonomyController(db, { defaultLevel: "L4" }, { demoteAfter: 2 });
 *   autonomy.recordOutcome("a-1", "failed");
 *   autonomy.recordOutcome("a-1", "failed");
 * }
 * using db = openDatabase(path); // after a restart, or in another process
 * const autonomy = new AutonomyController(db, { defaultLevel: "L4" }, { demoteAfter: 2 });
 * assert.equal(autonomy.levelOf("a-1"), "L3");
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
  readonly #db: Database;
  readonly #state: AutonomyStateRepository;

  /**
   * Validates the policy and options.
   *
   * @param db The database holding the agents' drops and counts (from `openDatabase`).
   * @param policy The autonomy policy.
   * @param options Clock, drop threshold and floor, approval spec, hook.
   * @throws {PolicyError} `ERR_POLICY_INVALID` when the policy is invalid.
   * @throws {RangeError} When `demoteAfter`, `floor` or `approval` is invalid.
   */
  constructor(db: Database, policy: AutonomyPolicy, options?: AutonomyControllerOptions) {
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
    this.#db = db;
    this.#state = new AutonomyStateRepository(db);
  }

  /**
   * The validated autonomy policy.
   *
   * @example Read the levels back
   * ```ts
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, {
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
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, { defaultLevel: "L2" });
   * assert.equal(autonomy.levelOf("anyone"), "L2");
   * ```
   */
  levelOf(agentId: string): AutonomyLevel {
    return levelAt(cappedRank(this.#state.read(agentId), this.#configured(agentId)));
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
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, {
   *   defaultLevel: "L0",
   *   agents: { "a-1": { level: "L4", actions: [{ pattern: "bom.delete", level: "L2" }] } },
   * });
   * assert.equal(autonomy.levelFor("a-1", "bom.delete"), "L2");
   * assert.equal(autonomy.levelFor("a-1", "bom.update"), "L4");
   * ```
   */
  levelFor(agentId: string, action: string): AutonomyLevel {
    const agent = this.#agents.get(agentId);
    const entry = agent?.actions.find((candidate) => candidate.match(action));
    return levelAt(
      cappedRank(this.#state.read(agentId), entry?.level ?? agent?.level ?? this.#default),
    );
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
   * import { AutonomyController, type Verdict, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, { defaultLevel: "L2" });
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
   * @throws {PlmError} `ERR_STORE_BUSY` when another connection holds the write lock past
   * the busy timeout.
   *
   * @example Success resets the count
   * ```ts
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, { defaultLevel: "L3" }, { demoteAfter: 2 });
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
      // The hot path: a success with no streak to reset writes nothing, so takes no write lock.
      const state = this.#state.read(agentId);
      if (state.streak === 0) return levelAt(cappedRank(state, this.#configured(agentId)));
    }
    return this.#step(
      agentId,
      (state, level) =>
        decideOutcome(state, outcome !== "succeeded", level, {
          demoteAfter: this.#demoteAfter,
          floor: this.#floor,
        }),
      "demoted",
    );
  }

  /**
   * The agent's current count of consecutive `denied`/`failed` outcomes.
   *
   * @param agentId The agent.
   * @returns The count, 0 after a success or a drop.
   *
   * @example Count failures
   * ```ts
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, { defaultLevel: "L3" });
   * autonomy.recordOutcome("a-1", "denied");
   * assert.equal(autonomy.consecutiveFailures("a-1"), 1);
   * ```
   */
  consecutiveFailures(agentId: string): number {
    return this.#state.read(agentId).streak;
  }

  /**
   * Lifts automatic drops of an agent (a human decision) and resets its
   * count. Calls `onLevelChange` when the level changes.
   *
   * @param agentId The agent.
   * @returns The agent's level afterwards.
   * @throws {PlmError} `ERR_STORE_BUSY` when another connection holds the write lock past
   * the busy timeout.
   *
   * @example Restore a dropped agent
   * ```ts
   * import { AutonomyController, openDatabase } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * const autonomy = new AutonomyController(db, { defaultLevel: "L4" }, { demoteAfter: 1 });
   * assert.equal(autonomy.recordOutcome("a-1", "failed"), "L3");
   * assert.equal(autonomy.restore("a-1"), "L4");
   * ```
   */
  restore(agentId: string): AutonomyLevel {
    return this.#step(agentId, decideRestore, "restored");
  }

  /** The agent's configured level rank (or the default's). */
  #configured(agentId: string): number {
    return this.#agents.get(agentId)?.level ?? this.#default;
  }

  /**
   * Reads the agent's state, applies `rule`, writes what it decided and
   * reports a level change, all in one transaction: the stored change and
   * what `onLevelChange` writes commit together or not at all.
   */
  #step(
    agentId: string,
    rule: (state: AutonomyState, level: number) => AutonomyStep,
    cause: AutonomyChangeCause,
  ): AutonomyLevel {
    return this.#db.transaction(() => {
      const state = this.#state.read(agentId);
      const { next, from, to } = rule(state, this.#configured(agentId));
      const at = this.#clock.now();
      if (next !== undefined) this.#state.write(agentId, next, state, at);
      if (to !== from) {
        const [before, after] = [levelAt(from), levelAt(to)];
        this.#onLevelChange?.({
          agentId,
          from: before,
          to: after,
          cause,
          reason: cause === "demoted"
            ? `Agent ${agentId} dropped from ${before} to ${after} after ${this.#demoteAfter} consecutive denials or failures`
            : `Agent ${agentId} restored from ${before} to ${after}`,
          at,
        });
      }
      return levelAt(to);
    });
  }
}
