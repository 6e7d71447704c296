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

function isLcAlpha(code: number): boolean {
  return code >= 0x61 && code <= 0x7a;
}

/** `a-z 0-9 _ - * /`, the characters after the first of a key part. */
function isKeyChar(code: number): boolean {
  return (code >= 0x61 && code <= 0x7a) || (code >= 0x30 && code <= 0x39) ||
    code === 0x5f || code === 0x2d || code === 0x2a || code === 0x2f;
}

/**
 * Scans a key starting at `start`: a simple key (`lcalpha` then up to 255 key
 * characters) or `tenant@system` (tenant: `lcalpha`/digit then up to 240,
 * system: `lcalpha` then up to 13).
 *
 * @returns The index just past the key, or -1 when no valid key starts there.
 */
function scanKey(value: string, start: number): number {
  const first = value.charCodeAt(start);
  const startsAlpha = isLcAlpha(first);
  if (!startsAlpha && !(first >= 0x30 && first <= 0x39)) return -1;
  let at = -1;
  let i = start + 1;
  for (;; i++) {
    const code = value.charCodeAt(i);
    if (isKeyChar(code)) continue;
    if (code !== AT || at !== -1) break;
    at = i;
    if (!isLcAlpha(value.charCodeAt(i + 1))) return -1;
  }
  if (at === -1) return startsAlpha && i - start <= MAX_SIMPLE_KEY_LENGTH ? i : -1;
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
 * Records member `count` unless its key repeats an earlier one.
 *
 * @returns Whether the member was recorded.
 */
function addMember(
  value: string,
  count: number,
  keyStart: number,
  keyEnd: number,
  valueEnd: number,
): boolean {
  // Compare text only when length, first and last character agree.
  const keyLength = keyEnd - keyStart;
  const print = (keyLength << 16) | (value.charCodeAt(keyStart) << 8) |
    value.charCodeAt(keyEnd - 1);
  for (let j = 0; j < count; j++) {
    if (KEY_PRINTS[j] === print && sameText(value, KEY_STARTS[j]!, keyStart, keyLength)) {
      return false;
    }
  }
  KEY_PRINTS[count] = print;
  KEY_STARTS[count] = keyStart;
  EQUALS_AT[count] = keyEnd;
  VALUE_ENDS[count] = valueEnd;
  return true;
}

// The canonical form, as senders usually write it: members joined by bare commas, no white
// space around them, no empty members. The lengths of keys and values, the number of members
// and duplicate keys are left to `scanCanonical`. One regular expression checks the
// characters faster than a loop of `charCodeAt` calls does.
const KEY = String.raw`(?:[a-z][a-z0-9_\-*/]*|[a-z0-9][a-z0-9_\-*/]*@[a-z][a-z0-9_\-*/]{0,13})`;
const VALUE = String.raw`[\x20-\x2b\x2d-\x3c\x3e-\x7e]*[\x21-\x2b\x2d-\x3c\x3e-\x7e]`;
const CANONICAL = new RegExp(`^${KEY}=${VALUE}(?:,${KEY}=${VALUE})*$`);

/**
 * {@link scan} for a value that matches {@link CANONICAL}: members end at
 * commas and keys at the first `=`.
 */
function scanCanonical(value: string): number {
  const length = value.length;
  let count = 0;
  for (let keyStart = 0; keyStart < length; count++) {
    const keyEnd = value.indexOf("=", keyStart);
    const comma = value.indexOf(",", keyEnd);
    const valueEnd = comma === -1 ? length : comma;
    const keyLength = keyEnd - keyStart;
    if (
      count === MAX_MEMBERS || keyLength > MAX_SIMPLE_KEY_LENGTH ||
      valueEnd - keyEnd - 1 > MAX_VALUE_LENGTH ||
      // A tenant is at most 241 characters; only a key past 242 can hold a longer one.
      (keyLength > MAX_TENANT_LENGTH + 1 &&
        value.lastIndexOf("@", keyEnd) - keyStart > MAX_TENANT_LENGTH) ||
      !addMember(value, count, keyStart, keyEnd, valueEnd)
    ) {
      return -1;
    }
    keyStart = valueEnd + 1;
  }
  return count;
}

/**
 * Validates a whole `tracestate` value without allocating, leaving each
 * member's bounds in {@link KEY_STARTS}, {@link EQUALS_AT} and
 * {@link VALUE_ENDS}.
 *
 * @returns The number of members, or -1 when the value is invalid.
 */
function scan(value: string): number {
  if (CANONICAL.test(value)) return scanCanonical(value);
  const length = value.length;
  let count = 0;
  let i = 0;
  while (i < length) {
    const code = value.charCodeAt(i);
    if (code === SPACE || code === TAB || code === COMMA) {
      // White space around members and empty members.
      i++;
      continue;
    }
    const keyStart = i;
    const keyEnd = scanKey(value, keyStart);
    if (keyEnd < 0 || value.charCodeAt(keyEnd) !== EQUALS) return -1;
    const valueStart = keyEnd + 1;
    const comma = value.indexOf(",", valueStart);
    i = comma === -1 ? length : comma;
    let valueEnd = i;
    while (valueEnd > valueStart) {
      // Spaces and tabs after the value are white space around the member.
      const last = value.charCodeAt(valueEnd - 1);
      if (last !== SPACE && last !== TAB) break;
      valueEnd--;
    }
    if (valueEnd === valueStart || valueEnd - valueStart > MAX_VALUE_LENGTH) return -1;
    for (let j = valueStart; j < valueEnd; j++) {
      // Tabs, other controls, non-ASCII and "=" (a comma ended the member already).
      const c = value.charCodeAt(j);
      if (c < SPACE || c > 0x7e || c === EQUALS) return -1;
    }
    if (count === MAX_MEMBERS || !addMember(value, count, keyStart, keyEnd, valueEnd)) return -1;
    count++;
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
    if (code < SPACE || code > 0x7e || code === COMMA || code === EQUALS) return false;
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

/** {@link TraceState}'s member count before its header has been checked. */
const UNCHECKED = -2;
/** {@link TraceState}'s member count once its header was found invalid. */
const INVALID = -1;

/**
 * The `tracestate` of a `TraceContext`: an immutable list of vendor members,
 * leftmost (most recent vendor) first, checked whole.
 *
 * A state made by {@link TraceState.parse}, {@link TraceState.from} or
 * {@link TraceState.set} is checked when it is made. A state made by
 * {@link TraceState.received} (as `extractTraceContext` does) keeps the
 * header as received and checks it, whole, the first time anything reads it:
 * {@link TraceState.header}, {@link TraceState.size}, the members, or
 * `injectTraceContext`. A header with any invalid member then reads as no
 * members at all, so it is never read in part and never passed on. A request
 * that does not look at its `tracestate` pays nothing for it.
 *
 * {@link TraceState.header} is canonical (`key=value` joined by `,`, no
 * white space or empty members); compare states by it. `raw` is the only own
 * property, so `assert.deepStrictEqual` tells states with different input
 * apart.
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
 * assert.equal(TraceState.received("rojo=1,rojo=2").size, 0);
 * ```
 */
export class TraceState implements Iterable<TraceStateEntry> {
  /** The state without members. */
  static readonly EMPTY: TraceState = new TraceState("", 0, "");

  /**
   * The header value the state was made from, as given; for a state built
   * from members, its canonical header.
   */
  readonly raw: string;
  #count: number;
  #header: string;
  #entries: readonly TraceStateEntry[] | undefined;

  private constructor(raw: string, count: number, header: string) {
    this.raw = raw;
    this.#count = count;
    this.#header = header;
  }

  /**
   * Checks a `tracestate` header value (several headers combined with `,` in
   * order) now, by the rules of {@link parseTracestate}: any invalid member
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
    const state = TraceState.received(value);
    const count = state.#check();
    return count === INVALID ? null : count === 0 ? TraceState.EMPTY : state;
  }

  /**
   * A state for a received header value, checked whole the first time it is
   * read. An invalid value then reads as no members.
   *
   * @param value The header value (several headers combined with `,` in
   * order).
   * @returns The state; {@link TraceState.EMPTY} for `""`.
   *
   * @example Defer the check to the first read
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const valid = TraceState.received("rojo=1, congo=2");
   * assert.equal(valid.header, "rojo=1,congo=2");
   * const invalid = TraceState.received("rojo=1,Congo=2");
   * assert.equal(invalid.size, 0);
   * assert.equal(invalid.header, "");
   * assert.equal(invalid.raw, "rojo=1,Congo=2");
   * ```
   */
  static received(value: string): TraceState {
    return value === "" ? TraceState.EMPTY : new TraceState(value, UNCHECKED, "");
  }

  /** Checks the header once; returns the member count or {@link INVALID}. */
  #check(): number {
    if (this.#count !== UNCHECKED) return this.#count;
    const raw = this.raw;
    const count = scan(raw);
    if (count <= 0) return this.#count = count === 0 ? 0 : INVALID;
    // Canonical when the value holds the members and one comma between each, nothing else.
    let used = count - 1;
    for (let i = 0; i < count; i++) used += VALUE_ENDS[i]! - KEY_STARTS[i]!;
    if (used === raw.length) {
      this.#header = raw;
    } else {
      const entries = entriesOf(raw, count);
      this.#header = formatEntries(entries);
      this.#entries = Object.freeze(entries);
    }
    return this.#count = count;
  }

  /**
   * The members as one `tracestate` header value, canonical: `key=value`
   * joined by `,` in order; `""` without members or when the received value
   * was invalid.
   *
   * @example Read the canonical header
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(TraceState.received(" rojo=1 ,, congo=2 ").header, "rojo=1,congo=2");
   * ```
   */
  get header(): string {
    this.#check();
    return this.#header;
  }

  /**
   * The number of members, 0 to 32; 0 when the received value was invalid.
   *
   * @example Count the members
   * ```ts
   * import { TraceState } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.equal(TraceState.received("rojo=1,congo=2").size, 2);
   * assert.equal(TraceState.received("rojo=1,rojo=2").size, 0);
   * ```
   */
  get size(): number {
    return Math.max(this.#check(), 0);
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
    const header = formatTracestate(list);
    const state = new TraceState(header, list.length, header);
    state.#entries = Object.freeze(list);
    return state;
  }

  /**
   * The members, leftmost first (none when the received value was invalid).
   * Built on the first call and shared after it.
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
    if (this.#entries !== undefined) return this.#entries;
    const checkedBefore = this.#count !== UNCHECKED;
    // A check made now leaves the members' bounds in the scratch arrays, or builds the
    // entries itself when the header was not canonical.
    const count = this.#check();
    if (this.#entries !== undefined) return this.#entries;
    if (count > 0 && checkedBefore) scan(this.#header);
    return this.#entries = Object.freeze(count > 0 ? entriesOf(this.#header, count) : []);
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
