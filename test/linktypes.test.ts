// Link types: the same packets captured on Ethernet, Linux cooked (v1, v2),
// raw IP and BSD/OpenBSD loopback interfaces get the same decisions and
// rewrites; and one trace given as pcap, nanosecond pcap and pcapng replays
// to identical verdicts and output frames.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { LINKTYPES, REASONS, VERDICTS } from '../control/layout.js';
import { main } from '../control/main.js';
import { decodeFrame, toLinkType, verifyChecksums } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import { buildSample, SAMPLE_CLUSTER } from '../traces/sample.js';
import { endpoints, makeService, program, resolvedService, tcp } from './helpers.js';

const ETH_HLEN = 14;

function runWithLinktype(dp: Awaited<ReturnType<typeof program>>['dp'], frames: Uint8Array[], linktype: number) {
  const batch = dp.createBatch(frames.length, frames.length * 2048);
  frames.forEach((f, i) => batch.add(f, f.length, 1_800_000_000 + i, 0, linktype));
  batch.run();
  return frames.map((_, i) => ({ verdict: VERDICTS[batch.verdict(i)], reason: REASONS[batch.reason(i)], backendId: batch.backendId(i), out: batch.frame(i).slice() }));
}

describe('link types', () => {
  const cases: Array<[string, number, boolean?]> = [
    ['Ethernet', LINKTYPES.ETHERNET], ['Linux cooked v1', LINKTYPES.LINUX_SLL], ['Linux cooked v2', LINKTYPES.LINUX_SLL2],
    ['raw IP', LINKTYPES.RAW], ['raw IP (OpenBSD 12)', LINKTYPES.RAW_OPENBSD], ['BSD loopback, little-endian host', LINKTYPES.NULL],
    ['BSD loopback, big-endian host', LINKTYPES.NULL, true], ['OpenBSD loopback', LINKTYPES.LOOP],
  ];

  it.each(cases)('%s: same decisions and rewrites as on Ethernet', async (_name, linktype, bigEndian) => {
    const svc = makeService('default', 'web', '10.96.0.10', [{ port: 80, targetPort: 8080 }]);
    const empty = makeService('default', 'empty', '10.96.0.11', [{ port: 80 }]);
    const frames = [
      ...Array.from({ length: 20 }, (_, i) => tcp('10.244.9.9', 30000 + i, '10.96.0.10', 80, ['SYN'])),
      tcp('10.244.9.9', 31000, '10.96.0.11', 80, ['SYN']),
      tcp('10.244.9.9', 31001, '10.1.1.1', 80, ['SYN']),
    ];
    const eps = endpoints([['10.244.1.5', 8080], ['10.244.2.5', 8080], ['10.244.3.5', 8080]]);
    const reference = await program([resolvedService(svc, [eps]), resolvedService(empty, [[]])]);
    const subject = await program([resolvedService(svc, [eps]), resolvedService(empty, [[]])]);
    const want = runWithLinktype(reference.dp, frames, LINKTYPES.ETHERNET);
    const got = runWithLinktype(subject.dp, frames.map((f) => toLinkType(f, linktype, bigEndian)), linktype);
    got.forEach((g, i) => {
      expect([g.verdict, g.reason, g.backendId], `frame ${i}`).toEqual([want[i].verdict, want[i].reason, want[i].backendId]);
      // The network packet is rewritten identically, whatever framed it.
      const ipStart = g.out.length - (want[i].out.length - ETH_HLEN);
      expect(g.out.subarray(ipStart), `frame ${i}`).toEqual(want[i].out.subarray(ETH_HLEN));
      expect(verifyChecksums(want[i].out)).toMatchObject({ ipv4: true, l4: true });
    });
    expect(got[20].reason).toBe('NO_ENDPOINTS');
  });

  it('frames of a link type the parser does not know are passed untouched', async () => {
    const { dp } = await program([]);
    const frame = tcp('10.244.9.9', 1, '10.96.0.10', 80, ['SYN']);
    const [r] = runWithLinktype(dp, [frame], 105 /* IEEE 802.11 */);
    expect(`${r.verdict} ${r.reason}`).toBe('PASS UNSUPPORTED_LINKTYPE');
    expect(r.out).toEqual(frame);
  });
});

async function replay(trace: string, out: string) {
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const code = await main(['replay', trace, '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--out', out, '--verdicts', `${out}.jsonl`]);
  log.mockRestore();
  expect(code).toBe(0);
  return { verdicts: readFileSync(`${out}.jsonl`, 'utf8'), output: [...openCapture(out).records()].map((r) => ({ ...r, data: r.data.slice() })) };
}

describe('capture formats give identical results', () => {
  it('the sample as pcap, nanosecond pcap and pcapng', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-formats-'));
    const sample = buildSample();
    const us = createPcapWriter(join(dir, 'us.pcap'), { linktype: 1 });
    const ns = createPcapWriter(join(dir, 'ns.pcap'), { linktype: 1, nanosecond: true });
    const ng = createPcapngWriter(join(dir, 'ng.pcapng'), { interfaces: [{ linktype: 1, tsresolNs: true }] });
    for (const p of sample) {
      // Microsecond timestamps, so all three formats hold the very same times.
      const nsec = Math.floor(p.tsNsec / 1000) * 1000;
      us.write(p.tsSec, nsec, p.data, p.origlen);
      ns.write(p.tsSec, nsec, p.data, p.origlen);
      ng.write(0, p.tsSec, nsec, p.data, p.origlen);
    }
    us.close();
    ns.close();
    ng.close();
    const a = await replay(join(dir, 'us.pcap'), join(dir, 'a.pcap'));
    const b = await replay(join(dir, 'ns.pcap'), join(dir, 'b.pcap'));
    const c = await replay(join(dir, 'ng.pcapng'), join(dir, 'c.pcapng'));
    expect(b.verdicts).toBe(a.verdicts);
    expect(c.verdicts).toBe(a.verdicts);
    const frames = (r: typeof a) => r.output.map((o) => [o.tsSec, o.tsNsec, o.origlen, Buffer.from(o.data).toString('hex')]);
    expect(frames(b)).toEqual(frames(a));
    expect(frames(c)).toEqual(frames(a));
    expect(a.output.length).toBeGreaterThan(1000);
  });

  it('a pcapng mixing Ethernet and cooked interfaces writes pcapng, each frame on its own link type', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-mixed-'));
    const ng = createPcapngWriter(join(dir, 'mixed.pcapng'), { interfaces: [{ linktype: 1 }, { linktype: LINKTYPES.LINUX_SLL }] });
    const syn = (port: number) => tcp('10.244.0.100', port, '10.96.0.10', 80, ['SYN']);
    ng.write(0, 1_800_000_000, 0, syn(1000));
    ng.write(1, 1_800_000_001, 0, toLinkType(syn(1001), LINKTYPES.LINUX_SLL));
    ng.close();
    const r = await replay(join(dir, 'mixed.pcapng'), join(dir, 'out.pcap'));
    expect(r.output.map((o) => o.linktype)).toEqual([1, LINKTYPES.LINUX_SLL]);
    expect(decodeFrame(r.output[0].data).tcp!.dport).toBe(8080);
    expect(openCapture(join(dir, 'out.pcap')).format).toBe('pcapng');
  });
});
