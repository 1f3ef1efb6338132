// The `--where` language of `nbjob jobs`: comparisons `field op value` joined by `and` / `or`,
// with parentheses. A small recursive-descent parser (a general expression library such as jsep
// would accept JavaScript we then have to reject; here every error names what was expected and
// where). It produces the same condition tree db.jobs({ params, metrics, ... }) builds
// (job-query.ts), which is compiled to SQL with parameters only.
//
//   expression  := conjunction ("or" conjunction)*
//   conjunction := term ("and" term)*
//   term        := "(" expression ")" | field op value | field "in" "(" value ("," value)* ")" | field "exists"
//   field       := params.NAME(.NAME)* | metrics.METRIC | metrics."METRIC" | result(.NAME)* | status | name | tag | group | created | id
//   op          := = | == | != | <> | < | <= | > | >=
//   value       := number | "text" | 'text' | true | false | null
// Keywords are case-insensitive. NAME: letters, digits, _ and $, not starting with a digit.
// METRIC: a metric's whole name, which is flat and may hold dots, slashes and dashes
// (metrics.layer0.grad_norm, metrics.val/loss): everything up to a blank, = ! < > ( ) or ,;
// quoted ("..." or '...', a backslash escaping the quote) when the name holds those.
import { fieldRef, FIELDS_HELP } from "./job-query";
import type { Condition, JobCondition, Operator, ScalarValue } from "./job-query";

/** A --where expression that does not parse: the message names the position (1-based) and what was expected. */
export class WhereSyntaxError extends Error {
  override name = "WhereSyntaxError";
  constructor(readonly position: number, readonly problem: string, readonly expression: string, hint?: string) {
    super(`${problem} at position ${position}: ${JSON.stringify(expression)}${hint ? ` (${hint})` : ""}`);
  }
}

type Token =
  | { kind: "word"; text: string; at: number }
  | { kind: "number"; value: number; text: string; at: number }
  | { kind: "string"; value: string; at: number }
  | { kind: "op"; text: string; at: number }
  | { kind: "punct"; text: "(" | ")" | ","; at: number }
  | { kind: "end"; at: number };

const OPERATORS: Record<string, Operator> = { "=": "eq", "==": "eq", "!=": "ne", "<>": "ne", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte" };
const WORD = /[A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*/y;
/** An unquoted metric name after "metrics.": up to a blank, a comparison, a parenthesis or a comma. */
const METRIC = /[^\s=!<>(),]+/y;
const NUMBER = /[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?/y;

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const fail = (at: number, problem: string): never => {
    throw new WhereSyntaxError(at + 1, problem, text);
  };
  /** The text quoted at `at` (its quote, or a backslash, escaped by a backslash) and where it ends. */
  const quoted = (at: number): { value: string; end: number } => {
    const quote = text[at];
    let value = "";
    let j = at + 1;
    for (; j < text.length && text[j] !== quote; j++) {
      if (text[j] === "\\" && j + 1 < text.length) j++;
      value += text[j];
    }
    if (j >= text.length) fail(at, `unterminated text (no closing ${quote})`);
    return { value, end: j + 1 };
  };
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")" || c === ",") {
      tokens.push({ kind: "punct", text: c, at: i });
      i++;
      continue;
    }
    const op = /(?:==|!=|<>|<=|>=|=|<|>)/y;
    op.lastIndex = i;
    const opMatch = op.exec(text);
    if (opMatch) {
      tokens.push({ kind: "op", text: opMatch[0], at: i });
      i += opMatch[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      const { value, end } = quoted(i);
      tokens.push({ kind: "string", value, at: i });
      i = end;
      continue;
    }
    // A metric's name is flat: all of it is one field, dots, slashes and dashes included.
    if (text.startsWith("metrics.", i)) {
      const at = i;
      const from = i + "metrics.".length;
      let name: string;
      if (text[from] === '"' || text[from] === "'") {
        const q = quoted(from);
        [name, i] = [q.value, q.end];
      } else {
        METRIC.lastIndex = from;
        name = METRIC.exec(text)?.[0] ?? "";
        i = from + name.length;
      }
      tokens.push({ kind: "word", text: `metrics.${name}`, at });
      continue;
    }
    NUMBER.lastIndex = i;
    const num = NUMBER.exec(text);
    if (num && (c !== "+" && c !== "-" ? true : num[0].length > 1)) {
      const value = Number(num[0]);
      if (!Number.isFinite(value)) fail(i, `the number ${num[0]} is out of range`);
      tokens.push({ kind: "number", value, text: num[0], at: i });
      i += num[0].length;
      continue;
    }
    WORD.lastIndex = i;
    const word = WORD.exec(text);
    if (word) {
      tokens.push({ kind: "word", text: word[0], at: i });
      i += word[0].length;
      continue;
    }
    fail(i, `unexpected character ${JSON.stringify(c)}`);
  }
  tokens.push({ kind: "end", at: text.length });
  return tokens;
}

const VALUE_HELP = 'a number, "quoted text", true, false or null';

/** Parses a --where expression into the condition tree job-query.ts compiles. */
export function parseWhere(text: string): JobCondition {
  const tokens = tokenize(text);
  let next = 0;
  const peek = () => tokens[next];
  const fail = (token: Token, problem: string, hint?: string): never => {
    throw new WhereSyntaxError(token.at + 1, problem, text, hint);
  };
  const isWord = (token: Token, word: string) => token.kind === "word" && token.text.toLowerCase() === word;
  const describe = (token: Token) =>
    token.kind === "end" ? "the end" : token.kind === "string" ? "text" : JSON.stringify(token.kind === "number" ? token.text : token.text);

  const value = (): ScalarValue => {
    const token = tokens[next];
    if (token.kind === "number") {
      next++;
      return token.value;
    }
    if (token.kind === "string") {
      next++;
      return token.value;
    }
    if (token.kind === "word") {
      const word = token.text.toLowerCase();
      if (word === "true" || word === "false" || word === "null") {
        next++;
        return word === "null" ? null : word === "true";
      }
      return fail(token, "expected a value", `${VALUE_HELP}; quote text: "${token.text}"`);
    }
    return fail(token, `expected a value${token.kind === "end" ? "" : `, found ${describe(token)}`}`, VALUE_HELP);
  };

  const term = (): JobCondition => {
    const token = tokens[next];
    if (token.kind === "punct" && token.text === "(") {
      next++;
      const inner = expression();
      const close = tokens[next];
      if (!(close.kind === "punct" && close.text === ")")) fail(close, `expected ")" to close the "(" at position ${token.at + 1}, found ${describe(close)}`);
      next++;
      return inner;
    }
    if (token.kind !== "word" || ["and", "or", "in", "exists"].includes(token.text.toLowerCase())) {
      return fail(token, `expected a field, found ${describe(token)}`, `the fields are ${FIELDS_HELP}`);
    }
    let field;
    try {
      field = fieldRef(token.text);
    } catch (err) {
      const [problem, hint] = (err as Error).message.split("; ");
      return fail(token, problem, hint);
    }
    next++;
    const opToken = tokens[next];
    if (isWord(opToken, "exists")) {
      next++;
      return { field, op: "exists", value: true } satisfies Condition;
    }
    if (isWord(opToken, "in")) {
      next++;
      const open = tokens[next];
      if (!(open.kind === "punct" && open.text === "(")) fail(open, `expected "(" after in, as in ${token.text} in (1, 2)`);
      next++;
      const values = [value()];
      while (peek().kind === "punct" && (peek() as { text: string }).text === ",") {
        next++;
        values.push(value());
      }
      const close = tokens[next];
      if (!(close.kind === "punct" && close.text === ")")) fail(close, `expected "," or ")" in the list after in, found ${describe(close)}`);
      next++;
      return { field, op: "in", value: values } satisfies Condition;
    }
    if (opToken.kind !== "op") return fail(opToken, `expected a comparison after ${token.text}, found ${describe(opToken)}`, "=, !=, <, <=, >, >=, in (...), exists");
    next++;
    return { field, op: OPERATORS[opToken.text], value: value() } satisfies Condition;
  };

  const conjunction = (): JobCondition => {
    const parts = [term()];
    while (isWord(peek(), "and")) {
      next++;
      parts.push(term());
    }
    return parts.length === 1 ? parts[0] : { and: parts };
  };

  const expression = (): JobCondition => {
    const parts = [conjunction()];
    while (isWord(peek(), "or")) {
      next++;
      parts.push(conjunction());
    }
    return parts.length === 1 ? parts[0] : { or: parts };
  };

  if (peek().kind === "end") fail(peek(), "the expression is empty", "write a condition such as params.lr < 0.01");
  const tree = expression();
  const rest = peek();
  if (rest.kind !== "end") fail(rest, `expected "and", "or" or the end, found ${describe(rest)}`);
  return tree;
}
