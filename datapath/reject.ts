// REJECT: turning a packet into the ICMP error that goes back to its sender,
// as nf_reject/icmp_send do for kube-proxy's reject rules: an ICMP
// destination-unreachable from the address the packet was sent to, quoting
// the original datagram up to a 576-byte error (RFC 1812 4.3.2.3); for IPv6
// an ICMPv6 port unreachable of at most 1280 bytes (RFC 4443 2.4(c)).

import { csumAdd, csumFinish } from './csum';
import {
  IP4_CSUM, IP4_DADDR, IP4_SADDR, IP4_TOTAL_LEN, IP6_DADDR, IP6_SADDR, IPPROTO_ICMP, IPPROTO_ICMPV6, daddr, daddr6,
  ipTotalLen, l3, saddr, saddr6,
} from './parse';

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const IP4_HLEN: u32 = 20;
const ICMP_HLEN: u32 = 8;
const ICMP_ERROR_MAX: u32 = 576;
const TTL: u8 = 64;

/**
 * Rewrites the frame in place into an ICMP port-unreachable to the sender.
 * Returns the new frame length, or 0 when `capacity` leaves no room.
 * Other link-layer headers than Ethernet (cooked, loopback) stay as they are.
 */
export function buildPortUnreachable4(data: usize, len: u32, capacity: u32, swapMacs: bool): u32 {
  const l3off = <u32>(l3 - data);
  const captured = len - l3off;
  let quoted = ipTotalLen < captured ? ipTotalLen : captured;
  const room = ICMP_ERROR_MAX - IP4_HLEN - ICMP_HLEN;
  if (quoted > room) quoted = room;
  const newLen = l3off + IP4_HLEN + ICMP_HLEN + quoted;
  if (newLen > capacity) return 0;

  const icmp = l3 + IP4_HLEN;
  memory.copy(icmp + ICMP_HLEN, l3, quoted); // overlapping move, like memmove
  if (swapMacs) backToSender(data);

  store<u8>(l3, 0x45);
  store<u8>(l3, 0, 1); // TOS
  store<u16>(l3 + IP4_TOTAL_LEN, bswap<u16>(<u16>(IP4_HLEN + ICMP_HLEN + quoted)));
  store<u32>(l3, 0, 4); // identification, flags, fragment offset
  store<u8>(l3, TTL, 8);
  store<u8>(l3, IPPROTO_ICMP, 9);
  store<u16>(l3 + IP4_CSUM, 0);
  store<u32>(l3 + IP4_SADDR, daddr);
  store<u32>(l3 + IP4_DADDR, saddr);
  store<u16>(l3 + IP4_CSUM, csumFinish(csumAdd(l3, IP4_HLEN, 0)));

  store<u8>(icmp, ICMP_DEST_UNREACH);
  store<u8>(icmp, ICMP_PORT_UNREACH, 1);
  store<u16>(icmp, 0, 2); // checksum
  store<u32>(icmp, 0, 4); // unused
  store<u16>(icmp, csumFinish(csumAdd(icmp, ICMP_HLEN + quoted, 0)), 2);
  return newLen;
}

/** Ethernet: back to where it came from (VLAN tags stay as they were). */
function backToSender(data: usize): void {
  const dstMac0 = load<u32>(data);
  const dstMac4 = load<u16>(data, 4);
  memory.copy(data, data + 6, 6);
  store<u32>(data + 6, dstMac0);
  store<u16>(data + 10, dstMac4);
}

const IP6_HLEN: u32 = 40;
const ICMPV6_ERROR_MAX: u32 = 1280;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PORT_UNREACH: u8 = 4;
const pseudoHeader = memory.data(40);

/** buildPortUnreachable4 for IPv6: an ICMPv6 port unreachable, checksummed over the pseudo-header. */
export function buildPortUnreachable6(data: usize, len: u32, capacity: u32, swapMacs: bool): u32 {
  const l3off = <u32>(l3 - data);
  const captured = len - l3off;
  let quoted = ipTotalLen < captured ? ipTotalLen : captured;
  const room = ICMPV6_ERROR_MAX - IP6_HLEN - ICMP_HLEN;
  if (quoted > room) quoted = room;
  const newLen = l3off + IP6_HLEN + ICMP_HLEN + quoted;
  if (newLen > capacity) return 0;

  const icmp = l3 + IP6_HLEN;
  memory.copy(icmp + ICMP_HLEN, l3, quoted);
  if (swapMacs) backToSender(data);
  const icmpLen = ICMP_HLEN + quoted;
  store<u32>(l3, bswap<u32>(0x60000000)); // version 6, no traffic class or flow label
  store<u16>(l3, bswap<u16>(<u16>icmpLen), 4);
  store<u8>(l3, IPPROTO_ICMPV6, 6);
  store<u8>(l3, TTL, 7);
  memory.copy(l3 + IP6_SADDR, daddr6, 16);
  memory.copy(l3 + IP6_DADDR, saddr6, 16);

  store<u8>(icmp, ICMPV6_DEST_UNREACH);
  store<u8>(icmp, ICMPV6_PORT_UNREACH, 1);
  store<u16>(icmp, 0, 2);
  store<u32>(icmp, 0, 4);
  memory.copy(pseudoHeader, l3 + IP6_SADDR, 32);
  store<u32>(pseudoHeader + 32, bswap<u32>(icmpLen));
  store<u32>(pseudoHeader + 36, bswap<u32>(<u32>IPPROTO_ICMPV6));
  store<u16>(icmp, csumFinish(csumAdd(icmp, icmpLen, csumAdd(pseudoHeader, 40, 0))), 2);
  return newLen;
}
