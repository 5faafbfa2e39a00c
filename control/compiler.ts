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
import { inputError } from './errors.js';
import { BE_F_LOCAL, CFG_F, IPPROTO, LB_SCOPE_EXTERNAL, SVC_F, type StructValue } from './layout.js';
import { maglevTable } from './maglev.js';
import type {
  ClusterState, ConntrackTimeouts, Node, Protocol, ResolvedEndpoint, ResolvedService, Service, ServicePort,
} from './model.js';

export interface CompileOptions {
  /** The emulated node (`--node`); may be omitted when the state has one Node. */
  node?: string;
  seed: number;
  maglevTableSize: number;
  /** `--` flags that override the KubeProxyConfiguration. */
  conntrack?: ConntrackTimeouts;
  clusterCIDRs?: string[];
  nodePortAddresses?: string[];
  masqueradeAll?: boolean;
  /** Source address of masqueraded IPv4 flows; default the node's first IPv4 InternalIP. */
  masqueradeAddress?: string;
  /** The same for IPv6; default the node's first IPv6 InternalIP. */
  masqueradeAddress6?: string;
  /** Masquerade ports, default 1024-65535 as kube-proxy's fully random masquerade uses. */
  snatPortRange?: [number, number];
  /** The API server's --service-cluster-ip-range; default 10.96.0.0/12. */
  serviceClusterIPRanges?: string[];
}

/** Seconds, as kube-proxy (TCP) and the kernel's nf_conntrack (UDP) default them. */
export const DEFAULT_CONNTRACK_TIMEOUTS: Required<ConntrackTimeouts> = {
  tcpEstablishedTimeout: 86400,
  tcpCloseWaitTimeout: 3600,
  udpTimeout: 30,
  udpStreamTimeout: 120,
};

export const DEFAULT_SNAT_PORT_RANGE: [number, number] = [1024, 65535];
export const DEFAULT_SERVICE_CLUSTER_IP_RANGES = ['10.96.0.0/12'];

export interface CompiledBackend {
  id: number;
  ip: string;
  port: number;
  protocol: Protocol;
  nodeName?: string;
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

/** Which endpoints new flows may use (KEP-1669: terminating ones only as a last resort). */
export type EndpointSelection = 'ready' | 'serving-terminating' | 'none';

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
  /** Endpoints known but not used for new flows (not ready, or terminating while others are ready). */
  unusableEndpoints: number;
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
  serviceNetwork: string | null;
  masqueradeAddress: string | null;
  snatPorts: string;
  maglevTableSize: number;
  seed: number;
  conntrackTimeouts: Required<ConntrackTimeouts>;
}

export interface Compiled {
  node?: string;
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
    throw inputError(['--node'], `required: the cluster state has ${names.length} Nodes (${names.join(', ')}); say which one's datapath to emulate`);
  }
  return names[0];
}

/**
 * The endpoints new flows may use, as kube-proxy's CategorizeEndpoints picks
 * them (for the cluster-wide and the local set separately): the ready ones;
 * when none is ready, those still serving while terminating (KEP-1669).
 */
export function usableEndpoints(endpoints: readonly ResolvedEndpoint[]): { endpoints: ResolvedEndpoint[]; selection: EndpointSelection } {
  const ready = endpoints.filter((e) => e.conditions.ready);
  if (ready.length > 0) return { endpoints: ready, selection: 'ready' };
  const draining = endpoints.filter((e) => e.conditions.serving && e.conditions.terminating);
  if (draining.length > 0) return { endpoints: draining, selection: 'serving-terminating' };
  return { endpoints: [], selection: 'none' };
}

function serviceName(svc: Service, portName: string, port: number): string {
  return `${svc.namespace}/${svc.name}:${portName || port}`;
}

/** Why a Service gets no datapath entries, or undefined when it gets some. */
function skipReason(svc: Service): string | undefined {
  if (svc.type === 'ExternalName') return `ExternalName (${svc.externalName}): answered by DNS, no datapath entries`;
  if (svc.clusterIPs[0] === 'None') return 'headless (clusterIP None): no datapath entries';
  if (svc.clusterIPs.length === 0) return 'no clusterIP assigned';
  return undefined;
}

const isV4 = (ip: string) => ipaddr.parse(ip).kind() === 'ipv4';
const familyOf = (ip: string): Family => (isV4(ip) ? 'v4' : 'v6');

function compareIp(a: string, b: string): number {
  const x = ipaddr.parse(a).toByteArray();
  const y = ipaddr.parse(b).toByteArray();
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

function inAny(ip: string, cidrs: readonly string[]): boolean {
  const addr = ipaddr.parse(ip);
  return cidrs.some((c) => {
    const [net, bits] = ipaddr.parseCIDR(c);
    return net.kind() === addr.kind() && addr.match(net, bits);
  });
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

/** This node's addresses (InternalIP, ExternalIP), and the ones its NodePorts listen on. */
function nodeAddresses(node: Node | undefined, nodePortAddresses: readonly string[]): { all: string[]; nodePort: string[]; primary?: string; primary6?: string } {
  const all = (node?.addresses ?? []).filter((a) => a.type === 'InternalIP' || a.type === 'ExternalIP').map((a) => a.address);
  const primaryOf = (family: string) => node?.addresses.find((a) => a.type === 'InternalIP' && ipaddr.parse(a.address).kind() === family)?.address;
  const primary = [primaryOf('ipv4'), primaryOf('ipv6')].filter((a): a is string => !!a);
  let nodePort: string[];
  if (nodePortAddresses.length === 0) nodePort = all;
  else if (nodePortAddresses.includes('primary')) nodePort = primary;
  else nodePort = all.filter((ip) => inAny(ip, nodePortAddresses));
  return { all, nodePort, primary: primaryOf('ipv4'), primary6: primaryOf('ipv6') };
}

const backendKey = (ip: string, port: number, protocol: Protocol) => `${protocol} ${ip} ${port}`;

export function compile(state: ClusterState, resolved: readonly ResolvedService[], opts: CompileOptions): Compiled {
  const nodeName = emulatedNode(state, opts.node);
  const node = state.nodes.find((n) => n.name === nodeName);
  const notes: string[] = [];
  const skipped: SkippedService[] = [];
  const M = opts.maglevTableSize;
  const clusterCIDRs = opts.clusterCIDRs ?? state.proxyConfig?.clusterCIDRs ?? [];
  const addresses = nodeAddresses(node, opts.nodePortAddresses ?? state.proxyConfig?.nodePortAddresses ?? []);
  const masqueradeAddress = opts.masqueradeAddress ?? addresses.primary;
  if (!masqueradeAddress) notes.push('no IPv4 masquerade address (the node has no IPv4 InternalIP): IPv4 flows that need SNAT are dropped');

  // Backends: one id per distinct (address, port, protocol), both families, in sorted order.
  const backendsByKey = new Map<string, CompiledBackend>();
  const ordered = [...resolved].sort((a, b) =>
    a.service.namespace.localeCompare(b.service.namespace) || a.service.name.localeCompare(b.service.name));
  for (const rs of ordered) {
    if (skipReason(rs.service)) continue;
    for (const rp of rs.ports) {
      for (const ep of rp.endpoints) {
        const key = backendKey(ep.ip, ep.port, rp.port.protocol);
        const local = nodeName !== undefined && ep.nodeName === nodeName;
        const known = backendsByKey.get(key);
        // kube-proxy favours "local" if duplicate endpoints disagree.
        if (!known || (local && !known.local)) {
          backendsByKey.set(key, { id: 0, ip: ep.ip, port: ep.port, protocol: rp.port.protocol, nodeName: ep.nodeName, local });
        }
      }
    }
  }
  const backends = [...backendsByKey.values()]
    .sort((a, b) => compareIp(a.ip, b.ip) || a.port - b.port || a.protocol.localeCompare(b.protocol));
  backends.forEach((b, i) => { b.id = i + 1; });

  const backendSet = (endpoints: ResolvedEndpoint[], protocol: Protocol): BackendSet => {
    const usable = usableEndpoints(endpoints);
    const backendIds = [...new Set(usable.endpoints.map((e) => backendsByKey.get(backendKey(e.ip, e.port, protocol))!.id))]
      .sort((a, b) => a - b);
    const slots = maglevTable(backendIds.map((id) => `${backends[id - 1].ip}:${backends[id - 1].port}`), M, opts.seed);
    return {
      backendIds,
      selection: usable.selection,
      maglev: backendIds.length === 0 ? new Uint32Array(0) : slots.map((i) => backendIds[i]),
    };
  };

  const services: CompiledService[] = [];
  const entries: MapEntries = {
    config: {}, maglev: [], lbMembers: [],
    v4: { services: [], backends: [], revnat: [], sourceRanges: [], nodeIps: addresses.all.filter(isV4) },
    v6: { services: [], backends: [], revnat: [], sourceRanges: [], nodeIps: addresses.all.filter((a) => !isV4(a)) },
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
    const lbIPs = svc.type === 'LoadBalancer'
      ? svc.loadBalancerIngress.filter((i) => i.ip && i.ipMode !== 'Proxy').map((i) => i.ip!)
      : [];
    // kube-proxy runs one proxier per family, and each serves a Service's
    // NodePorts only in the families of its cluster IPs.
    const serviceFamilies = new Set(svc.clusterIPs.map(familyOf));
    const nodePortAddresses = addresses.nodePort.filter((a) => serviceFamilies.has(familyOf(a)));
    const extLocal = svc.externalTrafficPolicy === 'Local';
    const intLocal = svc.internalTrafficPolicy === 'Local';
    const sourceRanges = svc.type === 'LoadBalancer' ? svc.loadBalancerSourceRanges : [];

    for (const rp of rs.ports) {
      const p = rp.port;
      const name = serviceName(svc, p.name, p.port);
      const id = services.length + 1;
      const kinds: Array<[FrontendKind, string, number]> = [
        ...svc.clusterIPs.map((a): [FrontendKind, string, number] => ['ClusterIP', a, p.port]),
        ...(p.nodePort ? nodePortAddresses.map((a): [FrontendKind, string, number] => ['NodePort', a, p.nodePort!]) : []),
        ...svc.externalIPs.map((a): [FrontendKind, string, number] => ['ExternalIP', a, p.port]),
        ...lbIPs.map((a): [FrontendKind, string, number] => ['LoadBalancer', a, p.port]),
      ];
      const frontends = kinds.map(([kind, address, port]): CompiledFrontend => ({ kind, address, port, protocol: p.protocol, revNatIndex: ++revNatIndex }));
      const hasExternal = frontends.some((f) => f.kind !== 'ClusterIP');
      const needsLocal = intLocal || (extLocal && hasExternal);
      const isLocal = (e: ResolvedEndpoint) => nodeName !== undefined && e.nodeName === nodeName;
      const sets = (family: Family) => {
        const eps = rp.endpoints.filter((e) => familyOf(e.ip) === family);
        return { cluster: backendSet(eps, p.protocol), local: needsLocal ? backendSet(eps.filter(isLocal), p.protocol) : undefined };
      };
      const v4 = sets('v4');
      const v6 = sets('v6');
      for (const set of [v4.cluster, v6.cluster]) {
        if (set.backendIds.length > M) notes.push(`${name}: ${set.backendIds.length} backends exceed the Maglev table size ${M}; some get no slot`);
      }
      services.push({
        id, name, service: svc, port: p, frontends, cluster: v4.cluster, local: v4.local, cluster6: v6.cluster, local6: v6.local,
        unusableEndpoints: rp.endpoints.length - v4.cluster.backendIds.length - v6.cluster.backendIds.length,
      });

      const common = (svc.sessionAffinity === 'ClientIP' ? SVC_F.AFFINITY : 0);
      for (const f of frontends) {
        let flags = common;
        if (f.kind === 'ClusterIP') flags |= SVC_F.CLUSTER_IP | (intLocal ? SVC_F.INT_LOCAL : 0);
        else {
          flags |= { NodePort: SVC_F.NODEPORT, ExternalIP: SVC_F.EXTERNAL_IP, LoadBalancer: SVC_F.LOADBALANCER }[f.kind];
          if (extLocal) flags |= SVC_F.EXT_LOCAL;
          // Source ranges guard the load-balancer IPs only, not NodePorts or external IPs, and each
          // family by its own ranges: kube-proxy keeps one per family, none meaning no firewall.
          if (f.kind === 'LoadBalancer' && sourceRanges.some((c) => familyOf(ipaddr.parseCIDR(c)[0].toString()) === familyOf(f.address))) {
            flags |= SVC_F.SOURCE_RANGE;
          }
        }
        const family = familyOf(f.address);
        const set = family === 'v4' ? v4 : v6;
        entries[family].services.push({
          key: { address: f.address, port: f.port, proto: IPPROTO[f.protocol], scope: LB_SCOPE_EXTERNAL },
          value: {
            serviceId: id,
            backendCount: set.cluster.backendIds.length,
            localBackendCount: set.local?.backendIds.length ?? 0,
            flags,
            affinityTimeout: svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds : 0,
            revNatIndex: f.revNatIndex,
          },
        });
        entries[family].revnat.push({ index: f.revNatIndex, value: { address: f.address, port: f.port } });
      }
      for (const [set, table] of [[v4.cluster, 4 * id], [v4.local, 4 * id + 1], [v6.cluster, 4 * id + 2], [v6.local, 4 * id + 3]] as const) {
        if (!set || set.backendIds.length === 0) continue;
        entries.maglev.push({ table, slots: set.maglev });
        for (const backendId of set.backendIds) entries.lbMembers.push({ table, backendId });
      }
      for (const cidr of lbIPs.length > 0 ? sourceRanges : []) {
        const [net, bits] = ipaddr.parseCIDR(cidr);
        entries[net.kind() === 'ipv4' ? 'v4' : 'v6'].sourceRanges.push({ prefixlen: 32 + bits, serviceId: id, address: net.toString() });
      }
      // A node inside the ranges reaches a VIP-style LB IP with the LB IP itself as source.
      if (sourceRanges.length > 0 && addresses.all.some((ip) => inAny(ip, sourceRanges))) {
        for (const ip of lbIPs) {
          entries[familyOf(ip)].sourceRanges.push({ prefixlen: 32 + (isV4(ip) ? 32 : 128), serviceId: id, address: ip });
        }
      }
    }
  }
  for (const b of backends) {
    entries[familyOf(b.ip)].backends.push({
      id: b.id,
      value: { address: b.ip, port: b.port, proto: IPPROTO[b.protocol], flags: b.local ? BE_F_LOCAL : 0 },
    });
  }

  const conntrack = { ...DEFAULT_CONNTRACK_TIMEOUTS };
  for (const source of [state.proxyConfig?.conntrack, opts.conntrack]) {
    for (const [k, v] of Object.entries(source ?? {})) {
      if (v !== undefined) conntrack[k as keyof ConntrackTimeouts] = v;
    }
  }
  const serviceRanges = opts.serviceClusterIPRanges ?? DEFAULT_SERVICE_CLUSTER_IP_RANGES;
  const podNet = network(clusterCIDRs, 'v4');
  const podNet6 = network(clusterCIDRs, 'v6');
  const serviceNet = network(serviceRanges, 'v4');
  const serviceNet6 = network(serviceRanges, 'v6');
  const masqueradeAddress6 = opts.masqueradeAddress6 ?? addresses.primary6;
  const hasV6Frontends = entries.v6.services.some((e) => (e.value.flags as number) !== SVC_F.WILDCARD);
  if (hasV6Frontends && !masqueradeAddress6) {
    notes.push('no IPv6 masquerade address (the node has no IPv6 InternalIP): IPv6 flows that need SNAT are dropped');
  }
  const [portMin, portMax] = opts.snatPortRange ?? DEFAULT_SNAT_PORT_RANGE;
  entries.config = {
    seed: opts.seed >>> 0,
    ctTcpEstablished: conntrack.tcpEstablishedTimeout,
    ctTcpClosing: conntrack.tcpCloseWaitTimeout,
    ctUdp: conntrack.udpTimeout,
    ctUdpStream: conntrack.udpStreamTimeout,
    flags: (opts.masqueradeAll ? CFG_F.MASQUERADE_ALL : 0) | (podNet ? CFG_F.POD_CIDR4 : 0) | (serviceNet ? CFG_F.SERVICE_CIDR4 : 0)
      | (podNet6 ? CFG_F.POD_CIDR6 : 0) | (serviceNet6 ? CFG_F.SERVICE_CIDR6 : 0) | (masqueradeAddress6 ? CFG_F.SNAT_ADDR6 : 0),
    snatAddress: masqueradeAddress && isV4(masqueradeAddress) ? masqueradeAddress : '0.0.0.0',
    snatPortMin: masqueradeAddress ? portMin : 0,
    snatPortMax: masqueradeAddress ? portMax : 0,
    podCidr: podNet?.net ?? '0.0.0.0',
    podMask: podNet?.mask ?? '0.0.0.0',
    serviceCidr: serviceNet?.net ?? '0.0.0.0',
    serviceMask: serviceNet?.mask ?? '0.0.0.0',
    snatAddress6: masqueradeAddress6 ?? '::',
    podCidr6: podNet6?.net ?? '::',
    podMask6: podNet6?.mask ?? '::',
    serviceCidr6: serviceNet6?.net ?? '::',
    serviceMask6: serviceNet6?.mask ?? '::',
  };
  const settings: DatapathSettings = {
    nodeAddresses: addresses.all,
    nodePortAddresses: addresses.nodePort,
    podNetwork: [podNet?.cidr, podNet6?.cidr].filter((c) => c).join(',') || null,
    serviceNetwork: [serviceNet?.cidr, serviceNet6?.cidr].filter((c) => c).join(',') || null,
    masqueradeAddress: [masqueradeAddress, masqueradeAddress6].filter((c) => c).join(',') || null,
    snatPorts: `${portMin}-${portMax}`,
    maglevTableSize: M,
    seed: opts.seed,
    conntrackTimeouts: conntrack,
  };
  return { node: nodeName, settings, maglevTableSize: M, services, backends, skipped, notes, entries };
}
