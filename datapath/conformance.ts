// The node's own rewrites against svcpath's. A capture taken on the node
// (tcpdump -i any) holds a forwarded packet twice: as it arrived, and as the
// node sent it on after its own NAT (an outgoing frame). svcpath decides the
// arrival; when it rewrites it, it remembers the packet by what NAT leaves
// alone, with what it wrote (MAP_REWRITES). The node's outgoing copy finds
// that entry by the same identity, once, and the two rewrites are compared:
// the same, the same but for the backend (kube-proxy picks endpoints at
// random, svcpath by Maglev), different only in that one of the two
// masqueraded the source, or different otherwise (MAP_CONFORMANCE counts each).
//
// What identifies a packet across NAT: its protocol, the IPv4 identification
// or IPv6 flow label, the payload's length and first bytes, and for TCP the
// sequence and acknowledgment numbers (SCTP: the verification tag). NAT
// changes addresses, ports and checksums, forwarding the TTL; none of these
// is part of it. An ICMP error's payload quotes the packet it is about,
// which NAT rewrites too, so only its header counts. Fragments are left out:
// the node reassembles before its NAT and fragments again after it.
//
// A masqueraded source is compared by whether the node masqueraded too, not
// by address and port: MASQUERADE takes the address of the interface the
// packet leaves by and a random port.

import { hash32 } from './hash';
import {
  CONFORM_COUNT, CONFORM_DIFFERS, CONFORM_MASQUERADE_DIFFERS, CONFORM_OTHER_BACKEND, CONFORM_REPRODUCED, REASON_SERVICE, RW_DADDR, RW_DPORT, RW_FLAGS,
  RW_F_MASQUERADED, RW_KEY_FAMILY, RW_KEY_IP_ID, RW_KEY_L4_A, RW_KEY_L4_B, RW_KEY_PAYLOAD_HASH, RW_KEY_PAYLOAD_LEN,
  RW_KEY_PROTO, RW_KEY_SIZE, RW_REASON, RW_SADDR, RW_SIZE, RW_SPORT, BPF_ANY, STEER_F_BACKEND,
} from './layout';
import { mapDelete, mapLookup, mapUpdate } from './maps';
import {
  IP4_DADDR, IP4_SADDR, IP6_DADDR, IP6_SADDR, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, L4_DPORT,
  L4_SPORT, daddr, daddr6, dport, family, firstFragment, hasPorts, ipTotalLen, l3, l4, laterFragment, proto, saddr, saddr6, sport,
} from './parse';
import { conformance, rewrites } from './registry';
import { endpointClass } from './steer';

/** Payload bytes that go into the identity: enough to tell apart packets with the same headers. */
const PAYLOAD_HASHED: u32 = 64;

const key = memory.data(RW_KEY_SIZE);
const value = memory.data(RW_SIZE);
const payload = memory.data(PAYLOAD_HASHED);
const address = memory.data(16);
const counterKey = memory.data(4);

/**
 * The identity of the parsed packet in data[0..len), a rewrite_key in
 * scratch memory valid until the next call; 0 when it has none to go by (a
 * fragment, a protocol svcpath does not rewrite, an L4 header shorter than
 * its protocol's). Also the key of the arrivals map (datapath/node_masq.ts).
 */
export function identity(data: usize, len: u32): usize {
  return identify(data, len) ? key : 0;
}

function identify(data: usize, len: u32): bool {
  if (firstFragment || laterFragment) return false;
  const segment = ipTotalLen - <u32>(l4 - l3);
  let header: u32 = 8;
  let a: u32 = 0;
  let b: u32 = 0;
  // parsePacket checked that TCP's, UDP's and SCTP's headers were captured; ICMP's is checked here.
  if (proto == IPPROTO_TCP) {
    header = <u32>(load<u8>(l4, 12) >> 4) << 2;
    a = load<u32>(l4, 4);
    b = load<u32>(l4, 8);
  } else if (proto == IPPROTO_SCTP) {
    header = 12;
    a = load<u32>(l4, 4);
  } else if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) {
    if (segment < 8 || l4 + 8 > data + len) return false;
    a = <u32>load<u16>(l4);
    b = load<u32>(l4, 4);
  } else if (proto != IPPROTO_UDP) {
    return false;
  }
  if (header > segment) return false;
  store<u8>(key + RW_KEY_FAMILY, family);
  store<u8>(key + RW_KEY_PROTO, proto);
  store<u16>(key + RW_KEY_PAYLOAD_LEN, <u16>(segment - header));
  // The flow label is the low 20 bits of the header's first big-endian word.
  store<u32>(key + RW_KEY_IP_ID, family == 4 ? <u32>load<u16>(l3, 4) : load<u32>(l3) & 0xffff0f00);
  store<u32>(key + RW_KEY_L4_A, a);
  store<u32>(key + RW_KEY_L4_B, b);
  const isIcmp = proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
  store<u32>(key + RW_KEY_PAYLOAD_HASH, isIcmp ? 0 : payloadHash(l4 + header, data + len, segment - header));
  return true;
}

/** MurmurHash3 of the first PAYLOAD_HASHED bytes of the payload at `from`, as far as they were captured. */
function payloadHash(from: usize, end: usize, length: u32): u32 {
  const captured = from < end ? <u32>(end - from) : 0;
  const bytes = min<u32>(min<u32>(length, captured), PAYLOAD_HASHED);
  memory.fill(payload, 0, PAYLOAD_HASHED);
  memory.copy(payload, from, bytes);
  return hash32(payload, PAYLOAD_HASHED);
}

/** Writes an address of the packet at `from` (4 or 16 bytes, by family) to `to` as 16, IPv4 mapped. */
function storeAddress(to: usize, from: usize): void {
  if (family == 6) memory.copy(to, from, 16);
  else storeMapped4(to, load<u32>(from));
}

@inline function storeMapped4(to: usize, v4: u32): void {
  store<u64>(to, 0);
  store<u32>(to, 0xffff0000, 8);
  store<u32>(to, v4, 12);
}

/**
 * Remembers the parsed packet at data[0..len), which svcpath has just
 * rewritten in place for `reason`: its identity and what it sent. For a
 * masqueraded request the source kept is the client's, still in the parser's
 * copy (the comparison only asks whether the node masqueraded too).
 */
export function rememberRewrite(data: usize, len: u32, reason: u8, masqueraded: bool): void {
  if (!identify(data, len)) return;
  const masqueradedRequest = masqueraded && reason == REASON_SERVICE;
  const ports = hasPorts(proto);
  if (masqueradedRequest) {
    storeParsedSource(value + RW_SADDR);
    store<u16>(value + RW_SPORT, sport);
  } else {
    storeAddress(value + RW_SADDR, l3 + (family == 6 ? IP6_SADDR : IP4_SADDR));
    store<u16>(value + RW_SPORT, ports ? load<u16>(l4 + L4_SPORT) : 0);
  }
  storeAddress(value + RW_DADDR, l3 + (family == 6 ? IP6_DADDR : IP4_DADDR));
  store<u16>(value + RW_DPORT, ports ? load<u16>(l4 + L4_DPORT) : 0);
  store<u8>(value + RW_REASON, reason);
  store<u8>(value + RW_FLAGS, masqueradedRequest ? RW_F_MASQUERADED : 0);
  mapUpdate(rewrites, key, value, BPF_ANY);
}

/** The source the parser read, before any rewrite, as 16 bytes. */
function storeParsedSource(to: usize): void {
  if (family == 6) memory.copy(to, saddr6, 16);
  else storeMapped4(to, saddr);
}

/**
 * A frame the node sent, parsed: when it is the node's copy of a packet
 * svcpath rewrote, counts how the two rewrites compare, and forgets the
 * packet (a packet the node sends out twice, from a bridge and then its
 * port, counts once).
 */
export function compareWithRewrite(data: usize, len: u32): void {
  if (!identify(data, len)) return;
  const rewrite = mapLookup(rewrites, key);
  if (rewrite == 0) return;
  countConformance(outcome(rewrite));
  mapDelete(rewrites, key);
}

/** How the parsed packet, as the node sent it, compares with what svcpath sent. */
function outcome(rewrite: usize): u32 {
  const sameSource = isAddress(rewrite + RW_SADDR, saddr, saddr6) && load<u16>(rewrite + RW_SPORT) == sport;
  const sourceAgrees = (load<u8>(rewrite + RW_FLAGS) & RW_F_MASQUERADED) != 0 ? !sameSource : sameSource;
  const sameDestination = isAddress(rewrite + RW_DADDR, daddr, daddr6) && load<u16>(rewrite + RW_DPORT) == dport;
  if (sourceAgrees && sameDestination) return CONFORM_REPRODUCED;
  const request = load<u8>(rewrite + RW_REASON) == REASON_SERVICE;
  const backendAgrees = sameDestination || (request && isBackend());
  if (sourceAgrees && backendAgrees) return CONFORM_OTHER_BACKEND;
  // Of a request, a source that disagrees is a masquerade one of the two did and the other did not.
  if (request && backendAgrees) return CONFORM_MASQUERADE_DIFFERS;
  return CONFORM_DIFFERS;
}

/** Whether a stored address is the parsed packet's `v4` or `v6` one (by family). */
function isAddress(stored: usize, v4: u32, v6: usize): bool {
  if (family == 6) return load<u64>(stored) == load<u64>(v6) && load<u64>(stored, 8) == load<u64>(v6, 8);
  return load<u64>(stored) == 0 && load<u32>(stored, 8) == 0xffff0000 && load<u32>(stored, 12) == v4;
}

/** The parsed packet's destination is a Service backend (of any Service: the maps know no more by address). */
function isBackend(): bool {
  if (family == 6) memory.copy(address, daddr6, 16);
  else storeMapped4(address, daddr);
  return (endpointClass(address, dport, proto) & STEER_F_BACKEND) != 0;
}

/** Counts one more of CONFORM_*. */
export function countConformance(outcome: u32): void {
  store<u32>(counterKey, outcome);
  const counter = mapLookup(conformance, counterKey);
  if (counter != 0) store<u64>(counter + CONFORM_COUNT, load<u64>(counter + CONFORM_COUNT) + 1);
}
