/**
 * The approval routes: the approvals a caller may decide, one approval, and
 * a decision.
 *
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { type Approval, type JsonValue, mayDecide, requireIdentity } from "../control_plane/mod.ts";
import type { ServerContext } from "./app.ts";
import { json, problems } from "./_http.ts";
import {
  ApprovalListSchema,
  ApprovalViewSchema,
  DecisionBodySchema,
  DecisionResultSchema,
} from "./schemas.ts";

const security = [{ bearerAuth: [] }];

const IdParam = z.object({
  id: z.string().min(1).max(1024).openapi({ param: { name: "id", in: "path" } }),
});

const listRoute = createRoute({
  method: "get",
  path: "/v1/approvals",
  tags: ["approvals"],
  summary: "The approvals the caller may decide: a role the spec names, not its own request, " +
    "not decided by the caller yet",
  security,
  request: {
    query: z.object({
      state: z.enum(["pending"]).optional().openapi({
        description: "Only `pending` (the default)",
      }),
    }),
  },
  responses: {
    200: {
      description: "What is asked, by whom, under which rule, and the decisions so far",
      content: { "application/json": { schema: ApprovalListSchema } },
    },
    ...problems(401, 422),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/v1/approvals/{id}",
  tags: ["approvals"],
  summary: "One approval",
  security,
  request: { params: IdParam },
  responses: {
    200: {
      description: "The approval",
      content: { "application/json": { schema: ApprovalViewSchema } },
    },
    ...problems(401, 404),
  },
});

const decideRoute = createRoute({
  method: "post",
  path: "/v1/approvals/{id}/decisions",
  tags: ["approvals"],
  summary: "Approve or reject (a rejection needs a comment), quoting the digest seen",
  security,
  request: {
    params: IdParam,
    body: { content: { "application/json": { schema: DecisionBodySchema } }, required: true },
  },
  responses: {
    200: {
      description: "The approval and its run after the decision",
      content: { "application/json": { schema: DecisionResultSchema } },
    },
    ...problems(401, 403, 404, 409, 422),
  },
});

/**
 * Registers the approval routes on `app`.
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
 * assert.ok("/v1/approvals/{id}/decisions" in openApiDocument(app).paths);
 * ```
 */
export function registerApprovalRoutes(app: OpenAPIHono, ctx: ServerContext): void {
  app.openapi(listRoute, async () => {
    const identity = requireIdentity();
    const pending = await ctx.reader.approvals.list({ state: "pending", limit: 1000 });
    const now = ctx.reader.clock.now();
    const mine = pending.filter((approval) => mayDecide(approval, identity, { now }));
    // One view at a time: each reads the run's audit, and a backlog of approvals read all at
    // once would queue that many transactions on the store's pool ahead of every other request.
    const items = [];
    for (const approval of mine) items.push(await view(ctx, approval));
    return json({ items }, 200);
  });

  app.openapi(getRoute, async (c) => {
    const approval = await ctx.reader.approvals.get(c.req.valid("param").id);
    return json(await view(ctx, approval), 200);
  });

  app.openapi(decideRoute, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json");
    const identity = requireIdentity();
    const runtime = await ctx.governed();
    const result = await runtime.controlPlane.decideApproval(id, body.decision, {
      identity,
      digest: body.digest,
      ...(body.comment === undefined ? {} : { comment: body.comment }),
    });
    return json(result, 200);
  });
}

/** The approval with the policy decision that asked for it (from the run's audit). */
async function view(
  ctx: ServerContext,
  approval: Approval,
): Promise<Approval & { ruleIds: string[]; policyReason: string | null }> {
  const decisions = await ctx.reader.audit.list({
    runId: approval.runId,
    actionPrefix: "policy.decide",
  });
  const asked = decisions.filter((r) => r.outcome === "require_approval").at(-1);
  const data = asked?.data as { readonly [key: string]: JsonValue } | null | undefined;
  const ids = data?.["matchedRuleIds"];
  return {
    ...approval,
    ruleIds: Array.isArray(ids) ? ids.filter((id): id is string => typeof id === "string") : [],
    policyReason: asked?.reason ?? null,
  };
}
