// The trace ring, like `cilium monitor` or pwru: when the host marks a frame
// with DESC_F_TRACE, every map lookup, Maglev choice and the verdict of that
// frame is recorded into a ring the host reads after the batch. Off unless
// asked: a frame not traced costs one flag test per lookup.

import {
  TRACE_FOUND, TRACE_FRAME, TRACE_KEY, TRACE_KEY_LEN, TRACE_KEY_MAX, TRACE_KIND, TRACE_LOOKUP, TRACE_MAGLEV, TRACE_MAP,
  TRACE_RECORD_SIZE, TRACE_VALUE, TRACE_VALUE_LEN, TRACE_VALUE_MAX, TRACE_VERDICT,
} from './layout';

export let tracing: bool = false;
let ring: usize = 0;
let capacity: u32 = 0;
let used: u32 = 0;
let frameIndex: u32 = 0;

/** The host's ring: `records` slots at `base`. Called before a batch; resets the ring. */
export function configureTrace(base: usize, records: u32): void {
  ring = base;
  capacity = records;
  used = 0;
}

export function traceCount(): u32 {
  return used;
}

/** Starts (or stops) tracing for the frame at `index` of the batch. */
export function traceFrame(index: u32, on: bool): void {
  frameIndex = index;
  tracing = on && ring != 0;
}

/** The next record, or 0 when the ring is full (later steps are lost, never written past it). */
function next(kind: u8): usize {
  if (used >= capacity) return 0;
  const r = ring + <usize>used * TRACE_RECORD_SIZE;
  used++;
  memory.fill(r, 0, TRACE_RECORD_SIZE);
  store<u8>(r + TRACE_KIND, kind);
  store<u32>(r + TRACE_FRAME, frameIndex);
  return r;
}

export function traceLookup(mapId: u32, key: usize, keySize: u32, value: usize, valueSize: u32): void {
  const r = next(TRACE_LOOKUP);
  if (r == 0) return;
  store<u8>(r + TRACE_MAP, <u8>mapId);
  store<u8>(r + TRACE_FOUND, value != 0 ? 1 : 0);
  const keyLen = min(keySize, TRACE_KEY_MAX);
  store<u8>(r + TRACE_KEY_LEN, <u8>keyLen);
  memory.copy(r + TRACE_KEY, key, keyLen);
  if (value == 0) return;
  const valueLen = min(valueSize, TRACE_VALUE_MAX);
  store<u32>(r + TRACE_VALUE_LEN, valueLen);
  memory.copy(r + TRACE_VALUE, value, valueLen);
}

export function traceMaglev(table: u32, slot: u32, backendId: u32): void {
  const r = next(TRACE_MAGLEV);
  if (r == 0) return;
  store<u32>(r + TRACE_KEY, table);
  store<u32>(r + TRACE_KEY + 4, slot);
  store<u8>(r + TRACE_KEY_LEN, 8);
  store<u32>(r + TRACE_VALUE, backendId);
  store<u32>(r + TRACE_VALUE_LEN, 4);
}

export function traceVerdict(verdict: u8, reason: u8): void {
  const r = next(TRACE_VERDICT);
  if (r == 0) return;
  store<u8>(r + TRACE_KEY, verdict);
  store<u8>(r + TRACE_KEY + 1, reason);
  store<u8>(r + TRACE_KEY_LEN, 2);
}
