/**
 * The run routes: submit, list, show, events (JSON or a live event stream)
 * and cancel.
 *
 * @module
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  type AuditRecord,
  checkText,
  extractTraceContext,
  INPUT_LIMITS,
  invalidArgument,
  isTerminal,
  requireIdentity,
  RUN_STATES,
  type RunState,
  sleep,
  type TaskInput,
} from "../control_plane/mod.ts";
import type { ServerContext } from "./app.ts";
import { json, problems } from "./_http.ts";
import {
  CancelRunBodySchema,
  RunEventsSchema,
  RunPageSchema,
  RunSchema,
  SubmitRunBodySchema,
} from "./schemas.ts";

const RunIdParam = z.object({
  id: z.string().min(1).max(1024).openapi({ param: { name: "id", in: "path" } }),
});

const security = [{ bearerAuth: [] }];

const submitRoute = createRoute({
  method: "post",
  path: "/v1/runs",
  tags: ["runs"],
  summary: "Submit a task: governed (authorized and created in one transaction)",
  security,
  request: {
    headers: z.object({
      "idempotency-key": z.string().min(1).max(255).optional().openapi({
        description: "The same key always gives the same run; another body with it is a 409",
      }),
      traceparent: z.string().optional().openapi({
        description: "W3C trace context; the run carries a child of it",
      }),
    }),
    body: { content: { "application/json": { schema: SubmitRunBodySchema } }, required: true },
  },
  responses: {
    201: {
      description: "The run (queued, awaiting_approval or rejected)",
      content: { "application/json": { schema: RunSchema } },
    },
    ...problems(401, 409, 413, 422),
  },
});

const listRoute = createRoute({
  method: "get",
  path: "/v1/runs",
  tags: ["runs"],
  summary: "A page of runs, newest first",
  security,
  request: {
    query: z.object({
      state: z.string().max(512).optional().openapi({
        description: `Only runs in these states, comma-separated (${RUN_STATES.join(", ")})`,
      }),
      limit: z.string().regex(/^[0-9]{1,4}$/, "Expected a whole number 1..1000").optional()
        .openapi({ description: "How many, 1..1000 (default 20)" }),
      cursor: z.string().min(1).max(1024).optional().openapi({
        description: "The nextCursor of the page before",
      }),
    }),
  },
  responses: {
    200: { description: "The page", content: { "application/json": { schema: RunPageSchema } } },
    ...problems(401, 422),
  },
});

const getRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}",
  tags: ["runs"],
  summary: "One run",
  security,
  request: { params: RunIdParam },
  responses: {
    200: { description: "The run", content: { "application/json": { schema: RunSchema } } },
    ...problems(401, 404),
  },
});

const eventsRoute = createRoute({
  method: "get",
  path: "/v1/runs/{id}/events",
  tags: ["runs"],
  summary: "The run's audit records, oldest first; with Accept: text/event-stream, live until " +
    "the run ends",
  security,
  request: {
    params: RunIdParam,
    headers: z.object({
      "last-event-id": z.string().regex(/^[0-9]{1,15}$/, "Expected an audit seq").optional()
        .openapi({ description: "Resume a stream after this record (the `id` of its event)" }),
    }),
  },
  responses: {
    200: {
      description: "The records; as a stream, one `audit` event per record (id: its seq), then " +
        "one `end` event with the run",
      content: {
        "application/json": { schema: RunEventsSchema },
        "text/event-stream": { schema: z.string() },
      },
    },
    ...problems(401, 404),
  },
});

const cancelRoute = createRoute({
  method: "post",
  path: "/v1/runs/{id}/cancel",
  tags: ["runs"],
  summary: "Cancel a run, if the caller may (its requester, a run-admin, or the policy)",
  security,
  request: {
    params: RunIdParam,
    body: { content: { "application/json": { schema: CancelRunBodySchema } }, required: false },
  },
  responses: {
    200: {
      description: "The run after it",
      content: { "application/json": { schema: RunSchema } },
    },
    ...problems(401, 403, 404, 422),
  },
});

/**
 * Registers the run routes on `app`.
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
 * assert.ok("/v1/runs/{id}/cancel" in openApiDocument(app).paths);
 * ```
 */
export function registerRunRoutes(app: OpenAPIHono, ctx: ServerContext): void {
  app.openapi(submitRoute, async (c) => {
    const body = c.req.valid("json");
    const key = c.req.header("idempotency-key");
    if (key !== undefined) checkText("Idempotency-Key", key, 255);
    const identity = requireIdentity();
    const trace = extractTraceContext(c.req.raw.headers);
    const runtime = await ctx.governed();
    const id = await runtime.submit(body as unknown as TaskInput, {
      identity,
      ...(key === undefined ? {} : { idempotencyKey: key }),
      ...(trace === null ? {} : { trace }),
    });
    const run = await runtime.controlPlane.runs.get(id);
    return json(run, 201, { location: `/v1/runs/${encodeURIComponent(run.id)}` });
  });

  app.openapi(listRoute, async (c) => {
    const query = c.req.valid("query");
    const states = query.state === undefined
      ? undefined
      : query.state.split(",").map((s) => s.trim()).filter((s) => s !== "");
    for (const state of states ?? []) {
      if (!RUN_STATES.includes(state as RunState)) {
        throw invalidArgument("state", `unknown state ${JSON.stringify(state)}`);
      }
    }
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!(limit >= 1 && limit <= 1000)) throw invalidArgument("limit", "expected 1..1000");
    const page = await ctx.reader.runs.page({
      ...(states === undefined ? {} : { states: states as RunState[] }),
      limit,
      ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
    });
    return json(page, 200);
  });

  app.openapi(getRoute, async (c) => {
    return json(await ctx.reader.runs.get(c.req.valid("param").id), 200);
  });

  app.openapi(eventsRoute, async (c) => {
    const { id } = c.req.valid("param");
    const run = await ctx.reader.runs.get(id);
    const accept = c.req.header("accept") ?? "";
    if (!accept.includes("text/event-stream")) {
      // Every record of the run, oldest first, a page at a time (a long run has more than one).
      const items: AuditRecord[] = [];
      for (;;) {
        const page = await ctx.reader.audit.list({
          runId: run.id,
          fromSeq: (items.at(-1)?.seq ?? 0) + 1,
        });
        items.push(...page);
        if (page.length < INPUT_LIMITS.listLimit) break;
      }
      return json({ items }, 200);
    }
    const after = Number(c.req.valid("header")["last-event-id"] ?? "0");
    return eventStream(ctx, run.id, after);
  });

  app.openapi(cancelRoute, async (c) => {
    const { id } = c.req.valid("param");
    const body = c.req.valid("json") as { reason?: string };
    const identity = requireIdentity();
    const runtime = await ctx.governed();
    const run = await runtime.dispatcher.cancel(id, {
      identity,
      reason: body.reason ?? "Cancelled through the API",
    });
    return json(run, 200);
  });
}

/**
 * A `text/event-stream` of a run's audit records: those so far (after
 * `after`, the client's `Last-Event-ID`), then new ones
 * as they are written (polled on the injected timer), then an `end` event
 * once the run is terminal and its last records are sent. Stops when the
 * client goes away (the stream is cancelled) or the server shuts down.
 */
function eventStream(
  ctx: ServerContext,
  runId: string,
  after: number,
): Response {
  const encoder = new TextEncoder();
  let stopped = false;
  const stop = new AbortController();
  // The client going away cancels the stream (`cancel` below); the server's shutdown ends it.
  // The listener on the server's signal is removed when the stream ends, whichever way.
  const onShutdown = () => stop.abort();
  if (ctx.signal?.aborted) stop.abort();
  else ctx.signal?.addEventListener("abort", onShutdown, { once: true });
  const detach = () => ctx.signal?.removeEventListener("abort", onShutdown);
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      let last = after;
      const send = (records: readonly AuditRecord[]) => {
        for (const record of records) {
          last = record.seq;
          controller.enqueue(
            encoder.encode(`id: ${record.seq}\nevent: audit\ndata: ${JSON.stringify(record)}\n\n`),
          );
        }
      };
      try {
        while (!stopped && !stop.signal.aborted) {
          // Read the run first: records written before it ended are all listed after. A
          // full page means there may be more: read on before judging the end.
          const run = await ctx.reader.runs.get(runId);
          let page: readonly AuditRecord[];
          do {
            page = await ctx.reader.audit.list({ runId, fromSeq: last + 1 });
            send(page);
          } while (page.length === INPUT_LIMITS.listLimit && !stopped);
          if (isTerminal(run.state)) {
            controller.enqueue(encoder.encode(`event: end\ndata: ${JSON.stringify(run)}\n\n`));
            break;
          }
          await sleep(ctx.eventPollMs, { timer: ctx.timer, signal: stop.signal });
        }
        if (!stopped) controller.close();
        detach();
      } catch (err) {
        detach();
        if (!stopped) {
          try {
            controller.error(err);
          } catch {
            // the stream is gone already
          }
        }
      }
    },
    cancel() {
      stopped = true;
      stop.abort();
      detach();
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
}
