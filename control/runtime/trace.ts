/**
 * `svcpath trace`: what the datapath did with chosen packets, step by step,
 * like pwru or `cilium monitor` — the headers, every map lookup with its key
 * and result, the Maglev slot, the rewrite and the verdict. The steps are the
 * datapath's own trace records (datapath/trace.ts), decoded here through the
 * layouts; only the headers and the rewrite are read off the frames in and out.
 */
import {
  decodeCaptured,
  formatIpv4,
  formatIpv6,
  ipv4ToBytes,
  ipv6ToBytes,
  verifyCapturedChecksums,
  type DecodedCapture,
} from '../../traces/frames.js';
import type { Compiled, CompiledService } from '../compile/compiler.js';
import type { Datapath } from './datapath.js';
import { InputError } from '../common/errors.js';
import { describeTopology } from '../compile/topology.js';
import {
  BE_F_GONE,
  BE_F_LOCAL,
  IPPROTO,
  MAPS,
  REASONS,
  SVC_F,
  TRACE_KEY_OFFSET,
  TRACE_KIND,
  TRACE_VALUE_OFFSET,
  VERDICTS,
  decode,
  hostPort,
  type FlowChange,
  type MapSpec,
  type StructValue,
} from '../compile/layout.js';
import { replay, type TracedPacket } from './replay.js';
import type { ClusterChanges, SyncRecord } from './cluster-sync.js';
import { closest, didYouMean } from '../common/suggest.js';

export type TraceStep =
  | { step: 'lookup'; map: string; key: StructValue; value: StructValue | null }
  | {
      step: 'maglev';
      table: number;
      slot: number;
      backendId: number;
      backend: string | null;
      /** The topology filter that chose a cluster-wide table's backends, when hints are used or asked for. */
      topology?: string;
    }
  | { step: 'verdict'; verdict: string; reason: string };

export interface PacketTrace {
  packet: number;
  time: string;
  /** The link type the frame was captured on (1 Ethernet, 113 and 276 Linux cooked, 101 raw IP, ...). */
  linktype: number;
  headers: string;
  steps: TraceStep[];
  /** Fields the datapath changed: [field, before, after]. */
  rewrite: Array<[string, string, string]>;
  checksumsValid: boolean | null;
  /** Whether the frame's checksums were valid as captured (null when it was not rewritten). */
  capturedChecksumsValid: boolean | null;
  verdict: string;
  reason: string;
  service: string | null;
  backend: string | null;
  snat: boolean;
  /** With --events: the state the packet was decided under, the syncs that led to it, and what a change did to its flow. */
  state?: { index: number; syncs: Array<Pick<SyncRecord, 'state' | 'at' | 'events'>> };
  flowChange?: FlowChange | null;
}

/** What to trace: a packet is traced when any selector chooses it; all packets when there is none. */
export interface TraceSelection {
  packets: number[];
  /** "ip:port" (or "[ip]:port"): packets from or to it, before or after the datapath's rewrite. */
  flows: string[];
  /** "ns/name" or "ns/name:port" (port name or number): packets the decision gives to that Service. */
  services: string[];
}

export interface TraceResult {
  traces: PacketTrace[];
  /** Packets replayed. */
  packets: number;
  /** One line for each selector that chose no packet, saying why. */
  unmatched: string[];
  /** Set when a bad record ended the replay early: the traces are those of the packets before it. */
  stoppedAt?: { record: number; error: string };
}

const MAP_BY_ID = new Map<number, MapSpec>(Object.values(MAPS).map((m) => [m.id, m]));

function flags(bits: number, names: Record<string, number>): string {
  const set = Object.entries(names)
    .filter(([, bit]) => (bits & bit) !== 0)
    .map(([n]) => n);
  return set.length ? set.join('|') : '0';
}

/**
 * The topology filter behind a Maglev table (4 * service id + 2 * (IPv6) + (local)):
 * only cluster-wide tables have one; a Local policy's table is this node's endpoints.
 */
function tableTopology(compiled: Compiled, table: number): string | undefined {
  const service = compiled.services[(table >>> 2) - 1];
  if (!service || table & 1) return undefined;
  return describeTopology(service.topology[table & 2 ? 'v6' : 'v4']);
}

/** One trace record, decoded through the layouts of the map it names. */
function decodeStep(r: Uint8Array, compiled: Compiled): TraceStep {
  const view = new DataView(r.buffer, r.byteOffset, r.byteLength);
  const kind = r[0];
  if (kind === TRACE_KIND.MAGLEV) {
    const backendId = view.getUint32(TRACE_VALUE_OFFSET, true);
    const b = compiled.backends[backendId - 1];
    const table = view.getUint32(TRACE_KEY_OFFSET, true);
    const topology = tableTopology(compiled, table);
    return {
      step: 'maglev',
      table,
      slot: view.getUint32(TRACE_KEY_OFFSET + 4, true),
      backendId,
      backend: b ? hostPort(b.ip, b.port) : null,
      ...(topology ? { topology } : {}),
    };
  }
  if (kind === TRACE_KIND.VERDICT)
    return { step: 'verdict', verdict: VERDICTS[r[TRACE_KEY_OFFSET]], reason: REASONS[r[TRACE_KEY_OFFSET + 1]] };
  const spec = MAP_BY_ID.get(r[1])!;
  const key = decode(spec.key, r.subarray(TRACE_KEY_OFFSET, TRACE_KEY_OFFSET + spec.key.size));
  let value: StructValue | null = null;
  if (r[2] && spec.value) {
    value = decode(spec.value, r.subarray(TRACE_VALUE_OFFSET, TRACE_VALUE_OFFSET + spec.value.size));
    if (spec.name.endsWith('_services')) value.flags = flags(value.flags as number, SVC_F);
    if (spec.name.endsWith('_backends')) value.flags = flags(value.flags as number, { LOCAL: BE_F_LOCAL, GONE: BE_F_GONE });
  }
  return { step: 'lookup', map: spec.name, key, value };
}

/** Every leaf field of a decoded frame, "ipv4.dst" -> "10.96.0.10". */
function fields(decoded: DecodedCapture): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (prefix: string, v: unknown): void => {
    if (v === undefined || v instanceof Uint8Array) return;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    } else {
      out.set(prefix, typeof v === 'number' && /checksum/.test(prefix) ? `0x${v.toString(16).padStart(4, '0')}` : JSON.stringify(v));
    }
  };
  walk('', decoded);
  return out;
}

/** tcpdump's names of the cooked packet types (print-sll.c). */
const COOKED_PACKET_TYPES = ['In', 'B', 'M', 'P', 'Out'];

/** The link layer in a few words; '' for untagged Ethernet, the common case, which the README's examples show bare. */
function linkSummary(d: DecodedCapture): string {
  const tags = (vlans: Array<{ vid: number }>) => vlans.map((t) => ` vlan ${t.vid}`).join('');
  if (d.eth) return tags(d.eth.vlans).trimStart();
  if (d.cooked) {
    const c = d.cooked;
    const direction = COOKED_PACKET_TYPES[c.packetType] ?? `packet type ${c.packetType}`;
    return `Linux cooked v${c.version}${c.ifindex === undefined ? '' : ` if ${c.ifindex}`} ${direction}${c.address ? ` from ${c.address}` : ''}${tags(c.vlans)}`;
  }
  if (d.loopback) return `${d.linktype === 0 ? 'BSD' : 'OpenBSD'} loopback family ${d.loopback.family}`;
  return RAW_LINK_NAMES[d.linktype] ?? (d.linktype === 1 ? 'Ethernet' : `link type ${d.linktype}`);
}

const RAW_LINK_NAMES: Record<number, string> = { 12: 'raw IP', 101: 'raw IP', 228: 'raw IPv4', 229: 'raw IPv6' };

/** The packet's addresses, protocol and ports, as far as they could be decoded. */
function networkSummary(d: DecodedCapture, frame: Uint8Array): string {
  if (d.unsupportedLinkType) return `not decoded (a link type svcpath does not read), ${frame.length} bytes`;
  if (d.networkOffset === undefined)
    return `${d.truncatedAt === 'vlan' ? 'VLAN tag' : 'link-layer header'} cut short, ${frame.length} bytes`;
  const ip = d.ipv4 ?? d.ipv6;
  if (!ip) {
    if (d.truncatedAt || d.malformed) return d.malformed ?? `${d.truncatedAt} header cut short`;
    return d.ethertype ? `ethertype 0x${d.ethertype.toString(16).padStart(4, '0')}, not IP` : 'not IP';
  }
  const p = ports(d, frame);
  const protocol = d.tcp ? 'TCP' : d.udp ? 'UDP' : p ? 'SCTP' : undefined;
  if (protocol && p) {
    return `${protocol} ${hostPort(ip.src, p[0])} > ${hostPort(ip.dst, p[1])}${d.tcp ? ` flags 0x${d.tcp.flags.toString(16)}` : ''}`;
  }
  const icmp = d.icmp ?? d.icmpv6;
  if (icmp) return `${d.icmp ? 'ICMP' : 'ICMPv6'} ${ip.src} > ${ip.dst} type ${icmp.type} code ${icmp.code}`;
  return `IP ${ip.src} > ${ip.dst}`;
}

function headerLine(d: DecodedCapture, frame: Uint8Array): string {
  const link = linkSummary(d);
  const network = networkSummary(d, frame);
  return link ? `${link}  ${network}` : network;
}

/**
 * The source and destination ports: TCP's and UDP's as decoded; SCTP's from
 * its common header, which the decoder leaves as payload (a first or only
 * fragment's, since later fragments carry none).
 */
function ports(d: DecodedCapture, frame: Uint8Array): [number, number] | undefined {
  const l4 = d.tcp ?? d.udp;
  if (l4) return [l4.sport, l4.dport];
  const protocol = d.ipv4?.protocol ?? d.ipv6?.protocol;
  const laterFragment = (d.ipv4?.fragOffset ?? 0) !== 0 || d.ipv6?.extensions.some((e) => (e.fragment?.offset ?? 0) !== 0);
  if (protocol !== IPPROTO.SCTP || laterFragment || d.payloadLength < 4) return undefined;
  const at = d.payloadOffset;
  return [(frame[at]! << 8) | frame[at + 1]!, (frame[at + 2]! << 8) | frame[at + 3]!];
}

/**
 * Both ends ("ip:port") of the packet, and of the packet an ICMP error quotes:
 * a flow's ICMP errors belong to the flow.
 */
function endpoints(d: DecodedCapture, frame: Uint8Array): string[] {
  const ends: string[] = [];
  const ip = d.ipv4 ?? d.ipv6;
  const p = ports(d, frame);
  if (ip && p) ends.push(hostPort(ip.src, p[0]), hostPort(ip.dst, p[1]));
  const quote = d.icmp?.embedded ?? d.icmpv6?.embedded;
  const quotedIp = d.icmp?.embedded?.ipv4 ?? d.icmpv6?.embedded?.ipv6;
  const quotedL4 = quote?.tcp ?? quote?.udp;
  if (quotedIp && quotedL4) ends.push(hostPort(quotedIp.src, quotedL4.sport), hostPort(quotedIp.dst, quotedL4.dport));
  return ends;
}

/**
 * Checksums after a rewrite. svcpath updates them incrementally and never
 * repairs them, so a frame captured before checksum offload filled them in
 * (every locally sent or veth packet in a tcpdump -i any capture) stays
 * invalid: say so, so that it is not taken for a wrong rewrite.
 */
function checksumVerdict(valid: boolean, validAsCaptured: boolean): string {
  if (valid) return 'valid';
  if (!validAsCaptured)
    return 'invalid, as they were in the capture (checksum offload: the host had not filled them in yet); kept as they were';
  return 'INVALID';
}

function toPacketTrace(t: TracedPacket, input: DecodedCapture, output: DecodedCapture, compiled: Compiled): PacketTrace {
  const before = fields(input);
  const after = fields(output);
  const rewrite: Array<[string, string, string]> = [];
  for (const [k, v] of after) if (before.get(k) !== v) rewrite.push([k, before.get(k) ?? '-', v]);
  const changed = rewrite.length > 0 || t.input.length !== t.output.length;
  const valid = (frame: Uint8Array) => {
    const sums = verifyCapturedChecksums(t.linktype, frame);
    return sums.ipv4 !== false && (sums.l4 === true || sums.l4 === 'zero');
  };
  const service = t.decision.serviceId ? compiled.services[t.decision.serviceId - 1].name : null;
  const b = t.decision.backendId ? compiled.backends[t.decision.backendId - 1] : undefined;
  return {
    packet: t.decision.n,
    time: new Date(t.tsSec * 1000 + Math.floor(t.tsNsec / 1e6)).toISOString(),
    linktype: t.linktype,
    headers: headerLine(input, t.input),
    steps: t.records.map((r) => decodeStep(r, compiled)),
    rewrite,
    checksumsValid: changed ? valid(t.output) : null,
    capturedChecksumsValid: changed ? valid(t.input) : null,
    verdict: VERDICTS[t.decision.verdict],
    reason: REASONS[t.decision.reason],
    service,
    backend: b ? hostPort(b.ip, b.port) : null,
    snat: t.decision.snat,
  };
}

/** "ip:port" as hostPort() writes it, whatever form of the address was typed. */
function parseFlow(text: string): string {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]+):(\d{1,5})$/.exec(text);
  const bad = () => new InputError(`--flow: "${text}" is not IP:PORT (or [IPv6]:PORT)`);
  if (!m || Number(m[2]) > 65535) throw bad();
  try {
    return hostPort(m[1].includes(':') ? formatIpv6(ipv6ToBytes(m[1])) : formatIpv4(ipv4ToBytes(m[1])), Number(m[2]));
  } catch {
    throw bad();
  }
}

/** A --service selector: the compiled Service ports it names, or why it names none. */
interface ServiceSelector {
  text: string;
  ids: Set<number>;
  problem?: string;
}

function resolveService(text: string, compiled: Compiled): ServiceSelector {
  const m = /^([^/:\s]+)\/([^/:\s]+)(?::([^/:\s]+))?$/.exec(text);
  if (!m) throw new InputError(`--service: "${text}" is not NS/NAME or NS/NAME:PORT`);
  const [, namespace, name, port] = m;
  const full = `${namespace}/${name}`;
  const nameOf = (s: CompiledService) => `${s.service.namespace}/${s.service.name}`;
  const ofService = compiled.services.filter((s) => nameOf(s) === full);
  const ids = new Set(ofService.filter((s) => port === undefined || s.port.name === port || String(s.port.port) === port).map((s) => s.id));
  const selector: ServiceSelector = { text, ids };
  if (ofService.length === 0) {
    const skipped = compiled.skipped.find((s) => s.service === full);
    const names = [...compiled.services.map(nameOf), ...compiled.skipped.map((s) => s.service)];
    selector.problem = skipped
      ? `Service ${full} is ${skipped.reason}, so no packet is ever its`
      : `no Service ${full} in the cluster state${didYouMean(closest(full, names)) || ' (svcpath services lists them)'}`;
  } else if (ids.size === 0) {
    selector.problem = `Service ${full} has no port ${port} (its ports: ${ofService.map((s) => s.port.name || s.port.port).join(', ')})`;
  }
  return selector;
}

/**
 * Replays the capture and traces the packets the selection chooses: those
 * numbered, those with a --flow endpoint at either end (as captured, or as the
 * datapath rewrote it: so a flow sent to a frontend brings its replies, whose
 * source the datapath restores to that frontend, and a backend brings the
 * flows DNATed to it), those decided for a --service, and every packet when
 * nothing is chosen.
 *
 * A reply can be told from another packet only after the datapath decided it,
 * so with --flow or --service every packet is marked for tracing and chosen
 * after its batch ran: nothing is remembered per flow (constant memory, and a
 * single pass, which also works on a capture read once from a pipe); the
 * datapath writes trace records for every packet, which only costs time.
 */
export async function traceReplay(
  trace: string,
  compiled: Compiled,
  dp: Datapath,
  sel: TraceSelection,
  changes?: ClusterChanges,
): Promise<TraceResult> {
  const packets = new Set(sel.packets);
  const flows = new Map(sel.flows.map((f) => [parseFlow(f), { text: f, hits: 0 }]));
  const services = sel.services.map((s) => ({ ...resolveService(s, compiled), hits: 0 }));
  const everything = packets.size === 0 && flows.size === 0 && services.length === 0;
  const afterDecision = flows.size > 0 || services.some((s) => s.ids.size > 0);
  const traces: PacketTrace[] = [];
  const result = await replay(trace, compiled, dp, {
    trace: {
      select: (n) => everything || afterDecision || packets.has(n),
      onPacket: (t) => {
        const input = decodeCaptured(t.linktype, t.input);
        const output = decodeCaptured(t.linktype, t.output);
        let chosen = everything || packets.has(t.decision.n);
        if (flows.size > 0) {
          for (const end of new Set([...endpoints(input, t.input), ...endpoints(output, t.output)])) {
            const flow = flows.get(end);
            if (flow) {
              flow.hits++;
              chosen = true;
            }
          }
        }
        for (const s of services) {
          if (s.ids.has(t.decision.serviceId)) {
            s.hits++;
            chosen = true;
          }
        }
        if (!chosen) return;
        // The names of the state in force: the packet's batch ran under it.
        const traced = toPacketTrace(t, input, output, changes?.live.compiled ?? compiled);
        if (changes) {
          const syncs = changes.applied.map(({ state, at, events }) => ({ state, at, events }));
          traced.state = { index: changes.stateIndex, syncs };
          traced.flowChange = t.decision.flowChange ?? null;
        }
        traces.push(traced);
      },
    },
    changes,
  });
  const unmatched = [
    ...[...packets].filter((n) => n > result.packets).map((n) => `--packet ${n}: the capture has ${result.packets} packets`),
    ...[...flows.values()].filter((f) => f.hits === 0).map((f) => `--flow ${f.text}: no packet from or to it, as captured or as rewritten`),
    ...services.filter((s) => s.problem || s.hits === 0).map((s) => `--service ${s.text}: ${s.problem ?? 'no packet was decided for it'}`),
  ];
  return { traces, packets: result.packets, unmatched, stoppedAt: result.stoppedAt };
}

/** Syncs shown before a traced packet's state; earlier ones are counted. */
const SYNCS_SHOWN = 5;

/** The state a packet was decided under, and the syncs (with their events) that led to it. */
function stateLines(state: NonNullable<PacketTrace['state']>): string[] {
  if (state.index === 0) return ['  state 0: the initial cluster state (no change applied yet)'];
  const shown = state.syncs.slice(-SYNCS_SHOWN);
  const earlier = state.syncs.length - shown.length;
  return [
    `  state ${state.index}: the initial cluster state${earlier ? `, ${earlier} earlier syncs,` : ''} then`,
    ...shown.map(
      (s) => `    sync ${s.state} at ${s.at}: ${s.events.map((e) => `${e.kind} ${e.object} ${e.type} (line ${e.line})`).join('; ')}`,
    ),
  ];
}

function inline(v: StructValue): string {
  const entries = Object.entries(v);
  if (entries.length === 1 && entries[0][0] === 'value') return String(entries[0][1]);
  return entries.map(([k, x]) => `${k} ${x}`).join('  ');
}

export function formatTraces(traces: PacketTrace[]): string {
  const lines: string[] = [];
  for (const t of traces) {
    lines.push(`packet ${t.packet}  ${t.time}  ${t.headers}`);
    for (const s of t.steps) {
      if (s.step === 'lookup') lines.push(`  lookup ${s.map.padEnd(17)} ${inline(s.key)}  ->  ${s.value ? inline(s.value) : 'miss'}`);
      else if (s.step === 'maglev')
        lines.push(
          `  maglev table ${s.table} slot ${s.slot}  ->  backend ${s.backendId}${s.backend ? ` (${s.backend})` : ''}` +
            `${s.topology ? `  topology ${s.topology}` : ''}`,
        );
    }
    for (const [field, a, b] of t.rewrite) lines.push(`  rewrite ${field}: ${a} -> ${b}`);
    if (t.checksumsValid !== null) lines.push(`  checksums ${checksumVerdict(t.checksumsValid, t.capturedChecksumsValid!)}`);
    const to = t.backend ? ` ${t.backend}` : '';
    lines.push(`  verdict ${t.verdict} ${t.reason}${t.service ? ` ${t.service}` : ''}${to}${t.snat ? ' (snat)' : ''}`);
    if (t.flowChange) lines.push(`  flow change ${t.flowChange}`);
    if (t.state) lines.push(...stateLines(t.state));
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}
