/**
 * The `tracestate` header of W3C Trace Context level 1:
 * {@link parseTracestate}, {@link formatTracestate} and the validated value
 * {@link TraceState} that a `TraceContext` carries.
 *
 * @module
 */
import type { TraceStateEntry } from "./types.ts";

const TAB = 0x09;
const SPACE = 0x20;
const COMMA = 0x2c;
const EQUALS = 0x3d;
const AT = 0x40;
const MAX_MEMBERS = 32;
const MAX_VALUE_LENGTH = 256;
const MAX_SIMPLE_KEY_LENGTH = 256;
const MAX_TENANT_LENGTH = 241;
const MAX_SYSTEM_LENGTH = 14;

// Character classes of the grammar for codes 0x00-0x7F (one table lookup per character).
const LCALPHA = 1;
const DIGIT = 2;
/** `_ - * /`: allowed in a key after its first character. */
const KEY_PUNCT = 4;
/** `nblk-chr`: printable, not space, `,` or `=`. */
const NBLK = 8;
const KEY_CHAR = LCALPHA | DIGIT | KEY_PUNCT;
const CLASSES = new Uint8Array(128);
for (let code = 0x21; code <= 0x7e; code++) {
  if (code !== COMMA && code !== EQUALS) CLASSES[code] = NBLK;
}
for (let code = 0x61; code <= 0x7a; code++) CLASSES[code]! |= LCALPHA;
for (let code = 0x30; code <= 0x39; code++) CLASSES[code]! |= DIGIT;
for (const code of [0x5f, 0x2d, 0x2a, 0x2f]) CLASSES[code]! |= KEY_PUNCT;

/** The classes of a character code; 0 for anything outside ASCII. */
function classOf(code: number): number {
  return code < 128 ? CLASSES[code]! : 0;
}

/**
 * Scans a key starting at `start`: a simple key (`lcalpha` then up to 255 key
 * characters) or `tenant@system` (tenant: `lcalpha`/digit then up to 240,
 * system: `lcalpha` then up to 13).
 *
 * @returns The index just past the key, or -1 when no valid key starts there.
 */
function scanKey(value: string, start: number): number {
  const first = classOf(value.charCodeAt(start));
  if ((first & (LCALPHA | DIGIT)) === 0) return -1;
  let at = -1;
  let i = start + 1;
  for (;; i++) {
    const code = value.charCodeAt(i);
    if ((classOf(code) & KEY_CHAR) !== 0) continue;
    if (code !== AT || at !== -1) break;
    at = i;
    if ((classOf(value.charCodeAt(i + 1)) & LCALPHA) === 0) return -1;
  }
  if (at === -1) return (first & LCALPHA) !== 0 && i - start <= MAX_SIMPLE_KEY_LENGTH ? i : -1;
  return at - start <= MAX_TENANT_LENGTH && i - at - 1 <= MAX_SYSTEM_LENGTH ? i : -1;
}

// Where `scan` leaves the members it found: key start, `=`, value end, for each member.
// Every caller reads them before the next scan; nothing here re-enters.
const KEY_STARTS = new Int32Array(MAX_MEMBERS);
const EQUALS_AT = new Int32Array(MAX_MEMBERS);
const VALUE_ENDS = new Int32Array(MAX_MEMBERS);
/** Each key's length, first and last character, for a cheap first duplicate check. */
const KEY_PRINTS = new Int32Array(MAX_MEMBERS);

/** Whether `value[a, a + length)` and `value[b, b + length)` hold the same characters. */
function sameText(value: string, a: number, b: number, length: number): boolean {
  for (let i = 0; i < length; i++) {
    if (value.charCodeAt(a + i) !== value.charCodeAt(b + i)) return false;
  }
  return true;
}

/**
 * Validates a whole `tracestate` value without allocating, leaving each
 * member's bounds in {@link KEY_STARTS}, {@link EQUALS_AT} and
 * {@link VALUE_ENDS}.
 *
 * @returns The number of members, or -1 when the value is invalid.
 */
function scan(value: string): number {
  const length = value.length;
  let count = 0;
  let i = 0;
  while (i < length) {
    let code = value.charCodeAt(i);
    if (code === SPACE || code === TAB || code === COMMA) {
      // White space around members and empty members.
      i++;
      continue;
    }
    const keyStart = i;
    const keyEnd = scanKey(value, keyStart);
    if (keyEnd < 0 || value.charCodeAt(keyEnd) !== EQUALS) return -1;
    // One pass to the next comma: value characters, spaces inside the value, and spaces or
    // tabs after it (white space around the member). A tab before the last value character is
    // inside the value, which is invalid.
    const valueStart = keyEnd + 1;
    let valueEnd = valueStart;
    let tab = length;
    for (i = valueStart; i < length; i++) {
      code = value.charCodeAt(i);
      if ((classOf(code) & NBLK) !== 0) valueEnd = i + 1;
      else if (code === COMMA) break;
      else if (code === TAB) tab = tab < i ? tab : i;
      else if (code !== SPACE) return -1;
    }
    if (
      valueEnd === valueStart || valueEnd - valueStart > MAX_VALUE_LENGTH || tab < valueEnd ||
      count === MAX_MEMBERS
    ) {
      return -1;
    }
    // Keys are unique. Compare text only when length, first and last character agree.
    const keyLength = keyEnd - keyStart;
    const print = (keyLength << 16) | (value.charCodeAt(keyStart) << 8) |
      value.charCodeAt(keyEnd - 1);
    for (let j = 0; j < count; j++) {
      if (KEY_PRINTS[j] === print && sameText(value, KEY_STARTS[j]!, keyStart, keyLength)) {
        return -1;
      }
    }
    KEY_PRINTS[count] = print;
    KEY_STARTS[count] = keyStart;
    EQUALS_AT[count] = keyEnd;
    VALUE_ENDS[count++] = valueEnd;
  }
  return count;
}

/** The `count` members of the last {@link scan} of `value`. */
function entriesOf(value: string, count: number): TraceStateEntry[] {
  const entries: TraceStateEntry[] = [];
  for (let i = 0; i < count; i++) {
    const equals = EQUALS_AT[i]!;
    // An indexed store: V8 inlines it where `push` stays a builtin call.
    entries[i] = [value.slice(KEY_STARTS[i]!, equals), value.slice(equals + 1, VALUE_ENDS[i]!)];
  }
  return entries;
}

/**
 * Parses a `tracestate` header value (several headers combined with `,` in
 * order, as `Headers.get` does).
 *
 * The rules of W3C Trace Context level 1:
 * - A comma-separated list of at most 32 `key=value` members. Empty members
 *   and optional white space (spaces and tabs) around members are allowed and
 *   do not count.
 * - A key is a simple key (a lowercase letter, then up to 255 of
 *   `a-z 0-9 _ - * /`) or `tenant@system` (tenant: a lowercase letter or a
 *   digit, then up to 240 of those characters; system: a lowercase letter,
 *   then up to 13).
 * - A value is 1 to 256 printable ASCII characters (0x20-0x7E) other than `,`
 *   and `=`, not ending in a space (trailing spaces are white space around
 *   the member).
 * - Keys are unique.
 *
 * Any invalid member invalidates the whole header.
 *
 * @param value The header value.
 * @returns The members in order (empty for an empty header), or `null` when
 * the header is invalid.
 *
 * @example Parse two vendors' entries
 * ```ts
 * import { parseTracestate } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(parseTracestate("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"), [
 *   ["rojo", "00f067aa0ba902b7"],
 *   ["congo", "t61rcWkgMzE"],
 * ]);
 * assert.equal(parseTracestate("rojo=1,rojo=2"), null);
 * ```
 */
export function parseTracestate(value: string): TraceStateEntry[] | null {
  const count = scan(value);
  return count < 0 ? null : entriesOf(value, count);
}

function isValidValue(value: string): boolean {
  const length = value.length;
  if (length === 0 || length > MAX_VALUE_LENGTH) return false;
  for (let i = 0; i < length; i++) {
    const code = value.charCodeAt(i);
    if ((classOf(code) & NBLK) === 0 && code !== SPACE) return false;
  }
  return value.charCodeAt(length - 1) !== SPACE;
}

/**
 * Formats `tracestate` members as one header value: `key=value` joined by
 * `,`, in order.
 *
 * @param entries The members, leftmost first.
 * @returns The header value; `""` for no members.
 * @throws {TypeError} When a key or value breaks the grammar of
 * {@link parseTracestate}, or a key repeats.
 * @throws {RangeError} When there are more than 32 members.
 *
 * @example Format and parse back
 * ```ts
 * import { formatTracestate, parseTracestate } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const header = formatTracestate([["rojo", "00f067aa0ba902b7"], ["t1@congo", "x y"]]);
 * assert.equal(header, "rojo=00f067aa0ba902b7,t1@congo=x y");
 * assert.deepEqual(parseTracestate(header), [["rojo", "00f067aa0ba902b7"], ["t1@congo", "x y"]]);
 * ```
 */
export function formatTracestate(entries: readonly TraceStateEntry[]): string {
  if (entries.length > MAX_MEMBERS) {
    throw new RangeError(
      `Cannot format ${entries.length} tracestate members: at most ${MAX_MEMBERS} are allowed`,
    );
  }
  for (let i = 0; i < entries.length; i++) {
    const [key, value] = entries[i]!;
    if (scanKey(key, 0) !== key.length) {
      throw new TypeError(`Cannot format tracestate key "${key}": it breaks the key grammar`);
    }
    if (!isValidValue(value)) {
      throw new TypeError(
        `Cannot format tracestate value "${value}" of key "${key}": expected 1-256 printable characters without "," or "=", not ending in a space`,
      );
    }
    for (let j = 0; j < i; j++) {
      if (entries[j]![0] === key) {
        throw new TypeError(`Cannot format tracestate key "${key}" twice`);
      }
    }
  }
  return formatEntries(entries);
}

/** `key=value` joined by `,`, unchecked. */
function formatEntries(entries: readonly TraceStateEntry[]): string {
  let out = "";
  for (let i = 0; i < entries.length; i++) {
    const [key, value] = entries[i]!;
    out += i === 0 ? `${key}=${value}` : `,${key}=${value}`;
  }
  return out;
}

/**
 * The `tracestate` of a `TraceContext`: an immutable, checked list of
 * vendor members, leftmost (most recent vendor) first.
 *
 * A `TraceState` is always valid: {@link TraceState.parse} checks the whole
 * header as {@link parseTracestate} does, and {@link TraceState.from} and
 * {@link TraceState.set} check members as {@link formatTracestate} does. It
 * keeps the members as one header value, {@link TraceState.header}, in
 * canonical form (`key=value` joined by `,`, no white space or empty
 * members), and builds the member list only when it is first read. So
 * receiving a header and passing it on costs one validation and no
 * allocation per member, and two states with the same members are equal
 * under `assert.deepStrictEqual`.
 *
 * Updates follow the spec's mutation rules: a changed or added member moves
 * to the front, and the rightmost members are dropped past 32.
 *
 * @example Read a vendor's member and update your own
 * ```ts
 * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const state = TraceState.parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE");
 * assert.ok(state !== null);
 * assert.equal(state.get("congo"), "t61rcWkgMzE");
 * assert.equal(state.header, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
 *
 * const next = state.set("congo", "ucfJifl5GOE");
 * assert.deepEqual(next.entries(), [["congo", "ucfJifl5GOE"], ["rojo", "00f067aa0ba902b7"]]);
 * assert.equal(TraceState.parse("rojo=1,rojo=2"), null);
 * ```
 */
export class TraceState implements Iterable<TraceStateEntry> {
  /** The state without members. */
  static readonly EMPTY: TraceState = new TraceState("", 0);

  /**
   * The members as one `tracestate` header value, canonical: `key=value`
   * joined by `,` in order; `""` without members.
   */
  readonly header: string;
  /** The number of members, 0 to 32. */
  readonly size: number;
  #entries: readonly TraceStateEntry[] | undefined;

  private constructor(header: string, size: number) {
    this.header = header;
    this.size = size;
  }

  /**
   * Checks a `tracestate` header value (several headers combined with `,` in
   * order) by the rules of {@link parseTracestate}: any invalid member
   * invalidates the whole value.
   *
   * @param value The header value.
   * @returns The state ({@link TraceState.EMPTY} for a value without
   * members), or `null` when the value is invalid.
   *
   * @example Drop an invalid header whole
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(TraceState.parse(" rojo=1 ,, congo=2")?.header, "rojo=1,congo=2");
   * assert.equal(TraceState.parse("rojo=1,Congo=2"), null);
   * assert.equal(TraceState.parse(""), TraceState.EMPTY);
   * ```
   */
  static parse(value: string): TraceState | null {
    const count = scan(value);
    if (count <= 0) return count === 0 ? TraceState.EMPTY : null;
    // Canonical when the value holds the members and one comma between each, nothing else.
    let used = count - 1;
    for (let i = 0; i < count; i++) used += VALUE_ENDS[i]! - KEY_STARTS[i]!;
    if (used === value.length) return new TraceState(value, count);
    const entries = entriesOf(value, count);
    const state = new TraceState(formatEntries(entries), count);
    state.#entries = Object.freeze(entries);
    return state;
  }

  /**
   * Builds a state from members, leftmost first.
   *
   * @param entries The members.
   * @returns The state.
   * @throws {TypeError} When a key or value breaks the grammar, or a key
   * repeats (see {@link formatTracestate}).
   * @throws {RangeError} When there are more than 32 members.
   *
   * @example Build and format
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const state = TraceState.from([["rojo", "00f067aa0ba902b7"], ["t1@congo", "x y"]]);
   * assert.equal(state.header, "rojo=00f067aa0ba902b7,t1@congo=x y");
   * assert.throws(() => TraceState.from([["Rojo", "1"]]), TypeError);
   * ```
   */
  static from(entries: Iterable<TraceStateEntry>): TraceState {
    // Copied, so that changing the caller's tuples later cannot change this state.
    const list = Array.from(entries, ([key, value]): TraceStateEntry => [key, value]);
    if (list.length === 0) return TraceState.EMPTY;
    const state = new TraceState(formatTracestate(list), list.length);
    state.#entries = Object.freeze(list);
    return state;
  }

  /**
   * The members, leftmost first. Built on the first call and shared after it.
   *
   * @returns The members, read-only.
   *
   * @example List the members
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.deepEqual(TraceState.parse("rojo=1,congo=2")?.entries(), [["rojo", "1"], ["congo", "2"]]);
   * ```
   */
  entries(): readonly TraceStateEntry[] {
    return this.#entries ??= Object.freeze(entriesOf(this.header, scan(this.header)));
  }

  /**
   * The value of one vendor's member.
   *
   * @param key The member key.
   * @returns The value, or `undefined` when there is no such member.
   *
   * @example Read a member
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const state = TraceState.parse("rojo=1,congo=2");
   * assert.equal(state?.get("congo"), "2");
   * assert.equal(state?.get("vendor"), undefined);
   * ```
   */
  get(key: string): string | undefined {
    return this.entries().find((entry) => entry[0] === key)?.[1];
  }

  /**
   * Adds or changes a member. The member moves to the front, as the spec asks
   * of a vendor that updates its state; past 32 members the rightmost is
   * dropped.
   *
   * @param key The member key.
   * @param value The new value.
   * @returns A new state; this one is unchanged.
   * @throws {TypeError} When the key or value breaks the grammar.
   *
   * @example Update your vendor's member
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const state = TraceState.parse("rojo=1,congo=2");
   * assert.equal(state?.set("congo", "3").header, "congo=3,rojo=1");
   * assert.equal(state?.set("plm", "a").header, "plm=a,rojo=1,congo=2");
   * ```
   */
  set(key: string, value: string): TraceState {
    const rest = this.entries().filter((entry) => entry[0] !== key);
    return TraceState.from([[key, value] as const, ...rest].slice(0, MAX_MEMBERS));
  }

  /**
   * Removes a member.
   *
   * @param key The member key.
   * @returns A new state without the member (this one when there is none).
   *
   * @example Remove a member
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(TraceState.parse("rojo=1,congo=2")?.delete("rojo").header, "congo=2");
   * ```
   */
  delete(key: string): TraceState {
    const rest = this.entries().filter((entry) => entry[0] !== key);
    return rest.length === this.size ? this : TraceState.from(rest);
  }

  /**
   * Iterates over the members, leftmost first.
   *
   * @returns An iterator of `[key, value]`.
   *
   * @example Iterate
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const keys = [...TraceState.from([["rojo", "1"], ["congo", "2"]])].map(([key]) => key);
   * assert.deepEqual(keys, ["rojo", "congo"]);
   * ```
   */
  [Symbol.iterator](): Iterator<TraceStateEntry> {
    return this.entries()[Symbol.iterator]();
  }

  /**
   * The header value, as {@link TraceState.header}.
   *
   * @returns The canonical header value.
   *
   * @example Use as a string
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(`${TraceState.from([["rojo", "1"]])}`, "rojo=1");
   * ```
   */
  toString(): string {
    return this.header;
  }

  /**
   * The JSON form: the header value, which {@link TraceState.parse} reads
   * back.
   *
   * @returns The canonical header value.
   *
   * @example Serialize a context
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(JSON.stringify({ traceState: TraceState.from([["rojo", "1"]]) }), '{"traceState":"rojo=1"}');
   * ```
   */
  toJSON(): string {
    return this.header;
  }
}
