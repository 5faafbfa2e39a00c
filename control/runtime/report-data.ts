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
import {
  decodeCaptured,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  formatIpv4,
  formatIpv6,
  ipv4ToBytes,
  ipv6ToBytes,
  VLAN_TPIDS,
} from '../../traces/frames.js';
import type { Compiled, CompiledService } from '../compile/compiler.js';
import { DESC_F_NEW_FLOW, DESC_F_SNAT, LINKTYPES, REASONS, VERDICTS, hostPort } from '../compile/layout.js';
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
  /** Masqueraded flows and packets per service id (ids stay a Service's through cluster changes). */
  private readonly masqueradedFlows: number[] = [];
  private readonly masqueradedPackets: number[] = [];
  private readonly rows: FlowRow[] = [];
  /** Each row's client-side tuple (TUPLE_BYTES), and the rows by the tuple's hash, while the tuple is their flow's. */
  private readonly rowTuples: Uint8Array[] = [];
  private readonly rowsByHash = new Map<number, number[]>();
  /** The client-side tuples of the batch's frames as they came in (TUPLE_BYTES each), read before the datapath rewrites them. */
  private inTuples = new Uint8Array(0);
  private inValid = new Uint8Array(0);
  private readonly scratch = new Uint8Array(TUPLE_BYTES);

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

  /** Before process_batch: each frame's client-side tuple as a request's, before the datapath rewrites it in place. */
  beforeRun(batch: Batch): void {
    if (this.inValid.length < batch.count) {
      this.inTuples = new Uint8Array(batch.maxFrames * TUPLE_BYTES);
      this.inValid = new Uint8Array(batch.maxFrames);
    }
    for (let i = 0; i < batch.count; i++) this.inValid[i] = frameTuple(batch, i, false, this.inTuples, i * TUPLE_BYTES) ? 1 : 0;
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
      const newFlow = (flags & DESC_F_NEW_FLOW) !== 0;
      const snat = (flags & DESC_F_SNAT) !== 0;
      if (newFlow) {
        add(this.newFlows, bin, 1);
        this.totalFlows++;
      }
      if (snat) {
        add(this.masqueradedPackets, serviceId, 1);
        if (newFlow) add(this.masqueradedFlows, serviceId, 1);
      }
      this.countFlowPacket(batch, i, first + i, compiled, newFlow, snat);
    }
  }

  /**
   * The packet's flow in the table: a new flow gets a row while there is
   * room; a later packet of it adds to its row. A request's flow is its
   * tuple as it came in, a reply's its tuple as rewritten, reversed.
   */
  private countFlowPacket(batch: Batch, i: number, n: number, compiled: Compiled, newFlow: boolean, snat: boolean): void {
    const reason = batch.reason(i);
    let tuples = this.inTuples;
    let at = i * TUPLE_BYTES;
    if (reason === REASON_SERVICE) {
      if (this.inValid[i] === 0) return;
    } else if (reason === REASON_REPLY) {
      if (this.rowsByHash.size === 0 || !frameTuple(batch, i, true, this.scratch, 0)) return;
      tuples = this.scratch;
      at = 0;
    } else return;
    const hash = tupleHash(tuples, at);
    let row = this.rowOf(hash, tuples, at);
    if (newFlow) {
      // The tuple is a new flow's from now on: the row of an earlier flow on it (a reused client port) ends.
      if (row !== undefined) this.forget(hash, row);
      row = this.rows.length < this.flowsCap ? this.addRow(batch, i, n, compiled, snat, hash, tuples, at) : undefined;
    }
    if (row === undefined) return;
    const flow = this.rows[row];
    flow.packets++;
    flow.bytes += batch.wireLen(i);
    flow.lastVerdict = VERDICTS[batch.verdict(i)];
    flow.lastReason = REASONS[reason];
  }

  private rowOf(hash: number, tuples: Uint8Array, at: number): number | undefined {
    return this.rowsByHash.get(hash)?.find((r) => sameTuple(this.rowTuples[r], tuples, at));
  }

  private forget(hash: number, row: number): void {
    const rows = this.rowsByHash.get(hash)!.filter((r) => r !== row);
    if (rows.length > 0) this.rowsByHash.set(hash, rows);
    else this.rowsByHash.delete(hash);
  }

  private addRow(
    batch: Batch,
    i: number,
    n: number,
    compiled: Compiled,
    snat: boolean,
    hash: number,
    tuples: Uint8Array,
    at: number,
  ): number {
    const tuple = tuples.slice(at, at + TUPLE_BYTES);
    const { protocol, client, frontend } = describeTuple(tuple);
    const backendId = batch.backendId(i);
    const backend = backendId ? compiled.backends[backendId - 1] : undefined;
    const row = this.rows.length;
    this.rows.push({
      packet: n,
      time: batch.tsSec(i) + batch.tsNsec(i) / NANOS,
      protocol,
      client,
      frontend,
      service: compiled.services[batch.serviceId(i) - 1].name,
      backend: backend ? hostPort(backend.ip, backend.port) : null,
      masqueraded: snat,
      packets: 0,
      bytes: 0,
      lastVerdict: '',
      lastReason: '',
      trace: `${this.opts.traceCommand} --flow ${client}`,
    });
    this.rowTuples.push(tuple);
    this.rowsByHash.set(hash, [...(this.rowsByHash.get(hash) ?? []), row]);
    return row;
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

  /** Masquerade counts by Service name, as the program in force names the ids. */
  private masqueradeByName(): Map<string, { flows: number; packets: number }> {
    const byName = new Map<string, { flows: number; packets: number }>();
    for (const s of this.compiled().services) {
      const packets = this.masqueradedPackets[s.id] ?? 0;
      if (packets > 0) byName.set(s.name, { flows: this.masqueradedFlows[s.id] ?? 0, packets });
    }
    return byName;
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
      balance: serviceBalance(shown, this.compiled(), this.masqueradeByName()),
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
 * A flow's client-side tuple, as the report keys its flows: protocol, family
 * (4 or 6), the client's address (16 bytes, IPv4's in the first 4) and port,
 * the frontend's address and port.
 */
const TUPLE_BYTES = 38;
const TUPLE = { PROTOCOL: 0, FAMILY: 1, CLIENT: 2, CLIENT_PORT: 18, FRONTEND: 20, FRONTEND_PORT: 36 } as const;
const PORTS_PROTOCOLS: Record<number, FlowRow['protocol']> = { 6: 'TCP', 17: 'UDP', 132: 'SCTP' };

/**
 * Writes the batch frame's client-side tuple at `out[at]`: a request's
 * source is the client, a reply's destination. False when the frame has no
 * ports to read (not TCP, UDP or SCTP, a later fragment, cut short).
 */
function frameTuple(batch: Batch, i: number, reply: boolean, out: Uint8Array, at: number): boolean {
  const mem = batch.memoryBytes;
  const start = batch.frameOffset(i);
  const length = batch.frameLength(i);
  return (
    readTupleInPlace(batch.linktype(i), mem, start, start + length, reply, out, at) ||
    decodeTuple(batch.linktype(i), mem.subarray(start, start + length), reply, out, at)
  );
}

/**
 * The tuple read from the headers in place, for the common frames: Ethernet
 * (VLAN tags), Linux cooked v1 and v2, raw IP, loopback; IPv4, IPv6 without
 * extension headers. Written by hand because this runs for every packet of
 * a replay with --report: decodeCaptured's objects and address strings per
 * packet made such a replay ten times as slow as one without. False for
 * anything else, which decodeTuple reads.
 */
function readTupleInPlace(
  linktype: number,
  mem: Uint8Array,
  start: number,
  end: number,
  reply: boolean,
  out: Uint8Array,
  at: number,
): boolean {
  const l3 = networkStart(linktype, mem, start, end);
  if (l3 < 0 || l3 + 20 > end) return false;
  const version = mem[l3] >> 4;
  if (version === 4) {
    const l4 = l3 + (mem[l3] & 15) * 4;
    const laterFragment = (((mem[l3 + 6] & 0x1f) << 8) | mem[l3 + 7]) !== 0;
    if (laterFragment || l4 < l3 + 20 || l4 + 4 > end || !(mem[l3 + 9] in PORTS_PROTOCOLS)) return false;
    writeTuple(out, at, mem[l3 + 9], 4, mem, l3 + 12, l3 + 16, 4, l4, reply);
    return true;
  }
  if (version !== 6 || l3 + 44 > end || !(mem[l3 + 6] in PORTS_PROTOCOLS)) return false;
  writeTuple(out, at, mem[l3 + 6], 6, mem, l3 + 8, l3 + 24, 16, l3 + 40, reply);
  return true;
}

const be16 = (mem: Uint8Array, at: number) => (mem[at] << 8) | mem[at + 1];

/** Where the IP header starts, by link type; -1 when the link layer carries no IP or is cut. */
function networkStart(linktype: number, mem: Uint8Array, start: number, end: number): number {
  const ip = (ethertype: number, at: number) => (ethertype === ETHERTYPE_IPV4 || ethertype === ETHERTYPE_IPV6 ? at : -1);
  switch (linktype) {
    case LINKTYPES.ETHERNET: {
      let at = start + 12;
      while (at + 2 <= end && VLAN_TPIDS.has(be16(mem, at))) at += 4;
      return at + 2 <= end ? ip(be16(mem, at), at + 2) : -1;
    }
    case LINKTYPES.LINUX_SLL:
      return start + 16 <= end ? ip(be16(mem, start + 14), start + 16) : -1;
    case LINKTYPES.LINUX_SLL2:
      return start + 20 <= end ? ip(be16(mem, start), start + 20) : -1;
    case LINKTYPES.RAW:
    case LINKTYPES.RAW_OPENBSD:
    case LINKTYPES.IPV4:
    case LINKTYPES.IPV6:
      return start;
    case LINKTYPES.NULL:
    case LINKTYPES.LOOP:
      return start + 4;
    default:
      return -1;
  }
}

function writeTuple(
  out: Uint8Array,
  at: number,
  protocol: number,
  family: number,
  mem: Uint8Array,
  src: number,
  dst: number,
  addressBytes: number,
  l4: number,
  reply: boolean,
): void {
  out.fill(0, at, at + TUPLE_BYTES);
  out[at + TUPLE.PROTOCOL] = protocol;
  out[at + TUPLE.FAMILY] = family;
  const client = reply ? dst : src;
  const frontend = reply ? src : dst;
  const clientPort = reply ? l4 + 2 : l4;
  const frontendPort = reply ? l4 : l4 + 2;
  for (let k = 0; k < addressBytes; k++) {
    out[at + TUPLE.CLIENT + k] = mem[client + k];
    out[at + TUPLE.FRONTEND + k] = mem[frontend + k];
  }
  out[at + TUPLE.CLIENT_PORT] = mem[clientPort];
  out[at + TUPLE.CLIENT_PORT + 1] = mem[clientPort + 1];
  out[at + TUPLE.FRONTEND_PORT] = mem[frontendPort];
  out[at + TUPLE.FRONTEND_PORT + 1] = mem[frontendPort + 1];
}

/** The tuple through traces/frames.ts decodeCaptured: the frames readTupleInPlace leaves (IPv6 extension headers, ...). */
function decodeTuple(linktype: number, bytes: Uint8Array, reply: boolean, out: Uint8Array, at: number): boolean {
  const d = decodeCaptured(linktype, bytes);
  const ip = d.ipv4 ?? d.ipv6;
  if (!ip) return false;
  const ports = d.tcp ?? d.udp ?? sctpPorts(ip.protocol, bytes, d.payloadOffset, d.payloadLength);
  if (!ports) return false;
  const family = d.ipv4 ? 4 : 6;
  const address = (text: string) => (family === 4 ? ipv4ToBytes(text) : ipv6ToBytes(text));
  const header = new Uint8Array(36);
  header.set(address(ip.src), 0);
  header.set(address(ip.dst), 16);
  header[32] = ports.sport >> 8;
  header[33] = ports.sport & 0xff;
  header[34] = ports.dport >> 8;
  header[35] = ports.dport & 0xff;
  writeTuple(out, at, d.tcp ? 6 : d.udp ? 17 : 132, family, header, 0, 16, family === 4 ? 4 : 16, 32, reply);
  return true;
}

/** SCTP's ports, the first four bytes of its common header (traces/frames.ts decodes no SCTP). */
function sctpPorts(protocol: number, bytes: Uint8Array, offset: number, length: number): { sport: number; dport: number } | undefined {
  if (protocol !== 132 || length < 4 || offset + 4 > bytes.length) return undefined;
  return { sport: be16(bytes, offset), dport: be16(bytes, offset + 2) };
}

/** FNV-1a of a tuple's bytes. */
function tupleHash(bytes: Uint8Array, at: number): number {
  let h = 0x811c9dc5;
  for (let k = at; k < at + TUPLE_BYTES; k++) h = Math.imul(h ^ bytes[k], 0x01000193);
  return h >>> 0;
}

function sameTuple(tuple: Uint8Array, bytes: Uint8Array, at: number): boolean {
  for (let k = 0; k < TUPLE_BYTES; k++) if (tuple[k] !== bytes[at + k]) return false;
  return true;
}

/** A tuple in the flow table's words. */
function describeTuple(tuple: Uint8Array): { protocol: FlowRow['protocol']; client: string; frontend: string } {
  const address = (at: number) => (tuple[TUPLE.FAMILY] === 4 ? formatIpv4(tuple, at) : formatIpv6(tuple, at));
  return {
    protocol: PORTS_PROTOCOLS[tuple[TUPLE.PROTOCOL]],
    client: hostPort(address(TUPLE.CLIENT), be16(tuple, TUPLE.CLIENT_PORT)),
    frontend: hostPort(address(TUPLE.FRONTEND), be16(tuple, TUPLE.FRONTEND_PORT)),
  };
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
        expected: shares.share.get(b.backend) ?? null,
        table: shares.share.has(b.backend) ? shares.table : null,
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

/** What happened to a Service's endpoints, in a few words: "+1 ready, -1, 2 terminating". */
function endpointChange(e: SyncRecord['endpoints'][number]): string {
  const went = e.removed.length + e.gone.length;
  const words = [
    e.added.length > 0 ? `+${e.added.length} ready` : '',
    went > 0 ? `-${went}` : '',
    e.terminating.length > 0 ? `${e.terminating.length} terminating` : '',
  ].filter(Boolean);
  return words.join(', ') || 'endpoints rewritten, the same ones';
}

/** A sync as a marker on the time charts. */
function changeMarker(sync: SyncRecord): ChangeMarker {
  const [sec, nsec = '0'] = sync.at.split('.');
  const parts = [
    ...sync.services.added.map((s) => `+${s}`),
    ...sync.services.removed.map((s) => `-${s}`),
    ...sync.services.modified.map((s) => `~${s}`),
    ...sync.endpoints.map((e) => `${e.service}: ${endpointChange(e)}`),
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
