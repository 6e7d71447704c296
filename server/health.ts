/**
 * `GET /healthz` (the process is up) and `GET /readyz` (the store answers and
 * is at the schema version the code needs).
 *
 * @module
 */
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import type { ServerContext } from "./app.ts";
import { json, problems } from "./_http.ts";
import { HttpProblem } from "./problem.ts";
import { HealthSchema } from "./schemas.ts";

const healthRoute = createRoute({
  method: "get",
  path: "/healthz",
  tags: ["health"],
  summary: "The process is up",
  responses: {
    200: { description: "Up", content: { "application/json": { schema: HealthSchema } } },
  },
});

const readyRoute = createRoute({
  method: "get",
  path: "/readyz",
  tags: ["health"],
  summary: "The store is reachable and migrated",
  responses: {
    200: { description: "Ready", content: { "application/json": { schema: HealthSchema } } },
    ...problems(503),
  },
});

/**
 * Registers the health routes on `app` (no token needed).
 *
 * @param app The app.
 * @param ctx What the routes share.
 *
 * @example Up and ready
 * ```ts
 * import { Hs256JwtIdentityProvider, MIGRATIONS, openStore } from "../control_plane/mod.ts";
 * import { createApp } from "./app.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const verifier = new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" });
 * const app = createApp({ store, verifier, policies: () => ({ rules: [] }), schemaVersion: MIGRATIONS.length + 1 });
 * assert.equal((await app.request("/healthz")).status, 200);
 * assert.equal((await app.request("/readyz")).status, 503);
 * ```
 */
export function registerHealthRoutes(app: OpenAPIHono, ctx: ServerContext): void {
  app.openapi(healthRoute, () => {
    const inFlight = ctx.inFlight?.();
    return json({ status: "ok", ...(inFlight === undefined ? {} : { inFlight }) }, 200);
  });
  app.openapi(readyRoute, async () => {
    let version: number;
    try {
      version = await ctx.store.schemaVersion();
    } catch {
      throw new HttpProblem(503, "ERR_STORE_UNAVAILABLE", "The store does not answer");
    }
    if (version < ctx.schemaVersion) {
      throw new HttpProblem(
        503,
        "ERR_STORE_SCHEMA_TOO_OLD",
        `The store is at schema ${version}; this code needs ${ctx.schemaVersion} (run plm db migrate)`,
      );
    }
    if (version > ctx.schemaVersion) {
      throw new HttpProblem(
        503,
        "ERR_STORE_SCHEMA_TOO_NEW",
        `The store is at schema ${version}; this code knows up to ${ctx.schemaVersion}`,
      );
    }
    return json({ status: "ok", schemaVersion: version }, 200);
  });
}
