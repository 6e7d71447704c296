import assert from "node:assert/strict";
import { POSTGRES_URL, postgresTest } from "../_postgres.ts";

postgresTest("each test gets a schema of its own, dropped after it", async ({ client, schema }) => {
  const { rows } = await client.query<{ search_path: string }>("SHOW search_path");
  assert.equal(rows[0]?.search_path, schema);
  await client.query("CREATE TABLE probe (id int PRIMARY KEY)");
  await client.query("INSERT INTO probe VALUES (1)");
  const where = await client.query<{ schema: string }>(
    "SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'probe'",
  );
  assert.ok(where.rows.some((row) => row.schema === schema), "created in the test's schema");
});

Deno.test("the PostgreSQL suite runs in CI", () => {
  // .ci/run exports PLM_TEST_POSTGRES_URL; a CI run without it would silently skip the suite.
  if (Deno.env.get("CI") === "true") assert.notEqual(POSTGRES_URL, undefined);
});
