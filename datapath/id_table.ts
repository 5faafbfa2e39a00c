// The backend maps' storage: a HASH map to the control plane (u32 backend id
// -> lb4_backend / lb6_backend), stored as an array indexed by the id, as
// Katran keeps its reals, with a byte per id saying whether the key is in
// the map (maps.ts dispatches here). Backend ids are dense, 1 up to the
// number of backends the maps are sized for (the backendStats ARRAY is
// indexed by them too), so a lookup on every packet of a flow is one load
// of a byte and one of the value, with no hashing and no chain to walk.
// Keys past max_entries are refused with E2BIG: they cannot be ids.

import { BPF_EXIST, BPF_NOEXIST, E2BIG, EEXIST, ENOENT } from './layout';
import { reserve } from './memory';

@unmanaged
export class IdTable {
  valueSize: u32;
  stride: u32;
  /** The largest key: max_entries (keys 0 to max_entries, 0 never used by the control plane). */
  maxKey: u32;
  count: u32;
  values: usize;
  /** u8 per key: 1 when the key is in the map. */
  present: usize;
}

/** The table for an id-keyed map of `maxEntries` entries, or null when memory is exhausted. */
export function createIdTable(valueSize: u32, maxEntries: u32): IdTable | null {
  const t = changetype<IdTable>(reserve(offsetof<IdTable>()));
  if (changetype<usize>(t) == 0) return null;
  t.valueSize = valueSize;
  t.stride = (valueSize + 7) & ~7;
  t.maxKey = maxEntries;
  t.values = reserve(<usize>t.stride * (<usize>maxEntries + 1));
  t.present = reserve(<usize>maxEntries + 1);
  return t.values == 0 || t.present == 0 ? null : t;
}

@inline function has(t: IdTable, id: u32): bool {
  return id <= t.maxKey && load<u8>(t.present + <usize>id) != 0;
}

@inline function valueAt(t: IdTable, id: u32): usize {
  return t.values + <usize>id * t.stride;
}

/** The value of id `load<u32>(key)`, or 0. */
export function idLookup(t: IdTable, key: usize): usize {
  const id = load<u32>(key);
  return has(t, id) ? valueAt(t, id) : 0;
}

export function idUpdate(t: IdTable, key: usize, value: usize, flags: u32): i32 {
  const id = load<u32>(key);
  if (id > t.maxKey) return -E2BIG;
  const present = t.present + <usize>id;
  if (load<u8>(present) != 0) {
    if (flags == BPF_NOEXIST) return -EEXIST;
  } else {
    if (flags == BPF_EXIST) return -ENOENT;
    store<u8>(present, 1);
    t.count++;
  }
  memory.copy(valueAt(t, id), value, t.valueSize);
  return 0;
}

export function idDelete(t: IdTable, key: usize): i32 {
  const id = load<u32>(key);
  if (!has(t, id)) return -ENOENT;
  store<u8>(t.present + <usize>id, 0);
  t.count--;
  return 0;
}

/** The first id in the map from `from` on, or -1. */
function nextId(t: IdTable, from: u64): i64 {
  for (let id = from; id <= <u64>t.maxKey; id++) {
    if (load<u8>(t.present + <usize>id) != 0) return <i64>id;
  }
  return -1;
}

/** bpf_map_get_next_key in ascending id order; the first key when `key` is 0 or not in the map. */
export function idGetNextKey(t: IdTable, key: usize, next: usize): i32 {
  const from: u64 = key != 0 && has(t, load<u32>(key)) ? <u64>load<u32>(key) + 1 : 0;
  const id = nextId(t, from);
  if (id < 0) return -ENOENT;
  store<u32>(next, <u32>id);
  return 0;
}

/** BPF_MAP_LOOKUP_BATCH (maps.ts mapLookupBatch): the cursor's first u32 is the id to go on from. */
export function idLookupBatch(t: IdTable, cursor: usize, keysOut: usize, valuesOut: usize, limit: u32): i32 {
  let from = <u64>load<u32>(cursor);
  let n: u32 = 0;
  while (n < limit) {
    const id = nextId(t, from);
    if (id < 0) {
      from = <u64>t.maxKey + 1;
      break;
    }
    store<u32>(keysOut + (<usize>n << 2), <u32>id);
    memory.copy(valuesOut + <usize>n * t.valueSize, valueAt(t, <u32>id), t.valueSize);
    n++;
    from = <u64>id + 1;
  }
  store<u32>(cursor, <u32>min<u64>(from, 0xffffffff));
  return <i32>n;
}

export function idCount(t: IdTable): u32 {
  return t.count;
}
