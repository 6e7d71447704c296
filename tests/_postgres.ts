/**
 * PostgreSQL for tests: the suite runs against it whenever
 * `PLM_TEST_POSTGRES_URL` is set (`.ci/run` sets it, and fails when the server
 * cannot be reached). Each test works in a schema of its own, made for it and
 * dropped after it, so tests in parallel never see each other's tables.
 */
// @ts-types="@types/pg"
import pg from "pg";
import type { Store } from "../control_plane/store/port.ts";
import {
  openPostgresStore,
  type PostgresStoreOptions,
} from "../control_plane/store/postgres/mod.ts";

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

/** Options of {@link openTestPostgresStore}: those of `openPostgresStore` but `schema`. */
export type TestPostgresStoreOptions = Omit<PostgresStoreOptions, "schema"> & {
  /** Reuse this schema (another store's) instead of making a fresh one. */
  readonly schema?: string;
};

/** A store in a schema of its own, and that schema's name. */
export interface TestPostgresStore extends Store {
  /** The schema the store works in (dropped when the store that made it closes). */
  readonly schema: string;
}

/** A fresh schema name for a test. */
export function freshSchema(): string {
  return `plm_test_${crypto.randomUUID().replaceAll("-", "")}`;
}

/**
 * Opens a PostgreSQL store on {@link POSTGRES_URL} in a fresh schema, dropped
 * when the store closes; with `options.schema`, a second store in that schema
 * (which it does not drop). Only call it when `POSTGRES_URL` is set.
 */
export async function openTestPostgresStore(
  options: TestPostgresStoreOptions = {},
): Promise<TestPostgresStore> {
  const url = POSTGRES_URL;
  if (url === undefined) throw new Error("PLM_TEST_POSTGRES_URL is not set");
  const owned = options.schema === undefined;
  const schema = options.schema ?? freshSchema();
  const store = await openPostgresStore(url, { ...options, schema });
  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      await store.close();
      if (!owned) return;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      } finally {
        await admin.end();
      }
    })();
  return {
    schema,
    kind: store.kind,
    location: store.location,
    readOnly: store.readOnly,
    transaction: (fn) => store.transaction(fn),
    read: (fn) => store.read(fn),
    lead: (role, fn) => store.lead(role, fn),
    onWake: (listener) => store.onWake(listener),
    schemaVersion: () => store.schemaVersion(),
    close,
    [Symbol.asyncDispose]: close,
  };
}
