/**
 * The page cursor of `RunStore.page`, pure: the keyset of the last run of a
 * page, encoded for callers and decoded (and refused) when it comes back.
 *
 * @module
 */
import { checkText, INPUT_LIMITS, invalidArgument } from "../../shared/mod.ts";

/** The longest cursor: an id of `INPUT_LIMITS.textLength` characters, each escaped to 6 bytes. */
const MAX_CURSOR_LENGTH = Math.ceil((INPUT_LIMITS.textLength * 6 + 32) * 4 / 3);

/** Where a page ends: the last run's `createdAt` and `id` (the keyset of the next page). */
export interface CursorKey {
  readonly createdAt: number;
  readonly id: string;
}

/**
 * A page cursor: the base64url of the JSON `[createdAt, id]` of the last run
 * of the page. It is opaque to callers; {@link decodeCursor} accepts exactly
 * this shape and refuses anything else.
 */
export function encodeCursor(run: CursorKey): string {
  return new TextEncoder().encode(JSON.stringify([run.createdAt, run.id]))
    .toBase64({ alphabet: "base64url", omitPadding: true });
}

/**
 * The key of a cursor from {@link encodeCursor}. Throws `ERR_INVALID_ARGUMENT`
 * naming `cursor` for anything else: not a text, too long, not base64url, not
 * UTF-8, not that JSON shape, or an id that is not a safe text.
 */
export function decodeCursor(cursor: unknown): CursorKey {
  const text = checkText("cursor", cursor, MAX_CURSOR_LENGTH);
  let key: unknown;
  try {
    const bytes = Uint8Array.fromBase64(text, { alphabet: "base64url" });
    key = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    key = undefined;
  }
  if (
    !Array.isArray(key) || key.length !== 2 || !Number.isSafeInteger(key[0]) ||
    typeof key[1] !== "string"
  ) {
    throw invalidArgument("cursor", "not a cursor from RunStore.page");
  }
  return { createdAt: key[0], id: checkText("cursor", key[1]) };
}
