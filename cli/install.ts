// `nbjob install`: registers this checkout as the Jupyter kernel "nbjob" (or, with --worker, the
// worker kernel "nbjob-worker" that a Jupyter Server starts for Client.connect({ gateway })).
import { parseCommandArgs, UsageError, type Command } from "./args";
import { installKernelSpec, KERNEL_NAME, WORKER_KERNEL_NAME, type InstallTarget } from "../kernel/kernelspec";

const usage = `usage: nbjob install [--worker] [--user | --sys-prefix | --prefix DIR]

Writes the Jupyter kernelspec "${KERNEL_NAME}" (TypeScript (nbjob)) pointing at this checkout.
  --worker      write "${WORKER_KERNEL_NAME}" (nbjob worker) instead: the job worker, for a Jupyter
                Server or Kernel/Enterprise Gateway that Client.connect({ gateway }) asks to start
                workers. The workers find the store through the server's environment
                (NBJOB_DATABASE_URL; nothing of it is written into kernel.json)
  --user        into Jupyter's user data dir (the default; honours JUPYTER_DATA_DIR)
  --sys-prefix  into <prefix>/share/jupyter/kernels of the active virtualenv/conda env, else /usr
  --prefix DIR  into DIR/share/jupyter/kernels`;

export const command: Command = {
  summary: "install the Jupyter kernelspec \"nbjob\" (or \"nbjob-worker\" with --worker)",
  usage,
  async run(argv) {
    const { values } = parseCommandArgs({
      args: argv,
      options: { worker: { type: "boolean" }, user: { type: "boolean" }, "sys-prefix": { type: "boolean" }, prefix: { type: "string" } },
      allowPositionals: false,
    }, usage);
    const chosen = [values.user, values["sys-prefix"], values.prefix !== undefined].filter(Boolean).length;
    if (chosen > 1) throw new UsageError("choose one of --user, --sys-prefix and --prefix DIR");
    if (values.prefix === "") throw new UsageError("--prefix needs a directory, e.g. --prefix /opt/jupyter");
    const target: InstallTarget = values.prefix !== undefined ? { kind: "prefix", dir: values.prefix }
      : values["sys-prefix"] ? { kind: "sys-prefix" } : { kind: "user" };
    const kind = values.worker ? "worker" : "notebook";
    const dir = installKernelSpec(target, process.env, kind);
    console.log(`Installed kernelspec ${kind === "worker" ? WORKER_KERNEL_NAME : KERNEL_NAME} in ${dir}`);
    if (kind === "worker" && !process.env.NBJOB_DATABASE_URL) {
      console.log("Workers started from it use the store named by NBJOB_DATABASE_URL in the Jupyter Server's environment (else the embedded server of that machine's NBJOB_HOME): start the server with the same NBJOB_DATABASE_URL as the notebook.");
    }
    return 0;
  },
};
