import assert from "node:assert/strict";
import { AuditLog } from "../../control_plane/mod.ts";
import { AuditRecordSchema, RunSchema } from "../../server/mod.ts";
import { testApp } from "./_app.ts";

interface SseEvent {
  event: string;
  id?: string;
  data: unknown;
}

/** Reads server-sent events from a stream, `advance` moving the fake timers between reads. */
class SseReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer = "";
  #decoder = new TextDecoder();
  closed = false;

  constructor(body: ReadableStream<Uint8Array>) {
    this.#reader = body.getReader();
  }

  /** The events already complete in what was read, read more until `until` returns true. */
  async read(advance: () => Promise<void>, until: (events: SseEvent[]) => boolean) {
    const events: SseEvent[] = [];
    while (!until(events)) {
      const next = this.#reader.read();
      let done = false;
      next.then(() => done = true, () => done = true);
      while (!done) await advance();
      const { value, done: end } = await next;
      if (end) {
        this.closed = true;
        break;
      }
      this.#buffer += this.#decoder.decode(value, { stream: true });
      let cut;
      while ((cut = this.#buffer.indexOf("\n\n")) >= 0) {
        const block = this.#buffer.slice(0, cut);
        this.#buffer = this.#buffer.slice(cut + 2);
        const event: SseEvent = { event: "message", data: null };
        for (const line of block.split("\n")) {
          const [field, ...rest] = line.split(": ");
          const value = rest.join(": ");
          if (field === "event") event.event = value;
          else if (field === "id") event.id = value;
          else if (field === "data") event.data = JSON.parse(value);
        }
        events.push(event);
      }
    }
    return events;
  }

  cancel(): Promise<void> {
    return this.#reader.cancel();
  }
}

Deno.test("GET /v1/runs/{id}/events as text/event-stream streams the run's records to its end", async () => {
  await using t = await testApp({ eventPollMs: 1000 });
  const alice = await t.token("alice");
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  const res = await t.call("GET", `/v1/runs/${run.id}/events`, {
    token: alice,
    headers: { accept: "text/event-stream" },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/event-stream");
  assert.ok(res.body !== null);
  const sse = new SseReader(res.body);
  const tick = () => t.timers.advance(0);
  const first = await sse.read(tick, (events) => events.length >= 2);
  const seqs = first.map((e) => Number(e.id));
  assert.ok(first.every((e) => e.event === "audit"));
  assert.ok(first.every((e) => AuditRecordSchema.parse(e.data).runId === run.id));

  // The run ends elsewhere; the next poll sends what it wrote, then `end`, then closes.
  const cancelled = await t.call("POST", `/v1/runs/${run.id}/cancel`, { token: alice });
  assert.equal((await cancelled.json()).state, "cancelled");
  const rest = await sse.read(() => t.timers.advance(1000), () => false);
  assert.ok(sse.closed);
  const end = rest.at(-1);
  assert.equal(end?.event, "end");
  assert.equal(RunSchema.parse(end?.data).state, "cancelled");
  const later = rest.slice(0, -1);
  assert.ok(later.some((e) => (e.data as { action: string }).action === "run.cancel"));
  const all = [...seqs, ...later.map((e) => Number(e.id))];
  assert.deepEqual(all, [...all].sort((a, b) => a - b));
  assert.equal(new Set(all).size, all.length);
  // The stream equals the JSON list of the same records.
  const listed = await (await t.call("GET", `/v1/runs/${run.id}/events`, { token: alice })).json();
  assert.deepEqual(listed.items.map((r: { seq: number }) => r.seq), all);
});

Deno.test("a live event stream stops polling when the client goes or the server shuts down", async () => {
  const shutdown = new AbortController();
  await using t = await testApp({ eventPollMs: 1000, signal: shutdown.signal });
  const alice = await t.token("alice");
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  const open = async () => {
    const res = await t.call("GET", `/v1/runs/${run.id}/events`, {
      token: alice,
      headers: { accept: "text/event-stream" },
    });
    assert.ok(res.body !== null);
    const sse = new SseReader(res.body);
    await sse.read(() => t.timers.advance(0), (events) => events.length >= 1);
    return sse;
  };
  const gone = await open();
  assert.equal(t.timers.pending, 1); // its next poll
  await gone.cancel();
  await t.timers.advance(0);
  assert.equal(t.timers.pending, 0);

  const kept = await open();
  shutdown.abort();
  await kept.read(() => t.timers.advance(0), () => false);
  assert.ok(kept.closed);
  assert.equal(t.timers.pending, 0);
});

Deno.test("a stream resumes after Last-Event-ID; a bad one is a 422", async () => {
  await using t = await testApp({ eventPollMs: 1000 });
  const alice = await t.token("alice");
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  await t.call("POST", `/v1/runs/${run.id}/cancel`, { token: alice });
  const listed = await (await t.call("GET", `/v1/runs/${run.id}/events`, { token: alice })).json();
  const seqs: number[] = listed.items.map((r: { seq: number }) => r.seq);
  assert.ok(seqs.length >= 3);
  const res = await t.call("GET", `/v1/runs/${run.id}/events`, {
    token: alice,
    headers: { accept: "text/event-stream", "last-event-id": String(seqs[1]) },
  });
  assert.ok(res.body !== null);
  const events = await new SseReader(res.body).read(() => t.timers.advance(0), () => false);
  assert.deepEqual(
    events.filter((e) => e.event === "audit").map((e) => Number(e.id)),
    seqs.slice(2),
  );
  assert.equal(events.at(-1)?.event, "end");
  const bad = await t.call("GET", `/v1/runs/${run.id}/events`, {
    token: alice,
    headers: { accept: "text/event-stream", "last-event-id": "x" },
  });
  assert.equal(bad.status, 422);
  assert.equal((await bad.json()).field, "last-event-id");
});

Deno.test("a run with more records than one page: the list and the stream give them all", async () => {
  await using t = await testApp({ eventPollMs: 1000 });
  const alice = await t.token("alice");
  const run = await (await t.call("POST", "/v1/runs", {
    token: alice,
    body: { action: "bom.read", resource: "bom:1" },
  })).json();
  const audit = new AuditLog(t.store, { clock: t.clock });
  const notes = Array.from({ length: 1_050 }, (_, i) => ({
    actor: { subject: "alice", kind: "human" as const },
    action: "run.note",
    resource: `run:${run.id}`,
    outcome: `note-${i}`,
    runId: run.id,
  }));
  await audit.appendMany(notes);
  const cancelled = await t.call("POST", `/v1/runs/${run.id}/cancel`, { token: alice });
  assert.equal((await cancelled.json()).state, "cancelled");
  const listed = await (await t.call("GET", `/v1/runs/${run.id}/events`, { token: alice })).json();
  const seqs = listed.items.map((r: { seq: number }) => r.seq);
  assert.ok(seqs.length > 1_050, `${seqs.length} records listed`);
  assert.equal(listed.items.at(-1).action, "run.transition", "the last record is there");
  const res = await t.call("GET", `/v1/runs/${run.id}/events`, {
    token: alice,
    headers: { accept: "text/event-stream" },
  });
  assert.ok(res.body !== null);
  const events = await new SseReader(res.body).read(() => t.timers.advance(0), () => false);
  assert.equal(events.at(-1)?.event, "end");
  assert.deepEqual(events.slice(0, -1).map((e) => Number(e.id)), seqs);
});
