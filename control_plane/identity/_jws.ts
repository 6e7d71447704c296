/**
 * Strict JWS compact-serialization helpers: canonical base64url decoding and a
 * duplicate-key detector for JSON text. Private to `control_plane/identity/`.
 *
 * @module
 */

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const BASE64URL = /^[A-Za-z0-9_-]*$/;
const NON_ASCII = /[\x80-\xff]/;

const DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Whether `text` is canonical unpadded base64url: only `A-Z a-z 0-9 - _`, no
 * `=`, a length that is not 1 mod 4, and zero bits in the unused low bits of
 * the last character, so that re-encoding the decoded bytes gives `text` back.
 */
function isCanonicalBase64Url(text: string): boolean {
  const rest = text.length & 3;
  if (rest === 1 || !BASE64URL.test(text)) return false;
  if (rest === 0) return true;
  const last = ALPHABET.indexOf(text[text.length - 1] as string);
  // Two characters carry one byte (4 bits spare), three carry two (2 bits spare).
  return (last & (rest === 2 ? 15 : 3)) === 0;
}

/** Standard-alphabet base64 of canonical base64url text, for `atob`. */
function toStandard(text: string): string {
  return text.replaceAll("-", "+").replaceAll("_", "/");
}

/**
 * Decodes canonical unpadded base64url (see {@link isCanonicalBase64Url}).
 *
 * @returns The bytes, or `undefined` when `text` is not canonical base64url.
 */
export function decodeBase64Url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!isCanonicalBase64Url(text)) return undefined;
  return Uint8Array.fromBase64(text, { alphabet: "base64url" });
}

/**
 * Decodes a canonical base64url segment into UTF-8 text.
 *
 * @returns The text, or `undefined` when the segment is not canonical
 * base64url or not valid UTF-8.
 */
export function decodeBase64UrlText(text: string): string | undefined {
  if (!isCanonicalBase64Url(text)) return undefined;
  // `atob` gives one char per byte: for pure ASCII (the usual JWT) that is the text.
  const binary = atob(toStandard(text));
  if (!NON_ASCII.test(binary)) return binary;
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  try {
    return DECODER.decode(bytes);
  } catch {
    return undefined;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const SMALL_OBJECT = 16;

/**
 * Whether some object in `json` has the same member name twice, at any depth.
 * `JSON.parse` silently keeps the last one; a token must not be read two ways.
 * Names are compared after unescaping (`"a"` and `"\u0061"` are the same).
 *
 * Precondition: `json` is valid JSON (call it after `JSON.parse` succeeded).
 *
 * @returns `true` when a duplicate member name exists.
 */
export function hasDuplicateKeys(json: string): boolean {
  // One entry per open container: the names seen so far, or null for arrays.
  const stack: (string[] | Set<string> | null)[] = [];
  let expectKey = false;
  const length = json.length;
  for (let i = 0; i < length; i++) {
    const c = json.charCodeAt(i);
    if (c === QUOTE) {
      // Jump to the closing quote: the next one not escaped by an odd run of backslashes.
      const start = i + 1;
      let end = json.indexOf('"', start);
      for (;;) {
        let backslashes = 0;
        while (json.charCodeAt(end - 1 - backslashes) === BACKSLASH) backslashes++;
        if ((backslashes & 1) === 0) break;
        end = json.indexOf('"', end + 1);
      }
      if (expectKey) {
        const raw = json.slice(start, end);
        const name = raw.includes("\\") ? JSON.parse(`"${raw}"`) as string : raw;
        const seen = stack[stack.length - 1];
        if (seen instanceof Set) {
          if (seen.has(name)) return true;
          seen.add(name);
        } else if (seen !== undefined && seen !== null) {
          if (seen.includes(name)) return true;
          seen.push(name);
          // Small objects are cheapest as arrays; large ones must not cost O(n²).
          if (seen.length > SMALL_OBJECT) stack[stack.length - 1] = new Set(seen);
        }
        expectKey = false;
      }
      i = end;
    } else if (c === OPEN_BRACE) {
      stack.push([]);
      expectKey = true;
    } else if (c === OPEN_BRACKET) {
      stack.push(null);
      expectKey = false;
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      stack.pop();
      expectKey = false;
    } else if (c === COMMA) {
      expectKey = stack[stack.length - 1] !== null && stack.length > 0;
    }
  }
  return false;
}
