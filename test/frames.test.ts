import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildFrame,
  decodeFrame,
  formatIpv4,
  formatMac,
  internetChecksum,
  ipv4ToBytes,
  onesComplementSum,
  parseMac,
  tcpFlagBits,
  tcpFlagNames,
  TCP_FLAGS,
  verifyChecksums,
  type DecodedVlanTag,
  type FrameSpec,
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
} from '../traces/generate.js';
import { openCapture } from '../traces/pcap.js';

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
          l4: { kind: 'tcp', sport: 43210, dport: 80, seq: 0x12345678, flags: ['SYN'], window: 64240, options: [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7] },
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

  // Real captures from the shared corpus, each tallied against Wireshark's own verdicts on the same files.
  const corpusDir = path.resolve(fileURLToPath(new URL('..', import.meta.url)), '..', 'shared', 'corpus');
  it.each([
    { file: 'dns_tcp.pcap', tally: { 'ipv4=true l4=true': 11 } },
    { file: 'ipv4_tcp_http_xml.pcap', tally: { 'ipv4=true l4=true': 1 } },
    { file: 'ldp-common-session.pcap', tally: { 'ipv4=true l4=true': 22 } },
    // 6 CDP frames are not IPv4; the rest is ICMP under two 802.1Q tags.
    { file: 'VlanPackets.pcap', tally: { 'ipv4=true l4=true': 20, '': 6 } },
    { file: 'DnsPackets.pcap', tally: { 'ipv4=true l4=true': 449, '': 15 } },
    // Fragments carry no verifiable L4 checksum on their own.
    { file: 'ip4_fragments.pcap', tally: { 'ipv4=true': 50, 'ipv4=true l4=true': 3 } },
    { file: 'frag_with_padding.pcap', tally: { 'ipv4=true': 8 } },
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
    const summary = (list: GeneratedPacket[]) => list.map((p) => `${p.tsSec}.${p.tsNsec} ${hex(p.data)} ${JSON.stringify(p.flow)} ${p.direction}`);
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
          expect([d.ipv4!.src, ports.sport, d.ipv4!.dst, ports.dport]).toEqual([backend!.ip, backend!.port, flow.clientIp, flow.clientPort]);
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
        ...Array.from({ length: dataRounds }, () => [['request', PSH | ACK], ['reply', PSH | ACK]]).flat(),
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
    for (const change of bad) expect(() => generateTraffic({ ...BASE_SPEC, ...change }, choose), JSON.stringify(change)).toThrow(RangeError);
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
