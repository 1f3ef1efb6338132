// Whether the npm registry can be reached from here: the tests of packages that travel with a
// bundle install real packages from it, and skip with a line saying so when it cannot be.
import { execFileSync } from "node:child_process";

/** True when `npm view SPEC` answers within 30 s. */
export function npmRegistryHas(spec: string): boolean {
  try {
    execFileSync("npm", ["view", spec, "version"], { stdio: "pipe", timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}
