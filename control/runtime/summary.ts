/**
 * The replay summary, from the datapath's own counters (metrics, per-service
 * and per-backend stats maps): as JSON for --summary, and as text for people.
 */
import { type Compiled, type DatapathSettings, familyOf } from '../compile/compiler.js';
import { describeTopology } from '../compile/topology.js';
import type { Datapath } from './datapath.js';
import { CONFORM, LINKTYPES, REASONS, VERDICTS, hostPort } from '../compile/layout.js';
import type { ReplayResult } from './replay.js';
import type { FlowsByService, SyncRecord, Timeline } from './cluster-sync.js';

export interface BackendSummary {
  backend: string;
  node: string | null;
  local: boolean;
  flows: number;
  packets: number;
  bytes: number;
}

export interface ServiceSummary {
  service: string;
  type: string;
  frontends: string[];
  appProtocol: string | null;
  externalTrafficPolicy: string;
  internalTrafficPolicy: string;
  sessionAffinity: string;
  endpoints: string;
  /** Where the endpoints came from: EndpointSlices (given), Pods (slices derived from them), Endpoints (legacy), none. */
  endpointsFrom: string | null;
  /**
   * The topology filter that chose the cluster-wide endpoints of the primary family, in
   * control/compile/topology.ts describeTopology's words; only when hints are used or the
   * Service asks for topology.
   */
  topology?: string;
  flows: number;
  packets: number;
  bytes: number;
  backends: BackendSummary[];
  /** Deleted by a cluster change (--events): its counters are those of its life. */
  deleted?: true;
}

export interface Summary {
  trace: string;
  node: string | null;
  /** The node's `topology.kubernetes.io/zone` label, what zone hints are matched against. */
  zone: string | null;
  settings: DatapathSettings;
  packets: number;
  written: number;
  /** Neither stopped at a bad record nor interrupted: every packet of the capture was replayed. */
  complete: boolean;
  stoppedAt: { record: number; error: string } | null;
  /** A signal (Ctrl-C) ended the replay after `packets` packets, all of them written. */
  interrupted: boolean;
  verdicts: Record<string, number>;
  reasons: Record<string, number>;
  byVerdictAndReason: Array<{ verdict: string; reason: string; packets: number; bytes: number }>;
  services: ServiceSummary[];
  skipped: Array<{ service: string; reason: string }>;
  notes: string[];
  warnings: string[];
  /** Only when the capture holds frames the node sent: how its own rewrites compare with svcpath's (README: Captures). */
  conformance?: Conformance;
  /** Only with --events: each applied sync, what it changed and the flows it affected. */
  changes?: Timeline;
}

/** The node's copies of packets svcpath rewrote, found among the frames it sent. */
export interface Conformance {
  /** Frames the node sent (PASS OUTGOING). */
  outgoing: number;
  /** Of those, the node's copies of packets svcpath rewrote: the three below added up. */
  nodeRewrites: number;
  /** Same backend and rewrite. */
  reproduced: number;
  /** The same but for the backend, another one of the Service's. */
  otherBackend: number;
  /** Anything else. */
  differ: number;
  /**
   * Of `differ`, requests that differ only in that one of the node and
   * svcpath masqueraded the source: the masquerade settings are not the node's.
   */
  differMasquerade: number;
  /**
   * The node's masquerade tuples learned from its copies (an address and
   * port it masqueraded a flow with, other than svcpath's), whose replies are
   * the flow's; and those not learned because another live flow held them.
   */
  learnedTuples: number;
  takenTuples: number;
}

interface Counter {
  flows?: number;
  packets: number;
  bytes: number;
}

/** The datapath's counters: per (reason << 3 | verdict), per service id, per backend id. */
export interface Counters {
  metrics: Counter[];
  services: Counter[];
  backends: Counter[];
  /** Packets per CONFORM outcome. */
  conformance: number[];
}

/** Reads the counter maps of one datapath instance. */
export function readCounters(dp: Datapath, compiled: Compiled): Counters {
  const read = (name: 'metrics' | 'serviceStats' | 'backendStats', entries: number) => {
    const m = dp.map(name);
    return Array.from({ length: entries }, (_, i) => m.at(i) as unknown as Counter);
  };
  return {
    metrics: read('metrics', REASONS.length << 3),
    services: read('serviceStats', compiled.services.length + 1),
    backends: read('backendStats', compiled.backends.length + 1),
    conformance: Object.values(CONFORM).map((i) => dp.map('conformance').at(i)!.count as number),
  };
}

/** The counters of several instances (the workers of a sharded replay), added up. */
export function sumCounters(all: Counters[]): Counters {
  const add = (lists: Counter[][]) =>
    lists[0].map((_, i) => {
      const sum: Counter = { packets: 0, bytes: 0 };
      for (const list of lists) {
        sum.packets += list[i].packets;
        sum.bytes += list[i].bytes;
        if (list[i].flows !== undefined) sum.flows = (sum.flows ?? 0) + list[i].flows!;
      }
      return sum;
    });
  return {
    metrics: add(all.map((c) => c.metrics)),
    services: add(all.map((c) => c.services)),
    backends: add(all.map((c) => c.backends)),
    conformance: all[0].conformance.map((_, i) => all.reduce((n, c) => n + c.conformance[i], 0)),
  };
}

/** `clusterWarnings`: what loading the cluster state warned about, listed before the capture's warnings. */
export function buildSummary(
  result: ReplayResult,
  compiled: Compiled,
  counters: Counters,
  notes: string[],
  clusterWarnings: string[] = [],
  changes?: Timeline,
): Summary {
  const verdicts: Record<string, number> = {};
  const reasons: Record<string, number> = {};
  const byVerdictAndReason: Summary['byVerdictAndReason'] = [];
  for (let r = 1; r < REASONS.length; r++) {
    for (let v = 0; v < VERDICTS.length; v++) {
      const c = counters.metrics[(r << 3) | v];
      if (c.packets === 0) continue;
      const packets = c.packets;
      verdicts[VERDICTS[v]] = (verdicts[VERDICTS[v]] ?? 0) + packets;
      reasons[REASONS[r]] = (reasons[REASONS[r]] ?? 0) + packets;
      byVerdictAndReason.push({ verdict: VERDICTS[v], reason: REASONS[r], packets, bytes: c.bytes });
    }
  }
  const services = compiled.services.map((s): ServiceSummary => {
    const st = counters.services[s.id];
    const ids = [...new Set([s.cluster, s.local, s.cluster6, s.local6].flatMap((set) => set?.backendIds ?? []))].sort((a, b) => a - b);
    return {
      service: s.name,
      type: s.service.type,
      frontends: s.frontends.map((f) => `${hostPort(f.address, f.port)}/${f.protocol}${f.kind === 'ClusterIP' ? '' : ` (${f.kind})`}`),
      appProtocol: s.port.appProtocol ?? null,
      externalTrafficPolicy: s.service.externalTrafficPolicy,
      internalTrafficPolicy: s.service.internalTrafficPolicy,
      sessionAffinity: s.service.sessionAffinity === 'ClientIP' ? `ClientIP ${s.service.affinityTimeoutSeconds}s` : 'None',
      endpoints: describeEndpoints(s),
      endpointsFrom: s.endpointsFrom ?? null,
      ...(s.removed && { deleted: true }),
      ...topologyOf(s),
      flows: st.flows ?? 0,
      packets: st.packets,
      bytes: st.bytes,
      backends: ids.map((id) => {
        const b = compiled.backends[id - 1];
        const bs = counters.backends[id];
        return {
          backend: hostPort(b.ip, b.port),
          node: b.nodeName ?? null,
          local: b.local,
          flows: bs.flows ?? 0,
          packets: bs.packets,
          bytes: bs.bytes,
        };
      }),
    };
  });
  return {
    trace: result.trace,
    node: compiled.node ?? null,
    zone: compiled.zone ?? null,
    settings: compiled.settings,
    packets: result.packets,
    written: result.written,
    complete: !result.stoppedAt && !result.interrupted,
    stoppedAt: result.stoppedAt ?? null,
    interrupted: !!result.interrupted,
    verdicts,
    reasons,
    byVerdictAndReason,
    services,
    skipped: compiled.skipped,
    notes,
    warnings: [...clusterWarnings, ...result.warnings],
    ...(reasons.OUTGOING && { conformance: conformanceOf(reasons.OUTGOING, counters.conformance) }),
    ...(changes && { changes }),
  };
}

function conformanceOf(outgoing: number, counts: number[]): Conformance {
  const [reproduced, otherBackend, differOtherwise, differMasquerade, learnedTuples, takenTuples] = [
    CONFORM.REPRODUCED,
    CONFORM.OTHER_BACKEND,
    CONFORM.DIFFERS,
    CONFORM.MASQUERADE_DIFFERS,
    CONFORM.LEARNED,
    CONFORM.TAKEN,
  ].map((i) => counts[i]);
  const differ = differOtherwise + differMasquerade;
  return {
    outgoing,
    nodeRewrites: reproduced + otherBackend + differ,
    reproduced,
    otherBackend,
    differ,
    differMasquerade,
    learnedTuples,
    takenTuples,
  };
}

function topologyOf(s: Compiled['services'][number]): { topology?: string } {
  const topology = describeTopology(s.topology[familyOf(s.service.clusterIPs[0])]);
  return topology ? { topology } : {};
}

/** "2 ready, 1 local, 2 unusable": what new flows may use. */
function describeEndpoints(s: Compiled['services'][number]): string {
  const usable = s.cluster.backendIds.length + s.cluster6.backendIds.length;
  const draining = s.cluster.selection === 'serving-terminating' || s.cluster6.selection === 'serving-terminating';
  const parts = [`${usable} ${draining ? 'serving-terminating' : 'ready'}`];
  if (s.local || s.local6) parts.push(`${(s.local?.backendIds.length ?? 0) + (s.local6?.backendIds.length ?? 0)} local`);
  if (s.unusableEndpoints) parts.push(`${s.unusableEndpoints} unusable`);
  return parts.join(', ');
}

/** Where NodePorts are served, when that is not every node address (--nodeport-addresses, primary by default). */
function nodePortsText(c: Summary['settings']): string {
  const everywhere = c.nodePortAddresses.length === c.nodeAddresses.length && c.nodePortAddresses.every((a) => c.nodeAddresses.includes(a));
  return everywhere ? '' : ` (NodePorts on ${c.nodePortAddresses.join(', ') || 'none'})`;
}

function pad(s: string | number, n: number): string {
  return String(s).padEnd(n);
}

function rpad(s: string | number, n: number): string {
  return String(s).padStart(n);
}

export function formatSummary(s: Summary): string {
  const lines: string[] = [];
  const zone = s.zone === null ? '' : ` (zone ${s.zone})`;
  lines.push(`${s.trace}: ${s.packets} packets replayed on node ${s.node ?? '(none)'}${zone}, ${s.written} written`);
  if (s.stoppedAt) lines.push(`STOPPED at record ${s.stoppedAt.record}: ${s.stoppedAt.error}`);
  if (s.interrupted) lines.push(`INTERRUPTED after record ${s.packets}: the outputs hold the packets up to it`);
  const c = s.settings;
  lines.push(
    `Node addresses ${c.nodeAddresses.join(', ') || '(none)'}${nodePortsText(c)}; pod network ${c.podNetwork ?? 'unknown'}; ` +
      `masquerade ${c.masqueradeAddress ? `as ${c.masqueradeAddress} ports ${c.snatPorts}` : 'impossible (no address)'}; Maglev M=${c.maglevTableSize}, seed ${c.seed}`,
  );
  lines.push('', 'Verdicts:');
  for (const v of VERDICTS) {
    if (!s.verdicts[v]) continue;
    const parts = s.byVerdictAndReason.filter((x) => x.verdict === v).map((x) => `${x.reason} ${x.packets}`);
    lines.push(`  ${pad(v, 9)}${rpad(s.verdicts[v], 9)}   ${parts.join(', ')}`);
  }
  if (s.conformance) lines.push('', ...conformanceLines(s.conformance));
  if (s.changes) lines.push('', ...timelineLines(s.changes));
  lines.push('', 'Services:');
  if (s.services.length === 0) lines.push('  (none compiled)');
  for (const svc of s.services) {
    lines.push(
      `  ${svc.service}  ${svc.frontends.join(' ')}  endpoints: ${svc.endpoints}${endpointsOrigin(svc.endpointsFrom)}` +
        `${svc.topology ? `  topology ${svc.topology}` : ''}  flows ${svc.flows}  packets ${svc.packets}${svc.deleted ? '  (deleted by a change)' : ''}`,
    );
    for (const b of svc.backends) {
      lines.push(
        `    ${pad(b.backend, 22)} ${pad(b.local ? 'local' : b.node ? `on ${b.node}` : 'remote', 16)} flows ${rpad(b.flows, 6)}  packets ${rpad(b.packets, 8)}`,
      );
    }
  }
  if (s.skipped.length) {
    lines.push('', 'Not in the datapath:');
    for (const k of s.skipped) lines.push(`  ${k.service}: ${k.reason}`);
  }
  const notes = [...s.notes, ...s.warnings];
  if (notes.length) {
    lines.push('', 'Notes:');
    for (const n of notes) lines.push(`  ${n}`);
  }
  return lines.join('\n');
}

/** How the node's own rewrites in the capture compare with svcpath's, and the masquerade tuples they taught. */
function conformanceLines(c: Conformance): string[] {
  return [
    `Node's own rewrites in the capture: ${c.nodeRewrites} of the ${c.outgoing} frames it sent are its copies of packets svcpath rewrote;`,
    `  svcpath reproduced ${c.reproduced} (same backend and rewrite), ${c.otherBackend} went to another backend ` +
      `(kube-proxy chooses at random, svcpath by Maglev), ${c.differ} differ${masqueradeDiffers(c)};`,
    `  learned ${c.learnedTuples} of the node's masquerade tuples (its address and port for a flow svcpath masqueraded), ` +
      `whose replies are the flow's${c.takenTuples ? `; ${c.takenTuples} not learned, held by another live flow` : ''}`,
  ];
}

/** Why so many differ, when it is masquerading: the settings to compare with the node's kube-proxy. */
function masqueradeDiffers(c: Conformance): string {
  if (c.differMasquerade === 0) return '';
  return (
    ` (${c.differMasquerade} only in masquerading the source: one of the node and svcpath did, the other did not; ` +
    "compare --cluster-cidr and --masquerade-all with the node's kube-proxy)"
  );
}

/** Where a Service's endpoints came from, as the text summary says it. */
function endpointsOrigin(from: string | null): string {
  if (from === null) return '';
  return from === 'none' ? ' (no EndpointSlices, Endpoints or Pods for it)' : ` (from ${from})`;
}

/** A time on the capture's clock ("seconds.nanoseconds") as UTC time of day to the microsecond. */
function timeOfDay(at: string): string {
  const [seconds, fraction] = at.split('.');
  return `${new Date(Number(seconds) * 1000).toISOString().slice(11, 19)}.${fraction.slice(0, 6)}`;
}

const total = (flows: FlowsByService) => Object.values(flows).reduce((n, k) => n + k, 0);

/** "3 (web:http 2, dns:udp 1)": flows per Service port. */
function flowsText(flows: FlowsByService): string {
  const parts = Object.entries(flows).map(([service, n]) => `${service} ${n}`);
  return `${total(flows)}${parts.length > 1 ? ` (${parts.join(', ')})` : parts.length === 1 ? ` (${parts[0]})` : ''}`;
}

const counted = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
const flows = (n: number) => counted(n, 'flow');

/** What happened to packets while one state was in force: the counts that are not zero. */
function observedText(o: SyncRecord['observed']): string {
  const f = o.flowChanges;
  const parts = [`${o.packets} packets`];
  if (f.STALE_BACKEND) parts.push(`${f.STALE_BACKEND} packets to a backend that left (STALE_BACKEND)`);
  if (f.FLUSHED) parts.push(`${flows(f.FLUSHED)} flushed and load-balanced again (FLUSHED)`);
  if (f.RESELECTED) parts.push(`${flows(f.RESELECTED)} moved to another backend (RESELECTED)`);
  if (f.AFFINITY_RESET) parts.push(`${flows(f.AFFINITY_RESET)} whose client's affinity backend left (AFFINITY_RESET)`);
  if (o.rejected) parts.push(`${o.rejected} packets of new flows refused for lack of endpoints`);
  return parts.join(', ');
}

/** The timeline of --events: each sync, what it changed, the flows it affected then and after. */
function timelineLines(t: Timeline): string[] {
  const skipped = [
    t.initialListSkipped ? `${t.initialListSkipped} skipped as kubectl's initial list` : '',
    t.repeatsSkipped ? `${t.repeatsSkipped} re-listed unchanged` : '',
  ].filter(Boolean);
  const lines = [
    `Cluster changes (${t.events}: ${counted(t.eventsApplied, 'event')} applied in ${counted(t.syncs.length, 'sync')}${skipped.length ? `, ${skipped.join(', ')}` : ''}; ` +
      `${t.semantics} semantics, minSyncPeriod ${t.minSyncPeriod}s):`,
    `  state 0  from the start: ${observedText(t.initial)}`,
  ];
  for (const sync of t.syncs) {
    const events = sync.events.map((e) => `${e.kind} ${e.object} ${e.type} (line ${e.line})`);
    lines.push(`  state ${sync.state}  at ${timeOfDay(sync.at)} UTC (${sync.at}): ${events.join('; ')}`);
    const { added, removed, modified } = sync.services;
    if (added.length + removed.length + modified.length + sync.endpoints.length === 0) {
      lines.push('      no change to the Services or to the endpoints new flows may use');
    }
    if (added.length) lines.push(`      Services added: ${added.join(', ')}`);
    if (removed.length) lines.push(`      Services removed: ${removed.join(', ')}`);
    if (modified.length) lines.push(`      Services changed: ${modified.join(', ')}`);
    for (const e of sync.endpoints) {
      const parts = (
        [
          ['ready', e.added],
          ['terminating', e.terminating],
          ['not serving', e.removed],
          ['gone', e.gone],
        ] as const
      )
        .filter(([, list]) => list.length > 0)
        .map(([what, list]) => `${what} ${list.join(', ')}`);
      lines.push(`      ${e.service}: ${parts.join('; ')}`);
    }
    if (total(sync.onRemovedBackends)) {
      const what = t.semantics === 'cilium' ? 'to choose another backend on their next packet' : 'kept on a backend that left';
      lines.push(`      established flows ${what}: ${flowsText(sync.onRemovedBackends)}`);
    }
    if (total(sync.flushed)) lines.push(`      UDP conntrack entries flushed: ${flowsText(sync.flushed)}`);
    lines.push(`      then: ${observedText(sync.observed)}`);
  }
  if (t.syncsAfterEnd) lines.push(`  ${t.syncsAfterEnd} more syncs due after the capture's last packet: not applied`);
  for (const note of t.notes) lines.push(`  note: ${note}`);
  return lines;
}

/**
 * A capture none of whose frames svcpath could parse (every one of an
 * unsupported link type) is no replay at all: the one line that says so.
 * An empty capture is not: it has nothing undecided.
 */
export function nothingDecided(result: ReplayResult, summary: Summary): string | undefined {
  if (result.packets === 0 || summary.reasons.UNSUPPORTED_LINKTYPE !== result.packets) return undefined;
  const names = new Map<number, string>(Object.entries(LINKTYPES).map(([name, value]) => [value, name]));
  const types = result.linktypes.filter((t) => !names.has(t));
  const which = types.length === 1 ? `link type ${types[0]} is not one` : `link types ${types.join(', ')} are not ones`;
  return `${result.trace}: not one of its ${result.packets} packets could be decided: ${which} svcpath parses (see Captures in the README)`;
}
