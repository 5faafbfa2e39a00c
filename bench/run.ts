/**
 * `npm run bench [-- --json FILE]`: datapath throughput with benchmark.js,
 * the WASM datapath (`wasm`) against the TypeScript reference model (`ts`,
 * model/) on identical frames. Each operation is one batch of frames: for
 * WASM copied into linear memory and decided in one process_batch call,
 * exactly as a replay does it; for the model, one process() call per frame.
 *
 *   ct-hit     established IPv4 TCP flows: conntrack hit, DNAT, checksums
 *   new-flows  every packet a new flow: service lookup, Maglev, two CT inserts
 *
 * `compile` is the time to compile 10k Services x 10 endpoints to map entries.
 */
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import Benchmark from 'benchmark';
import { compile } from '../control/compiler.js';
import { Batch } from '../control/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/maglev.js';
import type { ClusterState, ResolvedService, Service } from '../control/model.js';
import { loadProgram } from '../control/program.js';
import { LINKTYPES } from '../control/layout.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { buildFrame } from '../traces/frames.js';

const BATCH = 4096;
const SERVICES = 100;
const BACKENDS_PER_SERVICE = 10;

function clusterOf(services: number, backendsPerService: number): { state: ClusterState; resolved: ResolvedService[] } {
  const resolved: ResolvedService[] = [];
  for (let s = 0; s < services; s++) {
    const service: Service = {
      origin: { file: 'bench', object: `Service bench/svc-${s}` }, namespace: 'bench', name: `svc-${s}`, type: 'ClusterIP',
      clusterIPs: [`10.${96 + (s >> 16)}.${(s >> 8) & 255}.${s & 255}`], ipFamilies: ['IPv4'],
      ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080 }],
      sessionAffinity: 'None', affinityTimeoutSeconds: 10800, externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
      externalIPs: [], loadBalancerIngress: [], loadBalancerSourceRanges: [], allocateLoadBalancerNodePorts: true, publishNotReadyAddresses: false,
    };
    const endpoints = Array.from({ length: backendsPerService }, (_, b) => ({
      ip: `10.${128 + (s >> 8)}.${s & 255}.${b + 2}`, port: 8080, nodeName: b % 3 === 0 ? 'node-a' : 'node-b',
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

interface ScenarioResult {
  name: string;
  impl: 'wasm' | 'ts';
  mpps: number;
  nsPerPacket: number;
  rme: number;
}

const TS0 = 1_800_000_000;

/** The model's decision for every frame of one batch, at the same packet times the datapath gets. */
function modelBatch(model: ReferenceDatapath, frames: Uint8Array[], from: number): void {
  for (let i = 0; i < BATCH; i++) {
    const frame = frames[(from + i) % frames.length];
    model.process(frame, { linktype: LINKTYPES.ETHERNET, wireLen: frame.length, tsSec: TS0, tsNsec: i });
  }
}

/** Milliseconds to compile 10k Services x 10 endpoints, best of three. */
function compileTime(): number {
  const { state, resolved } = clusterOf(10_000, 10);
  let best = Infinity;
  for (let i = 0; i < 3; i++) {
    const started = performance.now();
    compile(state, resolved, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { json: { type: 'string' } } });
  const { state, resolved } = clusterOf(SERVICES, BACKENDS_PER_SERVICE);
  const compiled = compile(state, resolved, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });
  const suite = new Benchmark.Suite();

  const ctHit = await loadProgram(compiled);
  const ctBatch = ctHit.createBatch(BATCH, BATCH * Batch.footprint(200));
  const established = flows(BATCH);
  const runBatch = (batch: Batch, frames: Uint8Array[], from: number) => {
    batch.clear();
    for (let i = 0; i < BATCH; i++) batch.add(frames[(from + i) % frames.length], frames[0].length, TS0, i);
    batch.run();
  };
  runBatch(ctBatch, established, 0); // open every flow once
  suite.add('ct-hit wasm', () => runBatch(ctBatch, established, 0));
  const ctModel = new ReferenceDatapath(compiled);
  modelBatch(ctModel, established, 0);
  suite.add('ct-hit ts', () => modelBatch(ctModel, established, 0));

  // More flows than the conntrack map holds, cycled: every packet misses and inserts.
  const fresh = await loadProgram(compiled, { ctEntries: 1 << 16 });
  const freshBatch = fresh.createBatch(BATCH, BATCH * Batch.footprint(200));
  const many = flows(1 << 17);
  let next = 0;
  suite.add('new-flows wasm', () => {
    runBatch(freshBatch, many, next);
    next = (next + BATCH) % many.length;
  });
  // The model's conntrack never evicts: a new model for each pass over the flows keeps every packet new.
  let freshModel = new ReferenceDatapath(compiled);
  let nextModel = 0;
  suite.add('new-flows ts', () => {
    if (nextModel === 0) freshModel = new ReferenceDatapath(compiled);
    modelBatch(freshModel, many, nextModel);
    nextModel = (nextModel + BATCH) % many.length;
  });

  const scenarios: ScenarioResult[] = [];
  suite.on('cycle', (event: Benchmark.Event) => {
    const b = event.target as unknown as Benchmark;
    const [name, impl] = String(b.name).split(' ') as [string, 'wasm' | 'ts'];
    const pps = (b.hz ?? 0) * BATCH;
    const result = { name, impl, mpps: pps / 1e6, nsPerPacket: 1e9 / pps, rme: b.stats.rme };
    scenarios.push(result);
    console.log(`${name.padEnd(10)} ${impl.padEnd(5)} ${result.mpps.toFixed(2).padStart(7)} Mpps  ${result.nsPerPacket.toFixed(1).padStart(7)} ns/packet  ±${result.rme.toFixed(1)}%`);
  });
  suite.run();

  for (const name of new Set(scenarios.map((r) => r.name))) {
    const [wasm, ts] = (['wasm', 'ts'] as const).map((impl) => scenarios.find((r) => r.name === name && r.impl === impl)!);
    console.log(`${name.padEnd(10)} wasm/ts ${(wasm.mpps / ts.mpps).toFixed(1)}x`);
  }
  const compileMs = compileTime();
  console.log(`compile 10k Services x 10 endpoints: ${compileMs.toFixed(0)} ms`);

  if (values.json) {
    const report = {
      date: new Date().toISOString(), cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version,
      scenarios, compile: { services: 10_000, endpointsPerService: 10, ms: compileMs },
    };
    writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`wrote ${values.json}`);
  }
}

await main();
