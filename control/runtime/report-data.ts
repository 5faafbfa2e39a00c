/**
 * What `--report` shows, collected during a replay (control/runtime/report-types.ts).
 *
 * Per packet, from the batch's descriptors after process_batch: its bin's
 * counts by verdict, new flows (DESC_F_NEW_FLOW: the packet made its flow's
 * conntrack entry), masquerade use per Service, and the packets and bytes of
 * the flows in the flow table. A packet's flow is named by its client-side
 * tuple, "client > frontend": a request's as captured (its frame's head is
 * copied before the datapath rewrites it), a reply's as rewritten, reversed
 * (reverse NAT restores the frontend and the client). No JavaScript object
 * is made per packet but for the flow table's packets.
 *
 * Over time, at each bin's end: the datapath's census of its conntrack maps
 * (Datapath.census: live flows, masqueraded ones = masquerade ports in use).
 * The replay stops its batches at those times (`nextSampleAt`), as it does
 * for cluster changes, so a census is of the state at that moment whatever
 * the batch size. Bins start at 1 ms and double, merging pairs, whenever
 * the capture runs longer than `maxBins` of them: the series stay small
 * however long the capture is.
 */
import { decodeCaptured } from '../../traces/frames.js';
import type { Compiled, CompiledService } from '../compile/compiler.js';
import { DESC_F_NEW_FLOW, DESC_F_SNAT, REASONS, VERDICTS, hostPort } from '../compile/layout.js';
import type { SyncRecord, Timeline } from './cluster-sync.js';
import type { Batch, Datapath } from './datapath.js';
import type { DiffReport, ServiceDiff } from './diff.js';
import type { ChangeMarker, DiffView, FlowRow, MoveMatrix, RunReport, Series, ServiceBalance } from './report-types.js';
import type { Summary } from './summary.js';

export interface ReportOptions {
  /** The `svcpath trace` command line up to its selection: each flow row adds `--flow CLIENT`. */
  traceCommand: string;
  /** Rows of the flow table at most (default 1000). */
  flowsCap?: number;
  /** Bins of the time series at most (default 500). */
  maxBins?: number;
}

/**
 * What a report keeps of a run whatever its size (a 10M-packet replay's
 * report stays well under 2 MB): the Services with the most packets, the
 * first cluster changes.
 */
const SERVICES_CAP = 200;
const MARKERS_CAP = 500;

const FIRST_BIN_NS = 1_000_000;
const NANOS = 1_000_000_000;
/** Bytes of a frame's head kept before the datapath rewrites it: link layer, IP header with options or extensions, ports. */
const HEAD_BYTES = 192;
const REASON_SERVICE = REASONS.indexOf('SERVICE');
const REASON_REPLY = REASONS.indexOf('REPLY');

export class ReportCollector {
  private readonly flowsCap: number;
  private readonly maxBins: number;
  /** The first packet's time, nanoseconds since the epoch; undefined before it. */
  private startNs?: bigint;
  private startSec = 0;
  private startNsec = 0;
  private binNs = FIRST_BIN_NS;
  /** Per verdict, packets per bin. */
  private readonly packets: number[][] = VERDICTS.map(() => []);
  private readonly newFlows: number[] = [];
  /** Census at each bin's end, for the bins whose end the replay reached. */
  private readonly conntrack: number[] = [];
  private readonly masqueradePorts: number[] = [];
  /** The last packet's offset from the start, nanoseconds. */
  private lastNs = 0;
  private totalFlows = 0;
  private readonly masquerade = new Map<string, { flows: number; packets: number }>();
  private readonly rows: FlowRow[] = [];
  /** Client-side tuple -> the flow's row, while it is in the table. */
  private readonly byTuple = new Map<string, FlowRow>();
  /** Frame heads of the batch, copied before it runs. */
  private heads = new Uint8Array(0);
  private headLengths = new Uint32Array(0);

  constructor(
    private readonly dp: Datapath,
    /** The program in force (it changes with --events). */
    private readonly compiled: () => Compiled,
    private readonly opts: ReportOptions,
  ) {
    this.flowsCap = opts.flowsCap ?? 1000;
    this.maxBins = opts.maxBins ?? 500;
  }

  /** Whether the first record's time is known. */
  get started(): boolean {
    return this.startNs !== undefined;
  }

  /**
   * When the replay must stop before its next record to let a census be
   * taken (nanoseconds since the epoch): 0 until the first record's time is
   * known, so that the first bin's census is not missed.
   */
  get nextSampleAt(): bigint {
    if (this.startNs === undefined) return 0n;
    return this.startNs + BigInt(this.conntrack.length + 1) * BigInt(this.binNs);
  }

  /**
   * The replay reached `timeNs`, its next record's time: takes the census at
   * every bin end up to it (the first call only learns where the capture starts).
   */
  reach(timeNs: bigint): void {
    if (this.startNs === undefined) {
      this.startNs = timeNs;
      this.startSec = Number(timeNs / 1_000_000_000n);
      this.startNsec = Number(timeNs % 1_000_000_000n);
      return;
    }
    while (this.nextSampleAt <= timeNs) {
      this.fitBin(this.conntrack.length);
      // A merge may have moved the next bin end past the time: then nothing is due.
      if (this.nextSampleAt > timeNs) break;
      this.takeCensus(this.nextSampleAt);
    }
  }

  /** Before process_batch: the heads of the frames, which the datapath rewrites in place. */
  beforeRun(batch: Batch): void {
    if (this.heads.length < batch.count * HEAD_BYTES) {
      this.heads = new Uint8Array(batch.maxFrames * HEAD_BYTES);
      this.headLengths = new Uint32Array(batch.maxFrames);
    }
    for (let i = 0; i < batch.count; i++) {
      const frame = batch.frame(i);
      const n = Math.min(frame.length, HEAD_BYTES);
      this.heads.set(frame.subarray(0, n), i * HEAD_BYTES);
      this.headLengths[i] = n;
    }
  }

  /** After process_batch: every packet's counts. */
  afterRun(batch: Batch, first: number): void {
    const compiled = this.compiled();
    for (let i = 0; i < batch.count; i++) {
      if (this.startNs === undefined) this.reach(BigInt(batch.tsSec(i)) * 1_000_000_000n + BigInt(batch.tsNsec(i)));
      const offset = (batch.tsSec(i) - this.startSec) * NANOS + (batch.tsNsec(i) - this.startNsec);
      if (offset > this.lastNs) this.lastNs = offset;
      const bin = this.fitBin(Math.max(0, Math.floor(offset / this.binNs)));
      const verdict = batch.verdict(i);
      add(this.packets[verdict], bin, 1);
      const flags = batch.flags(i);
      const serviceId = batch.serviceId(i);
      if (serviceId === 0) continue;
      const service = compiled.services[serviceId - 1]?.name;
      if (service === undefined) continue;
      const newFlow = (flags & DESC_F_NEW_FLOW) !== 0;
      const snat = (flags & DESC_F_SNAT) !== 0;
      if (newFlow) {
        add(this.newFlows, bin, 1);
        this.totalFlows++;
      }
      if (snat) {
        const m = this.masquerade.get(service) ?? { flows: 0, packets: 0 };
        m.packets++;
        if (newFlow) m.flows++;
        this.masquerade.set(service, m);
      }
      this.countFlowPacket(batch, i, first + i, compiled, service, newFlow, snat);
    }
  }

  /** The packet's flow in the table: a new flow gets a row while there is room; a later packet adds to its row. */
  private countFlowPacket(batch: Batch, i: number, n: number, compiled: Compiled, service: string, newFlow: boolean, snat: boolean): void {
    const reason = batch.reason(i);
    if (reason !== REASON_SERVICE && reason !== REASON_REPLY) return;
    if (!newFlow && this.byTuple.size === 0) return;
    if (newFlow && this.rows.length >= this.flowsCap && this.byTuple.size === 0) return;
    const tuple =
      reason === REASON_SERVICE
        ? clientTuple(batch.linktype(i), this.heads.subarray(i * HEAD_BYTES, i * HEAD_BYTES + this.headLengths[i]), false)
        : clientTuple(batch.linktype(i), batch.frame(i), true);
    if (!tuple) return;
    let flow = this.byTuple.get(tuple.key);
    if (newFlow && this.rows.length < this.flowsCap) {
      const backendId = batch.backendId(i);
      const backend = backendId ? compiled.backends[backendId - 1] : undefined;
      const row: FlowRow = {
        packet: n,
        time: batch.tsSec(i) + batch.tsNsec(i) / NANOS,
        protocol: tuple.protocol,
        client: tuple.client,
        frontend: tuple.frontend,
        service,
        backend: backend ? hostPort(backend.ip, backend.port) : null,
        masqueraded: snat,
        packets: 0,
        bytes: 0,
        lastVerdict: '',
        lastReason: '',
        trace: `${this.opts.traceCommand} --flow ${tuple.client}`,
      };
      this.rows.push(row);
      flow = row;
      // A tuple used again (a new flow on a reused client port) is the new flow's from now on.
      this.byTuple.set(tuple.key, flow);
    }
    if (!flow) return;
    flow.packets++;
    flow.bytes += batch.wireLen(i);
    flow.lastVerdict = VERDICTS[batch.verdict(i)];
    flow.lastReason = REASONS[reason];
  }

  /** The bin a time falls in, the bins merged pairwise first while it lies beyond maxBins. */
  private fitBin(bin: number): number {
    while (bin >= this.maxBins) {
      this.binNs *= 2;
      for (const series of [...this.packets, this.newFlows]) mergeSums(series);
      mergeEnds(this.conntrack);
      mergeEnds(this.masqueradePorts);
      bin = Math.floor(bin / 2);
    }
    return bin;
  }

  private takeCensus(atNs: bigint): void {
    const { flows, masqueraded } = this.dp.census(atNs);
    this.conntrack.push(flows);
    this.masqueradePorts.push(masqueraded);
  }

  /** The run's report, once the replay has ended: the series closed with the census at the last bin's end. */
  finish(summary: Summary, timeline?: Timeline): RunReport {
    const bins = this.startNs === undefined ? 0 : Math.floor(this.lastNs / this.binNs) + 1;
    while (this.startNs !== undefined && this.conntrack.length < bins) this.takeCensus(this.nextSampleAt);
    const start = this.startSec + this.startNsec / NANOS;
    const binSeconds = this.binNs / NANOS;
    const packets: Record<string, number[]> = {};
    VERDICTS.forEach((name, v) => {
      if (this.packets[v].length > 0) packets[name] = padded(this.packets[v], bins);
    });
    const series: Series = {
      start,
      binSeconds,
      time: Array.from({ length: bins }, (_, k) => start + k * binSeconds),
      packets,
      newFlows: padded(this.newFlows, bins),
      conntrack: this.conntrack.slice(0, bins),
      masqueradePorts: this.masqueradePorts.slice(0, bins),
      markers: timeline ? timeline.syncs.slice(0, MARKERS_CAP).map(changeMarker) : [],
    };
    const shown = capped(summary);
    return {
      summary: shown,
      services: { cap: SERVICES_CAP, total: summary.services.length },
      markersCap: MARKERS_CAP,
      markersTotal: timeline?.syncs.length ?? 0,
      balance: serviceBalance(shown, this.compiled(), this.masquerade),
      series,
      flows: { cap: this.flowsCap, total: this.totalFlows, rows: this.rows },
    };
  }
}

/** A word as a POSIX shell reads it back: unquoted when it is plain, else in single quotes. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The command line as the user typed it, quoted for a shell. */
export function commandLine(command: string, argv: readonly string[]): string {
  return ['svcpath', command, ...argv].map(shellWord).join(' ');
}

/** The summary with the Services of most packets (kept in its order) and the first syncs, as RunReport says. */
function capped(summary: Summary): Summary {
  let { services, changes } = summary;
  if (services.length > SERVICES_CAP) {
    const busiest = new Set([...services].sort((a, b) => b.packets - a.packets).slice(0, SERVICES_CAP));
    services = services.filter((s) => busiest.has(s));
  }
  if (changes && changes.syncs.length > MARKERS_CAP) changes = { ...changes, syncs: changes.syncs.slice(0, MARKERS_CAP) };
  return { ...summary, services, ...(changes && { changes }) };
}

function add(series: number[], bin: number, n: number): void {
  while (series.length <= bin) series.push(0);
  series[bin] += n;
}

function padded(series: number[], bins: number): number[] {
  const out = series.slice(0, bins);
  while (out.length < bins) out.push(0);
  return out;
}

/** Counts of bins 2k and 2k+1 become bin k's. */
function mergeSums(series: number[]): void {
  const merged = Array.from({ length: Math.ceil(series.length / 2) }, (_, k) => series[2 * k] + (series[2 * k + 1] ?? 0));
  series.splice(0, series.length, ...merged);
}

/** A value at bin 2k+1's end is merged bin k's end; an odd last one is not yet a merged bin's end. */
function mergeEnds(series: number[]): void {
  const merged = Array.from({ length: Math.floor(series.length / 2) }, (_, k) => series[2 * k + 1]);
  series.splice(0, series.length, ...merged);
}

/**
 * A flow's client-side tuple, "PROTO client > frontend": a request's frame as
 * captured, or a reply's as rewritten (then the frame's destination is the client).
 */
function clientTuple(
  linktype: number,
  bytes: Uint8Array,
  reply: boolean,
): { key: string; protocol: FlowRow['protocol']; client: string; frontend: string } | undefined {
  const d = decodeCaptured(linktype, bytes);
  const ip = d.ipv4 ?? d.ipv6;
  if (!ip) return undefined;
  const ports = d.tcp ?? d.udp ?? sctpPorts(ip.protocol, bytes, d.payloadOffset, d.payloadLength);
  if (!ports) return undefined;
  const protocol = d.tcp ? 'TCP' : d.udp ? 'UDP' : 'SCTP';
  const src = hostPort(ip.src, ports.sport);
  const dst = hostPort(ip.dst, ports.dport);
  const [client, frontend] = reply ? [dst, src] : [src, dst];
  return { key: `${protocol} ${client} > ${frontend}`, protocol, client, frontend };
}

/** SCTP's ports, the first four bytes of its common header (traces/frames.ts decodes no SCTP). */
function sctpPorts(protocol: number, bytes: Uint8Array, offset: number, length: number): { sport: number; dport: number } | undefined {
  if (protocol !== 132 || length < 4 || offset + 4 > bytes.length) return undefined;
  return { sport: (bytes[offset] << 8) | bytes[offset + 1], dport: (bytes[offset + 2] << 8) | bytes[offset + 3] };
}

/** Per Service port: each backend's share of the Maglev table beside the flows it got. */
function serviceBalance(
  summary: Summary,
  compiled: Compiled,
  masquerade: Map<string, { flows: number; packets: number }>,
): ServiceBalance[] {
  const byName = new Map(compiled.services.map((s) => [s.name, s]));
  return summary.services.map((s) => {
    const service = byName.get(s.service);
    const shares = service ? tableShares(service, compiled) : { table: null, share: new Map<string, number>() };
    return {
      service: s.service,
      flows: s.flows,
      masqueraded: masquerade.get(s.service) ?? { flows: 0, packets: 0 },
      backends: s.backends.map((b) => ({
        backend: b.backend,
        node: b.node,
        local: b.local,
        expected: shares.share.get(b.backend) ?? null,
        table: shares.share.has(b.backend) ? shares.table : null,
        flows: b.flows,
        packets: b.packets,
        bytes: b.bytes,
      })),
    };
  });
}

/**
 * The slots each backend holds in the table the Service's ClusterIP traffic
 * uses: the node-local set under internalTrafficPolicy Local, else the
 * cluster-wide one (IPv4's, else IPv6's), as a share of the table.
 */
function tableShares(service: CompiledService, compiled: Compiled): { table: 'cluster' | 'local'; share: Map<string, number> } {
  const local = service.service.internalTrafficPolicy === 'Local';
  const sets = local ? [service.local, service.local6] : [service.cluster, service.cluster6];
  const set = sets.find((s) => s && s.maglev.length > 0);
  const share = new Map<string, number>();
  if (set) {
    const slots = new Map<number, number>();
    for (const id of set.maglev) slots.set(id, (slots.get(id) ?? 0) + 1);
    for (const [id, n] of slots) {
      const b = compiled.backends[id - 1];
      if (b) share.set(hostPort(b.ip, b.port), n / set.maglev.length);
    }
  }
  return { table: local ? 'local' : 'cluster', share };
}

function total(counts: Record<string, number>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** A sync as a marker on the time charts. */
function changeMarker(sync: SyncRecord): ChangeMarker {
  const [sec, nsec = '0'] = sync.at.split('.');
  const parts = [
    ...sync.services.added.map((s) => `+${s}`),
    ...sync.services.removed.map((s) => `-${s}`),
    ...sync.services.modified.map((s) => `~${s}`),
    ...sync.endpoints.map((e) => `${e.service}: +${e.added.length} -${e.removed.length + e.gone.length}`),
  ];
  const changed = Object.values(sync.observed.flowChanges).reduce((a, b) => a + b, 0);
  return {
    time: Number(sec) + Number(nsec.padEnd(9, '0')) / NANOS,
    state: sync.state,
    label: parts.join(', ') || sync.events.map((e) => `${e.type} ${e.kind} ${e.object}`).join(', '),
    flows: total(sync.onRemovedBackends) + total(sync.flushed),
    packetsChanged: changed + sync.observed.rejected,
  };
}

/** A diff's report for the page: its changed flows capped at `changesCap`, and each Service's flows as a matrix of decisions. */
export function diffView(report: DiffReport, changesCap = 1000): DiffView {
  return {
    report: { ...report, changes: report.changes.slice(0, changesCap) },
    changesCap,
    matrices: report.services.filter((s) => s.flows > 0).map(moveMatrix),
  };
}

/** Flows by decision before and after: the moves off the diagonal, the flows that stayed on it. */
function moveMatrix(s: ServiceDiff): MoveMatrix {
  const cells: Array<[string, string, number]> = [
    ...Object.entries(s.moves).map(([move, n]): [string, string, number] => {
      const [was, now] = move.split(' -> ');
      return [was, now, n];
    }),
    ...Object.entries(s.stayed).map(([decision, n]): [string, string, number] => [decision, decision, n]),
  ];
  const before = [...new Set(cells.map((c) => c[0]))].sort();
  const after = [...new Set(cells.map((c) => c[1]))].sort();
  const flows = before.map(() => after.map(() => 0));
  for (const [was, now, n] of cells) flows[before.indexOf(was)][after.indexOf(now)] += n;
  return { service: s.service, before, after, flows };
}
