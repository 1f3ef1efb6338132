// The TypeScript compiler API (the `typescript` 6 package) and ts-morph, each loaded on
// first use: importing nbjob stays fast (about a second and 60 MB less) for programs that never
// parse snippet code, and code that only parses (the kernel reading a cell's decorators) loads
// the compiler alone, not ts-morph with @ts-morph/common (its 3 MB of embedded lib files).
import type * as TsMorph from "ts-morph";
import { COMPILER_BUNDLE, loadTypeScript } from "./typescript-loader";

export { COMPILER_BUNDLE };

let loaded: typeof TsMorph | undefined;
let compiler: ReturnType<typeof loadTypeScript> | undefined;

export function tsMorph(): typeof TsMorph {
  typescript(); // first, so that ts-morph finds the compiler already loaded (the same one, with its code cache)
  loaded ??= require("ts-morph") as typeof TsMorph;
  return loaded;
}

export function typescript(): typeof TsMorph.ts {
  compiler ??= loadTypeScript("kernel");
  return compiler.ts;
}

/** Writes the compiler's code cache, once the process has type-checked something (see typescript-loader). */
export function saveCompilerCodeCache(): void {
  compiler?.saveCache();
}
