// loadBalancerSourceRanges: the allowed client prefixes of a service port's
// load-balancer IPs, in an LPM trie keyed by (service id, address).

import { LB4_SRC_ADDRESS, LB4_SRC_PREFIXLEN, LB4_SRC_SERVICE_ID, LB6_SRC_ADDRESS, LB6_SRC_PREFIXLEN, LB6_SRC_SERVICE_ID } from './layout';
import { mapLookup } from './maps';
import { lb4SourceRanges, lb6SourceRanges } from './registry';

const rangeKey = memory.data(12);
const FULL_PREFIX: u32 = 32 + 32;

export function sourceAllowed4(serviceId: u32, saddr: u32): bool {
  store<u32>(rangeKey + LB4_SRC_PREFIXLEN, FULL_PREFIX);
  store<u32>(rangeKey + LB4_SRC_SERVICE_ID, bswap<u32>(serviceId));
  store<u32>(rangeKey + LB4_SRC_ADDRESS, saddr);
  return mapLookup(lb4SourceRanges, rangeKey) != 0;
}

const rangeKey6 = memory.data(24);

export function sourceAllowed6(serviceId: u32, saddr: usize): bool {
  store<u32>(rangeKey6 + LB6_SRC_PREFIXLEN, 32 + 128);
  store<u32>(rangeKey6 + LB6_SRC_SERVICE_ID, bswap<u32>(serviceId));
  memory.copy(rangeKey6 + LB6_SRC_ADDRESS, saddr, 16);
  return mapLookup(lb6SourceRanges, rangeKey6) != 0;
}
