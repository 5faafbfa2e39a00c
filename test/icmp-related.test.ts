// ICMP errors about translated flows are translated too, as conntrack does
// for RELATED packets: outer and quoted headers rewritten, every checksum
// (outer IP, ICMP, quoted IP, quoted L4) valid.
import { describe, expect, it } from 'vitest';
import { buildFrame, decodeFrame, verifyChecksums } from '../traces/frames.js';
import { endpoints, makeNode, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';

const NODE_IP = '192.168.0.10';
const VIP = '10.96.0.10';

/** An ICMP error from `from` to `to`, quoting the IPv4 packet of `frame` (an Ethernet frame), `quoteBytes` of it. */
function icmpError(from: string, to: string, frame: Uint8Array, type: number, code: number, quoteBytes = 28, rest = 0): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:09',
    dstMac: '02:00:00:00:00:0a',
    ipv4: { src: from, dst: to },
    l4: { kind: 'icmp', type, code, rest },
    payload: frame.slice(14, 14 + quoteBytes),
  }).slice();
}

async function setup() {
  const svc = makeService(
    'default',
    'web',
    VIP,
    [
      { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
      { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
    ],
    { type: 'NodePort' },
  );
  return program([resolvedService(svc, [endpoints([['10.244.2.5', 8080, 'node-b']]), endpoints([['10.244.0.5', 5353, 'node-a']])])], {
    node: 'node-a',
    nodes: [makeNode('node-a', NODE_IP)],
    clusterCIDRs: ['10.244.0.0/16'],
  });
}

describe('ICMP errors about translated flows', () => {
  it('from the backend about a DNATed packet: back to the client, from the frontend', async () => {
    const { dp } = await setup();
    const [sent] = runFrames(dp, [udp('10.244.9.9', 4000, VIP, 53)]);
    const err = icmpError('10.244.0.5', '10.244.9.9', sent.out, 3, 3, 36);
    const [r] = runFrames(dp, [err]);
    expect(`${r.verdict} ${r.reason}`).toBe('TX ICMP_RELATED');
    const d = decodeFrame(r.out);
    expect([d.ipv4!.src, d.ipv4!.dst]).toEqual([VIP, '10.244.9.9']);
    expect([d.icmp!.embedded!.ipv4!.src, d.icmp!.embedded!.ipv4!.dst]).toEqual(['10.244.9.9', VIP]);
    expect([d.icmp!.embedded!.udp!.sport, d.icmp!.embedded!.udp!.dport]).toEqual([4000, 53]);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: true } });
  });

  it('from a router about a masqueraded packet (fragmentation needed): back to the real client', async () => {
    const { dp } = await setup();
    const [sent] = runFrames(dp, [tcp('172.16.0.1', 5000, NODE_IP, 30080, ['SYN'])]);
    const snatPort = decodeFrame(sent.out).tcp!.sport;
    const err = icmpError('10.0.0.1', NODE_IP, sent.out, 3, 4, 40, 1400);
    const [r] = runFrames(dp, [err]);
    expect(`${r.verdict} ${r.reason}`).toBe('TX ICMP_RELATED');
    expect(r.snat).toBe(true);
    const d = decodeFrame(r.out);
    expect([d.ipv4!.src, d.ipv4!.dst]).toEqual(['10.0.0.1', '172.16.0.1']);
    expect(d.icmp!.rest).toBe(1400);
    expect([d.icmp!.embedded!.ipv4!.src, d.icmp!.embedded!.tcp!.sport]).toEqual(['172.16.0.1', 5000]);
    expect([d.icmp!.embedded!.ipv4!.dst, d.icmp!.embedded!.tcp!.dport]).toEqual([NODE_IP, 30080]);
    expect(snatPort).not.toBe(5000);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: true } });
  });

  it('from the client about a reply: on to the backend, as the backend sent it', async () => {
    const { dp } = await setup();
    const [sent] = runFrames(dp, [tcp('172.16.0.1', 5001, NODE_IP, 30080, ['SYN'])]);
    const s = decodeFrame(sent.out);
    const backendReply = buildFrame({
      srcMac: '02:00:00:00:00:02',
      dstMac: '02:00:00:00:00:01',
      ipv4: { src: s.ipv4!.dst, dst: s.ipv4!.src },
      l4: { kind: 'tcp', sport: 8080, dport: s.tcp!.sport, flags: ['SYN', 'ACK'] },
    }).slice();
    const [reply] = runFrames(dp, [backendReply]);
    expect(reply.reason).toBe('REPLY');
    const err = icmpError('172.16.0.1', NODE_IP, reply.out, 3, 3, 40);
    const [r] = runFrames(dp, [err]);
    expect(`${r.verdict} ${r.reason}`).toBe('TX ICMP_RELATED');
    const d = decodeFrame(r.out);
    expect([d.ipv4!.src, d.ipv4!.dst]).toEqual([NODE_IP, '10.244.2.5']);
    expect([d.icmp!.embedded!.ipv4!.src, d.icmp!.embedded!.tcp!.sport]).toEqual(['10.244.2.5', 8080]);
    expect([d.icmp!.embedded!.ipv4!.dst, d.icmp!.embedded!.tcp!.dport]).toEqual([NODE_IP, s.tcp!.sport]);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true, icmpEmbedded: { ipv4: true, l4: true } });
  });

  it('never touches link-layer padding after a short quote (found by the fuzzer)', async () => {
    const { dp } = await setup();
    const [sent] = runFrames(dp, [tcp('172.16.0.1', 5002, NODE_IP, 30080, ['SYN'])]);
    // Quote 20 + 9 bytes: the quoted TCP checksum lies beyond the datagram, in the padding.
    const err = icmpError('10.0.0.1', NODE_IP, sent.out, 11, 0, 29);
    const padded = new Uint8Array(err.length + 14).fill(0x5a);
    padded.set(err);
    const [r] = runFrames(dp, [padded]);
    expect(r.reason).toBe('ICMP_RELATED');
    expect(r.out.subarray(err.length)).toEqual(padded.subarray(err.length));
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
  });

  it('about no tracked flow: handled as any other packet', async () => {
    const { dp } = await setup();
    const stray = icmpError('10.0.0.1', '10.244.9.9', udp('10.244.9.9', 1, '10.1.1.1', 53), 3, 3, 36);
    const toVip = icmpError('10.244.9.9', VIP, udp(VIP, 53, '10.244.9.9', 9999), 3, 3, 36);
    const results = runFrames(dp, [stray, toVip]);
    expect(results.map((r) => `${r.verdict} ${r.reason}`)).toEqual(['PASS NO_SERVICE', 'DROP UNSERVED_PORT']);
  });
});
