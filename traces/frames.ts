/**
 * Ethernet/IPv4/IPv6 frames for tests and trace generation: a builder, a
 * decoder and a checksum verifier.
 *
 * This file is the test suite's independent reference for what a correct
 * frame is, so it deliberately shares no code with the datapath and computes
 * every checksum in full over the bytes (never incrementally): a datapath bug
 * in incremental checksum updates cannot then hide behind the same bug here.
 */
import ipaddr from 'ipaddr.js';

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
/** 802.1Q customer tag. */
export const TPID_8021Q = 0x8100;
/** 802.1ad service tag: the outer tag of QinQ. */
export const TPID_8021AD = 0x88a8;
/** Pre-standard QinQ outer tag, still seen on older switches. */
export const TPID_QINQ_LEGACY = 0x9100;

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

/** Next Header values of the extension headers buildFrame writes (RFC 8200 §4). */
export const IPV6_EXTENSION_TYPES = {
  'hop-by-hop': 0,
  routing: 43,
  fragment: 44,
  destination: 60,
} as const;
const IPV6_NEXT_HEADER_AH = 51;
/**
 * Extension headers in RFC 8200 §4's generic format (Next Header, then the
 * length in 8-byte units not counting the first 8), which a decoder can skip
 * without understanding them: those above plus Mobility (135), HIP (139) and
 * Shim6 (140). ESP (50) is not among them: what follows it is encrypted.
 */
const IPV6_GENERIC_EXTENSIONS: ReadonlySet<number> = new Set([0, 43, 60, 135, 139, 140]);

/** The IPv4 flags field (3 bits): bit 0x4 is reserved. */
export const IPV4_FLAG_DF = 0x2;
export const IPV4_FLAG_MF = 0x1;

export const TCP_FLAGS = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;
export type TcpFlagName = keyof typeof TCP_FLAGS;

/** Smallest Ethernet frame without its FCS; NICs pad shorter ones with zeros. */
export const ETHERNET_MIN_FRAME_BYTES = 60;
export const ETHERNET_HEADER_BYTES = 14;
export const VLAN_TAG_BYTES = 4;
export const IPV4_MIN_HEADER_BYTES = 20;
export const IPV6_HEADER_BYTES = 40;
export const TCP_MIN_HEADER_BYTES = 20;
export const UDP_HEADER_BYTES = 8;
export const ICMP_HEADER_BYTES = 8;
/** Both the IPv4 and the TCP header length fields top out at 60 bytes, leaving 40 for options. */
const MAX_OPTIONS_BYTES = 40;
const MAX_IPV4_TOTAL_LENGTH = 0xffff;
/** Without a Jumbo Payload option (RFC 2675), which buildFrame does not write. */
const MAX_IPV6_PAYLOAD_LENGTH = 0xffff;
/** The Hdr Ext Len byte counts 8-byte units beyond the first 8. */
const MAX_IPV6_EXTENSION_BYTES = (0xff + 1) * 8;
/** Address families in BSD loopback headers: AF_INET is 2 everywhere. */
const AF_INET = 2;
/**
 * AF_INET6 differs between BSDs: 24 on NetBSD, OpenBSD and BSD/OS, 28 on
 * FreeBSD, 30 on Darwin; libpcap reads all three. 24 is also OpenBSD's
 * value for its LOOP link type, so both loopback link types use it.
 */
const AF_INET6_BSD = 24;
const EMPTY = new Uint8Array(0);

/** ICMP types whose data quotes the offending datagram's IPv4 header and first 8 L4 bytes (RFC 792). */
const ICMP_ERROR_TYPES: ReadonlySet<number> = new Set([
  3, // destination unreachable
  4, // source quench
  5, // redirect
  11, // time exceeded
  12, // parameter problem
]);
/** ICMPv6 errors (RFC 4443): their data quotes as much of the offending packet as fits in the minimum MTU. */
const ICMPV6_ERROR_TYPES: ReadonlySet<number> = new Set([
  1, // destination unreachable
  2, // packet too big
  3, // time exceeded
  4, // parameter problem
]);
const VLAN_TPIDS: ReadonlySet<number> = new Set([TPID_8021Q, TPID_8021AD, TPID_QINQ_LEGACY]);

// --- addresses --------------------------------------------------------------

/** "02:00:00:00:00:01", or its 6 bytes. */
export type MacInput = string | Uint8Array | readonly number[];
/** Dotted quad, or its 4 bytes in network order. */
export type Ipv4Input = string | Uint8Array | readonly number[];
/** Any textual IPv6 form ipaddr.js parses ("2001:db8::1", "::ffff:10.0.0.1"), or its 16 bytes. */
export type Ipv6Input = string | Uint8Array | readonly number[];

/** Parses a colon- or dash-separated MAC address such as "02:00:00:00:00:01". */
export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((part) => /^[0-9a-fA-F]{2}$/.test(part))) {
    throw new RangeError(`MAC address ${JSON.stringify(mac)} is not six hex octets such as 02:00:00:00:00:01`);
  }
  return Uint8Array.from(parts, (part) => parseInt(part, 16));
}

/** Lowercase colon-separated form of the 6 bytes at `offset`. */
export function formatMac(bytes: Uint8Array, offset = 0): string {
  const parts: string[] = [];
  for (let i = offset; i < offset + 6; i++) parts.push(bytes[i]!.toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** Four bytes in network order; only the plain dotted-quad form is accepted. */
export function ipv4ToBytes(ip: string): Uint8Array {
  // ipaddr.js's parse() also takes "10.1" and hex parts, which in a test spec are typos.
  if (!ipaddr.IPv4.isValidFourPartDecimal(ip)) {
    throw new RangeError(`IPv4 address ${JSON.stringify(ip)} is not a dotted quad such as 10.0.0.1`);
  }
  return Uint8Array.from(ipaddr.IPv4.parse(ip).toByteArray());
}

/** Dotted-quad form of the 4 bytes at `offset`. */
export function formatIpv4(bytes: Uint8Array, offset = 0): string {
  return new ipaddr.IPv4(Array.from(bytes.subarray(offset, offset + 4))).toString();
}

/** Sixteen bytes in network order. */
export function ipv6ToBytes(ip: string): Uint8Array {
  // A zone ("fe80::1%eth0") names an interface, which no packet carries.
  if (!ipaddr.IPv6.isValid(ip) || ip.includes('%')) {
    throw new RangeError(`IPv6 address ${JSON.stringify(ip)} is not an address such as fd00::1`);
  }
  return Uint8Array.from(ipaddr.IPv6.parse(ip).toByteArray());
}

/**
 * RFC 5952 form of the 16 bytes at `offset`, as ipaddr.js writes it: it
 * gives IPv4-mapped addresses in hex ("::ffff:a00:1"), not §5's dotted tail.
 */
export function formatIpv6(bytes: Uint8Array, offset = 0): string {
  return new ipaddr.IPv6(Array.from(bytes.subarray(offset, offset + 16))).toRFC5952String();
}

function macBytes(mac: MacInput): Uint8Array {
  const bytes = typeof mac === 'string' ? parseMac(mac) : mac;
  if (bytes.length !== 6) throw new RangeError(`MAC address has ${bytes.length} bytes, not 6`);
  return bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
}

function ipv4Bytes(ip: Ipv4Input): Uint8Array {
  const bytes = typeof ip === 'string' ? ipv4ToBytes(ip) : ip;
  if (bytes.length !== 4) throw new RangeError(`IPv4 address has ${bytes.length} bytes, not 4`);
  return bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
}

function ipv6Bytes(ip: Ipv6Input): Uint8Array {
  const bytes = typeof ip === 'string' ? ipv6ToBytes(ip) : ip;
  if (bytes.length !== 16) throw new RangeError(`IPv6 address has ${bytes.length} bytes, not 16`);
  return bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
}

// --- checksums (RFC 1071), always over the full data --------------------------

/**
 * The 16-bit one's-complement sum of `bytes` taken as big-endian words, an
 * odd last byte padded with zero, added to `initial` (an earlier such sum,
 * e.g. of a pseudo-header). Only the last piece of a chained sum may be odd.
 */
export function onesComplementSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  const evenEnd = bytes.length & ~1;
  for (let i = 0; i < evenEnd; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (evenEnd !== bytes.length) sum += bytes[evenEnd]! << 8;
  // The sum of a 64 KiB datagram passes 2^32, so fold with division, not >>>.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The Internet checksum of `bytes`: the complement of their one's-complement
 * sum (plus `initial`). Over data that includes a correct checksum it is 0.
 */
export function internetChecksum(bytes: Uint8Array, initial = 0): number {
  return ~onesComplementSum(bytes, initial) & 0xffff;
}

/** One's-complement sum of the TCP/UDP pseudo-header (RFC 793 §3.1, RFC 768). */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, l4Length: number): number {
  const word = (bytes: Uint8Array, i: number) => (bytes[i]! << 8) | bytes[i + 1]!;
  return onesComplementSum(EMPTY, word(src, 0) + word(src, 2) + word(dst, 0) + word(dst, 2) + protocol + l4Length);
}

/**
 * One's-complement sum of the IPv6 pseudo-header (RFC 8200 §8.1): `dst` is
 * the final destination, `nextHeader` the upper-layer protocol (not the first
 * extension header), `upperLayerLength` that of the L4 header and data.
 */
export function ipv6PseudoHeaderSum(src: Uint8Array, dst: Uint8Array, nextHeader: number, upperLayerLength: number): number {
  const addresses = onesComplementSum(dst.subarray(0, 16), onesComplementSum(src.subarray(0, 16)));
  return onesComplementSum(EMPTY, addresses + Math.floor(upperLayerLength / 0x10000) + (upperLayerLength % 0x10000) + nextHeader);
}

/**
 * The destination the pseudo-header holds: the final one (RFC 8200 §8.1).
 * While a Routing header has segments left, that is not the Destination
 * Address field (the next hop) but an address in the Routing header.
 */
function finalDestination(dst: Uint8Array, routing: Uint8Array | undefined): Uint8Array {
  if (!routing || routing.length < 24 || routing[3] === 0) return dst;
  switch (routing[2]) {
    case 0: // RFC 2460's type 0: the address list ends with the final destination
      return routing.subarray(routing.length - 16);
    case 2: // RFC 6275's type 2: the mobile node's home address
    case 4: // RFC 8754's Segment Routing header: Segment List[0], the list being in reverse order
      return routing.subarray(8, 24);
    default:
      return dst;
  }
}

// --- building -----------------------------------------------------------------

export interface VlanTagSpec {
  /** 0..4095; 0 is a priority-only tag. */
  vid: number;
  /** Priority code point, 0..7; default 0. */
  pcp?: number;
  /** Drop eligible indicator; default false. */
  dei?: boolean;
  /** Default 0x8100, or 0x88a8 for the outer of two tags. */
  tpid?: number;
}

export interface Ipv4Spec {
  src: Ipv4Input;
  dst: Ipv4Input;
  /** Default 64. */
  ttl?: number;
  /** Identification; default 0. */
  id?: number;
  /** Type of service / DSCP+ECN byte; default 0. */
  tos?: number;
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** In 8-byte units, as in the header; default 0. A non-zero offset wants a `raw` L4. */
  fragOffset?: number;
  /** Raw option bytes, zero-padded (End of Options List) to a multiple of 4; IHL follows. */
  options?: Uint8Array | readonly number[];
  /** Default: IPPROTO of `l4`. Required when there is no `l4`. */
  protocol?: number;
}

export interface TcpSpec {
  kind: 'tcp';
  sport: number;
  dport: number;
  /** Default 0. */
  seq?: number;
  /** Default 0. */
  ack?: number;
  /** A bitmask of TCP_FLAGS, or flag names. */
  flags: number | Iterable<TcpFlagName>;
  /** Default 64240. */
  window?: number;
  /** Default 0. */
  urgent?: number;
  /** Raw option bytes, zero-padded (End of Option List) to a multiple of 4; data offset follows. */
  options?: Uint8Array | readonly number[];
}

export interface UdpSpec {
  kind: 'udp';
  sport: number;
  dport: number;
  /** Leave the checksum 0 ("not computed"), which IPv4 allows for UDP. */
  zeroChecksum?: boolean;
}

export interface IcmpSpec {
  kind: 'icmp';
  type: number;
  /** Default 0. */
  code?: number;
  /**
   * The 4 "rest of header" bytes (echo identifier and sequence, next-hop MTU, ...),
   * as a big-endian u32 or bytes; default 0. The message data is the frame's `payload`.
   */
  rest?: number | Uint8Array | readonly number[];
}

/** Any other protocol, or a fragment: the frame's `payload` is the whole IPv4 payload. */
export interface RawL4Spec {
  kind: 'raw';
  protocol: number;
}

export type L4Spec = TcpSpec | UdpSpec | IcmpSpec | RawL4Spec;

export interface FrameSpec {
  dstMac: MacInput;
  srcMac: MacInput;
  /** 0, 1 or 2 tags, outermost first; a number is a VID. */
  vlans?: ReadonlyArray<number | VlanTagSpec>;
  /** Default 0x0800 when `ipv4` is given; required otherwise (e.g. ARP). */
  ethertype?: number;
  ipv4?: Ipv4Spec;
  /** Needs `ipv4`. */
  l4?: L4Spec;
  /** Bytes after the innermost header. */
  payload?: Uint8Array;
  /** Zero-pad the frame to 60 bytes as a sending NIC does; the IPv4 total length still excludes the padding. */
  padToMinimum?: boolean;
}

/**
 * Small frames are carved out of shared zeroed chunks, as Node's Buffer pool
 * does: a fresh ArrayBuffer per frame costs more than building the frame.
 * Chunk space is never handed out twice, so it needs no clearing.
 */
const FRAME_POOL_CHUNK_BYTES = 256 * 1024;
const FRAME_POOL_MAX_FRAME_BYTES = 4096;
let framePool = new ArrayBuffer(0);
let framePoolUsed = 0;

function allocateFrame(length: number): Uint8Array {
  if (length > FRAME_POOL_MAX_FRAME_BYTES) return new Uint8Array(length);
  if (framePoolUsed + length > framePool.byteLength) {
    framePool = new ArrayBuffer(FRAME_POOL_CHUNK_BYTES);
    framePoolUsed = 0;
  }
  const frame = new Uint8Array(framePool, framePoolUsed, length);
  framePoolUsed += length;
  return frame;
}

/**
 * Builds the frame `spec` describes with every length and checksum computed
 * in full. Like a small Node Buffer, the result may be a view into a shared
 * ArrayBuffer: mind its byteOffset, or slice() it for a buffer of its own.
 */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const payload = spec.payload ?? EMPTY;
  const vlans = normalizeVlans(spec.vlans ?? []);
  const ipv4 = spec.ipv4;
  const l4 = spec.l4;
  if (l4 && !ipv4) throw new RangeError('an l4 header needs an ipv4 header');
  const ethertype = spec.ethertype ?? (ipv4 ? ETHERTYPE_IPV4 : undefined);
  if (ethertype === undefined) throw new RangeError('ethertype is required for a frame without ipv4');
  checkUint('ethertype', ethertype, 0xffff);

  const ethLength = ETHERNET_HEADER_BYTES + VLAN_TAG_BYTES * vlans.length;
  const ipOptions = ipv4 ? paddedOptions('ipv4 options', ipv4.options) : EMPTY;
  const ipHeaderLength = ipv4 ? IPV4_MIN_HEADER_BYTES + ipOptions.length : 0;
  const tcpOptions = l4?.kind === 'tcp' ? paddedOptions('tcp options', l4.options) : EMPTY;
  const l4HeaderLength = l4HeaderBytes(l4, tcpOptions);
  const ipTotalLength = ipHeaderLength + l4HeaderLength + payload.length;
  if (ipv4 && ipTotalLength > MAX_IPV4_TOTAL_LENGTH) {
    throw new RangeError(`IPv4 total length ${ipTotalLength} exceeds ${MAX_IPV4_TOTAL_LENGTH}`);
  }

  const unpaddedLength = ethLength + (ipv4 ? ipTotalLength : payload.length);
  const frame = allocateFrame(spec.padToMinimum ? Math.max(unpaddedLength, ETHERNET_MIN_FRAME_BYTES) : unpaddedLength);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  frame.set(macBytes(spec.dstMac), 0);
  frame.set(macBytes(spec.srcMac), 6);
  let p = 12;
  for (const tag of vlans) {
    view.setUint16(p, tag.tpid);
    view.setUint16(p + 2, (tag.pcp << 13) | (tag.dei ? 0x1000 : 0) | tag.vid);
    p += VLAN_TAG_BYTES;
  }
  view.setUint16(p, ethertype);
  p += 2;
  if (!ipv4) {
    frame.set(payload, p);
    return frame;
  }

  const ipStart = p;
  const src = ipv4Bytes(ipv4.src);
  const dst = ipv4Bytes(ipv4.dst);
  const protocol = ipv4.protocol ?? (l4 ? l4Protocol(l4) : undefined);
  if (protocol === undefined) throw new RangeError('ipv4.protocol is required for a frame without l4');
  const fragOffset = ipv4.fragOffset ?? 0;
  checkUint('ipv4.fragOffset', fragOffset, 0x1fff);
  const flags = (ipv4.dontFragment ? IPV4_FLAG_DF : 0) | (ipv4.moreFragments ? IPV4_FLAG_MF : 0);
  frame[p] = 0x40 | (ipHeaderLength >> 2);
  frame[p + 1] = checkUint('ipv4.tos', ipv4.tos ?? 0, 0xff);
  view.setUint16(p + 2, ipTotalLength);
  view.setUint16(p + 4, checkUint('ipv4.id', ipv4.id ?? 0, 0xffff));
  view.setUint16(p + 6, (flags << 13) | fragOffset);
  frame[p + 8] = checkUint('ipv4.ttl', ipv4.ttl ?? 64, 0xff);
  frame[p + 9] = checkUint('ipv4.protocol', protocol, 0xff);
  frame.set(src, p + 12);
  frame.set(dst, p + 16);
  frame.set(ipOptions, p + 20);
  view.setUint16(p + 10, internetChecksum(frame.subarray(ipStart, ipStart + ipHeaderLength)));
  p += ipHeaderLength;

  const l4Start = p;
  const l4End = ipStart + ipTotalLength;
  frame.set(payload, l4Start + l4HeaderLength);
  const segment = frame.subarray(l4Start, l4End);
  switch (l4?.kind) {
    case 'tcp':
      view.setUint16(p, checkUint('tcp.sport', l4.sport, 0xffff));
      view.setUint16(p + 2, checkUint('tcp.dport', l4.dport, 0xffff));
      view.setUint32(p + 4, checkUint('tcp.seq', l4.seq ?? 0, 0xffffffff));
      view.setUint32(p + 8, checkUint('tcp.ack', l4.ack ?? 0, 0xffffffff));
      frame[p + 12] = (l4HeaderLength >> 2) << 4;
      frame[p + 13] = tcpFlagBits(l4.flags);
      view.setUint16(p + 14, checkUint('tcp.window', l4.window ?? 64240, 0xffff));
      view.setUint16(p + 18, checkUint('tcp.urgent', l4.urgent ?? 0, 0xffff));
      frame.set(tcpOptions, p + TCP_MIN_HEADER_BYTES);
      view.setUint16(p + 16, internetChecksum(segment, pseudoHeaderSum(src, dst, protocol, segment.length)));
      break;
    case 'udp': {
      view.setUint16(p, checkUint('udp.sport', l4.sport, 0xffff));
      view.setUint16(p + 2, checkUint('udp.dport', l4.dport, 0xffff));
      view.setUint16(p + 4, segment.length);
      if (!l4.zeroChecksum) {
        const checksum = internetChecksum(segment, pseudoHeaderSum(src, dst, protocol, segment.length));
        // 0 on the wire means "no checksum", so a computed 0 is sent as its other form, 0xffff (RFC 768).
        view.setUint16(p + 6, checksum === 0 ? 0xffff : checksum);
      }
      break;
    }
    case 'icmp':
      frame[p] = checkUint('icmp.type', l4.type, 0xff);
      frame[p + 1] = checkUint('icmp.code', l4.code ?? 0, 0xff);
      frame.set(icmpRestBytes(l4.rest ?? 0), p + 4);
      view.setUint16(p + 2, internetChecksum(segment));
      break;
    case 'raw':
    case undefined:
      break;
  }
  return frame;
}

interface VlanTag {
  tpid: number;
  pcp: number;
  dei: boolean;
  vid: number;
}

function normalizeVlans(vlans: ReadonlyArray<number | VlanTagSpec>): VlanTag[] {
  if (vlans.length > 2) throw new RangeError(`${vlans.length} VLAN tags; at most 2 (QinQ) are supported`);
  return vlans.map((tag, i) => {
    const spec = typeof tag === 'number' ? { vid: tag } : tag;
    const defaultTpid = vlans.length === 2 && i === 0 ? TPID_8021AD : TPID_8021Q;
    return {
      tpid: checkUint('vlan tpid', spec.tpid ?? defaultTpid, 0xffff),
      pcp: checkUint('vlan pcp', spec.pcp ?? 0, 7),
      dei: spec.dei ?? false,
      vid: checkUint('vlan vid', spec.vid, 0xfff),
    };
  });
}

function paddedOptions(what: string, options: Uint8Array | readonly number[] | undefined): Uint8Array {
  if (!options || options.length === 0) return EMPTY;
  const padded = new Uint8Array((options.length + 3) & ~3);
  if (padded.length > MAX_OPTIONS_BYTES) {
    throw new RangeError(`${what}: ${options.length} bytes do not fit in ${MAX_OPTIONS_BYTES}`);
  }
  padded.set(options);
  return padded;
}

function l4HeaderBytes(l4: L4Spec | undefined, tcpOptions: Uint8Array): number {
  switch (l4?.kind) {
    case 'tcp':
      return TCP_MIN_HEADER_BYTES + tcpOptions.length;
    case 'udp':
      return UDP_HEADER_BYTES;
    case 'icmp':
      return ICMP_HEADER_BYTES;
    case 'raw':
    case undefined:
      return 0;
  }
}

function l4Protocol(l4: L4Spec): number {
  switch (l4.kind) {
    case 'tcp':
      return IPPROTO_TCP;
    case 'udp':
      return IPPROTO_UDP;
    case 'icmp':
      return IPPROTO_ICMP;
    case 'raw':
      return l4.protocol;
  }
}

/** The flags byte for a bitmask or a collection of flag names. */
export function tcpFlagBits(flags: number | Iterable<TcpFlagName>): number {
  if (typeof flags === 'number') return checkUint('tcp.flags', flags, 0xff);
  let bits = 0;
  for (const name of flags) {
    const bit = TCP_FLAGS[name];
    if (bit === undefined) throw new RangeError(`unknown TCP flag ${JSON.stringify(name)}`);
    bits |= bit;
  }
  return bits;
}

/** Flag names set in a flags byte, in header bit order (FIN first). */
export function tcpFlagNames(flags: number): TcpFlagName[] {
  return (Object.keys(TCP_FLAGS) as TcpFlagName[]).filter((name) => (flags & TCP_FLAGS[name]) !== 0);
}

function icmpRestBytes(rest: number | Uint8Array | readonly number[]): Uint8Array {
  if (typeof rest === 'number') {
    checkUint('icmp.rest', rest, 0xffffffff);
    return Uint8Array.of(rest >>> 24, (rest >>> 16) & 0xff, (rest >>> 8) & 0xff, rest & 0xff);
  }
  if (rest.length !== 4) throw new RangeError(`icmp.rest has ${rest.length} bytes, not 4`);
  return Uint8Array.from(rest);
}

function checkUint(what: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${what} ${value} is outside 0..${max}`);
  }
  return value;
}

// --- decoding -------------------------------------------------------------------

export interface DecodedVlanTag {
  tpid: number;
  /** Priority code point. */
  pcp: number;
  /** Drop eligible indicator. */
  dei: boolean;
  vid: number;
}

export interface DecodedEthernet {
  dst: string;
  src: string;
  /** Outermost first. */
  vlans: DecodedVlanTag[];
  /** The innermost EtherType (after the tags). */
  ethertype: number;
}

export interface DecodedIpv4 {
  /** Header length in 32-bit words. */
  ihl: number;
  tos: number;
  totalLength: number;
  id: number;
  /** 3 bits: IPV4_FLAG_DF, IPV4_FLAG_MF. */
  flags: number;
  /** In 8-byte units. */
  fragOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  src: string;
  dst: string;
  /** Option bytes, padding included. */
  options: Uint8Array;
}

export interface DecodedTcp {
  sport: number;
  dport: number;
  seq: number;
  ack: number;
  /** The flags byte; see TCP_FLAGS and tcpFlagNames(). */
  flags: number;
  /** Header length in 32-bit words. */
  dataOffset: number;
  window: number;
  checksum: number;
  urgent: number;
  /** Option bytes, padding included. */
  options: Uint8Array;
}

export interface DecodedUdp {
  sport: number;
  dport: number;
  length: number;
  checksum: number;
}

export interface DecodedIcmp {
  type: number;
  code: number;
  checksum: number;
  /** The 4 "rest of header" bytes as a big-endian u32 (e.g. echo identifier << 16 | sequence). */
  rest: number;
  /** For error messages (destination unreachable, time exceeded, ...): the quoted datagram. */
  embedded?: DecodedIcmpQuote;
}

/** The start of the datagram an ICMP error quotes: its IPv4 header and, RFC 792 promises, 8 L4 bytes. */
export interface DecodedIcmpQuote {
  ipv4?: DecodedIpv4;
  /** Only what the first 8 bytes of a TCP header hold. */
  tcp?: Pick<DecodedTcp, 'sport' | 'dport' | 'seq'>;
  udp?: DecodedUdp;
  icmp?: Omit<DecodedIcmp, 'embedded'>;
  /** Quoted bytes after the quoted IPv4 header. */
  l4BytesQuoted: number;
  /** Set when even the IPv4 header or the first 8 L4 bytes are cut. */
  truncatedAt?: 'ipv4' | 'l4';
  malformed?: string;
}

export type TruncatedLayer = 'ethernet' | 'vlan' | 'ipv4' | 'tcp' | 'udp' | 'icmp' | 'payload';

export interface DecodedFrame {
  eth?: DecodedEthernet;
  ipv4?: DecodedIpv4;
  tcp?: DecodedTcp;
  udp?: DecodedUdp;
  icmp?: DecodedIcmp;
  /** Where the innermost decoded header ends. */
  payloadOffset: number;
  /** Captured bytes from payloadOffset to the end of the IPv4 packet (so Ethernet padding is excluded), or of the frame for non-IPv4. */
  payloadLength: number;
  /** The layer the capture ends inside; 'payload' when only payload bytes are missing. */
  truncatedAt?: TruncatedLayer;
  /** Why decoding stopped early on bytes that are there but make no sense (bad version, IHL, data offset). */
  malformed?: string;
}

/** Decodes what it can of `bytes`; never throws, whatever the input. */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const captured = bytes.length;
  const frame: DecodedFrame = { payloadOffset: 0, payloadLength: captured };
  if (captured < ETHERNET_HEADER_BYTES) {
    frame.truncatedAt = 'ethernet';
    return frame;
  }
  const eth: DecodedEthernet = {
    dst: formatMac(bytes, 0),
    src: formatMac(bytes, 6),
    vlans: [],
    ethertype: view.getUint16(12),
  };
  frame.eth = eth;
  let p = ETHERNET_HEADER_BYTES;
  while (VLAN_TPIDS.has(eth.ethertype)) {
    if (p + 4 > captured) {
      // eth.ethertype stays the TPID of the cut tag.
      frame.truncatedAt = 'vlan';
      return setPayload(frame, p, captured);
    }
    const tci = view.getUint16(p);
    eth.vlans.push({ tpid: eth.ethertype, pcp: tci >> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0xfff });
    eth.ethertype = view.getUint16(p + 2);
    p += VLAN_TAG_BYTES;
  }
  if (eth.ethertype !== ETHERTYPE_IPV4) return setPayload(frame, p, captured);

  const ip = readIpv4Header(bytes, view, p, captured);
  if (!ip.ipv4) {
    if (ip.problem === 'truncated') frame.truncatedAt = 'ipv4';
    else frame.malformed = ip.problem;
    return setPayload(frame, p, captured);
  }
  const ipv4 = ip.ipv4;
  frame.ipv4 = ipv4;
  const ipHeaderEnd = p + ipv4.ihl * 4;
  if (ipv4.totalLength < ipv4.ihl * 4) {
    frame.malformed = `IPv4 total length ${ipv4.totalLength} is below the header length ${ipv4.ihl * 4}`;
    return setPayload(frame, ipHeaderEnd, captured);
  }
  const packetEnd = Math.min(captured, p + ipv4.totalLength);
  const payloadCut = captured < p + ipv4.totalLength;
  p = ipHeaderEnd;
  // Only the first fragment starts with the L4 header.
  if (ipv4.fragOffset === 0) {
    const available = packetEnd - p;
    switch (ipv4.protocol) {
      case IPPROTO_TCP: {
        if (available < TCP_MIN_HEADER_BYTES) return cut(frame, 'tcp', p, packetEnd);
        const dataOffset = bytes[p + 12]! >> 4;
        if (dataOffset < 5) {
          frame.malformed = `TCP data offset ${dataOffset} is below 5`;
          return setPayload(frame, p, packetEnd);
        }
        if (available < dataOffset * 4) return cut(frame, 'tcp', p, packetEnd);
        frame.tcp = {
          sport: view.getUint16(p),
          dport: view.getUint16(p + 2),
          seq: view.getUint32(p + 4),
          ack: view.getUint32(p + 8),
          flags: bytes[p + 13]!,
          dataOffset,
          window: view.getUint16(p + 14),
          checksum: view.getUint16(p + 16),
          urgent: view.getUint16(p + 18),
          options: bytes.slice(p + TCP_MIN_HEADER_BYTES, p + dataOffset * 4),
        };
        p += dataOffset * 4;
        break;
      }
      case IPPROTO_UDP:
        if (available < UDP_HEADER_BYTES) return cut(frame, 'udp', p, packetEnd);
        frame.udp = readUdpHeader(view, p);
        p += UDP_HEADER_BYTES;
        break;
      case IPPROTO_ICMP: {
        if (available < ICMP_HEADER_BYTES) return cut(frame, 'icmp', p, packetEnd);
        const icmp: DecodedIcmp = readIcmpHeader(view, p);
        if (ICMP_ERROR_TYPES.has(icmp.type)) icmp.embedded = decodeIcmpQuote(bytes, view, p + ICMP_HEADER_BYTES, packetEnd);
        frame.icmp = icmp;
        p += ICMP_HEADER_BYTES;
        break;
      }
    }
  }
  if (payloadCut) frame.truncatedAt = 'payload';
  return setPayload(frame, p, packetEnd);
}

function setPayload(frame: DecodedFrame, offset: number, end: number): DecodedFrame {
  frame.payloadOffset = offset;
  frame.payloadLength = end - offset;
  return frame;
}

function cut(frame: DecodedFrame, layer: TruncatedLayer, offset: number, end: number): DecodedFrame {
  frame.truncatedAt = layer;
  return setPayload(frame, offset, end);
}

/** `problem` is 'truncated' or why the header is not IPv4. */
function readIpv4Header(
  bytes: Uint8Array,
  view: DataView,
  p: number,
  end: number,
): { ipv4?: DecodedIpv4; problem?: string } {
  if (end - p < IPV4_MIN_HEADER_BYTES) return { problem: 'truncated' };
  const version = bytes[p]! >> 4;
  const ihl = bytes[p]! & 0xf;
  if (version !== 4) return { problem: `IP version ${version} under EtherType IPv4` };
  if (ihl < 5) return { problem: `IPv4 IHL ${ihl} is below 5` };
  if (end - p < ihl * 4) return { problem: 'truncated' };
  const flagsAndOffset = view.getUint16(p + 6);
  return {
    ipv4: {
      ihl,
      tos: bytes[p + 1]!,
      totalLength: view.getUint16(p + 2),
      id: view.getUint16(p + 4),
      flags: flagsAndOffset >> 13,
      fragOffset: flagsAndOffset & 0x1fff,
      ttl: bytes[p + 8]!,
      protocol: bytes[p + 9]!,
      checksum: view.getUint16(p + 10),
      src: formatIpv4(bytes, p + 12),
      dst: formatIpv4(bytes, p + 16),
      options: bytes.slice(p + IPV4_MIN_HEADER_BYTES, p + ihl * 4),
    },
  };
}

function readUdpHeader(view: DataView, p: number): DecodedUdp {
  return {
    sport: view.getUint16(p),
    dport: view.getUint16(p + 2),
    length: view.getUint16(p + 4),
    checksum: view.getUint16(p + 6),
  };
}

function readIcmpHeader(view: DataView, p: number): DecodedIcmp {
  return {
    type: view.getUint8(p),
    code: view.getUint8(p + 1),
    checksum: view.getUint16(p + 2),
    rest: view.getUint32(p + 4),
  };
}

function decodeIcmpQuote(bytes: Uint8Array, view: DataView, p: number, end: number): DecodedIcmpQuote {
  const ip = readIpv4Header(bytes, view, p, end);
  if (!ip.ipv4) {
    return ip.problem === 'truncated'
      ? { l4BytesQuoted: 0, truncatedAt: 'ipv4' }
      : { l4BytesQuoted: 0, malformed: ip.problem };
  }
  const ipv4 = ip.ipv4;
  const l4Start = p + ipv4.ihl * 4;
  const quote: DecodedIcmpQuote = { ipv4, l4BytesQuoted: end - l4Start };
  if (ipv4.fragOffset !== 0) return quote;
  // All three headers keep what matters in their first 8 bytes; that is all a quote must hold.
  if (quote.l4BytesQuoted < 8) {
    if ([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP].includes(ipv4.protocol)) quote.truncatedAt = 'l4';
    return quote;
  }
  switch (ipv4.protocol) {
    case IPPROTO_TCP:
      quote.tcp = { sport: view.getUint16(l4Start), dport: view.getUint16(l4Start + 2), seq: view.getUint32(l4Start + 4) };
      break;
    case IPPROTO_UDP:
      quote.udp = readUdpHeader(view, l4Start);
      break;
    case IPPROTO_ICMP:
      quote.icmp = readIcmpHeader(view, l4Start);
      break;
  }
  return quote;
}

// --- verifying --------------------------------------------------------------------

/**
 * true/false: the checksum is right/wrong. 'zero': a UDP checksum left 0 (not
 * computed). 'truncated': the capture holds fewer bytes than the checksum covers.
 */
export type L4ChecksumStatus = boolean | 'zero' | 'truncated';

export interface PacketChecksums {
  /** false also when the header is not a valid IPv4 header at all (version, IHL). */
  ipv4?: boolean | 'truncated';
  /** Absent for fragments and for protocols other than TCP, UDP and ICMP. */
  l4?: L4ChecksumStatus;
}

export interface ChecksumReport extends PacketChecksums {
  /** For ICMP errors: the quoted datagram's checksums; its l4 is 'truncated' unless the whole datagram is quoted. */
  icmpEmbedded?: PacketChecksums;
}

/** Recomputes every checksum in the frame in full; an empty report for frames that are not IPv4. */
export function verifyChecksums(bytes: Uint8Array): ChecksumReport {
  const decoded = decodeFrame(bytes);
  const eth = decoded.eth;
  if (!eth || eth.ethertype !== ETHERTYPE_IPV4 || decoded.truncatedAt === 'vlan') return {};
  const ipStart = ETHERNET_HEADER_BYTES + VLAN_TAG_BYTES * eth.vlans.length;
  return verifyIpv4Packet(bytes, ipStart, bytes.length, true);
}

/** Checks the IPv4 packet at `start`, of which the bytes up to `end` are present. */
function verifyIpv4Packet(bytes: Uint8Array, start: number, end: number, outer: boolean): ChecksumReport {
  if (end - start < IPV4_MIN_HEADER_BYTES) return { ipv4: 'truncated' };
  const version = bytes[start]! >> 4;
  const headerLength = (bytes[start]! & 0xf) * 4;
  if (version !== 4 || headerLength < IPV4_MIN_HEADER_BYTES) return { ipv4: false };
  if (end - start < headerLength) return { ipv4: 'truncated' };
  const report: ChecksumReport = { ipv4: internetChecksum(bytes.subarray(start, start + headerLength)) === 0 };

  const totalLength = (bytes[start + 2]! << 8) | bytes[start + 3]!;
  const flagsAndOffset = (bytes[start + 6]! << 8) | bytes[start + 7]!;
  const isFragment = (flagsAndOffset & 0x3fff) !== 0; // MF or a non-zero offset
  const protocol = bytes[start + 9]!;
  if (totalLength < headerLength || isFragment) return report;
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMP) return report;
  const l4Start = start + headerLength;
  const l4End = start + totalLength;
  if (l4End > end) {
    report.l4 = 'truncated';
  } else {
    const segment = bytes.subarray(l4Start, l4End);
    if (protocol === IPPROTO_ICMP) {
      report.l4 = internetChecksum(segment) === 0;
    } else if (protocol === IPPROTO_UDP && segment.length >= UDP_HEADER_BYTES && segment[6] === 0 && segment[7] === 0) {
      report.l4 = 'zero';
    } else {
      const pseudo = pseudoHeaderSum(
        bytes.subarray(start + 12, start + 16),
        bytes.subarray(start + 16, start + 20),
        protocol,
        segment.length,
      );
      report.l4 = internetChecksum(segment, pseudo) === 0;
    }
  }
  if (outer && protocol === IPPROTO_ICMP && end - l4Start >= ICMP_HEADER_BYTES && ICMP_ERROR_TYPES.has(bytes[l4Start]!)) {
    report.icmpEmbedded = verifyIpv4Packet(bytes, l4Start + ICMP_HEADER_BYTES, Math.min(l4End, end), false);
  }
  return report;
}

/**
 * The IP packet of an untagged Ethernet frame, framed as another link type
 * captures it: Linux cooked v1 (113) and v2 (276), raw IP (101, 12), BSD
 * loopback (0, family in the capturing host's byte order) and OpenBSD
 * loopback (108). Ethernet (1) returns the frame itself.
 */
export function toLinkType(eth: Uint8Array, linktype: number, nullBigEndian = false): Uint8Array {
  const ip = eth.subarray(ETHERNET_HEADER_BYTES);
  const source = eth.subarray(6, 12);
  let header: Uint8Array;
  switch (linktype) {
    case 1: return eth;
    case 101:
    case 12: return ip.slice();
    // packet type 0 (to us), ARPHRD_ETHER, address length 6, address (padded to 8), protocol IPv4
    case 113: header = new Uint8Array([0, 0, 0, 1, 0, 6, ...source, 0, 0, 0x08, 0x00]); break;
    // protocol IPv4, reserved, interface index 3, ARPHRD_ETHER, packet type 0, address length 6, address
    case 276: header = new Uint8Array([0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, ...source, 0, 0]); break;
    case 0: header = nullBigEndian ? new Uint8Array([0, 0, 0, 2]) : new Uint8Array([2, 0, 0, 0]); break;
    case 108: header = new Uint8Array([0, 0, 0, 2]); break;
    default: throw new RangeError(`toLinkType: link type ${linktype} is not one svcpath frames`);
  }
  const out = new Uint8Array(header.length + ip.length);
  out.set(header);
  out.set(ip, header.length);
  return out;
}
