/** The service scenarios of `services_on_store.ts` on SQLite, in memory and on a file. */
import { openStore } from "../../control_plane/mod.ts";
import { servicesOnStore } from "./services_on_store.ts";

servicesOnStore("sqlite :memory:", () => openStore(":memory:"));

servicesOnStore("sqlite file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "plm_services_test_" });
  const store = await openStore(`${dir}/plm.db`);
  const close = async () => {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  };
  return {
    ...store,
    close,
    [Symbol.asyncDispose]: close,
    transaction: store.transaction.bind(store),
    read: store.read.bind(store),
    lead: store.lead.bind(store),
    onWake: store.onWake.bind(store),
    schemaVersion: store.schemaVersion.bind(store),
  };
});
