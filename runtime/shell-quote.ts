// Words printed for the user to paste into a POSIX shell (`cd DIR && npm install`): a word with
// spaces, quotes or other special characters must stay one word and mean itself.

/** `word` as one shell word: unchanged when it is plain, else in single quotes ('\'' for a quote). */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_\/.,:@%+=-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}
