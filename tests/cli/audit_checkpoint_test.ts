import assert from "node:assert/strict";
import { main } from "../../cli.ts";
import { fakeIo } from "./_fake_io.ts";
import { seed, tamper, withTempDir } from "./_audit_db.ts";

/** Runs `plm` in-process and returns the exit code and what it printed. */
async function plm(...args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const io = fakeIo();
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

/** A key pair and a database of `n` records in `dir`. */
async function setUp(dir: string, n: number): Promise<{ db: string; key: string; pub: string }> {
  const db = `${dir}/plm.db`;
  await seed(db, n);
  const key = `${dir}/signer.pem`;
  const pub = `${dir}/signer.pub.pem`;
  const { code } = await plm("audit", "keygen", "--out-private", key, "--out-public", pub);
  assert.equal(code, 0);
  return { db, key, pub };
}

Deno.test("plm audit keygen writes a PEM pair, the private key 0600, and never overwrites", async (t) => {
  await withTempDir(async (dir) => {
    const key = `${dir}/k.pem`;
    const pub = `${dir}/k.pub`;
    await t.step("a new pair", async () => {
      const { code, out } = await plm("audit", "keygen", "--out-private", key, "--out-public", pub);
      assert.equal(code, 0);
      assert.match(out[0] ?? "", /^key id [0-9a-f]{16}$/);
      assert.match(Deno.readTextFileSync(key), /^-----BEGIN PRIVATE KEY-----\n/);
      assert.match(Deno.readTextFileSync(pub), /^-----BEGIN PUBLIC KEY-----\n/);
      assert.equal(Deno.statSync(key).mode! & 0o777, 0o600);
    });
    await t.step("an existing private key file is kept as it is", async () => {
      const before = Deno.readTextFileSync(key);
      const other = `${dir}/other.pub`;
      const { code, err } = await plm(
        "audit",
        "keygen",
        "--out-private",
        key,
        "--out-public",
        other,
      );
      assert.equal(code, 1);
      assert.match(err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --out-private /);
      assert.equal(Deno.readTextFileSync(key), before);
      assert.throws(() => Deno.statSync(other), Deno.errors.NotFound);
    });
    await t.step("an existing public key file: no private half is left behind", async () => {
      const fresh = `${dir}/fresh.pem`;
      const { code, err } = await plm(
        "audit",
        "keygen",
        "--out-private",
        fresh,
        "--out-public",
        pub,
      );
      assert.equal(code, 1);
      assert.match(err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --out-public /);
      assert.throws(() => Deno.statSync(fresh), Deno.errors.NotFound);
    });
  });
});

Deno.test("plm audit checkpoint signs the head, read-only, to stdout or a new file", async () => {
  await withTempDir(async (dir) => {
    const { db, key, pub } = await setUp(dir, 5);
    const bytes = Deno.readFileSync(db);
    const printed = await plm("audit", "checkpoint", "--key", key, "--db", db);
    assert.equal(printed.code, 0);
    const checkpoint = JSON.parse(printed.out[0] ?? "");
    const head = await plm("audit", "head", "--db", db);
    assert.equal(`${checkpoint.seq}:${checkpoint.hash}`, head.out[0]);
    assert.deepEqual(Deno.readFileSync(db), bytes);

    const file = `${dir}/c.json`;
    const written = await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", file);
    assert.deepEqual([written.code, written.out], [0, [
      `checkpoint of record 5 written to ${file}`,
    ]]);
    assert.equal(JSON.parse(Deno.readTextFileSync(file)).hash, checkpoint.hash);
    const again = await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", file);
    assert.equal(again.code, 1);
    assert.match(again.err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --out /);

    const verified = await plm(
      "audit",
      "verify",
      "--db",
      db,
      "--checkpoint",
      file,
      "--public-key",
      pub,
    );
    assert.equal(verified.code, 0);
    assert.equal(verified.out[0], "5 records valid");
    assert.match(
      verified.out[1] ?? "",
      new RegExp(`^checkpoint ${file} holds: record 5, signed by `),
    );

    const publicAsKey = await plm("audit", "checkpoint", "--key", pub, "--db", db);
    assert.equal(publicAsKey.code, 1);
    assert.match(publicAsKey.err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --key /);
  });
});

Deno.test("plm audit verify --checkpoint refuses a bad signature or an unknown key first", async (t) => {
  await withTempDir(async (dir) => {
    const { db, key, pub } = await setUp(dir, 3);
    const file = `${dir}/c.json`;
    assert.equal(
      (await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", file)).code,
      0,
    );
    const checkpoint = JSON.parse(Deno.readTextFileSync(file));

    await t.step("a tampered seq", async () => {
      const forged = `${dir}/forged.json`;
      Deno.writeTextFileSync(forged, JSON.stringify({ ...checkpoint, seq: 2 }));
      const { code, out, err } = await plm(
        "audit",
        "verify",
        "--db",
        db,
        "--checkpoint",
        forged,
        "--public-key",
        pub,
      );
      assert.deepEqual([code, out], [1, []]);
      assert.match(err[0] ?? "", /^error: ERR_CHECKPOINT_INVALID: .*forged\.json: bad_signature/);
    });
    await t.step("another signer's public key", async () => {
      const other = `${dir}/other.pub`;
      await plm("audit", "keygen", "--out-private", `${dir}/other.pem`, "--out-public", other);
      const { code, err } = await plm(
        "audit",
        "verify",
        "--db",
        db,
        "--checkpoint",
        file,
        "--public-key",
        other,
      );
      assert.equal(code, 1);
      assert.match(err[0] ?? "", /^error: ERR_CHECKPOINT_INVALID: .*unknown_key/);
    });
    await t.step("a file that is no checkpoint", async () => {
      const junk = `${dir}/junk.json`;
      Deno.writeTextFileSync(junk, JSON.stringify({ ...checkpoint, extra: 1 }));
      const { code, err } = await plm(
        "audit",
        "verify",
        "--db",
        db,
        "--checkpoint",
        junk,
        "--public-key",
        pub,
      );
      assert.equal(code, 1);
      assert.match(err[0] ?? "", /^error: ERR_INVALID_ARGUMENT: Invalid --checkpoint .*junk\.json/);
    });
  });
});

/** Copies a database file (closed, so the WAL is folded in). */
function copy(from: string, to: string): string {
  Deno.copyFileSync(from, to);
  return to;
}

/** Runs tools/verify_audit.ts on an export of `db`; returns the exit code and stdout. */
async function outsideCheck(dir: string, db: string, ...args: string[]): Promise<[number, string]> {
  const exported = await plm("audit", "export", "--db", db);
  const file = `${dir}/export.jsonl`;
  Deno.writeTextFileSync(file, exported.out.join("\n") + "\n");
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "tools/verify_audit.ts", file, ...args],
    stdout: "piped",
  }).output();
  return [output.code, new TextDecoder().decode(output.stdout).trim()];
}

Deno.test("plm audit verify and tools/verify_audit.ts catch truncation and rewrites behind checkpoints", async (t) => {
  await withTempDir(async (dir) => {
    const { db, key, pub } = await setUp(dir, 4);
    const early = `${dir}/early.json`;
    const late = `${dir}/late.json`;
    assert.equal(
      (await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", early)).code,
      0,
    );
    await seed(db, 4); // the log grows to 8 records
    assert.equal(
      (await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", late)).code,
      0,
    );
    const checkpoints = ["--checkpoint", early, "--checkpoint", late, "--public-key", pub];
    const verify = (path: string) => plm("audit", "verify", "--db", path, ...checkpoints);

    await t.step("the intact log holds both checkpoints", async () => {
      const { code, out } = await verify(db);
      assert.deepEqual([code, out.length, out[0]], [0, 3, "8 records valid"]);
      assert.deepEqual(await outsideCheck(dir, db, ...checkpoints), [0, "8 records valid"]);
    });
    await t.step("truncated before the later checkpoint", async () => {
      const truncated = copy(db, `${dir}/truncated.db`);
      tamper(truncated, "DELETE FROM audit_log WHERE seq > 6");
      assert.equal((await plm("audit", "verify", "--db", truncated)).code, 0);
      const { code, out } = await verify(truncated);
      assert.equal(code, 1);
      assert.equal(out[0], "6 records valid");
      assert.match(out[1] ?? "", /^record 7 invalid: truncated: .*\(--checkpoint .*late\.json\)$/);
      assert.deepEqual(await outsideCheck(dir, truncated, ...checkpoints), [
        1,
        "6 records valid\nrecord 7 invalid: truncated",
      ]);
    });
    await t.step("rewritten after the early checkpoint, every hash recomputed", async () => {
      const rewritten = copy(db, `${dir}/rewritten.db`);
      tamper(rewritten, "DELETE FROM audit_log WHERE seq > 5");
      await seed(rewritten, 3); // other records 6..8, chained afresh
      assert.equal((await plm("audit", "verify", "--db", rewritten)).code, 0);
      const { code, out } = await verify(rewritten);
      assert.equal(code, 1);
      assert.match(
        out[1] ?? "",
        /^record 8 invalid: head_mismatch: .*\(--checkpoint .*late\.json\)$/,
      );
      assert.deepEqual(await outsideCheck(dir, rewritten, ...checkpoints), [
        1,
        "8 records valid\nrecord 8 invalid: head_mismatch",
      ]);
    });
    await t.step("a forged record behind the early checkpoint", async () => {
      const forged = copy(db, `${dir}/forged.db`);
      tamper(forged, "UPDATE audit_log SET outcome = 'failed' WHERE seq = 2");
      const { code, out } = await verify(forged);
      assert.equal(code, 1);
      assert.match(out[1] ?? "", /^record 2 invalid: hash_mismatch: /);
    });
    await t.step("the outside check refuses a forged checkpoint", async () => {
      const forgedCheckpoint = `${dir}/forged.json`;
      const signed = JSON.parse(Deno.readTextFileSync(late));
      Deno.writeTextFileSync(forgedCheckpoint, JSON.stringify({ ...signed, seq: 7 }));
      const [code, out] = await outsideCheck(
        dir,
        db,
        "--checkpoint",
        forgedCheckpoint,
        "--public-key",
        pub,
      );
      assert.deepEqual([code, out], [1, `checkpoint ${forgedCheckpoint} invalid: bad signature`]);
    });
  });
});

Deno.test("plm audit checkpoint, keygen and verify --checkpoint report usage errors with exit 2", async (t) => {
  const cases: Record<string, string[]> = {
    "checkpoint without --key": ["audit", "checkpoint"],
    "--key on verify": ["audit", "verify", "--key", "k.pem"],
    "--checkpoint without --public-key": ["audit", "verify", "--checkpoint", "c.json"],
    "--public-key without --checkpoint": ["audit", "verify", "--public-key", "k.pub"],
    "--checkpoint on head": ["audit", "head", "--checkpoint", "c.json", "--public-key", "k.pub"],
    "--out on keygen": ["audit", "keygen", "--out", "x"],
    "keygen without --out-public": ["audit", "keygen", "--out-private", "k.pem"],
    "keygen with one file twice": ["audit", "keygen", "--out-private", "k", "--out-public", "k"],
  };
  for (const [name, args] of Object.entries(cases)) {
    await t.step(name, async () => {
      const { code, err } = await plm(...args);
      assert.equal(code, 2);
      assert.match(err.join("\n"), /^error: .+[\s\S]*USAGE:[\s\S]*plm audit checkpoint --key FILE/);
    });
  }
});

Deno.test("plm audit checkpoint signs nothing when the chain does not verify", async () => {
  await withTempDir(async (dir) => {
    const { db, key } = await setUp(dir, 5);
    tamper(db, "UPDATE audit_log SET outcome = 'forged' WHERE seq = 3");
    const out = `${dir}/c.json`;
    const refused = await plm("audit", "checkpoint", "--key", key, "--db", db, "--out", out);
    assert.equal(refused.code, 1);
    assert.match(refused.out[0] ?? "", /^record 3 invalid: hash_mismatch/);
    assert.equal(
      await Deno.stat(out).then(() => true, () => false),
      false,
      "no checkpoint written",
    );
  });
});

Deno.test("plm audit checkpoint refuses a private key that group or others may read", async () => {
  await withTempDir(async (dir) => {
    const { db, key } = await setUp(dir, 2);
    await Deno.chmod(key, 0o644);
    const refused = await plm("audit", "checkpoint", "--key", key, "--db", db);
    assert.equal(refused.code, 1);
    assert.match(refused.err[0] ?? "", /^error: ERR_PERMISSION: Invalid --key .*mode 644/);
    await Deno.chmod(key, 0o600);
    assert.equal((await plm("audit", "checkpoint", "--key", key, "--db", db)).code, 0);
  });
});
