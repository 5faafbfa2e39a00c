// Service cluster IP ranges: whether a destination no frontend or flow
// claimed lies in a known range (UNALLOCATED_IP). The ranges are the LPM
// maps service_ranges4/6, empty when they are unknown.
//
// An LPM lookup tries every prefix length from the key's down to 0, about
// 35 ns a packet for one /12, while a cluster has a handful of ranges. So
// once per batch, as the config is read, up to CACHED_RANGES of each family
// are copied out of the map into a small array and compared in place, as
// the one range per family of the config used to be; a family with more is
// looked up in its map.

import { SVC_RANGE4_ADDRESS, SVC_RANGE4_KEY_SIZE, SVC_RANGE4_PREFIXLEN, SVC_RANGE6_ADDRESS, SVC_RANGE6_KEY_SIZE, SVC_RANGE6_PREFIXLEN } from './layout';
import { BpfMap, mapGetNextKey, mapLookup } from './maps';
import { serviceRanges4, serviceRanges6 } from './registry';

const CACHED_RANGES: u32 = 8;
/** More ranges than the array holds: look them up in the map. */
const USE_MAP: u32 = CACHED_RANGES + 1;

// Per range: network, then mask; IPv4 be32 + be32, IPv6 16 + 16 bytes.
const ranges4 = memory.data(CACHED_RANGES * 8);
const ranges6 = memory.data(CACHED_RANGES * 32);
let count4: u32 = 0;
let count6: u32 = 0;

const iterKey = memory.data(SVC_RANGE6_KEY_SIZE);
const nextKey = memory.data(SVC_RANGE6_KEY_SIZE);
const lookupKey4 = memory.data(SVC_RANGE4_KEY_SIZE);
const lookupKey6 = memory.data(SVC_RANGE6_KEY_SIZE);

/** Once per batch: the ranges of both maps into the arrays, or USE_MAP. */
export function configureServiceRanges(): void {
  count4 = copyRanges(serviceRanges4, ranges4, SVC_RANGE4_ADDRESS, 4);
  count6 = copyRanges(serviceRanges6, ranges6, SVC_RANGE6_ADDRESS, 16);
}

/** The map's keys (stored masked to their prefix) as network and mask pairs; USE_MAP when they do not fit. */
function copyRanges(m: BpfMap, out: usize, addressOffset: u32, addressBytes: u32): u32 {
  let n: u32 = 0;
  let key: usize = 0;
  while (mapGetNextKey(m, key, nextKey) == 0) {
    if (n == CACHED_RANGES) return USE_MAP;
    const prefixlen = load<u32>(nextKey);
    const range = out + <usize>(n * addressBytes * 2);
    for (let i: u32 = 0; i < addressBytes; i++) {
      const bitsLeft = <i32>prefixlen - <i32>(i << 3);
      const mask: u32 = bitsLeft >= 8 ? 0xff : bitsLeft <= 0 ? 0 : (0xff00 >> bitsLeft) & 0xff;
      store<u8>(range + i, load<u8>(nextKey + addressOffset + i));
      store<u8>(range + addressBytes + i, <u8>mask);
    }
    memory.copy(iterKey, nextKey, m.keySize);
    key = iterKey;
    n++;
  }
  return n;
}

/** True when the address (network order) lies in a known IPv4 service cluster IP range. */
export function inServiceRange4(daddr: u32): bool {
  if (count4 == USE_MAP) {
    store<u32>(lookupKey4 + SVC_RANGE4_PREFIXLEN, 32);
    store<u32>(lookupKey4 + SVC_RANGE4_ADDRESS, daddr);
    return mapLookup(serviceRanges4, lookupKey4) != 0;
  }
  for (let i: u32 = 0; i < count4; i++) {
    const range = ranges4 + <usize>(i << 3);
    if ((daddr & load<u32>(range, 4)) == load<u32>(range)) return true;
  }
  return false;
}

/** The same for the 16-byte address at `daddr`. */
export function inServiceRange6(daddr: usize): bool {
  if (count6 == USE_MAP) {
    store<u32>(lookupKey6 + SVC_RANGE6_PREFIXLEN, 128);
    memory.copy(lookupKey6 + SVC_RANGE6_ADDRESS, daddr, 16);
    return mapLookup(serviceRanges6, lookupKey6) != 0;
  }
  for (let i: u32 = 0; i < count6; i++) {
    const range = ranges6 + <usize>(i << 5);
    if ((load<u64>(daddr) & load<u64>(range, 16)) == load<u64>(range)
      && (load<u64>(daddr, 8) & load<u64>(range, 24)) == load<u64>(range, 8)) return true;
  }
  return false;
}
