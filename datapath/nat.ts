// Address and port rewrites of the parsed packet, with incremental checksum
// updates of the IPv4 header and of the TCP/UDP checksum, whose pseudo-header
// covers the addresses too. SCTP's CRC32c is recomputed after a port change:
// the caller checks first that the whole datagram was captured. A later
// fragment has no L4 header: only its addresses change (the first fragment
// carried the ports and the L4 checksum, which covers the whole datagram).

import { csumReplace2, csumReplace4 } from './csum';
import {
  IP4_CSUM, IP4_DADDR, IP4_SADDR, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, L4_DPORT, L4_SPORT, TCP_CSUM, UDP_CSUM,
  IP6_DADDR, IP6_SADDR, ipTotalLen, l3, l4, laterFragment, proto,
} from './parse';
import { sctpUpdateChecksum } from './sctp';

/** Address of the L4 checksum to update, or 0 when there is none to update. */
function l4Checksum(): usize {
  if (proto == IPPROTO_TCP) return l4 + TCP_CSUM;
  // A zero UDP checksum means "not computed" (RFC 768) and must stay zero.
  if (proto == IPPROTO_UDP && load<u16>(l4 + UDP_CSUM) != 0) return l4 + UDP_CSUM;
  return 0;
}

/** A UDP checksum that comes out as zero is sent as all ones (RFC 768). */
@inline function keepUdpNonZero(csum: usize): void {
  if (proto == IPPROTO_UDP && load<u16>(csum) == 0) store<u16>(csum, 0xffff);
}

function rewrite(addrField: usize, portOffset: usize, addr: u32, port: u16): void {
  const oldAddr = load<u32>(addrField);
  store<u32>(addrField, addr);
  csumReplace4(l3 + IP4_CSUM, oldAddr, addr);
  if (laterFragment) return;
  const portField = l4 + portOffset;
  const oldPort = load<u16>(portField);
  store<u16>(portField, port);
  const csum = l4Checksum();
  if (csum != 0) {
    csumReplace4(csum, oldAddr, addr);
    csumReplace2(csum, oldPort, port);
    keepUdpNonZero(csum);
  }
}

/** After the rewrites of a packet: a changed SCTP port needs a new CRC32c. */
export function finishRewrite(portChanged: bool): void {
  if (proto == IPPROTO_SCTP && portChanged && !laterFragment) sctpUpdateChecksum(l4, ipTotalLen - <u32>(l4 - l3));
}

/** DNAT: the destination becomes addr:port (network order). */
export function rewriteDestination4(addr: u32, port: u16): void {
  rewrite(l3 + IP4_DADDR, L4_DPORT, addr, port);
}

/** Reverse NAT / SNAT: the source becomes addr:port (network order). */
export function rewriteSource4(addr: u32, port: u16): void {
  rewrite(l3 + IP4_SADDR, L4_SPORT, addr, port);
}

/** IPv6 has no header checksum; the L4 checksum's pseudo-header covers the 16-byte addresses. */
function rewrite6(addrField: usize, portOffset: usize, addr: usize, port: u16): void {
  const csum = l4Checksum();
  for (let i: usize = 0; i < 16; i += 4) {
    const before = load<u32>(addrField + i);
    const after = load<u32>(addr + i);
    store<u32>(addrField + i, after);
    if (csum != 0) csumReplace4(csum, before, after);
  }
  if (laterFragment) {
    if (csum != 0) keepUdpNonZero(csum);
    return;
  }
  const portField = l4 + portOffset;
  const oldPort = load<u16>(portField);
  store<u16>(portField, port);
  if (csum != 0) {
    csumReplace2(csum, oldPort, port);
    keepUdpNonZero(csum);
  }
}

export function rewriteDestination6(addr: usize, port: u16): void {
  rewrite6(l3 + IP6_DADDR, L4_DPORT, addr, port);
}

export function rewriteSource6(addr: usize, port: u16): void {
  rewrite6(l3 + IP6_SADDR, L4_SPORT, addr, port);
}
