/**
 * Ethernet/IPv4/IPv6 frames for tests and trace generation: a builder, a
 * decoder (of Ethernet, and of every link type svcpath reads) and a checksum
 * verifier.
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
/** What decodeCaptured reads as IPv6 in a loopback header: the BSDs' three, and Linux's 10, which the datapath takes too. */
const AF_INET6_FAMILIES: ReadonlySet<number> = new Set([10, AF_INET6_BSD, 28, 30]);
const EMPTY = new Uint8Array(0);

/**
 * The link types decodeCaptured reads (tcpdump.org LINKTYPE_* values), written
 * out here rather than taken from the control plane: this file shares no code
 * with what it checks.
 */
export const LINKTYPE = {
  NULL: 0,
  ETHERNET: 1,
  RAW_OPENBSD: 12,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;
const SLL_HEADER_BYTES = 16;
const SLL2_HEADER_BYTES = 20;
/** Both cooked headers keep 8 bytes for the link-layer address, whatever its length. */
const SLL_ADDRESS_BYTES = 8;
const LOOPBACK_HEADER_BYTES = 4;

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
export const VLAN_TPIDS: ReadonlySet<number> = new Set([TPID_8021Q, TPID_8021AD, TPID_QINQ_LEGACY]);

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

/**
 * An IPv6 extension header, written in order between the IPv6 and the L4
 * header, its Next Header and length fields filled in.
 */
export type Ipv6ExtensionSpec =
  | {
      /**
       * The options headers' `bytes` are their options (TLVs), padded with a
       * Pad1 or PadN option to a multiple of 8 bytes as RFC 8200 §4.2 asks;
       * default none. A routing header's `bytes` are its Routing Type,
       * Segments Left and type-specific data, zero-padded: that data holds
       * addresses, not options, so padding options would mean nothing there.
       * Default: type 0 with Segments Left 0.
       */
      type: 'hop-by-hop' | 'destination' | 'routing';
      bytes?: Uint8Array | readonly number[];
    }
  | {
      type: 'fragment';
      /** In 8-byte units. A non-zero offset wants a `raw` L4. */
      offset: number;
      more: boolean;
      id: number;
    };

export interface Ipv6Spec {
  src: Ipv6Input;
  /** The Destination Address field; with a Routing header that has segments left, checksums use its final destination. */
  dst: Ipv6Input;
  /** Default 64. */
  hopLimit?: number;
  /** DSCP+ECN byte; default 0. */
  trafficClass?: number;
  /** 20 bits; default 0. */
  flowLabel?: number;
  /** In order of appearance; the spec does not enforce RFC 8200 §4.1's order, so tests can build odd chains. */
  extensions?: readonly Ipv6ExtensionSpec[];
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
  /**
   * Leave the checksum 0 ("not computed"), which IPv4 allows for UDP. Over
   * IPv6 that makes an invalid packet (RFC 8200 §8.1): only for tests of its
   * rejection.
   */
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

/** ICMP for IPv6 (RFC 4443): unlike ICMPv4's, its checksum covers the IPv6 pseudo-header. */
export interface Icmpv6Spec {
  kind: 'icmpv6';
  type: number;
  /** Default 0. */
  code?: number;
  /** The 4 bytes after the checksum (echo identifier and sequence, MTU, pointer, ...), as for IcmpSpec; default 0. */
  rest?: number | Uint8Array | readonly number[];
}

/** Any other protocol, or a fragment: the frame's `payload` is the whole IP payload (after any IPv6 extension headers). */
export interface RawL4Spec {
  kind: 'raw';
  protocol: number;
}

export type L4Spec = TcpSpec | UdpSpec | IcmpSpec | Icmpv6Spec | RawL4Spec;

export interface FrameSpec {
  dstMac: MacInput;
  srcMac: MacInput;
  /** 0, 1 or 2 tags, outermost first; a number is a VID. */
  vlans?: ReadonlyArray<number | VlanTagSpec>;
  /** Default 0x0800 when `ipv4` is given, 0x86DD when `ipv6` is; required otherwise (e.g. ARP). */
  ethertype?: number;
  /** At most one of `ipv4` and `ipv6`. */
  ipv4?: Ipv4Spec;
  ipv6?: Ipv6Spec;
  /** Needs `ipv4` or `ipv6`, and `ipv6` needs it: 'icmp' goes with IPv4 only, 'icmpv6' with IPv6 only. */
  l4?: L4Spec;
  /** Bytes after the innermost header. */
  payload?: Uint8Array;
  /** Zero-pad the frame to 60 bytes as a sending NIC does; the IP length field still excludes the padding. */
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
  const { ipv4, ipv6, l4 } = spec;
  if (ipv4 && ipv6) throw new RangeError('a frame has an ipv4 or an ipv6 header, not both');
  if (l4 && !ipv4 && !ipv6) throw new RangeError('an l4 header needs an ipv4 or ipv6 header');
  if (ipv6 && l4?.kind === 'icmp') throw new RangeError("l4 kind 'icmp' is ICMPv4; over ipv6 use 'icmpv6'");
  if (ipv4 && l4?.kind === 'icmpv6') throw new RangeError("l4 kind 'icmpv6' needs ipv6; over ipv4 use 'icmp'");
  const ethertype = spec.ethertype ?? (ipv4 ? ETHERTYPE_IPV4 : ipv6 ? ETHERTYPE_IPV6 : undefined);
  if (ethertype === undefined) throw new RangeError('ethertype is required for a frame without ipv4 or ipv6');
  checkUint('ethertype', ethertype, 0xffff);

  const ethLength = ETHERNET_HEADER_BYTES + VLAN_TAG_BYTES * vlans.length;
  const ipOptions = ipv4 ? paddedOptions('ipv4 options', ipv4.options) : EMPTY;
  const extensions = (ipv6?.extensions ?? []).map(ipv6ExtensionBytes);
  const extensionsLength = extensions.reduce((sum, extension) => sum + extension.bytes.length, 0);
  const ipHeaderLength = ipv4 ? IPV4_MIN_HEADER_BYTES + ipOptions.length : ipv6 ? IPV6_HEADER_BYTES + extensionsLength : 0;
  const tcpOptions = l4?.kind === 'tcp' ? paddedOptions('tcp options', l4.options) : EMPTY;
  const l4HeaderLength = l4HeaderBytes(l4, tcpOptions);
  const ipTotalLength = ipHeaderLength + l4HeaderLength + payload.length;
  if (ipv4 && ipTotalLength > MAX_IPV4_TOTAL_LENGTH) {
    throw new RangeError(`IPv4 total length ${ipTotalLength} exceeds ${MAX_IPV4_TOTAL_LENGTH}`);
  }
  if (ipv6 && ipTotalLength - IPV6_HEADER_BYTES > MAX_IPV6_PAYLOAD_LENGTH) {
    throw new RangeError(`IPv6 payload length ${ipTotalLength - IPV6_HEADER_BYTES} exceeds ${MAX_IPV6_PAYLOAD_LENGTH}`);
  }

  const unpaddedLength = ethLength + ipTotalLength;
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

  // Without an IP header (and so without L4), this is just the payload after the EtherType.
  const segment = frame.subarray(p + ipHeaderLength, p + ipTotalLength);
  segment.set(payload, l4HeaderLength);
  let pseudoHeader: number;
  if (ipv4) pseudoHeader = writeIpv4Header(frame, view, p, ipv4, l4, ipHeaderLength, ipTotalLength, ipOptions);
  else if (ipv6) pseudoHeader = writeIpv6Header(frame, view, p, ipv6, extensions, l4, segment.length);
  else return frame;
  writeL4(segment, l4, l4HeaderLength, tcpOptions, pseudoHeader);
  return frame;
}

/** Writes the IPv4 header at `p`; returns the one's-complement sum of its pseudo-header for the L4 checksum. */
function writeIpv4Header(
  frame: Uint8Array,
  view: DataView,
  p: number,
  ipv4: Ipv4Spec,
  l4: L4Spec | undefined,
  headerLength: number,
  totalLength: number,
  options: Uint8Array,
): number {
  const src = ipv4Bytes(ipv4.src);
  const dst = ipv4Bytes(ipv4.dst);
  const protocol = ipv4.protocol ?? (l4 ? l4Protocol(l4) : undefined);
  if (protocol === undefined) throw new RangeError('ipv4.protocol is required for a frame without l4');
  const fragOffset = ipv4.fragOffset ?? 0;
  checkUint('ipv4.fragOffset', fragOffset, 0x1fff);
  const flags = (ipv4.dontFragment ? IPV4_FLAG_DF : 0) | (ipv4.moreFragments ? IPV4_FLAG_MF : 0);
  frame[p] = 0x40 | (headerLength >> 2);
  frame[p + 1] = checkUint('ipv4.tos', ipv4.tos ?? 0, 0xff);
  view.setUint16(p + 2, totalLength);
  view.setUint16(p + 4, checkUint('ipv4.id', ipv4.id ?? 0, 0xffff));
  view.setUint16(p + 6, (flags << 13) | fragOffset);
  frame[p + 8] = checkUint('ipv4.ttl', ipv4.ttl ?? 64, 0xff);
  frame[p + 9] = checkUint('ipv4.protocol', protocol, 0xff);
  frame.set(src, p + 12);
  frame.set(dst, p + 16);
  frame.set(options, p + 20);
  view.setUint16(p + 10, internetChecksum(frame.subarray(p, p + headerLength)));
  return pseudoHeaderSum(src, dst, protocol, totalLength - headerLength);
}

/**
 * Writes the IPv6 header and `extensions` at `p`, chaining their Next Header
 * fields to the protocol of `l4`; returns the one's-complement sum of the
 * pseudo-header for the L4 checksum.
 */
function writeIpv6Header(
  frame: Uint8Array,
  view: DataView,
  p: number,
  ipv6: Ipv6Spec,
  extensions: ReadonlyArray<{ type: number; bytes: Uint8Array }>,
  l4: L4Spec | undefined,
  upperLayerLength: number,
): number {
  // IPv6 has no protocol field of its own to take a protocol from when there is no l4.
  if (!l4) throw new RangeError("ipv6 needs an l4 header (kind 'raw' for any protocol)");
  const protocol = checkUint('l4.protocol', l4Protocol(l4), 0xff);
  const src = ipv6Bytes(ipv6.src);
  const dst = ipv6Bytes(ipv6.dst);
  const trafficClass = checkUint('ipv6.trafficClass', ipv6.trafficClass ?? 0, 0xff);
  const flowLabel = checkUint('ipv6.flowLabel', ipv6.flowLabel ?? 0, 0xfffff);
  view.setUint32(p, ((6 << 28) | (trafficClass << 20) | flowLabel) >>> 0);
  view.setUint16(p + 4, upperLayerLength + extensions.reduce((sum, extension) => sum + extension.bytes.length, 0));
  frame[p + 6] = extensions[0]?.type ?? protocol;
  frame[p + 7] = checkUint('ipv6.hopLimit', ipv6.hopLimit ?? 64, 0xff);
  frame.set(src, p + 8);
  frame.set(dst, p + 24);
  let q = p + IPV6_HEADER_BYTES;
  let routing: Uint8Array | undefined;
  extensions.forEach(({ type, bytes }, i) => {
    frame.set(bytes, q);
    frame[q] = extensions[i + 1]?.type ?? protocol;
    if (type === IPV6_EXTENSION_TYPES.routing) routing ??= frame.subarray(q, q + bytes.length);
    q += bytes.length;
  });
  return ipv6PseudoHeaderSum(src, finalDestination(dst, routing), protocol, upperLayerLength);
}

/** Routing type 0 with Segments Left 0 and its 4 reserved bytes: an 8-byte header with no addresses. */
const DEFAULT_ROUTING_DATA = new Uint8Array(6);

/** The bytes of an extension header, its Next Header (byte 0) left for the chaining. */
function ipv6ExtensionBytes(extension: Ipv6ExtensionSpec, i: number): { type: number; bytes: Uint8Array } {
  const what = `ipv6.extensions[${i}]`;
  if (extension.type === 'fragment') {
    const offset = checkUint(`${what}.offset`, extension.offset, 0x1fff);
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    view.setUint16(2, (offset << 3) | (extension.more ? 1 : 0));
    view.setUint32(4, checkUint(`${what}.id`, extension.id, 0xffffffff));
    return { type: IPV6_EXTENSION_TYPES.fragment, bytes };
  }
  const isRouting = extension.type === 'routing';
  const data = extension.bytes ?? (isRouting ? DEFAULT_ROUTING_DATA : EMPTY);
  if (isRouting && data.length < 2) throw new RangeError(`${what}: routing bytes start with Routing Type and Segments Left`);
  const length = (2 + data.length + 7) & ~7;
  if (length > MAX_IPV6_EXTENSION_BYTES) {
    throw new RangeError(`${what}: ${data.length} bytes do not fit in ${MAX_IPV6_EXTENSION_BYTES - 2}`);
  }
  const bytes = new Uint8Array(length);
  bytes[1] = length / 8 - 1;
  bytes.set(data, 2);
  // The zeros already there are Pad1 options; two or more padding bytes must be one PadN (type 1, its data length).
  const padding = length - 2 - data.length;
  if (!isRouting && padding >= 2) {
    bytes[2 + data.length] = 1;
    bytes[3 + data.length] = padding - 2;
  }
  return { type: IPV6_EXTENSION_TYPES[extension.type], bytes };
}

/** Writes the L4 header at the start of `segment`, and its checksum over all of it plus `pseudoHeader` where the protocol has one. */
function writeL4(segment: Uint8Array, l4: L4Spec | undefined, headerLength: number, tcpOptions: Uint8Array, pseudoHeader: number): void {
  const view = new DataView(segment.buffer, segment.byteOffset, segment.byteLength);
  switch (l4?.kind) {
    case 'tcp':
      view.setUint16(0, checkUint('tcp.sport', l4.sport, 0xffff));
      view.setUint16(2, checkUint('tcp.dport', l4.dport, 0xffff));
      view.setUint32(4, checkUint('tcp.seq', l4.seq ?? 0, 0xffffffff));
      view.setUint32(8, checkUint('tcp.ack', l4.ack ?? 0, 0xffffffff));
      segment[12] = (headerLength >> 2) << 4;
      segment[13] = tcpFlagBits(l4.flags);
      view.setUint16(14, checkUint('tcp.window', l4.window ?? 64240, 0xffff));
      view.setUint16(18, checkUint('tcp.urgent', l4.urgent ?? 0, 0xffff));
      segment.set(tcpOptions, TCP_MIN_HEADER_BYTES);
      view.setUint16(16, internetChecksum(segment, pseudoHeader));
      break;
    case 'udp': {
      view.setUint16(0, checkUint('udp.sport', l4.sport, 0xffff));
      view.setUint16(2, checkUint('udp.dport', l4.dport, 0xffff));
      view.setUint16(4, segment.length);
      if (!l4.zeroChecksum) {
        const checksum = internetChecksum(segment, pseudoHeader);
        // 0 on the wire means "no checksum", so a computed 0 is sent as its other form, 0xffff (RFC 768).
        view.setUint16(6, checksum === 0 ? 0xffff : checksum);
      }
      break;
    }
    case 'icmp':
    case 'icmpv6':
      segment[0] = checkUint(`${l4.kind}.type`, l4.type, 0xff);
      segment[1] = checkUint(`${l4.kind}.code`, l4.code ?? 0, 0xff);
      segment.set(icmpRestBytes(l4.kind, l4.rest ?? 0), 4);
      // ICMPv4's checksum covers the message alone; ICMPv6's the pseudo-header too (RFC 4443 §2.3).
      view.setUint16(2, internetChecksum(segment, l4.kind === 'icmpv6' ? pseudoHeader : 0));
      break;
    case 'raw':
    case undefined:
      break;
  }
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
    case 'icmpv6':
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
    case 'icmpv6':
      return IPPROTO_ICMPV6;
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

function icmpRestBytes(kind: 'icmp' | 'icmpv6', rest: number | Uint8Array | readonly number[]): Uint8Array {
  if (typeof rest === 'number') {
    checkUint(`${kind}.rest`, rest, 0xffffffff);
    return Uint8Array.of(rest >>> 24, (rest >>> 16) & 0xff, (rest >>> 8) & 0xff, rest & 0xff);
  }
  if (rest.length !== 4) throw new RangeError(`${kind}.rest has ${rest.length} bytes, not 4`);
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

export interface DecodedIpv6Extension {
  /** The Next Header value that announced it, e.g. IPV6_EXTENSION_TYPES.fragment. */
  type: number;
  /** In bytes, its first 8 included. */
  length: number;
  /** For a Fragment header. */
  fragment?: {
    /** In 8-byte units. */
    offset: number;
    more: boolean;
    id: number;
  };
}

export interface DecodedIpv6 {
  trafficClass: number;
  flowLabel: number;
  /** Bytes after the 40-byte header, extension headers included. */
  payloadLength: number;
  /** The header's field: the first extension header's type, or the upper-layer protocol. */
  nextHeader: number;
  hopLimit: number;
  src: string;
  dst: string;
  /** In order of appearance. */
  extensions: DecodedIpv6Extension[];
  /**
   * The Next Header after the last extension header: the upper-layer protocol
   * (that of the whole datagram for a fragment). Where the chain is cut or
   * malformed, the type of the header the walk stopped at.
   */
  protocol: number;
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

export interface DecodedIcmpv6 extends Omit<DecodedIcmp, 'embedded'> {
  /** For error messages (types 1 to 4): the quoted packet. */
  embedded?: DecodedIcmpv6Quote;
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

/**
 * The start of the packet an ICMPv6 error quotes: as much as fits in the
 * minimum MTU (RFC 4443 §2.4), so its IPv6 header, extension headers and at
 * least the 8 L4 bytes that hold the ports.
 */
export interface DecodedIcmpv6Quote {
  ipv6?: DecodedIpv6;
  /** Only what the first 8 bytes of a TCP header hold. */
  tcp?: Pick<DecodedTcp, 'sport' | 'dport' | 'seq'>;
  udp?: DecodedUdp;
  icmpv6?: Omit<DecodedIcmpv6, 'embedded'>;
  /** Quoted bytes after the quoted IPv6 header and its extension headers; 0 when those are cut. */
  l4BytesQuoted: number;
  /** Set when even the IPv6 header, an extension header or the first 8 L4 bytes are cut. */
  truncatedAt?: 'ipv6' | 'extension' | 'l4';
  malformed?: string;
}

export type TruncatedLayer =
  | 'ethernet'
  /** Another link type's header (cooked, loopback), or raw IP's first byte. */
  | 'link'
  | 'vlan'
  | 'ipv4'
  | 'ipv6'
  /** An IPv6 extension header. */
  | 'extension'
  | 'tcp'
  | 'udp'
  | 'icmp'
  | 'icmpv6'
  | 'payload';

export interface DecodedFrame {
  eth?: DecodedEthernet;
  ipv4?: DecodedIpv4;
  ipv6?: DecodedIpv6;
  tcp?: DecodedTcp;
  udp?: DecodedUdp;
  icmp?: DecodedIcmp;
  icmpv6?: DecodedIcmpv6;
  /** Where the innermost decoded header ends. */
  payloadOffset: number;
  /** Captured bytes from payloadOffset to the end of the IP packet (so Ethernet padding is excluded), or of the frame for non-IP. */
  payloadLength: number;
  /** The layer the capture ends inside; 'payload' when only payload bytes are missing. */
  truncatedAt?: TruncatedLayer;
  /**
   * Why decoding stopped early on bytes that are there but make no sense (bad
   * version, IHL, data offset, an IPv6 extension header chain that runs past
   * the payload length or puts Hop-by-Hop Options anywhere but first).
   */
  malformed?: string;
}

/** The header of a Linux cooked capture (libpcap's sll.h), v1 (LINKTYPE_LINUX_SLL, 113) or v2 (LINKTYPE_LINUX_SLL2, 276). */
export interface DecodedCooked {
  version: 1 | 2;
  /** sll_pkttype: 0 to this host, 1 broadcast, 2 multicast, 3 to another host, 4 sent by this host. */
  packetType: number;
  /** The interface's ARPHRD_ type: 1 Ethernet, 772 loopback, ... */
  hatype: number;
  /** The interface index; v2 only. */
  ifindex?: number;
  /** The sender's link-layer address, as many bytes as its length field says (at most 8): a MAC address on Ethernet. */
  address: string;
  /** Outermost first: the tags the protocol field announced. */
  vlans: DecodedVlanTag[];
  /** The protocol (an EtherType) after the tags. */
  protocol: number;
}

/** The 4-byte header of BSD loopback (LINKTYPE_NULL, 0) and OpenBSD loopback (LINKTYPE_LOOP, 108). */
export interface DecodedLoopback {
  /** The address family: 2 IPv4; 24, 28 or 30 (by BSD), or 10, IPv6. */
  family: number;
  /** NULL is written in the capturing host's byte order; LOOP always big-endian. */
  byteOrder: 'big-endian' | 'little-endian';
}

/** A frame of any link type, decoded: the link layer's own header, then what decodeFrame decodes. */
export interface DecodedCapture extends DecodedFrame {
  linktype: number;
  cooked?: DecodedCooked;
  loopback?: DecodedLoopback;
  /** Where the network layer starts (after any VLAN tags); absent when the link layer is cut or not decoded. */
  networkOffset?: number;
  /**
   * The network layer's protocol as an EtherType: announced by Ethernet or a
   * cooked header, implied by a loopback family or raw IP's version nibble
   * (0 when they name neither IP), fixed by raw IPv4 (228) and IPv6 (229).
   */
  ethertype?: number;
  /** A link type decodeCaptured does not read: nothing is decoded. */
  unsupportedLinkType?: true;
}

/** Decodes what it can of an Ethernet frame; never throws, whatever the input. */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frame: DecodedFrame = { payloadOffset: 0, payloadLength: bytes.length };
  const network = decodeEthernet(frame, bytes, view);
  if (network) decodeNetwork(frame, bytes, view, network);
  return frame;
}

/**
 * Decodes what it can of a frame captured on `linktype`: its link layer, then
 * IPv4 or IPv6 and L4 as decodeFrame does; never throws, whatever the input.
 * A link type not in LINKTYPE is not guessed at: `unsupportedLinkType` is set
 * and nothing past it is decoded.
 */
export function decodeCaptured(linktype: number, bytes: Uint8Array): DecodedCapture {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const frame: DecodedCapture = { linktype, payloadOffset: 0, payloadLength: bytes.length };
  const network = decodeLinkLayer(frame, bytes, view);
  if (!network) return frame;
  frame.networkOffset = network.offset;
  frame.ethertype = network.ethertype;
  decodeNetwork(frame, bytes, view, network);
  return frame;
}

/** Where a link layer's payload starts, and what it is (an EtherType; 0 when the link layer names no protocol). */
interface NetworkStart {
  offset: number;
  ethertype: number;
}

function decodeLinkLayer(frame: DecodedCapture, bytes: Uint8Array, view: DataView): NetworkStart | undefined {
  switch (frame.linktype) {
    case LINKTYPE.ETHERNET:
      return decodeEthernet(frame, bytes, view);
    case LINKTYPE.LINUX_SLL:
      return decodeCooked(frame, bytes, view, 1);
    case LINKTYPE.LINUX_SLL2:
      return decodeCooked(frame, bytes, view, 2);
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_OPENBSD:
      return rawIp(frame, bytes);
    case LINKTYPE.IPV4:
      return { offset: 0, ethertype: ETHERTYPE_IPV4 };
    case LINKTYPE.IPV6:
      return { offset: 0, ethertype: ETHERTYPE_IPV6 };
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP:
      return decodeLoopback(frame, bytes, view);
    default:
      frame.unsupportedLinkType = true;
      return undefined;
  }
}

function decodeEthernet(frame: DecodedFrame, bytes: Uint8Array, view: DataView): NetworkStart | undefined {
  if (bytes.length < ETHERNET_HEADER_BYTES) {
    frame.truncatedAt = 'ethernet';
    return undefined;
  }
  const eth: DecodedEthernet = {
    dst: formatMac(bytes, 0),
    src: formatMac(bytes, 6),
    vlans: [],
    ethertype: view.getUint16(12),
  };
  frame.eth = eth;
  // On a cut tag, eth.ethertype stays the TPID of that tag.
  const network = readVlanTags(frame, view, { offset: ETHERNET_HEADER_BYTES, ethertype: eth.ethertype }, eth.vlans);
  if (network) eth.ethertype = network.ethertype;
  return network;
}

/** Linux cooked captures (libpcap's sll.h): v1's 16-byte header, v2's 20-byte one. */
function decodeCooked(frame: DecodedCapture, bytes: Uint8Array, view: DataView, version: 1 | 2): NetworkStart | undefined {
  const headerBytes = version === 1 ? SLL_HEADER_BYTES : SLL2_HEADER_BYTES;
  if (bytes.length < headerBytes) {
    frame.truncatedAt = 'link';
    return undefined;
  }
  const cooked: DecodedCooked =
    version === 1
      ? {
          version,
          packetType: view.getUint16(0),
          hatype: view.getUint16(2),
          address: formatLinkAddress(bytes, 6, view.getUint16(4)),
          vlans: [],
          protocol: view.getUint16(14),
        }
      : {
          version,
          packetType: bytes[10]!,
          hatype: view.getUint16(8),
          ifindex: view.getUint32(4),
          address: formatLinkAddress(bytes, 12, bytes[11]!),
          vlans: [],
          protocol: view.getUint16(0),
        };
  frame.cooked = cooked;
  const network = readVlanTags(frame, view, { offset: headerBytes, ethertype: cooked.protocol }, cooked.vlans);
  if (network) cooked.protocol = network.ethertype;
  return network;
}

/** A cooked header's address field holds 8 bytes, of which its length field says how many count. */
function formatLinkAddress(bytes: Uint8Array, offset: number, length: number): string {
  return [...bytes.subarray(offset, offset + Math.min(length, SLL_ADDRESS_BYTES))].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Raw IP (101, and 12 as OpenBSD writes it) has no header: the version nibble says which IP follows. */
function rawIp(frame: DecodedCapture, bytes: Uint8Array): NetworkStart | undefined {
  if (bytes.length < 1) {
    frame.truncatedAt = 'link';
    return undefined;
  }
  const version = bytes[0]! >> 4;
  return { offset: 0, ethertype: version === 4 ? ETHERTYPE_IPV4 : version === 6 ? ETHERTYPE_IPV6 : 0 };
}

/** BSD (0) and OpenBSD (108) loopback: a 4-byte address family. */
function decodeLoopback(frame: DecodedCapture, bytes: Uint8Array, view: DataView): NetworkStart | undefined {
  if (bytes.length < LOOPBACK_HEADER_BYTES) {
    frame.truncatedAt = 'link';
    return undefined;
  }
  const bigEndian = view.getUint32(0);
  // NULL is written in the capturing host's byte order, which the file does not
  // say; a family is a small number, so the reading that is small is the right
  // one (libpcap tells them apart the same way). LOOP is always big-endian.
  const littleEndian = frame.linktype === LINKTYPE.NULL && bigEndian > 0xffff;
  const family = littleEndian ? view.getUint32(0, true) : bigEndian;
  frame.loopback = { family, byteOrder: littleEndian ? 'little-endian' : 'big-endian' };
  const ethertype = family === AF_INET ? ETHERTYPE_IPV4 : AF_INET6_FAMILIES.has(family) ? ETHERTYPE_IPV6 : 0;
  return { offset: LOOPBACK_HEADER_BYTES, ethertype };
}

/**
 * Walks the 802.1Q/802.1ad tags the EtherType at `start` announces, into
 * `tags`: where the tagged protocol starts, and what it is; undefined when a
 * tag is cut.
 */
function readVlanTags(frame: DecodedFrame, view: DataView, start: NetworkStart, tags: DecodedVlanTag[]): NetworkStart | undefined {
  let { offset, ethertype } = start;
  while (VLAN_TPIDS.has(ethertype)) {
    if (offset + VLAN_TAG_BYTES > view.byteLength) {
      frame.truncatedAt = 'vlan';
      setPayload(frame, offset, view.byteLength);
      return undefined;
    }
    const tci = view.getUint16(offset);
    tags.push({ tpid: ethertype, pcp: tci >> 13, dei: (tci & 0x1000) !== 0, vid: tci & 0xfff });
    ethertype = view.getUint16(offset + 2);
    offset += VLAN_TAG_BYTES;
  }
  return { offset, ethertype };
}

function decodeNetwork(frame: DecodedFrame, bytes: Uint8Array, view: DataView, { offset, ethertype }: NetworkStart): void {
  if (ethertype === ETHERTYPE_IPV4) decodeIpv4(frame, bytes, view, offset);
  else if (ethertype === ETHERTYPE_IPV6) decodeIpv6(frame, bytes, view, offset);
  else setPayload(frame, offset, bytes.length);
}

function decodeIpv4(frame: DecodedFrame, bytes: Uint8Array, view: DataView, p: number): DecodedFrame {
  const captured = bytes.length;
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
  // Only the first fragment starts with the L4 header.
  if (ipv4.fragOffset !== 0) return endOfHeaders(frame, ipHeaderEnd, packetEnd, payloadCut);
  return decodeL4(frame, bytes, view, 4, ipv4.protocol, ipHeaderEnd, packetEnd, payloadCut);
}

function decodeIpv6(frame: DecodedFrame, bytes: Uint8Array, view: DataView, p: number): DecodedFrame {
  const captured = bytes.length;
  const packet = readIpv6Packet(bytes, view, p, captured);
  if (packet.ipv6) frame.ipv6 = packet.ipv6;
  if (!packet.ipv6 || packet.truncatedAt || packet.malformed) {
    if (packet.truncatedAt) frame.truncatedAt = packet.truncatedAt;
    else frame.malformed = packet.malformed;
    return setPayload(frame, packet.upperStart, captured);
  }
  const packetEnd = Math.min(captured, packet.declaredEnd);
  const payloadCut = captured < packet.declaredEnd;
  if (packet.laterFragment) return endOfHeaders(frame, packet.upperStart, packetEnd, payloadCut);
  return decodeL4(frame, bytes, view, 6, packet.ipv6.protocol, packet.upperStart, packetEnd, payloadCut);
}

/**
 * Decodes the L4 header at `p` of an IP packet whose captured bytes end at
 * `end`. ICMPv4 counts over IPv4 only and ICMPv6 over IPv6 only: across
 * versions they are just other protocols.
 */
function decodeL4(
  frame: DecodedFrame,
  bytes: Uint8Array,
  view: DataView,
  version: 4 | 6,
  protocol: number,
  p: number,
  end: number,
  payloadCut: boolean,
): DecodedFrame {
  const available = end - p;
  if (protocol === IPPROTO_TCP) {
    if (available < TCP_MIN_HEADER_BYTES) return cut(frame, 'tcp', p, end);
    const dataOffset = bytes[p + 12]! >> 4;
    if (dataOffset < 5) {
      frame.malformed = `TCP data offset ${dataOffset} is below 5`;
      return setPayload(frame, p, end);
    }
    if (available < dataOffset * 4) return cut(frame, 'tcp', p, end);
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
    return endOfHeaders(frame, p + dataOffset * 4, end, payloadCut);
  }
  if (protocol === IPPROTO_UDP) {
    if (available < UDP_HEADER_BYTES) return cut(frame, 'udp', p, end);
    frame.udp = readUdpHeader(view, p);
    return endOfHeaders(frame, p + UDP_HEADER_BYTES, end, payloadCut);
  }
  if (version === 4 && protocol === IPPROTO_ICMP) {
    if (available < ICMP_HEADER_BYTES) return cut(frame, 'icmp', p, end);
    const icmp: DecodedIcmp = readIcmpHeader(view, p);
    if (ICMP_ERROR_TYPES.has(icmp.type)) icmp.embedded = decodeIcmpQuote(bytes, view, p + ICMP_HEADER_BYTES, end);
    frame.icmp = icmp;
    return endOfHeaders(frame, p + ICMP_HEADER_BYTES, end, payloadCut);
  }
  if (version === 6 && protocol === IPPROTO_ICMPV6) {
    if (available < ICMP_HEADER_BYTES) return cut(frame, 'icmpv6', p, end);
    const icmpv6: DecodedIcmpv6 = readIcmpHeader(view, p);
    if (ICMPV6_ERROR_TYPES.has(icmpv6.type)) icmpv6.embedded = decodeIcmpv6Quote(bytes, view, p + ICMP_HEADER_BYTES, end);
    frame.icmpv6 = icmpv6;
    return endOfHeaders(frame, p + ICMP_HEADER_BYTES, end, payloadCut);
  }
  return endOfHeaders(frame, p, end, payloadCut);
}

/** The headers end at `offset`; what is left up to `end` is payload, cut short if `payloadCut`. */
function endOfHeaders(frame: DecodedFrame, offset: number, end: number, payloadCut: boolean): DecodedFrame {
  if (payloadCut) frame.truncatedAt = 'payload';
  return setPayload(frame, offset, end);
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
function readIpv4Header(bytes: Uint8Array, view: DataView, p: number, end: number): { ipv4?: DecodedIpv4; problem?: string } {
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

/** An IPv6 packet's header and extension header chain, walked up to the upper layer. */
interface Ipv6Walk {
  /** Absent when the fixed header is cut or is no IPv6 header. */
  ipv6?: DecodedIpv6;
  /** Where the walk stopped: at the upper-layer header, at the data of a non-first fragment, or at the cut or bad header. */
  upperStart: number;
  /** Where the packet ends by its Payload Length. */
  declaredEnd: number;
  /** Behind a Fragment header with a non-zero offset, bytes from the middle of the datagram follow, not headers. */
  laterFragment: boolean;
  /** The first Routing header, which may hold the final destination. */
  routing?: Uint8Array;
  truncatedAt?: 'ipv6' | 'extension';
  malformed?: string;
}

/** Reads the IPv6 packet at `p` of which the bytes up to `end` are present. */
function readIpv6Packet(bytes: Uint8Array, view: DataView, p: number, end: number): Ipv6Walk {
  const walk: Ipv6Walk = { upperStart: p, declaredEnd: p, laterFragment: false };
  if (end - p < IPV6_HEADER_BYTES) {
    walk.truncatedAt = 'ipv6';
    return walk;
  }
  const version = bytes[p]! >> 4;
  if (version !== 6) {
    walk.malformed = `IP version ${version} under EtherType IPv6`;
    return walk;
  }
  const firstWord = view.getUint32(p);
  const ipv6: DecodedIpv6 = {
    trafficClass: (firstWord >>> 20) & 0xff,
    flowLabel: firstWord & 0xfffff,
    payloadLength: view.getUint16(p + 4),
    nextHeader: bytes[p + 6]!,
    hopLimit: bytes[p + 7]!,
    src: formatIpv6(bytes, p + 8),
    dst: formatIpv6(bytes, p + 24),
    extensions: [],
    protocol: bytes[p + 6]!,
  };
  walk.ipv6 = ipv6;
  walk.declaredEnd = p + IPV6_HEADER_BYTES + ipv6.payloadLength;
  let q = p + IPV6_HEADER_BYTES;
  walk.upperStart = q;
  for (let type = ipv6.protocol; isIpv6Extension(type); type = ipv6.protocol) {
    if (type === IPV6_EXTENSION_TYPES['hop-by-hop'] && ipv6.extensions.length > 0) {
      walk.malformed = 'IPv6 Hop-by-Hop Options header after another extension header';
      return walk;
    }
    // Every extension header is at least 8 bytes long, which also holds its length field.
    const length = q + 8 > end ? 8 : ipv6ExtensionLength(type, bytes[q + 1]!);
    if (q + length > walk.declaredEnd) {
      walk.malformed = `IPv6 extension header ${type} runs past the payload length ${ipv6.payloadLength}`;
      return walk;
    }
    if (q + length > end) {
      walk.truncatedAt = 'extension';
      return walk;
    }
    const extension: DecodedIpv6Extension = { type, length };
    if (type === IPV6_EXTENSION_TYPES.fragment) {
      const offsetAndFlags = view.getUint16(q + 2);
      extension.fragment = { offset: offsetAndFlags >> 3, more: (offsetAndFlags & 1) !== 0, id: view.getUint32(q + 4) };
      walk.laterFragment = extension.fragment.offset !== 0;
    }
    if (type === IPV6_EXTENSION_TYPES.routing) walk.routing ??= bytes.subarray(q, q + length);
    ipv6.extensions.push(extension);
    ipv6.protocol = bytes[q]!;
    q += length;
    walk.upperStart = q;
    if (walk.laterFragment) break;
  }
  return walk;
}

function isIpv6Extension(nextHeader: number): boolean {
  return IPV6_GENERIC_EXTENSIONS.has(nextHeader) || nextHeader === IPV6_EXTENSION_TYPES.fragment || nextHeader === IPV6_NEXT_HEADER_AH;
}

/** In bytes, from the header's length byte. */
function ipv6ExtensionLength(type: number, lengthByte: number): number {
  if (type === IPV6_EXTENSION_TYPES.fragment) return 8;
  // The Authentication Header counts 4-byte units, minus 2 (RFC 4302 §2.2).
  if (type === IPV6_NEXT_HEADER_AH) return (lengthByte + 2) * 4;
  return (lengthByte + 1) * 8;
}

function readUdpHeader(view: DataView, p: number): DecodedUdp {
  return {
    sport: view.getUint16(p),
    dport: view.getUint16(p + 2),
    length: view.getUint16(p + 4),
    checksum: view.getUint16(p + 6),
  };
}

function readIcmpHeader(view: DataView, p: number): Omit<DecodedIcmp, 'embedded'> {
  return {
    type: view.getUint8(p),
    code: view.getUint8(p + 1),
    checksum: view.getUint16(p + 2),
    rest: view.getUint32(p + 4),
  };
}

/** TCP, UDP and ICMP headers all keep what matters in their first 8 bytes: all RFC 792 promises a quote holds. */
const QUOTED_L4_BYTES = 8;

function decodeIcmpQuote(bytes: Uint8Array, view: DataView, p: number, end: number): DecodedIcmpQuote {
  const ip = readIpv4Header(bytes, view, p, end);
  if (!ip.ipv4) {
    return ip.problem === 'truncated' ? { l4BytesQuoted: 0, truncatedAt: 'ipv4' } : { l4BytesQuoted: 0, malformed: ip.problem };
  }
  const ipv4 = ip.ipv4;
  const l4Start = p + ipv4.ihl * 4;
  const quote: DecodedIcmpQuote = { ipv4, l4BytesQuoted: end - l4Start };
  if (ipv4.fragOffset !== 0) return quote;
  if (quote.l4BytesQuoted < QUOTED_L4_BYTES) {
    if ([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP].includes(ipv4.protocol)) quote.truncatedAt = 'l4';
    return quote;
  }
  switch (ipv4.protocol) {
    case IPPROTO_TCP:
      quote.tcp = readQuotedTcp(view, l4Start);
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

function decodeIcmpv6Quote(bytes: Uint8Array, view: DataView, p: number, end: number): DecodedIcmpv6Quote {
  const packet = readIpv6Packet(bytes, view, p, end);
  const quote: DecodedIcmpv6Quote = { l4BytesQuoted: 0 };
  if (packet.ipv6) quote.ipv6 = packet.ipv6;
  if (!packet.ipv6 || packet.truncatedAt || packet.malformed) {
    if (packet.truncatedAt) quote.truncatedAt = packet.truncatedAt;
    else quote.malformed = packet.malformed;
    return quote;
  }
  const l4Start = packet.upperStart;
  quote.l4BytesQuoted = end - l4Start;
  if (packet.laterFragment) return quote;
  const protocol = packet.ipv6.protocol;
  if (quote.l4BytesQuoted < QUOTED_L4_BYTES) {
    if ([IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6].includes(protocol)) quote.truncatedAt = 'l4';
    return quote;
  }
  switch (protocol) {
    case IPPROTO_TCP:
      quote.tcp = readQuotedTcp(view, l4Start);
      break;
    case IPPROTO_UDP:
      quote.udp = readUdpHeader(view, l4Start);
      break;
    case IPPROTO_ICMPV6:
      quote.icmpv6 = readIcmpHeader(view, l4Start);
      break;
  }
  return quote;
}

function readQuotedTcp(view: DataView, p: number): Pick<DecodedTcp, 'sport' | 'dport' | 'seq'> {
  return { sport: view.getUint16(p), dport: view.getUint16(p + 2), seq: view.getUint32(p + 4) };
}

// --- verifying --------------------------------------------------------------------

/**
 * true/false: the checksum is right/wrong. 'zero': a UDP checksum left 0 (not
 * computed; over IPv6 that makes the packet invalid, which is for the caller
 * to judge). 'truncated': the capture holds fewer bytes than the checksum covers.
 */
export type L4ChecksumStatus = boolean | 'zero' | 'truncated';

/**
 * IPv4 packets report `ipv4` and `l4`; IPv6 packets, whose header has no
 * checksum, `l4` only. For IPv6, l4 is also 'truncated' when the capture ends
 * before the extension header chain says which protocol follows, and false
 * when the header or the chain is malformed, as ipv4 is false for a header
 * that is no IPv4 header.
 */
export interface PacketChecksums {
  /** false also when the header is not a valid IPv4 header at all (version, IHL). */
  ipv4?: boolean | 'truncated';
  /**
   * Absent for fragments (an IPv6 atomic fragment, offset 0 and no more
   * fragments, holds the whole datagram and counts) and for protocols other
   * than TCP, UDP, ICMP (over IPv4) and ICMPv6 (over IPv6).
   */
  l4?: L4ChecksumStatus;
}

export interface ChecksumReport extends PacketChecksums {
  /** For ICMP and ICMPv6 errors: the quoted datagram's checksums; its l4 is 'truncated' unless the whole datagram is quoted. */
  icmpEmbedded?: PacketChecksums;
}

/** Recomputes every checksum in the Ethernet frame in full; an empty report for frames that are neither IPv4 nor IPv6. */
export function verifyChecksums(bytes: Uint8Array): ChecksumReport {
  return verifyCapturedChecksums(LINKTYPE.ETHERNET, bytes);
}

/** verifyChecksums for a frame captured on any link type decodeCaptured reads; an empty report for the others. */
export function verifyCapturedChecksums(linktype: number, bytes: Uint8Array): ChecksumReport {
  const { networkOffset, ethertype } = decodeCaptured(linktype, bytes);
  if (networkOffset === undefined) return {};
  if (ethertype === ETHERTYPE_IPV4) return verifyIpv4Packet(bytes, networkOffset, bytes.length, true);
  if (ethertype === ETHERTYPE_IPV6) return verifyIpv6Packet(bytes, networkOffset, bytes.length, true);
  return {};
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

/** Checks the IPv6 packet at `start`, of which the bytes up to `end` are present. */
function verifyIpv6Packet(bytes: Uint8Array, start: number, end: number, outer: boolean): ChecksumReport {
  const packet = readIpv6Packet(bytes, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength), start, end);
  if (packet.truncatedAt) return { l4: 'truncated' };
  if (!packet.ipv6 || packet.malformed) return { l4: false };
  const { protocol, extensions } = packet.ipv6;
  if (extensions.some(({ fragment }) => fragment && (fragment.offset !== 0 || fragment.more))) return {};
  if (protocol !== IPPROTO_TCP && protocol !== IPPROTO_UDP && protocol !== IPPROTO_ICMPV6) return {};
  const l4Start = packet.upperStart;
  const l4End = packet.declaredEnd;
  const report: ChecksumReport = {};
  if (l4End > end) {
    report.l4 = 'truncated';
  } else {
    const src = bytes.subarray(start + 8, start + 24);
    const dst = finalDestination(bytes.subarray(start + 24, start + 40), packet.routing);
    report.l4 = ipv6L4Status(bytes.subarray(l4Start, l4End), src, dst, protocol);
  }
  const isError = protocol === IPPROTO_ICMPV6 && end - l4Start >= ICMP_HEADER_BYTES && ICMPV6_ERROR_TYPES.has(bytes[l4Start]!);
  if (outer && isError) {
    report.icmpEmbedded = verifyIpv6Packet(bytes, l4Start + ICMP_HEADER_BYTES, Math.min(l4End, end), false);
  }
  return report;
}

/**
 * The checksum status of a whole upper-layer `segment` of an IPv6 packet.
 * UDP's checksum covers the datagram its Length field gives (RFC 768), as
 * Linux and Wireshark check it: IPv6 payload bytes after it are no part of
 * it, and a Length beyond the payload or below the header cannot be right.
 */
function ipv6L4Status(segment: Uint8Array, src: Uint8Array, dst: Uint8Array, protocol: number): L4ChecksumStatus {
  let covered = segment;
  if (protocol === IPPROTO_UDP) {
    if (segment.length < UDP_HEADER_BYTES) return false;
    if (segment[6] === 0 && segment[7] === 0) return 'zero';
    const udpLength = (segment[4]! << 8) | segment[5]!;
    if (udpLength < UDP_HEADER_BYTES || udpLength > segment.length) return false;
    covered = segment.subarray(0, udpLength);
  }
  return internetChecksum(covered, ipv6PseudoHeaderSum(src, dst, protocol, covered.length)) === 0;
}

/** A cooked capture's packet type (Linux PACKET_*) and device type (ARPHRD_*), as toLinkType writes them. */
export interface CookedFraming {
  /** 0 to us (the default), 3 to another host, 4 sent by us. */
  packetType?: number;
  /** 1 Ethernet (the default), 772 the loopback device. */
  deviceType?: number;
}

/**
 * The IPv4 or IPv6 packet of an untagged Ethernet frame, framed as another
 * link type captures it: Linux cooked v1 (113) and v2 (276), with `cooked`'s
 * packet and device types, raw IP (101, 12; 228 for IPv4 and 229 for IPv6
 * only), BSD loopback (0, family in the capturing host's byte order) and
 * OpenBSD loopback (108); for IPv6 the loopback family is 24 (AF_INET6_BSD).
 * Ethernet (1) returns the frame itself.
 */
export function toLinkType(eth: Uint8Array, linktype: number, nullBigEndian = false, cooked: CookedFraming = {}): Uint8Array {
  const ethertype = eth.length >= ETHERNET_HEADER_BYTES ? (eth[12]! << 8) | eth[13]! : undefined;
  if (ethertype !== ETHERTYPE_IPV4 && ethertype !== ETHERTYPE_IPV6) {
    throw new RangeError('toLinkType: the frame is no untagged IPv4 or IPv6 frame');
  }
  const family = ethertype === ETHERTYPE_IPV6 ? AF_INET6_BSD : AF_INET;
  const ip = eth.subarray(ETHERNET_HEADER_BYTES);
  const source = eth.subarray(6, 12);
  const { packetType = 0, deviceType = 1 } = cooked;
  let header: Uint8Array;
  switch (linktype) {
    case 1:
      return eth;
    case 101:
    case 12:
      return ip.slice();
    case 228:
    case 229:
      if ((linktype === 228) !== (ethertype === ETHERTYPE_IPV4)) {
        throw new RangeError(`toLinkType: link type ${linktype} frames IPv${linktype === 228 ? 4 : 6} only`);
      }
      return ip.slice();
    // packet type, device type, address length 6, address (padded to 8), protocol
    case 113:
      header = new Uint8Array([0, packetType, deviceType >> 8, deviceType & 0xff, 0, 6, ...source, 0, 0, ethertype >> 8, ethertype & 0xff]);
      break;
    // protocol, reserved, interface index 3, device type, packet type, address length 6, address
    case 276:
      header = new Uint8Array([
        ethertype >> 8,
        ethertype & 0xff,
        0,
        0,
        0,
        0,
        0,
        3,
        deviceType >> 8,
        deviceType & 0xff,
        packetType,
        6,
        ...source,
        0,
        0,
      ]);
      break;
    case 0:
      header = nullBigEndian ? new Uint8Array([0, 0, 0, family]) : new Uint8Array([family, 0, 0, 0]);
      break;
    case 108:
      header = new Uint8Array([0, 0, 0, family]);
      break;
    default:
      throw new RangeError(`toLinkType: link type ${linktype} is not one svcpath frames`);
  }
  const out = new Uint8Array(header.length + ip.length);
  out.set(header);
  out.set(ip, header.length);
  return out;
}
