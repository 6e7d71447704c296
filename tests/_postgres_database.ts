/**
 * A PostgreSQL database of a test's own, for tests that hand a `postgres://`
 * URL to a command or another process (which cannot be told a schema).
 *
 * @module
 */
// @ts-types="@types/pg"
import pg from "pg";

/**
 * Creates a fresh database on the server of `url`, runs `fn` with its URL
 * (carrying `password`, which a trust-auth server ignores, so a test can check
 * that it is never printed), and drops the database after, whatever happened.
 *
 * @param url The server, as `PLM_TEST_POSTGRES_URL` gives it.
 * @param fn What to do with the new database's URL.
 * @param password The password to put in the URL.
 */
export async function withPostgresDatabase(
  url: string,
  fn: (location: string) => Promise<void>,
  password = "pw-never-printed",
): Promise<void> {
  const database = `plm_test_${crypto.randomUUID().replaceAll("-", "")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${database}`);
    try {
      const location = new URL(url);
      location.pathname = `/${database}`;
      location.password = password;
      if (location.username === "") location.username = "postgres";
      await fn(location.href);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    }
  } finally {
    await admin.end();
  }
}
