// The steer map through cluster changes (control/runtime/steer-update.ts):
// after a sync, every frontend and backend endpoint the new state has is in
// it, as a fresh load of that state would have it, an address that was a
// backend's taking the frontend flag too; a removal deletes nothing; and the
// node's copy of a request to a frontend or backend a change added (or to a
// frontend a change took, for an established flow) teaches the node's
// masquerade tuple, so that the backend's reply to that tuple is the flow's
// REPLY: through the CLI's replay of a Linux cooked capture with --events,
// and against the reference model.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { applyEvent, parseEvents } from '../control/cluster/events.js';
import type { ClusterState } from '../control/cluster/state.js';
import { compile, type CompileOptions } from '../control/compile/compiler.js';
import { DESC_F_SNAT, LINKTYPES, REASONS, STEER_F, VERDICTS } from '../control/compile/layout.js';
import { Batch, BpfMap, type Datapath } from '../control/runtime/datapath.js';
import { loadProgram, steerKey, steeringClasses } from '../control/runtime/loader.js';
import { applyStateChange, roomFor } from '../control/runtime/rebase.js';
import { steerChanges } from '../control/runtime/steer-update.js';
import { NeedsReloadError, trackProgram, type LiveProgram } from '../control/runtime/update.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { buildFrame, decodeCaptured, toLinkType } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { cli } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'svcpath-steer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NODE_IP = '192.168.0.10';
/** The node masquerades with its overlay address and a port of its own choosing (MASQUERADE fully-random). */
const OVERLAY = '10.244.0.0';
const http = { name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' };

function service(name: string, clusterIP: string, ports: object[], spec: object = {}) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name, namespace: 'default' },
    spec: { type: 'ClusterIP', clusterIP, clusterIPs: [clusterIP], ports, ...spec },
  };
}

function slice(serviceName: string, port: { name: string; port: number }, ips: Array<[ip: string, node: string]>) {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${serviceName}-abcde`, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
    addressType: 'IPv4',
    endpoints: ips.map(([ip, nodeName]) => ({ addresses: [ip], nodeName, conditions: { ready: true } })),
    ports: [{ name: port.name, port: port.port, protocol: 'TCP' }],
  };
}

const WEB = service('web', '10.96.0.10', [http]);
/** node-exporter on the host network: its endpoint is the node's own address, which a NodePort added later serves on too. */
const METRICS = service('metrics', '10.96.0.40', [{ name: 'metrics', port: 9100, targetPort: 9100, protocol: 'TCP' }]);
const OLD = service('old', '10.96.0.30', [http]);
const API = service('api', '10.96.0.20', [{ ...http, nodePort: 30080 }], { type: 'NodePort' });
const HTTP_BACKEND = { name: 'http', port: 8080 };

const CLUSTER = join(dir, 'cluster.json');
writeFileSync(
  CLUSTER,
  JSON.stringify({
    apiVersion: 'v1',
    kind: 'List',
    items: [
      { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-a' }, status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } },
      {
        apiVersion: 'v1',
        kind: 'Node',
        metadata: { name: 'node-b' },
        status: { addresses: [{ type: 'InternalIP', address: '192.168.0.11' }] },
      },
      { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16' },
      WEB,
      slice('web', HTTP_BACKEND, [['10.244.1.5', 'node-b']]),
      METRICS,
      slice('metrics', { name: 'metrics', port: 9100 }, [[NODE_IP, 'node-a']]),
      OLD,
      slice('old', HTTP_BACKEND, [['10.244.3.5', 'node-b']]),
    ],
  }),
);

type Event = [time: number, type: 'ADDED' | 'MODIFIED' | 'DELETED', object: object];
/**
 * At 1 s web's pod is replaced by a new one, Service api (a NodePort, so a
 * frontend on the node's address) appears with a pod, and Service old goes;
 * at 3 s api and web's new pod go too.
 */
const EVENTS: Event[] = [
  [1, 'MODIFIED', slice('web', HTTP_BACKEND, [['10.244.2.7', 'node-b']])],
  [1, 'ADDED', API],
  [1, 'ADDED', slice('api', HTTP_BACKEND, [['10.244.2.9', 'node-b']])],
  [1, 'DELETED', slice('old', HTTP_BACKEND, [['10.244.3.5', 'node-b']])],
  [1, 'DELETED', OLD],
  [3, 'MODIFIED', slice('web', HTTP_BACKEND, [['10.244.1.5', 'node-b']])],
  [3, 'DELETED', slice('api', HTTP_BACKEND, [['10.244.2.9', 'node-b']])],
  [3, 'DELETED', API],
];
const EVENTS_FILE = join(dir, 'events.jsonl');
writeFileSync(EVENTS_FILE, EVENTS.map(([time, type, object]) => `${JSON.stringify({ time, type, object })}\n`).join(''));

const OPTS: CompileOptions = { node: 'node-a', seed: 0, maglevTableSize: 1021 };
const initial = loadClusterState([CLUSTER]);
const events = parseEvents(readFileSync(EVENTS_FILE, 'utf8'), 'events.jsonl', initial).events;
const stateAt = (seconds: number): ClusterState =>
  events.filter((e) => e.time <= BigInt(seconds * 1e9)).reduce((state, e) => applyEvent(state, e), initial);

function inputs(state: ClusterState) {
  const resolved = resolveServices(state).services;
  return { state, resolved, compiled: compile(state, resolved, OPTS), opts: OPTS };
}

async function loaded(room = roomFor(initial, events)): Promise<LiveProgram> {
  const from = inputs(initial);
  return trackProgram(await loadProgram(from.compiled, { ctEntries: 4096, room }), from);
}

/** The steer map's entries, hex key -> flags. */
function steerEntries(dp: Datapath): Map<string, number> {
  const entries = new Map<string, number>();
  dp.map('steer').scanRaw((key, value) =>
    entries.set(Buffer.from(key).toString('hex'), new DataView(value.buffer, value.byteOffset).getUint32(0, true)),
  );
  return entries;
}

/** Both classings together: each key's flags OR-ed. */
function union(a: Map<string, number>, b: Map<string, number>): Map<string, number> {
  const all = new Map(a);
  for (const [key, flags] of b) all.set(key, (all.get(key) ?? 0) | flags);
  return all;
}

const hex = (key: Uint8Array) => Buffer.from(key).toString('hex');

describe('the steer map through cluster changes', () => {
  it('a sync adds what a fresh load of the new state has and the old one had not, and then makes no map call', async () => {
    const live = await loaded();
    const before = steeringClasses(live.compiled);
    expect(steerEntries(live.dp)).toEqual(before);
    const grown = applyStateChange(live, stateAt(1)).live;
    const written = steerChanges(grown);
    const fresh = steeringClasses(inputs(stateAt(1)).compiled);
    const gained = [...fresh].filter(([key, flags]) => (flags & ~(before.get(key) ?? 0)) !== 0);
    // web's new pod, api's pod, its cluster IP and its NodePort on the node's address, each endpoint and address.
    expect(gained.length).toBe(8);
    expect(written).toBe(gained.length);
    const held = steerEntries(grown.dp);
    for (const [key, flags] of gained) expect(held.get(key)! & flags, key).toBe(flags);
    // Nothing went: old's frontend and backend stay.
    expect(held).toEqual(union(before, fresh));
    // The node's address was a backend's (node-exporter on the host network); the NodePort makes it a frontend's too.
    expect(before.get(hex(steerKey(NODE_IP)))).toBe(STEER_F.BACKEND);
    expect(held.get(hex(steerKey(NODE_IP)))).toBe(STEER_F.FRONTEND | STEER_F.BACKEND);
    expect(held.get(hex(steerKey(NODE_IP, 30080, 'TCP')))).toBe(STEER_F.FRONTEND);

    const calls = [
      vi.spyOn(BpfMap.prototype, 'lookupRaw'),
      vi.spyOn(BpfMap.prototype, 'updateRaw'),
      vi.spyOn(BpfMap.prototype, 'scanRaw'),
      vi.spyOn(BpfMap.prototype, 'count'),
    ];
    try {
      expect(steerChanges(grown)).toBe(0);
      for (const call of calls) expect(call).not.toHaveBeenCalled();
    } finally {
      for (const call of calls) call.mockRestore();
    }
  });

  it('a removal deletes nothing: the flows of a Service or a pod that went outlive it', async () => {
    let live = await loaded();
    live = applyStateChange(live, stateAt(1)).live;
    steerChanges(live);
    const grown = steerEntries(live.dp);
    live = applyStateChange(live, stateAt(3)).live;
    expect(steerChanges(live)).toBe(0);
    expect(steerEntries(live.dp)).toEqual(grown);
    expect(grown.get(hex(steerKey('10.96.0.20', 80, 'TCP')))).toBe(STEER_F.FRONTEND);
    expect(grown.get(hex(steerKey('10.244.2.9', 8080, 'TCP')))).toBe(STEER_F.BACKEND);
  });

  it('roomFor makes room for every frontend and backend the events add; without it a sync writes nothing and asks for a reload', async () => {
    const room = roomFor(initial, events);
    const fresh = steeringClasses(inputs(stateAt(1)).compiled);
    const before = steeringClasses(inputs(initial).compiled);
    expect(room.steer).toBeGreaterThanOrEqual(union(before, fresh).size - before.size);

    const live = applyStateChange(await loaded({ ...room, steer: 0 }), stateAt(1)).live;
    expect(() => steerChanges(live)).toThrow(NeedsReloadError);
    expect(steerEntries(live.dp)).toEqual(before);
  });
});

// ---------------------------------------------------------------------------
// The node's copies

/** A client outside the pod network: svcpath masquerades its flows to cluster IPs, as the node does. */
const CLIENT = '192.168.0.50';
let ipId = 100;

interface Frame {
  t: number;
  way: 'in' | 'out';
  eth: Uint8Array;
}

/** A TCP segment as a frame; `id` and the sequence numbers are what the node's NAT leaves alone. */
function segment(src: string, sport: number, dst: string, dport: number, flags: Array<'SYN' | 'ACK'>, id: number, ttl = 64) {
  return buildFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    ipv4: { src, dst, id, ttl, dontFragment: true },
    l4: { kind: 'tcp', sport, dport, seq: 1000 * id, ack: flags.includes('ACK') ? 7000 * id : 0, flags },
  }).slice();
}

/**
 * A request from `client` to a frontend, as it arrived (at `t`), and the
 * node's copy of it, masqueraded to the node's tuple and sent to `backend`;
 * then (`reply`) the backend's answer to that tuple.
 */
function forwarded(
  t: number,
  client: [string, number],
  frontend: [string, number],
  backend: [string, number],
  nodePort: number,
  copied = true,
): Frame[] {
  const id = ipId++;
  const flags: Array<'SYN' | 'ACK'> = ['SYN'];
  return [
    { t, way: 'in', eth: segment(...client, ...frontend, flags, id) },
    ...(copied ? [{ t: t + 0.0001, way: 'out' as const, eth: segment(OVERLAY, nodePort, ...backend, flags, id, 63) }] : []),
  ];
}

function replyToNode(t: number, backend: [string, number], nodePort: number): Frame {
  return { t, way: 'in', eth: segment(...backend, OVERLAY, nodePort, ['SYN', 'ACK'], ipId++) };
}

/** Linux cooked v1, as `tcpdump -i any` writes it: packet type 0 for an arrival, 4 (Out) for what the node sent. */
const cooked = (f: Frame) => toLinkType(f.eth, LINKTYPES.LINUX_SLL, false, { packetType: f.way === 'in' ? 0 : 4 });

describe("the node's copies of requests to what a change added or took", () => {
  it("teach the node's tuple, so that the reply to it is the flow's REPLY, reverse-NATed to the client (replay --events)", async () => {
    const web = forwarded(2, [CLIENT, 40000], ['10.96.0.10', 80], ['10.244.2.7', 8080], 51000);
    const api = forwarded(2.1, [CLIENT, 40001], ['10.96.0.20', 80], ['10.244.2.9', 8080], 51001);
    const frames = [...web, replyToNode(2.01, ['10.244.2.7', 8080], 51000), ...api, replyToNode(2.11, ['10.244.2.9', 8080], 51001)].sort(
      (a, b) => a.t - b.t,
    );
    const capture = join(dir, 'copies.pcap');
    const w = createPcapWriter(capture, { linktype: LINKTYPES.LINUX_SLL, nanosecond: true });
    for (const f of frames) {
      const micros = Math.round(f.t * 1e6);
      w.write(1_800_000_000 + Math.floor(micros / 1e6), (micros % 1e6) * 1000, cooked(f));
    }
    w.close();
    // The events' times are seconds from the epoch: the capture's second 2 is 1_800_000_002.
    const shifted = join(dir, 'copies.events.jsonl');
    writeFileSync(
      shifted,
      EVENTS.map(([time, type, object]) => `${JSON.stringify({ time: 1_800_000_000 + time, type, object })}\n`).join(''),
    );
    const verdicts = join(dir, 'copies.verdicts.jsonl');
    const out = join(dir, 'copies.out.pcap');
    const r = await cli([
      'replay',
      capture,
      '--cluster',
      CLUSTER,
      '--node',
      'node-a',
      '--events',
      shifted,
      '--min-sync-period',
      '0',
      '--snat-port-range',
      '40000-40999',
      '--verdicts',
      verdicts,
      '--out',
      out,
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = readFileSync(verdicts, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const pick = ({ verdict, reason, service, backend, snat }: Record<string, unknown>) => ({ verdict, reason, service, backend, snat });
    const request = (service: string, backend: string) => ({ verdict: 'TX', reason: 'SERVICE', service, backend, snat: true });
    const copy = { verdict: 'PASS', reason: 'OUTGOING', service: null, backend: null, snat: false };
    const reply = (service: string, backend: string) => ({ verdict: 'TX', reason: 'REPLY', service, backend, snat: true });
    expect(lines.map(pick)).toEqual([
      request('default/web:http', '10.244.2.7:8080'),
      copy,
      reply('default/web:http', '10.244.2.7:8080'),
      request('default/api:http', '10.244.2.9:8080'),
      copy,
      reply('default/api:http', '10.244.2.9:8080'),
    ]);
    // Every packet came after the changes at 1 s, none after the removal at 3 s.
    expect(new Set(lines.map((l) => l.state)).size).toBe(1);
    expect(lines[0].state).toBeGreaterThan(0);
    // The replies leave from the frontend the client used, to the client.
    const reader = openCapture(out);
    const sent = Array.from(reader.records(), (rec) => decodeCaptured(rec.linktype, rec.data.slice()));
    reader.close();
    const ends = (d: (typeof sent)[number]) => `${d.ipv4!.src}:${d.tcp!.sport} > ${d.ipv4!.dst}:${d.tcp!.dport}`;
    expect([ends(sent[1]), ends(sent[3])]).toEqual([`10.96.0.10:80 > ${CLIENT}:40000`, `10.96.0.20:80 > ${CLIENT}:40001`]);
  });

  it('of an established flow whose Service went: the datapath and the model both learn the tuple from a copy after the deletion', async () => {
    // The capture holds no copy of the flow's first request (dropped, or filtered out), so its first copy comes after old went.
    const client: [string, number] = ['192.168.0.51', 40002];
    const [opening] = forwarded(0.5, client, ['10.96.0.30', 80], ['10.244.3.5', 8080], 51002, false);
    const later = forwarded(1.5, client, ['10.96.0.30', 80], ['10.244.3.5', 8080], 51002);
    const answer = replyToNode(1.6, ['10.244.3.5', 8080], 51002);
    let live = await loaded();
    const model = new ReferenceDatapath(live.compiled);
    const batch = live.dp.createBatch(1, Batch.footprint(2048));
    const decide = (f: Frame) => {
      const frame = cooked(f);
      const [tsSec, tsNsec] = [1_800_000_000 + Math.floor(f.t), Math.round((f.t % 1) * 1e9)];
      batch.clear();
      batch.add(frame, frame.length, tsSec, tsNsec, LINKTYPES.LINUX_SLL);
      batch.run();
      const m = model.process(frame, { wireLen: frame.length, tsSec, tsNsec, linktype: LINKTYPES.LINUX_SLL });
      const dp = [VERDICTS[batch.verdict(0)], REASONS[batch.reason(0)], batch.backendId(0), (batch.flags(0) & DESC_F_SNAT) !== 0];
      expect(dp).toEqual([m.verdict, m.reason, m.backendId, m.snat]);
      expect(Buffer.from(batch.frame(0))).toEqual(Buffer.from(m.out));
      return { verdict: dp[0], reason: dp[1], backendId: dp[2], out: batch.frame(0).slice() };
    };
    expect(decide(opening)).toMatchObject({ verdict: 'TX', reason: 'SERVICE' });
    live = applyStateChange(live, stateAt(1)).live;
    steerChanges(live);
    model.sync(live.compiled);
    const oldBackend = live.compiled.backends.find((b) => b.ip === '10.244.3.5')!.id;
    for (const f of later) decide(f);
    const replied = decide(answer);
    expect(replied).toMatchObject({ verdict: 'TX', reason: 'REPLY', backendId: oldBackend });
    const d = decodeCaptured(LINKTYPES.LINUX_SLL, replied.out);
    expect(`${d.ipv4!.src}:${d.tcp!.sport} > ${d.ipv4!.dst}:${d.tcp!.dport}`).toBe('10.96.0.30:80 > 192.168.0.51:40002');
  });
});
