/** The service-level concurrency scenarios of `services_on_store.ts`, on PostgreSQL. */
import { openTestPostgresStore, POSTGRES_URL } from "../_postgres.ts";
import { servicesOnStore } from "./services_on_store.ts";

if (POSTGRES_URL !== undefined) servicesOnStore("postgres", () => openTestPostgresStore());
