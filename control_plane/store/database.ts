/**
 * The SQLite store: {@link openDatabase} and the {@link Database} it returns,
 * a small wrapper over `node:sqlite` that applies the schema migrations.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import {
  type Clock,
  ERROR_CODES,
  type ErrorCode,
  isPlmError,
  PlmError,
  systemClock,
} from "../../shared/mod.ts";
import { checkOption } from "../../shared/validate.ts";
import { type Migration, MIGRATIONS } from "./migrations.ts";

/** A value SQLite stores or returns. */
export type SqlValue = null | number | bigint | string | Uint8Array;

/** Named parameters (`:name`, `$name`, `@name`) bound by name. */
export type SqlNamedParameters = { readonly [name: string]: SqlValue };

/** One bound parameter: a positional value, or (first only) an object of named ones. */
export type SqlParameter = SqlValue | SqlNamedParameters;

/** A result row: column name to value. */
export type SqlRow = { readonly [column: string]: SqlValue };

/** What {@link Statement.run} reports. */
export interface SqlRunResult {
  /** Rows inserted, updated or deleted. */
  readonly changes: number | bigint;
  /** The rowid of the last inserted row. */
  readonly lastInsertRowid: number | bigint;
}

/**
 * A prepared statement. `Row` is the shape the caller expects; it is not
 * checked at run time.
 */
export interface Statement<Row extends object = SqlRow> {
  /** The SQL text the statement was prepared from. */
  readonly sql: string;
  /** Runs the statement and reports the changes. */
  run(...params: SqlParameter[]): SqlRunResult;
  /** Runs the statement and returns the first row, or `undefined`. */
  get(...params: SqlParameter[]): Row | undefined;
  /** Runs the statement and returns every row. */
  all(...params: SqlParameter[]): Row[];
  /** Runs the statement and yields the rows one by one, without loading them all. */
  iterate(...params: SqlParameter[]): IterableIterator<Row>;
}

/** Options for {@link Database.prepare}. */
export interface PrepareOptions {
  /**
   * Return each row as an array of column values in `SELECT` order instead of
   * an object: faster on hot read paths. Type `Row` as a tuple then.
   *
   * @default {false}
   */
  returnArrays?: boolean;
}

/** How hard SQLite syncs to disk. See {@link DatabaseOptions.synchronous}. */
export type SynchronousMode = "normal" | "full";

/** Options for {@link openDatabase}. */
export interface DatabaseOptions {
  /**
   * `PRAGMA synchronous`. `"normal"` is durable against application crashes and,
   * with WAL, loses at most the last commits on power loss; `"full"` syncs
   * every commit.
   *
   * @default {"normal"}
   */
  synchronous?: SynchronousMode;
  /**
   * How long to wait for another connection's write lock before failing with
   * `database is locked`, in milliseconds.
   *
   * @default {5000}
   */
  busyTimeoutMs?: number;
  /**
   * The migrations to apply, oldest first, versions 1, 2, 3, ... For tests of
   * upgrades; production code keeps the default.
   *
   * @default {MIGRATIONS}
   */
  migrations?: readonly Migration[];
  /**
   * The clock that stamps `schema_migrations.applied_at`.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * Open for reading only: never create, write or migrate the file. The file
   * must exist (else `ERR_STORE_NOT_FOUND`) and be at the latest schema of
   * `migrations` (else `ERR_STORE_SCHEMA_TOO_OLD` or `ERR_STORE_SCHEMA_TOO_NEW`);
   * a write fails with `ERR_STORE_READ_ONLY`. A WAL database in a folder the
   * process cannot write is read as immutable when it has no `-wal` file.
   *
   * @default {false}
   */
  readOnly?: boolean;
}

type ArrayStatementSync = StatementSync & { setReturnArrays(enabled: boolean): void };

/** What `node:sqlite` adds to its errors: the extended SQLite result code, when known. */
type SqliteError = Error & { errcode?: number };

const SYNCHRONOUS_MODES: readonly SynchronousMode[] = ["normal", "full"];
const SAVEPOINT = "plm_savepoint";
const CODE_PATTERN = /^(ERR_[A-Z0-9_]+): (.*)$/s;
/** Faults of the file or the process, not of a migration: they keep their own code. */
const STORE_FAULTS: readonly ErrorCode[] = [
  "ERR_STORE_BUSY",
  "ERR_STORE_CORRUPT",
  "ERR_STORE_READ_ONLY",
  "ERR_PERMISSION",
];
/** SQLite primary result codes (the low byte of an extended code). */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_CORRUPT = 11;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;
const SQLITE_MAGIC = "SQLite format 3\0";

/**
 * An open SQLite database with the package's schema, made by
 * {@link openDatabase}. File databases use WAL, so several connections (and
 * processes) can share one file: readers never block, writers take turns
 * through {@link Database.transaction} (`BEGIN IMMEDIATE`) and the busy
 * timeout.
 *
 * Errors raised by SQL triggers as `RAISE(ABORT, 'ERR_CODE: message')` with a
 * known code surface as {@link PlmError} with that code; other SQLite errors
 * are rethrown as they are.
 *
 * @example Create a table and use it in a transaction
 * ```ts
 * import { openDatabase } from "./database.ts";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * db.exec("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
 * const insert = db.prepare("INSERT INTO notes (body) VALUES (?)");
 * db.transaction(() => {
 *   insert.run("first");
 *   insert.run("second");
 * });
 * const count = db.prepare<{ n: number }>("SELECT count(*) AS n FROM notes").get();
 * assert.equal(count?.n, 2);
 * ```
 */
export class Database {
  #db: DatabaseSync;
  #path: string;
  #begin: StatementSync;
  #beginRead: StatementSync;
  #commit: StatementSync;
  #rollback: StatementSync;
  #savepoint: StatementSync;
  #release: StatementSync;
  #rollbackTo: StatementSync;
  #version: StatementSync | undefined;

  /**
   * Opens (creating if needed) the database at `path`, sets the pragmas and
   * applies pending migrations; or, with `readOnly`, opens an existing one
   * without writing. Prefer {@link openDatabase}.
   *
   * @param path A file path, or `":memory:"` for a private in-memory database.
   * @param options Pragmas, migrations, clock and read-only mode.
   * @throws {TypeError} When `path` is empty, an option is malformed, or `readOnly` is asked of `":memory:"`.
   * @throws {RangeError} When `busyTimeoutMs` is negative or not an integer.
   * @throws {PlmError} `ERR_STORE_SCHEMA_TOO_NEW` when the database is newer than the code,
   * `ERR_STORE_MIGRATION_FAILED` when a migration fails (it is rolled back),
   * `ERR_STORE_NOT_FOUND` and `ERR_STORE_SCHEMA_TOO_OLD` (read-only), `ERR_STORE_CORRUPT`,
   * `ERR_STORE_READ_ONLY`, `ERR_STORE_BUSY`, `ERR_PERMISSION`.
   */
  constructor(path: string, options: DatabaseOptions = {}) {
    const {
      synchronous = "normal",
      busyTimeoutMs = 5000,
      migrations = MIGRATIONS,
      clock = systemClock,
      readOnly = false,
    } = options;
    if (typeof path !== "string" || path === "") {
      throw new TypeError("Cannot open a database without a path");
    }
    if (!SYNCHRONOUS_MODES.includes(synchronous)) {
      throw new TypeError(`Cannot use synchronous mode '${String(synchronous)}'`);
    }
    checkOption("busyTimeoutMs", busyTimeoutMs, 0);
    if (typeof readOnly !== "boolean") throw new TypeError("Cannot use a non-boolean readOnly");
    if (readOnly && path === ":memory:") {
      throw new TypeError("Cannot open an in-memory database read-only as it is always empty");
    }
    validateMigrations(migrations);

    this.#path = path;
    if (path !== ":memory:") checkFile(path, readOnly);
    this.#db = readOnly
      ? openReadOnly(path, busyTimeoutMs)
      : connect(path, { timeout: busyTimeoutMs, enableForeignKeyConstraints: true });
    try {
      this.#db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
      if (!readOnly) {
        if (path !== ":memory:") this.#db.exec("PRAGMA journal_mode = WAL");
        this.#db.exec(`PRAGMA synchronous = ${synchronous.toUpperCase()}`);
      }
      this.#db.exec("PRAGMA foreign_keys = ON");
      this.#begin = this.#db.prepare("BEGIN IMMEDIATE");
      this.#beginRead = this.#db.prepare("BEGIN DEFERRED");
      this.#commit = this.#db.prepare("COMMIT");
      this.#rollback = this.#db.prepare("ROLLBACK");
      this.#savepoint = this.#db.prepare(`SAVEPOINT ${SAVEPOINT}`);
      this.#release = this.#db.prepare(`RELEASE ${SAVEPOINT}`);
      this.#rollbackTo = this.#db.prepare(`ROLLBACK TO ${SAVEPOINT}`);
      if (readOnly) this.#checkCurrent(migrations.at(-1)?.version ?? 0);
      else this.#migrate(migrations, clock);
    } catch (err) {
      this.#db.close();
      throw translateError(err, path);
    }
  }

  /**
   * The path the database was opened with (`":memory:"` for in-memory).
   *
   * @example An in-memory database
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * assert.equal(db.path, ":memory:");
   * ```
   */
  get path(): string {
    return this.#path;
  }

  /**
   * The highest migration version applied to the database (0 when none).
   *
   * @example A new database is migrated on open
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * assert.ok(db.schemaVersion > 0);
   * ```
   */
  get schemaVersion(): number {
    if (this.#version === undefined) {
      const exists = this.#db.prepare(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'",
      ).get();
      if (exists === undefined) return 0;
      this.#version = this.#db.prepare(
        "SELECT coalesce(max(version), 0) AS version FROM schema_migrations",
      );
    }
    const row = this.#version.get() as { version: number } | undefined;
    return row?.version ?? 0;
  }

  /**
   * Whether a transaction (ours or one begun with raw SQL) is open on this connection.
   *
   * @example Only inside `transaction()`
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * assert.equal(db.inTransaction, false);
   * assert.equal(db.transaction(() => db.inTransaction), true);
   * assert.equal(db.inTransaction, false);
   * ```
   */
  get inTransaction(): boolean {
    return this.#db.isTransaction;
  }

  /**
   * Whether the connection is open.
   *
   * @example Open until closed
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * const db = openDatabase(":memory:");
   * assert.equal(db.isOpen, true);
   * db.close();
   * assert.equal(db.isOpen, false);
   * ```
   */
  get isOpen(): boolean {
    return this.#db.isOpen;
  }

  /**
   * Runs one or more SQL statements without parameters or results.
   *
   * @param sql The SQL text.
   * @throws {PlmError} When a trigger raises a known `ERR_*` code.
   *
   * @example Create a table
   * ```ts
   * import { openDatabase } from "./database.ts";
   *
   * using db = openDatabase(":memory:");
   * db.exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) STRICT");
   * ```
   */
  exec(sql: string): void {
    try {
      this.#db.exec(sql);
    } catch (err) {
      throw translateError(err, this.#path);
    }
  }

  /**
   * Prepares a statement. Prepare once and reuse it on hot paths.
   *
   * @typeParam Row The row shape the caller expects (not checked): an object
   * type, or a tuple type with `returnArrays`.
   * @param sql One SQL statement, with `?` or named parameters.
   * @param options Row format.
   * @returns The prepared statement.
   *
   * @example Insert and read back with parameters
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * db.exec("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) STRICT");
   * db.prepare("INSERT INTO kv (k, v) VALUES (:k, :v)").run({ k: "a", v: "1" });
   * const row = db.prepare<{ v: string }>("SELECT v FROM kv WHERE k = ?").get("a");
   * assert.equal(row?.v, "1");
   *
   * const pair = db.prepare<[string, string]>("SELECT k, v FROM kv", { returnArrays: true }).get();
   * assert.deepEqual(pair, ["a", "1"]);
   * ```
   */
  prepare<Row extends object = SqlRow>(sql: string, options: PrepareOptions = {}): Statement<Row> {
    const { returnArrays = false } = options;
    try {
      const stmt = this.#db.prepare(sql);
      // Present at run time; missing from the bundled @types/node of Deno 2.9.
      if (returnArrays) (stmt as ArrayStatementSync).setReturnArrays(true);
      return new PreparedStatement<Row>(stmt);
    } catch (err) {
      throw translateError(err, this.#path);
    }
  }

  /**
   * Runs `fn` in a write transaction and returns its result. At the top level
   * it is `BEGIN IMMEDIATE` ... `COMMIT` (the write lock is taken first, so the
   * reads inside see the latest data and no other connection writes until the
   * commit); inside an open transaction it is a `SAVEPOINT`, so a nested
   * failure rolls back only its own work unless the caller lets it propagate.
   * When `fn` throws, its work is rolled back and the error rethrown.
   *
   * @typeParam T What `fn` returns.
   * @param fn Synchronous work; it must not return a promise.
   * @returns What `fn` returned.
   * @throws {TypeError} When `fn` returns a promise (the work is rolled back).
   *
   * @example Roll back on error
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * db.exec("CREATE TABLE t (x INTEGER) STRICT");
   * assert.throws(() =>
   *   db.transaction(() => {
   *     db.prepare("INSERT INTO t VALUES (1)").run();
   *     throw new Error("changed my mind");
   *   })
   * );
   * assert.equal(db.prepare("SELECT count(*) AS n FROM t").get()?.n, 0);
   * ```
   */
  transaction<T>(fn: () => T): T {
    const nested = this.#db.isTransaction;
    return nested
      ? this.#within(this.#savepoint, this.#release, true, fn)
      : this.#within(this.#begin, this.#commit, false, fn);
  }

  /**
   * Runs `fn` on one consistent snapshot of the database without taking the
   * write lock (`BEGIN DEFERRED` ... `COMMIT`), so several reads agree with
   * each other while other connections keep writing. Inside an open
   * transaction it just runs `fn`. For reads only: a write inside may fail
   * with `database is locked` when another connection wrote since the
   * snapshot began; use {@link Database.transaction} to write.
   *
   * @typeParam T What `fn` returns.
   * @param fn Synchronous reads; it must not return a promise.
   * @returns What `fn` returned.
   * @throws {TypeError} When `fn` returns a promise.
   *
   * @example Two reads that agree
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * using db = openDatabase(":memory:");
   * db.exec("CREATE TABLE t (x INTEGER) STRICT; INSERT INTO t VALUES (1), (2);");
   * const [count, sum] = db.readTransaction(() => [
   *   db.prepare<{ n: number }>("SELECT count(*) AS n FROM t").get()?.n,
   *   db.prepare<{ s: number }>("SELECT sum(x) AS s FROM t").get()?.s,
   * ]);
   * assert.deepEqual([count, sum], [2, 3]);
   * ```
   */
  readTransaction<T>(fn: () => T): T {
    if (this.#db.isTransaction) return checkSync(fn());
    return this.#within(this.#beginRead, this.#commit, false, fn);
  }

  /** Runs `fn` between `open` and `close`, undoing the work when either fails. */
  #within<T>(open: StatementSync, close: StatementSync, nested: boolean, fn: () => T): T {
    try {
      open.run();
    } catch (err) {
      throw translateError(err, this.#path);
    }
    let result: T;
    try {
      result = checkSync(fn());
    } catch (err) {
      this.#undo(nested);
      throw err;
    }
    try {
      close.run();
    } catch (err) {
      this.#undo(nested);
      throw translateError(err, this.#path);
    }
    return result;
  }

  /**
   * Closes the connection. Closing twice is a no-op.
   *
   * @example Close explicitly
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * const db = openDatabase(":memory:");
   * db.close();
   * assert.equal(db.isOpen, false);
   * ```
   */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  /**
   * Closes the connection, for `using db = openDatabase(...)`.
   *
   * @example Closed at the end of the block
   * ```ts
   * import { openDatabase } from "./database.ts";
   * import assert from "node:assert/strict";
   *
   * let kept;
   * {
   *   using db = openDatabase(":memory:");
   *   kept = db;
   *   assert.equal(db.isOpen, true);
   * }
   * assert.equal(kept.isOpen, false);
   * ```
   */
  [Symbol.dispose](): void {
    this.close();
  }

  #undo(nested: boolean): void {
    // SQLite may already have rolled the whole transaction back (e.g. on SQLITE_FULL).
    if (!this.#db.isTransaction) return;
    if (nested) {
      this.#rollbackTo.run();
      this.#release.run();
    } else {
      this.#rollback.run();
    }
  }

  #migrate(migrations: readonly Migration[], clock: Clock): void {
    const latest = migrations.at(-1)?.version ?? 0;
    if (this.schemaVersion === 0) {
      this.transaction(() =>
        this.#db.exec(
          `CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL
          ) STRICT`,
        )
      );
    }
    this.#checkNotTooNew(latest);
    const record = this.#db.prepare(
      "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
    );
    for (const migration of migrations) {
      if (migration.version <= this.schemaVersion) continue;
      try {
        this.transaction(() => {
          // Re-read under the write lock: another process may have migrated meanwhile.
          const current = this.schemaVersion;
          if (migration.version <= current) return;
          this.#db.exec(migration.sql);
          record.run(migration.version, migration.name, Math.trunc(clock.now()));
        });
      } catch (err) {
        const fault = translateError(err, this.#path);
        if (isPlmError(fault) && STORE_FAULTS.includes(fault.code)) throw fault;
        throw new PlmError(
          "ERR_STORE_MIGRATION_FAILED",
          `Cannot apply migration ${migration.version} (${migration.name}): ${
            err instanceof Error ? err.message : String(err)
          }`,
          { cause: err },
        );
      }
    }
    this.#checkNotTooNew(latest);
  }

  /** Refuses, without migrating, a schema other than `latest` (read-only mode). */
  #checkCurrent(latest: number): void {
    const current = this.schemaVersion;
    if (current < latest) {
      throw new PlmError(
        "ERR_STORE_SCHEMA_TOO_OLD",
        `Cannot open ${this.#path} read-only as its schema version ${current} is older than ${latest} (run 'plm db migrate' on it first)`,
      );
    }
    this.#checkNotTooNew(latest);
  }

  #checkNotTooNew(latest: number): void {
    const current = this.schemaVersion;
    if (current > latest) {
      throw new PlmError(
        "ERR_STORE_SCHEMA_TOO_NEW",
        `Cannot open ${this.#path} as its schema version ${current} is newer than ${latest}`,
      );
    }
  }
}

/**
 * Opens (creating if needed) a SQLite database and migrates it to the latest
 * schema. File databases use `journal_mode = WAL`; every connection gets
 * `synchronous` (NORMAL by default), `busy_timeout` (5000 ms by default) and
 * `foreign_keys = ON`. Each pending migration runs in its own
 * `BEGIN IMMEDIATE` transaction, so several processes may open the same new
 * file at once.
 *
 * With `readOnly: true` it opens an existing file for reading only: it never
 * creates, writes or migrates it, and refuses a schema other than the latest
 * (`ERR_STORE_SCHEMA_TOO_OLD`, `ERR_STORE_SCHEMA_TOO_NEW`). Use it for
 * commands that only read, such as verifying an archived audit log. SQLite
 * may still create the `-wal` and `-shm` files of a WAL database next to it
 * when the folder is writable.
 *
 * @param path A file path, or `":memory:"` for a private in-memory database.
 * @param options Pragmas, migrations, clock and read-only mode.
 * @returns The open database; close it when done.
 * @throws {TypeError} When `path` is empty, an option is malformed, or `readOnly` is asked of `":memory:"`.
 * @throws {RangeError} When `busyTimeoutMs` is negative or not an integer.
 * @throws {PlmError} `ERR_STORE_SCHEMA_TOO_NEW` when the database is newer than the code,
 * `ERR_STORE_MIGRATION_FAILED` when a migration fails (it is rolled back),
 * `ERR_STORE_NOT_FOUND` when a read-only file (or a new file's folder) is missing,
 * `ERR_STORE_SCHEMA_TOO_OLD` when a read-only file is older than the code,
 * `ERR_STORE_CORRUPT` for a file that is not a SQLite database, corrupt or truncated,
 * `ERR_STORE_READ_ONLY` when a write meets a read-only file, folder or connection,
 * `ERR_STORE_BUSY` when a lock is held past the busy timeout,
 * `ERR_PERMISSION` when Deno or the system refuses access to the file.
 *
 * @example Open an in-memory database
 * ```ts
 * import { openDatabase } from "./database.ts";
 * import { MIGRATIONS } from "./migrations.ts";
 * import assert from "node:assert/strict";
 *
 * const db = openDatabase(":memory:", { busyTimeoutMs: 1000 });
 * assert.equal(db.schemaVersion, MIGRATIONS.length);
 * db.close();
 * ```
 *
 * @example Read a file without changing it
 * ```ts
 * import { isPlmError } from "@tracepulse/plm-engine-core/control-plane";
 * import { openDatabase } from "./database.ts";
 * import assert from "node:assert/strict";
 *
 * const path = `${await Deno.makeTempDir()}/plm.db`;
 * assert.throws(() => openDatabase(path, { readOnly: true }), (err) => isPlmError(err, "ERR_STORE_NOT_FOUND"));
 * openDatabase(path).close(); // creates and migrates it
 * using db = openDatabase(path, { readOnly: true });
 * assert.throws(() => db.exec("DELETE FROM audit_log"), (err) => isPlmError(err, "ERR_STORE_READ_ONLY"));
 * ```
 */
export function openDatabase(path: string, options?: DatabaseOptions): Database {
  return new Database(path, options);
}

class PreparedStatement<Row extends object> implements Statement<Row> {
  #stmt: StatementSync;

  constructor(stmt: StatementSync) {
    this.#stmt = stmt;
  }

  get sql(): string {
    return this.#stmt.sourceSQL;
  }

  run(...params: SqlParameter[]): SqlRunResult {
    try {
      return this.#stmt.run(...(params as [SqlNamedParameters]));
    } catch (err) {
      throw translateError(err);
    }
  }

  get(...params: SqlParameter[]): Row | undefined {
    try {
      return this.#stmt.get(...(params as [SqlNamedParameters])) as Row | undefined;
    } catch (err) {
      throw translateError(err);
    }
  }

  all(...params: SqlParameter[]): Row[] {
    try {
      return this.#stmt.all(...(params as [SqlNamedParameters])) as Row[];
    } catch (err) {
      throw translateError(err);
    }
  }

  iterate(...params: SqlParameter[]): IterableIterator<Row> {
    try {
      return this.#stmt.iterate(...(params as [SqlNamedParameters])) as IterableIterator<Row>;
    } catch (err) {
      throw translateError(err);
    }
  }
}

function validateMigrations(migrations: readonly Migration[]): void {
  if (!Array.isArray(migrations)) throw new TypeError("Cannot use migrations that are not a list");
  migrations.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new RangeError(
        `Cannot use migration ${String(migration.version)} at position ${index + 1}`,
      );
    }
    if (typeof migration.name !== "string" || migration.name === "") {
      throw new TypeError(`Cannot use migration ${migration.version} without a name`);
    }
    if (typeof migration.sql !== "string" || migration.sql.trim() === "") {
      throw new TypeError(`Cannot use migration ${migration.version} without SQL`);
    }
  });
}

function checkSync<T>(value: T): T {
  if (
    (typeof value === "object" || typeof value === "function") && value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  ) {
    throw new TypeError("Cannot run an async function in a transaction");
  }
  return value;
}

type ConnectOptions = ConstructorParameters<typeof DatabaseSync>[1];

function connect(path: string, options: ConnectOptions): DatabaseSync {
  try {
    return new DatabaseSync(path, options);
  } catch (err) {
    throw translateError(err, path);
  }
}

/**
 * Opens `path` read-only. SQLite reads a WAL database through a `-shm` index
 * next to it, which it must create when it is missing; in a folder this
 * process cannot write, that fails. With no `-wal` file there either, no
 * connection can be writing (a WAL writer needs one, and could not create it
 * in that folder) and every committed page is in the main file, so it is then
 * safe to read the file as immutable (no locks, no `-shm`).
 */
function openReadOnly(path: string, timeout: number): DatabaseSync {
  const options: ConnectOptions = { readOnly: true, timeout, enableForeignKeyConstraints: true };
  const db = connect(path, options);
  try {
    db.exec(`PRAGMA busy_timeout = ${timeout}`); // node:sqlite ignores a timeout of 0
    db.prepare("SELECT count(*) FROM sqlite_schema").get(); // the first read opens the WAL index
    return db;
  } catch (err) {
    db.close();
    if (sqliteCode(err) !== SQLITE_READONLY) throw translateError(err, path);
    const immutable = statFile(`${path}-wal`) === undefined
      ? openImmutable(path, options)
      : undefined;
    if (immutable !== undefined) return immutable;
    throw new PlmError(
      "ERR_STORE_READ_ONLY",
      `Cannot read ${path} as SQLite cannot create its -shm index in a folder this process cannot write (with no -wal file and every Deno permission, -A, it is read as immutable; else copy it to a writable folder)`,
      { cause: err },
    );
  }
}

/** Opens `path` as an immutable file, or returns `undefined` when that fails. */
function openImmutable(path: string, options: ConnectOptions): DatabaseSync | undefined {
  const url = new URL("file:///");
  url.pathname = Deno.realPathSync(path).replaceAll("\\", "/");
  let db: DatabaseSync | undefined;
  try {
    // node:sqlite in Deno passes a file: URI through only with every permission (-A).
    db = new DatabaseSync(`${url.href}?immutable=1`, options);
    db.prepare("SELECT count(*) FROM sqlite_schema").get();
    return db;
  } catch {
    db?.close();
    return undefined;
  }
}

/**
 * Refuses, before SQLite opens `path`, a file that is missing (read-only
 * opens never create one; nor is a folder created) or truncated: a header
 * that counts more pages than the file holds. A live WAL database (one with
 * a `-wal` file) is left to SQLite, as a checkpoint may be growing its file.
 */
function checkFile(path: string, readOnly: boolean): void {
  const info = statFile(path);
  if (info === undefined) {
    if (readOnly) {
      throw new PlmError("ERR_STORE_NOT_FOUND", `Cannot open ${path} as it does not exist`);
    }
    const folder = path.replace(/[^/\\]*$/, "") || ".";
    if (statFile(folder) === undefined) {
      throw new PlmError(
        "ERR_STORE_NOT_FOUND",
        `Cannot create ${path} as its folder ${folder} does not exist`,
      );
    }
    return;
  }
  if (!info.isFile || info.size === 0 || statFile(`${path}-wal`) !== undefined) return;
  const header = new Uint8Array(100);
  let read: number | null;
  try {
    using file = Deno.openSync(path, { read: true });
    read = file.readSync(header);
  } catch (err) {
    throw translateError(err, path);
  }
  if (read !== 100 || new TextDecoder().decode(header.subarray(0, 16)) !== SQLITE_MAGIC) return;
  const view = new DataView(header.buffer);
  const pageSize = view.getUint16(16) === 1 ? 65_536 : view.getUint16(16);
  const pages = view.getUint32(28);
  // The header's page count is valid only when the version-valid-for number matches the change counter.
  const valid = pages > 0 && view.getUint32(92) === view.getUint32(24);
  if (valid && info.size < pages * pageSize) {
    throw new PlmError(
      "ERR_STORE_CORRUPT",
      `Cannot open ${path} as it is truncated: its header counts ${pages} pages of ${pageSize} bytes, the file holds ${info.size} bytes`,
    );
  }
}

/** The file's info, or `undefined` when it does not exist. */
function statFile(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw translateError(err, path);
  }
}

/** The primary SQLite result code of a `node:sqlite` error, from its code or its message. */
function sqliteCode(err: unknown): number | undefined {
  if (!(err instanceof Error)) return undefined;
  const { errcode } = err as SqliteError;
  if (typeof errcode === "number") return errcode & 0xff;
  const message = err.message;
  if (/^database (table )?is locked/.test(message)) return SQLITE_BUSY;
  if (message.startsWith("attempt to write a readonly database")) return SQLITE_READONLY;
  if (message.startsWith("database disk image is malformed")) return SQLITE_CORRUPT;
  if (message.startsWith("file is not a database")) return SQLITE_NOTADB;
  if (message.startsWith("unable to open database file")) return SQLITE_CANTOPEN;
  return undefined;
}

/**
 * Turns what `node:sqlite` and Deno throw into a {@link PlmError} with a
 * stable code where there is one; other errors are returned as they are.
 */
function translateError(err: unknown, path = "the database"): unknown {
  if (!(err instanceof Error) || err instanceof PlmError) return err;
  if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
    return new PlmError("ERR_PERMISSION", `Cannot open ${path}: ${err.message}`, { cause: err });
  }
  switch (sqliteCode(err)) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return new PlmError(
        "ERR_STORE_BUSY",
        `Cannot use ${path} as another connection held a lock on it past the busy timeout`,
        { cause: err },
      );
    case SQLITE_READONLY:
      return new PlmError(
        "ERR_STORE_READ_ONLY",
        `Cannot write to ${path} as it is read-only (opened so, or its file or folder is): ${err.message}`,
        { cause: err },
      );
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return new PlmError(
        "ERR_STORE_CORRUPT",
        `Cannot read ${path} as it is corrupt or not a SQLite database: ${err.message}`,
        { cause: err },
      );
    case SQLITE_CANTOPEN:
      return new PlmError(
        "ERR_PERMISSION",
        `Cannot open ${path} as the process may not read or write it or its folder: ${err.message}`,
        { cause: err },
      );
  }
  const match = CODE_PATTERN.exec(err.message);
  if (match === null) return err;
  const code = match[1] as ErrorCode;
  if (!ERROR_CODES.includes(code)) return err;
  return new PlmError(code, match[2] ?? "", { cause: err });
}
