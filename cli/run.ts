// `nbjob run`: executes a notebook headless with the nbjob kernel (or another) and writes the
// executed copy, as `jupyter nbconvert --execute --to notebook` does, with papermill-like -p.
import { randomUUID } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { basename, dirname, extname, join, resolve } from "node:path";
import { parseCommandArgs, UsageError, type Command } from "./args";
import { IDENTIFIER, readParametersFile } from "./params-file";
import { launchKernel, type LaunchedKernel } from "../kernel/launcher";
import { KernelLostError, KernelTimeoutError } from "../wire/client";
import { DisplayRegistry, type NotebookOutput } from "../wire/iopub-outputs";
import { KERNEL_NAME } from "../kernel/kernelspec";
import { bindingNames } from "../runtime/bundle-analysis";
import { typescript } from "../runtime/bundle-ts";

const usage = `usage: nbjob run NOTEBOOK.ipynb [-o OUT.ipynb] [-f PARAMS.yaml|json] [-p name=value ...] [--kernel NAME] [--timeout SECONDS] [--allow-errors]

Runs every code cell of NOTEBOOK in a fresh kernel, in order, without a frontend (input() is
not available), and writes the executed notebook to NOTEBOOK.nbconvert.ipynb beside it, or to
OUT.ipynb. The kernel starts in the notebook's directory and is shut down at the end (and on Ctrl-C).
A failing cell stops the run: the notebook is written up to that cell and the exit code is 1.

  -o, --output FILE    where to write the executed notebook (may be NOTEBOOK itself)
  -f, --parameters-file FILE
                       read parameters from a YAML or JSON mapping of name: value (by extension
                       .yaml/.yml/.json, else by content: "{" first means JSON); -p wins over it
  -p, --param N=V      set parameter N to V (repeatable; the last one for a name wins). V is read as JSON when it parses
                       (5, 0.1, true, null, "text", [1,2], {"a":1}); otherwise it is the string V.
                       A cell tagged "injected-parameters" is added with the assignments:
                       - after the cell tagged "parameters" if there is one, else after the
                         first cell that declares \`params\`;
                       - it sets \`params.N = V;\` when \`params\` is declared up to there
                         (a ParamLogger), else \`let N = V;\` (plain variables in the parameters cell);
                       - with neither, it goes first and declares
                         \`const params = new ParamLogger({ N: V, ... });\`
                       A name the cell tagged "parameters" does not declare is warned about on
                       stderr, and set all the same (as papermill does).
  --kernel NAME        kernelspec to use (default "${KERNEL_NAME}": this checkout's kernel, no install needed)
  --timeout SECONDS    fail a cell that runs longer than this (default: no limit)
  --allow-errors       keep going after a failing cell (errors stay in the outputs; exit code 0)`;

/** The parts of an nbformat 4 notebook that running it reads or writes; the rest is kept as is. */
interface NotebookCell {
  cell_type: "code" | "markdown" | "raw";
  id?: string;
  source: string | string[];
  metadata: { tags?: string[]; [key: string]: unknown };
  outputs?: NotebookOutput[];
  execution_count?: number | null;
  [key: string]: unknown;
}

interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: Record<string, unknown>;
  cells: NotebookCell[];
  [key: string]: unknown;
}

export interface Parameter {
  name: string;
  value: unknown;
}

const sourceText = (cell: NotebookCell) => (Array.isArray(cell.source) ? cell.source.join("") : cell.source);
const stripAnsi = (text: string) => text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");

function readNotebook(path: string): Notebook {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read notebook ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; pass the path of an .ipynb file`);
  }
  let notebook: Notebook;
  try {
    notebook = JSON.parse(text) as Notebook;
  } catch (err) {
    throw new UsageError(`notebook ${path} is not JSON (${(err as Error).message}); pass an .ipynb file saved by Jupyter`);
  }
  if (notebook?.nbformat !== 4 || !Array.isArray(notebook.cells)) {
    throw new UsageError(`notebook ${path} is not nbformat 4 (nbformat: ${JSON.stringify(notebook?.nbformat)}); convert it with "jupyter nbconvert --to notebook" first`);
  }
  for (const cell of notebook.cells) cell.metadata ??= {};
  return notebook;
}

/** `name=value`, the value as JSON when it parses, else as a string. */
export function parseParameter(text: string): Parameter {
  const at = text.indexOf("=");
  if (at <= 0) throw new UsageError(`-p ${text}: expected name=value, e.g. -p lr=0.01`);
  const name = text.slice(0, at);
  if (!IDENTIFIER.test(name)) throw new UsageError(`-p ${text}: "${name}" is not a valid TypeScript identifier; use letters, digits, _ and $`);
  const raw = text.slice(at + 1);
  let value: unknown = raw;
  try {
    value = JSON.parse(raw);
  } catch {
    // Not JSON: the value is the text itself, so -p name=Ada needs no quotes.
  }
  return { name, value };
}

/** The file's parameters with -p laid over them, as papermill does: one entry per name, file order first. */
export function mergeParameters(fromFile: Parameter[], fromFlags: Parameter[]): Parameter[] {
  const merged = new Map<string, unknown>();
  for (const { name, value } of [...fromFile, ...fromFlags]) merged.set(name, value);
  return [...merged].map(([name, value]) => ({ name, value }));
}

const declaresParams = (cell: NotebookCell) => cell.cell_type === "code" && /\b(?:const|let|var)\s+params\b/.test(sourceText(cell));
const isParametersCell = (cell: NotebookCell) => cell.metadata.tags?.includes("parameters") ?? false;

/** Where the injected cell goes (after `anchor`; -1: first) and whether it sets `params.N` (see --help). */
function placement(notebook: Notebook): { anchor: number; intoParams: boolean } {
  const cells = notebook.cells;
  let anchor = cells.findIndex(isParametersCell);
  if (anchor < 0) anchor = cells.findIndex(declaresParams);
  return { anchor, intoParams: anchor >= 0 && cells.slice(0, anchor + 1).some(declaresParams) };
}

/**
 * The names a parameters cell declares, read with the TypeScript parser: its top-level variables,
 * or, when the values go into `params`, the `params.N = ...` it sets and the fields of
 * `new ParamLogger({ ... })`.
 */
function declaredParameters(source: string, intoParams: boolean): string[] {
  const ts = typescript();
  const file = ts.createSourceFile("parameters.ts", source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const names: string[] = [];
  for (const statement of file.statements) {
    if (ts.isVariableStatement(statement)) {
      for (const { name, initializer } of statement.declarationList.declarations) {
        if (!intoParams) names.push(...bindingNames(name));
        else if (ts.isIdentifier(name) && name.text === "params" && initializer && ts.isNewExpression(initializer)) {
          const fields = initializer.arguments?.[0];
          if (fields && ts.isObjectLiteralExpression(fields)) {
            for (const field of fields.properties) if (field.name && (ts.isIdentifier(field.name) || ts.isStringLiteral(field.name))) names.push(field.name.text);
          }
        }
      }
    } else if (intoParams && ts.isExpressionStatement(statement) && ts.isBinaryExpression(statement.expression)) {
      const { left, operatorToken } = statement.expression;
      if (operatorToken.kind === ts.SyntaxKind.EqualsToken && ts.isPropertyAccessExpression(left) && ts.isIdentifier(left.expression) && left.expression.text === "params") {
        names.push(left.name.text);
      }
    }
  }
  return [...new Set(names)];
}

/**
 * Names the parameters the cell tagged "parameters" does not declare, as papermill's "Passed
 * unknown parameter" does: a misspelt -p would otherwise set a variable nothing reads. They are
 * still injected (the notebook may read them in a later cell). `origin` says where a name came from.
 */
function warnUnknownParameters(notebook: Notebook, parameters: Parameter[], origin: (name: string) => string): void {
  const { anchor, intoParams } = placement(notebook);
  if (anchor < 0 || !isParametersCell(notebook.cells[anchor])) return;
  const declared = declaredParameters(sourceText(notebook.cells[anchor]), intoParams);
  const unknown = parameters.filter((p) => !declared.includes(p.name)).map((p) => `${p.name} (${origin(p.name)})`);
  if (unknown.length === 0) return;
  const several = unknown.length > 1;
  process.stderr.write(`nbjob run: warning: unknown parameter${several ? "s" : ""} ${unknown.join(", ")}: the cell tagged "parameters" declares ${declared.length === 0 ? "none" : declared.join(", ")}; ${several ? "they are" : "it is"} injected anyway, as papermill does (check the spelling)\n`);
}

/** Adds the injected-parameters cell (see --help for where and what); returns its index. */
export function injectParameters(notebook: Notebook, parameters: Parameter[]): number {
  const cells = notebook.cells;
  const { anchor, intoParams } = placement(notebook);
  let source: string;
  if (anchor < 0) {
    const fields = parameters.map((p) => `${JSON.stringify(p.name)}: ${JSON.stringify(p.value)}`).join(", ");
    source = `const params = new ParamLogger({ ${fields} });`;
  } else if (intoParams) {
    source = parameters.map((p) => `params.${p.name} = ${JSON.stringify(p.value)};`).join("\n");
  } else {
    source = parameters.map((p) => `let ${p.name} = ${JSON.stringify(p.value)};`).join("\n");
  }
  const cell: NotebookCell = {
    cell_type: "code",
    execution_count: null,
    metadata: { tags: ["injected-parameters"] },
    outputs: [],
    source: `// Parameters injected by nbjob run -f/-p\n${source}`,
  };
  // Cell ids exist from nbformat 4.5 on; older notebooks must not get one.
  if (notebook.nbformat_minor >= 5) cell.id = randomUUID().slice(0, 8);
  const at = anchor + 1;
  cells.splice(at, 0, cell);
  return at;
}

function defaultOutputPath(notebookPath: string): string {
  const ext = extname(notebookPath);
  return join(dirname(notebookPath), `${basename(notebookPath, ext)}.nbconvert${ext || ".ipynb"}`);
}

function writeNotebook(path: string, notebook: Notebook): void {
  try {
    // One-space indent, as nbformat writes, so diffs against Jupyter's saves stay small.
    writeFileSync(path, JSON.stringify(notebook, null, 1) + "\n");
  } catch (err) {
    throw new UsageError(`cannot write the executed notebook to ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; choose another path with -o`);
  }
}

/** "cell 3 (`const x = foo()`)": position in the notebook the user gave, and its first line. */
function describeCell(notebook: Notebook, index: number, injectedAt: number): string {
  const cell = notebook.cells[index];
  if (index === injectedAt) return "the injected parameters cell";
  const position = injectedAt >= 0 && index > injectedAt ? index : index + 1;
  const firstLine = sourceText(cell).split("\n").find((line) => line.trim() !== "")?.trim() ?? "";
  const shown = firstLine.length > 60 ? `${firstLine.slice(0, 57)}...` : firstLine;
  return `cell ${position} (\`${shown}\`)`;
}

export const command: Command = {
  summary: "execute a notebook headless and write the executed copy",
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs({
      args: argv,
      options: {
        output: { type: "string", short: "o" },
        "parameters-file": { type: "string", short: "f" },
        param: { type: "string", short: "p", multiple: true },
        kernel: { type: "string" },
        timeout: { type: "string" },
        "allow-errors": { type: "boolean" },
      },
      allowPositionals: true,
    }, usage);
    if (positionals.length !== 1) throw new UsageError(`expected one notebook, got ${positionals.length}; e.g. nbjob run analysis.ipynb`);
    const notebookPath = resolve(positionals[0]);
    const outputPath = values.output ? resolve(values.output) : defaultOutputPath(notebookPath);
    const kernelName = values.kernel ?? KERNEL_NAME;
    let timeoutMs = 0;
    if (values.timeout !== undefined) {
      const secondsValue = Number(values.timeout);
      if (!(secondsValue > 0)) throw new UsageError(`--timeout ${values.timeout}: expected a number of seconds greater than 0`);
      timeoutMs = secondsValue * 1000;
    }
    const parametersFile = values["parameters-file"];
    const fromFile = parametersFile !== undefined ? readParametersFile(parametersFile) : [];
    const fromFlags = (values.param ?? []).map(parseParameter);
    const parameters = mergeParameters(fromFile, fromFlags);
    const notebook = readNotebook(notebookPath);
    let injectedAt = -1;
    if (parameters.length > 0) {
      if (kernelName !== KERNEL_NAME) throw new UsageError(`-p and -f write TypeScript assignments, so it needs the "${KERNEL_NAME}" kernel, not "${kernelName}"`);
      warnUnknownParameters(notebook, parameters, (name) => (fromFlags.some((p) => p.name === name) ? "-p" : `-f ${parametersFile}`));
      injectedAt = injectParameters(notebook, parameters);
    }

    let kernel: LaunchedKernel | undefined;
    let interrupted = false;
    const onSignal = (signal: NodeJS.Signals) => {
      interrupted = true;
      process.stderr.write(`nbjob run: ${signal}; shutting the kernel down\n`);
      void kernel?.shutdown(2_000);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    try {
      try {
        // JPY_SESSION_NAME tells the kernel which notebook it runs, as Jupyter Server does (jobs record it).
        kernel = await launchKernel({ kernelName, cwd: dirname(notebookPath), env: { JPY_SESSION_NAME: notebookPath } });
      } catch (err) {
        if (interrupted) return 130;
        throw new UsageError(`could not start kernel "${kernelName}": ${(err as Error).message}`);
      }
      if (interrupted) {
        await kernel.shutdown(2_000);
        return 130;
      }
      const info = kernel.client.kernelInfo;
      notebook.metadata.kernelspec = { name: kernel.name, display_name: kernel.spec.display_name, language: kernel.spec.language };
      if (info?.language_info) notebook.metadata.language_info = info.language_info;

      const displays = new DisplayRegistry();
      let failure: string | undefined;
      let stoppedAt = notebook.cells.length;
      for (let index = 0; index < notebook.cells.length; index++) {
        const cell = notebook.cells[index];
        if (cell.cell_type !== "code") continue;
        cell.outputs = [];
        cell.execution_count = null;
        // Blank cells are not sent, as nbclient does: they would only use up an execution count.
        if (sourceText(cell).trim() === "") continue;
        let result;
        try {
          // With --allow-errors the kernel must not abort the cells sent after a failing one
          // (ipykernel aborts what arrives just after an error when stop_on_error is set), as nbclient does.
          result = await kernel.client.execute(sourceText(cell), { allowStdin: false, cellId: cell.id, displays, timeoutMs, stopOnError: !values["allow-errors"] });
        } catch (err) {
          if (interrupted) return 130;
          const what = err instanceof KernelTimeoutError ? `did not finish within ${values.timeout} s (--timeout)` : err instanceof KernelLostError ? `lost its kernel: ${(err as Error).message}` : `failed: ${(err as Error).message}`;
          failure = `${describeCell(notebook, index, injectedAt)} ${what}`;
          stoppedAt = index + 1;
          break;
        }
        cell.outputs = result.outputs;
        cell.execution_count = result.executionCount;
        if (!result.complete) {
          // The kernel replied but its idle status never came: say so where the outputs are read.
          const note = `nbjob run: ${describeCell(notebook, index, injectedAt)} replied, but the kernel did not finish sending its output (no idle status); the outputs shown may be incomplete`;
          cell.outputs.push({ output_type: "stream", name: "stderr", text: `[${note}]\n` });
          process.stderr.write(`${note}\n`);
        }
        if (result.status !== "ok" && !values["allow-errors"]) {
          const reply = result.reply.content;
          const traceback = (reply.traceback ?? []).map(stripAnsi).join("\n");
          const headline = result.status === "aborted" ? "was aborted by the kernel" : `failed: ${reply.ename ?? "Error"}: ${reply.evalue ?? ""}`;
          failure = `${describeCell(notebook, index, injectedAt)} ${headline}${traceback ? `\n${traceback}` : ""}`;
          stoppedAt = index + 1;
          break;
        }
      }
      // Cells after a failure did not run in this kernel: their old outputs would mislead.
      for (const cell of notebook.cells.slice(stoppedAt)) {
        if (cell.cell_type !== "code") continue;
        cell.outputs = [];
        cell.execution_count = null;
      }
      await kernel.shutdown();
      if (interrupted) return 130;
      writeNotebook(outputPath, notebook);
      if (failure) {
        process.stderr.write(`nbjob run: ${failure}\n`);
        process.stderr.write(`nbjob run: the notebook, executed up to that cell, was written to ${outputPath}\n`);
        return 1;
      }
      console.log(`executed notebook written to ${outputPath}`);
      return 0;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      await kernel?.shutdown(2_000);
    }
  },
};
