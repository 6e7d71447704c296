/**
 * Signed checkpoints of the audit chain: a head (seq and hash) and a time,
 * signed with Ed25519, so that truncation and rewrites can be detected by
 * anyone who holds the public key. No SQL: {@link AuditLog.verify} checks a
 * log against checkpoints verified here.
 *
 * @module
 */
import { VERIFIED_CHECKPOINTS } from "./_verified.ts";
import { z } from "zod";
import {
  canonicalJson,
  type Clock,
  invalidArgument,
  parseArgument,
  PlmError,
  type Schema,
  systemClock,
} from "../../shared/mod.ts";
import { checkHead, HASH_PATTERN } from "./_head.ts";
import type { AuditHead } from "./verify.ts";

/** A signed checkpoint of the audit chain, as `plm audit checkpoint` writes it. */
export interface AuditCheckpoint {
  /** The format version: 1. */
  readonly version: 1;
  /** The seq of the newest record covered (0 for an empty log). */
  readonly seq: number;
  /** That record's hash (`AUDIT_GENESIS_HASH` for seq 0). */
  readonly hash: string;
  /** When it was signed, whole epoch milliseconds. */
  readonly at: number;
  /** The signing key's fingerprint: the first 16 hex digits of SHA-256 of its SPKI. */
  readonly keyId: string;
  /** Ed25519 over the UTF-8 of `canonicalJson({ at, hash, keyId, seq, version })`, base64url. */
  readonly signature: string;
}

/** The latest time a `Date` can hold (epoch ms). */
const MAX_DATE_MS = 8_640_000_000_000_000;

/**
 * Zod schema of {@link AuditCheckpoint}; unknown keys are refused. `seq` and
 * `at` are integers >= 0, `hash` 64 lowercase hex digits, `keyId` 16, and
 * `signature` the canonical unpadded base64url of 64 bytes.
 *
 * @example Refuse an unknown key
 * ```ts
 * import { AuditCheckpointSchema } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const checkpoint = {
 *   version: 1,
 *   seq: 0,
 *   hash: "0".repeat(64),
 *   at: 0,
 *   keyId: "0123456789abcdef",
 *   signature: "A".repeat(86),
 * };
 * assert.ok(AuditCheckpointSchema.safeParse(checkpoint).success);
 * assert.equal(AuditCheckpointSchema.safeParse({ ...checkpoint, note: "x" }).success, false);
 * ```
 */
export const AuditCheckpointSchema: Schema<AuditCheckpoint> = z.strictObject({
  version: z.literal(1),
  seq: z.number().int().min(0),
  hash: z.string().regex(HASH_PATTERN, "expected 64 lowercase hex digits"),
  at: z.number().int().min(0).max(MAX_DATE_MS),
  keyId: z.string().regex(/^[0-9a-f]{16}$/, "expected 16 lowercase hex digits"),
  // 64 bytes are 86 base64url digits; the last one carries 2 bits and 4 zero bits.
  signature: z.string().regex(
    /^[A-Za-z0-9_-]{85}[AQgw]$/,
    "expected the base64url of 64 bytes, unpadded",
  ),
});

/**
 * An Ed25519 key and its id, from {@link importCheckpointPrivateKey} or
 * {@link importCheckpointPublicKey}.
 */
export interface CheckpointKey {
  /** The WebCrypto key: a non-extractable private key that signs, or a public key. */
  readonly key: CryptoKey;
  /** The first 16 hex digits of SHA-256 of the public key's SPKI (DER). */
  readonly keyId: string;
}

/** Options for {@link importCheckpointPrivateKey} and {@link importCheckpointPublicKey}. */
export interface CheckpointKeyOptions {
  /**
   * The name of the key in error messages (`"publicKey"` when importing a public key).
   *
   * @default {"privateKey"}
   */
  field?: string;
}

/** Options for {@link signCheckpoint}. */
export interface CheckpointSignOptions {
  /** The signing key, from {@link importCheckpointPrivateKey}; its `keyId` is signed too. */
  privateKey: CheckpointKey;
  /**
   * Stamps the checkpoint's `at` (truncated to whole milliseconds).
   *
   * @default {systemClock}
   */
  clock?: Clock;
}

/**
 * Every way {@link verifyCheckpoint} can refuse a checkpoint.
 *
 * @example Tell the problems apart
 * ```ts
 * import { CHECKPOINT_PROBLEMS } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual([...CHECKPOINT_PROBLEMS], ["unknown_key", "bad_signature"]);
 * ```
 */
export const CHECKPOINT_PROBLEMS = [
  /** No key given has the checkpoint's `keyId`. */
  "unknown_key",
  /** The signature does not match the checkpoint's fields under that key. */
  "bad_signature",
] as const;

/** One of {@link CHECKPOINT_PROBLEMS}. */
export type CheckpointProblem = typeof CHECKPOINT_PROBLEMS[number];

/** What {@link verifyCheckpoint} found. */
export type CheckpointVerifyResult =
  | {
    /** The signature holds. */
    readonly ok: true;
    /** The checkpoint, as checked: hand it to `AuditLog.verify({ checkpoints })`. */
    readonly checkpoint: AuditCheckpoint;
  }
  | {
    /** The checkpoint is not to be trusted. */
    readonly ok: false;
    /** Why, as a stable code. */
    readonly problem: CheckpointProblem;
    /** Why, in words. */
    readonly reason: string;
  };

/** A new Ed25519 key pair, as PEM texts, and its key id. */
export interface CheckpointKeyPair {
  /** The private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`): keep it secret. */
  readonly privateKeyPem: string;
  /** The public key, SPKI PEM (`BEGIN PUBLIC KEY`): give it to verifiers. */
  readonly publicKeyPem: string;
  /** The key id that checkpoints signed with it carry. */
  readonly keyId: string;
}

const ED25519 = "Ed25519";
const ENCODER = new TextEncoder();

/**
 * Generates an Ed25519 key pair for signing checkpoints (`plm audit keygen`).
 *
 * @returns The private and public keys as PEM, and the key id.
 *
 * @example Sign with a new pair
 * ```ts
 * import {
 *   generateCheckpointKeys,
 *   importCheckpointPrivateKey,
 *   importCheckpointPublicKey,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const pair = await generateCheckpointKeys();
 * assert.equal((await importCheckpointPrivateKey(pair.privateKeyPem)).keyId, pair.keyId);
 * assert.equal((await importCheckpointPublicKey(pair.publicKeyPem)).keyId, pair.keyId);
 * ```
 */
export async function generateCheckpointKeys(): Promise<CheckpointKeyPair> {
  const pair = await crypto.subtle.generateKey(ED25519, true, ["sign", "verify"]) as CryptoKeyPair;
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
  return {
    privateKeyPem: toPem("PRIVATE KEY", pkcs8),
    publicKeyPem: toPem("PUBLIC KEY", spki),
    keyId: await keyIdOf(pair.publicKey),
  };
}

/**
 * Imports an Ed25519 private key to sign checkpoints with, from a PKCS#8 PEM
 * text (`BEGIN PRIVATE KEY`) or a JWK (`{ "kty": "OKP", "crv": "Ed25519", "d", "x" }`).
 * The key is imported non-extractable.
 *
 * @param text The file's text.
 * @param options The name of the key in errors.
 * @returns The key and its id.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the key when the text is not an
 * Ed25519 private key (a public key included).
 *
 * @example Import a JWK
 * ```ts
 * import { importCheckpointPrivateKey } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const pair = await crypto.subtle.generateKey("Ed25519", true, ["sign", "verify"]) as CryptoKeyPair;
 * const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
 * const imported = await importCheckpointPrivateKey(JSON.stringify(jwk));
 * assert.equal(imported.key.type, "private");
 * const { d: _, ...publicJwk } = jwk;
 * await assert.rejects(importCheckpointPrivateKey(JSON.stringify(publicJwk)), {
 *   code: "ERR_INVALID_ARGUMENT",
 * });
 * ```
 */
export async function importCheckpointPrivateKey(
  text: string,
  options: CheckpointKeyOptions = {},
): Promise<CheckpointKey> {
  const { field = "privateKey" } = options;
  const source = readKeyText(text, field, "PRIVATE KEY");
  if (source.kind === "jwk" && typeof source.jwk.d !== "string") {
    throw invalidArgument(field, "expected a private key, got a public key");
  }
  // Only the key material of a JWK: its `ext` and `key_ops` would forbid the imports below.
  const { kty, crv, d, x } = source.kind === "jwk" ? source.jwk : {};
  const importAs = (extractable: boolean) =>
    source.kind === "jwk"
      ? importOrRefuse(field, "jwk", { kty, crv, d, x } as JsonWebKey, extractable, ["sign"])
      : importOrRefuse(field, "pkcs8", source.der, extractable, ["sign"]);
  const key = await importAs(false);
  // The key id needs the public half, derived from the private key (never taken from a
  // JWK's `x` on trust) through a second, extractable import that is dropped at once:
  // the key that signs never leaves WebCrypto.
  const publicX = (await crypto.subtle.exportKey("jwk", await importAs(true))).x;
  const publicKey = await importOrRefuse(
    field,
    "jwk",
    { kty: "OKP", crv: ED25519, x: publicX ?? "" },
    true,
    ["verify"],
  );
  return { key, keyId: await keyIdOf(publicKey) };
}

/**
 * Imports an Ed25519 public key to verify checkpoints with, from an SPKI PEM
 * text (`BEGIN PUBLIC KEY`) or a JWK (`{ "kty": "OKP", "crv": "Ed25519", "x" }`).
 * A private key is refused: it must not be handed to verifiers.
 *
 * @param text The file's text.
 * @param options The name of the key in errors.
 * @returns The key and its id.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the key when the text is not an
 * Ed25519 public key.
 *
 * @example Refuse a private key where a public one is expected
 * ```ts
 * import {
 *   generateCheckpointKeys,
 *   importCheckpointPublicKey,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const pair = await generateCheckpointKeys();
 * assert.equal((await importCheckpointPublicKey(pair.publicKeyPem)).key.type, "public");
 * await assert.rejects(importCheckpointPublicKey(pair.privateKeyPem), {
 *   code: "ERR_INVALID_ARGUMENT",
 * });
 * ```
 */
export async function importCheckpointPublicKey(
  text: string,
  options: CheckpointKeyOptions = {},
): Promise<CheckpointKey> {
  const { field = "publicKey" } = options;
  const source = readKeyText(text, field, "PUBLIC KEY");
  if (source.kind === "jwk" && "d" in source.jwk) {
    throw invalidArgument(field, "expected a public key, got a private key (keep it secret)");
  }
  const key = source.kind === "jwk"
    ? await importOrRefuse(field, "jwk", source.jwk, true, ["verify"])
    : await importOrRefuse(field, "spki", source.der, true, ["verify"]);
  return { key, keyId: await keyIdOf(key) };
}

/**
 * Signs a head of the audit chain: `{ version: 1, seq, hash, at, keyId }`
 * and an Ed25519 signature over the UTF-8 bytes of its canonical JSON
 * (RFC 8785). Sign `AuditLog.head()`: it seals first (PostgreSQL) and returns
 * the sealed watermark, the newest record that is chained and immutable (on
 * SQLite every append is chained at once).
 *
 * @param head The seq and hash to vouch for.
 * @param options The key and the clock.
 * @returns The signed checkpoint.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `head.seq` or `head.hash` when the
 * head is malformed.
 *
 * @example Sign the head of a log
 * ```ts
 * import {
 *   AuditLog,
 *   generateCheckpointKeys,
 *   importCheckpointPrivateKey,
 *   openStore,
 *   signCheckpoint,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * await audit.append({ actor: { subject: "svc", kind: "service" }, action: "demo", resource: "x", outcome: "ok" });
 * const privateKey = await importCheckpointPrivateKey((await generateCheckpointKeys()).privateKeyPem);
 * const checkpoint = await signCheckpoint(await audit.head(), { privateKey });
 * assert.equal(checkpoint.hash, (await audit.head()).hash);
 * ```
 */
export async function signCheckpoint(
  head: AuditHead,
  options: CheckpointSignOptions,
): Promise<AuditCheckpoint> {
  const { privateKey, clock = systemClock } = options;
  checkHead("head", head);
  const now = clock.now();
  const at = Math.trunc(now);
  if (!Number.isSafeInteger(at) || at < 0 || at > MAX_DATE_MS) {
    throw new PlmError("ERR_INTERNAL", `Cannot stamp a checkpoint with the time ${now}`);
  }
  const body = { version: 1, seq: head.seq, hash: head.hash, at, keyId: privateKey.keyId } as const;
  const signature = await crypto.subtle.sign(ED25519, privateKey.key, signedBytes(body));
  const signed: AuditCheckpoint = Object.freeze({
    ...body,
    signature: new Uint8Array(signature).toBase64({ alphabet: "base64url", omitPadding: true }),
  });
  VERIFIED_CHECKPOINTS.add(signed); // signed here, with a key this process holds
  return signed;
}

/**
 * Checks a checkpoint's signature with the key whose id it names. A checkpoint
 * whose signature holds may be handed to `AuditLog.verify({ checkpoints })`.
 *
 * @param checkpoint The checkpoint, from {@link parseCheckpoint} or {@link signCheckpoint}.
 * @param publicKeys The trusted key, or keys (after a rotation), from
 * {@link importCheckpointPublicKey}.
 * @returns `ok: true` with the checkpoint, or the problem.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the field when `checkpoint` does not
 * match {@link AuditCheckpointSchema}.
 *
 * @example Verify, then check the chain against the checkpoint
 * ```ts
 * import {
 *   AuditLog,
 *   generateCheckpointKeys,
 *   importCheckpointPrivateKey,
 *   importCheckpointPublicKey,
 *   openStore,
 *   signCheckpoint,
 *   verifyCheckpoint,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * await audit.append({ actor: { subject: "svc", kind: "service" }, action: "demo", resource: "x", outcome: "ok" });
 * const pair = await generateCheckpointKeys();
 * const privateKey = await importCheckpointPrivateKey(pair.privateKeyPem);
 * const signed = await signCheckpoint(await audit.head(), { privateKey });
 *
 * const result = await verifyCheckpoint(signed, await importCheckpointPublicKey(pair.publicKeyPem));
 * assert.ok(result.ok);
 * assert.equal((await audit.verify({ checkpoints: [result.checkpoint] })).ok, true);
 * ```
 */
export async function verifyCheckpoint(
  checkpoint: AuditCheckpoint,
  publicKeys: CheckpointKey | readonly CheckpointKey[],
): Promise<CheckpointVerifyResult> {
  const checked = parseArgument(AuditCheckpointSchema, checkpoint, "checkpoint");
  const keys: readonly CheckpointKey[] = Array.isArray(publicKeys)
    ? publicKeys
    : [publicKeys as CheckpointKey];
  const publicKey = keys.find((key) => key.keyId === checked.keyId);
  if (publicKey === undefined) {
    return {
      ok: false,
      problem: "unknown_key",
      reason: `Checkpoint signed by key ${checked.keyId}, which is not among the trusted keys (${
        keys.map((k) => k.keyId).join(", ") || "none"
      })`,
    };
  }
  const { signature, ...body } = checked;
  const valid = await crypto.subtle.verify(
    ED25519,
    publicKey.key,
    // The schema has checked the form: 86 digits, the last one's 4 spare bits zero.
    Uint8Array.fromBase64(signature, { alphabet: "base64url" }),
    signedBytes(body),
  );
  if (!valid) {
    return {
      ok: false,
      problem: "bad_signature",
      reason:
        `Checkpoint of record ${checked.seq} does not match its signature under key ${checked.keyId}`,
    };
  }
  const trusted = Object.freeze(checked);
  VERIFIED_CHECKPOINTS.add(trusted);
  return { ok: true, checkpoint: trusted };
}

/**
 * Parses the text of a checkpoint file: JSON matching {@link AuditCheckpointSchema}.
 * It does not check the signature: {@link verifyCheckpoint} does.
 *
 * @param text The file's text.
 * @param field The name of the checkpoint in errors.
 * @returns The checkpoint.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the field (`checkpoint.seq`) when the
 * text is not JSON or does not match the schema.
 *
 * @example Parse a file written by `plm audit checkpoint`
 * ```ts
 * import { parseCheckpoint } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const text = JSON.stringify({
 *   version: 1,
 *   seq: 7,
 *   hash: "c".repeat(64),
 *   at: 1_764_460_800_000,
 *   keyId: "0123456789abcdef",
 *   signature: "A".repeat(86),
 * });
 * assert.equal(parseCheckpoint(text).seq, 7);
 * assert.throws(() => parseCheckpoint(text.replace('"seq":7', '"seq":-1')), {
 *   code: "ERR_INVALID_ARGUMENT",
 *   message: /checkpoint\.seq/,
 * });
 * ```
 */
export function parseCheckpoint(text: string, field = "checkpoint"): AuditCheckpoint {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(field, `not JSON (${(err as Error).message})`);
  }
  return parseArgument(AuditCheckpointSchema, value, field);
}

/** The bytes a checkpoint's signature covers. */
function signedBytes(body: Omit<AuditCheckpoint, "signature">): Uint8Array<ArrayBuffer> {
  const { version, seq, hash, at, keyId } = body;
  return ENCODER.encode(canonicalJson({ version, seq, hash, at, keyId }));
}

/** The first 16 hex digits of SHA-256 of the public key's SPKI (DER). */
async function keyIdOf(publicKey: CryptoKey): Promise<string> {
  const spki = await crypto.subtle.exportKey("spki", publicKey);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", spki));
  return digest.subarray(0, 8).toHex();
}

type KeySource =
  | { kind: "jwk"; jwk: JsonWebKey }
  | { kind: "der"; der: Uint8Array<ArrayBuffer> };

/** Reads a JWK (text starting with `{`) or exactly one PEM block with the given label. */
function readKeyText(text: string, field: string, label: string): KeySource {
  if (typeof text !== "string") throw invalidArgument(field, "expected a text");
  const trimmed = text.trim();
  if (trimmed.startsWith("{")) {
    let jwk: unknown;
    try {
      jwk = JSON.parse(trimmed);
    } catch {
      throw invalidArgument(field, "not a JWK: not JSON");
    }
    if (typeof jwk !== "object" || jwk === null || Array.isArray(jwk)) {
      throw invalidArgument(field, "not a JWK: expected an object");
    }
    return { kind: "jwk", jwk: jwk as JsonWebKey };
  }
  const match = /^-----BEGIN ([A-Z ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)\r?\n-----END \1-----$/.exec(
    trimmed,
  );
  if (match === null) {
    throw invalidArgument(field, `expected a PEM block 'BEGIN ${label}' or a JWK`);
  }
  if (match[1] !== label) {
    const got = match[1] === "PUBLIC KEY" ? "a public key" : `a '${match[1]}' block`;
    throw invalidArgument(field, `expected '${label}', got ${got}`);
  }
  try {
    const der = Uint8Array.fromBase64(match[2]!.replace(/\r?\n/g, ""), {
      lastChunkHandling: "strict",
    });
    return { kind: "der", der };
  } catch {
    throw invalidArgument(field, "the PEM block is not base64");
  }
}

/** Imports an Ed25519 key, turning WebCrypto's refusal into `ERR_INVALID_ARGUMENT`. */
async function importOrRefuse(
  field: string,
  format: "jwk" | "pkcs8" | "spki",
  data: JsonWebKey | Uint8Array<ArrayBuffer>,
  extractable: boolean,
  usages: KeyUsage[],
): Promise<CryptoKey> {
  try {
    return format === "jwk"
      ? await crypto.subtle.importKey(format, data as JsonWebKey, ED25519, extractable, usages)
      : await crypto.subtle.importKey(
        format,
        data as Uint8Array<ArrayBuffer>,
        ED25519,
        extractable,
        usages,
      );
  } catch (err) {
    throw invalidArgument(field, `not an Ed25519 key (${(err as Error).message})`);
  }
}

function toPem(label: string, der: Uint8Array): string {
  const lines = der.toBase64().match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
