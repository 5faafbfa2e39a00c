// The compile leaves each Maglev table to its first reader (control/compile/maglev.ts
// lazyTable): the tables read must be the ones maglevTableOf makes of each set's
// backends, computed here again from the compiled backends, and every copy
// (a spread, a worker's structured clone) must carry them whole.
import { describe, expect, it } from 'vitest';
import { compile, type BackendSet, type Compiled } from '../control/compile/compiler.js';
import { maglevTableOf } from '../control/compile/maglev.js';
import { Mulberry32 } from '../control/common/random.js';
import { endpoints, makeNode, makeService, resolvedService, stateOf } from './helpers.js';

const M = 251;
const NODE = 'node-a';

/** Services of 0-40 endpoints each, IPv4 or IPv6, some on this node, some with a Local policy. */
function randomCompile(seed: number): Compiled {
  const random = new Mulberry32(seed);
  const resolved = Array.from({ length: 30 }, (_, s) => {
    const v6 = random.int(0, 3) === 0;
    const clusterIP = v6 ? `fd00:96::${s + 1}` : `10.96.0.${s + 1}`;
    const local = random.int(0, 2) === 0 ? 'Local' : 'Cluster';
    const svc = makeService('default', `svc-${s}`, clusterIP, [{ port: 80, nodePort: 30000 + s }], {
      type: 'NodePort',
      ipFamilies: [v6 ? 'IPv6' : 'IPv4'],
      externalTrafficPolicy: local,
    });
    const eps = Array.from({ length: random.int(0, 40) }, (_, e): [string, number, string] => [
      v6 ? `fd00:244::${s}:${e + 1}` : `10.244.${s}.${e + 1}`,
      8000 + random.int(0, 3),
      random.int(0, 1) === 0 ? NODE : 'node-b',
    ]);
    return resolvedService(svc, [endpoints(eps)]);
  });
  const state = stateOf(resolved, [makeNode(NODE, '192.168.0.10', 'fd00::10'), makeNode('node-b', '192.168.0.11')]);
  return compile(state, resolved, { seed, maglevTableSize: M, node: NODE });
}

/** Every non-empty backend set of the compiled Service ports. */
function sets(compiled: Compiled): BackendSet[] {
  return compiled.services
    .flatMap((cs) => [cs.cluster, cs.local, cs.cluster6, cs.local6])
    .filter((s): s is BackendSet => !!s && s.backendIds.length > 0);
}

/** The table of a set, made again from the compiled backends' addresses and ids. */
function expectedTable(compiled: Compiled, set: BackendSet, seed: number): Uint32Array {
  const byId = new Map(compiled.backends.map((b) => [b.id, b]));
  const names = set.backendIds.map((id) => `${byId.get(id)!.ip}:${byId.get(id)!.port}`);
  return maglevTableOf(names, set.backendIds, M, seed);
}

const built = (o: object, key: string) => Object.getOwnPropertyDescriptor(o, key)!.get === undefined;

describe('Maglev tables built on first read', () => {
  it('are built only when read, and are the tables of their backend sets', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const compiled = randomCompile(seed);
      const all = sets(compiled);
      expect(all.length).toBeGreaterThan(20);
      for (const set of all) expect(built(set, 'maglev'), 'unread').toBe(false);
      for (const set of all) {
        expect(set.maglev).toEqual(expectedTable(compiled, set, seed));
        expect(built(set, 'maglev')).toBe(true);
      }
    }
  });

  it('give the map entries the same tables', () => {
    const compiled = randomCompile(9);
    const byTable = new Map(
      compiled.services.flatMap((cs) => [cs.cluster, cs.local, cs.cluster6, cs.local6].map((set, i) => [4 * cs.id + i, set])),
    );
    expect(compiled.entries.maglev.length).toBe(sets(compiled).length);
    for (const { table, slots } of compiled.entries.maglev) {
      expect(slots).toBe(byTable.get(table)!.maglev);
      expect(slots.length).toBe(M);
    }
  });

  it('are carried whole by a spread and by a structured clone, read or not', () => {
    const compiled = randomCompile(11);
    const [first, second] = sets(compiled);
    const spread = { ...first };
    expect(built(spread, 'maglev')).toBe(true);
    expect(spread.maglev).toEqual(expectedTable(compiled, first, 11));
    const clone = structuredClone(compiled);
    for (const [i, set] of sets(clone).entries()) expect(set.maglev).toEqual(sets(compiled)[i].maglev);
    for (const [i, { slots }] of clone.entries.maglev.entries()) expect(slots).toEqual(compiled.entries.maglev[i].slots);
    expect(second.maglev.length).toBe(M);
  });
});
