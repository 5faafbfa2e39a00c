/**
 * Where a capture's bytes come from (ByteSource, traces/chunked.ts): a
 * regular file, a FIFO or device, standard input (`-`), and gzip on top of
 * any of them, recognised by its magic 1f 8b whatever the name, as tshark
 * does. Reads are synchronous, in constant memory.
 *
 * A pipe (or socket) is read through a non-blocking descriptor, so that a
 * replay can tell "no data yet" from data and wait for it asynchronously,
 * where a Ctrl-C is still heard: a blocking read() would hold the thread,
 * and its signal handlers, until the writer writes.
 *
 * Node has no public synchronous streaming inflate, so gzip is inflated by a
 * worker thread (traces/gunzip-worker.ts) running zlib's streaming gunzip,
 * which reads the compressed bytes from the same descriptor and hands the
 * inflated ones over through a ring in shared memory.
 */
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, statSync, writeSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { Socket } from 'node:net';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { captureError } from './errors.js';
import { GZIP_MAGIC_BYTES, isGzip } from './gzip.js';
import { fsCaptureError, POLL_MS, removeTemporaryFile, sleepSync, trackTemporaryFile, WouldBlock, type ByteSource } from './chunked.js';

/** The capture name that means standard input. */
export const STDIN = '-';
const STDIN_NAME = 'standard input';

/** Bytes read ahead from a descriptor to tell gzip from a capture, or to learn that data has arrived. */
const LOOKAHEAD_BYTES = 64 << 10;

/**
 * Opens a capture's bytes: `-` is standard input; gzip is inflated on the
 * way. `name` is what messages call it, when `path` is a copy standing for
 * the capture the user named. The caller must close() it.
 */
export function openSource(path: string, name?: string): ByteSource {
  const raw = path === STDIN ? openStdin() : openPath(path, name);
  try {
    const source = new CaptureSource(raw, path.endsWith('.gz'));
    // A file has its first bytes at hand: decide now, so that its size and a wrong .gz name are known from the start.
    if (!raw.live) source.decide();
    return source;
  } catch (err) {
    raw.close();
    throw err;
  }
}

/** A capture that can be opened as often as needed, and what to do with it at the end. */
export interface RereadableCapture {
  name: string;
  open(): ByteSource;
  /** Removes the copy, if one was made. */
  remove(): void;
}

let copies = 0;

/**
 * The capture as something that can be read more than once: a file as it
 * is; standard input or a pipe copied (inflated) to a private temporary file
 * first. Undefined when `signal` aborted the copy.
 */
export async function rereadableCapture(path: string, signal?: AbortSignal): Promise<RereadableCapture | undefined> {
  const source = openSource(path);
  if (source.rereadable) {
    source.close();
    return { name: source.name, open: () => openSource(path), remove: () => {} };
  }
  const name = source.name;
  const copy = join(tmpdir(), `svcpath-${process.pid}-${++copies}.capture`);
  const fd = openSync(copy, 'wx', 0o600);
  trackTemporaryFile(copy);
  const remove = () => removeTemporaryFile(copy);
  try {
    source.waits = false;
    const buffer = new Uint8Array(LOOKAHEAD_BYTES);
    for (;;) {
      let got: number;
      try {
        got = source.read(buffer, 0, buffer.length);
      } catch (err) {
        if (!(err instanceof WouldBlock)) throw err;
        await source.readable(signal);
        if (signal?.aborted) break;
        continue;
      }
      if (got === 0) break;
      for (let done = 0; done < got; ) done += writeSync(fd, buffer, done, got - done);
    }
  } catch (err) {
    remove();
    throw err;
  } finally {
    closeSync(fd);
    source.close();
  }
  if (signal?.aborted) {
    remove();
    return undefined;
  }
  return { name, open: () => openSource(copy, name), remove };
}

function openStdin(): FdSource {
  if (isatty(0)) {
    throw captureError([STDIN_NAME], 'is a terminal; pipe a capture into it (tcpdump -w - ... | svcpath replay - ...) or name a file');
  }
  const stats = fstatSync(0);
  if (stats.isFile()) return new FdSource(STDIN_NAME, 0, { size: stats.size, live: false, rereadable: false, owned: false, fifo: false });
  makeStdinNonBlocking();
  return new FdSource(STDIN_NAME, 0, { size: undefined, live: true, rereadable: false, owned: false, fifo: false });
}

/**
 * Puts standard input, a pipe or a socket, in non-blocking mode: libuv
 * does so when a net.Socket takes the descriptor, and one that is not
 * readable reads nothing itself. Node has no other way (no fcntl); reads
 * then go through readSync, which says EAGAIN when nothing has come. A
 * device (not a terminal, which is refused) stays blocking.
 */
function makeStdinNonBlocking(): void {
  try {
    new Socket({ fd: 0, readable: false, writable: false }).unref();
  } catch {
    // ERR_INVALID_FD_TYPE: a device such as /dev/null, which never makes a read wait.
  }
}

function openPath(path: string, name = path): FdSource {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch (err) {
    throw fsCaptureError(path, 'cannot open', err);
  }
  if (stats.isDirectory()) throw captureError([path], 'is a directory, not a capture');
  if (stats.isFile()) {
    return new FdSource(name, openForReading(path, constants.O_RDONLY), {
      size: stats.size,
      live: false,
      rereadable: true,
      owned: true,
      fifo: false,
    });
  }
  // A FIFO or device, opened without waiting for a writer: a FIFO reads 0 until one connects (FdSource knows).
  const fd = openForReading(path, constants.O_RDONLY | constants.O_NONBLOCK);
  return new FdSource(name, fd, { size: undefined, live: true, rereadable: false, owned: true, fifo: stats.isFIFO() });
}

function openForReading(path: string, flags: number): number {
  try {
    return openSync(path, flags);
  } catch (err) {
    throw fsCaptureError(path, 'cannot open', err);
  }
}

interface FdSourceKind {
  size: number | undefined;
  live: boolean;
  rereadable: boolean;
  /** Whether closing the source closes the descriptor (not the process's own standard input). */
  owned: boolean;
  /** A FIFO: until its first byte, a read of 0 means "no writer yet", not the end. */
  fifo: boolean;
}

/** Bytes straight from a descriptor, with a look-ahead for telling gzip apart and for waiting on a pipe. */
class FdSource implements ByteSource {
  waits = true;
  /** Read from the descriptor but not yet handed out. */
  private head?: Uint8Array;
  private eof = false;
  private sawData = false;
  private delivered = 0;
  private closed = false;

  constructor(
    readonly name: string,
    readonly fd: number,
    private readonly kind: FdSourceKind,
  ) {}

  get size(): number | undefined {
    return this.kind.size;
  }

  get live(): boolean {
    return this.kind.live;
  }

  get rereadable(): boolean {
    return this.kind.rereadable;
  }

  get progress(): { done: number; total: number | undefined } {
    return { done: this.delivered, total: this.kind.size };
  }

  read(into: Uint8Array, at: number, length: number): number {
    const got = this.head ? this.fromHead(into, at, length) : this.eof ? 0 : this.fromFd(into, at, length);
    this.delivered += got;
    return got;
  }

  /**
   * `n` bytes ahead (fewer only at the end), without consuming them. Only
   * those are read, so that the first chunk a reader reads is whole.
   */
  peek(n: number): Uint8Array {
    while ((this.head?.length ?? 0) < n && !this.eof) {
      const have = this.head ?? new Uint8Array(0);
      const more = new Uint8Array(n);
      more.set(have);
      const got = this.fromFd(more, have.length, more.length - have.length);
      this.head = more.subarray(0, have.length + got);
    }
    return this.head ?? new Uint8Array(0);
  }

  /** The look-ahead, handed over with the descriptor (to the gunzip thread). */
  takeHead(): Uint8Array {
    const head = this.head ?? new Uint8Array(0);
    this.head = undefined;
    return head;
  }

  async readable(signal?: AbortSignal): Promise<void> {
    while (!this.head && !this.eof && !signal?.aborted) {
      const buffer = new Uint8Array(LOOKAHEAD_BYTES);
      const got = this.tryFd(buffer, 0, buffer.length);
      if (got > 0) this.head = buffer.subarray(0, got);
      else if (got < 0) await pause(POLL_MS, undefined, { signal }).catch(() => {});
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.kind.owned) closeSync(this.fd);
  }

  private fromHead(into: Uint8Array, at: number, length: number): number {
    const head = this.head!;
    const n = Math.min(length, head.length);
    into.set(head.subarray(0, n), at);
    this.head = n < head.length ? head.subarray(n) : undefined;
    return n;
  }

  /** A read from the descriptor that waits for data, or throws WouldBlock when the source must not wait. */
  private fromFd(into: Uint8Array, at: number, length: number): number {
    for (;;) {
      const got = this.tryFd(into, at, length);
      if (got >= 0) return got;
      if (!this.waits) throw new WouldBlock();
      sleepSync(POLL_MS);
    }
  }

  /** One read: the bytes read, 0 at the end, -1 when none have arrived yet. */
  private tryFd(into: Uint8Array, at: number, length: number): number {
    if (length === 0) return 0;
    let got: number;
    try {
      got = readSync(this.fd, into, at, length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return -1;
      throw fsCaptureError(this.name, 'cannot read', err);
    }
    if (got === 0 && this.kind.fifo && !this.sawData) return -1;
    if (got === 0) this.eof = true;
    else this.sawData = true;
    return got;
  }
}

/**
 * The source openSource() returns: the descriptor's bytes as they are, or
 * inflated when they start with the gzip magic. Which one is decided at the
 * first read, when the first two bytes are there.
 */
class CaptureSource implements ByteSource {
  private inner?: ByteSource;
  private waiting = true;

  constructor(
    private readonly raw: FdSource,
    private readonly gzipName: boolean,
  ) {}

  get name(): string {
    return this.raw.name;
  }

  /** Known for an uncompressed file only: the inflated size of gzip is not known until the end. */
  get size(): number | undefined {
    return this.inner === this.raw ? this.raw.size : undefined;
  }

  get live(): boolean {
    return this.raw.live;
  }

  get rereadable(): boolean {
    return this.raw.rereadable;
  }

  get progress(): { done: number; total: number | undefined } {
    return (this.inner ?? this.raw).progress;
  }

  get waits(): boolean {
    return this.waiting;
  }

  set waits(waits: boolean) {
    this.waiting = waits;
    this.raw.waits = waits;
    if (this.inner) this.inner.waits = waits;
  }

  read(into: Uint8Array, at: number, length: number): number {
    return this.decide().read(into, at, length);
  }

  async readable(signal?: AbortSignal): Promise<void> {
    while (!this.inner && !signal?.aborted) {
      await this.raw.readable(signal);
      const waits = this.raw.waits;
      this.raw.waits = false;
      try {
        this.decide();
      } catch (err) {
        if (!(err instanceof WouldBlock)) throw err;
        await pause(POLL_MS, undefined, { signal }).catch(() => {});
      } finally {
        this.raw.waits = waits;
      }
    }
    await this.inner?.readable(signal);
  }

  close(): void {
    if (this.inner && this.inner !== this.raw) this.inner.close();
    else this.raw.close();
  }

  /** Plain or gzip, from the first two bytes (waiting for them as reads wait). */
  decide(): ByteSource {
    if (this.inner) return this.inner;
    const gzip = isGzip(this.raw.peek(GZIP_MAGIC_BYTES), this.name, this.gzipName);
    this.inner = gzip ? new GunzipSource(this.raw) : this.raw;
    this.inner.waits = this.waiting;
    return this.inner;
  }
}

/** Words of the gunzip ring's control block (Int32Array indexes); the compressed bytes read follow, as a Float64 at COMPRESSED_READ. */
export const RING = {
  /** Inflated bytes in the ring, not yet read. */
  FILLED: 0,
  /** RUNNING, ENDED (all bytes are in the ring) or FAILED (the reason is on the port). */
  STATE: 1,
  /** Bumped at every change the reader may wait for. */
  SEQ: 2,
  /** Set by the reader when it closes: the thread stops. */
  CLOSED: 3,
  /** Set by the thread once it reads the descriptor no more: the reader may close it. */
  STOPPED: 4,
  INTS: 5,
  RUNNING: 0,
  ENDED: 1,
  FAILED: 2,
} as const;
/** Byte offset of the compressed bytes read in the control block: after the words, 8-aligned. */
export const COMPRESSED_READ = 8 * Math.ceil((4 * RING.INTS) / 8);
const RING_BYTES = 4 << 20;
/** How long close() waits for the gunzip thread to let go of the descriptor. */
const STOP_WAIT_MS = 1000;

/** What the gunzip thread is given. */
export interface GunzipSetup {
  fd: number;
  /** Compressed bytes already read from the descriptor. */
  head: Uint8Array;
  control: SharedArrayBuffer;
  ring: SharedArrayBuffer;
  /** Where a failure's reason ("gzip: truncated: ...") is posted. */
  port: MessagePort;
}

/** Worker threads run JavaScript: the built file, also when this module runs from source (the tests). */
const GUNZIP_WORKER = new URL(import.meta.url.endsWith('.ts') ? '../dist/traces/gunzip-worker.js' : './gunzip-worker.js', import.meta.url);
/** Checked first: a thread that cannot start would leave the reader waiting for ever. */
function gunzipWorker(): URL {
  if (!existsSync(GUNZIP_WORKER)) throw new Error(`${fileURLToPath(GUNZIP_WORKER)} is missing: run npm run build`);
  return GUNZIP_WORKER;
}

/** Inflated bytes from the gunzip thread, through the ring. */
class GunzipSource implements ByteSource {
  waits = true;
  private readonly control = new SharedArrayBuffer(COMPRESSED_READ + 8);
  private readonly words = new Int32Array(this.control, 0, RING.INTS);
  private readonly compressedRead = new Float64Array(this.control, COMPRESSED_READ, 1);
  private readonly ring = new Uint8Array(new SharedArrayBuffer(RING_BYTES));
  private readAt = 0;
  private readonly port: MessagePort;
  private failure?: Error;
  private closed = false;

  constructor(private readonly raw: FdSource) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const setup: GunzipSetup = {
      fd: raw.fd,
      head: raw.takeHead(),
      control: this.control,
      ring: this.ring.buffer as SharedArrayBuffer,
      port: port2,
    };
    const worker = new Worker(gunzipWorker(), { workerData: setup, transferList: [port2] });
    // The thread ends by itself once closed; it must not keep the process alive.
    worker.unref();
  }

  get name(): string {
    return this.raw.name;
  }

  readonly size = undefined;

  get live(): boolean {
    return this.raw.live;
  }

  get rereadable(): boolean {
    return this.raw.rereadable;
  }

  get progress(): { done: number; total: number | undefined } {
    return { done: this.compressedRead[0], total: this.raw.size };
  }

  read(into: Uint8Array, at: number, length: number): number {
    const w = this.words;
    for (;;) {
      const seq = Atomics.load(w, RING.SEQ);
      const filled = Atomics.load(w, RING.FILLED);
      if (filled > 0) return this.take(into, at, Math.min(length, filled));
      const state = Atomics.load(w, RING.STATE);
      if (state === RING.ENDED) return 0;
      if (state === RING.FAILED) throw this.failed();
      if (!this.waits) throw new WouldBlock();
      Atomics.wait(w, RING.SEQ, seq, 1000);
    }
  }

  async readable(signal?: AbortSignal): Promise<void> {
    const w = this.words;
    while (Atomics.load(w, RING.FILLED) === 0 && Atomics.load(w, RING.STATE) === RING.RUNNING && !signal?.aborted) {
      await pause(POLL_MS, undefined, { signal }).catch(() => {});
    }
  }

  /**
   * Stops the thread, then closes the descriptor: not before, or a file
   * opened next could get its number while the thread still reads it. A
   * thread held in a blocking read (a socket) is not waited for long: its
   * descriptor is left to the process's end.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.words, RING.CLOSED, 1);
    Atomics.notify(this.words, RING.FILLED);
    this.port.close();
    const deadline = Date.now() + STOP_WAIT_MS;
    for (let now = Date.now(); Atomics.load(this.words, RING.STOPPED) === 0 && now < deadline; now = Date.now()) {
      Atomics.wait(this.words, RING.SEQ, Atomics.load(this.words, RING.SEQ), deadline - now);
    }
    if (Atomics.load(this.words, RING.STOPPED) === 1) this.raw.close();
  }

  private take(into: Uint8Array, at: number, n: number): number {
    const first = Math.min(n, this.ring.length - this.readAt);
    into.set(this.ring.subarray(this.readAt, this.readAt + first), at);
    if (first < n) into.set(this.ring.subarray(0, n - first), at + first);
    this.readAt = (this.readAt + n) % this.ring.length;
    Atomics.sub(this.words, RING.FILLED, n);
    Atomics.notify(this.words, RING.FILLED);
    return n;
  }

  private failed(): Error {
    this.failure ??= captureError([this.name], String(receiveMessageOnPort(this.port)?.message ?? 'gzip: the inflating thread failed'));
    return this.failure;
  }
}
