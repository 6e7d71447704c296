import assert from "node:assert/strict";
import { InFlightCounter } from "../../agent_runtime/mod.ts";

Deno.test("InFlightCounter counts per key and refuses to go below zero", () => {
  const counter = new InFlightCounter();
  counter.increment("a");
  counter.increment("a");
  counter.increment("b");
  assert.deepEqual([counter.inFlight("a"), counter.inFlight("b")], [2, 1]);
  counter.decrement("a");
  counter.decrement("b");
  assert.deepEqual([counter.inFlight("a"), counter.inFlight("b")], [1, 0]);
  assert.throws(() => counter.decrement("b"), RangeError);
  assert.equal(counter.inFlight("never"), 0);
});
