// Process helpers shared by the tests that start and stop real processes.
import { readFileSync } from "node:fs";

/**
 * Whether a process with this pid exists and has not exited (signal 0 checks without sending
 * anything; on Linux an exited process its parent has not reaped yet, a zombie, counts as gone).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // The state follows the command name, which may hold spaces: "pid (name) S ...".
    return readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /s, "")[0] !== "Z";
  } catch {
    return true;
  }
}
