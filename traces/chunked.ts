/**
 * Chunked, constant-memory I/O shared by the pcap and pcapng readers and
 * writers, with the limits both formats share: reads through one reusable
 * buffer from a ByteSource (traces/source.ts), and outputs that never leave a
 * half-written file under their final name.
 */
import * as fs from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { captureError } from './errors.js';

/** libpcap's MAXIMUM_SNAPLEN, which it also substitutes for a bogus or unlimited (0) snaplen. */
export const DEFAULT_SNAPLEN = 262144;
/** The largest snaplen a writer accepts; the pcap reader calls anything above it bogus. */
export const MAX_SANE_SNAPLEN = 2 ** 31;
const WRITE_BUFFER_BYTES = 1 << 20;

/**
 * Where capture bytes come from: a file, a pipe, standard input, gzip on top
 * of any of them (traces/source.ts). Reads are synchronous; one that would
 * have to wait for a writer that has not written yet either waits or, when
 * `waits` is false, throws WouldBlock so that the caller can wait
 * asynchronously (and still hear a Ctrl-C) and call again.
 */
export interface ByteSource {
  /** The capture's name in messages: its path, or "standard input". */
  readonly name: string;
  /** Bytes of capture data, when known before reading them (an uncompressed regular file). */
  readonly size: number | undefined;
  /** Whether the bytes come from another process as it writes them (a pipe): a read may wait for ever. */
  readonly live: boolean;
  /** Whether opening `name` again gives the same bytes (a regular file, compressed or not). */
  readonly rereadable: boolean;
  /** How far into the underlying file (compressed bytes for gzip) reading is, and its size when known. */
  readonly progress: { done: number; total: number | undefined };
  /** False: a read that would wait throws WouldBlock instead. */
  waits: boolean;
  /** Reads up to `length` bytes into into[at..]; 0 only at the end of the data. */
  read(into: Uint8Array, at: number, length: number): number;
  /** Resolves once a read would not wait (data, the end, or an error to report), or when `signal` aborts. */
  readable(signal?: AbortSignal): Promise<void>;
  close(): void;
}

/** A read found no data yet and was asked not to wait for it. */
export class WouldBlock extends Error {
  override readonly name = 'WouldBlock';
}

/** Made at the first sleep: a page that is not cross-origin isolated has no SharedArrayBuffer, and never sleeps. */
let sleeper: Int32Array | undefined;

/**
 * Blocks the thread for `ms` milliseconds: the only synchronous sleep Node
 * has (Atomics.wait on a word nobody notifies), for retrying EAGAIN on a
 * non-blocking descriptor inside synchronous code.
 */
export function sleepSync(ms: number): void {
  sleeper ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleeper, 0, 0, ms);
}

/** The wait between polls of a non-blocking descriptor that had nothing to read or no room to write. */
export const POLL_MS = 1;

/**
 * A capture read front to back through one reusable buffer: sequential
 * reads, so that pipes and decompressed streams work as files do.
 */
export class ChunkedFile {
  buffer: Uint8Array;
  view: DataView;
  /** Next unconsumed byte in `buffer`; callers advance it. */
  pos = 0;
  /** One past the last valid byte in `buffer`. */
  private end = 0;
  /** Capture offset of buffer[0]. */
  private bufferOffset = 0;
  private eof = false;
  private closed = false;

  constructor(
    readonly source: ByteSource,
    chunkBytes: number,
    private readonly maxBufferBytes: number,
  ) {
    this.buffer = new Uint8Array(chunkBytes);
    this.view = new DataView(this.buffer.buffer);
  }

  /** Capture offset of `pos`. */
  get offset(): number {
    return this.bufferOffset + this.pos;
  }

  /**
   * Makes `n` bytes available from `pos`, moving the unconsumed tail to the
   * buffer start and growing the buffer when n does not fit. Returns how
   * many bytes are available, fewer than n only at end of file. Invalidates
   * views into the old contents and changes `pos`, `buffer` and `view`.
   * A WouldBlock from the source leaves everything read so far in place.
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
      const got = this.source.read(this.buffer, this.end, this.buffer.length - this.end);
      if (got === 0) {
        this.eof = true;
        break;
      }
      this.end += got;
    }
    return this.end;
  }

  /**
   * Consumes up to `length` bytes into into[at..]: those already buffered
   * first, then straight from the source. 0 only at the end. For a reader
   * that hands the rest of the stream over (the zero-copy replay).
   */
  read(into: Uint8Array, at: number, length: number): number {
    const buffered = Math.min(length, this.end - this.pos);
    if (buffered > 0) {
      into.set(this.buffer.subarray(this.pos, this.pos + buffered), at);
      this.pos += buffered;
      return buffered;
    }
    if (this.eof) return 0;
    // Nothing buffered: the buffer is empty, so the stream's offset moves on with the source.
    this.bufferOffset += this.pos;
    this.pos = this.end = 0;
    const got = this.source.read(into, at, length);
    if (got === 0) this.eof = true;
    this.bufferOffset += got;
    return got;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.source.close();
  }
}

/** Temporary files to remove when svcpath is stopped before it could finish them (a second Ctrl-C). */
const temporaryFiles = new Set<string>();

export function trackTemporaryFile(path: string): void {
  temporaryFiles.add(path);
}

export function removeTemporaryFile(path: string): void {
  temporaryFiles.delete(path);
  fs.rmSync(path, { force: true });
}

/** Removes every temporary file not yet renamed or removed; for an exit that cannot wait. */
export function removeTemporaryFiles(): void {
  for (const path of temporaryFiles) removeTemporaryFile(path);
}

/**
 * `path`, absolute, with every symbolic link resolved as open() for writing
 * follows them: also a link to a file that is not there yet.
 */
export function resolvedPath(path: string, links = 0): string {
  const absolute = resolve(path);
  try {
    return fs.realpathSync(absolute);
  } catch {
    // Not there (yet), or a link to nothing: resolved by hand below.
  }
  try {
    if (links < MAX_SYMLINKS && fs.lstatSync(absolute).isSymbolicLink()) {
      return resolvedPath(resolve(dirname(absolute), fs.readlinkSync(absolute)), links + 1);
    }
  } catch {
    // Nothing there.
  }
  const parent = dirname(absolute);
  return parent === absolute ? absolute : join(resolvedPath(parent, links), basename(absolute));
}

/** Linux's limit on symbolic links followed in one path (MAXSYMLINKS). */
const MAX_SYMLINKS = 40;

/** Standard output, as outputs named `-` and the summary of such a run use it. */
export const STDOUT = '-';

/**
 * Where an output's bytes go: a file (OutputFile) or memory (traces/memory.ts
 * MemorySink, the playground's). commit() completes it, discard() drops it.
 */
export interface ByteSink {
  /** The output's name in messages. */
  readonly path: string;
  write(bytes: Uint8Array | string): void;
  commit(): void;
  discard(): void;
}

/**
 * An output: standard output (`-`); a device or FIFO, written as it is; or a
 * regular file, written to a temporary file beside it (`.<name>.svcpath-<pid>.tmp`)
 * and renamed over it by commit(), so that an interrupted or failed run
 * leaves no half-written file under the final name and the old file stays
 * whole until the new one is complete.
 */
export class OutputFile implements ByteSink {
  readonly fd: number;
  /** The temporary file, for a regular file target. */
  private readonly temporary?: string;
  /** The file the temporary file replaces: the target, through its symbolic links. */
  private readonly final?: string;
  private done = false;

  constructor(readonly path: string) {
    if (path === STDOUT) {
      this.fd = 1;
      return;
    }
    let existing: fs.Stats | undefined;
    try {
      existing = fs.statSync(path);
    } catch {
      // Nothing there yet: created below.
    }
    if (existing && !existing.isFile()) {
      if (existing.isDirectory()) throw captureError([path], 'is a directory');
      this.fd = openForWriting(path, path);
      return;
    }
    // Written through a symbolic link to the file it names, as an open() for writing would.
    this.final = resolvedPath(path);
    this.temporary = join(dirname(this.final), `.${basename(this.final)}.svcpath-${process.pid}.tmp`);
    this.fd = openForWriting(this.temporary, path);
    trackTemporaryFile(this.temporary);
    // A replaced file keeps its permissions, as one overwritten in place would; a new one gets the umask's.
    if (existing) fs.fchmodSync(this.fd, existing.mode & 0o7777);
  }

  write(bytes: Uint8Array | string): void {
    writeAll(this.fd, typeof bytes === 'string' ? Buffer.from(bytes) : bytes, this.path);
  }

  /** Closes the output and, for a regular file, puts it in place of the target. */
  commit(): void {
    if (this.done) return;
    this.done = true;
    if (this.fd === 1) return;
    fs.closeSync(this.fd);
    if (!this.temporary) return;
    try {
      fs.renameSync(this.temporary, this.final!);
    } catch (err) {
      removeTemporaryFile(this.temporary);
      throw fsCaptureError(this.path, 'cannot write', err);
    }
    temporaryFiles.delete(this.temporary);
  }

  /** Closes the output and removes its temporary file: the target is left as it was. */
  discard(): void {
    if (this.done) return;
    this.done = true;
    if (this.fd === 1) return;
    fs.closeSync(this.fd);
    if (this.temporary) removeTemporaryFile(this.temporary);
  }
}

/** Creates or truncates `path` with the mode a new file gets (0666 less the umask); errors name `named`. */
function openForWriting(path: string, named: string): number {
  try {
    return fs.openSync(path, 'w', 0o666);
  } catch (err) {
    throw fsCaptureError(named, 'cannot create', err);
  }
}

/** Writes a whole output at once (a summary, a report): to standard output, or through a temporary file. */
export function writeOutputFile(path: string, text: string): void {
  const out = new OutputFile(path);
  try {
    out.write(text);
  } catch (err) {
    out.discard();
    throw err;
  }
  out.commit();
}

/**
 * An output written front to back through one reusable buffer, so that
 * millions of small records cost few syscalls. Writers fill `buffer` (or
 * `view`) at the offsets reserve() hands out; close() puts the file in place,
 * abort() drops it.
 */
export class ChunkedWriter {
  readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  readonly view = new DataView(this.buffer.buffer);
  private used = 0;
  private readonly out: ByteSink;
  private closed = false;

  /** Creates `target` (`-`: standard output), or writes to a sink; an existing file is replaced only by close(). */
  constructor(target: string | ByteSink) {
    this.out = typeof target === 'string' ? new OutputFile(target) : target;
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
    this.out.write(data);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.flush();
    } catch (err) {
      this.out.discard();
      throw err;
    }
    this.out.commit();
  }

  abort(): void {
    if (this.closed) return;
    this.closed = true;
    this.out.discard();
  }

  private flush(): void {
    this.out.write(this.buffer.subarray(0, this.used));
    this.used = 0;
  }
}

/**
 * Writes all of `bytes`, waiting out EAGAIN: standard output may be a
 * non-blocking pipe (Node makes its own stdio pipes non-blocking), and a
 * full pipe is no error. A reader that went away (EPIPE) is the user's
 * business, not a bug: a CaptureError naming the output.
 */
function writeAll(fd: number, bytes: Uint8Array, path: string): void {
  for (let done = 0; done < bytes.length; ) {
    try {
      done += fs.writeSync(fd, bytes, done, bytes.length - done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') {
        sleepSync(POLL_MS);
        continue;
      }
      throw fsCaptureError(path === STDOUT ? 'standard output' : path, 'cannot write', err);
    }
  }
}

export function isUint32(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
}

/** A file the user named cannot be opened or read: their mistake, so a CaptureError. */
export function fsCaptureError(path: string, action: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (!code) return err instanceof Error ? err : new Error(String(err));
  // Node's message is "CODE: description, syscall 'path'"; the path is already in front.
  const description = (err as Error).message.split(',')[0];
  return captureError([path], `${action}: ${description}`);
}
