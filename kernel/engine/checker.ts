// Type-checks cells with one long-lived TypeScript LanguageService. Earlier cells are kept as
// declarations only (a "prelude" of globals built from each cell's declaration emit, a name
// declared again replacing its earlier entry), so re-checking a new cell stays cheap.
import { isBuiltin } from "node:module";
import { join } from "node:path";
import type { CellAnalysis } from "./cell-analysis";
import { LIB_FOLDER, libFileText, ts } from "./typescript";

export interface CellDiagnostic {
  /** 1-based line and column in the cell's own numbering. */
  line: number;
  column: number;
  code: number;
  message: string;
  syntactic: boolean;
}

export interface CheckResult {
  diagnostics: CellDiagnostic[];
  /** Global declaration texts for each name the cell declares (from its declaration emit). */
  declarations(): Map<string, string[]>;
}

interface PreludeImport {
  specifier: string;
  form: "default" | "namespace" | "named" | "require";
  imported?: string;
  typeOnly: boolean;
}

// "Could not find a declaration file for module": an untyped package is still usable (as any).
const IGNORED_DIAGNOSTICS = new Set([7016]);
const INTERNAL_PREFIX = "__nbjob";
// The compiled package (dist/): its .d.ts files, e.g. the runtime's, are read once.
const PACKAGE_DIST = join(__dirname, "..", "..") + "/";
// nbjob's own declaration files (the runtime's) mention other packages' types in signatures no
// cell uses: the compiler's (1 MB of declarations), @jupyterlab/services' (with yjs, lumino,
// @rjsf/utils: some 250 files). Left unresolved there (errors in .d.ts files are not the
// cell's), they stay out of every cell's program: each program is rebuilt per cell and costs
// time per file, and their syntax trees stay in the heap. Only relative imports, Node's
// modules and pg (whose types DBWrapper's API shows) are followed from the package's files.
// A notebook that imports any of these packages itself still gets their types.
function followedFromPackage(specifier: string): boolean {
  return specifier.startsWith(".") || isBuiltin(specifier) || specifier === "pg";
}

function typeRoots(): string[] {
  // @types/node is a dependency of nbjob itself, so cells get Node's types in any folder.
  try {
    return [join(require.resolve("@types/node/package.json"), "..", "..")];
  } catch {
    return [];
  }
}

export class CellChecker {
  private readonly cellFile: string;
  private readonly preludeFile: string;
  private readonly globalsFile: string;
  private readonly importsFile: string;
  private readonly virtualFiles = new Map<string, { text: string; version: number }>();
  private readonly preludeDeclarations = new Map<string, string[]>();
  private readonly preludeImports = new Map<string, PreludeImport>();
  private options: ts.CompilerOptions = {};
  private projectVersion = 0;
  /** Counts checks, completions and inspections: files on disk are looked at once per generation. */
  private generation = 0;
  // Module resolution probes the file system for every file of every new program (package.json
  // scopes, extensions); the answers are kept until a cell imports something not seen before.
  private readonly fsProbes = new Map<string, unknown>();
  private readonly seenSpecifiers = new Set<string>();
  private resolutionCache: ts.ModuleResolutionCache | undefined;
  private service: ts.LanguageService | undefined;

  constructor(private readonly cwd: string, private readonly globalsText: () => string) {
    this.cellFile = join(cwd, `${INTERNAL_PREFIX}_cell__.ts`);
    this.preludeFile = join(cwd, `${INTERNAL_PREFIX}_prelude__.d.ts`);
    this.globalsFile = join(cwd, `${INTERNAL_PREFIX}_globals__.d.ts`);
    this.importsFile = join(cwd, `${INTERNAL_PREFIX}_imports__.d.ts`);
  }

  /** Builds the language service and checks a trivial cell, so the first real cell is fast. */
  warmUp(): void {
    this.check("0", undefined);
  }

  check(code: string, analysis: CellAnalysis | undefined): CheckResult {
    this.forgetProbesForNewImports(code, analysis);
    const text = code + this.exportSuffix(code, analysis);
    this.setCell(text);
    const service = this.languageService();
    const program = service.getProgram();
    const sourceFile = program?.getSourceFile(this.cellFile);
    const syntactic = service.getSyntacticDiagnostics(this.cellFile);
    const raw: { diagnostic: ts.Diagnostic; syntactic: boolean }[] = syntactic.map((diagnostic) => ({ diagnostic, syntactic: true }));
    if (syntactic.length === 0) {
      for (const diagnostic of service.getSemanticDiagnostics(this.cellFile)) raw.push({ diagnostic, syntactic: false });
    }
    const diagnostics: CellDiagnostic[] = [];
    for (const { diagnostic, syntactic: isSyntactic } of raw) {
      if (diagnostic.category !== ts.DiagnosticCategory.Error || IGNORED_DIAGNOSTICS.has(diagnostic.code)) continue;
      const start = Math.min(diagnostic.start ?? 0, code.length);
      // The export list appended after the cell is ours: type problems there are not the user's,
      // but a syntax error found there (an unclosed `(` or `{`, a dangling operator) is the cell's,
      // reported at the cell's end.
      if ((diagnostic.start ?? 0) > code.length && !isSyntactic) continue;
      const position = sourceFile ? sourceFile.getLineAndCharacterOfPosition(start) : { line: 0, character: 0 };
      diagnostics.push({
        line: position.line + 1,
        column: position.character + 1,
        code: diagnostic.code,
        message: ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"),
        syntactic: isSyntactic,
      });
    }
    return { diagnostics, declarations: () => this.emitDeclarations(service) };
  }

  /** Makes a cell's declarations (and imports) the latest prelude entries for its names. */
  commit(analysis: CellAnalysis, declarations: Map<string, string[]>): void {
    for (const declared of analysis.names) {
      this.preludeDeclarations.delete(declared.name);
      this.preludeImports.delete(declared.name);
    }
    for (const cellImport of analysis.imports) {
      const statement = cellImport.statement;
      if (ts.isImportEqualsDeclaration(statement)) {
        this.preludeImports.set(statement.name.text, { specifier: cellImport.specifier, form: "require", typeOnly: statement.isTypeOnly });
        continue;
      }
      const clause = statement.importClause;
      if (!clause) continue;
      if (clause.name) this.preludeImports.set(clause.name.text, { specifier: cellImport.specifier, form: "default", typeOnly: clause.isTypeOnly });
      const named = clause.namedBindings;
      if (named && ts.isNamespaceImport(named)) {
        this.preludeImports.set(named.name.text, { specifier: cellImport.specifier, form: "namespace", typeOnly: clause.isTypeOnly });
      } else if (named) {
        for (const element of named.elements) {
          this.preludeImports.set(element.name.text, {
            specifier: cellImport.specifier,
            form: "named",
            imported: (element.propertyName ?? element.name).text,
            typeOnly: clause.isTypeOnly || element.isTypeOnly,
          });
        }
      }
    }
    for (const [name, texts] of declarations) {
      if (!this.preludeImports.has(name)) this.preludeDeclarations.set(name, texts);
    }
    this.setVirtual(this.importsFile, this.importsText());
    this.setVirtual(this.preludeFile, this.preludeText());
  }

  completions(code: string, position: number): string[] {
    this.setCell(`${code}\nexport {};\n`);
    const completions = this.languageService().getCompletionsAtPosition(this.cellFile, position, {});
    return (completions?.entries ?? []).map((entry) => entry.name).filter((name) => !name.startsWith(INTERNAL_PREFIX));
  }

  /** The type checker's description of the name at `position`, or undefined. */
  quickInfo(code: string, position: number): { signature: string; documentation: string } | undefined {
    this.setCell(`${code}\nexport {};\n`);
    const service = this.languageService();
    const info = service.getQuickInfoAtPosition(this.cellFile, position)
      ?? (position > 0 ? service.getQuickInfoAtPosition(this.cellFile, position - 1) : undefined);
    if (!info) return undefined;
    // A name that earlier cells imported is an alias in the prelude; its "import x = ..." line is ours.
    const signature = ts.displayPartsToString(info.displayParts).replace(/\nimport [\w$]+ = [\w$.]+$/, "").replace(/^\(alias\) /, "");
    const tags = (info.tags ?? []).map((tag) => `@${tag.name}${tag.text ? ` ${ts.displayPartsToString(tag.text)}` : ""}`);
    const documentation = [ts.displayPartsToString(info.documentation), ...tags].filter((part) => part !== "").join("\n");
    return { signature, documentation };
  }

  private moduleResolutionCache(): ts.ModuleResolutionCache {
    return (this.resolutionCache ??= ts.createModuleResolutionCache(this.cwd, (name) => name, this.options));
  }

  private fsProbe<T>(key: string, probe: () => T): T {
    if (this.fsProbes.has(key)) return this.fsProbes.get(key) as T;
    const answer = probe();
    this.fsProbes.set(key, answer);
    return answer;
  }

  /** A new import may name a package installed since the answers were kept, or a new local file. */
  private forgetProbesForNewImports(code: string, analysis: CellAnalysis | undefined): void {
    const specifiers = analysis ? analysis.imports.map((cellImport) => cellImport.specifier) : [];
    for (const match of code.matchAll(/\brequire\(\s*["']([^"']+)["']/g)) specifiers.push(match[1]!);
    let fresh = false;
    for (const specifier of specifiers) {
      if (this.seenSpecifiers.has(specifier)) continue;
      this.seenSpecifiers.add(specifier);
      fresh = true;
    }
    if (fresh) {
      this.fsProbes.clear();
      this.resolutionCache?.clear();
    }
  }

  /** `export { ... }` after the cell: the cell is a module, and its names reach its declaration emit. */
  private exportSuffix(code: string, analysis: CellAnalysis | undefined): string {
    const names = new Set<string>();
    for (const declared of analysis?.names ?? []) {
      const statement = declared.statement;
      const exported = ts.canHaveModifiers(statement) && (ts.getModifiers(statement) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
      if (declared.kind !== "import" && !exported) names.add(declared.name);
    }
    const newline = code.endsWith("\n") ? "" : "\n";
    return `${newline}export { ${[...names].join(", ")} };\n`;
  }

  private emitDeclarations(service: ts.LanguageService): Map<string, string[]> {
    const output = service.getEmitOutput(this.cellFile, true);
    const dts = output.outputFiles.find((file) => file.name.endsWith(".d.ts"))?.text ?? "";
    const file = ts.createSourceFile("cell.d.ts", dts, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
    const declarations = new Map<string, string[]>();
    const add = (name: string, text: string) => declarations.set(name, [...(declarations.get(name) ?? []), text]);
    for (const statement of file.statements) {
      if (ts.isVariableStatement(statement)) {
        const list = statement.declarationList;
        const keyword = list.flags & ts.NodeFlags.Const ? "const" : list.flags & ts.NodeFlags.Let ? "let" : "var";
        const docs = dts.slice(statement.getStart(file, true), statement.getStart(file));
        for (const declaration of list.declarations) {
          if (ts.isIdentifier(declaration.name)) add(declaration.name.text, `${docs}${keyword} ${declaration.getText(file)};`);
        }
      } else if (
        (ts.isFunctionDeclaration(statement) || ts.isClassDeclaration(statement) || ts.isInterfaceDeclaration(statement)
          || ts.isTypeAliasDeclaration(statement) || ts.isEnumDeclaration(statement) || ts.isModuleDeclaration(statement))
        && statement.name && ts.isIdentifier(statement.name)
      ) {
        const docs = dts.slice(statement.getStart(file, true), statement.getStart(file));
        add(statement.name.text, docs + statement.getText(file).replace(/^(?:(?:export|declare|default)\s+)+/, ""));
      }
    }
    return declarations;
  }

  /**
   * Every persisted import, re-exported under its notebook name. The prelude aliases them by
   * qualified name (`import x = all.x`), which, unlike a bare name, keeps every meaning
   * (value, type, namespace) of what was imported.
   */
  private importsText(): string {
    const lines: string[] = [];
    let index = 0;
    for (const [name, entry] of this.preludeImports) {
      const from = JSON.stringify(entry.specifier);
      const type = entry.typeOnly ? "type " : "";
      if (entry.form === "default") lines.push(`export ${type}{ default as ${name} } from ${from};`);
      else if (entry.form === "namespace") lines.push(`export ${type}* as ${name} from ${from};`);
      else if (entry.form === "named") lines.push(`export ${type}{ ${entry.imported} as ${name} } from ${from};`);
      else {
        const local = `${INTERNAL_PREFIX}_r${index++}`;
        lines.push(`import ${local} = require(${from});`, `export { ${local} as ${name} };`);
      }
    }
    return `${lines.join("\n")}\nexport {};\n`;
  }

  private preludeText(): string {
    const aliases = [...this.preludeImports.keys()].map((name) => `  export import ${name} = ${INTERNAL_PREFIX}_imports.${name};`);
    const declarations = [...this.preludeDeclarations.values()].flat().map((text) => `  ${text.replace(/\n/g, "\n  ")}`);
    const importLine = aliases.length > 0 ? `import * as ${INTERNAL_PREFIX}_imports from "./${INTERNAL_PREFIX}_imports__";\n` : "";
    return `${importLine}declare global {\n${aliases.join("\n")}\n${declarations.join("\n")}\n}\nexport {};\n`;
  }

  private setCell(text: string): void {
    this.generation++;
    this.setVirtual(this.cellFile, text);
  }

  private setVirtual(fileName: string, text: string): void {
    const current = this.virtualFiles.get(fileName);
    if (current?.text === text) return;
    this.virtualFiles.set(fileName, { text, version: (current?.version ?? 0) + 1 });
    this.projectVersion++;
  }

  private languageService(): ts.LanguageService {
    if (this.service) return this.service;
    this.options = {
      target: ts.ScriptTarget.ES2022,
      // "preserve": ES imports, top-level await and `import x = require("m")` all allowed, as in
      // the engine, which runs each form; resolution as bundlers do (package exports, no extensions).
      module: ts.ModuleKind.Preserve,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      lib: ["lib.es2023.d.ts"],
      strict: true,
      esModuleInterop: true,
      skipLibCheck: true,
      declaration: true,
      emitDeclarationOnly: true,
      allowImportingTsExtensions: true,
      resolveJsonModule: true,
      types: ["node"],
      typeRoots: typeRoots(),
    };

    this.setVirtual(this.globalsFile, this.globalsText());
    this.setVirtual(this.importsFile, this.importsText());
    this.setVirtual(this.preludeFile, this.preludeText());
    const virtual = this.virtualFiles;
    const roots = [this.globalsFile, this.preludeFile, this.cellFile];
    // The service asks for every file's snapshot on each check; files that do not change
    // (libs, node_modules) are read once, others again only when their mtime changes.
    // nbjob's own declaration files (the runtime's types) do not change while a kernel runs either.
    const isStatic = (fileName: string) => fileName.startsWith(LIB_FOLDER) || fileName.includes("/node_modules/") || fileName.startsWith(PACKAGE_DIST);
    const diskCache = new Map<string, { version: string; text: string | undefined; snapshot?: ts.IScriptSnapshot }>();
    // Other files (the notebook's own modules) are looked at once per check, not once per question.
    const mtimes = new Map<string, { generation: number; version: string }>();
    const diskVersion = (fileName: string) => {
      if (isStatic(fileName)) return "0";
      const known = mtimes.get(fileName);
      if (known?.generation === this.generation) return known.version;
      const version = String(ts.sys.getModifiedTime?.(fileName)?.getTime() ?? 0);
      mtimes.set(fileName, { generation: this.generation, version });
      return version;
    };
    const diskEntry = (fileName: string) => {
      const version = diskVersion(fileName);
      let entry = diskCache.get(fileName);
      if (!entry || entry.version !== version) {
        const text = libFileText(fileName) ?? (fileName.startsWith(LIB_FOLDER) ? undefined : ts.sys.readFile(fileName));
        entry = { version, text };
        diskCache.set(fileName, entry);
      }
      return entry;
    };
    const readText = (fileName: string): string | undefined => virtual.get(fileName)?.text ?? diskEntry(fileName).text;
    const host: ts.LanguageServiceHost = {
      getCompilationSettings: () => this.options,
      getProjectVersion: () => String(this.projectVersion),
      getScriptFileNames: () => roots,
      getScriptVersion: (fileName) => {
        const file = virtual.get(fileName);
        return file ? String(file.version) : diskEntry(fileName).version;
      },
      getScriptSnapshot: (fileName) => {
        const file = virtual.get(fileName);
        if (file) return ts.ScriptSnapshot.fromString(file.text);
        const entry = diskEntry(fileName);
        if (entry.text === undefined) return undefined;
        return (entry.snapshot ??= ts.ScriptSnapshot.fromString(entry.text));
      },
      getCurrentDirectory: () => this.cwd,
      // Resolving with one cache shared by every program the service builds (the default is a
      // new cache per program) saves re-reading package.json scopes for each cell.
      resolveModuleNameLiterals: (literals, containingFile, redirectedReference, options, containingSourceFile) => {
        const cache = this.moduleResolutionCache();
        const fromPackage = containingFile.startsWith(PACKAGE_DIST);
        return literals.map((literal) => (fromPackage && !followedFromPackage(literal.text)
          ? { resolvedModule: undefined }
          : ts.resolveModuleName(
            literal.text, containingFile, options, host, cache, redirectedReference,
            ts.getModeForUsageLocation(containingSourceFile, literal, options),
          )));
      },
      getDefaultLibFileName: (options) => `${LIB_FOLDER}/${ts.getDefaultLibFileName(options)}`,
      fileExists: (fileName) => virtual.has(fileName) || libFileText(fileName) !== undefined
        || (!fileName.startsWith(LIB_FOLDER) && this.fsProbe(`f:${fileName}`, () => ts.sys.fileExists(fileName))),
      readFile: (fileName) => readText(fileName),
      directoryExists: (dir) => dir === LIB_FOLDER || LIB_FOLDER.startsWith(`${dir}/`)
        || this.fsProbe(`d:${dir}`, () => ts.sys.directoryExists(dir)),
      getDirectories: (dir) => ts.sys.getDirectories(dir),
      realpath: (path) => this.fsProbe(`r:${path}`, () => ts.sys.realpath?.(path) ?? path),
      useCaseSensitiveFileNames: () => true,
    };
    // Also used by createProgram for package.json scopes of every file (internal, not in the types).
    Object.assign(host, { getModuleResolutionCache: () => this.moduleResolutionCache() });
    this.service = ts.createLanguageService(host, ts.createDocumentRegistry());
    return this.service;
  }
}
