// Debian's jupyter_kernel_test (the Jupyter project's kernel conformance suite) against nbjob:
// all twelve tests run with TypeScript samples, none skipped.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { kernelTestEnv, type KernelTestEnv } from "./kernel-helpers";

let env: KernelTestEnv;
before(() => {
  env = kernelTestEnv();
});
after(() => env.cleanup());

const EXPECTED_TESTS = [
  "test_clear_output", "test_completion", "test_display_data", "test_error", "test_execute_result", "test_execute_stderr",
  "test_execute_stdout", "test_history", "test_inspect", "test_is_complete", "test_kernel_info", "test_pager",
];

test("jupyter_kernel_test passes all twelve tests against the nbjob kernelspec", async () => {
  // The .py file is not compiled: it sits beside this file's source, two levels above dist/test.
  const testDir = join(__dirname, "..", "..", "test");
  const { code, output } = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile("/usr/bin/python3", ["-m", "unittest", "-v", "kernel_conformance"], { cwd: testDir, env: { ...env.env, PYTHONDONTWRITEBYTECODE: "1" }, timeout: 180_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, output: stdout + stderr }));
  });
  assert.equal(code, 0, output);
  for (const name of EXPECTED_TESTS) {
    assert.match(output, new RegExp(`^${name} \\(kernel_conformance\\.NbjobKernelTests\\.${name}\\) \\.\\.\\. ok$`, "m"), `${name} did not pass:\n${output}`);
  }
  assert.doesNotMatch(output, /skipped/i, output);
});
