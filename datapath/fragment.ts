// IP fragments of service flows. The first fragment of a datagram carries
// the ports; the later ones carry none, so the first one's are remembered,
// keyed by (source, destination, identification, protocol), and the later
// fragments follow their datagram: same service lookup, same conntrack
// entry, same backend. Entries age out of the LRU map.

import {
  BPF_ANY, FRAG4_DADDR, FRAG4_DPORT, FRAG4_ID, FRAG4_PROTO, FRAG4_SADDR, FRAG4_SPORT, FRAG6_DADDR, FRAG6_ID, FRAG6_PROTO,
  FRAG6_SADDR,
} from './layout';
import { mapLookup, mapUpdate } from './maps';
import { frag4, frag6 } from './registry';

const fragKey = memory.data(12);
const fragPorts = memory.data(4);

function fillKey(saddr: u32, daddr: u32, id: u16, proto: u8): usize {
  store<u32>(fragKey + FRAG4_SADDR, saddr);
  store<u32>(fragKey + FRAG4_DADDR, daddr);
  store<u16>(fragKey + FRAG4_ID, id);
  store<u8>(fragKey + FRAG4_PROTO, proto);
  store<u8>(fragKey + FRAG4_PROTO + 1, 0);
  return fragKey;
}

/** Remembers the ports of a first fragment for the rest of its datagram. */
export function recordFragment4(saddr: u32, daddr: u32, id: u16, proto: u8, sport: u16, dport: u16): void {
  store<u16>(fragPorts + FRAG4_SPORT, sport);
  store<u16>(fragPorts + FRAG4_DPORT, dport);
  mapUpdate(frag4, fillKey(saddr, daddr, id, proto), fragPorts, BPF_ANY);
}

/** The frag4_ports of a later fragment's datagram, or 0 when its first fragment was not seen. */
export function lookupFragment4(saddr: u32, daddr: u32, id: u16, proto: u8): usize {
  return mapLookup(frag4, fillKey(saddr, daddr, id, proto));
}

const fragKey6 = memory.data(40);

function fillKey6(saddr: usize, daddr: usize, id: u32, proto: u8): usize {
  memory.copy(fragKey6 + FRAG6_SADDR, saddr, 16);
  memory.copy(fragKey6 + FRAG6_DADDR, daddr, 16);
  store<u32>(fragKey6 + FRAG6_ID, id);
  store<u32>(fragKey6 + FRAG6_PROTO, <u32>proto);
  return fragKey6;
}

export function recordFragment6(saddr: usize, daddr: usize, id: u32, proto: u8, sport: u16, dport: u16): void {
  store<u16>(fragPorts + FRAG4_SPORT, sport);
  store<u16>(fragPorts + FRAG4_DPORT, dport);
  mapUpdate(frag6, fillKey6(saddr, daddr, id, proto), fragPorts, BPF_ANY);
}

export function lookupFragment6(saddr: usize, daddr: usize, id: u32, proto: u8): usize {
  return mapLookup(frag6, fillKey6(saddr, daddr, id, proto));
}
