// Orders snippets so that each comes after the declarations it refers to.
import type { ts } from "ts-morph";
import { declaredNames, parseSource, referencedNames } from "./bundle-analysis";

export interface OrderItem {
  /** Top-level names the snippet declares. */
  names: readonly string[];
  /** Free names it uses; `eager` when used while the program loads. */
  refs: ReadonlyMap<string, { eager: boolean }>;
}

export function orderItemFromSource(source: string, sf: ts.SourceFile = parseSource(source)): OrderItem {
  return { names: declaredNames(sf), refs: referencedNames(sf) };
}

/**
 * A dependency order of `items` (indices). Every snippet comes after the snippets whose names
 * it uses where that is possible; when snippets use each other (mutual recursion between
 * functions), only load-time uses must be respected, because a use inside a function body runs
 * later. Ties keep the given order, so the result is stable for the same input. A cycle of
 * load-time uses cannot be ordered; it keeps the given order and the type check reports it.
 */
export function dependencyOrder(items: readonly OrderItem[]): number[] {
  const owner = new Map<string, number>();
  items.forEach((item, i) => { for (const n of item.names) owner.set(n, i); });
  // deps[i]: j -> eager, meaning i must come after j.
  const deps = items.map((item, i) => {
    const out = new Map<number, boolean>();
    for (const [name, { eager }] of item.refs) {
      const j = owner.get(name);
      if (j === undefined || j === i) continue;
      out.set(j, eager || (out.get(j) ?? false));
    }
    return out;
  });

  const components = stronglyConnected(items.length, (i) => deps[i].keys());
  const componentOf = new Array<number>(items.length);
  components.forEach((c, ci) => { for (const i of c) componentOf[i] = ci; });

  // Order the components (a DAG), then the members of each by their load-time uses only.
  const componentDeps = components.map((c) => {
    const s = new Set<number>();
    for (const i of c) for (const j of deps[i].keys()) if (componentOf[j] !== componentOf[i]) s.add(componentOf[j]);
    return s;
  });
  const order: number[] = [];
  for (const ci of stableTopological(components.length, (ci) => componentDeps[ci], (ci) => Math.min(...components[ci]))) {
    const members = [...components[ci]].sort((a, b) => a - b);
    const local = stableTopological(members.length,
      (m) => new Set([...deps[members[m]]].filter(([j, eager]) => eager && componentOf[j] === ci).map(([j]) => members.indexOf(j))),
      (m) => members[m]);
    order.push(...local.map((m) => members[m]));
  }
  return order;
}

/** Kahn's algorithm choosing the ready node with the smallest key; nodes left in a cycle follow in key order. */
function stableTopological(count: number, depsOf: (n: number) => ReadonlySet<number>, key: (n: number) => number): number[] {
  const remaining = new Set(Array.from({ length: count }, (_, i) => i));
  const done = new Set<number>();
  const out: number[] = [];
  while (remaining.size > 0) {
    let best: number | undefined;
    for (const n of remaining) {
      if ([...depsOf(n)].every((d) => done.has(d) || d === n) && (best === undefined || key(n) < key(best))) best = n;
    }
    if (best === undefined) {
      // A cycle: take the earliest node and carry on.
      best = [...remaining].sort((a, b) => key(a) - key(b))[0];
    }
    remaining.delete(best);
    done.add(best);
    out.push(best);
  }
  return out;
}

/** Tarjan's strongly connected components (iterative enough for snippet counts: recursion depth = snippets). */
function stronglyConnected(count: number, successors: (n: number) => Iterable<number>): number[][] {
  let next = 0;
  const index = new Array<number>(count).fill(-1);
  const low = new Array<number>(count).fill(0);
  const onStack = new Array<boolean>(count).fill(false);
  const stack: number[] = [];
  const result: number[][] = [];
  const connect = (v: number): void => {
    index[v] = low[v] = next++;
    stack.push(v);
    onStack[v] = true;
    for (const w of successors(v)) {
      if (index[w] === -1) { connect(w); low[v] = Math.min(low[v], low[w]); }
      else if (onStack[w]) low[v] = Math.min(low[v], index[w]);
    }
    if (low[v] === index[v]) {
      const component: number[] = [];
      let w: number;
      do { w = stack.pop()!; onStack[w] = false; component.push(w); } while (w !== v);
      result.push(component);
    }
  };
  for (let v = 0; v < count; v++) if (index[v] === -1) connect(v);
  return result;
}
