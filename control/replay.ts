/**
 * Replay: capture records → batches in the datapath's memory → verdicts,
 * rewritten frames and counters. Records stream through in constant memory;
 * when the capture turns out to be broken part-way, everything before the
 * bad record is still processed and written, and the result says where the
 * replay stopped.
 *
 * A classic pcap file takes the zero-copy path (control/zero-copy.ts): read
 * in chunks into linear memory and walked there by the datapath, which also
 * writes the verdict lines and output records. pcapng, and packets to trace,
 * go through the JavaScript readers record by record.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { openCapture, createPcapWriter, PcapReader, type PcapWriter } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import type { Compiled } from './compiler.js';
import { Batch, type Datapath } from './datapath.js';
import { InputError, inputError } from './errors.js';
import { DESC_F_SNAT, hostPort } from './layout.js';
import { PcapFeeder, PcapRecordWriter, VerdictWriter } from './zero-copy.js';


/** Frames per batch and bytes of frame data per batch. */
export const BATCH_FRAMES = 4096;
export const BATCH_BYTES = 16 << 20;
/** The zero-copy chunk: room for the largest record a batch takes, and its header. */
const CHUNK_BYTES = BATCH_BYTES + 16;

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

/** A batch after process_batch, with where the replay is in the capture. */
export interface ProcessedBatch {
  batch: Batch;
  /** The packet number (n) of the batch's first frame. */
  first: number;
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

/** The JSON value of every service id and backend id in verdict lines (index 0: none). */
export function verdictValues(compiled: Compiled): { services: string[]; backends: string[] } {
  return {
    services: ['null', ...compiled.services.map((s) => JSON.stringify(s.name))],
    backends: ['null', ...compiled.backends.map((b) => JSON.stringify(hostPort(b.ip, b.port)))],
  };
}

/** Where output frames go, each with its own link type. */
export interface FrameSink {
  write(record: number, linktype: number, tsSec: number, tsNsec: number, data: Uint8Array, origlen: number): void;
  /** The classic pcap writer underneath, which takes whole records from the datapath; absent for pcapng. */
  readonly pcap?: PcapWriter;
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
      pcap: w,
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

  /** Bytes already encoded, written straight through after the pending lines. */
  writeBytes(bytes: Uint8Array): void {
    this.flush();
    for (let done = 0; done < bytes.length; ) done += writeSync(this.fd, bytes, done, bytes.length - done);
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

/**
 * A batch's trace records by the frame they are of (its index in the batch),
 * in one pass: svcpath trace --flow traces every frame, and looking each
 * frame's records up among the whole batch's was quadratic.
 */
function recordsByFrame(records: Uint8Array[]): Map<number, Uint8Array[]> {
  const byFrame = new Map<number, Uint8Array[]>();
  for (const r of records) {
    const frame = r[4] | (r[5] << 8) | (r[6] << 16) | (r[7] << 24);
    const list = byFrame.get(frame);
    if (list) list.push(r);
    else byFrame.set(frame, [r]);
  }
  return byFrame;
}

export function replay(trace: string, compiled: Compiled, dp: Datapath, opts: ReplayOptions = {}): ReplayResult {
  const reader = openCapture(trace);
  let writer: FrameSink | undefined;
  let verdicts: LineSink | undefined;
  let feeder: PcapFeeder | undefined;
  const result: ReplayResult = { trace, packets: 0, written: 0, warnings: reader.warnings, notes: [] };
  /** The record whose output could not be written, if that is what stopped the replay. */
  let unwritable = 0;
  try {
    // Linear memory is reserved before anything reads it: the trace ring, the batch, the zero-copy areas.
    if (opts.trace) dp.enableTrace(BATCH_FRAMES * TRACE_RECORDS_PER_FRAME);
    const batch = dp.createBatch(BATCH_FRAMES, BATCH_BYTES);
    if (reader instanceof PcapReader && !opts.trace) feeder = new PcapFeeder(reader, dp, CHUNK_BYTES);
    const values = verdictValues(compiled);
    const lineWriter = opts.verdicts && !opts.onBatch ? new VerdictWriter(dp, values.services, values.backends, BATCH_FRAMES) : undefined;
    if (opts.out) writer = openFrameSink(opts.out, reader.linktypes, reader.nanosecond, result.notes);
    // Classic pcap in, classic pcap out: one link type, 32-bit seconds, so the datapath writes the records.
    const recordWriter = feeder && writer?.pcap ? new PcapRecordWriter(dp, BATCH_BYTES + 16 * BATCH_FRAMES) : undefined;
    if (opts.verdicts) verdicts = new LineSink(opts.verdicts);
    const traced = new Map<number, Uint8Array>(); // batch index -> input frame

    /** Per frame, in JavaScript: what only the reader path and the callers of onDecision need. */
    const eachPacket = (first: number, traceRecords: Map<number, Uint8Array[]>) => {
      for (let i = 0; i < batch.count; i++) {
        const n = first + i;
        const decision = {
          n, verdict: batch.verdict(i), reason: batch.reason(i), serviceId: batch.serviceId(i), backendId: batch.backendId(i),
          snat: (batch.flags(i) & DESC_F_SNAT) !== 0,
        };
        opts.onDecision?.(decision);
        const input = traced.get(i);
        if (input && opts.trace) {
          opts.trace.onPacket({
            decision, tsSec: batch.tsSec(i), tsNsec: batch.tsNsec(i), linktype: batch.linktype(i), input, output: batch.frame(i).slice(),
            records: traceRecords.get(i) ?? [],
          });
        }
        if (writer && !recordWriter && batch.sent(i)) {
          const frame = batch.frame(i);
          unwritable = n;
          // A frame the datapath rebuilt (an ICMP error) is whole; a rewritten one keeps its wire length.
          writer.write(n, batch.linktype(i), batch.tsSec(i), batch.tsNsec(i), frame, frame.length === batch.caplen(i) ? batch.wireLen(i) : frame.length);
          unwritable = 0;
        }
      }
    };

    const flush = () => {
      if (batch.count === 0) return;
      batch.run();
      const first = result.packets + 1;
      const traceRecords = recordsByFrame(opts.trace ? dp.takeTrace() : []);
      try {
        if (opts.onBatch) {
          opts.onBatch({ batch, first, bytesRead: feeder?.bytesRead ?? reader.bytesRead, fileSize: reader.fileSize });
        } else {
          if (lineWriter) lineWriter.write(batch, first, (bytes) => verdicts!.writeBytes(bytes));
          if (recordWriter) recordWriter.write(batch, writer!.pcap!.nanosecond, (bytes) => writer!.pcap!.writeRecords(bytes));
          if (opts.onDecision || opts.trace || (writer && !recordWriter)) eachPacket(first, traceRecords);
          if (writer) for (let i = 0; i < batch.count; i++) if (batch.sent(i)) result.written++;
        }
        result.packets += batch.count;
      } finally {
        batch.clear();
        traced.clear();
      }
      opts.onProgress?.(feeder?.bytesRead ?? reader.bytesRead, reader.fileSize, result.packets);
    };

    const tooBig = (n: number, caplen: number) =>
      inputError([trace, `record ${n}`, 'caplen'], `${caplen} bytes is more than the datapath's ${BATCH_BYTES}-byte frame area`);
    try {
      if (feeder) {
        while (feeder.fill(batch)) {
          if (batch.count === 0) throw tooBig(feeder.recordsRead + 1, feeder.nextCaplen());
          flush();
        }
      } else {
        for (const rec of reader.records()) {
          if (Batch.footprint(rec.caplen) > BATCH_BYTES) throw tooBig(rec.n, rec.caplen);
          const traceThis = opts.trace?.select(rec.n, rec.data) ?? false;
          if (!batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis, rec.direction)) {
            flush();
            batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis, rec.direction);
          }
          if (traceThis) traced.set(batch.count - 1, rec.data.slice());
        }
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
    }
  } finally {
    writer?.close();
    verdicts?.close();
    feeder?.close();
    reader.close();
  }
  return result;
}
