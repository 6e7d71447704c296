/**
 * The HTTP delivery layer of `plm serve`: {@link createApp} builds the Hono
 * app of the API (routes and schemas from the zod contracts, the OpenAPI 3.1
 * document at `GET /openapi.json`, RFC 9457 problems). It imports
 * `shared/`, `control_plane/mod.ts` and `agent_runtime/mod.ts`; only `cli/`,
 * `cli.ts` and `tests/` import it.
 *
 * @example Build the app and read its document
 * ```ts
 * import { Hs256JwtIdentityProvider, openStore } from "../control_plane/mod.ts";
 * import { createApp } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verifier = new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" });
 * const app = createApp({ store, verifier, policies: () => ({ rules: [] }), schemaVersion: 1 });
 * assert.equal((await (await app.request("/openapi.json")).json()).openapi, "3.1.0");
 * ```
 *
 * @module
 */
export {
  createApp,
  DEFAULT_MAX_BODY_BYTES,
  openApiDocument,
  type ServerContext,
  type ServerDeps,
} from "./app.ts";
export {
  HttpProblem,
  type Problem,
  PROBLEM_CONTENT_TYPE,
  problemOf,
  problemResponse,
  ProblemSchema,
  STATUS_BY_CODE,
} from "./problem.ts";
export { type BodyLimits, readBody } from "./body.ts";
export { type InFlightTracker, type ServeHandler, trackInFlight } from "./drain.ts";
export { AUDITOR_ROLE } from "./audit.ts";
export { type InboxDeps, inboxRoutes } from "./inbox/mod.ts";
export {
  ApprovalListSchema,
  ApprovalSchema,
  ApprovalViewSchema,
  AuditHeadSchema,
  AuditRecordSchema,
  AuditVerifySchema,
  CancelRunBodySchema,
  DecisionBodySchema,
  DecisionResultSchema,
  HealthSchema,
  RunEventsSchema,
  RunPageSchema,
  RunSchema,
  SubmitRunBodySchema,
} from "./schemas.ts";
