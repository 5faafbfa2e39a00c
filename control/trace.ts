/**
 * `svcpath trace`: what the datapath did with chosen packets, step by step,
 * like pwru or `cilium monitor` — the headers, every map lookup with its key
 * and result, the Maglev slot, the rewrite and the verdict. The steps are the
 * datapath's own trace records (datapath/trace.ts), decoded here through the
 * layouts; only the headers and the rewrite are read off the frames in and out.
 */
import { decodeFrame, verifyChecksums } from '../traces/frames.js';
import type { Compiled } from './compiler.js';
import type { Datapath } from './datapath.js';
import { InputError } from './errors.js';
import {
  BE_F_LOCAL, MAPS, REASONS, SVC_F, TRACE_KEY_OFFSET, TRACE_KIND, TRACE_VALUE_OFFSET, VERDICTS, decode, hostPort,
  type MapSpec, type StructValue,
} from './layout.js';
import { replay, type TracedPacket } from './replay.js';

export type TraceStep =
  | { step: 'lookup'; map: string; key: StructValue; value: StructValue | null }
  | { step: 'maglev'; table: number; slot: number; backendId: number; backend: string | null }
  | { step: 'verdict'; verdict: string; reason: string };

export interface PacketTrace {
  packet: number;
  time: string;
  headers: string;
  steps: TraceStep[];
  /** Fields the datapath changed: [field, before, after]. */
  rewrite: Array<[string, string, string]>;
  checksumsValid: boolean | null;
  verdict: string;
  reason: string;
  service: string | null;
  backend: string | null;
  snat: boolean;
}

export interface TraceSelection {
  packets: number[];
  /** "ip:port" (or "[ip]:port"): packets from or to it. */
  flows: string[];
  /** "ns/name" or "ns/name:port": packets the decision gives to that Service. */
  services: string[];
}

const MAP_BY_ID = new Map<number, MapSpec>(Object.values(MAPS).map((m) => [m.id, m]));

function flags(bits: number, names: Record<string, number>): string {
  const set = Object.entries(names).filter(([, bit]) => (bits & bit) !== 0).map(([n]) => n);
  return set.length ? set.join('|') : '0';
}

/** One trace record, decoded through the layouts of the map it names. */
function decodeStep(r: Uint8Array, compiled: Compiled): TraceStep {
  const view = new DataView(r.buffer, r.byteOffset, r.byteLength);
  const kind = r[0];
  if (kind === TRACE_KIND.MAGLEV) {
    const backendId = view.getUint32(TRACE_VALUE_OFFSET, true);
    const b = compiled.backends[backendId - 1];
    return {
      step: 'maglev', table: view.getUint32(TRACE_KEY_OFFSET, true), slot: view.getUint32(TRACE_KEY_OFFSET + 4, true),
      backendId, backend: b ? hostPort(b.ip, b.port) : null,
    };
  }
  if (kind === TRACE_KIND.VERDICT) return { step: 'verdict', verdict: VERDICTS[r[TRACE_KEY_OFFSET]], reason: REASONS[r[TRACE_KEY_OFFSET + 1]] };
  const spec = MAP_BY_ID.get(r[1])!;
  const key = decode(spec.key, r.subarray(TRACE_KEY_OFFSET, TRACE_KEY_OFFSET + spec.key.size));
  let value: StructValue | null = null;
  if (r[2] && spec.value) {
    value = decode(spec.value, r.subarray(TRACE_VALUE_OFFSET, TRACE_VALUE_OFFSET + spec.value.size));
    if (spec.name.endsWith('_services')) value.flags = flags(value.flags as number, SVC_F);
    if (spec.name.endsWith('_backends')) value.flags = flags(value.flags as number, { LOCAL: BE_F_LOCAL });
  }
  return { step: 'lookup', map: spec.name, key, value };
}

/** Every leaf field of a decoded frame, "ipv4.dst" -> "10.96.0.10". */
function fields(frame: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (prefix: string, v: unknown): void => {
    if (v === undefined || v instanceof Uint8Array) return;
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v)) walk(prefix ? `${prefix}.${k}` : k, x);
    } else {
      out.set(prefix, typeof v === 'number' && /checksum/.test(prefix) ? `0x${v.toString(16).padStart(4, '0')}` : JSON.stringify(v));
    }
  };
  walk('', decodeFrame(frame));
  return out;
}

function headerLine(frame: Uint8Array, linktype: number): string {
  if (linktype !== 1) return `link type ${linktype}, ${frame.length} bytes`;
  const d = decodeFrame(frame);
  const ip = d.ipv4 ?? d.ipv6;
  if (!ip) return `Ethernet, ethertype 0x${(d.eth?.ethertype ?? 0).toString(16)}`;
  if (d.tcp) return `TCP ${hostPort(ip.src, d.tcp.sport)} > ${hostPort(ip.dst, d.tcp.dport)} flags 0x${d.tcp.flags.toString(16)}`;
  if (d.udp) return `UDP ${hostPort(ip.src, d.udp.sport)} > ${hostPort(ip.dst, d.udp.dport)}`;
  const icmp = d.icmp ?? d.icmpv6;
  if (icmp) return `${d.icmp ? 'ICMP' : 'ICMPv6'} ${ip.src} > ${ip.dst} type ${icmp.type} code ${icmp.code}`;
  return `IP ${ip.src} > ${ip.dst}`;
}

function toPacketTrace(t: TracedPacket, compiled: Compiled): PacketTrace {
  const before = fields(t.input);
  const after = fields(t.output);
  const rewrite: Array<[string, string, string]> = [];
  for (const [k, v] of after) if (before.get(k) !== v) rewrite.push([k, before.get(k) ?? '-', v]);
  const changed = rewrite.length > 0 || t.input.length !== t.output.length;
  const sums = verifyChecksums(t.output);
  const service = t.decision.serviceId ? compiled.services[t.decision.serviceId - 1].name : null;
  const b = t.decision.backendId ? compiled.backends[t.decision.backendId - 1] : undefined;
  return {
    packet: t.decision.n,
    time: new Date(t.tsSec * 1000 + Math.floor(t.tsNsec / 1e6)).toISOString(),
    headers: headerLine(t.input, t.linktype),
    steps: t.records.map((r) => decodeStep(r, compiled)),
    rewrite,
    checksumsValid: changed && t.linktype === 1 ? sums.ipv4 !== false && (sums.l4 === true || sums.l4 === 'zero') : null,
    verdict: VERDICTS[t.decision.verdict],
    reason: REASONS[t.decision.reason],
    service,
    backend: b ? hostPort(b.ip, b.port) : null,
    snat: t.decision.snat,
  };
}

function matchesFlow(frame: Uint8Array, flows: string[]): boolean {
  const d = decodeFrame(frame);
  const ip = d.ipv4 ?? d.ipv6;
  const l4 = d.tcp ?? d.udp;
  if (!ip || !l4) return false;
  return flows.includes(hostPort(ip.src, l4.sport)) || flows.includes(hostPort(ip.dst, l4.dport));
}

export function traceReplay(trace: string, compiled: Compiled, dp: Datapath, sel: TraceSelection): PacketTrace[] {
  const everything = sel.packets.length === 0 && sel.flows.length === 0;
  const traces: PacketTrace[] = [];
  const result = replay(trace, compiled, dp, {
    trace: {
      select: (n, data) => everything || sel.packets.includes(n) || (sel.flows.length > 0 && matchesFlow(data, sel.flows)),
      onPacket: (t) => traces.push(toPacketTrace(t, compiled)),
    },
  });
  const wanted = sel.services.length === 0
    ? traces
    : traces.filter((t) => t.service && sel.services.some((s) => t.service === s || t.service!.startsWith(`${s}:`)));
  if (result.stoppedAt) throw new InputError(result.stoppedAt.error);
  return wanted;
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
      else if (s.step === 'maglev') lines.push(`  maglev table ${s.table} slot ${s.slot}  ->  backend ${s.backendId}${s.backend ? ` (${s.backend})` : ''}`);
    }
    for (const [field, a, b] of t.rewrite) lines.push(`  rewrite ${field}: ${a} -> ${b}`);
    if (t.checksumsValid !== null) lines.push(`  checksums ${t.checksumsValid ? 'valid' : 'INVALID'}`);
    const to = t.backend ? ` ${t.backend}` : '';
    lines.push(`  verdict ${t.verdict} ${t.reason}${t.service ? ` ${t.service}` : ''}${to}${t.snat ? ' (snat)' : ''}`, '');
  }
  return lines.join('\n').trimEnd();
}
