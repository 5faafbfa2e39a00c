/**
 * The Services of a cluster state as `kubectl get svc -A -o wide` prints them
 * (without AGE: manifests carry no creation time worth showing), plus, when
 * wide, what svcpath users ask next: how many endpoints are ready, the traffic
 * policies and the session affinity.
 */
import { resolveServices } from './cluster/index.js';
import type { ClusterState, ResolvedService, Service } from './model.js';

/** One Service, every cell as the table prints it, named after its column. */
export interface ServicesTableRow {
  namespace: string;
  name: string;
  type: string;
  clusterIP: string;
  externalIP: string;
  ports: string;
  selector: string;
  /** Ready / all endpoint addresses over the Service's ports, as resolved; "-" for ExternalName. */
  endpoints: string;
  /** "ext=Local,int=Cluster"; "int=…" alone when not reachable from outside; "-" when nothing is proxied. */
  traffic: string;
  /** "ClientIP 10800s" or "None". */
  affinity: string;
}

type Column = readonly [keyof ServicesTableRow, string];

const KUBECTL_COLUMNS: readonly Column[] = [
  ['namespace', 'NAMESPACE'], ['name', 'NAME'], ['type', 'TYPE'], ['clusterIP', 'CLUSTER-IP'],
  ['externalIP', 'EXTERNAL-IP'], ['ports', 'PORT(S)'], ['selector', 'SELECTOR'],
];
const SVCPATH_COLUMNS: readonly Column[] = [['endpoints', 'ENDPOINTS'], ['traffic', 'TRAFFIC'], ['affinity', 'AFFINITY']];

/**
 * kubectl's tabwriter pads every column but the last to its widest cell plus 3
 * spaces (its minimum width of 6 never matters: every header is longer than 3).
 */
const COLUMN_PADDING = 3;

/** Every Service in namespace/name order, the order the API server lists them in. */
export function servicesTable(state: ClusterState): ServicesTableRow[] {
  return resolveServices(state).services
    .sort((a, b) => compare(a.service.namespace, b.service.namespace) || compare(a.service.name, b.service.name))
    .map(toRow);
}

/** The table as text, one line per Service under a header line, without a final newline. */
export function formatServicesTable(state: ClusterState, opts: { wide?: boolean } = {}): string {
  const columns = opts.wide ? [...KUBECTL_COLUMNS, ...SVCPATH_COLUMNS] : KUBECTL_COLUMNS;
  const lines = [
    columns.map(([, header]) => header),
    ...servicesTable(state).map((row) => columns.map(([key]) => row[key])),
  ];
  const widths = columns.map((_, c) => Math.max(...lines.map((cells) => cells[c].length)) + COLUMN_PADDING);
  return lines
    .map((cells) => cells.map((cell, c) => (c === cells.length - 1 ? cell : cell.padEnd(widths[c]))).join(''))
    .join('\n');
}

function toRow({ service, ports }: ResolvedService): ServicesTableRow {
  return {
    namespace: service.namespace,
    name: service.name,
    type: service.type,
    clusterIP: service.clusterIPs.join(',') || '<none>',
    externalIP: externalIP(service),
    ports: service.ports
      .map((p) => (p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol}` : `${p.port}/${p.protocol}`))
      .join(',') || '<none>',
    selector: Object.keys(service.selector ?? {})
      .sort(compare)
      .map((key) => `${key}=${service.selector?.[key]}`)
      .join(',') || '<none>',
    endpoints: service.type === 'ExternalName' ? '-' : endpointCounts(ports),
    traffic: traffic(service),
    affinity: service.sessionAffinity === 'ClientIP' ? `ClientIP ${service.affinityTimeoutSeconds}s` : 'None',
  };
}

/** kubectl's rules: a load balancer's ingress (IP, else hostname; sorted, once each) before the external IPs. */
function externalIP(service: Service): string {
  switch (service.type) {
    case 'ExternalName':
      return service.externalName ?? '<none>';
    case 'LoadBalancer': {
      const ingress = [...new Set(service.loadBalancerIngress.map((i) => i.ip ?? i.hostname ?? ''))]
        .filter((address) => address !== '')
        .sort(compare);
      return [...ingress, ...service.externalIPs].join(',') || '<pending>';
    }
    default:
      return service.externalIPs.join(',') || '<none>';
  }
}

/** Distinct addresses over all ports; an address counts as ready when it is ready for any port. */
function endpointCounts(ports: ResolvedService['ports']): string {
  const ready = new Map<string, boolean>();
  for (const { endpoints } of ports) {
    for (const { ip, conditions } of endpoints) ready.set(ip, (ready.get(ip) ?? false) || conditions.ready);
  }
  return `${[...ready.values()].filter(Boolean).length}/${ready.size}`;
}

/** externalTrafficPolicy applies only to traffic from outside: NodePorts, load balancers and external IPs. */
function traffic(service: Service): string {
  if (service.type === 'ExternalName' || service.clusterIPs[0] === 'None') return '-';
  const internal = `int=${service.internalTrafficPolicy}`;
  const reachableFromOutside = service.type !== 'ClusterIP' || service.externalIPs.length > 0;
  return reachableFromOutside ? `ext=${service.externalTrafficPolicy},${internal}` : internal;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
