// bpf(2) map semantics of the datapath's maps, through the control plane's map API.
import { beforeEach, describe, expect, it } from 'vitest';
import { Datapath, MapError, u32Key } from '../control/runtime/datapath.js';
import { BPF_ANY, BPF_EXIST, BPF_NOEXIST, MAPS, decode, encode, LB4_BACKEND, CT4_TUPLE, CT_ENTRY } from '../control/compile/layout.js';

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
    dp.createMap('lb4Backends', 4);
  });

  it('honours BPF_ANY, BPF_NOEXIST and BPF_EXIST', () => {
    const m = dp.map('lb4Backends');
    expect(errno(() => m.update({ value: 1 }, backend(1), BPF_EXIST))).toBe('ENOENT');
    m.update({ value: 1 }, backend(1), BPF_NOEXIST);
    expect(errno(() => m.update({ value: 1 }, backend(2), BPF_NOEXIST))).toBe('EEXIST');
    expect(m.lookup({ value: 1 })).toEqual(backend(1));
    m.update({ value: 1 }, backend(3), BPF_EXIST);
    expect(m.lookup({ value: 1 })).toEqual(backend(3));
    m.update({ value: 1 }, backend(4), BPF_ANY);
    expect(m.lookup({ value: 1 })).toEqual(backend(4));
    expect(m.count()).toBe(1);
  });

  it('refuses an insert into a full map with E2BIG and keeps every entry', () => {
    const m = dp.map('lb4Backends');
    for (let i = 1; i <= 4; i++) m.update({ value: i }, backend(i));
    expect(() => m.update({ value: 5 }, backend(5))).toThrow(/E2BIG.*max_entries 4/);
    for (let i = 1; i <= 4; i++) expect(m.lookup({ value: i })).toEqual(backend(i));
    // Replacing an existing key still works when full.
    m.update({ value: 2 }, backend(9));
    expect(m.lookup({ value: 2 })).toEqual(backend(9));
    // After a delete there is room again.
    expect(m.delete({ value: 3 })).toBe(true);
    expect(m.delete({ value: 3 })).toBe(false);
    m.update({ value: 5 }, backend(5), BPF_NOEXIST);
    expect(m.count()).toBe(4);
  });

  it('iterates every key exactly once, also across deletes', () => {
    const m = dp.map('lb4Backends');
    for (let i = 1; i <= 4; i++) m.update({ value: i * 1000 }, backend(i));
    m.delete({ value: 2000 });
    const keys = [...m.entries()].map(([k]) => k.value).sort();
    expect(keys).toEqual([1000, 3000, 4000]);
  });

  it('rejects values of the wrong size before they reach the datapath', () => {
    const m = dp.map('lb4Backends');
    expect(() => m.updateRaw(u32Key(1), new Uint8Array(3))).toThrow(/8 bytes/);
  });
});

describe('LRU_HASH map', () => {
  let dp: Datapath;
  beforeEach(async () => {
    dp = await Datapath.load();
    dp.createMap('ct4', 3);
  });
  const entry = (i: number) => ({ backendId: i, revNatIndex: 1, serviceId: 1, flags: 0, snatPort: 0, lastSeen: i });

  it('evicts the least recently used entry when full', () => {
    const m = dp.map('ct4');
    for (let i = 1; i <= 3; i++) m.update(tuple(i), entry(i));
    m.update(tuple(1), entry(11)); // 1 is now the most recently used
    m.update(tuple(4), entry(4)); // evicts 2
    expect(m.lookup(tuple(2))).toBeUndefined();
    expect(m.lookup(tuple(1))).toEqual(entry(11));
    expect(m.lookup(tuple(3))).toEqual(entry(3));
    expect(m.lookup(tuple(4))).toEqual(entry(4));
    m.update(tuple(5), entry(5)); // evicts 3: control-plane lookups do not count as use
    expect(m.lookup(tuple(3))).toBeUndefined();
    expect([...m.entries()].map(([k]) => k.sport).sort()).toEqual([40001, 40004, 40005]);
  });

  it('never fails an insert, and BPF_NOEXIST still sees existing keys', () => {
    const m = dp.map('ct4');
    for (let i = 1; i <= 50; i++) m.update(tuple(i), entry(i), BPF_NOEXIST);
    expect(m.count()).toBe(3);
    expect(errno(() => m.update(tuple(50), entry(1), BPF_NOEXIST))).toBe('EEXIST');
  });
});

describe('BPF_MAP_LOOKUP_BATCH', () => {
  it('gives every entry once, key with its value, across calls that stop in the middle of a bucket chain', async () => {
    const dp = await Datapath.load();
    // 5000 entries in 8192 buckets: chains of two and more, and five calls of 1024 entries.
    dp.createMap('ct4', 5000);
    const m = dp.map('ct4');
    const entry = (i: number) => ({ backendId: i, revNatIndex: 1, serviceId: 1, flags: 0, snatPort: 0, lastSeen: i });
    for (let i = 1; i <= 5000; i++) m.update({ ...tuple(i), sport: 1 + (i % 60000), saddr: `10.1.${i >> 8}.${i & 255}` }, entry(i));
    for (let i = 1; i <= 5000; i += 7) m.delete({ ...tuple(i), sport: 1 + (i % 60000), saddr: `10.1.${i >> 8}.${i & 255}` });
    const seen = new Map<string, number>();
    m.scanRaw((key, value) => {
      const hex = Buffer.from(key).toString('hex');
      expect(seen.has(hex), hex).toBe(false);
      seen.set(hex, new DataView(value.buffer, value.byteOffset).getUint32(0, true));
    });
    const walked = new Map([...m.keysRaw()].map((k) => [Buffer.from(k).toString('hex'), m.lookup(decodeKey(k))!.backendId as number]));
    expect(seen.size).toBe(m.count());
    expect(seen).toEqual(walked);
  });

  it('is refused on an ARRAY map', async () => {
    const dp = await Datapath.load();
    dp.createMap('backendStats', 4);
    expect(errno(() => dp.map('backendStats').scanRaw(() => {}))).toBe('EINVAL');
  });
});

const decodeKey = (raw: Uint8Array) => decode(CT4_TUPLE, raw);

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
