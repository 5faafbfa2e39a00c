/**
 * `npm run make-cases`: (re)builds the inputs of the regression cases under
 * test/cases/ — cluster state, capture, replay flags. Their expected outputs
 * are recorded with `svcpath test test/cases --update` and reviewed by eye.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../../control/cluster/index.js';
import { compile } from '../../control/compile/compiler.js';
import { REASONS } from '../../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../control/compile/maglev.js';
import { PROJECT_ROOT } from '../../control/common/paths.js';
import { loadProgram } from '../../control/runtime/loader.js';
import { buildFrame, decodeFrame, toLinkType } from '../frames.js';
import { FUZZ_CLUSTER } from './fuzz.js';
import { createPcapWriter } from '../pcap.js';
import { createPcapngWriter } from '../pcapng.js';
import { buildSample, SAMPLE_CLUSTER } from './sample.js';

const CASES = join(PROJECT_ROOT, 'test', 'cases');

function caseDir(name: string, args: string): string {
  const dir = join(CASES, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'args'), `${args}\n`);
  return dir;
}

/** The bundled sample: ClusterIP Services, TCP and UDP, from pods. */
function sampleCase(): void {
  const dir = caseDir('clusterip-sample', '--node node-a');
  copyFileSync(SAMPLE_CLUSTER, join(dir, 'cluster.yaml'));
  copyFileSync(join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap'), join(dir, 'input.pcap'));
}

/**
 * The start of the sample as `tcpdump -i any` on node-a captures it: Linux
 * cooked frames in pcapng, nanoseconds, each packet the node rewrites seen
 * arriving and then leaving (packet type 4) as the node sent it, which here
 * is as svcpath rewrites it (built by running the arrivals through a datapath).
 */
async function cookedCase(): Promise<void> {
  const dir = caseDir('cooked-pcapng', '--node node-a');
  copyFileSync(SAMPLE_CLUSTER, join(dir, 'cluster.yaml'));
  const state = loadClusterState([SAMPLE_CLUSTER]);
  const dp = await loadProgram(
    compile(state, resolveServices(state).services, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE }),
  );
  const batch = dp.createBatch(1, 4096);
  const w = createPcapngWriter(join(dir, 'input.pcapng'), { interfaces: [{ linktype: 113, tsresolNs: true }] });
  for (const p of buildSample().slice(0, 300)) {
    const d = decodeFrame(p.data);
    if (d.eth?.vlans.length || !d.ipv4 || p.origlen) continue; // cooked captures carry no VLAN tags
    const arrival = toLinkType(p.data, 113);
    w.write(0, p.tsSec, p.tsNsec, arrival);
    batch.clear();
    batch.add(arrival, arrival.length, p.tsSec, p.tsNsec, 113);
    batch.run();
    const reason = REASONS[batch.reason(0)];
    if (reason !== 'SERVICE' && reason !== 'REPLY') continue;
    const sent = batch.frame(0).slice();
    sent[1] = 4; // PACKET_OUTGOING
    w.write(0, p.tsSec, p.tsNsec + 1000 < 1e9 ? p.tsNsec + 1000 : p.tsNsec, sent);
  }
  w.close();
}

/**
 * Every frontend kind and policy of the (dual-stack) fuzz cluster, from pods,
 * the node and outside, in both families: what a node would capture, each backend's answer to what the node
 * sent it included (built by running the requests through a datapath).
 */
async function policiesCase(): Promise<void> {
  const ranges = ['10.96.0.0/12', 'fd00:96::/108'];
  const dir = caseDir(
    'frontends-and-policies',
    `--node node-a --snat-port-range 40000-40999 --service-cluster-ip-range ${ranges.join(',')}`,
  );
  copyFileSync(FUZZ_CLUSTER, join(dir, 'cluster.yaml'));
  const state = loadClusterState([FUZZ_CLUSTER], { serviceClusterIPRanges: ranges });
  const compiled = compile(state, resolveServices(state).services, {
    node: 'node-a',
    seed: 0,
    maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
    snatPortRange: [40000, 40999],
    serviceClusterIPRanges: ranges,
  });
  const dp = await loadProgram(compiled);
  const batch = dp.createBatch(1, 4096);
  const w = createPcapWriter(join(dir, 'input.pcap'), { linktype: 1 });
  const frontends: Array<[string, number, 'tcp' | 'udp']> = [
    ['10.96.0.10', 80, 'tcp'],
    ['10.96.0.10', 53, 'udp'],
    ['198.51.100.10', 80, 'tcp'],
    ['203.0.113.10', 80, 'tcp'],
    ['192.168.0.10', 30080, 'tcp'],
    ['192.168.0.10', 30053, 'udp'],
    ['10.96.0.20', 80, 'tcp'],
    ['192.168.0.10', 30081, 'tcp'],
    ['10.96.0.30', 80, 'tcp'],
    ['10.96.0.10', 81, 'tcp'],
    ['10.96.0.77', 80, 'tcp'],
    ['fd00:96::10', 80, 'tcp'],
    ['fd00:96::10', 53, 'udp'],
    ['fd00:168::10', 30080, 'tcp'],
    ['2001:db8:113::10', 80, 'tcp'],
  ];
  const clients = ['10.244.0.77', '192.168.0.10', '172.16.3.4', '8.8.8.8'];
  const clients6 = ['fd00:244::77', 'fd00:168::10', '2001:db8:5::5'];
  let t = 1_800_000_000;
  let port = 41000;
  const frame = (src: string, dst: string, sport: number, dport: number, kind: 'tcp' | 'udp', answer = false) =>
    buildFrame({
      srcMac: answer ? '02:00:00:00:00:02' : '02:00:00:00:00:01',
      dstMac: answer ? '02:00:00:00:00:01' : '02:00:00:00:00:02',
      ...(src.includes(':') ? { ipv6: { src, dst } } : { ipv4: { src, dst } }),
      payload: new Uint8Array(16).fill(0x42),
      l4:
        kind === 'tcp'
          ? { kind, sport, dport, seq: 1, ack: answer ? 2 : 0, flags: answer ? ['SYN', 'ACK'] : ['SYN'] }
          : { kind, sport, dport },
    }).slice();
  for (const [vip, vport, kind] of frontends) {
    for (const client of vip.includes(':') ? clients6 : clients) {
      const request = frame(client, vip, port++, vport, kind);
      w.write(t++, 0, request);
      batch.clear();
      batch.add(request, request.length, t, 0);
      batch.run();
      if (batch.reason(0) !== 1) continue; // only a flow sent to a backend gets an answer
      const sent = decodeFrame(batch.frame(0));
      const ip = (sent.ipv4 ?? sent.ipv6)!;
      const l4 = sent.tcp ?? sent.udp!;
      w.write(t++, 0, frame(ip.dst, ip.src, l4.dport, l4.sport, kind, true));
    }
  }
  w.close();
}

/**
 * SCTP and UDP through a NodePort and a cluster IP, masqueraded and not, with
 * the backends' answers, in a nanosecond pcap: the CRC32c rewrite and the
 * nanosecond timestamps kept.
 */
async function sctpCase(): Promise<void> {
  const cluster = `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node-a}, status: {addresses: [{type: InternalIP, address: 192.168.0.10}]}}
- apiVersion: v1
  kind: Service
  metadata: {name: signalling, namespace: telco}
  spec:
    type: NodePort
    clusterIP: 10.96.5.5
    ports:
    - {name: diameter, port: 3868, protocol: SCTP, targetPort: 3869, nodePort: 30868}
    - {name: radius, port: 1812, protocol: UDP, targetPort: 1812, nodePort: 31812}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: signalling-1, namespace: telco, labels: {kubernetes.io/service-name: signalling}}
  addressType: IPv4
  endpoints:
  - {addresses: [10.244.0.50], nodeName: node-a}
  - {addresses: [10.244.3.50], nodeName: node-b}
  ports:
  - {name: diameter, port: 3869, protocol: SCTP}
  - {name: radius, port: 1812, protocol: UDP}
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clusterCIDR: 10.244.0.0/16
`;
  const dir = caseDir('sctp-udp-nanosecond', '--node node-a');
  writeFileSync(join(dir, 'cluster.yaml'), cluster);
  const state = loadClusterState([join(dir, 'cluster.yaml')]);
  const compiled = compile(state, resolveServices(state).services, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
  const dp = await loadProgram(compiled);
  const batch = dp.createBatch(1, 4096);
  const w = createPcapWriter(join(dir, 'input.pcap'), { linktype: 1, nanosecond: true });
  /** An SCTP common header and one DATA chunk; the CRC32c is the datapath's business on the way through, so it starts valid. */
  const sctp = (sport: number, dport: number) => {
    const p = new Uint8Array(28 + 8);
    const v = new DataView(p.buffer);
    v.setUint16(0, sport);
    v.setUint16(2, dport);
    v.setUint32(4, 0xabcdef01);
    p[12] = 0;
    p[13] = 3;
    v.setUint16(14, 16 + 8);
    p.set([1, 2, 3, 4, 5, 6, 7, 8], 28);
    v.setUint32(8, crc32c(p), true);
    return p;
  };
  const frame = (src: string, dst: string, sport: number, dport: number, proto: 'sctp' | 'udp', answer = false) =>
    buildFrame({
      srcMac: answer ? '02:00:00:00:00:02' : '02:00:00:00:00:01',
      dstMac: answer ? '02:00:00:00:00:01' : '02:00:00:00:00:02',
      ipv4: { src, dst },
      ...(proto === 'sctp'
        ? { l4: { kind: 'raw' as const, protocol: 132 }, payload: sctp(sport, dport) }
        : { l4: { kind: 'udp' as const, sport, dport }, payload: new Uint8Array(20).fill(7) }),
    }).slice();
  let t = 1_800_000_000;
  let port = 5000;
  for (const [client, dst, dport, proto] of [
    ['10.244.1.1', '10.96.5.5', 3868, 'sctp'],
    ['172.16.0.1', '192.168.0.10', 30868, 'sctp'],
    ['10.244.1.1', '10.96.5.5', 1812, 'udp'],
    ['172.16.0.2', '192.168.0.10', 31812, 'udp'],
    ['172.16.0.3', '192.168.0.10', 30868, 'sctp'],
  ] as const) {
    for (let i = 0; i < 3; i++) {
      const request = frame(client, dst, port++, dport, proto);
      w.write(t, 123_456_789, request);
      batch.clear();
      batch.add(request, request.length, t++, 123_456_789);
      batch.run();
      if (batch.reason(0) !== 1) continue;
      const sent = decodeFrame(batch.frame(0));
      const out = batch.frame(0);
      const l4 = out.subarray(14 + sent.ipv4!.ihl * 4);
      const [sp, dp2] = [(l4[0] << 8) | l4[1], (l4[2] << 8) | l4[3]];
      w.write(t, 987_654_321, frame(sent.ipv4!.dst, sent.ipv4!.src, dp2, sp, proto, true));
      t++;
    }
  }
  w.close();
}

/** CRC32c (Castagnoli), bit by bit, for the SCTP packets the case starts with. */
function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

sampleCase();
await cookedCase();
await policiesCase();
await sctpCase();
console.log(`cases written under ${CASES}`);
