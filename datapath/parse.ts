// Header parsing, as an XDP program does it: every read is preceded by a
// check that the bytes are inside the frame, so a short or lying frame can
// never make the datapath touch memory outside [data, data + len).
//
// Two lengths matter: `len`, the bytes we have (a capture may be cut at its
// snaplen), and `wireLen`, the bytes the packet had on the wire. A header
// that claims more than the wire carried is MALFORMED; a header that the
// capture cut short, while the wire had it, is TRUNCATED: we cannot decide.

import {
  DESC_F_INBOUND, DESC_F_OUTBOUND, LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2,
  LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_RAW, LINKTYPE_RAW_OPENBSD, REASON_FRAGMENT, REASON_MALFORMED, REASON_NON_IP,
  REASON_NO_SERVICE, REASON_OTHER_HOST, REASON_OUTGOING, REASON_TRUNCATED, REASON_UNSUPPORTED_LINKTYPE,
} from './layout';

export const ETH_P_IP: u16 = 0x0800;
export const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const MAX_VLAN_TAGS = 2;
const SLL_HLEN: usize = 16; // protocol type at 14
const SLL2_HLEN: usize = 20; // protocol type at 0
const LOOPBACK_HLEN: usize = 4; // address family
// Address families in NULL/LOOP headers: AF_INET everywhere, AF_INET6 per OS
// (Linux 10, FreeBSD 28, Darwin 30, the other BSDs 24).
const AF_INET: u32 = 2;
// Linux packet types (if_packet.h PACKET_*) and the loopback device's type
// (if_arp.h ARPHRD_LOOPBACK), as cooked captures record them.
const PACKET_OTHERHOST: u16 = 3;
const PACKET_OUTGOING: u16 = 4;
const ARPHRD_LOOPBACK: u16 = 772;

export const IPPROTO_ICMP: u8 = 1;
export const IPPROTO_TCP: u8 = 6;
export const IPPROTO_UDP: u8 = 17;
export const IPPROTO_SCTP: u8 = 132;
export const IPPROTO_ICMPV6: u8 = 58;

export const TCP_FIN: u8 = 0x01;
export const TCP_SYN: u8 = 0x02;
export const TCP_RST: u8 = 0x04;
export const TCP_ACK: u8 = 0x10;

// IPv4 header fields (offsets from the start of the IP header).
export const IP4_TOTAL_LEN: usize = 2;
export const IP4_CSUM: usize = 10;
export const IP4_SADDR: usize = 12;
export const IP4_DADDR: usize = 16;
// IPv6 header fields.
export const IP6_SADDR: usize = 8;
export const IP6_DADDR: usize = 24;
// L4 fields (offsets from the start of the TCP/UDP header).
export const L4_SPORT: usize = 0;
export const L4_DPORT: usize = 2;
export const TCP_CSUM: usize = 16;
export const UDP_CSUM: usize = 6;

/** The parsed packet: valid after parsePacket returned 0. */
export let family: u8 = 4; // 4 or 6
export let l3: usize = 0; // address of the IP header
export let l4: usize = 0; // address of the L4 header
export let ipTotalLen: u32 = 0;
export let proto: u8 = 0;
export let saddr: u32 = 0; // network order, as in the packet
export let daddr: u32 = 0;
export let sport: u16 = 0; // network order; 0 when the protocol has no ports
export let dport: u16 = 0;
export let tcpFlags: u8 = 0;
export let icmpType: u8 = 0xff; // 0xff: not ICMP, or its header was not captured
export let ipId: u16 = 0; // network order
export let fragId6: u32 = 0; // IPv6 fragment header identification, network order
/** IPv6 addresses of the packet, copied out before any rewrite. */
export const saddr6 = memory.data(16);
export const daddr6 = memory.data(16);
/**
 * The capture says which way the frame went: a cooked header's packet type,
 * or the pcapng direction the host put in the descriptor. Only such frames
 * are compared with the node's own copies (datapath/conformance.ts).
 */
export let directionKnown: bool = false;
/** Sent by the node (or on its loopback device): decided OUTGOING, whatever it carries. */
export let sentByNode: bool = false;
/** The reason parsing alone gives (0: a packet to look at), also for a frame decided otherwise. */
export let packetReason: u8 = 0;
/** A fragment after the first: no L4 header; its ports come from the fragment map. */
export let laterFragment: bool = false;
/** The first fragment of a fragmented datagram (more fragments follow). */
export let firstFragment: bool = false;

@inline function be16(p: usize): u16 {
  return bswap<u16>(load<u16>(p));
}

/** The reason for a header that does not fit in the captured bytes. */
@inline function cutShort(len: u32, wireLen: u32): u8 {
  return len < wireLen ? REASON_TRUNCATED : REASON_MALFORMED;
}

/** The frame's layer 2: where its network header starts, and what it is. */
let l2len: usize = 0;
let ethertype: u16 = 0;

@inline function isIPv6Family(family: u32): bool {
  return family == 10 || family == 24 || family == 28 || family == 30;
}

/**
 * Reads the link-layer header of `linktype`: sets l2len and ethertype.
 * Returns 0, or the reason the frame cannot be looked at further.
 */
function parseLinkLayer(data: usize, end: usize, linktype: u32, cut: u8): u8 {
  if (linktype == LINKTYPE_ETHERNET) {
    if (data + ETH_HLEN > end) return cut;
    l2len = ETH_HLEN;
    ethertype = be16(data + 12);
  } else if (linktype == LINKTYPE_LINUX_SLL) {
    if (data + SLL_HLEN > end) return cut;
    l2len = SLL_HLEN;
    ethertype = be16(data + 14);
    return cookedDirection(be16(data), be16(data + 2));
  } else if (linktype == LINKTYPE_LINUX_SLL2) {
    if (data + SLL2_HLEN > end) return cut;
    l2len = SLL2_HLEN;
    ethertype = be16(data);
    return cookedDirection(<u16>load<u8>(data + 10), be16(data + 8));
  } else if (linktype == LINKTYPE_IPV4 || linktype == LINKTYPE_IPV6) {
    // The link type says which IP it is (a header of the other version is a bad one: MALFORMED).
    l2len = 0;
    ethertype = linktype == LINKTYPE_IPV4 ? ETH_P_IP : ETH_P_IPV6;
  } else if (linktype == LINKTYPE_RAW || linktype == LINKTYPE_RAW_OPENBSD) {
    // No header: the IP version nibble says which IP it is.
    if (data + 1 > end) return cut;
    l2len = 0;
    const version = load<u8>(data) >> 4;
    ethertype = version == 4 ? ETH_P_IP : version == 6 ? ETH_P_IPV6 : 0;
  } else if (linktype == LINKTYPE_NULL || linktype == LINKTYPE_LOOP) {
    if (data + LOOPBACK_HLEN > end) return cut;
    l2len = LOOPBACK_HLEN;
    const raw = load<u32>(data);
    // LOOP is in network order; NULL in the capturing host's, which we do not know: try both.
    let family = bswap<u32>(raw);
    if (linktype == LINKTYPE_NULL && family > 0xffff) family = raw;
    ethertype = family == AF_INET ? ETH_P_IP : isIPv6Family(family) ? ETH_P_IPV6 : 0;
  } else {
    return REASON_UNSUPPORTED_LINKTYPE;
  }
  return 0;
}

/**
 * A cooked header's packet type and device type. Outgoing frames (4) are the
 * node's; so is everything on the loopback device, which shows each local
 * packet twice, going out and coming back in, both after the node's own NAT.
 * A frame for another host's link address (3, a promiscuous interface such
 * as a bridge port) is one the node's IP layer never takes. The other types
 * are arrivals: to this host (0), broadcast (1), multicast (2); Linux shows
 * no 5 (looped-back multicast) to captures, and 6 and 7 only on netlink
 * monitors, which carry no IP.
 */
function cookedDirection(packetType: u16, deviceType: u16): u8 {
  directionKnown = true;
  if (packetType == PACKET_OUTGOING || deviceType == ARPHRD_LOOPBACK) sentByNode = true;
  return packetType == PACKET_OTHERHOST && !sentByNode ? REASON_OTHER_HOST : 0;
}

/** True when the frame's link layer has Ethernet addresses (an ICMP error swaps them). */
export function hasEthernetAddresses(linktype: u32): bool {
  return linktype == LINKTYPE_ETHERNET;
}

/**
 * Parses the link layer of `linktype` (with up to two 802.1Q/802.1ad tags),
 * IPv4 and TCP/UDP/SCTP. Returns 0 for a packet the load balancer should look
 * at, otherwise the reason it should not (the caller picks the verdict):
 * REASON_OUTGOING first for a frame the node sent, which `captureFlags`
 * (DESC_F_INBOUND, DESC_F_OUTBOUND from a pcapng record) or a cooked header
 * says; packetReason keeps what its parsing gave.
 */
export function parsePacket(data: usize, len: u32, wireLen: u32, linktype: u32, captureFlags: u16): u8 {
  sentByNode = (captureFlags & DESC_F_OUTBOUND) != 0;
  directionKnown = (captureFlags & (DESC_F_INBOUND | DESC_F_OUTBOUND)) != 0;
  packetReason = parseHeaders(data, len, wireLen, linktype);
  return sentByNode ? REASON_OUTGOING : packetReason;
}

function parseHeaders(data: usize, len: u32, wireLen: u32, linktype: u32): u8 {
  const end = data + len;
  const cut = cutShort(len, wireLen);
  const l2 = parseLinkLayer(data, end, linktype, cut);
  if (l2 != 0) return l2;
  for (let tags = 0; tags < MAX_VLAN_TAGS && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD); tags++) {
    if (data + l2len + VLAN_HLEN > end) return cut;
    ethertype = be16(data + l2len + 2);
    l2len += VLAN_HLEN;
  }
  if (ethertype == ETH_P_IPV6) return parseIPv6(data + l2len, end, <u32>(wireLen - <u32>l2len), len < wireLen);
  if (ethertype != ETH_P_IP) return REASON_NON_IP;
  return parseIPv4(data + l2len, end, <u32>(wireLen - <u32>l2len), len < wireLen);
}

const IPV6_HLEN: usize = 40;
const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_NONE: u8 = 59;
const NEXTHDR_DEST: u8 = 60;
/** As Cilium's IPV6_MAX_HEADERS: a longer chain is not walked. */
const MAX_EXTENSION_HEADERS = 8;

/**
 * Parses IPv6 and its extension chain (hop-by-hop, routing, destination
 * options, fragment, AH) against the captured and the wire length, then the
 * L4 header. A later fragment returns REASON_FRAGMENT, as for IPv4.
 */
function parseIPv6(ip: usize, end: usize, wireRoom: u32, captureCut: bool): u8 {
  const cut = captureCut ? REASON_TRUNCATED : REASON_MALFORMED;
  if (ip + IPV6_HLEN > end) return cut;
  if ((load<u8>(ip) >> 4) != 6) return REASON_MALFORMED;
  const payloadLen: u32 = be16(ip + 4);
  // A payload length of 0 announces a jumbogram (RFC 2675), which no Service path carries.
  if (payloadLen == 0 || <u32>IPV6_HLEN + payloadLen > wireRoom) return REASON_MALFORMED;
  const payloadEnd = ip + IPV6_HLEN + <usize>payloadLen;
  family = 6;
  l3 = ip;
  ipTotalLen = <u32>IPV6_HLEN + payloadLen;
  memory.copy(saddr6, ip + 8, 16);
  memory.copy(daddr6, ip + 24, 16);
  sport = 0;
  dport = 0;
  tcpFlags = 0;
  icmpType = 0xff;
  laterFragment = false;
  firstFragment = false;
  let next = load<u8>(ip, 6);
  let at = ip + IPV6_HLEN;
  for (let i = 0; i < MAX_EXTENSION_HEADERS; i++) {
    let extLen: usize = 8; // the fragment header's size
    if (next == NEXTHDR_HOP || next == NEXTHDR_ROUTING || next == NEXTHDR_DEST) {
      if (at + 2 > payloadEnd) return REASON_MALFORMED;
      if (at + 2 > end) return cut;
      extLen = (<usize>load<u8>(at, 1) + 1) << 3;
    } else if (next == NEXTHDR_AUTH) {
      if (at + 2 > payloadEnd) return REASON_MALFORMED;
      if (at + 2 > end) return cut;
      extLen = (<usize>load<u8>(at, 1) + 2) << 2;
    } else if (next != NEXTHDR_FRAGMENT) {
      break;
    }
    if (at + extLen > payloadEnd) return REASON_MALFORMED;
    if (at + extLen > end) return cut;
    if (next == NEXTHDR_FRAGMENT) {
      const fragField = be16(at + 2);
      laterFragment = (fragField >> 3) != 0;
      firstFragment = !laterFragment && (fragField & 1) != 0;
      fragId6 = load<u32>(at + 4);
    }
    next = load<u8>(at);
    at += extLen;
  }
  proto = next;
  if (laterFragment) return REASON_FRAGMENT;
  if (proto == NEXTHDR_NONE) return REASON_NO_SERVICE;
  l4 = at;
  return parseL4(<u32>(payloadEnd - at), end, cut);
}

function parseIPv4(ip: usize, end: usize, wireRoom: u32, captureCut: bool): u8 {
  const cut = captureCut ? REASON_TRUNCATED : REASON_MALFORMED;
  if (ip + 20 > end) return cut;
  const verIhl = load<u8>(ip);
  if (verIhl >> 4 != 4) return REASON_MALFORMED;
  const ihl: u32 = <u32>(verIhl & 0x0f) << 2;
  if (ihl < 20) return REASON_MALFORMED;
  const totalLen: u32 = be16(ip + IP4_TOTAL_LEN);
  // The datagram must hold its own header and fit in what the wire carried.
  if (totalLen < ihl || totalLen > wireRoom) return REASON_MALFORMED;
  if (ip + ihl > end) return cut;
  family = 4;
  l3 = ip;
  ipTotalLen = totalLen;
  proto = load<u8>(ip, 9);
  saddr = load<u32>(ip + IP4_SADDR);
  daddr = load<u32>(ip + IP4_DADDR);
  sport = 0;
  dport = 0;
  tcpFlags = 0;
  icmpType = 0xff;
  laterFragment = false;
  firstFragment = false;
  ipId = load<u16>(ip + 4);
  const fragField = be16(ip + 6);
  laterFragment = (fragField & 0x1fff) != 0;
  firstFragment = !laterFragment && (fragField & 0x2000) != 0;
  // A later fragment carries no L4 header: the caller looks its ports up.
  if (laterFragment) return REASON_FRAGMENT;
  l4 = ip + ihl;
  return parseL4(totalLen - ihl, end, cut);
}

/** The L4 header at l4, of `segLen` bytes by the IP header's word: ports, TCP flags, ICMP type. */
function parseL4(segLen: u32, end: usize, cut: u8): u8 {
  if (proto == IPPROTO_TCP) {
    if (segLen < 20) return REASON_MALFORMED;
    if (l4 + 20 > end) return cut;
    const doff: u32 = <u32>(load<u8>(l4, 12) >> 4) << 2;
    if (doff < 20 || doff > segLen) return REASON_MALFORMED;
    tcpFlags = load<u8>(l4, 13);
  } else if (proto == IPPROTO_UDP) {
    if (segLen < 8) return REASON_MALFORMED;
    if (l4 + 8 > end) return cut;
    // A first fragment's UDP length is the whole datagram's, beyond this fragment.
    const udpLen: u32 = be16(l4 + 4);
    if (udpLen < 8 || (udpLen > segLen && !firstFragment)) return REASON_MALFORMED;
  } else if (proto == IPPROTO_SCTP) {
    if (segLen < 12) return REASON_MALFORMED;
    if (l4 + 12 > end) return cut;
  } else {
    if ((proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6) && segLen >= 8 && l4 + 1 <= end) icmpType = load<u8>(l4);
    return 0;
  }
  sport = load<u16>(l4 + L4_SPORT);
  dport = load<u16>(l4 + L4_DPORT);
  return 0;
}

/** Gives a later fragment the ports its datagram's first fragment carried. */
export function adoptFragmentPorts(fragSport: u16, fragDport: u16): void {
  sport = fragSport;
  dport = fragDport;
}

/** The protocol carries ports a service can be reached on. */
@inline export function hasPorts(p: u8): bool {
  return p == IPPROTO_TCP || p == IPPROTO_UDP || p == IPPROTO_SCTP;
}

/** ICMP errors are never answered with ICMP errors (RFC 1122 3.2.2, RFC 4443 2.4). */
export function isIcmpError(): bool {
  if (proto == IPPROTO_ICMPV6) return icmpType >= 1 && icmpType <= 4;
  return proto == IPPROTO_ICMP && (icmpType == 3 || icmpType == 4 || icmpType == 5 || icmpType == 11 || icmpType == 12);
}

/** True when every byte of the IP datagram was captured (needed to recompute a CRC). */
export function datagramCaptured(data: usize, len: u32): bool {
  return <usize>(l3 - data) + <usize>ipTotalLen <= <usize>len;
}
