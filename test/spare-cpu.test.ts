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

// Another kernel's cells, as a process busy 30 ms then resting 10 ms: on a 2-core machine it
// leaves one core and a quarter free on average, less than the warm-up waits for. A reading that
// spanned only a few ticks saw a rest as a free core (the warm-up then ran between the cells).
test("short pauses of a busy neighbour are not a spare core", { skip: (!existsSync("/proc/stat") && "needs Linux's /proc/stat") || (cpus().length !== 2 && "the neighbour below fills a 2-core machine's share") }, async () => {
  const neighbour = spawn(process.execPath, ["-e", "for (;;) { const until = Date.now() + 30; while (Date.now() < until); const rest = Date.now() + 10; while (Date.now() < rest) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10); }"], { stdio: "ignore" });
  try {
    await sleep(200);
    const spare = new SpareCpu();
    const answers: boolean[] = [];
    for (const until = Date.now() + 2000; Date.now() < until; await sleep(5)) answers.push(spare.hasSpareCore());
    assert.ok(answers.length > 100, `asked ${answers.length} times`);
    assert.equal(answers.filter(Boolean).length, 0, "a spare core was seen between the neighbour's busy stretches");
  } finally {
    neighbour.kill("SIGKILL");
  }
});
