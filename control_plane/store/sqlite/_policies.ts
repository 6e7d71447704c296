/**
 * The SQLite repository of policy versions (migration 7).
 *
 * @module
 */
import type { PolicyRepository, PolicyVersionRow } from "../port.ts";
import { changes, type TxScope } from "./_sql.ts";

const COLUMNS = "version, content, hash, applied_at, applied_by, reason";
const INSERT = `INSERT INTO policy_versions (${COLUMNS})
  VALUES (:version, :content, :hash, :at, :by, :reason) ON CONFLICT (version) DO NOTHING`;
const ACTIVE = `SELECT ${COLUMNS} FROM policy_versions ORDER BY version DESC LIMIT 1`;
const BY_VERSION = `SELECT ${COLUMNS} FROM policy_versions WHERE version = ?`;
const HISTORY = `SELECT ${COLUMNS} FROM policy_versions ORDER BY version DESC LIMIT ?`;

interface Row {
  version: number;
  content: string;
  hash: string;
  applied_at: number;
  applied_by: string;
  reason: string | null;
}

function rowOf(row: Row): PolicyVersionRow {
  return {
    version: row.version,
    content: row.content,
    hash: row.hash,
    appliedAt: row.applied_at,
    appliedBy: row.applied_by,
    reason: row.reason,
  };
}

/** {@link PolicyRepository} on SQLite. */
export class SqlitePolicyRepository implements PolicyRepository {
  readonly #scope: TxScope;

  constructor(scope: TxScope) {
    this.#scope = scope;
  }

  insert(row: PolicyVersionRow): Promise<boolean> {
    const result = this.#scope.use().get(INSERT).run({
      version: row.version,
      content: row.content,
      hash: row.hash,
      at: Math.trunc(row.appliedAt),
      by: row.appliedBy,
      reason: row.reason,
    });
    return Promise.resolve(changes(result) === 1);
  }

  active(): Promise<PolicyVersionRow | undefined> {
    const row = this.#scope.use().get<Row>(ACTIVE).get();
    return Promise.resolve(row === undefined ? undefined : rowOf(row));
  }

  byVersion(version: number): Promise<PolicyVersionRow | undefined> {
    const row = this.#scope.use().get<Row>(BY_VERSION).get(version);
    return Promise.resolve(row === undefined ? undefined : rowOf(row));
  }

  history(limit: number): Promise<PolicyVersionRow[]> {
    const rows = this.#scope.use().get<Row>(HISTORY).all(limit);
    return Promise.resolve(rows.map(rowOf));
  }
}
