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

/** Options for {@link compileGlob}. */
export interface GlobOptions {
  /**
   * The characters that separate segments; a single `*` never matches them.
   *
   * @default {"."}
   */
  readonly separators?: string;
}

/** A compiled glob: whether a value matches the pattern. */
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
 * Matching never backtracks: its cost is linear in the value. Patterns with
 * only `*` or only `**` take the leftmost occurrence of each literal piece
 * (a later one can never do better); patterns mixing both run as a
 * position automaton whose states are bits, one step per character of the
 * value, so a value of n characters against a pattern of m characters costs
 * O(m + n × ⌈m / 32⌉) word operations. Policies bound both sides
 * ({@link POLICY_LIMITS}: patterns of at most 512 characters, actions and
 * resources of at most 1,024).
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
 *
 * @example Mixed stars against a long value stay fast
 * ```ts
 * import { compileGlob, RESOURCE_SEPARATORS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const pdfs = compileGlob("docs/**.*.*.pdf", { separators: RESOURCE_SEPARATORS });
 * assert.ok(pdfs("docs/specs/part.rev-2.final.pdf"));
 * assert.ok(!pdfs(`docs/${"a.".repeat(500)}txt`));
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
  const tokens = tokenize(pattern);
  let stars = 0;
  let doubleStars = 0;
  for (const token of tokens) {
    if (token === STAR) stars++;
    else if (token === DOUBLE_STAR) doubleStars++;
  }
  if (stars + doubleStars === 0) return (value) => value === pattern;
  if (stars === 0 && doubleStars === 1 && tokens[tokens.length - 1] === DOUBLE_STAR) {
    const prefix = pattern.slice(0, pattern.indexOf("*"));
    return prefix === "" ? () => true : (value) => value.startsWith(prefix);
  }
  if (doubleStars === 0) return compileSingleStars(pattern.split("*"), separators);
  if (stars === 0) return compileDoubleStars(pattern.split(/\*{2,}/));
  return compileAutomaton(tokens, separators);
}

/** A `*` token: any run of non-separator characters. */
const STAR = -1;
/** A `**` token (two or more stars): any run of characters. */
const DOUBLE_STAR = -2;

/** The pattern as tokens: a UTF-16 code unit per literal character, {@link STAR} or {@link DOUBLE_STAR}. */
function tokenize(pattern: string): number[] {
  const tokens: number[] = [];
  let i = 0;
  while (i < pattern.length) {
    const code = pattern.charCodeAt(i);
    if (code !== 42) { // not `*`
      tokens.push(code);
      i++;
      continue;
    }
    let end = i;
    while (pattern.charCodeAt(end) === 42) end++;
    tokens.push(end - i >= 2 ? DOUBLE_STAR : STAR);
    i = end;
  }
  return tokens;
}

/**
 * A pattern mixing `*` and `**`, run as a position automaton (Glushkov's
 * construction, simulated with bit-parallel state sets as in Shift-And).
 *
 * State i means "the first i tokens have matched"; state k (the number of
 * tokens) accepts. On a character c, a state i moves to i + 1 when token i is
 * the literal c, and stays when token i is `**`, or `*` and c is not a
 * separator; after each step, a state on a star also enters the state after
 * it (the star matching nothing). Runs of stars are one token, so two star
 * tokens are never adjacent and one closure step is enough. Bit i of word
 * ⌊i / 32⌋ holds state i; a set with no state left ends the match early.
 */
function compileAutomaton(tokens: readonly number[], separators: string): GlobMatcher {
  const words = Math.ceil((tokens.length + 1) / 32);
  const star = new Int32Array(words);
  const doubleStar = new Int32Array(words);
  const literals = new Map<number, Int32Array<ArrayBuffer>>();
  tokens.forEach((token, i) => {
    let mask = token === STAR ? star : token === DOUBLE_STAR ? doubleStar : literals.get(token);
    if (mask === undefined) literals.set(token, mask = new Int32Array(words));
    mask[i >>> 5] = mask[i >>> 5]! | (1 << (i & 31));
  });
  const anyStar = star.map((mask, word) => mask | doubleStar[word]!);
  const separatorCodes = new Set<number>();
  for (let i = 0; i < separators.length; i++) separatorCodes.add(separators.charCodeAt(i));
  // Per character: the states its literal advances, and the states that stay
  // (`**`, and `*` unless it is a separator). ASCII from tables, the rest looked up.
  const none = new Int32Array(words);
  const literalOf = (code: number): Int32Array => literals.get(code) ?? none;
  const stayOf = (code: number): Int32Array => separatorCodes.has(code) ? doubleStar : anyStar;
  const asciiLiteral = new Int32Array(128 * words);
  const asciiStay = new Int32Array(128 * words);
  for (let code = 0; code < 128; code++) {
    asciiLiteral.set(literalOf(code), code * words);
    asciiStay.set(stayOf(code), code * words);
  }
  const acceptWord = tokens.length >>> 5;
  const acceptBit = 1 << (tokens.length & 31);
  if (words === 1) {
    const anyStars = anyStar[0]!;
    const start = 1 | ((1 & anyStars) << 1);
    return (value) => {
      let set = start;
      for (let i = 0; i < value.length; i++) {
        const code = value.charCodeAt(i);
        const literal = code < 128 ? asciiLiteral[code]! : literalOf(code)[0]!;
        const stay = code < 128 ? asciiStay[code]! : stayOf(code)[0]!;
        set = ((set & literal) << 1) | (set & stay);
        set |= (set & anyStars) << 1;
        if (set === 0) return false;
      }
      return (set & acceptBit) !== 0;
    };
  }
  // Scratch state sets, reused: a match runs to completion without yielding.
  let current = new Int32Array(words);
  let next = new Int32Array(words);
  return (value) => {
    current.fill(0);
    current[0] = 1 | ((1 & anyStar[0]!) << 1);
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i);
      const ascii = code < 128;
      const literal = ascii ? asciiLiteral : literalOf(code);
      const stay = ascii ? asciiStay : stayOf(code);
      const at = ascii ? code * words : 0;
      let moved = 0; // the previous word's advanced states: its bit 31 enters bit 0 here
      let closed = 0; // the previous word's states on a star: likewise
      let alive = 0;
      for (let w = 0; w < words; w++) {
        const set = current[w]!;
        const advanced = set & literal[at + w]!;
        const step = (advanced << 1) | (moved >>> 31) | (set & stay[at + w]!);
        const onStar = step & anyStar[w]!;
        const word = step | (onStar << 1) | (closed >>> 31);
        moved = advanced;
        closed = onStar;
        next[w] = word;
        alive |= word;
      }
      if (alive === 0) return false;
      const previous = current;
      current = next;
      next = previous;
    }
    return (current[acceptWord]! & acceptBit) !== 0;
  };
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
