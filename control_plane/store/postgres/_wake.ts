/**
 * The wake-up listener of the PostgreSQL store: one dedicated connection that
 * `LISTEN`s on `plm_wake`, reconnecting with backoff after it is lost.
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";
import type { Timer } from "../../../shared/mod.ts";
import type { WakeTopic } from "../port.ts";

/** The channel every store notifies on; the payload is `<schema>/<topic>`. */
export const WAKE_CHANNEL = "plm_wake";

const TOPICS: ReadonlySet<string> = new Set<WakeTopic>(["runs", "approvals"]);
const BACKOFF_MS = [100, 200, 500, 1_000, 2_000, 5_000] as const;

/** Delivers wake-up hints to subscribers; connects on the first subscription. */
export class WakeListener {
  readonly #config: pg.ClientConfig;
  readonly #timer: Timer;
  readonly #ownPids: ReadonlySet<number>;
  readonly #listeners = new Set<(topic: WakeTopic | "reconnected") => void>();
  #client: pg.Client | undefined;
  #connecting: Promise<void> | undefined;
  #cancelRetry: (() => void) | undefined;
  #failures = 0;
  #started = false;
  #closed = false;

  /**
   * A listener that will connect with `config` and wait on `timer` between
   * attempts, ignoring notifications sent by the backends in `ownPids` (the
   * store's pool: their transactions deliver locally at commit).
   */
  constructor(config: pg.ClientConfig, timer: Timer, ownPids: ReadonlySet<number>) {
    this.#config = config;
    this.#timer = timer;
    this.#ownPids = ownPids;
  }

  /** Adds a subscriber (connecting on the first); returns its unsubscribe function. */
  subscribe(listener: (topic: WakeTopic | "reconnected") => void): () => void {
    const entry = (topic: WakeTopic | "reconnected") => listener(topic);
    this.#listeners.add(entry);
    if (!this.#started && !this.#closed) {
      this.#started = true;
      this.#connect(false);
    }
    return () => void this.#listeners.delete(entry);
  }

  /** The connection attempt in flight, for tests and `close`. */
  get ready(): Promise<void> {
    return this.#connecting ?? Promise.resolve();
  }

  /** The backend pid of the listening connection, when connected. */
  get pid(): number | undefined {
    return (this.#client as unknown as { processID?: number } | undefined)?.processID;
  }

  /** Delivers topics committed by this process (their NOTIFY echo is dropped). */
  deliverLocal(topics: Iterable<WakeTopic>): void {
    if (this.#closed) return;
    for (const topic of topics) this.#deliver(topic);
  }

  #deliver(topic: WakeTopic | "reconnected"): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(topic);
      } catch {
        // A throwing subscriber must not break the listener or the others.
      }
    }
  }

  #connect(reconnect: boolean): void {
    if (this.#closed) return;
    const client = new pg.Client(this.#config);
    this.#client = client;
    let lost = false;
    const onLost = () => {
      if (lost) return;
      lost = true;
      if (this.#client === client) this.#client = undefined;
      client.end().catch(() => {});
      this.#scheduleRetry();
    };
    client.on("error", onLost);
    client.on("end", onLost);
    this.#connecting = (async () => {
      try {
        await client.connect();
        const { rows } = await client.query<{ schema: string | null }>(
          "SELECT current_schema() AS schema",
        );
        const prefix = `${rows[0]?.schema ?? ""}/`;
        client.on("notification", (message) => {
          const payload = message.payload ?? "";
          if (message.channel !== WAKE_CHANNEL || !payload.startsWith(prefix)) return;
          if (this.#ownPids.has(message.processId)) return; // delivered at commit already
          const topic = payload.slice(prefix.length);
          if (TOPICS.has(topic)) this.#deliver(topic as WakeTopic);
        });
        await client.query(`LISTEN ${WAKE_CHANNEL}`);
        if (this.#closed) {
          await client.end().catch(() => {});
          return;
        }
        this.#failures = 0;
        if (reconnect) this.#deliver("reconnected");
      } catch {
        onLost();
      }
    })();
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#cancelRetry !== undefined) return;
    const delay = BACKOFF_MS[Math.min(this.#failures, BACKOFF_MS.length - 1)]!;
    this.#failures++;
    this.#cancelRetry = this.#timer(() => {
      this.#cancelRetry = undefined;
      this.#connect(true);
    }, delay);
  }

  /** Stops reconnecting and ends the connection. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRetry?.();
    this.#cancelRetry = undefined;
    this.#listeners.clear();
    await this.#connecting?.catch(() => {});
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }
}
