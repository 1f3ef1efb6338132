// What a reused analysis context holds, as a comparable record: the analysis thread keeps one
// context per job warm (its functions stay optimised) and reuses it for the next checkpoint only
// if the record taken then equals the one taken right after the job's top level ran. So a
// variable, global or object left changed by one checkpoint's analysis is never seen by the next:
// that checkpoint gets a fresh context instead. The walk never runs code of the job (no getters,
// no proxies' traps, no user iterators): it reads property descriptors and internal slots only.
import { types } from "node:util";

/** A record of the state reachable from some roots: compared entry by entry (Object.is), byte arrays by content. */
export interface StateRecord {
  entries: unknown[];
}

/** Where the walk stops: state it cannot see, or too much of it to compare cheaply. */
export class UnverifiableState extends Error {}

const MAX_ENTRIES = 200_000;
const MAX_BYTES = 64 * 1024 * 1024;

class Bytes {
  constructor(readonly copy: Buffer) {}
}

/** The roots of a record: named values, each walked deeply, or only by identity (host objects shared by every job). */
export interface StateRoots {
  /** name → value, walked through everything reachable. */
  deep: Array<[string, unknown]>;
  /** name → value compared by identity only (console, process, require…: the worker's, not the job's). */
  shallow: Array<[string, unknown]>;
  /** name → object refilled in place by a restore (a registered const): only what the refill does not replace is walked. */
  refilled: Array<[string, unknown]>;
  /** Objects compared by identity wherever they are reached (the global object, the host objects). */
  opaque?: readonly unknown[];
}

/** Where the walk's entries go: recorded, or compared with a record as they come. */
interface Sink {
  value(item: unknown): void;
  /** The bytes of an array buffer or view (compared by content). */
  bytes(view: Uint8Array): void;
}

/** Thrown by a comparing sink at the first difference: the walk stops there. */
class Differs extends Error {}

/**
 * Walks the roots. Throws UnverifiableState when it meets state it cannot read without running
 * the job's code (a Proxy, WeakMap, WeakSet, an iterator or generator's position, or an object
 * inheriting from one of `statefulPrototypes`: WeakRef, FinalizationRegistry, the built-in
 * iterators) or when the state is too large to compare cheaply.
 */
export function recordState(roots: StateRoots, statefulPrototypes: ReadonlySet<object>): StateRecord {
  const entries: unknown[] = [];
  walkState(roots, statefulPrototypes, {
    value: (item) => {
      entries.push(item);
      if (entries.length > MAX_ENTRIES) throw new UnverifiableState(`more than ${MAX_ENTRIES} values to compare`);
    },
    bytes: (view) => void entries.push(new Bytes(Buffer.from(view))),
  });
  return { entries };
}

/**
 * Whether the state reachable from the roots now is the state `record` describes:
 * sameState(record, recordState(roots)) without building the second record (it stops at the first
 * difference and copies no bytes). Throws UnverifiableState as recordState does.
 */
export function matchesState(record: StateRecord, roots: StateRoots, statefulPrototypes: ReadonlySet<object>): boolean {
  const { entries } = record;
  let at = 0;
  try {
    walkState(roots, statefulPrototypes, {
      value: (item) => {
        if (at >= entries.length || !Object.is(entries[at], item)) throw new Differs();
        at += 1;
      },
      bytes: (view) => {
        const was = entries[at];
        if (!(was instanceof Bytes) || !was.copy.equals(view)) throw new Differs();
        at += 1;
      },
    });
  } catch (err) {
    if (err instanceof Differs) return false;
    throw err;
  }
  return at === entries.length;
}

function walkState(roots: StateRoots, statefulPrototypes: ReadonlySet<object>, sink: Sink): void {
  const seen = new Set<object>();
  for (const value of roots.opaque ?? []) if ((typeof value === "object" || typeof value === "function") && value !== null) seen.add(value);
  let bytes = 0;
  const push = (item: unknown) => sink.value(item);

  const walkKeys = (target: object, keep?: (key: string | symbol) => boolean) => {
    for (const key of Reflect.ownKeys(target)) {
      if (keep && !keep(key)) continue;
      const d = Reflect.getOwnPropertyDescriptor(target, key)!;
      push(key);
      push((d.enumerable ? 1 : 0) | (d.configurable ? 2 : 0) | (d.writable ? 4 : 0));
      if ("value" in d) walk(d.value);
      else {
        push(d.get);
        push(d.set);
      }
    }
  };

  const walk = (value: unknown): void => {
    push(value);
    if ((typeof value !== "object" && typeof value !== "function") || value === null) return;
    if (seen.has(value)) return;
    seen.add(value);
    if (types.isProxy(value)) throw new UnverifiableState("a Proxy");
    // A function (most of what the built-ins hold) has none of the internal state checked below.
    const plain = typeof value === "function";
    if (!plain && (types.isWeakMap(value) || types.isWeakSet(value))) throw new UnverifiableState("a WeakMap or WeakSet");
    if (!plain && (types.isGeneratorObject(value) || types.isMapIterator(value) || types.isSetIterator(value))) throw new UnverifiableState("an iterator or generator");
    const proto = Reflect.getPrototypeOf(value);
    for (let p = proto; p; p = Reflect.getPrototypeOf(p)) {
      if (statefulPrototypes.has(p)) throw new UnverifiableState("an iterator, WeakRef or FinalizationRegistry");
    }
    push(proto);
    push(Reflect.isExtensible(value));
    if (proto) walk(proto);
    if (plain) {
      walkKeys(value);
      return;
    }
    if (types.isArrayBufferView(value) || types.isAnyArrayBuffer(value)) {
      const view = types.isAnyArrayBuffer(value) ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
      bytes += view.byteLength;
      if (bytes > MAX_BYTES) throw new UnverifiableState(`more than ${MAX_BYTES} bytes of arrays to compare`);
      sink.bytes(view);
      if (!types.isAnyArrayBuffer(value)) walkKeys(value, (key) => typeof key === "symbol" || !/^\d+$/.test(key));
      return;
    }
    if (types.isMap(value)) {
      Map.prototype.forEach.call(value, (v: unknown, k: unknown) => {
        walk(k);
        walk(v);
      });
    } else if (types.isSet(value)) {
      Set.prototype.forEach.call(value, (v: unknown) => walk(v));
    } else if (types.isDate(value)) {
      push(Date.prototype.getTime.call(value));
    }
    walkKeys(value);
  };

  for (const [name, value] of roots.shallow) {
    push(name);
    push(value);
  }
  for (const [name, value] of roots.deep) {
    push(name);
    try {
      walk(value);
    } catch (err) {
      if (err instanceof UnverifiableState) throw new UnverifiableState(`${err.message} (reached from ${name})`);
      throw err;
    }
  }
  for (const [name, value] of roots.refilled) {
    push(name);
    push(value);
    if ((typeof value !== "object" && typeof value !== "function") || value === null || seen.has(value)) continue;
    seen.add(value);
    if (types.isProxy(value)) throw new UnverifiableState("a Proxy");
    push(Reflect.getPrototypeOf(value));
    // A refill replaces elements (arrays, typed arrays), entries (Map, Set) and enumerable keys
    // (plain objects); whatever else the object holds must be as it was.
    const array = Array.isArray(value) || types.isTypedArray(value);
    walkKeys(value, (key) => {
      if (typeof key === "symbol") return true;
      if (array) return key !== "length" && !/^\d+$/.test(key);
      if (types.isMap(value) || types.isSet(value)) return true;
      return !Object.prototype.propertyIsEnumerable.call(value, key);
    });
  }
}

/** Whether two records describe the same state (same objects, same values, same bytes). */
export function sameState(a: StateRecord, b: StateRecord): boolean {
  if (a.entries.length !== b.entries.length) return false;
  for (let i = 0; i < a.entries.length; i++) {
    const x = a.entries[i];
    const y = b.entries[i];
    if (x instanceof Bytes && y instanceof Bytes) {
      if (!x.copy.equals(y.copy)) return false;
    } else if (!Object.is(x, y)) return false;
  }
  return true;
}
