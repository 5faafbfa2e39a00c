/** Shared test fixtures: model objects, a loaded datapath, frames run through it. */
import { compile, type Compiled, type CompileOptions } from '../control/compile/compiler.js';
import { Batch, type Datapath } from '../control/runtime/datapath.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import type {
  ClusterState,
  EndpointConditions,
  Node,
  Protocol,
  ResolvedEndpoint,
  ResolvedService,
  Service,
  ServicePort,
} from '../control/cluster/state.js';
import { loadProgram } from '../control/runtime/loader.js';
import { DESC_F_SNAT, REASONS, VERDICTS } from '../control/compile/layout.js';
import { buildFrame, decodeFrame, verifyChecksums, type FrameSpec } from '../traces/frames.js';
import { vi } from 'vitest';
import { main } from '../control/cli/main.js';

export const READY: EndpointConditions = { ready: true, serving: true, terminating: false };

export function makeService(
  ns: string,
  name: string,
  clusterIP: string,
  ports: Array<Partial<ServicePort> & { port: number }>,
  extra: Partial<Service> = {},
): Service {
  return {
    origin: { file: 'test', object: `Service ${ns}/${name}` },
    namespace: ns,
    name,
    type: 'ClusterIP',
    clusterIPs: [clusterIP],
    ipFamilies: ['IPv4'],
    ports: ports.map((p) => ({ name: '', protocol: 'TCP' as Protocol, targetPort: p.port, ...p })),
    sessionAffinity: 'None',
    affinityTimeoutSeconds: 10800,
    externalTrafficPolicy: 'Cluster',
    internalTrafficPolicy: 'Cluster',
    externalIPs: [],
    loadBalancerIngress: [],
    loadBalancerSourceRanges: [],
    allocateLoadBalancerNodePorts: true,
    publishNotReadyAddresses: false,
    ...extra,
  };
}

export function endpoints(list: Array<[string, number, string?]>, conditions = READY): ResolvedEndpoint[] {
  return list.map(([ip, port, nodeName]) => ({ ip, port, nodeName, conditions }));
}

/** One Service with one port whose endpoints are given. */
export function resolvedService(svc: Service, perPort: ResolvedEndpoint[][]): ResolvedService {
  return { service: svc, ports: svc.ports.map((port, i) => ({ port, endpoints: perPort[i] ?? [] })) };
}

export function makeNode(name: string, ...ips: string[]): Node {
  return { origin: { file: 'test', object: `Node ${name}` }, name, addresses: ips.map((address) => ({ type: 'InternalIP', address })) };
}

export function stateOf(resolved: ResolvedService[], nodes: Node[] = [makeNode('node-a', '192.168.0.10')]): ClusterState {
  return { services: resolved.map((r) => r.service), endpointSlices: [], nodes, notes: [] };
}

export async function program(
  resolved: ResolvedService[],
  opts: Partial<CompileOptions> & { ctEntries?: number; nodes?: Node[] } = {},
): Promise<{ compiled: Compiled; dp: Datapath }> {
  const state = stateOf(resolved, opts.nodes);
  const compiled = compile(state, resolved, { seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE, ...opts });
  const dp = await loadProgram(compiled, { ctEntries: opts.ctEntries });
  return { compiled, dp };
}

export interface FrameResult {
  verdict: string;
  reason: string;
  serviceId: number;
  backendId: number;
  snat: boolean;
  out: Uint8Array;
}

/** Runs frames through the datapath in one batch; `times` are seconds of packet time. */
export function runFrames(dp: Datapath, frames: Uint8Array[], times?: number[], batch?: Batch): FrameResult[] {
  const b =
    batch ??
    dp.createBatch(
      Math.max(frames.length, 1),
      frames.reduce((n, f) => n + Batch.footprint(f.length), 0),
    );
  b.clear();
  frames.forEach((f, i) => {
    const t = times?.[i] ?? 1_700_000_000 + i * 0.001;
    const sec = Math.floor(t);
    if (!b.add(f, f.length, sec, Math.round((t - sec) * 1e9))) throw new Error('batch full');
  });
  b.run();
  return frames.map((_, i) => ({
    verdict: VERDICTS[b.verdict(i)],
    reason: REASONS[b.reason(i)],
    serviceId: b.serviceId(i),
    backendId: b.backendId(i),
    snat: (b.flags(i) & DESC_F_SNAT) !== 0,
    out: b.frame(i).slice(),
  }));
}

export const CLIENT_MAC = '02:00:00:00:00:01';
export const NODE_MAC = '02:00:00:00:00:fe';

/** The IP layer of a frame spec: IPv4 or IPv6, by the addresses' form. */
export function ipLayer(src: string, dst: string, id: number): Pick<FrameSpec, 'ipv4' | 'ipv6'> {
  return src.includes(':') ? { ipv6: { src, dst } } : { ipv4: { src, dst, id } };
}

/** Both IP layers' checksums (IPv6 has none of its own) and the L4 one are valid. */
export function checksumsValid(frame: Uint8Array): boolean {
  const c = verifyChecksums(frame);
  return c.ipv4 !== false && c.ipv4 !== 'truncated' && c.l4 === true;
}

/** The decoded IP header, whichever version. */
export function ipOf(frame: Uint8Array): { src: string; dst: string } {
  const d = decodeFrame(frame);
  return (d.ipv4 ?? d.ipv6)!;
}

export function tcp(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  flags: Array<'SYN' | 'ACK' | 'FIN' | 'RST' | 'PSH'>,
  extra: Partial<FrameSpec> = {},
): Uint8Array {
  return buildFrame({
    srcMac: CLIENT_MAC,
    dstMac: NODE_MAC,
    ...ipLayer(src, dst, 1),
    l4: { kind: 'tcp', sport, dport, seq: 1000, ack: flags.includes('ACK') ? 2000 : 0, flags },
    ...extra,
  }).slice();
}

export function udp(
  src: string,
  sport: number,
  dst: string,
  dport: number,
  extra: Partial<FrameSpec> = {},
  zeroChecksum = false,
): Uint8Array {
  return buildFrame({
    srcMac: CLIENT_MAC,
    dstMac: NODE_MAC,
    ...ipLayer(src, dst, 2),
    l4: { kind: 'udp', sport, dport, zeroChecksum },
    payload: new Uint8Array([1, 2, 3, 4, 5]),
    ...extra,
  }).slice();
}

/** Runs the CLI in-process, capturing what it prints. */
export async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => {
    out.push(a.join(' '));
  });
  const error = vi.spyOn(console, 'error').mockImplementation((...a) => {
    err.push(a.join(' '));
  });
  try {
    const code = await main(args);
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}

/** `text` as a regular expression that matches it literally (a path in an error message, say). */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
