/**
 * The store conformance suite on the PostgreSQL adapter, each test's store in
 * a schema of its own (dropped when it closes). Registered only when
 * `PLM_TEST_POSTGRES_URL` is set.
 */
import { POSTGRES_URL } from "../_postgres.ts";
import { openTestPostgresStore } from "../_postgres.ts";
import { storeConformance } from "./conformance.ts";

if (POSTGRES_URL !== undefined) storeConformance("postgres", () => openTestPostgresStore());
