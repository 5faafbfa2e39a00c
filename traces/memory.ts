/**
 * Captures and outputs held in memory, for the playground (web/playground/):
 * a capture the user dropped into the page is bytes, read through a
 * ByteSource as a file is; an output is kept as the bytes written, offered as
 * a download. Nothing here touches a file.
 */
import type { ByteSink, ByteSource } from './chunked.js';
import { GZIP_MAGIC_BYTES, gunzipBytes, isGzip } from './gzip.js';

/**
 * A capture's bytes in memory, read front to back; `failure`, when given, is
 * thrown by reads past them (a broken gzip stream: the bytes inflated before
 * the break are read first, as from a file).
 */
export class MemorySource implements ByteSource {
  readonly live = false;
  readonly rereadable = true;
  waits = true;
  private at = 0;

  /** `size` undefined: not told to readers (an inflated capture, whose size a file source does not know either). */
  constructor(
    readonly name: string,
    private readonly bytes: Uint8Array,
    readonly size: number | undefined = bytes.length,
    private readonly failure?: Error,
  ) {}

  get progress(): { done: number; total: number | undefined } {
    return { done: this.at, total: this.bytes.length };
  }

  read(into: Uint8Array, at: number, length: number): number {
    if (this.failure && this.at === this.bytes.length && length > 0) throw this.failure;
    const n = Math.min(length, this.bytes.length - this.at);
    into.set(this.bytes.subarray(this.at, this.at + n), at);
    this.at += n;
    return n;
  }

  async readable(): Promise<void> {}

  close(): void {}
}

/**
 * A capture the user gave as bytes, under the name messages call it by:
 * inflated first when it is gzip-compressed (whatever its name, as files
 * are; one named .gz that is not gzip is refused, as a file is). A broken
 * gzip stream fails the read after the bytes inflated before the break.
 */
export async function openBytes(name: string, bytes: Uint8Array): Promise<ByteSource> {
  if (!isGzip(bytes.subarray(0, GZIP_MAGIC_BYTES), name, name.endsWith('.gz'))) return new MemorySource(name, bytes);
  const inflated = await gunzipBytes(name, bytes);
  return new MemorySource(name, inflated.bytes, undefined, inflated.error);
}

const encoder = new TextEncoder();

/** An output kept in memory: what was written once it is committed, nothing if it was discarded. */
export class MemorySink implements ByteSink {
  private parts: Uint8Array<ArrayBuffer>[] = [];
  private committed = false;

  /** `path`: the output's name in messages, and its format by its extension where that decides one (.pcapng). */
  constructor(readonly path: string) {}

  write(bytes: Uint8Array | string): void {
    // Writers hand over views of buffers they reuse: copied.
    this.parts.push(typeof bytes === 'string' ? encoder.encode(bytes) : bytes.slice());
  }

  commit(): void {
    this.committed = true;
  }

  discard(): void {
    this.parts = [];
  }

  /** The output as written, in pieces (for a Blob); none before commit() or after discard(). */
  chunks(): readonly Uint8Array<ArrayBuffer>[] {
    return this.committed ? this.parts : [];
  }

  /** The output as one array. */
  bytes(): Uint8Array {
    const chunks = this.chunks();
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return all;
  }
}
