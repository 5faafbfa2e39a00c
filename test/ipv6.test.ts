// IPv6 beyond the policy matrix: fragments with a fragment header, ICMPv6
// errors about translated flows, the ICMPv6 reject, and malformed headers.
import { describe, expect, it } from 'vitest';
import { buildFrame, decodeFrame, verifyChecksums } from '../traces/frames.js';
import { checksumsValid, endpoints, ipOf, makeNode, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';

const NODE4 = '192.168.0.10';
const NODE6 = 'fd00:168::10';
const VIP6 = 'fd00:96::10';
const BACKEND6 = 'fd00:244:2::5';

async function setup() {
  const svc = makeService(
    'default',
    'web',
    '10.96.0.10',
    [
      { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 },
    ],
    { type: 'NodePort', clusterIPs: ['10.96.0.10', VIP6], ipFamilies: ['IPv4', 'IPv6'] },
  );
  return program(
    [
      resolvedService(svc, [
        endpoints([
          ['10.244.2.5', 8080, 'node-b'],
          [BACKEND6, 8080, 'node-b'],
        ]),
        endpoints([
          ['10.244.2.5', 5353, 'node-b'],
          [BACKEND6, 5353, 'node-b'],
        ]),
      ]),
    ],
    {
      node: 'node-a',
      nodes: [makeNode('node-a', NODE4, NODE6)],
      clusterCIDRs: ['10.244.0.0/16', 'fd00:244::/32'],
      serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:96::/108'],
    },
  );
}

function icmpv6Error(from: string, to: string, frame: Uint8Array, type: number, code: number, quoteBytes: number, rest = 0): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:09',
    dstMac: '02:00:00:00:00:0a',
    ipv6: { src: from, dst: to },
    l4: { kind: 'icmpv6', type, code, rest },
    payload: frame.slice(14, 14 + quoteBytes),
  }).slice();
}

describe('IPv6', () => {
  it('a dual-stack Service serves each family from its own endpoints', async () => {
    const { dp, compiled } = await setup();
    const [v4, v6] = runFrames(dp, [tcp('10.244.9.9', 1000, '10.96.0.10', 80, ['SYN']), tcp('fd00:244:9::9', 1000, VIP6, 80, ['SYN'])]);
    expect([compiled.backends[v4.backendId - 1].ip, compiled.backends[v6.backendId - 1].ip]).toEqual(['10.244.2.5', BACKEND6]);
    expect(ipOf(v6.out).dst).toBe(BACKEND6);
    expect(checksumsValid(v6.out)).toBe(true);
  });

  it('fragments follow their first fragment (fragment header), through masquerading', async () => {
    const { dp } = await setup();
    const payload = new Uint8Array(2000).map((_, i) => i & 0xff);
    // The UDP datagram, then cut into fragments of 1232 and the rest (multiples of 8).
    const whole = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv6: { src: '2001:db8::1', dst: NODE6 },
      l4: { kind: 'udp', sport: 7777, dport: 30053 },
      payload,
    });
    const datagram = whole.subarray(14 + 40);
    const frags = [0, 1232].map((off) =>
      buildFrame({
        srcMac: '02:00:00:00:00:01',
        dstMac: '02:00:00:00:00:02',
        ipv6: { src: '2001:db8::1', dst: NODE6, extensions: [{ type: 'fragment', offset: off / 8, more: off === 0, id: 0x1234 }] },
        l4: { kind: 'raw', protocol: 17 },
        payload: datagram.subarray(off, off + 1232),
      }).slice(),
    );
    const results = runFrames(dp, frags);
    expect(results.map((r) => `${r.verdict} ${r.reason} ${r.snat}`)).toEqual(['TX SERVICE true', 'TX SERVICE true']);
    expect(results.map((r) => ipOf(r.out).dst)).toEqual([BACKEND6, BACKEND6]);
    expect(results.map((r) => ipOf(r.out).src)).toEqual([NODE6, NODE6]);
    // A later fragment of a datagram whose first fragment was never seen, to a cluster IP.
    const [lost] = runFrames(dp, [
      buildFrame({
        srcMac: '02:00:00:00:00:01',
        dstMac: '02:00:00:00:00:02',
        ipv6: { src: 'fd00:244:9::9', dst: VIP6, extensions: [{ type: 'fragment', offset: 154, more: false, id: 7 }] },
        l4: { kind: 'raw', protocol: 17 },
        payload: new Uint8Array(40),
      }).slice(),
    ]);
    expect(`${lost.verdict} ${lost.reason}`).toBe('DROP FRAGMENT_UNTRACKED');
  });

  it('ICMPv6 errors about translated flows are translated, every checksum valid', async () => {
    const { dp } = await setup();
    // From the backend about a DNATed datagram: back to the client, from the cluster IP.
    const [sent] = runFrames(dp, [udp('fd00:244:9::9', 4000, VIP6, 53)]);
    const [toClient] = runFrames(dp, [icmpv6Error(BACKEND6, 'fd00:244:9::9', sent.out, 1, 4, 56)]);
    expect(`${toClient.verdict} ${toClient.reason}`).toBe('TX ICMP_RELATED');
    const d = decodeFrame(toClient.out);
    expect([ipOf(toClient.out).src, ipOf(toClient.out).dst]).toEqual([VIP6, 'fd00:244:9::9']);
    expect([d.icmpv6!.embedded!.ipv6!.dst, d.icmpv6!.embedded!.udp!.dport]).toEqual([VIP6, 53]);
    expect(verifyChecksums(toClient.out)).toMatchObject({ l4: true, icmpEmbedded: { l4: true } });

    // Packet too big from a router about a masqueraded segment: to the real client.
    const [masq] = runFrames(dp, [tcp('2001:db8::7', 5000, NODE6, 30080, ['SYN'])]);
    expect(masq.snat).toBe(true);
    const [tooBig] = runFrames(dp, [icmpv6Error('2001:db8:ffff::1', NODE6, masq.out, 2, 0, 60, 1280)]);
    expect(`${tooBig.verdict} ${tooBig.reason} ${tooBig.snat}`).toBe('TX ICMP_RELATED true');
    const t = decodeFrame(tooBig.out);
    expect(ipOf(tooBig.out).dst).toBe('2001:db8::7');
    expect([t.icmpv6!.type, t.icmpv6!.rest]).toEqual([2, 1280]);
    expect([
      t.icmpv6!.embedded!.ipv6!.src,
      t.icmpv6!.embedded!.tcp!.sport,
      t.icmpv6!.embedded!.ipv6!.dst,
      t.icmpv6!.embedded!.tcp!.dport,
    ]).toEqual(['2001:db8::7', 5000, NODE6, 30080]);
    expect(verifyChecksums(tooBig.out)).toMatchObject({ l4: true, icmpEmbedded: { l4: true } });
  });

  it('loadBalancerSourceRanges guard each family by its own ranges', async () => {
    for (const [ranges, allowedFrom2001] of [
      [['172.16.0.0/12'], true],
      [['172.16.0.0/12', '2001:db8:1::/48'], false],
    ] as const) {
      const svc = makeService('default', 'lb', '10.96.0.20', [{ port: 80, targetPort: 8080, nodePort: 30090 }], {
        type: 'LoadBalancer',
        clusterIPs: ['10.96.0.20', 'fd00:96::20'],
        ipFamilies: ['IPv4', 'IPv6'],
        loadBalancerIngress: [
          { ip: '203.0.113.20', ipMode: 'VIP' },
          { ip: '2001:db8:113::20', ipMode: 'VIP' },
        ],
        loadBalancerSourceRanges: [...ranges],
      });
      const { dp } = await program(
        [
          resolvedService(svc, [
            endpoints([
              ['10.244.2.5', 8080, 'node-b'],
              [BACKEND6, 8080, 'node-b'],
            ]),
          ]),
        ],
        {
          node: 'node-a',
          nodes: [makeNode('node-a', NODE4, NODE6)],
          serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:96::/108'],
        },
      );
      const [v4out, v6other, v6inside] = runFrames(dp, [
        tcp('8.8.8.8', 1, '203.0.113.20', 80, ['SYN']),
        tcp('2001:db8:2::1', 2, '2001:db8:113::20', 80, ['SYN']),
        tcp('2001:db8:1::1', 3, '2001:db8:113::20', 80, ['SYN']),
      ]);
      expect(v4out.reason).toBe('SOURCE_RANGE');
      expect(v6other.reason).toBe(allowedFrom2001 ? 'SERVICE' : 'SOURCE_RANGE');
      expect(v6inside.reason).toBe('SERVICE');
    }
  });

  it('an unserved port of an IPv6 cluster IP gets an ICMPv6 port unreachable; the service range drops the rest', async () => {
    const { dp } = await setup();
    const [unserved, unallocated] = runFrames(dp, [
      tcp('fd00:244:9::9', 1, VIP6, 81, ['SYN']),
      tcp('fd00:244:9::9', 1, 'fd00:96::99', 80, ['SYN']),
    ]);
    expect(`${unserved.verdict} ${unserved.reason}`).toBe('TX UNSERVED_PORT');
    const d = decodeFrame(unserved.out);
    expect([d.icmpv6!.type, d.icmpv6!.code, ipOf(unserved.out).src]).toEqual([1, 4, VIP6]);
    expect(checksumsValid(unserved.out)).toBe(true);
    expect(`${unallocated.verdict} ${unallocated.reason}`).toBe('DROP UNALLOCATED_IP');
  });
});
