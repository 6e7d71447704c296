/**
 * PostgreSQL for tests: the suite runs against it whenever
 * `PLM_TEST_POSTGRES_URL` is set (`.ci/run` sets it, and fails when the server
 * cannot be reached). Each test works in a schema of its own, made for it and
 * dropped after it, so tests in parallel never see each other's tables.
 */
// @ts-types="@types/pg"
import pg from "pg";

/** The server tests use, or `undefined` when none is configured. */
export const POSTGRES_URL: string | undefined = Deno.env.get("PLM_TEST_POSTGRES_URL") || undefined;

/** A connection whose `search_path` is the test's own schema. */
export interface PostgresTestContext {
  readonly client: pg.Client;
  readonly schema: string;
}

/**
 * Registers `fn` as a test when a PostgreSQL server is configured; without
 * one, nothing is registered (the SQLite suite always runs).
 */
export function postgresTest(
  name: string,
  fn: (ctx: PostgresTestContext, t: Deno.TestContext) => Promise<void>,
): void {
  if (POSTGRES_URL === undefined) return;
  const url = POSTGRES_URL;
  Deno.test({
    name: `[postgres] ${name}`,
    sanitizeResources: false, // pg keeps its socket until end() settles
    async fn(t) {
      const schema = `plm_test_${crypto.randomUUID().replaceAll("-", "")}`;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      await admin.query(`CREATE SCHEMA ${schema}`);
      const client = new pg.Client({ connectionString: url, options: `-c search_path=${schema}` });
      await client.connect();
      try {
        await fn({ client, schema }, t);
      } finally {
        await client.end();
        await admin.query(`DROP SCHEMA ${schema} CASCADE`);
        await admin.end();
      }
    },
  });
}
