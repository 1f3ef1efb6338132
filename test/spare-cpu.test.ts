// The kernel's warm-up waits while other processes leave less than a core and a half free
// (kernel/spare-cpu.ts): with every core kept busy by other processes, no core is spare.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cpus } from "node:os";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { SpareCpu } from "../kernel/spare-cpu";

test("no core is spare while other processes keep every core busy", { skip: !existsSync("/proc/stat") && "needs Linux's /proc/stat" }, async () => {
  const spare = new SpareCpu();
  const spinners = cpus().map(() => spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" }));
  try {
    await sleep(300);
    spare.hasSpareCore(); // the reading that spans the spinners' start
    await sleep(500);
    assert.equal(spare.hasSpareCore(), false);
  } finally {
    for (const child of spinners) child.kill("SIGKILL");
  }
});
