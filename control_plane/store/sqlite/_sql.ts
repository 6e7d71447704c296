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
 * One transaction's handle on the connection: the repositories bound to it
 * check, before each statement, that the transaction is still open, so a
 * handle kept past its transaction cannot write into the next one.
 */
export class TxScope {
  readonly sql: StatementCache;
  #open = true;

  constructor(sql: StatementCache) {
    this.sql = sql;
  }

  /** The statement cache, once the transaction is known to be open. */
  use(): StatementCache {
    if (!this.#open) {
      throw new PlmError(
        "ERR_INTERNAL",
        "Cannot use a transaction handle after its transaction ended",
      );
    }
    return this.sql;
  }

  /** Marks the transaction ended. */
  end(): void {
    this.#open = false;
  }
}

/** The number of rows a statement changed, as a number. */
export function changes(result: { changes: number | bigint }): number {
  return Number(result.changes);
}
