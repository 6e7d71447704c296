/**
 * The SQLite adapter of the store port (`../port.ts`): {@link openSqliteStore}.
 * Its repositories hold the SQL of the tables of `../migrations.ts` and map
 * their rows; the rules live beside the services.
 *
 * @example Open an in-memory store
 * ```ts
 * import { openSqliteStore } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * await using store = await openSqliteStore(":memory:");
 * assert.equal(store.kind, "sqlite");
 * assert.equal(await store.read((tx) => tx.audit.pendingCount()), 0);
 * ```
 *
 * @module
 */
export { openSqliteStore, type SqliteStoreOptions } from "./sqlite_store.ts";
