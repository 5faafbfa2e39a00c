// Batch lookups: before a window of frames is decided, the conntrack lookups
// of its plain IPv4 TCP and UDP frames are started together, so that the
// CPU overlaps their cache misses instead of taking them one frame after the
// other. Each frame's key is hashed and its index group read first (tags and
// slots share the line), then the records the groups' matching tags name.
// WebAssembly has no
// prefetch instruction: these are plain loads, whose results only feed
// `warmSink` so that the compiler keeps them. Nothing is written but this
// module's own scratch memory: the decisions are those of a batch not warmed.

import { DESC_DATA, DESC_LEN, DESC_LINKTYPE, DESC_SIZE, LINKTYPE_ETHERNET } from './layout';
import { flowGroupOf, flowHash, flowWarmRecord } from './flow_table';
import { mapCount } from './maps';
import { IPPROTO_TCP, IPPROTO_UDP } from './parse';
import { ct4 } from './registry';

/** Frames warmed together: enough lookups in flight to fill the CPU's miss queue, few enough that their lines stay cached until decided. */
export const WARM_WINDOW: u32 = 16;

/**
 * Below this many entries the conntrack map stays in the caches and warming
 * would cost its own parse and hash for nothing.
 */
const WARM_MIN_ENTRIES: u32 = 1 << 16;

const ETH_HEADER: u32 = 14;
const ETHERTYPE_IPV4_LE: u16 = 0x0008; // 0x0800 read as a little-endian word
const IP4_MIN_HEADER: u32 = 20;

const key = memory.data(16); // struct ct4_tuple, original direction
const hashes = memory.data(WARM_WINDOW << 2); // u32 key hash per frame
const groups = memory.data(WARM_WINDOW << 2); // u32 index group per frame, 0 for a frame not warmed

/** The loads' results, kept so that they are not optimised away. */
export let warmSink: u32 = 0;

/** True when conntrack is big enough for warming to pay. */
export function warmingPays(): bool {
  return mapCount(ct4) >= WARM_MIN_ENTRIES;
}

/**
 * Fills `key` with the original-direction ct4 tuple of an untagged Ethernet
 * IPv4 TCP or UDP frame; false for any other frame (left to be decided cold).
 */
function peekTuple4(desc: usize): bool {
  if (load<u32>(desc + DESC_LINKTYPE) != LINKTYPE_ETHERNET) return false;
  const data = <usize>load<u32>(desc + DESC_DATA);
  const len = load<u32>(desc + DESC_LEN);
  if (len < ETH_HEADER + IP4_MIN_HEADER || load<u16>(data + 12) != ETHERTYPE_IPV4_LE) return false;
  const ip = data + ETH_HEADER;
  const versionIhl = load<u8>(ip);
  const ihl = (<u32>versionIhl & 15) << 2;
  if (versionIhl >> 4 != 4 || ihl < IP4_MIN_HEADER || ETH_HEADER + ihl + 4 > len) return false;
  const proto = load<u8>(ip + 9);
  if (proto != IPPROTO_TCP && proto != IPPROTO_UDP) return false;
  store<u32>(key, load<u32>(ip + 12)); // saddr
  store<u32>(key, load<u32>(ip + 16), 4); // daddr
  store<u32>(key, load<u32>(ip + ihl), 8); // sport, dport
  store<u32>(key, <u32>proto, 12); // proto, dir 0 (original), padding
  return true;
}

/** Starts the conntrack lookups of frames [first, first + count) of the batch at `descs`; count <= WARM_WINDOW. */
export function warmWindow(descs: usize, first: u32, count: u32): void {
  const t = ct4.flows!;
  let sink = warmSink;
  for (let i: u32 = 0; i < count; i++) {
    let group: usize = 0;
    if (peekTuple4(descs + <usize>(first + i) * DESC_SIZE)) {
      const hash = flowHash(t, key);
      group = flowGroupOf(t, hash);
      store<u32>(hashes + (<usize>i << 2), hash);
      sink ^= load<u32>(group);
    }
    store<u32>(groups + (<usize>i << 2), <u32>group);
  }
  for (let i: u32 = 0; i < count; i++) {
    const group = <usize>load<u32>(groups + (<usize>i << 2));
    if (group != 0) sink ^= flowWarmRecord(t, group, load<u32>(hashes + (<usize>i << 2)));
  }
  warmSink = sink;
}
