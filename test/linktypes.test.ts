// Link types: the same packets captured on Ethernet, Linux cooked (v1, v2),
// raw IP (101, 12, and 228/229 as scapy writes them) and BSD/OpenBSD
// loopback interfaces get the same decisions and rewrites; a cooked header's
// packet type says which frames the node sent; and one trace given as pcap,
// nanosecond pcap and pcapng replays to identical verdicts and output frames.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { LINKTYPES, REASONS, VERDICTS } from '../control/compile/layout.js';
import { main } from '../control/cli/main.js';
import { decodeFrame, toLinkType, verifyChecksums } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import { buildSample, SAMPLE_CLUSTER } from '../traces/synth/sample.js';
import { endpoints, makeNode, makeService, program, resolvedService, tcp } from './helpers.js';
import { readWithPcapParser } from './pcap-parser.js';

const ETH_HLEN = 14;

function runWithLinktype(dp: Awaited<ReturnType<typeof program>>['dp'], frames: Uint8Array[], linktype: number) {
  return runFramed(
    dp,
    frames.map((data) => ({ data, linktype })),
  );
}

function runFramed(dp: Awaited<ReturnType<typeof program>>['dp'], frames: Array<{ data: Uint8Array; linktype: number }>) {
  const batch = dp.createBatch(frames.length, frames.length * 2048);
  frames.forEach((f, i) => batch.add(f.data, f.data.length, 1_800_000_000 + i, 0, f.linktype));
  batch.run();
  return frames.map((_, i) => ({
    verdict: VERDICTS[batch.verdict(i)],
    reason: REASONS[batch.reason(i)],
    backendId: batch.backendId(i),
    out: batch.frame(i).slice(),
  }));
}

describe('link types', () => {
  const cases: Array<[string, number, boolean?]> = [
    ['Ethernet', LINKTYPES.ETHERNET],
    ['Linux cooked v1', LINKTYPES.LINUX_SLL],
    ['Linux cooked v2', LINKTYPES.LINUX_SLL2],
    ['raw IP', LINKTYPES.RAW],
    ['raw IP (OpenBSD 12)', LINKTYPES.RAW_OPENBSD],
    ['raw IPv4 (228)', LINKTYPES.IPV4],
    ['BSD loopback, little-endian host', LINKTYPES.NULL],
    ['BSD loopback, big-endian host', LINKTYPES.NULL, true],
    ['OpenBSD loopback', LINKTYPES.LOOP],
  ];

  it.each(cases)('%s: same decisions and rewrites as on Ethernet', async (_name, linktype, bigEndian) => {
    const svc = makeService('default', 'web', '10.96.0.10', [{ port: 80, targetPort: 8080 }]);
    const empty = makeService('default', 'empty', '10.96.0.11', [{ port: 80 }]);
    const frames = [
      ...Array.from({ length: 20 }, (_, i) => tcp('10.244.9.9', 30000 + i, '10.96.0.10', 80, ['SYN'])),
      tcp('10.244.9.9', 31000, '10.96.0.11', 80, ['SYN']),
      tcp('10.244.9.9', 31001, '10.1.1.1', 80, ['SYN']),
    ];
    const eps = endpoints([
      ['10.244.1.5', 8080],
      ['10.244.2.5', 8080],
      ['10.244.3.5', 8080],
    ]);
    const reference = await program([resolvedService(svc, [eps]), resolvedService(empty, [[]])]);
    const subject = await program([resolvedService(svc, [eps]), resolvedService(empty, [[]])]);
    const want = runWithLinktype(reference.dp, frames, LINKTYPES.ETHERNET);
    const got = runWithLinktype(
      subject.dp,
      frames.map((f) => toLinkType(f, linktype, bigEndian)),
      linktype,
    );
    got.forEach((g, i) => {
      expect([g.verdict, g.reason, g.backendId], `frame ${i}`).toEqual([want[i].verdict, want[i].reason, want[i].backendId]);
      // The network packet is rewritten identically, whatever framed it.
      const ipStart = g.out.length - (want[i].out.length - ETH_HLEN);
      expect(g.out.subarray(ipStart), `frame ${i}`).toEqual(want[i].out.subarray(ETH_HLEN));
      expect(verifyChecksums(want[i].out)).toMatchObject({ ipv4: true, l4: true });
    });
    expect(got[20].reason).toBe('NO_ENDPOINTS');
  });

  it('raw IPv6 (229): the same decisions and rewrites as on Ethernet; a packet of the other IP version is MALFORMED on 228 and 229', async () => {
    const svc = makeService('default', 'web6', 'fd00:96::10', [{ port: 80, targetPort: 8080 }], {
      clusterIPs: ['fd00:96::10'],
      ipFamilies: ['IPv6'],
    });
    const eps = endpoints([
      ['fd00:244:1::5', 8080],
      ['fd00:244:2::5', 8080],
    ]);
    const opts = { nodes: [makeNode('node-a', '192.168.0.10', 'fd00:168::10')], serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:96::/108'] };
    const frames = [
      ...Array.from({ length: 12 }, (_, i) => tcp('fd00:244:9::9', 30000 + i, 'fd00:96::10', 80, ['SYN'])),
      tcp('fd00:244:9::9', 31000, 'fd00:96::10', 81, ['SYN']),
      tcp('fd00:244:9::9', 31001, 'fd00:96::11', 80, ['SYN']),
    ];
    const want = runWithLinktype((await program([resolvedService(svc, [eps])], opts)).dp, frames, LINKTYPES.ETHERNET);
    const { dp } = await program([resolvedService(svc, [eps])], opts);
    const got = runWithLinktype(
      dp,
      frames.map((f) => toLinkType(f, LINKTYPES.IPV6)),
      LINKTYPES.IPV6,
    );
    got.forEach((g, i) => {
      expect([g.verdict, g.reason, g.backendId], `frame ${i}`).toEqual([want[i].verdict, want[i].reason, want[i].backendId]);
      expect(g.out, `frame ${i}`).toEqual(want[i].out.subarray(ETH_HLEN));
    });
    expect(new Set(got.map((g) => g.reason))).toEqual(new Set(['SERVICE', 'UNSERVED_PORT', 'UNALLOCATED_IP']));
    const v4 = tcp('10.244.9.9', 1, '10.96.0.10', 80, ['SYN']).subarray(ETH_HLEN);
    const v6 = frames[0].subarray(ETH_HLEN);
    const crossed = runFramed(dp, [
      { data: v6, linktype: LINKTYPES.IPV4 },
      { data: v4, linktype: LINKTYPES.IPV6 },
    ]);
    expect(crossed.map((c) => `${c.verdict} ${c.reason}`)).toEqual(['DROP MALFORMED', 'DROP MALFORMED']);
  });

  it("a cooked header's packet type: sent by the node (4) or on the loopback device is OUTGOING, for another host (3) OTHER_HOST, the rest decided", async () => {
    const svc = makeService('default', 'web', '10.96.0.10', [{ port: 80, targetPort: 8080 }]);
    const eps = endpoints([
      ['10.244.1.5', 8080],
      ['10.244.2.5', 8080],
    ]);
    const syn = (port: number) => tcp('10.244.9.9', port, '10.96.0.10', 80, ['SYN']);
    // Linux's PACKET_* values (if_packet.h): 0 host, 1 broadcast, 2 multicast, 3 other host, 4 outgoing,
    // 5 loopback (never shown to captures), 6 user, 7 kernel (netlink monitors).
    const expected = ['SERVICE', 'SERVICE', 'SERVICE', 'OTHER_HOST', 'OUTGOING', 'SERVICE', 'SERVICE', 'SERVICE'];
    for (const linktype of [LINKTYPES.LINUX_SLL, LINKTYPES.LINUX_SLL2]) {
      const { dp } = await program([resolvedService(svc, [eps])]);
      const frames = [
        ...expected.map((_, packetType) => ({ data: toLinkType(syn(40000 + packetType), linktype, false, { packetType }), linktype })),
        ...[0, 4].map((packetType) => ({
          data: toLinkType(syn(41000 + packetType), linktype, false, { packetType, deviceType: 772 }),
          linktype,
        })),
      ];
      const got = runFramed(dp, frames);
      expect(
        got.map((g) => g.reason),
        `link type ${linktype}`,
      ).toEqual([...expected, 'OUTGOING', 'OUTGOING']);
      for (const [i, g] of got.entries()) {
        if (g.reason === 'SERVICE') continue;
        expect(g.verdict).toBe('PASS');
        expect(g.out).toEqual(frames[i].data);
      }
      // Only the six arrivals made flows: the node's frames and the other host's touched no state.
      expect(dp.map('ct4').count()).toBe(2 * 6);
    }
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
  return {
    verdicts: readFileSync(`${out}.jsonl`, 'utf8'),
    output: Array.from(openCapture(out).records(), (r) => ({ ...r, data: r.data.slice() })),
  };
}

/**
 * A classic pcap as scapy's wrpcap writes IP packets without Ethernet: the
 * writer's own byte order (little-endian here), version 2.4, microseconds,
 * snaplen 65535, link type 228. Written byte by byte, not by svcpath's writer.
 */
function scapyPcap(path: string, packets: Uint8Array[]): void {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(228, 20);
  const records = packets.map((p, i) => {
    const record = Buffer.alloc(16);
    record.writeUInt32LE(1_800_000_000 + i, 0);
    record.writeUInt32LE(250_000, 4);
    record.writeUInt32LE(p.length, 8);
    record.writeUInt32LE(p.length, 12);
    return Buffer.concat([record, p]);
  });
  writeFileSync(path, Buffer.concat([header, ...records]));
}

describe('capture formats give identical results', () => {
  it('a scapy capture of raw IPv4 (link type 228) replays as its Ethernet twin, and the output keeps link type 228', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-scapy-'));
    const packets = [
      ...Array.from({ length: 10 }, (_, i) => tcp('10.244.0.100', 1000 + i, '10.96.0.10', 80, ['SYN'])),
      tcp('10.244.0.100', 2000, '10.96.0.10', 81, ['SYN']),
      tcp('10.244.0.100', 2001, '8.8.8.8', 443, ['SYN']),
    ];
    scapyPcap(
      join(dir, 'scapy.pcap'),
      packets.map((p) => p.subarray(ETH_HLEN)),
    );
    const eth = createPcapWriter(join(dir, 'eth.pcap'), { linktype: 1 });
    packets.forEach((p, i) => eth.write(1_800_000_000 + i, 250_000_000, p));
    eth.close();
    const raw = await replay(join(dir, 'scapy.pcap'), join(dir, 'raw-out.pcap'));
    const ethernet = await replay(join(dir, 'eth.pcap'), join(dir, 'eth-out.pcap'));
    expect(raw.verdicts).toBe(ethernet.verdicts);
    expect(raw.verdicts).toContain('"reason":"SERVICE"');
    expect(raw.verdicts).toContain('"reason":"UNSERVED_PORT"');
    // The output, read by pcap-parser: link type 228 in its header, each packet the Ethernet output's without its header.
    const out = readFileSync(join(dir, 'raw-out.pcap'));
    expect(out.readUInt32LE(20)).toBe(228);
    const written = await readWithPcapParser(join(dir, 'raw-out.pcap'));
    expect(written.map((w) => w.data.toString('hex'))).toEqual(
      ethernet.output.map((o) => Buffer.from(o.data.subarray(ETH_HLEN)).toString('hex')),
    );
    expect(written.length).toBe(11);
  });

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
