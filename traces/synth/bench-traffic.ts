/**
 * The benchmarks' realistic traffic: a dual-stack cluster (as manifests, so
 * that `svcpath replay` and in-process runs compile the very same state), a
 * closed-loop mix of flows to it, and a stream of changes to its
 * EndpointSlices (churnEvents, a watch-events file for `--events`).
 *
 * Closed loop: the generator runs every packet it emits through its own
 * reference model (model/reference-datapath.ts), in emission order and at the
 * packet's time, and builds each backend reply from the frame the model sent
 * that backend: from the chosen backend, to the client or, for a masqueraded
 * flow, to the masquerade address and port. A datapath that decides as the
 * model does therefore sees every reply as the reply of a tracked flow.
 * (traces/synth/generate.ts cannot do this: it is IPv4-only and addresses every
 * reply to the client, as it would be without masquerading.)
 *
 * Mix, by flows, each IPv4 or (20%) IPv6 on the Services' second family:
 *   35% TCP pod → ClusterIP       handshake, 1-3 request/response segments, FIN both ways
 *   15% TCP external → NodePort   the same; externalTrafficPolicy Cluster, so masqueraded
 *   10% TCP pod → ClientIP-affinity Service, from 16 clients that come back
 *   20% UDP pod → DNS ClusterIP   1-2 request/response datagrams
 *   12% miss: a TCP SYN to no Service at all (PASS NO_SERVICE)
 *    8% miss: a TCP SYN to a cluster IP on a port it does not serve (ICMP reject)
 */
import type { Compiled } from '../../control/compile/compiler.js';
import { formatTime } from '../../control/cluster/events.js';
import { loadClusterState, resolveServices } from '../../control/cluster/index.js';
import { compile } from '../../control/compile/compiler.js';
import { LINKTYPES } from '../../control/compile/layout.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../../control/compile/maglev.js';
import { Mulberry32 } from '../../control/common/random.js';
import { ReferenceDatapath, type ModelOutcome } from '../../model/reference-datapath.js';
import { buildFrame, decodeFrame, TCP_FLAGS, type L4Spec } from '../frames.js';
import { EPHEMERAL_PORTS, NODE_MAC } from './generate.js';

// --- the cluster -----------------------------------------------------------------

export const MIX_NODE = 'node-a';
const MIX_NAMESPACE = 'bench';
export const MIX_SERVICE_RANGES = ['10.96.0.0/12', 'fd00:96::/108'];
/** `svcpath replay` flags that, with the manifests, give the state compileMixCluster compiles. */
export const MIX_CLI_FLAGS = ['--node', MIX_NODE, '--service-cluster-ip-range', MIX_SERVICE_RANGES.join(',')];

type Family = 'v4' | 'v6';
const FAMILIES: readonly Family[] = ['v4', 'v6'];
const NODE_IP = { v4: '192.168.0.10', v6: 'fd00:168::10' };
const OTHER_NODE_IP = { v4: '192.168.0.11', v6: 'fd00:168::11' };
const ENDPOINTS_PER_SERVICE = 10;

interface MixService {
  name: string;
  clusterIP: Record<Family, string>;
  port: number;
  targetPort: number;
  protocol: 'TCP' | 'UDP';
  nodePort?: number;
  affinity?: boolean;
}

const hex = (n: number) => n.toString(16);
const mixService = (name: string, index: number, rest: Omit<MixService, 'name' | 'clusterIP'>): MixService => ({
  name,
  clusterIP: { v4: `10.96.1.${index + 1}`, v6: `fd00:96::1:${hex(index + 1)}` },
  ...rest,
});
const WEB = Array.from({ length: 16 }, (_, i) => mixService(`web-${i}`, i, { port: 80, targetPort: 8080, protocol: 'TCP' }));
const DNS = mixService('dns', 16, { port: 53, targetPort: 53, protocol: 'UDP' });
const INGRESS = Array.from({ length: 4 }, (_, i) =>
  mixService(`ingress-${i}`, 17 + i, { port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 + i }),
);
const SESSION = Array.from({ length: 4 }, (_, i) =>
  mixService(`session-${i}`, 21 + i, { port: 80, targetPort: 8080, protocol: 'TCP', affinity: true }),
);
const SERVICES = [...WEB, DNS, ...INGRESS, ...SESSION];

/** Endpoint `e` of service `s`: half of them on the emulated node. */
const endpointIP = (s: number, e: number, family: Family) =>
  family === 'v4' ? `10.244.${s}.${10 + e}` : `fd00:244:${hex(s)}::${hex(10 + e)}`;
const endpointNode = (e: number) => (e % 2 === 0 ? MIX_NODE : 'node-b');

/** An endpoint of a slice; conditions unset (ready) in the initial state, set in churnEvents' slices, as the API server sets them. */
interface SliceEndpoint {
  addresses: [string];
  conditions?: { ready: boolean; serving: boolean; terminating: boolean };
  nodeName: string;
}

/** The EndpointSlice of `svc` for `family` with these endpoints, as a manifest object: one source for the initial state and its changes. */
function sliceManifest(svc: MixService, family: Family, endpoints: SliceEndpoint[]): object {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${svc.name}-${family}`, namespace: MIX_NAMESPACE, labels: { 'kubernetes.io/service-name': svc.name } },
    addressType: family === 'v4' ? 'IPv4' : 'IPv6',
    endpoints,
    ports: [{ name: 'p', port: svc.targetPort, protocol: svc.protocol }],
  };
}

const initialEndpoints = (s: number, family: Family): SliceEndpoint[] =>
  Array.from({ length: ENDPOINTS_PER_SERVICE }, (_, e) => ({ addresses: [endpointIP(s, e, family)], nodeName: endpointNode(e) }));

function serviceManifest(svc: MixService, s: number): string {
  const port = `{name: p, port: ${svc.port}, protocol: ${svc.protocol}, targetPort: ${svc.targetPort}${svc.nodePort ? `, nodePort: ${svc.nodePort}` : ''}}`;
  // JSON is YAML: the slices are written as churnEvents writes their changes.
  const slices = FAMILIES.map((family) => `- ${JSON.stringify(sliceManifest(svc, family, initialEndpoints(s, family)))}`);
  return [
    '- apiVersion: v1',
    '  kind: Service',
    `  metadata: {name: ${svc.name}, namespace: ${MIX_NAMESPACE}}`,
    '  spec:',
    `    type: ${svc.nodePort ? 'NodePort' : 'ClusterIP'}`,
    `    clusterIPs: ['${svc.clusterIP.v4}', '${svc.clusterIP.v6}']`,
    '    ipFamilies: [IPv4, IPv6]',
    '    ipFamilyPolicy: RequireDualStack',
    `    sessionAffinity: ${svc.affinity ? 'ClientIP' : 'None'}`,
    '    externalTrafficPolicy: Cluster',
    `    ports: [${port}]`,
    ...slices,
  ].join('\n');
}

/** The mix's cluster as one manifest file: two dual-stack Nodes, the Services, their EndpointSlices, the pod network. */
export function mixClusterManifests(): string {
  const node = (name: string, v4: string, v6: string) =>
    `- {apiVersion: v1, kind: Node, metadata: {name: ${name}}, status: {addresses: [{type: InternalIP, address: '${v4}'}, {type: InternalIP, address: '${v6}'}]}}`;
  return [
    "# The benchmarks' mixed-traffic cluster (traces/synth/bench-traffic.ts).",
    'apiVersion: v1',
    'kind: List',
    'items:',
    node('node-a', NODE_IP.v4, NODE_IP.v6),
    node('node-b', OTHER_NODE_IP.v4, OTHER_NODE_IP.v6),
    ...SERVICES.map(serviceManifest),
    '---',
    'apiVersion: kubeproxy.config.k8s.io/v1alpha1',
    'kind: KubeProxyConfiguration',
    'clusterCIDR: 10.244.0.0/16,fd00:244::/32',
    '',
  ].join('\n');
}

/** The manifests at `path` compiled as `svcpath replay <trace> --cluster <path> ...MIX_CLI_FLAGS` compiles them. */
export function compileMixCluster(path: string): Compiled {
  const state = loadClusterState([path], { serviceClusterIPRanges: MIX_SERVICE_RANGES });
  const resolved = resolveServices(state);
  return compile(state, resolved.services, {
    node: MIX_NODE,
    seed: 0,
    maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
    serviceClusterIPRanges: MIX_SERVICE_RANGES,
  });
}

// --- its changes ----------------------------------------------------------------

export interface ChurnSpec {
  /** Events to write. */
  count: number;
  /** Nanoseconds since the epoch: the events are spread evenly between these, both left out. */
  fromNs: bigint;
  toNs: bigint;
}

const READY = { ready: true, serving: true, terminating: false };
const TERMINATING = { ready: false, serving: true, terminating: true };
/** New pods of a slice take endpoint numbers from ENDPOINTS_PER_SERVICE on, round these (the IPv4 address's last byte stays below 250). */
const NEW_POD_ADDRESSES = 230;

interface ChurningSlice {
  svc: MixService;
  s: number;
  family: Family;
  endpoints: SliceEndpoint[];
  changes: number;
  newPods: number;
}

/**
 * A new pod for the slice, on the node of the one it replaces. Its address
 * is never one still in the slice: each step takes the oldest ready pod, so a
 * slice holds only its (at most 11) newest pods once the initial ones are gone.
 */
function newPod(slice: ChurningSlice, nodeName: string): SliceEndpoint {
  const e = ENDPOINTS_PER_SERVICE + (slice.newPods++ % NEW_POD_ADDRESSES);
  return { addresses: [endpointIP(slice.s, e, slice.family)], conditions: READY, nodeName };
}

const oldestReady = (slice: ChurningSlice) => slice.endpoints.findIndex((e) => !e.conditions?.terminating);

/** A Deployment's rollout with maxSurge 1, one step per event of a slice, round and round. */
const ROLLOUT_STEPS: Array<(slice: ChurningSlice) => void> = [
  // The oldest ready pod replaced at once (deleted, its replacement ready in the same change).
  (slice) => {
    const [gone] = slice.endpoints.splice(oldestReady(slice), 1);
    slice.endpoints.push(newPod(slice, gone.nodeName));
  },
  // The oldest ready pod terminating (still serving, draining), beside its ready replacement.
  (slice) => {
    const i = oldestReady(slice);
    slice.endpoints.push(newPod(slice, slice.endpoints[i].nodeName));
    slice.endpoints[i] = { ...slice.endpoints[i], conditions: TERMINATING };
  },
  // The terminating pod removed.
  (slice) => {
    slice.endpoints = slice.endpoints.filter((e) => !e.conditions?.terminating);
  },
];

/**
 * A watch-events file (JSON lines, each with a "time" in epoch seconds to the
 * nanosecond) of `count` MODIFIED events of the mix's EndpointSlices, spread
 * evenly over (fromNs, toNs): every Service's pods rolling, the 50 slices
 * taken in turn, each event one step of ROLLOUT_STEPS on its slice. Under
 * the mix's load, each step that removes a pod leaves its established TCP
 * flows on a stale backend and has its UDP flows flushed.
 */
export function churnEvents(spec: ChurnSpec): string {
  const slices: ChurningSlice[] = SERVICES.flatMap((svc, s) =>
    FAMILIES.map((family) => ({
      svc,
      s,
      family,
      endpoints: initialEndpoints(s, family).map((e) => ({ ...e, conditions: READY })),
      changes: 0,
      newPods: 0,
    })),
  );
  const lines: string[] = [];
  for (let i = 0; i < spec.count; i++) {
    const slice = slices[i % slices.length];
    ROLLOUT_STEPS[slice.changes++ % ROLLOUT_STEPS.length](slice);
    const time = spec.fromNs + ((spec.toNs - spec.fromNs) * BigInt(i + 1)) / BigInt(spec.count + 1);
    const object = JSON.stringify(sliceManifest(slice.svc, slice.family, slice.endpoints));
    lines.push(`{"time":${formatTime(time)},"type":"MODIFIED","object":${object}}\n`);
  }
  return lines.join('');
}

// --- the traffic -----------------------------------------------------------------

export const FLOW_KINDS = ['clusterip-tcp', 'nodeport-tcp', 'affinity-tcp', 'dns-udp', 'miss-no-service', 'miss-unserved-port'] as const;
export type FlowKind = (typeof FLOW_KINDS)[number];
/** Share of flows of each kind (see the file comment). */
const FLOW_SHARES: Record<FlowKind, number> = {
  'clusterip-tcp': 0.35,
  'nodeport-tcp': 0.15,
  'affinity-tcp': 0.1,
  'dns-udp': 0.2,
  'miss-no-service': 0.12,
  'miss-unserved-port': 0.08,
};
const IPV6_SHARE = 0.2;

export interface MixSpec {
  seed: number;
  /** Packets to emit; flows still open at the end are cut there. */
  packets: number;
  /** Payload bytes of each TCP segment or datagram, min..max; default [20, 400]. */
  payloadBytes?: [number, number];
  /** Request/response segment pairs per TCP flow, min..max; default [1, 3]. */
  tcpExchanges?: [number, number];
  /** Flows in progress at once; default 64. */
  concurrency?: number;
  /** Time of the first packet; default 1_800_000_000 s. */
  startSec?: number;
}

/** A frame and its capture time. */
export interface TimedFrame {
  tsSec: number;
  tsNsec: number;
  data: Uint8Array;
}

export interface MixTrace {
  packets: TimedFrame[];
  /** From the first packet to one past the last, in seconds rounded up: tiles of the trace repeat at this period. */
  periodSeconds: number;
  flows: Record<FlowKind, number>;
  packetsByKind: Record<FlowKind, number>;
  ipv6Packets: number;
  /** "VERDICT REASON", with " SNAT" for masqueraded flows -> packets, as the model decided them. */
  outcomes: Map<string, number>;
}

interface Endpoint {
  ip: string;
  port: number;
  mac: string;
}

/** What a flow sends next, given the model's outcome of what it sent last. */
type FlowScript = Generator<Uint8Array, void, ModelOutcome>;

const CLIENT_MAC = '02:00:00:00:00:02';
const PODS = 256;
const EXTERNAL_CLIENTS = 64;
/** Few clients, so that most of their flows find an affinity record. */
const AFFINITY_CLIENTS = 16;
const UNSERVED_PORT = 8443;
const US = 1_000;

const podIP = (i: number, family: Family) => (family === 'v4' ? `10.244.200.${i}` : `fd00:244:c8::${hex(i)}`);
const affinityClientIP = (i: number, family: Family) => (family === 'v4' ? `10.244.201.${i}` : `fd00:244:c9::${hex(i)}`);
const externalIP = (i: number, family: Family) => (family === 'v4' ? `203.0.113.${i}` : `2001:db8:113::${hex(i)}`);
const strayIP = (i: number, family: Family) => (family === 'v4' ? `198.18.${i >> 8}.${i & 255}` : `2001:db8:ffff::${hex(i)}`);

function frame(from: Endpoint, to: Endpoint, l4: L4Spec, payload?: Uint8Array): Uint8Array {
  const ip = from.ip.includes(':') ? { ipv6: { src: from.ip, dst: to.ip } } : { ipv4: { src: from.ip, dst: to.ip, dontFragment: true } };
  return buildFrame({ srcMac: from.mac, dstMac: to.mac, ...ip, l4, payload });
}

/** The two ends of a frame the datapath sent on: the backend it reached (`to`) and whom the backend answers (`from`). */
function endsOf(sent: Uint8Array): { from: Endpoint; to: Endpoint } {
  const d = decodeFrame(sent);
  const ip = d.ipv4 ?? d.ipv6!;
  const ports = d.tcp ?? d.udp!;
  return { from: { ip: ip.src, port: ports.sport, mac: d.eth!.src }, to: { ip: ip.dst, port: ports.dport, mac: d.eth!.dst } };
}

/** Builds the flows of a mix, each a script that reacts to what the model did with its last packet. */
class FlowFactory {
  private readonly ports = new Map<string, number>();
  private readonly payloadPool: Uint8Array;

  constructor(
    private readonly rng: Mulberry32,
    private readonly payloadBytes: [number, number],
    private readonly tcpExchanges: [number, number],
  ) {
    this.payloadPool = Uint8Array.from({ length: 1 << 16 }, () => rng.next() & 0xff);
  }

  start(kind: FlowKind, family: Family): FlowScript {
    const pick = <T>(items: readonly T[]) => items[this.rng.int(0, items.length - 1)];
    const web = () => pick(WEB);
    switch (kind) {
      case 'clusterip-tcp':
        return this.tcp(this.client(podIP(this.rng.int(1, PODS - 1), family)), this.toService(web(), family));
      case 'nodeport-tcp': {
        const ingress = pick(INGRESS);
        return this.tcp(this.client(externalIP(this.rng.int(1, EXTERNAL_CLIENTS), family)), {
          ip: NODE_IP[family],
          port: ingress.nodePort!,
          mac: NODE_MAC,
        });
      }
      case 'affinity-tcp':
        return this.tcp(this.client(affinityClientIP(this.rng.int(1, AFFINITY_CLIENTS), family)), this.toService(pick(SESSION), family));
      case 'dns-udp':
        return this.udp(this.client(podIP(this.rng.int(1, PODS - 1), family)), this.toService(DNS, family));
      case 'miss-no-service':
        return this.syn(this.client(podIP(this.rng.int(1, PODS - 1), family)), {
          ip: strayIP(this.rng.int(1, 4095), family),
          port: 443,
          mac: NODE_MAC,
        });
      case 'miss-unserved-port':
        return this.syn(this.client(podIP(this.rng.int(1, PODS - 1), family)), { ...this.toService(web(), family), port: UNSERVED_PORT });
    }
  }

  private toService(svc: MixService, family: Family): Endpoint {
    return { ip: svc.clusterIP[family], port: svc.port, mac: NODE_MAC };
  }

  /** The client at `ip` on its next ephemeral port (sequential from a random start, as Linux roughly does). */
  private client(ip: string): Endpoint {
    const port = this.ports.get(ip) ?? this.rng.int(EPHEMERAL_PORTS.min, EPHEMERAL_PORTS.max);
    this.ports.set(ip, port === EPHEMERAL_PORTS.max ? EPHEMERAL_PORTS.min : port + 1);
    return { ip, port, mac: CLIENT_MAC };
  }

  private payload(): Uint8Array {
    const length = this.rng.int(this.payloadBytes[0], this.payloadBytes[1]);
    const at = this.rng.int(0, this.payloadPool.length - length);
    return this.payloadPool.subarray(at, at + length);
  }

  /** A TCP connection: handshake, request/response segments, FIN from both ends; the backend answers what reached it. */
  private *tcp(client: Endpoint, server: Endpoint): FlowScript {
    const { SYN, ACK, PSH, FIN } = TCP_FLAGS;
    const tcp = (from: Endpoint, to: Endpoint, flags: number, seq: number, ack: number): L4Spec => ({
      kind: 'tcp',
      sport: from.port,
      dport: to.port,
      flags,
      seq,
      ack,
    });
    let clientSeq = this.rng.next();
    let backendSeq = this.rng.next();
    const opened = yield frame(client, server, tcp(client, server, SYN, clientSeq, 0));
    if (opened.reason !== 'SERVICE') return;
    const { from: peer, to: backend } = endsOf(opened.out);
    const request = (flags: number, data?: Uint8Array) => frame(client, server, tcp(client, server, flags, clientSeq, backendSeq), data);
    const response = (flags: number, data?: Uint8Array) => frame(backend, peer, tcp(backend, peer, flags, backendSeq, clientSeq), data);
    clientSeq = (clientSeq + 1) >>> 0;
    yield response(SYN | ACK);
    backendSeq = (backendSeq + 1) >>> 0;
    yield request(ACK);
    for (let i = this.rng.int(...this.tcpExchanges); i > 0; i--) {
      const asked = this.payload();
      yield request(PSH | ACK, asked);
      clientSeq = (clientSeq + asked.length) >>> 0;
      const answered = this.payload();
      yield response(PSH | ACK, answered);
      backendSeq = (backendSeq + answered.length) >>> 0;
    }
    yield request(FIN | ACK);
    clientSeq = (clientSeq + 1) >>> 0;
    yield response(FIN | ACK);
    backendSeq = (backendSeq + 1) >>> 0;
    yield request(ACK);
  }

  private *udp(client: Endpoint, server: Endpoint): FlowScript {
    for (let i = this.rng.int(1, 2); i > 0; i--) {
      const sent = yield frame(client, server, { kind: 'udp', sport: client.port, dport: server.port }, this.payload());
      if (sent.reason !== 'SERVICE') return;
      const { from: peer, to: backend } = endsOf(sent.out);
      yield frame(backend, peer, { kind: 'udp', sport: backend.port, dport: peer.port }, this.payload());
    }
  }

  private *syn(client: Endpoint, server: Endpoint): FlowScript {
    yield frame(client, server, { kind: 'tcp', sport: client.port, dport: server.port, flags: TCP_FLAGS.SYN, seq: this.rng.next() });
  }
}

function chooseKind(rng: Mulberry32): FlowKind {
  let ticket = rng.float();
  for (const kind of FLOW_KINDS) {
    ticket -= FLOW_SHARES[kind];
    if (ticket < 0) return kind;
  }
  return FLOW_KINDS[FLOW_KINDS.length - 1];
}

/**
 * `spec.packets` packets of the mix against the compiled mix cluster, in
 * time order, a few microseconds apart, with `concurrency` flows
 * interleaved; deterministic for a seed.
 */
export function generateMix(compiled: Compiled, spec: MixSpec): MixTrace {
  const rng = new Mulberry32(spec.seed);
  const factory = new FlowFactory(rng, spec.payloadBytes ?? [20, 400], spec.tcpExchanges ?? [1, 3]);
  const model = new ReferenceDatapath(compiled);
  const zeros = () => Object.fromEntries(FLOW_KINDS.map((k) => [k, 0])) as Record<FlowKind, number>;
  const trace: MixTrace = { packets: [], periodSeconds: 0, flows: zeros(), packetsByKind: zeros(), ipv6Packets: 0, outcomes: new Map() };
  const live: Array<{ kind: FlowKind; family: Family; script: FlowScript; last?: ModelOutcome }> = [];
  const startSec = spec.startSec ?? 1_800_000_000;
  let ns = 0;
  while (trace.packets.length < spec.packets) {
    while (live.length < (spec.concurrency ?? 64)) {
      const kind = chooseKind(rng);
      const family: Family = rng.float() < IPV6_SHARE ? 'v6' : 'v4';
      live.push({ kind, family, script: factory.start(kind, family) });
      trace.flows[kind]++;
    }
    const i = rng.int(0, live.length - 1);
    const flow = live[i];
    const step = flow.script.next(flow.last!);
    if (step.done) {
      live[i] = live[live.length - 1];
      live.pop();
      continue;
    }
    ns += rng.int(1 * US, 20 * US);
    const packet = { tsSec: startSec + Math.floor(ns / 1e9), tsNsec: ns % 1e9, data: step.value };
    flow.last = model.process(packet.data, {
      linktype: LINKTYPES.ETHERNET,
      wireLen: packet.data.length,
      tsSec: packet.tsSec,
      tsNsec: packet.tsNsec,
    });
    trace.packets.push(packet);
    trace.packetsByKind[flow.kind]++;
    if (flow.family === 'v6') trace.ipv6Packets++;
    const outcome = `${flow.last.verdict} ${flow.last.reason}${flow.last.snat ? ' SNAT' : ''}`;
    trace.outcomes.set(outcome, (trace.outcomes.get(outcome) ?? 0) + 1);
  }
  trace.periodSeconds = Math.ceil((ns + 1) / 1e9);
  return trace;
}

/** One line per flow kind and per outcome, with shares: what the mix is made of. */
export function describeMix(trace: MixTrace): string {
  const total = trace.packets.length;
  const flows = Object.values(trace.flows).reduce((a, b) => a + b, 0);
  const pct = (n: number, of: number) => `${((100 * n) / of).toFixed(1)}%`;
  const kinds = FLOW_KINDS.map(
    (k) =>
      `  ${k.padEnd(20)} ${pct(trace.flows[k], flows).padStart(6)} of flows  ${pct(trace.packetsByKind[k], total).padStart(6)} of packets`,
  );
  const outcomes = [...trace.outcomes].sort((a, b) => b[1] - a[1]).map(([o, n]) => `  ${o.padEnd(25)} ${pct(n, total).padStart(6)}`);
  return [
    `${total} packets, ${flows} flows, IPv6 ${pct(trace.ipv6Packets, total)} of packets; by flow kind:`,
    ...kinds,
    'decisions (reference model):',
    ...outcomes,
  ].join('\n');
}
