/**
 * Policies in the store: {@link PolicyStore} keeps numbered versions of the
 * policy set (each audited with its content hash), {@link diffPolicySets}
 * compares two of them rule by rule, and {@link followPolicies} keeps a
 * control plane on the active version.
 *
 * @module
 */
import {
  canonicalJson,
  checkText,
  type Clock,
  formatIssues,
  type Identity,
  INPUT_LIMITS,
  type JsonValue,
  PlmError,
  type SchemaIssue,
  sha256Hex,
  systemClock,
  systemTimer,
  type Timer,
  unsafeTextReason,
} from "../../shared/mod.ts";
import { actorOf } from "../audit/actor.ts";
import { AuditLog } from "../audit/audit_log.ts";
import type { AuditActor, AuditSink } from "../audit/types.ts";
import { requireIdentity } from "../identity/context.ts";
import type { PolicyVersionRow, Store, StoreTx } from "../store/port.ts";
import type { PolicyEngine } from "./engine.ts";
import { loadPolicySet, type PolicySet } from "./policy.ts";
import { PolicyError } from "./policy_error.ts";

/** One stored version of the policy set. */
export interface StoredPolicy {
  /** 1, 2, 3, ...: the highest is in force. */
  readonly version: number;
  /** The SHA-256 of the set's canonical JSON (its `policySetVersion`). */
  readonly hash: string;
  /** The validated, frozen policy set. */
  readonly policySet: PolicySet;
  /** When it was applied, epoch ms. */
  readonly appliedAt: number;
  /** The subject of who applied it. */
  readonly appliedBy: string;
  /** Why, or `null`. */
  readonly reason: string | null;
}

/** Options for {@link PolicyStore}. */
export interface PolicyStoreOptions {
  /**
   * Where `policy.applied` is recorded, in the transaction that stores the version.
   *
   * @default {a new AuditLog on the store}
   */
  readonly audit?: AuditSink;
  /**
   * The clock `appliedAt` is read from.
   *
   * @default {systemClock}
   */
  readonly clock?: Clock;
}

/** Options for {@link PolicyStore.apply}. */
export interface PolicyApplyOptions {
  /**
   * Who applies it.
   *
   * @default {the identity bound to the async context}
   */
  readonly identity?: Identity;
  /**
   * Why, at most `INPUT_LIMITS.textLength` characters.
   *
   * @default {null}
   */
  readonly reason?: string;
  /** A transaction to join; without it, `apply` opens its own. */
  readonly tx?: StoreTx;
}

/** The result of {@link PolicyStore.apply}. */
export interface PolicyApplyResult {
  /** The active version after the call: the new one, or the one that already had this content. */
  readonly policy: StoredPolicy;
  /** Whether a new version was stored (`false` when the content equals the active one). */
  readonly changed: boolean;
  /** The version that was active before, if any. */
  readonly previous: StoredPolicy | undefined;
}

/** Rule-level differences of two policy sets, from {@link diffPolicySets}. */
export interface PolicyDiff {
  /** The content hash of the first set. */
  readonly from: string;
  /** The content hash of the second set. */
  readonly to: string;
  /** Ids of rules only in the second set, in its order. */
  readonly added: readonly string[];
  /** Ids of rules only in the first set, in its order. */
  readonly removed: readonly string[];
  /** Ids of rules in both whose content differs, in the second set's order. */
  readonly changed: readonly string[];
  /** Whether the rules common to both are in another order (the order of matched rule ids). */
  readonly reordered: boolean;
  /** Whether the set's `id` or `description` differ. */
  readonly metadataChanged: boolean;
}

/** How many times {@link PolicyStore.apply} takes the next version number after losing a race. */
const APPLY_ATTEMPTS = 16;

/**
 * The versions of the policy set, kept in the store so that every process
 * (servers, workers) follows the same one. A version is stored only when its
 * content differs from the active one, with an audit record `policy.applied`
 * carrying its content hash, in the same transaction. Two concurrent applies
 * never get the same number: the loser takes the next.
 *
 * @example Apply a policy set twice: the second apply changes nothing
 * ```ts
 * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const policies = new PolicyStore(store);
 * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
 * const set = { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] };
 * const first = await policies.apply(set, { identity, reason: "initial" });
 * assert.deepEqual([first.changed, first.policy.version], [true, 1]);
 * const again = await policies.apply(set, { identity });
 * assert.deepEqual([again.changed, again.policy.version], [false, 1]);
 * assert.equal((await policies.active())?.policySet.rules[0]?.id, "read");
 * ```
 */
export class PolicyStore {
  readonly #store: Store;
  readonly #audit: AuditSink;
  readonly #clock: Clock;

  /**
   * Creates the service on an open store.
   *
   * @param store The store, from `openStore`.
   * @param options The audit sink and the clock.
   */
  constructor(store: Store, options: PolicyStoreOptions = {}) {
    const { clock = systemClock } = options;
    this.#store = store;
    this.#clock = clock;
    this.#audit = options.audit ?? new AuditLog(store, { clock });
  }

  /**
   * Validates a policy set and stores it as the next version, unless its
   * content hash equals the active version's (then nothing is written).
   * The version and its `policy.applied` audit record (actor: who applied;
   * `data`: version, hash, previous hash, rule count) commit together.
   *
   * @param policySet The policy set: an object, or JSON text (a policy file's).
   * @param options Who applies it and why; a transaction to join.
   * @returns The active version after the call, whether it is new, and the one before.
   * @throws {PolicyError} `ERR_POLICY_INVALID` naming each bad field, as `loadPolicySet`
   * does, and for text holding U+0000 or a lone surrogate.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when the set's JSON is longer than
   * `JSON_LIMITS.maxLength` or `reason` is not acceptable text; `ERR_IDENTITY_REQUIRED`
   * when no identity is given or bound.
   *
   * @example A refused set names the field
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const policies = new PolicyStore(store);
   * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
   * await assert.rejects(
   *   policies.apply({ rules: [{ id: "r", effect: "permit", actions: ["*"] }] }, { identity }),
   *   { code: "ERR_POLICY_INVALID", message: /rules\[0\]\.effect/ },
   * );
   * assert.equal(await policies.active(), undefined);
   * ```
   */
  async apply(policySet: unknown, options: PolicyApplyOptions = {}): Promise<PolicyApplyResult> {
    const set = validatePolicyContent(policySet);
    const content = canonicalJson(set as unknown as JsonValue, { field: "policySet" });
    const hash = sha256Hex(content);
    const identity = requireIdentity(options.identity, { action: "apply a policy set" });
    const reason = options.reason === undefined
      ? null
      : checkText("reason", options.reason, INPUT_LIMITS.textLength);
    const actor = actorOf(identity);
    const write = async (tx: StoreTx): Promise<PolicyApplyResult> => {
      for (let attempt = 0; attempt < APPLY_ATTEMPTS; attempt++) {
        const active = await tx.policies.active();
        const previous = active === undefined ? undefined : storedOf(active);
        if (active?.hash === hash) return { policy: previous!, changed: false, previous };
        const row: PolicyVersionRow = {
          version: (active?.version ?? 0) + 1,
          content,
          hash,
          appliedAt: this.#clock.now(),
          appliedBy: identity.subject,
          reason,
        };
        // Another apply took this number first (PostgreSQL): read the new active one, retry.
        if (!(await tx.policies.insert(row))) continue;
        await this.#audit.append({
          actor,
          action: "policy.applied",
          resource: `policy:${set.id ?? "default"}`,
          outcome: "applied",
          ...(reason === null ? {} : { reason }),
          data: {
            version: row.version,
            hash,
            previousHash: active?.hash ?? null,
            rules: set.rules.length,
          },
        }, { tx });
        return { policy: { ...storedOf(row), policySet: set }, changed: true, previous };
      }
      throw new PlmError(
        "ERR_STORE_BUSY",
        `Cannot apply the policy set: ${APPLY_ATTEMPTS} concurrent applies took the next version first`,
      );
    };
    return options.tx === undefined
      ? await this.#store.transaction(write)
      : await write(options.tx);
  }

  /**
   * The active version: the one with the highest number.
   *
   * @param options A transaction to read in.
   * @returns The active version, or `undefined` when none was applied.
   * @throws {PlmError} `ERR_STORE_CORRUPT` when the stored text no longer has its hash
   * or is not a valid policy set.
   *
   * @example Nothing is active in a new store
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * assert.equal(await new PolicyStore(store).active(), undefined);
   * ```
   */
  async active(options: { tx?: StoreTx } = {}): Promise<StoredPolicy | undefined> {
    const row = await this.#reading(options.tx, (tx) => tx.policies.active());
    return row === undefined ? undefined : storedOf(row);
  }

  /**
   * The active policy set, for a process that must not run without one
   * (`plm serve`, `plm worker`): `(await policyStore.require()).policySet`.
   *
   * @param options A transaction to read in.
   * @returns The active version.
   * @throws {PlmError} `ERR_POLICY_NOT_FOUND` when none was applied, saying how to apply one.
   *
   * @example A store with no policy is refused
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * await assert.rejects(new PolicyStore(store).require(), {
   *   code: "ERR_POLICY_NOT_FOUND",
   *   message: /plm policy apply/,
   * });
   * ```
   */
  async require(options: { tx?: StoreTx } = {}): Promise<StoredPolicy> {
    const active = await this.active(options);
    if (active !== undefined) return active;
    throw new PlmError(
      "ERR_POLICY_NOT_FOUND",
      `No policy set in the store at ${this.#store.location}: apply one with ` +
        `'plm policy apply FILE --db LOCATION'`,
    );
  }

  /**
   * One version by number.
   *
   * @param version The version number.
   * @param options A transaction to read in.
   * @returns The version, or `undefined` when there is none with that number.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `version` is not a positive integer.
   *
   * @example Read version 1 after a second apply
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const policies = new PolicyStore(store);
   * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
   * await policies.apply({ rules: [] }, { identity });
   * await policies.apply({ rules: [{ id: "r", effect: "allow", actions: ["**"] }] }, { identity });
   * assert.deepEqual((await policies.byVersion(1))?.policySet.rules, []);
   * assert.equal(await policies.byVersion(3), undefined);
   * ```
   */
  async byVersion(
    version: number,
    options: { tx?: StoreTx } = {},
  ): Promise<StoredPolicy | undefined> {
    checkVersion("version", version);
    const row = await this.#reading(options.tx, (tx) => tx.policies.byVersion(version));
    return row === undefined ? undefined : storedOf(row);
  }

  /**
   * The newest versions, newest first.
   *
   * @param options How many at most (1 to `INPUT_LIMITS.listLimit`) and a transaction.
   * @returns The versions, newest first.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `limit` is out of range.
   *
   * @example List the versions
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const policies = new PolicyStore(store);
   * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
   * await policies.apply({ rules: [] }, { identity });
   * await policies.apply({ id: "v2", rules: [] }, { identity });
   * assert.deepEqual((await policies.history()).map((p) => p.version), [2, 1]);
   * ```
   */
  async history(options: { limit?: number; tx?: StoreTx } = {}): Promise<StoredPolicy[]> {
    const { limit = 20 } = options;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > INPUT_LIMITS.listLimit) {
      throw new PlmError(
        "ERR_INVALID_ARGUMENT",
        `Invalid limit: expected an integer from 1 to ${INPUT_LIMITS.listLimit}`,
      );
    }
    const rows = await this.#reading(options.tx, (tx) => tx.policies.history(limit));
    return rows.map(storedOf);
  }

  /**
   * Rule-level differences between two stored versions.
   *
   * @param a The first version number.
   * @param b The second version number.
   * @returns What {@link diffPolicySets} says of their sets.
   * @throws {PlmError} `ERR_POLICY_NOT_FOUND` naming the version that is not stored;
   * `ERR_INVALID_ARGUMENT` when a number is not a positive integer.
   *
   * @example What version 2 changed
   * ```ts
   * import { openStore, PolicyStore } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * await using store = await openStore(":memory:");
   * const policies = new PolicyStore(store);
   * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
   * await policies.apply({ rules: [{ id: "a", effect: "allow", actions: ["bom.read"] }] }, { identity });
   * await policies.apply({ rules: [{ id: "b", effect: "deny", actions: ["bom.delete"] }] }, { identity });
   * const diff = await policies.diff(1, 2);
   * assert.deepEqual([diff.added, diff.removed, diff.changed], [["b"], ["a"], []]);
   * ```
   */
  async diff(a: number, b: number): Promise<PolicyDiff> {
    checkVersion("a", a);
    checkVersion("b", b);
    const [first, second] = await this.#reading(undefined, async (tx) => [
      await tx.policies.byVersion(a),
      await tx.policies.byVersion(b),
    ]);
    for (const [n, row] of [[a, first], [b, second]] as const) {
      if (row === undefined) {
        throw new PlmError("ERR_POLICY_NOT_FOUND", `No policy version ${n} in the store`);
      }
    }
    return diffPolicySets(storedOf(first!).policySet, storedOf(second!).policySet);
  }

  #reading<T>(tx: StoreTx | undefined, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return tx === undefined ? this.#store.read(fn) : fn(tx);
  }
}

/**
 * Validates a policy set for storing: what `loadPolicySet` checks, and no
 * string holding U+0000 or a lone surrogate (text the store and the audit
 * log keep exactly). A top-level `$schema` string (an editor's link to
 * `docs/policy.schema.json`) is dropped: it is not part of the policy or its hash.
 *
 * @param input The policy set, as an object or JSON text.
 * @returns The validated, frozen set.
 * @throws {PolicyError} `ERR_POLICY_INVALID` naming each bad field.
 *
 * @example U+0000 in a rule id is refused, naming the field
 * ```ts
 * import { validatePolicyContent } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => validatePolicyContent({ rules: [{ id: "r\0", effect: "allow", actions: ["*"] }] }),
 *   { code: "ERR_POLICY_INVALID", message: /rules\[0\]\.id: Text contains U\+0000/ },
 * );
 * ```
 */
export function validatePolicyContent(input: unknown): PolicySet {
  const set = loadPolicySet(withoutSchemaKey(input));
  const issues: SchemaIssue[] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (typeof value === "string") {
      const reason = unsafeTextReason(value);
      if (reason !== undefined) issues.push({ path, message: `Text ${reason}` });
    } else if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, [...path, i]));
    } else if (value !== null && typeof value === "object") {
      for (const [key, item] of Object.entries(value)) {
        const keyReason = unsafeTextReason(key);
        if (keyReason !== undefined) issues.push({ path, message: `Key ${keyReason}` });
        walk(item, [...path, key]);
      }
    }
  };
  walk(set, []);
  if (issues.length > 0) {
    throw new PolicyError("ERR_POLICY_INVALID", `Invalid policy set: ${formatIssues(issues)}`, {
      issues,
    });
  }
  return set;
}

/**
 * The input without a top-level `$schema` string (an editor's link to the
 * JSON Schema, not part of the policy), parsing JSON text first; anything else
 * is returned as is, for the loader to judge.
 */
function withoutSchemaKey(input: unknown): unknown {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch {
      return input; // the loader reports the parse error
    }
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  if (
    !Object.hasOwn(value, "$schema") || typeof (value as { $schema: unknown }).$schema !== "string"
  ) {
    return value;
  }
  const { $schema: _, ...rest } = value as Record<string, unknown>;
  return rest;
}

/**
 * Compares two policy sets rule by rule (rules are matched by id).
 *
 * @param a The first set.
 * @param b The second set.
 * @returns The added, removed and changed rule ids, and whether order or metadata changed.
 *
 * @example A rule widened, another added
 * ```ts
 * import { diffPolicySets } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const diff = diffPolicySets(
 *   { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
 *   {
 *     rules: [
 *       { id: "read", effect: "allow", actions: ["bom.*"] },
 *       { id: "no-delete", effect: "deny", actions: ["bom.delete"] },
 *     ],
 *   },
 * );
 * assert.deepEqual(diff.added, ["no-delete"]);
 * assert.deepEqual(diff.changed, ["read"]);
 * assert.deepEqual(diff.removed, []);
 * ```
 */
export function diffPolicySets(a: PolicySet, b: PolicySet): PolicyDiff {
  const json = (value: unknown) => canonicalJson(value as JsonValue, { field: "policySet" });
  const before = new Map(a.rules.map((rule) => [rule.id, json(rule)]));
  const after = new Map(b.rules.map((rule) => [rule.id, json(rule)]));
  const common = (set: PolicySet, other: Map<string, string>) =>
    set.rules.filter((rule) => other.has(rule.id)).map((rule) => rule.id);
  return {
    from: sha256Hex(json(a)),
    to: sha256Hex(json(b)),
    added: b.rules.filter((rule) => !before.has(rule.id)).map((rule) => rule.id),
    removed: a.rules.filter((rule) => !after.has(rule.id)).map((rule) => rule.id),
    changed: b.rules.filter((rule) =>
      before.has(rule.id) && before.get(rule.id) !== after.get(rule.id)
    )
      .map((rule) => rule.id),
    reordered: common(a, after).join(",") !== common(b, before).join(","),
    metadataChanged: a.id !== b.id || a.description !== b.description,
  };
}

/** What {@link followPolicies} needs of a control plane. */
export interface PolicyFollowerTarget {
  /** The engine in force (its `version` is the content hash). */
  readonly policy: PolicyEngine;
  /** Replaces the policy set. */
  setPolicies(policies: PolicySet, actor?: AuditActor): Promise<void>;
}

/** Options for {@link followPolicies}. */
export interface FollowPoliciesOptions {
  /**
   * How often the active version is checked, in ms.
   *
   * @default {5000}
   */
  readonly intervalMs?: number;
  /**
   * The timer the checks are scheduled on.
   *
   * @default {systemTimer}
   */
  readonly timer?: Timer;
  /**
   * Told of a failed check (the store unreachable, say); checks go on.
   *
   * @default {console.error}
   */
  readonly onError?: (error: unknown) => void;
  /**
   * Told after the control plane switched to another version.
   *
   * @default {undefined}
   */
  readonly onChange?: (policy: StoredPolicy) => void;
}

/** A running {@link followPolicies}; stop it when the process stops. */
export interface PolicyFollower extends AsyncDisposable {
  /** Checks now; resolves `true` when the control plane switched to another version. */
  check(): Promise<boolean>;
  /** Stops the checks and waits for the one in flight. Idempotent. */
  stop(): Promise<void>;
}

/** The actor of the switches {@link followPolicies} makes. */
const FOLLOWER: AuditActor = { subject: "system:policy-follower", kind: "system" };

/**
 * Keeps a control plane on the store's active policy version: every
 * `intervalMs` it reads the active version and, when its hash differs from
 * the control plane's (`controlPlane.policy.version`), calls
 * `controlPlane.setPolicies` (audited `policy.updated` by
 * `system:policy-follower`). It does not check at once: load the active set
 * first with {@link PolicyStore.require}, or call `check()`.
 *
 * @param controlPlane The control plane to keep up to date.
 * @param policyStore Where the versions are.
 * @param options The interval, the timer, and what to tell of errors and changes.
 * @returns The follower: `check()` now, `stop()` when done.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` when `intervalMs` is not a positive integer.
 *
 * @example A new version reaches the control plane at the next check
 * ```ts
 * import {
 *   ControlPlane, FakeClock, FakeTimers, followPolicies, openStore, PolicyStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const clock = new FakeClock(0);
 * const timers = new FakeTimers(clock);
 * const policyStore = new PolicyStore(store, { clock });
 * const cp = new ControlPlane(store, { clock, policies: { rules: [] } });
 * await using follower = followPolicies(cp, policyStore, { intervalMs: 2_000, timer: timers.timer });
 * const identity = { subject: "ops", actorKind: "human", roles: [], scopes: [] } as const;
 * const { policy } = await policyStore.apply(
 *   { rules: [{ id: "read", effect: "allow", actions: ["bom.read"] }] },
 *   { identity },
 * );
 * assert.notEqual(cp.policy.version, policy.hash);
 * await timers.advance(2_000);
 * await follower.check(); // waits for the check the timer started
 * assert.equal(cp.policy.version, policy.hash);
 * ```
 */
export function followPolicies(
  controlPlane: PolicyFollowerTarget,
  policyStore: PolicyStore,
  options: FollowPoliciesOptions = {},
): PolicyFollower {
  const {
    intervalMs = 5_000,
    timer = systemTimer,
    onError = (error: unknown) => console.error("policy follower:", error),
    onChange,
  } = options;
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 1) {
    throw new PlmError("ERR_INVALID_ARGUMENT", "Invalid intervalMs: expected a positive integer");
  }
  let stopped = false;
  let cancel: (() => void) | undefined;
  let chain: Promise<unknown> = Promise.resolve();
  const checkOnce = async (): Promise<boolean> => {
    const active = await policyStore.active();
    if (stopped || active === undefined || active.hash === controlPlane.policy.version) {
      return false;
    }
    await controlPlane.setPolicies(active.policySet, FOLLOWER);
    onChange?.(active);
    return true;
  };
  const check = (): Promise<boolean> => {
    // One check at a time: a manual check waits for the scheduled one, and vice versa.
    const next = chain.then(checkOnce, checkOnce);
    chain = next.catch(() => {});
    return next;
  };
  const schedule = () => {
    if (stopped) return;
    cancel = timer(() => {
      cancel = undefined;
      check().catch(onError).finally(schedule);
    }, intervalMs);
  };
  schedule();
  const stop = async () => {
    stopped = true;
    cancel?.();
    cancel = undefined;
    await chain;
  };
  return { check, stop, [Symbol.asyncDispose]: stop };
}

function storedOf(row: PolicyVersionRow): StoredPolicy {
  if (sha256Hex(row.content) !== row.hash) {
    throw new PlmError(
      "ERR_STORE_CORRUPT",
      `Policy version ${row.version} does not match its hash ${row.hash}`,
    );
  }
  let policySet: PolicySet;
  try {
    policySet = loadPolicySet(row.content);
  } catch (cause) {
    throw new PlmError(
      "ERR_STORE_CORRUPT",
      `Policy version ${row.version} is not a valid policy set: ${(cause as Error).message}`,
      { cause },
    );
  }
  return {
    version: row.version,
    hash: row.hash,
    policySet,
    appliedAt: row.appliedAt,
    appliedBy: row.appliedBy,
    reason: row.reason,
  };
}

function checkVersion(field: string, version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new PlmError("ERR_INVALID_ARGUMENT", `Invalid ${field}: expected a positive integer`);
  }
}
