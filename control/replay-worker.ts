/**
 * One worker of a sharded replay (control/sharded-replay.ts): its own
 * datapath instance replays the whole capture, deciding only its own flows,
 * and sends each batch's verdict lines and output frames to be merged.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from './errors.js';
import { DESC_F_OTHER_SHARD, DESC_F_SNAT, hostPort } from './layout.js';
import { loadProgram } from './program.js';
import { replay, verdictLine, type ProcessedBatch } from './replay.js';
import { FRAME_FIELDS, WINDOW, type ShardBatch, type ShardMessage, type ShardSetup } from './sharded-replay.js';
import { readCounters } from './summary.js';

const XDP_TX = 3;
const XDP_REDIRECT = 4;

const setup = workerData as ShardSetup;
const port = parentPort!;
const post = (m: ShardMessage, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);

/** Waits until the merge is at most WINDOW batches behind this worker. */
function waitForMerge(sent: number, taken: Int32Array): void {
  for (;;) {
    const merged = Atomics.load(taken, 0);
    if (sent - merged < WINDOW) return;
    Atomics.wait(taken, 0, merged);
  }
}

/** This worker's frames of one batch: their verdict lines and output frames. */
function share(b: ProcessedBatch, serviceJson: string[], backendJson: string[]): ShardBatch {
  const { batch } = b;
  const own = new Uint8Array(batch.count);
  const lines: string[] = [];
  const lineLengths: number[] = [];
  const frames: number[] = [];
  const frameData: Uint8Array[] = [];
  let frameBytes = 0;
  for (let i = 0; i < batch.count; i++) {
    const flags = batch.flags(i);
    if (flags & DESC_F_OTHER_SHARD) continue;
    own[i] = 1;
    const v = batch.verdict(i);
    if (setup.verdicts) {
      const line = verdictLine(b.before + i + 1, v, batch.reason(i), serviceJson[batch.serviceId(i)] ?? 'null',
        backendJson[batch.backendId(i)] ?? 'null', (flags & DESC_F_SNAT) !== 0);
      lines.push(line);
      lineLengths.push(line.length);
    }
    if (setup.out && (v === XDP_TX || v === XDP_REDIRECT)) {
      const frame = batch.frame(i);
      // As the single replay: a rebuilt frame (an ICMP error) is whole; a rewritten one keeps its wire length.
      const origlen = frame.length === b.caplen[i] ? b.origlen[i] : frame.length;
      frames.push(i, b.recordNo[i], b.linktype[i], b.tsSec[i], b.tsNsec[i], frame.length, origlen);
      frameData.push(frame.slice());
      frameBytes += frame.length;
    }
  }
  const bytes = new Uint8Array(frameBytes);
  let at = 0;
  for (const f of frameData) {
    bytes.set(f, at);
    at += f.length;
  }
  return {
    type: 'batch', count: batch.count, own, lines: lines.join(''), lineLengths: Uint32Array.from(lineLengths),
    frames: Float64Array.from(frames), frameBytes: bytes, bytesRead: b.bytesRead, fileSize: b.fileSize,
  };
}

async function run(): Promise<void> {
  const { compiled } = setup;
  const dp = await loadProgram(compiled, { ctEntries: setup.ctEntries, shard: { index: setup.index, count: setup.count } });
  const serviceJson = ['null', ...compiled.services.map((s) => JSON.stringify(s.name))];
  const backendJson = ['null', ...compiled.backends.map((b) => JSON.stringify(hostPort(b.ip, b.port)))];
  const taken = new Int32Array(setup.taken);
  let sent = 0;
  const result = replay(setup.trace, compiled, dp, {
    onBatch: (b) => {
      waitForMerge(sent, taken);
      const part = share(b, serviceJson, backendJson);
      post(part, [part.own.buffer, part.lineLengths.buffer, part.frames.buffer, part.frameBytes.buffer] as ArrayBuffer[]);
      sent++;
    },
  });
  post({ type: 'done', result, counters: readCounters(dp, compiled) });
}

run().catch((e: Error) => post({ type: 'failed', message: e instanceof InputError ? e.message : (e.stack ?? e.message), input: e instanceof InputError }));
