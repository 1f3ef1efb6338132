// The TypeScript compiler API (ts-morph's bundled TypeScript 6) and ts-morph, each loaded on
// first use: importing nbjob stays fast (about a second and 60 MB less) for programs that never
// parse snippet code, and code that only parses (the kernel reading a cell's decorators) loads
// the compiler alone, not ts-morph with @ts-morph/common (its 3 MB of embedded lib files).
import type * as TsMorph from "ts-morph";

/** The module ts-morph itself loads, so a process that uses both has one compiler. */
export const COMPILER_BUNDLE = "@ts-morph/common/dist/typescript.js";

let loaded: typeof TsMorph | undefined;
let compiler: typeof TsMorph.ts | undefined;

export function tsMorph(): typeof TsMorph {
  loaded ??= require("ts-morph") as typeof TsMorph;
  return loaded;
}

export function typescript(): typeof TsMorph.ts {
  compiler ??= require(COMPILER_BUNDLE) as typeof TsMorph.ts;
  return compiler;
}
