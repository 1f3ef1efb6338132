// `nbjob kernel --connection-file F`: what the kernelspec runs; Jupyter starts it, not users.
import { parseCommandArgs, UsageError, type Command } from "./args";

const usage = `usage: nbjob kernel --connection-file FILE

Runs the notebook kernel on the sockets FILE names (Jupyter passes it via the kernelspec).`;

export const command: Command = {
  summary: "run the notebook kernel (started by Jupyter)",
  usage,
  async run(argv) {
    const { values } = parseCommandArgs({ args: argv, options: { "connection-file": { type: "string", short: "f" } } }, usage);
    const file = values["connection-file"];
    if (!file) throw new UsageError(`--connection-file is required: the kernel-*.json that Jupyter writes\n${usage}`);
    const { startKernel } = await import("../kernel/main");
    await startKernel(file);
    return 0;
  },
};
