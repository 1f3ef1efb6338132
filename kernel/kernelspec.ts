// The Jupyter kernelspec "nbjob": where Jupyter looks for it and what it contains. Written by
// `nbjob install` in TypeScript, so installing the kernel needs no Python.
import { mkdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";

export const KERNEL_NAME = "nbjob";
export const DISPLAY_NAME = "TypeScript (nbjob)";
/** The worker kernel's spec, so a Jupyter Server (or Kernel/Enterprise Gateway) can start workers. */
export const WORKER_KERNEL_NAME = "nbjob-worker";
export const WORKER_DISPLAY_NAME = "nbjob worker";

/** Which kernel a kernelspec starts: the notebook kernel or a job worker. */
export type KernelKind = "notebook" | "worker";

/** Which of Jupyter's data directories receives the kernelspec. */
export type InstallTarget = { kind: "user" } | { kind: "sys-prefix" } | { kind: "prefix"; dir: string };

/** Jupyter's per-user data directory, as jupyter_core computes it (JUPYTER_DATA_DIR wins). */
export function userDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.JUPYTER_DATA_DIR) return resolve(env.JUPYTER_DATA_DIR);
  if (process.platform === "darwin") return join(homedir(), "Library", "Jupyter");
  if (process.platform === "win32") return join(env.APPDATA ?? join(homedir(), "AppData", "Roaming"), "jupyter");
  return join(env.XDG_DATA_HOME || join(homedir(), ".local", "share"), "jupyter");
}

/**
 * The environment's prefix without asking Python: an active virtualenv or conda environment,
 * otherwise /usr, which is sys.prefix of the distribution's python3 (Debian's Jupyter).
 */
export function sysPrefix(env: NodeJS.ProcessEnv = process.env): string {
  return env.VIRTUAL_ENV || env.CONDA_PREFIX || "/usr";
}

export function kernelsDir(target: InstallTarget, env: NodeJS.ProcessEnv = process.env): string {
  switch (target.kind) {
    case "user": return join(userDataDir(env), "kernels");
    case "sys-prefix": return join(sysPrefix(env), "share", "jupyter", "kernels");
    case "prefix": return join(resolve(target.dir), "share", "jupyter", "kernels");
  }
}

export interface KernelSpec {
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode: "message" | "signal";
  env?: Record<string, string>;
  metadata: Record<string, unknown>;
}

/**
 * The kernelspec for this checkout: node and bin/nbjob.js by absolute path, so no PATH is needed.
 * The worker's spec carries no `env`: the worker finds the store through the environment of
 * whoever starts it (NBJOB_DATABASE_URL), so no database password is ever written to kernel.json.
 */
export function kernelSpec(kind: KernelKind = "notebook"): KernelSpec {
  // Compiled to dist/kernel/kernelspec.js; the entry point is <checkout>/bin/nbjob.js.
  const entry = resolve(__dirname, "..", "..", "bin", "nbjob.js");
  return {
    argv: [process.execPath, entry, kind === "worker" ? "worker" : "kernel", "--connection-file", "{connection_file}"],
    display_name: kind === "worker" ? WORKER_DISPLAY_NAME : DISPLAY_NAME,
    language: "typescript",
    // A worker answers interrupt_request with an error instead of dying of SIGINT (it cancels jobs over its comm).
    interrupt_mode: "message",
    // Each type-checked cell builds a new TypeScript program. V8's compiler and GC threads then
    // allocate in malloc arenas of their own, which glibc rarely gives back: a kernel grew by
    // ~0.35 MiB a cell (470 MiB after 450 cells, 87 MiB of them live). One arena keeps it near
    // 200 MiB, at no measured cost per cell. Only this setting: no credentials in kernel.json.
    ...(kind === "notebook" ? { env: { MALLOC_ARENA_MAX: "1" } } : {}),
    metadata: { file_extension: ".ts" },
  };
}

/** The kernelspec's directory name for `kind`. */
export function kernelName(kind: KernelKind = "notebook"): string {
  return kind === "worker" ? WORKER_KERNEL_NAME : KERNEL_NAME;
}

const LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">
<rect width="64" height="64" rx="8" fill="#3178c6"/>
<text x="32" y="42" font-family="sans-serif" font-size="24" font-weight="bold" fill="#fff" text-anchor="middle">nbj</text>
</svg>
`;

/** Writes kernel.json (and a logo) into `<kernels dir>/nbjob` (or `nbjob-worker`), replacing an earlier install. Returns that directory. */
export function installKernelSpec(target: InstallTarget, env: NodeJS.ProcessEnv = process.env, kind: KernelKind = "notebook"): string {
  const dir = join(kernelsDir(target, env), kernelName(kind));
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "kernel.json"), JSON.stringify(kernelSpec(kind), null, 2) + "\n");
    writeFileSync(join(dir, "logo-svg.svg"), LOGO_SVG);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = code === "EACCES" || code === "EPERM" ? "; use --user, or run with permission to write there" : "";
    throw new Error(`cannot write the kernelspec to ${dir}: ${code ?? (err as Error).message}${hint}`, { cause: err });
  }
  return dir;
}
