/**
 * Agents reached over HTTP: {@link httpAgent}, and {@link parseRetryAfter}
 * for the `Retry-After` header.
 *
 * @module
 */
import {
  type Clock,
  injectTraceContext,
  type JsonValue,
  type RunTask,
  systemClock,
  systemTimer,
  type Timer,
} from "../control_plane/mod.ts";
import { type Agent, type AgentContext, AgentError, defineAgent } from "./agent.ts";

/** Options for {@link httpAgent}. */
export interface HttpAgentOptions {
  /** The agent's unique, non-empty id. */
  id: string;
  /**
   * What the agent can do: non-empty, distinct strings.
   *
   * @default {[]}
   */
  capabilities?: readonly string[];
  /**
   * Escalation tier, a non-negative integer; lower is cheaper and weaker.
   *
   * @default {0}
   */
  tier?: number;
  /**
   * Cost units one run spends, a non-negative finite number.
   *
   * @default {0}
   */
  costPerRun?: number;
  /**
   * How many tasks the agent takes at once, a positive integer.
   *
   * @default {1}
   */
  maxConcurrency?: number;
  /**
   * The bearer token sent as `Authorization: Bearer <token>`, or a function
   * that returns it (called once per attempt, so it may refresh). No
   * `Authorization` header when absent.
   *
   * @default {undefined}
   */
  token?: string | (() => string | Promise<string>);
  /**
   * The `fetch` to call.
   *
   * @default {globalThis.fetch}
   */
  fetch?: typeof globalThis.fetch;
  /**
   * The time source: the time left until `ctx.deadline` and `Retry-After`
   * dates are measured by it.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Starts a timer that calls `callback` after `ms` milliseconds and returns
   * a function that cancels it. Bounds each attempt by its deadline.
   *
   * @default {systemTimer}
   */
  timer?: Timer;
}

const DELTA_SECONDS = /^\d+$/;
/** IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`). */
const HTTP_DATE = /^[A-Za-z]{3,9}, \d{2}[ -][A-Za-z]{3}[ -]\d{2,4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * Reads a `Retry-After` header value: delay-seconds, or an HTTP-date
 * (IMF-fixdate or RFC 850) taken relative to `now`.
 *
 * @param value The header value, or `null` when absent.
 * @param now The current time in epoch milliseconds, from the injected clock.
 * @returns The wait in milliseconds (0 for a date in the past), or
 * `undefined` when absent or unreadable.
 *
 * @example Seconds and dates
 * ```ts
 * import { parseRetryAfter } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseRetryAfter("120", 0), 120_000);
 * const now = Date.UTC(2026, 10, 25, 10, 0, 0);
 * assert.equal(parseRetryAfter("Wed, 25 Nov 2026 10:00:30 GMT", now), 30_000);
 * assert.equal(parseRetryAfter("soon", now), undefined);
 * ```
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (DELTA_SECONDS.test(text)) {
    const ms = Number(text) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  if (!HTTP_DATE.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return at > now ? at - now : 0;
}

/**
 * An {@link Agent} served over HTTP. Each attempt POSTs
 * `{ task, runId, attempt, idempotencyKey }` as JSON to `url`, with
 * `traceparent`/`tracestate` from `ctx.trace`, `Idempotency-Key` and, when a
 * token is set, `Authorization: Bearer <token>`. The request is aborted when
 * `ctx.signal` aborts or `ctx.deadline` (by the injected clock) passes.
 *
 * A 2xx answer gives its JSON body (`null` when empty). Failures throw an
 * {@link AgentError}:
 *
 * | what happened | code | retryable |
 * | --- | --- | --- |
 * | 5xx | `ERR_AGENT_FAILED` | yes, after `Retry-After` when sent |
 * | 429 | `ERR_AGENT_FAILED` | yes, `retryAfterMs` from `Retry-After` |
 * | other status (4xx, unfollowed 3xx) | `ERR_AGENT_FAILED` | no |
 * | deadline passed (before or during the call) | `ERR_TIMEOUT` | yes |
 * | `ctx.signal` aborted | `ERR_CANCELLED` | no |
 * | network error, token function failed | `ERR_AGENT_FAILED` | yes |
 * | 2xx with a body that is not JSON | `ERR_AGENT_FAILED` | no |
 *
 * @param url The agent's endpoint, `http:` or `https:`.
 * @param options The id, the selection fields, the token and the injected
 * `fetch`, clock and timer.
 * @returns The agent.
 * @throws {TypeError} When `url` is not an http(s) URL, `fetch` or `timer`
 * is not a function, or a field is invalid (see {@link defineAgent}).
 * @throws {RangeError} When a number field is out of range.
 *
 * @example Call an agent through an injected fetch
 * ```ts
 * import { httpAgent, newTraceContext } from "@tracepulse/plm-engine-core/agent-runtime";
 * import assert from "node:assert/strict";
 *
 * const agent = httpAgent("https://agents.example/bom", {
 *   id: "bom-http",
 *   capabilities: ["bom.read"],
 *   token: "secret",
 *   fetch: (_url, init) => {
 *     const headers = new Headers(init?.headers);
 *     assert.equal(headers.get("authorization"), "Bearer secret");
 *     return Promise.resolve(Response.json({ ok: true }));
 *   },
 * });
 * const result = await agent.invoke(
 *   { action: "bom.read", resource: "bom:1", capabilities: ["bom.read"], input: null, risk: "low", attributes: {} },
 *   {
 *     signal: new AbortController().signal,
 *     deadline: Date.now() + 5_000,
 *     attempt: 1,
 *     identity: { subject: "alice", actorKind: "human", roles: [], scopes: [] },
 *     trace: newTraceContext(),
 *     runId: "r-1",
 *     idempotencyKey: "r-1",
 *   },
 * );
 * assert.deepEqual(result, { ok: true });
 * ```
 */
export function httpAgent(url: string | URL, options: HttpAgentOptions): Agent {
  const {
    id,
    token,
    fetch: fetchFn = globalThis.fetch,
    clock = systemClock,
    timer = systemTimer,
  } = options;
  let endpoint: URL;
  try {
    endpoint = new URL(url);
  } catch (error) {
    throw new TypeError(`Cannot use ${String(url)} as an agent URL`, { cause: error });
  }
  if (endpoint.protocol !== "http:" && endpoint.protocol !== "https:") {
    throw new TypeError(`Cannot use ${endpoint.protocol} URLs for agents: use http: or https:`);
  }
  if (typeof fetchFn !== "function") {
    throw new TypeError("Cannot use a fetch that is not a function");
  }
  if (typeof timer !== "function") throw new TypeError("Cannot use a timer that is not a function");
  if (typeof clock?.now !== "function") throw new TypeError("Cannot use a clock without now()");
  if (token !== undefined && typeof token !== "string" && typeof token !== "function") {
    throw new TypeError("Cannot use a token that is neither a string nor a function");
  }
  const href = endpoint.href;

  async function invoke(task: RunTask, ctx: AgentContext): Promise<JsonValue> {
    if (ctx.signal.aborted) throw cancelled(id, ctx.signal.reason);
    const remaining = ctx.deadline - clock.now();
    if (!(remaining > 0)) {
      throw new AgentError("ERR_TIMEOUT", `Cannot call agent ${id} as the deadline has passed`);
    }
    const headers = new Headers({
      "content-type": "application/json",
      accept: "application/json",
      "idempotency-key": ctx.idempotencyKey,
    });
    injectTraceContext(ctx.trace, headers);
    if (token !== undefined) {
      try {
        const value = typeof token === "string" ? token : await token();
        headers.set("authorization", `Bearer ${value}`);
      } catch (error) {
        throw new AgentError("ERR_AGENT_FAILED", `Cannot get a token for agent ${id}`, {
          cause: error,
        });
      }
    }
    const body = JSON.stringify({
      task,
      runId: ctx.runId,
      attempt: ctx.attempt,
      idempotencyKey: ctx.idempotencyKey,
    });
    const timeout = new AbortController();
    const cancelTimer = timer(() => timeout.abort(), remaining);
    const signal = AbortSignal.any([ctx.signal, timeout.signal]);
    let response: Response;
    let text = "";
    try {
      response = await fetchFn(href, { method: "POST", headers, body, signal });
      if (response.ok) text = await response.text();
      else await response.body?.cancel();
    } catch (error) {
      if (ctx.signal.aborted) throw cancelled(id, error);
      if (timeout.signal.aborted) {
        throw new AgentError("ERR_TIMEOUT", `Agent ${id} did not answer within ${remaining} ms`, {
          cause: error,
        });
      }
      throw new AgentError("ERR_AGENT_FAILED", `Cannot reach agent ${id}`, { cause: error });
    } finally {
      cancelTimer();
    }
    if (response.ok) {
      if (text === "") return null;
      try {
        return JSON.parse(text) as JsonValue;
      } catch (error) {
        throw new AgentError(
          "ERR_AGENT_FAILED",
          `Agent ${id} answered with a body that is not JSON`,
          {
            cause: error,
            retryable: false,
          },
        );
      }
    }
    const status = response.status;
    const answered = `Agent ${id} answered ${status}${
      response.statusText === "" ? "" : ` ${response.statusText}`
    }`;
    if (status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"), clock.now());
      throw new AgentError(
        "ERR_AGENT_FAILED",
        answered,
        retryAfterMs === undefined ? { retryable: true } : { retryable: true, retryAfterMs },
      );
    }
    throw new AgentError("ERR_AGENT_FAILED", answered, { retryable: false });
  }

  return defineAgent({
    id,
    invoke,
    ...(options.capabilities === undefined ? {} : { capabilities: options.capabilities }),
    ...(options.tier === undefined ? {} : { tier: options.tier }),
    ...(options.costPerRun === undefined ? {} : { costPerRun: options.costPerRun }),
    ...(options.maxConcurrency === undefined ? {} : { maxConcurrency: options.maxConcurrency }),
  });
}

function cancelled(id: string, cause: unknown): AgentError {
  return new AgentError("ERR_CANCELLED", `Call to agent ${id} was cancelled`, {
    cause,
    retryable: false,
  });
}
