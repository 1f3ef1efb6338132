// The TypeScript 6 compiler API, taken from ts-morph's bundle (the `typescript` package on
// npm is the native 7.x port without this API); its lib .d.ts files are served from memory.
import { getLibFiles, libFolderInMemoryPath, ts } from "@ts-morph/common";

export { ts };

let libFiles: Map<string, string> | undefined;

/** Where the compiler looks for lib.*.d.ts files (a folder that exists only in memory). */
export const LIB_FOLDER: string = libFolderInMemoryPath;

/** The text of a lib file by absolute path (under LIB_FOLDER), or undefined. */
export function libFileText(fileName: string): string | undefined {
  libFiles ??= new Map(getLibFiles().map((file) => [`${LIB_FOLDER}/${file.fileName}`, file.text]));
  return libFiles.get(fileName);
}
