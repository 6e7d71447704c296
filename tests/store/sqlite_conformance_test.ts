/**
 * The store conformance suite on the SQLite adapter: in memory, and on files
 * (WAL) in a temporary folder removed when the tests end.
 */
import { openStore } from "../../control_plane/store/open.ts";
import { storeConformance } from "./conformance.ts";

storeConformance("sqlite", () => openStore(":memory:"));

const dir = Deno.makeTempDirSync({ prefix: "plm_store_conformance_" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let files = 0;
storeConformance("sqlite-file", () => openStore(`${dir}/store-${++files}.db`));
