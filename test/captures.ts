/** Helpers the capture reader and writer tests share. */
import * as path from 'node:path';
import { Mulberry32 } from '../control/common/random.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { openCapture, type CaptureRecord } from '../traces/pcap.js';

/** Real captures from public projects, vendored with their sources and licences in INDEX.txt. */
export const corpusDir = path.join(PROJECT_ROOT, 'test', 'corpus');
export const corpusIndexPath = path.join(corpusDir, 'INDEX.txt');

/** Every record of a capture, copied out of the reader's buffer, and the error that ended the read, if any. */
export function readAll(file: string) {
  const reader = openCapture(file);
  const records: CaptureRecord[] = [];
  let error: unknown;
  try {
    for (const record of reader.records()) records.push({ ...record, data: record.data.slice() });
  } catch (err) {
    error = err;
  } finally {
    reader.close();
  }
  return { reader, records, error };
}

/** Deterministic pseudo-random numbers, so a failure reproduces. */
export function seededRandom(seed: number): () => number {
  const rng = new Mulberry32(seed);
  return () => rng.float();
}

/** A record as a test wrote it. */
export interface Written {
  tsSec: number;
  tsNsec: number;
  data: Uint8Array;
  origlen: number;
}
