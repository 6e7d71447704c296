/**
 * A harmless, permanent sandbox for the boundary linter's negative-fixture
 * tests: they copy the tree, add an offending import beside this file, and
 * check that `deno task lint:boundaries` trips. Nothing imports this module.
 *
 * @module
 */
import type { Clock } from "../../shared/mod.ts";

/** A clock frozen at zero; exists only so the fixture has a real import. */
export const frozenClock: Clock = { now: () => 0 };
