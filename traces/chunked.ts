/**
 * Chunked, constant-memory file I/O shared by the pcap and pcapng readers and
 * writers, with the limits both formats share.
 */
import * as fs from 'node:fs';
import { inputError } from '../control/errors.js';

/** libpcap's MAXIMUM_SNAPLEN, which it also substitutes for a bogus or unlimited (0) snaplen. */
export const DEFAULT_SNAPLEN = 262144;
/** The largest snaplen a writer accepts; the pcap reader calls anything above it bogus. */
export const MAX_SANE_SNAPLEN = 2 ** 31;
const WRITE_BUFFER_BYTES = 1 << 20;

/**
 * A file read front to back through one reusable buffer. Sequential reads
 * (position null) so that pipes such as `<(zcat trace.pcap.gz)` work too.
 */
export class ChunkedFile {
  buffer: Uint8Array;
  view: DataView;
  /** Next unconsumed byte in `buffer`; callers advance it. */
  pos = 0;
  /** One past the last valid byte in `buffer`. */
  private end = 0;
  /** File offset of buffer[0]. */
  private bufferOffset = 0;
  private eof = false;
  private closed = false;

  constructor(
    private readonly fd: number,
    chunkBytes: number,
    private readonly maxBufferBytes: number,
  ) {
    this.buffer = new Uint8Array(chunkBytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /** File offset of `pos`. */
  get offset(): number {
    return this.bufferOffset + this.pos;
  }

  /**
   * Makes `n` bytes available from `pos`, moving the unconsumed tail to the
   * buffer start and growing the buffer when n does not fit. Returns how
   * many bytes are available, fewer than n only at end of file. Invalidates
   * views into the old contents and changes `pos`, `buffer` and `view`.
   */
  fill(n: number): number {
    const available = this.end - this.pos;
    if (available >= n || this.eof) return available;
    if (this.closed) throw new Error('capture file read after close()');
    if (n > this.buffer.length) {
      if (n > this.maxBufferBytes) throw new Error(`read of ${n} bytes exceeds the buffer limit`);
      const grown = new Uint8Array(Math.min(Math.max(n, 2 * this.buffer.length), this.maxBufferBytes));
      grown.set(this.buffer.subarray(this.pos, this.end));
      this.buffer = grown;
      this.view = new DataView(grown.buffer);
    } else {
      this.buffer.copyWithin(0, this.pos, this.end);
    }
    this.bufferOffset += this.pos;
    this.pos = 0;
    this.end = available;
    while (this.end < n) {
      const got = fs.readSync(this.fd, this.buffer, this.end, this.buffer.length - this.end, null);
      if (got === 0) {
        this.eof = true;
        break;
      }
      this.end += got;
    }
    return this.end;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

/**
 * A file written front to back through one reusable buffer, so that millions
 * of small records cost few syscalls. Writers fill `buffer` (or `view`) at the
 * offsets reserve() hands out.
 */
export class ChunkedWriter {
  readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  readonly view = new DataView(this.buffer.buffer);
  private used = 0;
  private readonly fd: number;
  private closed = false;

  /** Creates (or truncates) `path`. */
  constructor(readonly path: string) {
    try {
      this.fd = fs.openSync(path, 'w');
    } catch (err) {
      throw fsInputError(path, 'cannot create', err);
    }
  }

  /** Returns the buffer offset of `n` (at most 1 MiB) fresh bytes, flushing first when they do not fit. */
  reserve(n: number): number {
    if (this.used + n > this.buffer.length) this.flush();
    const at = this.used;
    this.used += n;
    return at;
  }

  /** Appends `data`, writing it straight through when it does not fit: no point copying it. */
  append(data: Uint8Array): void {
    if (data.length <= this.buffer.length - this.used) {
      this.buffer.set(data, this.used);
      this.used += data.length;
      return;
    }
    this.flush();
    writeAll(this.fd, data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } finally {
      fs.closeSync(this.fd);
    }
  }

  private flush(): void {
    writeAll(this.fd, this.buffer.subarray(0, this.used));
    this.used = 0;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) {
    done += fs.writeSync(fd, bytes, done, bytes.length - done);
  }
}

export function isUint32(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
}

/** A file the user named cannot be opened or read: their mistake, so an InputError. */
export function fsInputError(path: string, action: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (!code) return err instanceof Error ? err : new Error(String(err));
  // Node's message is "CODE: description, syscall 'path'"; the path is already in front.
  const description = (err as Error).message.split(',')[0];
  return inputError([path], `${action}: ${description}`);
}
