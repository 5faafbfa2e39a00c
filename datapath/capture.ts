// Zero-copy replay: the host reads the capture file in large chunks straight
// into linear memory, and the program walks the classic pcap records there,
// filling the batch's descriptors and frame area itself; after the batch, it
// writes the output pcap records and the verdict lines into output areas
// that the host hands to the file as they are. No JavaScript object is made
// per packet, and nothing crosses the JS/WASM boundary per packet.
//
// The walker takes only well-formed records: anything the host's reader
// (traces/pcap.ts) would warn about or refuse stops it, and the host decides
// that record with the reader's own checks and messages.

import {
  DESC_BACKEND_ID, DESC_CAPACITY, DESC_CAPLEN, DESC_DATA, DESC_F_AFFINITY_RESET, DESC_F_FLOW_CHANGES, DESC_F_FLUSHED,
  DESC_F_OTHER_SHARD, DESC_F_RESELECTED, DESC_F_SNAT, DESC_FLAGS, DESC_LEN, DESC_LINKTYPE,
  DESC_REASON, DESC_SERVICE_ID, DESC_SIZE, DESC_TS_NSEC, DESC_TS_SEC_HI, DESC_TS_SEC_LO, DESC_VERDICT, DESC_WIRE_LEN,
  DESC_F_STEERED, FRAME_MIN_CAPACITY, PCAP_F_BIG_ENDIAN, PCAP_F_NANOSECOND, VT_BACKENDS, VT_REASONS, VT_SERVICES, VT_VERDICTS, WALK_ANOMALY,
  WALK_BATCH_FULL, WALK_CONSUMED, WALK_FRAMES_USED, WALK_NEED_DATA, WALK_STOP, WALK_TIME_REACHED, XDP_REDIRECT, XDP_TX,
} from './layout';
import { directionKnown, parsePacket } from './parse';
import { isOwnPacket, sharded } from './steer';

const RECORD_HEADER: u32 = 16;
/** Above any real snaplen (traces/pcap.ts refuses it with its own message). */
const MAX_CAPLEN: u32 = 256 << 20;

/** Bytes of frame area a frame takes: room to become an ICMP error, 8-byte aligned. */
@inline function footprint(caplen: u32): u32 {
  return (max<u32>(caplen, FRAME_MIN_CAPACITY) + 7) & ~7;
}

@inline function field(at: usize, bigEndian: bool): u32 {
  const v = load<u32>(at);
  return bigEndian ? bswap<u32>(v) : v;
}

/**
 * Walks the pcap records at chunk[consumed..len), adding each to the batch:
 * its frame copied to the frame area, its descriptor filled. Returns the
 * batch's new frame count; `state` says how far it got and why it stopped.
 * A record whose time (ns) is `stopAt` or later is left for the next call
 * (u64 max: no stop time), so that a cluster change due by then is applied first.
 */
export function pcapWalk(
  chunk: usize, len: u32, format: u32, snaplen: u32, linktype: u32,
  descs: usize, count: u32, maxFrames: u32, frames: usize, framesCapacity: u32, state: usize, stopAt: u64,
): u32 {
  const bigEndian = (format & PCAP_F_BIG_ENDIAN) != 0;
  const nanosecond = (format & PCAP_F_NANOSECOND) != 0;
  const perSecond: u32 = nanosecond ? 1_000_000_000 : 1_000_000;
  let pos = load<u32>(state + WALK_CONSUMED);
  let used = load<u32>(state + WALK_FRAMES_USED);
  let stop = WALK_NEED_DATA;
  while (pos + RECORD_HEADER <= len) {
    const header = chunk + <usize>pos;
    const sec = field(header, bigEndian);
    const fraction = field(header + 4, bigEndian);
    const caplen = field(header + 8, bigEndian);
    const origlen = field(header + 12, bigEndian);
    if (caplen > MAX_CAPLEN || caplen > origlen || caplen > snaplen || fraction >= perSecond) {
      stop = WALK_ANOMALY;
      break;
    }
    if (<u64>sec * 1_000_000_000 + <u64>(nanosecond ? fraction : fraction * 1000) >= stopAt) {
      stop = WALK_TIME_REACHED;
      break;
    }
    if (<u64>pos + RECORD_HEADER + caplen > <u64>len) break; // the rest of it is in the next chunk
    // Room is counted for every frame, copied or not, so that every worker of
    // a sharded replay ends its batches at the same records.
    const room = footprint(caplen);
    if (count == maxFrames || <u64>used + room > <u64>framesCapacity) {
      stop = WALK_BATCH_FULL;
      break;
    }
    const desc = descs + <usize>count * DESC_SIZE;
    let flags: u16 = 0;
    if (sharded()) {
      // Steered where it lies: another worker's frame is not copied at all.
      // (A classic pcap record says nothing of its direction; a cooked header
      // may, and such a frame is left to process_batch, which follows the
      // node's masquerade tuples frame by frame before steering: see steer.ts.)
      const data = header + RECORD_HEADER;
      const nsec = nanosecond ? fraction : fraction * 1000;
      const parsed = parsePacket(data, caplen, max<u32>(origlen, caplen), linktype, 0);
      if (!directionKnown) {
        if (!isOwnPacket(parsed, data, caplen, <u64>sec * 1_000_000_000 + <u64>nsec)) {
          describe(desc, 0, 0, origlen, 0, sec, nsec, DESC_F_OTHER_SHARD, linktype, caplen);
          used += room;
          pos += RECORD_HEADER + caplen;
          count++;
          continue;
        }
        flags = DESC_F_STEERED;
      }
    }
    const frame = frames + <usize>used;
    memory.copy(frame, header + RECORD_HEADER, caplen);
    describe(desc, frame, caplen, origlen, room, sec, nanosecond ? fraction : fraction * 1000, flags, linktype, caplen);
    used += room;
    pos += RECORD_HEADER + caplen;
    count++;
  }
  store<u32>(state + WALK_CONSUMED, pos);
  store<u32>(state + WALK_FRAMES_USED, used);
  store<u32>(state + WALK_STOP, stop);
  return count;
}

/** Fills a descriptor's input fields and clears its outputs. */
@inline function describe(
  desc: usize, frame: usize, len: u32, wireLen: u32, capacity: u32, sec: u32, nsec: u32, flags: u16, linktype: u32, caplen: u32,
): void {
  store<u32>(desc + DESC_DATA, <u32>frame);
  store<u32>(desc + DESC_LEN, len);
  store<u32>(desc + DESC_WIRE_LEN, wireLen);
  store<u32>(desc + DESC_CAPACITY, capacity);
  store<u32>(desc + DESC_TS_SEC_LO, sec);
  store<u32>(desc + DESC_TS_SEC_HI, 0);
  store<u32>(desc + DESC_TS_NSEC, nsec);
  store<u16>(desc + DESC_VERDICT, 0); // and the reason
  store<u16>(desc + DESC_FLAGS, flags);
  store<u64>(desc + DESC_SERVICE_ID, 0); // and the backend id
  store<u32>(desc + DESC_LINKTYPE, linktype);
  store<u32>(desc + DESC_CAPLEN, caplen);
}

// --- output ---------------------------------------------------------------------

@inline function isSent(desc: usize): bool {
  const v = load<u8>(desc + DESC_VERDICT);
  return (v == XDP_TX || v == XDP_REDIRECT) && (load<u16>(desc + DESC_FLAGS) & DESC_F_OTHER_SHARD) == 0;
}

/**
 * Writes the pcap records (little-endian, as traces/pcap.ts writes them) of
 * the sent frames among descriptors from..count into out[0..capacity), and
 * returns the index of the first descriptor not written: count, or where the
 * room ran out or a timestamp does not fit 32 bits. `written` gets the bytes.
 */
export function pcapEmit(descs: usize, from: u32, count: u32, nanosecond: bool, out: usize, capacity: u32, written: usize): u32 {
  let at: u32 = 0;
  let i = from;
  for (; i < count; i++) {
    const desc = descs + <usize>i * DESC_SIZE;
    if (!isSent(desc)) continue;
    if (load<u32>(desc + DESC_TS_SEC_HI) != 0) break;
    const len = load<u32>(desc + DESC_LEN);
    if (<u64>at + RECORD_HEADER + len > <u64>capacity) break;
    const record = out + <usize>at;
    const nsec = load<u32>(desc + DESC_TS_NSEC);
    // A frame the datapath rebuilt (an ICMP error) is whole; a rewritten one keeps its wire length.
    const wireLen = load<u32>(desc + DESC_WIRE_LEN);
    const caplen = load<u32>(desc + DESC_CAPLEN);
    store<u32>(record, load<u32>(desc + DESC_TS_SEC_LO));
    store<u32>(record + 4, nanosecond ? nsec : nsec / 1000);
    store<u32>(record + 8, len);
    store<u32>(record + 12, len == caplen ? wireLen : len);
    memory.copy(record + RECORD_HEADER, <usize>load<u32>(desc + DESC_DATA), len);
    at += RECORD_HEADER + len;
  }
  store<u32>(written, at);
  return i;
}

// String tables the host lays out once: u32 count, then (offset, length)
// u32 pairs, offsets from the table's start, then the bytes.
@inline function tableString(table: usize, index: u32, out: usize): u32 {
  const n = load<u32>(table);
  if (index >= n) index = 0; // entry 0 is what an unknown id prints
  const entry = table + 4 + <usize>index * 8;
  const len = load<u32>(entry + 4);
  memory.copy(out, table + <usize>load<u32>(entry), len);
  return len;
}

@inline function putString(out: usize, s: string): u32 {
  // Only the fixed ASCII pieces of the line go through here.
  const len = <u32>s.length;
  for (let i: u32 = 0; i < len; i++) store<u8>(out + i, <u8>s.charCodeAt(i));
  return len;
}

/** Decimal digits of n at out; returns their count. */
function putDecimal(out: usize, n: u64): u32 {
  let digits: u32 = 1;
  for (let m = n / 10; m > 0; m /= 10) digits++;
  for (let i = digits; i > 0; i--) {
    store<u8>(out + i - 1, <u8>(48 + n % 10));
    n /= 10;
  }
  return digits;
}

/** The verdict line's name of a DESC_F_* flow change (control/compile/layout.ts FLOW_CHANGES). */
function flowChangeName(flag: u16): string {
  if (flag == DESC_F_FLUSHED) return 'FLUSHED';
  if (flag == DESC_F_RESELECTED) return 'RESELECTED';
  if (flag == DESC_F_AFFINITY_RESET) return 'AFFINITY_RESET';
  return 'STALE_BACKEND';
}

/**
 * Writes the verdict JSONL records (the public contract, field order fixed)
 * of this worker's frames among descriptors from..count, numbered from
 * firstN + index, into out[0..capacity); `maxLine` is the longest a line can
 * be. Returns the first descriptor not written; `written` gets the bytes and,
 * when `lengths` is not 0, lengths[i] each line's length (0 for another worker's frame).
 * A replay with cluster changes gives the `state` its frames were decided
 * under (-1: none, and the lines have neither "state" nor "flowChange").
 */
export function verdictsEmit(
  descs: usize, from: u32, count: u32, firstN: u64, tables: usize, maxLine: u32, out: usize, capacity: u32, written: usize, lengths: usize,
  state: i32,
): u32 {
  let at: u32 = 0;
  let i = from;
  for (; i < count; i++) {
    const desc = descs + <usize>i * DESC_SIZE;
    const flags = load<u16>(desc + DESC_FLAGS);
    if ((flags & DESC_F_OTHER_SHARD) != 0) {
      if (lengths != 0) store<u32>(lengths + <usize>i * 4, 0);
      continue;
    }
    if (<u64>at + maxLine > <u64>capacity) break;
    const start = out + <usize>at;
    let p = start;
    p += putString(p, '{"n":');
    p += putDecimal(p, firstN + i);
    p += putString(p, ',"verdict":"');
    p += tableString(load<u32>(tables + VT_VERDICTS), load<u8>(desc + DESC_VERDICT), p);
    p += putString(p, '","reason":"');
    p += tableString(load<u32>(tables + VT_REASONS), load<u8>(desc + DESC_REASON), p);
    p += putString(p, '","service":');
    p += tableString(load<u32>(tables + VT_SERVICES), load<u32>(desc + DESC_SERVICE_ID), p);
    p += putString(p, ',"backend":');
    p += tableString(load<u32>(tables + VT_BACKENDS), load<u32>(desc + DESC_BACKEND_ID), p);
    p += putString(p, (flags & DESC_F_SNAT) != 0 ? ',"snat":true' : ',"snat":false');
    if (state >= 0) {
      p += putString(p, ',"state":');
      p += putDecimal(p, <u64>state);
      const change = flags & DESC_F_FLOW_CHANGES;
      if (change != 0) {
        p += putString(p, ',"flowChange":"');
        p += putString(p, flowChangeName(change));
        p += putString(p, '"');
      }
    }
    p += putString(p, '}\n');
    const lineLen = <u32>(p - start);
    if (lengths != 0) store<u32>(lengths + <usize>i * 4, lineLen);
    at += lineLen;
  }
  store<u32>(written, at);
  return i;
}

/**
 * The merge of a sharded replay's outputs (control/runtime/sharded-replay.ts): the
 * `count` runs at `runs`, each a u32 address and a u32 length, copied one
 * after the other to `out`. Returns the bytes written.
 */
export function copyRuns(runs: usize, count: u32, out: usize): u32 {
  let at: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const run = runs + <usize>i * 8;
    const len = load<u32>(run, 4);
    memory.copy(out + <usize>at, <usize>load<u32>(run), len);
    at += len;
  }
  return at;
}
