// The TypeScript 6 compiler API, from the `typescript@6` package (7.x is the native port
// without this API), loaded on first use: it is ~10 MB of JavaScript, and a kernel should
// answer its first requests before paying for it. ts-morph, when a bundle is checked, uses
// this same compiler (see runtime/typescript-loader.ts). Only the compiler is loaded, not
// @ts-morph/common, which embeds every lib .d.ts file as a string (3 MB of source, ~13 MB of a
// kernel's memory): the lib files are read from the package's lib folder, only those a cell's
// program uses.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ts as TsNamespace } from "@ts-morph/common";
import { typescript } from "../../runtime/bundle-ts";
import { compilerVersion } from "../../runtime/typescript-loader";

type TsApi = typeof TsNamespace;

/** The compiler API; the module behind it loads at the first property read. */
export const ts: TsApi = new Proxy({} as TsApi, { get: (_target, key) => Reflect.get(typescript(), key) });

// The types the engine names, next to the value above (a namespace of types only merges with it).
export declare namespace ts {
  type AwaitExpression = TsNamespace.AwaitExpression;
  type BindingElement = TsNamespace.BindingElement;
  type BindingName = TsNamespace.BindingName;
  type CompilerHost = TsNamespace.CompilerHost;
  type CompilerOptions = TsNamespace.CompilerOptions;
  type CreateSourceFileOptions = TsNamespace.CreateSourceFileOptions;
  type CustomTransformers = TsNamespace.CustomTransformers;
  type Diagnostic = TsNamespace.Diagnostic;
  type Expression = TsNamespace.Expression;
  type ExpressionStatement = TsNamespace.ExpressionStatement;
  type HasModifiers = TsNamespace.HasModifiers;
  type Identifier = TsNamespace.Identifier;
  type IScriptSnapshot = TsNamespace.IScriptSnapshot;
  type ImportDeclaration = TsNamespace.ImportDeclaration;
  type ImportEqualsDeclaration = TsNamespace.ImportEqualsDeclaration;
  type LanguageService = TsNamespace.LanguageService;
  type LanguageServiceHost = TsNamespace.LanguageServiceHost;
  type ModifierLike = TsNamespace.ModifierLike;
  type ModuleResolutionCache = TsNamespace.ModuleResolutionCache;
  type ModuleResolutionHost = TsNamespace.ModuleResolutionHost;
  type Node = TsNamespace.Node;
  type NodeFactory = TsNamespace.NodeFactory;
  type Path = TsNamespace.Path;
  type Program = TsNamespace.Program;
  type PropertyAccessExpression = TsNamespace.PropertyAccessExpression;
  type SourceFile = TsNamespace.SourceFile;
  type Statement = TsNamespace.Statement;
  type SyntaxKind = TsNamespace.SyntaxKind;
  type TransformerFactory<T extends TsNamespace.Node> = TsNamespace.TransformerFactory<T>;
  type VariableDeclaration = TsNamespace.VariableDeclaration;
  type VariableDeclarationList = TsNamespace.VariableDeclarationList;
}

/** Where the compiler finds lib.*.d.ts files: the lib folder of the `typescript@6` package. */
export const LIB_FOLDER = join(dirname(require.resolve("typescript/package.json")), "lib");

const libFiles = new Map<string, string | undefined>();

/** The text of a lib file by absolute path (under LIB_FOLDER), or undefined; each is read once. */
export function libFileText(fileName: string): string | undefined {
  if (!fileName.startsWith(`${LIB_FOLDER}/`)) return undefined;
  if (!libFiles.has(fileName)) {
    const combined = COMBINED_LIB.exec(fileName.slice(LIB_FOLDER.length + 1));
    libFiles.set(fileName, combined ? combineLibs(combined[1]!.split("+")) : readLib(fileName));
  }
  return libFiles.get(fileName);
}

function readLib(fileName: string): string | undefined {
  try {
    return readFileSync(fileName, "utf8");
  } catch {
    return undefined;
  }
}

// A program pays per file, at every cell: es2023 alone is 61 lib files, whose interfaces
// (Array, Promise, ...) are declared in pieces that each new type checker merges again. One file
// holding them all is bound once, its pieces merged by the binder: a cell's program and checker
// are built in about half the time. Its name lists the libs it holds.
const COMBINED_LIB = /^lib\.nbjob\.([a-z0-9.+]+)\.d\.ts$/;

/** The file name of the combined lib holding `libs` ("es2023", "dom", ...) and what they reference. */
export function combinedLibFile(libs: readonly string[]): string {
  return `${LIB_FOLDER}/lib.nbjob.${[...libs].sort().join("+")}.d.ts`;
}

/** The libs' files as one script, in the order the compiler reads them, without their `/// <reference lib>` lines. */
function combineLibs(libs: readonly string[]): string | undefined {
  return libClosure(libs)?.map((lib) => readLib(`${LIB_FOLDER}/lib.${lib}.d.ts`)!.replace(LIB_REFERENCE, "")).join("\n");
}

/**
 * `libs` and every lib they reference, each after those it references (the compiler's order);
 * undefined when one of them does not exist.
 */
export function libClosure(libs: readonly string[]): string[] | undefined {
  const seen = new Set<string>();
  const ordered: string[] = [];
  const add = (lib: string): boolean => {
    if (seen.has(lib)) return true;
    seen.add(lib);
    const text = libFileText(`${LIB_FOLDER}/lib.${lib}.d.ts`);
    if (text === undefined) return false;
    for (const reference of text.matchAll(LIB_REFERENCE)) {
      if (!add(reference[1]!.toLowerCase())) return false;
    }
    ordered.push(lib);
    return true;
  };
  return libs.every(add) ? ordered : undefined;
}

const LIB_REFERENCE = /^\/\/\/\s*<reference\s+lib="([^"]+)"\s*\/>/gm;

/** The compiler's version ("6.0.3"), without loading it (kernel_info is answered before any cell ran). */
export function typescriptVersion(): string {
  return compilerVersion() ?? typescript().version;
}
