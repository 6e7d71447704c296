/** A second process that decides an approval: `deno run -A _approve_worker.ts DB ID SUBJECT DIGEST NOW`. */
import { ApprovalService, AuditLog, openDatabase } from "../../control_plane/mod.ts";
import { FakeClock, isPlmError } from "../../shared/mod.ts";

const [path, id, subject, digest, now] = Deno.args;
const clock = new FakeClock(Number(now));
const db = openDatabase(path!);
const approvals = new ApprovalService(db, { audit: new AuditLog(db, { clock }), clock });
try {
  const after = approvals.decide(id!, "approve", {
    identity: { subject: subject!, actorKind: "human", roles: ["lead"], scopes: [] },
    digest: digest!,
  });
  console.log(`ok ${after.state}`);
} catch (err) {
  console.log(isPlmError(err) ? err.code : String(err));
} finally {
  db.close();
}
