/**
 * Synthetic clusters of N single-port IPv4 ClusterIP Services of B backends
 * each (a third of them on the emulated node), and TCP flows of clients to
 * them: the in-process scenarios other than `mixed`, and the compile timing.
 */
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import { resolveServices } from '../control/cluster/index.js';
import type { ClusterState, EndpointSlice, ResolvedService, Service } from '../control/cluster/state.js';
import { buildFrame, TCP_FLAGS } from '../traces/frames.js';

const NODE = 'node-a';

/** Service `s`'s cluster IP, in 10.96.0.0/12 for up to a million Services. */
const clusterIP = (s: number) => `10.${96 + (s >> 16)}.${(s >> 8) & 255}.${s & 255}`;
/** Backend `k` (from 1), in 10.128.0.0/12 for up to a million backends. */
const backendIP = (k: number) => `10.${128 + (k >> 16)}.${(k >> 8) & 255}.${k & 255}`;

/** The state as the API would hold it (one EndpointSlice per Service), resolved as the CLI resolves it. */
export function syntheticCluster(services: number, backendsPerService: number): { state: ClusterState; resolved: ResolvedService[] } {
  const state: ClusterState = {
    services: Array.from({ length: services }, (_, s) => syntheticService(s)),
    endpointSlices: Array.from({ length: services }, (_, s) => syntheticSlice(s, backendsPerService)),
    nodes: [NODE, 'node-b'].map((name, i) => ({
      origin: { file: 'bench', object: `Node ${name}` },
      name,
      addresses: [{ type: 'InternalIP', address: `192.168.0.${i + 1}` }],
    })),
    notes: [],
  };
  return { state, resolved: resolveServices(state).services };
}

function syntheticService(s: number): Service {
  return {
    origin: { file: 'bench', object: `Service bench/svc-${s}` },
    namespace: 'bench',
    name: `svc-${s}`,
    type: 'ClusterIP',
    clusterIPs: [clusterIP(s)],
    ipFamilies: ['IPv4'],
    ports: [{ name: '', protocol: 'TCP', port: 80, targetPort: 8080 }],
    sessionAffinity: 'None',
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    externalIPs: [],
    loadBalancerIngress: [],
    loadBalancerSourceRanges: [],
    allocateLoadBalancerNodePorts: true,
    publishNotReadyAddresses: false,
  };
}

/** Service `s`'s endpoints, a third of them on the emulated node. */
export function syntheticSlice(s: number, backends: number): EndpointSlice {
  return {
    origin: { file: 'bench', object: `EndpointSlice bench/svc-${s}` },
    namespace: 'bench',
    name: `svc-${s}`,
    serviceName: `svc-${s}`,
    addressType: 'IPv4',
    endpoints: Array.from({ length: backends }, (_, b) => ({
      addresses: [backendIP(s * backends + b + 1)],
      nodeName: b % 3 === 0 ? NODE : 'node-b',
      conditions: { ready: true, serving: true, terminating: false },
    })),
    ports: [{ name: '', protocol: 'TCP', port: 8080 }],
  };
}

export const syntheticCompileOptions = (maglevTableSize: number): CompileOptions => ({ node: NODE, seed: 0, maglevTableSize });

export function compileSynthetic(services: number, backendsPerService: number, maglevTableSize: number): Compiled {
  const { state, resolved } = syntheticCluster(services, backendsPerService);
  return compile(state, resolved, syntheticCompileOptions(maglevTableSize));
}

const PAYLOAD = new Uint8Array(100);

/**
 * The packet of flow `i` (distinct for every i below 2^24) to Service
 * `i % services`, with `flags` and a 100-byte payload. The synthetic cluster
 * names no pod network, so (as with kube-proxy) nothing is masqueraded.
 */
export function flowPacket(i: number, services: number, flags = TCP_FLAGS.ACK | TCP_FLAGS.PSH): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    ipv4: { src: `10.${1 + ((i >> 24) & 0x3f)}.${(i >> 16) & 255}.${(i >> 8) & 255}`, dst: clusterIP(i % services) },
    l4: { kind: 'tcp', sport: 1024 + (i & 255) * 200 + ((i >> 8) % 200), dport: 80, seq: i, ack: 1, flags },
    payload: PAYLOAD,
  });
}

export function flowPackets(count: number, services: number, flags?: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => flowPacket(i, services, flags));
}
