// What a cluster change does to the flows it finds (issue 14), in the
// datapath and the reference model side by side: a flow kept on a backend
// that went (STALE_BACKEND, kube-proxy), moved off it (RESELECTED, Cilium),
// a UDP flow kube-proxy's stale flush deleted (FLUSHED: load-balanced
// again), a client whose affinity backend left (AFFINITY_RESET), the flows
// of a deleted Service or frontend; their counters, the verdict lines'
// "state" and "flowChange", and the walker's stop time. Changes are applied
// as the control plane applies them: an EndpointSlice update or a state
// change (rebase.ts) through the map API, the flush by flagging the
// conntrack entries through the map API here (as kube-proxy's
// CleanStaleEntries deletes them), the model synced with the same state.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveServices } from '../control/cluster/index.js';
import type { ClusterState, EndpointConditions, EndpointSlice, Protocol } from '../control/cluster/state.js';
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import {
  BPF_EXIST,
  CT4_TUPLE,
  CT6_TUPLE,
  CT_ENTRY,
  CFG_F,
  CT_F,
  FLOW_CHANGES,
  LINKTYPES,
  REASONS,
  VERDICTS,
  DESC_F_SNAT,
  decode,
  type FlowChange,
} from '../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { Batch, type Datapath } from '../control/runtime/datapath.js';
import { loadProgram } from '../control/runtime/loader.js';
import { applyStateChange } from '../control/runtime/rebase.js';
import { applyEndpointSliceUpdate, trackProgram, type LiveProgram } from '../control/runtime/update.js';
import { PcapFeeder, VerdictWriter } from '../control/runtime/zero-copy-replay.js';
import { verdictValues } from '../control/runtime/replay.js';
import { ReferenceDatapath, type StaleUdpTest } from '../model/reference-datapath.js';
import { createPcapWriter, openCapture, PcapReader } from '../traces/pcap.js';
import { READY, makeNode, makeService, tcp, udp } from './helpers.js';

const TERMINATING: EndpointConditions = { ready: false, serving: true, terminating: true };
const NODES = [makeNode('node-a', '192.168.0.10'), makeNode('node-b', '192.168.0.11')];
const NODE_IP = '192.168.0.10';

const SERVICES = [
  // UDP, reached by its cluster IP (source kept) and its NodePort (masqueraded: externalTrafficPolicy Cluster).
  makeService('default', 'dns', '10.96.0.10', [{ name: 'dns', protocol: 'UDP', port: 53, targetPort: 53, nodePort: 30053 }], {
    type: 'NodePort',
  }),
  makeService('default', 'web', '10.96.0.20', [{ name: 'http', port: 80, targetPort: 8080 }]),
  makeService('default', 'sticky', '10.96.0.30', [{ name: 'http', port: 80, targetPort: 8080 }], {
    sessionAffinity: 'ClientIP',
    affinityTimeoutSeconds: 10,
  }),
  makeService(
    'default',
    'dns6',
    'fd00:96::10',
    [
      { name: 'udp', protocol: 'UDP', port: 53, targetPort: 53 },
      { name: 'tcp', protocol: 'TCP', port: 53, targetPort: 53 },
    ],
    { ipFamilies: ['IPv6'] },
  ),
  makeService('default', 'sticky6', 'fd00:96::30', [{ name: 'http', port: 80, targetPort: 8080 }], {
    ipFamilies: ['IPv6'],
    sessionAffinity: 'ClientIP',
    affinityTimeoutSeconds: 10,
  }),
];

type Endpoint = [ip: string, conditions?: EndpointConditions];

function slice(service: string, endpoints: Endpoint[], ports: Array<[string, Protocol, number]>): EndpointSlice {
  return {
    origin: { file: 'test', object: `EndpointSlice default/${service}-a` },
    namespace: 'default',
    name: `${service}-a`,
    serviceName: service,
    addressType: endpoints[0]?.[0].includes(':') || service.endsWith('6') ? 'IPv6' : 'IPv4',
    endpoints: endpoints.map(([ip, conditions]) => ({ addresses: [ip], nodeName: 'node-b', conditions: conditions ?? READY })),
    ports: ports.map(([name, protocol, port]) => ({ name, protocol, port })),
  };
}

const SLICE_PORTS: Record<string, Array<[string, Protocol, number]>> = {
  dns: [['dns', 'UDP', 53]],
  web: [['http', 'TCP', 8080]],
  sticky: [['http', 'TCP', 8080]],
  dns6: [
    ['udp', 'UDP', 53],
    ['tcp', 'TCP', 53],
  ],
  sticky6: [['http', 'TCP', 8080]],
};
const ENDPOINTS: Record<string, string[]> = {
  dns: ['10.244.1.1', '10.244.1.2'],
  web: ['10.244.2.1', '10.244.2.2', '10.244.2.3'],
  sticky: ['10.244.3.1', '10.244.3.2', '10.244.3.3'],
  dns6: ['fd00:244:1::1', 'fd00:244:1::2'],
  sticky6: ['fd00:244:3::1', 'fd00:244:3::2', 'fd00:244:3::3'],
};
const sliceOf = (service: string, endpoints: Endpoint[]) => slice(service, endpoints, SLICE_PORTS[service]);

const OPTS: CompileOptions = {
  node: 'node-a',
  seed: 7,
  maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
  // The cluster IPs' ranges: an address of one that no Service holds is UNALLOCATED_IP.
  serviceClusterIPRanges: ['10.96.0.0/16', 'fd00:96::/112'],
};

/** Every Service with its endpoints, on the two nodes. */
function initialState(): ClusterState {
  const endpointSlices = Object.entries(ENDPOINTS).map(([service, ips]) =>
    sliceOf(
      service,
      ips.map((ip) => [ip]),
    ),
  );
  return { services: SERVICES, endpointSlices, nodes: NODES, notes: [] };
}

/** The datapath, loaded with room to grow, and the model, from the same state. */
async function start(semantics?: CompileOptions['semantics']): Promise<Pair> {
  const state = initialState();
  const opts = { ...OPTS, semantics };
  const resolved = resolveServices(state).services;
  const compiled = compile(state, resolved, opts);
  const dp = await loadProgram(compiled, { ctEntries: 4096, room: { backends: 16, tables: 8, members: 32, services: 4, revNat: 4 } });
  return new Pair(trackProgram(dp, { state, resolved, compiled, opts }), new ReferenceDatapath(compiled));
}

/** One frame's decision, backends by address (ids are the live program's). */
interface Decision {
  verdict: string;
  reason: string;
  /** The Service port's name. */
  service: string | undefined;
  backend: string | undefined;
  snat: boolean;
  flowChange: FlowChange | undefined;
  out: Uint8Array;
}

const NS = 1_000_000_000n;

/** A datapath and the model kept in step: every frame decided by both, which must agree. */
class Pair {
  /** Packet time, ns. */
  now = 1_700_000_000n * NS;
  batch: Batch;

  constructor(
    public live: LiveProgram,
    readonly model: ReferenceDatapath,
  ) {
    this.batch = live.dp.createBatch(512, 512 * Batch.footprint(200));
  }

  get dp(): Datapath {
    return this.live.dp;
  }

  backendName(id: number): string | undefined {
    return id ? this.live.compiled.backends[id - 1].ip : undefined;
  }

  serviceName(id: number): string | undefined {
    return id ? this.live.compiled.services[id - 1].name : undefined;
  }

  /** Decides the frames, 1 ms apart after `gap` seconds, in the datapath and the model; their decisions, which agree. */
  run(frames: Uint8Array[], gap = 1): Decision[] {
    const { decisions, times } = this.runDatapath(frames, gap);
    const b = this.batch;
    return decisions.map((d, i): Decision => {
      const m = this.model.process(frames[i], {
        wireLen: frames[i].length,
        tsSec: Number(times[i] / NS),
        tsNsec: Number(times[i] % NS),
        linktype: LINKTYPES.ETHERNET,
      });
      const fromModel: Decision = {
        verdict: m.verdict,
        reason: m.reason,
        service: this.serviceName(m.serviceId),
        backend: this.backendName(m.backendId),
        snat: m.snat,
        flowChange: m.flowChange,
        out: m.out,
      };
      expect(fromModel, `frame ${i}`).toEqual(d);
      expect(m.serviceId, `frame ${i}`).toBe(b.serviceId(i));
      return d;
    });
  }

  /** run, in the datapath alone; also the frames' times (ns). */
  runDatapath(frames: Uint8Array[], gap = 1): { decisions: Decision[]; times: bigint[] } {
    const b = this.batch;
    b.clear();
    this.now += BigInt(gap) * NS;
    const times = frames.map(() => (this.now += 1_000_000n));
    frames.forEach((f, i) => {
      if (!b.add(f, f.length, Number(times[i] / NS), Number(times[i] % NS))) throw new Error('batch full');
    });
    b.run();
    const decisions = frames.map(
      (_, i): Decision => ({
        verdict: VERDICTS[b.verdict(i)],
        reason: REASONS[b.reason(i)],
        service: this.serviceName(b.serviceId(i)),
        backend: this.backendName(b.backendId(i)),
        snat: (b.flags(i) & DESC_F_SNAT) !== 0,
        flowChange: b.flowChange(i),
        out: b.frame(i).slice(),
      }),
    );
    return { decisions, times };
  }

  /** An EndpointSlice update through the map API, then the model synced to the live state; `flush`: kube-proxy's flush after it. */
  update(service: string, endpoints: Endpoint[], flush?: StaleUdpTest): void {
    applyEndpointSliceUpdate(this.live, { op: 'upsert', slice: sliceOf(service, endpoints) });
    if (flush) flushDatapath(this.live, flush);
    this.model.sync(this.live.compiled, flush);
  }

  /** A change of the cluster state through the map API (control/runtime/rebase.ts), then the model synced; `flush` as for update. */
  change(state: ClusterState, flush?: StaleUdpTest): void {
    this.live = applyStateChange(this.live, state).live;
    if (flush) flushDatapath(this.live, flush);
    this.model.sync(this.live.compiled, flush);
  }

  /** Conntrack entries (both families, both directions) and masquerade bindings, through the map API. */
  tracked(): { entries: number; bindings: number } {
    return {
      entries: this.dp.map('ct4').count() + this.dp.map('ct6').count(),
      bindings: this.dp.map('snat4').count() + this.dp.map('snat6').count(),
    };
  }

  /** Packets counted per flow change, through the map API. */
  counters(): Record<FlowChange, number> {
    const m = this.dp.map('flowChanges');
    return Object.fromEntries(FLOW_CHANGES.map((kind, i) => [kind, m.at(i + 1)!.packets])) as Record<FlowChange, number>;
  }
}

/**
 * kube-proxy's stale UDP flush, done here through the map API as the control
 * plane does it: each live UDP original entry whose frontend and backend
 * `stale` names is flagged CT_F_FLUSHED, and its reply entry and masquerade
 * record deleted (when still its own).
 */
function flushDatapath(live: LiveProgram, stale: StaleUdpTest): number {
  const config = live.compiled.entries.config;
  let flushed = 0;
  for (const [map, snatMap, tuple, masqueradeAddress] of [
    ['ct4', 'snat4', CT4_TUPLE, config.snatAddress],
    ['ct6', 'snat6', CT6_TUPLE, config.snatAddress6],
  ] as const) {
    const ct = live.dp.map(map);
    const originals = [...ct.keysRaw()]
      .map((raw) => ({ raw, key: decode(tuple, raw) }))
      .filter(({ key }) => key.dir === 0 && key.proto === 17);
    for (const { raw, key } of originals) {
      const value = ct.lookupRaw(raw)!;
      const entry = decode(CT_ENTRY, value);
      const backend = live.compiled.backends[(entry.backendId as number) - 1];
      if (!stale(key.daddr as string, key.dport as number, backend.ip)) continue;
      // The raw value, flags changed: a decoded u64 time above 2^53 ns would lose its last bits.
      new DataView(value.buffer, value.byteOffset).setUint16(12, (entry.flags as number) | CT_F.FLUSHED, true);
      ct.updateRaw(raw, value, BPF_EXIST);
      const masqueraded = ((entry.flags as number) & CT_F.SNAT) !== 0;
      const replyKey = {
        saddr: backend.ip,
        daddr: masqueraded ? masqueradeAddress : key.saddr,
        sport: backend.port,
        dport: masqueraded ? entry.snatPort : key.sport,
        proto: 17,
        dir: 1,
      };
      const reply = ct.lookup(replyKey);
      if (reply && reply.backendId === entry.backendId && reply.serviceId === entry.serviceId && reply.revNatIndex === entry.revNatIndex) {
        ct.delete(replyKey);
        if (masqueraded) live.dp.map(snatMap).delete(replyKey);
      }
      flushed++;
    }
  }
  return flushed;
}

/** The flush's test, for one Service frontend whose backends at `gone` left. */
const staleFor =
  (frontends: Array<[string, number]>, gone: string[]): StaleUdpTest =>
  (address, port, backend) =>
    frontends.some(([a, p]) => a === address && p === port) && gone.includes(backend);

/** Verdict, reason and flow change of each decision. */
const summary = (ds: Decision[]) => ds.map((d) => `${d.verdict} ${d.reason} ${d.flowChange}`);
const clients = (n: number, prefix = '10.1.0.') => Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);
const clients6 = (n: number) => Array.from({ length: n }, (_, i) => `fd00:1::${(i + 1).toString(16)}`);

describe('flow changes: kube-proxy keeps established flows on a backend that went', () => {
  it('marks the packets of flows still DNATed to it STALE_BACKEND, and only those (IPv4 and IPv6)', async () => {
    const p = await start();
    const v4 = clients(40);
    const v6 = clients6(40);
    const opened = p.run([
      ...v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, ['SYN'])),
      ...v6.map((c) => tcp(c, 40000, 'fd00:96::10', 53, ['SYN'])),
    ]);
    expect(opened.every((d) => d.reason === 'SERVICE' && d.flowChange === undefined)).toBe(true);
    const onGone4 = opened.slice(0, 40).map((d) => d.backend === '10.244.2.2');
    const onGone6 = opened.slice(40).map((d) => d.backend === 'fd00:244:1::1');
    // The test means something: some flows on each side of the change.
    for (const on of [onGone4, onGone6]) expect(on.filter(Boolean).length).toBeGreaterThan(5);
    for (const on of [onGone4, onGone6]) expect(on.filter((x) => !x).length).toBeGreaterThan(5);

    p.update('web', [['10.244.2.1'], ['10.244.2.3']]);
    p.update('dns6', [['fd00:244:1::2']]);
    const next = p.run([
      ...v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, ['ACK'])),
      ...v6.map((c) => tcp(c, 40000, 'fd00:96::10', 53, ['ACK'])),
    ]);
    // Every flow keeps its backend; those on the one that went say so.
    expect(next.map((d) => d.backend)).toEqual(opened.map((d) => d.backend));
    expect(next.map((d) => d.flowChange)).toEqual([...onGone4, ...onGone6].map((gone) => (gone ? 'STALE_BACKEND' : undefined)));
    // Its replies are reverse-NATed as before, unmarked; new flows never reach it.
    const staleClient = v4[onGone4.indexOf(true)];
    const [reply] = p.run([tcp('10.244.2.2', 8080, staleClient, 40000, ['ACK'])]);
    expect([reply.reason, reply.backend, reply.flowChange]).toEqual(['REPLY', '10.244.2.2', undefined]);
    const fresh = p.run(v4.map((c) => tcp(c, 41000, '10.96.0.20', 80, ['SYN'])));
    expect(fresh.every((d) => d.backend !== '10.244.2.2' && d.flowChange === undefined)).toBe(true);
    const stale = onGone4.filter(Boolean).length + onGone6.filter(Boolean).length;
    expect(p.counters()).toEqual({ STALE_BACKEND: stale, FLUSHED: 0, RESELECTED: 0, AFFINITY_RESET: 0 });
  });

  it('a terminating backend is not gone: its flows go on unmarked', async () => {
    const p = await start();
    const v4 = clients(40);
    const opened = p.run(v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, ['SYN'])));
    p.update('web', [['10.244.2.1'], ['10.244.2.2', TERMINATING], ['10.244.2.3']]);
    const next = p.run(v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, ['ACK'])));
    expect(next.map((d) => d.backend)).toEqual(opened.map((d) => d.backend));
    expect(next.every((d) => d.flowChange === undefined)).toBe(true);
  });
});

describe("flow changes: Cilium's semantics move a flow off a backend that went", () => {
  it('marks the packet that chose again RESELECTED, sent where Maglev puts the flow now; later packets stay there unmarked', async () => {
    const p = await start('cilium');
    const v4 = clients(40);
    const v6 = clients6(40);
    const frames = (flags: Array<'SYN' | 'ACK'>) => [
      ...v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, flags)),
      ...v6.map((c) => tcp(c, 40000, 'fd00:96::10', 53, flags)),
    ];
    const opened = p.run(frames(['SYN']));
    const gone = new Set(['10.244.2.2', 'fd00:244:1::1']);
    p.update('web', [['10.244.2.1'], ['10.244.2.3']]);
    p.update('dns6', [['fd00:244:1::2']]);
    const next = p.run(frames(['ACK']));
    // Where a datapath loaded with the new state alone sends each flow.
    const now = await loadProgram(p.live.compiled, { ctEntries: 4096 });
    const chosenBatch = now.createBatch(512, 512 * Batch.footprint(200));
    const synFrames = frames(['SYN']);
    synFrames.forEach((f) => chosenBatch.add(f, f.length, 1_700_000_100, 0));
    chosenBatch.run();
    opened.forEach((was, i) => {
      const moved = gone.has(was.backend!);
      expect(next[i].flowChange).toBe(moved ? 'RESELECTED' : undefined);
      expect(next[i].backend).toBe(moved ? p.backendName(chosenBatch.backendId(i)) : was.backend);
    });
    const moved = opened.filter((d) => gone.has(d.backend!)).length;
    expect(moved).toBeGreaterThan(10);
    const after = p.run(frames(['ACK']));
    expect(after.map((d) => d.backend)).toEqual(next.map((d) => d.backend));
    expect(after.every((d) => d.flowChange === undefined)).toBe(true);
    expect(p.counters()).toEqual({ STALE_BACKEND: 0, FLUSHED: 0, RESELECTED: moved, AFFINITY_RESET: 0 });
    // The old flow ended before the new one started: two entries per flow, none left for the old backend's replies.
    expect(p.tracked()).toEqual({ entries: 2 * 80, bindings: 0 });
    const k = opened.findIndex((d) => d.backend === '10.244.2.2');
    expect(summary(p.run([tcp('10.244.2.2', 8080, v4[k], 40000, ['ACK'])]))).toEqual(['PASS NO_SERVICE undefined']);
  });
});

describe("flow changes: Cilium's semantics, a choice that fails", () => {
  it('ends the old flow first: only the first packet after the change is RESELECTED, later ones are new flows refused unmarked', async () => {
    const p = await start('cilium');
    const v4 = clients(20);
    const v6 = clients6(20);
    const outside = clients(20, '172.16.0.');
    const frames = (flags: Array<'SYN' | 'ACK'>) => [
      ...v4.map((c) => tcp(c, 40000, '10.96.0.20', 80, flags)),
      ...v6.map((c) => tcp(c, 40000, 'fd00:96::10', 53, flags)),
      ...outside.map((c) => udp(c, 5353, NODE_IP, 30053)),
    ];
    p.run(frames(['SYN']));
    expect(p.tracked()).toEqual({ entries: 2 * 60, bindings: 20 });
    p.update('web', []);
    p.update('dns6', []);
    p.update('dns', []);
    const next = p.run(frames(['ACK']));
    // Rejected with no backend named; each flow's entries and binding freed.
    expect(next.map((d) => `${d.verdict} ${d.reason} ${d.backend} ${d.flowChange}`)).toEqual(
      frames(['ACK']).map(() => 'TX NO_ENDPOINTS undefined RESELECTED'),
    );
    expect(p.tracked()).toEqual({ entries: 0, bindings: 0 });
    expect(summary(p.run(frames(['ACK'])))).toEqual(frames(['ACK']).map(() => 'TX NO_ENDPOINTS undefined'));
    expect(p.counters()).toEqual({ STALE_BACKEND: 0, FLUSHED: 0, RESELECTED: 60, AFFINITY_RESET: 0 });
    // A pod again: the next packets start flows there, unmarked.
    p.update('web', [['10.244.2.9']]);
    const back = p.run(frames(['ACK']).slice(0, 20));
    expect(back.map((d) => `${d.reason} ${d.backend} ${d.flowChange}`)).toEqual(v4.map(() => 'SERVICE 10.244.2.9 undefined'));
  });
});

describe("flow changes: kube-proxy's stale UDP flush", () => {
  const DNS: Array<[string, number]> = [
    ['10.96.0.10', 53],
    [NODE_IP, 30053],
  ];

  it('sends the next datagram of a flushed flow to a serving backend, marked FLUSHED; replies to the old tuple are untracked', async () => {
    const p = await start();
    const direct = clients(30);
    const outside = clients(30, '172.16.0.');
    const v6 = clients6(30);
    const datagrams = () => [
      ...direct.map((c) => udp(c, 5353, '10.96.0.10', 53)),
      ...outside.map((c) => udp(c, 5353, NODE_IP, 30053)),
      ...v6.map((c) => udp(c, 5353, 'fd00:96::10', 53)),
    ];
    const opened = p.run(datagrams());
    // Through the NodePort, masqueraded to the node's address; directly, not.
    expect(opened.map((d) => d.snat)).toEqual([...direct.map(() => false), ...outside.map(() => true), ...v6.map(() => false)]);
    const gone = opened.map((d) => d.backend === '10.244.1.1' || d.backend === 'fd00:244:1::1');
    expect(gone.filter(Boolean).length).toBeGreaterThan(20);
    expect(gone.filter((x) => !x).length).toBeGreaterThan(20);
    // A reply from the backend that will go, before the flush: reverse-NATed.
    const i = gone.indexOf(true);
    expect(p.run([udp('10.244.1.1', 53, direct[i], 5353)])[0].reason).toBe('REPLY');

    p.update('dns', [['10.244.1.2']], staleFor(DNS, ['10.244.1.1']));
    p.update('dns6', [['fd00:244:1::2']], staleFor([['fd00:96::10', 53]], ['fd00:244:1::1']));
    // A reply to a flushed flow's tuple matches nothing: as any untracked packet, passed (source and NAT tuple alike).
    const j = gone.findIndex((g, k) => g && k >= 30 && k < 60);
    expect(j).toBeGreaterThanOrEqual(30);
    const masqueradePort = new DataView(opened[j].out.buffer, opened[j].out.byteOffset).getUint16(34);
    const untracked = p.run([udp('10.244.1.1', 53, direct[i], 5353), udp('10.244.1.1', 53, NODE_IP, masqueradePort)]);
    expect(untracked.map((d) => `${d.verdict} ${d.reason} ${d.flowChange}`)).toEqual([
      'PASS NO_SERVICE undefined',
      'PASS NO_SERVICE undefined',
    ]);

    const next = p.run(datagrams());
    // The flushed flows are load-balanced again, to the only backend left; the others keep theirs, unmarked.
    next.forEach((d, k) => {
      const left = k < 60 ? '10.244.1.2' : 'fd00:244:1::2';
      expect([d.reason, d.backend, d.flowChange, d.snat]).toEqual([
        'SERVICE',
        gone[k] ? left : opened[k].backend,
        gone[k] ? 'FLUSHED' : undefined,
        opened[k].snat,
      ]);
    });
    // From then on, a flow like any other.
    const again = p.run(datagrams());
    expect(again.map((d) => d.backend)).toEqual(next.map((d) => d.backend));
    expect(again.every((d) => d.flowChange === undefined)).toBe(true);
    const [replyNow] = p.run([udp('10.244.1.2', 53, direct[i], 5353)]);
    expect([replyNow.reason, replyNow.backend]).toEqual(['REPLY', '10.244.1.2']);
    expect(p.counters()).toEqual({ STALE_BACKEND: 0, FLUSHED: gone.filter(Boolean).length, RESELECTED: 0, AFFINITY_RESET: 0 });
  });

  it('scaled to zero and back: the flushed datagram is rejected, marked, and the next one reaches the new pod', async () => {
    const p = await start();
    const direct = clients(20);
    p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    p.update('dns', [], staleFor(DNS, ENDPOINTS.dns));
    const rejected = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    expect(rejected.every((d) => d.verdict === 'TX' && d.reason === 'NO_ENDPOINTS' && d.flowChange === 'FLUSHED')).toBe(true);
    // Nothing was tracked: without the flush, these would have gone to the old pods.
    const stillRejected = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    expect(stillRejected.every((d) => d.reason === 'NO_ENDPOINTS' && d.flowChange === undefined)).toBe(true);
    p.update('dns', [['10.244.1.9']], staleFor(DNS, []));
    const back = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    expect(back.every((d) => d.reason === 'SERVICE' && d.backend === '10.244.1.9' && d.flowChange === undefined)).toBe(true);
  });

  it('a UDP flow no flush named stays on its old backend, STALE_BACKEND, as a TCP flow does', async () => {
    const p = await start();
    const direct = clients(20);
    const opened = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    p.update('dns', [['10.244.1.2']]);
    const next = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    expect(next.map((d) => d.backend)).toEqual(opened.map((d) => d.backend));
    expect(next.map((d) => d.flowChange)).toEqual(opened.map((d) => (d.backend === '10.244.1.1' ? 'STALE_BACKEND' : undefined)));
  });
});

/** The state without these Services and their slices. */
function withoutServices(state: ClusterState, names: string[]): ClusterState {
  return {
    ...state,
    services: state.services.filter((svc) => !names.includes(svc.name)),
    endpointSlices: state.endpointSlices.filter((sl) => !names.includes(sl.serviceName)),
  };
}

/** The state with this Service in place of the one of its name. */
function withService(state: ClusterState, service: ClusterState['services'][number]): ClusterState {
  return { ...state, services: state.services.map((svc) => (svc.name === service.name ? service : svc)) };
}

describe('flow changes: a deleted Service, a removed frontend', () => {
  // Flows of three Services, both families: TCP to web (IPv4) and dns6's TCP port, UDP to dns by its cluster IP and
  // by its NodePort (masqueraded), and to dns6's UDP port.
  const tcp4 = clients(20);
  const tcp6 = clients6(20);
  const udp4 = clients(20, '10.2.0.');
  const viaNodePort = clients(20, '172.16.0.');
  const udp6 = clients6(20);
  const connections = (flags: Array<'SYN' | 'ACK' | 'FIN'>) => [
    ...tcp4.map((c) => tcp(c, 40000, '10.96.0.20', 80, flags)),
    ...tcp6.map((c) => tcp(c, 40000, 'fd00:96::10', 53, flags)),
  ];
  const datagrams = () => [
    ...udp4.map((c) => udp(c, 5353, '10.96.0.10', 53)),
    ...viaNodePort.map((c) => udp(c, 5353, NODE_IP, 30053)),
    ...udp6.map((c) => udp(c, 5353, 'fd00:96::10', 53)),
  ];
  const DELETED = ['web', 'dns', 'dns6'];
  const deletedFrontends: Array<[string, number]> = [
    ['10.96.0.10', 53],
    [NODE_IP, 30053],
    ['fd00:96::10', 53],
  ];
  // Decided as packets of no flow: the cluster IPs are in the service ranges, the node address is not.
  const noFlow = (change: FlowChange | undefined, of: 'connections' | 'datagrams') => [
    ...(of === 'connections' ? [...tcp4, ...tcp6] : udp4).map(() => `DROP UNALLOCATED_IP ${change}`),
    ...(of === 'datagrams'
      ? [...viaNodePort.map(() => `PASS NO_SERVICE ${change}`), ...udp6.map(() => `DROP UNALLOCATED_IP ${change}`)]
      : []),
  ];

  it('kube-proxy: TCP flows keep their DNAT to the gone backends (STALE_BACKEND); flushed UDP flows end (FLUSHED), then nothing matches', async () => {
    const p = await start();
    const opened = p.run(connections(['SYN']));
    p.run(datagrams());
    // One masquerade binding per NodePort flow; two entries per flow.
    expect(p.tracked()).toEqual({ entries: 2 * 100, bindings: 20 });
    p.change(withoutServices(p.live.state, DELETED), staleFor(deletedFrontends, [...ENDPOINTS.dns, ...ENDPOINTS.dns6]));
    // The flush took the UDP flows' reply entries and bindings.
    expect(p.tracked()).toEqual({ entries: 2 * 40 + 60, bindings: 0 });

    const kept = p.run(connections(['ACK']));
    expect(kept.map((d) => [d.reason, d.service, d.backend, d.flowChange])).toEqual(
      opened.map((d, k) => ['SERVICE', k < 20 ? 'default/web:http' : 'default/dns6:tcp', d.backend, 'STALE_BACKEND']),
    );
    expect(kept.map((d) => d.backend).filter((b) => ENDPOINTS.web.includes(b!) || ENDPOINTS.dns6.includes(b!))).toHaveLength(40);
    // Their replies are still reverse-NATed, unmarked.
    const [reply] = p.run([tcp(opened[0].backend!, 8080, tcp4[0], 40000, ['ACK'])]);
    expect([reply.reason, reply.service, reply.flowChange]).toEqual(['REPLY', 'default/web:http', undefined]);

    expect(summary(p.run(datagrams()))).toEqual(noFlow('FLUSHED', 'datagrams'));
    // The flushed flows are over: their original entries went too.
    expect(p.tracked()).toEqual({ entries: 2 * 40, bindings: 0 });
    expect(summary(p.run(datagrams()))).toEqual(noFlow(undefined, 'datagrams'));

    // A connection that closes, then opens again on its tuple, and a new one: no flow to the deleted Service.
    const [fin] = p.run([tcp(tcp4[0], 40000, '10.96.0.20', 80, ['FIN', 'ACK'])]);
    expect([fin.reason, fin.flowChange]).toEqual(['SERVICE', 'STALE_BACKEND']);
    const reopened = p.run([tcp(tcp4[0], 40000, '10.96.0.20', 80, ['SYN']), tcp('10.3.0.1', 40000, '10.96.0.20', 80, ['SYN'])]);
    expect(summary(reopened)).toEqual(['DROP UNALLOCATED_IP undefined', 'DROP UNALLOCATED_IP undefined']);
    expect(p.tracked()).toEqual({ entries: 2 * 39, bindings: 0 });
    expect(p.counters()).toEqual({ STALE_BACKEND: 41, FLUSHED: 60, RESELECTED: 0, AFFINITY_RESET: 0 });
  });

  it('Cilium: the flows choose again, find no frontend and end (RESELECTED once), their replies then untracked', async () => {
    const p = await start('cilium');
    const opened = p.run(connections(['SYN']));
    p.run(datagrams());
    p.change(withoutServices(p.live.state, DELETED));
    expect(p.tracked()).toEqual({ entries: 2 * 100, bindings: 20 });
    expect(summary(p.run([...connections(['ACK']), ...datagrams()]))).toEqual([
      ...noFlow('RESELECTED', 'connections'),
      ...noFlow('RESELECTED', 'datagrams'),
    ]);
    // Ended as a reopened flow ends: both entries and the binding.
    expect(p.tracked()).toEqual({ entries: 0, bindings: 0 });
    expect(summary(p.run([...connections(['ACK']), ...datagrams()]))).toEqual([
      ...noFlow(undefined, 'connections'),
      ...noFlow(undefined, 'datagrams'),
    ]);
    const [reply] = p.run([tcp(opened[0].backend!, 8080, tcp4[0], 40000, ['ACK'])]);
    expect(summary([reply])).toEqual(['PASS NO_SERVICE undefined']);
    expect(p.counters()).toEqual({ STALE_BACKEND: 0, FLUSHED: 0, RESELECTED: 100, AFFINITY_RESET: 0 });
  });

  it('a frontend that goes while its Service and backends stay: kube-proxy keeps its flows unmarked, Cilium ends them', async () => {
    const web = SERVICES.find((svc) => svc.name === 'web')!;
    const webNodePort = { ...web, type: 'NodePort' as const, ports: [{ ...web.ports[0], nodePort: 30080 }] };
    for (const semantics of ['kube-proxy', 'cilium'] as const) {
      const p = await start(semantics);
      p.change(withService(p.live.state, webNodePort));
      const outside = clients(20, '172.16.0.');
      const frames = (flags: Array<'SYN' | 'ACK'>) => [
        ...outside.map((c) => tcp(c, 40000, NODE_IP, 30080, flags)),
        ...tcp4.map((c) => tcp(c, 40000, '10.96.0.20', 80, flags)),
      ];
      const opened = p.run(frames(['SYN']));
      expect(opened.every((d) => d.reason === 'SERVICE' && ENDPOINTS.web.includes(d.backend!))).toBe(true);
      // Back to a ClusterIP Service: the NodePort frontend goes, the cluster IP and the backends stay.
      p.change(withService(p.live.state, web));
      const next = p.run(frames(['ACK']));
      const [reply] = p.run([tcp(opened[0].backend!, 8080, NODE_IP, new DataView(opened[0].out.buffer).getUint16(34), ['ACK'])]);
      if (semantics === 'kube-proxy') {
        // The kernel's entry keeps the DNAT and the masquerade, to a backend that is still an endpoint: nothing to flag.
        expect(next.map((d) => [d.reason, d.backend, d.snat, d.flowChange])).toEqual(
          opened.map((d) => ['SERVICE', d.backend, d.snat, undefined]),
        );
        expect([reply.reason, reply.snat]).toEqual(['REPLY', true]);
      } else {
        expect(summary(next)).toEqual([...outside.map(() => 'PASS NO_SERVICE RESELECTED'), ...tcp4.map(() => 'TX SERVICE undefined')]);
        expect(next.slice(20).map((d) => d.backend)).toEqual(opened.slice(20).map((d) => d.backend));
        expect(summary([reply])).toEqual(['PASS NO_SERVICE undefined']);
      }
    }
  });

  it('the datapath looks for such flows only once the config says a frontend went', async () => {
    const p = await start();
    p.run(connections(['SYN']));
    const config = p.dp.map('config');
    expect((config.at(0)!.flags as number) & CFG_F.REMOVED_FRONTENDS).toBe(0);
    p.change(withoutServices(p.live.state, ['web']));
    const flags = config.at(0)!.flags as number;
    expect(flags & CFG_F.REMOVED_FRONTENDS).toBe(CFG_F.REMOVED_FRONTENDS);
    expect(summary(p.runDatapath(connections(['ACK']).slice(0, 20)).decisions)).toEqual(tcp4.map(() => 'TX SERVICE STALE_BACKEND'));
    // Without the flag, the same packets are decided as packets of no flow.
    config.update({ value: 0 }, { ...config.at(0)!, flags: flags & ~CFG_F.REMOVED_FRONTENDS });
    expect(summary(p.runDatapath(connections(['ACK']).slice(0, 20)).decisions)).toEqual(tcp4.map(() => 'DROP UNALLOCATED_IP undefined'));
  });
});

describe('flow changes: ClientIP affinity', () => {
  it("a client's next connection after its backend left is AFFINITY_RESET, then sticks to its new backend (IPv4 and IPv6)", async () => {
    const p = await start();
    const cases = [
      { vip: '10.96.0.30', port: 80, service: 'sticky', clients: clients(24) },
      { vip: 'fd00:96::30', port: 80, service: 'sticky6', clients: clients6(24) },
    ];
    const connect = (sport: number, flags: Array<'SYN' | 'ACK'> = ['SYN']) =>
      cases.flatMap(({ vip, port, clients: cs }) => cs.map((c) => tcp(c, sport, vip, port, flags)));
    const first = p.run(connect(40000));
    // Affinity: the same backend for the client's next connection.
    expect(p.run(connect(40001)).map((d) => d.backend)).toEqual(first.map((d) => d.backend));
    const gone = ['10.244.3.1', 'fd00:244:3::1'];
    const lost = first.map((d) => gone.includes(d.backend!));
    // Clients of each family on both sides of the change.
    for (const half of [lost.slice(0, 24), lost.slice(24)]) expect(new Set(half)).toEqual(new Set([true, false]));
    p.update('sticky', [['10.244.3.2'], ['10.244.3.3']]);
    p.update('sticky6', [['fd00:244:3::2'], ['fd00:244:3::3']]);

    const reconnected = p.run(connect(40002));
    reconnected.forEach((d, k) => {
      expect(d.flowChange).toBe(lost[k] ? 'AFFINITY_RESET' : undefined);
      expect(lost[k] ? !gone.includes(d.backend!) : d.backend === first[k].backend).toBe(true);
    });
    // The reset client sticks to where it went, unmarked.
    const sticks = p.run(connect(40003));
    expect(sticks.map((d) => d.backend)).toEqual(reconnected.map((d) => d.backend));
    expect(sticks.every((d) => d.flowChange === undefined)).toBe(true);
    // Its established connection is still on the old backend: one mark, STALE_BACKEND.
    const established = p.run(connect(40000, ['ACK']));
    expect(established.map((d) => d.flowChange)).toEqual(lost.map((l) => (l ? 'STALE_BACKEND' : undefined)));
    const resets = lost.filter(Boolean).length;
    expect(p.counters()).toEqual({ STALE_BACKEND: resets, FLUSHED: 0, RESELECTED: 0, AFFINITY_RESET: resets });
  });

  it('an expired affinity is no reset; under Cilium the established flow is RESELECTED, not also AFFINITY_RESET', async () => {
    const p = await start();
    const cs = clients(24);
    const first = p.run(cs.map((c) => tcp(c, 40000, '10.96.0.30', 80, ['SYN'])));
    p.update('sticky', [['10.244.3.2'], ['10.244.3.3']]);
    // 15 s later: past the 10 s timeout.
    const later = p.run(
      cs.map((c) => tcp(c, 40001, '10.96.0.30', 80, ['SYN'])),
      15,
    );
    expect(first.some((d) => d.backend === '10.244.3.1')).toBe(true);
    expect(later.every((d) => d.flowChange === undefined && d.backend !== '10.244.3.1')).toBe(true);

    const c = await start('cilium');
    const opened = c.run(cs.map((cl) => tcp(cl, 40000, '10.96.0.30', 80, ['SYN'])));
    c.update('sticky', [['10.244.3.2'], ['10.244.3.3']]);
    const next = c.run(cs.map((cl) => tcp(cl, 40000, '10.96.0.30', 80, ['ACK'])));
    expect(next.map((d) => d.flowChange)).toEqual(opened.map((d) => (d.backend === '10.244.3.1' ? 'RESELECTED' : undefined)));
    expect(c.counters().AFFINITY_RESET).toBe(0);
  });
});

describe('verdict lines with cluster changes', () => {
  it('carry "state" and a flagged packet\'s "flowChange" after "snat"; without a state, the lines are as before', async () => {
    const p = await start();
    const direct = clients(12);
    const opened = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    p.update('dns', [['10.244.1.2'], ['10.244.1.7']], staleFor([['10.96.0.10', 53]], ['10.244.1.1']));
    const decided = p.run(direct.map((c) => udp(c, 5353, '10.96.0.10', 53)));
    const before = verdictValues(p.live.compiled);
    const writer = new VerdictWriter(p.dp, before.services, before.backends, 512);
    const lines = (state?: number) => {
      const parts: string[] = [];
      writer.write(p.batch, 100, (bytes) => parts.push(Buffer.from(bytes).toString()), 0, state);
      return parts.join('').split('\n').slice(0, -1);
    };
    const plain = lines();
    const withState = lines(3);
    // Hand-written: the fields in their order, and the flow change of the flagged ones only.
    decided.forEach((d, k) => {
      const backend = JSON.stringify(`${d.backend}:53`);
      const head = `{"n":${100 + k},"verdict":"TX","reason":"SERVICE","service":"default/dns:dns","backend":${backend},"snat":false`;
      expect(plain[k]).toBe(`${head}}`);
      const change = opened[k].backend === '10.244.1.1' ? ',"flowChange":"FLUSHED"' : '';
      expect(withState[k]).toBe(`${head},"state":3${change}}`);
    });
    expect(decided.some((d) => d.flowChange)).toBe(true);
    expect(decided.some((d) => !d.flowChange)).toBe(true);
    // The default state is none: byte for byte the lines without the argument.
    const parts: string[] = [];
    writer.write(p.batch, 100, (bytes) => parts.push(Buffer.from(bytes).toString()));
    expect(parts.join('').split('\n').slice(0, -1)).toEqual(plain);

    // New names for the ids, as a change brings: in place when they fit, elsewhere when they do not.
    const rename = (suffix: string) => {
      const services = before.services.map((s) => (s === 'null' ? s : JSON.stringify(`${JSON.parse(s)}${suffix}`)));
      writer.setValues(services, before.backends);
      return lines(4).map((l) => JSON.parse(l).service);
    };
    const top = () => p.dp.exports.memory_top();
    const first = top();
    expect(rename('')).toEqual(decided.map(() => 'default/dns:dns'));
    expect(top()).toBe(first);
    const long = '-a-much-longer-name-that-needs-more-room'.repeat(8);
    expect(rename(long)).toEqual(decided.map(() => `default/dns:dns${long}`));
    const grown = top();
    expect(grown).toBeGreaterThan(first);
    expect(rename('-x')).toEqual(decided.map(() => 'default/dns:dns-x'));
    expect(top()).toBe(grown);
  });
});

describe("the walker's stop time", () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-flow-change-'));

  /** A capture of 10 frames at 100 s + k * 250 ms, in µs or ns; `carried`: the 7th record's fraction written as 1.75 s past 99 s. */
  function capture(nanosecond: boolean, carried = false): string {
    const file = join(dir, `stop-${nanosecond}-${carried}.pcap`);
    const w = createPcapWriter(file, { linktype: LINKTYPES.ETHERNET, nanosecond });
    for (let k = 0; k < 10; k++) {
      const ns = k * 250_000_000;
      w.write(100 + Math.floor(ns / 1e9), ns % 1e9, udp('10.1.0.1', 6000 + k, '10.96.0.10', 53));
    }
    w.close();
    if (carried) {
      // Record 7 (index 6: 101.5 s) rewritten as 99 s and 2.5e6 µs / 2.5e9 ns: the reader carries it to 101.5 s.
      const bytes = readFileSync(file);
      let at = 24;
      for (let k = 0; k < 6; k++) at += 16 + bytes.readUInt32LE(at + 8);
      bytes.writeUInt32LE(99, at);
      bytes.writeUInt32LE(nanosecond ? 2_500_000_000 : 2_500_000, at + 4);
      writeFileSync(file, bytes);
    }
    return file;
  }

  /** The times (ms after 100 s) of the records each fill takes, with the stop times given in turn. */
  async function fills(file: string, stops: Array<bigint | undefined>) {
    const p = await start();
    const reader = openCapture(file);
    if (!(reader instanceof PcapReader)) throw new Error('not classic pcap');
    const feeder = new PcapFeeder(reader, p.dp, 1 << 16);
    const batch = p.dp.createBatch(64, 64 * Batch.footprint(100));
    const out = stops.map((stop) => {
      batch.clear();
      const why = feeder.fill(batch, stop);
      const times = Array.from({ length: batch.count }, (_, i) => (batch.tsSec(i) - 100) * 1000 + batch.tsNsec(i) / 1e6);
      return { why, times };
    });
    reader.close();
    return { out, warnings: reader.warnings };
  }

  const at = (ms: number) => 100n * NS + BigInt(ms) * 1_000_000n;

  it.each([false, true])(
    'takes the records before the stop time, leaves the rest for the next fill (nanosecond %s)',
    async (nanosecond) => {
      const file = capture(nanosecond);
      const { out } = await fills(file, [at(1000), at(1000), at(1600), undefined, undefined]);
      expect(out).toEqual([
        // A record exactly at the stop time is left.
        { why: 'time', times: [0, 250, 500, 750] },
        { why: 'time', times: [] },
        { why: 'time', times: [1000, 1250, 1500] },
        { why: 'ended', times: [1750, 2000, 2250] },
        { why: 'ended', times: [] },
      ]);
    },
  );

  it.each([false, true])(
    'judges a record the walker leaves to the reader by the time the reader reads (nanosecond %s)',
    async (nanosecond) => {
      const file = capture(nanosecond, true);
      const { out, warnings } = await fills(file, [at(1400), at(1500), at(1501), undefined]);
      expect(out).toEqual([
        { why: 'time', times: [0, 250, 500, 750, 1000, 1250] },
        { why: 'time', times: [] },
        { why: 'time', times: [1500] },
        { why: 'ended', times: [1750, 2000, 2250] },
      ]);
      // Judged twice, warned once.
      expect(warnings.filter((w) => w.includes('carried'))).toHaveLength(1);
    },
  );

  it('without a stop time, fills as before: full batches, then the end', async () => {
    const file = capture(false);
    const p = await start();
    const reader = openCapture(file) as PcapReader;
    const feeder = new PcapFeeder(reader, p.dp, 1 << 16);
    const batch = p.dp.createBatch(4, 4 * Batch.footprint(100));
    const whys: string[] = [];
    for (let why = ''; why !== 'ended'; ) {
      batch.clear();
      why = feeder.fill(batch);
      whys.push(`${why} ${batch.count}`);
    }
    reader.close();
    expect(whys).toEqual(['full 4', 'full 4', 'ended 2']);
  });
});

describe('the model alone', () => {
  it('sync without a flush keeps every flow, with a flush only the UDP flows it names', () => {
    const state = initialState();
    const compiled: Compiled = compile(state, resolveServices(state).services, OPTS);
    const model = new ReferenceDatapath(compiled);
    const frame = (f: Uint8Array, s: number) =>
      model.process(f, { wireLen: f.length, tsSec: 1_700_000_000 + s, tsNsec: 0, linktype: LINKTYPES.ETHERNET });
    const a = frame(udp('10.1.0.1', 7000, '10.96.0.10', 53), 0);
    const b = frame(tcp('10.1.0.1', 7000, '10.96.0.20', 80, ['SYN']), 0);
    const asked: string[] = [];
    model.sync(compiled, (address, port, backend) => {
      asked.push(`${address}:${port} ${backend}`);
      return true;
    });
    // Asked once per UDP flow, TCP never.
    expect(asked).toEqual([`10.96.0.10:53 ${compiled.backends[a.backendId - 1].ip}`]);
    expect(frame(udp('10.1.0.1', 7000, '10.96.0.10', 53), 1).flowChange).toBe('FLUSHED');
    expect(frame(tcp('10.1.0.1', 7000, '10.96.0.20', 80, ['ACK']), 1)).toMatchObject({ backendId: b.backendId });
    expect(frame(tcp('10.1.0.1', 7000, '10.96.0.20', 80, ['ACK']), 1).flowChange).toBeUndefined();
    model.sync(compiled);
    expect(frame(udp('10.1.0.1', 7000, '10.96.0.10', 53), 2).flowChange).toBeUndefined();
  });
});
