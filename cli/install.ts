// `nbjob install`: registers this checkout as the Jupyter kernel "nbjob".
import { parseCommandArgs, UsageError, type Command } from "./index";
import { installKernelSpec, KERNEL_NAME, type InstallTarget } from "../kernel/kernelspec";

const usage = `usage: nbjob install [--user | --sys-prefix | --prefix DIR]

Writes the Jupyter kernelspec "${KERNEL_NAME}" (TypeScript (nbjob)) pointing at this checkout.
  --user        into Jupyter's user data dir (the default; honours JUPYTER_DATA_DIR)
  --sys-prefix  into <prefix>/share/jupyter/kernels of the active virtualenv/conda env, else /usr
  --prefix DIR  into DIR/share/jupyter/kernels`;

export const command: Command = {
  summary: "install the Jupyter kernelspec \"nbjob\"",
  usage,
  async run(argv) {
    const { values } = parseCommandArgs({
      args: argv,
      options: { user: { type: "boolean" }, "sys-prefix": { type: "boolean" }, prefix: { type: "string" } },
      allowPositionals: false,
    }, usage);
    const chosen = [values.user, values["sys-prefix"], values.prefix !== undefined].filter(Boolean).length;
    if (chosen > 1) throw new UsageError("choose one of --user, --sys-prefix and --prefix DIR");
    if (values.prefix === "") throw new UsageError("--prefix needs a directory, e.g. --prefix /opt/jupyter");
    const target: InstallTarget = values.prefix !== undefined ? { kind: "prefix", dir: values.prefix }
      : values["sys-prefix"] ? { kind: "sys-prefix" } : { kind: "user" };
    const dir = installKernelSpec(target);
    console.log(`Installed kernelspec ${KERNEL_NAME} in ${dir}`);
    return 0;
  },
};
