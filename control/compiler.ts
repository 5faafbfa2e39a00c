/**
 * The compiler: a pure function from the cluster state (Services joined with
 * their endpoints, the Nodes, the proxy configuration) to the entries of the
 * datapath's maps, the way Cilium's service manager turns Services into
 * lb4_services / lb4_backends / maglev / reverse-NAT entries.
 *
 * Ids are dense and assigned in a sorted order, so the same state always
 * compiles to the same bytes.
 */
import ipaddr from 'ipaddr.js';
import { inputError } from './errors.js';
import {
  BE_F_LOCAL, IPPROTO, LB_SCOPE_EXTERNAL, SVC_F_CLUSTER_IP, type StructValue,
} from './layout.js';
import { maglevTable } from './maglev.js';
import type {
  ClusterState, ConntrackTimeouts, Protocol, ResolvedEndpoint, ResolvedService, Service,
} from './model.js';

export interface CompileOptions {
  /** The emulated node (`--node`); may be omitted when the state has one Node. */
  node?: string;
  seed: number;
  maglevTableSize: number;
  /** `--` flags that override the KubeProxyConfiguration. */
  conntrack?: ConntrackTimeouts;
}

/** Seconds, as kube-proxy (TCP) and the kernel's nf_conntrack (UDP) default them. */
export const DEFAULT_CONNTRACK_TIMEOUTS: Required<ConntrackTimeouts> = {
  tcpEstablishedTimeout: 86400,
  tcpCloseWaitTimeout: 3600,
  udpTimeout: 30,
  udpStreamTimeout: 120,
};

export interface CompiledBackend {
  id: number;
  ip: string;
  port: number;
  protocol: Protocol;
  nodeName?: string;
  local: boolean;
}

export interface CompiledFrontend {
  address: string;
  port: number;
  protocol: Protocol;
  revNatIndex: number;
}

/** Which endpoints new flows may use (KEP-1669: terminating ones only as a last resort). */
export type EndpointSelection = 'ready' | 'serving-terminating' | 'none';

export interface CompiledService {
  id: number;
  /** "ns/name:port-name", or the port number when the port is unnamed. */
  name: string;
  service: Service;
  portName: string;
  protocol: Protocol;
  appProtocol?: string;
  frontends: CompiledFrontend[];
  /** Backends new flows may go to, by id. */
  backendIds: number[];
  /** Endpoints known but not used for new flows (not ready, not serving). */
  unusableEndpoints: number;
  selection: EndpointSelection;
  /** Slot -> backend id; empty when there are no usable backends. */
  maglev: Uint32Array;
}

export interface SkippedService {
  service: string;
  reason: string;
}

export interface MapEntries {
  config: StructValue;
  lb4Services: Array<{ key: StructValue; value: StructValue }>;
  lb4Backends: Array<{ id: number; value: StructValue }>;
  lb4Revnat: Array<{ index: number; value: StructValue }>;
  maglev: Array<{ serviceId: number; table: Uint32Array }>;
}

export interface Compiled {
  node?: string;
  maglevTableSize: number;
  services: CompiledService[];
  backends: CompiledBackend[];
  skipped: SkippedService[];
  notes: string[];
  conntrack: Required<ConntrackTimeouts>;
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
 * The endpoints new flows may use, as kube-proxy's topology filter picks
 * them: the ready ones; when none is ready, those still serving while
 * terminating (KEP-1669); otherwise none.
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

function compareIp(a: string, b: string): number {
  const x = ipaddr.parse(a).toByteArray();
  const y = ipaddr.parse(b).toByteArray();
  if (x.length !== y.length) return x.length - y.length;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return 0;
}

const backendKey = (ip: string, port: number, protocol: Protocol) => `${protocol} ${ip} ${port}`;

export function compile(state: ClusterState, resolved: readonly ResolvedService[], opts: CompileOptions): Compiled {
  const node = emulatedNode(state, opts.node);
  const notes: string[] = [];
  const skipped: SkippedService[] = [];
  const M = opts.maglevTableSize;

  // Backends: one id per distinct (address, port, protocol), in sorted order.
  const backendsByKey = new Map<string, CompiledBackend>();
  const ordered = [...resolved].sort((a, b) =>
    a.service.namespace.localeCompare(b.service.namespace) || a.service.name.localeCompare(b.service.name));
  for (const rs of ordered) {
    if (skipReason(rs.service)) continue;
    for (const rp of rs.ports) {
      for (const ep of rp.endpoints) {
        const key = backendKey(ep.ip, ep.port, rp.port.protocol);
        const local = node !== undefined && ep.nodeName === node;
        const known = backendsByKey.get(key);
        // kube-proxy favours "local" if duplicate endpoints disagree.
        if (!known || (local && !known.local)) {
          backendsByKey.set(key, { id: 0, ip: ep.ip, port: ep.port, protocol: rp.port.protocol, nodeName: ep.nodeName, local });
        }
      }
    }
  }
  const backends = [...backendsByKey.values()]
    .filter((b) => ipaddr.parse(b.ip).kind() === 'ipv4')
    .sort((a, b) => compareIp(a.ip, b.ip) || a.port - b.port || a.protocol.localeCompare(b.protocol));
  backends.forEach((b, i) => { b.id = i + 1; });

  const services: CompiledService[] = [];
  const entries: MapEntries = { config: {}, lb4Services: [], lb4Backends: [], lb4Revnat: [], maglev: [] };
  let revNatIndex = 0;
  for (const rs of ordered) {
    const svc = rs.service;
    const why = skipReason(svc);
    if (why) {
      skipped.push({ service: `${svc.namespace}/${svc.name}`, reason: why });
      continue;
    }
    const v4ClusterIPs = svc.clusterIPs.filter((ip) => ipaddr.parse(ip).kind() === 'ipv4');
    if (v4ClusterIPs.length < svc.clusterIPs.length) {
      notes.push(`Service ${svc.namespace}/${svc.name}: IPv6 cluster IPs are not emulated yet; only its IPv4 frontends are compiled`);
    }
    if (v4ClusterIPs.length === 0) {
      skipped.push({ service: `${svc.namespace}/${svc.name}`, reason: 'IPv6-only: not emulated yet' });
      continue;
    }
    if (svc.type !== 'ClusterIP') {
      notes.push(`Service ${svc.namespace}/${svc.name}: type ${svc.type}; only its cluster IP frontends are emulated so far`);
    }
    for (const rp of rs.ports) {
      const p = rp.port;
      if (p.protocol === 'SCTP') {
        notes.push(`${serviceName(svc, p.name, p.port)}: SCTP is not emulated yet; no frontend compiled`);
        continue;
      }
      const usable = usableEndpoints(rp.endpoints);
      const ids = usable.endpoints
        .filter((e) => ipaddr.parse(e.ip).kind() === 'ipv4')
        .map((e) => backendsByKey.get(backendKey(e.ip, e.port, p.protocol))!.id);
      const backendIds = [...new Set(ids)].sort((a, b) => a - b);
      const id = services.length + 1;
      const names = backendIds.map((bid) => `${backends[bid - 1].ip}:${backends[bid - 1].port}`);
      const slots = maglevTable(names, M, opts.seed);
      const maglev = backendIds.length === 0 ? new Uint32Array(0) : slots.map((i) => backendIds[i]);
      if (backendIds.length > M) {
        notes.push(`${serviceName(svc, p.name, p.port)}: ${backendIds.length} backends exceed the Maglev table size ${M}; some get no slot`);
      }
      const frontends: CompiledFrontend[] = v4ClusterIPs.map((address) => ({
        address, port: p.port, protocol: p.protocol, revNatIndex: ++revNatIndex,
      }));
      services.push({
        id,
        name: serviceName(svc, p.name, p.port),
        service: svc,
        portName: p.name,
        protocol: p.protocol,
        appProtocol: p.appProtocol,
        frontends,
        backendIds,
        unusableEndpoints: rp.endpoints.length - usable.endpoints.length,
        selection: usable.selection,
        maglev,
      });
      for (const f of frontends) {
        entries.lb4Services.push({
          key: { address: f.address, port: f.port, proto: IPPROTO[f.protocol], scope: LB_SCOPE_EXTERNAL },
          value: {
            serviceId: id,
            backendCount: backendIds.length,
            flags: SVC_F_CLUSTER_IP,
            affinityTimeout: svc.sessionAffinity === 'ClientIP' ? svc.affinityTimeoutSeconds : 0,
            revNatIndex: f.revNatIndex,
          },
        });
        entries.lb4Revnat.push({ index: f.revNatIndex, value: { address: f.address, port: f.port } });
      }
      if (backendIds.length > 0) entries.maglev.push({ serviceId: id, table: maglev });
    }
  }
  for (const b of backends) {
    entries.lb4Backends.push({
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
  entries.config = {
    seed: opts.seed >>> 0,
    ctTcpEstablished: conntrack.tcpEstablishedTimeout,
    ctTcpClosing: conntrack.tcpCloseWaitTimeout,
    ctUdp: conntrack.udpTimeout,
    ctUdpStream: conntrack.udpStreamTimeout,
  };
  return { node, maglevTableSize: M, services, backends, skipped, notes, conntrack, entries };
}
