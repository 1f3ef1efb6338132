// Type-checks cells. Earlier cells are kept as declarations only (a prelude of globals built
// from each cell's declaration emit, a name declared again replacing its earlier entry), so
// checking a new cell stays cheap: each check builds a program that reuses the previous one's
// structure and parsed files, where only the cell and the prelude's newest chunk are new.
// Completion and inspection, rarer, go through a LanguageService that shares the parsed files.
import { isBuiltin } from "node:module";
import { join } from "node:path";
import type { CellAnalysis } from "./cell-analysis";
import { docCommentAt } from "./doc-comments";
import { NODE_TYPES_FILE, nodeTypesText } from "./node-types";
import { INTERNAL_PREFIX, Prelude } from "./prelude";
import { PACKAGE_NAME } from "./runtime-globals";
import { RUNTIME_MODULE_PREFIX, RUNTIME_TYPES_FILE, runtimeTypesText } from "./runtime-types";
import { IGNORED_DIAGNOSTICS, sharedCheckOptions } from "../../runtime/check-options";
import { combinedLibFile, LIB_FOLDER, libClosure, libFileText, ts } from "./typescript";

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
  /** The cell's JavaScript and its source map, when transformers were given and the cell has no errors. */
  emitted?: { js: string; map: string };
}

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
  private readonly globalsFile: string;
  private readonly virtualFiles = new Map<string, { text: string; version: number; sourceFile?: ts.SourceFile }>();
  private readonly prelude = new Prelude();
  private preludePaths: string[] = [];
  /** The libs cells get (one combined file): es2023, and those an imported package references. */
  private readonly libs = ["es2023"];
  private readonly libsHeld = new Set(libClosure(this.libs));
  /** Files already looked at for `/// <reference lib>` lines. */
  private readonly libScanned = new WeakSet<ts.SourceFile>();
  /** The program's root files: the libs, runtime globals, the prelude's files, the cell. */
  private roots: string[] = [];
  private options: ts.CompilerOptions = {};
  private projectVersion = 0;
  /** Counts checks, completions and inspections: files on disk are looked at once per generation. */
  private generation = 0;
  // Module resolution probes the file system for every file of every new program (package.json
  // scopes, extensions); the answers are kept until a cell imports something not seen before.
  private readonly fsProbes = new Map<string, unknown>();
  private readonly seenSpecifiers = new Set<string>();
  private resolutionCache: ts.ModuleResolutionCache | undefined;
  // Files are parsed without their documentation comments (the libs and @types/node are mostly
  // comments: ~0.3 s of start-up). In TypeScript files (no JavaScript is checked) errors need
  // them only for unused names (noUnused*, off here: a name in a `@link` counts as used), and
  // inspection reads them when asked (doc-comments.ts).
  private readonly jsDocMode = ts.JSDocParsingMode.ParseNone;
  // Parsed files that do not change while the kernel runs (libs, node_modules, nbjob's own
  // declarations) live in a document registry that the language service shares, so completion
  // does not parse them a second time.
  private readonly registry = ts.createDocumentRegistry(true, undefined, this.jsDocMode);
  private readonly staticFiles = new Map<string, ts.SourceFile | undefined>();
  // Other files on disk (the notebook's own modules): text and parse, until their mtime changes.
  private readonly diskFiles = new Map<string, { version: string; text: string | undefined; snapshot?: ts.IScriptSnapshot; sourceFile?: ts.SourceFile }>();
  private readonly mtimes = new Map<string, { generation: number; version: string }>();
  private compilerHost: ts.CompilerHost | undefined;
  private serviceHost: ts.LanguageServiceHost | undefined;
  /** The last checked program: the next one reuses its structure. */
  private program: ts.Program | undefined;
  private service: ts.LanguageService | undefined;

  constructor(private readonly cwd: string, private readonly globalsText: () => string) {
    this.cellFile = join(cwd, `${INTERNAL_PREFIX}_cell__.ts`);
    this.globalsFile = join(cwd, `${INTERNAL_PREFIX}_globals__.d.ts`);
  }

  /** Parses the libraries and checks a trivial cell, so the first real cell is fast. */
  warmUp(): void {
    this.check("0", undefined);
  }

  /**
   * Type-checks a cell; with `transformers` (the engine's rewrite of the cell's top level), a
   * cell without errors is also emitted, JavaScript and declarations from the same program.
   */
  check(code: string, analysis: CellAnalysis | undefined, transformers?: ts.CustomTransformers): CheckResult {
    this.forgetProbesForNewImports(code, analysis);
    this.setCell(code + this.exportSuffix(code, analysis));
    const host = this.setUp();
    let program = ts.createProgram({ rootNames: this.roots, options: this.options, host, oldProgram: this.program });
    if (this.addReferencedLibs(program)) program = ts.createProgram({ rootNames: this.roots, options: this.options, host, oldProgram: program });
    this.program = program;
    const sourceFile = program.getSourceFile(this.cellFile)!;
    const syntactic = program.getSyntacticDiagnostics(sourceFile);
    const diagnostics = this.cellDiagnostics(code, sourceFile, syntactic, true);
    if (syntactic.length > 0) return { diagnostics, declarations: () => new Map() };
    diagnostics.push(...this.cellDiagnostics(code, sourceFile, program.getSemanticDiagnostics(sourceFile), false));
    if (diagnostics.length > 0 || !transformers) return { diagnostics, declarations: () => new Map() };
    const outputs = { js: "", map: '{"mappings":""}', dts: "" };
    const emitted = program.emit(sourceFile, (fileName, text) => {
      outputs[fileName.endsWith(".d.ts") ? "dts" : fileName.endsWith(".map") ? "map" : "js"] = text;
    }, undefined, false, transformers);
    let emitDiagnostics: readonly ts.Diagnostic[] = emitted.diagnostics;
    if (emitDiagnostics.length > 0 && emitDiagnostics.every((d) => UNNAMEABLE_TYPE.has(d.code))) {
      const dts = this.dynamicImportDeclarations(code, analysis, sourceFile);
      if (dts !== undefined) {
        outputs.dts = dts;
        emitDiagnostics = [];
      }
    }
    // What the declaration emit cannot express (a type no other cell could name) is an error
    // of the cell, as in any project that emits declarations.
    diagnostics.push(...this.cellDiagnostics(code, sourceFile, emitDiagnostics, false));
    return { diagnostics, declarations: () => parseDeclarations(outputs.dts), emitted: { js: outputs.js, map: outputs.map } };
  }

  /**
   * `const fs = await import("node:fs")`: the module's type mentions names the module does not
   * export (fs's ReadStreamOptions), so the declaration emit cannot write it. Declared as
   * `typeof import("node:fs")` instead, in a second program used only for the declarations (the
   * JavaScript comes from the cell as written, so positions stay the user's). Undefined when the
   * cell has no such declaration or the annotated cell still fails.
   */
  private dynamicImportDeclarations(code: string, analysis: CellAnalysis | undefined, sourceFile: ts.SourceFile): string | undefined {
    const annotated = annotateDynamicImports(code, sourceFile);
    if (annotated === undefined) return undefined;
    try {
      this.setCell(annotated + this.exportSuffix(code, analysis));
      const program = ts.createProgram({ rootNames: this.roots, options: this.options, host: this.setUp(), oldProgram: this.program });
      const file = program.getSourceFile(this.cellFile)!;
      if (program.getSemanticDiagnostics(file).some((d) => !IGNORED_DIAGNOSTICS.has(d.code))) return undefined;
      let dts = "";
      const emitted = program.emit(file, (fileName, text) => {
        if (fileName.endsWith(".d.ts")) dts = text;
      }, undefined, true);
      return emitted.diagnostics.length === 0 ? dts : undefined;
    } finally {
      this.setCell(code + this.exportSuffix(code, analysis));
    }
  }

  /**
   * A package's `/// <reference lib="dom">` adds that lib for every later cell, as it would in a
   * project (the compiler itself does not follow them: the libs are one combined file).
   * Returns whether the libs changed.
   */
  private addReferencedLibs(program: ts.Program): boolean {
    let changed = false;
    for (const file of program.getSourceFiles()) {
      if (this.libScanned.has(file)) continue;
      this.libScanned.add(file);
      for (const reference of file.libReferenceDirectives) {
        const lib = reference.fileName.toLowerCase();
        if (this.libsHeld.has(lib)) continue;
        const held = libClosure([...this.libs, lib]);
        if (!held) continue; // an unknown lib: the compiler would only report it in the package's file
        this.libs.push(lib);
        for (const name of held) this.libsHeld.add(name);
        changed = true;
      }
    }
    if (changed) this.syncPrelude();
    return changed;
  }

  /** Makes a cell's declarations (and imports) the latest prelude entries for its names. */
  commit(analysis: CellAnalysis, declarations: Map<string, string[]>): void {
    this.prelude.commit(analysis, declarations);
    this.syncPrelude();
  }

  /**
   * Completions at `position`. After the dot of a function or class (`display.`), its own
   * members come first and what every function has from Function.prototype (apply, bind, call,
   * length...) is left out, unless a typed prefix asks for it or the function has no members.
   */
  completions(code: string, position: number): string[] {
    this.setCell(`${code}\nexport {};\n`);
    const service = this.languageService();
    const completions = service.getCompletionsAtPosition(this.cellFile, position, {});
    const names = (completions?.entries ?? []).map((entry) => entry.name).filter((name) => !name.startsWith(INTERNAL_PREFIX));
    if (!completions?.isMemberCompletion) return names;
    const prefix = /[\w$]*$/.exec(code.slice(0, position))?.[0] ?? "";
    const inherited = this.functionPrototypeMembers(service, position - prefix.length);
    if (inherited.size === 0) return names;
    const own = names.filter((name) => !inherited.has(name));
    // A plain function has nothing of its own: then Function.prototype's members are what there is.
    return prefix === "" && own.length > 0 ? own : [...own, ...names.filter((name) => inherited.has(name))];
  }

  /** The members a callable receiver ends with before `afterDot` has only from Function.prototype. */
  private functionPrototypeMembers(service: ts.LanguageService, afterDot: number): Set<string> {
    const program = service.getProgram();
    const sourceFile = program?.getSourceFile(this.cellFile);
    if (!program || !sourceFile) return new Set();
    let access: ts.PropertyAccessExpression | undefined;
    const visit = (node: ts.Node): void => {
      if (node.pos > afterDot || node.end < afterDot) return;
      if (ts.isPropertyAccessExpression(node) && node.name.pos === afterDot) access = node;
      ts.forEachChild(node, visit);
    };
    visit(sourceFile);
    if (!access) return new Set();
    const checker = program.getTypeChecker();
    const type = checker.getTypeAtLocation(access.expression);
    if (type.getCallSignatures().length === 0 && type.getConstructSignatures().length === 0) return new Set();
    const own = new Set(checker.getPropertiesOfType(type).map((symbol) => symbol.name));
    return new Set(checker.getAugmentedPropertiesOfType(type).map((symbol) => symbol.name).filter((name) => !own.has(name)));
  }

  /**
   * The type checker's description of the name at `position`, or undefined, also when nothing
   * is known by that name (the checker then describes it as `any`).
   */
  quickInfo(code: string, position: number): { signature: string; documentation: string } | undefined {
    this.setCell(`${code}\nexport {};\n`);
    const service = this.languageService();
    const info = service.getQuickInfoAtPosition(this.cellFile, position)
      ?? (position > 0 ? service.getQuickInfoAtPosition(this.cellFile, position - 1) : undefined);
    if (!info || info.kind === ts.ScriptElementKind.unknown) return undefined;
    // A name that earlier cells imported is an alias in the prelude; its "import x = ..." line is ours.
    const signature = ts.displayPartsToString(info.displayParts).replace(/\nimport [\w$]+ = [\w$.]+$/, "").replace(/^\(alias\) /, "");
    const tags = (info.tags ?? []).map((tag) => `@${tag.name}${tag.text ? ` ${ts.displayPartsToString(tag.text)}` : ""}`);
    const documentation = [ts.displayPartsToString(info.documentation), ...tags].filter((part) => part !== "").join("\n");
    return { signature, documentation: documentation || this.docComment(service, position) };
  }

  /** The documentation comment of what the name at `position` is defined as (see doc-comments.ts). */
  private docComment(service: ts.LanguageService, position: number): string {
    const definitions = service.getDefinitionAtPosition(this.cellFile, position)
      ?? (position > 0 ? service.getDefinitionAtPosition(this.cellFile, position - 1) : undefined) ?? [];
    const program = service.getProgram();
    for (const definition of definitions) {
      const file = program?.getSourceFile(definition.fileName);
      const text = file && docCommentAt(file, definition.textSpan.start);
      if (text) return text;
    }
    return "";
  }

  /** Errors among `found`, at the cell's own lines and columns. */
  private cellDiagnostics(code: string, sourceFile: ts.SourceFile, found: readonly ts.Diagnostic[], syntactic: boolean): CellDiagnostic[] {
    const diagnostics: CellDiagnostic[] = [];
    for (const diagnostic of found) {
      if (diagnostic.category !== ts.DiagnosticCategory.Error || IGNORED_DIAGNOSTICS.has(diagnostic.code)) continue;
      // Errors located in other files (the prelude) are not the cell's to show.
      if (diagnostic.file && diagnostic.file !== sourceFile) continue;
      const start = Math.min(diagnostic.start ?? 0, code.length);
      // The export list appended after the cell is ours: type problems there are not the user's,
      // but a syntax error found there (an unclosed `(` or `{`, a dangling operator) is the cell's,
      // reported at the cell's end.
      if ((diagnostic.start ?? 0) > code.length && !syntactic) continue;
      const position = sourceFile.getLineAndCharacterOfPosition(start);
      diagnostics.push({
        line: position.line + 1,
        column: position.character + 1,
        code: diagnostic.code,
        message: ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"),
        syntactic,
      });
    }
    return diagnostics;
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

  /** The prelude's files become virtual files and roots; a chunk that is gone stops being one. */
  private syncPrelude(): void {
    const files = this.prelude.files().map((file) => ({ path: join(this.cwd, file.name), text: file.text }));
    const current = new Set(files.map((file) => file.path));
    for (const path of this.preludePaths) {
      if (current.has(path)) continue;
      this.virtualFiles.delete(path);
      this.projectVersion++;
    }
    for (const file of files) this.setVirtual(file.path, file.text);
    this.preludePaths = files.map((file) => file.path);
    this.roots = [combinedLibFile(this.libs), ...(NODE_TYPES_FILE ? [NODE_TYPES_FILE] : []), RUNTIME_TYPES_FILE, this.globalsFile, ...this.preludePaths, this.cellFile];
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

  // Files that do not change while a kernel runs: libs, node_modules, nbjob's own declarations.
  private isStatic(fileName: string): boolean {
    return fileName.startsWith(LIB_FOLDER) || fileName.includes("/node_modules/") || fileName.startsWith(PACKAGE_DIST);
  }

  /** A file's version: "0" for static files, else its mtime, looked at once per check. */
  private diskVersion(fileName: string): string {
    if (this.isStatic(fileName)) return "0";
    const known = this.mtimes.get(fileName);
    if (known?.generation === this.generation) return known.version;
    const version = String(ts.sys.getModifiedTime?.(fileName)?.getTime() ?? 0);
    this.mtimes.set(fileName, { generation: this.generation, version });
    return version;
  }

  private diskEntry(fileName: string) {
    const version = this.diskVersion(fileName);
    let entry = this.diskFiles.get(fileName);
    if (!entry || entry.version !== version) {
      const text = libFileText(fileName) ?? nodeTypesText(fileName) ?? runtimeTypesText(fileName) ?? (fileName.startsWith(LIB_FOLDER) ? undefined : ts.sys.readFile(fileName));
      entry = { version, text };
      this.diskFiles.set(fileName, entry);
    }
    return entry;
  }

  private readText(fileName: string): string | undefined {
    return this.virtualFiles.get(fileName)?.text ?? this.diskEntry(fileName).text;
  }

  /** A parsed file for the program: each version of each file is parsed once. */
  private sourceFile(fileName: string, options: ts.CreateSourceFileOptions): ts.SourceFile | undefined {
    const virtual = this.virtualFiles.get(fileName);
    if (virtual) return (virtual.sourceFile ??= ts.createSourceFile(fileName, virtual.text, options));
    if (this.isStatic(fileName)) {
      if (!this.staticFiles.has(fileName)) {
        const text = this.diskEntry(fileName).text;
        // Acquired once and never released: the registry keeps it for the language service too.
        const sourceFile = text === undefined ? undefined : this.registry.acquireDocumentWithKey(
          fileName, fileName as ts.Path, this.options, this.registry.getKeyForCompilationSettings(this.options),
          ts.ScriptSnapshot.fromString(text), "0", undefined, { ...options, jsDocParsingMode: this.jsDocMode },
        );
        this.staticFiles.set(fileName, sourceFile);
      }
      return this.staticFiles.get(fileName);
    }
    const entry = this.diskEntry(fileName);
    if (entry.text === undefined) return undefined;
    return (entry.sourceFile ??= ts.createSourceFile(fileName, entry.text, options));
  }

  /** Compiler options, the runtime globals and prelude files, and the host programs are built with. */
  private setUp(): ts.CompilerHost {
    if (this.compilerHost) return this.compilerHost;
    this.options = {
      // The same as the bundle check's (runtime/check-options.ts), plus what a cell's emit needs.
      ...sharedCheckOptions(ts),
      // The libs are a root file instead (see combinedLibFile).
      noLib: true,
      declaration: true,
      sourceMap: true,
      // Node's types are a root file instead (see node-types.ts); typeRoots still serve a
      // package's `/// <reference types="...">`.
      types: [],
      typeRoots: typeRoots(),
    };
    this.setVirtual(this.globalsFile, this.globalsText());
    this.syncPrelude();
    const files: ts.ModuleResolutionHost = {
      fileExists: (fileName) => this.virtualFiles.has(fileName) || libFileText(fileName) !== undefined || nodeTypesText(fileName) !== undefined
        || (!fileName.startsWith(LIB_FOLDER) && this.fsProbe(`f:${fileName}`, () => ts.sys.fileExists(fileName))),
      readFile: (fileName) => this.readText(fileName),
      directoryExists: (dir) => dir === LIB_FOLDER || LIB_FOLDER.startsWith(`${dir}/`)
        || this.fsProbe(`d:${dir}`, () => ts.sys.directoryExists(dir)),
      getDirectories: (dir) => ts.sys.getDirectories(dir),
      realpath: (path) => this.fsProbe(`r:${path}`, () => ts.sys.realpath?.(path) ?? path),
      useCaseSensitiveFileNames: true,
    };
    // One resolution cache for every program (the default is a new cache per program) saves
    // re-reading package.json scopes for each cell; createProgram also uses it for the package
    // scopes of every file.
    const resolveModuleNameLiterals: ts.CompilerHost["resolveModuleNameLiterals"] = (literals, containingFile, redirectedReference, options, containingSourceFile) => {
      const cache = this.moduleResolutionCache();
      const fromPackage = containingFile.startsWith(PACKAGE_DIST);
      // "nbjob" and the runtime's modules are ambient modules of the combined file (runtime-types.ts).
      return literals.map((literal) => (literal.text === PACKAGE_NAME || literal.text.startsWith(RUNTIME_MODULE_PREFIX)
        ? { resolvedModule: undefined }
        : fromPackage && !followedFromPackage(literal.text)
        ? { resolvedModule: undefined }
        : ts.resolveModuleName(
          literal.text, containingFile, options, files, cache, redirectedReference,
          ts.getModeForUsageLocation(containingSourceFile, literal, options),
        )));
    };
    // A package's `/// <reference types="node" />` (pg's, for one) means the combined file: the
    // originals would declare everything a second time.
    const resolveTypeReferenceDirectiveReferences: ts.CompilerHost["resolveTypeReferenceDirectiveReferences"] = (references, containingFile, redirectedReference, options, containingSourceFile) => {
      return references.map((reference) => {
        const name = typeof reference === "string" ? reference : reference.fileName.toLowerCase();
        if (name === "node" && NODE_TYPES_FILE) {
          return { resolvedTypeReferenceDirective: { primary: true, resolvedFileName: NODE_TYPES_FILE, isExternalLibraryImport: true } };
        }
        const mode = typeof reference === "string" ? undefined : ts.getModeForFileReference(reference, containingSourceFile?.impliedNodeFormat);
        return ts.resolveTypeReferenceDirective(name, containingFile, options, files, redirectedReference, undefined, mode);
      });
    };
    this.compilerHost = {
      ...files,
      resolveTypeReferenceDirectiveReferences,
      getSourceFile: (fileName, languageVersionOrOptions) => this.sourceFile(fileName, typeof languageVersionOrOptions === "object"
        ? languageVersionOrOptions : { languageVersion: languageVersionOrOptions }),
      getDefaultLibFileName: (options) => `${LIB_FOLDER}/${ts.getDefaultLibFileName(options)}`,
      writeFile: () => undefined,
      getCurrentDirectory: () => this.cwd,
      getCanonicalFileName: (fileName) => fileName,
      useCaseSensitiveFileNames: () => true,
      getNewLine: () => "\n",
      resolveModuleNameLiterals,
      getModuleResolutionCache: () => this.moduleResolutionCache(),
      jsDocParsingMode: this.jsDocMode,
    };
    this.serviceHost = {
      ...files,
      useCaseSensitiveFileNames: () => true,
      getCompilationSettings: () => this.options,
      getProjectVersion: () => String(this.projectVersion),
      getScriptFileNames: () => this.roots,
      getScriptVersion: (fileName) => {
        const file = this.virtualFiles.get(fileName);
        return file ? String(file.version) : this.diskEntry(fileName).version;
      },
      getScriptSnapshot: (fileName) => {
        const file = this.virtualFiles.get(fileName);
        if (file) return ts.ScriptSnapshot.fromString(file.text);
        const entry = this.diskEntry(fileName);
        if (entry.text === undefined) return undefined;
        return (entry.snapshot ??= ts.ScriptSnapshot.fromString(entry.text));
      },
      getCurrentDirectory: () => this.cwd,
      getDefaultLibFileName: (options) => `${LIB_FOLDER}/${ts.getDefaultLibFileName(options)}`,
      resolveModuleNameLiterals,
      resolveTypeReferenceDirectiveReferences,
      jsDocParsingMode: this.jsDocMode,
    };
    // Also used by the service's programs for package.json scopes (not in LanguageServiceHost's types).
    Object.assign(this.serviceHost, { getModuleResolutionCache: () => this.moduleResolutionCache() });
    return this.compilerHost;
  }

  private languageService(): ts.LanguageService {
    this.setUp();
    return (this.service ??= ts.createLanguageService(this.serviceHost!, this.registry));
  }
}

/** "... has or is using name X from external module M but cannot be named" (variables, exports). */
const UNNAMEABLE_TYPE = new Set([2742, 4023, 4025]);

/** The cell with `: typeof import("S")` after each top-level `x = await import("S")` that has no type; undefined when none. */
function annotateDynamicImports(code: string, sourceFile: ts.SourceFile): string | undefined {
  const inserts: Array<{ at: number; text: string }> = [];
  for (const statement of sourceFile.statements) {
    if (!ts.isVariableStatement(statement)) continue;
    for (const declaration of statement.declarationList.declarations) {
      const init = declaration.initializer;
      if (declaration.type || !ts.isIdentifier(declaration.name) || !init || !ts.isAwaitExpression(init)) continue;
      const call = init.expression;
      if (!ts.isCallExpression(call) || call.expression.kind !== ts.SyntaxKind.ImportKeyword || !call.arguments[0] || !ts.isStringLiteral(call.arguments[0])) continue;
      inserts.push({ at: declaration.name.end, text: `: typeof import(${JSON.stringify(call.arguments[0].text)})` });
    }
  }
  if (inserts.length === 0 || inserts.some((i) => i.at > code.length)) return undefined;
  let out = code;
  for (const { at, text } of inserts.reverse()) out = out.slice(0, at) + text + out.slice(at);
  return out;
}

/** Global declaration texts per name, from a cell's declaration emit. */
function parseDeclarations(dts: string): Map<string, string[]> {
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
