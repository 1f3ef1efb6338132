// The `nbjob` command: one module per command group, loaded only when used so that a quick
// command (or the kernel's start-up) does not pay for the others.
import { UsageError, type Command } from "./args";

const COMMANDS: Record<string, () => Command> = {
  install: () => require("./install").command,
  kernel: () => require("./kernel").command,
  run: () => require("./run").command,
  cluster: () => require("./cluster").command,
  worker: () => require("./worker").command,
  jobs: () => require("./jobs").jobsCommand,
  show: () => require("./jobs").showCommand,
  logs: () => require("./jobs").logsCommand,
  metrics: () => require("./metrics").metricsCommand,
  diff: () => require("./jobs").diffCommand,
  log: () => require("./jobs").logCommand,
  history: () => require("./jobs").historyCommand,
  cancel: () => require("./jobs").cancelCommand,
  rerun: () => require("./jobs").rerunCommand,
  group: () => require("./group").groupCommand,
  rm: () => require("./rm").rmCommand,
  gc: () => require("./rm").gcCommand,
  tag: () => require("./rm").tagCommand,
  export: () => require("./export").command,
  db: () => require("./db").command,
  dashboard: () => require("./dashboard").command,
};

function loadCommand(name: string): Command | undefined {
  const load = COMMANDS[name];
  if (!load) return undefined;
  try {
    return load();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && String((err as Error).message).includes(`cli`)) return undefined;
    throw err;
  }
}

function topLevelHelp(): string {
  const lines = ["usage: nbjob <command> [options]   (nbjob <command> --help for details)", "", "commands:"];
  for (const name of Object.keys(COMMANDS)) {
    const command = loadCommand(name);
    if (command && name !== "kernel") lines.push(`  ${name.padEnd(10)} ${command.summary}`);
  }
  return lines.join("\n");
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  let code = 0;
  try {
    if (!name || name === "--help" || name === "-h" || name === "help") {
      console.log(topLevelHelp());
    } else if (name === "--version") {
      // The compiler's version without loading it (runtime/typescript-loader reads its file's head).
      const { compilerVersion } = require("../runtime/typescript-loader") as typeof import("../runtime/typescript-loader");
      console.log(`${require("../../package.json").version} (TypeScript ${compilerVersion() ?? "unknown"}, Node ${process.versions.node})`);
    } else {
      const command = loadCommand(name);
      if (!command) throw new UsageError(`unknown command "${name}"; run "nbjob --help" for the list`);
      if (rest.includes("--help") || rest.includes("-h")) console.log(`${command.summary}\n\n${command.usage}`);
      else code = await command.run(rest);
    }
  } catch (err) {
    code = 2;
    if (process.env.NBJOB_DEBUG === "1") console.error(err);
    else console.error(`nbjob: ${(err as Error).message}`);
  }
  process.exitCode = code;
}
