/**
 * The differential property between the WebAssembly datapath and the
 * reference model, shared by test/model.test.ts (short, in `npm test`) and
 * traces/synth/run-model-fuzz.ts (long runs). fast-check generates a cluster state
 * and a sequence of traffic actions; each frame goes through both, which
 * must agree on verdict, reason, service id, backend id, snat flag and every
 * output byte. Backends answer what the datapath actually sent them (closed
 * loop), and time advances, sometimes exactly to a timeout. Half the runs are
 * captures taken on the node: every frame says which way it went, and the
 * node's own copies of the requests, masqueraded to tuples of its own, teach
 * svcpath those tuples, to which the backends may then reply.
 *
 * Between packets the cluster changes: an endpoint becomes ready, not ready
 * or terminating, goes, or a pod becomes one; a Service loses every
 * endpoint, is deleted, comes back (Change). Each change reaches the
 * datapath as a replay's sync does (rebase.ts applyStateChange and
 * steer-update.ts steerChanges, then under kube-proxy's semantics
 * conntrack-flush.ts flushStaleUdp) and the model
 * through its sync, with a stale UDP flush worked out from the generated
 * specs (staleUdpTest); half the runs have Cilium's semantics. The two must
 * also agree on each frame's flowChange.
 *
 * Half the runs lay the nodes out in zones and hint endpoints for zones and
 * nodes. The compiler applies topology before either datapath sees a table,
 * so agreement alone cannot tell a wrong topology decision: an oracle
 * written from README.md's Topology, Traffic policies and Endpoints rules
 * (`allowedBackends`, which shares nothing with control/compile/topology.ts)
 * says which endpoints each flow to a Service may reach, and every backend
 * the datapath picks must be one of them; it refuses for lack of endpoints
 * exactly when there are none. It follows the flows across changes: a new
 * flow may only reach what the spec in force allows, an established one
 * stays where the semantics keeps it, and every flowChange must be one a
 * change made possible (checkBackend).
 *
 * Everything generated stays inside the model's scope (model/packet.ts).
 */
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { resolveServices } from '../../control/cluster/index.js';
import type { ClusterEvent } from '../../control/cluster/events.js';
import { compile, type CompileOptions, type Compiled, type DatapathSemantics } from '../../control/compile/compiler.js';
import { Batch, type Datapath } from '../../control/runtime/datapath.js';
import { DESC_F_SNAT, LINKTYPES, REASONS, VERDICTS, hostPort, type FlowChange } from '../../control/compile/layout.js';
import type {
  ClusterState,
  ConntrackTimeouts,
  EndpointConditions,
  EndpointHints,
  EndpointSlice,
  Node,
  Protocol,
  Service,
  ServicePort,
} from '../../control/cluster/state.js';
import { flushStaleUdp } from '../../control/runtime/conntrack-flush.js';
import { loadProgram, type MapRoom } from '../../control/runtime/loader.js';
import { applyStateChange, roomFor } from '../../control/runtime/rebase.js';
import { steerChanges } from '../../control/runtime/steer-update.js';
import { trackProgram, type ProgramInputs } from '../../control/runtime/update.js';
import { TCP_FLAGS as TCP, buildFrame, type FrameSpec, type L4Spec } from '../frames.js';
import { addressBytes, addressText } from '../../model/addresses.js';
import { checksumOf, onesComplementSum } from '../../model/checksum.js';
import { ReferenceDatapath, type ModelOutcome, type StaleUdpTest } from '../../model/reference-datapath.js';

// --- the cluster ---------------------------------------------------------------

type Fam = 'v4' | 'v6';
const FAMS: Fam[] = ['v4', 'v6'];

const NODE = { v4: '192.168.0.10', v6: 'fd00:168::10' };
const OTHER_NODE = { v4: '192.168.0.11', v6: 'fd00:168::11' };
const POD_CIDRS = { v4: '10.244.0.0/16', v6: 'fd00:244::/32' };
const SERVICE_RANGES = ['10.96.0.0/12', 'fd00:96::/108'];
/** Six pods that endpoints are drawn from: 0-2 on this node (node-a), 3-5 on node-b. */
const POD_COUNT = 6;
/** Pods that only a cluster change makes endpoints (new pod IPs, as a rollout's): 6 on this node, 7 on node-b. */
const NEW_PODS = [6, 7];
const nodeOfPod = (pod: number) => (pod < 3 || pod === 6 ? 'node-a' : 'node-b');
/** The emulated node. */
const THIS_NODE = 'node-a';
/** Zones that labels and hints are drawn from: zone-c has no node. */
const ZONES = ['zone-a', 'zone-b', 'zone-c'] as const;
type Zone = (typeof ZONES)[number];
/** Nodes that same-node hints are drawn from: node-c is in no state. */
const HINTED_NODES = ['node-a', 'node-b', 'node-c'];
const podAddress = (pod: number, fam: Fam) => {
  const node = nodeOfPod(pod) === 'node-a' ? 1 : 2;
  return fam === 'v4' ? `10.244.${node}.${10 + pod}` : `fd00:244:${node}::${(10 + pod).toString(16)}`;
};
const clusterIP = (svc: number, fam: Fam) => (fam === 'v4' ? `10.96.0.${10 + svc}` : `fd00:96::${(0x10 + svc).toString(16)}`);
const externalIP = (svc: number, fam: Fam) => (fam === 'v4' ? `198.51.100.${1 + svc}` : `2001:db8:100::${1 + svc}`);
const lbIP = (svc: number, fam: Fam) => (fam === 'v4' ? `203.0.113.${1 + svc}` : `2001:db8:113::${1 + svc}`);
const nodePort = (svc: number, port: number) => 30000 + 10 * svc + port;
/** Actions of one run; each sends at most one frame. */
const MAX_ACTIONS = 60;
/**
 * Distinct flows (client tuples) of one run; later opens go to the open flows
 * again. A live flow holds one masquerade port, so a range of more ports
 * than this never runs out.
 */
const MAX_FLOWS = 12;
/** Timeouts (conntrack, affinity) and waits are drawn from one set, so that waits land exactly on timeouts. */
const TIMEOUTS = [2, 5, 10, 30, 60];

const CONDITIONS: Record<string, EndpointConditions> = {
  ready: { ready: true, serving: true, terminating: false },
  servingTerminating: { ready: false, serving: true, terminating: true },
  terminating: { ready: false, serving: false, terminating: true },
  notReady: { ready: false, serving: false, terminating: false },
};

export interface EndpointSpec {
  pod: number;
  /** Whether the pod has an address of each family. */
  v4: boolean;
  v6: boolean;
  condition: keyof typeof CONDITIONS;
  /** False: the endpoint names no node (never local). */
  hasNodeName: boolean;
  /** Its hints when its Service's are `drawn` (absent: none). */
  hints?: { forZones: readonly Zone[]; forNodes: readonly string[] };
}

/**
 * How a Service's endpoints are hinted: for their node's zone (the
 * EndpointSlice controller's PreferClose), for that and their node
 * (PreferSameNode), for their node's zone but pod 0 (on this node) given to
 * zone-b (as Auto's rebalancing gives a zone's endpoints to another; a Local
 * policy must still use it), or as each endpoint's drawn hints say, some missing.
 */
export type HintStyle = 'ownZone' | 'ownNode' | 'shifted' | 'drawn';

export interface ServiceSpec {
  type: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  families: Fam[];
  ports: Array<{ protocol: 'TCP' | 'UDP'; port: number; targetPort: number }>;
  externalTrafficPolicy: 'Cluster' | 'Local';
  internalTrafficPolicy: 'Cluster' | 'Local';
  affinityTimeout?: number;
  externalIPs: boolean;
  /** LoadBalancer only: the ingress IPs' mode ('Proxy' ones are no frontends). */
  ingressMode: 'VIP' | 'Proxy';
  allocateLoadBalancerNodePorts: boolean;
  sourceRanges: readonly string[];
  endpoints: EndpointSpec[];
  /** Topology runs only: what the Service asks for, which kube-proxy does not read (the hints decide). */
  trafficDistribution?: 'PreferClose' | 'PreferSameZone' | 'PreferSameNode';
  topologyAnnotation?: 'Auto' | 'Disabled';
  /** Topology runs only: absent, no endpoint has hints. */
  hints?: HintStyle;
  /** A cluster change deleted it (kept here so that Services keep their index, and may come back). */
  deleted?: boolean;
}

export interface ClusterSpec {
  /** The capture was taken on the node: arrivals say so (pcapng epb_flags), and the node's own copies are in it. Default no. */
  capturedOnNode?: boolean;
  seed: number;
  maglevTableSize: number;
  podNetwork: 'dual' | 'v4' | 'none';
  masqueradeAll: boolean;
  snatPortRange: [number, number];
  conntrack: Required<ConntrackTimeouts>;
  services: ServiceSpec[];
  /** The nodes' `topology.kubernetes.io/zone` labels (undefined: none); absent, no node has one. */
  zones?: { 'node-a'?: Zone; 'node-b'?: Zone };
  /** What established flows see when a cluster change takes their backend away; default kube-proxy's. */
  semantics?: DatapathSemantics;
}

/** true with odds `yes` : `no`. */
const often = (yes: number, no: number) =>
  fc.oneof({ weight: yes, arbitrary: fc.constant(true) }, { weight: no, arbitrary: fc.constant(false) });

const SOURCE_RANGES = ['172.16.0.0/16', '192.168.0.0/24', '10.244.1.0/24', '2001:db8:5::/48', 'fd00:168::/64'];

const endpointFields = {
  pod: fc.nat({ max: POD_COUNT - 1 }),
  v4: often(3, 1),
  v6: often(3, 1),
  condition: fc.constantFrom<keyof typeof CONDITIONS>(
    'ready',
    'ready',
    'ready',
    'ready',
    'ready',
    'servingTerminating',
    'servingTerminating',
    'terminating',
    'notReady',
  ),
  hasNodeName: often(4, 1),
};

/**
 * Drawn hints: mostly one zone or a few, sometimes only nodes, so that an
 * endpoint may lack a zone hint; node hints now and then.
 */
const hintsArb = fc.record({
  forZones: fc.oneof(
    { weight: 1, arbitrary: fc.constant([]) },
    { weight: 3, arbitrary: fc.constantFrom(...ZONES).map((z) => [z]) },
    { weight: 2, arbitrary: fc.subarray([...ZONES], { minLength: 1 }) },
  ),
  forNodes: fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, { weight: 1, arbitrary: fc.subarray(HINTED_NODES, { minLength: 1 }) }),
});

/** An endpoint; in topology runs with hints of its own, absent one time in five (`drawn` hints then miss on some endpoint). */
const endpointArb = (topology: boolean): fc.Arbitrary<EndpointSpec> =>
  topology ? fc.record({ ...endpointFields, hints: fc.option(hintsArb, { nil: undefined, freq: 5 }) }) : fc.record(endpointFields);

const serviceFields = {
  type: fc.constantFrom('ClusterIP', 'NodePort', 'LoadBalancer'),
  families: fc.constantFrom<Fam[]>(['v4'], ['v6'], ['v4', 'v6'], ['v6', 'v4']),
  ports: fc.uniqueArray(
    fc.record({ protocol: fc.constantFrom('TCP', 'UDP'), port: fc.constantFrom(80, 53, 443), targetPort: fc.constantFrom(8080, 53, 80) }),
    { minLength: 1, maxLength: 2, selector: (p) => `${p.port}/${p.protocol}` },
  ),
  externalTrafficPolicy: fc.constantFrom('Cluster', 'Local'),
  internalTrafficPolicy: fc.constantFrom('Cluster', 'Local'),
  affinityTimeout: fc.option(fc.constantFrom(...TIMEOUTS), { nil: undefined }),
  externalIPs: fc.boolean(),
  ingressMode: fc.constantFrom('VIP', 'VIP', 'Proxy'),
  allocateLoadBalancerNodePorts: often(3, 1),
  sourceRanges: fc.oneof(fc.constant([]), fc.subarray(SOURCE_RANGES, { minLength: 1, maxLength: 3 })),
};

/**
 * A Service; in topology runs it may ask for topology (which kube-proxy does
 * not read, so every combination with hints is fair) and have hinted endpoints.
 */
const serviceArb = (topology: boolean): fc.Arbitrary<ServiceSpec> => {
  const endpoints = fc.uniqueArray(endpointArb(topology), { maxLength: 5, selector: (e) => e.pod });
  if (!topology) return fc.record({ ...serviceFields, endpoints });
  return fc.record({
    ...serviceFields,
    endpoints,
    trafficDistribution: fc.constantFrom(undefined, undefined, 'PreferClose', 'PreferSameZone', 'PreferSameNode'),
    topologyAnnotation: fc.constantFrom(undefined, undefined, undefined, 'Auto', 'Disabled'),
    hints: fc.constantFrom<HintStyle | undefined>(
      undefined,
      'ownZone',
      'ownZone',
      'ownNode',
      'shifted',
      'shifted',
      'drawn',
      'drawn',
      'drawn',
    ),
  });
};

const clusterFields = {
  capturedOnNode: fc.boolean(),
  seed: fc.nat(),
  // 3 has fewer slots than a service may have backends.
  maglevTableSize: fc.constantFrom(3, 7, 13, 251, 251, 16381),
  podNetwork: fc.constantFrom('dual', 'dual', 'v4', 'none'),
  masqueradeAll: often(1, 4),
  // A small range makes masquerade ports collide, a tiny one run out; the default one holds the NodePorts.
  snatPortRange: fc.constantFrom<[number, number]>([40000, 40000 + MAX_FLOWS], [40000, 40001], [32768, 65535], [1024, 65535]),
  conntrack: fc.record({
    tcpEstablishedTimeout: fc.constantFrom(...TIMEOUTS),
    tcpCloseWaitTimeout: fc.constantFrom(...TIMEOUTS),
    udpTimeout: fc.constantFrom(...TIMEOUTS),
    udpStreamTimeout: fc.constantFrom(...TIMEOUTS),
  }),
  semantics: fc.constantFrom<DatapathSemantics>('kube-proxy', 'cilium'),
};

/**
 * Half the runs without topology, as before it existed; half with zone labels
 * (this node mostly in zone-a, node-b mostly in zone-b, else in zone-a or none) and hinted
 * endpoints.
 */
export const clusterArb: fc.Arbitrary<ClusterSpec> = fc.oneof(
  fc.record({ ...clusterFields, services: fc.array(serviceArb(false), { minLength: 1, maxLength: 4 }) }),
  fc.record({
    ...clusterFields,
    services: fc.array(serviceArb(true), { minLength: 1, maxLength: 4 }),
    zones: fc.record({
      'node-a': fc.constantFrom<Zone | undefined>('zone-a', 'zone-a', 'zone-a', undefined),
      'node-b': fc.constantFrom<Zone | undefined>('zone-a', 'zone-b', 'zone-b', undefined),
    }),
  }),
);

function toService(spec: ServiceSpec, i: number): Service {
  const ports: ServicePort[] = spec.ports.map((p, j) => ({
    name: spec.ports.length > 1 ? `p${j}` : '',
    protocol: p.protocol as Protocol,
    port: p.port,
    targetPort: p.targetPort,
    nodePort: hasNodePorts(spec) ? nodePort(i, j) : undefined,
  }));
  return {
    origin: { file: 'generated', object: `Service default/svc-${i}` },
    namespace: 'default',
    name: `svc-${i}`,
    type: spec.type,
    clusterIPs: spec.families.map((f) => clusterIP(i, f)),
    ipFamilies: spec.families.map((f) => (f === 'v4' ? 'IPv4' : 'IPv6')),
    ipFamilyPolicy: spec.families.length > 1 ? 'RequireDualStack' : 'SingleStack',
    ports,
    selector: { app: `svc-${i}` },
    sessionAffinity: spec.affinityTimeout ? 'ClientIP' : 'None',
    affinityTimeoutSeconds: spec.affinityTimeout ?? 10800,
    externalTrafficPolicy: spec.externalTrafficPolicy,
    internalTrafficPolicy: spec.internalTrafficPolicy,
    externalIPs: spec.externalIPs ? spec.families.map((f) => externalIP(i, f)) : [],
    loadBalancerIngress: spec.type === 'LoadBalancer' ? spec.families.map((f) => ({ ip: lbIP(i, f), ipMode: spec.ingressMode })) : [],
    loadBalancerSourceRanges: spec.type === 'LoadBalancer' ? [...spec.sourceRanges] : [],
    allocateLoadBalancerNodePorts: spec.allocateLoadBalancerNodePorts,
    publishNotReadyAddresses: false,
    ...(spec.trafficDistribution ? { trafficDistribution: spec.trafficDistribution } : {}),
    ...(spec.topologyAnnotation ? { topologyAnnotation: spec.topologyAnnotation } : {}),
  };
}

const hasNodePorts = (svc: ServiceSpec) => svc.type === 'NodePort' || (svc.type === 'LoadBalancer' && svc.allocateLoadBalancerNodePorts);

const zoneOf = (cluster: ClusterSpec, node: string | undefined): Zone | undefined =>
  node === 'node-a' || node === 'node-b' ? cluster.zones?.[node] : undefined;

/** What an endpoint's slice says of where it is and whom it is meant for: its node, that node's zone, and its hints. */
function placement(cluster: ClusterSpec, svc: ServiceSpec, e: EndpointSpec): { nodeName?: string; zone?: Zone; hints?: EndpointHints } {
  const nodeName = e.hasNodeName ? nodeOfPod(e.pod) : undefined;
  const zone = zoneOf(cluster, nodeName);
  return { nodeName, ...(zone ? { zone } : {}), ...hintsOf(svc.hints, e, nodeName, zone) };
}

/** The hints its Service's style gives an endpoint; none when there is nothing to hint it for. */
function hintsOf(style: HintStyle | undefined, e: EndpointSpec, nodeName?: string, zone?: Zone): { hints?: EndpointHints } {
  if (style === 'drawn') return e.hints ? { hints: { forZones: [...e.hints.forZones], forNodes: [...e.hints.forNodes] } } : {};
  if (style === undefined) return {};
  const forZones = style === 'shifted' && e.pod === 0 && zone ? ['zone-b'] : zone ? [zone] : [];
  const forNodes = style === 'ownNode' && nodeName ? [nodeName] : [];
  return forZones.length + forNodes.length > 0 ? { hints: { forZones, forNodes } } : {};
}

/**
 * The objects a cluster's states share: its Services (deleted ones included)
 * and Nodes, made once per run, so that a change of endpoints alone leaves
 * them as they were and reaches the datapath as EndpointSlice updates.
 */
export interface ClusterObjects {
  services: Service[];
  nodes: Node[];
}

export function clusterObjects(spec: ClusterSpec): ClusterObjects {
  const node = (name: string, addresses: Record<Fam, string>): Node => {
    const zone = zoneOf(spec, name);
    return {
      origin: { file: 'generated', object: `Node ${name}` },
      name,
      addresses: FAMS.map((f) => ({ type: 'InternalIP', address: addresses[f] })),
      ...(zone ? { zone } : {}),
    };
  };
  return { services: spec.services.map(toService), nodes: [node('node-a', NODE), node('node-b', OTHER_NODE)] };
}

/** The cluster state a spec describes: its Services that are not deleted, each with one EndpointSlice per family. */
export function clusterState(spec: ClusterSpec, objects: ClusterObjects = clusterObjects(spec)): ClusterState {
  const kept = spec.services.flatMap((svc, i) => (svc.deleted ? [] : [{ svc, i }]));
  return {
    services: kept.map(({ i }) => objects.services[i]),
    endpointSlices: kept.flatMap(({ svc, i }) => svc.families.map((fam) => endpointSlice(spec, svc, i, fam))),
    nodes: objects.nodes,
    notes: [],
  };
}

function endpointSlice(spec: ClusterSpec, svc: ServiceSpec, i: number, fam: Fam): EndpointSlice {
  const name = `svc-${i}-${fam === 'v4' ? 'ipv4' : 'ipv6'}`;
  return {
    origin: { file: 'generated', object: `EndpointSlice default/${name}` },
    namespace: 'default',
    name,
    serviceName: `svc-${i}`,
    addressType: fam === 'v4' ? 'IPv4' : 'IPv6',
    endpoints: svc.endpoints
      .filter((e) => e[fam])
      .map((e) => ({ addresses: [podAddress(e.pod, fam)], conditions: CONDITIONS[e.condition], ...placement(spec, svc, e) })),
    ports: svc.ports.map((p, j) => ({ name: svc.ports.length > 1 ? `p${j}` : '', protocol: p.protocol as Protocol, port: p.targetPort })),
  };
}

export function compileOptions(spec: ClusterSpec): CompileOptions {
  return {
    node: THIS_NODE,
    seed: spec.seed,
    maglevTableSize: spec.maglevTableSize,
    conntrack: spec.conntrack,
    clusterCIDRs: spec.podNetwork === 'none' ? [] : spec.podNetwork === 'v4' ? [POD_CIDRS.v4] : [POD_CIDRS.v4, POD_CIDRS.v6],
    masqueradeAll: spec.masqueradeAll,
    snatPortRange: spec.snatPortRange,
    serviceClusterIPRanges: SERVICE_RANGES,
    semantics: spec.semantics ?? 'kube-proxy',
  };
}

/** What a datapath is loaded from for a spec, as trackProgram takes it. */
export function programInputs(spec: ClusterSpec, objects?: ClusterObjects): ProgramInputs {
  const state = clusterState(spec, objects);
  const resolved = resolveServices(state).services;
  const opts = compileOptions(spec);
  return { state, resolved, compiled: compile(state, resolved, opts), opts };
}

export function compileCluster(spec: ClusterSpec): Compiled {
  return programInputs(spec).compiled;
}

// --- the traffic -----------------------------------------------------------------

/** Where a packet comes from; `backend` is a pod that may be an endpoint (hairpin), `lbIP` a load-balancer IP itself. */
export type ClientChoice =
  | { kind: 'localPod' | 'remotePod' | 'node' | 'otherNode' | 'externalInRange' | 'externalOutOfRange' }
  | { kind: 'backend'; pod: number }
  | { kind: 'lbIP'; service: number };

/** Where it goes: a compiled frontend (as it is, or a port or protocol it does not serve), or no frontend. */
export type TargetChoice =
  | { kind: 'frontend'; index: number; variant: 'exact' | 'otherPort' | 'otherProtocol' | 'icmpEcho' }
  | { kind: 'unallocatedServiceIP' | 'outside' | 'nodeUnservedPort'; protocol: 'TCP' | 'UDP' | 'ICMP' }
  | { kind: 'pod'; pod: number; protocol: 'TCP' | 'UDP' };

export interface PacketShape {
  tcpFlags: number;
  payloadLength: number;
  payloadSeed: number;
  vlans: readonly number[];
  padToMinimum: boolean;
  ipv4Options: boolean;
  ttl: number;
  ipId: number;
  tos: number;
  /** A capture with checksum offload: the IPv4 header or L4 checksum arrives wrong. */
  corrupt: 'none' | 'ip' | 'l4';
  zeroUdpChecksum: boolean;
  /**
   * IPv4 only: the datagram sent as two fragments — in order, the later one
   * first, or the later one alone (its first fragment never seen).
   */
  fragments: 'none' | 'inOrder' | 'laterFirst' | 'laterOnly';
}

export type Action =
  | { kind: 'open'; family: Fam; client: ClientChoice; target: TargetChoice; clientPort: number | 'fresh'; packet: PacketShape }
  /** One client opening several connections to one target at once, from fresh ports. */
  | { kind: 'burst'; family: Fam; client: ClientChoice; target: TargetChoice; count: number; packet: PacketShape }
  /** The flow's client sends again on the same tuple. */
  | { kind: 'again'; flow: number; packet: PacketShape }
  /**
   * The flow's backend answers the last packet the datapath sent it; for UDP optionally with a payload whose checksum
   * comes out zero after reverse NAT. `toNodeTuple`: to the tuple the node's copy masqueraded the flow to, if any.
   */
  | { kind: 'reply'; flow: number; packet: PacketShape; zeroChecksumAfterNat: boolean; toNodeTuple: boolean }
  /**
   * On a capture taken on the node: the node's copy of the last packet the datapath sent the flow's backend,
   * masqueraded by the node to its own address or its overlay's and `port` (a few, so that tuples meet), sent to
   * that backend or to another pod.
   */
  | { kind: 'nodeCopy'; flow: number; address: 'own' | 'overlay'; port: number; toPod?: number }
  | { kind: 'wait'; seconds: number; nanos: number }
  | { kind: 'nonIP'; vlans: readonly number[] }
  /**
   * The cluster changes, and the change reaches both datapaths (a sync) before the next packet. `after`: the
   * client of the flow the change is to (Target), when there is one, sends at once: on that flow, or on a new
   * connection to its frontend from a fresh port; on a capture taken on the node, `copied`: the node's copy of
   * that packet follows (as nodeCopy), and maybe the backend's reply to the node's tuple, so that the node's
   * copies meet the frontends and backends a change made or took.
   */
  | { kind: 'change'; change: Change; after?: AfterChange };

/** What the client of a changed flow sends at once, and what follows it on the node (the `change` action). */
interface AfterChange {
  packet: PacketShape;
  newConnection: boolean;
  copied?: { address: 'own' | 'overlay'; port: number; reply?: ReplyShape };
}

/** A backend's reply: its packet, and for UDP whether its payload's checksum comes out zero after reverse NAT. */
type ReplyShape = Pick<Extract<Action, { kind: 'reply' }>, 'packet' | 'zeroChecksumAfterNat'>;

/**
 * A cluster change to one Service: one of its endpoints takes new
 * conditions or goes, a pod becomes an endpoint (often one of the new pods),
 * every endpoint goes, the Service is deleted, or a deleted one comes back
 * as it was.
 */
export type Change =
  | { op: 'conditions'; target: Target; condition: keyof typeof CONDITIONS }
  | { op: 'removeEndpoint' | 'removeAllEndpoints' | 'deleteService' | 'restoreService'; target: Target }
  | { op: 'addEndpoint'; target: Target; endpoint: EndpointSpec };

/**
 * What a change is to: the Service and endpoint that flow `flow` (modulo the
 * flows opened) was last sent to, when given and there is one, so that
 * changes meet established flows; else the Service `service` (modulo the
 * cluster's; for a restore, the deleted Service of that index, modulo those)
 * and its endpoint `endpoint` (modulo its endpoints).
 */
export interface Target {
  service: number;
  endpoint: number;
  flow?: number;
}

/**
 * Payload sizes: none, small, medium, and large enough that a REJECT's quote
 * is cut (576-byte ICMP, 1280-byte ICMPv6 errors).
 */
const payloadLengthArb = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 1, arbitrary: fc.integer({ min: 400, max: 500 }) },
  { weight: 1, arbitrary: fc.integer({ min: 500, max: 1250 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1250, max: 1400 }) },
);

const packetArb = (flags: number[]): fc.Arbitrary<PacketShape> =>
  fc.record({
    tcpFlags: fc.constantFrom(...flags),
    payloadLength: payloadLengthArb,
    payloadSeed: fc.nat(),
    vlans: fc.oneof(
      { weight: 6, arbitrary: fc.constant([]) },
      { weight: 2, arbitrary: fc.tuple(fc.integer({ min: 1, max: 4094 })) },
      { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 1, max: 4094 }), fc.integer({ min: 1, max: 4094 })) },
    ),
    padToMinimum: fc.boolean(),
    ipv4Options: often(1, 5),
    ttl: fc.integer({ min: 1, max: 255 }),
    ipId: fc.nat({ max: 0xffff }),
    tos: fc.constantFrom(0, 0, 0x10, 0xb8),
    corrupt: fc.constantFrom('none', 'none', 'none', 'ip', 'l4'),
    zeroUdpChecksum: often(1, 5),
    fragments: fc.constantFrom('none', 'none', 'none', 'none', 'none', 'none', 'none', 'inOrder', 'inOrder', 'laterFirst', 'laterOnly'),
  });

const clientArb: fc.Arbitrary<ClientChoice> = fc.oneof(
  fc.constantFrom(
    ...(['localPod', 'remotePod', 'node', 'otherNode', 'externalInRange', 'externalOutOfRange'] as const).map((kind) => ({ kind })),
  ),
  fc.record({ kind: fc.constant('backend' as const), pod: fc.nat({ max: POD_COUNT - 1 }) }),
  fc.record({ kind: fc.constant('lbIP' as const), service: fc.nat({ max: 3 }) }),
);

const targetArb: fc.Arbitrary<TargetChoice> = fc.oneof(
  // Half the flows to a family's first two frontends, so that flows meet on backends and masquerade ports.
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('frontend' as const),
      index: fc.oneof(fc.nat({ max: 1 }), fc.nat()),
      variant: fc.constantFrom(
        'exact',
        'exact',
        'exact',
        'exact',
        'exact',
        'exact',
        'exact',
        'exact',
        'otherPort',
        'otherProtocol',
        'icmpEcho',
      ),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constantFrom('unallocatedServiceIP', 'outside', 'nodeUnservedPort'),
      protocol: fc.constantFrom('TCP', 'UDP', 'ICMP'),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('pod' as const),
      pod: fc.nat({ max: POD_COUNT - 1 }),
      protocol: fc.constantFrom('TCP', 'UDP'),
    }),
  },
);

const targetOfChangeArb: fc.Arbitrary<Target> = fc.record({
  service: fc.nat({ max: 3 }),
  endpoint: fc.nat({ max: 4 }),
  flow: fc.option(fc.nat(), { nil: undefined, freq: 3 }),
});

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('conditions' as const),
      target: targetOfChangeArb,
      condition: fc.constantFrom<keyof typeof CONDITIONS>('ready', 'servingTerminating', 'servingTerminating', 'terminating', 'notReady'),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('removeEndpoint' as const), target: targetOfChangeArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('addEndpoint' as const),
      target: targetOfChangeArb,
      endpoint: fc.record({
        ...endpointFields,
        pod: fc.constantFrom(...NEW_PODS, ...NEW_PODS, ...Array.from({ length: POD_COUNT }, (_, pod) => pod)),
        condition: fc.constantFrom<keyof typeof CONDITIONS>('ready', 'ready', 'ready', 'notReady'),
        hints: fc.option(hintsArb, { nil: undefined, freq: 5 }),
      }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      // A restore changes nothing unless a Service was deleted: drawn more often.
      op: fc.constantFrom<'removeAllEndpoints' | 'deleteService' | 'restoreService'>(
        'removeAllEndpoints',
        'deleteService',
        'restoreService',
        'restoreService',
      ),
      target: targetOfChangeArb,
    }),
  },
);

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('open' as const),
      family: fc.constantFrom(...FAMS),
      client: clientArb,
      target: targetArb,
      // Mostly a fresh ephemeral port; sometimes a fixed one: one masquerading may pick, a frontend's.
      clientPort: fc.oneof(
        { weight: 5, arbitrary: fc.constant('fresh' as const) },
        { weight: 1, arbitrary: fc.constantFrom(80, 8080, 30000, 30001, 40000, 40001) },
      ),
      packet: packetArb([TCP.SYN, TCP.SYN, TCP.SYN, TCP.ACK, TCP.FIN | TCP.ACK]),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('burst' as const),
      family: fc.constantFrom(...FAMS),
      client: clientArb,
      target: targetArb,
      count: fc.integer({ min: 2, max: 6 }),
      packet: packetArb([TCP.SYN]),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('again' as const),
      flow: fc.nat(),
      packet: packetArb([TCP.ACK, TCP.PSH | TCP.ACK, TCP.FIN | TCP.ACK, TCP.RST, TCP.SYN, TCP.SYN]),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('reply' as const),
      flow: fc.nat(),
      packet: packetArb([TCP.SYN | TCP.ACK, TCP.ACK, TCP.PSH | TCP.ACK, TCP.FIN | TCP.ACK, TCP.RST | TCP.ACK]),
      zeroChecksumAfterNat: often(1, 3),
      toNodeTuple: often(3, 1),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('nodeCopy' as const),
      flow: fc.nat(),
      address: fc.constantFrom('own', 'overlay'),
      // svcpath's own masquerade ports among them, and a NodePort.
      port: fc.constantFrom(40000, 40001, 40002, 50000, 50001, 30000),
      toPod: fc.option(fc.nat({ max: POD_COUNT - 1 }), { nil: undefined, freq: 5 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('wait' as const),
      seconds: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.constantFrom(...TIMEOUTS), fc.integer({ min: 61, max: 400 })),
      nanos: fc.oneof(fc.constant(0), fc.constant(1), fc.integer({ min: 0, max: 999_999_999 })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('nonIP' as const),
      vlans: fc.oneof(fc.constant([]), fc.tuple(fc.integer({ min: 1, max: 4094 }))),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('change' as const),
      change: changeArb,
      after: fc.option(
        fc.record({
          packet: packetArb([TCP.ACK, TCP.PSH | TCP.ACK, TCP.SYN]),
          newConnection: fc.boolean(),
          copied: fc.option(
            fc.record({
              address: fc.constantFrom<'own' | 'overlay'>('own', 'overlay'),
              port: fc.constantFrom(40000, 40001, 50000, 50001),
              reply: fc.option(
                fc.record({ packet: packetArb([TCP.SYN | TCP.ACK, TCP.ACK, TCP.PSH | TCP.ACK]), zeroChecksumAfterNat: often(1, 3) }),
                { nil: undefined, freq: 4 },
              ),
            }),
            { nil: undefined, freq: 4 },
          ),
        }),
        { nil: undefined, freq: 4 },
      ),
    }),
  },
);

/** The Service (index) and endpoint (index, or -1 when it has none) a change is to (Target), and the flow that led to them. */
function changeTarget(spec: ClusterSpec, change: Change, flows: readonly Flow[]): { service: number; endpoint: number; flow?: Flow } {
  const { target } = change;
  const flow = target.flow === undefined || flows.length === 0 ? undefined : flows[target.flow % flows.length];
  const placed = flow?.placed;
  if (flow && placed && change.op !== 'restoreService') {
    const svc = spec.services[placed.service];
    const endpoint = svc.endpoints.findIndex((e) => e[flow.fam] && canonical(podAddress(e.pod, flow.fam)) === placed.address);
    if (!svc.deleted && (endpoint >= 0 || change.op === 'addEndpoint')) return { service: placed.service, endpoint, flow };
  }
  const deleted = spec.services.flatMap((svc, i) => (svc.deleted ? [i] : []));
  const service =
    change.op === 'restoreService' && deleted.length > 0 ? deleted[target.service % deleted.length] : target.service % spec.services.length;
  const { endpoints } = spec.services[service];
  return { service, endpoint: endpoints.length > 0 ? target.endpoint % endpoints.length : -1 };
}

/** A change as a failure names it. */
function describeChange(spec: ClusterSpec, change: Change, at: { service: number; endpoint: number }): string {
  const pod = () => `pod ${spec.services[at.service].endpoints[at.endpoint].pod}`;
  switch (change.op) {
    case 'conditions':
      return `svc-${at.service}: ${pod()} ${change.condition}`;
    case 'removeEndpoint':
      return `svc-${at.service}: ${pod()} removed`;
    case 'addEndpoint':
      return `svc-${at.service}: pod ${change.endpoint.pod} added, ${change.endpoint.condition}`;
    default:
      return `svc-${at.service}: ${change.op}`;
  }
}

/** The spec after a change to the Service and endpoint `at`, or undefined when the change changes nothing. */
export function changed(spec: ClusterSpec, change: Change, at: { service: number; endpoint: number }): ClusterSpec | undefined {
  const svc = spec.services[at.service];
  const withService = (next: ServiceSpec) => ({ ...spec, services: spec.services.map((s, i) => (i === at.service ? next : s)) });
  const withEndpoints = (endpoints: EndpointSpec[]) => withService({ ...svc, endpoints });
  if (change.op === 'restoreService') return svc.deleted ? withService({ ...svc, deleted: false }) : undefined;
  if (svc.deleted) return undefined;
  const { endpoints } = svc;
  switch (change.op) {
    case 'deleteService':
      return withService({ ...svc, deleted: true });
    case 'removeAllEndpoints':
      return endpoints.length > 0 ? withEndpoints([]) : undefined;
    case 'addEndpoint':
      return endpoints.some((e) => e.pod === change.endpoint.pod) ? undefined : withEndpoints([...endpoints, change.endpoint]);
    case 'removeEndpoint':
      return at.endpoint >= 0 ? withEndpoints(endpoints.filter((_, i) => i !== at.endpoint)) : undefined;
    case 'conditions':
      if (at.endpoint < 0 || endpoints[at.endpoint].condition === change.condition) return undefined;
      return withEndpoints(endpoints.map((e, i) => (i === at.endpoint ? { ...e, condition: change.condition } : e)));
  }
}

export const actionsArb = fc.array(actionArb, { minLength: 1, maxLength: MAX_ACTIONS, size: 'max' });

/** A flow the traffic opened: its client's tuple, and what the datapath last did with it. */
interface Flow {
  fam: Fam;
  client: string;
  clientPort: number;
  server: string;
  serverPort: number;
  protocol: 'TCP' | 'UDP' | 'ICMP';
  /** The last frame the datapath sent to the flow's backend. */
  toBackend?: Uint8Array;
  masqueraded: boolean;
  /** The tuple the node's last copy masqueraded the flow to. */
  nodeTuple?: { address: string; port: number };
  /** Where the oracle last saw the flow sent, until it is refused or ends for a change. */
  placed?: Placement;
}

/** A flow's backend as the oracle follows it across cluster changes. */
interface Placement {
  /** `address port` the flow was sent to, and the address alone. */
  backend: string;
  address: string;
  /** The Service (index) whose endpoint that was. */
  service: number;
  /** A change since took the endpoint out of its Service (or deleted the Service): the backend went. */
  left: boolean;
  /** Under kube-proxy's semantics, a sync since flushed the flow (staleUdpTest): its next packet may find it over. */
  flushed: boolean;
}

/** The node's own address, and its overlay interface's: what MASQUERADE takes as source. */
const OVERLAY = { v4: '10.244.0.0', v6: 'fd00:244::' };

const CLIENT_MAC = '02:00:00:00:00:01';
const NODE_MAC = '02:00:00:00:00:fe';

function payloadOf(shape: PacketShape): Uint8Array {
  let x = shape.payloadSeed | 1;
  return Uint8Array.from({ length: shape.payloadLength }, () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 24;
  });
}

/** A frame from src:sport to dst:dport shaped by `shape`; checksums right unless the shape corrupts one. */
function frameOf(
  fam: Fam,
  src: string,
  dst: string,
  protocol: Flow['protocol'],
  sport: number,
  dport: number,
  shape: PacketShape,
  macs: [string, string],
  payload = payloadOf(shape),
): Uint8Array {
  const l4: L4Spec =
    protocol === 'TCP'
      ? { kind: 'tcp', sport, dport, flags: shape.tcpFlags, seq: shape.payloadSeed, ack: shape.tcpFlags & TCP.ACK ? shape.ipId : 0 }
      : protocol === 'UDP'
        ? { kind: 'udp', sport, dport, zeroChecksum: shape.zeroUdpChecksum }
        : fam === 'v4'
          ? { kind: 'icmp', type: 8, rest: sport }
          : { kind: 'icmpv6', type: 128, rest: sport };
  const spec: FrameSpec = {
    srcMac: macs[0],
    dstMac: macs[1],
    vlans: shape.vlans,
    padToMinimum: shape.padToMinimum,
    l4,
    payload,
    ...(fam === 'v4'
      ? { ipv4: { src, dst, ttl: shape.ttl, id: shape.ipId, tos: shape.tos, options: shape.ipv4Options ? [0x94, 4, 0, 0] : undefined } }
      : { ipv6: { src, dst, hopLimit: shape.ttl, trafficClass: shape.tos, flowLabel: shape.ipId } }),
  };
  const frame = buildFrame(spec).slice();
  const l3 = 14 + 4 * shape.vlans.length;
  const l4At = l3 + (fam === 'v4' ? (shape.ipv4Options ? 24 : 20) : 40);
  const view = new DataView(frame.buffer);
  const flip = (at: number) => view.setUint16(at, view.getUint16(at) ^ (1 + (shape.payloadSeed % 0xfffe)));
  if (shape.corrupt === 'ip' && fam === 'v4') flip(l3 + 10);
  if (shape.corrupt === 'l4') flip(l4At + (protocol === 'TCP' ? 16 : protocol === 'UDP' ? 6 : 2));
  return frame;
}

/**
 * The one's-complement sum of a UDP reply once the datapath has rewritten it
 * to frontend -> client (its checksum field zero): the rewritten checksum is
 * zero exactly when this is 0xffff.
 */
function sumAfterReverseNat(flow: Flow, payload: Uint8Array): number {
  const udpLength = 8 + payload.length;
  const server = addressBytes(flow.server);
  const client = addressBytes(flow.client);
  const pseudo = new Uint8Array(2 * server.length + 8);
  const pv = new DataView(pseudo.buffer);
  pseudo.set(server, 0);
  pseudo.set(client, server.length);
  pv.setUint32(2 * server.length, udpLength);
  pv.setUint32(2 * server.length + 4, 17);
  const header = new Uint8Array(8);
  const hv = new DataView(header.buffer);
  hv.setUint16(0, flow.serverPort);
  hv.setUint16(2, flow.clientPort);
  hv.setUint16(4, udpLength);
  return onesComplementSum(payload, onesComplementSum(header, onesComplementSum(pseudo)));
}

/** A UDP reply payload whose checksum after reverse NAT is zero (so must go out as 0xffff): its first word balances the sum. */
function zeroChecksumPayload(flow: Flow, base: Uint8Array): Uint8Array {
  const payload = new Uint8Array(Math.max(base.length, 2));
  payload.set(base.subarray(2), 2);
  const sum = sumAfterReverseNat(flow, payload);
  new DataView(payload.buffer).setUint16(0, checksumOf(sum) === 0 ? 0 : 0xffff - sum);
  return payload;
}

// --- the topology oracle -------------------------------------------------------------
//
// Written from README.md (Endpoints, Topology (hints), Source classes, Traffic
// policies), over the generated spec rather than the compiled state, and in its
// own shape: kube-proxy's rules as a list of narrowings tried in order. It
// shares nothing with control/compile/topology.ts, whose decision it checks.

/** What new flows to one port of a Service in one family may reach, as `address port` of its endpoints. */
interface Reachable {
  /** The cluster-wide set: ready endpoints narrowed by hints, else the serving terminating ones. */
  cluster: Set<string>;
  /** This node's endpoints, hints or not: its ready ones, else its serving terminating ones. */
  local: Set<string>;
  /** Some endpoint anywhere is ready, or serving while terminating. */
  anyUsable: boolean;
  /** Which hints narrowed the cluster-wide set, or why none did. */
  hints: string;
}

interface HintedEndpoint {
  address: string;
  conditions: EndpointConditions;
  onThisNode: boolean;
  forZones: ReadonlySet<string>;
  forNodes: ReadonlySet<string>;
}

const canonical = (address: string) => addressText(addressBytes(address));

function reachable(cluster: ClusterSpec, svc: ServiceSpec, targetPort: number, fam: Fam): Reachable {
  const endpoints: HintedEndpoint[] = svc.endpoints
    .filter((e) => e[fam])
    .map((e) => {
      const { nodeName, hints } = placement(cluster, svc, e);
      return {
        address: canonical(podAddress(e.pod, fam)),
        conditions: CONDITIONS[e.condition],
        onThisNode: nodeName === THIS_NODE,
        forZones: new Set(hints?.forZones),
        forNodes: new Set(hints?.forNodes),
      };
    });
  const zone = cluster.zones?.[THIS_NODE];
  const ready = endpoints.filter((e) => e.conditions.ready);
  const draining = endpoints.filter((e) => e.conditions.serving && e.conditions.terminating);
  // Tried in order; one applies when every ready endpoint carries its kind of hint and one hint is for this node.
  const narrowings = [
    { name: 'node hints', carries: (e: HintedEndpoint) => e.forNodes.size > 0, keeps: (e: HintedEndpoint) => e.forNodes.has(THIS_NODE) },
    {
      name: 'zone hints',
      carries: (e: HintedEndpoint) => e.forZones.size > 0,
      keeps: (e: HintedEndpoint) => !!zone && e.forZones.has(zone),
    },
  ];
  const narrowing = narrowings.find((n) => ready.every(n.carries) && ready.some(n.keeps));
  const kept = narrowing ? ready.filter(narrowing.keeps) : ready;
  const localReady = ready.filter((e) => e.onThisNode);
  const addresses = (set: HintedEndpoint[]) => new Set(set.map((e) => hostPort(e.address, targetPort)));
  return {
    cluster: addresses(kept.length > 0 ? kept : draining),
    local: addresses(localReady.length > 0 ? localReady : draining.filter((e) => e.onThisNode)),
    anyUsable: ready.length + draining.length > 0,
    hints: narrowing ? `${narrowing.name} ${kept.length < ready.length ? 'leaving some out' : 'keeping all'}` : whyNoHints(ready, zone),
  };
}

function whyNoHints(ready: readonly HintedEndpoint[], zone: string | undefined): string {
  if (ready.length === 0) return 'no ready endpoint';
  if (ready.every((e) => e.forZones.size + e.forNodes.size === 0)) return 'no hints';
  if (ready.some((e) => e.forZones.size === 0)) return 'hints ignored: a ready endpoint has no zone hint';
  if (!zone) return 'hints ignored: this node has no zone';
  return 'hints ignored: none for this node or its zone';
}

/**
 * The Service port whose frontend the flow is to by the spec, and whether it
 * is reached from outside (not by its cluster IP).
 */
function frontendOf(cluster: ClusterSpec, flow: Flow): { service: number; port: number; external: boolean } | undefined {
  const server = canonical(flow.server);
  const at = (address: string) => canonical(address) === server;
  for (const [i, svc] of cluster.services.entries()) {
    if (svc.deleted || !svc.families.includes(flow.fam)) continue;
    for (const [j, p] of svc.ports.entries()) {
      if (p.protocol !== flow.protocol) continue;
      if (at(clusterIP(i, flow.fam)) && flow.serverPort === p.port) return { service: i, port: j, external: false };
      // NodePorts on this node's primary addresses, its only ones here.
      const nodePortHit = hasNodePorts(svc) && at(NODE[flow.fam]) && flow.serverPort === nodePort(i, j);
      const externalHit = svc.externalIPs && at(externalIP(i, flow.fam)) && flow.serverPort === p.port;
      const lbHit = svc.type === 'LoadBalancer' && svc.ingressMode === 'VIP' && at(lbIP(i, flow.fam)) && flow.serverPort === p.port;
      if (nodePortHit || externalHit || lbHit) return { service: i, port: j, external: true };
    }
  }
  return undefined;
}

/** This node (its Node addresses), a pod (inside the family's cluster CIDR, when known), or external. */
function sourceClassOf(cluster: ClusterSpec, flow: Flow): 'node' | 'pod' | 'external' {
  if (canonical(flow.client) === canonical(NODE[flow.fam])) return 'node';
  const podNetworkKnown = cluster.podNetwork === 'dual' || (cluster.podNetwork === 'v4' && flow.fam === 'v4');
  return podNetworkKnown && ipaddr.parse(flow.client).match(ipaddr.parseCIDR(POD_CIDRS[flow.fam])) ? 'pod' : 'external';
}

interface Allowed {
  service: number;
  /** The endpoints (`address port`) a new flow may be sent to. */
  backends: Set<string>;
  /** What is done when there are none: DROP (the Service has endpoints elsewhere) or REJECT. */
  refusal: 'NO_LOCAL_ENDPOINTS' | 'NO_ENDPOINTS';
  /** The rule that chose `backends`: a Local policy, the hints that narrowed them, or why none did. */
  why: string;
}

/** The oracle: what a flow to a Service's frontend may reach; undefined when it is to no frontend. */
function allowedBackends(cluster: ClusterSpec, flow: Flow): Allowed | undefined {
  const frontend = frontendOf(cluster, flow);
  if (!frontend) return undefined;
  const svc = cluster.services[frontend.service];
  const sets = reachable(cluster, svc, svc.ports[frontend.port].targetPort, flow.fam);
  const local = frontend.external
    ? svc.externalTrafficPolicy === 'Local' && sourceClassOf(cluster, flow) === 'external'
    : svc.internalTrafficPolicy === 'Local';
  return {
    service: frontend.service,
    backends: local ? sets.local : sets.cluster,
    refusal: sets.anyUsable ? 'NO_LOCAL_ENDPOINTS' : 'NO_ENDPOINTS',
    why: local ? "a Local policy: this node's endpoints" : sets.hints,
  };
}

/** Outcomes that mean the frame reached a Service's choice of backend. */
const DECIDED = new Set(['SERVICE', 'SNAT_EXHAUSTED', 'NO_ENDPOINTS', 'NO_LOCAL_ENDPOINTS']);

/** The address the datapath sent a frame to (one carrying its L4 header), and `address port`. */
function destinationOf(out: Uint8Array): { address: string; backend: string } {
  const l3 = 14 + 4 * vlanCount(out);
  const v4 = out[l3] >> 4 === 4;
  const l4 = l3 + (v4 ? (out[l3] & 0x0f) * 4 : 40);
  const address = addressText(v4 ? out.subarray(l3 + 16, l3 + 20) : out.subarray(l3 + 24, l3 + 40));
  return { address, backend: hostPort(address, new DataView(out.buffer, out.byteOffset).getUint16(l4 + 2)) };
}

/**
 * Throws unless the datapath's decision on a client's frame is one the oracle
 * allows under the spec in force. A new flow: a backend of the allowed set,
 * refused exactly when the set is empty and then in the right way. A flow
 * sent where no new flow may go: its own backend, kept as the semantics
 * keeps it (kube-proxy: flagged STALE_BACKEND exactly when the backend went;
 * Cilium: never one that went), and never a flow a flush took. A flowChange:
 * only one a change made possible (checkFlowChange). Then follows the flow
 * to where it went, and tallies which rule chose its backend.
 */
function checkBackend(cluster: ClusterSpec, flow: Flow, result: Outcome, what: string, tally?: Map<string, number>): void {
  const { placed } = flow;
  const allowed = allowedBackends(cluster, flow);
  const sent = result.reason === 'SERVICE' ? destinationOf(result.out) : undefined;
  const to = sent?.backend;
  const failure = (wrong: string) =>
    new Error(
      `${what}: ${summary(result)}: ${wrong}` +
        (allowed
          ? `\n  oracle: Service default/svc-${allowed.service} from a ${sourceClassOf(cluster, flow)} source, ${allowed.why}: ` +
            `{${[...allowed.backends].join(', ')}}, else ${allowed.refusal}`
          : '\n  oracle: no frontend there now') +
        (placed
          ? `\n  the flow was on ${placed.backend} of svc-${placed.service}${placed.left ? ', which went since' : ''}` +
            `${placed.flushed ? ', flushed since' : ''}`
          : '') +
        `\n  semantics ${cluster.semantics ?? 'kube-proxy'}, zones ${JSON.stringify(cluster.zones ?? {})}`,
    );
  const wrongChange = checkFlowChange(cluster, flow, result, to, allowed);
  if (wrongChange) throw failure(wrongChange);
  const kept = to !== undefined && !allowed?.backends.has(to);
  if (kept) {
    if (to !== placed?.backend) throw failure(`sent to ${to}, where the oracle allows no new flow, and not the flow's backend`);
    if (placed.flushed) throw failure('kept on its backend, though a flush took the flow');
    if (result.flowChange === undefined && placed.left) throw failure('kept on a backend that went, without a flowChange');
    count(tally, `a flow kept on its backend after a change${placed.left ? ' took it' : ''}: ${result.flowChange ?? 'SERVICE'}`);
  } else if (DECIDED.has(result.reason)) {
    if (!allowed) throw failure('the oracle knows no frontend there');
    const { backends, refusal, why } = allowed;
    if (backends.size > 0 && !['SERVICE', 'SNAT_EXHAUSTED'].includes(result.reason))
      throw failure('refused though the oracle allows backends');
    if (backends.size === 0 && result.reason !== refusal) throw failure(`the oracle allows no backend: expected ${refusal}`);
    count(tally, `${why}: ${result.reason}`);
  }
  if (sent) {
    const service = kept ? placed!.service : allowed!.service;
    flow.placed = { ...sent, service, left: result.flowChange === 'STALE_BACKEND', flushed: false };
  } else if (DECIDED.has(result.reason) || result.flowChange) {
    // Refused (no flow started), or a flow a change ended.
    flow.placed = undefined;
  }
}

/**
 * Why the frame's flowChange is one no change made possible, or undefined
 * when it is fine: FLUSHED only under kube-proxy's semantics, on a UDP flow a
 * flush took; STALE_BACKEND only under kube-proxy's, sent on to the flow's
 * backend that went; RESELECTED only under Cilium's, on a flow whose backend
 * went (so once: the flow then has a backend that did not go); AFFINITY_RESET
 * only on a flow to a Service with ClientIP affinity. Where a flag is
 * required, checkBackend says (kept on a backend) or the agreement does.
 */
function checkFlowChange(cluster: ClusterSpec, flow: Flow, result: Outcome, to: string | undefined, allowed: Allowed | undefined) {
  const kubeProxy = (cluster.semantics ?? 'kube-proxy') === 'kube-proxy';
  const { placed } = flow;
  switch (result.flowChange) {
    case undefined:
      return undefined;
    case 'FLUSHED':
      return kubeProxy && flow.protocol === 'UDP' && placed?.flushed ? undefined : 'flagged FLUSHED, but no flush took the flow';
    case 'STALE_BACKEND':
      return kubeProxy && placed?.left && to === placed.backend
        ? undefined
        : "flagged STALE_BACKEND, but not kept on the flow's backend that went";
    case 'RESELECTED':
      return !kubeProxy && placed?.left ? undefined : 'flagged RESELECTED, but not a flow whose backend went, under Cilium';
    case 'AFFINITY_RESET':
      return allowed && cluster.services[allowed.service].affinityTimeout !== undefined
        ? undefined
        : 'flagged AFFINITY_RESET, but not to a Service with ClientIP affinity';
    default:
      return `an unknown flowChange ${result.flowChange}`;
  }
}

// --- cluster changes in the oracle ----------------------------------------------------
//
// Written from README.md's Cluster changes and kube-proxy's CleanStaleEntries
// (pkg/proxy/conntrack), over the generated specs: it shares nothing with
// control/runtime/conntrack-flush.ts, whose flush the datapath gets.

/** Whether the flow's backend is still an endpoint (whatever its conditions) of the Service in `spec`. */
function stillEndpoint(spec: ClusterSpec, flow: Flow, placed: Placement): boolean {
  const svc = spec.services[placed.service];
  if (svc.deleted) return false;
  return svc.endpoints.some(
    (e) => e[flow.fam] && svc.ports.some((p) => hostPort(canonical(podAddress(e.pod, flow.fam)), p.targetPort) === placed.backend),
  );
}

/** The addresses a Service is reached on besides NodePorts: cluster IPs, external IPs, load-balancer IPs but Proxy-mode ones. */
function serviceIPs(svc: ServiceSpec, i: number): string[] {
  const lb = svc.type === 'LoadBalancer' && svc.ingressMode === 'VIP';
  return svc.families
    .flatMap((f) => [clusterIP(i, f), ...(svc.externalIPs ? [externalIP(i, f)] : []), ...(lb ? [lbIP(i, f)] : [])])
    .map(canonical);
}

/** The Service (index) a UDP flow to this address and port is for: by a Service IP and UDP port, else by a UDP NodePort alone. */
function udpServiceAt(spec: ClusterSpec, address: string, port: number): number | undefined {
  const present = spec.services.flatMap((svc, i) => (svc.deleted ? [] : [{ svc, i }]));
  const udpPorts = (svc: ServiceSpec) => svc.ports.flatMap((p, j) => (p.protocol === 'UDP' ? [{ p, j }] : []));
  const byIP = present.find(({ svc, i }) => udpPorts(svc).some(({ p }) => p.port === port) && serviceIPs(svc, i).includes(address));
  if (byIP) return byIP.i;
  return present.find(({ svc, i }) => hasNodePorts(svc) && udpPorts(svc).some(({ j }) => nodePort(i, j) === port))?.i;
}

/**
 * kube-proxy's stale UDP flush after a change from `before` to `after`, as
 * the model's sync takes it: a flow to a Service's UDP frontend in `before`
 * is stale when its backend's address is not a serving endpoint of that
 * Service in `after` (ready, or serving while terminating); a deleted
 * Service has none.
 */
export function staleUdpTest(before: ClusterSpec, after: ClusterSpec): StaleUdpTest {
  return (frontendAddress, frontendPort, backendAddress) => {
    const service = udpServiceAt(before, canonical(frontendAddress), frontendPort);
    if (service === undefined) return false;
    const svc = after.services[service];
    const serving = svc.deleted
      ? []
      : svc.endpoints.filter(({ condition }) => {
          const c = CONDITIONS[condition];
          return c.ready || (c.serving && c.terminating);
        });
    const backend = canonical(backendAddress);
    return !serving.some((e) => FAMS.some((f) => e[f] && canonical(podAddress(e.pod, f)) === backend));
  };
}

/** What a change does to the flows the oracle follows: marks those whose backend went and, under kube-proxy's semantics, the UDP flows it flushes. */
function followChange(flows: readonly Flow[], before: ClusterSpec, after: ClusterSpec): void {
  const stale = (after.semantics ?? 'kube-proxy') === 'kube-proxy' ? staleUdpTest(before, after) : undefined;
  for (const flow of flows) {
    const { placed } = flow;
    if (!placed) continue;
    if (!stillEndpoint(after, flow, placed)) placed.left = true;
    if (stale && flow.protocol === 'UDP' && stale(flow.server, flow.serverPort, placed.address)) placed.flushed = true;
  }
}

// --- running and comparing ---------------------------------------------------------

interface Outcome {
  verdict: string;
  reason: string;
  serviceId: number;
  backendId: number;
  snat: boolean;
  out: Uint8Array;
  flowChange?: FlowChange;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');
const summary = (o: Outcome) =>
  `${o.verdict} ${o.reason} service ${o.serviceId} backend ${o.backendId}${o.snat ? ' snat' : ''}${o.flowChange ? ` ${o.flowChange}` : ''}`;

/** Null when both agree; otherwise what a reader needs to see the difference. */
function difference(frame: Uint8Array, datapath: Outcome, model: ModelOutcome): string | null {
  const fields = (['verdict', 'reason', 'serviceId', 'backendId', 'snat', 'flowChange'] as const).filter((k) => datapath[k] !== model[k]);
  const length = Math.max(datapath.out.length, model.out.length);
  let firstByte = -1;
  for (let i = 0; i < length && firstByte < 0; i++) if (datapath.out[i] !== model.out[i]) firstByte = i;
  if (fields.length === 0 && firstByte < 0) return null;
  return [
    `frame    ${hex(frame)}`,
    `datapath ${summary(datapath)}`,
    `model    ${summary(model)}`,
    fields.length ? `differ in ${fields.join(', ')}` : '',
    firstByte >= 0
      ? `output differs first at byte ${firstByte}: datapath ${datapath.out[firstByte]?.toString(16) ?? '(end)'}, model ${model.out[firstByte]?.toString(16) ?? '(end)'}` +
        ` (lengths ${datapath.out.length} / ${model.out.length})\n  datapath out ${hex(datapath.out)}\n  model out    ${hex(model.out)}`
      : '',
  ]
    .filter((l) => l)
    .join('\n');
}

const T0 = 1_800_000_000;
/** Conntrack entries of the loaded datapath: far more than a run's flows, so that no LRU map evicts (the model has no eviction). */
const CT_ENTRIES = 4096;

/** Counts a property's runs keep, each optional. */
export interface Tallies {
  /** Frames by decision ("TX SERVICE"). */
  outcomes?: Map<string, number>;
  /** Flows the oracle checked, by the rule that chose their backends (or kept them) and the outcome. */
  oracle?: Map<string, number>;
  /** Frames by the flowChange both datapaths gave them. */
  flowChanges?: Map<string, number>;
  /** Cluster changes applied, by kind and the path the control plane took ("removeEndpoint endpoints"). */
  changes?: Map<string, number>;
  /** The node's copies of a packet sent at once after a change, by what its flow's ends are to the steer map (copyKind). */
  copies?: Map<string, number>;
}

const count = (tally: Map<string, number> | undefined, key: string) => tally?.set(key, (tally.get(key) ?? 0) + 1);

/** One run's frames through a datapath and the model, side by side, one frame per batch (replies depend on outputs). */
class SideBySide {
  private readonly batch: Batch;
  private readonly model: ReferenceDatapath;
  private sec = T0;
  private nsec = 0;
  private step = 0;
  /** The changes synced so far, in order: the state in force is their number. */
  private readonly syncs: string[] = [];

  constructor(
    dp: Datapath,
    compiled: Compiled,
    private readonly tallies: Tallies,
  ) {
    this.batch = dp.createBatch(1, Batch.footprint(2048));
    this.model = new ReferenceDatapath(compiled);
  }

  wait(seconds: number, nanos: number): void {
    const total = this.nsec + nanos;
    this.sec += seconds + Math.floor(total / 1e9);
    this.nsec = total % 1e9;
  }

  /** The packet clock, nanoseconds. */
  now(): bigint {
    return BigInt(this.sec) * 1_000_000_000n + BigInt(this.nsec);
  }

  /** The model gets the change the datapath got: its new tables, and under kube-proxy's semantics the flush. */
  sync(compiled: Compiled, flush: StaleUdpTest | undefined, what: string): void {
    this.model.sync(compiled, flush);
    this.syncs.push(what);
  }

  /** Where the run is, for a failure: the state in force and the changes that made it. */
  where(): string {
    return `state ${this.syncs.length}${this.syncs.length ? ` after ${this.syncs.map((c, i) => `(${i + 1}) ${c}`).join(', ')}` : ''}`;
  }

  /** Runs one frame through both, which way it went if the capture says; throws on any disagreement. */
  run(frame: Uint8Array, what: string, direction?: 'inbound' | 'outbound'): Outcome {
    this.step++;
    const b = this.batch;
    b.clear();
    b.add(frame, frame.length, this.sec, this.nsec, LINKTYPES.ETHERNET, false, direction);
    b.run();
    const flowChange = b.flowChange(0);
    const datapath: Outcome = {
      verdict: VERDICTS[b.verdict(0)],
      reason: REASONS[b.reason(0)],
      serviceId: b.serviceId(0),
      backendId: b.backendId(0),
      snat: (b.flags(0) & DESC_F_SNAT) !== 0,
      out: b.frame(0).slice(),
      ...(flowChange ? { flowChange } : {}),
    };
    const model = this.model.process(frame, {
      wireLen: frame.length,
      tsSec: this.sec,
      tsNsec: this.nsec,
      linktype: LINKTYPES.ETHERNET,
      direction,
    });
    const diff = difference(frame, datapath, model);
    if (diff)
      throw new Error(`step ${this.step} (${what}, t=${this.sec}.${String(this.nsec).padStart(9, '0')}, ${this.where()}):\n${diff}`);
    count(this.tallies.outcomes, `${datapath.verdict} ${datapath.reason}`);
    if (flowChange) count(this.tallies.flowChanges, flowChange);
    return datapath;
  }
}

/** The frontends of one family, in compiled order. */
function frontendsOf(compiled: Compiled, fam: Fam) {
  return compiled.services.flatMap((s) => s.frontends.filter((f) => f.address.includes(':') === (fam === 'v6')));
}

function clientAddress(choice: ClientChoice, fam: Fam, cluster: ClusterSpec): string {
  switch (choice.kind) {
    case 'localPod':
      return fam === 'v4' ? '10.244.1.77' : 'fd00:244:1::77';
    case 'remotePod':
      return fam === 'v4' ? '10.244.2.77' : 'fd00:244:2::77';
    case 'node':
      return NODE[fam];
    case 'otherNode':
      return OTHER_NODE[fam];
    case 'externalInRange':
      return fam === 'v4' ? '172.16.5.5' : '2001:db8:5::5';
    case 'externalOutOfRange':
      return fam === 'v4' ? '198.18.0.1' : '2001:db8:99::1';
    case 'backend':
      return podAddress(choice.pod, fam);
    case 'lbIP':
      return choice.service < cluster.services.length && cluster.services[choice.service].type === 'LoadBalancer'
        ? lbIP(choice.service, fam)
        : NODE[fam];
  }
}

function targetOf(choice: TargetChoice, fam: Fam, compiled: Compiled): { server: string; serverPort: number; protocol: Flow['protocol'] } {
  switch (choice.kind) {
    case 'frontend': {
      const frontends = frontendsOf(compiled, fam);
      if (frontends.length === 0) return { server: fam === 'v4' ? '10.96.7.7' : 'fd00:96::7:7', serverPort: 80, protocol: 'TCP' };
      const f = frontends[choice.index % frontends.length];
      const other = f.protocol === 'TCP' ? 'UDP' : 'TCP';
      switch (choice.variant) {
        case 'exact':
          return { server: f.address, serverPort: f.port, protocol: f.protocol as 'TCP' | 'UDP' };
        case 'otherPort':
          return { server: f.address, serverPort: f.port + 1, protocol: f.protocol as 'TCP' | 'UDP' };
        case 'otherProtocol':
          return { server: f.address, serverPort: f.port, protocol: other };
        case 'icmpEcho':
          return { server: f.address, serverPort: 0, protocol: 'ICMP' };
      }
      break;
    }
    case 'unallocatedServiceIP':
      return { server: fam === 'v4' ? '10.96.7.7' : 'fd00:96::7:7', serverPort: 80, protocol: choice.protocol };
    case 'outside':
      return { server: fam === 'v4' ? '8.8.8.8' : '2001:4860::8888', serverPort: 443, protocol: choice.protocol };
    case 'nodeUnservedPort':
      return { server: NODE[fam], serverPort: 22, protocol: choice.protocol };
    case 'pod':
      return { server: podAddress(choice.pod, fam), serverPort: 8080, protocol: choice.protocol };
  }
}

/** The reply a backend sends to what it received: addresses, ports and MACs swapped; or sent to `to` instead. */
function replyFrame(flow: Flow, received: Uint8Array, action: ReplyShape, to?: Flow['nodeTuple']): Uint8Array {
  const l3 = 14 + 4 * vlanCount(received);
  const v = new DataView(received.buffer, received.byteOffset);
  const fam = flow.fam;
  const [src, dst] =
    fam === 'v4'
      ? [received.subarray(l3 + 12, l3 + 16), received.subarray(l3 + 16, l3 + 20)]
      : [received.subarray(l3 + 8, l3 + 24), received.subarray(l3 + 24, l3 + 40)];
  const l4 = l3 + (fam === 'v4' ? (received[l3] & 0x0f) * 4 : 40);
  let payload = payloadOf(action.packet);
  const shape = action.packet;
  if (flow.protocol === 'UDP' && action.zeroChecksumAfterNat) payload = zeroChecksumPayload(flow, payload);
  const macs: [string, string] = [macText(received, 0), macText(received, 6)];
  return frameOf(
    fam,
    addressText(dst),
    to?.address ?? addressText(src),
    flow.protocol,
    v.getUint16(l4 + 2),
    to?.port ?? v.getUint16(l4),
    shape,
    macs,
    payload,
  );
}

/**
 * The node's copy of what the datapath sent the flow's backend: what NAT
 * leaves alone (identification or flow label, TCP numbers, payload) kept, the
 * source the node's masquerade tuple, the destination its backend or `toPod`.
 * Its checksums are left as they are: nothing checks an outgoing frame's.
 */
function nodeCopy(sent: Uint8Array, fam: Fam, tuple: { address: string; port: number }, toPod?: string): Uint8Array {
  const copy = sent.slice();
  const l3 = 14 + 4 * vlanCount(copy);
  const [source, destination] = fam === 'v4' ? [l3 + 12, l3 + 16] : [l3 + 8, l3 + 24];
  const l4 = l3 + (fam === 'v4' ? (copy[l3] & 0x0f) * 4 : 40);
  copy.set(addressBytes(tuple.address), source);
  new DataView(copy.buffer).setUint16(l4, tuple.port);
  if (toPod) copy.set(addressBytes(toPod), destination);
  return copy;
}

function vlanCount(frame: Uint8Array): number {
  let n = 0;
  while ([0x8100, 0x88a8].includes((frame[12 + 4 * n] << 8) | frame[13 + 4 * n])) n++;
  return n;
}

/**
 * An IPv4 frame as its shape sends it: whole, or as two fragments of its
 * datagram (the first with the L4 header and as many payload bytes as fit a
 * multiple of 8, the later with the rest), in the order the shape says.
 */
function asSent(frame: Uint8Array, fam: Fam, shape: PacketShape): Array<{ frame: Uint8Array; later: boolean }> {
  const whole = [{ frame, later: false }];
  if (fam === 'v6' || shape.fragments === 'none') return whole;
  const l3 = 14 + 4 * shape.vlans.length;
  const view = new DataView(frame.buffer, frame.byteOffset);
  const headerLength = (frame[l3] & 0x0f) * 4;
  const segment = frame.subarray(l3 + headerLength, l3 + view.getUint16(l3 + 2));
  const l4Header = frame[l3 + 9] === 6 ? 20 : 8;
  const split = Math.ceil(l4Header / 8) * 8 + 8;
  if (split >= segment.length) return whole;
  const fragment = (bytes: Uint8Array, offset: number, more: boolean) => {
    const out = new Uint8Array(Math.max(l3 + headerLength + bytes.length, shape.padToMinimum ? 60 : 0));
    out.set(frame.subarray(0, l3 + headerLength));
    out.set(bytes, l3 + headerLength);
    const v = new DataView(out.buffer);
    v.setUint16(l3 + 2, headerLength + bytes.length);
    v.setUint16(l3 + 6, (more ? 0x2000 : 0) | (offset / 8));
    v.setUint16(l3 + 10, 0);
    v.setUint16(l3 + 10, checksumOf(onesComplementSum(out.subarray(l3, l3 + headerLength))));
    return out;
  };
  const first = { frame: fragment(segment.subarray(0, split), 0, true), later: false };
  const later = { frame: fragment(segment.subarray(split), split, false), later: true };
  return shape.fragments === 'inOrder' ? [first, later] : shape.fragments === 'laterFirst' ? [later, first] : [later];
}

const macText = (frame: Uint8Array, at: number) => Array.from(frame.subarray(at, at + 6), (b) => b.toString(16).padStart(2, '0')).join(':');

/** Backend ids a change may need beyond those of the states before: a new endpoint's (two families, two ports), a restored Service's. */
const NEW_BACKENDS: Record<Change['op'], number> = {
  addEndpoint: 4,
  restoreService: 4 * (POD_COUNT + NEW_PODS.length),
  conditions: 0,
  removeEndpoint: 0,
  removeAllEndpoints: 0,
  deleteService: 0,
};

/**
 * Room for a run's changes, as a replay of its events gets it (roomFor),
 * from a state wider than any the changes reach (every pod an endpoint of
 * every Service), and one backend id more for every backend a change may
 * add: an endpoint that goes and comes back is a new backend, its tombstone
 * kept for the flows that name it, and the oracle counts on no tombstone's
 * id being taken again. None when the run has no change.
 */
function roomForChanges(
  cluster: ClusterSpec,
  initial: ClusterState,
  objects: ClusterObjects,
  actions: readonly Action[],
): MapRoom | undefined {
  const changes = actions.flatMap((a) => (a.kind === 'change' ? [a.change] : []));
  if (changes.length === 0) return undefined;
  const everyPod = [...Array.from({ length: POD_COUNT }, (_, pod) => pod), ...NEW_PODS].map(
    (pod): EndpointSpec => ({ pod, v4: true, v6: true, condition: 'ready', hasNodeName: true }),
  );
  const widest = clusterState({ ...cluster, services: cluster.services.map((svc) => ({ ...svc, endpoints: everyPod })) }, objects);
  const event = <K extends 'Service' | 'EndpointSlice'>(kind: K, object: K extends 'Service' ? Service : EndpointSlice) =>
    ({ kind, object, type: 'MODIFIED', time: 0n, line: 0, namespace: object.namespace, name: object.name }) as ClusterEvent;
  const room = roomFor(initial, [
    ...widest.services.map((s) => event('Service', s)),
    ...widest.endpointSlices.map((slice) => event('EndpointSlice', slice)),
  ]);
  const backends = room.backends + changes.reduce((n, c) => n + NEW_BACKENDS[c.op], 0);
  return { ...room, backends, members: 2 * backends };
}

/**
 * One property run: the cluster compiled and loaded, the actions played
 * through the datapath and the model, each change synced to both (to the
 * datapath through the control plane: applyStateChange and steerChanges, then
 * under kube-proxy's semantics flushStaleUdp; to the model with the flush the
 * oracle works out from the specs). Throws at the first disagreement.
 */
export async function checkAgreement(cluster: ClusterSpec, actions: Action[], tallies: Tallies = {}): Promise<void> {
  const objects = clusterObjects(cluster);
  const inputs = programInputs(cluster, objects);
  const { compiled } = inputs;
  const room = roomForChanges(cluster, inputs.state, objects, actions);
  let live = trackProgram(await loadProgram(compiled, { ctEntries: CT_ENTRIES, room }), inputs);
  const run = new SideBySide(live.dp, compiled, tallies);
  const kubeProxy = (cluster.semantics ?? 'kube-proxy') === 'kube-proxy';
  let spec = cluster;
  let state = inputs.state;
  const arrived = cluster.capturedOnNode ? ('inbound' as const) : undefined;
  const flows: Flow[] = [];
  const byTuple = new Map<string, Flow>();
  let nextPort = 32768 + (cluster.seed % 20000);
  /** A connection opened: a new flow, or the flow of its tuple (a fixed client port may open one again), or past MAX_FLOWS an old one. */
  const open = (opened: Flow, packet: PacketShape, what: string): Flow => {
    const key = tupleOf(opened);
    let flow = byTuple.get(key);
    if (!flow && flows.length === MAX_FLOWS) flow = flows[opened.clientPort % MAX_FLOWS];
    if (!flow) {
      flow = opened;
      byTuple.set(key, flow);
      flows.push(flow);
    }
    send(flow, packet, `${what} ${key}`);
    return flow;
  };
  const send = (flow: Flow, shape: PacketShape, what: string) => {
    for (const result of sendFlow(run, flow, shape, what, arrived))
      checkBackend(spec, flow, result, `${what} (${run.where()})`, tallies.oracle);
  };
  const reply = (flow: Flow, shape: ReplyShape, to?: Flow['nodeTuple']) => {
    for (const { frame } of asSent(replyFrame(flow, flow.toBackend!, shape, to), flow.fam, shape.packet)) {
      run.run(
        frame,
        `reply${to ? " to the node's tuple" : ''} to ${hostPort(flow.client, flow.clientPort)} > ${hostPort(flow.server, flow.serverPort)}`,
        arrived,
      );
    }
  };
  /** The node's copy of the last packet the datapath sent the flow's backend, when the capture is the node's (nodeCopy). */
  const copyByNode = (flow: Flow, address: 'own' | 'overlay', port: number, toPod?: string): boolean => {
    if (!cluster.capturedOnNode || !flow.toBackend || flow.protocol === 'ICMP') return false;
    flow.nodeTuple = { address: address === 'own' ? NODE[flow.fam] : OVERLAY[flow.fam], port };
    run.run(
      nodeCopy(flow.toBackend, flow.fam, flow.nodeTuple, toPod),
      `node's copy of ${hostPort(flow.client, flow.clientPort)} > ${hostPort(flow.server, flow.serverPort)}`,
      'outbound',
    );
    return true;
  };
  for (const action of actions) {
    switch (action.kind) {
      case 'change': {
        const at = changeTarget(spec, action.change, flows);
        const next = changed(spec, action.change, at);
        if (!next) break;
        const nextState = clusterState(next, objects);
        const applied = applyStateChange(live, nextState);
        live = applied.live;
        steerChanges(live);
        if (kubeProxy) flushStaleUdp(live, state, run.now());
        run.sync(live.compiled, kubeProxy ? staleUdpTest(spec, next) : undefined, describeChange(spec, action.change, at));
        followChange(flows, spec, next);
        count(tallies.changes, `${action.change.op} (${applied.change.path})`);
        spec = next;
        state = nextState;
        const { flow } = at;
        if (!flow || !action.after) break;
        const { packet, newConnection, copied } = action.after;
        let sentOn = flow;
        if (!newConnection) send(flow, packet, `first after the change, again ${tupleOf(flow)}`);
        else
          sentOn = open(
            { ...flow, clientPort: nextPort++, toBackend: undefined, nodeTuple: undefined, placed: undefined },
            packet,
            'after the change, open',
          );
        if (!copied || !copyByNode(sentOn, copied.address, copied.port)) break;
        count(tallies.copies, copyKind(compiled, live.compiled, sentOn));
        if (copied.reply) reply(sentOn, copied.reply, sentOn.nodeTuple);
        break;
      }
      case 'wait':
        run.wait(action.seconds, action.nanos);
        break;
      case 'nonIP': {
        const arp = buildFrame({
          srcMac: CLIENT_MAC,
          dstMac: 'ff:ff:ff:ff:ff:ff',
          vlans: action.vlans,
          ethertype: 0x0806,
          payload: new Uint8Array(28).fill(1),
        }).slice();
        run.run(arp, 'ARP', arrived);
        break;
      }
      case 'open':
      case 'burst': {
        const target = targetOf(action.target, action.family, compiled);
        const client = clientAddress(action.client, action.family, cluster);
        const ports = action.kind === 'open' ? [action.clientPort] : Array.from({ length: action.count }, () => 'fresh' as const);
        for (const port of ports) {
          open(
            { fam: action.family, client, clientPort: port === 'fresh' ? nextPort++ : port, ...target, masqueraded: false },
            action.packet,
            action.kind,
          );
        }
        break;
      }
      case 'again': {
        if (flows.length === 0) break;
        const flow = flows[action.flow % flows.length];
        send(flow, action.packet, `again ${tupleOf(flow)}`);
        break;
      }
      case 'reply': {
        if (flows.length === 0) break;
        const flow = flows[action.flow % flows.length];
        if (!flow.toBackend || flow.protocol === 'ICMP') break;
        reply(flow, action, action.toNodeTuple ? flow.nodeTuple : undefined);
        break;
      }
      case 'nodeCopy': {
        if (flows.length === 0) break;
        const flow = flows[action.flow % flows.length];
        copyByNode(flow, action.address, action.port, action.toPod === undefined ? undefined : podAddress(action.toPod, flow.fam));
        break;
      }
    }
  }
}

/**
 * What the ends of a flow whose request the node copied are, to the steer
 * map, against the state loaded: its backend one a change added, its
 * frontend one a change took (the map keeps it), or both as loaded. The
 * datapath classes the node's copies by that map and the model by the
 * frontends and backends every state had; they must agree on all three.
 */
function copyKind(loaded: Compiled, now: Compiled, flow: Flow): string {
  const sent = destinationOf(flow.toBackend!);
  const backend = `${sent.backend} ${flow.protocol}`;
  const frontend = `${hostPort(canonical(flow.server), flow.serverPort)} ${flow.protocol}`;
  const backends = (c: Compiled) => new Set(c.backends.map((b) => `${hostPort(canonical(b.ip), b.port)} ${b.protocol}`));
  const frontends = (c: Compiled) =>
    new Set(
      c.services.flatMap((s) => (s.removed ? [] : s.frontends.map((f) => `${hostPort(canonical(f.address), f.port)} ${f.protocol}`))),
    );
  if (!backends(loaded).has(backend)) return 'to a backend a change added';
  if (!frontends(now).has(frontend)) return 'for a frontend a change took';
  return 'to a backend and for a frontend as loaded';
}

const tupleOf = (flow: Flow) => `${flow.protocol} ${hostPort(flow.client, flow.clientPort)} > ${hostPort(flow.server, flow.serverPort)}`;

/** The client's packet of a flow; returns the outcomes of the frames that carried its L4 header (a later fragment does not). */
function sendFlow(run: SideBySide, flow: Flow, shape: PacketShape, what: string, direction?: 'inbound'): Outcome[] {
  const frame = frameOf(flow.fam, flow.client, flow.server, flow.protocol, flow.clientPort, flow.serverPort, shape, [CLIENT_MAC, NODE_MAC]);
  const headed: Outcome[] = [];
  for (const sent of asSent(frame, flow.fam, shape)) {
    const result = run.run(sent.frame, what, direction);
    if (sent.later) continue;
    headed.push(result);
    if (result.reason === 'SERVICE') {
      flow.toBackend = result.out;
      flow.masqueraded = result.snat;
    }
  }
  return headed;
}

/**
 * The property, for fc.assert: every generated cluster and traffic, decided
 * alike and as the oracle allows. `tally` counts outcomes ("TX SERVICE"),
 * `oracleTally` the rule that chose each checked flow's backends with its outcome.
 */
export function agreementProperty(tallies: Tallies = {}) {
  return fc.asyncProperty(clusterArb, actionsArb, (cluster, actions) => checkAgreement(cluster, actions, tallies));
}
