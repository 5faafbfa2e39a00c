/**
 * `svcpath diff`: one capture replayed against two cluster states, and the
 * flows whose decision changes — backend, verdict, reason or masquerading —
 * counted per Service: "which connections does this change move?". A flow is
 * the 5-tuple of the first packet of it that reached a service frontend in
 * either replay; later packets follow their flow's conntrack entry.
 *
 * Where zones are known, a topology change is named per Service (the filter
 * before and after, control/compile/topology.ts) and the flows that leave the
 * emulated node's zone are counted on each side: what PreferClose buys.
 *
 * The capture is read three times (flows, before, after), so standard input
 * or a pipe is first copied to a temporary file, removed at the end.
 */
import { decodeCaptured } from '../../traces/frames.js';
import { openCapture } from '../../traces/pcap.js';
import { rereadableCapture, type RereadableCapture } from '../../traces/source.js';
import type { Compiled, CompiledBackend, CompiledService, Family } from '../compile/compiler.js';
import type { ClusterChanges } from './cluster-sync.js';
import { describeTopology } from '../compile/topology.js';
import type { Datapath } from './datapath.js';
import { InputError } from '../common/errors.js';
import { REASONS, VERDICTS, hostPort } from '../compile/layout.js';
import { Interrupted, replay, type PacketDecision } from './replay.js';

export interface Side {
  compiled: Compiled;
  dp: Datapath;
  /** --events: the changes applied during this side's replay. */
  changes?: ClusterChanges;
}

/** A packet's decision with the backend and Service it names, as the state in force named them. */
type NamedDecision = PacketDecision & { backend?: CompiledBackend; service?: string };

export interface FlowChange {
  flow: string;
  packet: number;
  service: string;
  before: string;
  after: string;
}

export interface ServiceDiff {
  service: string;
  flows: number;
  changed: number;
  /** "backend before -> backend after" -> flows */
  moves: Record<string, number>;
  /** The flows decided the same in both replays, by their decision ("TX SERVICE 10.244.0.12:8080") -> flows. */
  stayed: Record<string, number>;
  /** The topology filter (control/compile/topology.ts describeTopology), when it differs between the states. */
  topology?: { before: string; after: string };
  /**
   * Flows forwarded to a backend in another zone than the emulated node's, in each
   * replay; only when the node has a zone label in either state.
   */
  crossZone?: { before: number; after: number };
}

export interface DiffReport {
  trace: string;
  flows: number;
  changed: number;
  /** Every Service's crossZone, summed; only when the node has a zone label in either state. */
  crossZone?: { before: number; after: number };
  services: ServiceDiff[];
  changes: FlowChange[];
}

const REASON_SERVICE = REASONS.indexOf('SERVICE');

/** A packet's flow, as its headers say: protocol, source and destination. */
function flowKeys(capture: RereadableCapture): Map<number, string> {
  const keys = new Map<number, string>();
  const reader = openCapture(capture.open());
  try {
    for (const rec of reader.records()) {
      const d = decodeCaptured(rec.linktype, rec.data);
      const ip = d.ipv4 ?? d.ipv6;
      const l4 = d.tcp ?? d.udp;
      if (!ip || !l4) continue;
      keys.set(rec.n, `${d.tcp ? 'TCP' : 'UDP'} ${hostPort(ip.src, l4.sport)} > ${hostPort(ip.dst, l4.dport)}`);
    }
  } finally {
    reader.close();
  }
  return keys;
}

async function decisions(capture: RereadableCapture, side: Side, signal?: AbortSignal): Promise<NamedDecision[]> {
  const all: NamedDecision[] = [];
  // Ids are named when decided: with cluster changes, an id may name another backend later.
  const onDecision = (d: PacketDecision) => {
    const compiled = side.changes?.live.compiled ?? side.compiled;
    all.push({
      ...d,
      backend: d.backendId ? compiled.backends[d.backendId - 1] : undefined,
      service: d.serviceId ? compiled.services[d.serviceId - 1]?.name : undefined,
    });
  };
  const result = await replay(capture.open(), side.compiled, side.dp, { onDecision, signal, changes: side.changes });
  if (result.interrupted) throw new Interrupted(result.interrupted.signal);
  if (result.stoppedAt) throw new InputError(result.stoppedAt.error);
  return all;
}

/** Whether the flow was forwarded to a backend whose known zone is not the emulated node's. */
function leavesZone(d: NamedDecision, side: Side): boolean {
  const zone = d.backend?.zone;
  return zone !== undefined && side.compiled.zone !== undefined && zone !== side.compiled.zone;
}

const FAMILY_NAMES: Record<Family, string> = { v4: 'IPv4', v6: 'IPv6' };

/** A Service port's topology filter, per family it has a cluster IP of ("IPv4: ..." when the families differ). */
function topologyText(s: CompiledService): string {
  const families = s.service.ipFamilies.map((f): Family => (f === 'IPv4' ? 'v4' : 'v6'));
  const texts = families.map((f) => describeTopology(s.topology[f]) ?? 'no topology');
  if (new Set(texts).size <= 1) return texts[0] ?? 'no topology';
  return families.map((f, i) => `${FAMILY_NAMES[f]}: ${texts[i]}`).join('; ');
}

/** The Services whose topology filter differs between the states, by name. */
function topologyChanges(a: Side, b: Side): Map<string, { before: string; after: string }> {
  const before = new Map(a.compiled.services.map((s) => [s.name, s]));
  const after = new Map(b.compiled.services.map((s) => [s.name, s]));
  const changes = new Map<string, { before: string; after: string }>();
  for (const [name, service] of before) {
    // A Service added or removed is a change of its own, not of topology.
    if (!after.has(name)) continue;
    const was = topologyText(service);
    const now = topologyText(after.get(name)!);
    if (was !== now) changes.set(name, { before: was, after: now });
  }
  return changes;
}

function describe(d: NamedDecision): string {
  const to = d.backend ? ` ${hostPort(d.backend.ip, d.backend.port)}` : '';
  return `${VERDICTS[d.verdict]} ${REASONS[d.reason]}${to}${d.snat ? ' (snat)' : ''}`;
}

/** `trace` is a path, or `-` for standard input; `signal` (a Ctrl-C) ends the diff with Interrupted. */
export async function diffReplays(trace: string, a: Side, b: Side, signal?: AbortSignal): Promise<DiffReport> {
  const capture = await rereadableCapture(trace, signal);
  if (!capture) throw new Interrupted(String(signal!.reason));
  try {
    return compare(capture.name, flowKeys(capture), await decisions(capture, a, signal), await decisions(capture, b, signal), a, b);
  } finally {
    capture.remove();
  }
}

/** The flows whose decision differs between the two replays' decisions, per Service. */
function compare(trace: string, keys: Map<number, string>, before: NamedDecision[], after: NamedDecision[], a: Side, b: Side): DiffReport {
  const services = new Map<string, ServiceDiff>();
  const changes: FlowChange[] = [];
  const topology = topologyChanges(a, b);
  const zoned = a.compiled.zone !== undefined || b.compiled.zone !== undefined;
  const serviceDiff = (service: string): ServiceDiff => {
    let s = services.get(service);
    if (!s) {
      const moved = topology.get(service);
      s = {
        service,
        flows: 0,
        changed: 0,
        moves: {},
        stayed: {},
        ...(moved ? { topology: moved } : {}),
        ...(zoned ? { crossZone: { before: 0, after: 0 } } : {}),
      };
      services.set(service, s);
    }
    return s;
  };
  // A topology change is reported even when the capture has no flow of the Service.
  for (const service of topology.keys()) serviceDiff(service);
  /** Flows already counted, by key: their Service's diff, their first decision, and whether a packet of them changed. */
  const flows = new Map<string, { s: ServiceDiff; first: string; changed: boolean }>();
  for (let i = 0; i < before.length; i++) {
    const x = before[i];
    const y = after[i];
    if (x.reason !== REASON_SERVICE && y.reason !== REASON_SERVICE) continue;
    const flow = keys.get(x.n);
    if (!flow) continue;
    let known = flows.get(flow);
    if (!known) {
      const s = serviceDiff(x.service ?? y.service ?? '(none)');
      s.flows++;
      if (s.crossZone) {
        if (leavesZone(x, a)) s.crossZone.before++;
        if (leavesZone(y, b)) s.crossZone.after++;
      }
      flows.set(flow, (known = { s, first: describe(x), changed: false }));
    }
    // A flow changes at its first packet decided otherwise: in a static state that is its first
    // packet (the rest follow conntrack); with cluster changes it may be a later one.
    if (known.changed) continue;
    const was = describe(x);
    const now = describe(y);
    if (was === now) continue;
    known.changed = true;
    const { s } = known;
    const service = s.service;
    s.changed++;
    const move = `${was} -> ${now}`;
    s.moves[move] = (s.moves[move] ?? 0) + 1;
    changes.push({ flow, packet: x.n, service, before: was, after: now });
  }
  for (const { s, first, changed } of flows.values()) if (!changed) s.stayed[first] = (s.stayed[first] ?? 0) + 1;
  const all = [...services.values()];
  const sum = (side: 'before' | 'after') => all.reduce((n, s) => n + (s.crossZone?.[side] ?? 0), 0);
  return {
    trace,
    flows: flows.size,
    changed: changes.length,
    ...(zoned ? { crossZone: { before: sum('before'), after: sum('after') } } : {}),
    services: all.sort((p, q) => p.service.localeCompare(q.service)),
    changes,
  };
}

const pct = (part: number, whole: number) => (whole ? `${((100 * part) / whole).toFixed(1)}%` : '-');

const crossZoneText = (c: { before: number; after: number }) => `cross-zone flows ${c.before} -> ${c.after}`;

export function formatDiff(r: DiffReport): string {
  const head = `${r.trace}: ${r.flows} service flows, ${r.changed} change (${pct(r.changed, r.flows)})`;
  const lines = [r.crossZone ? `${head}, ${crossZoneText(r.crossZone)}` : head, ''];
  for (const s of r.services) {
    lines.push(`  ${s.service}  flows ${s.flows}  changed ${s.changed} (${pct(s.changed, s.flows)})`);
    if (s.topology) lines.push(`    topology: ${s.topology.before} -> ${s.topology.after}`);
    if (s.crossZone && (s.crossZone.before || s.crossZone.after)) lines.push(`    ${crossZoneText(s.crossZone)}`);
    for (const [move, n] of Object.entries(s.moves).sort((p, q) => q[1] - p[1])) lines.push(`    ${n} x ${move}`);
  }
  return lines.join('\n');
}
