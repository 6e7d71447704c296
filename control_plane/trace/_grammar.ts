// Constants and lowercase hex helpers shared by the trace files. Char-code loops, no allocation.

/** The `sampled` bit of the trace flags. */
export const SAMPLED = 0x01;
/** The length of a version `00` traceparent: `00-` + 32 + `-` + 16 + `-` + 2. */
export const VERSION_00_LENGTH = 55;

/** `0`..`9` and `a`..`f` to 0..15; anything else (uppercase too) to -1. */
export function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/**
 * Whether `value[start..end)` is lowercase hex and not all `0`. Out-of-range
 * positions read as `NaN` and fail the check.
 */
export function isNonZeroHex(value: string, start: number, end: number): boolean {
  let nonZero = false;
  for (let i = start; i < end; i++) {
    const code = value.charCodeAt(i);
    if (code === 0x30) continue;
    if (hexValue(code) < 0) return false;
    nonZero = true;
  }
  return nonZero;
}

const BYTE_TO_HEX: readonly string[] = Array.from(
  { length: 256 },
  (_, byte) => byte.toString(16).padStart(2, "0"),
);

/** Two lowercase hex digits for a byte (0..255). */
export function byteToHex(byte: number): string {
  return BYTE_TO_HEX[byte] ?? "";
}

/** Lowercase hex of all bytes. */
export function bytesToHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += byteToHex(bytes[i] ?? 0);
  return out;
}
