/**
 * The bundled sample trace: generated traffic from pods to the sample
 * cluster's Services (traces/samples/cluster.yaml) as captured on node-a,
 * plus a few frames a
 * real capture always has — ARP, ICMP, a later IP fragment, a frame the
 * snaplen cut, a corrupt header — so that `npm start` shows every common
 * verdict. Deterministic: `npm run make-sample` rewrites sample.pcap, and
 * the end-to-end test checks the committed file is exactly what this builds.
 */
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../../control/cluster/index.js';
import { compile } from '../../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../control/compile/maglev.js';
import { PROJECT_ROOT } from '../../control/common/paths.js';
import { buildFrame } from '../frames.js';
import { generateTraffic, NODE_MAC, type GeneratedPacket } from './generate.js';
import { createPcapWriter } from '../pcap.js';
import { maglevChooser } from './predict.js';

export const SAMPLE_DIR = join(PROJECT_ROOT, 'traces', 'samples');
export const SAMPLE_CLUSTER = join(SAMPLE_DIR, 'cluster.yaml');
export const SAMPLE_TRACE = join(SAMPLE_DIR, 'sample.pcap');
export const SAMPLE_NODE = 'node-a';
export const SAMPLE_SEED = 0;

export interface SamplePacket extends GeneratedPacket {
  /** Wire length, when the capture holds fewer bytes (snaplen). */
  origlen?: number;
  /** For the hand-made frames: what they are and the verdict and reason they must get. */
  expect?: { what: string; verdict: string; reason: string };
}

const MAC_A = '02:42:0a:f4:00:63';

/** Frames a capture on a node always has, besides service traffic. */
function everydayFrames(): SamplePacket[] {
  const arp = buildFrame({
    srcMac: MAC_A,
    dstMac: 'ff:ff:ff:ff:ff:ff',
    ethertype: 0x0806,
    payload: new Uint8Array([0, 1, 8, 0, 6, 4, 0, 1, 2, 0x42, 10, 244, 0, 99, 10, 244, 0, 99, 0, 0, 0, 0, 0, 0, 10, 244, 0, 1]),
  });
  const ping = buildFrame({
    srcMac: MAC_A,
    dstMac: NODE_MAC,
    ipv4: { src: '10.244.0.99', dst: '10.244.1.20', id: 77 },
    l4: { kind: 'icmp', type: 8, rest: 0x12340001 },
    payload: new Uint8Array(32).fill(0x61),
  });
  const laterFragment = buildFrame({
    srcMac: MAC_A,
    dstMac: NODE_MAC,
    ipv4: { src: '10.244.0.99', dst: '10.96.0.53', id: 4242, fragOffset: 185, protocol: 17 },
    l4: { kind: 'raw', protocol: 17 },
    payload: new Uint8Array(120).fill(0x55),
  });
  const big = buildFrame({
    srcMac: MAC_A,
    dstMac: NODE_MAC,
    ipv4: { src: '10.244.0.99', dst: '10.96.0.10', id: 5 },
    l4: { kind: 'tcp', sport: 45555, dport: 80, seq: 1, ack: 1, flags: ['ACK', 'PSH'] },
    payload: new Uint8Array(1200).fill(0x62),
  });
  const corrupt = buildFrame({
    srcMac: MAC_A,
    dstMac: NODE_MAC,
    ipv4: { src: '10.244.0.99', dst: '10.96.0.10', id: 6 },
    l4: { kind: 'tcp', sport: 45556, dport: 80, flags: ['SYN'] },
  }).slice();
  corrupt[14] = 0x43; // IHL 3: shorter than an IPv4 header can be
  return [
    { tsSec: 0, tsNsec: 0, data: arp, expect: { what: 'ARP request', verdict: 'PASS', reason: 'NON_IP' } },
    { tsSec: 0, tsNsec: 0, data: ping, expect: { what: 'ICMP echo between pods', verdict: 'PASS', reason: 'NO_SERVICE' } },
    {
      tsSec: 0,
      tsNsec: 0,
      data: laterFragment,
      expect: { what: 'a later IPv4 fragment to a cluster IP, its first one unseen', verdict: 'DROP', reason: 'FRAGMENT_UNTRACKED' },
    },
    {
      tsSec: 0,
      tsNsec: 0,
      data: big.subarray(0, 40),
      origlen: big.length,
      expect: { what: 'cut by a 40-byte snaplen', verdict: 'ABORTED', reason: 'TRUNCATED' },
    },
    { tsSec: 0, tsNsec: 0, data: corrupt, expect: { what: 'IPv4 header length 12', verdict: 'DROP', reason: 'MALFORMED' } },
  ];
}

export function buildSample(): SamplePacket[] {
  const state = loadClusterState([SAMPLE_CLUSTER]);
  const compiled = compile(state, resolveServices(state).services, {
    node: SAMPLE_NODE,
    seed: SAMPLE_SEED,
    maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
  });
  const packets: SamplePacket[] = generateTraffic(
    {
      seed: 2026,
      clients: [
        ...Array.from({ length: 12 }, (_, i) => ({ ip: `10.244.${i % 3}.${100 + i}` })),
        { ip: '10.244.5.7', vlan: [30] }, // on a tagged VLAN
      ],
      services: [
        { vip: '10.96.0.10', port: 80, protocol: 'TCP', weight: 4 },
        { vip: '10.96.0.53', port: 53, protocol: 'UDP', weight: 4 },
        { vip: '10.96.0.53', port: 53, protocol: 'TCP', weight: 1 },
        { vip: '10.96.12.20', port: 443, protocol: 'TCP', weight: 3 },
        { vip: '10.96.0.1', port: 443, protocol: 'TCP', weight: 1 },
        { vip: '10.96.12.30', port: 8080, protocol: 'TCP', weight: 1 },
      ],
      flows: 160,
      ipOptionsShare: 0.05,
      strayShare: 0.03,
      concurrency: 12,
    },
    maglevChooser(compiled, SAMPLE_SEED),
  );
  // The everyday frames go in at evenly spread places, with their neighbours' time.
  const extra = everydayFrames();
  extra.forEach((p, i) => {
    const at = Math.floor(((i + 1) * packets.length) / (extra.length + 1));
    p.tsSec = packets[at].tsSec;
    p.tsNsec = packets[at].tsNsec;
    packets.splice(at, 0, p);
  });
  return packets;
}

export function writeSample(path = SAMPLE_TRACE): number {
  const packets = buildSample();
  const w = createPcapWriter(path, { linktype: 1 });
  for (const p of packets) w.write(p.tsSec, p.tsNsec, p.data, p.origlen);
  w.close();
  return packets.length;
}
