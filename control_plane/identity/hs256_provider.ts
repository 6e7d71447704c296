/**
 * {@link Hs256JwtIdentityProvider}: issues and verifies HS256 bearer JWTs
 * (RFC 7519) and turns them into an {@link Identity}.
 *
 * @module
 */
import { SignJWT } from "jose";
import { z } from "zod";
import {
  checkInteger,
  type Clock,
  type Identity,
  INPUT_LIMITS,
  invalidArgument,
  parseArgument,
  type Schema,
  systemClock,
} from "../../shared/mod.ts";
import { checkOption, textSchema } from "../../shared/validate.ts";
import { decodeBase64Url, decodeBase64UrlText, hasDuplicateKeys } from "./_jws.ts";
import { type ClaimFailureReason, IdentityError } from "./identity_error.ts";

/**
 * The largest token, in characters, that is even looked at: 8 KiB.
 *
 * @example Refuse an oversized token before parsing it
 * ```ts
 * import {
 *   Hs256JwtIdentityProvider,
 *   isPlmError,
 *   MAX_TOKEN_LENGTH,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 * });
 * await assert.rejects(
 *   provider.verifyToken("a".repeat(MAX_TOKEN_LENGTH + 1)),
 *   (err) => isPlmError(err, "ERR_TOKEN_TOO_LARGE"),
 * );
 * ```
 */
export const MAX_TOKEN_LENGTH = 8192;

/**
 * The smallest secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
 *
 * @example Refuse a short secret
 * ```ts
 * import {
 *   Hs256JwtIdentityProvider,
 *   MIN_SECRET_BYTES,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.throws(
 *   () => new Hs256JwtIdentityProvider({ secret: "x".repeat(MIN_SECRET_BYTES - 1) }),
 *   RangeError,
 * );
 * assert.ok(new Hs256JwtIdentityProvider({ secret: new Uint8Array(MIN_SECRET_BYTES) }));
 * ```
 */
export const MIN_SECRET_BYTES = 32;

/**
 * The latest NumericDate accepted in `iat`, `nbf` and `exp`:
 * 9999-12-31T23:59:59Z, in seconds.
 *
 * @example The last second of year 9999
 * ```ts
 * import { MAX_NUMERIC_DATE } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new Date(MAX_NUMERIC_DATE * 1000).toISOString(), "9999-12-31T23:59:59.000Z");
 * ```
 */
export const MAX_NUMERIC_DATE = 253_402_300_799;

/**
 * The actor kinds a token may carry: every `ActorKind` but `system`.
 *
 * @example A token never carries the `system` kind
 * ```ts
 * import {
 *   ACTOR_KINDS,
 *   Hs256JwtIdentityProvider,
 *   TOKEN_ACTOR_KINDS,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(ACTOR_KINDS.filter((kind) => kind !== "system"), [...TOKEN_ACTOR_KINDS]);
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 * });
 * for (const actorKind of TOKEN_ACTOR_KINDS) {
 *   const token = await provider.issueToken({ subject: "s-1", actorKind });
 *   assert.equal((await provider.verifyToken(token)).actorKind, actorKind);
 * }
 * ```
 */
export const TOKEN_ACTOR_KINDS = ["human", "agent", "service"] as const;

/** One of {@link TOKEN_ACTOR_KINDS}. */
export type TokenActorKind = typeof TOKEN_ACTOR_KINDS[number];

/**
 * Anything that turns a bearer token into an {@link Identity};
 * {@link Hs256JwtIdentityProvider} is the real one.
 */
export interface TokenVerifier {
  /**
   * Verifies a token.
   *
   * @param token The compact token.
   * @returns The identity the token proves.
   * @throws {IdentityError} When the token is refused.
   */
  verifyToken(token: string | null | undefined): Promise<Identity>;
}

/** Options for {@link Hs256JwtIdentityProvider}. */
export interface Hs256JwtIdentityProviderOptions {
  /**
   * The shared HMAC secret, at least {@link MIN_SECRET_BYTES} bytes (a string
   * counts in UTF-8 bytes). It is copied and imported once as a
   * non-extractable `CryptoKey`.
   */
  secret: string | Uint8Array;
  /**
   * The `iss` claim to put in issued tokens and to require in verified ones.
   *
   * @default {undefined} (no `iss` is issued; a present `iss` must be a string)
   */
  issuer?: string;
  /**
   * The `aud` claim to put in issued tokens and to require in verified ones
   * (a verified `aud` may be a string or an array that contains it).
   *
   * @default {undefined} (no `aud` is issued; a present `aud` must be a string or string array)
   */
  audience?: string;
  /**
   * Leeway in seconds for `exp`, `nbf` and `iat` against the clock.
   *
   * @default {30}
   */
  clockToleranceSeconds?: number;
  /**
   * The longest lifetime (`exp - iat`) in seconds a token may be issued with
   * or carry.
   *
   * @default {86400}
   */
  maxTokenLifetimeSeconds?: number;
  /**
   * Where the current time comes from.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Makes the `jti` of each issued token.
   *
   * @default {() => crypto.randomUUID()}
   */
  generateId?: () => string;
}

/** The identity an issued token carries. */
export interface IssueTokenClaims {
  /** The `sub` claim; not empty. */
  readonly subject: string;
  /** The `actor_kind` claim; `system` is refused. */
  readonly actorKind: TokenActorKind;
  /**
   * The `roles` claim.
   *
   * @default {[]}
   */
  readonly roles?: readonly string[];
  /**
   * Scopes, joined with spaces into the `scope` claim (omitted when none).
   *
   * @default {[]}
   */
  readonly scopes?: readonly string[];
  /** The `tenant` claim, omitted when not given. */
  readonly tenant?: string;
}

/** Options for {@link Hs256JwtIdentityProvider.issueToken}. */
export interface IssueTokenOptions {
  /**
   * The token's lifetime in seconds: a whole number from 1 to the provider's
   * `maxTokenLifetimeSeconds`.
   *
   * @default {3600} (or `maxTokenLifetimeSeconds` when that is smaller)
   */
  ttlSeconds?: number;
}

const DEFAULT_TTL_SECONDS = 3600;
/** What `issueToken` accepts: exactly what `verifyToken` gives back. */
const ISSUE_TOKEN_CLAIMS_SCHEMA: Schema<
  Required<Omit<IssueTokenClaims, "tenant">> & {
    readonly tenant?: string;
  }
> = z.strictObject({
  subject: textSchema(),
  actorKind: z.enum(TOKEN_ACTOR_KINDS),
  roles: z.array(textSchema()).max(INPUT_LIMITS.listLimit).readonly().default([]),
  scopes: z.array(textSchema().refine((s) => !/\s/.test(s), "A scope is one word"))
    .max(INPUT_LIMITS.listLimit).readonly().default([]),
  tenant: textSchema().exactOptional(),
});
const ENCODER = new TextEncoder();
const HMAC_SHA256 = { name: "HMAC", hash: "SHA-256" } as const;

/** Mutable twin of {@link Identity}, filled in then frozen. */
type IdentityDraft = { -readonly [K in keyof Identity]: Identity[K] };

/**
 * Issues and verifies HS256 JWTs with one shared secret and maps them to an
 * {@link Identity}.
 *
 * Issuing signs with jose's `SignJWT`; verification is this class's own code
 * on WebCrypto (`crypto.subtle.verify`, the call jose makes too), stricter
 * than `jose.jwtVerify` (docs/adr/0005). It runs in this order, the first
 * failure winning:
 *
 * 1. structure: not empty (`ERR_TOKEN_MISSING`), at most {@link MAX_TOKEN_LENGTH}
 *    characters (`ERR_TOKEN_TOO_LARGE`), three segments of canonical unpadded
 *    base64url, header and payload JSON objects in UTF-8 without duplicate
 *    member names (`ERR_TOKEN_MALFORMED`); header `alg` exactly `HS256`
 *    (`ERR_TOKEN_ALG_NOT_ALLOWED`, `none` included), no `crit`
 *    (`ERR_TOKEN_MALFORMED`), `typ` exactly `JWT` (`ERR_TOKEN_CLAIM_INVALID`,
 *    claim `typ`). `jku`, `x5u`, `jwk` and `kid` are ignored: nothing is ever
 *    fetched and only the configured key is used;
 * 2. signature, with the cached key (`ERR_TOKEN_SIGNATURE_INVALID`);
 * 3. claim presence: `sub`, `actor_kind`, `iat`, `exp`, and `iss`/`aud` when
 *    configured (`ERR_TOKEN_CLAIM_INVALID`, reason `missing`);
 * 4. claim values: `actor_kind` `human`, `agent` or `service` (`system` is
 *    `forbidden`), `iss`/`aud` matching, NumericDates whole seconds from 0 to
 *    {@link MAX_NUMERIC_DATE}, `exp` after `iat` and `exp - iat` at most the
 *    maximum lifetime; `sub`, `tenant`, `jti`, each role and each scope texts
 *    that `IdentitySchema` accepts (1 to 1,024 characters, no U+0000, no lone
 *    surrogates: the audit log must store what it hashes), `roles` an array
 *    and `scope` a space-delimited string, of at most 1,000 items each;
 * 5. time, with the clock tolerance: `exp` (`ERR_TOKEN_EXPIRED`), `nbf`
 *    (`ERR_TOKEN_NOT_YET_VALID`), `iat` not in the future
 *    (`ERR_TOKEN_CLAIM_INVALID`, reason `in_future`).
 *
 * @example Issue a token and verify it
 * ```ts
 * import { FakeClock, Hs256JwtIdentityProvider } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 *   issuer: "https://plm.example",
 *   clock: new FakeClock(Date.UTC(2026, 10, 25)),
 * });
 * const token = await provider.issueToken({
 *   subject: "alice",
 *   actorKind: "human",
 *   roles: ["approver"],
 *   scopes: ["runs:read", "runs:write"],
 * });
 * const identity = await provider.verifyToken(token);
 * assert.equal(identity.subject, "alice");
 * assert.deepEqual(identity.scopes, ["runs:read", "runs:write"]);
 * ```
 */
export class Hs256JwtIdentityProvider implements TokenVerifier {
  #secret: Uint8Array<ArrayBuffer> | undefined;
  #key: CryptoKey | undefined;
  #keyPromise: Promise<CryptoKey> | undefined;
  readonly #issuer: string | undefined;
  readonly #audience: string | undefined;
  readonly #toleranceSeconds: number;
  readonly #maxLifetimeSeconds: number;
  readonly #clock: Clock;
  readonly #generateId: () => string;

  /**
   * Creates a provider. The key is imported lazily, once, on first use.
   *
   * @param options The secret and the claim and time rules.
   * @throws {RangeError} When the secret is shorter than {@link MIN_SECRET_BYTES}
   * bytes, the tolerance is negative, or the maximum lifetime is not a positive
   * whole number of seconds.
   * @throws {TypeError} When the secret is neither a string nor a `Uint8Array`,
   * or `issuer`/`audience` is not a non-empty string.
   *
   * @example Refuse a short secret
   * ```ts
   * import { Hs256JwtIdentityProvider } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * assert.throws(() => new Hs256JwtIdentityProvider({ secret: "too-short" }), RangeError);
   * ```
   */
  constructor(options: Hs256JwtIdentityProviderOptions) {
    const {
      secret,
      issuer,
      audience,
      clockToleranceSeconds = 30,
      maxTokenLifetimeSeconds = 86_400,
      clock = systemClock,
      generateId = () => crypto.randomUUID(),
    } = options;
    let bytes: Uint8Array<ArrayBuffer>;
    if (typeof secret === "string") bytes = ENCODER.encode(secret);
    else if (secret instanceof Uint8Array) bytes = new Uint8Array(secret);
    else throw new TypeError("Cannot use a secret that is neither a string nor a Uint8Array");
    if (bytes.length < MIN_SECRET_BYTES) {
      throw new RangeError(
        `Cannot use a secret of ${bytes.length} bytes: HS256 needs at least ${MIN_SECRET_BYTES}`,
      );
    }
    if (issuer !== undefined && (typeof issuer !== "string" || issuer === "")) {
      throw new TypeError("Cannot use an issuer that is not a non-empty string");
    }
    if (audience !== undefined && (typeof audience !== "string" || audience === "")) {
      throw new TypeError("Cannot use an audience that is not a non-empty string");
    }
    if (!Number.isFinite(clockToleranceSeconds) || clockToleranceSeconds < 0) {
      throw new RangeError(`Cannot use a clock tolerance of ${clockToleranceSeconds} seconds`);
    }
    checkOption("maxTokenLifetimeSeconds", maxTokenLifetimeSeconds, 1);
    this.#secret = bytes;
    this.#issuer = issuer;
    this.#audience = audience;
    this.#toleranceSeconds = clockToleranceSeconds;
    this.#maxLifetimeSeconds = maxTokenLifetimeSeconds;
    this.#clock = clock;
    this.#generateId = generateId;
  }

  /**
   * Issues a signed token with header `{ alg: "HS256", typ: "JWT" }` and the
   * claims `sub`, `actor_kind`, `roles`, `scope` (space-delimited, omitted when
   * there are no scopes), `tenant` (when given), `iss` and `aud` (when
   * configured), `iat`, `exp` and `jti`.
   *
   * @param claims Who the token is for.
   * @param options The lifetime.
   * @returns The compact JWT.
   * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming the field when the claims
   * are not what `verifyToken` accepts (`actorKind` `system` or unknown; a
   * subject, role, scope or tenant that is not 1 to 1,024 characters without
   * U+0000 or lone surrogates; a scope with whitespace; more than 1,000 roles
   * or scopes; the token over {@link MAX_TOKEN_LENGTH}), or `ttlSeconds` is
   * not a whole number from 1 to `maxTokenLifetimeSeconds`.
   *
   * @example Issue a short-lived agent token
   * ```ts
   * import { FakeClock, Hs256JwtIdentityProvider } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const provider = new Hs256JwtIdentityProvider({
   *   secret: "an-example-secret-of-at-least-32-bytes",
   *   clock: new FakeClock(1_700_000_000_000),
   *   generateId: () => "t-1",
   * });
   * const token = await provider.issueToken({ subject: "planner", actorKind: "agent" }, {
   *   ttlSeconds: 60,
   * });
   * const identity = await provider.verifyToken(token);
   * assert.equal(identity.tokenId, "t-1");
   * assert.equal(identity.expiresAt, 1_700_000_060_000);
   * await assert.rejects(
   *   provider.issueToken({ subject: "cron", actorKind: "system" as "service" }),
   *   { code: "ERR_INVALID_ARGUMENT" },
   * );
   * ```
   */
  async issueToken(claims: IssueTokenClaims, options?: IssueTokenOptions): Promise<string> {
    const { ttlSeconds = Math.min(DEFAULT_TTL_SECONDS, this.#maxLifetimeSeconds) } = options ??
      {};
    checkInteger("options.ttlSeconds", ttlSeconds, 1, this.#maxLifetimeSeconds);
    const { subject, actorKind, roles, scopes, tenant } = parseArgument(
      ISSUE_TOKEN_CLAIMS_SCHEMA,
      claims,
      "claims",
    );
    const iat = Math.floor(this.#clock.now() / 1000);
    const payload: Record<string, string | number | string[]> = {
      sub: subject,
      actor_kind: actorKind,
      roles: [...roles],
    };
    if (scopes.length > 0) payload.scope = scopes.join(" ");
    if (tenant !== undefined) payload.tenant = tenant;
    if (this.#issuer !== undefined) payload.iss = this.#issuer;
    if (this.#audience !== undefined) payload.aud = this.#audience;
    payload.iat = iat;
    payload.exp = iat + ttlSeconds;
    payload.jti = this.#generateId();
    const key = this.#key ?? await this.#loadKey();
    const token = await new SignJWT(payload).setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .sign(key);
    if (token.length > MAX_TOKEN_LENGTH) {
      throw invalidArgument(
        "claims",
        `the token would be ${token.length} characters: the limit is ${MAX_TOKEN_LENGTH}`,
      );
    }
    return token;
  }

  /**
   * Verifies a compact token and returns the {@link Identity} it proves,
   * frozen. See the class description for the checks and their order.
   *
   * @param token The compact JWT (without the `Bearer ` prefix).
   * @returns The identity: `subject`, `actorKind`, `roles`, `scopes`, and
   * `tenant`, `tokenId` (`jti`) and `expiresAt` (`exp` in milliseconds).
   * @throws {IdentityError} With an `ERR_TOKEN_*` code when the token is refused.
   * @throws {TypeError} When `token` is neither a string nor `null`/`undefined`.
   *
   * @example Tell an expired token from a forged one
   * ```ts
   * import {
   *   FakeClock,
   *   Hs256JwtIdentityProvider,
   *   isPlmError,
   * } from "@tracepulse/plm-engine-core/control-plane";
   * import assert from "node:assert/strict";
   *
   * const clock = new FakeClock(1_700_000_000_000);
   * const secret = "an-example-secret-of-at-least-32-bytes";
   * const provider = new Hs256JwtIdentityProvider({ secret, clock, clockToleranceSeconds: 0 });
   * const token = await provider.issueToken({ subject: "svc", actorKind: "service" }, {
   *   ttlSeconds: 60,
   * });
   *
   * const other = new Hs256JwtIdentityProvider({ secret: secret + "!", clock });
   * await assert.rejects(
   *   other.verifyToken(token),
   *   (err) => isPlmError(err, "ERR_TOKEN_SIGNATURE_INVALID"),
   * );
   * clock.advance(60_000);
   * await assert.rejects(
   *   provider.verifyToken(token),
   *   (err) => isPlmError(err, "ERR_TOKEN_EXPIRED"),
   * );
   * ```
   */
  async verifyToken(token: string | null | undefined): Promise<Identity> {
    // 1. Structure.
    if (token === undefined || token === null || token === "") {
      throw new IdentityError("ERR_TOKEN_MISSING", "No token was given");
    }
    if (typeof token !== "string") {
      throw new TypeError("Cannot verify a token that is not a string");
    }
    if (token.length > MAX_TOKEN_LENGTH) {
      throw new IdentityError(
        "ERR_TOKEN_TOO_LARGE",
        `Token is ${token.length} characters long: the limit is ${MAX_TOKEN_LENGTH}`,
      );
    }
    const dot1 = token.indexOf(".");
    const dot2 = dot1 < 0 ? -1 : token.indexOf(".", dot1 + 1);
    if (dot1 <= 0 || dot2 < 0 || dot2 === dot1 + 1 || token.indexOf(".", dot2 + 1) >= 0) {
      throw malformed("Token is not three dot-separated segments with a header and a payload");
    }
    const headerText = decodeBase64UrlText(token.slice(0, dot1));
    if (headerText === undefined) throw malformed("Token header is not canonical base64url UTF-8");
    const payloadText = decodeBase64UrlText(token.slice(dot1 + 1, dot2));
    if (payloadText === undefined) {
      throw malformed("Token payload is not canonical base64url UTF-8");
    }
    const signature = decodeBase64Url(token.slice(dot2 + 1));
    if (signature === undefined) throw malformed("Token signature is not canonical base64url");
    const header = parseJsonObject(headerText, "header");
    const payload = parseJsonObject(payloadText, "payload");

    const alg = header.alg;
    if (alg !== "HS256") {
      throw new IdentityError(
        "ERR_TOKEN_ALG_NOT_ALLOWED",
        typeof alg === "string"
          ? `Token algorithm '${alg.slice(0, 32)}' is not allowed: only HS256 is`
          : "Token header has no algorithm: only HS256 is allowed",
      );
    }
    if (header.crit !== undefined) throw malformed("Token header has crit, which is not supported");
    const typ = header.typ;
    if (typ !== "JWT") {
      throw claimInvalid("typ", typ === undefined ? "missing" : "mismatch", "must be JWT");
    }

    // 2. Signature, over the ASCII bytes of `header.payload`.
    const key = this.#key ?? await this.#loadKey();
    const signingInput = ENCODER.encode(token.slice(0, dot2));
    if (!await crypto.subtle.verify("HMAC", key, signature, signingInput)) {
      throw new IdentityError("ERR_TOKEN_SIGNATURE_INVALID", "Token signature does not verify");
    }

    // 3. Claim presence.
    const { sub, actor_kind: actorKind, iat, exp, nbf, iss, aud, roles, scope, tenant, jti } =
      payload;
    if (sub === undefined) throw claimInvalid("sub", "missing", "is required");
    if (actorKind === undefined) throw claimInvalid("actor_kind", "missing", "is required");
    if (iat === undefined) throw claimInvalid("iat", "missing", "is required");
    if (exp === undefined) throw claimInvalid("exp", "missing", "is required");
    if (this.#issuer !== undefined && iss === undefined) {
      throw claimInvalid("iss", "missing", "is required");
    }
    if (this.#audience !== undefined && aud === undefined) {
      throw claimInvalid("aud", "missing", "is required");
    }

    // 4. Claim values.
    if (!isStoredText(sub)) throw claimInvalid("sub", "invalid", TEXT_RULE);
    if (actorKind === "system") {
      throw claimInvalid("actor_kind", "forbidden", "cannot be system in a token");
    }
    if (actorKind !== "human" && actorKind !== "agent" && actorKind !== "service") {
      throw claimInvalid("actor_kind", "invalid", "must be human, agent or service");
    }
    if (iss !== undefined) {
      if (typeof iss !== "string") throw claimInvalid("iss", "invalid", "must be a string");
      if (this.#issuer !== undefined && iss !== this.#issuer) {
        throw claimInvalid("iss", "mismatch", "is not the expected issuer");
      }
    }
    if (aud !== undefined) {
      if (typeof aud === "string") {
        if (this.#audience !== undefined && aud !== this.#audience) {
          throw claimInvalid("aud", "mismatch", "is not the expected audience");
        }
      } else if (isStringArray(aud)) {
        if (this.#audience !== undefined && !aud.includes(this.#audience)) {
          throw claimInvalid("aud", "mismatch", "does not include the expected audience");
        }
      } else {
        throw claimInvalid("aud", "invalid", "must be a string or an array of strings");
      }
    }
    if (!isNumericDate(iat)) throw claimInvalid("iat", "invalid", "must be a NumericDate");
    if (!isNumericDate(exp)) throw claimInvalid("exp", "invalid", "must be a NumericDate");
    if (nbf !== undefined && !isNumericDate(nbf)) {
      throw claimInvalid("nbf", "invalid", "must be a NumericDate");
    }
    if (exp <= iat) throw claimInvalid("exp", "invalid", "must be after iat");
    if (exp - iat > this.#maxLifetimeSeconds) {
      throw claimInvalid(
        "exp",
        "lifetime_exceeded",
        `gives a lifetime over ${this.#maxLifetimeSeconds} seconds`,
      );
    }
    if (
      roles !== undefined &&
      (!Array.isArray(roles) || roles.length > INPUT_LIMITS.listLimit ||
        !roles.every(isStoredText))
    ) {
      throw claimInvalid("roles", "invalid", `must be an array of texts: ${TEXT_RULE}`);
    }
    const scopes = scope === undefined ? [] : typeof scope === "string" ? splitScope(scope) : null;
    if (
      scopes === null || scopes.length > INPUT_LIMITS.listLimit || !scopes.every(isStoredText)
    ) {
      throw claimInvalid("scope", "invalid", `must be a space-delimited string of ${TEXT_RULE}`);
    }
    if (tenant !== undefined && !isStoredText(tenant)) {
      throw claimInvalid("tenant", "invalid", TEXT_RULE);
    }
    if (jti !== undefined && !isStoredText(jti)) throw claimInvalid("jti", "invalid", TEXT_RULE);

    // 5. Time.
    const now = Math.floor(this.#clock.now() / 1000);
    const tolerance = this.#toleranceSeconds;
    if (exp <= now - tolerance) {
      throw new IdentityError("ERR_TOKEN_EXPIRED", `Token expired at ${isoSeconds(exp)}`);
    }
    if (nbf !== undefined && (nbf as number) > now + tolerance) {
      throw new IdentityError(
        "ERR_TOKEN_NOT_YET_VALID",
        `Token is not valid before ${isoSeconds(nbf as number)}`,
      );
    }
    if (iat > now + tolerance) throw claimInvalid("iat", "in_future", "is in the future");

    const identity: IdentityDraft = {
      subject: sub,
      actorKind,
      roles: Object.freeze(roles === undefined ? [] : [...roles as string[]]),
      scopes: Object.freeze(scopes),
    };
    if (tenant !== undefined) identity.tenant = tenant as string;
    if (jti !== undefined) identity.tokenId = jti as string;
    identity.expiresAt = exp * 1000;
    return Object.freeze(identity);
  }

  #loadKey(): Promise<CryptoKey> {
    this.#keyPromise ??= crypto.subtle.importKey(
      "raw",
      this.#secret as Uint8Array<ArrayBuffer>,
      HMAC_SHA256,
      false,
      ["sign", "verify"],
    ).then(
      (key) => {
        this.#key = key;
        this.#secret?.fill(0);
        this.#secret = undefined;
        return key;
      },
      (err: unknown) => {
        this.#keyPromise = undefined;
        throw err;
      },
    );
    return this.#keyPromise;
  }
}

function malformed(message: string): IdentityError {
  return new IdentityError("ERR_TOKEN_MALFORMED", message);
}

function claimInvalid(claim: string, reason: ClaimFailureReason, detail: string): IdentityError {
  return new IdentityError("ERR_TOKEN_CLAIM_INVALID", `Token claim '${claim}' ${detail}`, {
    claim,
    reason,
  });
}

function parseJsonObject(text: string, part: "header" | "payload"): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new IdentityError("ERR_TOKEN_MALFORMED", `Token ${part} is not JSON`, { cause: err });
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw malformed(`Token ${part} is not a JSON object`);
  }
  if (hasDuplicateKeys(text)) throw malformed(`Token ${part} has a duplicate member name`);
  return value as Record<string, unknown>;
}

function isStringArray(value: unknown): value is readonly string[] {
  if (!Array.isArray(value)) return false;
  for (const item of value) if (typeof item !== "string") return false;
  return true;
}

/** What {@link isStoredText} requires, for messages. */
const TEXT_RULE =
  `must be 1 to ${INPUT_LIMITS.textLength} characters without U+0000 or lone surrogates`;

const STORED_TEXT = textSchema();

/**
 * Whether a claim value is a text `IdentitySchema` accepts: stored byte-exact
 * (no U+0000, no lone surrogates), so the audit log hashes what it stores.
 */
function isStoredText(value: unknown): value is string {
  return STORED_TEXT.safeParse(value).success;
}

function isNumericDate(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0 &&
    (value as number) <= MAX_NUMERIC_DATE;
}

function splitScope(scope: string): string[] {
  return scope === "" ? [] : scope.split(" ").filter((s) => s !== "");
}

function isoSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
}
