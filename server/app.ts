/**
 * {@link createApp}: the HTTP API of `plm serve` as a Hono app, its routes and
 * schemas declared with `@hono/zod-openapi`, every error an RFC 9457 problem.
 *
 * @module
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context, Hono, MiddlewareHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import {
  type Clock,
  ControlPlane,
  type ControlPlaneOptions,
  formatIssues,
  type IdentityMiddleware,
  identityMiddleware,
  PolicyEngine,
  type PolicySet,
  policySetVersion,
  type Store,
  systemClock,
  systemTimer,
  type Timer,
  type TokenVerifier,
} from "../control_plane/mod.ts";
import { AgentRuntime } from "../agent_runtime/mod.ts";
import { readBody } from "./body.ts";
import { HttpProblem, type Problem, problemOf, problemResponse } from "./problem.ts";
import { registerRunRoutes } from "./runs.ts";
import { registerApprovalRoutes } from "./approvals.ts";
import { registerAuditRoutes } from "./audit.ts";
import { registerHealthRoutes } from "./health.ts";

/** The default of {@link ServerDeps.maxBodyBytes}: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1_048_576;

/** Everything the HTTP API runs on. */
export interface ServerDeps {
  /** The open store (SQLite or PostgreSQL). */
  store: Store;
  /** Verifies bearer tokens: an `Hs256JwtIdentityProvider`. */
  verifier: TokenVerifier;
  /**
   * The one source of policies, asked for each governed request (submit,
   * cancel, decide): a policy file read at start, or the store's active
   * version. A control plane is built once per policy version (the same object
   * again, or a set with the same `policySetVersion`, reuses it).
   */
  policies: () => PolicySet | PolicyEngine | Promise<PolicySet | PolicyEngine>;
  /**
   * More options of the governed control plane: autonomy, budgets, the agent rate limit.
   *
   * @default {{}}
   */
  controlPlane?: Omit<ControlPlaneOptions, "policies" | "clock" | "generateId">;
  /** The schema version this code needs; `GET /readyz` answers 503 until the store is at it. */
  schemaVersion: number;
  /**
   * The clock of every decision and run.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Schedules body timeouts, event polls and the identity middleware's windows.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
  /**
   * Makes run and approval ids.
   *
   * @default {() => crypto.randomUUID()}
   */
  generateId?: () => string;
  /**
   * The largest request body accepted, in bytes.
   *
   * @default {1_048_576}
   */
  maxBodyBytes?: number;
  /**
   * How long a request body may take to arrive, in milliseconds.
   *
   * @default {10_000}
   */
  bodyTimeoutMs?: number;
  /**
   * How often a live event stream polls the audit log, in milliseconds.
   *
   * @default {500}
   */
  eventPollMs?: number;
  /**
   * The identity middleware, for a caller that flushes it at shutdown.
   *
   * @default {identityMiddleware(verifier, { audit, clock, timer })}
   */
  identity?: IdentityMiddleware;
  /**
   * How many requests are being handled (a `trackInFlight` tracker's
   * count), reported by `GET /healthz`.
   *
   * @default {undefined} (not reported)
   */
  inFlight?: () => number;
  /**
   * Sub-apps to mount, by path: `{ "/inbox": inboxRoutes(...) }`. They get the
   * app's body limits (size and read timeout; the bytes are handed on, so
   * `c.req.text()` reads them) but not its bearer authentication or JSON rules.
   *
   * @default {{}}
   */
  mounts?: Readonly<Record<string, Hono>>;
  /**
   * Aborted when the server shuts down: live event streams end at once, so
   * they do not hold the shutdown until its grace period is over.
   *
   * @default {undefined} (streams end when their run does or the client goes)
   */
  signal?: AbortSignal;
  /**
   * Reports an internal error (answered as a bare `500`).
   *
   * @default {console.error}
   */
  onError?: (error: unknown) => void;
}

/** What the routes share: the control plane of the current policy, limits, clock and timer. */
export interface ServerContext {
  /** The store. */
  readonly store: Store;
  /** A control plane for reads (its policy is the last one seen). */
  readonly reader: ControlPlane;
  /** The runtime (submit-only) and control plane of the current policy version. */
  governed(): Promise<AgentRuntime>;
  /** The schema version the code needs. */
  readonly schemaVersion: number;
  /** The timer. */
  readonly timer: Timer;
  /** How often live event streams poll. */
  readonly eventPollMs: number;
  /** Aborted at shutdown. */
  readonly signal: AbortSignal | undefined;
  /** The requests being handled, when counted. */
  readonly inFlight: (() => number) | undefined;
}

const JSON_MEDIA = /^application\/([a-z.-]+\+)?json\s*(;.*)?$/i;
const BODY_METHODS = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Builds the HTTP API. It opens nothing and starts nothing: serve its `fetch`
 * with `Deno.serve`, or call `app.request(...)` in tests.
 *
 * @param deps The store, token verifier, policy source and limits.
 * @returns The Hono app.
 *
 * @example Ask for health without a socket
 * ```ts
 * import { Hs256JwtIdentityProvider, MIGRATIONS, openStore } from "../control_plane/mod.ts";
 * import { createApp } from "./app.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verifier = new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" });
 * const app = createApp({ store, verifier, policies: () => ({ rules: [] }), schemaVersion: MIGRATIONS.length });
 * assert.equal((await app.request("/healthz")).status, 200);
 * assert.equal((await app.request("/readyz")).status, 200);
 * assert.equal((await app.request("/v1/runs")).status, 401);
 * ```
 */
export function createApp(deps: ServerDeps): OpenAPIHono {
  const clock = deps.clock ?? systemClock;
  const timer = deps.timer ?? systemTimer;
  const maxBytes = deps.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const timeoutMs = deps.bodyTimeoutMs ?? 10_000;
  const onError = deps.onError ?? ((err: unknown) => console.error(err));
  const cpOptions = {
    clock,
    ...(deps.generateId === undefined ? {} : { generateId: deps.generateId }),
  };
  let current:
    | { source: PolicySet | PolicyEngine; version: string; runtime: AgentRuntime }
    | undefined;
  const reader = new ControlPlane(deps.store, { ...cpOptions, policies: { rules: [] } });
  const context: ServerContext = {
    store: deps.store,
    reader,
    schemaVersion: deps.schemaVersion,
    timer,
    eventPollMs: deps.eventPollMs ?? 500,
    signal: deps.signal,
    inFlight: deps.inFlight,
    async governed() {
      const source = await deps.policies();
      if (current?.source === source) return current.runtime;
      const version = source instanceof PolicyEngine ? source.version : policySetVersion(source);
      if (current?.version === version) {
        current = { ...current, source };
        return current.runtime;
      }
      const controlPlane = new ControlPlane(deps.store, {
        ...deps.controlPlane,
        ...cpOptions,
        policies: source,
      });
      current = {
        source,
        version,
        runtime: new AgentRuntime({
          controlPlane,
          agents: [],
          owner: `serve-${crypto.randomUUID()}`,
          clock,
          timer,
        }),
      };
      return current.runtime;
    },
  };
  const identity = deps.identity ??
    identityMiddleware(deps.verifier, { audit: reader.audit, clock, timer });

  const app = new OpenAPIHono({
    defaultHook: (result) => {
      if (!result.success) {
        const issues = result.error.issues;
        const first = issues[0];
        const field = first === undefined ? result.target : fieldPath(first.path);
        throw new HttpProblem(
          422,
          "ERR_INVALID_ARGUMENT",
          `Invalid ${result.target === "json" ? "body" : result.target}: ${formatIssues(issues)}`,
          field,
        );
      }
    },
  });

  app.onError((err) => {
    const problem = httpProblem(err);
    if (problem.status === 500) onError(err);
    return problemResponse(problem);
  });
  app.notFound((c) =>
    problemResponse(
      problemOf(
        new HttpProblem(
          404,
          "ERR_INVALID_ARGUMENT",
          `No route ${c.req.method} ${c.req.path}`,
          "path",
        ),
      ),
    )
  );

  app.use("*", bodyLimits(maxBytes, timeoutMs, timer));
  app.use("/v1/*", singleHeaders);
  app.use("/v1/*", authenticate(identity));

  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
  });
  registerHealthRoutes(app, context);
  registerRunRoutes(app, context);
  registerApprovalRoutes(app, context);
  registerAuditRoutes(app, context);
  for (const [path, sub] of Object.entries(deps.mounts ?? {})) app.route(path, sub);
  app.get("/openapi.json", (c) => c.json(openApiDocument(app)));
  return app;
}

/**
 * The OpenAPI 3.1 document of an app made by {@link createApp}: what
 * `GET /openapi.json` serves and `docs/openapi.json` holds.
 *
 * @param app The app.
 * @returns The document, as JSON data.
 *
 * @example Every route is documented
 * ```ts
 * import { Hs256JwtIdentityProvider, openStore } from "../control_plane/mod.ts";
 * import { createApp, openApiDocument } from "./app.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verifier = new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" });
 * const doc = openApiDocument(createApp({ store, verifier, policies: () => ({ rules: [] }), schemaVersion: 1 }));
 * assert.equal(doc.openapi, "3.1.0");
 * assert.ok("/v1/runs" in doc.paths);
 * ```
 */
export function openApiDocument(
  app: OpenAPIHono,
): { openapi: string; paths: Record<string, unknown>; [key: string]: unknown } {
  const doc = app.getOpenAPI31Document({
    openapi: "3.1.0",
    info: {
      title: "plm-engine-core API",
      version: "1.0.0",
      description: "Governed AI-agent runs, approvals and the audit log (`plm serve`). Every " +
        "error is an RFC 9457 `application/problem+json` body with the stable `code`.",
    },
  });
  return JSON.parse(JSON.stringify(doc));
}

/** A zod issue path as one field name: `capabilities[0]`. */
function fieldPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out === "" ? "body" : out;
}

/** Hono's own exceptions (malformed JSON, media type) as problems; the rest by {@link problemOf}. */
function httpProblem(err: unknown): Problem {
  if (err instanceof HTTPException) {
    if (err.status === 415) {
      return problemOf(
        new HttpProblem(
          415,
          "ERR_INVALID_ARGUMENT",
          "Send the body as application/json",
          "content-type",
        ),
      );
    }
    if (err.status === 400) {
      return problemOf(
        new HttpProblem(422, "ERR_INVALID_ARGUMENT", "Invalid body: not JSON", "body"),
      );
    }
  }
  return problemOf(err);
}

/**
 * Reads every body within the limits before anything else runs, and hands
 * the parsed JSON to the validators: a bad body never reaches a route.
 */
function bodyLimits(maxBytes: number, timeoutMs: number, timer: Timer): MiddlewareHandler {
  return async (c, next) => {
    if (!BODY_METHODS.has(c.req.method)) return await next();
    const bytes = await readBody(c.req.raw, { maxBytes, timeoutMs, timer });
    if (bytes.byteLength === 0 || !c.req.path.startsWith("/v1/")) {
      // Handed on as read: a mounted sub-app's `c.req.text()` and the like see the bytes.
      const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      c.req.bodyCache.arrayBuffer = Promise.resolve(buffer) as unknown as ArrayBuffer;
      return await next();
    }
    const type = c.req.header("content-type") ?? "";
    if (!JSON_MEDIA.test(type)) {
      throw new HttpProblem(
        415,
        "ERR_INVALID_ARGUMENT",
        "Send the body as application/json",
        "content-type",
      );
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch {
      throw new HttpProblem(422, "ERR_INVALID_ARGUMENT", "Invalid body: not JSON", "body");
    }
    c.req.bodyCache.json = Promise.resolve(parsed);
    await next();
  };
}

/**
 * Refuses a request that repeats `Authorization` or `Idempotency-Key` (the
 * Fetch API joins repeats with a comma, which neither may hold).
 */
const singleHeaders: MiddlewareHandler = async (c, next) => {
  const auth = c.req.header("authorization");
  if (auth !== undefined && auth.includes(",")) {
    throw new HttpProblem(
      401,
      "ERR_TOKEN_MALFORMED",
      "Send one Authorization header with one bearer token",
    );
  }
  const key = c.req.header("idempotency-key");
  if (key !== undefined && key.includes(",")) {
    throw new HttpProblem(
      422,
      "ERR_INVALID_ARGUMENT",
      "Send one Idempotency-Key header, without commas",
      "Idempotency-Key",
    );
  }
  await next();
};

/**
 * Runs the rest of the chain inside the identity middleware: the caller's
 * identity is bound for the route; a refused token becomes a 401 problem with
 * the middleware's `WWW-Authenticate` challenge.
 */
function authenticate(identity: IdentityMiddleware): MiddlewareHandler {
  return async (c: Context, next) => {
    let reached = false;
    const handler = identity(async () => {
      reached = true;
      await next();
      return c.res;
    });
    const res = await handler(c.req.raw, c.env);
    if (reached) return;
    let code = "ERR_TOKEN_MISSING";
    try {
      code = ((await res.json()) as { error?: string }).error ?? code;
    } catch {
      // keep the default
    }
    const problem = problemOf(
      new HttpProblem(
        401,
        code as Problem["code"],
        code === "ERR_TOKEN_MISSING" ? "Send a bearer token" : "The bearer token was refused",
      ),
    );
    const challenge = res.headers.get("www-authenticate");
    return problemResponse(problem, challenge === null ? {} : { "www-authenticate": challenge });
  };
}
