// IPv4 fragments of service flows: the first fragment carries the ports, the
// later ones follow it to the same backend, addresses rewritten, and the
// reassembled datagram is exactly what the backend should receive.
import { describe, expect, it } from 'vitest';
import { buildFrame, decodeFrame, internetChecksum, verifyChecksums } from '../traces/frames.js';
import { endpoints, makeNode, makeService, program, resolvedService, runFrames } from './helpers.js';

const VIP = '10.96.0.10';

/** A UDP datagram to dst:dport split into IPv4 fragments of `chunk` payload bytes (a multiple of 8). */
function fragments(src: string, dst: string, sport: number, dport: number, payload: Uint8Array, chunk: number, id: number): Uint8Array[] {
  const whole = buildFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    ipv4: { src, dst, id },
    l4: { kind: 'udp', sport, dport },
    payload,
  });
  const datagram = whole.subarray(14 + 20); // UDP header + payload, checksum over all of it
  const out: Uint8Array[] = [];
  for (let off = 0; off < datagram.length; off += chunk) {
    const part = datagram.subarray(off, Math.min(off + chunk, datagram.length));
    out.push(
      buildFrame({
        srcMac: '02:00:00:00:00:01',
        dstMac: '02:00:00:00:00:02',
        ipv4: { src, dst, id, fragOffset: off / 8, moreFragments: off + chunk < datagram.length, protocol: 17 },
        l4: { kind: 'raw', protocol: 17 },
        payload: part,
      }).slice(),
    );
  }
  return out;
}

/** Reassembles the UDP datagram from fragments (as the backend's kernel would) and checks its checksum. */
function reassemble(frames: Uint8Array[]): { src: string; dst: string; dport: number; valid: boolean } {
  const first = decodeFrame(frames[0]);
  const parts = frames.map((f) => {
    const d = decodeFrame(f);
    return f.subarray(14 + d.ipv4!.ihl * 4, 14 + d.ipv4!.totalLength);
  });
  const datagram = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    datagram.set(p, at);
    at += p.length;
  }
  const pseudo = new Uint8Array(12 + datagram.length);
  pseudo.set(frames[0].subarray(14 + 12, 14 + 20), 0);
  pseudo[9] = 17;
  pseudo[10] = datagram.length >> 8;
  pseudo[11] = datagram.length & 0xff;
  pseudo.set(datagram, 12);
  return { src: first.ipv4!.src, dst: first.ipv4!.dst, dport: (datagram[2] << 8) | datagram[3], valid: internetChecksum(pseudo) === 0 };
}

describe('fragments', () => {
  it('follow their first fragment to its backend, through DNAT, masquerading and the reply', async () => {
    const svc = makeService('default', 'big', VIP, [{ port: 53, protocol: 'UDP', targetPort: 5353, nodePort: 30053 }], {
      type: 'NodePort',
    });
    const { dp, compiled } = await program(
      [
        resolvedService(svc, [
          endpoints([
            ['10.244.1.5', 5353, 'node-b'],
            ['10.244.2.5', 5353, 'node-b'],
          ]),
        ]),
      ],
      {
        node: 'node-a',
        nodes: [makeNode('node-a', '192.168.0.10')],
        clusterCIDRs: ['10.244.0.0/16'],
      },
    );
    const payload = new Uint8Array(3000).map((_, i) => i & 0xff);
    for (const [client, dst, dport] of [
      ['10.244.9.9', VIP, 53],
      ['172.16.0.1', '192.168.0.10', 30053],
    ] as const) {
      const frags = fragments(client, dst, 7777, dport, payload, 1480, 4242);
      expect(frags.length).toBe(3);
      const results = runFrames(dp, frags);
      const backend = compiled.backends[results[0].backendId - 1];
      for (const r of results) {
        expect(r.reason).toBe('SERVICE');
        expect(r.backendId).toBe(results[0].backendId);
        expect(verifyChecksums(r.out).ipv4).toBe(true);
      }
      const datagram = reassemble(results.map((r) => r.out));
      expect(datagram).toEqual({ src: dst === VIP ? client : '192.168.0.10', dst: backend.ip, dport: 5353, valid: true });
    }
  });

  it('a later fragment whose first one was not seen: dropped at a cluster IP, passed elsewhere', async () => {
    const svc = makeService('default', 'big', VIP, [{ port: 53, protocol: 'UDP' }]);
    const { dp } = await program([resolvedService(svc, [endpoints([['10.244.1.5', 53]])])]);
    const [, toVip] = fragments('10.244.9.9', VIP, 1, 53, new Uint8Array(2000), 1480, 9);
    const [, elsewhere] = fragments('10.244.9.9', '10.1.2.3', 1, 53, new Uint8Array(2000), 1480, 9);
    const results = runFrames(dp, [toVip, elsewhere]);
    expect(results.map((r) => `${r.verdict} ${r.reason}`)).toEqual(['DROP FRAGMENT_UNTRACKED', 'PASS FRAGMENT']);
  });
});
