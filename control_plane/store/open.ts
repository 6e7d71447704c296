/**
 * One way to open a store of any engine: {@link openStore}.
 *
 * @module
 */
import type { Clock } from "../../shared/mod.ts";
import { checkText, invalidArgument } from "../../shared/validate.ts";
import type { SynchronousMode } from "./database.ts";
import type { Migration } from "./migrations.ts";
import type { Store } from "./port.ts";
import { openSqliteStore, type SqliteStoreOptions } from "./sqlite/mod.ts";

/** Options for {@link openStore}; engine-specific ones are refused by the other engine. */
export interface OpenStoreOptions {
  /**
   * Open for reading only: never create, write or migrate; every write fails
   * with `ERR_STORE_READ_ONLY`.
   *
   * @default {false}
   */
  readOnly?: boolean;
  /**
   * The clock that stamps applied migrations.
   *
   * @default {systemClock}
   */
  clock?: Clock;
  /**
   * SQLite only: `PRAGMA synchronous` (`"normal"` or `"full"`).
   *
   * @default {"normal"}
   */
  synchronous?: SynchronousMode;
  /**
   * SQLite only: how long to wait for another process's write lock, in milliseconds.
   *
   * @default {5000}
   */
  busyTimeoutMs?: number;
  /**
   * SQLite only: the migrations to apply, for tests of upgrades.
   *
   * @default {MIGRATIONS}
   */
  migrations?: readonly Migration[];
  /**
   * PostgreSQL only: the schema to use (created when missing), for tests.
   *
   * @default {"public"}
   */
  schema?: string;
  /**
   * PostgreSQL only: how many connections the pool holds at most.
   *
   * @default {10}
   */
  poolSize?: number;
}

const SQLITE_ONLY = ["synchronous", "busyTimeoutMs", "migrations"] as const;
const POSTGRES_ONLY = ["schema", "poolSize"] as const;
/** A URL scheme at the start of a location (two letters at least, so `C:\` stays a path). */
const SCHEME = /^([a-z][a-z0-9+.-]+):/i;
const POSTGRES = /^postgres(ql)?:\/\//i;
/** The longest location accepted, in UTF-16 code units. */
const LOCATION_LENGTH = 4_096;

/**
 * Opens the store at `location`: a SQLite file (created and migrated when
 * missing, WAL), `":memory:"` (a private SQLite database, gone when closed),
 * or a PostgreSQL database by its `postgres://` or `postgresql://` URL. Close
 * it when done, or hold it with `await using`. Open one SQLite store per
 * file per process and share it: its transactions take turns in one queue,
 * and those of other processes through the file's lock.
 *
 * @param location A file path, `":memory:"`, or a `postgres://` URL.
 * @param options Read-only mode, clock, and the engine's own options.
 * @returns The open store.
 * @throws {PlmError} `ERR_INVALID_ARGUMENT` naming `location` when it is not a non-empty text
 * without U+0000, or is a URL of another scheme (`mysql://`, `http://`, `file:`); as the
 * engine's open: `ERR_STORE_SCHEMA_TOO_NEW`, `ERR_STORE_SCHEMA_TOO_OLD`,
 * `ERR_STORE_MIGRATION_FAILED`, `ERR_STORE_NOT_FOUND`, `ERR_STORE_CORRUPT`,
 * `ERR_STORE_READ_ONLY`, `ERR_STORE_BUSY`, `ERR_PERMISSION`.
 * @throws {TypeError} When an option is malformed or belongs to the other engine.
 * @throws {RangeError} When a numeric option is out of range.
 *
 * @example Open an in-memory store and write in a transaction
 * ```ts
 * import { openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await using store = await openStore(":memory:");
 * assert.equal(store.kind, "sqlite");
 * await store.transaction(async (tx) => {
 *   await tx.governance.insertStart("agent-1", 1_000);
 *   tx.wake("runs");
 * });
 * const starts = await store.read((tx) => tx.governance.countStarts("agent-1", 0));
 * assert.equal(starts, 1);
 * ```
 *
 * @example Refuse a location that is no store
 * ```ts
 * import { isPlmError, openStore } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * await assert.rejects(
 *   openStore("mysql://db.example/plm"),
 *   (err) => isPlmError(err, "ERR_INVALID_ARGUMENT") && /location/.test(err.message),
 * );
 * ```
 */
export async function openStore(location: string, options: OpenStoreOptions = {}): Promise<Store> {
  checkText("location", location, LOCATION_LENGTH);
  if (location === "") throw invalidArgument("location", "expected a file path, not an empty text");
  if (typeof options !== "object" || options === null) {
    throw new TypeError("Cannot use options that are not an object");
  }
  if (POSTGRES.test(location)) {
    refuseOptions(options, SQLITE_ONLY, "PostgreSQL");
    throw invalidArgument(
      "location",
      "PostgreSQL stores are not available in this build (its adapter is not wired yet)",
    );
  }
  const scheme = SCHEME.exec(location)?.[1];
  if (scheme !== undefined) {
    throw invalidArgument(
      "location",
      `expected a file path, ":memory:" or a postgres:// URL, not a ${scheme.toLowerCase()}: URL`,
    );
  }
  refuseOptions(options, POSTGRES_ONLY, "SQLite");
  const { readOnly, clock, synchronous, busyTimeoutMs, migrations } = options;
  const sqlite: SqliteStoreOptions = {
    ...(readOnly === undefined ? {} : { readOnly }),
    ...(clock === undefined ? {} : { clock }),
    ...(synchronous === undefined ? {} : { synchronous }),
    ...(busyTimeoutMs === undefined ? {} : { busyTimeoutMs }),
    ...(migrations === undefined ? {} : { migrations }),
  };
  return await openSqliteStore(location, sqlite);
}

function refuseOptions(
  options: OpenStoreOptions,
  names: readonly (keyof OpenStoreOptions)[],
  engine: string,
): void {
  for (const name of names) {
    if (options[name] !== undefined) {
      throw new TypeError(`Cannot use the option ${name} with a ${engine} store`);
    }
  }
}
