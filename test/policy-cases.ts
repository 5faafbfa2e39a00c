// The policy matrix's cases and kube-proxy's expected decisions, shared by
// the datapath-level and the replay-level policy tests.
import type { ResolvedEndpoint, Service } from '../control/cluster/state.js';
import { buildFrame, decodeFrame } from '../traces/frames.js';
import { stringify } from 'yaml';
import { endpoints, makeService } from './helpers.js';

export type Family = 'v4' | 'v6';
export const FAMILIES: Family[] = ['v4', 'v6'];

/** The cluster's addresses in each family: the same pods, node and clients, dual-stack. */
export const ADDRESSES = {
  v4: {
    node: '192.168.0.10',
    otherNode: '192.168.0.11',
    pod: '10.244.1.77',
    external: '172.16.5.5',
    localEp: '10.244.1.5',
    remoteEps: ['10.244.2.5', '10.244.3.5'],
    clusterIP: (n: number) => `10.96.1.${n}`,
    externalIP: (n: number) => `198.51.100.${n}`,
    lbIP: (n: number) => `203.0.113.${50 + n}`,
  },
  v6: {
    node: 'fd00:168::10',
    otherNode: 'fd00:168::11',
    pod: 'fd00:244:1::77',
    external: '2001:db8:5::5',
    localEp: 'fd00:244:1::5',
    remoteEps: ['fd00:244:2::5', 'fd00:244:3::5'],
    clusterIP: (n: number) => `fd00:96::1:${n}`,
    externalIP: (n: number) => `2001:db8:100::${n}`,
    lbIP: (n: number) => `2001:db8:113::${50 + n}`,
  },
} as const;
export const CLUSTER_CIDRS = ['10.244.0.0/16', 'fd00:244::/32'];
export const SERVICE_RANGES = ['10.96.0.0/12', 'fd00:96::/108'];

export const NODE_IP = ADDRESSES.v4.node;
export const SOURCES = { pod: ADDRESSES.v4.pod, node: NODE_IP, external: ADDRESSES.v4.external } as const;
export type Source = keyof typeof SOURCES;
export const LOCAL_EP = ADDRESSES.v4.localEp;
export const REMOTE_EPS = [...ADDRESSES.v4.remoteEps];
export const ALL_EPS = [LOCAL_EP, ...REMOTE_EPS];

const isLocalEp = (ip: string) => ip === ADDRESSES.v4.localEp || ip === ADDRESSES.v6.localEp;
export const eps = (ips: string[]) => endpoints(ips.map((ip): [string, number, string] => [ip, 8080, isLocalEp(ip) ? 'node-a' : 'node-b']));

export function lbService(name: string, clusterIP: string, n: number, policy: 'Cluster' | 'Local', extra: Partial<Service> = {}): Service {
  return makeService('default', name, clusterIP, [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 + n }], {
    type: 'LoadBalancer',
    externalTrafficPolicy: policy,
    internalTrafficPolicy: policy,
    externalIPs: [`198.51.100.${n}`],
    loadBalancerIngress: [{ ip: `203.0.113.${50 + n}`, ipMode: 'VIP' }],
    ...extra,
  });
}

/** A dual-stack LoadBalancer Service: every frontend in both families. */
function dualStack(name: string, n: number, policy: 'Cluster' | 'Local'): Service {
  const { v4, v6 } = ADDRESSES;
  return lbService(name, v4.clusterIP(n), n, policy, {
    clusterIPs: [v4.clusterIP(n), v6.clusterIP(n)],
    ipFamilies: ['IPv4', 'IPv6'],
    ipFamilyPolicy: 'RequireDualStack',
    externalIPs: [v4.externalIP(n), v6.externalIP(n)],
    loadBalancerIngress: [
      { ip: v4.lbIP(n), ipMode: 'VIP' },
      { ip: v6.lbIP(n), ipMode: 'VIP' },
    ],
  });
}

const both = (pick: (f: (typeof ADDRESSES)[Family]) => string[]) => [...pick(ADDRESSES.v4), ...pick(ADDRESSES.v6)];

export interface Case {
  svc: Service;
  endpoints: ResolvedEndpoint[];
  n: number;
}
export const CASES: Record<string, Case> = {
  cluster: { svc: dualStack('cluster', 1, 'Cluster'), endpoints: eps(both((a) => [a.localEp, ...a.remoteEps])), n: 1 },
  local: { svc: dualStack('local', 2, 'Local'), endpoints: eps(both((a) => [a.localEp, ...a.remoteEps])), n: 2 },
  remoteOnly: { svc: dualStack('remote-only', 3, 'Local'), endpoints: eps(both((a) => [...a.remoteEps])), n: 3 },
  empty: { svc: dualStack('empty', 4, 'Cluster'), endpoints: [], n: 4 },
};

export function frontends(c: Case, family: Family = 'v4'): Record<string, [string, number]> {
  const a = ADDRESSES[family];
  return {
    ClusterIP: [a.clusterIP(c.n), 80],
    NodePort: [a.node, 30080 + c.n],
    ExternalIP: [a.externalIP(c.n), 80],
    LoadBalancer: [a.lbIP(c.n), 80],
  };
}

export function sources(family: Family = 'v4'): Record<Source, string> {
  const a = ADDRESSES[family];
  return { pod: a.pod, node: a.node, external: a.external };
}

/** What kube-proxy does, written out as a table: backends allowed, or the verdict. */
export function expected(
  caseName: string,
  kind: string,
  source: Source,
  podNetworkKnown = true,
  family: Family = 'v4',
): { backends?: string[]; snat?: boolean; outcome?: string } {
  const c = CASES[caseName];
  if (c.endpoints.length === 0) return { outcome: 'TX NO_ENDPOINTS' };
  const all = c.endpoints.map((e) => e.ip).filter((ip) => ip.includes(':') === (family === 'v6'));
  const local = all.filter(isLocalEp);
  const isPod = podNetworkKnown && source === 'pod';
  if (kind === 'ClusterIP') {
    const set = c.svc.internalTrafficPolicy === 'Local' ? local : all;
    if (set.length === 0) return { outcome: 'DROP NO_LOCAL_ENDPOINTS' };
    return { backends: set, snat: podNetworkKnown && !isPod };
  }
  if (c.svc.externalTrafficPolicy === 'Cluster') return { backends: all, snat: true };
  if (isPod) return { backends: all, snat: false };
  if (source === 'node') return { backends: all, snat: true };
  if (local.length === 0) return { outcome: 'DROP NO_LOCAL_ENDPOINTS' };
  return { backends: local, snat: false };
}

/** The backend answering what it received: addresses and ports swapped. */
export function replyTo(out: Uint8Array, payload = new Uint8Array(0)): Uint8Array {
  const d = decodeFrame(out);
  const l4 = d.tcp ?? d.udp!;
  const ip = (d.ipv4 ?? d.ipv6)!;
  return buildFrame({
    srcMac: d.eth!.dst,
    dstMac: d.eth!.src,
    ...(d.ipv6 ? { ipv6: { src: ip.dst, dst: ip.src } } : { ipv4: { src: ip.dst, dst: ip.src, id: 9 } }),
    l4: d.tcp
      ? { kind: 'tcp', sport: l4.dport, dport: l4.sport, seq: 5, ack: 1001, flags: ['SYN', 'ACK'] }
      : { kind: 'udp', sport: l4.dport, dport: l4.sport },
    payload,
  }).slice();
}

/**
 * The cases as the manifests a user would hand svcpath: a `kubectl get -o yaml`
 * style List of Nodes, Services (with their load-balancer status) and
 * EndpointSlices, plus the kube-proxy configuration naming the pod network.
 */
export function casesManifest(): string {
  const items: object[] = [
    ...[
      ['node-a', 'node'],
      ['node-b', 'otherNode'],
    ].map(([name, key]) => ({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name },
      status: {
        addresses: FAMILIES.map((f) => ({ type: 'InternalIP', address: ADDRESSES[f][key as 'node' | 'otherNode'] })),
      },
    })),
  ];
  for (const c of Object.values(CASES)) {
    const s = c.svc;
    items.push({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: s.name, namespace: s.namespace },
      spec: {
        type: s.type,
        clusterIP: s.clusterIPs[0],
        clusterIPs: s.clusterIPs,
        ipFamilies: s.ipFamilies,
        ipFamilyPolicy: s.ipFamilyPolicy,
        externalIPs: s.externalIPs,
        externalTrafficPolicy: s.externalTrafficPolicy,
        internalTrafficPolicy: s.internalTrafficPolicy,
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, nodePort: p.nodePort, protocol: p.protocol })),
      },
      status: { loadBalancer: { ingress: s.loadBalancerIngress } },
    });
    for (const family of FAMILIES) {
      items.push({
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSlice',
        metadata: { name: `${s.name}-${family}`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
        addressType: family === 'v4' ? 'IPv4' : 'IPv6',
        endpoints: c.endpoints
          .filter((e) => e.ip.includes(':') === (family === 'v6'))
          .map((e) => ({ addresses: [e.ip], nodeName: e.nodeName, conditions: { ready: true } })),
        ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      });
    }
  }
  const list = stringify({ apiVersion: 'v1', kind: 'List', items });
  const proxy = stringify({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
    kind: 'KubeProxyConfiguration',
    clusterCIDR: CLUSTER_CIDRS.join(','),
  });
  return `${list}---\n${proxy}`;
}
