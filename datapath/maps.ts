// BPF-style maps in linear memory: HASH, LRU_HASH, ARRAY and LPM_TRIE with
// fixed key and value sizes and a fixed max_entries, preallocated at creation
// like the kernel's default (non-BPF_F_NO_PREALLOC) maps. The datapath gets pointers to
// values (bpf_map_lookup_elem semantics); the control plane goes through the
// bpf(2)-shaped exports in index.ts.
//
// Hash maps: a power-of-two bucket array of element indices, chained through
// preallocated elements, plus a free list. LRU_HASH keeps every element on a
// doubly linked recency list; a lookup or update moves it to the front, and an
// insert into a full map evicts the tail (the kernel's LRU is approximate; an
// exact one makes eviction order testable). Indices are 1-based: 0 is "none".
//
// LPM_TRIE keys are { u32 prefixlen; u8 data[] } as in the kernel. They are
// stored in the hash with their data masked to the prefix, and a count of
// entries per prefix length lets a lookup try only the lengths in use, longest
// first: for the few prefix lengths a service's source ranges use, that is
// fewer memory touches than walking a bit trie.
//
// The conntrack maps are LRU_HASH maps to the control plane, stored as flow
// tables (flow_table.ts), and the backend maps HASH maps stored as arrays by
// backend id (id_table.ts): every operation on them goes there.

import {
  FlowTable, createFlowTable, flowCount, flowDelete, flowGetNextKey, flowLookup, flowLookupBatch, flowUpdate,
} from './flow_table';
import { hash32 } from './hash';
import { IdTable, createIdTable, idCount, idDelete, idGetNextKey, idLookup, idLookupBatch, idUpdate } from './id_table';
import {
  BPF_EXIST, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_LRU_HASH, BPF_NOEXIST,
  E2BIG, EEXIST, EINVAL, ENOENT,
} from './layout';
import { reserve } from './memory';
import { traceLookup, tracing } from './trace';

// Element header, before the key and the value.
const ELEM_NEXT: usize = 0; // u32 next element in the bucket chain
const ELEM_LRU_PREV: usize = 4; // u32 more recently used neighbour; ELEM_FREE when free
const ELEM_LRU_NEXT: usize = 8; // u32 less recently used neighbour
const ELEM_KEY: usize = 12;

/** ELEM_LRU_PREV of a freed element: no element index is this large (maxEntries <= 0x7fffffff). */
const ELEM_FREE: u32 = 0xffffffff;

@unmanaged
export class BpfMap {
  /** The map's id (MAP_*), for traces. */
  id: u32;
  type: u32;
  keySize: u32;
  valueSize: u32;
  maxEntries: u32;
  count: u32;
  /** Element stride; for ARRAY, the value stride. */
  elemSize: u32;
  /** Offset of the value inside an element (hash maps). */
  valueOffset: u32;
  bucketMask: u32;
  buckets: usize;
  /** Elements (hash maps) or values (ARRAY). */
  elems: usize;
  /** Freed elements, chained; then the elements never used yet, from `fresh` on. */
  freeHead: u32;
  fresh: u32;
  lruHead: u32;
  lruTail: u32;
  /** LPM_TRIE: entries per prefix length (u32[data bits + 1]), and room for one masked key. */
  lpmCounts: usize;
  lpmKey: usize;
  /** A conntrack map's flow table (createFlowMap), or null. */
  flows: FlowTable | null;
  /** A backend map's table by id (createIdMap), or null. */
  ids: IdTable | null;
}

const LPM_PREFIXLEN_SIZE: u32 = 4;

@inline function align8(n: u32): u32 {
  return (n + 7) & ~7;
}

/** A map's header with its shape, or null when memory is exhausted. */
function mapHeader(type: u32, keySize: u32, valueSize: u32, maxEntries: u32): BpfMap | null {
  const m = changetype<BpfMap>(reserve(offsetof<BpfMap>()));
  if (changetype<usize>(m) == 0) return null;
  m.type = type;
  m.keySize = keySize;
  m.valueSize = valueSize;
  m.maxEntries = maxEntries;
  return m;
}

/** Creates a map, or returns null when memory is exhausted. */
export function createMap(type: u32, keySize: u32, valueSize: u32, maxEntries: u32): BpfMap | null {
  const m = mapHeader(type, keySize, valueSize, maxEntries);
  if (m === null) return null;
  if (type == BPF_MAP_TYPE_ARRAY) {
    m.elemSize = align8(valueSize);
    m.elems = reserve(<usize>m.elemSize * maxEntries);
    return m.elems == 0 ? null : m;
  }
  m.valueOffset = <u32>ELEM_KEY + align8(keySize);
  m.elemSize = m.valueOffset + align8(valueSize);
  let nbuckets: u32 = 1;
  while (nbuckets < maxEntries) nbuckets <<= 1;
  m.bucketMask = nbuckets - 1;
  m.buckets = reserve(<usize>nbuckets << 2);
  m.elems = reserve(<usize>m.elemSize * maxEntries);
  if (m.buckets == 0 || m.elems == 0) return null;
  if (type == BPF_MAP_TYPE_LPM_TRIE) {
    m.lpmCounts = reserve(<usize>(lpmDataBits(m) + 1) << 2);
    m.lpmKey = reserve(keySize);
    if (m.lpmCounts == 0 || m.lpmKey == 0) return null;
  }
  // Elements are handed out in index order and only then linked: creating a
  // big map touches none of its memory, which stays as the reserver gave it.
  m.freeHead = 0;
  m.fresh = 1;
  return m;
}

/** Creates a conntrack map: an LRU_HASH of ct tuples to ct_entry stored as a flow table; null when memory is exhausted. */
export function createFlowMap(type: u32, keySize: u32, valueSize: u32, maxEntries: u32): BpfMap | null {
  const m = mapHeader(type, keySize, valueSize, maxEntries);
  if (m === null) return null;
  m.flows = createFlowTable(keySize, valueSize, maxEntries);
  return m.flows === null ? null : m;
}

/** Creates a HASH map of u32 ids (the backend maps) stored as an array by id; null when memory is exhausted. */
export function createIdMap(type: u32, keySize: u32, valueSize: u32, maxEntries: u32): BpfMap | null {
  const m = mapHeader(type, keySize, valueSize, maxEntries);
  if (m === null) return null;
  m.ids = createIdTable(valueSize, maxEntries);
  return m.ids === null ? null : m;
}

/** Checks the arguments of BPF_MAP_CREATE; 0 when they make a valid map. */
export function checkMapShape(type: u32, keySize: u32, valueSize: u32, maxEntries: u32): i32 {
  if (maxEntries == 0 || valueSize == 0) return -EINVAL;
  if (type == BPF_MAP_TYPE_ARRAY) return keySize == 4 ? 0 : -EINVAL;
  if (type != BPF_MAP_TYPE_HASH && type != BPF_MAP_TYPE_LRU_HASH && type != BPF_MAP_TYPE_LPM_TRIE) return -EINVAL;
  if (type == BPF_MAP_TYPE_LPM_TRIE && keySize <= LPM_PREFIXLEN_SIZE) return -EINVAL;
  // Keys are hashed and compared a 32-bit word at a time.
  if (keySize == 0 || (keySize & 3) != 0) return -EINVAL;
  if (maxEntries > 0x7fffffff) return -E2BIG;
  return 0;
}

@inline function elemAt(m: BpfMap, index: u32): usize {
  return m.elems + <usize>(index - 1) * m.elemSize;
}

@inline function keysEqual(a: usize, b: usize, size: u32): bool {
  for (let i: usize = 0; i < <usize>size; i += 4) {
    if (load<u32>(a + i) != load<u32>(b + i)) return false;
  }
  return true;
}

/** Index of the element holding `key`, or 0. Chains are about one element long (as many buckets as entries): keys are compared whole. */
function findElem(m: BpfMap, key: usize, hash: u32): u32 {
  let i = load<u32>(m.buckets + (<usize>(hash & m.bucketMask) << 2));
  while (i != 0) {
    const e = elemAt(m, i);
    if (keysEqual(e + ELEM_KEY, key, m.keySize)) return i;
    i = load<u32>(e + ELEM_NEXT);
  }
  return 0;
}

/** The bucket of an element in use, from its key. */
@inline function bucketOf(m: BpfMap, e: usize): u32 {
  return hash32(e + ELEM_KEY, m.keySize) & m.bucketMask;
}

// --- LRU list ---------------------------------------------------------------

function lruUnlink(m: BpfMap, i: u32): void {
  const e = elemAt(m, i);
  const prev = load<u32>(e + ELEM_LRU_PREV);
  const next = load<u32>(e + ELEM_LRU_NEXT);
  if (prev != 0) store<u32>(elemAt(m, prev) + ELEM_LRU_NEXT, next);
  else m.lruHead = next;
  if (next != 0) store<u32>(elemAt(m, next) + ELEM_LRU_PREV, prev);
  else m.lruTail = prev;
}

function lruPushFront(m: BpfMap, i: u32): void {
  const e = elemAt(m, i);
  store<u32>(e + ELEM_LRU_PREV, 0);
  store<u32>(e + ELEM_LRU_NEXT, m.lruHead);
  if (m.lruHead != 0) store<u32>(elemAt(m, m.lruHead) + ELEM_LRU_PREV, i);
  else m.lruTail = i;
  m.lruHead = i;
}

@inline function lruTouch(m: BpfMap, i: u32): void {
  if (m.type == BPF_MAP_TYPE_LRU_HASH && m.lruHead != i) {
    lruUnlink(m, i);
    lruPushFront(m, i);
  }
}

// --- element removal ----------------------------------------------------------

/** Unlinks element `i` from its bucket chain and the LRU list, and frees it. */
function removeElem(m: BpfMap, i: u32): void {
  const e = elemAt(m, i);
  const bucket = m.buckets + (<usize>bucketOf(m, e) << 2);
  let link = bucket; // address of the u32 that points at the current element
  let cur = load<u32>(link);
  while (cur != i) {
    link = elemAt(m, cur) + ELEM_NEXT;
    cur = load<u32>(link);
  }
  store<u32>(link, load<u32>(e + ELEM_NEXT));
  if (m.type == BPF_MAP_TYPE_LRU_HASH) lruUnlink(m, i);
  store<u32>(e + ELEM_LRU_PREV, ELEM_FREE);
  store<u32>(e + ELEM_NEXT, m.freeHead);
  m.freeHead = i;
  m.count--;
}

// --- LPM keys -------------------------------------------------------------------

@inline function lpmDataBits(m: BpfMap): u32 {
  return (m.keySize - LPM_PREFIXLEN_SIZE) << 3;
}

/** Copies `key` to the map's scratch key with its data masked to `prefixlen` bits. */
function lpmMasked(m: BpfMap, key: usize, prefixlen: u32): usize {
  const out = m.lpmKey;
  store<u32>(out, prefixlen);
  const dataBytes = m.keySize - LPM_PREFIXLEN_SIZE;
  for (let i: u32 = 0; i < dataBytes; i++) {
    const bitsLeft = <i32>prefixlen - <i32>(i << 3);
    const mask: u32 = bitsLeft >= 8 ? 0xff : bitsLeft <= 0 ? 0 : (0xff00 >> bitsLeft) & 0xff;
    store<u8>(out + LPM_PREFIXLEN_SIZE + i, <u8>(load<u8>(key + LPM_PREFIXLEN_SIZE + i) & mask));
  }
  return out;
}

@inline function lpmCount(m: BpfMap, prefixlen: u32): usize {
  return m.lpmCounts + (<usize>prefixlen << 2);
}

/** Longest-prefix match: the value of the longest stored prefix covering the key's data. */
function lpmLookup(m: BpfMap, key: usize): usize {
  let len = load<u32>(key);
  const bits = lpmDataBits(m);
  if (len > bits) len = bits;
  for (let l = <i32>len; l >= 0; l--) {
    if (load<u32>(lpmCount(m, l)) == 0) continue;
    const masked = lpmMasked(m, key, l);
    const i = findElem(m, masked, hash32(masked, m.keySize));
    if (i != 0) return elemAt(m, i) + m.valueOffset;
  }
  return 0;
}

// --- operations -----------------------------------------------------------------

/**
 * bpf_map_lookup_elem: address of the value, or 0. Refreshes LRU recency.
 * Traced when the frame is: decisions' lookups, not the counters' (ARRAY maps)
 * nor the Maglev tables' (traced as the slot chosen).
 */
export function mapLookup(m: BpfMap, key: usize): usize {
  const value = lookupElem(m, key);
  if (tracing && m.type != BPF_MAP_TYPE_ARRAY && m.valueSize <= 64) traceLookup(m.id, key, m.keySize, value, m.valueSize);
  return value;
}

function lookupElem(m: BpfMap, key: usize): usize {
  const ids = m.ids;
  if (ids !== null) return idLookup(ids, key);
  const flows = m.flows;
  if (flows !== null) return flowLookup(flows, key, true);
  if (m.type == BPF_MAP_TYPE_ARRAY) {
    const index = load<u32>(key);
    return index < m.maxEntries ? m.elems + <usize>index * m.elemSize : 0;
  }
  if (m.type == BPF_MAP_TYPE_LPM_TRIE) return lpmLookup(m, key);
  const i = findElem(m, key, hash32(key, m.keySize));
  if (i == 0) return 0;
  lruTouch(m, i);
  return elemAt(m, i) + m.valueOffset;
}

/**
 * Lookup for the control plane: like the kernel's syscall-side lookup of an
 * LRU map, it does not count as a use, so inspecting maps never changes
 * which entry is evicted next.
 */
export function mapPeek(m: BpfMap, key: usize): usize {
  const ids = m.ids;
  if (ids !== null) return idLookup(ids, key);
  const flows = m.flows;
  if (flows !== null) return flowLookup(flows, key, false);
  if (m.type == BPF_MAP_TYPE_ARRAY || m.type == BPF_MAP_TYPE_LPM_TRIE) return lookupElem(m, key);
  const i = findElem(m, key, hash32(key, m.keySize));
  return i == 0 ? 0 : elemAt(m, i) + m.valueOffset;
}

/** bpf_map_update_elem: 0, or -EEXIST / -ENOENT / -E2BIG / -EINVAL. */
export function mapUpdate(m: BpfMap, key: usize, value: usize, flags: u32): i32 {
  if (flags > BPF_EXIST) return -EINVAL;
  const flows = m.flows;
  if (flows !== null) return flowUpdate(flows, key, value, flags);
  const ids = m.ids;
  if (ids !== null) return idUpdate(ids, key, value, flags);
  if (m.type == BPF_MAP_TYPE_ARRAY) {
    const index = load<u32>(key);
    if (index >= m.maxEntries) return -E2BIG;
    if (flags == BPF_NOEXIST) return -EEXIST; // array elements always exist
    memory.copy(m.elems + <usize>index * m.elemSize, value, m.valueSize);
    return 0;
  }
  if (m.type == BPF_MAP_TYPE_LPM_TRIE) {
    if (load<u32>(key) > lpmDataBits(m)) return -EINVAL;
    key = lpmMasked(m, key, load<u32>(key));
  }
  const hash = hash32(key, m.keySize);
  let i = findElem(m, key, hash);
  if (i != 0) {
    if (flags == BPF_NOEXIST) return -EEXIST;
    memory.copy(elemAt(m, i) + m.valueOffset, value, m.valueSize);
    lruTouch(m, i);
    return 0;
  }
  if (flags == BPF_EXIST) return -ENOENT;
  if (m.freeHead == 0 && m.fresh > m.maxEntries) {
    if (m.type != BPF_MAP_TYPE_LRU_HASH) return -E2BIG;
    removeElem(m, m.lruTail);
  }
  if (m.freeHead != 0) {
    i = m.freeHead;
    m.freeHead = load<u32>(elemAt(m, i) + ELEM_NEXT);
  } else {
    i = m.fresh++;
  }
  const e = elemAt(m, i);
  store<u32>(e + ELEM_LRU_PREV, 0);
  memory.copy(e + ELEM_KEY, key, m.keySize);
  memory.copy(e + m.valueOffset, value, m.valueSize);
  const bucket = m.buckets + (<usize>(hash & m.bucketMask) << 2);
  store<u32>(e + ELEM_NEXT, load<u32>(bucket));
  store<u32>(bucket, i);
  if (m.type == BPF_MAP_TYPE_LRU_HASH) lruPushFront(m, i);
  if (m.type == BPF_MAP_TYPE_LPM_TRIE) {
    const c = lpmCount(m, load<u32>(key));
    store<u32>(c, load<u32>(c) + 1);
  }
  m.count++;
  return 0;
}

/** bpf_map_delete_elem: 0, -ENOENT, or -EINVAL for arrays. */
export function mapDelete(m: BpfMap, key: usize): i32 {
  const flows = m.flows;
  if (flows !== null) return flowDelete(flows, key);
  const ids = m.ids;
  if (ids !== null) return idDelete(ids, key);
  if (m.type == BPF_MAP_TYPE_ARRAY) return -EINVAL;
  if (m.type == BPF_MAP_TYPE_LPM_TRIE) {
    if (load<u32>(key) > lpmDataBits(m)) return -ENOENT;
    key = lpmMasked(m, key, load<u32>(key));
  }
  const i = findElem(m, key, hash32(key, m.keySize));
  if (i == 0) return -ENOENT;
  if (m.type == BPF_MAP_TYPE_LPM_TRIE) {
    const c = lpmCount(m, load<u32>(key));
    store<u32>(c, load<u32>(c) - 1);
  }
  removeElem(m, i);
  return 0;
}

/**
 * bpf_map_get_next_key: writes the key after `key` (the first one when `key`
 * is 0 or not in the map, as the kernel does) to `next`; -ENOENT at the end.
 * Hash maps are walked in bucket order, then chain order.
 */
export function mapGetNextKey(m: BpfMap, key: usize, next: usize): i32 {
  const flows = m.flows;
  if (flows !== null) return flowGetNextKey(flows, key, next);
  const ids = m.ids;
  if (ids !== null) return idGetNextKey(ids, key, next);
  if (m.type == BPF_MAP_TYPE_ARRAY) {
    const index: u32 = key == 0 ? 0 : load<u32>(key) + 1;
    if (key != 0 && load<u32>(key) >= m.maxEntries) {
      store<u32>(next, 0);
      return 0;
    }
    if (index >= m.maxEntries) return -ENOENT;
    store<u32>(next, index);
    return 0;
  }
  let bucket: u32 = 0;
  let i: u32 = 0;
  if (key != 0) {
    const hash = hash32(key, m.keySize);
    const found = findElem(m, key, hash);
    if (found != 0) {
      i = load<u32>(elemAt(m, found) + ELEM_NEXT);
      bucket = (hash & m.bucketMask) + 1;
    }
  }
  while (i == 0) {
    if (bucket > m.bucketMask) return -ENOENT;
    i = load<u32>(m.buckets + (<usize>bucket << 2));
    bucket++;
  }
  memory.copy(next, elemAt(m, i) + ELEM_KEY, m.keySize);
  return 0;
}

/**
 * bpf_map_lookup_batch (BPF_MAP_LOOKUP_BATCH): copies up to `max` entries of a
 * hash map, keys packed at `keysOut` and values at `valuesOut`, from the
 * position `cursor` holds (u32 bucket, u32 elements of its chain already
 * given; zeros for the start; a flow table's or an id table's own), and leaves there the position after the last
 * one copied. Returns how many were copied: fewer than `max` only at the end.
 * One call gives the control plane a thousand entries where get_next_key and
 * lookup give one, so a walk of a conntrack map crosses once per thousand.
 */
export function mapLookupBatch(m: BpfMap, cursor: usize, keysOut: usize, valuesOut: usize, max: u32): i32 {
  const flows = m.flows;
  if (flows !== null) return flowLookupBatch(flows, cursor, keysOut, valuesOut, max);
  const ids = m.ids;
  if (ids !== null) return idLookupBatch(ids, cursor, keysOut, valuesOut, max);
  if (m.type == BPF_MAP_TYPE_ARRAY) return -EINVAL;
  let bucket = load<u32>(cursor);
  let given = load<u32>(cursor, 4);
  let n: u32 = 0;
  while (n < max && bucket <= m.bucketMask) {
    let i = load<u32>(m.buckets + (<usize>bucket << 2));
    let position: u32 = 0;
    while (i != 0 && n < max) {
      const e = elemAt(m, i);
      if (position >= given) {
        memory.copy(keysOut + <usize>n * m.keySize, e + ELEM_KEY, m.keySize);
        memory.copy(valuesOut + <usize>n * m.valueSize, e + m.valueOffset, m.valueSize);
        n++;
      }
      position++;
      i = load<u32>(e + ELEM_NEXT);
    }
    if (i != 0) {
      // Full in the middle of a chain: the next call goes on from here.
      given = position;
      break;
    }
    bucket++;
    given = 0;
  }
  store<u32>(cursor, bucket);
  store<u32>(cursor, given, 4);
  return <i32>n;
}

/** Entries in use (hash maps); max_entries for arrays. */
export function mapCount(m: BpfMap): u32 {
  const flows = m.flows;
  if (flows !== null) return flowCount(flows);
  const ids = m.ids;
  if (ids !== null) return idCount(ids);
  return m.type == BPF_MAP_TYPE_ARRAY ? m.maxEntries : m.count;
}
