/**
 * Inbox sessions, in memory: an opaque random id (the cookie's value) maps to
 * the identity a pasted token proved, a per-session CSRF token and the
 * approvals decided in it. A session ends when its token expires, at sign
 * out, or when the store evicts it (oldest first) to stay under its limit.
 * Tokens themselves are never kept.
 *
 * @module
 */
import type { Clock, Identity, Random } from "../../shared/mod.ts";

/** One signed-in approver. */
export interface Session {
  /** The opaque id the cookie carries. */
  readonly id: string;
  /** Who signed in, as the token proved. */
  readonly identity: Identity;
  /** The CSRF token every form of this session carries. */
  readonly csrf: string;
  /** When the session ends (the token's expiry), epoch ms. */
  readonly expiresAt: number;
  /** Approvals decided in this session, newest first, so their outcome stays in view. */
  readonly decided: string[];
}

/** How many decided approvals a session keeps in view. */
const DECIDED_KEPT = 20;

/**
 * `size` random bytes as base64url: from `random` (each byte
 * `floor(random() * 256)`) when given, else from `crypto.getRandomValues`.
 */
export function randomToken(random: Random | undefined, size = 32): string {
  const bytes = new Uint8Array(size);
  if (random === undefined) crypto.getRandomValues(bytes);
  else for (let i = 0; i < size; i++) bytes[i] = Math.floor(random() * 256) & 0xff;
  return toBase64Url(bytes);
}

/** Whether two texts are equal, in time that depends on their lengths only. */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = ENCODER.encode(a);
  const y = ENCODER.encode(b);
  // The lengths are public (tokens have a fixed length); the contents are not.
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** HMAC-SHA-256 of `message` under `key`, base64url. */
export async function hmac(key: CryptoKey, message: string): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, ENCODER.encode(message));
  return toBase64Url(new Uint8Array(mac));
}

/** Imports an HMAC-SHA-256 key (non-extractable) from a secret. */
export function importHmacKey(secret: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    secret as Uint8Array<ArrayBuffer>,
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
}

/** The most live sessions one subject holds at once (its browsers and devices). */
export const SESSIONS_PER_SUBJECT = 8;

/** The sessions of one inbox, in memory. */
export class SessionStore {
  #sessions = new Map<string, Session>();
  #clock: Clock;
  #random: Random | undefined;
  #max: number;

  constructor(clock: Clock, random: Random | undefined, max: number) {
    this.#clock = clock;
    this.#random = random;
    this.#max = max;
  }

  /**
   * Opens a session for `identity` until `expiresAt`; drops expired ones, then
   * the subject's oldest beyond {@link SESSIONS_PER_SUBJECT} (so one token
   * signing in again and again cannot push everyone else's sessions out), then
   * the oldest of all beyond the store's maximum.
   */
  create(identity: Identity, expiresAt: number): Session {
    const now = this.#clock.now();
    const mine: string[] = [];
    for (const [id, session] of this.#sessions) {
      if (session.expiresAt <= now) this.#sessions.delete(id);
      else if (session.identity.subject === identity.subject) mine.push(id);
    }
    while (mine.length >= SESSIONS_PER_SUBJECT) this.#sessions.delete(mine.shift()!);
    while (this.#sessions.size >= this.#max) {
      const oldest = this.#sessions.keys().next();
      if (oldest.done === true) break;
      this.#sessions.delete(oldest.value);
    }
    const session: Session = {
      id: randomToken(this.#random),
      identity,
      csrf: randomToken(this.#random),
      expiresAt,
      decided: [],
    };
    this.#sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, or `undefined` (an expired one is dropped). */
  get(id: string | undefined | false): Session | undefined {
    if (typeof id !== "string" || id === "") return undefined;
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    if (session.expiresAt <= this.#clock.now()) {
      this.#sessions.delete(id);
      return undefined;
    }
    return session;
  }

  /** Ends a session. */
  delete(id: string): void {
    this.#sessions.delete(id);
  }

  /** Keeps `approvalId` in the session's view of decided approvals. */
  remember(session: Session, approvalId: string): void {
    const at = session.decided.indexOf(approvalId);
    if (at >= 0) session.decided.splice(at, 1);
    session.decided.unshift(approvalId);
    session.decided.length = Math.min(session.decided.length, DECIDED_KEPT);
  }

  /** How many sessions are open (expired ones included until swept). */
  get size(): number {
    return this.#sessions.size;
  }
}

const ENCODER = new TextEncoder();

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
