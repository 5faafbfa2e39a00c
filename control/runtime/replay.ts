/**
 * Replay: capture records → batches in the datapath's memory → verdicts,
 * rewritten frames and counters. Records stream through in constant memory;
 * when the capture turns out to be broken part-way, everything before the
 * bad record is still processed and written, and the result says where the
 * replay stopped. A signal (Ctrl-C) ends it at the next batch boundary, with
 * the same guarantee.
 *
 * The capture is a file, a pipe, standard input (`-`) or any of them
 * gzip-compressed (traces/source.ts). A pipe is read without waiting: when
 * its writer has not written the next record yet, the replay waits
 * asynchronously, so that a signal is heard.
 *
 * Classic pcap takes the zero-copy path (control/runtime/zero-copy-replay.ts): read in
 * chunks into linear memory and walked there by the datapath, which also
 * writes the verdict lines and output records. pcapng, and packets to trace,
 * go through the JavaScript readers record by record.
 *
 * Outputs (`-`: standard output) are written to temporary files and put in
 * place when the replay ends, completely, at a bad record or at a signal;
 * an exception removes them and leaves what was there before.
 */
import { OutputFile, removeTemporaryFiles, STDOUT, WouldBlock, type ByteSink, type ByteSource } from '../../traces/chunked.js';
import { openCapture, createPcapWriter, PcapReader, type CaptureReader, type PcapWriter } from '../../traces/pcap.js';
import { createPcapngWriter } from '../../traces/pcapng.js';
import { openSource } from '../../traces/source.js';
import type { Compiled } from '../compile/compiler.js';
import { Batch, type Datapath } from './datapath.js';
import { inputError, isInputError } from '../common/errors.js';
import { DESC_F_SNAT, hostPort, type FlowChange } from '../compile/layout.js';
import type { ClusterChanges } from './cluster-sync.js';
import { PcapFeeder, PcapRecordWriter, VerdictWriter } from './zero-copy-replay.js';
import type { ReportCollector } from './report-data.js';

/** Frames per batch and bytes of frame data per batch. */
export const BATCH_FRAMES = 4096;
export const BATCH_BYTES = 16 << 20;
/** The zero-copy chunk: room for the largest record a batch takes, and its header. */
const CHUNK_BYTES = BATCH_BYTES + 16;

export interface ReplayOptions {
  /**
   * Output capture of the TX/REDIRECT frames: pcapng when the name ends in .pcapng, else classic pcap; `-`: standard output;
   * a sink (memory: the playground's) named alike.
   */
  out?: string | ByteSink;
  /** Verdicts JSONL, one line per input packet; `-`: standard output; or a sink. */
  verdicts?: string | ByteSink;
  /** Called after every batch: how far into the capture's file the replay is (compressed bytes for gzip), and its size when known. */
  onProgress?: (done: number, total: number | undefined, packets: number) => void;
  /** Called with every packet's decision, in input order (for tools that compare replays). */
  onDecision?: (d: PacketDecision) => void;
  /**
   * Takes every processed batch instead of the per-packet outputs above (a
   * sharded replay's worker: control/runtime/sharded-replay.ts).
   */
  onBatch?: (b: ProcessedBatch) => void;
  /** Packets to trace, and where their traces go (svcpath trace). */
  trace?: {
    select: (n: number, data: Uint8Array) => boolean;
    onPacket: (t: TracedPacket) => void;
  };
  /** Aborted: the replay ends at the next batch boundary (or while it waits for a pipe), and writes what it processed. */
  signal?: AbortSignal;
  /**
   * Cluster changes (--events): each sync is applied between batches, before
   * the first packet at or after its time; verdict lines then carry the state
   * each packet was decided under. The datapath is `changes.live.dp`.
   */
  changes?: ClusterChanges;
  /**
   * What --report shows, collected per batch; the replay stops its batches
   * at the collector's sample times, as at cluster changes.
   */
  report?: ReportCollector;
}

/** A batch after process_batch, with where the replay is in the capture. */
export interface ProcessedBatch {
  batch: Batch;
  /** The packet number (n) of the batch's first frame. */
  first: number;
  /** As ReplayOptions.onProgress has them. */
  bytesRead: number;
  fileSize: number | undefined;
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
  /** With cluster changes: the state the packet was decided under, and what a change did to its flow. */
  state?: number;
  flowChange?: FlowChange;
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
  /** Set when a signal ended the replay early: the outputs hold packets 1..packets. `signal` is the abort reason. */
  interrupted?: { signal: string };
  /** The link types of the capture's frames (its header's, and any a pcapng interface added later). */
  linktypes: number[];
}

/** The JSON value of every service id and backend id in verdict lines (index 0: none). */
export function verdictValues(compiled: Compiled): { services: string[]; backends: string[] } {
  return {
    services: ['null', ...compiled.services.map((s) => JSON.stringify(s.name))],
    backends: ['null', ...compiled.backends.map((b) => JSON.stringify(hostPort(b.ip, b.port)))],
  };
}

const verdictNames = (compiled: Compiled): [string[], string[]] => {
  const { services, backends } = verdictValues(compiled);
  return [services, backends];
};

const NANOS_PER_SECOND = 1_000_000_000n;

/** Where output frames go, each with its own link type. */
export interface FrameSink {
  write(record: number, linktype: number, tsSec: number, tsNsec: number, data: Uint8Array, origlen: number): void;
  /** The classic pcap writer underneath, which takes whole records from the datapath; absent for pcapng. */
  readonly pcap?: PcapWriter;
  /** Puts the output in place. */
  close(): void;
  /** Drops the output. */
  abort(): void;
}

/** Classic pcap holds 32-bit seconds; pcapng holds any time, so a late frame needs it. */
const PCAP_MAX_SECONDS = 0xffffffff;

/**
 * The output capture: pcapng when asked for by name or when the input mixes
 * link types (one interface per link type), else classic pcap with the
 * input's link type.
 */
export function openFrameSink(to: string | ByteSink, linktypes: readonly number[], nanosecond: boolean, notes: string[]): FrameSink {
  const path = typeof to === 'string' ? to : to.path;
  const otherLinkType = (n: number, linktype: number) =>
    inputError(
      [path, `output of record ${n}`, 'linktype'],
      `link type ${linktype} was not among the input's link types when the output was started (${linktypes.join(', ')})`,
    );
  try {
    if (path.endsWith('.pcapng') || linktypes.length > 1) {
      if (!path.endsWith('.pcapng')) {
        notes.push(
          `${path === STDOUT ? 'standard output' : path}: written as pcapng, since the input mixes link types (${linktypes.join(', ')})`,
        );
      }
      const w = createPcapngWriter(to, { interfaces: linktypes.map((linktype) => ({ linktype, tsresolNs: nanosecond })) });
      return {
        write: (n, linktype, sec, nsec, data, origlen) => {
          const iface = linktypes.indexOf(linktype);
          if (iface < 0) throw otherLinkType(n, linktype);
          w.write(iface, sec, nsec, data, origlen);
        },
        close: () => w.close(),
        abort: () => w.abort(),
      };
    }
    const w = createPcapWriter(to, { linktype: linktypes[0], nanosecond });
    return {
      write: (n, linktype, sec, nsec, data, origlen) => {
        if (linktype !== linktypes[0]) throw otherLinkType(n, linktype);
        if (sec < 0 || sec > PCAP_MAX_SECONDS) {
          throw inputError(
            [path, `output of record ${n}`, 'timestamp'],
            `${sec} s does not fit a classic pcap file; name the output *.pcapng`,
          );
        }
        w.write(sec, nsec, data, origlen);
      },
      pcap: w,
      close: () => w.close(),
      abort: () => w.abort(),
    };
  } catch (e) {
    if (isInputError(e)) throw e;
    throw inputError([path], `cannot write: ${(e as Error).message}`);
  }
}

/** Text output in large writes (an OutputFile: `-` is standard output; or a sink). */
export class LineSink {
  private parts: string[] = [];
  private size = 0;
  private readonly out: ByteSink;

  constructor(to: string | ByteSink) {
    this.out = typeof to === 'string' ? new OutputFile(to) : to;
  }

  push(line: string): void {
    this.parts.push(line);
    this.size += line.length;
    if (this.size > 1 << 20) this.flush();
  }

  /** Bytes already encoded, written straight through after the pending lines. */
  writeBytes(bytes: Uint8Array): void {
    this.flush();
    this.out.write(bytes);
  }

  flush(): void {
    if (this.parts.length === 0) return;
    this.out.write(this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }

  close(): void {
    try {
      this.flush();
    } catch (e) {
      this.out.discard();
      throw e;
    }
    this.out.commit();
  }

  abort(): void {
    this.out.discard();
  }
}

/** The exit status of a run a signal ended, as a shell gives a process the signal killed: 128 + its number. */
export const SIGNAL_EXIT_STATUS: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** A signal ended a run that has no partial result to give (svcpath diff). */
export class Interrupted extends Error {
  override readonly name = 'Interrupted';
  constructor(readonly signal: string) {
    super(`interrupted (${signal})`);
  }
}

/**
 * SIGINT and SIGTERM for a run that writes outputs: the first aborts the
 * signal returned (the replay ends at its next batch boundary and writes what
 * it processed; its reason is the signal's name); a second exits at once,
 * removing the temporary files. release() restores the default actions.
 */
export function stopOnSignals(): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      controller.abort(name);
      return;
    }
    removeTemporaryFiles();
    process.exit(SIGNAL_EXIT_STATUS[name]);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Puts every output in place; if one fails, drops the ones after it and throws. */
export function closeOutputs(outputs: Array<FrameSink | LineSink | undefined>): void {
  let failure: unknown;
  for (const output of outputs) {
    if (!output) continue;
    if (failure !== undefined) {
      output.abort();
      continue;
    }
    try {
      output.close();
    } catch (e) {
      failure = e;
    }
  }
  if (failure !== undefined) throw failure;
}

/**
 * Lets pending events (a signal handler; a page's clicks) run; between
 * batches, so that nothing waits per packet. A page has no setImmediate.
 */
const nextTurn = () =>
  new Promise<void>((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));

/** Replays a capture: a path (`-`: standard input) or a source already open, which the replay closes. */
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

export async function replay(
  capture: string | ByteSource,
  compiled: Compiled,
  dp: Datapath,
  opts: ReplayOptions = {},
): Promise<ReplayResult> {
  const source = typeof capture === 'string' ? openSource(capture) : capture;
  const stopRequested = () => opts.signal?.aborted ?? false;
  const { changes, report } = opts;
  let reader: CaptureReader;
  try {
    // A pipe's writer may not have written the capture's header yet: wait where a signal is heard.
    if (source.live) await source.readable(opts.signal);
    if (stopRequested()) {
      source.close();
      return {
        trace: source.name,
        packets: 0,
        written: 0,
        warnings: [],
        notes: [],
        interrupted: { signal: String(opts.signal!.reason) },
        linktypes: [],
      };
    }
    reader = openCapture(source);
  } catch (e) {
    source.close();
    throw e;
  }
  // From the first record on, a record that has not arrived is waited for asynchronously (WouldBlock).
  source.waits = !source.live;
  let writer: FrameSink | undefined;
  let verdicts: LineSink | undefined;
  let feeder: PcapFeeder | undefined;
  const linktypes = new Set(reader.linktypes);
  const result: ReplayResult = { trace: reader.path, packets: 0, written: 0, warnings: reader.warnings, notes: [], linktypes: [] };
  /** The record whose output could not be written, if that is what stopped the replay. */
  let unwritable = 0;
  let finished = false;
  try {
    // Linear memory is reserved before anything reads it: the trace ring, the batch, the zero-copy areas.
    if (opts.trace) dp.enableTrace(BATCH_FRAMES * TRACE_RECORDS_PER_FRAME);
    const batch = dp.createBatch(BATCH_FRAMES, BATCH_BYTES);
    if (reader instanceof PcapReader && !opts.trace) feeder = new PcapFeeder(reader, dp, CHUNK_BYTES);
    const lineWriter =
      opts.verdicts && !opts.onBatch ? new VerdictWriter(dp, ...verdictNames(changes?.live.compiled ?? compiled), BATCH_FRAMES) : undefined;
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
          n,
          verdict: batch.verdict(i),
          reason: batch.reason(i),
          serviceId: batch.serviceId(i),
          backendId: batch.backendId(i),
          snat: (batch.flags(i) & DESC_F_SNAT) !== 0,
          ...(changes && { state: changes.stateIndex, flowChange: batch.flowChange(i) }),
        };
        opts.onDecision?.(decision);
        const input = traced.get(i);
        if (input && opts.trace) {
          opts.trace.onPacket({
            decision,
            tsSec: batch.tsSec(i),
            tsNsec: batch.tsNsec(i),
            linktype: batch.linktype(i),
            input,
            output: batch.frame(i).slice(),
            records: traceRecords.get(i) ?? [],
          });
        }
        if (writer && !recordWriter && batch.sent(i)) {
          const frame = batch.frame(i);
          unwritable = n;
          // A frame the datapath rebuilt (an ICMP error) is whole; a rewritten one keeps its wire length.
          writer.write(
            n,
            batch.linktype(i),
            batch.tsSec(i),
            batch.tsNsec(i),
            frame,
            frame.length === batch.caplen(i) ? batch.wireLen(i) : frame.length,
          );
          unwritable = 0;
        }
      }
    };

    const flush = () => {
      if (batch.count === 0) return;
      report?.beforeRun(batch);
      batch.run();
      const first = result.packets + 1;
      report?.afterRun(batch, first);
      const traceRecords = recordsByFrame(opts.trace ? dp.takeTrace() : []);
      const { done, total } = source.progress;
      try {
        if (opts.onBatch) {
          opts.onBatch({ batch, first, bytesRead: done, fileSize: total });
        } else {
          if (lineWriter) lineWriter.write(batch, first, (bytes) => verdicts!.writeBytes(bytes), 0, changes ? changes.stateIndex : -1);
          if (recordWriter) recordWriter.write(batch, writer!.pcap!.nanosecond, (bytes) => writer!.pcap!.writeRecords(bytes));
          if (opts.onDecision || opts.trace || (writer && !recordWriter)) eachPacket(first, traceRecords);
          if (writer) for (let i = 0; i < batch.count; i++) if (batch.sent(i)) result.written++;
        }
        result.packets += batch.count;
      } finally {
        batch.clear();
        traced.clear();
      }
      opts.onProgress?.(done, total, result.packets);
    };

    /** After a batch: true when a signal asked the replay to stop. */
    const stopAfterBatch = async () => {
      await nextTurn();
      return stopRequested();
    };
    /** A record has not arrived yet: waits for it; true when a signal asked the replay to stop meanwhile. */
    const stopWhileWaiting = async () => {
      await source.readable(opts.signal);
      return stopRequested();
    };

    /** Where the next batch must end: before the record at the next sync's time or the report's next sample, whichever is first. */
    const stopAt = (): bigint | undefined => {
      const sync = changes?.nextAt;
      const sample = report?.nextSampleAt;
      if (sync === undefined || sample === undefined) return sync ?? sample;
      // biome-ignore lint/complexity/useMathMinMax: bigints, which Math.min does not take
      return sync < sample ? sync : sample;
    };
    /**
     * The next record is at `time` (nanoseconds): what is due before it
     * happens in time order, each after deciding the packets before it under
     * the state they came in: the syncs, and the report's samples (a sample
     * at a sync's time first: it is of the state that ends there).
     */
    const reach = (time: bigint) => {
      for (;;) {
        const sync = changes?.nextAt;
        const sample = report?.nextSampleAt;
        const syncDue = sync !== undefined && sync <= time;
        if (sample !== undefined && sample <= time && (!syncDue || sample <= sync)) {
          flush();
          // The first sample only learns where the capture starts: at this record.
          report!.reach(syncDue && report!.started ? sync : time);
          continue;
        }
        if (!syncDue) return;
        flush();
        changes!.applyNext(result.packets);
        if (lineWriter) lineWriter.setValues(...verdictNames(changes!.live.compiled));
      }
    };

    const tooBig = (n: number, caplen: number) =>
      inputError([reader.path, `record ${n}`, 'caplen'], `${caplen} bytes is more than the datapath's ${BATCH_BYTES}-byte frame area`);
    let stopped = false;
    try {
      if (feeder) {
        for (;;) {
          let filled: ReturnType<PcapFeeder['fill']>;
          try {
            filled = feeder.fill(batch, stopAt());
          } catch (e) {
            if (!(e instanceof WouldBlock)) throw e;
            if ((stopped = await stopWhileWaiting())) break;
            continue;
          }
          if (filled === 'ended') break;
          // The next record is at or after the next sync or sample: the batch so far is decided before it.
          if (filled === 'time') {
            reach(feeder.nextTime());
            continue;
          }
          if (batch.count === 0) throw tooBig(feeder.recordsRead + 1, feeder.nextCaplen());
          flush();
          if ((stopped = await stopAfterBatch())) break;
        }
      } else {
        for (let ended = false; !ended && !stopped; ) {
          try {
            for (const rec of reader.records()) {
              if (Batch.footprint(rec.caplen) > BATCH_BYTES) throw tooBig(rec.n, rec.caplen);
              if (rec.linktype !== reader.linktype) linktypes.add(rec.linktype);
              const due = stopAt();
              if (due !== undefined) {
                const time = BigInt(rec.tsSec) * NANOS_PER_SECOND + BigInt(rec.tsNsec);
                if (time >= due) reach(time);
              }
              const traceThis = opts.trace?.select(rec.n, rec.data) ?? false;
              const full = !batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis, rec.direction);
              if (full) {
                flush();
                batch.add(rec.data, rec.origlen, rec.tsSec, rec.tsNsec, rec.linktype, traceThis, rec.direction);
              }
              if (traceThis) traced.set(batch.count - 1, rec.data.slice());
              if (full && (stopped = await stopAfterBatch())) break;
            }
            ended = true;
          } catch (e) {
            // records() ended at a record that has not arrived; a fresh call goes on from it.
            if (!(e instanceof WouldBlock)) throw e;
            stopped = await stopWhileWaiting();
          }
        }
      }
      // The last batch; at a signal, the records already read.
      flush();
      if (stopped) result.interrupted = { signal: String(opts.signal!.reason) };
    } catch (e) {
      if (!isInputError(e)) throw e;
      let error = e;
      // Process what was read before the bad record, unless writing it is what failed.
      if (!unwritable) {
        try {
          flush();
        } catch (e2) {
          if (!isInputError(e2)) throw e2;
          error = e2;
        }
      }
      result.stoppedAt = { record: unwritable || result.packets + 1, error: error.message };
    }
    // The state in force at the end saw the packets since its sync.
    changes?.observe(result.packets);
    finished = true;
  } finally {
    reader.close();
    if (finished) closeOutputs([writer, verdicts]);
    else for (const output of [writer, verdicts]) output?.abort();
  }
  result.linktypes = [...linktypes];
  return result;
}
