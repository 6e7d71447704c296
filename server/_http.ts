/**
 * Small helpers the routes share: JSON answers and the problem responses of
 * the OpenAPI document.
 *
 * @module
 */
import { PROBLEM_CONTENT_TYPE, ProblemSchema } from "./problem.ts";

const DESCRIPTIONS: Readonly<Record<number, string>> = {
  401: "No bearer token, or a refused one (ERR_TOKEN_*)",
  403: "Not allowed (ERR_FORBIDDEN, ERR_APPROVAL_SELF, ERR_APPROVER_NOT_ALLOWED)",
  404: "Not found (ERR_RUN_NOT_FOUND, ERR_APPROVAL_NOT_FOUND)",
  409: "Conflict (idempotency key reused with another body, stale digest, decided or expired)",
  413: "The body is larger than --max-body-bytes",
  422: "Invalid argument (ERR_INVALID_ARGUMENT, naming the field)",
  503: "The store is unreachable or not migrated",
};

/** The OpenAPI responses of these problem statuses. */
export function problems(...statuses: number[]): Record<number, {
  description: string;
  content: { [PROBLEM_CONTENT_TYPE]: { schema: typeof ProblemSchema } };
}> {
  const out: Record<number, {
    description: string;
    content: { [PROBLEM_CONTENT_TYPE]: { schema: typeof ProblemSchema } };
  }> = {};
  for (const status of statuses) {
    out[status] = {
      description: DESCRIPTIONS[status] ?? "An error",
      content: { [PROBLEM_CONTENT_TYPE]: { schema: ProblemSchema } },
    };
  }
  return out;
}

/**
 * A JSON answer. Typed `never` so that every typed route takes it: that the
 * bodies match the response schemas is what the tests check, by parsing the
 * library's real values with them.
 */
export function json(body: unknown, status: number, headers: Record<string, string> = {}): never {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", "cache-control": "no-store", ...headers },
  }) as never;
}
