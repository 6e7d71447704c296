/**
 * The SQLite store on `node:sqlite`: {@link openDatabase} opens a file (WAL,
 * busy timeout, foreign keys) or `":memory:"` and applies the forward-only
 * {@link MIGRATIONS}; {@link Database.transaction} runs `BEGIN IMMEDIATE`
 * transactions that nest as savepoints.
 *
 * @example Open, migrate and write in a transaction
 * ```ts
 * import { openDatabase } from "@tracepulse/plm-engine-core/control-plane";
 * import assert from "node:assert/strict";
 *
 * using db = openDatabase(":memory:");
 * assert.ok(db.schemaVersion >= 1);
 * db.exec("CREATE TABLE t (x INTEGER) STRICT");
 * db.transaction(() => db.prepare("INSERT INTO t VALUES (?)").run(42));
 * assert.equal(db.prepare<{ x: number }>("SELECT x FROM t").get()?.x, 42);
 * ```
 *
 * @module
 */
export * from "./database.ts";
export * from "./migrations.ts";
