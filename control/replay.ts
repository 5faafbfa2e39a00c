/**
 * Replay: capture records → batches in the datapath's memory → verdicts,
 * rewritten frames and counters. Records stream through in constant memory;
 * when the capture turns out to be broken part-way, everything before the
 * bad record is still processed and written, and the result says where the
 * replay stopped.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { openCapture, createPcapWriter } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import type { Compiled } from './compiler.js';
import { Batch, type Datapath } from './datapath.js';
import { InputError, inputError } from './errors.js';
import { REASONS, VERDICTS, hostPort } from './layout.js';

const XDP_TX = 3;
const XDP_REDIRECT = 4;
const DESC_F_SNAT = 1;

/** Frames per batch and bytes of frame data per batch. */
export const BATCH_FRAMES = 4096;
export const BATCH_BYTES = 16 << 20;

export interface ReplayOptions {
  /** Output capture of the TX/REDIRECT frames: pcapng when the name ends in .pcapng, else classic pcap. */
  out?: string;
  /** Verdicts JSONL, one line per input packet. */
  verdicts?: string;
  /** Called after every batch. */
  onProgress?: (bytesRead: number, fileSize: number, packets: number) => void;
  /** Called with every packet's decision, in input order (for tools that compare replays). */
  onDecision?: (d: PacketDecision) => void;
  /**
   * Takes every processed batch instead of the per-packet outputs above (a
   * sharded replay's worker: control/sharded-replay.ts).
   */
  onBatch?: (b: ProcessedBatch) => void;
  /** Packets to trace, and where their traces go (svcpath trace). */
  trace?: {
    select: (n: number, data: Uint8Array) => boolean;
    onPacket: (t: TracedPacket) => void;
  };
}

/** A batch after process_batch: the descriptors, and per frame what the capture said of it. */
export interface ProcessedBatch {
  batch: Batch;
  /** The packet number (n) of the batch's first frame minus one. */
  before: number;
  recordNo: Float64Array;
  linktype: Uint32Array;
  tsSec: Float64Array;
  tsNsec: Uint32Array;
  caplen: Uint32Array;
  origlen: Uint32Array;
  /** File bytes read so far, and the file's size. */
  bytesRead: number;
  fileSize: number;
}

/** A traced packet: its frame in and out, and the datapath's own trace records of it. */
export interface TracedPacket {
  decision: PacketDecision;
  tsSec: number;
  tsNsec: number;
  linktype: number;
  input: Uint8Array;
  output: Uint8Array;
  records: Uint8Array[];
}

/** Trace records one frame may write: its lookups, Maglev choices and verdict, with room to spare. */
const TRACE_RECORDS_PER_FRAME = 24;

export interface PacketDecision {
  n: number;
  verdict: number;
  reason: number;
  serviceId: number;
  backendId: number;
  snat: boolean;
}

export interface ReplayResult {
  trace: string;
  packets: number;
  /** Packets written to --out. */
  written: number;
  warnings: string[];
  /** What the replay chose that the user should know. */
  notes: string[];
  /** Set when a bad record ended the replay early: everything before it was processed. */
  stoppedAt?: { record: number; error: string };
}

/** The JSONL verdict record (the public contract): built by hand for speed, field order fixed. */
export function verdictLine(n: number, verdict: number, reason: number, service: string, backend: string, snat: boolean): string {
  return `{"n":${n},"verdict":"${VERDICTS[verdict]}","reason":"${REASONS[reason]}","service":${service},"backend":${backend},"snat":${snat}}\n`;
}

/** Where output frames go, each with its own link type. */
export interface FrameSink {
  write(record: number, linktype: number, tsSec: number, tsNsec: number, data: Uint8Array, origlen: number): void;
  close(): void;
}

/** Classic pcap holds 32-bit seconds; pcapng holds any time, so a late frame needs it. */
const PCAP_MAX_SECONDS = 0xffffffff;

/**
 * The output capture: pcapng when asked for by name or when the input mixes
 * link types (one interface per link type), else classic pcap with the
 * input's link type.
 */
export function openFrameSink(path: string, linktypes: readonly number[], nanosecond: boolean, notes: string[]): FrameSink {
  const otherLinkType = (n: number, linktype: number) => inputError([path, `output of record ${n}`, 'linktype'],
    `link type ${linktype} was not among the input's link types when the output was started (${linktypes.join(', ')})`);
  try {
    if (path.endsWith('.pcapng') || linktypes.length > 1) {
      if (!path.endsWith('.pcapng')) notes.push(`${path}: written as pcapng, since the input mixes link types (${linktypes.join(', ')})`);
      const w = createPcapngWriter(path, { interfaces: linktypes.map((linktype) => ({ linktype, tsresolNs: nanosecond })) });
      return {
        write: (n, linktype, sec, nsec, data, origlen) => {
          const iface = linktypes.indexOf(linktype);
          if (iface < 0) throw otherLinkType(n, linktype);
          w.write(iface, sec, nsec, data, origlen);
        },
        close: () => w.close(),
      };
    }
    const w = createPcapWriter(path, { linktype: linktypes[0], nanosecond });
    return {
      write: (n, linktype, sec, nsec, data, origlen) => {
        if (linktype !== linktypes[0]) throw otherLinkType(n, linktype);
        if (sec < 0 || sec > PCAP_MAX_SECONDS) {
          throw inputError([path, `output of record ${n}`, 'timestamp'], `${sec} s does not fit a classic pcap file; name the output *.pcapng`);
        }
        w.write(sec, nsec, data, origlen);
      },
      close: () => w.close(),
    };
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw inputError([path], `cannot write: ${(e as Error).message}`);
  }
}

/** Text output in large writes. */
export class LineSink {
  private parts: string[] = [];
  private size = 0;
  private readonly fd: number;

  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'w');
    } catch (e) {
      throw inputError([path], `cannot write: ${(e as Error).message}`);
    }
  }

  push(line: string): void {
    this.parts.push(line);
    this.size += line.length;
    if (this.size > 1 << 20) this.flush();
  }

  flush(): void {
    if (this.parts.length === 0) return;
    writeSync(this.fd, this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }

  close(): void {
    this.flush();
    closeSync(this.fd);
  }
}

export function replay(trace: string, compiled: Compiled, dp: Datapath, opts: ReplayOptions = {}): ReplayResult {
  const reader = openCapture(trace);
  // JSON fragments for every id, made once: the per-packet work is a lookup.
  const serviceJson = ['null', ...compiled.services.map((s) => JSON.stringify(s.name))];
  const backendJson = ['null', ...compiled.backends.map((b) => JSON.stringify(hostPort(b.ip, b.port)))];

  let writer: FrameSink | undefined;
  let verdicts: LineSink | undefined;
  // Linear memory is reserved before the batch area, so that the batch's views stay valid.
  if (opts.trace) dp.enableTrace(BATCH_FRAMES * TRACE_RECORDS_PER_FRAME);
  const batch = dp.createBatch(BATCH_FRAMES, BATCH_BYTES);
  const tsSec = new Float64Array(BATCH_FRAMES);
  const tsNsec = new Uint32Array(BATCH_FRAMES);
  const caplen = new Uint32Array(BATCH_FRAMES);
  const origlen = new Uint32Array(BATCH_FRAMES);
  const recordNo = new Float64Array(BATCH_FRAMES);
  const traced = new Map<number, Uint8Array>(); // batch index -> input frame
  const linktype = new Uint32Array(BATCH_FRAMES);
  const result: ReplayResult = { trace, packets: 0, written: 0, warnings: reader.warnings, notes: [] };
  /** The record whose output could not be written, if that is what stopped the replay. */
  let unwritable = 0;

  const flush = () => {
    if (batch.count === 0) return;
    batch.run();
    if (opts.onBatch) {
      try {
        opts.onBatch({ batch, before: result.packets, recordNo, linktype, tsSec, tsNsec, caplen, origlen, bytesRead: reader.bytesRead, fileSize: reader.fileSize });
        result.packets += batch.count;
      } finally {
        batch.clear();
      }
      return;
    }
    const traceRecords = opts.trace ? dp.takeTrace() : [];
    try {
      for (let i = 0; i < batch.count; i++) {
        const n = ++result.packets;
        const v = batch.verdict(i);
        if (verdicts) {
          verdicts.push(verdictLine(n, v, batch.reason(i), serviceJson[batch.serviceId(i)] ?? 'null',
            backendJson[batch.backendId(i)] ?? 'null', (batch.flags(i) & DESC_F_SNAT) !== 0));
        }
        const decision = {
          n, verdict: v, reason: batch.reason(i), serviceId: batch.serviceId(i), backendId: batch.backendId(i),
          snat: (batch.flags(i) & DESC_F_SNAT) !== 0,
        };
        opts.onDecision?.(decision);
        const input = traced.get(i);
        if (input && opts.trace) {
          opts.trace.onPacket({
            decision, tsSec: tsSec[i], tsNsec: tsNsec[i], linktype: linktype[i], input, output: batch.frame(i).slice(),
            records: traceRecords.filter((r) => (r[4] | (r[5] << 8) | (r[6] << 16) | (r[7] << 24)) === i),
          });
        }
        if (writer && (v === XDP_TX || v === XDP_REDIRECT)) {
          const frame = batch.frame(i);
          unwritable = n;
          // A frame the datapath rebuilt (an ICMP error) is whole; a rewritten one keeps its wire length.
          writer.write(recordNo[i], linktype[i], tsSec[i], tsNsec[i], frame, frame.length === caplen[i] ? origlen[i] : frame.length);
          unwritable = 0;
          result.written++;
        }
      }
    } finally {
      batch.clear();
      traced.clear();
    }
    opts.onProgress?.(reader.bytesRead, reader.fileSize, result.packets);
  };

  try {
    if (opts.out) writer = openFrameSink(opts.out, reader.linktypes, reader.nanosecond, result.notes);
    if (opts.verdicts) verdicts = new LineSink(opts.verdicts);
    for (const rec of reader.records()) {
      if (Batch.footprint(rec.caplen) > BATCH_BYTES) {
        throw inputError([trace, `record ${rec.n}`, 'caplen'], `${rec.caplen} bytes is more than the datapath's ${BATCH_BYTES}-byte frame area`);
      }
      const traceThis = opts.trace?.select(rec.n, rec.data) ?? false;
      if (!batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis)) {
        flush();
        batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis);
      }
      const i = batch.count - 1;
      if (traceThis) traced.set(i, rec.data.slice());
      tsSec[i] = rec.tsSec;
      tsNsec[i] = rec.tsNsec;
      caplen[i] = rec.caplen;
      origlen[i] = rec.origlen;
      recordNo[i] = rec.n;
      linktype[i] = rec.linktype;
    }
    flush();
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    let error = e;
    // Process what was read before the bad record, unless writing it is what failed.
    if (!unwritable) {
      try {
        flush();
      } catch (e2) {
        if (!(e2 instanceof InputError)) throw e2;
        error = e2;
      }
    }
    result.stoppedAt = { record: unwritable || result.packets + 1, error: error.message };
  } finally {
    writer?.close();
    verdicts?.close();
    reader.close();
  }
  return result;
}
