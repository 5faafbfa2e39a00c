/**
 * gzip-compressed captures, told apart by their magic 1f 8b whatever the
 * name, as tshark does: the check both sources share (a file, traces/source.ts;
 * bytes in memory, traces/memory.ts), and inflating bytes already in memory
 * through the platform's DecompressionStream (a browser's, or Node's), for
 * the playground, whose captures come as bytes.
 */
import { type CaptureError, captureError, hexOf } from './errors.js';

const GZIP_MAGIC = [0x1f, 0x8b];
/** Bytes to look at to tell gzip from a capture. */
export const GZIP_MAGIC_BYTES = GZIP_MAGIC.length;

/**
 * Whether a capture whose first bytes are `head` is gzip-compressed. One
 * named .gz that is not is the user's mistake: said, rather than read as
 * what it happens to be.
 */
export function isGzip(head: Uint8Array, name: string, namedGz: boolean): boolean {
  const gzip = head.length >= GZIP_MAGIC.length && GZIP_MAGIC.every((b, i) => head[i] === b);
  if (!gzip && namedGz) {
    const start = hexOf(head.subarray(0, 4)) || 'nothing';
    throw captureError([name], `named .gz, but it is not gzip-compressed: it starts with ${start}, not the gzip magic 1f8b`);
  }
  return gzip;
}

/** Compressed bytes handed to the decompressor at a time: where a corrupt stream fails is known to this much. */
const FEED_BYTES = 256 << 10;

/**
 * A gzip capture held in memory, inflated: the bytes, and when the stream is
 * broken, the CaptureError that names the capture, worded as the CLI's
 * gunzip thread words it (traces/gunzip-worker.ts): truncated, with where
 * the compressed data ends, or corrupt, with the decompressor's reason (and
 * the compressed bytes it failed in, when it said so before the end). The
 * bytes are then those inflated before the failure: read first, as the CLI
 * reads what the thread inflated before it failed.
 */
export async function gunzipBytes(name: string, compressed: Uint8Array): Promise<{ bytes: Uint8Array; error?: CaptureError }> {
  const stream = new DecompressionStream('gzip');
  const writer = stream.writable.getWriter();
  const parts: Uint8Array[] = [];
  const reading = (async () => {
    const reader = stream.readable.getReader();
    for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
  })();
  // A failure shows on every promise of the stream: the one of the step that failed says where.
  reading.catch(() => {});
  let fed = 0;
  let error: CaptureError | undefined;
  try {
    for (; fed < compressed.length; fed += FEED_BYTES) await writer.write(compressed.slice(fed, fed + FEED_BYTES));
    await writer.close();
    await reading;
  } catch (err) {
    if (fed < compressed.length) {
      const to = Math.min(fed + FEED_BYTES, compressed.length);
      error = captureError([name], `gzip: corrupt: ${reason(err)}, in compressed bytes ${fed} to ${to}`);
    } else if (/truncated|unexpected end/i.test(reason(err))) {
      // The decompressor may report a failure only at the end: its words say which (Chromium's, Node's).
      error = captureError([name], `gzip: truncated: the compressed data ends at byte ${compressed.length}, inside the gzip stream`);
    } else {
      error = captureError([name], `gzip: corrupt: ${reason(err)}`);
    }
  }
  return { bytes: concatBytes(parts), error };
}

function reason(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
}

/** The parts one after another in one array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}
