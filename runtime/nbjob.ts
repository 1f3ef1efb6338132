// The `nbjob` global of notebook cells: notebook-wide helpers that are not classes (the dashboard).
import { makeDefaultDashboard } from "./dashboard";

export const nbjob = {
  /** Shows a live table of recent jobs in the cell, updated in place while jobs run. */
  makeDefaultDashboard,
  version: (require("../../package.json") as { version: string }).version,
};
