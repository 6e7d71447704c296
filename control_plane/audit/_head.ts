/**
 * The one check of an audit head (a seq and a hash), shared by the audit log
 * and its checkpoints.
 *
 * @module
 */
import { checkInteger, invalidArgument } from "../../shared/mod.ts";

/** A record hash: 64 lowercase hex digits. */
export const HASH_PATTERN = /^[0-9a-f]{64}$/;

/**
 * Refuses a head whose `seq` is not an integer >= 0 or whose `hash` is not
 * 64 lowercase hex digits, naming `${field}.seq` or `${field}.hash`.
 */
export function checkHead(field: string, head: { seq: number; hash: string }): void {
  if (typeof head !== "object" || head === null) throw invalidArgument(field, "expected an object");
  checkInteger(`${field}.seq`, head.seq);
  if (typeof head.hash !== "string" || !HASH_PATTERN.test(head.hash)) {
    throw invalidArgument(`${field}.hash`, "expected 64 lowercase hex digits");
  }
}
