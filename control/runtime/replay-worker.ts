/**
 * One worker of a sharded replay (control/runtime/sharded-replay.ts): its own
 * datapath instance replays the whole capture, deciding only its own flows,
 * and sends each batch's verdict lines and output frames to be merged.
 */
import { concatBytes } from '../../traces/gzip.js';
import { parentPort, workerData } from 'node:worker_threads';
import { isInputError } from '../common/errors.js';
import type { Datapath } from './datapath.js';
import { DESC_F_OTHER_SHARD } from '../compile/layout.js';
import { loadProgram } from './loader.js';
import { BATCH_BYTES, BATCH_FRAMES, replay, verdictValues, type ProcessedBatch } from './replay.js';
import { PcapRecordWriter, VerdictWriter } from './zero-copy-replay.js';
import { MERGE, WINDOW, type ShardBatch, type ShardMessage, type ShardSetup } from './sharded-replay.js';
import { readCounters } from './summary.js';

const setup = workerData as ShardSetup;
const port = parentPort!;
const post = (m: ShardMessage, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

/** Waits until the merge is at most WINDOW batches behind this worker. */
function waitForMerge(sent: number, taken: Int32Array): void {
  for (;;) {
    const merged = Atomics.load(taken, MERGE.TAKEN);
    if (sent - merged < WINDOW) return;
    Atomics.wait(taken, MERGE.TAKEN, merged);
  }
}

/**
 * This worker's frames of one batch: their verdict lines, written by the
 * datapath with each line's length, and their output frames — as whole pcap
 * records when the output is classic pcap, else with what a pcapng writer needs.
 */
function share(b: ProcessedBatch, out: { lines?: VerdictWriter; lengths: number; records?: PcapRecordWriter }, dp: Datapath): ShardBatch {
  const { batch } = b;
  const own = new Uint8Array(batch.count);
  for (let i = 0; i < batch.count; i++) own[i] = batch.flags(i) & DESC_F_OTHER_SHARD ? 0 : 1;
  const lines: Uint8Array[] = [];
  out.lines?.write(batch, b.first, (bytes) => lines.push(bytes.slice()), out.lengths);
  const lineLengths = out.lines ? new Uint32Array(dp.memory, out.lengths, batch.count).slice() : new Uint32Array(0);
  const frames: number[] = [];
  const frameData: Uint8Array[] = [];
  if (out.records) {
    out.records.write(batch, setup.nanosecond, (bytes) => frameData.push(bytes.slice()));
  }
  for (let i = 0; setup.out && i < batch.count; i++) {
    if (!batch.sent(i)) continue;
    const frame = batch.frame(i);
    if (out.records) {
      frames.push(i, 16 + frame.length);
      continue;
    }
    // As the single replay: a rebuilt frame (an ICMP error) is whole; a rewritten one keeps its wire length.
    const origlen = frame.length === batch.caplen(i) ? batch.wireLen(i) : frame.length;
    frames.push(i, frame.length, batch.linktype(i), batch.tsSec(i), batch.tsNsec(i), origlen);
    frameData.push(frame.slice());
  }
  return {
    type: 'batch',
    count: batch.count,
    own,
    lines: concatBytes(lines),
    lineLengths,
    frames: Float64Array.from(frames),
    frameBytes: concatBytes(frameData),
    bytesRead: b.bytesRead,
    fileSize: b.fileSize,
  };
}

async function run(): Promise<void> {
  const { compiled } = setup;
  const dp = await loadProgram(compiled, { ctEntries: setup.ctEntries, shard: { index: setup.index, count: setup.count } });
  const values = verdictValues(compiled);
  const lines = setup.verdicts ? new VerdictWriter(dp, values.services, values.backends, BATCH_FRAMES) : undefined;
  const out = {
    lines,
    lengths: lines ? dp.reserve(4 * BATCH_FRAMES) : 0,
    records: setup.out && setup.records ? new PcapRecordWriter(dp, BATCH_BYTES + 16 * BATCH_FRAMES) : undefined,
  };
  const taken = new Int32Array(setup.taken);
  // Every worker stops after the batch the merging thread named, and only there (control/runtime/sharded-replay.ts).
  const stop = new AbortController();
  let sent = 0;
  const result = await replay(setup.trace, compiled, dp, {
    onBatch: (b) => {
      waitForMerge(sent, taken);
      const part = share(b, out, dp);
      post(part, [
        part.own.buffer,
        part.lines.buffer,
        part.lineLengths.buffer,
        part.frames.buffer,
        part.frameBytes.buffer,
      ] as ArrayBuffer[]);
      sent++;
      if (sent >= Atomics.load(taken, MERGE.STOP_AFTER)) stop.abort('stop');
    },
    signal: stop.signal,
  });
  post({ type: 'done', result, counters: readCounters(dp, compiled) });
}

run().catch((e: Error) => post({ type: 'failed', message: isInputError(e) ? e.message : (e.stack ?? e.message), input: isInputError(e) }));
