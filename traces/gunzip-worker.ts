/**
 * The thread behind a gzip-compressed capture (GunzipSource in
 * traces/source.ts): reads the compressed bytes from the descriptor, inflates
 * them with zlib's streaming gunzip, and puts the inflated bytes in the ring
 * the reading thread takes them from. It waits while the ring is full, so
 * memory stays constant whatever the size of the capture.
 */
import { readSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { createGunzip } from 'node:zlib';
import { POLL_MS } from './chunked.js';
import { COMPRESSED_READ, RING, type GunzipSetup } from './source.js';

const setup = workerData as GunzipSetup;
const words = new Int32Array(setup.control, 0, RING.INTS);
const compressedRead = new Float64Array(setup.control, COMPRESSED_READ, 1);
const ring = new Uint8Array(setup.ring);
/** Compressed bytes read, and inflated bytes handed on, at a time: larger pieces cost fewer thread hand-offs (measured: 64 KiB made a gzip replay of 61 MB about 20% slower). */
const CHUNK_BYTES = 256 << 10;
let writeAt = 0;
/** Compressed bytes handed to zlib so far. */
let fed = 0;
let finished = false;

const gunzip = createGunzip({ chunkSize: CHUNK_BYTES });
gunzip.on('data', (bytes: Buffer) => put(bytes));
gunzip.on('end', () => finish(RING.ENDED));
gunzip.on('error', (err: NodeJS.ErrnoException) => finish(RING.FAILED, gzipProblem(err)));
process.on('uncaughtException', (err) => finish(RING.FAILED, `gzip: the inflating thread failed: ${err.message}`));

const closed = () => Atomics.load(words, RING.CLOSED) === 1;

function wake(): void {
  Atomics.add(words, RING.SEQ, 1);
  Atomics.notify(words, RING.SEQ);
}

/** Copies inflated bytes into the ring, waiting for room; drops them once the reader has closed. */
function put(bytes: Uint8Array): void {
  for (let off = 0; off < bytes.length && !closed(); ) {
    const filled = Atomics.load(words, RING.FILLED);
    if (filled === ring.length) {
      Atomics.wait(words, RING.FILLED, filled, 100);
      continue;
    }
    const n = Math.min(ring.length - filled, bytes.length - off, ring.length - writeAt);
    ring.set(bytes.subarray(off, off + n), writeAt);
    writeAt = (writeAt + n) % ring.length;
    off += n;
    Atomics.add(words, RING.FILLED, n);
    wake();
  }
  if (closed()) stop();
}

/** Reads the next compressed chunk and hands it to zlib; the next read waits until zlib has taken it all. */
function feed(): void {
  if (closed()) {
    stop();
    return;
  }
  const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
  let got: number;
  try {
    got = readSync(setup.fd, chunk, 0, CHUNK_BYTES, null);
  } catch (err) {
    // A pipe with nothing in it yet: ask again soon, without holding the thread.
    if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
      setTimeout(feed, POLL_MS);
      return;
    }
    finish(RING.FAILED, `cannot read: ${(err as Error).message.split(',')[0]}`);
    return;
  }
  if (got === 0) {
    gunzip.end();
    return;
  }
  hand(chunk.subarray(0, got));
}

function hand(bytes: Uint8Array): void {
  fed += bytes.length;
  compressedRead[0] = fed;
  gunzip.write(bytes, (err) => {
    if (!err) setImmediate(feed);
  });
}

/** zlib's complaint, with where in the compressed bytes it is. */
function gzipProblem(err: NodeJS.ErrnoException): string {
  if (err.code === 'Z_BUF_ERROR') return `gzip: truncated: the compressed data ends at byte ${fed}, inside the gzip stream`;
  // zlib names no offset: bytesWritten is where the chunk it failed in begins.
  return `gzip: corrupt: ${err.message}, in compressed bytes ${gunzip.bytesWritten} to ${fed}`;
}

function finish(state: number, problem?: string): void {
  if (finished) return;
  if (problem) setup.port.postMessage(problem);
  Atomics.store(words, RING.STATE, state);
  wake();
  stop();
}

/** Reads no more: the reading thread may close the descriptor. */
function stop(): void {
  if (finished) return;
  finished = true;
  gunzip.destroy();
  Atomics.store(words, RING.STOPPED, 1);
  wake();
}

if (setup.head.length > 0) hand(setup.head);
else feed();
