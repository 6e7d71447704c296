/**
 * The autonomy controller: resolves an agent's level for an action, folds it
 * into verdicts, and drops the agent's level after repeated denials or
 * failures.
 *
 * @module
 */
import { type Clock, PlmError, systemClock } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import type { AutonomyRow, Store, StoreTx } from "../store/port.ts";
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
  NO_AUTONOMY_STATE,
} from "./_rules.ts";

/**
 * Outcomes of an agent's action, fed to {@link AutonomyController.recordOutcome}.
 *
 * @example Record each outcome of an agent's actions
 * ```ts
 * import {
 *   AUTONOMY_OUTCOMES,
 *   AutonomyController,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const autonomy = new AutonomyController(store, { defaultLevel: "L4" }, { demoteAfter: 5 });
 * for (const outcome of AUTONOMY_OUTCOMES) await autonomy.recordOutcome("a-1", outcome);
 * assert.equal(await autonomy.levelOf("a-1"), "L4");
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
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   store,
 *   { defaultLevel: "L4" },
 *   { demoteAfter: 1, onLevelChange: (change) => changes.push(change) },
 * );
 * await autonomy.recordOutcome("a-1", "failed");
 * await autonomy.restore("a-1");
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
   * Called after every level change, with the change and the transaction
   * that stores it (and awaited): what it writes through `tx` (an audit
   * record) commits with the change or not at all.
   *
   * @default {undefined}
   */
  readonly onLevelChange?: (change: AutonomyLevelChange, tx: StoreTx) => unknown;
}

/** Options of a call that reads or writes an agent's state: the transaction to join. */
export interface AutonomyCallOptions {
  /**
   * Read or write in this transaction; without it, the call opens its own.
   *
   * @default {undefined}
   */
  readonly tx?: StoreTx;
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
 * and any automatic drop of its level live in the store (`autonomy_state`,
 * ADR 0007), so every connection and process on that store sees the same
 * level, and a restart changes nothing. Each change is one transaction (its
 * own, or the caller's `tx`) that first locks the agent
 * (`GovernanceRepository.lockAgent`), so concurrent writers of one agent take
 * turns on every engine.
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
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const changes: AutonomyLevelChange[] = [];
 * const autonomy = new AutonomyController(
 *   store,
 *   { defaultLevel: "L1", agents: { "a-1": { level: "L4" } } },
 *   { clock: new FakeClock(0), demoteAfter: 2, onLevelChange: (c) => changes.push(c) },
 * );
 * const allow: Verdict = {
 *   decision: "allow",
 *   matchedRuleIds: ["r1"],
 *   reason: "Allowed by rule r1",
 *   policyVersion: "v1",
 * };
 * assert.equal((await autonomy.fold(allow, "a-1", "bom.update")).decision, "allow");
 *
 * await autonomy.recordOutcome("a-1", "failed");
 * await autonomy.recordOutcome("a-1", "denied");
 * assert.equal(await autonomy.levelOf("a-1"), "L3");
 * assert.equal(changes[0]?.to, "L3");
 * assert.equal((await autonomy.fold(allow, "a-1", "bom.update")).notify, true);
 * ```
 *
 * @example A drop outlives the controller: another one on the same store sees it
 * ```ts
 * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const path = `${await Deno.makeTempDir()}/plm.store`;
 * {
 *   await using store = await openStore(path);
 *   const autonomy = new AutonomyController(store, { defaultLevel: "L4" }, { demoteAfter: 2 });
 *   await autonomy.recordOutcome("a-1", "failed");
 *   await autonomy.recordOutcome("a-1", "failed");
 * }
 * await using store = await openStore(path); // after a restart, or in another process
 * const autonomy = new AutonomyController(store, { defaultLevel: "L4" }, { demoteAfter: 2 });
 * assert.equal(await autonomy.levelOf("a-1"), "L3");
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
  readonly #onLevelChange:
    | ((change: AutonomyLevelChange, tx: StoreTx) => unknown)
    | undefined;
  readonly #store: Store;

  /**
   * Validates the policy and options.
   *
   * @param store The store holding the agents' drops and streaks (from `openStore`).
   * @param policy The autonomy policy.
   * @param options Clock, drop threshold and floor, approval spec, hook.
   * @throws {PolicyError} `ERR_POLICY_INVALID` when the policy is invalid.
   * @throws {RangeError} When `demoteAfter`, `floor` or `approval` is invalid.
   */
  constructor(store: Store, policy: AutonomyPolicy, options?: AutonomyControllerOptions) {
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
    this.#store = store;
  }

  /**
   * The validated autonomy policy.
   *
   * @example Read the levels back
   * ```ts
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, {
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
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, { defaultLevel: "L2" });
   * assert.equal(await autonomy.levelOf("anyone"), "L2");
   * ```
   */
  async levelOf(agentId: string, options: AutonomyCallOptions = {}): Promise<AutonomyLevel> {
    const state = await this.#reading(options.tx, (tx) => readState(tx, agentId));
    return levelAt(cappedRank(state, this.#configured(agentId)));
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
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, {
   *   defaultLevel: "L0",
   *   agents: { "a-1": { level: "L4", actions: [{ pattern: "bom.delete", level: "L2" }] } },
   * });
   * assert.equal(await autonomy.levelFor("a-1", "bom.delete"), "L2");
   * assert.equal(await autonomy.levelFor("a-1", "bom.update"), "L4");
   * ```
   */
  async levelFor(
    agentId: string,
    action: string,
    options: AutonomyCallOptions = {},
  ): Promise<AutonomyLevel> {
    const agent = this.#agents.get(agentId);
    const entry = agent?.actions.find((candidate) => candidate.match(action));
    const state = await this.#reading(options.tx, (tx) => readState(tx, agentId));
    return levelAt(cappedRank(state, entry?.level ?? agent?.level ?? this.#default));
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
   * import { AutonomyController, type Verdict, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, { defaultLevel: "L2" });
   * const allow: Verdict = {
   *   decision: "allow",
   *   matchedRuleIds: [],
   *   reason: "Allowed",
   *   policyVersion: "v",
   * };
   * const folded = await autonomy.fold(allow, "a-1", "bom.update");
   * assert.equal(folded.decision, "require_approval");
   * assert.equal(folded.autonomyLevel, "L2");
   * ```
   */
  async fold(
    verdict: Verdict,
    agentId: string,
    action: string,
    options: AutonomyCallOptions = {},
  ): Promise<AutonomyVerdict> {
    const level = await this.levelFor(agentId, action, options);
    return foldAutonomy(verdict, level, { approval: this.#approval });
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
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, { defaultLevel: "L3" }, { demoteAfter: 2 });
   * await autonomy.recordOutcome("a-1", "failed");
   * await autonomy.recordOutcome("a-1", "succeeded");
   * assert.equal(await autonomy.recordOutcome("a-1", "failed"), "L3");
   * assert.equal(await autonomy.recordOutcome("a-1", "failed"), "L2");
   * ```
   */
  async recordOutcome(
    agentId: string,
    outcome: AutonomyOutcome,
    options: AutonomyCallOptions = {},
  ): Promise<AutonomyLevel> {
    if (!AUTONOMY_OUTCOMES.includes(outcome)) {
      throw new RangeError(`Unknown outcome: ${String(outcome)}`);
    }
    if (outcome === "succeeded" && options.tx === undefined) {
      // The hot path: a success with no streak to reset writes nothing, so takes no write lock.
      const state = await this.#store.read((tx) => readState(tx, agentId));
      if (state.streak === 0) return levelAt(cappedRank(state, this.#configured(agentId)));
    }
    return await this.#step(
      options.tx,
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
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, { defaultLevel: "L3" });
   * await autonomy.recordOutcome("a-1", "denied");
   * assert.equal(await autonomy.consecutiveFailures("a-1"), 1);
   * ```
   */
  async consecutiveFailures(agentId: string, options: AutonomyCallOptions = {}): Promise<number> {
    return (await this.#reading(options.tx, (tx) => readState(tx, agentId))).streak;
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
   * import { AutonomyController, openStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const autonomy = new AutonomyController(store, { defaultLevel: "L4" }, { demoteAfter: 1 });
   * assert.equal(await autonomy.recordOutcome("a-1", "failed"), "L3");
   * assert.equal(await autonomy.restore("a-1"), "L4");
   * ```
   */
  async restore(agentId: string, options: AutonomyCallOptions = {}): Promise<AutonomyLevel> {
    return await this.#step(options.tx, agentId, decideRestore, "restored");
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
  /** Runs `fn` in `tx`, or in a read transaction of its own. */
  #reading<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.read(fn) : fn(tx);
  }

  #step(
    joined: StoreTx | undefined,
    agentId: string,
    rule: (state: AutonomyState, level: number) => AutonomyStep,
    cause: AutonomyChangeCause,
  ): Promise<AutonomyLevel> {
    const step = async (tx: StoreTx): Promise<AutonomyLevel> => {
      // Read-modify-write under the agent's lock: on PostgreSQL, two processes recording
      // outcomes of one agent take turns, so no failure is counted twice or lost.
      await tx.governance.lockAgent(agentId);
      const state = await readState(tx, agentId);
      const { next, from, to } = rule(state, this.#configured(agentId));
      const at = this.#clock.now();
      if (next !== undefined) await writeState(tx, agentId, next, state, at);
      if (to !== from) {
        const [before, after] = [levelAt(from), levelAt(to)];
        await this.#onLevelChange?.({
          agentId,
          from: before,
          to: after,
          cause,
          reason: cause === "demoted"
            ? `Agent ${agentId} dropped from ${before} to ${after} after ${this.#demoteAfter} consecutive denials or failures`
            : `Agent ${agentId} restored from ${before} to ${after}`,
          at,
        }, tx);
      }
      return levelAt(to);
    };
    return joined === undefined ? this.#store.transaction(step) : step(joined);
  }
}

/** The agent's state, {@link NO_AUTONOMY_STATE} when it has no row. */
async function readState(tx: StoreTx, agentId: string): Promise<AutonomyState> {
  const row: AutonomyRow | undefined = await tx.governance.autonomy(agentId);
  if (row === undefined) return NO_AUTONOMY_STATE;
  const cap = row.capLevel === null ? null : AUTONOMY_LEVELS.indexOf(row.capLevel as AutonomyLevel);
  if (cap === -1) {
    // Fail closed: an unknown cap is not silently lifted.
    throw new PlmError("ERR_INTERNAL", `Cannot read agent ${agentId}'s cap ${row.capLevel}`);
  }
  return { cap, streak: row.streak, version: row.version };
}

/**
 * Writes the agent's state if it is still at `expected.version` (0: no row).
 *
 * @throws {PlmError} `ERR_INTERNAL` when another writer changed the row since it was read.
 */
async function writeState(
  tx: StoreTx,
  agentId: string,
  next: Omit<AutonomyState, "version">,
  expected: AutonomyState,
  at: number,
): Promise<void> {
  const capLevel = next.cap === null ? null : AUTONOMY_LEVELS[next.cap]!;
  const changed = await tx.governance.writeAutonomy(
    agentId,
    { capLevel, streak: next.streak },
    expected.version,
    Math.trunc(at),
  );
  if (!changed) {
    throw new PlmError(
      "ERR_INTERNAL",
      `Cannot update the autonomy state of agent ${agentId} as another writer changed it`,
    );
  }
}
