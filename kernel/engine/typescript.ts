// The TypeScript 6 compiler API, taken from ts-morph's bundle (the `typescript` package on
// npm is the native 7.x port without this API), loaded on first use: it is ~10 MB of
// JavaScript, and a kernel should answer its first requests before paying for it.
// Its lib .d.ts files are served from memory.
import { closeSync, openSync, readSync } from "node:fs";
import type { ts as TsNamespace } from "@ts-morph/common";

type TsApi = typeof TsNamespace;
interface TsMorphCommon {
  ts: TsApi;
  getLibFiles(): { fileName: string; text: string }[];
  libFolderInMemoryPath: string;
}

let common: TsMorphCommon | undefined;

function load(): TsMorphCommon {
  return (common ??= require("@ts-morph/common") as TsMorphCommon);
}

/** The compiler API; the module behind it loads at the first property read. */
export const ts: TsApi = new Proxy({} as TsApi, { get: (_target, key) => Reflect.get(load().ts, key) });

// The types the engine names, next to the value above (a namespace of types only merges with it).
export declare namespace ts {
  type AwaitExpression = TsNamespace.AwaitExpression;
  type BindingName = TsNamespace.BindingName;
  type CompilerOptions = TsNamespace.CompilerOptions;
  type Diagnostic = TsNamespace.Diagnostic;
  type ExpressionStatement = TsNamespace.ExpressionStatement;
  type IScriptSnapshot = TsNamespace.IScriptSnapshot;
  type ImportDeclaration = TsNamespace.ImportDeclaration;
  type ImportEqualsDeclaration = TsNamespace.ImportEqualsDeclaration;
  type LanguageService = TsNamespace.LanguageService;
  type LanguageServiceHost = TsNamespace.LanguageServiceHost;
  type ModuleResolutionCache = TsNamespace.ModuleResolutionCache;
  type Node = TsNamespace.Node;
  type SourceFile = TsNamespace.SourceFile;
  type Statement = TsNamespace.Statement;
  type SyntaxKind = TsNamespace.SyntaxKind;
  type VariableDeclarationList = TsNamespace.VariableDeclarationList;
}

/** Where the compiler looks for lib.*.d.ts files (a folder that exists only in memory). */
export const LIB_FOLDER = "/node_modules/typescript/lib";

let libFiles: Map<string, string> | undefined;

/** The text of a lib file by absolute path (under LIB_FOLDER), or undefined. */
export function libFileText(fileName: string): string | undefined {
  if (!fileName.startsWith(LIB_FOLDER)) return undefined;
  const api = load();
  if (api.libFolderInMemoryPath !== LIB_FOLDER) throw new Error(`ts-morph serves its lib files from ${api.libFolderInMemoryPath}, not ${LIB_FOLDER}; update kernel/engine/typescript.ts`);
  libFiles ??= new Map(api.getLibFiles().map((file) => [`${LIB_FOLDER}/${file.fileName}`, file.text]));
  return libFiles.get(fileName);
}

/**
 * The compiler's version ("6.0.2") without loading the compiler: read from the head of its
 * bundle (for kernel_info, which a kernel answers before it has run any cell).
 */
export function typescriptVersion(): string {
  if (common) return common.ts.version;
  try {
    const bundle = require.resolve("@ts-morph/common/dist/typescript.js");
    const head = Buffer.alloc(256 * 1024);
    const fd = openSync(bundle, "r");
    try {
      readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
    const found = /\bvar version = "([^"]+)"/.exec(head.toString("utf8"));
    if (found?.[1]) return found[1];
  } catch {
    // Unusual layout of the package: fall back to loading the compiler.
  }
  return load().ts.version;
}
