/**
 * Synthetic clusters of N single-port IPv4 ClusterIP Services of B backends
 * each (a third of them on the emulated node), and TCP flows from pods to
 * them: the in-process scenarios other than `mixed`, and the compile timing.
 */
import { compile, type Compiled } from '../control/compiler.js';
import type { ClusterState, ResolvedService, Service } from '../control/model.js';
import { buildFrame, TCP_FLAGS } from '../traces/frames.js';

const NODE = 'node-a';

/** Service `s`'s cluster IP, in 10.96.0.0/12 for up to a million Services. */
const clusterIP = (s: number) => `10.${96 + (s >> 16)}.${(s >> 8) & 255}.${s & 255}`;
/** Backend `k` (from 1), in 10.128.0.0/12 for up to a million backends. */
const backendIP = (k: number) => `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

export function syntheticCluster(services: number, backendsPerService: number): { state: ClusterState; resolved: ResolvedService[] } {
  const resolved: ResolvedService[] = [];
  for (let s = 0; s < services; s++) {
    const service: Service = {
      origin: { file: 'bench', object: `Service bench/svc-${s}` }, namespace: 'bench', name: `svc-${s}`, type: 'ClusterIP',
      clusterIPs: [clusterIP(s)], ipFamilies: ['IPv4'],
      ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080 }],
      sessionAffinity: 'None', affinityTimeoutSeconds: 10800, externalTrafficPolicy: 'Cluster', internalTrafficPolicy: 'Cluster',
      externalIPs: [], loadBalancerIngress: [], loadBalancerSourceRanges: [], allocateLoadBalancerNodePorts: true, publishNotReadyAddresses: false,
    };
    const endpoints = Array.from({ length: backendsPerService }, (_, b) => ({
      ip: backendIP(s * backendsPerService + b + 1), port: 8080, nodeName: b % 3 === 0 ? NODE : 'node-b',
      conditions: { ready: true, serving: true, terminating: false },
    }));
    resolved.push({ service, ports: [{ port: service.ports[0], endpoints }] });
  }
  const nodes = [NODE, 'node-b'].map((name, i) => ({ origin: { file: 'bench', object: `Node ${name}` }, name, addresses: [{ type: 'InternalIP', address: `192.168.0.${i + 1}` }] }));
  return { state: { services: resolved.map((r) => r.service), endpointSlices: [], nodes, notes: [] }, resolved };
}

export function compileSynthetic(services: number, backendsPerService: number, maglevTableSize: number): Compiled {
  const { state, resolved } = syntheticCluster(services, backendsPerService);
  return compile(state, resolved, { node: NODE, seed: 0, maglevTableSize });
}

const PAYLOAD = new Uint8Array(100);

/**
 * The packet of flow `i` (distinct for every i below 2^24) to Service
 * `i % services`, with `flags` and a 100-byte payload. The synthetic cluster
 * names no pod network, so (as with kube-proxy) nothing is masqueraded.
 */
export function flowPacket(i: number, services: number, flags = TCP_FLAGS.ACK | TCP_FLAGS.PSH): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02',
    ipv4: { src: `10.${1 + ((i >> 24) & 0x3f)}.${(i >> 16) & 255}.${(i >> 8) & 255}`, dst: clusterIP(i % services) },
    l4: { kind: 'tcp', sport: 1024 + (i & 255) * 200 + ((i >> 8) % 200), dport: 80, seq: i, ack: 1, flags },
    payload: PAYLOAD,
  });
}

export function flowPackets(count: number, services: number, flags?: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => flowPacket(i, services, flags));
}
