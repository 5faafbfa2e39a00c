// SCTP through a Service: ports rewritten, and the CRC32c checksum recomputed
// over the whole packet, checked with an independent bitwise CRC32c.
import { describe, expect, it } from 'vitest';
import { buildFrame, decodeFrame, verifyChecksums } from '../traces/frames.js';
import { endpoints, makeNode, makeService, program, resolvedService, runFrames } from './helpers.js';

/** CRC32c (Castagnoli), bit by bit: slow and obviously right. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

/** An SCTP packet (common header + one DATA chunk) with a correct checksum. */
function sctpPacket(sport: number, dport: number, data: Uint8Array): Uint8Array {
  const chunkLen = 16 + data.length;
  const packet = new Uint8Array(12 + ((chunkLen + 3) & ~3));
  const v = new DataView(packet.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint32(4, 0x11223344); // verification tag
  packet[12] = 0; // DATA
  packet[13] = 3; // B and E flags
  v.setUint16(14, chunkLen);
  v.setUint32(16, 1); // TSN
  packet.set(data, 28);
  v.setUint32(8, crc32c(packet), true);
  return packet;
}

function sctpFrame(src: string, dst: string, sport: number, dport: number): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    ipv4: { src, dst },
    l4: { kind: 'raw', protocol: 132 },
    payload: sctpPacket(sport, dport, new TextEncoder().encode('hello, sctp')),
  }).slice();
}

function sctpOf(frame: Uint8Array): { sport: number; dport: number; valid: boolean } {
  const d = decodeFrame(frame);
  const sctp = frame.slice(d.payloadOffset, d.payloadOffset + d.payloadLength);
  const v = new DataView(sctp.buffer);
  const stored = v.getUint32(8, true);
  v.setUint32(8, 0);
  return { sport: v.getUint16(0), dport: v.getUint16(2), valid: crc32c(sctp) === stored };
}

describe('SCTP', () => {
  it('the reference CRC32c matches the standard check value', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('DNATs, masquerades and reverse-NATs SCTP with a valid CRC32c', async () => {
    const svc = makeService(
      'default',
      'sig',
      '10.96.7.1',
      [{ name: 'sctp', port: 3868, protocol: 'SCTP', targetPort: 3869, nodePort: 30868 }],
      { type: 'NodePort' },
    );
    const { dp } = await program([resolvedService(svc, [endpoints([['10.244.2.9', 3869, 'node-b']])])], {
      node: 'node-a',
      nodes: [makeNode('node-a', '192.168.0.10')],
      clusterCIDRs: ['10.244.0.0/16'],
    });
    const [viaClusterIP, viaNodePort] = runFrames(dp, [
      sctpFrame('10.244.1.1', '10.96.7.1', 5000, 3868),
      sctpFrame('172.16.0.1', '192.168.0.10', 5001, 30868),
    ]);
    expect(viaClusterIP.reason).toBe('SERVICE');
    expect(sctpOf(viaClusterIP.out)).toEqual({ sport: 5000, dport: 3869, valid: true });
    expect(verifyChecksums(viaClusterIP.out).ipv4).toBe(true);
    const masq = sctpOf(viaNodePort.out);
    expect([masq.dport, masq.valid, decodeFrame(viaNodePort.out).ipv4!.src]).toEqual([3869, true, '192.168.0.10']);

    const [reply] = runFrames(dp, [sctpFrame('10.244.2.9', '192.168.0.10', 3869, masq.sport)]);
    expect(`${reply.verdict} ${reply.reason}`).toBe('TX REPLY');
    expect(sctpOf(reply.out)).toEqual({ sport: 30868, dport: 5001, valid: true });
    expect(decodeFrame(reply.out).ipv4!.dst).toBe('172.16.0.1');
  });

  it('cannot recompute the CRC of a packet the capture cut: ABORTED, frame untouched', async () => {
    const svc = makeService('default', 'sig', '10.96.7.1', [{ port: 3868, protocol: 'SCTP', targetPort: 3869 }]);
    const { dp } = await program([resolvedService(svc, [endpoints([['10.244.2.9', 3869]])])]);
    const frame = sctpFrame('10.244.1.1', '10.96.7.1', 5000, 3868);
    const batch = dp.createBatch(1, 4096);
    batch.add(frame.subarray(0, frame.length - 8), frame.length, 1_800_000_000, 0);
    batch.run();
    expect([batch.verdict(0), batch.reason(0)]).toEqual([0, 8]); // ABORTED TRUNCATED
    expect(batch.frame(0)).toEqual(frame.subarray(0, frame.length - 8));
  });
});
