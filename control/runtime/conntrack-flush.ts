/**
 * kube-proxy's stale UDP conntrack flush, done on the datapath's conntrack
 * maps through the map API right after a sync (pkg/proxy/conntrack
 * CleanStaleEntries, kube-proxy 1.32 and later), and a census of the
 * established flows that name given backends.
 *
 * UDP has no connection to close, so a conntrack entry that DNATs a client to
 * a backend that left would carry the client's datagrams to it until the
 * entry times out (the DNS black hole of kubernetes#48370): kube-proxy
 * deletes, after each sync, every UDP entry whose original destination is a
 * Service frontend and whose backend is not a serving endpoint of it any
 * more. Here the entry is not deleted but flagged (CT_F.FLUSHED): the
 * datapath treats the flow as over on its next packet and load-balances it
 * again, and says so; its reply entry and masquerade binding go now, as the
 * kernel's go with the entry. TCP and SCTP entries are never touched.
 *
 * Which frontends and endpoints count is decided from the cluster state, not
 * from the compiled tables, as kube-proxy decides from its Service and
 * endpoint maps: the frontends a Service had before the sync (cluster IPs,
 * external IPs, load-balancer IPs with their UDP ports; UDP NodePorts by port,
 * on any address), and the endpoint IPs serving them after (ready, or serving
 * while terminating); a Service deleted or left without a serving endpoint
 * has none.
 */
import ipaddr from 'ipaddr.js';
import { resolveServices } from '../cluster/index.js';
import type { ClusterState, ResolvedService, Service } from '../cluster/state.js';
import { skipReason } from '../compile/compiler.js';
import {
  BPF_EXIST,
  CONFIG,
  CT4_TUPLE,
  CT6_TUPLE,
  CT_ENTRY,
  CT_F,
  IPPROTO,
  decode,
  encode,
  type MapName,
  type Struct,
  type StructValue,
} from '../compile/layout.js';
import { u32Key } from './datapath.js';
import type { LiveProgram } from './update.js';

/** Flow counts per Service port name ("namespace/name:port"). */
export type FlowsByService = Record<string, number>;

interface FamilyMaps {
  ct: MapName;
  tuple: Struct;
  backends: MapName;
  snat: MapName;
  /** The config field holding the family's masquerade address. */
  snatAddress: string;
}

const FAMILIES: readonly FamilyMaps[] = [
  { ct: 'ct4', tuple: CT4_TUPLE, backends: 'lb4Backends', snat: 'snat4', snatAddress: 'snatAddress' },
  { ct: 'ct6', tuple: CT6_TUPLE, backends: 'lb6Backends', snat: 'snat6', snatAddress: 'snatAddress6' },
];

const offsetOf = (s: Struct, field: string) => s.fields.find((f) => f.name === field)!.offset;
const FLAGS_AT = offsetOf(CT_ENTRY, 'flags');
const LAST_SEEN_AT = offsetOf(CT_ENTRY, 'lastSeen');
const BACKEND_ID_AT = offsetOf(CT_ENTRY, 'backendId');

/** A live original-direction conntrack entry: its raw key and value, the value decoded. */
interface TrackedFlow {
  family: FamilyMaps;
  key: Uint8Array;
  value: Uint8Array;
  entry: StructValue;
}

const NS_PER_SECOND = 1_000_000_000n;

/** The datapath's conntrack timeouts, as the config map holds them now, in nanoseconds. */
function timeouts(live: LiveProgram): { tcpEstablished: bigint; tcpClosing: bigint; udp: bigint; udpStream: bigint } {
  const config = decode(CONFIG, live.dp.map('config').lookupRaw(u32Key(0))!);
  const ns = (field: string) => BigInt(config[field] as number) * NS_PER_SECOND;
  return { tcpEstablished: ns('ctTcpEstablished'), tcpClosing: ns('ctTcpClosing'), udp: ns('ctUdp'), udpStream: ns('ctUdpStream') };
}

/** Which original entries a walk reads: by protocol and destination port, from the raw key. */
type KeyFilter = (proto: number, dport: number) => boolean;
/** And by backend id and CT_F flags, from the raw value. */
type ValueFilter = (backendId: number, flags: number) => boolean;

/**
 * The original-direction entries of both conntrack maps that are live at
 * `now` (packet time, ns), not flushed already and `wanted`; all read before
 * the caller changes any (a map walk must not lose its place).
 */
function liveOriginals(live: LiveProgram, now: bigint, wanted: KeyFilter, wantedValue: ValueFilter = () => true): TrackedFlow[] {
  const t = timeouts(live);
  const original = live.dp.constant('CT_DIR_ORIGINAL');
  const flows: TrackedFlow[] = [];
  for (const family of FAMILIES) {
    const map = live.dp.map(family.ct);
    const [protoAt, dportAt, dirAt] = ['proto', 'dport', 'dir'].map((field) => offsetOf(family.tuple, field));
    // One batch walk; entries are read in place, and only those kept are copied.
    map.scanRaw((key, value) => {
      const proto = key[protoAt];
      if (key[dirAt] !== original || !wanted(proto, (key[dportAt] << 8) | key[dportAt + 1])) return;
      const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
      const flags = view.getUint16(FLAGS_AT, true);
      const last = view.getBigUint64(LAST_SEEN_AT, true);
      if ((flags & CT_F.FLUSHED) !== 0 || !wantedValue(view.getUint32(BACKEND_ID_AT, true), flags)) return;
      // As the datapath's conntrack.ts isLive: TCP by its state, every other protocol by UDP's timeouts.
      const timeout =
        proto === IPPROTO.TCP
          ? (flags & CT_F.CLOSING) !== 0
            ? t.tcpClosing
            : t.tcpEstablished
          : (flags & CT_F.SEEN_REPLY) !== 0
            ? t.udpStream
            : t.udp;
      if (now > last && now - last > timeout) return;
      const kept = value.slice();
      flows.push({ family, key: key.slice(), value: kept, entry: decode(CT_ENTRY, kept) });
    });
  }
  return flows;
}

function countFlow(counts: FlowsByService, live: LiveProgram, serviceId: number): void {
  const name = live.compiled.services[serviceId - 1]?.name ?? `service id ${serviceId}`;
  counts[name] = (counts[name] ?? 0) + 1;
}

/**
 * The live established flows (original-direction entries, live at `now`, not
 * flushed, not closing) whose entries name one of `backendIds`, per Service port: after a
 * change, the flows kept on a backend that left (kube-proxy) or about to
 * choose again (Cilium).
 */
export function countFlowsOnBackends(live: LiveProgram, backendIds: readonly number[], now: bigint): FlowsByService {
  const ids = new Set(backendIds);
  const counts: FlowsByService = {};
  if (ids.size === 0) return counts;
  // A TCP flow that saw its FIN or RST is over, whatever its entry's remaining life.
  const named = (backendId: number, flags: number) => ids.has(backendId) && (flags & CT_F.CLOSING) === 0;
  for (const flow of liveOriginals(live, now, () => true, named)) countFlow(counts, live, flow.entry.serviceId as number);
  return counts;
}

/**
 * kube-proxy's flush after the sync that turned `before` (resolved as
 * `beforeResolved`, resolved here when not given) into the live program's
 * state: every live UDP flow whose original destination was a Service
 * frontend before and whose backend IP is not a serving endpoint IP of that
 * frontend now is flagged CT_F.FLUSHED, and its reply entry and masquerade
 * binding are deleted. `now` is the sync's time on the packet clock (ns).
 * Returns the flows flushed per Service port.
 *
 * A flow is only ever sent to a serving endpoint, and the flush after each
 * sync takes those of endpoints that stopped serving; so when no frontend
 * lost a serving endpoint IP, no flow can be stale, and the maps are not
 * walked at all.
 */
export function flushStaleUdp(
  live: LiveProgram,
  before: ClusterState,
  now: bigint,
  beforeResolved: readonly ResolvedService[] = resolveServices(before).services,
): FlowsByService {
  const flushed: FlowsByService = {};
  const test = staleTest(beforeResolved, live.resolved);
  if (!test) return flushed;
  const config = decode(CONFIG, live.dp.map('config').lookupRaw(u32Key(0))!);
  const backends = new Map<string, StructValue | undefined>();
  const backendOf = (family: FamilyMaps, id: number) => {
    const key = `${family.backends} ${id}`;
    if (!backends.has(key)) backends.set(key, live.dp.map(family.backends).lookup({ value: id }));
    return backends.get(key);
  };
  for (const flow of liveOriginals(live, now, (proto, dport) => proto === IPPROTO.UDP && test.ports.has(dport))) {
    const tuple = decode(flow.family.tuple, flow.key);
    const backend = backendOf(flow.family, flow.entry.backendId as number);
    if (!test.stale(tuple.daddr as string, tuple.dport as number, backend?.address as string | undefined)) continue;
    flush(live, flow, tuple, backend, config[flow.family.snatAddress] as string);
    countFlow(flushed, live, flow.entry.serviceId as number);
  }
  return flushed;
}

/**
 * Flags the flow's original entry and deletes its reply entry (backend ->
 * client, or -> masquerade address and port) and, when masqueraded, the
 * binding of its port: what the datapath's endFlow deletes, when the reply
 * entry is the same flow's.
 */
function flush(live: LiveProgram, flow: TrackedFlow, tuple: StructValue, backend: StructValue | undefined, snatAddress: string): void {
  const ct = live.dp.map(flow.family.ct);
  const value = flow.value.slice();
  const view = new DataView(value.buffer);
  const flags = view.getUint16(FLAGS_AT, true);
  view.setUint16(FLAGS_AT, flags | CT_F.FLUSHED, true);
  ct.updateRaw(flow.key, value, BPF_EXIST);
  if (!backend) return;
  const masqueraded = (flags & CT_F.SNAT) !== 0;
  const replyKey = encode(flow.family.tuple, {
    saddr: backend.address,
    daddr: masqueraded ? snatAddress : tuple.saddr,
    sport: backend.port,
    dport: masqueraded ? flow.entry.snatPort : tuple.sport,
    proto: tuple.proto,
    dir: live.dp.constant('CT_DIR_REPLY'),
  });
  const reply = ct.lookupRaw(replyKey);
  if (!reply) return;
  const r = decode(CT_ENTRY, reply);
  const e = flow.entry;
  if (r.backendId !== e.backendId || r.revNatIndex !== e.revNatIndex || r.serviceId !== e.serviceId) return;
  ct.deleteRaw(replyKey);
  if (masqueraded) live.dp.map(flow.family.snat).deleteRaw(replyKey);
}

/** An address as the conntrack and backend maps decode it (control/compile/layout.ts decode). */
const canonical = (ip: string) => ipaddr.parse(ip).toString();

/** The addresses a Service is reached on besides NodePorts: cluster IPs, external IPs, load-balancer IPs (not Proxy-mode ones). */
function serviceIPs(s: Service): string[] {
  if (skipReason(s)) return [];
  const lbIPs = s.type === 'LoadBalancer' ? s.loadBalancerIngress.filter((i) => i.ip && i.ipMode !== 'Proxy').map((i) => i.ip!) : [];
  return [...s.clusterIPs, ...s.externalIPs, ...lbIPs].map(canonical);
}

/** The serving endpoint IPs of every UDP frontend: by "address port" for Service IPs, by port for NodePorts. */
interface UdpServing {
  ips: Map<string, Set<string>>;
  nodePorts: Map<number, Set<string>>;
}

function udpServing(services: readonly ResolvedService[]): UdpServing {
  const serving: UdpServing = { ips: new Map(), nodePorts: new Map() };
  const serve = <K>(map: Map<K, Set<string>>, key: K, ips: readonly string[]) => {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    for (const ip of ips) set.add(ip);
  };
  for (const rs of services) {
    for (const rp of rs.ports.filter((rp) => rp.port.protocol === 'UDP')) {
      const ips = rp.endpoints
        .filter((ep) => ep.conditions.ready || (ep.conditions.serving && ep.conditions.terminating))
        .map((ep) => canonical(ep.ip));
      for (const ip of serviceIPs(rs.service)) serve(serving.ips, `${ip} ${rp.port.port}`, ips);
      if (rp.port.nodePort) serve(serving.nodePorts, rp.port.nodePort, ips);
    }
  }
  return serving;
}

/**
 * Which UDP flows are stale after the change from `before` to `after`: those
 * to a frontend of `before` (a Service IP and UDP port, else a UDP NodePort by
 * its port alone, as kube-proxy tries them) whose backend IP (undefined when
 * the backend is not known any more) does not serve it in `after`. Undefined
 * when no frontend lost a serving endpoint IP. `ports`: the frontends' ports.
 */
function staleTest(
  before: readonly ResolvedService[],
  after: readonly ResolvedService[],
): { ports: ReadonlySet<number>; stale: (address: string, port: number, backend: string | undefined) => boolean } | undefined {
  const [was, now] = [udpServing(before), udpServing(after)];
  const lost = <K>(a: Map<K, Set<string>>, b: Map<K, Set<string>>) =>
    [...a].some(([key, ips]) => [...ips].some((ip) => !b.get(key)?.has(ip)));
  if (!lost(was.ips, now.ips) && !lost(was.nodePorts, now.nodePorts)) return undefined;
  const none = new Set<string>();
  const servingOf = (address: string, port: number): ReadonlySet<string> | undefined => {
    const key = `${address} ${port}`;
    if (was.ips.has(key)) return now.ips.get(key) ?? none;
    return was.nodePorts.has(port) ? (now.nodePorts.get(port) ?? none) : undefined;
  };
  return {
    ports: new Set([...[...was.ips.keys()].map((key) => Number(key.split(' ')[1])), ...was.nodePorts.keys()]),
    stale: (address, port, backend) => {
      const serving = servingOf(address, port);
      return serving !== undefined && (backend === undefined || !serving.has(backend));
    },
  };
}
