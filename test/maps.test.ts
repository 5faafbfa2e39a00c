// bpf(2) map semantics of the datapath's maps, through the control plane's map API.
import fc from 'fast-check';
import { beforeEach, describe, expect, it } from 'vitest';
import { Datapath, MapError } from '../control/runtime/datapath.js';
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST, MAPS, encode, LB4_BACKEND, CT4_TUPLE, CT_ENTRY } from '../control/compile/layout.js';
import { endpoints, makeService, program, resolvedService, runFrames, tcp } from './helpers.js';

const backend = (i: number) => ({ address: `10.0.0.${i}`, port: 8000 + i, proto: 6, flags: 0 });
const tuple = (i: number) => ({ saddr: '10.1.0.1', daddr: '10.96.0.1', sport: 40000 + i, dport: 80, proto: 6, dir: 0 });

function errno(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof MapError) return e.message.match(/E[A-Z0-9]+/)![0];
    throw e;
  }
  return 'ok';
}

describe('HASH map', () => {
  let dp: Datapath;
  beforeEach(async () => {
    dp = await Datapath.load();
    dp.createMap('nodeIps4', 4);
  });
  const node = (i: number) => ({ address: `10.0.${i >> 8}.${i & 255}` });
  const present = (i: number) => ({ present: i });

  it('honours BPF_ANY, BPF_NOEXIST and BPF_EXIST', () => {
    const m = dp.map('nodeIps4');
    expect(errno(() => m.update(node(1), present(1), BPF_EXIST))).toBe('ENOENT');
    m.update(node(1), present(1), BPF_NOEXIST);
    expect(errno(() => m.update(node(1), present(2), BPF_NOEXIST))).toBe('EEXIST');
    expect(m.lookup(node(1))).toEqual(present(1));
    m.update(node(1), present(3), BPF_EXIST);
    expect(m.lookup(node(1))).toEqual(present(3));
    m.update(node(1), present(4), BPF_ANY);
    expect(m.lookup(node(1))).toEqual(present(4));
    expect(m.count()).toBe(1);
  });

  it('refuses an insert into a full map with E2BIG and keeps every entry', () => {
    const m = dp.map('nodeIps4');
    for (let i = 1; i <= 4; i++) m.update(node(i), present(i));
    expect(() => m.update(node(5), present(5))).toThrow(/E2BIG.*max_entries 4/);
    for (let i = 1; i <= 4; i++) expect(m.lookup(node(i))).toEqual(present(i));
    // Replacing an existing key still works when full.
    m.update(node(2), present(9));
    expect(m.lookup(node(2))).toEqual(present(9));
    // After a delete there is room again.
    expect(m.delete(node(3))).toBe(true);
    expect(m.delete(node(3))).toBe(false);
    m.update(node(5), present(5), BPF_NOEXIST);
    expect(m.count()).toBe(4);
  });

  it('iterates every key exactly once, also across deletes', () => {
    const m = dp.map('nodeIps4');
    for (let i = 1; i <= 4; i++) m.update(node(i * 1000), present(i));
    m.delete(node(2000));
    const keys = [...m.entries()].map(([k]) => k.address).sort();
    expect(keys).toEqual([node(1000), node(3000), node(4000)].map((n) => n.address).sort());
  });

  it('rejects values of the wrong size before they reach the datapath', () => {
    const m = dp.map('nodeIps4');
    expect(() => m.updateRaw(encode(MAPS.nodeIps4.key, node(1)), new Uint8Array(3))).toThrow(/4 bytes/);
  });
});

describe('HASH map of backend ids (an array by id)', () => {
  let dp: Datapath;
  beforeEach(async () => {
    dp = await Datapath.load();
    dp.createMap('lb4Backends', 4);
  });

  it('holds ids 0 to max_entries with HASH semantics: flags, deletes, ascending walks, E2BIG past the last id', () => {
    const m = dp.map('lb4Backends');
    expect(m.lookup({ value: 1 })).toBeUndefined();
    expect(errno(() => m.update({ value: 1 }, backend(1), BPF_EXIST))).toBe('ENOENT');
    m.update({ value: 4 }, backend(4), BPF_NOEXIST);
    m.update({ value: 1 }, backend(1), BPF_NOEXIST);
    m.update({ value: 2 }, backend(2));
    expect(errno(() => m.update({ value: 1 }, backend(9), BPF_NOEXIST))).toBe('EEXIST');
    m.update({ value: 1 }, backend(9), BPF_EXIST);
    expect(m.lookup({ value: 1 })).toEqual(backend(9));
    expect(errno(() => m.update({ value: 5 }, backend(5)))).toBe('E2BIG');
    expect(m.count()).toBe(3);
    expect([...m.entries()].map(([k]) => k.value)).toEqual([1, 2, 4]);
    expect(m.delete({ value: 2 })).toBe(true);
    expect(m.delete({ value: 2 })).toBe(false);
    expect(m.lookup({ value: 2 })).toBeUndefined();
    expect([...m.entries()].map(([k]) => k.value)).toEqual([1, 4]);
    const batched: number[] = [];
    m.scanRaw((key) => batched.push(new DataView(key.buffer, key.byteOffset).getUint32(0, true)));
    expect(batched).toEqual([1, 4]);
    expect(m.count()).toBe(2);
  });
});

describe('LRU_HASH map', () => {
  let dp: Datapath;
  beforeEach(async () => {
    dp = await Datapath.load();
    dp.createMap('snat4', 3);
  });
  const origin = (i: number) => ({ address: '10.244.0.1', port: 1000 + i, nodePort: 0 });

  it('evicts the least recently used entry when full', () => {
    const m = dp.map('snat4');
    for (let i = 1; i <= 3; i++) m.update(tuple(i), origin(i));
    m.update(tuple(1), origin(11)); // 1 is now the most recently used
    m.update(tuple(4), origin(4)); // evicts 2
    expect(m.lookup(tuple(2))).toBeUndefined();
    expect(m.lookup(tuple(1))).toEqual(origin(11));
    expect(m.lookup(tuple(3))).toEqual(origin(3));
    expect(m.lookup(tuple(4))).toEqual(origin(4));
    m.update(tuple(5), origin(5)); // evicts 3: control-plane lookups do not count as use
    expect(m.lookup(tuple(3))).toBeUndefined();
    expect([...m.entries()].map(([k]) => k.sport).sort()).toEqual([40001, 40004, 40005]);
  });

  it('never fails an insert, and BPF_NOEXIST still sees existing keys', () => {
    const m = dp.map('snat4');
    for (let i = 1; i <= 50; i++) m.update(tuple(i), origin(i), BPF_NOEXIST);
    expect(m.count()).toBe(3);
    expect(errno(() => m.update(tuple(50), origin(1), BPF_NOEXIST))).toBe('EEXIST');
  });
});

describe('conntrack map (a flow table: one record per flow, both keys)', () => {
  const VIP = '10.96.0.10';
  const CLIENT = '10.244.9.9';
  const BACKEND = '10.244.1.5';
  const flows = async (ctEntries: number, count: number) => {
    const svc = makeService('default', 'web', VIP, [{ port: 80 }]);
    const { dp } = await program([resolvedService(svc, [endpoints([[BACKEND, 8080]])])], { ctEntries });
    runFrames(
      dp,
      Array.from({ length: count }, (_, i) => tcp(CLIENT, 1000 + i, VIP, 80, ['SYN'])),
    );
    return dp;
  };
  const original = (port: number) => ({ saddr: CLIENT, daddr: VIP, sport: port, dport: 80, proto: 6, dir: 0 });
  const reply = (port: number) => ({ saddr: BACKEND, daddr: CLIENT, sport: 8080, dport: port, proto: 6, dir: 1 });
  const entry = (i: number) => ({ backendId: i, revNatIndex: 1, serviceId: 1, flags: 0, snatPort: 0, lastSeen: i });

  it('shows a flow as two keys with one value, and keeps the other key as it was when one is written', async () => {
    const dp = await flows(64, 1);
    const m = dp.map('ct4');
    expect(m.count()).toBe(2);
    const value = m.lookup(original(1000))!;
    expect(m.lookup(reply(1000))).toEqual(value);
    expect([...m.entries()].map(([k]) => k.dir)).toEqual([0, 1]); // a record's original key, then its reply key
    m.update(reply(1000), value); // the same bytes: nothing to split
    m.update(original(1000), { ...value, flags: 8 }); // FLUSHED on one direction only
    expect(m.lookup(original(1000))!.flags).toBe(8);
    expect(m.lookup(reply(1000))).toEqual(value);
    expect(m.count()).toBe(2);
    expect(m.delete(original(1000))).toBe(true);
    expect(m.lookup(reply(1000))).toEqual(value);
    expect(m.count()).toBe(1);
  });

  it('finds every key after deletes in an index 80% full, and walks each once', async () => {
    // 900 flows in a map of 1800 keys: 900 records, 2250 slots in 188 groups of 12, so groups overflow into their neighbours.
    const dp = await flows(1800, 900);
    const m = dp.map('ct4');
    expect(m.count()).toBe(1800);
    // Every third flow goes, and of every third other one its reply key: 300 records free, 300 holding one key.
    const keys = Array.from({ length: 900 }, (_, i) => [original(1000 + i), reply(1000 + i)]).flat();
    const goes = (i: number) => (i >> 1) % 3 === 0 || ((i >> 1) % 3 === 1 && i % 2 === 1);
    const kept = keys.filter((_, i) => !goes(i));
    keys.forEach((k, i) => {
      if (goes(i)) expect(m.delete(k)).toBe(true);
    });
    for (const [i, k] of keys.entries()) expect(m.lookup(k) !== undefined, JSON.stringify(k)).toBe(!goes(i));
    const walked = [...m.entries()].map(([k]) => JSON.stringify(k)).sort();
    expect(walked).toEqual(kept.map((k) => JSON.stringify(k)).sort());
    // The freed records take new keys, which are found as well; the others still are.
    for (let i = 0; i < 300; i++) m.update({ ...original(30000 + i), dir: 1 }, entry(i), BPF_NOEXIST);
    for (let i = 0; i < 300; i++) expect(m.lookup({ ...original(30000 + i), dir: 1 })).toEqual(entry(i));
    for (const k of kept) expect(m.lookup(k)).toBeDefined();
    expect(m.count()).toBe(kept.length + 300);
  });

  it('answers map-API operations as a map of keys would, on records of two keys split by writes (property)', async () => {
    // 40 flows made by packets, then operations on their 80 keys and 40 more: at most 120 keys in a map of
    // 400 (200 records), so nothing is evicted and a plain map of keys is the whole truth.
    const canonical = (o: Record<string, unknown>) => JSON.stringify(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
    const keys = [
      ...Array.from({ length: 40 }, (_, i) => [original(1000 + i), reply(1000 + i)]).flat(),
      ...Array.from({ length: 20 }, (_, i) => [original(2000 + i), reply(2000 + i)]).flat(),
    ];
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('update' as const),
        key: fc.nat(keys.length - 1),
        value: fc.oneof(fc.nat(3), fc.constant('same' as const)),
        flags: fc.constantFrom(BPF_ANY, BPF_NOEXIST, BPF_EXIST),
      }),
      fc.record({ kind: fc.constantFrom('delete' as const, 'lookup' as const), key: fc.nat(keys.length - 1) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 60 }), async (ops) => {
        const m = (await flows(400, 40)).map('ct4');
        const truth = new Map([...m.entries()].map(([k, v]) => [canonical(k), v]));
        for (const o of ops) {
          const key = keys[o.key];
          const id = canonical(key);
          if (o.kind === 'update') {
            const value = o.value === 'same' ? (truth.get(id) ?? entry(0)) : entry(o.value);
            const expected =
              o.flags === BPF_EXIST && !truth.has(id) ? 'ENOENT' : o.flags === BPF_NOEXIST && truth.has(id) ? 'EEXIST' : 'ok';
            expect(errno(() => m.update(key, value, o.flags))).toBe(expected);
            if (expected === 'ok') truth.set(id, value);
          } else if (o.kind === 'delete') {
            expect(m.delete(key)).toBe(truth.delete(id));
          } else {
            expect(m.lookup(key)).toEqual(truth.get(id));
          }
        }
        expect(m.count()).toBe(truth.size);
        const walked = [...m.entries()].map(([k, v]) => `${canonical(k)} ${canonical(v)}`).sort();
        expect(walked).toEqual([...truth].map(([k, v]) => `${k} ${canonical(v)}`).sort());
      }),
      { numRuns: 40 },
    );
  });

  it('keeps finding keys through thousands of deletes and inserts in a small table (no slot is lost)', async () => {
    const dp = await Datapath.load();
    dp.createMap('ct4', 64); // 32 records, 7 groups of 12 slots
    const m = dp.map('ct4');
    const key = (i: number) => ({ ...tuple(i % 60000), saddr: `10.1.${(i >> 8) & 255}.${i & 255}` });
    for (let i = 0; i < 32; i++) m.update(key(i), entry(i & 3), BPF_NOEXIST);
    for (let i = 32; i < 20000; i++) {
      expect(m.delete(key(i - 32))).toBe(true);
      m.update(key(i), entry(i & 3), BPF_NOEXIST);
      expect(m.lookup(key(i - 17))).toEqual(entry((i - 17) & 3));
    }
    expect(m.count()).toBe(32);
  });

  it('refuses keys that are no tuple of a flow: a direction other than 0 and 1, nonzero padding', async () => {
    const dp = await Datapath.load();
    dp.createMap('ct4', 8);
    const m = dp.map('ct4');
    expect(errno(() => m.update({ ...tuple(1), dir: 2 }, entry(1)))).toBe('EINVAL');
    const raw = encode(CT4_TUPLE, tuple(1));
    m.updateRaw(raw, encode(CT_ENTRY, entry(1)));
    raw[15] = 1;
    expect(errno(() => m.updateRaw(raw, encode(CT_ENTRY, entry(1))))).toBe('EINVAL');
    expect(m.lookupRaw(raw)).toBeUndefined();
    expect(m.count()).toBe(1);
  });

  it('when full, evicts a record no lookup or update used since the hand last passed (CLOCK)', async () => {
    const dp = await Datapath.load();
    dp.createMap('ct4', 6); // three records
    const m = dp.map('ct4');
    for (let i = 1; i <= 3; i++) m.update(tuple(i), entry(i)); // each update marks its record used
    m.update(tuple(4), entry(4)); // the hand clears all three, then evicts the first
    expect(m.lookup(tuple(1))).toBeUndefined();
    m.update(tuple(3), entry(33)); // used again
    m.update(tuple(5), entry(5)); // 2 is the first unused record after the hand
    expect([...m.entries()].map(([k]) => k.sport).sort()).toEqual([40003, 40004, 40005]);
  });
});

describe('BPF_MAP_LOOKUP_BATCH', () => {
  it('gives every entry once, key with its value, across calls that stop in the middle of a bucket chain', async () => {
    const dp = await Datapath.load();
    // 5000 entries in 8192 buckets: chains of two and more, and five calls of 1024 entries.
    dp.createMap('snat4', 5000);
    const m = dp.map('snat4');
    const origin = (i: number) => ({ address: '10.2.0.1', port: i, nodePort: 0 });
    for (let i = 1; i <= 5000; i++) m.update({ ...tuple(i), sport: 1 + (i % 60000), saddr: `10.1.${i >> 8}.${i & 255}` }, origin(i));
    for (let i = 1; i <= 5000; i += 7) m.delete({ ...tuple(i), sport: 1 + (i % 60000), saddr: `10.1.${i >> 8}.${i & 255}` });
    expectBatchesWalkAll(m);
  });

  it("gives every key of a conntrack map once, across calls that stop between a record's two keys", async () => {
    const svc = makeService('default', 'web', '10.96.0.10', [{ port: 80 }]);
    const { dp } = await program([resolvedService(svc, [endpoints([['10.244.1.5', 8080]])])], { ctEntries: 10000 });
    runFrames(
      dp,
      Array.from({ length: 2500 }, (_, i) => tcp('10.244.9.9', 1000 + i, '10.96.0.10', 80, ['SYN'])),
    );
    const m = dp.map('ct4');
    m.delete({ saddr: '10.244.9.9', daddr: '10.96.0.10', sport: 1000, dport: 80, proto: 6, dir: 0 }); // an odd count of keys before every call's end
    expect(m.count()).toBe(4999);
    expectBatchesWalkAll(m);
  });

  it('is refused on an ARRAY map', async () => {
    const dp = await Datapath.load();
    dp.createMap('backendStats', 4);
    expect(errno(() => dp.map('backendStats').scanRaw(() => {}))).toBe('EINVAL');
  });
});

/** BPF_MAP_LOOKUP_BATCH gives each key once, with the value a lookup gives, and as many as the map counts. */
function expectBatchesWalkAll(m: ReturnType<Datapath['map']>) {
  const seen = new Map<string, string>();
  m.scanRaw((key, value) => {
    const hex = Buffer.from(key).toString('hex');
    expect(seen.has(hex), hex).toBe(false);
    seen.set(hex, Buffer.from(value).toString('hex'));
  });
  const walked = new Map([...m.keysRaw()].map((k) => [Buffer.from(k).toString('hex'), Buffer.from(m.lookupRaw(k)!).toString('hex')]));
  expect(seen.size).toBe(m.count());
  expect(seen).toEqual(walked);
}

describe('ARRAY map', () => {
  it('has every index, refuses NOEXIST, out-of-range updates and deletes', async () => {
    const dp = await Datapath.load();
    dp.createMap('serviceStats', 2);
    const m = dp.map('serviceStats');
    expect(m.at(1)).toEqual({ packets: 0, bytes: 0, flows: 0 });
    m.update({ value: 1 }, { packets: 5, bytes: 6, flows: 7 });
    expect(m.at(1)).toEqual({ packets: 5, bytes: 6, flows: 7 });
    expect(errno(() => m.update({ value: 1 }, { packets: 1 }, BPF_NOEXIST))).toBe('EEXIST');
    expect(errno(() => m.update({ value: 2 }, { packets: 1 }))).toBe('E2BIG');
    expect(errno(() => m.delete({ value: 0 }))).toBe('EINVAL');
    expect(m.at(2)).toBeUndefined();
    expect([...m.keysRaw()].length).toBe(2);
  });
});

describe('map creation is checked like a verifier would', () => {
  it('refuses a layout the datapath does not expect, and a second creation', async () => {
    const dp = await Datapath.load();
    const { id, type } = MAPS.lb4Backends;
    expect(dp.exports.map_create(id, type, 4, LB4_BACKEND.size + 4, 16)).toBe(-22);
    expect(dp.exports.map_create(MAPS.ct4.id, MAPS.ct4.type, CT4_TUPLE.size, CT_ENTRY.size - 8, 16)).toBe(-22);
    expect(dp.exports.map_create(id, MAPS.ct4.type, 4, LB4_BACKEND.size, 16)).toBe(-22);
    dp.createMap('lb4Backends', 16);
    expect(() => dp.createMap('lb4Backends', 16)).toThrow(/EEXIST/);
    expect(encode(LB4_BACKEND, backend(1)).length).toBe(LB4_BACKEND.size);
  });

  it('a batch needs every map', async () => {
    const dp = await Datapath.load();
    dp.createMap('config', 1);
    const batch = dp.createBatch(1, 1024);
    expect(() => batch.run()).toThrow(/EINVAL/);
  });
});
