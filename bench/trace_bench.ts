// extractTraceContext() side by side with OpenTelemetry's W3CTraceContextPropagator.extract()
// on the same Headers. Run: deno bench -A bench/trace_bench.ts
import { ROOT_CONTEXT, type TextMapGetter, type TextMapSetter, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { extractTraceContext, injectTraceContext } from "../control_plane/trace/mod.ts";

const TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
const TRACESTATE_8 = Array.from({ length: 8 }, (_, i) => `vendor${i}=value-${i}-t61rcWkgMzE`)
  .join(",");

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => [...carrier.keys()],
  get: (carrier, key) => carrier.get(key) ?? undefined,
};
const setter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => carrier.set(key, value),
};
const propagator = new W3CTraceContextPropagator();

const cases = [
  ["traceparent only", new Headers({ traceparent: TRACEPARENT })],
  [
    "traceparent + tracestate (2 members)",
    new Headers({ traceparent: TRACEPARENT, tracestate: TRACESTATE }),
  ],
  [
    "traceparent + tracestate (8 members)",
    new Headers({ traceparent: TRACEPARENT, tracestate: TRACESTATE_8 }),
  ],
  ["invalid traceparent", new Headers({ traceparent: TRACEPARENT.toUpperCase() })],
] as const;

// Both sides must read the same thing before their speed means anything.
for (const [name, headers] of cases) {
  const ours = extractTraceContext(headers);
  const theirs = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, headers, getter));
  if (ours?.traceId !== theirs?.traceId || ours?.spanId !== theirs?.spanId) {
    throw new Error(`Cannot compare on "${name}": the two extractors disagree`);
  }
}

// And must pass on the same tracestate.
{
  const [ours, theirs] = [new Headers(), new Headers()];
  const [, , [, headers8]] = cases;
  injectTraceContext(extractTraceContext(headers8)!, ours);
  propagator.inject(propagator.extract(ROOT_CONTEXT, headers8, getter), theirs, setter);
  if (ours.get("tracestate") !== theirs.get("tracestate")) {
    throw new Error(
      "Cannot compare extract + inject: the two propagators send different tracestate",
    );
  }
}

let sink: unknown;

// Steady state, as in a server that has seen every shape: warm both extractors on all cases
// first. Without this, a group measures whichever tier (interpreter, Maglev, TurboFan) the
// JIT has reached after the previous groups reshaped the feedback, and the order of the groups
// decides the result.
for (let round = 0; round < 20_000; round++) {
  for (const [, headers] of cases) {
    sink = extractTraceContext(headers);
    sink = propagator.extract(ROOT_CONTEXT, headers, getter);
  }
}

for (const [name, headers] of cases) {
  Deno.bench({
    name: "@opentelemetry/core W3CTraceContextPropagator.extract",
    group: name,
    baseline: true,
    fn() {
      sink = propagator.extract(ROOT_CONTEXT, headers, getter);
    },
  });
  Deno.bench({
    name: "extractTraceContext",
    group: name,
    fn() {
      sink = extractTraceContext(headers);
    },
  });
}

// Both keep tracestate as a string until a member is read (we validate the whole header on
// arrival, as the spec asks; OTel does not). Reading one member makes both build their lists.
const [, , [name8, headers8]] = cases;
Deno.bench({
  name: "@opentelemetry/core extract + read one tracestate member",
  group: `${name8}, tracestate read`,
  baseline: true,
  fn() {
    sink = trace.getSpanContext(propagator.extract(ROOT_CONTEXT, headers8, getter))?.traceState
      ?.get("vendor7");
  },
});
Deno.bench({
  name: "extractTraceContext + read one tracestate member",
  group: `${name8}, tracestate read`,
  fn() {
    sink = extractTraceContext(headers8)?.traceState.get("vendor7");
  },
});

// Passing the context on: extract, then inject into the outgoing request. Both must check
// (us) or parse (OTel) the tracestate here, as neither may send an invalid one.
Deno.bench({
  name: "@opentelemetry/core extract + inject",
  group: `${name8}, extract + inject`,
  baseline: true,
  fn() {
    const outgoing = new Headers();
    propagator.inject(propagator.extract(ROOT_CONTEXT, headers8, getter), outgoing, setter);
    sink = outgoing;
  },
});
Deno.bench({
  name: "extractTraceContext + injectTraceContext",
  group: `${name8}, extract + inject`,
  fn() {
    const outgoing = new Headers();
    injectTraceContext(extractTraceContext(headers8)!, outgoing);
    sink = outgoing;
  },
});

globalThis.addEventListener("unload", () => {
  if (sink === Symbol.for("never")) console.log(sink);
});
