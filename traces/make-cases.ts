/**
 * `npm run make-cases`: (re)builds the inputs of the regression cases under
 * test/cases/ — cluster state, capture, replay flags. Their expected outputs
 * are recorded with `svcpath test test/cases --update` and reviewed by eye.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/maglev.js';
import { PROJECT_ROOT } from '../control/paths.js';
import { loadProgram } from '../control/program.js';
import { buildFrame, decodeFrame, toLinkType } from './frames.js';
import { FUZZ_CLUSTER } from './fuzz.js';
import { createPcapWriter } from './pcap.js';
import { createPcapngWriter } from './pcapng.js';
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

/** The start of the sample as `tcp -i any` captures it: Linux cooked frames in pcapng, nanoseconds. */
function cookedCase(): void {
  const dir = caseDir('cooked-pcapng', '--node node-a');
  copyFileSync(SAMPLE_CLUSTER, join(dir, 'cluster.yaml'));
  const w = createPcapngWriter(join(dir, 'input.pcapng'), { interfaces: [{ linktype: 113, tsresolNs: true }] });
  for (const p of buildSample().slice(0, 300)) {
    const d = decodeFrame(p.data);
    if (d.eth?.vlans.length || !d.ipv4 || p.origlen) continue; // cooked captures carry no VLAN tags
    w.write(0, p.tsSec, p.tsNsec, toLinkType(p.data, 113));
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
  const dir = caseDir('frontends-and-policies', `--node node-a --snat-port-range 40000-40999 --service-cluster-ip-range ${ranges.join(',')}`);
  copyFileSync(FUZZ_CLUSTER, join(dir, 'cluster.yaml'));
  const state = loadClusterState([FUZZ_CLUSTER], { serviceClusterIPRanges: ranges });
  const compiled = compile(state, resolveServices(state).services, {
    node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE, snatPortRange: [40000, 40999], serviceClusterIPRanges: ranges,
  });
  const dp = await loadProgram(compiled);
  const batch = dp.createBatch(1, 4096);
  const w = createPcapWriter(join(dir, 'input.pcap'), { linktype: 1 });
  const frontends: Array<[string, number, 'tcp' | 'udp']> = [
    ['10.96.0.10', 80, 'tcp'], ['10.96.0.10', 53, 'udp'], ['198.51.100.10', 80, 'tcp'], ['203.0.113.10', 80, 'tcp'],
    ['192.168.0.10', 30080, 'tcp'], ['192.168.0.10', 30053, 'udp'], ['10.96.0.20', 80, 'tcp'], ['192.168.0.10', 30081, 'tcp'],
    ['10.96.0.30', 80, 'tcp'], ['10.96.0.10', 81, 'tcp'], ['10.96.0.77', 80, 'tcp'],
    ['fd00:96::10', 80, 'tcp'], ['fd00:96::10', 53, 'udp'], ['fd00:168::10', 30080, 'tcp'], ['2001:db8:113::10', 80, 'tcp'],
  ];
  const clients = ['10.244.0.77', '192.168.0.10', '172.16.3.4', '8.8.8.8'];
  const clients6 = ['fd00:244::77', 'fd00:168::10', '2001:db8:5::5'];
  let t = 1_800_000_000;
  let port = 41000;
  const frame = (src: string, dst: string, sport: number, dport: number, kind: 'tcp' | 'udp', answer = false) => buildFrame({
    srcMac: answer ? '02:00:00:00:00:02' : '02:00:00:00:00:01', dstMac: answer ? '02:00:00:00:00:01' : '02:00:00:00:00:02',
    ...(src.includes(':') ? { ipv6: { src, dst } } : { ipv4: { src, dst } }), payload: new Uint8Array(16).fill(0x42),
    l4: kind === 'tcp' ? { kind, sport, dport, seq: 1, ack: answer ? 2 : 0, flags: answer ? ['SYN', 'ACK'] : ['SYN'] } : { kind, sport, dport },
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

sampleCase();
cookedCase();
await policiesCase();
console.log(`cases written under ${CASES}`);
