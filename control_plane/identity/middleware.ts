/**
 * {@link identityMiddleware}: bearer-token authentication for `Deno.serve`
 * handlers.
 *
 * @module
 */
import { type Clock, systemClock, systemTimer, type Timer } from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import { extractTraceContext } from "../trace/propagation.ts";
import type { AuditActor, AuditSink } from "../audit/types.ts";
import { bindableIdentity, identityStorage } from "./_context.ts";
import { RejectionLog } from "./_rejections.ts";
import type { TokenVerifier } from "./hs256_provider.ts";
import { IdentityError } from "./identity_error.ts";

/** A `Deno.serve`-style handler; `Info` is what the server passes second. */
export type RequestHandler<Info = unknown> = (
  request: Request,
  info: Info,
) => Response | Promise<Response>;

/**
 * Wraps a {@link RequestHandler} in another of the same shape; `flush()` (or
 * `using`) writes the rejection counts not yet written.
 */
export interface IdentityMiddleware {
  /**
   * Wraps `handler`.
   *
   * @typeParam Info What the server passes second.
   * @param handler The handler to run for authenticated requests.
   * @returns The authenticating handler.
   */
  <Info>(handler: RequestHandler<Info>): RequestHandler<Info>;
  /**
   * Closes every open rejection window now: writes the count of the
   * rejections not yet written and cancels the pending timer. Call it at
   * shutdown (disposing does it).
   *
   * @returns Once the counts are written.
   * @throws {Error} What the audit sink throws; the counts are kept for the next flush.
   */
  flush(): Promise<void>;
  /** The same as `flush()`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options for {@link identityMiddleware}. */
export interface IdentityMiddlewareOptions {
  /**
   * Where to record rejected requests, bounded and aggregated: the first
   * rejection of a (client, error code) pair opens a one-minute window and is
   * written at once, with actor {@link ANONYMOUS_ACTOR}, action
   * `auth.token.rejected`, resource `http:<METHOD> <path>` (the path only,
   * never the query string, cut to 512 characters with `…`: then
   * `data.truncated` is `true` and `data.pathLength` the full length), outcome
   * `denied`, reason the error code, `data.client`, `data.count: 1`, and
   * `data.claim`/`data.reason` for claim failures. The rest of the window are
   * counted in memory and written as one record when it closes (on the next
   * rejection after it, on the timer, or on `flush()`): resource `http:*`,
   * `data: { client, count, aggregated: true, from, until }`. So the sum of
   * `data.count` is the number of rejections, and one client writes at most
   * two records per error code and minute. The client's `traceparent` is not
   * trusted: its trace id goes in `data.untrustedTraceId` (when it is
   * well-formed), never in the record's `traceId`. Never the token.
   *
   * @default {undefined} (not audited)
   */
  audit?: AuditSink;
  /**
   * Who sent a request, to aggregate its rejections by. Untrusted text: it is
   * cut to 128 characters and U+0000 or lone surrogates become U+FFFD.
   *
   * @default {the `remoteAddr.hostname` of the server's info, else `"unknown"`}
   */
  clientKey?: (request: Request, info: unknown) => string;
  /**
   * The most (client, error code) windows kept open; rejections of further
   * clients are aggregated under the client `"(other clients)"`.
   *
   * @default {1000}
   */
  maxClients?: number;
  /**
   * Where window times come from.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Schedules the write of a window's count when it closes.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
  /**
   * The `realm` of the `WWW-Authenticate` challenge.
   *
   * @default {"plm"}
   */
  realm?: string;
}

/**
 * The actor audited for a request whose token was refused: nobody is proven yet.
 *
 * @example A refused token is audited as anonymous
 * ```ts
 * import {
 *   ANONYMOUS_ACTOR,
 *   AuditLog,
 *   Hs256JwtIdentityProvider,
 *   identityMiddleware,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const audit = new AuditLog(store);
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 * });
 * const handler = identityMiddleware(provider, { audit })(() => new Response("ok"));
 * const res = await handler(new Request("http://localhost/runs"), {});
 * assert.equal(res.status, 401);
 * assert.deepEqual((await audit.list())[0]?.actor, ANONYMOUS_ACTOR);
 * ```
 */
export const ANONYMOUS_ACTOR: AuditActor = Object.freeze({
  subject: "anonymous",
  kind: "service",
});

/** RFC 6750 `b64token`. */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * Makes a middleware that authenticates each request with a bearer token.
 *
 * It reads `Authorization: Bearer <token>` (the scheme case-insensitive, one
 * space, one RFC 6750 token), verifies it with `provider`, and runs the
 * handler with the {@link Identity} bound for its whole async context
 * (`currentIdentity()` and `requireIdentity()` see it across every `await`);
 * nothing stays bound afterwards. Otherwise it answers `401` with
 * `Cache-Control: no-store`, a JSON body `{ "error": "<CODE>" }` and an
 * RFC 6750 challenge:
 *
 * - no `Authorization` header, another scheme, or `Bearer` with nothing after
 *   it (`ERR_TOKEN_MISSING`): `WWW-Authenticate: Bearer realm="plm"`;
 * - any other refusal (a malformed header is `ERR_TOKEN_MALFORMED`):
 *   `WWW-Authenticate: Bearer realm="plm", error="invalid_token"`.
 *
 * Errors other than {@link IdentityError} from the provider (or the audit
 * sink) propagate, so the server answers 500 and the handler never runs; so
 * does an identity from the provider that `IdentitySchema` refuses or whose
 * actor kind is `system` (`PlmError` `ERR_INVALID_ARGUMENT`). Rejections are
 * audited bounded and aggregated (see {@link IdentityMiddlewareOptions.audit}).
 * The token is never logged, audited or echoed.
 *
 * @param provider Verifies tokens; usually an `Hs256JwtIdentityProvider`.
 * @param options Where to audit rejections, how to tell clients apart, and the realm.
 * @returns A function that wraps a handler, with `flush()` for the rejection counts.
 * @throws {TypeError} When `realm` has quotes, backslashes or line breaks, or
 * `clientKey` is not a function.
 * @throws {RangeError} When `maxClients` is not a whole number from 1.
 *
 * @example Protect a handler
 * ```ts
 * import {
 *   FakeClock,
 *   Hs256JwtIdentityProvider,
 *   identityMiddleware,
 *   requireIdentity,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * const provider = new Hs256JwtIdentityProvider({
 *   secret: "an-example-secret-of-at-least-32-bytes",
 *   clock: new FakeClock(Date.UTC(2026, 10, 25)),
 * });
 * const handler = identityMiddleware(provider)(() =>
 *   new Response(`hello ${requireIdentity().subject}`)
 * );
 * const info = {};
 *
 * const token = await provider.issueToken({ subject: "alice", actorKind: "human" });
 * const ok = await handler(
 *   new Request("http://localhost/runs", { headers: { authorization: `Bearer ${token}` } }),
 *   info,
 * );
 * assert.equal(await ok.text(), "hello alice");
 *
 * const denied = await handler(new Request("http://localhost/runs"), info);
 * assert.equal(denied.status, 401);
 * assert.equal(denied.headers.get("www-authenticate"), 'Bearer realm="plm"');
 * assert.deepEqual(await denied.json(), { error: "ERR_TOKEN_MISSING" });
 * ```
 */
export function identityMiddleware(
  provider: TokenVerifier,
  options?: IdentityMiddlewareOptions,
): IdentityMiddleware {
  const {
    audit,
    realm = "plm",
    clientKey = remoteHostname,
    maxClients = 1000,
    clock = systemClock,
    timer = systemTimer,
  } = options ?? {};
  if (typeof realm !== "string" || /["\\\r\n]/.test(realm)) {
    throw new TypeError("Cannot use a realm with quotes, backslashes or line breaks");
  }
  if (typeof clientKey !== "function") {
    throw new TypeError("Cannot use a clientKey that is not a function");
  }
  checkOption("maxClients", maxClients, 1);
  const realmParam = `realm="${realm}"`;
  const rejections = audit === undefined
    ? undefined
    : new RejectionLog(audit, ANONYMOUS_ACTOR, { clock, timer, maxClients });

  async function reject(request: Request, info: unknown, err: IdentityError): Promise<Response> {
    if (rejections !== undefined) {
      const untrustedTraceId = extractTraceContext(request.headers)?.traceId;
      await rejections.record({
        client: String(clientKey(request, info)),
        code: err.code,
        method: request.method,
        path: pathOf(request.url),
        ...(err.claim === undefined
          ? {}
          : { claim: { name: err.claim, reason: err.reason ?? null } }),
        ...(untrustedTraceId === undefined ? {} : { untrustedTraceId }),
      });
    }
    const challenge = err.code === "ERR_TOKEN_MISSING"
      ? `Bearer ${realmParam}`
      : `Bearer ${realmParam}, error="invalid_token"`;
    return new Response(JSON.stringify({ error: err.code }), {
      status: 401,
      headers: {
        "content-type": "application/json",
        "cache-control": "no-store",
        "www-authenticate": challenge,
      },
    });
  }

  const wrap =
    <Info>(handler: RequestHandler<Info>): RequestHandler<Info> =>
    async (request: Request, info: Info): Promise<Response> => {
      let identity;
      try {
        const token = bearerToken(request.headers.get("authorization"));
        if (token === undefined) {
          throw new IdentityError("ERR_TOKEN_MISSING", "No bearer token was sent");
        }
        identity = await provider.verifyToken(token);
      } catch (err) {
        if (err instanceof IdentityError) return await reject(request, info, err);
        throw err;
      }
      const bound = bindableIdentity(identity, "identity");
      return await identityStorage.run(bound, () => handler(request, info));
    };
  const flush = async () => await rejections?.flush();
  return Object.assign(wrap, { flush, [Symbol.asyncDispose]: flush });
}

/** The default `clientKey`: `Deno.serve`'s `info.remoteAddr.hostname`. */
function remoteHostname(_request: Request, info: unknown): string {
  const addr = (info as { remoteAddr?: { hostname?: unknown } } | null | undefined)?.remoteAddr;
  return typeof addr?.hostname === "string" ? addr.hostname : "unknown";
}

/**
 * The token of an `Authorization` value; `undefined` when there is no bearer
 * credential at all (RFC 6750 §3.1: no error code then).
 */
function bearerToken(value: string | null): string | undefined {
  if (value === null) return undefined;
  const space = value.indexOf(" ");
  const scheme = space < 0 ? value : value.slice(0, space);
  if (scheme.toLowerCase() !== "bearer") return undefined;
  const token = space < 0 ? "" : value.slice(space + 1);
  if (token === "") return undefined;
  if (!B64TOKEN.test(token)) {
    throw new IdentityError(
      "ERR_TOKEN_MALFORMED",
      "Authorization header must be 'Bearer' followed by one space and one token",
    );
  }
  return token;
}

function pathOf(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return "/";
  }
}
