// The policy matrix's cases and kube-proxy's expected decisions, shared by
// the datapath-level and the replay-level policy tests.
import type { ResolvedEndpoint, Service } from '../control/model.js';
import { buildFrame, decodeFrame } from '../traces/frames.js';
import { stringify } from 'yaml';
import { endpoints, makeService } from './helpers.js';

export const NODE_IP = '192.168.0.10';
export const SOURCES = { pod: '10.244.1.77', node: NODE_IP, external: '172.16.5.5' } as const;
export type Source = keyof typeof SOURCES;
export const LOCAL_EP = '10.244.1.5';
export const REMOTE_EPS = ['10.244.2.5', '10.244.3.5'];
export const ALL_EPS = [LOCAL_EP, ...REMOTE_EPS];

export const eps = (ips: string[]) => endpoints(ips.map((ip): [string, number, string] => [ip, 8080, ip === LOCAL_EP ? 'node-a' : 'node-b']));

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

export interface Case { svc: Service; endpoints: ResolvedEndpoint[]; n: number }
export const CASES: Record<string, Case> = {
  cluster: { svc: lbService('cluster', '10.96.1.1', 1, 'Cluster'), endpoints: eps(ALL_EPS), n: 1 },
  local: { svc: lbService('local', '10.96.1.2', 2, 'Local'), endpoints: eps(ALL_EPS), n: 2 },
  remoteOnly: { svc: lbService('remote-only', '10.96.1.3', 3, 'Local'), endpoints: eps(REMOTE_EPS), n: 3 },
  empty: { svc: lbService('empty', '10.96.1.4', 4, 'Cluster'), endpoints: [], n: 4 },
};

export function frontends(c: Case): Record<string, [string, number]> {
  return {
    ClusterIP: [c.svc.clusterIPs[0], 80],
    NodePort: [NODE_IP, 30080 + c.n],
    ExternalIP: [`198.51.100.${c.n}`, 80],
    LoadBalancer: [`203.0.113.${50 + c.n}`, 80],
  };
}

/** What kube-proxy does, written out as a table: backends allowed, or the verdict. */
export function expected(caseName: string, kind: string, source: Source, podNetworkKnown = true): { backends?: string[]; snat?: boolean; outcome?: string } {
  const c = CASES[caseName];
  if (c.endpoints.length === 0) return { outcome: 'TX NO_ENDPOINTS' };
  const all = c.endpoints.map((e) => e.ip);
  const local = all.filter((ip) => ip === LOCAL_EP);
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
  return buildFrame({
    srcMac: d.eth!.dst, dstMac: d.eth!.src,
    ipv4: { src: d.ipv4!.dst, dst: d.ipv4!.src, id: 9 },
    l4: d.tcp ? { kind: 'tcp', sport: l4.dport, dport: l4.sport, seq: 5, ack: 1001, flags: ['SYN', 'ACK'] } : { kind: 'udp', sport: l4.dport, dport: l4.sport },
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
    ...[['node-a', NODE_IP], ['node-b', '192.168.0.11']].map(([name, ip]) => ({
      apiVersion: 'v1', kind: 'Node', metadata: { name }, status: { addresses: [{ type: 'InternalIP', address: ip }] },
    })),
  ];
  for (const c of Object.values(CASES)) {
    const s = c.svc;
    items.push({
      apiVersion: 'v1', kind: 'Service', metadata: { name: s.name, namespace: s.namespace },
      spec: {
        type: s.type, clusterIP: s.clusterIPs[0], externalIPs: s.externalIPs,
        externalTrafficPolicy: s.externalTrafficPolicy, internalTrafficPolicy: s.internalTrafficPolicy,
        ports: s.ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.targetPort, nodePort: p.nodePort, protocol: p.protocol })),
      },
      status: { loadBalancer: { ingress: s.loadBalancerIngress } },
    });
    items.push({
      apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
      metadata: { name: `${s.name}-abcde`, namespace: s.namespace, labels: { 'kubernetes.io/service-name': s.name } },
      addressType: 'IPv4',
      endpoints: c.endpoints.map((e) => ({ addresses: [e.ip], nodeName: e.nodeName, conditions: { ready: true } })),
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    });
  }
  const list = stringify({ apiVersion: 'v1', kind: 'List', items });
  const proxy = stringify({ apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16' });
  return `${list}---\n${proxy}`;
}
