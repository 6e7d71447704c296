/**
 * The index behind `PolicyEngine.decide`: which rules can match a request,
 * found without looking at the others.
 *
 * Every rule is filed under exactly one of its fields, a field the request
 * must satisfy for the rule to match, chosen as the most selective one: its
 * action patterns, its resource patterns, its roles, its tenants, or one of
 * its `eq`/`in` conditions. A request probes every field's index once, so a
 * rule is a candidate only if the field it is filed under already fits; the
 * engine then checks the candidate whole. Rules with no usable field (an
 * action of `**` and nothing else) are filed under their actions, where
 * they are tested on every request.
 *
 * Choosing the field: each rule's options are scored by how many rules share
 * the same keys (the bucket a request would scan), and the cheapest wins, ties
 * going to the actions. With 1,000 rules that share one action and differ by
 * resource prefix, each is filed under its resource; with 1,000 distinct
 * actions, under its action.
 *
 * @module
 */
import { assertNever } from "../../shared/mod.ts";
import type { ConditionScalar, PolicyRequest, PolicyRule } from "./policy.ts";
import { ACTION_SEPARATORS, compileGlob, type GlobMatcher, RESOURCE_SEPARATORS } from "./glob.ts";

/** A rule whose action pattern has a `**`, tested on the whole action. */
interface DeepRule {
  readonly rule: number;
  readonly match: GlobMatcher;
}

interface ActionNode {
  /** Children by literal segment. */
  readonly children: Map<string, ActionNode>;
  /** The child for a segment that is exactly `*` (any one segment). */
  star: ActionNode | undefined;
  /** Children for segments with a `*` inside (`up*`), by segment pattern. */
  readonly partial: Map<string, { readonly match: GlobMatcher; readonly node: ActionNode }>;
  /** Rules whose action pattern ends at this node. */
  readonly exact: number[];
  /** Rules whose pattern goes on with a `**` segment here; tested on the whole action. */
  readonly deep: DeepRule[];
  /**
   * Rules whose pattern goes on with a `**` segment here and ends with a
   * literal segment (`bom.**.approve`), by that last segment: only actions
   * with the same last segment can match them.
   */
  readonly deepByLast: Map<string, DeepRule[]>;
}

interface ResourceNode {
  /** Children by segment, separator included (`docs/`, `bom:`). */
  readonly children: Map<string, ResourceNode>;
  /** Rules with a resource pattern whose literal prefix ends at this node. */
  readonly rules: number[];
}

const RESOURCE_SEPARATOR_CODES: ReadonlySet<number> = new Set(
  Array.from(RESOURCE_SEPARATORS, (separator) => separator.charCodeAt(0)),
);

const FIELDS = ["action", "resource", "role", "tenant", "condition"] as const;
type Field = typeof FIELDS[number];

/** One way to file a rule: under these keys of this field. */
interface Option {
  readonly field: Field;
  /** Keys, each also the bucket name the cost is counted by. */
  readonly keys: readonly string[];
  /** For `condition`: the attribute and the values. */
  readonly attr?: string;
  readonly values?: readonly ConditionScalar[];
}

/** The candidate rules of requests, by rule index in policy order. */
export class RuleIndex {
  /** `filedByAction[i]`: rule i is only found through its action, which then matched. */
  readonly filedByAction: readonly boolean[];
  readonly #actions: ActionNode = newActionNode();
  readonly #resources: ResourceNode = newResourceNode();
  readonly #exactResources = new Map<string, number[]>();
  readonly #roles = new Map<string, number[]>();
  readonly #tenants = new Map<string, number[]>();
  readonly #conditions = new Map<string, Map<ConditionScalar, number[]>>();

  /**
   * Files every rule under its most selective field.
   *
   * @param rules The validated rules, in policy order.
   */
  constructor(rules: readonly PolicyRule[]) {
    const options = rules.map(optionsOf);
    const sizes = new Map<string, number>();
    for (const ruleOptions of options) {
      for (const option of ruleOptions) {
        for (const key of new Set(option.keys)) sizes.set(key, (sizes.get(key) ?? 0) + 1);
      }
    }
    const filedByAction: boolean[] = [];
    rules.forEach((rule, index) => {
      let best: Option | undefined;
      let bestCost = Infinity;
      for (const option of options[index]!) {
        let cost = 0;
        for (const key of option.keys) cost += sizes.get(key)!;
        if (cost < bestCost) [best, bestCost] = [option, cost];
      }
      filedByAction.push(best === undefined || best.field === "action");
      this.#file(rule, index, best);
    });
    this.filedByAction = filedByAction;
  }

  /**
   * The indices of the rules that can match, sorted and unique. Rules filed
   * by action matched the action already; every other field still needs a
   * full check.
   *
   * @param request The request (action and resource within bounds).
   * @param tenant The tenant of the request (its own, or its identity's).
   * @returns Candidate rule indices in policy order.
   */
  candidates(request: PolicyRequest, tenant: string | undefined): number[] {
    const out: number[] = [];
    const { action, resource } = request;
    const segments = action.split(ACTION_SEPARATORS);
    collectActions(this.#actions, segments, 0, action, out);
    if (this.#resources.children.size > 0) collectResources(this.#resources, resource, out);
    pushAll(this.#exactResources.get(resource), out);
    if (this.#roles.size > 0) {
      for (const role of request.identity.roles) pushAll(this.#roles.get(role), out);
    }
    if (tenant !== undefined) pushAll(this.#tenants.get(tenant), out);
    const { attributes } = request;
    if (attributes !== undefined) {
      for (const [attr, byValue] of this.#conditions) {
        if (!Object.hasOwn(attributes, attr)) continue;
        const value = attributes[attr];
        if (value === null || typeof value !== "object") {
          pushAll(byValue.get(value as ConditionScalar), out);
        }
      }
    }
    if (out.length > 1) {
      out.sort((a, b) => a - b);
      let unique = 1;
      for (let i = 1; i < out.length; i++) {
        if (out[i] !== out[unique - 1]) out[unique++] = out[i]!;
      }
      out.length = unique;
    }
    return out;
  }

  #file(rule: PolicyRule, index: number, option: Option | undefined): void {
    const field = option?.field ?? "action";
    switch (field) {
      case "action":
        for (const pattern of rule.actions) addAction(this.#actions, pattern, index);
        return;
      case "resource":
        for (const pattern of rule.resources!) {
          if (!pattern.includes("*")) {
            fileUnder(this.#exactResources, pattern, index);
            continue;
          }
          let node = this.#resources;
          for (const segment of literalSegments(pattern)) {
            let child = node.children.get(segment);
            if (child === undefined) node.children.set(segment, child = newResourceNode());
            node = child;
          }
          node.rules.push(index);
        }
        return;
      case "role":
        for (const role of rule.roles!) fileUnder(this.#roles, role, index);
        return;
      case "tenant":
        for (const tenant of rule.tenants!) fileUnder(this.#tenants, tenant, index);
        return;
      case "condition": {
        let byValue = this.#conditions.get(option!.attr!);
        if (byValue === undefined) this.#conditions.set(option!.attr!, byValue = new Map());
        for (const value of new Set(option!.values!)) fileUnder(byValue, value, index);
        return;
      }
      default:
        assertNever(field);
    }
  }
}

/** Every field a rule could be filed under, with its bucket keys; unusable fields left out. */
function optionsOf(rule: PolicyRule): Option[] {
  const options: Option[] = [];
  const actionKeys = rule.actions.map(actionKey);
  if (actionKeys.every((key) => key !== undefined)) {
    options.push({ field: "action", keys: actionKeys as string[] });
  }
  if (rule.resources !== undefined) {
    const keys = rule.resources.map(resourceKey);
    if (keys.every((key) => key !== undefined)) {
      options.push({ field: "resource", keys: keys as string[] });
    }
  }
  if (rule.roles !== undefined) {
    options.push({ field: "role", keys: rule.roles.map((role) => `role\0${role}`) });
  }
  if (rule.tenants !== undefined) {
    options.push({ field: "tenant", keys: rule.tenants.map((tenant) => `tenant\0${tenant}`) });
  }
  for (const condition of rule.conditions ?? []) {
    const values = condition.op === "eq"
      ? [condition.value]
      : condition.op === "in"
      ? condition.value
      : undefined;
    if (values === undefined) continue;
    const keys = values.map((value) =>
      `condition\0${condition.attr}\0${typeof value}\0${String(value)}`
    );
    options.push({ field: "condition", keys, attr: condition.attr, values });
  }
  return options;
}

/**
 * The bucket of an action pattern in the trie: the segments before the first
 * `**`, and the last segment when it is literal. `undefined` when that says
 * nothing (`**`, `**.x*`): such a pattern is tested on every request.
 */
function actionKey(pattern: string): string | undefined {
  const segments = pattern.split(ACTION_SEPARATORS);
  const deep = segments.findIndex((segment) => segment.includes("**"));
  if (deep === -1) return `action\0${pattern}`;
  const head = segments.slice(0, deep).join(ACTION_SEPARATORS);
  const last = segments[segments.length - 1]!;
  if (deep < segments.length - 1 && !last.includes("*")) return `action\0${head}\0**\0${last}`;
  return deep === 0 ? undefined : `action\0${head}\0**`;
}

/** The bucket of a resource pattern: itself when literal, else its literal segments. */
function resourceKey(pattern: string): string | undefined {
  if (!pattern.includes("*")) return `resource\0${pattern}`;
  const prefix = literalSegments(pattern).join("");
  return prefix === "" ? undefined : `resource\0${prefix}*`;
}

/** The whole segments (separator included) before the first `*` of a resource pattern. */
function literalSegments(pattern: string): string[] {
  const segments: string[] = [];
  let start = 0;
  const star = pattern.indexOf("*");
  for (let i = 0; i < star; i++) {
    if (RESOURCE_SEPARATORS.includes(pattern[i]!)) {
      segments.push(pattern.slice(start, i + 1));
      start = i + 1;
    }
  }
  return segments;
}

function fileUnder<K>(map: Map<K, number[]>, key: K, rule: number): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [rule]);
  else if (list[list.length - 1] !== rule) list.push(rule);
}

function pushAll(rules: readonly number[] | undefined, out: number[]): void {
  if (rules !== undefined) { for (const rule of rules) out.push(rule); }
}

function newActionNode(): ActionNode {
  return {
    children: new Map(),
    star: undefined,
    partial: new Map(),
    exact: [],
    deep: [],
    deepByLast: new Map(),
  };
}

function newResourceNode(): ResourceNode {
  return { children: new Map(), rules: [] };
}

function addAction(root: ActionNode, pattern: string, rule: number): void {
  let node = root;
  const segments = pattern.split(ACTION_SEPARATORS);
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment.includes("**")) {
      const deep = { rule, match: compileGlob(pattern, { separators: ACTION_SEPARATORS }) };
      const last = segments[segments.length - 1]!;
      if (i < segments.length - 1 && !last.includes("*")) {
        const list = node.deepByLast.get(last);
        if (list === undefined) node.deepByLast.set(last, [deep]);
        else list.push(deep);
      } else {
        node.deep.push(deep);
      }
      return;
    }
    if (segment === "*") {
      node = node.star ??= newActionNode();
    } else if (segment.includes("*")) {
      let edge = node.partial.get(segment);
      if (edge === undefined) {
        edge = {
          match: compileGlob(segment, { separators: ACTION_SEPARATORS }),
          node: newActionNode(),
        };
        node.partial.set(segment, edge);
      }
      node = edge.node;
    } else {
      let child = node.children.get(segment);
      if (child === undefined) node.children.set(segment, child = newActionNode());
      node = child;
    }
  }
  node.exact.push(rule);
}

/**
 * Collects the rules whose action pattern matches `segments[i..]` below
 * `node`. Every pattern without `**` matches segment by segment, so only the
 * edges that match the current segment are followed.
 */
function collectActions(
  node: ActionNode,
  segments: readonly string[],
  i: number,
  action: string,
  out: number[],
): void {
  for (const deep of node.deep) if (deep.match(action)) out.push(deep.rule);
  if (node.deepByLast.size > 0) {
    const byLast = node.deepByLast.get(segments[segments.length - 1]!);
    if (byLast !== undefined) {
      for (const deep of byLast) if (deep.match(action)) out.push(deep.rule);
    }
  }
  if (i === segments.length) {
    for (const rule of node.exact) out.push(rule);
    return;
  }
  const segment = segments[i]!;
  const child = node.children.get(segment);
  if (child !== undefined) collectActions(child, segments, i + 1, action, out);
  if (node.star !== undefined) collectActions(node.star, segments, i + 1, action, out);
  for (const edge of node.partial.values()) {
    if (edge.match(segment)) collectActions(edge.node, segments, i + 1, action, out);
  }
}

/**
 * Collects the rules filed under a literal prefix of `resource`, walking its
 * segments down the trie; the walk stops at the first segment no rule
 * continues with, so it costs at most the depth of the deepest prefix.
 */
function collectResources(root: ResourceNode, resource: string, out: number[]): void {
  let node = root;
  let start = 0;
  for (let i = 0; i < resource.length; i++) {
    if (!RESOURCE_SEPARATOR_CODES.has(resource.charCodeAt(i))) continue;
    const child = node.children.get(resource.slice(start, i + 1));
    if (child === undefined) return;
    pushAll(child.rules, out);
    if (child.children.size === 0) return;
    node = child;
    start = i + 1;
  }
}
