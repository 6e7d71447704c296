/**
 * The SQLite adapter of the store port: {@link openSqliteStore}.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { PlmError } from "../../../shared/mod.ts";
import { Database, type DatabaseOptions, type Statement } from "../database.ts";
import type { Store, StoreRole, StoreTx, WakeTopic } from "../port.ts";
import { StatementCache, TxScope } from "./_sql.ts";
import { SqliteRunRepository } from "./_runs.ts";
import { SqliteApprovalRepository } from "./_approvals.ts";
import { SqliteAuditRepository } from "./_audit.ts";
import { SqliteGovernanceRepository } from "./_governance.ts";
import { SqlitePolicyRepository } from "./_policies.ts";

/** Options for {@link openSqliteStore}: those of the SQLite database underneath. */
export type SqliteStoreOptions = DatabaseOptions;

type WakeListener = (topic: WakeTopic | "reconnected") => void;

/** The store whose transaction the current async context runs in, to refuse nesting. */
const CURRENT = new AsyncLocalStorage<SqliteStore>();

/**
 * A {@link Store} on one SQLite connection. Every transaction, read or write,
 * takes its turn on the connection through a FIFO queue (a connection holds
 * one transaction at a time, and `fn` awaits between statements); across
 * processes, write transactions take turns through `BEGIN IMMEDIATE` and the
 * busy timeout, and read transactions see one snapshot (`BEGIN DEFERRED`,
 * WAL) with writes refused (each repository statement that writes).
 *
 * Open one store per file per process: `BEGIN IMMEDIATE` waits for another
 * connection's write lock by blocking the thread, so a second store on the
 * same file in the same process would wait on a transaction that cannot
 * progress until the busy timeout (`ERR_STORE_BUSY`).
 */
class SqliteStore implements Store {
  readonly kind = "sqlite" as const;
  readonly location: string;
  readonly readOnly: boolean;
  readonly #db: Database;
  readonly #sql: StatementCache;
  readonly #begin: Statement;
  readonly #beginRead: Statement;
  readonly #commit: Statement;
  readonly #rollback: Statement;
  readonly #listeners = new Set<WakeListener>();
  /** Settles when the last transaction queued so far has ended. */
  #tail: Promise<void> = Promise.resolve();
  #closing: Promise<void> | undefined;

  constructor(location: string, db: Database, readOnly: boolean) {
    this.location = location;
    this.readOnly = readOnly;
    this.#db = db;
    this.#sql = new StatementCache(db);
    this.#begin = db.prepare("BEGIN IMMEDIATE");
    this.#beginRead = db.prepare("BEGIN DEFERRED");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
  }

  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    // A read-only store runs write transactions as reads: any write in them is refused.
    return this.#run(!this.readOnly, fn);
  }

  read<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    return this.#run(false, fn);
  }

  lead<T>(_role: StoreRole, fn: (tx: StoreTx) => Promise<T>): Promise<T | undefined> {
    // Write transactions take turns across processes anyway: every process leads in its turn.
    return this.transaction(fn);
  }

  onWake(listener: WakeListener): () => void {
    // A listener added twice is kept twice, and each unsubscribe removes its own.
    const entry: WakeListener = (topic) => listener(topic);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  schemaVersion(): Promise<number> {
    if (this.#closing !== undefined) return Promise.reject(closed());
    return Promise.resolve(this.#db.schemaVersion);
  }

  close(): Promise<void> {
    this.#closing ??= this.#exclusive(() => {
      this.#db.close();
      return Promise.resolve();
    });
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #run<T>(write: boolean, fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (CURRENT.getStore() === this) {
      throw new PlmError(
        "ERR_INTERNAL",
        "Cannot open a transaction inside a transaction of the same store (pass its tx instead)",
      );
    }
    if (this.#closing !== undefined) throw closed();
    const topics = new Set<WakeTopic>();
    const result = await this.#exclusive(() => this.#within(write, topics, fn));
    for (const topic of topics) this.#wake(topic);
    return result;
  }

  /** Runs `fn` once every transaction queued before it has ended (FIFO). */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.#tail;
    let done!: () => void;
    this.#tail = new Promise<void>((resolve) => done = resolve);
    return before.then(fn).finally(done);
  }

  /** One transaction on the connection: begin, `fn`, commit; roll back when anything fails. */
  async #within<T>(
    write: boolean,
    topics: Set<WakeTopic>,
    fn: (tx: StoreTx) => Promise<T>,
  ): Promise<T> {
    {
      (write ? this.#begin : this.#beginRead).run();
      const scope = new TxScope(this.#sql, write);
      const tx: StoreTx = {
        runs: new SqliteRunRepository(scope),
        approvals: new SqliteApprovalRepository(scope),
        audit: new SqliteAuditRepository(scope),
        governance: new SqliteGovernanceRepository(scope),
        policies: new SqlitePolicyRepository(scope),
        wake: (topic) => {
          topics.add(topic);
        },
      };
      let result: T;
      try {
        result = await CURRENT.run(this, () => fn(tx));
      } catch (err) {
        this.#undo();
        throw err;
      } finally {
        scope.end();
      }
      try {
        this.#commit.run();
      } catch (err) {
        this.#undo();
        throw err;
      }
      return result;
    }
  }

  #undo(): void {
    // SQLite may already have rolled the whole transaction back (e.g. on SQLITE_FULL).
    if (!this.#db.inTransaction) return;
    try {
      this.#rollback.run();
    } catch {
      // The caller rethrows the error that made it roll back; a failed ROLLBACK (the file is
      // gone, the disk failed) leaves SQLite to roll back when the connection closes.
    }
  }

  #wake(topic: WakeTopic): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(topic);
      } catch {
        // A hint is not the correctness path: a failing listener must not fail the commit.
      }
    }
  }
}

function closed(): PlmError {
  return new PlmError("ERR_INTERNAL", "Cannot use the store as it is closed");
}

/**
 * Opens (creating and migrating if needed) the SQLite store at `path`, or a
 * private in-memory one for `":memory:"`. Prefer `openStore`, which takes
 * every kind of location. Open one store per file per process (write
 * transactions of one process take turns in its store's queue; a second store
 * on the same file would block the thread waiting for the first's lock).
 *
 * @param path A file path, or `":memory:"`.
 * @param options Pragmas, migrations, clock and read-only mode.
 * @returns The open store; close it when done.
 * @throws {TypeError} When `path` is empty, an option is malformed, or `readOnly` is asked of `":memory:"`.
 * @throws {RangeError} When `busyTimeoutMs` is negative or not an integer.
 * @throws {PlmError} As `openDatabase`: `ERR_STORE_SCHEMA_TOO_NEW`, `ERR_STORE_SCHEMA_TOO_OLD`,
 * `ERR_STORE_MIGRATION_FAILED`, `ERR_STORE_NOT_FOUND`, `ERR_STORE_CORRUPT`,
 * `ERR_STORE_READ_ONLY`, `ERR_STORE_BUSY`, `ERR_PERMISSION`.
 *
 * @example Write a run's approval and read it back
 * ```ts
 * import { openSqliteStore } from "./sqlite_store.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openSqliteStore(":memory:");
 * await store.transaction((tx) =>
 *   tx.approvals.insert({
 *     id: "a-1", runId: "r-1", kind: "approval", spec: {}, subject: "bom:1",
 *     digest: "0".repeat(64), requester: { subject: "agent-7", kind: "agent" },
 *     traceId: null, createdAt: 0, deadline: 60_000,
 *   })
 * );
 * const approval = await store.read((tx) => tx.approvals.byId("a-1"));
 * assert.equal(approval?.state, "pending");
 * ```
 */
export function openSqliteStore(path: string, options: SqliteStoreOptions = {}): Promise<Store> {
  try {
    const db = new Database(path, options);
    return Promise.resolve(new SqliteStore(path, db, options.readOnly === true));
  } catch (err) {
    return Promise.reject(err);
  }
}
