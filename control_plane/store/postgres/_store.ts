/**
 * The PostgreSQL {@link Store}: a `pg.Pool`, transactions on pooled
 * connections, roles by advisory transaction locks, wake-ups by
 * `LISTEN/NOTIFY`.
 *
 * @module
 */
// @ts-types="@types/pg"
import type pg from "pg";
import { PlmError, type Timer } from "../../../shared/mod.ts";
import type {
  ApprovalRepository,
  AuditRepository,
  GovernanceRepository,
  PolicyRepository,
  RunRepository,
  Store,
  StoreRole,
  StoreTx,
  WakeTopic,
} from "../port.ts";
import { redactUrl, toPlmError } from "./_errors.ts";
import {
  PostgresApprovalRepository,
  PostgresAuditRepository,
  PostgresGovernanceRepository,
  PostgresPolicyRepository,
  PostgresRunRepository,
  type Query,
} from "./_repositories.ts";
import { WAKE_CHANNEL, type WakeListener } from "./_wake.ts";
import { readVersion } from "./migrations.ts";

const ROLES: ReadonlySet<string> = new Set<StoreRole>(["reaper", "sealer"]);
const TOPICS: ReadonlySet<string> = new Set<WakeTopic>(["runs", "approvals"]);

class PostgresTx implements StoreTx {
  readonly runs: RunRepository;
  readonly approvals: ApprovalRepository;
  readonly audit: AuditRepository;
  readonly governance: GovernanceRepository;
  readonly policies: PolicyRepository;
  readonly topics = new Set<WakeTopic>();
  ended = false;

  constructor(query: Query) {
    this.runs = new PostgresRunRepository(query);
    this.approvals = new PostgresApprovalRepository(query);
    this.audit = new PostgresAuditRepository(query);
    this.governance = new PostgresGovernanceRepository(query);
    this.policies = new PostgresPolicyRepository(query);
  }

  wake(topic: WakeTopic): void {
    if (this.ended) throw new PlmError("ERR_INTERNAL", "Cannot use a transaction that has ended");
    if (!TOPICS.has(topic)) {
      throw new PlmError("ERR_INVALID_ARGUMENT", `topic: unknown wake topic ${String(topic)}`);
    }
    this.topics.add(topic);
  }
}

type Mode = "write" | "read";

/** How long committed wake-up topics wait to be sent together in one `NOTIFY`, in ms. */
export const NOTIFY_DEBOUNCE_MS = 5;

/** The store over a pool; made by `openPostgresStore`. */
export class PostgresStore implements Store {
  readonly kind = "postgres" as const;
  readonly location: string;
  readonly readOnly: boolean;
  readonly #url: string;
  readonly #pool: pg.Pool;
  readonly #wake: WakeListener;
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #timer: Timer;
  /** Topics committed since the last `NOTIFY`, and whether one is armed. */
  readonly #unsent = new Set<WakeTopic>();
  #notifyArmed = false;
  #closing: Promise<void> | undefined;

  constructor(url: string, pool: pg.Pool, wake: WakeListener, readOnly: boolean, timer: Timer) {
    this.#url = url;
    this.location = redactUrl(url);
    this.#pool = pool;
    this.#wake = wake;
    this.readOnly = readOnly;
    this.#timer = timer;
  }

  /** The wake listener (tests kill its connection). */
  get wakeListener(): WakeListener {
    return this.#wake;
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#track(this.#run("write", undefined, fn)) as Promise<T>;
  }

  read<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#track(this.#run("read", undefined, fn)) as Promise<T>;
  }

  lead<T>(role: StoreRole, fn: (tx: StoreTx) => Promise<T>): Promise<T | undefined> {
    if (!ROLES.has(role)) {
      return Promise.reject(
        new PlmError("ERR_INVALID_ARGUMENT", `role: unknown store role ${String(role)}`),
      );
    }
    return this.#track(this.#run("write", role, fn));
  }

  onWake(listener: (topic: WakeTopic | "reconnected") => void): () => void {
    if (this.#closing !== undefined) return () => {};
    return this.#wake.subscribe(listener);
  }

  async schemaVersion(): Promise<number> {
    return await this.#track(this.#withClient(async (client) => (await readVersion(client)) ?? 0));
  }

  /**
   * Sends the committed topics to other processes in one `NOTIFY` of its own,
   * at most one per {@link NOTIFY_DEBOUNCE_MS}. A `NOTIFY` inside the writing
   * transaction would hold PostgreSQL's one notification-queue lock through
   * that transaction's commit, so every notifying commit of the server would
   * wait for the one before it (measured: it halved audit appends at 32
   * writers). A hint lost here (the server down) costs a poll, nothing more.
   */
  #notifySoon(topics: ReadonlySet<WakeTopic>): void {
    for (const topic of topics) this.#unsent.add(topic);
    if (this.#notifyArmed || this.#closing !== undefined) return;
    this.#notifyArmed = true;
    this.#timer(() => {
      this.#notifyArmed = false;
      if (this.#closing !== undefined || this.#unsent.size === 0) return;
      const sent = [...this.#unsent];
      this.#unsent.clear();
      void this.#track(
        this.#pool.query(
          "SELECT pg_notify($1, current_schema() || '/' || t) FROM unnest($2::text[]) AS t",
          [WAKE_CHANNEL, sent],
        ).catch(() => {}),
      );
    }, NOTIFY_DEBOUNCE_MS);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#wake.close();
      await Promise.allSettled([...this.#inFlight]);
      await this.#pool.end().catch(() => {});
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const done = () => void this.#inFlight.delete(promise);
    promise.then(done, done);
    return promise;
  }

  async #connect(): Promise<pg.PoolClient> {
    if (this.#closing !== undefined) {
      throw new PlmError("ERR_STORE_UNAVAILABLE", `The store at ${this.location} is closed`);
    }
    try {
      return await this.#pool.connect();
    } catch (error) {
      throw toPlmError(error, this.#url);
    }
  }

  async #withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#connect();
    let broken: Error | undefined;
    try {
      return await fn(client);
    } catch (error) {
      broken = error instanceof Error ? error : new Error(String(error));
      throw toPlmError(error, this.#url);
    } finally {
      client.release(broken);
    }
  }

  async #run<T>(
    mode: Mode,
    role: StoreRole | undefined,
    fn: (tx: StoreTx) => Promise<T>,
  ): Promise<T | undefined> {
    const client = await this.#connect();
    let tx: PostgresTx | undefined;
    let discard: Error | undefined;
    const exec: Query = async (sql, params) => {
      try {
        // A statement with parameters runs as a named prepared statement: each pooled
        // connection parses and plans it once, not at every call (the adapter's SQL is a
        // fixed, small set of texts). Without parameters (BEGIN, COMMIT) it goes as it is.
        const result = params === undefined ? await client.query(sql) : await client.query({
          name: statementName(sql),
          text: sql,
          values: params as unknown[],
        });
        return { rows: result.rows, rowCount: result.rowCount ?? 0 };
      } catch (error) {
        throw toPlmError(error, this.#url);
      }
    };
    const query: Query = (sql, params) => {
      if (tx?.ended) {
        return Promise.reject(
          new PlmError("ERR_INTERNAL", "Cannot use a transaction that has ended"),
        );
      }
      return exec(sql, params);
    };
    try {
      // A write transaction marks itself an audit writer before it can get a
      // transaction id (one round trip with BEGIN): the sealer's horizon.
      await exec(
        mode === "read"
          ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
          : this.readOnly
          ? "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY"
          : "BEGIN ISOLATION LEVEL READ COMMITTED",
      );
      try {
        if (role !== undefined) {
          const { rows } = await exec<{ won: boolean }>(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('plm:role:' || current_schema() || ':' || $1, 0)) AS won",
            [role],
          );
          if (rows[0]?.won !== true) {
            await exec("ROLLBACK");
            return undefined;
          }
        }
        tx = new PostgresTx(query);
        const result = await fn(tx);
        tx.ended = true;
        await exec("COMMIT");
        // This process's listeners hear the topics now; other processes by a NOTIFY sent
        // after the commit (see #notifySoon; the listener drops this pool's own echo).
        if (tx.topics.size > 0) {
          this.#wake.deliverLocal(tx.topics);
          this.#notifySoon(tx.topics);
        }
        return result;
      } catch (error) {
        if (tx !== undefined) tx.ended = true;
        try {
          await client.query("ROLLBACK");
        } catch (rollback) {
          discard = rollback instanceof Error ? rollback : new Error(String(rollback));
        }
        // fn's own errors go out as they are; the store's are mapped already.
        throw error;
      }
    } catch (error) {
      discard ??= isConnectionLost(error) ? new Error("connection lost") : undefined;
      throw error;
    } finally {
      if (tx !== undefined) tx.ended = true;
      client.release(discard);
    }
  }
}

function isConnectionLost(error: unknown): boolean {
  return error instanceof PlmError && error.code === "ERR_STORE_UNAVAILABLE";
}

const STATEMENT_NAMES = new Map<string, string>();

/** A stable name for a statement's text, the same on every connection. */
function statementName(sql: string): string {
  let name = STATEMENT_NAMES.get(sql);
  if (name === undefined) {
    name = `plm_${STATEMENT_NAMES.size + 1}`;
    STATEMENT_NAMES.set(sql, name);
  }
  return name;
}
