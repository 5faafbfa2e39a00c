/**
 * The compiler: a pure function from the cluster state (Services joined with
 * their endpoints, the Nodes, the proxy configuration and flags) to the
 * entries of the datapath's maps, the way Cilium's service manager turns
 * Services into lb4_services / lb4_backends / maglev / reverse-NAT entries.
 *
 * Per service port it compiles one frontend per address the port is reached
 * on (cluster IPs, this node's NodePort addresses, external IPs, load-balancer
 * IPs), a Maglev table of its usable backends cluster-wide and, when a Local
 * traffic policy needs it, one of its usable backends on this node. The
 * decision between them is the datapath's (datapath/policy.ts), per packet.
 *
 * Ids are dense and assigned in a sorted order, so the same state always
 * compiles to the same bytes.
 */
import ipaddr from 'ipaddr.js';
import { inputError } from '../common/errors.js';
import { BE_F_LOCAL, CFG_F, dottedQuad, IPPROTO, LB_SCOPE_EXTERNAL, SVC_F, type StructValue } from './layout.js';
import { isPrime, maglevTableOf, settled } from './maglev.js';
import { categorizeEndpoints, type EndpointSelection, type TopologyChoice, type TopologyService } from './topology.js';
import type {
  ClusterState,
  ConntrackTimeouts,
  EndpointsSource,
  Node,
  Protocol,
  ResolvedEndpoint,
  ResolvedPort,
  ResolvedService,
  Service,
  ServicePort,
} from '../cluster/state.js';

export interface CompileOptions {
  /** The emulated node (`--node`); may be omitted when the state has one Node. */
  node?: string;
  seed: number;
  maglevTableSize: number;
  /** `--` flags that override the KubeProxyConfiguration. */
  conntrack?: ConntrackTimeouts;
  clusterCIDRs?: string[];
  /** CIDRs, or `primary` alone; unset or empty means `primary`, as in kube-proxy's nftables mode. */
  nodePortAddresses?: string[];
  masqueradeAll?: boolean;
  /** Source address of masqueraded IPv4 flows; default the node's first IPv4 InternalIP. */
  masqueradeAddress?: string;
  /** The same for IPv6; default the node's first IPv6 InternalIP. */
  masqueradeAddress6?: string;
  /** Masquerade ports, default 1024-65535 as kube-proxy's fully random masquerade uses. */
  snatPortRange?: [number, number];
  /**
   * The service cluster IP ranges, for a state built by hand; a loaded state
   * carries its own (`serviceRanges`). None known: no address is UNALLOCATED_IP.
   */
  serviceClusterIPRanges?: string[];
  /**
   * What an established flow whose backend went does: `kube-proxy` (default) keeps its
   * DNAT to it, `cilium` chooses again on its next packet.
   */
  semantics?: DatapathSemantics;
}

export type DatapathSemantics = 'kube-proxy' | 'cilium';

/** Seconds, as kube-proxy (TCP) and the kernel's nf_conntrack (UDP) default them. */
export const DEFAULT_CONNTRACK_TIMEOUTS: Required<ConntrackTimeouts> = {
  tcpEstablishedTimeout: 86400,
  tcpCloseWaitTimeout: 3600,
  udpTimeout: 30,
  udpStreamTimeout: 120,
};

export const DEFAULT_SNAT_PORT_RANGE: [number, number] = [1024, 65535];

export interface CompiledBackend {
  id: number;
  /** The Service port (compiled id) whose endpoint this is. */
  serviceId: number;
  ip: string;
  port: number;
  protocol: Protocol;
  nodeName?: string;
  /** The endpoint's zone: its EndpointSlice's `zone`, else its Node's zone label; for reports. */
  zone?: string;
  local: boolean;
}

export type FrontendKind = 'ClusterIP' | 'NodePort' | 'ExternalIP' | 'LoadBalancer';

export interface CompiledFrontend {
  kind: FrontendKind;
  address: string;
  port: number;
  protocol: Protocol;
  revNatIndex: number;
}

export type { EndpointSelection } from './topology.js';

export interface BackendSet {
  /** Backend ids, ascending. */
  backendIds: number[];
  selection: EndpointSelection;
  /** Slot -> backend id; empty when the set is empty. */
  maglev: Uint32Array;
}

export interface CompiledService {
  id: number;
  /** "ns/name:port-name", or the port number when the port is unnamed. */
  name: string;
  service: Service;
  port: ServicePort;
  frontends: CompiledFrontend[];
  /** Every usable IPv4 endpoint (table 4 * id). */
  cluster: BackendSet;
  /** The usable IPv4 endpoints on this node (table 4 * id + 1); compiled only when a Local policy needs it. */
  local?: BackendSet;
  /** The same for IPv6 (tables 4 * id + 2 and + 3). */
  cluster6: BackendSet;
  local6?: BackendSet;
  /**
   * Endpoints known but not used for new flows from this node: not ready, terminating
   * while others are ready, or left out by the topology filter.
   */
  unusableEndpoints: number;
  /** The topology filter that chose each family's cluster-wide set, or why none did (control/compile/topology.ts). */
  topology: Record<Family, TopologyChoice>;
  /** Where the Service's endpoints came from, when resolveServices says. */
  endpointsFrom?: EndpointsSource;
  /**
   * A Service port a live program no longer serves (control/runtime/rebase.ts): kept at its
   * id, with its frontends and empty backend sets, so that its established flows keep a name.
   */
  removed?: true;
}

export interface SkippedService {
  service: string;
  reason: string;
}

/** The entries of one address family's maps (lb4_* or lb6_*). */
export interface FamilyEntries {
  services: Array<{ key: StructValue; value: StructValue }>;
  backends: Array<{ id: number; value: StructValue }>;
  revnat: Array<{ index: number; value: StructValue }>;
  sourceRanges: StructValue[];
  /** The known service cluster IP ranges (LPM keys): inside one and no cluster IP is UNALLOCATED_IP. */
  serviceRanges: StructValue[];
  nodeIps: string[];
}

export interface MapEntries {
  config: StructValue;
  /** Table id 4 * service id + 2 * (IPv6) + (local) -> backend id per slot. */
  maglev: Array<{ table: number; slots: Uint32Array }>;
  lbMembers: StructValue[];
  v4: FamilyEntries;
  v6: FamilyEntries;
}

export type Family = 'v4' | 'v6';

/** The datapath-wide settings a replay ran with, for the summary. */
export interface DatapathSettings {
  nodeAddresses: string[];
  nodePortAddresses: string[];
  /** The pod network (one CIDR per family, comma-separated), or null when unknown (then nothing is a pod). */
  podNetwork: string | null;
  /** The known service cluster IP ranges, comma-separated, or null when unknown. */
  serviceNetwork: string | null;
  masqueradeAddress: string | null;
  snatPorts: string;
  maglevTableSize: number;
  seed: number;
  conntrackTimeouts: Required<ConntrackTimeouts>;
}

export interface Compiled {
  node?: string;
  /** The emulated node's zone label. */
  zone?: string;
  settings: DatapathSettings;
  maglevTableSize: number;
  services: CompiledService[];
  backends: CompiledBackend[];
  skipped: SkippedService[];
  notes: string[];
  entries: MapEntries;
}

/** The emulated node: `--node`, or the only Node of the state. */
export function emulatedNode(state: ClusterState, requested: string | undefined): string | undefined {
  const names = state.nodes.map((n) => n.name);
  if (requested !== undefined) {
    if (!names.includes(requested)) {
      throw inputError(['--node'], `no Node named "${requested}" in the cluster state (Nodes: ${names.join(', ') || 'none'})`);
    }
    return requested;
  }
  if (names.length > 1) {
    throw inputError(
      ['--node'],
      `required: the cluster state has ${names.length} Nodes (${names.join(', ')}); say which one's datapath to emulate`,
    );
  }
  return names[0];
}

/** A compiled Service port's name: "ns/name:port-name", or the port number when the port is unnamed. */
export function serviceName(svc: Service, portName: string, port: number): string {
  return `${svc.namespace}/${svc.name}:${portName || port}`;
}

/** Why a Service gets no datapath entries, or undefined when it gets some. */
export function skipReason(svc: Service): string | undefined {
  if (svc.type === 'ExternalName') return `ExternalName (${svc.externalName}): answered by DNS, no datapath entries`;
  if (svc.clusterIPs[0] === 'None') return 'headless (clusterIP None): no datapath entries';
  if (svc.clusterIPs.length === 0) return 'no clusterIP assigned';
  return undefined;
}

/** The family of a valid address: only IPv6 has colons. */
const isV4 = (ip: string) => !ip.includes(':');
export const familyOf = (ip: string): Family => (isV4(ip) ? 'v4' : 'v6');

function inAny(ip: string, cidrs: readonly string[]): boolean {
  const addr = ipaddr.parse(ip);
  return cidrs.some((c) => {
    const [net, bits] = ipaddr.parseCIDR(c);
    return net.kind() === addr.kind() && addr.match(net, bits);
  });
}

/** A CIDR in canonical form: its network address and prefix length. */
function cidrText(cidr: string): string {
  const [net, bits] = ipaddr.parseCIDR(cidr);
  return `${(net.kind() === 'ipv4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr)).toString()}/${bits}`;
}

/** The first CIDR of a family, as network and netmask. */
function network(cidrs: readonly string[], family: Family): { net: string; mask: string; cidr: string } | undefined {
  const c = cidrs.map((x) => ipaddr.parseCIDR(x)).find(([net]) => net.kind() === (family === 'v4' ? 'ipv4' : 'ipv6'));
  if (!c) return undefined;
  const cidr = `${c[0].toString()}/${c[1]}`;
  const net = (family === 'v4' ? ipaddr.IPv4.networkAddressFromCIDR(cidr) : ipaddr.IPv6.networkAddressFromCIDR(cidr)).toString();
  const mask = (family === 'v4' ? ipaddr.IPv4.subnetMaskFromPrefixLength(c[1]) : ipaddr.IPv6.subnetMaskFromPrefixLength(c[1])).toString();
  return { net, mask, cidr: `${net}/${c[1]}` };
}

export interface NodeAddresses {
  /** InternalIPs and ExternalIPs. */
  all: string[];
  /** The ones NodePorts listen on. */
  nodePort: string[];
  primary?: string;
  primary6?: string;
}

/** This node's addresses (InternalIP, ExternalIP), and the ones its NodePorts listen on. */
/**
 * The node's addresses, and those NodePorts are served on: `nodePortAddresses`, or when it is
 * empty the primary ones (nftables mode) or all of them (`allByDefault`: iptables and ipvs modes).
 */
function nodeAddresses(node: Node | undefined, nodePortAddresses: readonly string[], allByDefault: boolean): NodeAddresses {
  const all = (node?.addresses ?? []).filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address);
  const firstOf = (type: string, family: string) =>
    node?.addresses.find((a) => a.type === type && ipaddr.parse(a.address).kind() === family)?.address;
  // kube-proxy's node IP of a family (GetNodeHostIPs): InternalIPs come first, ExternalIPs only when no InternalIP is of that family.
  const nodeIP = (family: string) => firstOf('InternalIP', family) ?? firstOf('ExternalIP', family);
  const primary = [nodeIP('ipv4'), nodeIP('ipv6')].filter((a): a is string => !!a).map((ip) => `${ip}/${ip.includes(':') ? 128 : 32}`);
  // The nftables mode defaults an unset or empty list to "primary" (cmd/kube-proxy/app/server_linux.go, platformApplyDefaults);
  // the other modes leave it empty, which serves every address (no CIDR of a family: all of it).
  const defaulted = allByDefault ? [] : primary;
  const cidrs = nodePortAddresses.length === 0 ? defaulted : nodePortAddresses[0] === 'primary' ? primary : nodePortAddresses;
  const nodePort = all.filter((ip) => nodePortServedOn(ip, cidrs));
  return { all, nodePort, primary: firstOf('InternalIP', 'ipv4'), primary6: firstOf('InternalIP', 'ipv6') };
}

/**
 * Whether a NodePort is served on a node address, as kube-proxy's NewNodePortAddresses
 * (pkg/proxy/util/nodeport_addresses.go) builds each family's list: a family that none
 * of the CIDRs is of is served on all its addresses, as if given 0.0.0.0/0 or ::/0.
 */
function nodePortServedOn(ip: string, cidrs: readonly string[]): boolean {
  const family = ipaddr.parse(ip).kind();
  const ofFamily = cidrs.filter((c) => ipaddr.parseCIDR(c)[0].kind() === family);
  return ofFamily.length === 0 || inAny(ip, ofFamily);
}

/**
 * A backend is one Service port's endpoint: (Service port, address, port,
 * protocol). An endpoint that two Services share (a Helm chart's ClusterIP
 * and LoadBalancer pair) is two backends, so that each Service's flows,
 * packets and bytes are counted as its own; the datapath only ever reaches a
 * backend through its Service's tables and conntrack entries.
 */
export const backendKey = (serviceId: number, ip: string, port: number, protocol: Protocol) => `${serviceId} ${protocol} ${ip} ${port}`;

/** What compiling one Service port needs from the rest of the state. */
export interface ServiceContext {
  /** The emulated node. */
  nodeName?: string;
  /** Its `topology.kubernetes.io/zone` label, what zone hints are matched against. */
  zone?: string;
  /** Every Node's zone label, by Node name: the zone of an endpoint whose slice names none. */
  nodeZones: ReadonlyMap<string, string>;
  addresses: NodeAddresses;
  maglevTableSize: number;
  seed: number;
  /** The id of this Service port's backend (address, port, protocol); every endpoint has one. */
  backendId(ip: string, port: number, protocol: Protocol): number;
}

/** The part of a ServiceContext that comes from the node and the options; backend ids are the caller's, per Service port. */
export type NodeContext = Omit<ServiceContext, 'backendId'>;

export function nodeContext(state: ClusterState, opts: CompileOptions): NodeContext {
  const nodeName = emulatedNode(state, opts.node);
  const node = state.nodes.find((n) => n.name === nodeName);
  const allByDefault = notNftablesMode(state.proxyConfig);
  const addresses = nodeAddresses(node, opts.nodePortAddresses ?? state.proxyConfig?.nodePortAddresses ?? [], allByDefault);
  const nodeZones = new Map(state.nodes.filter((n) => n.zone).map((n) => [n.name, n.zone!]));
  return { nodeName, zone: node?.zone, nodeZones, addresses, maglevTableSize: opts.maglevTableSize, seed: opts.seed };
}

/**
 * A KubeProxyConfiguration of another mode than nftables (empty: iptables, kube-proxy's default on
 * Linux), which serves NodePorts on every node address by default.
 */
function notNftablesMode(config: ClusterState['proxyConfig']): config is NonNullable<ClusterState['proxyConfig']> {
  return config !== undefined && config.mode !== 'nftables';
}

/** An endpoint's zone: its EndpointSlice's `zone`, else the zone label of the Node it names. */
export function endpointZone(ep: Pick<ResolvedEndpoint, 'zone' | 'nodeName'>, nodeZones: ReadonlyMap<string, string>): string | undefined {
  return ep.zone || (ep.nodeName !== undefined ? nodeZones.get(ep.nodeName) : undefined);
}

/** Compile order between two Services (or anything named like one): by namespace, then name. */
export function compareServices(a: { namespace: string; name: string }, b: { namespace: string; name: string }): number {
  return a.namespace.localeCompare(b.namespace) || a.name.localeCompare(b.name);
}

/** Services in compile order, which gives them their ids. */
export function compileOrder(resolved: readonly ResolvedService[]): ResolvedService[] {
  return [...resolved].sort((a, b) => compareServices(a.service, b.service));
}

/** The Service ports that get compiled, with the ids they get: in compile order, skipped Services left out. */
function compiledPorts(ordered: readonly ResolvedService[]): Array<{ rp: ResolvedPort; id: number }> {
  return ordered
    .filter((rs) => !skipReason(rs.service))
    .flatMap((rs) => rs.ports)
    .map((rp, i) => ({ rp, id: i + 1 }));
}

/** One Service port's backends by endpoint port, then address: the endpoints' own strings are the keys, no key is built per endpoint. */
type PortBackends = Map<number, Map<string, CompiledBackend>>;

/**
 * Backends: one per Service port and distinct (address, port, protocol) of
 * its endpoints, usable or not, both families, with dense ids in address
 * order (then Service port order, for an endpoint Services share). A Service
 * port has one protocol, so its backends are told apart by address and port.
 */
function compileBackends(
  ports: ReturnType<typeof compiledPorts>,
  { nodeName, nodeZones }: NodeContext,
): { byPort: PortBackends[]; sorted: CompiledBackend[] } {
  const byPort: PortBackends[] = [];
  const all: CompiledBackend[] = [];
  for (const { rp, id: serviceId } of ports) {
    const backends: PortBackends = new Map();
    byPort[serviceId] = backends;
    for (const ep of rp.endpoints) {
      let byAddress = backends.get(ep.port);
      if (!byAddress) backends.set(ep.port, (byAddress = new Map()));
      const local = nodeName !== undefined && ep.nodeName === nodeName;
      const known = byAddress.get(ep.ip);
      // kube-proxy favours "local" if duplicate endpoints disagree.
      if (known && (known.local || !local)) continue;
      const b = compiledBackend(serviceId, ep, rp.port.protocol, endpointZone(ep, nodeZones), local);
      byAddress.set(ep.ip, b);
      if (known) all[all.indexOf(known)] = b;
      else all.push(b);
    }
  }
  const sorted = sortBackends(all);
  sorted.forEach((b, i) => {
    b.id = i + 1;
  });
  return { byPort, sorted };
}

function compiledBackend(
  serviceId: number,
  ep: ResolvedEndpoint,
  protocol: Protocol,
  zone: string | undefined,
  local: boolean,
): CompiledBackend {
  const { ip, port, nodeName } = ep;
  // Two literals, so that a backend without a zone has no `zone` key and every backend one shape.
  return zone ? { id: 0, serviceId, ip, port, protocol, nodeName, zone, local } : { id: 0, serviceId, ip, port, protocol, nodeName, local };
}

/**
 * Backends in id order: by address, port, protocol, then Service port. An IPv4
 * backend's address and port make one number (below 2^48), so most comparisons
 * are one subtraction; IPv6 addresses sort after every IPv4 one, by their bytes.
 */
function sortBackends(backends: CompiledBackend[]): CompiledBackend[] {
  const v4Keys = new Float64Array(backends.length);
  const v6Bytes: number[][] = [];
  backends.forEach((b, i) => {
    const v4 = dottedQuad(b.ip);
    if (v4 >= 0) v4Keys[i] = v4 * 65536 + b.port;
    else {
      const bytes = ipaddr.parse(b.ip).toByteArray();
      if (bytes.length === 4) v4Keys[i] = bytes.reduce((n, byte) => n * 256 + byte, 0) * 65536 + b.port;
      else {
        v4Keys[i] = Number.POSITIVE_INFINITY;
        v6Bytes[i] = bytes;
      }
    }
  });
  const order = backends.map((_, i) => i);
  order.sort((x, y) => {
    const bx = backends[x];
    const by = backends[y];
    return (
      compareV4Keys(v4Keys[x], v4Keys[y]) ||
      compareBytes(v6Bytes[x], v6Bytes[y]) ||
      bx.port - by.port ||
      (bx.protocol < by.protocol ? -1 : bx.protocol > by.protocol ? 1 : 0) ||
      bx.serviceId - by.serviceId
    );
  });
  return order.map((i) => backends[i]);
}

/** Two IPv4 keys compared; 0 also for two IPv6 addresses (both infinite), which their bytes decide. */
function compareV4Keys(x: number, y: number): number {
  return x === y ? 0 : x < y ? -1 : 1;
}

function compareBytes(x: readonly number[] | undefined, y: readonly number[] | undefined): number {
  if (x === undefined || y === undefined) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

/** A Maglev table over the usable endpoints, holding backend ids; built when first read (a getter that maglev.ts settled replaces with the table). */
function backendSet(
  ctx: ServiceContext,
  usable: { endpoints: readonly ResolvedEndpoint[]; selection: EndpointSelection },
  protocol: Protocol,
): BackendSet {
  const { endpoints } = usable;
  const ids = endpoints.map((e) => ctx.backendId(e.ip, e.port, protocol));
  const backendIds = ascendingUnique(ids);
  if (backendIds.length === 0) return { backendIds, selection: usable.selection, maglev: EMPTY_TABLE };
  const { maglevTableSize, seed } = ctx;
  // Endpoints of one id share their address and port, so any of them names the backend.
  const build = () => {
    const names = new Map(endpoints.map((e, i) => [ids[i], `${e.ip}:${e.port}`]));
    return maglevTableOf(
      backendIds.map((id) => names.get(id)!),
      backendIds,
      maglevTableSize,
      seed,
    );
  };
  const set: BackendSet = {
    backendIds,
    selection: usable.selection,
    get maglev() {
      return settled(set, 'maglev', build());
    },
  };
  return set;
}

/** Distinct ids, ascending; a list already so (endpoints in address order) is kept, not copied. */
function ascendingUnique(ids: number[]): number[] {
  for (let i = 1; i < ids.length; i++) if (ids[i] <= ids[i - 1]) return [...new Set(ids)].sort((a, b) => a - b);
  return ids;
}

const EMPTY_TABLE = new Uint32Array(0);

/** How a Service is reached, shared by its ports. */
interface ServiceShape {
  lbIPs: string[];
  nodePortAddresses: string[];
  sourceRanges: string[];
}

function serviceShape(ctx: NodeContext, svc: Service): ServiceShape {
  const lbIPs = svc.type === 'LoadBalancer' ? svc.loadBalancerIngress.filter((i) => i.ip && i.ipMode !== 'Proxy').map((i) => i.ip!) : [];
  // kube-proxy runs one proxier per family, and each serves a Service's
  // NodePorts only in the families of its cluster IPs.
  const serviceFamilies = new Set(svc.clusterIPs.map(familyOf));
  return {
    lbIPs,
    nodePortAddresses: ctx.addresses.nodePort.filter((a) => serviceFamilies.has(familyOf(a))),
    sourceRanges: svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [],
  };
}

/** One frontend per address the port is reached on; reverse-NAT indices from `revNatIndex + 1`. */
function compileFrontends(svc: Service, p: ServicePort, shape: ServiceShape, revNatIndex: number): CompiledFrontend[] {
  const kinds: Array<[FrontendKind, string, number]> = [
    ...svc.clusterIPs.map((a): [FrontendKind, string, number] => ['ClusterIP', a, p.port]),
    ...(p.nodePort ? shape.nodePortAddresses.map((a): [FrontendKind, string, number] => ['NodePort', a, p.nodePort!]) : []),
    ...svc.externalIPs.map((a): [FrontendKind, string, number] => ['ExternalIP', a, p.port]),
    ...shape.lbIPs.map((a): [FrontendKind, string, number] => ['LoadBalancer', a, p.port]),
  ];
  return kinds.map(
    ([kind, address, port]): CompiledFrontend => ({ kind, address, port, protocol: p.protocol, revNatIndex: ++revNatIndex }),
  );
}

/** The endpoint-dependent part of a compiled Service port: what an EndpointSlice change recompiles. */
export type ServiceBackends = Pick<CompiledService, 'cluster' | 'local' | 'cluster6' | 'local6' | 'unusableEndpoints' | 'topology'>;

/** The backend sets of one Service port (its frontends decide whether a Local policy needs the local ones). */
export function compileServiceBackends(
  ctx: ServiceContext,
  svc: Service,
  rp: ResolvedPort,
  frontends: readonly CompiledFrontend[],
): ServiceBackends {
  const topologyService: TopologyService = {
    internalTrafficPolicy: svc.internalTrafficPolicy,
    externalTrafficPolicy: svc.externalTrafficPolicy,
    trafficDistribution: svc.trafficDistribution,
    topologyAnnotation: svc.topologyAnnotation,
    externallyAccessible: frontends.some((f) => f.kind !== 'ClusterIP'),
  };
  const node = { name: ctx.nodeName, zone: ctx.zone };
  // kube-proxy runs one proxier per family, each categorising its family's endpoints.
  const sets = (endpoints: readonly ResolvedEndpoint[]) => {
    const sorted = categorizeEndpoints(topologyService, endpoints, node);
    return {
      cluster: backendSet(ctx, sorted.cluster, rp.port.protocol),
      local: sorted.local ? backendSet(ctx, sorted.local, rp.port.protocol) : undefined,
      topology: sorted.topology,
    };
  };
  const { v4: endpoints4, v6: endpoints6 } = endpointsByFamily(rp.endpoints);
  const v4 = sets(endpoints4);
  const v6 = sets(endpoints6);
  return {
    cluster: v4.cluster,
    local: v4.local,
    cluster6: v6.cluster,
    local6: v6.local,
    unusableEndpoints: rp.endpoints.length - v4.cluster.backendIds.length - v6.cluster.backendIds.length,
    topology: { v4: v4.topology, v6: v6.topology },
  };
}

/** A Service port's endpoints of each family; a single-family port's list is not copied. */
function endpointsByFamily(endpoints: readonly ResolvedEndpoint[]): Record<Family, readonly ResolvedEndpoint[]> {
  const v4 = endpoints.filter((e) => isV4(e.ip));
  if (v4.length === endpoints.length) return { v4: endpoints, v6: [] };
  if (v4.length === 0) return { v4: [], v6: endpoints };
  return { v4, v6: endpoints.filter((e) => !isV4(e.ip)) };
}

/** The notes a compiled Service port earns. */
export function serviceNotes(cs: CompiledService, M: number): string[] {
  return [cs.cluster, cs.cluster6]
    .filter((set) => set.backendIds.length > M)
    .map((set) => `${cs.name}: ${set.backendIds.length} backends exceed the Maglev table size ${M}; some get no slot`);
}

/** A frontend's lb4_services / lb6_services entry. */
export function frontendEntry(cs: CompiledService, f: CompiledFrontend): { family: Family; key: StructValue; value: StructValue } {
  const svc = cs.service;
  let flags = svc.sessionAffinity === 'ClientIP' ? SVC_F.AFFINITY : 0;
  if (f.kind === 'ClusterIP') flags |= SVC_F.CLUSTER_IP | (svc.internalTrafficPolicy === 'Local' ? SVC_F.INT_LOCAL : 0);
  else {
    flags |= { NodePort: SVC_F.NODEPORT, ExternalIP: SVC_F.EXTERNAL_IP, LoadBalancer: SVC_F.LOADBALANCER }[f.kind];
    if (svc.externalTrafficPolicy === 'Local') flags |= SVC_F.EXT_LOCAL;
    // Source ranges guard the load-balancer IPs only, not NodePorts or external IPs, and each
    // family by its own ranges: kube-proxy keeps one per family, none meaning no firewall.
    if (
      f.kind === 'LoadBalancer' &&
      svc.type === 'LoadBalancer' &&
      svc.loadBalancerSourceRanges.some((c) => familyOf(ipaddr.parseCIDR(c)[0].toString()) === familyOf(f.address))
    ) {
      flags |= SVC_F.SOURCE_RANGE;
    }
  }
  const family = familyOf(f.address);
  const [cluster, local] = family === 'v4' ? [cs.cluster, cs.local] : [cs.cluster6, cs.local6];
  return {
    family,
    key: { address: f.address, port: f.port, proto: IPPROTO[f.protocol], scope: LB_SCOPE_EXTERNAL },
    value: {
      serviceId: cs.id,
      backendCount: cluster.backendIds.length,
      localBackendCount: local?.backendIds.length ?? 0,
      flags,
      affinityTimeout: svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds : 0,
      revNatIndex: f.revNatIndex,
    },
  };
}

/** The Maglev tables of a Service port with their ids (4 * id + 2 * (IPv6) + (local)); empty sets get none. */
export function serviceTables(cs: CompiledService): Array<{ table: number; set: BackendSet }> {
  const tables = [
    [cs.cluster, 4 * cs.id],
    [cs.local, 4 * cs.id + 1],
    [cs.cluster6, 4 * cs.id + 2],
    [cs.local6, 4 * cs.id + 3],
  ] as const;
  return tables.filter(([set]) => set && set.backendIds.length > 0).map(([set, table]) => ({ table, set: set! }));
}

/** A backend's lb4_backends / lb6_backends value. */
export function backendValue(b: CompiledBackend): StructValue {
  return { address: b.ip, port: b.port, proto: IPPROTO[b.protocol], flags: b.local ? BE_F_LOCAL : 0 };
}

/** Appends a Service port's Maglev tables and their members. */
export function addTableEntries(entries: Pick<MapEntries, 'maglev' | 'lbMembers'>, cs: CompiledService): void {
  for (const { table, set } of serviceTables(cs)) {
    // Read when the entry is: the set builds its table on first use.
    const entry = {
      table,
      get slots() {
        return settled(entry, 'slots', set.maglev);
      },
    };
    entries.maglev.push(entry);
    for (const backendId of set.backendIds) entries.lbMembers.push({ table, backendId });
  }
}

/** Appends one Service port's entries. */
function addServiceEntries(ctx: NodeContext, entries: MapEntries, cs: CompiledService, shape: ServiceShape): void {
  for (const f of cs.frontends) {
    const { family, key, value } = frontendEntry(cs, f);
    entries[family].services.push({ key, value });
    entries[family].revnat.push({ index: f.revNatIndex, value: { address: f.address, port: f.port } });
  }
  addTableEntries(entries, cs);
  const { lbIPs, sourceRanges } = shape;
  for (const cidr of lbIPs.length > 0 ? sourceRanges : []) {
    const [net, bits] = ipaddr.parseCIDR(cidr);
    entries[net.kind() === 'ipv4' ? 'v4' : 'v6'].sourceRanges.push({ prefixlen: 32 + bits, serviceId: cs.id, address: net.toString() });
  }
  // A node inside the ranges reaches a VIP-style LB IP with the LB IP itself as source.
  if (sourceRanges.length > 0 && ctx.addresses.all.some((ip) => inAny(ip, sourceRanges))) {
    for (const ip of lbIPs) {
      entries[familyOf(ip)].sourceRanges.push({ prefixlen: 32 + (isV4(ip) ? 32 : 128), serviceId: cs.id, address: ip });
    }
  }
}

/** The note of a state with IPv6 frontends but no IPv6 masquerade address: it depends on every Service, not on one. */
export const NO_IPV6_MASQUERADE_NOTE =
  'no IPv6 masquerade address (the node has no IPv6 InternalIP): IPv6 flows that need SNAT are dropped';

export function compile(state: ClusterState, resolved: readonly ResolvedService[], opts: CompileOptions): Compiled {
  const ordered = compileOrder(resolved);
  const node = nodeContext(state, opts);
  const { byPort, sorted: backends } = compileBackends(compiledPorts(ordered), node);
  const { nodeName, zone, nodeZones, addresses, maglevTableSize, seed } = node;
  // A literal, not a spread of `node`: one per Service port.
  const portContext = (serviceId: number): ServiceContext => ({
    nodeName,
    zone,
    nodeZones,
    addresses,
    maglevTableSize,
    seed,
    backendId: (ip, port) => byPort[serviceId].get(port)!.get(ip)!.id,
  });
  const M = opts.maglevTableSize;
  if (!isPrime(M)) throw new RangeError(`Maglev table size ${M} is not prime`);
  const notes: string[] = [];
  const skipped: SkippedService[] = [];
  const clusterCIDRs = opts.clusterCIDRs ?? state.proxyConfig?.clusterCIDRs ?? [];
  const masqueradeAddress = opts.masqueradeAddress ?? addresses.primary;
  if (!masqueradeAddress) notes.push('no IPv4 masquerade address (the node has no IPv4 InternalIP): IPv4 flows that need SNAT are dropped');
  const config = state.proxyConfig;
  if (notNftablesMode(config)) {
    notes.push(
      `${config.origin.file}: ${config.origin.object}: KubeProxyConfiguration mode ${JSON.stringify(config.mode)}${config.mode ? '' : ' (iptables)'}: ` +
        'svcpath decides as the nftables mode does, except that NodePorts are served on every node address unless nodePortAddresses or --nodeport-addresses says otherwise, as that mode does',
    );
  }

  const services: CompiledService[] = [];
  const entries: MapEntries = {
    config: {},
    maglev: [],
    lbMembers: [],
    v4: { services: [], backends: [], revnat: [], sourceRanges: [], serviceRanges: [], nodeIps: addresses.all.filter(isV4) },
    v6: { services: [], backends: [], revnat: [], sourceRanges: [], serviceRanges: [], nodeIps: addresses.all.filter((a) => !isV4(a)) },
  };
  const wildcards = new Set<string>();
  let revNatIndex = 0;
  for (const rs of ordered) {
    const svc = rs.service;
    const why = skipReason(svc);
    if (why) {
      skipped.push({ service: `${svc.namespace}/${svc.name}`, reason: why });
      continue;
    }
    for (const ip of svc.clusterIPs) {
      if (wildcards.has(ip)) continue;
      wildcards.add(ip);
      entries[familyOf(ip)].services.push({
        key: { address: ip, port: 0, proto: 0, scope: LB_SCOPE_EXTERNAL },
        value: { serviceId: 0, flags: SVC_F.WILDCARD },
      });
    }
    const shape = serviceShape(node, svc);
    for (const rp of rs.ports) {
      const p = rp.port;
      const frontends = compileFrontends(svc, p, shape, revNatIndex);
      revNatIndex += frontends.length;
      const id = services.length + 1;
      const cs: CompiledService = {
        id,
        name: serviceName(svc, p.name, p.port),
        service: svc,
        port: p,
        frontends,
        ...compileServiceBackends(portContext(id), svc, rp, frontends),
        ...(rs.endpointsFrom ? { endpointsFrom: rs.endpointsFrom } : {}),
      };
      notes.push(...serviceNotes(cs, M));
      services.push(cs);
      addServiceEntries(node, entries, cs, shape);
    }
  }
  for (const b of backends) entries[familyOf(b.ip)].backends.push({ id: b.id, value: backendValue(b) });

  const conntrack = { ...DEFAULT_CONNTRACK_TIMEOUTS };
  for (const source of [state.proxyConfig?.conntrack, opts.conntrack]) {
    for (const [k, v] of Object.entries(source ?? {})) {
      if (v !== undefined) conntrack[k as keyof ConntrackTimeouts] = v;
    }
  }
  const serviceRanges = opts.serviceClusterIPRanges ?? state.serviceRanges?.cidrs ?? [];
  for (const cidr of serviceRanges.map(cidrText)) {
    const [net, bits] = ipaddr.parseCIDR(cidr);
    entries[familyOf(net.toString())].serviceRanges.push({ prefixlen: bits, address: net.toString() });
  }
  const podNet = network(clusterCIDRs, 'v4');
  const podNet6 = network(clusterCIDRs, 'v6');
  const masqueradeAddress6 = opts.masqueradeAddress6 ?? addresses.primary6;
  const hasV6Frontends = entries.v6.services.some((e) => (e.value.flags as number) !== SVC_F.WILDCARD);
  if (hasV6Frontends && !masqueradeAddress6) notes.push(NO_IPV6_MASQUERADE_NOTE);
  const [portMin, portMax] = opts.snatPortRange ?? DEFAULT_SNAT_PORT_RANGE;
  entries.config = {
    seed: opts.seed >>> 0,
    ctTcpEstablished: conntrack.tcpEstablishedTimeout,
    ctTcpClosing: conntrack.tcpCloseWaitTimeout,
    ctUdp: conntrack.udpTimeout,
    ctUdpStream: conntrack.udpStreamTimeout,
    flags:
      (opts.masqueradeAll ? CFG_F.MASQUERADE_ALL : 0) |
      (podNet ? CFG_F.POD_CIDR4 : 0) |
      (podNet6 ? CFG_F.POD_CIDR6 : 0) |
      (masqueradeAddress6 ? CFG_F.SNAT_ADDR6 : 0) |
      (opts.semantics === 'cilium' ? CFG_F.RESELECT_GONE : 0),
    snatAddress: masqueradeAddress && isV4(masqueradeAddress) ? masqueradeAddress : '0.0.0.0',
    snatPortMin: masqueradeAddress ? portMin : 0,
    snatPortMax: masqueradeAddress ? portMax : 0,
    podCidr: podNet?.net ?? '0.0.0.0',
    podMask: podNet?.mask ?? '0.0.0.0',
    snatAddress6: masqueradeAddress6 ?? '::',
    podCidr6: podNet6?.net ?? '::',
    podMask6: podNet6?.mask ?? '::',
  };
  const settings: DatapathSettings = {
    nodeAddresses: addresses.all,
    nodePortAddresses: addresses.nodePort,
    podNetwork: [podNet?.cidr, podNet6?.cidr].filter((c) => c).join(',') || null,
    serviceNetwork: serviceRanges.map(cidrText).join(',') || null,
    masqueradeAddress: [masqueradeAddress, masqueradeAddress6].filter((c) => c).join(',') || null,
    snatPorts: `${portMin}-${portMax}`,
    maglevTableSize: M,
    seed: opts.seed,
    conntrackTimeouts: conntrack,
  };
  return {
    node: node.nodeName,
    ...(node.zone ? { zone: node.zone } : {}),
    settings,
    maglevTableSize: M,
    services,
    backends,
    skipped,
    notes,
    entries,
  };
}
