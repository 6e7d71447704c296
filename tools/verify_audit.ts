/**
 * An outside auditor's check of an exported audit log, with nothing but
 * SHA-256 and RFC 8785 (JCS): it imports no code of this package, so it can be
 * read in one sitting and ported to any language. See docs/AUDIT.md.
 *
 *   deno run -A cli.ts audit export --db plm.db > audit.jsonl
 *   deno run --allow-read tools/verify_audit.ts audit.jsonl [--expected-head SEQ:HASH]
 *     [--checkpoint FILE... --public-key FILE...]
 *
 * Input: JSON Lines, one record per line, oldest first, as `plm audit export`
 * writes them; checkpoints as `plm audit checkpoint` writes them, with the
 * signer's Ed25519 public key (SPKI PEM or JWK). Prints "N records valid" and
 * exits 0, or names the first bad record (or checkpoint) and exits 1; exits 2
 * on a usage error.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { parseArgs } from "node:util";

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

/** A head the log must pass through: `--expected-head`, or a checkpoint whose signature holds. */
export interface Head {
  seq: number;
  hash: string;
}

/**
 * Checks records in order: seq 1, 2, 3..., each linked to its predecessor and hashed as
 * documented; then that the log reaches every expected head with its hash.
 */
export function verifyLines(lines: Iterable<string>, expectedHeads: Head[] = []): Verdict {
  let checked = 0;
  let prevHash = GENESIS;
  const wanted = new Set(expectedHeads.map((head) => head.seq));
  const hashAt = new Map<number, string>([[0, GENESIS]]); // only at the wanted seqs
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
    if (wanted.has(seq)) hashAt.set(seq, hash);
    prevHash = hash;
    checked = seq;
  }
  for (const head of [...expectedHeads].sort((a, b) => a.seq - b.seq)) {
    const hash = hashAt.get(head.seq);
    if (hash === undefined) return { ok: false, checked, seq: checked + 1, problem: "truncated" };
    if (hash !== head.hash) return { ok: false, checked, seq: head.seq, problem: "head_mismatch" };
  }
  return { ok: true, checked, head: { seq: checked, hash: prevHash } };
}

/**
 * Checks a checkpoint file against trusted Ed25519 public keys and returns the head it
 * vouches for. A checkpoint is exactly `{ version: 1, seq, hash, at, keyId, signature }`;
 * `keyId` is the first 16 hex digits of SHA-256 of the signer's public key (SPKI DER);
 * `signature` is the unpadded base64url of Ed25519 over UTF-8(JCS of the other five fields).
 * Throws an Error saying why when the checkpoint is not to be trusted.
 */
export async function verifyCheckpoint(text: string, publicKeyTexts: string[]): Promise<Head> {
  const checkpoint = JSON.parse(text);
  const keys = Object.keys(checkpoint ?? {}).sort().join(",");
  if (keys !== "at,hash,keyId,seq,signature,version" || checkpoint.version !== 1) {
    throw new Error("not a version 1 checkpoint");
  }
  const { signature, ...body } = checkpoint;
  if (
    !Number.isSafeInteger(body.seq) || body.seq < 0 || !/^[0-9a-f]{64}$/.test(body.hash) ||
    !Number.isSafeInteger(body.at) || typeof signature !== "string" ||
    !/^[A-Za-z0-9_-]{85}[AQgw]$/.test(signature)
  ) {
    throw new Error("malformed checkpoint");
  }
  for (const keyText of publicKeyTexts) {
    const key = await importPublicKey(keyText);
    const spki = new Uint8Array(await crypto.subtle.exportKey("spki", key));
    const keyId = createHash("sha256").update(spki).digest("hex").slice(0, 16);
    if (keyId !== body.keyId) continue;
    const bytes = Uint8Array.fromBase64(signature, { alphabet: "base64url" });
    if (!await crypto.subtle.verify("Ed25519", key, bytes, new TextEncoder().encode(jcs(body)))) {
      throw new Error("bad signature");
    }
    return { seq: body.seq, hash: body.hash };
  }
  throw new Error(`no trusted key has id ${body.keyId}`);
}

/** An Ed25519 public key from an SPKI PEM block or a JWK. */
function importPublicKey(text: string): Promise<CryptoKey> {
  if (text.trim().startsWith("{")) {
    const { kty, crv, x, d } = JSON.parse(text);
    // A private key has no place with a verifier: refuse it rather than use its public half.
    if (d !== undefined) throw new Error("a private JWK given as a public key");
    return crypto.subtle.importKey("jwk", { kty, crv, x }, "Ed25519", true, ["verify"]);
  }
  if (!/-----BEGIN PUBLIC KEY-----/.test(text)) throw new Error("not a PUBLIC KEY PEM block");
  const base64 = text.replace(/-----(BEGIN|END) PUBLIC KEY-----|\s/g, "");
  const der = Uint8Array.fromBase64(base64);
  return crypto.subtle.importKey("spki", der, "Ed25519", true, ["verify"]);
}

const USAGE = "usage: verify_audit.ts FILE [--expected-head SEQ:HASH] " +
  "[--checkpoint FILE... --public-key FILE...]";

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        "expected-head": { type: "string" },
        checkpoint: { type: "string", multiple: true },
        "public-key": { type: "string", multiple: true },
      },
    });
  } catch {
    parsed = undefined;
  }
  const { checkpoint = [], "public-key": publicKeys = [] } = parsed?.values ?? {};
  const headText = parsed?.values["expected-head"];
  const match = headText?.match(/^(\d+):([0-9a-f]{64})$/);
  const [path, ...extra] = parsed?.positionals ?? [];
  if (
    path === undefined || extra.length > 0 || (headText !== undefined && !match) ||
    (checkpoint.length > 0) !== (publicKeys.length > 0)
  ) {
    console.error(USAGE);
    return 2;
  }
  const heads: Head[] = match ? [{ seq: Number(match[1]), hash: match[2]! }] : [];
  let keyTexts: string[];
  try {
    keyTexts = await Promise.all(publicKeys.map((file) => Deno.readTextFile(file)));
  } catch (err) {
    console.error(`cannot read a --public-key file: ${(err as Error).message}`);
    return 2;
  }
  for (const file of checkpoint) {
    try {
      heads.push(await verifyCheckpoint(await Deno.readTextFile(file), keyTexts));
    } catch (err) {
      console.log(`checkpoint ${file} invalid: ${(err as Error).message}`);
      return 1;
    }
  }
  const text = await Deno.readTextFile(path);
  const verdict = verifyLines(text.split("\n"), heads);
  console.log(`${verdict.checked} records valid`);
  if (verdict.ok) return 0;
  console.log(`record ${verdict.seq} invalid: ${verdict.problem}`);
  return 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
