#!/usr/bin/env node
// Entry point for `npx nbjob ...` and the kernelspec's argv; the code lives in dist/ (built by `npm ci`).
require("../dist/cli/index.js").main(process.argv.slice(2));
