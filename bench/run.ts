/**
 * `npm run bench`: datapath throughput with benchmark.js. Each operation is
 * one batch: frames copied into linear memory, then one process_batch call,
 * exactly as a replay does it.
 *
 *   ct-hit     established IPv4 TCP flows: conntrack hit, DNAT, checksums
 *   new-flows  every packet a new flow: service lookup, Maglev, two CT inserts
 */
import Benchmark from 'benchmark';
import { compile } from '../control/compiler.js';
import { Batch } from '../control/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/maglev.js';
import type { ClusterState, ResolvedService, Service } from '../control/model.js';
import { loadProgram } from '../control/program.js';
import { buildFrame } from '../traces/frames.js';

const BATCH = 4096;
const SERVICES = 100;
const BACKENDS_PER_SERVICE = 10;

function clusterOf(): { state: ClusterState; resolved: ResolvedService[] } {
  const resolved: ResolvedService[] = [];
  for (let s = 0; s < SERVICES; s++) {
    const service: Service = {
      origin: { file: 'bench', object: `Service bench/svc-${s}` }, namespace: 'bench', name: `svc-${s}`, type: 'ClusterIP',
      clusterIPs: [`10.96.${s >> 8}.${s & 255}`], ipFamilies: ['IPv4'],
      ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080 }],
      sessionAffinity: 'None', affinityTimeoutSeconds: 10800, externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
      externalIPs: [], loadBalancerIngress: [], loadBalancerSourceRanges: [], allocateLoadBalancerNodePorts: true, publishNotReadyAddresses: false,
    };
    const endpoints = Array.from({ length: BACKENDS_PER_SERVICE }, (_, b) => ({
      ip: `10.244.${s}.${b + 2}`, port: 8080, nodeName: b % 3 === 0 ? 'node-a' : 'node-b',
      conditions: { ready: true, serving: true, terminating: false },
    }));
    resolved.push({ service, ports: [{ port: service.ports[0], endpoints }] });
  }
  const nodes = ['node-a', 'node-b'].map((name, i) => ({ origin: { file: 'bench', object: `Node ${name}` }, name, addresses: [{ type: 'InternalIP', address: `192.168.0.${i + 1}` }] }));
  return { state: { services: resolved.map((r) => r.service), endpointSlices: [], nodes, notes: [] }, resolved };
}

/** `count` TCP frames of distinct flows to the services, 100-byte payloads. */
function flows(count: number): Uint8Array[] {
  const payload = new Uint8Array(100);
  return Array.from({ length: count }, (_, i) => buildFrame({
    srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02',
    ipv4: { src: `10.${1 + (i >> 24 & 0x3f)}.${(i >> 16) & 255}.${(i >> 8) & 255}`, dst: `10.96.0.${i % SERVICES}` },
    l4: { kind: 'tcp', sport: 1024 + (i & 255) * 200 + ((i >> 8) % 200), dport: 80, seq: i, ack: 1, flags: ['ACK', 'PSH'] },
    payload,
  }).slice());
}

async function main(): Promise<void> {
  const { state, resolved } = clusterOf();
  const compiled = compile(state, resolved, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
  const suite = new Benchmark.Suite();

  const ctHit = await loadProgram(compiled);
  const ctBatch = ctHit.createBatch(BATCH, BATCH * Batch.footprint(200));
  const established = flows(BATCH);
  const runBatch = (batch: Batch, frames: Uint8Array[], from: number) => {
    batch.clear();
    for (let i = 0; i < BATCH; i++) batch.add(frames[(from + i) % frames.length], frames[0].length, 1_800_000_000, i);
    batch.run();
  };
  runBatch(ctBatch, established, 0); // open every flow once
  suite.add('ct-hit', () => runBatch(ctBatch, established, 0));

  // More flows than the conntrack map holds, cycled: every packet misses and inserts.
  const fresh = await loadProgram(compiled, { ctEntries: 1 << 16 });
  const freshBatch = fresh.createBatch(BATCH, BATCH * Batch.footprint(200));
  const many = flows(1 << 17);
  let next = 0;
  suite.add('new-flows', () => {
    runBatch(freshBatch, many, next);
    next = (next + BATCH) % many.length;
  });

  suite.on('cycle', (event: Benchmark.Event) => {
    const b = event.target as unknown as Benchmark;
    const pps = (b.hz ?? 0) * BATCH;
    console.log(`${String(b.name).padEnd(12)} ${(pps / 1e6).toFixed(2).padStart(7)} Mpps  ${(1e9 / pps).toFixed(1).padStart(7)} ns/packet  ±${b.stats.rme.toFixed(1)}%`);
  });
  suite.run();
}

await main();
