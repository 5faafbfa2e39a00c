import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildFrame,
  decodeCaptured,
  decodeFrame,
  formatIpv4,
  formatIpv6,
  formatMac,
  internetChecksum,
  IPV6_EXTENSION_TYPES,
  ipv4ToBytes,
  ipv6PseudoHeaderSum,
  ipv6ToBytes,
  onesComplementSum,
  parseMac,
  tcpFlagBits,
  tcpFlagNames,
  TCP_FLAGS,
  toLinkType,
  verifyCapturedChecksums,
  verifyChecksums,
  type ChecksumReport,
  type DecodedFrame,
  type DecodedIpv6Extension,
  type DecodedVlanTag,
  type FrameSpec,
  type Ipv6ExtensionSpec,
  type UdpSpec,
  type VlanTagSpec,
} from '../traces/frames.js';
import {
  DEFAULT_START_TIME,
  EPHEMERAL_PORTS,
  generatePackets,
  generateTraffic,
  NODE_MAC,
  writeTrace,
  type BackendChooser,
  type FlowKey,
  type GeneratedPacket,
  type GeneratorSpec,
} from '../traces/synth/generate.js';
import { openCapture } from '../traces/pcap.js';
import { corpusDir } from './captures.js';

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const fromHex = (text: string) => Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
const text = (s: string) => new TextEncoder().encode(s);
const withByte = (bytes: Uint8Array, at: number, xor: number) => {
  const copy = bytes.slice();
  copy[at]! ^= xor;
  return copy;
};

const CLIENT_MAC = '02:42:0a:00:00:05';

const vlanCases: Array<{ name: string; vlans: Array<number | VlanTagSpec>; decoded: DecodedVlanTag[] }> = [
  { name: 'untagged', vlans: [], decoded: [] },
  { name: '802.1Q', vlans: [{ vid: 100, pcp: 5 }], decoded: [{ tpid: 0x8100, pcp: 5, dei: false, vid: 100 }] },
  {
    name: 'QinQ',
    vlans: [{ vid: 10, dei: true }, 20],
    decoded: [
      { tpid: 0x88a8, pcp: 0, dei: true, vid: 10 },
      { tpid: 0x8100, pcp: 0, dei: false, vid: 20 },
    ],
  },
];

function tcpSpec(vlans: FrameSpec['vlans']): FrameSpec {
  return {
    dstMac: NODE_MAC,
    srcMac: CLIENT_MAC,
    vlans,
    ipv4: {
      src: '10.0.0.5',
      dst: '10.96.0.20',
      ttl: 61,
      id: 0x1234,
      tos: 0x10,
      dontFragment: true,
      options: [0x94, 0x04, 0x00, 0x00], // Router Alert
    },
    l4: {
      kind: 'tcp',
      sport: 40001,
      dport: 80,
      seq: 0xfffffff0,
      ack: 0x01020304,
      flags: new Set(['PSH', 'ACK'] as const),
      window: 512,
      options: [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], // NOP NOP Timestamps
    },
    payload: text('GET / HTTP/1.1\r\n\r\n'),
  };
}

describe('buildFrame → decodeFrame round trip', () => {
  describe.each(vlanCases)('$name', ({ vlans, decoded: decodedVlans }) => {
    const ethLength = 14 + 4 * vlans.length;

    it('TCP with IPv4 and TCP options', () => {
      const frame = buildFrame(tcpSpec(vlans));
      const payloadLength = 18;
      expect(frame.length).toBe(ethLength + 24 + 32 + payloadLength);
      expect(decodeFrame(frame)).toEqual({
        eth: { dst: NODE_MAC, src: CLIENT_MAC, vlans: decodedVlans, ethertype: 0x0800 },
        ipv4: {
          ihl: 6,
          tos: 0x10,
          totalLength: 24 + 32 + payloadLength,
          id: 0x1234,
          flags: 0b010,
          fragOffset: 0,
          ttl: 61,
          protocol: 6,
          checksum: expect.any(Number),
          src: '10.0.0.5',
          dst: '10.96.0.20',
          options: Uint8Array.of(0x94, 0x04, 0x00, 0x00),
        },
        tcp: {
          sport: 40001,
          dport: 80,
          seq: 0xfffffff0,
          ack: 0x01020304,
          flags: TCP_FLAGS.PSH | TCP_FLAGS.ACK,
          dataOffset: 8,
          window: 512,
          checksum: expect.any(Number),
          urgent: 0,
          options: Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2),
        },
        payloadOffset: ethLength + 24 + 32,
        payloadLength,
      });
      expect(verifyChecksums(frame)).toEqual({ ipv4: true, l4: true });
    });

    it('UDP', () => {
      const frame = buildFrame({
        dstMac: NODE_MAC,
        srcMac: CLIENT_MAC,
        vlans,
        ipv4: { src: '10.0.0.5', dst: '10.96.0.10', id: 7 },
        l4: { kind: 'udp', sport: 33000, dport: 53 },
        payload: text('a DNS query, more or less'),
      });
      const decoded = decodeFrame(frame);
      expect(decoded.eth?.vlans).toEqual(decodedVlans);
      expect(decoded.ipv4).toMatchObject({ ihl: 5, totalLength: 20 + 8 + 25, flags: 0, protocol: 17, ttl: 64 });
      expect(decoded.udp).toEqual({ sport: 33000, dport: 53, length: 8 + 25, checksum: expect.any(Number) });
      expect(decoded.udp!.checksum).not.toBe(0);
      expect(decoded).toMatchObject({ payloadOffset: ethLength + 28, payloadLength: 25 });
      expect(decoded.truncatedAt).toBeUndefined();
      expect(verifyChecksums(frame)).toEqual({ ipv4: true, l4: true });
    });

    it('ICMP echo request', () => {
      const frame = buildFrame({
        dstMac: NODE_MAC,
        srcMac: CLIENT_MAC,
        vlans,
        ipv4: { src: '10.0.0.5', dst: '10.96.0.20' },
        l4: { kind: 'icmp', type: 8, rest: (0x4242 << 16) | 1 },
        payload: text('ping payload'),
      });
      const decoded = decodeFrame(frame);
      expect(decoded.icmp).toEqual({ type: 8, code: 0, checksum: expect.any(Number), rest: 0x42420001 });
      expect(decoded).toMatchObject({ payloadOffset: ethLength + 28, payloadLength: 12 });
      expect(verifyChecksums(frame)).toEqual({ ipv4: true, l4: true });
    });
  });

  it('a raw protocol carries the payload as the whole IPv4 payload', () => {
    const frame = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.0.0.6' },
      l4: { kind: 'raw', protocol: 47 }, // GRE
      payload: Uint8Array.of(0, 0, 0x08, 0x00),
    });
    const decoded = decodeFrame(frame);
    expect(decoded.ipv4?.protocol).toBe(47);
    expect(decoded).toMatchObject({ payloadOffset: 34, payloadLength: 4 });
    expect(verifyChecksums(frame)).toEqual({ ipv4: true });
  });

  it('a non-IPv4 frame decodes to its Ethernet header and has nothing to verify', () => {
    const frame = buildFrame({ dstMac: 'ff:ff:ff:ff:ff:ff', srcMac: CLIENT_MAC, ethertype: 0x0806, payload: new Uint8Array(28) });
    expect(decodeFrame(frame)).toEqual({
      eth: { dst: 'ff:ff:ff:ff:ff:ff', src: CLIENT_MAC, vlans: [], ethertype: 0x0806 },
      payloadOffset: 14,
      payloadLength: 28,
    });
    expect(verifyChecksums(frame)).toEqual({});
  });

  it('fragments: the first one decodes its L4 header, none has a verifiable L4 checksum', () => {
    const first = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.96.0.10', id: 99, moreFragments: true },
      l4: { kind: 'udp', sport: 1000, dport: 53 },
      payload: new Uint8Array(1472),
    });
    const firstDecoded = decodeFrame(first);
    expect(firstDecoded.ipv4).toMatchObject({ flags: 0b001, fragOffset: 0 });
    expect(firstDecoded.udp).toMatchObject({ sport: 1000, dport: 53 });
    expect(verifyChecksums(first)).toEqual({ ipv4: true });

    const later = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.96.0.10', id: 99, fragOffset: 185 },
      l4: { kind: 'raw', protocol: 17 },
      payload: new Uint8Array(100).fill(0xab),
    });
    const laterDecoded = decodeFrame(later);
    expect(laterDecoded.ipv4).toMatchObject({ flags: 0, fragOffset: 185, protocol: 17 });
    expect(laterDecoded.udp).toBeUndefined();
    expect(laterDecoded).toMatchObject({ payloadOffset: 34, payloadLength: 100 });
    expect(verifyChecksums(later)).toEqual({ ipv4: true });
  });

  it('Ethernet padding is added on request and is no part of the IPv4 packet', () => {
    const spec: FrameSpec = {
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.96.0.10' },
      l4: { kind: 'udp', sport: 1, dport: 2 },
      payload: Uint8Array.of(1, 2, 3),
    };
    expect(buildFrame(spec).length).toBe(45);
    const padded = buildFrame({ ...spec, padToMinimum: true });
    expect(padded.length).toBe(60);
    expect(hex(padded.subarray(45))).toBe('00'.repeat(15));
    expect(decodeFrame(padded)).toMatchObject({ ipv4: { totalLength: 31 }, payloadOffset: 42, payloadLength: 3 });
    expect(verifyChecksums(padded)).toEqual({ ipv4: true, l4: true });
    // The checksums cover the IPv4 packet only, so garbage in the padding changes nothing.
    for (let at = 45; at < 60; at++) expect(verifyChecksums(withByte(padded, at, 0xff))).toEqual({ ipv4: true, l4: true });
    // Frames already long enough are left alone.
    expect(buildFrame({ ...tcpSpec([]), padToMinimum: true })).toEqual(buildFrame(tcpSpec([])));
  });

  it('builds frames that do not start at offset 0 of their buffer correctly, and decodes such views', () => {
    const frames = Array.from({ length: 3 }, () => buildFrame(tcpSpec([7])));
    for (const frame of frames) {
      expect(verifyChecksums(frame)).toEqual({ ipv4: true, l4: true });
      expect(decodeFrame(frame)).toEqual(decodeFrame(frame.slice()));
    }
  });
});

describe('verifyChecksums', () => {
  const icmpQuotingTcp = (() => {
    const offending = buildFrame(tcpSpec([])).subarray(14);
    const quoteLength = 24 + 8; // its IPv4 header (with options) and 8 TCP bytes, as RFC 792 asks
    return buildFrame({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      vlans: [3],
      ipv4: { src: '10.96.0.20', dst: '10.0.0.5', tos: 0xc0 },
      l4: { kind: 'icmp', type: 3, code: 3 },
      payload: offending.subarray(0, quoteLength),
    });
  })();
  const udpFrame = buildFrame({
    dstMac: NODE_MAC,
    srcMac: CLIENT_MAC,
    vlans: [{ vid: 42, pcp: 3 }],
    ipv4: { src: '10.0.0.5', dst: '10.96.0.10', options: [0x07, 0x07, 0x04, 0, 0, 0, 0] },
    l4: { kind: 'udp', sport: 5353, dport: 53 },
    payload: text('0123456789abcdef0123'),
  });

  const cases = [
    { name: 'TCP in QinQ with options', frame: buildFrame(tcpSpec([10, 20])), udp: false },
    { name: 'UDP with Record Route', frame: udpFrame, udp: true },
    { name: 'ICMP error quoting TCP', frame: icmpQuotingTcp, udp: false },
  ];

  it.each(cases)('flipping any single byte of the IPv4 header or L4 segment is caught ($name)', ({ frame, udp }) => {
    const decoded = decodeFrame(frame);
    const ipStart = 14 + 4 * decoded.eth!.vlans.length;
    const l4Start = ipStart + decoded.ipv4!.ihl * 4;
    const l4End = ipStart + decoded.ipv4!.totalLength;
    expect(l4End).toBe(frame.length);
    for (const xor of [0xff, 0x01, 0x80]) {
      for (let at = ipStart; at < l4Start; at++) {
        expect(verifyChecksums(withByte(frame, at, xor)).ipv4, `byte ${at} ^ ${xor}`).toBe(false);
      }
      for (let at = l4Start; at < l4End; at++) {
        const report = verifyChecksums(withByte(frame, at, xor));
        expect(report.ipv4, `byte ${at} ^ ${xor}`).toBe(true);
        // A flipped UDP checksum byte can land on 0, which reads as "no checksum".
        if (udp) expect(report.l4, `byte ${at} ^ ${xor}`).not.toBe(true);
        else expect(report.l4, `byte ${at} ^ ${xor}`).toBe(false);
      }
    }
  });

  it('verifies the datagram quoted in an ICMP error, in full when it is all there', () => {
    expect(verifyChecksums(icmpQuotingTcp)).toEqual({ ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: 'truncated' } });
    expect(decodeFrame(icmpQuotingTcp).icmp).toEqual({
      type: 3,
      code: 3,
      checksum: expect.any(Number),
      rest: 0,
      embedded: {
        ipv4: expect.objectContaining({ src: '10.0.0.5', dst: '10.96.0.20', protocol: 6, ihl: 6, totalLength: 74 }),
        tcp: { sport: 40001, dport: 80, seq: 0xfffffff0 },
        l4BytesQuoted: 8,
      },
    });

    // Linux quotes as much of the datagram as fits; a whole UDP datagram gets its checksum checked too.
    const quotingWholeUdp = buildFrame({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      ipv4: { src: '10.96.0.10', dst: '10.0.0.5' },
      l4: { kind: 'icmp', type: 3, code: 3 },
      payload: udpFrame.subarray(18),
    });
    expect(verifyChecksums(quotingWholeUdp)).toEqual({ ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: true } });
    expect(decodeFrame(quotingWholeUdp).icmp?.embedded?.udp).toMatchObject({ sport: 5353, dport: 53, length: 28 });
  });

  it("reports a UDP checksum left at 0 as 'zero', and sends a computed 0 as 0xffff", () => {
    const spec = (payload: Uint8Array, zeroChecksum?: boolean): FrameSpec => ({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.96.0.10' },
      l4: { kind: 'udp', sport: 4000, dport: 53, zeroChecksum },
      payload,
    });
    const unchecked = buildFrame(spec(text('no checksum'), true));
    expect(decodeFrame(unchecked).udp?.checksum).toBe(0);
    expect(verifyChecksums(unchecked)).toEqual({ ipv4: true, l4: 'zero' });

    // Adding the checksum of a datagram as a payload word makes the one's-complement sum 0xffff, so the checksum 0.
    const base = decodeFrame(buildFrame(spec(Uint8Array.of(0, 0)))).udp!.checksum;
    const computesToZero = buildFrame(spec(Uint8Array.of(base >> 8, base & 0xff)));
    expect(decodeFrame(computesToZero).udp?.checksum).toBe(0xffff);
    expect(verifyChecksums(computesToZero)).toEqual({ ipv4: true, l4: true });
  });

  it("reports a capture shorter than the IPv4 total length as 'truncated'", () => {
    const frame = buildFrame(tcpSpec([5]));
    const ipStart = 18;
    expect(verifyChecksums(frame.subarray(0, frame.length - 1))).toEqual({ ipv4: true, l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 24 + 10))).toEqual({ ipv4: true, l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 22))).toEqual({ ipv4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 10))).toEqual({ ipv4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, 16))).toEqual({});
  });

  it('reports a header that is not IPv4 under EtherType IPv4 as a bad checksum', () => {
    const frame = buildFrame(tcpSpec([]));
    const version6 = frame.slice();
    version6[14] = 0x66;
    expect(verifyChecksums(version6)).toEqual({ ipv4: false });
    expect(decodeFrame(version6)).toMatchObject({ malformed: 'IP version 6 under EtherType IPv4', payloadOffset: 14 });
    const shortIhl = frame.slice();
    shortIhl[14] = 0x44;
    expect(verifyChecksums(shortIhl)).toEqual({ ipv4: false });
    expect(decodeFrame(shortIhl).malformed).toBe('IPv4 IHL 4 is below 5');
  });
});

describe('checksums against known-good bytes', () => {
  it("RFC 1071 §3's numerical example", () => {
    const bytes = fromHex('0001 f203 f4f5 f6f7');
    expect(onesComplementSum(bytes)).toBe(0xddf2);
    expect(internetChecksum(bytes)).toBe(0x220d);
  });

  it("Wikipedia's IPv4 header checksum example (4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7)", () => {
    const published = fromHex('4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7');
    const withoutChecksum = published.slice();
    withoutChecksum.set([0, 0], 10);
    expect(internetChecksum(withoutChecksum)).toBe(0xb861);
    expect(internetChecksum(published)).toBe(0);

    const frame = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '192.168.0.1', dst: '192.168.0.199', ttl: 64, dontFragment: true },
      l4: { kind: 'raw', protocol: 17 },
      payload: new Uint8Array(0x73 - 20),
    });
    expect(hex(frame.subarray(14, 34))).toBe(hex(published));
    expect(decodeFrame(frame).ipv4?.checksum).toBe(0xb861);
  });

  // Built here, then checked with Wireshark 4.0.17 (`tshark -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE
  // -o udp.check_checksum:TRUE -V`): every IPv4, TCP, UDP and ICMP checksum, the quoted ones included, "[correct]".
  const udpDns = buildFrame({
    dstMac: '02:00:00:00:00:01',
    srcMac: '02:42:0a:00:00:06',
    vlans: [100],
    ipv4: { src: '10.0.0.6', dst: '10.96.0.10', id: 0xbeef, ttl: 63 },
    l4: { kind: 'udp', sport: 40000, dport: 53 },
    payload: text('svcpath'),
  });
  it.each([
    {
      name: 'TCP SYN with MSS, SACK-permitted and window scale (IPv4 0x0a06, TCP 0x4ee2)',
      frame: () =>
        buildFrame({
          dstMac: '02:00:00:00:00:01',
          srcMac: '02:42:0a:00:00:05',
          ipv4: { src: '10.0.0.5', dst: '10.96.0.20', id: 0x1c46, dontFragment: true, ttl: 64 },
          l4: {
            kind: 'tcp',
            sport: 43210,
            dport: 80,
            seq: 0x12345678,
            flags: ['SYN'],
            window: 64240,
            options: [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7],
          },
        }),
      wireshark:
        '020000000001 02420a000005 0800 450000341c46400040060a060a0000050a600014 ' +
        'a8ca005012345678000000008002faf04ee20000020405b40402010303070000',
      checksums: { ipv4: true, l4: true },
    },
    {
      name: '802.1Q-tagged UDP (IPv4 0xa86b, UDP 0xae8f)',
      frame: () => udpDns,
      wireshark: '020000000001 02420a000006 8100 0064 0800 45000023beef00003f11a86b0a0000060a60000a 9c400035000fae8f 73766370617468',
      checksums: { ipv4: true, l4: true },
    },
    {
      name: 'ICMP port unreachable quoting that UDP datagram (IPv4 0x6588, ICMP 0x118d)',
      frame: () =>
        buildFrame({
          dstMac: '02:42:0a:00:00:06',
          srcMac: '02:00:00:00:00:01',
          ipv4: { src: '10.96.0.10', dst: '10.0.0.6', id: 7, ttl: 64, tos: 0xc0 },
          l4: { kind: 'icmp', type: 3, code: 3 },
          payload: udpDns.subarray(18),
        }),
      wireshark:
        '02420a000006 020000000001 0800 45c0003f00070000400165880a60000a0a000006 0303118d00000000 ' +
        '45000023beef00003f11a86b0a0000060a60000a 9c400035000fae8f 73766370617468',
      checksums: { ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: true } },
    },
  ])('$name', ({ frame, wireshark, checksums }) => {
    const built = frame();
    expect(hex(built)).toBe(hex(fromHex(wireshark)));
    expect(verifyChecksums(fromHex(wireshark))).toEqual(checksums);
  });

  // Each tallied against Wireshark's own verdicts on the same file.
  it.each([
    { file: 'dns_tcp.pcap', tally: { 'ipv4=true l4=true': 11 } },
    { file: 'ipv4_tcp_http_xml.pcap', tally: { 'ipv4=true l4=true': 1 } },
    { file: 'ldp-common-session.pcap', tally: { 'ipv4=true l4=true': 22 } },
    // 6 CDP frames are not IPv4; the rest is ICMP under two 802.1Q tags.
    { file: 'VlanPackets.pcap', tally: { 'ipv4=true l4=true': 20, '': 6 } },
    { file: 'DnsPackets.pcap', tally: { 'ipv4=true l4=true': 449, 'l4=true': 15 } },
    // Fragments carry no verifiable L4 checksum on their own.
    { file: 'ip4_fragments.pcap', tally: { 'ipv4=true': 50, 'ipv4=true l4=true': 3 } },
    { file: 'frag_with_padding.pcap', tally: { 'ipv4=true': 8 } },
    { file: 'ip6_fragments.pcap', tally: { '': 36 } },
    // A Fragment header behind an IPv6 payload length of 0: Wireshark too calls it malformed.
    { file: 'ipv6_frag6_negative_len.pcap', tally: { 'l4=false': 1 } },
    { file: 'dns_udp_2.pcap', tally: { 'ipv4=true l4=true': 1, 'ipv4=true l4=truncated': 1 } },
    // Captured on the sender with checksum offload: Wireshark too finds every TCP checksum wrong.
    { file: 'nanosecs_big_endian.pcap', tally: { 'ipv4=true l4=false': 10 } },
    { file: 'lisp_invalid_length.pcap', tally: { 'ipv4=false l4=truncated': 1 } },
  ])('real capture $file', ({ file, tally }) => {
    const capturePath = path.join(corpusDir, file);
    expect(fs.existsSync(capturePath), `capture corpus not found: expected ${capturePath}`).toBe(true);
    const reader = openCapture(capturePath);
    const seen: Record<string, number> = {};
    try {
      for (const record of reader.records()) {
        const report = verifyChecksums(record.data);
        const key = Object.entries(report)
          .map(([layer, status]) => `${layer}=${String(status)}`)
          .join(' ');
        seen[key] = (seen[key] ?? 0) + 1;
        // Every prefix of a real frame decodes without throwing.
        for (let length = 0; length <= Math.min(record.data.length, 128); length++) {
          decodeFrame(record.data.subarray(0, length));
          verifyChecksums(record.data.subarray(0, length));
        }
      }
    } finally {
      reader.close();
    }
    expect(seen).toEqual(tally);
  });
});

describe('decodeFrame on short and odd input', () => {
  it('names the layer the capture ends in', () => {
    const frame = buildFrame(tcpSpec([{ vid: 9 }]));
    const cut = (length: number) => decodeFrame(frame.subarray(0, length));
    expect(cut(0)).toEqual({ payloadOffset: 0, payloadLength: 0, truncatedAt: 'ethernet' });
    expect(cut(13)).toEqual({ payloadOffset: 0, payloadLength: 13, truncatedAt: 'ethernet' });
    expect(cut(16)).toMatchObject({ eth: { vlans: [], ethertype: 0x8100 }, truncatedAt: 'vlan', payloadOffset: 14 });
    expect(cut(18 + 19)).toMatchObject({ eth: { vlans: [{ vid: 9 }], ethertype: 0x0800 }, truncatedAt: 'ipv4' });
    expect(cut(18 + 23).truncatedAt).toBe('ipv4'); // the options are part of the header
    const inTcp = cut(18 + 24 + 25);
    expect(inTcp).toMatchObject({ ipv4: { src: '10.0.0.5' }, truncatedAt: 'tcp', payloadOffset: 42, payloadLength: 25 });
    expect(inTcp.tcp).toBeUndefined();
    expect(cut(frame.length - 5)).toMatchObject({ tcp: { sport: 40001 }, truncatedAt: 'payload', payloadLength: 13 });
    expect(cut(frame.length).truncatedAt).toBeUndefined();
  });

  it('never throws, whatever the bytes', () => {
    // Mutations of valid frames reach deeper than random bytes would.
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state >>> 8;
    };
    const seeds = [buildFrame(tcpSpec([1, 2])), icmpTimeExceededFrame(), buildFrame(tcpSpec([]))];
    for (let i = 0; i < 3000; i++) {
      const frame = seeds[i % seeds.length]!.slice(0, random() % 100);
      for (let flips = random() % 4; flips >= 0; flips--) if (frame.length) frame[random() % frame.length] = random() & 0xff;
      decodeFrame(frame);
      verifyChecksums(frame);
    }
  });

  function icmpTimeExceededFrame(): Uint8Array {
    return buildFrame({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      ipv4: { src: '10.96.0.20', dst: '10.0.0.5' },
      l4: { kind: 'icmp', type: 11 },
      payload: buildFrame(tcpSpec([])).subarray(14, 14 + 32),
    });
  }

  it('reports a TCP data offset below 5 as malformed', () => {
    const frame = buildFrame(tcpSpec([]));
    frame[14 + 24 + 12] = 0x40;
    expect(decodeFrame(frame)).toMatchObject({ malformed: 'TCP data offset 4 is below 5', payloadOffset: 38 });
  });
});

describe('helpers', () => {
  it('parse and format MAC and IPv4 addresses', () => {
    expect(Array.from(parseMac('02:00:0A:ff:00:01'))).toEqual([2, 0, 10, 255, 0, 1]);
    expect(Array.from(parseMac('02-00-0a-ff-00-01'))).toEqual([2, 0, 10, 255, 0, 1]);
    expect(formatMac(Uint8Array.of(9, 9, 2, 0, 10, 255, 0, 1), 2)).toBe('02:00:0a:ff:00:01');
    for (const bad of ['02:00:00:00:00', '02:00:00:00:00:001', 'zz:00:00:00:00:00']) expect(() => parseMac(bad)).toThrow(RangeError);
    expect(Array.from(ipv4ToBytes('10.96.0.1'))).toEqual([10, 96, 0, 1]);
    expect(formatIpv4(Uint8Array.of(0, 192, 168, 0, 199), 1)).toBe('192.168.0.199');
    for (const bad of ['10.1', '256.0.0.1', '1.2.3.4.5', '0x0a.0.0.1', '::1']) expect(() => ipv4ToBytes(bad)).toThrow(RangeError);
  });

  it('convert TCP flags between names and bits', () => {
    expect(tcpFlagBits(['SYN', 'ACK'])).toBe(0x12);
    expect(tcpFlagBits(new Set(['ACK', 'SYN'] as const))).toBe(0x12);
    expect(tcpFlagBits(0x11)).toBe(0x11);
    expect(tcpFlagNames(0x19)).toEqual(['FIN', 'PSH', 'ACK']);
  });

  it('buildFrame rejects specs it cannot build', () => {
    const base = tcpSpec([]);
    expect(() => buildFrame({ ...base, vlans: [1, 2, 3] })).toThrow(/at most 2/);
    expect(() => buildFrame({ ...base, ipv4: { ...base.ipv4!, options: new Uint8Array(41) } })).toThrow(/do not fit/);
    expect(() => buildFrame({ ...base, l4: { kind: 'udp', sport: 70000, dport: 1 } })).toThrow(/udp.sport/);
    expect(() => buildFrame({ dstMac: NODE_MAC, srcMac: NODE_MAC, l4: { kind: 'udp', sport: 1, dport: 1 } })).toThrow(/ipv4/);
    expect(() => buildFrame({ ...base, payload: new Uint8Array(65535) })).toThrow(/total length/);
  });
});

// --- IPv6 ---------------------------------------------------------------------------

const HTTP_REQUEST = text('GET / HTTP/1.1\r\n\r\n');
const TCP_OPTIONS = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]; // NOP NOP Timestamps

function tcp6Spec(vlans: FrameSpec['vlans'], extensions?: Ipv6ExtensionSpec[]): FrameSpec {
  return {
    dstMac: NODE_MAC,
    srcMac: CLIENT_MAC,
    vlans,
    ipv6: { src: 'fd00::5', dst: 'fd00:10:96::20', hopLimit: 61, trafficClass: 0xb8, flowLabel: 0xabcde, extensions },
    l4: {
      kind: 'tcp',
      sport: 40001,
      dport: 80,
      seq: 0xfffffff0,
      ack: 0x01020304,
      flags: ['PSH', 'ACK'],
      window: 512,
      options: TCP_OPTIONS,
    },
    payload: HTTP_REQUEST,
  };
}

const udp6Spec = (payload: Uint8Array, l4: Partial<UdpSpec> = {}): FrameSpec => ({
  dstMac: NODE_MAC,
  srcMac: CLIENT_MAC,
  ipv6: { src: 'fd00::5', dst: 'fd00:10:96::a' },
  l4: { kind: 'udp', sport: 33000, dport: 53, ...l4 },
  payload,
});

const echo6Spec = (vlans: FrameSpec['vlans'] = []): FrameSpec => ({
  dstMac: NODE_MAC,
  srcMac: CLIENT_MAC,
  vlans,
  ipv6: { src: 'fd00::5', dst: 'fd00:10:96::20' },
  l4: { kind: 'icmpv6', type: 128, rest: (0x4242 << 16) | 1 },
  payload: text('ping payload'),
});

/** Every extension type in one chain, in RFC 8200 §4.1's order. */
const FULL_CHAIN: Ipv6ExtensionSpec[] = [
  { type: 'hop-by-hop', bytes: [5, 2, 0, 0] }, // Router Alert
  { type: 'destination' },
  { type: 'routing' },
  { type: 'fragment', offset: 0, more: false, id: 0x01020304 },
];

/** An ICMPv6 error quoting all of `offending` (an Ethernet frame), as Linux quotes what fits in 1280 bytes. */
function icmp6Error(type: number, code: number, offending: Uint8Array, quoteLength = offending.length - 14): Uint8Array {
  return buildFrame({
    dstMac: CLIENT_MAC,
    srcMac: NODE_MAC,
    ipv6: { src: 'fd00:10:96::20', dst: 'fd00::5' },
    l4: { kind: 'icmpv6', type, code },
    payload: offending.subarray(14, 14 + quoteLength),
  });
}

describe('IPv6: buildFrame → decodeFrame round trip', () => {
  describe.each(vlanCases)('$name', ({ vlans, decoded: decodedVlans }) => {
    const ethLength = 14 + 4 * vlans.length;

    it('TCP with TCP options', () => {
      const frame = buildFrame(tcp6Spec(vlans));
      expect(frame.length).toBe(ethLength + 40 + 32 + 18);
      expect(decodeFrame(frame)).toEqual({
        eth: { dst: NODE_MAC, src: CLIENT_MAC, vlans: decodedVlans, ethertype: 0x86dd },
        ipv6: {
          trafficClass: 0xb8,
          flowLabel: 0xabcde,
          payloadLength: 32 + 18,
          nextHeader: 6,
          hopLimit: 61,
          src: 'fd00::5',
          dst: 'fd00:10:96::20',
          extensions: [],
          protocol: 6,
        },
        tcp: {
          sport: 40001,
          dport: 80,
          seq: 0xfffffff0,
          ack: 0x01020304,
          flags: TCP_FLAGS.PSH | TCP_FLAGS.ACK,
          dataOffset: 8,
          window: 512,
          checksum: expect.any(Number),
          urgent: 0,
          options: Uint8Array.from(TCP_OPTIONS),
        },
        payloadOffset: ethLength + 40 + 32,
        payloadLength: 18,
      });
      // Version 6, traffic class 0xb8, flow label 0xabcde; payload length; next header; hop limit.
      expect(hex(frame.subarray(ethLength, ethLength + 8))).toBe('6b8abcde' + '0032' + '06' + '3d');
      expect(verifyChecksums(frame)).toEqual({ l4: true });
    });

    it('UDP', () => {
      const frame = buildFrame({ ...udp6Spec(text('a DNS query, more or less')), vlans });
      const decoded = decodeFrame(frame);
      expect(decoded.eth).toEqual({ dst: NODE_MAC, src: CLIENT_MAC, vlans: decodedVlans, ethertype: 0x86dd });
      expect(decoded.ipv6).toMatchObject({
        payloadLength: 8 + 25,
        nextHeader: 17,
        protocol: 17,
        hopLimit: 64,
        trafficClass: 0,
        flowLabel: 0,
      });
      expect(decoded.udp).toEqual({ sport: 33000, dport: 53, length: 8 + 25, checksum: expect.any(Number) });
      expect(decoded).toMatchObject({ payloadOffset: ethLength + 48, payloadLength: 25 });
      expect(decoded.truncatedAt).toBeUndefined();
      expect(verifyChecksums(frame)).toEqual({ l4: true });
    });

    it('ICMPv6 echo request', () => {
      const frame = buildFrame(echo6Spec(vlans));
      const decoded = decodeFrame(frame);
      expect(decoded.icmpv6).toEqual({ type: 128, code: 0, checksum: expect.any(Number), rest: 0x42420001 });
      expect(decoded.icmp).toBeUndefined();
      expect(decoded).toMatchObject({ ipv6: { nextHeader: 58, protocol: 58 }, payloadOffset: ethLength + 48, payloadLength: 12 });
      expect(verifyChecksums(frame)).toEqual({ l4: true });
    });

    it('TCP behind a chain of every extension type', () => {
      const frame = buildFrame(tcp6Spec(vlans, FULL_CHAIN));
      const decoded = decodeFrame(frame);
      expect(decoded.ipv6).toMatchObject({ payloadLength: 32 + 32 + 18, nextHeader: 0, protocol: 6 });
      expect(decoded.tcp).toMatchObject({ sport: 40001, dport: 80, dataOffset: 8 });
      expect(decoded).toMatchObject({ payloadOffset: ethLength + 40 + 32 + 32, payloadLength: 18 });
      expect(verifyChecksums(frame)).toEqual({ l4: true });
    });
  });

  // Each extension header's bytes as built, its Next Header (06, TCP, when last) and Hdr Ext Len included.
  const extensionCases: Array<{ name: string; extensions: Ipv6ExtensionSpec[]; wire: string; decoded: DecodedIpv6Extension[] }> = [
    {
      name: 'hop-by-hop: Router Alert, then a PadN with no data',
      extensions: [{ type: 'hop-by-hop', bytes: [5, 2, 0, 0] }],
      wire: '06 00 05020000 0100',
      decoded: [{ type: 0, length: 8 }],
    },
    {
      name: 'destination options, none given: one PadN of 4 bytes',
      extensions: [{ type: 'destination' }],
      wire: '06 00 0104 00000000',
      decoded: [{ type: 60, length: 8 }],
    },
    {
      name: 'destination options one byte short of 8: a Pad1',
      extensions: [{ type: 'destination', bytes: [0x1e, 3, 1, 2, 3] }],
      wire: '06 00 1e03010203 00',
      decoded: [{ type: 60, length: 8 }],
    },
    {
      name: 'destination options filling 8 bytes exactly: no padding',
      extensions: [{ type: 'destination', bytes: Uint8Array.of(0x1e, 4, 1, 2, 3, 4) }],
      wire: '06 00 1e0401020304',
      decoded: [{ type: 60, length: 8 }],
    },
    {
      name: 'destination options over two 8-byte units: Hdr Ext Len 1, PadN of 5',
      extensions: [{ type: 'destination', bytes: [0x1e, 7, 1, 2, 3, 4, 5, 6, 7] }],
      wire: '06 01 1e0701020304050607 0103000000',
      decoded: [{ type: 60, length: 16 }],
    },
    {
      name: 'routing, none given: type 0, Segments Left 0',
      extensions: [{ type: 'routing' }],
      wire: '06 00 00 00 00000000',
      decoded: [{ type: 43, length: 8 }],
    },
    {
      name: 'routing data is zero-padded, not with options',
      extensions: [{ type: 'routing', bytes: [0xfe, 0] }],
      wire: '06 00 fe 00 00000000',
      decoded: [{ type: 43, length: 8 }],
    },
    {
      name: 'fragment: an atomic fragment (offset 0, no more), which holds the whole datagram',
      extensions: [{ type: 'fragment', offset: 0, more: false, id: 0x01020304 }],
      wire: '06 00 0000 01020304',
      decoded: [{ type: 44, length: 8, fragment: { offset: 0, more: false, id: 0x01020304 } }],
    },
    {
      name: 'a chain of all four, each Next Header naming the next',
      extensions: FULL_CHAIN,
      wire: '3c 00 05020000 0100' + '2b 00 0104 00000000' + '2c 00 00 00 00000000' + '06 00 0000 01020304',
      decoded: [
        { type: 0, length: 8 },
        { type: 60, length: 8 },
        { type: 43, length: 8 },
        { type: 44, length: 8, fragment: { offset: 0, more: false, id: 0x01020304 } },
      ],
    },
    {
      name: 'two destination options headers around a routing header, as RFC 8200 §4.1 allows',
      extensions: [{ type: 'destination' }, { type: 'routing' }, { type: 'destination', bytes: [0x1e, 0] }],
      wire: '2b 00 0104 00000000' + '3c 00 00 00 00000000' + '06 00 1e00 01020000',
      decoded: [
        { type: 60, length: 8 },
        { type: 43, length: 8 },
        { type: 60, length: 8 },
      ],
    },
  ];

  it.each(extensionCases)('extension headers: $name', ({ extensions, wire, decoded: decodedExtensions }) => {
    const frame = buildFrame(tcp6Spec([], extensions));
    const chainLength = wire.replace(/\s+/g, '').length / 2;
    expect(hex(frame.subarray(54, 54 + chainLength))).toBe(hex(fromHex(wire)));
    const decoded = decodeFrame(frame);
    expect(decoded.ipv6).toMatchObject({
      payloadLength: chainLength + 32 + 18,
      nextHeader: IPV6_EXTENSION_TYPES[extensions[0]!.type],
      extensions: decodedExtensions,
      protocol: 6,
    });
    expect(frame[20]).toBe(IPV6_EXTENSION_TYPES[extensions[0]!.type]);
    expect(decoded.tcp).toMatchObject({ sport: 40001, dport: 80, seq: 0xfffffff0 });
    expect(decoded).toMatchObject({ payloadOffset: 54 + chainLength + 32, payloadLength: 18 });
    expect(verifyChecksums(frame)).toEqual({ l4: true });
  });

  it('fragments: the first decodes its L4 header, a later one is raw data; neither has a verifiable L4 checksum', () => {
    const first = buildFrame({
      ...udp6Spec(new Uint8Array(1400)),
      ipv6: { src: 'fd00::5', dst: 'fd00:10:96::a', extensions: [{ type: 'fragment', offset: 0, more: true, id: 0xcafe0001 }] },
    });
    const firstDecoded = decodeFrame(first);
    expect(hex(first.subarray(54, 62))).toBe('1100' + '0001' + 'cafe0001');
    expect(firstDecoded.ipv6).toMatchObject({
      nextHeader: 44,
      protocol: 17,
      extensions: [{ type: 44, length: 8, fragment: { offset: 0, more: true, id: 0xcafe0001 } }],
    });
    expect(firstDecoded.udp).toMatchObject({ sport: 33000, dport: 53 });
    expect(verifyChecksums(first)).toEqual({});

    const later = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv6: {
        src: 'fd00::5',
        dst: 'fd00:10:96::a',
        // Only the unfragmentable part (here the hop-by-hop header) is repeated in every fragment.
        extensions: [{ type: 'hop-by-hop' }, { type: 'fragment', offset: 176, more: false, id: 0xcafe0001 }],
      },
      l4: { kind: 'raw', protocol: 17 },
      payload: new Uint8Array(100).fill(0xab),
    });
    const laterDecoded = decodeFrame(later);
    expect(hex(later.subarray(62, 70))).toBe('1100' + '0580' + 'cafe0001');
    expect(laterDecoded.ipv6).toMatchObject({
      payloadLength: 116,
      nextHeader: 0,
      protocol: 17,
      extensions: [
        { type: 0, length: 8 },
        { type: 44, length: 8, fragment: { offset: 176, more: false, id: 0xcafe0001 } },
      ],
    });
    expect(laterDecoded.udp).toBeUndefined();
    expect(laterDecoded).toMatchObject({ payloadOffset: 70, payloadLength: 100 });
    expect(verifyChecksums(later)).toEqual({});

    // In a later fragment, what follows the Fragment header is data even when its Next Header names an extension header.
    const laterOfChain = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv6: { src: 'fd00::5', dst: 'fd00::6', extensions: [{ type: 'fragment', offset: 3, more: true, id: 7 }] },
      l4: { kind: 'raw', protocol: 60 },
      payload: new Uint8Array(16).fill(0xff),
    });
    expect(decodeFrame(laterOfChain)).toMatchObject({
      ipv6: { protocol: 60, extensions: [{ type: 44 }] },
      payloadOffset: 62,
      payloadLength: 16,
    });
    expect(decodeFrame(laterOfChain).truncatedAt).toBeUndefined();
  });

  it('a raw protocol carries the payload after the extension headers', () => {
    const frame = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv6: { src: 'fd00::5', dst: 'fd00::6', extensions: [{ type: 'destination' }] },
      l4: { kind: 'raw', protocol: 47 }, // GRE
      payload: Uint8Array.of(0, 0, 0x86, 0xdd),
    });
    expect(decodeFrame(frame)).toMatchObject({
      ipv6: { nextHeader: 60, protocol: 47, payloadLength: 12 },
      payloadOffset: 62,
      payloadLength: 4,
    });
    expect(verifyChecksums(frame)).toEqual({});
  });

  it('Ethernet padding is no part of the IPv6 packet', () => {
    const frame = buildFrame({ ...udp6Spec(new Uint8Array(0)), l4: { kind: 'raw', protocol: 59 }, padToMinimum: true }); // No Next Header
    expect(frame.length).toBe(60);
    expect(decodeFrame(frame)).toMatchObject({ ipv6: { payloadLength: 0, protocol: 59 }, payloadOffset: 54, payloadLength: 0 });
  });

  it('builds the largest payload the Payload Length field holds, and no larger', () => {
    const largest = buildFrame(udp6Spec(new Uint8Array(0xffff - 8)));
    expect(decodeFrame(largest)).toMatchObject({ ipv6: { payloadLength: 0xffff }, udp: { length: 0xffff } });
    expect(verifyChecksums(largest)).toEqual({ l4: true });
    expect(() => buildFrame(udp6Spec(new Uint8Array(0xffff - 7)))).toThrow(/payload length 65536 exceeds 65535/);
  });
});

describe('IPv6: verifyChecksums', () => {
  const tcpWithChain = buildFrame(tcp6Spec([10, 20], FULL_CHAIN));
  const udp = buildFrame({ ...udp6Spec(text('0123456789abcdef0123')), vlans: [{ vid: 42, pcp: 3 }] });
  const echo = buildFrame(echo6Spec());
  const errorQuotingTcp = icmp6Error(1, 4, buildFrame(tcp6Spec([])));

  const cases = [
    { name: 'TCP behind every extension type, in QinQ', frame: tcpWithChain, udp: false },
    { name: 'UDP in 802.1Q', frame: udp, udp: true },
    { name: 'ICMPv6 echo request', frame: echo, udp: false },
    { name: 'ICMPv6 error quoting TCP', frame: errorQuotingTcp, udp: false },
  ];

  it.each(cases)(
    'the L4 checksum covers the addresses and the whole segment, not the rest of the header ($name)',
    ({ frame, udp: isUdp }) => {
      const decoded = decodeFrame(frame);
      const ipStart = 14 + 4 * decoded.eth!.vlans.length;
      const chainLength = decoded.ipv6!.extensions.reduce((sum, extension) => sum + extension.length, 0);
      const l4Start = ipStart + 40 + chainLength;
      const l4End = ipStart + 40 + decoded.ipv6!.payloadLength;
      expect(l4End).toBe(frame.length);
      expect(verifyChecksums(frame)).toMatchObject({ l4: true });
      for (const xor of [0xff, 0x01, 0x80]) {
        // Traffic class, flow label and hop limit are no part of the pseudo-header: routers change them freely.
        for (const [at, mask] of [
          [0, 0x0f],
          [1, 0xff],
          [2, 0xff],
          [3, 0xff],
          [7, 0xff],
        ] as const) {
          expect(verifyChecksums(withByte(frame, ipStart + at, xor & mask)).l4, `byte ${ipStart + at} ^ ${xor & mask}`).toBe(true);
        }
        for (let at = ipStart + 8; at < ipStart + 40; at++) {
          const report = verifyChecksums(withByte(frame, at, xor));
          if (isUdp) expect(report.l4, `byte ${at} ^ ${xor}`).not.toBe(true);
          else expect(report.l4, `byte ${at} ^ ${xor}`).toBe(false);
        }
        for (let at = l4Start; at < l4End; at++) {
          const report = verifyChecksums(withByte(frame, at, xor));
          // A flipped UDP checksum byte can land on 0, which reads as "no checksum".
          if (isUdp) expect(report.l4, `byte ${at} ^ ${xor}`).not.toBe(true);
          else expect(report.l4, `byte ${at} ^ ${xor}`).toBe(false);
        }
      }
    },
  );

  it('the version, payload length and next header fields are not covered, but garbling them is not missed', () => {
    // Each flip makes another version, a payload past the capture or short of the UDP Length, or another protocol.
    for (const at of [0, 4, 5, 6]) {
      for (const xor of [0x80, 0x10]) expect(verifyChecksums(withByte(udp, 18 + at, xor)).l4, `byte ${18 + at} ^ ${xor}`).not.toBe(true);
    }
  });

  it('extension headers are not covered: changing an option leaves the L4 checksum right', () => {
    // The destination options header, behind two tags, the IPv6 header and the hop-by-hop header: Next Header, length, PadN of 4.
    const destinationOptions = 22 + 40 + 8;
    for (let at = destinationOptions + 4; at < destinationOptions + 8; at++) {
      expect(verifyChecksums(withByte(tcpWithChain, at, 0xff))).toEqual({ l4: true });
    }
    // Its Next Header byte, though, breaks the chain.
    expect(verifyChecksums(withByte(tcpWithChain, destinationOptions, 0x01)).l4).not.toBe(true);
  });

  it("the pseudo-header's Next Header is the L4 protocol, not the first extension header", () => {
    const withChain = decodeFrame(tcpWithChain);
    const without = decodeFrame(buildFrame(tcp6Spec([10, 20])));
    expect(withChain.ipv6!.nextHeader).toBe(0);
    expect(withChain.tcp!.checksum).toBe(without.tcp!.checksum);
  });

  it("reports a UDP checksum left at 0 as 'zero' (invalid over IPv6), and sends a computed 0 as 0xffff", () => {
    const unchecked = buildFrame(udp6Spec(text('no checksum'), { zeroChecksum: true }));
    expect(decodeFrame(unchecked).udp?.checksum).toBe(0);
    expect(verifyChecksums(unchecked)).toEqual({ l4: 'zero' });

    const base = decodeFrame(buildFrame(udp6Spec(Uint8Array.of(0, 0)))).udp!.checksum;
    const computesToZero = buildFrame(udp6Spec(Uint8Array.of(base >> 8, base & 0xff)));
    expect(decodeFrame(computesToZero).udp?.checksum).toBe(0xffff);
    expect(verifyChecksums(computesToZero)).toEqual({ l4: true });
  });

  it('a UDP checksum covers the datagram its Length field gives, not trailing bytes of the IPv6 payload', () => {
    const frame = buildFrame(udp6Spec(text('datagram')));
    // The same datagram with 4 more bytes in the IPv6 payload (ip6_fragments.pcap's datagrams have such a tail).
    const withTail = new Uint8Array(frame.length + 4);
    withTail.set(frame);
    withTail.set([0xde, 0xad, 0xbe, 0xef], frame.length);
    withTail[19]! += 4;
    expect(verifyChecksums(withTail)).toEqual({ l4: true });
    // A Length past the payload, or shorter than the header, cannot be right.
    const udpLengthField = 54 + 4;
    expect(verifyChecksums(withByte(frame, udpLengthField + 1, 0x80)).l4).toBe(false);
    const tooShort = frame.slice();
    tooShort.set([0, 7], udpLengthField);
    expect(verifyChecksums(tooShort)).toEqual({ l4: false });
  });

  it("reports a capture shorter than the payload length, or cut inside the header chain, as 'truncated'", () => {
    const frame = buildFrame(tcp6Spec([5], FULL_CHAIN));
    const ipStart = 18;
    expect(verifyChecksums(frame.subarray(0, frame.length - 1))).toEqual({ l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 40 + 32 + 10))).toEqual({ l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 40 + 20))).toEqual({ l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, ipStart + 39))).toEqual({ l4: 'truncated' });
    expect(verifyChecksums(frame.subarray(0, 16))).toEqual({});
  });

  it('reports a malformed header or extension header chain as a bad L4 checksum', () => {
    const version4 = buildFrame(tcp6Spec([]));
    version4[14] = 0x4b;
    expect(decodeFrame(version4)).toMatchObject({ malformed: 'IP version 4 under EtherType IPv6', payloadOffset: 14 });
    expect(decodeFrame(version4).ipv6).toBeUndefined();
    expect(verifyChecksums(version4)).toEqual({ l4: false });

    // Hdr Ext Len 9 makes the destination options header 80 bytes, past the 58-byte payload.
    const overlong = buildFrame(tcp6Spec([], [{ type: 'destination' }]));
    overlong[55] = 9;
    expect(decodeFrame(overlong)).toMatchObject({
      ipv6: { payloadLength: 58, extensions: [], protocol: 60 },
      malformed: 'IPv6 extension header 60 runs past the payload length 58',
      payloadOffset: 54,
    });
    expect(verifyChecksums(overlong)).toEqual({ l4: false });

    const hopByHopSecond = buildFrame(tcp6Spec([], [{ type: 'destination' }, { type: 'hop-by-hop' }]));
    expect(decodeFrame(hopByHopSecond)).toMatchObject({
      ipv6: { extensions: [{ type: 60, length: 8 }], protocol: 0 },
      malformed: 'IPv6 Hop-by-Hop Options header after another extension header',
      payloadOffset: 62,
    });
    expect(verifyChecksums(hopByHopSecond)).toEqual({ l4: false });
  });

  it('uses the final destination while a Routing header has segments left (RFC 8200 §8.1)', () => {
    const viaRouting = (routing: number[]) =>
      buildFrame({
        dstMac: NODE_MAC,
        srcMac: CLIENT_MAC,
        ipv6: { src: 'fd00::6', dst: 'fd00::1', extensions: [{ type: 'routing', bytes: routing }] },
        l4: { kind: 'udp', sport: 40000, dport: 9999 },
        payload: text('svcpath'),
      });
    const direct = decodeFrame(
      buildFrame({
        ...udp6Spec(text('svcpath')),
        ipv6: { src: 'fd00::6', dst: 'fd00:10:96::a' },
        l4: { kind: 'udp', sport: 40000, dport: 9999 },
      }),
    );
    const final = [...ipv6ToBytes('fd00:10:96::a')];
    const cases = [
      viaRouting([0, 1, 0, 0, 0, 0, ...final]), // type 0, its one address the final destination
      viaRouting([4, 1, 1, 0, 0, 0, ...final, ...ipv6ToBytes('fd00::1')]), // SRH: Segment List[0] is the last segment
      viaRouting([2, 1, 0, 0, 0, 0, ...final]), // type 2: the home address
    ];
    for (const frame of cases) {
      expect(decodeFrame(frame).udp!.checksum).toBe(direct.udp!.checksum);
      expect(verifyChecksums(frame)).toEqual({ l4: true });
    }
    // With no segments left, the Destination Address is the final destination.
    const arrived = viaRouting([0, 0, 0, 0, 0, 0, ...final]);
    expect(decodeFrame(arrived).udp!.checksum).not.toBe(direct.udp!.checksum);
    expect(verifyChecksums(arrived)).toEqual({ l4: true });
  });
});

describe('IPv6: ICMPv6 errors', () => {
  const offending = buildFrame(tcp6Spec([], [{ type: 'destination' }]));

  it('decodes the quoted packet: addresses, extension headers and ports', () => {
    const error = icmp6Error(1, 4, offending);
    expect(decodeFrame(error).icmpv6).toEqual({
      type: 1,
      code: 4,
      checksum: expect.any(Number),
      rest: 0,
      embedded: {
        ipv6: expect.objectContaining({
          src: 'fd00::5',
          dst: 'fd00:10:96::20',
          nextHeader: 60,
          protocol: 6,
          hopLimit: 61,
          payloadLength: 8 + 32 + 18,
          extensions: [{ type: 60, length: 8 }],
        }),
        tcp: { sport: 40001, dport: 80, seq: 0xfffffff0 },
        l4BytesQuoted: 32 + 18,
      },
    });
    expect(verifyChecksums(error)).toEqual({ l4: true, icmpEmbedded: { l4: true } });
  });

  it.each([
    { type: 2, name: 'packet too big', rest: 1280 },
    { type: 3, name: 'time exceeded', rest: 0 },
    { type: 4, name: 'parameter problem', rest: 40 },
  ])('quotes for type $type ($name) too', ({ type, rest }) => {
    const error = buildFrame({
      dstMac: CLIENT_MAC,
      srcMac: NODE_MAC,
      ipv6: { src: 'fd00::1', dst: 'fd00::5' },
      l4: { kind: 'icmpv6', type, rest },
      payload: buildFrame(udp6Spec(text('quoted'))).subarray(14),
    });
    expect(decodeFrame(error).icmpv6).toMatchObject({
      type,
      rest,
      embedded: { udp: { sport: 33000, dport: 53, length: 14 }, l4BytesQuoted: 14 },
    });
    expect(verifyChecksums(error)).toEqual({ l4: true, icmpEmbedded: { l4: true } });
  });

  it('informational messages quote nothing', () => {
    const reply = buildFrame({ ...echo6Spec(), l4: { kind: 'icmpv6', type: 129 }, payload: buildFrame(tcp6Spec([])).subarray(14) });
    expect(decodeFrame(reply).icmpv6?.embedded).toBeUndefined();
    expect(verifyChecksums(reply)).toEqual({ l4: true });
  });

  it("reports a quote cut short as 'truncated', and names where the quote ends", () => {
    const ports = icmp6Error(1, 4, offending, 40 + 8 + 8);
    expect(decodeFrame(ports).icmpv6?.embedded).toMatchObject({ tcp: { sport: 40001, dport: 80 }, l4BytesQuoted: 8 });
    expect(verifyChecksums(ports)).toEqual({ l4: true, icmpEmbedded: { l4: 'truncated' } });

    const inL4 = icmp6Error(1, 4, offending, 40 + 8 + 7);
    expect(decodeFrame(inL4).icmpv6?.embedded).toMatchObject({ truncatedAt: 'l4', l4BytesQuoted: 7 });
    expect(decodeFrame(inL4).icmpv6?.embedded?.tcp).toBeUndefined();

    const inExtension = icmp6Error(1, 4, offending, 40 + 4);
    expect(decodeFrame(inExtension).icmpv6?.embedded).toMatchObject({
      ipv6: { extensions: [] },
      truncatedAt: 'extension',
      l4BytesQuoted: 0,
    });
    expect(verifyChecksums(inExtension)).toEqual({ l4: true, icmpEmbedded: { l4: 'truncated' } });

    const inHeader = icmp6Error(1, 4, offending, 39);
    expect(decodeFrame(inHeader).icmpv6?.embedded).toEqual({ truncatedAt: 'ipv6', l4BytesQuoted: 0 });
    expect(verifyChecksums(inHeader)).toEqual({ l4: true, icmpEmbedded: { l4: 'truncated' } });
  });

  it('a quoted later fragment has no L4 header to decode', () => {
    const fragment = buildFrame({
      ...udp6Spec(new Uint8Array(24)),
      ipv6: { src: 'fd00::5', dst: 'fd00:10:96::a', extensions: [{ type: 'fragment', offset: 100, more: true, id: 1 }] },
      l4: { kind: 'raw', protocol: 17 },
    });
    const error = icmp6Error(3, 1, fragment);
    expect(decodeFrame(error).icmpv6?.embedded).toMatchObject({ ipv6: { protocol: 17 }, l4BytesQuoted: 24 });
    expect(decodeFrame(error).icmpv6?.embedded?.udp).toBeUndefined();
    expect(verifyChecksums(error)).toEqual({ l4: true, icmpEmbedded: {} });
  });
});

describe('IPv6: decodeFrame on short and odd input', () => {
  it('names the layer the capture ends in', () => {
    const frame = buildFrame(tcp6Spec([{ vid: 9 }], [{ type: 'hop-by-hop' }, { type: 'destination', bytes: new Uint8Array(14) }]));
    const cut = (length: number) => decodeFrame(frame.subarray(0, length));
    expect(cut(18 + 39)).toMatchObject({ eth: { ethertype: 0x86dd }, truncatedAt: 'ipv6', payloadOffset: 18, payloadLength: 39 });
    expect(cut(18 + 39).ipv6).toBeUndefined();
    expect(cut(18 + 40 + 7)).toMatchObject({ ipv6: { extensions: [], protocol: 0 }, truncatedAt: 'extension', payloadOffset: 58 });
    expect(cut(18 + 40 + 8 + 15)).toMatchObject({
      ipv6: { extensions: [{ type: 0 }], protocol: 60 },
      truncatedAt: 'extension',
      payloadOffset: 66,
    });
    const inTcp = cut(18 + 40 + 24 + 25);
    expect(inTcp).toMatchObject({ ipv6: { protocol: 6 }, truncatedAt: 'tcp', payloadOffset: 82, payloadLength: 25 });
    expect(inTcp.tcp).toBeUndefined();
    expect(cut(frame.length - 5)).toMatchObject({ tcp: { sport: 40001 }, truncatedAt: 'payload', payloadLength: 13 });
    expect(cut(frame.length).truncatedAt).toBeUndefined();

    const echo = buildFrame(echo6Spec());
    expect(decodeFrame(echo.subarray(0, 54 + 7))).toMatchObject({ truncatedAt: 'icmpv6', payloadOffset: 54, payloadLength: 7 });
    const udp = buildFrame(udp6Spec(text('x')));
    expect(decodeFrame(udp.subarray(0, 54 + 7))).toMatchObject({ truncatedAt: 'udp', payloadOffset: 54 });
  });

  it('decodes neither ICMPv4 over IPv6 nor ICMPv6 over IPv4', () => {
    const icmp4In6 = buildFrame({ ...echo6Spec(), l4: { kind: 'raw', protocol: 1 }, payload: new Uint8Array(8) });
    expect(decodeFrame(icmp4In6)).toMatchObject({ ipv6: { protocol: 1 }, payloadOffset: 54, payloadLength: 8 });
    expect(decodeFrame(icmp4In6).icmp).toBeUndefined();
    const icmp6In4 = buildFrame({
      dstMac: NODE_MAC,
      srcMac: CLIENT_MAC,
      ipv4: { src: '10.0.0.5', dst: '10.0.0.6' },
      l4: { kind: 'raw', protocol: 58 },
      payload: new Uint8Array(8),
    });
    expect(decodeFrame(icmp6In4).icmpv6).toBeUndefined();
    expect(verifyChecksums(icmp6In4)).toEqual({ ipv4: true });
  });

  it('skips extension headers it only knows the format of: Authentication Header, Mobility', () => {
    // A hop-by-hop header renamed to AH (its length counts 4-byte units, minus 2) in front of a destination header renamed Mobility.
    const frame = buildFrame(tcp6Spec([], [{ type: 'hop-by-hop', bytes: new Uint8Array(14) }, { type: 'destination' }]));
    frame[20] = 51; // AH
    frame[54 + 1] = 2; // (2 + 2) * 4 = 16 bytes
    frame[54] = 135; // Mobility
    expect(decodeFrame(frame)).toMatchObject({
      ipv6: {
        nextHeader: 51,
        extensions: [
          { type: 51, length: 16 },
          { type: 135, length: 8 },
        ],
        protocol: 6,
      },
      tcp: { sport: 40001 },
    });
    expect(verifyChecksums(frame)).toEqual({ l4: true });
  });

  it('never throws, whatever the bytes', () => {
    let state = 6789;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state >>> 8;
    };
    const seeds = [
      buildFrame(tcp6Spec([1, 2], FULL_CHAIN)),
      icmp6Error(1, 4, buildFrame(tcp6Spec([], FULL_CHAIN))),
      buildFrame(udp6Spec(text('x'))),
    ];
    for (let i = 0; i < 3000; i++) {
      const frame = seeds[i % seeds.length]!.slice(0, random() % 180);
      for (let flips = random() % 4; flips >= 0; flips--) if (frame.length) frame[random() % frame.length] = random() & 0xff;
      decodeFrame(frame);
      verifyChecksums(frame);
    }
  });
});

describe('IPv6: checksums against known-good bytes', () => {
  // Built here, then checked with Wireshark 4.0.17 (`tshark -o tcp.check_checksum:TRUE -o udp.check_checksum:TRUE
  // -o ipv6.defragment:FALSE -V`): every TCP, UDP and ICMPv6 checksum, the quoted one included, "[correct]"/Good.
  const udp9999 = (extensions: Ipv6ExtensionSpec[], dst = 'fd00:10:96::a'): FrameSpec => ({
    dstMac: '02:00:00:00:00:01',
    srcMac: '02:42:0a:00:00:06',
    ipv6: { src: 'fd00::6', dst, extensions },
    l4: { kind: 'udp', sport: 40000, dport: 9999 },
    payload: text('svcpath'),
  });
  const known = [
    {
      name: 'ICMPv6 echo request (ICMPv6 0x71b0)',
      spec: {
        dstMac: '02:00:00:00:00:01',
        srcMac: '02:42:0a:00:00:05',
        ipv6: { src: '2001:db8::1', dst: '2001:db8::2' },
        l4: { kind: 'icmpv6', type: 128, rest: (0x1234 << 16) | 1 },
        payload: text('svcpath'),
      } satisfies FrameSpec,
      wireshark:
        '020000000001 02420a000005 86dd 60000000000f3a40 20010db8000000000000000000000001 20010db8000000000000000000000002 ' +
        '800071b012340001 73766370617468',
      checksums: { l4: true },
    },
    {
      name: '802.1Q-tagged TCP SYN with MSS, SACK-permitted and window scale (TCP 0x6672)',
      spec: {
        dstMac: '02:00:00:00:00:01',
        srcMac: '02:42:0a:00:00:05',
        vlans: [100],
        ipv6: { src: 'fd00::5', dst: 'fd00:10:96::20', flowLabel: 0x12345 },
        l4: {
          kind: 'tcp',
          sport: 43210,
          dport: 80,
          seq: 0x12345678,
          flags: ['SYN'],
          window: 64800,
          options: [2, 4, 5, 0xa0, 4, 2, 1, 3, 3, 7],
        },
      } satisfies FrameSpec,
      wireshark:
        '020000000001 02420a000005 8100 0064 86dd 6001234500200640 fd000000000000000000000000000005 fd000010009600000000000000000020 ' +
        'a8ca005012345678000000008002fd2066720000020405a00402010303070000',
      checksums: { l4: true },
    },
    {
      name: 'QinQ UDP behind hop-by-hop, destination, routing and fragment headers (UDP 0xa16d)',
      spec: { ...udp9999(FULL_CHAIN.slice(0, 3).concat({ type: 'fragment', offset: 0, more: false, id: 0xdeadbeef })), vlans: [10, 20] },
      wireshark:
        '020000000001 02420a000006 88a8000a 81000014 86dd 60000000002f0040 fd000000000000000000000000000006 fd00001000960000000000000000000a ' +
        '3c00050200000100 2b00010400000000 2c00000000000000 11000000deadbeef 9c40270f000fa16d 73766370617468',
      checksums: { l4: true },
    },
    {
      name: 'the same UDP datagram via a type 0 Routing header with a segment left (UDP 0xa16d)',
      spec: udp9999([{ type: 'routing', bytes: [0, 1, 0, 0, 0, 0, ...ipv6ToBytes('fd00:10:96::a')] }], 'fd00::1'),
      wireshark:
        '020000000001 02420a000006 86dd 6000000000272b40 fd000000000000000000000000000006 fd000000000000000000000000000001 ' +
        '1102000100000000 fd00001000960000000000000000000a 9c40270f000fa16d 73766370617468',
      checksums: { l4: true },
    },
    {
      name: 'the same UDP datagram via a Segment Routing header (UDP 0xa16d)',
      spec: udp9999(
        [{ type: 'routing', bytes: [4, 1, 1, 0, 0, 0, ...ipv6ToBytes('fd00:10:96::a'), ...ipv6ToBytes('fd00::1')] }],
        'fd00::1',
      ),
      wireshark:
        '020000000001 02420a000006 86dd 6000000000372b40 fd000000000000000000000000000006 fd000000000000000000000000000001 ' +
        '1104040101000000 fd00001000960000000000000000000a fd000000000000000000000000000001 9c40270f000fa16d 73766370617468',
      checksums: { l4: true },
    },
    {
      name: 'ICMPv6 port unreachable quoting a whole TCP SYN (ICMPv6 0x9d76, TCP 0x110a)',
      spec: {
        dstMac: '02:42:0a:00:00:05',
        srcMac: '02:00:00:00:00:01',
        ipv6: { src: 'fd00:10:96::20', dst: 'fd00::5' },
        l4: { kind: 'icmpv6', type: 1, code: 4 },
        payload: buildFrame({
          dstMac: '02:00:00:00:00:01',
          srcMac: '02:42:0a:00:00:05',
          ipv6: { src: 'fd00::5', dst: 'fd00:10:96::20' },
          l4: { kind: 'tcp', sport: 43210, dport: 80, seq: 1, flags: ['SYN'] },
        }).subarray(14),
      } satisfies FrameSpec,
      wireshark:
        '02420a000005 020000000001 86dd 6000000000443a40 fd000010009600000000000000000020 fd000000000000000000000000000005 ' +
        '01049d7600000000 6000000000140640 fd000000000000000000000000000005 fd000010009600000000000000000020 ' +
        'a8ca005000000001000000005002faf0110a0000',
      checksums: { l4: true, icmpEmbedded: { l4: true } },
    },
    {
      name: 'UDP with a zero checksum, which Wireshark calls illegal over IPv6',
      spec: { ...udp9999([], 'fd00::1'), l4: { kind: 'udp', sport: 40000, dport: 9999, zeroChecksum: true } } satisfies FrameSpec,
      wireshark:
        '020000000001 02420a000006 86dd 60000000000f1140 fd000000000000000000000000000006 fd000000000000000000000000000001 ' +
        '9c40270f000f0000 73766370617468',
      checksums: { l4: 'zero' },
    },
  ];
  it.each(known)('$name', ({ spec, wireshark, checksums }) => {
    expect(hex(buildFrame(spec))).toBe(hex(fromHex(wireshark)));
    expect(verifyChecksums(fromHex(wireshark))).toEqual(checksums);
  });

  it('decodes the 15 IPv6 frames of DnsPackets.pcap as Wireshark does, and finds their checksums right', () => {
    const reader = openCapture(path.join(corpusDir, 'DnsPackets.pcap'));
    const frames: Array<{ n: number; decoded: DecodedFrame; report: ChecksumReport }> = [];
    try {
      for (const record of reader.records()) {
        const decoded = decodeFrame(record.data);
        if (decoded.eth?.ethertype === 0x86dd) frames.push({ n: record.n, decoded, report: verifyChecksums(record.data) });
      }
    } finally {
      reader.close();
    }
    expect(frames.map((f) => f.n)).toEqual([21, 23, 28, 30, 34, 36, 424, 426, 428, 430, 432, 434, 436, 438, 464]);
    for (const { decoded, report } of frames) {
      expect(report).toEqual({ l4: true });
      expect(decoded.truncatedAt).toBeUndefined();
      expect(decoded.payloadLength).toBe(decoded.udp!.length - 8);
    }
    // tshark: fe80::4dc7:f593:1f7b:dc11 → ff02::1:3, hop limit 1, UDP 51837 → 5355 (LLMNR), checksum 0x63f7 [Good].
    expect(frames[0]!.decoded).toMatchObject({
      ipv6: {
        src: 'fe80::4dc7:f593:1f7b:dc11',
        dst: 'ff02::1:3',
        hopLimit: 1,
        payloadLength: 30,
        nextHeader: 17,
        protocol: 17,
        extensions: [],
      },
      udp: { sport: 51837, dport: 5355, length: 30, checksum: 0x63f7 },
    });
    // tshark: fe80::5a1f:aaff:fe4f:3f9d → ff02::fb, UDP 5353 → 5353 (mDNS), checksum 0x6c91 [Good].
    expect(frames[14]!.decoded).toMatchObject({
      ipv6: { src: 'fe80::5a1f:aaff:fe4f:3f9d', dst: 'ff02::fb', payloadLength: 278 },
      udp: { sport: 5353, dport: 5353, checksum: 0x6c91 },
    });
  });

  it('decodes the fragments of ip6_fragments.pcap as Wireshark does, and their reassembled datagrams verify', () => {
    const reader = openCapture(path.join(corpusDir, 'ip6_fragments.pcap'));
    const datagrams = new Map<number, { src: string; dst: string; protocol: number; bytes: Uint8Array; received: number }>();
    const seen: string[] = [];
    const destinations: Record<string, number> = {};
    try {
      for (const record of reader.records()) {
        const decoded = decodeFrame(record.data);
        expect(verifyChecksums(record.data)).toEqual({});
        const { ipv6 } = decoded;
        expect(ipv6).toMatchObject({ nextHeader: 44, protocol: 17, extensions: [{ type: 44, length: 8 }] });
        expect(decoded.truncatedAt).toBeUndefined();
        const fragment = ipv6!.extensions[0]!.fragment!;
        seen.push(`${fragment.id.toString(16)}@${fragment.offset}${fragment.more ? '+' : ''}`);
        destinations[`${ipv6!.dst} hop limit ${ipv6!.hopLimit}`] = (destinations[`${ipv6!.dst} hop limit ${ipv6!.hopLimit}`] ?? 0) + 1;
        // The first fragment starts with the UDP header; the others are data.
        expect(decoded.udp !== undefined).toBe(fragment.offset === 0);
        const dataStart = 14 + 40 + 8;
        const datagram = datagrams.get(fragment.id) ?? {
          src: ipv6!.src,
          dst: ipv6!.dst,
          protocol: ipv6!.protocol,
          bytes: new Uint8Array(2000),
          received: 0,
        };
        datagram.bytes.set(record.data.subarray(dataStart, dataStart + ipv6!.payloadLength - 8), fragment.offset * 8);
        datagram.received = Math.max(datagram.received, fragment.offset * 8 + ipv6!.payloadLength - 8);
        datagrams.set(fragment.id, datagram);
      }
    } finally {
      reader.close();
    }
    // tshark (-o ipv6.defragment:FALSE): ids, offsets in 8-byte units, More Fragments.
    expect(seen.slice(0, 8)).toEqual([
      '2c5323@0+',
      '2c5323@15+',
      '2c5323@30+',
      '2c5323@45+',
      '2c5323@60+',
      '2c5323@75+',
      '2c5323@90',
      '98d687d1@0+',
    ]);
    expect(seen).toHaveLength(36);
    // tshark: mDNS fragments to ff02::fb, WS-Discovery ones to ff02::c.
    expect(destinations).toEqual({ 'ff02::fb hop limit 255': 20, 'ff02::c hop limit 1': 16 });
    // tshark reassembles 741, 1452, 1003 and 786 bytes, each UDP checksum Good (over the UDP Length, 4 bytes fewer).
    const reassembled = [...datagrams.values()].map(({ src, dst, protocol, bytes, received }) =>
      buildFrame({
        dstMac: NODE_MAC,
        srcMac: CLIENT_MAC,
        ipv6: { src, dst },
        l4: { kind: 'raw', protocol },
        payload: bytes.subarray(0, received),
      }),
    );
    expect(reassembled.map((frame) => decodeFrame(frame).ipv6!.payloadLength)).toEqual([741, 1452, 1003, 786]);
    expect(reassembled.map((frame) => decodeFrame(frame).udp!.length)).toEqual([737, 1448, 999, 782]);
    for (const frame of reassembled) expect(verifyChecksums(frame)).toEqual({ l4: true });
  });

  it("reports ipv6_frag6_negative_len.pcap's Fragment header past a payload length of 0 as malformed", () => {
    const reader = openCapture(path.join(corpusDir, 'ipv6_frag6_negative_len.pcap'));
    const [record] = [...reader.records()];
    reader.close();
    expect(decodeFrame(record!.data)).toMatchObject({
      ipv6: { payloadLength: 0, nextHeader: 44, hopLimit: 28, src: '7fff:ffff:c3b2:a102:1305:80:38:2949' },
      malformed: 'IPv6 extension header 44 runs past the payload length 0',
    });
    expect(verifyChecksums(record!.data)).toEqual({ l4: false });
  });
});

describe('IPv6: toLinkType', () => {
  const frame = buildFrame(tcp6Spec([]));
  const ip = frame.subarray(14);
  const source = '02420a000005';
  it.each([
    { name: 'Linux cooked v1: protocol 0x86dd', linktype: 113, header: `00000001 0006${source}0000 86dd` },
    { name: 'Linux cooked v2: protocol 0x86dd', linktype: 276, header: `86dd 0000 00000003 0001 00 06${source}0000` },
    { name: 'raw IP', linktype: 101, header: '' },
    { name: 'raw IP (OpenBSD 12)', linktype: 12, header: '' },
    { name: 'BSD loopback, little-endian host: family 24', linktype: 0, header: '18000000' },
    { name: 'BSD loopback, big-endian host: family 24', linktype: 0, bigEndian: true, header: '00000018' },
    { name: 'OpenBSD loopback: family 24', linktype: 108, header: '00000018' },
  ])('$name', ({ linktype, bigEndian, header }) => {
    const framed = toLinkType(frame, linktype, bigEndian);
    expect(hex(framed)).toBe(hex(fromHex(header)) + hex(ip));
  });

  it('leaves IPv4 framing as it was, and refuses frames that are neither', () => {
    const v4 = buildFrame(tcpSpec([]));
    expect(hex(toLinkType(v4, 113).subarray(0, 16))).toBe('00000001000602420a00000500000800');
    expect(hex(toLinkType(v4, 0).subarray(0, 4))).toBe('02000000');
    expect(toLinkType(v4, 1)).toBe(v4);
    const arp = buildFrame({ dstMac: 'ff:ff:ff:ff:ff:ff', srcMac: CLIENT_MAC, ethertype: 0x0806, payload: new Uint8Array(28) });
    expect(() => toLinkType(arp, 113)).toThrow(RangeError);
    expect(() => toLinkType(buildFrame(tcp6Spec([7])), 101)).toThrow(RangeError);
  });
});

describe('IPv6: helpers', () => {
  it('parse and format IPv6 addresses (RFC 5952)', () => {
    expect(hex(ipv6ToBytes('2001:db8::1'))).toBe('20010db8000000000000000000000001');
    expect(hex(ipv6ToBytes('::ffff:10.0.0.1'))).toBe('00000000000000000000ffff0a000001');
    expect(formatIpv6(ipv6ToBytes('2001:DB8:0:0:1:0:0:1'))).toBe('2001:db8::1:0:0:1');
    expect(formatIpv6(ipv6ToBytes('2001:db8:0:1:1:1:1:1'))).toBe('2001:db8:0:1:1:1:1:1');
    expect(formatIpv6(Uint8Array.of(9, ...ipv6ToBytes('fd00::')), 1)).toBe('fd00::');
    for (const bad of ['10.0.0.1', '2001:db8::1::1', 'fe80::1%eth0', 'fd00::g', ''])
      expect(() => ipv6ToBytes(bad), bad).toThrow(RangeError);
  });

  it('sum the IPv6 pseudo-header, its upper-layer length a 32-bit field', () => {
    const one = ipv6ToBytes('::1');
    const two = ipv6ToBytes('::2');
    expect(ipv6PseudoHeaderSum(one, two, 17, 8)).toBe(1 + 2 + 17 + 8);
    expect(ipv6PseudoHeaderSum(one, two, 17, 0x10008)).toBe(1 + 2 + 17 + 1 + 8);
    expect(ipv6PseudoHeaderSum(ipv6ToBytes('ffff:ffff::'), two, 6, 20)).toBe(
      onesComplementSum(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0, 2, 0, 26)),
    );
  });

  it('buildFrame rejects IPv6 specs it cannot build', () => {
    const base = tcp6Spec([]);
    const ipv6 = base.ipv6!;
    expect(() => buildFrame({ ...base, ipv4: { src: '10.0.0.1', dst: '10.0.0.2' } })).toThrow(/not both/);
    expect(() => buildFrame({ ...base, l4: undefined })).toThrow(/ipv6 needs an l4/);
    expect(() => buildFrame({ ...base, l4: { kind: 'icmp', type: 8 } })).toThrow(/icmpv6/);
    expect(() => buildFrame({ ...tcpSpec([]), l4: { kind: 'icmpv6', type: 128 } })).toThrow(/needs ipv6/);
    expect(() => buildFrame({ ...base, ipv6: { ...ipv6, src: '10.0.0.1' } })).toThrow(/IPv6 address/);
    expect(() => buildFrame({ ...base, ipv6: { ...ipv6, dst: new Uint8Array(4) } })).toThrow(/16/);
    expect(() => buildFrame({ ...base, ipv6: { ...ipv6, flowLabel: 0x100000 } })).toThrow(/flowLabel/);
    expect(() => buildFrame({ ...base, ipv6: { ...ipv6, trafficClass: 256 } })).toThrow(/trafficClass/);
    expect(() => buildFrame({ ...base, ipv6: { ...ipv6, hopLimit: -1 } })).toThrow(/hopLimit/);
    expect(() => buildFrame({ ...base, l4: { kind: 'raw', protocol: 256 } })).toThrow(/protocol/);
    const withExtension = (extension: Ipv6ExtensionSpec) =>
      buildFrame({ ...base, ipv6: { ...ipv6, extensions: [{ type: 'destination' }, extension] } });
    expect(() => withExtension({ type: 'fragment', offset: 0x2000, more: false, id: 1 })).toThrow(/extensions\[1\]\.offset/);
    expect(() => withExtension({ type: 'fragment', offset: 0, more: false, id: 2 ** 32 })).toThrow(/extensions\[1\]\.id/);
    expect(() => withExtension({ type: 'routing', bytes: [0] })).toThrow(/Segments Left/);
    expect(() => withExtension({ type: 'hop-by-hop', bytes: new Uint8Array(2047) })).toThrow(/do not fit/);
    expect(buildFrame({ ...base, ipv6: { ...ipv6, extensions: [{ type: 'hop-by-hop', bytes: new Uint8Array(2046) }] } }).length).toBe(
      14 + 40 + 2048 + 32 + 18,
    );
  });
});

// --- generator ----------------------------------------------------------------------

const CLIENTS: GeneratorSpec['clients'] = [
  { ip: '10.0.1.5' },
  { ip: '10.0.1.6', vlan: [100] },
  { ip: '10.0.1.7', mac: '02:aa:bb:cc:dd:07', vlan: [10, 20] },
];
const SERVICES: GeneratorSpec['services'] = [
  { vip: '10.96.0.10', port: 53, protocol: 'UDP' },
  { vip: '10.96.0.20', port: 80, protocol: 'TCP', weight: 3 },
  { vip: '10.96.0.30', port: 443, protocol: 'TCP' }, // no endpoints
  { vip: '10.96.0.40', port: 5000, protocol: 'UDP' }, // no endpoints
];
const WITHOUT_ENDPOINTS = new Set(['10.96.0.30', '10.96.0.40']);
const BASE_SPEC: GeneratorSpec = {
  seed: 42,
  clients: CLIENTS,
  services: SERVICES,
  flows: 300,
  tcpDataPackets: [0, 4],
  payloadBytes: [1, 1400],
  ipOptionsShare: 0.2,
  strayShare: 0.1,
  concurrency: 8,
};

/** A chooser that records what it answered for each flow. */
function recordingChooser() {
  const chosen = new Map<FlowKey, { ip: string; port: number } | null>();
  const choose: BackendChooser = (flow) => {
    const backend = WITHOUT_ENDPOINTS.has(flow.vip)
      ? null
      : { ip: `10.244.${flow.clientPort % 3}.${2 + (flow.clientPort % 200)}`, port: flow.protocol === 'TCP' ? 8080 : 5353 };
    chosen.set(flow, backend);
    return backend;
  };
  return { chosen, choose };
}

function groupByFlow(packets: GeneratedPacket[]): Map<FlowKey, GeneratedPacket[]> {
  const flows = new Map<FlowKey, GeneratedPacket[]>();
  for (const packet of packets) {
    if (!packet.flow) continue;
    const list = flows.get(packet.flow) ?? [];
    list.push(packet);
    flows.set(packet.flow, list);
  }
  return flows;
}

const nsSinceStart = (p: GeneratedPacket, start = DEFAULT_START_TIME) => (p.tsSec - start.sec) * 1e9 + (p.tsNsec - start.nsec);

describe('generateTraffic', () => {
  const { chosen, choose } = recordingChooser();
  const packets = generateTraffic(BASE_SPEC, choose);
  const flows = groupByFlow(packets);

  it('is deterministic for a seed and differs between seeds', () => {
    const summary = (list: GeneratedPacket[]) =>
      list.map((p) => `${p.tsSec}.${p.tsNsec} ${hex(p.data)} ${JSON.stringify(p.flow)} ${p.direction}`);
    const again = generateTraffic(BASE_SPEC, recordingChooser().choose);
    expect(summary(again)).toEqual(summary(packets));
    const otherSeed = generateTraffic({ ...BASE_SPEC, seed: 43 }, recordingChooser().choose);
    expect(summary(otherSeed)).not.toEqual(summary(packets));
    // The streaming form yields the very same packets.
    expect(summary(Array.from(generatePackets(BASE_SPEC, recordingChooser().choose)))).toEqual(summary(packets));
  });

  it('makes frames whose every checksum is right', () => {
    expect(packets.length).toBeGreaterThan(1000);
    for (const packet of packets) expect(verifyChecksums(packet.data)).toEqual({ ipv4: true, l4: true });
  });

  it('asks for a backend once per flow, and makes as many flows as asked', () => {
    expect(flows.size).toBe(BASE_SPEC.flows);
    expect(chosen.size).toBe(BASE_SPEC.flows);
    expect([...flows.keys()].every((flow) => chosen.has(flow))).toBe(true);
    expect(new Set([...flows.keys()].map((flow) => flow.protocol))).toEqual(new Set(['TCP', 'UDP']));
  });

  it('timestamps start at the start time and never go back', () => {
    expect(packets[0]).toMatchObject({ tsSec: DEFAULT_START_TIME.sec, tsNsec: DEFAULT_START_TIME.nsec });
    for (let i = 1; i < packets.length; i++) {
      expect(packets[i]!.tsNsec).toBeLessThan(1e9);
      expect(nsSinceStart(packets[i]!)).toBeGreaterThanOrEqual(nsSinceStart(packets[i - 1]!));
    }
    const shifted = generateTraffic({ ...BASE_SPEC, flows: 20, startTime: { sec: 100, nsec: 999_999_999 } }, choose);
    expect(shifted[0]).toMatchObject({ tsSec: 100, tsNsec: 999_999_999 });
    expect(shifted.every((p) => p.tsNsec < 1e9 && p.tsSec >= 100)).toBe(true);
  });

  it('addresses requests to the VIP and replies from the chosen backend, on the client VLANs', () => {
    for (const [flow, list] of flows) {
      const backend = chosen.get(flow)!;
      const client = CLIENTS.find((c) => c.ip === flow.clientIp)!;
      const clientMac = client.mac ?? formatMac(Uint8Array.of(0x02, 0x42, ...ipv4ToBytes(client.ip)));
      expect(flow.clientPort).toBeGreaterThanOrEqual(EPHEMERAL_PORTS.min);
      expect(flow.clientPort).toBeLessThanOrEqual(EPHEMERAL_PORTS.max);
      for (const packet of list) {
        const d = decodeFrame(packet.data);
        const ports = d.tcp ?? d.udp!;
        expect(d.eth!.vlans.map((tag) => tag.vid)).toEqual(client.vlan ?? []);
        expect(d.ipv4!.protocol).toBe(flow.protocol === 'TCP' ? 6 : 17);
        if (packet.direction === 'request') {
          expect([d.eth!.src, d.eth!.dst]).toEqual([clientMac, NODE_MAC]);
          expect([d.ipv4!.src, ports.sport, d.ipv4!.dst, ports.dport]).toEqual([flow.clientIp, flow.clientPort, flow.vip, flow.vport]);
        } else {
          expect(packet.direction).toBe('reply');
          expect(backend).not.toBeNull();
          expect([d.eth!.src, d.eth!.dst]).toEqual([NODE_MAC, clientMac]);
          expect([d.ipv4!.src, ports.sport, d.ipv4!.dst, ports.dport]).toEqual([
            backend!.ip,
            backend!.port,
            flow.clientIp,
            flow.clientPort,
          ]);
          expect(d.ipv4!.ihl).toBe(5);
        }
      }
    }
  });

  it('shapes TCP flows as handshake, request/response data, and FIN exchange with consistent seq/ack', () => {
    const { SYN, ACK, PSH, FIN } = TCP_FLAGS;
    let checked = 0;
    for (const [flow, list] of flows) {
      if (flow.protocol !== 'TCP' || !chosen.get(flow)) continue;
      checked++;
      const segments = list.map((p) => ({ direction: p.direction, ...decodeFrame(p.data) }));
      const dataRounds = (segments.length - 6) / 2;
      expect(Number.isInteger(dataRounds) && dataRounds >= 0 && dataRounds <= 4).toBe(true);
      const expected = [
        ['request', SYN],
        ['reply', SYN | ACK],
        ['request', ACK],
        ...Array.from({ length: dataRounds }, () => [
          ['request', PSH | ACK],
          ['reply', PSH | ACK],
        ]).flat(),
        ['request', FIN | ACK],
        ['reply', FIN | ACK],
        ['request', ACK],
      ];
      expect(segments.map((s) => [s.direction, s.tcp!.flags])).toEqual(expected);
      expect(hex(segments[0]!.tcp!.options)).toBe('020405b4'); // MSS 1460
      expect(hex(segments[1]!.tcp!.options)).toBe('020405b4');

      // Next sequence number each side will send; SYN and FIN count as one byte.
      let clientNext = (segments[0]!.tcp!.seq + 1) >>> 0;
      let backendNext = (segments[1]!.tcp!.seq + 1) >>> 0;
      expect(segments[1]!.tcp!.ack).toBe(clientNext);
      for (const s of segments.slice(2)) {
        const consumed = s.payloadLength + (s.tcp!.flags & FIN ? 1 : 0);
        if (s.direction === 'request') {
          expect([s.tcp!.seq, s.tcp!.ack]).toEqual([clientNext, backendNext]);
          clientNext = (clientNext + consumed) >>> 0;
        } else {
          expect([s.tcp!.seq, s.tcp!.ack]).toEqual([backendNext, clientNext]);
          backendNext = (backendNext + consumed) >>> 0;
        }
        if (s.tcp!.flags & PSH) expect(s.payloadLength).toBeGreaterThan(0);
        else expect(s.payloadLength).toBe(0);
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('answers every UDP request once', () => {
    for (const [flow, list] of flows) {
      if (flow.protocol !== 'UDP' || !chosen.get(flow)) continue;
      const directions = list.map((p) => p.direction);
      expect(directions.length % 2).toBe(0);
      expect(directions.length / 2).toBeGreaterThanOrEqual(1);
      expect(directions.length / 2).toBeLessThanOrEqual(3);
      expect(directions).toEqual(directions.map((_, i) => (i % 2 === 0 ? 'request' : 'reply')));
    }
  });

  it('sends no replies when nobody answers: one SYN, maybe retransmitted 1 s later; UDP requests only', () => {
    const retransmits = new Set<number>();
    for (const [flow, list] of flows) {
      if (chosen.get(flow)) continue;
      expect(list.every((p) => p.direction === 'request')).toBe(true);
      if (flow.protocol === 'UDP') {
        expect(list.length).toBeGreaterThanOrEqual(1);
        expect(list.length).toBeLessThanOrEqual(3);
        continue;
      }
      const syns = list.map((p) => decodeFrame(p.data).tcp!);
      expect(syns.every((tcp) => tcp.flags === TCP_FLAGS.SYN && tcp.seq === syns[0]!.seq)).toBe(true);
      expect(syns.length === 1 || syns.length === 2).toBe(true);
      if (syns.length === 2) expect(nsSinceStart(list[1]!) - nsSinceStart(list[0]!)).toBe(1e9);
      retransmits.add(syns.length);
    }
    expect(retransmits).toEqual(new Set([1, 2]));
  });

  it('interleaves up to `concurrency` flows, and none with concurrency 1', () => {
    const maxOverlap = (list: GeneratedPacket[]) => {
      const spans = [...groupByFlow(list).values()].map((l) => [nsSinceStart(l[0]!), nsSinceStart(l[l.length - 1]!)] as const);
      let max = 0;
      for (const [start] of spans) max = Math.max(max, spans.filter(([s, e]) => s <= start && start <= e).length);
      return max;
    };
    expect(maxOverlap(packets)).toBeGreaterThan(1);
    expect(maxOverlap(packets)).toBeLessThanOrEqual(BASE_SPEC.concurrency!);
    const serial = generateTraffic({ ...BASE_SPEC, flows: 30, concurrency: 1 }, choose);
    expect(maxOverlap(serial)).toBe(1);
  });

  it('sends a share of stray packets to no Service at all', () => {
    const strays = packets.filter((p) => !p.flow);
    expect(strays.length / packets.length).toBeGreaterThan(0.05);
    expect(strays.length / packets.length).toBeLessThan(0.15);
    const serviceKeys = new Set(SERVICES.map((s) => `${s.vip}:${s.port}/${s.protocol}`));
    for (const stray of strays) {
      expect(stray.direction).toBeUndefined();
      const d = decodeFrame(stray.data);
      const dport = (d.tcp ?? d.udp)!.dport;
      expect(serviceKeys.has(`${d.ipv4!.dst}:${dport}/${d.tcp ? 'TCP' : 'UDP'}`)).toBe(false);
      if (d.tcp) expect(d.tcp.flags).toBe(TCP_FLAGS.SYN);
      expect(d.eth!.dst).toBe(NODE_MAC);
    }
    expect(generateTraffic({ ...BASE_SPEC, strayShare: 0 }, choose).every((p) => p.flow)).toBe(true);
  });

  it('puts IPv4 options on a share of client packets only', () => {
    const requests = packets.filter((p) => p.direction !== 'reply').map((p) => decodeFrame(p.data).ipv4!);
    const withOptions = requests.filter((ip) => ip.ihl > 5);
    expect(withOptions.length / requests.length).toBeGreaterThan(0.15);
    expect(withOptions.length / requests.length).toBeLessThan(0.25);
    const optionKinds = new Set(withOptions.map((ip) => hex(ip.options)));
    expect(optionKinds).toEqual(new Set(['94040000', '0707040000000000']));
    expect(generateTraffic({ ...BASE_SPEC, ipOptionsShare: 0 }, choose).every((p) => decodeFrame(p.data).ipv4!.ihl === 5)).toBe(true);
  });

  it('pads short client frames when asked, as a NIC would have', () => {
    const padded = generateTraffic({ ...BASE_SPEC, flows: 40, padShortClientFrames: true }, choose);
    for (const packet of padded) {
      expect(verifyChecksums(packet.data)).toEqual({ ipv4: true, l4: true });
      if (packet.direction !== 'reply') expect(packet.data.length).toBeGreaterThanOrEqual(60);
    }
    expect(padded.some((p) => p.direction === 'reply' && p.data.length < 60)).toBe(true);
  });

  it('reuses an ephemeral port for the same Service only once the flow using it is over', () => {
    // More flows than ports, from one client to one Service, forces reuse.
    const spec: GeneratorSpec = {
      seed: 1,
      clients: [{ ip: '10.0.1.5' }],
      services: [{ vip: '10.96.0.40', port: 5000, protocol: 'UDP' }],
      flows: EPHEMERAL_PORTS.max - EPHEMERAL_PORTS.min + 1 + 2000,
      payloadBytes: [1, 1],
      concurrency: 64,
    };
    const spans = new Map<FlowKey, { first: number; last: number }>();
    for (const packet of generatePackets(spec, () => null)) {
      const now = nsSinceStart(packet);
      const span = spans.get(packet.flow!);
      if (span) span.last = now;
      else spans.set(packet.flow!, { first: now, last: now });
    }
    const byPort = new Map<number, Array<{ first: number; last: number }>>();
    for (const [flow, span] of spans) byPort.set(flow.clientPort, [...(byPort.get(flow.clientPort) ?? []), span]);
    let reused = 0;
    for (const [port, uses] of byPort) {
      // Flows start in time order, so each use must begin after the previous one ended.
      for (let i = 1; i < uses.length; i++) expect(uses[i]!.first, `port ${port}`).toBeGreaterThan(uses[i - 1]!.last);
      reused += uses.length - 1;
    }
    expect(reused).toBe(2000);
  });

  it('rejects specs it cannot honour', () => {
    const bad: Array<Partial<GeneratorSpec>> = [
      { clients: [{ ip: '10.0.1' }] },
      { clients: [{ ip: '10.0.1.5', vlan: [1, 2, 3] }] },
      { clients: [] },
      { services: [{ vip: '10.96.0.1', port: 0, protocol: 'TCP' }] },
      { payloadBytes: [0, 10] },
      { payloadBytes: [10, 5] },
      { payloadBytes: [1, 9000] },
      { strayShare: 1 },
      { concurrency: 0 },
      { seed: 1.5 },
    ];
    for (const change of bad)
      expect(() => generateTraffic({ ...BASE_SPEC, ...change }, choose), JSON.stringify(change)).toThrow(RangeError);
  });
});

describe('writeTrace', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcpath-frames-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes a pcap that reads back packet for packet', () => {
    const spec = { ...BASE_SPEC, flows: 30 };
    const packets = generateTraffic(spec, recordingChooser().choose);
    for (const nanosecond of [true, false]) {
      const file = path.join(dir, `trace-${nanosecond ? 'ns' : 'us'}.pcap`);
      expect(writeTrace(file, generatePackets(spec, recordingChooser().choose), { nanosecond })).toBe(packets.length);
      const reader = openCapture(file);
      const records = Array.from(reader.records(), (r) => ({ tsSec: r.tsSec, tsNsec: r.tsNsec, data: hex(r.data), linktype: r.linktype }));
      reader.close();
      expect(reader.nanosecond).toBe(nanosecond);
      expect(records).toEqual(
        packets.map((p) => ({
          tsSec: p.tsSec,
          tsNsec: nanosecond ? p.tsNsec : Math.floor(p.tsNsec / 1000) * 1000,
          data: hex(p.data),
          linktype: 1,
        })),
      );
    }
  });
});

describe('decodeCaptured: every link type svcpath reads', () => {
  const frames: Array<[string, Uint8Array]> = [
    ['IPv4 TCP with options', buildFrame(tcpSpec([]))],
    ['IPv6 TCP behind every extension header', buildFrame(tcp6Spec([], FULL_CHAIN))],
    ['IPv6 UDP', buildFrame(udp6Spec(text('0123456789')))],
    [
      'an ICMP port unreachable quoting a TCP segment',
      buildFrame({
        dstMac: CLIENT_MAC,
        srcMac: NODE_MAC,
        ipv4: { src: '10.96.0.20', dst: '10.0.0.5' },
        l4: { kind: 'icmp', type: 3, code: 3 },
        payload: buildFrame(tcpSpec([])).subarray(14, 14 + 24 + 8),
      }),
    ],
  ];
  /** Every framing of an untagged Ethernet frame that toLinkType writes, and raw IPv4/IPv6 (228, 229) cut by hand. */
  const framings: Array<{ name: string; linktype: number; bigEndian?: boolean }> = [
    { name: 'Linux cooked v1', linktype: 113 },
    { name: 'Linux cooked v2', linktype: 276 },
    { name: 'raw IP', linktype: 101 },
    { name: 'raw IP (OpenBSD 12)', linktype: 12 },
    { name: 'BSD loopback, little-endian host', linktype: 0 },
    { name: 'BSD loopback, big-endian host', linktype: 0, bigEndian: true },
    { name: 'OpenBSD loopback', linktype: 108 },
  ];
  const headerLength: Record<number, number> = { 113: 16, 276: 20, 101: 0, 12: 0, 0: 4, 108: 4 };
  /** What decodeFrame says of the IP packet, wherever it sits. */
  const network = (d: DecodedFrame, offset: number) => ({
    ipv4: d.ipv4,
    ipv6: d.ipv6,
    tcp: d.tcp,
    udp: d.udp,
    icmp: d.icmp,
    icmpv6: d.icmpv6,
    truncatedAt: d.truncatedAt,
    malformed: d.malformed,
    payloadOffset: d.payloadOffset - offset,
    payloadLength: d.payloadLength,
  });

  for (const [what, frame] of frames) {
    it.each(framings)(
      `${what}: $name decodes to the same IP and L4 fields as Ethernet, with the same checksum report`,
      ({ linktype, bigEndian }) => {
        const framed = toLinkType(frame, linktype, bigEndian);
        const d = decodeCaptured(linktype, framed);
        expect(d.linktype).toBe(linktype);
        expect(d.networkOffset).toBe(headerLength[linktype]);
        expect(network(d, headerLength[linktype]!)).toEqual(network(decodeFrame(frame), 14));
        expect(verifyCapturedChecksums(linktype, framed)).toEqual(verifyChecksums(frame));
        // The last byte is L4 payload (or quoted bytes): both reports see it broken.
        const broken = withByte(framed, framed.length - 1, 0x40);
        expect(verifyCapturedChecksums(linktype, broken)).toEqual(verifyChecksums(withByte(frame, frame.length - 1, 0x40)));
        expect(verifyCapturedChecksums(linktype, broken).l4).toBe(false);
      },
    );

    it(`${what}: raw IPv4 (228) or raw IPv6 (229) decodes to the same IP and L4 fields as Ethernet`, () => {
      const ip = frame.slice(14);
      const linktype = decodeFrame(frame).ipv4 ? 228 : 229;
      expect(network(decodeCaptured(linktype, ip), 0)).toEqual(network(decodeFrame(frame), 14));
      expect(verifyCapturedChecksums(linktype, ip)).toEqual(verifyChecksums(frame));
    });
  }

  it('reads the cooked headers field by field', () => {
    const frame = buildFrame(tcpSpec([]));
    expect(decodeCaptured(113, toLinkType(frame, 113))).toMatchObject({
      cooked: { version: 1, packetType: 0, hatype: 1, address: CLIENT_MAC, vlans: [], protocol: 0x0800 },
      ethertype: 0x0800,
    });
    expect(decodeCaptured(276, toLinkType(frame, 276)).cooked).toEqual({
      version: 2,
      packetType: 0,
      hatype: 1,
      ifindex: 3,
      address: CLIENT_MAC,
      vlans: [],
      protocol: 0x0800,
    });
    // tcpdump -i any on a node: a frame the node sent (packet type 4), on interface 7, with an 802.1Q tag, from a 4-byte address.
    const header = fromHex('8100 0000 00000007 0001 04 04 0a0b0c0d 00000000' + 'a064 0800');
    const tagged = new Uint8Array([...header, ...frame.subarray(14)]);
    const d = decodeCaptured(276, tagged);
    expect(d.cooked).toEqual({
      version: 2,
      packetType: 4,
      hatype: 1,
      ifindex: 7,
      address: '0a:0b:0c:0d',
      vlans: [{ tpid: 0x8100, pcp: 5, dei: false, vid: 100 }],
      protocol: 0x0800,
    });
    expect(d.networkOffset).toBe(24);
    expect(network(d, 24)).toEqual(network(decodeFrame(frame), 14));
    expect(verifyCapturedChecksums(276, tagged)).toEqual(verifyChecksums(frame));
  });

  it('reads the loopback family in the byte order it was written in', () => {
    const v4 = buildFrame(tcpSpec([]));
    const v6 = buildFrame(tcp6Spec([]));
    expect(decodeCaptured(0, toLinkType(v4, 0)).loopback).toEqual({ family: 2, byteOrder: 'little-endian' });
    expect(decodeCaptured(0, toLinkType(v6, 0, true)).loopback).toEqual({ family: 24, byteOrder: 'big-endian' });
    expect(decodeCaptured(108, toLinkType(v6, 108)).loopback).toEqual({ family: 24, byteOrder: 'big-endian' });
    // FreeBSD's and Darwin's AF_INET6, and a family that is no IP.
    for (const [family, ethertype] of [
      [28, 0x86dd],
      [30, 0x86dd],
      [17, 0],
    ] as const) {
      const d = decodeCaptured(0, new Uint8Array([family, 0, 0, 0, ...v6.subarray(14)]));
      expect([d.loopback?.family, d.ethertype, d.ipv6 !== undefined]).toEqual([family, ethertype, ethertype !== 0]);
    }
  });

  it('says what raw IP carries by its version nibble, and what a fixed raw link type did not get', () => {
    const ip6 = buildFrame(tcp6Spec([])).slice(14);
    expect(decodeCaptured(101, ip6)).toMatchObject({ ethertype: 0x86dd, networkOffset: 0, ipv6: { src: 'fd00::5' } });
    const notIp = fromHex(`50${'00'.repeat(39)}`);
    expect(decodeCaptured(101, notIp)).toEqual({ linktype: 101, payloadOffset: 0, payloadLength: 40, networkOffset: 0, ethertype: 0 });
    expect(decodeCaptured(228, ip6)).toMatchObject({ ethertype: 0x0800, malformed: 'IP version 6 under EtherType IPv4' });
    expect(verifyCapturedChecksums(228, ip6)).toEqual({ ipv4: false });
  });

  it('reports a cut link-layer header, and decodes nothing of a link type it does not read', () => {
    const cooked = toLinkType(buildFrame(tcpSpec([])), 276);
    expect(decodeCaptured(276, cooked.subarray(0, 19))).toEqual({
      linktype: 276,
      payloadOffset: 0,
      payloadLength: 19,
      truncatedAt: 'link',
    });
    expect(decodeCaptured(113, cooked.subarray(0, 15)).truncatedAt).toBe('link');
    expect(decodeCaptured(0, new Uint8Array([2, 0, 0]))).toMatchObject({ truncatedAt: 'link', payloadLength: 3 });
    expect(decodeCaptured(101, new Uint8Array(0))).toMatchObject({ truncatedAt: 'link', payloadLength: 0 });
    // A VLAN tag announced but cut: the tag's TPID stays the protocol, as Ethernet keeps it as the EtherType.
    const cutTag = fromHex('8100 0000 00000003 0001 00 06 02420a000005 0000 0064');
    expect(decodeCaptured(276, cutTag)).toMatchObject({ truncatedAt: 'vlan', cooked: { protocol: 0x8100, vlans: [] }, payloadOffset: 20 });
    expect(verifyCapturedChecksums(276, cutTag)).toEqual({});
    // LINKTYPE_IEEE802_11 (105): not guessed at.
    expect(decodeCaptured(105, cooked)).toEqual({
      linktype: 105,
      payloadOffset: 0,
      payloadLength: cooked.length,
      unsupportedLinkType: true,
    });
    expect(verifyCapturedChecksums(105, cooked)).toEqual({});
  });

  it('decodes Ethernet as decodeFrame does, and says where the network layer starts', () => {
    for (const vlans of vlanCases) {
      const frame = buildFrame(tcpSpec(vlans.vlans));
      const offset = 14 + 4 * vlans.decoded.length;
      expect(decodeCaptured(1, frame)).toEqual({ ...decodeFrame(frame), linktype: 1, networkOffset: offset, ethertype: 0x0800 });
    }
  });
});
