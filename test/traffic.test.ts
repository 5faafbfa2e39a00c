// Thousands of generated packets through the datapath: every rewrite checked
// against a full checksum recomputation and against what the generator meant
// (requests DNATed to the backend the reply comes from, replies restored to the VIP).
import { describe, expect, it } from 'vitest';
import { decodeFrame, verifyChecksums } from '../traces/frames.js';
import { generateTraffic } from '../traces/synth/generate.js';
import { maglevChooser } from '../traces/synth/predict.js';
import { endpoints, makeService, program, resolvedService, runFrames } from './helpers.js';
import { Batch } from '../control/runtime/datapath.js';

describe('generated traffic', () => {
  it('rewrites every packet of thousands of flows with valid checksums and the right addresses', async () => {
    const web = makeService('default', 'web', '10.96.0.10', [
      { name: 'http', port: 80 },
      { name: 'dns', port: 53, protocol: 'UDP' },
    ]);
    const api = makeService('shop', 'api', '10.100.7.1', [{ port: 443 }]);
    const eps = (port: number) =>
      endpoints(Array.from({ length: 5 }, (_, i): [string, number, string] => [`10.244.${i}.7`, port, i % 2 ? 'node-a' : 'node-b']));
    const seed = 99;
    const { dp, compiled } = await program([resolvedService(web, [eps(8080), eps(5353)]), resolvedService(api, [eps(8443)])], { seed });
    const packets = generateTraffic(
      {
        seed: 5,
        clients: Array.from({ length: 40 }, (_, i) => ({
          ip: `10.${i % 3 === 0 ? 244 : 1}.${i}.${i + 1}`,
          vlan: i % 5 === 0 ? [42] : i % 7 === 0 ? [1, 2] : [],
        })),
        services: [
          { vip: '10.96.0.10', port: 80, protocol: 'TCP' },
          { vip: '10.96.0.10', port: 53, protocol: 'UDP' },
          { vip: '10.100.7.1', port: 443, protocol: 'TCP' },
        ],
        flows: 1500,
        ipOptionsShare: 0.1,
        strayShare: 0.05,
      },
      maglevChooser(compiled, seed),
    );
    expect(packets.length).toBeGreaterThan(10_000);

    const batch = dp.createBatch(1024, 1024 * Batch.footprint(1600));
    let checked = 0;
    for (let i = 0; i < packets.length; i += 1024) {
      const chunk = packets.slice(i, i + 1024);
      const results = runFrames(
        dp,
        chunk.map((p) => p.data),
        chunk.map((p) => p.tsSec + p.tsNsec / 1e9),
        batch,
      );
      results.forEach((r, j) => {
        const p = chunk[j];
        const before = decodeFrame(p.data);
        const after = decodeFrame(r.out);
        const l4 = (d: typeof after) => d.tcp ?? d.udp!;
        if (!p.flow) {
          expect(`${r.verdict} ${r.reason}`).toBe('PASS NO_SERVICE');
          expect(r.out).toEqual(p.data);
          return;
        }
        expect(verifyChecksums(r.out), `packet ${i + j}`).toMatchObject({ ipv4: true, l4: true });
        if (p.direction === 'request') {
          expect(r.reason).toBe('SERVICE');
          const b = compiled.backends[r.backendId - 1];
          expect([after.ipv4!.dst, l4(after).dport]).toEqual([b.ip, b.port]);
          expect(r.verdict).toBe(b.local ? 'REDIRECT' : 'TX');
        } else {
          expect(`${r.verdict} ${r.reason}`).toBe('TX REPLY');
          expect([after.ipv4!.src, l4(after).sport]).toEqual([p.flow.vip, p.flow.vport]);
        }
        // Nothing but the translated address, port and checksums changed.
        expect(after.payloadLength).toBe(before.payloadLength);
        expect(r.out.subarray(after.payloadOffset)).toEqual(p.data.subarray(before.payloadOffset));
        expect([after.ipv4!.ttl, after.ipv4!.id, after.ipv4!.totalLength]).toEqual([
          before.ipv4!.ttl,
          before.ipv4!.id,
          before.ipv4!.totalLength,
        ]);
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(10_000);
  });
});
