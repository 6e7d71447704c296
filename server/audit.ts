/**
 * The audit routes: the chain's head, and its verification (role `auditor`).
 *
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { PlmError, requireIdentity } from "../control_plane/mod.ts";
import type { ServerContext } from "./app.ts";
import { json, problems } from "./_http.ts";
import { AuditHeadSchema, AuditVerifySchema } from "./schemas.ts";

/** The role `GET /v1/audit/verify` needs. */
export const AUDITOR_ROLE = "auditor";

const security = [{ bearerAuth: [] }];

const headRoute = createRoute({
  method: "get",
  path: "/v1/audit/head",
  tags: ["audit"],
  summary: "The audit chain's head: what `plm audit verify --expected-head` takes",
  security,
  responses: {
    200: { description: "The head", content: { "application/json": { schema: AuditHeadSchema } } },
    ...problems(401),
  },
});

const verifyRoute = createRoute({
  method: "get",
  path: "/v1/audit/verify",
  tags: ["audit"],
  summary: "Walk and check the whole chain (role `auditor`)",
  security,
  responses: {
    200: {
      description: "The result of the walk (ok, or the first bad record)",
      content: { "application/json": { schema: AuditVerifySchema } },
    },
    ...problems(401, 403),
  },
});

/**
 * Registers the audit routes on `app`.
 *
 * @param app The app.
 * @param ctx What the routes share.
 *
 * @example Registered by createApp
 * ```ts
 * import { Hs256JwtIdentityProvider, openStore } from "../control_plane/mod.ts";
 * import { createApp, openApiDocument } from "./app.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verifier = new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" });
 * const app = createApp({ store, verifier, policies: () => ({ rules: [] }), schemaVersion: 1 });
 * assert.ok("/v1/audit/verify" in openApiDocument(app).paths);
 * ```
 */
export function registerAuditRoutes(app: OpenAPIHono, ctx: ServerContext): void {
  app.openapi(headRoute, async () => json(await ctx.reader.audit.head(), 200));
  app.openapi(verifyRoute, async () => {
    const identity = requireIdentity();
    if (!identity.roles.includes(AUDITOR_ROLE)) {
      throw new PlmError(
        "ERR_FORBIDDEN",
        `Cannot let ${identity.subject} verify the audit log: it needs the role ${AUDITOR_ROLE}`,
      );
    }
    return json(await ctx.reader.audit.verify(), 200);
  });
}
