/**
 * `svcpath replay --workers N`: the replay spread over N worker threads, one
 * datapath instance with its own maps each, as a NIC's RSS spreads flows over
 * CPUs with per-CPU maps. Every worker reads the whole capture and batches it
 * exactly as a single replay does; the datapath steers (datapath/steer.ts),
 * so each worker decides only the packets of its own flows and clients. The
 * workers' datapaths write their packets' verdict lines and output records,
 * and this thread merges them back into input order. The output is the
 * single worker's byte for byte: every decision a flow needs is made by the
 * worker that holds the flow and its client, and masquerade ports are chosen
 * within the client's class whatever the number of workers (datapath/snat.ts).
 *
 * A signal stops every worker after the same batch, so that the merged
 * outputs and the added-up counters describe the same packets.
 */
import { Worker } from 'node:worker_threads';
import type { Compiled } from '../compile/compiler.js';
import { Datapath } from './datapath.js';
import { InputError, inputError } from '../common/errors.js';
import { REPLAY_WORKER } from '../common/paths.js';
import {
  BATCH_BYTES,
  BATCH_FRAMES,
  closeOutputs,
  LineSink,
  openFrameSink,
  verdictValues,
  type FrameSink,
  type ReplayResult,
} from './replay.js';
import { sumCounters, type Counters } from './summary.js';
import { maxVerdictLine } from './zero-copy-replay.js';
import { openCapture } from '../../traces/pcap.js';
import { openSource } from '../../traces/source.js';

/** What a worker is given. */
export interface ShardSetup {
  trace: string;
  compiled: Compiled;
  ctEntries?: number;
  index: number;
  count: number;
  verdicts: boolean;
  out: boolean;
  /** Output frames as whole classic pcap records (with this resolution), not as frames for a pcapng writer. */
  records: boolean;
  nanosecond: boolean;
  /** Int32 words at the indexes of MERGE: batches merged so far, and the batch after which every worker stops. */
  taken: SharedArrayBuffer;
}

/** Batches a worker may run ahead of the merge: bounds memory whatever the trace size. */
export const WINDOW = 4;

/** The words of ShardSetup.taken. */
export const MERGE = {
  /** Batches the merging thread has taken; workers stay at most WINDOW batches ahead. */
  TAKEN: 0,
  /** After this many batches every worker stops (a signal came); NEVER until then. */
  STOP_AFTER: 1,
  WORDS: 2,
  NEVER: 0x7fffffff,
} as const;

/** One worker's share of one batch. */
export interface ShardBatch {
  type: 'batch';
  count: number;
  /** 1 for each frame of the batch this worker decided. */
  own: Uint8Array;
  /** Verdict lines of its frames, in order, and the length of each (0 for other workers' frames). */
  lines: Uint8Array;
  lineLengths: Uint32Array;
  /**
   * Per output frame, its batch index and bytes in frameBytes; unless the
   * frames are whole pcap records (ShardSetup.records), also its link type,
   * seconds, nanoseconds and original length, for this thread's writer.
   */
  frames: Float64Array;
  frameBytes: Uint8Array;
  bytesRead: number;
  fileSize: number | undefined;
}

export interface ShardDone {
  type: 'done';
  result: ReplayResult;
  counters: Counters;
}

export interface ShardFailed {
  type: 'failed';
  message: string;
  /** An InputError: the user's mistake, reported as such. */
  input: boolean;
}

export type ShardMessage = ShardBatch | ShardDone | ShardFailed;

export interface ShardedReplayOptions {
  workers: number;
  ctEntries?: number;
  out?: string;
  verdicts?: string;
  onProgress?: (done: number, total: number | undefined, packets: number) => void;
  /** Aborted: every worker stops after the same batch, soon (ReplayOptions.signal). */
  signal?: AbortSignal;
}

/** One worker thread and what it has sent that is not merged yet. */
class ShardWorker {
  readonly batches: ShardBatch[] = [];
  done?: ShardDone;
  failure?: Error;
  private wake: () => void = () => {};

  constructor(readonly worker: Worker) {
    worker.on('message', (m: ShardMessage) => {
      if (m.type === 'batch') this.batches.push(m);
      else if (m.type === 'done') this.done = m;
      else this.failure = m.input ? new InputError(m.message) : new Error(m.message);
      this.wake();
    });
    worker.on('error', (e) => {
      this.failure = e;
      this.wake();
    });
    worker.on('exit', (code) => {
      if (!this.done && !this.failure) this.failure = new Error(`replay worker exited with code ${code}`);
      this.wake();
    });
  }

  /** Resolves when this worker has a batch to merge, has finished, or has failed. */
  ready(): Promise<void> {
    if (this.batches.length > 0 || this.done || this.failure) return Promise.resolve();
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }
}

/**
 * The link types and resolution of the capture, for the output file (read
 * from its header). Every worker reads the whole capture by its name, which a
 * pipe or standard input cannot give more than once.
 */
function captureFormat(trace: string, workers: number): { linktypes: readonly number[]; nanosecond: boolean; pcap: boolean } {
  const source = openSource(trace);
  if (!source.rereadable) {
    source.close();
    throw inputError(
      [`--workers ${workers}`],
      `every worker reads the whole capture, and ${source.name} can be read only once: replay it with one worker, or save it to a file first`,
    );
  }
  const reader = openCapture(source);
  try {
    return { linktypes: reader.linktypes, nanosecond: reader.nanosecond, pcap: reader.format === 'pcap' };
  } finally {
    reader.close();
  }
}

export async function replaySharded(
  trace: string,
  compiled: Compiled,
  opts: ShardedReplayOptions,
): Promise<{ result: ReplayResult; counters: Counters }> {
  const format = captureFormat(trace, opts.workers); // a capture that cannot be opened fails here, once
  const notes: string[] = [];
  const taken = new SharedArrayBuffer(4 * MERGE.WORDS);
  const takenCount = new Int32Array(taken);
  takenCount[MERGE.STOP_AFTER] = MERGE.NEVER;
  // No worker has run more than WINDOW + 1 batches past the merge (WINDOW sent, one run and waiting to be sent): all can stop there.
  const stop = () => Atomics.store(takenCount, MERGE.STOP_AFTER, Atomics.load(takenCount, MERGE.TAKEN) + WINDOW + 1);
  let writer: FrameSink | undefined;
  let verdicts: LineSink | undefined;
  let shards: ShardWorker[] = [];
  let packets = 0;
  let written = 0;
  const decided = new Array<number>(opts.workers).fill(0);
  let finished = false;
  try {
    writer = opts.out ? openFrameSink(opts.out, format.linktypes, format.nanosecond, notes) : undefined;
    verdicts = opts.verdicts ? new LineSink(opts.verdicts) : undefined;
    // Whole records from the workers' datapaths when both files are classic pcap (as the single replay does).
    const records = format.pcap && !!writer?.pcap;
    shards = Array.from({ length: opts.workers }, (_, index) => {
      const setup: ShardSetup = {
        trace,
        compiled,
        ctEntries: opts.ctEntries,
        index,
        count: opts.workers,
        verdicts: !!opts.verdicts,
        out: !!opts.out,
        taken,
        records,
        nanosecond: format.nanosecond,
      };
      return new ShardWorker(new Worker(REPLAY_WORKER, { workerData: setup }));
    });
    if (opts.signal?.aborted) stop();
    else opts.signal?.addEventListener('abort', stop, { once: true });
    const area = await MergeArea.create(compiled);
    for (;;) {
      await Promise.all(shards.map((s) => s.ready()));
      const failed = shards.find((s) => s.failure);
      if (failed) throw failed.failure;
      if (shards.every((s) => s.batches.length === 0 && s.done)) break;
      const parts = shards.map((s) => s.batches.shift());
      if (parts.some((p) => !p)) throw new Error('replay workers disagree on the number of batches');
      const merged = mergeBatch(area, parts as ShardBatch[], packets, decided, verdicts, writer, records);
      packets += merged.count;
      written += merged.written;
      Atomics.add(takenCount, MERGE.TAKEN, 1);
      Atomics.notify(takenCount, MERGE.TAKEN);
      opts.onProgress?.(parts[0]!.bytesRead, parts[0]!.fileSize, packets);
    }
    finished = true;
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    await Promise.all(shards.map((s) => s.worker.terminate()));
    if (finished) closeOutputs([writer, verdicts]);
    else for (const output of [writer, verdicts]) output?.abort();
  }
  const first = shards[0].done!.result;
  notes.push(`${opts.workers} workers decided ${decided.join(', ')} packets`);
  const result: ReplayResult = { ...first, packets, written, notes: [...notes, ...first.notes] };
  // The workers' own reason is theirs; the run's is the signal that stopped it.
  if (first.interrupted) result.interrupted = { signal: String(opts.signal?.reason) };
  return { result, counters: sumCounters(shards.map((s) => s.done!.counters)) };
}

/**
 * Where this thread merges a batch: the workers' parts laid one after the
 * other in a datapath instance's linear memory (no maps), the list of runs
 * to take from them, and the merged output, which goes to its file as it
 * is. The datapath copies the runs (copy_runs), so a run of consecutive
 * packets of one worker costs no JavaScript copy. Every part holds a subset
 * of the batch's packets, so the batch's bounds bound the parts together.
 */
class MergeArea {
  private readonly input: number;
  private readonly runs: number;
  private readonly output: number;

  private constructor(
    private readonly dp: Datapath,
    private readonly capacity: number,
  ) {
    this.input = dp.reserve(capacity);
    this.runs = dp.reserve(8 * BATCH_FRAMES);
    this.output = dp.reserve(capacity);
  }

  static async create(compiled: Compiled): Promise<MergeArea> {
    const values = verdictValues(compiled);
    return new MergeArea(
      await Datapath.load(),
      BATCH_FRAMES * maxVerdictLine(values.services, values.backends) + BATCH_BYTES + 16 * BATCH_FRAMES,
    );
  }

  /** Lays the parts' byte arrays in linear memory; returns where each starts. */
  load(parts: Uint8Array[]): number[] {
    const mem = new Uint8Array(this.dp.memory);
    let at = this.input;
    return parts.map((p) => {
      if (at + p.length > this.input + this.capacity) throw new Error('replay workers sent more than a batch holds');
      mem.set(p, at);
      at += p.length;
      return at - p.length;
    });
  }

  /** Copies the runs (address, length pairs from load's addresses) into the output; the merged bytes, valid until the next merge. */
  copy(runs: number[]): Uint8Array {
    new Uint32Array(this.dp.memory, this.runs, runs.length).set(runs);
    const bytes = this.dp.exports.copy_runs(this.runs, runs.length / 2, this.output);
    return new Uint8Array(this.dp.memory, this.output, bytes);
  }
}

/** Writes one batch's lines and frames in input order, each from the worker that decided it. */
function mergeBatch(
  area: MergeArea,
  parts: ShardBatch[],
  before: number,
  decided: number[],
  verdicts: LineSink | undefined,
  writer: FrameSink | undefined,
  asRecords: boolean,
): { count: number; written: number } {
  const owners = ownersOf(parts, before);
  const count = owners.length;
  const fields = asRecords ? 2 : 6;
  const lineAt = verdicts ? area.load(parts.map((p) => p.lines)) : [];
  const lineRuns: number[] = [];
  const frameNo = new Array<number>(parts.length).fill(0);
  const frameAt = new Array<number>(parts.length).fill(0);
  const recordRuns: number[] = [];
  let written = 0;
  for (let i = 0; i < count; ) {
    const w = owners[i];
    const part = parts[w];
    let end = i + 1;
    while (end < count && owners[end] === w) end++;
    decided[w] += end - i;
    if (verdicts) {
      let length = 0;
      for (let k = i; k < end; k++) length += part.lineLengths[k];
      lineRuns.push(lineAt[w], length);
      lineAt[w] += length;
    }
    // This worker's output frames of packets i..end-1, in order.
    const firstFrame = frameAt[w];
    for (let f = frameNo[w] * fields; writer && f < part.frames.length && part.frames[f] < end; f += fields) {
      const length = part.frames[f + 1];
      if (!asRecords) {
        const [index, , linktype, tsSec, tsNsec, origlen] = part.frames.subarray(f, f + 6);
        writer.write(before + index + 1, linktype, tsSec, tsNsec, part.frameBytes.subarray(frameAt[w], frameAt[w] + length), origlen);
      }
      frameAt[w] += length;
      frameNo[w]++;
      written++;
    }
    if (asRecords && frameAt[w] > firstFrame) recordRuns.push(w, firstFrame, frameAt[w] - firstFrame);
    i = end;
  }
  if (verdicts) verdicts.writeBytes(area.copy(lineRuns));
  if (asRecords && writer?.pcap) {
    const recordAt = area.load(parts.map((p) => p.frameBytes));
    const runs: number[] = [];
    for (let r = 0; r < recordRuns.length; r += 3) runs.push(recordAt[recordRuns[r]] + recordRuns[r + 1], recordRuns[r + 2]);
    writer.pcap.writeRecords(area.copy(runs));
  }
  return { count, written };
}

/** The worker that decided each packet of the batch; exactly one must have. */
function ownersOf(parts: ShardBatch[], before: number): Uint8Array {
  const count = parts[0].count;
  if (parts.some((p) => p.count !== count)) throw new Error('replay workers disagree on a batch');
  const owners = new Uint8Array(count);
  const claims = new Uint8Array(count);
  parts.forEach((p, w) => {
    for (let i = 0; i < count; i++) {
      if (p.own[i] !== 1) continue;
      owners[i] = w;
      claims[i]++;
    }
  });
  const wrong = claims.findIndex((c) => c !== 1);
  if (wrong >= 0) throw new Error(`packet ${before + wrong + 1} was decided by ${claims[wrong]} workers`);
  return owners;
}
