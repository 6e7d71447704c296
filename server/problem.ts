/**
 * RFC 9457 problem details: every error of the HTTP API is an
 * `application/problem+json` body with `type`, `title`, `status` (the HTTP
 * status), `detail` and the package's stable `code` (plus `field` for
 * `ERR_INVALID_ARGUMENT`). {@link STATUS_BY_CODE} is the one mapping from
 * {@link ErrorCode} to HTTP status.
 *
 * @module
 */
import { z } from "@hono/zod-openapi";
import { ERROR_CODES, type ErrorCode, PlmError } from "../shared/mod.ts";

/** The media type of every error body. */
export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/** One problem details body, as sent. */
export interface Problem {
  /** A URI naming the kind of problem: `urn:plm:error:<CODE>`. */
  readonly type: string;
  /** A short, human summary of the kind of problem. */
  readonly title: string;
  /** The HTTP status, equal to the response's. */
  readonly status: number;
  /** What went wrong with this request. */
  readonly detail: string;
  /** The stable error code. */
  readonly code: ErrorCode;
  /** The bad field, for `ERR_INVALID_ARGUMENT`. */
  readonly field?: string;
}

/**
 * The zod (and OpenAPI) schema of a {@link Problem}.
 *
 * @example A problem body parses
 * ```ts
 * import { ProblemSchema } from "./problem.ts";
 * import assert from "node:assert/strict";
 *
 * const body = {
 *   type: "urn:plm:error:ERR_RUN_NOT_FOUND",
 *   title: "Not found",
 *   status: 404,
 *   detail: "Cannot find run r-1",
 *   code: "ERR_RUN_NOT_FOUND",
 * };
 * assert.ok(ProblemSchema.safeParse(body).success);
 * ```
 */
export const ProblemSchema = z.object({
  type: z.string().openapi({ example: "urn:plm:error:ERR_RUN_NOT_FOUND" }),
  title: z.string(),
  status: z.number().int().min(400).max(599),
  detail: z.string(),
  code: z.enum(ERROR_CODES),
  field: z.string().optional(),
}).openapi("Problem");

/**
 * The HTTP status of each error code the API answers with; every code not
 * here is a `500` whose detail says nothing of the internals.
 *
 * @example A missing run is a 404, a stale digest a 409
 * ```ts
 * import { STATUS_BY_CODE } from "./problem.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(STATUS_BY_CODE.ERR_RUN_NOT_FOUND, 404);
 * assert.equal(STATUS_BY_CODE.ERR_APPROVAL_DIGEST_MISMATCH, 409);
 * assert.equal(STATUS_BY_CODE.ERR_INTERNAL, undefined);
 * ```
 */
export const STATUS_BY_CODE: Readonly<Partial<Record<ErrorCode, number>>> = Object.freeze({
  ERR_TOKEN_MISSING: 401,
  ERR_TOKEN_MALFORMED: 401,
  ERR_TOKEN_TOO_LARGE: 401,
  ERR_TOKEN_ALG_NOT_ALLOWED: 401,
  ERR_TOKEN_SIGNATURE_INVALID: 401,
  ERR_TOKEN_EXPIRED: 401,
  ERR_TOKEN_NOT_YET_VALID: 401,
  ERR_TOKEN_CLAIM_INVALID: 401,
  ERR_IDENTITY_REQUIRED: 401,
  ERR_FORBIDDEN: 403,
  ERR_APPROVAL_SELF: 403,
  ERR_APPROVER_NOT_ALLOWED: 403,
  ERR_RUN_NOT_FOUND: 404,
  ERR_APPROVAL_NOT_FOUND: 404,
  ERR_RUN_IDEMPOTENCY_CONFLICT: 409,
  ERR_APPROVAL_DIGEST_MISMATCH: 409,
  ERR_APPROVAL_NOT_PENDING: 409,
  ERR_APPROVAL_EXPIRED: 409,
  ERR_APPROVAL_DUPLICATE: 409,
  ERR_RUN_ILLEGAL_TRANSITION: 409,
  ERR_RUN_VERSION_CONFLICT: 409,
  ERR_INVALID_ARGUMENT: 422,
  ERR_BUDGET_EXCEEDED: 429,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_STORE_BUSY: 503,
  ERR_QUEUE_FULL: 503,
});

const TITLES: Readonly<Record<number, string>> = {
  400: "Bad request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not found",
  405: "Method not allowed",
  408: "Request timeout",
  409: "Conflict",
  413: "Content too large",
  415: "Unsupported media type",
  422: "Invalid argument",
  429: "Too many requests",
  500: "Internal error",
  503: "Service unavailable",
};

/**
 * An error the server answers with a given status: transport problems (a body
 * too large, a request read too slowly, an unknown route) that no library call
 * raised, each with a stable code.
 */
export class HttpProblem extends Error {
  /** The HTTP status. */
  readonly status: number;
  /** The stable code. */
  readonly code: ErrorCode;
  /** The bad field, if any. */
  readonly field: string | undefined;

  /**
   * Creates a problem with an explicit status.
   *
   * @param status The HTTP status.
   * @param code The stable code.
   * @param detail What went wrong.
   * @param field The bad field, if any.
   *
   * @example A body over the limit
   * ```ts
   * import { HttpProblem, problemOf } from "./problem.ts";
   * import assert from "node:assert/strict";
   *
   * const problem = problemOf(new HttpProblem(413, "ERR_INVALID_ARGUMENT", "Too large", "body"));
   * assert.deepEqual([problem.status, problem.field], [413, "body"]);
   * ```
   */
  constructor(status: number, code: ErrorCode, detail: string, field?: string) {
    super(detail);
    this.name = "HttpProblem";
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/**
 * The field an `ERR_INVALID_ARGUMENT` message names (`Invalid <field>: ...`).
 * A zod path inside is preferred (`Invalid task: action: ...` names `action`).
 */
function fieldOf(message: string): string | undefined {
  const match = /^Invalid ([^:\s]+): (?:([A-Za-z0-9_.[\]]+): )?/.exec(message);
  if (match === null) return undefined;
  return match[2] ?? match[1];
}

/**
 * Turns anything thrown into the problem to answer with: a {@link PlmError}
 * by {@link STATUS_BY_CODE}, an {@link HttpProblem} as it says, anything else
 * a `500` `ERR_INTERNAL` whose detail leaks nothing.
 *
 * @param err What was thrown.
 * @returns The problem.
 *
 * @example Map a library error
 * ```ts
 * import { PlmError } from "../shared/mod.ts";
 * import { problemOf } from "./problem.ts";
 * import assert from "node:assert/strict";
 *
 * const problem = problemOf(new PlmError("ERR_INVALID_ARGUMENT", "Invalid limit: too big"));
 * assert.deepEqual([problem.status, problem.field], [422, "limit"]);
 * assert.equal(problemOf(new Error("db password is hunter2")).detail, "The server failed");
 * ```
 */
export function problemOf(err: unknown): Problem {
  if (err instanceof HttpProblem) {
    return make(err.status, err.code, err.message, err.field);
  }
  if (err instanceof PlmError) {
    const status = STATUS_BY_CODE[err.code];
    if (status === undefined) return make(500, "ERR_INTERNAL", "The server failed");
    // A store fault's message names the server, user and database (and the driver's own
    // words): the client gets the code and a fixed sentence, the operator the log.
    if (err.code.startsWith("ERR_STORE_")) {
      return make(status, err.code, "The store is unavailable or refused the operation");
    }
    const field = err.code === "ERR_INVALID_ARGUMENT" ? fieldOf(err.message) : undefined;
    return make(status, err.code, err.message, field);
  }
  return make(500, "ERR_INTERNAL", "The server failed");
}

function make(status: number, code: ErrorCode, detail: string, field?: string): Problem {
  return {
    type: `urn:plm:error:${code}`,
    title: TITLES[status] ?? "Error",
    status,
    detail,
    code,
    ...(field === undefined ? {} : { field }),
  };
}

/**
 * The response for a problem.
 *
 * @param problem The problem.
 * @param headers More headers (`WWW-Authenticate`...).
 * @returns An `application/problem+json` response with the problem's status.
 *
 * @example Answer a 404
 * ```ts
 * import { PlmError } from "../shared/mod.ts";
 * import { problemOf, problemResponse } from "./problem.ts";
 * import assert from "node:assert/strict";
 *
 * const res = problemResponse(problemOf(new PlmError("ERR_RUN_NOT_FOUND", "Cannot find run r-1")));
 * assert.equal(res.status, 404);
 * assert.equal(res.headers.get("content-type"), "application/problem+json");
 * ```
 */
export function problemResponse(problem: Problem, headers: HeadersInit = {}): Response {
  const all = new Headers(headers);
  all.set("content-type", PROBLEM_CONTENT_TYPE);
  all.set("cache-control", "no-store");
  return new Response(JSON.stringify(problem), { status: problem.status, headers: all });
}
