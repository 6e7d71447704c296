/**
 * The approvals inbox: {@link inboxRoutes}, a server-rendered Hono sub-app
 * that `plm serve` mounts at `/inbox`, where approvers sign in with a token
 * once and approve or reject pending approvals; and {@link escapeHtml}, the
 * one escaping rule of its pages.
 *
 * @example Mount the inbox under an app
 * ```ts
 * import { Hono } from "hono";
 * import {
 *   ControlPlane,
 *   Hs256JwtIdentityProvider,
 *   openStore,
 * } from "@tracepulse/plm-engine-core/control-plane";
 * import { inboxRoutes } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * const app = new Hono();
 * app.route("/inbox", inboxRoutes({
 *   controlPlane: new ControlPlane(store, { policies: { rules: [] } }),
 *   verifier: new Hs256JwtIdentityProvider({ secret: "an-example-secret-of-at-least-32-bytes" }),
 *   cookieSecret: crypto.getRandomValues(new Uint8Array(32)),
 * }));
 * assert.equal((await app.request("/inbox/inbox.css")).status, 200);
 * ```
 *
 * @module
 */
export { escapeHtml, html, SafeHtml } from "./html.ts";
export { INBOX_SECURITY_HEADERS, type InboxDeps, inboxRoutes } from "./routes.ts";
