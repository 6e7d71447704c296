/**
 * The bounded, aggregated audit of rejected requests behind
 * `identityMiddleware`. Private to `control_plane/identity/`.
 *
 * @module
 */
import type { Clock, JsonValue, Timer } from "../../shared/mod.ts";
import type { AuditActor, AuditSink } from "../audit/types.ts";

/** How long one (client, reason) window lasts: one record per window, plus one count. */
const REJECTION_WINDOW_MS = 60_000;
/** The longest path kept in a record's resource, in characters. */
const MAX_AUDITED_PATH = 512;
/** The longest client key, method or claim name kept in a record, in characters. */
const MAX_AUDITED_LABEL = 128;
/** The client key that stands for every client once `maxClients` windows are open. */
const OTHER_CLIENTS = "(other clients)";

/** What one rejected request contributes to the audit. */
export interface Rejection {
  /** Who sent it (`clientKey(request)`), untrusted. */
  readonly client: string;
  /** The error code. */
  readonly code: string;
  /** `request.method`. */
  readonly method: string;
  /** The URL path, without the query string. */
  readonly path: string;
  /** The failed claim and why, for claim failures. */
  readonly claim?: { readonly name: string; readonly reason: string | null };
  /** The trace id the client sent, already validated; untrusted. */
  readonly untrustedTraceId?: string;
}

interface Window {
  readonly client: string;
  readonly code: string;
  readonly start: number;
  /** Rejections in this window, the first (already written) included. */
  count: number;
}

/**
 * Writes at most one record per (client, reason, window) at once, and the
 * count of the rest when the window closes.
 *
 * Invariants: `#windows` holds open windows in the order they opened, so the
 * oldest is first and closing expired ones is a walk from the front; it holds
 * at most `maxClients` windows plus one per reason for {@link OTHER_CLIENTS};
 * the sum of `data.count` over the records written equals the number of
 * rejections seen once every window is closed (by a later rejection, the
 * timer, or `flush()`). A window is removed only after its count is written,
 * so a failing sink loses no count. The sink is async: every operation
 * (record, flush, timer) runs alone, queued one after the other, so these
 * invariants hold between awaits as they did between calls.
 */
export class RejectionLog {
  readonly #audit: AuditSink;
  readonly #actor: AuditActor;
  readonly #clock: Clock;
  readonly #timer: Timer;
  readonly #maxClients: number;
  readonly #windows = new Map<string, Window>();
  #cancelTimer: (() => void) | undefined;
  /** The tail of the queue of operations (never rejects). */
  #queue: Promise<void> = Promise.resolve();

  constructor(
    audit: AuditSink,
    actor: AuditActor,
    options: { clock: Clock; timer: Timer; maxClients: number },
  ) {
    this.#audit = audit;
    this.#actor = actor;
    this.#clock = options.clock;
    this.#timer = options.timer;
    this.#maxClients = options.maxClients;
  }

  /** Runs `op` after every operation queued before it; resolves or rejects as `op` does. */
  #enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(op);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** Records one rejection: written now if it opens a window, counted otherwise. */
  record(rejection: Rejection): Promise<void> {
    const now = this.#clock.now();
    return this.#enqueue(() => this.#record(rejection, now));
  }

  async #record(rejection: Rejection, now: number): Promise<void> {
    await this.#closeExpired(now);
    let client = bound(rejection.client, MAX_AUDITED_LABEL).text;
    let key = windowKey(client, rejection.code);
    if (!this.#windows.has(key) && this.#windows.size >= this.#maxClients) {
      client = OTHER_CLIENTS;
      key = windowKey(client, rejection.code);
    }
    const open = this.#windows.get(key);
    if (open !== undefined) {
      if (now - open.start < REJECTION_WINDOW_MS && now >= open.start) {
        open.count++;
        return;
      }
      // Only when the clock went back: expired windows sit at the front and are closed above.
      await this.#close(key, open);
    }
    await this.#audit.append(firstRecord(this.#actor, client, rejection));
    this.#windows.set(key, { client, code: rejection.code, start: now, count: 1 });
    this.#schedule(now);
  }

  /** Closes every window now, writing the counts not yet written. */
  flush(): Promise<void> {
    return this.#enqueue(async () => {
      this.#cancelTimer?.();
      this.#cancelTimer = undefined;
      for (const [key, window] of this.#windows) await this.#close(key, window);
    });
  }

  async #closeExpired(now: number): Promise<void> {
    for (const [key, window] of this.#windows) {
      if (now - window.start < REJECTION_WINDOW_MS) break;
      await this.#close(key, window);
    }
  }

  async #close(key: string, window: Window): Promise<void> {
    if (window.count > 1) {
      await this.#audit.append({
        actor: this.#actor,
        action: "auth.token.rejected",
        resource: "http:*",
        outcome: "denied",
        reason: window.code,
        data: {
          client: window.client,
          count: window.count - 1,
          aggregated: true,
          from: new Date(window.start).toISOString(),
          until: new Date(this.#clock.now()).toISOString(),
        },
      });
    }
    this.#windows.delete(key);
  }

  /** Keeps one timer pending while a window is open, due when the oldest closes. */
  #schedule(now: number): void {
    if (this.#cancelTimer !== undefined) return;
    const oldest = this.#windows.values().next().value;
    if (oldest === undefined) return;
    const delay = Math.max(0, oldest.start + REJECTION_WINDOW_MS - now);
    this.#cancelTimer = this.#timer(() => {
      this.#cancelTimer = undefined;
      void this.#enqueue(async () => {
        const at = this.#clock.now();
        try {
          await this.#closeExpired(at);
          this.#schedule(at);
        } catch {
          // The sink failed: the windows stay (no count is lost) and are retried a window later.
          this.#cancelTimer ??= this.#timer(() => {
            this.#cancelTimer = undefined;
            this.#schedule(this.#clock.now());
          }, REJECTION_WINDOW_MS);
        }
      });
    }, delay);
  }
}

function windowKey(client: string, code: string): string {
  return JSON.stringify([client, code]);
}

function firstRecord(actor: AuditActor, client: string, rejection: Rejection) {
  const method = bound(rejection.method, MAX_AUDITED_LABEL);
  const path = bound(rejection.path, MAX_AUDITED_PATH);
  const data: Record<string, JsonValue> = { client, count: 1 };
  if (rejection.claim !== undefined) {
    data.claim = bound(rejection.claim.name, MAX_AUDITED_LABEL).text;
    data.reason = rejection.claim.reason;
  }
  if (method.truncated || path.truncated) data.truncated = true;
  if (method.truncated) data.methodLength = rejection.method.length;
  if (path.truncated) data.pathLength = rejection.path.length;
  if (rejection.untrustedTraceId !== undefined) data.untrustedTraceId = rejection.untrustedTraceId;
  return {
    actor,
    action: "auth.token.rejected",
    resource: `http:${method.text} ${path.text}`,
    outcome: "denied",
    reason: rejection.code,
    data,
  };
}

/**
 * `text` made storable and at most `max` characters: U+0000 and lone
 * surrogates become U+FFFD, and a cut text ends in `…` (never in half a
 * surrogate pair).
 */
function bound(text: string, max: number): { text: string; truncated: boolean } {
  const safe = text.toWellFormed().replaceAll("\0", "\ufffd");
  if (safe.length <= max) return { text: safe, truncated: false };
  let cut = safe.slice(0, max - 1);
  const last = cut.charCodeAt(cut.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut = cut.slice(0, -1);
  return { text: `${cut}…`, truncated: true };
}
