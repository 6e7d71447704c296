/**
 * What the SQLite repositories share: the statement cache of one connection
 * and the scope of one transaction.
 *
 * @module
 */
import { PlmError } from "../../../shared/mod.ts";
import type { Database, PrepareOptions, SqlRow, Statement } from "../database.ts";

/** Prepares each SQL text once per connection and keeps the statement. */
export class StatementCache {
  readonly #db: Database;
  readonly #statements = new Map<string, Statement<object>>();

  constructor(db: Database) {
    this.#db = db;
  }

  /** The prepared statement of `sql` (with `options`), prepared on first use. */
  get<Row extends object = SqlRow>(sql: string, options: PrepareOptions = {}): Statement<Row> {
    const key = options.returnArrays === true ? `[]${sql}` : sql;
    let stmt = this.#statements.get(key);
    if (stmt === undefined) {
      stmt = this.#db.prepare<Row>(sql, options);
      this.#statements.set(key, stmt);
    }
    return stmt as Statement<Row>;
  }
}

/**
 * One transaction's access to the statements: refused once the transaction
 * ended, and, in a read transaction, refused for any statement that writes
 * (`ERR_STORE_READ_ONLY`). The check is on the statement's first word, which
 * for the adapter's own SQL says whether it writes. It replaces toggling
 * `PRAGMA query_only` around reads, which expired every prepared statement
 * (SQLite expires them on a flag pragma), so each was compiled again.
 */
export class TxScope {
  readonly #sql: StatementCache;
  readonly #writable: boolean;
  #open = true;

  constructor(sql: StatementCache, writable: boolean) {
    this.#sql = sql;
    this.#writable = writable;
  }

  /** The statements of this transaction; throws once it has ended. */
  use(): TxScope {
    if (!this.#open) {
      throw new PlmError(
        "ERR_INTERNAL",
        "Cannot use a transaction handle after its transaction ended",
      );
    }
    return this;
  }

  /** The prepared statement for `sql`, refused when it writes in a read transaction. */
  get<Row extends object = SqlRow>(sql: string, options: PrepareOptions = {}): Statement<Row> {
    if (!this.#writable && WRITES.test(sql)) {
      throw new PlmError(
        "ERR_STORE_READ_ONLY",
        "Cannot write in a read-only transaction (use store.transaction)",
      );
    }
    return this.#sql.get<Row>(sql, options);
  }

  /** Ends the scope: later use throws. */
  end(): void {
    this.#open = false;
  }
}

const WRITES = /^\s*(?:INSERT|UPDATE|DELETE|REPLACE)\b/i;

/** The number of rows a statement changed, as a number. */
export function changes(result: { changes: number | bigint }): number {
  return Number(result.changes);
}
