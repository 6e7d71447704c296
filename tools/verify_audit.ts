/**
 * An outside auditor's check of an exported audit log, with nothing but
 * SHA-256 and RFC 8785 (JCS): it imports no code of this package, so it can be
 * read in one sitting and ported to any language. See docs/AUDIT.md.
 *
 *   deno run -A cli.ts audit export --db plm.db > audit.jsonl
 *   deno run --allow-read tools/verify_audit.ts audit.jsonl [--expected-head SEQ:HASH]
 *
 * Input: JSON Lines, one record per line, oldest first, as `plm audit export`
 * writes them. Prints "N records valid" and exits 0, or names the first bad
 * record and exits 1; exits 2 on a usage error.
 *
 * @module
 */
import { createHash } from "node:crypto";

const GENESIS = "0".repeat(64);

/** RFC 8785: keys sorted by UTF-16 code units, no whitespace, ECMAScript numbers and strings. */
export function jcs(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error("not JSON");
    if (typeof value === "string" && !value.isWellFormed()) throw new Error("not I-JSON");
    const text = JSON.stringify(value);
    if (text === undefined) throw new Error("not JSON");
    return text;
  }
  if (Array.isArray(value)) return `[${value.map(jcs).join(",")}]`;
  const object = value as Record<string, unknown>;
  return `{${
    Object.keys(object).sort().map((key) => `${jcs(key)}:${jcs(object[key])}`).join(",")
  }}`;
}

/** The documented record hash: hex(SHA-256(UTF-8(prevHash + JCS(body)))). */
export function recordHash(record: Record<string, unknown>): string {
  const actor = record.actor as { kind: unknown; subject: unknown };
  const body = {
    action: record.action,
    actor: { kind: actor.kind, subject: actor.subject },
    at: record.at,
    data: record.data,
    outcome: record.outcome,
    reason: record.reason,
    resource: record.resource,
    runId: record.runId,
    seq: record.seq,
    traceId: record.traceId,
  };
  return createHash("sha256").update(String(record.prevHash) + jcs(body), "utf8").digest("hex");
}

/** What {@link verifyLines} found. */
export type Verdict =
  | { ok: true; checked: number; head: { seq: number; hash: string } }
  | { ok: false; checked: number; seq: number; problem: string };

/** Checks records in order: seq 1, 2, 3..., each linked to its predecessor and hashed as documented. */
export function verifyLines(
  lines: Iterable<string>,
  expectedHead?: { seq: number; hash: string },
): Verdict {
  let checked = 0;
  let prevHash = GENESIS;
  let hashAtExpected = expectedHead?.seq === 0 ? GENESIS : undefined;
  for (const line of lines) {
    if (line.trim() === "") continue;
    const seq = checked + 1;
    let record: Record<string, unknown>;
    try {
      record = JSON.parse(line);
    } catch {
      return { ok: false, checked, seq, problem: "not_json" };
    }
    if (record.seq !== seq) return { ok: false, checked, seq, problem: "seq_gap" };
    if (record.prevHash !== prevHash) {
      return { ok: false, checked, seq, problem: "prev_hash_mismatch" };
    }
    let hash: string;
    try {
      hash = recordHash(record);
    } catch {
      return { ok: false, checked, seq, problem: "not_json" };
    }
    if (hash !== record.hash) return { ok: false, checked, seq, problem: "hash_mismatch" };
    if (seq === expectedHead?.seq) hashAtExpected = hash;
    prevHash = hash;
    checked = seq;
  }
  if (expectedHead !== undefined) {
    if (hashAtExpected === undefined) {
      return { ok: false, checked, seq: checked + 1, problem: "truncated" };
    }
    if (hashAtExpected !== expectedHead.hash) {
      return { ok: false, checked, seq: expectedHead.seq, problem: "head_mismatch" };
    }
  }
  return { ok: true, checked, head: { seq: checked, hash: prevHash } };
}

async function main(args: string[]): Promise<number> {
  const [path, flag, head] = args;
  const match = head?.match(/^(\d+):([0-9a-f]{64})$/);
  if (path === undefined || (flag !== undefined && (flag !== "--expected-head" || !match))) {
    console.error("usage: verify_audit.ts FILE [--expected-head SEQ:HASH]");
    return 2;
  }
  const text = await Deno.readTextFile(path);
  const expected = match ? { seq: Number(match[1]), hash: match[2]! } : undefined;
  const verdict = verifyLines(text.split("\n"), expected);
  console.log(`${verdict.checked} records valid`);
  if (verdict.ok) return 0;
  console.log(`record ${verdict.seq} invalid: ${verdict.problem}`);
  return 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
