/**
 * JSON values, as stored in audit records and run payloads.
 *
 * @module
 */

/** Any value that survives `JSON.stringify` and `JSON.parse` unchanged. */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | readonly JsonValue[]
  | { readonly [key: string]: JsonValue };
