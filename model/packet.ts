/**
 * Parsing of the frames the model handles — Ethernet and Linux cooked (v1,
 * v2) frames with up to two VLAN tags, raw IPv4 and IPv6 (link types 228,
 * 229); IPv4 (options and fragments allowed), IPv6 without extension
 * headers, TCP, UDP and ICMP/ICMPv6 messages that are not errors — and the
 * rewrites of a parsed packet. A frame outside that scope, or whose headers
 * contradict each other, raises OutsideModelScope: the model does not guess.
 */
import { checksumOf, onesComplementSum, updateChecksum } from './checksum.js';
import type { Family } from './addresses.js';

export class OutsideModelScope extends Error {
  override readonly name = 'OutsideModelScope';
  constructor(what: string) {
    super(`outside the model's scope: ${what}`);
  }
}

const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const IPPROTO_ICMPV6 = 58;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const VLAN_TPIDS = [0x8100, 0x88a8];
const MAX_VLAN_TAGS = 2;

const LINKTYPE_ETHERNET = 1;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;
const LINKTYPE_LINUX_SLL2 = 276;
/** Linux's packet types (PACKET_OTHERHOST, PACKET_OUTGOING) and loopback device type, in cooked headers. */
const PACKET_OTHERHOST = 3;
const PACKET_OUTGOING = 4;
const ARPHRD_LOOPBACK = 772;

/** The link layer of a frame: what it carries, where VLAN tags or the network header start, which way it went. */
export interface LinkLayer {
  /** The ethertype of what follows the header (0x8100 or 0x88a8 for VLAN tags, then theirs). */
  ethertype: number;
  /** Bytes of link-layer header, before any VLAN tag. */
  length: number;
  /** Ethernet addresses, which a REJECT swaps. */
  ethernet: boolean;
  /**
   * The node sent it (a cooked header's outgoing packet type, or any frame on
   * the loopback device), it was addressed to another host (promiscuous), or
   * it arrived.
   */
  direction: 'sent' | 'other-host' | 'arrived';
  /** The header says which way the frame went (a cooked one); an Ethernet or raw IP frame's says nothing. */
  saysDirection: boolean;
}

/** Reads the link layer of `linktype`; other link types are outside the model's scope. */
export function parseLinkLayer(frame: Uint8Array, linktype: number): LinkLayer {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  switch (linktype) {
    case LINKTYPE_ETHERNET:
      need(frame, 14, 'Ethernet header');
      return { ethertype: view.getUint16(12), length: 14, ethernet: true, direction: 'arrived', saysDirection: false };
    case LINKTYPE_LINUX_SLL:
      need(frame, 16, 'cooked header');
      return {
        ethertype: view.getUint16(14),
        length: 16,
        ethernet: false,
        direction: cookedDirection(view.getUint16(0), view.getUint16(2)),
        saysDirection: true,
      };
    case LINKTYPE_LINUX_SLL2:
      need(frame, 20, 'cooked header');
      return {
        ethertype: view.getUint16(0),
        length: 20,
        ethernet: false,
        direction: cookedDirection(view.getUint8(10), view.getUint16(8)),
        saysDirection: true,
      };
    case LINKTYPE_IPV4:
    case LINKTYPE_IPV6:
      return {
        ethertype: linktype === LINKTYPE_IPV4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6,
        length: 0,
        ethernet: false,
        direction: 'arrived',
        saysDirection: false,
      };
    default:
      throw new OutsideModelScope(`link type ${linktype}`);
  }
}

function cookedDirection(packetType: number, deviceType: number): LinkLayer['direction'] {
  if (packetType === PACKET_OUTGOING || deviceType === ARPHRD_LOOPBACK) return 'sent';
  return packetType === PACKET_OTHERHOST ? 'other-host' : 'arrived';
}

export interface IpPacket {
  family: Family;
  /** Offset of the IP header in the frame. */
  l3: number;
  /** The datagram's length by its header: IPv4 total length, or 40 + IPv6 payload length. */
  length: number;
  protocol: number;
  source: Uint8Array;
  destination: Uint8Array;
  /** Offset of the L4 header. */
  l4: number;
  /** TCP and UDP only; a later fragment has them from its datagram's first fragment. */
  ports?: { source: number; destination: number };
  /** 0 unless TCP (and 0 for a later fragment, which has no TCP header). */
  tcpFlags: number;
  /** An IPv4 fragment: the first one (offset 0, more to come) carries the L4 header, the later ones none. */
  fragment?: { id: number; position: 'first' | 'later' };
  /** The link layer has Ethernet addresses (a REJECT swaps them). */
  ethernet: boolean;
}

/** The IP packet after `link`, or undefined for a frame that carries something else (ARP, LLDP, ...). */
export function parseFrame(frame: Uint8Array, link: LinkLayer): IpPacket | undefined {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  let { ethertype, length: l3 } = link;
  // A tag follows the header: the priority and VLAN id, then the ethertype of what follows it.
  for (let tags = 0; VLAN_TPIDS.includes(ethertype); tags++) {
    if (tags === MAX_VLAN_TAGS) throw new OutsideModelScope('more than two VLAN tags');
    need(frame, l3 + 4, 'VLAN tag');
    ethertype = view.getUint16(l3 + 2);
    l3 += 4;
  }
  if (ethertype === ETHERTYPE_IPV4) return parseIPv4(frame, view, l3, link.ethernet);
  if (ethertype === ETHERTYPE_IPV6) return parseIPv6(frame, view, l3, link.ethernet);
  return undefined;
}

function need(frame: Uint8Array, bytes: number, what: string): void {
  if (frame.length < bytes) throw new OutsideModelScope(`frame too short for its ${what}`);
}

function parseIPv4(frame: Uint8Array, view: DataView, l3: number, ethernet: boolean): IpPacket {
  need(frame, l3 + 20, 'IPv4 header');
  const versionIhl = view.getUint8(l3);
  const headerLength = (versionIhl & 0x0f) * 4;
  const length = view.getUint16(l3 + 2);
  if (versionIhl >> 4 !== 4 || headerLength < 20 || length < headerLength || l3 + length > frame.length) {
    throw new OutsideModelScope('an IPv4 header that contradicts itself or the frame');
  }
  const protocol = view.getUint8(l3 + 9);
  if (![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP].includes(protocol)) throw new OutsideModelScope(`IPv4 protocol ${protocol}`);
  const fragmentField = view.getUint16(l3 + 6);
  const moreFragments = (fragmentField & 0x2000) !== 0;
  const offset = fragmentField & 0x1fff;
  const packet: IpPacket = {
    family: 4,
    l3,
    length,
    protocol,
    ethernet,
    source: frame.slice(l3 + 12, l3 + 16),
    destination: frame.slice(l3 + 16, l3 + 20),
    l4: l3 + headerLength,
    tcpFlags: 0,
    fragment: offset !== 0 || moreFragments ? { id: view.getUint16(l3 + 4), position: offset !== 0 ? 'later' : 'first' } : undefined,
  };
  return packet.fragment?.position === 'later' ? packet : parseL4(view, packet);
}

function parseIPv6(frame: Uint8Array, view: DataView, l3: number, ethernet: boolean): IpPacket {
  need(frame, l3 + 40, 'IPv6 header');
  const payloadLength = view.getUint16(l3 + 4);
  if (view.getUint8(l3) >> 4 !== 6 || payloadLength === 0 || l3 + 40 + payloadLength > frame.length) {
    throw new OutsideModelScope('an IPv6 header that contradicts itself or the frame');
  }
  const protocol = view.getUint8(l3 + 6);
  if (![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6].includes(protocol)) throw new OutsideModelScope(`IPv6 next header ${protocol}`);
  return parseL4(view, {
    family: 6,
    l3,
    length: 40 + payloadLength,
    protocol,
    ethernet,
    source: frame.slice(l3 + 8, l3 + 24),
    destination: frame.slice(l3 + 24, l3 + 40),
    l4: l3 + 40,
    tcpFlags: 0,
  });
}

function parseL4(view: DataView, packet: IpPacket): IpPacket {
  const segment = packet.l3 + packet.length - packet.l4;
  const { l4 } = packet;
  switch (packet.protocol) {
    case IPPROTO_TCP: {
      if (segment < 20 || view.getUint8(l4 + 12) >> 4 < 5 || (view.getUint8(l4 + 12) >> 4) * 4 > segment) {
        throw new OutsideModelScope('a TCP header that does not fit its segment');
      }
      packet.tcpFlags = view.getUint8(l4 + 13);
      break;
    }
    case IPPROTO_UDP: {
      // A first fragment's UDP length is the whole datagram's, beyond this fragment.
      const beyond = view.getUint16(l4 + 4) > segment && packet.fragment?.position !== 'first';
      if (segment < 8 || view.getUint16(l4 + 4) < 8 || beyond) {
        throw new OutsideModelScope('a UDP header that does not fit its datagram');
      }
      break;
    }
    default: {
      if (segment < 8) throw new OutsideModelScope('an ICMP message shorter than its header');
      // Errors about flows are translated (ICMP_RELATED) or never answered: not modelled.
      const type = view.getUint8(l4);
      const isError = packet.protocol === IPPROTO_ICMP ? [3, 4, 5, 11, 12].includes(type) : type >= 1 && type <= 4;
      if (isError) throw new OutsideModelScope(`ICMP errors (type ${type})`);
      return packet;
    }
  }
  packet.ports = { source: view.getUint16(l4), destination: view.getUint16(l4 + 2) };
  return packet;
}

/** Payload bytes of a packet's identity: enough to tell apart packets with the same headers. */
const IDENTITY_PAYLOAD = 64;

/**
 * What NAT leaves alone of a TCP or UDP packet (README, Captures: the
 * node's own rewrites): family, protocol, IPv4 identification or IPv6 flow
 * label, the payload's length and first 64 bytes, and TCP's sequence and
 * acknowledgment numbers. Undefined for a fragment, whose datagram the node
 * reassembles before its NAT.
 */
export function packetIdentity(frame: Uint8Array, packet: IpPacket): string | undefined {
  if (packet.fragment || !packet.ports) return undefined;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const { l3, l4 } = packet;
  const tcp = packet.protocol === IPPROTO_TCP;
  const header = tcp ? (view.getUint8(l4 + 12) >> 4) * 4 : 8;
  const payloadLength = l3 + packet.length - l4 - header;
  const ipId = packet.family === 4 ? view.getUint16(l3 + 4) : view.getUint32(l3) & 0xfffff;
  const numbers = tcp ? `${view.getUint32(l4 + 4)} ${view.getUint32(l4 + 8)}` : '';
  const payload = Buffer.from(frame.subarray(l4 + header, l4 + header + Math.min(payloadLength, IDENTITY_PAYLOAD))).toString('hex');
  return `${packet.family} ${packet.protocol} ${ipId} ${payloadLength} ${numbers} ${payload}`;
}

/**
 * NAT of one end of a TCP or UDP packet: its address and port become
 * `address`:`port`. The IPv4 header checksum and the L4 checksum (whose
 * pseudo-header covers the addresses) are updated incrementally; a zero UDP
 * checksum means "none" and stays zero, while an updated one that comes out
 * zero is sent as 0xffff (RFC 768; RFC 8200 §8.1 for IPv6). A later fragment
 * has no L4 header: only its address changes.
 */
export function rewriteEnd(frame: Uint8Array, packet: IpPacket, end: 'source' | 'destination', address: Uint8Array, port: number): void {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const addressAt = packet.l3 + (packet.family === 4 ? (end === 'source' ? 12 : 16) : end === 'source' ? 8 : 24);
  const oldAddress = frame.slice(addressAt, addressAt + address.length);
  frame.set(address, addressAt);
  if (packet.family === 4) {
    view.setUint16(packet.l3 + 10, updateChecksum(view.getUint16(packet.l3 + 10), oldAddress, address));
  }
  if (packet.fragment?.position === 'later') return;
  const portAt = packet.l4 + (end === 'source' ? 0 : 2);
  const oldPort = frame.slice(portAt, portAt + 2);
  view.setUint16(portAt, port);
  const newPort = frame.slice(portAt, portAt + 2);
  const checksumAt = packet.l4 + (packet.protocol === IPPROTO_TCP ? 16 : 6);
  const before = view.getUint16(checksumAt);
  if (packet.protocol === IPPROTO_UDP && before === 0) return;
  let after = updateChecksum(updateChecksum(before, oldAddress, address), oldPort, newPort);
  if (packet.protocol === IPPROTO_UDP && after === 0) after = 0xffff;
  view.setUint16(checksumAt, after);
}

const ICMP_ERROR_MAX = 576; // RFC 1812 4.3.2.3
const ICMPV6_ERROR_MAX = 1280; // RFC 4443 2.4(c)
const ERROR_TTL = 64;

/**
 * The REJECT answer: the frame turned into an ICMP (or ICMPv6) port
 * unreachable back to its sender, from the address it was sent to. Link
 * layer kept, an Ethernet one with the MAC addresses swapped (VLAN tags as they were); a new
 * IP header (no TOS/traffic class, IPv4 id and flags 0, TTL 64); the ICMP
 * header; and as much of the original datagram (from its IP header, without
 * Ethernet padding) as fits in a 576-byte ICMP or 1280-byte ICMPv6 error.
 * Fresh headers get full checksums.
 */
export function portUnreachable(frame: Uint8Array, packet: IpPacket): Uint8Array {
  const v4 = packet.family === 4;
  const ipHeaderLength = v4 ? 20 : 40;
  const quoted = Math.min(packet.length, (v4 ? ICMP_ERROR_MAX : ICMPV6_ERROR_MAX) - ipHeaderLength - 8);
  const icmpLength = 8 + quoted;
  const out = new Uint8Array(packet.l3 + ipHeaderLength + icmpLength);
  const view = new DataView(out.buffer);
  out.set(frame.subarray(0, packet.l3));
  if (packet.ethernet) {
    out.set(frame.subarray(6, 12), 0);
    out.set(frame.subarray(0, 6), 6);
  }
  const ip = packet.l3;
  const icmp = ip + ipHeaderLength;
  out.set(frame.subarray(packet.l3, packet.l3 + quoted), icmp + 8);
  if (v4) {
    view.setUint8(ip, 0x45);
    view.setUint16(ip + 2, ipHeaderLength + icmpLength);
    view.setUint8(ip + 8, ERROR_TTL);
    view.setUint8(ip + 9, IPPROTO_ICMP);
    out.set(packet.destination, ip + 12);
    out.set(packet.source, ip + 16);
    view.setUint16(ip + 10, checksumOf(onesComplementSum(out.subarray(ip, icmp))));
    out[icmp] = 3; // destination unreachable
    out[icmp + 1] = 3; // port unreachable
    view.setUint16(icmp + 2, checksumOf(onesComplementSum(out.subarray(icmp))));
  } else {
    view.setUint32(ip, 0x60000000);
    view.setUint16(ip + 4, icmpLength);
    view.setUint8(ip + 6, IPPROTO_ICMPV6);
    view.setUint8(ip + 7, ERROR_TTL);
    out.set(packet.destination, ip + 8);
    out.set(packet.source, ip + 24);
    out[icmp] = 1; // destination unreachable
    out[icmp + 1] = 4; // port unreachable
    const pseudoHeader = new Uint8Array(40);
    pseudoHeader.set(out.subarray(ip + 8, ip + 40));
    new DataView(pseudoHeader.buffer).setUint32(32, icmpLength);
    pseudoHeader[39] = IPPROTO_ICMPV6;
    view.setUint16(icmp + 2, checksumOf(onesComplementSum(out.subarray(icmp), onesComplementSum(pseudoHeader))));
  }
  return out;
}
