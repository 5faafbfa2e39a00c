// ICMP errors about translated flows (conntrack's RELATED packets): a
// destination-unreachable, time-exceeded or parameter-problem message quotes
// the packet that caused it, and that packet was rewritten by the datapath.
// The error is translated to match what its receiver sent or expects:
//
//  - about a packet sent to a backend (the quote is client or masquerade
//    address -> backend): it goes back to the client; the quote's backend
//    becomes the frontend again, a masqueraded source the client again, and
//    an error sent by the backend itself comes from the frontend;
//  - about a reply (the quote is frontend -> client): it goes on to the
//    backend; the quote's frontend becomes the backend, a masqueraded
//    client the masquerade address and port.
//
// Every field changed inside the quote updates the quote's own checksums and
// the ICMP checksum incrementally, so nothing that was wrong is "repaired".
//
// An error quoting a packet the node masqueraded to a tuple of its own
// (datapath/node_masq.ts) is about that tuple's flow, as a reply to it is.

import { csumReplace2, csumReplace4 } from './csum';
import { ctIsFlushed, ctIsLive, ctLookup4, ctLookup6 } from './conntrack';
import {
  CT_BACKEND_ID, CT_DIR_ORIGINAL, CT_DIR_REPLY, CT_F_SNAT, CT_FLAGS, CT_REV_NAT_INDEX, CT_SERVICE_ID, CT_SNAT_PORT,
  LB4_BE_ADDRESS, LB4_BE_PORT, LB4_REVNAT_ADDRESS, LB4_REVNAT_PORT, LB6_BE_ADDRESS, LB6_BE_FLAGS, LB6_BE_PORT,
  LB6_REVNAT_ADDRESS, LB6_REVNAT_PORT, SNAT4_ADDRESS, SNAT4_PORT, SNAT6_ADDRESS, SNAT6_PORT,
} from './layout';
import { lookupBackend4, lookupBackend6, lookupRevNat4, lookupRevNat6 } from './lb';
import {
  IP4_CSUM, IP4_DADDR, IP4_SADDR, IP6_DADDR, IP6_SADDR, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, L4_DPORT, L4_SPORT, TCP_CSUM,
  UDP_CSUM, family, ipTotalLen, l3, l4,
} from './parse';
import { liveNodeTuple, liveNodeTuple4, nodeTupleFlow, nodeTupleReplyOrigin4, nodeTupleReplyOrigin6, nodeTuplesKnown } from './node_masq';
import { lookupSnat4, lookupSnat6, snatAddress, snatAddress6 } from './snat';

const ICMP_CSUM: usize = 2;
const ICMP_HLEN: usize = 8;

// The quoted packet, valid after parseQuote returned true.
let quote: usize = 0; // its IPv4 header
let quoteL4: usize = 0;
let quoteEnd: usize = 0;
export let quoteProto: u8 = 0;
export let quoteSaddr: u32 = 0;
export let quoteDaddr: u32 = 0;
export let quoteSport: u16 = 0;
export let quoteDport: u16 = 0;

// What the translation found, for the verdict.
export let relatedServiceId: u32 = 0;
export let relatedBackendId: u32 = 0;
export let relatedMasqueraded: bool = false;
/** The backend's flags when the error goes to a backend; 0xff when it goes to a client. */
export let relatedToBackendFlags: u8 = 0xff;

/** Finds the quoted IPv4 header and the ports of the quoted L4 header. */
function parseQuote(end: usize): bool {
  quote = l4 + ICMP_HLEN;
  if (quote + 20 > end || (load<u8>(quote) >> 4) != 4) return false;
  const ihl = <usize>(load<u8>(quote) & 0x0f) << 2;
  if (ihl < 20) return false;
  quoteL4 = quote + ihl;
  if (quoteL4 + 8 > end) return false; // RFC 792: at least the first 8 bytes of the L4 header
  quoteProto = load<u8>(quote, 9);
  if (quoteProto != IPPROTO_TCP && quoteProto != IPPROTO_UDP && quoteProto != IPPROTO_SCTP) return false;
  quoteEnd = end;
  quoteSaddr = load<u32>(quote + IP4_SADDR);
  quoteDaddr = load<u32>(quote + IP4_DADDR);
  quoteSport = load<u16>(quoteL4 + L4_SPORT);
  quoteDport = load<u16>(quoteL4 + L4_DPORT);
  return true;
}

/** A 16-bit field of the ICMP message changed from `from`: the ICMP checksum follows. */
@inline function icmpFollows2(from: u16, to: u16): void {
  csumReplace2(l4 + ICMP_CSUM, from, to);
}

/** The quoted L4 checksum, when the quote holds it and it is in use; 0 otherwise. */
function quoteL4Checksum(): usize {
  if (quoteProto == IPPROTO_UDP) return load<u16>(quoteL4 + UDP_CSUM) != 0 ? quoteL4 + UDP_CSUM : 0;
  if (quoteProto == IPPROTO_TCP && quoteL4 + TCP_CSUM + 2 <= quoteEnd) return quoteL4 + TCP_CSUM;
  return 0; // SCTP's CRC covers the whole packet, which the quote does not hold
}

/** Rewrites an address and port of the quote, keeping its checksums and the ICMP checksum right. */
function rewriteQuote(addrOffset: usize, portOffset: usize, addr: u32, port: u16): void {
  const addrField = quote + addrOffset;
  const portField = quoteL4 + portOffset;
  const oldAddr = load<u32>(addrField);
  const oldPort = load<u16>(portField);
  store<u32>(addrField, addr);
  store<u16>(portField, port);
  csumReplace4(l4 + ICMP_CSUM, oldAddr, addr);
  icmpFollows2(oldPort, port);
  const ipCsum = quote + IP4_CSUM;
  const oldIpCsum = load<u16>(ipCsum);
  csumReplace4(ipCsum, oldAddr, addr);
  icmpFollows2(oldIpCsum, load<u16>(ipCsum));
  const l4Csum = quoteL4Checksum();
  if (l4Csum != 0) {
    const old = load<u16>(l4Csum);
    csumReplace4(l4Csum, oldAddr, addr);
    csumReplace2(l4Csum, oldPort, port);
    if (quoteProto == IPPROTO_UDP && load<u16>(l4Csum) == 0) store<u16>(l4Csum, 0xffff);
    icmpFollows2(old, load<u16>(l4Csum));
  }
}

/** Rewrites an address of the outer IPv4 header. */
function rewriteOuter(addrOffset: usize, addr: u32): void {
  const field = l3 + addrOffset;
  const old = load<u32>(field);
  store<u32>(field, addr);
  csumReplace4(l3 + IP4_CSUM, old, addr);
}

/**
 * Finds the packet an ICMP error of the parsed frame's family quotes: its
 * protocol, addresses and ports are then in quoteProto, quoteSaddr(6) ... .
 */
export function parseQuotedPacket(data: usize, len: u32): bool {
  // The quote ends where the datagram does, not where the capture does: bytes
  // after it are link-layer padding, which the checksums do not cover.
  const end = min(data + <usize>len, l3 + <usize>ipTotalLen);
  return family == 6 ? parseQuote6(end) : parseQuote(end);
}

/**
 * Translates an ICMP error about a tracked flow. Returns false when it is
 * about no flow the datapath translated.
 */
export function translateIcmpError4(data: usize, len: u32, now: u64): bool {
  if (!parseQuotedPacket(data, len)) return false;
  relatedMasqueraded = false;
  if (nodeTuplesKnown()) {
    const held = liveNodeTuple4(quoteDaddr, quoteDport, quoteSaddr, quoteSport, quoteProto, now);
    if (held != 0) {
      const origin = nodeTupleReplyOrigin4(held, quoteDaddr, quoteDport, quoteSport, quoteProto, now);
      return origin != 0 && towardsClient(nodeTupleFlow, origin, true);
    }
  }
  // The quote reversed is how conntrack knows the flow: a reply tuple when the
  // quoted packet went to a backend, an original tuple when it was a reply.
  let entry = ctLookup4(quoteDaddr, quoteSaddr, quoteDport, quoteSport, quoteProto, CT_DIR_REPLY);
  if (entry != 0 && ctIsLive(entry, now, quoteProto)) {
    const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
    return towardsClient(entry, masqueraded ? lookupSnat4(quoteDaddr, quoteDport, quoteSport, quoteProto) : 0, masqueraded);
  }
  // A flushed flow is over, as the kernel's deleted entry is: an error about it is about no flow.
  entry = ctLookup4(quoteDaddr, quoteSaddr, quoteDport, quoteSport, quoteProto, CT_DIR_ORIGINAL);
  if (entry != 0 && ctIsLive(entry, now, quoteProto) && !ctIsFlushed(entry)) return towardsBackend(entry);
  return false;
}

/** To the client of the flow of `entry`: for a masqueraded flow, the one its NAT entry `origin` names. */
function towardsClient(entry: usize, origin: usize, masqueraded: bool): bool {
  const revnat = lookupRevNat4(load<u32>(entry + CT_REV_NAT_INDEX));
  if (revnat == 0) return false;
  if (masqueraded && origin == 0) return false;
  const backend = quoteDaddr;
  if (load<u32>(l3 + IP4_SADDR) == backend) rewriteOuter(IP4_SADDR, load<u32>(revnat + LB4_REVNAT_ADDRESS));
  rewriteQuote(IP4_DADDR, L4_DPORT, load<u32>(revnat + LB4_REVNAT_ADDRESS), load<u16>(revnat + LB4_REVNAT_PORT));
  if (masqueraded) {
    const client = load<u32>(origin + SNAT4_ADDRESS);
    rewriteQuote(IP4_SADDR, L4_SPORT, client, load<u16>(origin + SNAT4_PORT));
    rewriteOuter(IP4_DADDR, client);
  }
  relatedServiceId = load<u32>(entry + CT_SERVICE_ID);
  relatedBackendId = load<u32>(entry + CT_BACKEND_ID);
  relatedMasqueraded = masqueraded;
  relatedToBackendFlags = 0xff;
  return true;
}

function towardsBackend(entry: usize): bool {
  const be = lookupBackend4(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0) return false;
  const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
  const backend = load<u32>(be + LB4_BE_ADDRESS);
  rewriteOuter(IP4_DADDR, backend);
  rewriteQuote(IP4_SADDR, L4_SPORT, backend, load<u16>(be + LB4_BE_PORT));
  if (masqueraded) {
    rewriteQuote(IP4_DADDR, L4_DPORT, snatAddress, load<u16>(entry + CT_SNAT_PORT));
    rewriteOuter(IP4_SADDR, snatAddress);
  }
  relatedServiceId = load<u32>(entry + CT_SERVICE_ID);
  relatedBackendId = load<u32>(entry + CT_BACKEND_ID);
  relatedMasqueraded = masqueraded;
  relatedToBackendFlags = load<u8>(be, 7);
  return true;
}

// --- ICMPv6: the same translation; its checksum also covers the outer addresses ---------

const IP6_HLEN: usize = 40;
export const quoteSaddr6 = memory.data(16);
export const quoteDaddr6 = memory.data(16);

/** The quoted IPv6 packet: its header, then TCP/UDP/SCTP right after it (a quoted extension chain is not walked). */
function parseQuote6(end: usize): bool {
  quote = l4 + ICMP_HLEN;
  if (quote + IP6_HLEN > end || (load<u8>(quote) >> 4) != 6) return false;
  quoteProto = load<u8>(quote, 6);
  if (quoteProto != IPPROTO_TCP && quoteProto != IPPROTO_UDP && quoteProto != IPPROTO_SCTP) return false;
  quoteL4 = quote + IP6_HLEN;
  if (quoteL4 + 8 > end) return false;
  quoteEnd = end;
  memory.copy(quoteSaddr6, quote + IP6_SADDR, 16);
  memory.copy(quoteDaddr6, quote + IP6_DADDR, 16);
  quoteSport = load<u16>(quoteL4 + L4_SPORT);
  quoteDport = load<u16>(quoteL4 + L4_DPORT);
  return true;
}

/** Replaces 16 address bytes at `field`, updating the checksums at `csumA` (and `csumB` when not 0). */
function replaceAddress6(field: usize, addr: usize, csumA: usize, csumB: usize): void {
  for (let i: usize = 0; i < 16; i += 4) {
    const before = load<u32>(field + i);
    const after = load<u32>(addr + i);
    store<u32>(field + i, after);
    csumReplace4(csumA, before, after);
    if (csumB != 0) csumReplace4(csumB, before, after);
  }
}

function rewriteQuote6(addrOffset: usize, portOffset: usize, addr: usize, port: u16): void {
  const l4Csum = quoteL4Checksum();
  const oldL4Csum = l4Csum != 0 ? load<u16>(l4Csum) : 0;
  // The quoted L4 checksum covers the quoted addresses; the ICMPv6 checksum covers all quoted bytes.
  replaceAddress6(quote + addrOffset, addr, l4 + ICMP_CSUM, l4Csum);
  const portField = quoteL4 + portOffset;
  const oldPort = load<u16>(portField);
  store<u16>(portField, port);
  icmpFollows2(oldPort, port);
  if (l4Csum != 0) {
    csumReplace2(l4Csum, oldPort, port);
    if (quoteProto == IPPROTO_UDP && load<u16>(l4Csum) == 0) store<u16>(l4Csum, 0xffff);
    icmpFollows2(oldL4Csum, load<u16>(l4Csum));
  }
}

/** The outer IPv6 header has no checksum, but the ICMPv6 checksum's pseudo-header covers it. */
@inline function rewriteOuter6(addrOffset: usize, addr: usize): void {
  replaceAddress6(l3 + addrOffset, addr, l4 + ICMP_CSUM, 0);
}

@inline function sameAddress6(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}

/** translateIcmpError4 for ICMPv6 errors (destination unreachable, packet too big, time exceeded, parameter problem). */
export function translateIcmpError6(data: usize, len: u32, now: u64): bool {
  if (!parseQuotedPacket(data, len)) return false;
  relatedMasqueraded = false;
  if (nodeTuplesKnown()) {
    const held = liveNodeTuple(quoteDaddr6, quoteDport, quoteSaddr6, quoteSport, quoteProto, now);
    if (held != 0) {
      const origin = nodeTupleReplyOrigin6(held, quoteDaddr6, quoteDport, quoteSport, quoteProto, now);
      return origin != 0 && towardsClient6(nodeTupleFlow, origin, true);
    }
  }
  let entry = ctLookup6(quoteDaddr6, quoteSaddr6, quoteDport, quoteSport, quoteProto, CT_DIR_REPLY);
  if (entry != 0 && ctIsLive(entry, now, quoteProto)) {
    const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
    return towardsClient6(entry, masqueraded ? lookupSnat6(quoteDaddr6, quoteDport, quoteSport, quoteProto) : 0, masqueraded);
  }
  entry = ctLookup6(quoteDaddr6, quoteSaddr6, quoteDport, quoteSport, quoteProto, CT_DIR_ORIGINAL);
  if (entry != 0 && ctIsLive(entry, now, quoteProto) && !ctIsFlushed(entry)) return towardsBackend6(entry);
  return false;
}

function towardsClient6(entry: usize, origin: usize, masqueraded: bool): bool {
  const revnat = lookupRevNat6(load<u32>(entry + CT_REV_NAT_INDEX));
  if (revnat == 0) return false;
  if (masqueraded && origin == 0) return false;
  const front = revnat + LB6_REVNAT_ADDRESS;
  if (sameAddress6(l3 + IP6_SADDR, quoteDaddr6)) rewriteOuter6(IP6_SADDR, front);
  rewriteQuote6(IP6_DADDR, L4_DPORT, front, load<u16>(revnat + LB6_REVNAT_PORT));
  if (masqueraded) {
    rewriteQuote6(IP6_SADDR, L4_SPORT, origin + SNAT6_ADDRESS, load<u16>(origin + SNAT6_PORT));
    rewriteOuter6(IP6_DADDR, origin + SNAT6_ADDRESS);
  }
  relatedServiceId = load<u32>(entry + CT_SERVICE_ID);
  relatedBackendId = load<u32>(entry + CT_BACKEND_ID);
  relatedMasqueraded = masqueraded;
  relatedToBackendFlags = 0xff;
  return true;
}

function towardsBackend6(entry: usize): bool {
  const be = lookupBackend6(load<u32>(entry + CT_BACKEND_ID));
  if (be == 0) return false;
  const masqueraded = (load<u16>(entry + CT_FLAGS) & CT_F_SNAT) != 0;
  rewriteOuter6(IP6_DADDR, be + LB6_BE_ADDRESS);
  rewriteQuote6(IP6_SADDR, L4_SPORT, be + LB6_BE_ADDRESS, load<u16>(be + LB6_BE_PORT));
  if (masqueraded) {
    rewriteQuote6(IP6_DADDR, L4_DPORT, snatAddress6, load<u16>(entry + CT_SNAT_PORT));
    rewriteOuter6(IP6_SADDR, snatAddress6);
  }
  relatedServiceId = load<u32>(entry + CT_SERVICE_ID);
  relatedBackendId = load<u32>(entry + CT_BACKEND_ID);
  relatedMasqueraded = masqueraded;
  relatedToBackendFlags = load<u8>(be + LB6_BE_FLAGS);
  return true;
}
