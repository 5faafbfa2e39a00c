// The conntrack maps' storage: one record per flow, found from either
// direction, as the kernel's nf_conn is one object with two tuple hashes.
// The control plane still sees an LRU_HASH of ct4_tuple/ct6_tuple ->
// ct_entry (maps.ts dispatches to this file): a record holding both tuples
// is two keys with one value, and a dump presents it as two entries.
//
// Why not the generic hash map: there a flow cost two elements, two lookups
// of two cache misses each (bucket, element), and two LRU list moves that
// write to the neighbours' lines. Here a packet of an established flow costs
// one index group (one 64-byte line: tags and slots together, Swiss-table
// style) and one record, whose value it updates in place; ageing sets one bit.
//
// struct flow_record (stride 24 + 2T + 2 bytes; T = the key size - 4: 12 for
// IPv4, 36 for IPv6, so 50 and 98 bytes):
//   @0        ct_entry value (24 bytes): a pointer to the record is a pointer to
//             the value, so an entry found by lookup is its record
//   @24       original-direction tuple (saddr, daddr, sport, dport; T bytes)
//   @24+T     reply-direction tuple (T bytes)
//   @24+2T    u8 proto, shared by both tuples
//   @25+2T    u8 state: RECORD_HOLDS_ORIGINAL/REPLY (which tuples are keys),
//             RECORD_REFERENCED (CLOCK's bit); 0 for a free record, whose
//             first u32 then chains the free list
// A table holds ceil(max_entries / 2) records: max_entries keys when every
// flow has both, as the generic map held.
//
// struct flow_group (64 bytes, a cache line), the index:
//   @0   u8 tags[12]: 0 empty, else 0x80 | 7 bits of the key's hash
//   @12  u8 overflow: keys whose home is this group or before, stored past it
//        (F14's outbound count: a lookup ends at a group whose count is 0;
//        saturates at 255, after which it is never decremented)
//   @16  u32 slots[12]: record << 1 | direction
// 1.25 slots per key of max_entries, so that groups stay at most 80% full.
// A key's home group is Lemire's multiply-shift of its hash (any group
// count, not only powers of two), and probes go on to the next group.
//
// Ageing is CLOCK, not an LRU list: datapath lookups and control-plane
// updates set the record's referenced bit (a control-plane peek does not,
// as before); when no record is free, the hand clears set bits and evicts
// the first record it finds clear. New records start clear, so that a flow
// seen once goes before one seen again, as LRU order would have it.

import { hash32 } from './hash';
import { BPF_EXIST, BPF_NOEXIST, EEXIST, EINVAL, ENOENT } from './layout';
import { reserve } from './memory';

const RECORD_HOLDS_ORIGINAL: u8 = 1;
const RECORD_HOLDS_REPLY: u8 = 2;
const RECORD_HOLDS: u8 = RECORD_HOLDS_ORIGINAL | RECORD_HOLDS_REPLY;
const RECORD_REFERENCED: u8 = 4;

const GROUP_SIZE: usize = 64;
const GROUP_SLOTS: u32 = 12;
const GROUP_OVERFLOW: usize = 12;
const GROUP_SLOT_AT: usize = 16;
const OVERFLOW_STUCK: u8 = 255;

const LOW7: u64 = 0x7f7f7f7f7f7f7f7f;
const HIGH1: u64 = 0x8080808080808080;
const BYTES1: u64 = 0x0101010101010101;

@unmanaged
export class FlowTable {
  keySize: u32;
  /** Bytes of one direction's addresses and ports (keySize - 4). */
  tupleSize: u32;
  valueSize: u32;
  stride: u32;
  records: usize;
  recordCount: u32;
  /** Records never used yet start here (1-based); freed ones are chained from freeHead. */
  fresh: u32;
  freeHead: u32;
  /** CLOCK's hand: the record it looked at last. */
  hand: u32;
  groups: usize;
  groupCount: u32;
  /** Keys in use: a record holding both directions counts twice. */
  count: u32;
  /** Room for one key rebuilt from a record. */
  scratch: usize;
}

/** The table for a conntrack map of `maxEntries` keys, or null when memory is exhausted. */
export function createFlowTable(keySize: u32, valueSize: u32, maxEntries: u32): FlowTable | null {
  const t = changetype<FlowTable>(reserve(offsetof<FlowTable>()));
  if (changetype<usize>(t) == 0) return null;
  t.keySize = keySize;
  t.tupleSize = keySize - 4;
  t.valueSize = valueSize;
  t.stride = valueSize + 2 * t.tupleSize + 2;
  t.recordCount = (maxEntries + 1) >> 1;
  const slots = <u64>(t.recordCount << 1) * 5 / 4;
  t.groupCount = primeAtLeast(<u32>((slots + GROUP_SLOTS - 1) / GROUP_SLOTS));
  t.records = reserve(<usize>t.stride * t.recordCount);
  t.groups = reserve(<usize>t.groupCount * GROUP_SIZE);
  t.scratch = reserve(keySize);
  if (t.records == 0 || t.groups == 0 || t.scratch == 0) return null;
  t.fresh = 1;
  return t;
}

/** The smallest prime >= n (1 for n <= 1: a single group needs no step). */
function primeAtLeast(n: u32): u32 {
  if (n <= 2) return max<u32>(n, 1);
  let p = n | 1;
  while (!isPrime(p)) p += 2;
  return p;
}

function isPrime(odd: u32): bool {
  for (let d: u32 = 3; d * d <= odd; d += 2) {
    if (odd % d == 0) return false;
  }
  return true;
}

// --- records ----------------------------------------------------------------------

@inline function recordAt(t: FlowTable, r: u32): usize {
  return t.records + <usize>(r - 1) * t.stride;
}

@inline function recordOf(t: FlowTable, value: usize): u32 {
  return <u32>((value - t.records) / t.stride) + 1;
}

@inline function tupleAt(t: FlowTable, record: usize, dir: u32): usize {
  return record + t.valueSize + <usize>dir * t.tupleSize;
}

@inline function protoAt(t: FlowTable, record: usize): usize {
  return record + t.valueSize + (<usize>t.tupleSize << 1);
}

@inline function stateAt(t: FlowTable, record: usize): usize {
  return protoAt(t, record) + 1;
}

@inline function holds(t: FlowTable, record: usize, dir: u32): bool {
  return (load<u8>(stateAt(t, record)) & (<u8>1 << <u8>dir)) != 0;
}

/** A key's direction byte, and whether its direction and padding are those of a key this table can hold. */
@inline function keyDir(t: FlowTable, key: usize): u32 {
  return load<u8>(key + t.tupleSize + 1);
}

@inline function validKey(t: FlowTable, key: usize): bool {
  return keyDir(t, key) <= 1 && load<u16>(key + t.tupleSize + 2) == 0;
}

function sameBytes(a: usize, b: usize, size: u32): bool {
  for (let i: usize = 0; i < <usize>size; i += 4) {
    if (load<u32>(a + i) != load<u32>(b + i)) return false;
  }
  return true;
}

/** Whether the record at `record` holds `key` (its tuple, proto and direction). */
@inline function recordHoldsKey(t: FlowTable, record: usize, key: usize): bool {
  const dir = keyDir(t, key);
  return holds(t, record, dir)
    && load<u8>(protoAt(t, record)) == load<u8>(key + t.tupleSize)
    && sameBytes(tupleAt(t, record, dir), key, t.tupleSize);
}

/** Writes the key of record `record`'s `dir` tuple to `out`. */
function writeKey(t: FlowTable, record: usize, dir: u32, out: usize): void {
  memory.copy(out, tupleAt(t, record, dir), t.tupleSize);
  store<u8>(out + t.tupleSize, load<u8>(protoAt(t, record)));
  store<u8>(out + t.tupleSize + 1, <u8>dir);
  store<u16>(out + t.tupleSize + 2, 0);
}

// --- index --------------------------------------------------------------------------

@inline function homeGroup(t: FlowTable, hash: u32): u32 {
  return <u32>((<u64>hash * <u64>t.groupCount) >> 32);
}

@inline function tagOf(hash: u32): u8 {
  return <u8>(hash & 0x7f) | 0x80;
}

@inline function groupAt(t: FlowTable, g: u32): usize {
  return t.groups + <usize>g * GROUP_SIZE;
}

/**
 * The distance between the groups a key's probe visits: from its hash, so
 * that keys sharing a home group part at once (double hashing; stepping to
 * the next group instead makes overflowing groups run together into long
 * clusters that every miss walks to the end, as a full table under churn
 * showed: 4.3 groups per lookup against 2.0). The group count is prime, so
 * every step visits every group.
 */
@inline function probeStep(t: FlowTable, hash: u32): u32 {
  return t.groupCount == 1 ? 0 : 1 + (hash >>> 7) % (t.groupCount - 1);
}

@inline function nextGroup(t: FlowTable, g: u32, step: u32): u32 {
  const next = g + step;
  return next >= t.groupCount ? next - t.groupCount : next;
}

/** Bit 8i+7 set for each byte i of `w` that is zero: exact, no false positives (SWAR). */
@inline function zeroBytes(w: u64): u64 {
  return ~(((w & LOW7) + LOW7) | w | LOW7);
}

/** The slots of a group's tags equal to `tag` (0: the empty ones) as a 12-bit mask. */
function tagMatches(group: usize, tag: u8): u32 {
  const pattern = <u64>tag * BYTES1;
  const low = zeroBytes(load<u64>(group) ^ pattern);
  const high = zeroBytes(<u64>load<u32>(group, 8) ^ pattern) & 0x80808080;
  return bytesToBits(low) | (bytesToBits(high) << 8);
}

/** Gathers bit 7 of each byte of `m` (the only bits set) into bits 0..7. */
@inline function bytesToBits(m: u64): u32 {
  return <u32>(((m >> 7) * 0x0102040810204080) >> 56);
}

/** The address of the slot holding `key` (hashing to `hash`), or 0. */
function findSlot(t: FlowTable, key: usize, hash: u32): usize {
  const tag = tagOf(hash);
  let g = homeGroup(t, hash);
  let step: u32 = 0; // computed when the probe goes on: a division most lookups need not wait for
  for (let probes: u32 = 0; probes < t.groupCount; probes++) {
    const group = groupAt(t, g);
    let m = tagMatches(group, tag);
    while (m != 0) {
      const slot = group + GROUP_SLOT_AT + (<usize>ctz(m) << 2);
      const value = load<u32>(slot);
      if ((value & 1) == keyDir(t, key) && recordHoldsKey(t, recordAt(t, value >> 1), key)) return slot;
      m &= m - 1;
    }
    if (load<u8>(group + GROUP_OVERFLOW) == 0) return 0;
    if (step == 0) step = probeStep(t, hash);
    g = nextGroup(t, g, step);
  }
  return 0;
}

/**
 * Puts record `r`'s `dir` key (hashing to `hash`) in the index. Room is always
 * left (1.25 slots per key), and the probe visits every group within
 * groupCount steps, so the bounded loop finds it; false would mean the
 * table's invariant broke, and the key is then not held.
 */
function indexInsert(t: FlowTable, hash: u32, r: u32, dir: u32): bool {
  let g = homeGroup(t, hash);
  let step: u32 = 0;
  for (let probes: u32 = 0; probes < t.groupCount; probes++) {
    const group = groupAt(t, g);
    const empty = tagMatches(group, 0);
    if (empty != 0) {
      const i = <usize>ctz(empty);
      store<u8>(group + i, tagOf(hash));
      store<u32>(group + GROUP_SLOT_AT + (i << 2), (r << 1) | dir);
      return true;
    }
    const overflow = load<u8>(group + GROUP_OVERFLOW);
    if (overflow != OVERFLOW_STUCK) store<u8>(group + GROUP_OVERFLOW, overflow + 1);
    if (step == 0) step = probeStep(t, hash);
    g = nextGroup(t, g, step);
  }
  return false;
}

/** Empties `slot` (found for a key hashing to `hash`), and undoes the overflow counts its insertion raised. */
function indexRemove(t: FlowTable, hash: u32, slot: usize): void {
  const target = <u32>((slot - t.groups) / GROUP_SIZE);
  const home = homeGroup(t, hash);
  const step = home == target ? 0 : probeStep(t, hash);
  let g = home;
  for (let probes: u32 = 0; g != target && probes < t.groupCount; probes++) {
    const group = groupAt(t, g);
    const overflow = load<u8>(group + GROUP_OVERFLOW);
    if (overflow != OVERFLOW_STUCK) store<u8>(group + GROUP_OVERFLOW, overflow - 1);
    g = nextGroup(t, g, step);
  }
  const group = groupAt(t, target);
  store<u8>(group + ((slot - group - GROUP_SLOT_AT) >> 2), 0);
  store<u32>(slot, 0);
}

/** Takes record `record`'s `dir` key out of the index and the record. */
function dropKey(t: FlowTable, record: usize, dir: u32): void {
  writeKey(t, record, dir, t.scratch);
  const hash = hash32(t.scratch, t.keySize);
  const slot = findSlot(t, t.scratch, hash);
  if (slot != 0) indexRemove(t, hash, slot);
  const state = stateAt(t, record);
  store<u8>(state, load<u8>(state) & ~(<u8>1 << <u8>dir));
  t.count--;
}

/** Frees a record that holds no key any more. */
function freeRecord(t: FlowTable, r: u32): void {
  const record = recordAt(t, r);
  store<u8>(stateAt(t, record), 0);
  store<u32>(record, t.freeHead);
  t.freeHead = r;
}

/** Drops a key, and its record when it was the record's last. */
function removeKey(t: FlowTable, r: u32, dir: u32): void {
  const record = recordAt(t, r);
  dropKey(t, record, dir);
  if ((load<u8>(stateAt(t, record)) & RECORD_HOLDS) == 0) freeRecord(t, r);
}

/**
 * A record to fill, with no key: a free one, else CLOCK's victim (never
 * `pinA` nor `pinB`, records the caller is using), whose keys are dropped.
 * 0 only when every record is pinned.
 */
function takeRecord(t: FlowTable, pinA: u32, pinB: u32): u32 {
  if (t.freeHead != 0) {
    const r = t.freeHead;
    t.freeHead = load<u32>(recordAt(t, r));
    return r;
  }
  if (t.fresh <= t.recordCount) return t.fresh++;
  // Two sweeps at most: the first clears every bit it passes.
  for (let step: u32 = 0; step <= t.recordCount << 1; step++) {
    const r = t.hand >= t.recordCount ? 1 : t.hand + 1;
    t.hand = r;
    if (r == pinA || r == pinB) continue;
    const record = recordAt(t, r);
    const state = stateAt(t, record);
    const bits = load<u8>(state);
    if ((bits & RECORD_REFERENCED) != 0) {
      store<u8>(state, bits & ~RECORD_REFERENCED);
      continue;
    }
    if ((bits & RECORD_HOLDS_ORIGINAL) != 0) dropKey(t, record, 0);
    if ((bits & RECORD_HOLDS_REPLY) != 0) dropKey(t, record, 1);
    store<u8>(state, 0);
    return r;
  }
  return 0;
}

/** Makes record `r` hold `key` (a key of the table, not in it). */
function addKey(t: FlowTable, r: u32, key: usize): void {
  const record = recordAt(t, r);
  const dir = keyDir(t, key);
  memory.copy(tupleAt(t, record, dir), key, t.tupleSize);
  store<u8>(protoAt(t, record), load<u8>(key + t.tupleSize));
  if (!indexInsert(t, hash32(key, t.keySize), r, dir)) return;
  const state = stateAt(t, record);
  store<u8>(state, load<u8>(state) | (<u8>1 << <u8>dir));
  t.count++;
}

// --- the map operations (maps.ts) ----------------------------------------------------

/** The value of `key`, or 0; a datapath lookup (`reference`) sets the record's CLOCK bit. */
export function flowLookup(t: FlowTable, key: usize, reference: bool): usize {
  if (!validKey(t, key)) return 0;
  const slot = findSlot(t, key, hash32(key, t.keySize));
  if (slot == 0) return 0;
  const record = recordAt(t, load<u32>(slot) >> 1);
  if (reference) {
    const state = stateAt(t, record);
    store<u8>(state, load<u8>(state) | RECORD_REFERENCED);
  }
  return record;
}

/**
 * bpf_map_update_elem of one key. A record holding both directions keeps
 * one value: writing different bytes to one key first moves the other key
 * to a record of its own with the value it had, so that no other key's
 * value changes (the flush of one direction, say).
 */
export function flowUpdate(t: FlowTable, key: usize, value: usize, flags: u32): i32 {
  if (!validKey(t, key)) return -EINVAL;
  const slot = findSlot(t, key, hash32(key, t.keySize));
  if (slot != 0) {
    if (flags == BPF_NOEXIST) return -EEXIST;
    const r = load<u32>(slot) >> 1;
    const record = recordAt(t, r);
    if (!sameBytes(record, value, t.valueSize)) detachOther(t, record, keyDir(t, key), r, 0);
    memory.copy(record, value, t.valueSize);
    const state = stateAt(t, record);
    store<u8>(state, load<u8>(state) | RECORD_REFERENCED);
    return 0;
  }
  if (flags == BPF_EXIST) return -ENOENT;
  const r = takeRecord(t, 0, 0);
  memory.copy(recordAt(t, r), value, t.valueSize);
  addKey(t, r, key);
  const state = stateAt(t, recordAt(t, r));
  store<u8>(state, load<u8>(state) | RECORD_REFERENCED);
  return 0;
}

export function flowDelete(t: FlowTable, key: usize): i32 {
  if (!validKey(t, key)) return -ENOENT;
  const slot = findSlot(t, key, hash32(key, t.keySize));
  if (slot == 0) return -ENOENT;
  removeKey(t, load<u32>(slot) >> 1, keyDir(t, key));
  return 0;
}

/**
 * bpf_map_get_next_key: records in order, each one's original key before
 * its reply key; the first key when `key` is 0 or not in the table.
 */
export function flowGetNextKey(t: FlowTable, key: usize, next: usize): i32 {
  let r: u32 = 1;
  let dir: u32 = 0;
  if (key != 0 && validKey(t, key)) {
    const slot = findSlot(t, key, hash32(key, t.keySize));
    if (slot != 0) {
      r = load<u32>(slot) >> 1;
      dir = keyDir(t, key) + 1;
    }
  }
  for (; r < t.fresh; r++, dir = 0) {
    const record = recordAt(t, r);
    for (; dir < 2; dir++) {
      if (holds(t, record, dir)) {
        writeKey(t, record, dir, next);
        return 0;
      }
    }
  }
  return -ENOENT;
}

/**
 * BPF_MAP_LOOKUP_BATCH (maps.ts mapLookupBatch): the cursor is the record
 * to go on from and the direction within it.
 */
export function flowLookupBatch(t: FlowTable, cursor: usize, keysOut: usize, valuesOut: usize, limit: u32): i32 {
  let r = load<u32>(cursor);
  if (r == 0) r = 1;
  let dir = load<u32>(cursor, 4);
  let n: u32 = 0;
  for (; r < t.fresh && n < limit; r++, dir = 0) {
    const record = recordAt(t, r);
    for (; dir < 2 && n < limit; dir++) {
      if (!holds(t, record, dir)) continue;
      writeKey(t, record, dir, keysOut + <usize>n * t.keySize);
      memory.copy(valuesOut + <usize>n * t.valueSize, record, t.valueSize);
      n++;
    }
    if (dir < 2) break; // full in the middle of a record: go on from its next direction
  }
  store<u32>(cursor, r);
  store<u32>(cursor, dir, 4);
  return <i32>n;
}

// --- what the datapath asks of a flow (conntrack.ts) --------------------------------

/** Whether the record of `entry` (a value flowLookup gave) holds `key`. */
export function flowHoldsKey(t: FlowTable, entry: usize, key: usize): bool {
  return validKey(t, key) && recordHoldsKey(t, entry, key);
}

/**
 * Moves the key of `entry`'s record that is not in direction `keepDir` (if
 * it has one) to a record of its own, with a copy of the value, so that
 * what happens next to `entry` happens to its `keepDir` key alone. The new
 * record is taken from CLOCK if need be, never `entry`'s nor `pin`; when
 * every other record is pinned, the moved key is dropped instead.
 */
function detachOther(t: FlowTable, entry: usize, keepDir: u32, r: u32, pin: u32): void {
  const other = keepDir ^ 1;
  if (!holds(t, entry, other)) return;
  writeKey(t, entry, other, t.scratch);
  dropKey(t, entry, other);
  const moved = takeRecord(t, r, pin);
  if (moved == 0) return;
  const record = recordAt(t, moved);
  memory.copy(record, entry, t.valueSize);
  const state = stateAt(t, record);
  store<u8>(state, load<u8>(stateAt(t, entry)) & RECORD_REFERENCED);
  // dropKey left the key in scratch, and takeRecord rebuilds keys there only when it evicts: write it again.
  writeKey(t, entry, other, t.scratch);
  addKey(t, moved, t.scratch);
}

/** detachOther of the record of `entry`, pinning the record of `pinned` (a value, or 0). */
export function flowDetachOther(t: FlowTable, entry: usize, keepDir: u32, pinned: usize): void {
  detachOther(t, entry, keepDir, recordOf(t, entry), pinned == 0 ? 0 : recordOf(t, pinned));
}

/**
 * A new flow: record with `original` and `reply` as its keys and `value`.
 * Keys already in the table leave their records first (BPF_ANY on each, as
 * the two inserts into the generic map were).
 */
export function flowCreate(t: FlowTable, original: usize, reply: usize, value: usize): void {
  const r = takeRecordWithout(t, original, reply);
  if (r == 0) return;
  memory.copy(recordAt(t, r), value, t.valueSize);
  addKey(t, r, original);
  addKey(t, r, reply);
}

function takeRecordWithout(t: FlowTable, original: usize, reply: usize): u32 {
  let slot = findSlot(t, original, hash32(original, t.keySize));
  if (slot != 0) removeKey(t, load<u32>(slot) >> 1, keyDir(t, original));
  slot = findSlot(t, reply, hash32(reply, t.keySize));
  if (slot != 0) removeKey(t, load<u32>(slot) >> 1, keyDir(t, reply));
  return takeRecord(t, 0, 0);
}

// --- walks and warming ---------------------------------------------------------------

/** The record after `r` that holds a key (0: the first), or 0 at the end; for iterators (census.ts). */
export function flowNextRecord(t: FlowTable, r: u32): u32 {
  for (r++; r < t.fresh; r++) {
    if ((load<u8>(stateAt(t, recordAt(t, r))) & RECORD_HOLDS) != 0) return r;
  }
  return 0;
}

/** Record `r`'s value (a ct_entry). */
export function flowRecordValue(t: FlowTable, r: u32): usize {
  return recordAt(t, r);
}

export function flowRecordHoldsDir(t: FlowTable, r: u32, dir: u32): bool {
  return holds(t, recordAt(t, r), dir);
}

export function flowRecordProto(t: FlowTable, r: u32): u8 {
  return load<u8>(protoAt(t, recordAt(t, r)));
}

/** The hash of a key, as a lookup computes it. */
export function flowHash(t: FlowTable, key: usize): u32 {
  return hash32(key, t.keySize);
}

/** The index group a lookup of a key of this hash reads first: its line is the lookup's first miss (prewarm.ts). */
export function flowGroupOf(t: FlowTable, hash: u32): usize {
  return groupAt(t, homeGroup(t, hash));
}

/**
 * Reads the record that the first slot of `group` tagged like `hash` names,
 * as a lookup reaching it would: gives its key's first word (0 for none).
 * Changes nothing.
 */
export function flowWarmRecord(t: FlowTable, group: usize, hash: u32): u32 {
  const m = tagMatches(group, tagOf(hash));
  if (m == 0) return 0;
  const r = load<u32>(group + GROUP_SLOT_AT + (<usize>ctz(m) << 2)) >> 1;
  return r == 0 || r >= t.fresh ? 0 : load<u32>(recordAt(t, r) + t.valueSize);
}

export function flowCount(t: FlowTable): u32 {
  return t.count;
}
