/**
 * Glob patterns for actions and resources, compiled once into matcher
 * functions.
 *
 * @module
 */

/**
 * The separator of action segments: `bom.update.approve`.
 *
 * @example A single star stays within one action segment
 * ```ts
 * import { ACTION_SEPARATORS, compileGlob } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const match = compileGlob("bom.*", { separators: ACTION_SEPARATORS });
 * assert.ok(match("bom.update"));
 * assert.ok(!match("bom.update.approve"));
 * ```
 */
export const ACTION_SEPARATORS = ".";

/**
 * The separators of resource segments: `plm/parts/42`, `bom:123`, `tenant-a:bom/7`.
 *
 * @example Both `/` and `:` end a resource segment
 * ```ts
 * import { compileGlob, RESOURCE_SEPARATORS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const match = compileGlob("tenant-a:*", { separators: RESOURCE_SEPARATORS });
 * assert.ok(match("tenant-a:bom"));
 * assert.ok(!match("tenant-a:bom/7"));
 * assert.ok(!match("tenant-a:bom:7"));
 * ```
 */
export const RESOURCE_SEPARATORS = "/:";

/**
 * Options for {@link compileGlob}.
 *
 * @example Make `/` end a segment
 * ```ts
 * import { compileGlob, type GlobOptions } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const options: GlobOptions = { separators: "/" };
 * const match = compileGlob("plm/*", options);
 * assert.ok(match("plm/parts"));
 * assert.ok(!match("plm/parts/42"));
 * // With the default `.` separator, a single `*` crosses `/`.
 * assert.ok(compileGlob("plm/*")("plm/parts/42"));
 * ```
 */
export interface GlobOptions {
  /**
   * The characters that separate segments; a single `*` never matches them.
   *
   * @default {"."}
   */
  readonly separators?: string;
}

/**
 * A compiled glob: whether a value matches the pattern.
 *
 * @example Keep compiled matchers and reuse them
 * ```ts
 * import { compileGlob, type GlobMatcher } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const matchers: GlobMatcher[] = ["bom.read", "part.*"].map((pattern) => compileGlob(pattern));
 * const isAllowed = (action: string) => matchers.some((match) => match(action));
 * assert.ok(isAllowed("part.update"));
 * assert.ok(!isAllowed("bom.delete"));
 * ```
 */
export type GlobMatcher = (value: string) => boolean;

/**
 * Compiles a glob pattern into a matcher function.
 *
 * Semantics, over the whole value (anchored at both ends):
 * - `*` matches zero or more characters within one segment (never a
 *   separator): `bom.*` matches `bom.update` but not `bom.update.approve`;
 *   `bom.up*` matches `bom.update`.
 * - `**` (two or more stars in a row) matches zero or more of any character,
 *   separators included: `bom.**` matches `bom.update` and
 *   `bom.update.approve` (not `bom` itself); `**` alone matches everything.
 * - Every other character matches itself; there are no `?`, classes or
 *   escapes.
 *
 * @param pattern The glob pattern.
 * @param options The segment separators.
 * @returns A function telling whether a value matches.
 * @throws {TypeError} When `pattern` or `separators` is not a string.
 *
 * @example Match actions and resources
 * ```ts
 * import { compileGlob, RESOURCE_SEPARATORS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const oneLevel = compileGlob("bom.*");
 * assert.ok(oneLevel("bom.update"));
 * assert.ok(!oneLevel("bom.update.approve"));
 *
 * const anyDepth = compileGlob("bom.**");
 * assert.ok(anyDepth("bom.update.approve"));
 *
 * const parts = compileGlob("plm/*", { separators: RESOURCE_SEPARATORS });
 * assert.ok(parts("plm/parts"));
 * assert.ok(!parts("plm/parts:42"));
 * ```
 */
export function compileGlob(pattern: string, options?: GlobOptions): GlobMatcher {
  const { separators = ACTION_SEPARATORS } = options ?? {};
  if (typeof pattern !== "string") {
    throw new TypeError("Cannot compile a glob that is not a string");
  }
  if (typeof separators !== "string") {
    throw new TypeError("Cannot compile a glob with separators that are not a string");
  }
  const firstStar = pattern.indexOf("*");
  if (firstStar === -1) return (value) => value === pattern;
  if (/^\*{2,}$/.test(pattern)) return () => true;
  if (/^[^*]*\*{2,}$/.test(pattern)) {
    const prefix = pattern.slice(0, firstStar);
    return (value) => value.startsWith(prefix);
  }
  if (!pattern.includes("**")) return compileSingleStars(pattern.split("*"), separators);
  if (!/(?:^|[^*])\*(?:[^*]|$)/.test(pattern)) return compileDoubleStars(pattern.split(/\*{2,}/));
  const segmentChar = separators === "" ? "[^]" : `[^${escapeRegExp(separators)}]`;
  let source = "^";
  let i = 0;
  while (i < pattern.length) {
    const char = pattern[i]!;
    if (char === "*") {
      let end = i;
      while (pattern[end] === "*") end++;
      source += end - i >= 2 ? "[^]*" : `${segmentChar}*`;
      i = end;
    } else {
      source += escapeRegExp(char);
      i++;
    }
  }
  const regex = new RegExp(`${source}$`);
  return (value) => regex.test(value);
}

/**
 * Matches `parts[0] * parts[1] * ... * parts[n]` where each `*` spans no
 * separator. Taking the leftmost occurrence of each middle part is optimal:
 * a later occurrence would skip the same characters and more.
 */
function compileSingleStars(parts: readonly string[], separators: string): GlobMatcher {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  const middle = parts.slice(1, -1);
  const spansSeparator = (value: string, from: number, to: number): boolean => {
    for (let i = from; i < to; i++) if (separators.includes(value[i]!)) return true;
    return false;
  };
  return (value) => {
    if (value.length < first.length + last.length || !value.startsWith(first)) return false;
    const end = value.length - last.length;
    if (!value.endsWith(last)) return false;
    let pos = first.length;
    for (const part of middle) {
      const at = value.indexOf(part, pos);
      if (at === -1 || at + part.length > end || spansSeparator(value, pos, at)) return false;
      pos = at + part.length;
    }
    return !spansSeparator(value, pos, end);
  };
}

/** Matches `parts[0] ** parts[1] ** ... ** parts[n]` (literal parts), leftmost first. */
function compileDoubleStars(parts: readonly string[]): GlobMatcher {
  const first = parts[0]!;
  const last = parts[parts.length - 1]!;
  const middle = parts.slice(1, -1);
  return (value) => {
    if (value.length < first.length + last.length) return false;
    if (!value.startsWith(first) || !value.endsWith(last)) return false;
    const end = value.length - last.length;
    let pos = first.length;
    for (const part of middle) {
      const at = value.indexOf(part, pos);
      if (at === -1 || at + part.length > end) return false;
      pos = at + part.length;
    }
    return true;
  };
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}
