/**
 * The `tracestate` header of W3C Trace Context level 1:
 * {@link parseTracestate} and {@link formatTracestate}.
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
/** Scratch for {@link parseTracestate}'s duplicate check; parsing never re-enters. */
const KEY_PRINTS = new Int32Array(MAX_MEMBERS);

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
  const entries: TraceStateEntry[] = [];
  const length = value.length;
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
    if (keyEnd < 0 || value.charCodeAt(keyEnd) !== EQUALS) return null;
    const valueStart = keyEnd + 1;
    const comma = value.indexOf(",", valueStart);
    i = comma === -1 ? length : comma;
    let valueEnd = i;
    while (valueEnd > valueStart) {
      const last = value.charCodeAt(valueEnd - 1);
      if (last !== SPACE && last !== TAB) break;
      valueEnd--;
    }
    if (valueEnd === valueStart || valueEnd - valueStart > MAX_VALUE_LENGTH) return null;
    for (let j = valueStart; j < valueEnd; j++) {
      // Tabs, other controls, non-ASCII and "=" (a comma ended the member already).
      const c = value.charCodeAt(j);
      if (c < SPACE || c > 0x7e || c === EQUALS) return null;
    }
    const count = entries.length;
    if (count === MAX_MEMBERS) return null;
    const key = value.slice(keyStart, keyEnd);
    // Compare keys only when length, first and last character agree.
    const print = ((keyEnd - keyStart) << 16) | (value.charCodeAt(keyStart) << 8) |
      value.charCodeAt(keyEnd - 1);
    for (let j = 0; j < count; j++) {
      if (KEY_PRINTS[j] === print && entries[j]![0] === key) return null;
    }
    KEY_PRINTS[count] = print;
    entries.push([key, value.slice(valueStart, valueEnd)]);
  }
  return entries;
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
  let out = "";
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
    out += i === 0 ? `${key}=${value}` : `,${key}=${value}`;
  }
  return out;
}
