// Bytes for values that leave a job (checkpoints, results, analysis rows) and come back into one.
// Plain data is exactly v8.serialize's output (so anything that v8.deserializes old records still
// reads it). A value holding instances of the program's own classes gets a 4-byte marker, then
// v8 bytes of { body, instances }: `body` is the value with each instance replaced by a plain
// copy of its own fields, `instances` lists [that copy, class name]. Structured clone keeps
// object identity inside one serialization, so after decoding, each listed copy is the very
// object inside `body`, and giving it the class's prototype turns it back into an instance.
// Typed arrays and ArrayBuffers are never walked element by element: v8 copies them as blocks.
import { DefaultDeserializer, DefaultSerializer, deserialize } from "node:v8";
import { serializeOrExplain } from "./clone-check";

/** Resolves a class by the name it was declared with in the job's program (undefined if none). */
export type ClassLookup = (name: string) => Function | undefined;

/** Starts encodings that carry class instances; plain v8 bytes always start with 0xFF. */
const CLASS_MARKER = Buffer.from("NBJC", "latin1");

interface Envelope {
  body: unknown;
  instances: Array<[object, string]>;
}

/**
 * Bytes for a value leaving a job (checkpoint, result, analysis row): everything structured clone
 * handles (typed arrays, Map, Set, Date, BigInt, nested data) plus instances of classes declared in
 * the job's program, which decode as instances of that class. TypeError naming `path` (e.g.
 * "model.forward is a function") when it cannot; `purpose` starts the message.
 */
export function encodeValue(value: unknown, path: string, purpose: string): Buffer {
  if (!containsInstance(value, new Set())) return serializeOrExplain(value, path, purpose);
  const instances: Array<[object, string]> = [];
  const body = copyReplacingInstances(value, path, purpose, new Map(), instances);
  const serializer = new DefaultSerializer();
  serializer.writeRawBytes(CLASS_MARKER);
  serializer.writeHeader();
  try {
    serializer.writeValue({ body, instances } satisfies Envelope);
  } catch (err) {
    // Same check as for plain data, on the original value, for a message naming the bad part.
    serializeOrExplain(value, path, purpose);
    throw err;
  }
  return serializer.releaseBuffer();
}

/** The value `encodeValue` wrote; instances get their class from `classes` (an error names a missing one). */
export function decodeValue(bytes: Uint8Array, classes: ClassLookup): unknown {
  const hasClasses = bytes.byteLength >= CLASS_MARKER.length && CLASS_MARKER.every((b, i) => bytes[i] === b);
  let value: unknown;
  let instances: Envelope["instances"] = [];
  if (!hasClasses) {
    value = deserialize(bytes);
  } else {
    const deserializer = new DefaultDeserializer(Buffer.from(bytes.buffer, bytes.byteOffset + CLASS_MARKER.length, bytes.byteLength - CLASS_MARKER.length));
    deserializer.readHeader();
    const envelope = deserializer.readValue() as Envelope;
    value = envelope.body;
    instances = envelope.instances;
  }
  rehome(value, classes, new Set());
  const prototypes = new Map<string, object | undefined>();
  for (const [, name] of instances) {
    if (prototypes.has(name)) continue;
    const found = lookupSafely(classes, name);
    prototypes.set(name, typeof found === "function" && typeof found.prototype === "object" && found.prototype !== null ? (found.prototype as object) : undefined);
  }
  const missing = [...prototypes].filter(([, proto]) => proto === undefined).map(([name]) => name);
  if (missing.length > 0) {
    const which = missing.length === 1 ? `class ${missing[0]}` : `classes ${missing.join(", ")}`;
    throw new TypeError(`the stored value holds instances of ${which}, but the program declares no ${which} at its top level; declare ${missing.length === 1 ? "it" : "them"} (with the same name) in a snippet of the job`);
  }
  for (const [object, name] of instances) Object.setPrototypeOf(object, prototypes.get(name)!);
  return value;
}

// ---- encoding -------------------------------------------------------------------------------

const NATIVE_CODE = /\{\s*\[native code\]\s*\}\s*$/;
/** Prototype -> the class name of its instances, or null for built-ins (cached: a loop checkpoints the same shapes again). */
const classNames = new WeakMap<object, string | null>();

/** The name of the program class `value` is an instance of; null for built-ins and plain objects. */
function classNameOf(value: object): string | null {
  // Typed arrays (Buffer's class is a JS subclass inside Node) and ArrayBuffers go to v8 as they are.
  if (ArrayBuffer.isView(value)) return null;
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto === null) return null;
  const cached = classNames.get(proto);
  if (cached !== undefined) return cached;
  let name: string | null = null;
  // Some realm's Object.prototype (the job runs in its own vm context): a plain object.
  if (Object.getPrototypeOf(proto) !== null && Object.prototype.hasOwnProperty.call(proto, "constructor")) {
    const ctor = (proto as { constructor?: unknown }).constructor;
    if (typeof ctor === "function" && !NATIVE_CODE.test(Function.prototype.toString.call(ctor))) {
      name = typeof ctor.name === "string" ? ctor.name : "";
    }
  }
  classNames.set(proto, name);
  return name;
}

function tagOf(value: object): string {
  return Object.prototype.toString.call(value).slice(8, -1);
}

function isOpaqueBlock(value: object): boolean {
  return ArrayBuffer.isView(value) || value instanceof ArrayBuffer || tagOf(value) === "ArrayBuffer" || tagOf(value) === "SharedArrayBuffer";
}

/** Whether any program class instance is reachable from `value` (no copying; blocks not entered). */
function containsInstance(value: unknown, seen: Set<object>): boolean {
  if (typeof value !== "object" || value === null || seen.has(value)) return false;
  seen.add(value);
  if (isOpaqueBlock(value)) return false;
  if (classNameOf(value) !== null) return true;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item = value[i] as unknown;
      if (typeof item === "object" && item !== null && containsInstance(item, seen)) return true;
    }
    return false;
  }
  const tag = tagOf(value);
  if (tag === "Map") {
    for (const [key, item] of value as Map<unknown, unknown>) if (containsInstance(key, seen) || containsInstance(item, seen)) return true;
    return false;
  }
  if (tag === "Set") {
    for (const item of value as Set<unknown>) if (containsInstance(item, seen)) return true;
    return false;
  }
  for (const key of Object.keys(value)) if (containsInstance((value as Record<string, unknown>)[key], seen)) return true;
  return false;
}

/** A copy of `value` in which each class instance is a plain container of its own fields, listed in `instances`. */
function copyReplacingInstances(value: unknown, path: string, purpose: string, memo: Map<object, unknown>, instances: Envelope["instances"]): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (memo.has(value)) return memo.get(value);
  if (isOpaqueBlock(value)) return value;
  const name = classNameOf(value);
  if (name === "") throw new TypeError(`${purpose}: ${path} is an instance of an anonymous class; give the class a name (class Model { … }) declared at the top level of a snippet, so it can be found when the value is restored`);
  const tag = tagOf(value);
  let copy: object;
  if (Array.isArray(value)) {
    const array: unknown[] = new Array(value.length);
    memo.set(value, array);
    for (let i = 0; i < value.length; i++) array[i] = copyReplacingInstances(value[i], `${path}[${i}]`, purpose, memo, instances);
    copy = array;
  } else if (tag === "Map") {
    const map = new Map<unknown, unknown>();
    memo.set(value, map);
    for (const [key, item] of value as Map<unknown, unknown>) {
      map.set(copyReplacingInstances(key, `${path} (a key)`, purpose, memo, instances), copyReplacingInstances(item, `${path}.get(…)`, purpose, memo, instances));
    }
    copy = map;
  } else if (tag === "Set") {
    const set = new Set<unknown>();
    memo.set(value, set);
    for (const item of value as Set<unknown>) set.add(copyReplacingInstances(item, `${path} (an element)`, purpose, memo, instances));
    copy = set;
  } else if (tag === "Object" || name !== null) {
    const object: Record<string, unknown> = {};
    memo.set(value, object);
    for (const key of Object.keys(value)) {
      const child = /^[A-Za-z_$][\w$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
      object[key] = copyReplacingInstances((value as Record<string, unknown>)[key], child, purpose, memo, instances);
    }
    copy = object;
  } else {
    // Date, RegExp, Error, boxed primitives: v8 copies them as they are.
    memo.set(value, value);
    copy = value;
  }
  if (name !== null) instances.push([copy, name]);
  return copy;
}

// ---- decoding -------------------------------------------------------------------------------

/** Built-ins whose decoded instances (made in this thread's realm) get the job realm's prototype. */
const BUILTINS = [
  "Object", "Array", "Map", "Set", "Date", "RegExp", "Error", "TypeError", "RangeError", "SyntaxError", "ReferenceError", "EvalError", "URIError",
  "ArrayBuffer", "DataView", "Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array", "Uint32Array",
  "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array", "Number", "String", "Boolean",
] as const;
const builtinNames = new Map<object, string>();
for (const name of BUILTINS) {
  const ctor = (globalThis as unknown as Record<string, { prototype?: object } | undefined>)[name];
  if (ctor?.prototype) builtinNames.set(ctor.prototype, name);
}

/**
 * v8 makes decoded objects in this thread's own realm; a job runs in a vm context with its own
 * built-ins, where `x instanceof Float64Array` would then be false. Gives every decoded built-in
 * object the job realm's prototype (typed arrays are not entered, so this costs one step per object).
 */
function rehome(value: unknown, classes: ClassLookup, seen: Set<object>): void {
  const objectCtor = lookupSafely(classes, "Object");
  if (!objectCtor || objectCtor.prototype === Object.prototype) return;
  const target = new Map<string, object | undefined>();
  const protoFor = (name: string) => {
    if (!target.has(name)) target.set(name, lookupSafely(classes, name)?.prototype as object | undefined);
    return target.get(name);
  };
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const item = stack.pop();
    if (typeof item !== "object" || item === null || seen.has(item)) continue;
    seen.add(item);
    const proto = Object.getPrototypeOf(item) as object | null;
    const name = proto === null ? undefined : builtinNames.get(proto);
    if (name !== undefined) {
      const jobProto = protoFor(name);
      if (jobProto && jobProto !== proto) Object.setPrototypeOf(item, jobProto);
    }
    if (ArrayBuffer.isView(item) || name === "ArrayBuffer") continue;
    if (Array.isArray(item)) {
      for (let i = 0; i < item.length; i++) if (typeof item[i] === "object" && item[i] !== null) stack.push(item[i]);
    } else if (name === "Map") {
      for (const [k, v] of item as Map<unknown, unknown>) stack.push(k, v);
    } else if (name === "Set") {
      for (const v of item as Set<unknown>) stack.push(v);
    } else {
      for (const key of Object.keys(item)) stack.push((item as Record<string, unknown>)[key]);
    }
  }
}

function lookupSafely(classes: ClassLookup, name: string): Function | undefined {
  try {
    return classes(name);
  } catch {
    return undefined;
  }
}
