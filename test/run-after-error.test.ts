// The cell after a failing cell is run and shows its own output, however fast the client sends
// it: a headless run (`nbjob run --allow-errors`) once came back with a cell that had no output at
// all, because the kernel took a cell sent in the same millisecond as the failure's reply for one
// queued behind the failure (Run All) and refused it without output. Sixty failing cells in a row
// made that happen several times per run before the fix.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { kernelTestEnv } from "./kernel-helpers";

const NBJOB = join(resolve(__dirname, "..", ".."), "bin", "nbjob.js");
const kernels = kernelTestEnv();
after(() => kernels.cleanup());

test("after each failing cell, the next cell runs and shows its error (100 failing cells, 2 runs)", { timeout: 120_000 }, async () => {
  const cells = Array.from({ length: 100 }, (_, i) => ({
    cell_type: "code", id: `c${i}`, metadata: {}, source: `throw new Error("failure ${i}")`, outputs: [], execution_count: null,
  }));
  const notebook = join(kernels.dir, "failing.ipynb");
  writeFileSync(notebook, JSON.stringify({
    nbformat: 4, nbformat_minor: 5, cells,
    metadata: { kernelspec: { name: "nbjob", display_name: "TypeScript (nbjob)", language: "typescript" } },
  }));
  for (let run = 0; run < 2; run++) {
    const out = join(kernels.dir, `failing-${run}.ipynb`);
    await new Promise<void>((resolvePromise, reject) => {
      execFile(process.execPath, [NBJOB, "run", notebook, "-o", out, "--allow-errors"], { env: kernels.env, timeout: 100_000 }, (err, _stdout, stderr) =>
        err ? reject(new Error(`nbjob run failed: ${err.message}\n${stderr}`)) : resolvePromise());
    });
    const executed = JSON.parse(readFileSync(out, "utf8")) as { cells: { id: string; execution_count: number; outputs: { output_type: string; evalue?: string }[] }[] };
    const wrong = executed.cells.filter((cell, i) => cell.outputs.length !== 1 || cell.outputs[0].evalue !== `failure ${i}` || cell.execution_count !== i + 1);
    assert.deepEqual(wrong.map((cell) => cell.id), [], `run ${run + 1}: cells without their own error: ${JSON.stringify(wrong.slice(0, 3))}`);
  }
});
