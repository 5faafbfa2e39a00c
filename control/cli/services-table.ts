/**
 * The Services of a cluster state as `kubectl get svc -A -o wide` prints them
 * (without AGE: manifests carry no creation time worth showing), plus, when
 * wide, what svcpath users ask next: how many endpoints are ready, the traffic
 * policies, the session affinity and topology; and the same as typed rows, for JSON.
 */
import { resolveServices } from '../cluster/index.js';
import { categorizeEndpoints, describeTopology, requestedTopology, type TopologyFilter } from '../compile/topology.js';
import type {
  ClusterState,
  IPFamily,
  LoadBalancerIngress,
  Protocol,
  ResolvedService,
  ServiceType,
  TrafficPolicy,
} from '../cluster/state.js';

/**
 * One Service as `svcpath services --json` gives it: the API's field names,
 * flattened out of spec and status, with typed values. Lists are always
 * arrays (empty when there is nothing); a value that does not apply is null.
 */
export interface ServiceRow {
  namespace: string;
  name: string;
  type: ServiceType;
  /** spec.clusterIPs, allocated: [] when there is none (ExternalName), ["None"] for a headless Service. */
  clusterIPs: string[];
  headless: boolean;
  ipFamilies: IPFamily[];
  /** spec.externalIPs. */
  externalIPs: string[];
  /** status.loadBalancer.ingress, in the manifest's order. */
  loadBalancerIngress: Array<{ ip: string | null; hostname: string | null; ipMode: 'VIP' | 'Proxy' | null }>;
  /** spec.externalName, for an ExternalName Service. */
  externalName: string | null;
  ports: ServiceRowPort[];
  /** spec.selector; null for a Service without one (its endpoints are managed by hand). */
  selector: Record<string, string> | null;
  /**
   * Distinct endpoint addresses over the Service's ports, as resolved; an
   * address is ready when it is ready for any port. null for ExternalName.
   */
  endpoints: { ready: number; total: number } | null;
  /** null when no traffic from outside reaches the Service (a ClusterIP Service without external IPs), and for headless and ExternalName Services. */
  externalTrafficPolicy: TrafficPolicy | null;
  /** null for headless and ExternalName Services, which nothing proxies. */
  internalTrafficPolicy: TrafficPolicy | null;
  sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds, with ClientIP affinity. */
  sessionAffinityTimeoutSeconds: number | null;
  /** spec.trafficDistribution as written, else null. */
  trafficDistribution: string | null;
  /** The topology annotation kube-proxy's peers read (topology-mode, else topology-aware-hints), else null. */
  topologyAnnotation: string | null;
  /**
   * Whether the emulated node's proxy narrows the Service's endpoints by their hints, as
   * control/compile/topology.ts decides it for the first port in the primary family;
   * null for headless and ExternalName Services, and when no node is known.
   */
  topology: TopologyRow | null;
}

export interface TopologyRow {
  /** The emulated node. */
  node: string;
  /** The hints filter in use: the node's own, its zone's, or none. */
  filter: TopologyFilter;
  /** The node name or zone the filter keeps; null with none. */
  for: string | null;
  /** Why no hints are used, with none. */
  whyNot: string | null;
}

export interface ServiceRowPort {
  /** null for a Service's single unnamed port. */
  name: string | null;
  protocol: Protocol;
  port: number;
  /** A number, or the name of a container port. */
  targetPort: number | string;
  /** Allocated when the type asks for one. */
  nodePort: number | null;
  appProtocol: string | null;
}

type Column = readonly [header: string, cell: (row: ServiceRow) => string];

const KUBECTL_COLUMNS: readonly Column[] = [
  ['NAMESPACE', (r) => r.namespace],
  ['NAME', (r) => r.name],
  ['TYPE', (r) => r.type],
  ['CLUSTER-IP', (r) => r.clusterIPs.join(',') || '<none>'],
  ['EXTERNAL-IP', externalIPCell],
  [
    'PORT(S)',
    (r) => r.ports.map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol}` : `${p.port}/${p.protocol}`)).join(',') || '<none>',
  ],
  [
    'SELECTOR',
    (r) =>
      Object.keys(r.selector ?? {})
        .sort(compare)
        .map((key) => `${key}=${r.selector?.[key]}`)
        .join(',') || '<none>',
  ],
];
const SVCPATH_COLUMNS: readonly Column[] = [
  ['ENDPOINTS', (r) => (r.endpoints ? `${r.endpoints.ready}/${r.endpoints.total}` : '-')],
  ['TRAFFIC', trafficCell],
  ['AFFINITY', (r) => (r.sessionAffinity === 'ClientIP' ? `ClientIP ${r.sessionAffinityTimeoutSeconds}s` : 'None')],
  ['TOPOLOGY', topologyCell],
];

/**
 * kubectl's tabwriter pads every column but the last to its widest cell plus 3
 * spaces (its minimum width of 6 never matters: every header is longer than 3).
 */
const COLUMN_PADDING = 3;

export interface ServicesTableOptions {
  wide?: boolean;
  /** The emulated node, whose zone and name topology is decided for; default the only Node of the state. */
  node?: string;
}

/** Every Service in namespace/name order, the order the API server lists them in. */
export function serviceRows(state: ClusterState, opts: ServicesTableOptions = {}): ServiceRow[] {
  const nodeName = opts.node ?? (state.nodes.length === 1 ? state.nodes[0].name : undefined);
  const node = nodeName === undefined ? undefined : { name: nodeName, zone: state.nodes.find((n) => n.name === nodeName)?.zone };
  return resolveServices(state)
    .services.sort((a, b) => compare(a.service.namespace, b.service.namespace) || compare(a.service.name, b.service.name))
    .map((rs) => toRow(rs, node));
}

/** The table as text, one line per Service under a header line, without a final newline. */
export function formatServicesTable(state: ClusterState, opts: ServicesTableOptions = {}): string {
  const columns = opts.wide ? [...KUBECTL_COLUMNS, ...SVCPATH_COLUMNS] : KUBECTL_COLUMNS;
  const lines = [columns.map(([header]) => header), ...serviceRows(state, opts).map((row) => columns.map(([, cell]) => cell(row)))];
  const widths = columns.map((_, c) => Math.max(...lines.map((cells) => cells[c].length)) + COLUMN_PADDING);
  return lines.map((cells) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]))).join('')).join('\n');
}

function toRow({ service, ports }: ResolvedService, node: { name: string; zone?: string } | undefined): ServiceRow {
  const headless = service.clusterIPs[0] === 'None';
  const proxied = service.type !== 'ExternalName' && !headless;
  // externalTrafficPolicy applies only to traffic from outside: NodePorts, load balancers and external IPs.
  const reachableFromOutside = service.type !== 'ClusterIP' || service.externalIPs.length > 0;
  return {
    namespace: service.namespace,
    name: service.name,
    type: service.type,
    clusterIPs: service.clusterIPs,
    headless,
    ipFamilies: service.ipFamilies,
    externalIPs: service.externalIPs,
    loadBalancerIngress: service.loadBalancerIngress.map(ingressRow),
    externalName: service.externalName ?? null,
    ports: service.ports.map((p) => ({
      name: p.name || null,
      protocol: p.protocol,
      port: p.port,
      targetPort: p.targetPort,
      nodePort: p.nodePort ?? null,
      appProtocol: p.appProtocol ?? null,
    })),
    selector: service.selector ?? null,
    endpoints: service.type === 'ExternalName' ? null : endpointCounts(ports),
    externalTrafficPolicy: proxied && reachableFromOutside ? service.externalTrafficPolicy : null,
    internalTrafficPolicy: proxied ? service.internalTrafficPolicy : null,
    sessionAffinity: service.sessionAffinity,
    sessionAffinityTimeoutSeconds: service.sessionAffinity === 'ClientIP' ? service.affinityTimeoutSeconds : null,
    trafficDistribution: service.trafficDistribution ?? null,
    topologyAnnotation: service.topologyAnnotation ?? null,
    topology: proxied && node ? topologyRow(service, ports, reachableFromOutside, node) : null,
  };
}

/** The topology decision for the Service's first port, over its endpoints of the primary family. */
function topologyRow(
  service: ResolvedService['service'],
  ports: ResolvedService['ports'],
  externallyAccessible: boolean,
  node: { name: string; zone?: string },
): TopologyRow {
  const v6 = service.ipFamilies[0] === 'IPv6';
  const endpoints = (ports[0]?.endpoints ?? []).filter((e) => e.ip.includes(':') === v6);
  const { topology } = categorizeEndpoints({ ...service, externallyAccessible }, endpoints, node);
  return { node: node.name, filter: topology.filter, for: topology.for ?? null, whyNot: topology.whyNot ?? null };
}

function ingressRow(i: LoadBalancerIngress): ServiceRow['loadBalancerIngress'][number] {
  return { ip: i.ip ?? null, hostname: i.hostname ?? null, ipMode: i.ipMode ?? null };
}

/** kubectl's rules: a load balancer's ingress (IP, else hostname; sorted, once each) before the external IPs. */
function externalIPCell(row: ServiceRow): string {
  switch (row.type) {
    case 'ExternalName':
      return row.externalName ?? '<none>';
    case 'LoadBalancer': {
      const ingress = [...new Set(row.loadBalancerIngress.map((i) => i.ip ?? i.hostname ?? ''))]
        .filter((address) => address !== '')
        .sort(compare);
      return [...ingress, ...row.externalIPs].join(',') || '<pending>';
    }
    default:
      return row.externalIPs.join(',') || '<none>';
  }
}

/** Distinct addresses over all ports; an address counts as ready when it is ready for any port. */
function endpointCounts(ports: ResolvedService['ports']): { ready: number; total: number } {
  const ready = new Map<string, boolean>();
  for (const { endpoints } of ports) {
    for (const { ip, conditions } of endpoints) ready.set(ip, (ready.get(ip) ?? false) || conditions.ready);
  }
  return { ready: [...ready.values()].filter(Boolean).length, total: ready.size };
}

/** "ext=Local,int=Cluster"; "int=…" alone when not reachable from outside; "-" when nothing is proxied. */
function trafficCell(row: ServiceRow): string {
  if (row.internalTrafficPolicy === null) return '-';
  const internal = `int=${row.internalTrafficPolicy}`;
  return row.externalTrafficPolicy === null ? internal : `ext=${row.externalTrafficPolicy},${internal}`;
}

/** describeTopology's words; the request alone when no node is known; "-" when there is nothing to say. */
function topologyCell(row: ServiceRow): string {
  const requested = requestedTopology({
    trafficDistribution: row.trafficDistribution ?? undefined,
    topologyAnnotation: row.topologyAnnotation ?? undefined,
  });
  const t = row.topology;
  if (!t) return requested ?? '-';
  return describeTopology({ filter: t.filter, for: t.for ?? undefined, whyNot: t.whyNot ?? undefined, requested }) ?? '-';
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
