// SnippetCollector: the notebook's marked algorithmic code (`@sc`, `%%snip`), one entry per declaration or cell.
import { inspect } from "node:util";
import type { SnippetKind } from "./bundle-analysis";
import { checkpointerNames, declaredNames, hasStatements, parseSource, referencedNames, removeDeclarations, sha256, tidySource } from "./bundle-analysis";
import { dependencyOrder, orderItemFromSource } from "./bundle-order";

export type { SnippetKind } from "./bundle-analysis";

/** One recorded piece of code. */
export interface Snippet {
  /** Top-level names it declares (empty for a `%%snip` cell that only runs statements). */
  readonly names: readonly string[];
  /** The declaration's kind for `@sc`, `"cell"` for `%%snip`. */
  readonly kind: SnippetKind;
  /** Its exact TypeScript, decorators and magic lines removed. */
  readonly source: string;
  /** sha256 (hex) of `source`. */
  readonly hash: string;
  /** The frontend cell a `%%snip` entry came from, when the frontend said. */
  readonly cellId?: string;
}

/** What the magics layer hands to a collector after a cell ran. */
export interface SnippetRecord {
  source: string;
  kind: SnippetKind;
  cellId?: string;
}

// Symbol.for so that collectors made by another copy of this module are still recognised.
const COLLECTOR_BRAND = Symbol.for("nbjob.SnippetCollector");
const RECORD = Symbol.for("nbjob.SnippetCollector.record");

export class SnippetCollector {
  /** Optional name shown in listings and errors, e.g. `new SnippetCollector("geometry")`. */
  readonly label: string | undefined;
  #entries: Snippet[] = [];

  constructor(label?: string) {
    if (label !== undefined && typeof label !== "string") {
      throw new TypeError(`new SnippetCollector(label): label must be a string such as "geometry"; got ${typeof label}`);
    }
    this.label = label;
    Object.defineProperty(this, COLLECTOR_BRAND, { value: true });
  }

  /** Whether `value` is a collector (also one made by another copy of nbjob). */
  static isCollector(value: unknown): value is SnippetCollector {
    return typeof value === "object" && value !== null && (value as { [COLLECTOR_BRAND]?: unknown })[COLLECTOR_BRAND] === true;
  }

  /** The recorded entries, in the order they were first recorded. */
  get snippets(): readonly Snippet[] {
    return this.#entries.map((e) => Object.freeze({ ...e, names: Object.freeze([...e.names]) }));
  }

  /** Every name any entry declares. */
  get names(): string[] {
    return this.#entries.flatMap((e) => e.names);
  }

  /** The entries as one program, each after the declarations it uses. */
  get source(): string {
    const order = dependencyOrder(this.#entries.map((e) => orderItemFromSource(e.source)));
    return order.map((i) => this.#entries[i].source).join("\n\n") + (this.#entries.length > 0 ? "\n" : "");
  }

  /**
   * Removes the declaration of `name`. An `@sc` entry goes whole; a `%%snip` cell loses that
   * declaration only, unless it declares nothing else: then its statements go with it (they were
   * there for what it declared, and no name could remove them later). Refused when the rest of
   * the cell still uses the name (a reference, or `jobtracker.registerCheckpointer("name")`):
   * every job would fail there.
   */
  remove(name: string): void {
    const at = this.#entries.findIndex((e) => e.names.includes(name));
    if (at < 0) {
      const known = this.names;
      throw new Error(`${this.describe()} has no snippet declaring "${name}"; it declares ${known.length === 0 ? "nothing yet" : known.join(", ")}`);
    }
    const entry = this.#entries[at];
    const source = removeDeclarations(entry.source, new Set([name]));
    const sf = parseSource(source);
    const names = declaredNames(sf);
    if (names.length > 0) {
      const use = referencedNames(sf).has(name) ? "uses it"
        : checkpointerNames(sf).some((c) => c.name === name) ? `registers it with jobtracker.registerCheckpointer("${name}")` : undefined;
      if (use) {
        throw new Error(`${this.describe()} cannot remove "${name}" alone: the %%snip cell that declares it also ${use}, so every job would fail there. `
          + `Remove the cell's other names too (${names.join(", ")}), or edit the cell and run it again (the new version replaces this one)`);
      }
    }
    this.#entries.splice(at, 1, ...(names.length > 0 ? [{ ...entry, source, hash: sha256(source), names }] : []));
  }

  /** Forgets every entry. */
  clear(): void {
    this.#entries = [];
  }

  /**
   * Records code that just ran successfully. A `%%snip` cell replaces what the same cell
   * recorded before (same frontend cell id, or else the same names or the same text); any entry
   * declaring a name again loses that declaration. Used by the magics layer.
   */
  [RECORD](record: SnippetRecord): void {
    const source = tidySource(record.source);
    const names = declaredNames(parseSource(source));
    const entry: Snippet = { names, kind: record.kind, source, hash: sha256(source), ...(record.cellId !== undefined ? { cellId: record.cellId } : {}) };
    const sameCell = (old: Snippet): boolean => {
      if (old.hash === entry.hash) return true;
      if (entry.kind !== "cell" || old.kind !== "cell") return false;
      if (entry.cellId !== undefined && old.cellId !== undefined) return entry.cellId === old.cellId;
      return names.some((n) => old.names.includes(n));
    };
    // The new entry takes the place of the first entry it replaces whole (the same cell, or one
    // whose every declaration is defined again), so re-running cells does not reorder listings.
    const next: Snippet[] = [];
    let placed = false;
    const place = (): void => { if (!placed) next.push(entry); placed = true; };
    for (const old of this.#entries) {
      if (sameCell(old)) { place(); continue; }
      const rest = this.#withoutNames(new Set(names), [old]);
      if (rest.length === 0) place();
      next.push(...rest);
    }
    if (!placed) next.push(entry);
    this.#entries = next;
  }

  #withoutNames(names: ReadonlySet<string>, entries: readonly Snippet[]): Snippet[] {
    const out: Snippet[] = [];
    for (const e of entries) {
      if (!e.names.some((n) => names.has(n))) { out.push(e); continue; }
      const source = removeDeclarations(e.source, names);
      if (!hasStatements(source)) continue;
      out.push({ ...e, source, hash: sha256(source), names: declaredNames(parseSource(source)) });
    }
    return out;
  }

  /** `sc` or `SnippetCollector "geometry"`, for messages. */
  describe(): string {
    return this.label === undefined ? "this SnippetCollector" : `SnippetCollector "${this.label}"`;
  }

  [inspect.custom](): string {
    const title = this.label === undefined ? "SnippetCollector" : `SnippetCollector "${this.label}"`;
    if (this.#entries.length === 0) return `${title} (empty)`;
    const lines = this.#entries.map((e) => `  ${e.kind.padEnd(9)} ${e.names.length > 0 ? e.names.join(", ") : "(statements)"}`);
    return `${title} (${this.#entries.length} snippet${this.#entries.length === 1 ? "" : "s"})\n${lines.join("\n")}`;
  }
}

/** Records ran code into a collector (works across copies of this module). */
export function recordSnippet(collector: SnippetCollector, record: SnippetRecord): void {
  (collector as unknown as { [RECORD](r: SnippetRecord): void })[RECORD](record);
}
