// The TypeScript compiler API (ts-morph's bundled TypeScript 6), loaded on first use: importing
// nbjob stays fast (about a second and 60 MB less) for programs that never parse snippet code.
import type * as TsMorph from "ts-morph";

let loaded: typeof TsMorph | undefined;

export function tsMorph(): typeof TsMorph {
  loaded ??= require("ts-morph") as typeof TsMorph;
  return loaded;
}

export function typescript(): typeof TsMorph.ts {
  return tsMorph().ts;
}
