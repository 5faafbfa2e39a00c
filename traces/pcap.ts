/**
 * Streaming reader and writer for classic pcap capture files.
 *
 * Written by hand rather than using the pcap-parser npm package: that one is
 * slow (~1.5 Mpps), event-based, and silently accepts malformed files. We need
 * constant memory whatever the trace size, synchronous chunked reads the
 * replay loop can drive, and errors that name the bad record.
 *
 * File format: https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcap/
 * Quirk handling (bogus snaplen, out-of-range timestamp fractions) follows
 * libpcap's sf-pcap.c so that files tcpdump reads, we read too.
 */
import * as fs from 'node:fs';
import { inputError } from '../control/errors.js';

export interface CaptureRecord {
  /** 1-based record number. */
  n: number;
  /** File offset of the record header. */
  offset: number;
  /** Seconds; a plain number because pcapng timestamps go past 2^32. */
  tsSec: number;
  /** 0..999_999_999; microsecond files are scaled ×1000. */
  tsNsec: number;
  caplen: number;
  origlen: number;
  /** Per record, because a pcapng file can mix interfaces of different link types. */
  linktype: number;
  /** caplen bytes: a view into the reader's buffer, valid only until the next record is read. */
  data: Uint8Array;
}

/** Implemented per capture format; only classic pcap exists so far, pcapng is to follow. */
export interface CaptureReader {
  readonly path: string;
  readonly format: 'pcap';
  /** The file's own timestamp resolution. */
  readonly nanosecond: boolean;
  /** Effective snaplen: the global header's, or 262144 when that one is bogus. */
  readonly snaplen: number;
  readonly linktype: number;
  readonly fileSize: number;
  /** File bytes consumed so far (global header and the records yielded), for progress bars. */
  readonly bytesRead: number;
  readonly recordsRead: number;
  /** Non-fatal oddities, each naming where it is; capped so that memory stays constant. */
  readonly warnings: string[];
  /** Yields every complete record in order, then throws InputError at the first bad one. */
  records(): Generator<CaptureRecord>;
  close(): void;
}

export interface PcapWriterOptions {
  linktype: number;
  /** Default 262144, libpcap's maximum. */
  snaplen?: number;
  /** Nanosecond timestamps (magic a1b23c4d) instead of microseconds. */
  nanosecond?: boolean;
}

export interface PcapWriter {
  readonly path: string;
  /** caplen is data.length; origlen defaults to it. Microsecond files round tsNsec down. */
  write(tsSec: number, tsNsec: number, data: Uint8Array, origlen?: number): void;
  close(): void;
}

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
const READ_CHUNK_BYTES = 4 << 20;
const WRITE_BUFFER_BYTES = 1 << 20;
/** libpcap's MAXIMUM_SNAPLEN, which it also substitutes for a bogus header snaplen. */
const DEFAULT_SNAPLEN = 262144;
/** Above any real snaplen; a larger caplen means a corrupt file, not a packet to allocate for. */
const MAX_CAPLEN = 256 << 20;
const MAX_SANE_SNAPLEN = 2 ** 31;
const MAX_WARNINGS = 100;

/** Magics read as big-endian u32 from the first four bytes of the file. */
const PCAP_USEC_MAGIC = 0xa1b2c3d4;
const PCAP_NSEC_MAGIC = 0xa1b23c4d;
const PCAPNG_BLOCK_TYPE_SHB = 0x0a0d0d0a;

/** Opens a capture for streaming, telling the format from its magic; the caller must close() it. */
export function openCapture(path: string): CaptureReader {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    throw fsInputError(path, 'cannot open', err);
  }
  try {
    const fileSize = fs.fstatSync(fd).size;
    const file = new ChunkedFile(fd, READ_CHUNK_BYTES, MAX_CAPLEN + RECORD_HEADER_BYTES);
    let available: number;
    try {
      available = file.fill(GLOBAL_HEADER_BYTES);
    } catch (err) {
      throw fsInputError(path, 'cannot read', err);
    }
    const truncatedHeader = () =>
      inputError([path, 'global header'], `truncated: needs ${GLOBAL_HEADER_BYTES} bytes, file has ${available}`);
    if (available < 4) throw truncatedHeader();
    const magic = file.view.getUint32(0, false);
    if (magic === PCAPNG_BLOCK_TYPE_SHB) {
      throw inputError([path], 'pcapng is not supported yet; convert it with `editcap -F pcap` or tshark');
    }
    let littleEndian: boolean;
    let nanosecond: boolean;
    if (magic === PCAP_USEC_MAGIC || magic === PCAP_NSEC_MAGIC) {
      littleEndian = false;
      nanosecond = magic === PCAP_NSEC_MAGIC;
    } else if (magic === byteSwap32(PCAP_USEC_MAGIC) || magic === byteSwap32(PCAP_NSEC_MAGIC)) {
      littleEndian = true;
      nanosecond = magic === byteSwap32(PCAP_NSEC_MAGIC);
    } else {
      const hex = Buffer.from(file.buffer.subarray(0, 4)).toString('hex');
      throw inputError([path, 'global header', 'magic'], `unknown magic ${hex}: not a pcap or pcapng file`);
    }
    if (available < GLOBAL_HEADER_BYTES) throw truncatedHeader();
    const reader = new PcapReader(path, file, fileSize, littleEndian, nanosecond);
    file.pos = GLOBAL_HEADER_BYTES;
    return reader;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** Creates (or truncates) `path` and writes the global header; the caller must close() to flush. */
export function createPcapWriter(path: string, opts: PcapWriterOptions): PcapWriter {
  return new StreamingPcapWriter(path, opts);
}

/**
 * A file read front to back through one reusable buffer. Sequential reads
 * (position null) so that pipes such as `<(zcat trace.pcap.gz)` work too.
 */
class ChunkedFile {
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

class PcapReader implements CaptureReader {
  readonly format = 'pcap';
  readonly snaplen: number;
  readonly linktype: number;
  readonly warnings: string[] = [];
  recordsRead = 0;

  constructor(
    readonly path: string,
    private readonly file: ChunkedFile,
    readonly fileSize: number,
    private readonly littleEndian: boolean,
    readonly nanosecond: boolean,
  ) {
    const view = file.view;
    const versionMajor = view.getUint16(4, littleEndian);
    const versionMinor = view.getUint16(6, littleEndian);
    if (versionMajor !== 2) {
      throw inputError([path, 'global header', 'version'], `${versionMajor}.${versionMinor} is not a pcap 2.x file`);
    }
    const snaplen = view.getUint32(16, littleEndian);
    if (snaplen === 0 || snaplen > MAX_SANE_SNAPLEN) {
      this.warn(['global header', 'snaplen'], `${snaplen} is bogus; using ${DEFAULT_SNAPLEN} as libpcap does`);
      this.snaplen = DEFAULT_SNAPLEN;
    } else {
      this.snaplen = snaplen;
    }
    // As in libpcap, only the low 16 bits are the link type; above them sit an FCS length and reserved bits.
    const linktypeField = view.getUint32(20, littleEndian);
    this.linktype = linktypeField & 0xffff;
    if (linktypeField !== this.linktype) {
      this.warn(['global header', 'linktype'], `upper bits of 0x${linktypeField.toString(16)} ignored`);
    }
  }

  get bytesRead(): number {
    return this.file.offset;
  }

  *records(): Generator<CaptureRecord> {
    const file = this.file;
    const littleEndian = this.littleEndian;
    const fractionsPerSecond = this.nanosecond ? 1e9 : 1e6;
    const nsPerFraction = this.nanosecond ? 1 : 1000;
    const fractionUnit = this.nanosecond ? 'ns' : 'µs';
    for (;;) {
      const n = this.recordsRead + 1;
      const offset = file.offset;
      const headerBytes = file.fill(RECORD_HEADER_BYTES);
      if (headerBytes === 0) return;
      if (headerBytes < RECORD_HEADER_BYTES) {
        throw this.recordError(
          n,
          offset,
          undefined,
          `truncated: record header needs ${RECORD_HEADER_BYTES} bytes, file ends after ${headerBytes}`,
        );
      }
      const view = file.view;
      const p = file.pos;
      let tsSec = view.getUint32(p, littleEndian);
      let fraction = view.getUint32(p + 4, littleEndian);
      const caplen = view.getUint32(p + 8, littleEndian);
      const origlen = view.getUint32(p + 12, littleEndian);
      if (caplen > MAX_CAPLEN) {
        throw this.recordError(n, offset, 'caplen', `${caplen} bytes is absurd (above 256 MiB); the file is corrupt`);
      }
      if (caplen > origlen) {
        throw this.recordError(n, offset, 'caplen', `${caplen} exceeds origlen ${origlen}`);
      }
      if (caplen > this.snaplen) {
        throw this.recordError(n, offset, 'caplen', `${caplen} exceeds the snaplen ${this.snaplen}`);
      }
      if (fraction >= fractionsPerSecond) {
        const carry = Math.floor(fraction / fractionsPerSecond);
        this.warn(
          [recordWhere(n, offset), 'timestamp'],
          `fraction ${fraction} ${fractionUnit} is not below 1 s; carried ${carry} s into the seconds`,
        );
        tsSec += carry;
        fraction -= carry * fractionsPerSecond;
      }
      file.pos += RECORD_HEADER_BYTES;
      const dataBytes = file.fill(caplen);
      if (dataBytes < caplen) {
        throw this.recordError(n, offset, undefined, `truncated: caplen says ${caplen} bytes, file ends after ${dataBytes}`);
      }
      const start = file.pos;
      file.pos += caplen;
      this.recordsRead = n;
      yield {
        n,
        offset,
        tsSec,
        tsNsec: fraction * nsPerFraction,
        caplen,
        origlen,
        linktype: this.linktype,
        data: file.buffer.subarray(start, start + caplen),
      };
    }
  }

  close(): void {
    this.file.close();
  }

  private recordError(n: number, offset: number, field: string | undefined, problem: string): Error {
    return inputError([this.path, recordWhere(n, offset), field], problem);
  }

  /** Same "file: where: field: problem" shape as InputError messages. */
  private warn(where: string[], problem: string): void {
    if (this.warnings.length < MAX_WARNINGS) {
      this.warnings.push([this.path, ...where, problem].join(': '));
    } else if (this.warnings.length === MAX_WARNINGS) {
      this.warnings.push(`${this.path}: further warnings omitted (only the first ${MAX_WARNINGS} are kept)`);
    }
  }
}

/** Writes little-endian pcap through a buffer, so millions of small records cost few syscalls. */
class StreamingPcapWriter implements PcapWriter {
  private readonly buffer = new Uint8Array(WRITE_BUFFER_BYTES);
  private readonly view = new DataView(this.buffer.buffer);
  private used = 0;
  private readonly fd: number;
  private closed = false;
  private readonly snaplen: number;
  private readonly nanosecond: boolean;

  constructor(
    readonly path: string,
    opts: PcapWriterOptions,
  ) {
    this.snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    this.nanosecond = opts.nanosecond ?? false;
    if (!isUint32(opts.linktype)) throw new RangeError(`${path}: linktype ${opts.linktype} is not a u32`);
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > MAX_SANE_SNAPLEN) {
      throw new RangeError(`${path}: snaplen ${this.snaplen} is outside 1..2^31`);
    }
    try {
      this.fd = fs.openSync(path, 'w');
    } catch (err) {
      throw fsInputError(path, 'cannot create', err);
    }
    const view = this.view;
    view.setUint32(0, this.nanosecond ? PCAP_NSEC_MAGIC : PCAP_USEC_MAGIC, true);
    view.setUint16(4, 2, true);
    view.setUint16(6, 4, true);
    view.setInt32(8, 0, true); // thiszone: timestamps are UTC
    view.setUint32(12, 0, true); // sigfigs
    view.setUint32(16, this.snaplen, true);
    view.setUint32(20, opts.linktype, true);
    this.used = GLOBAL_HEADER_BYTES;
  }

  write(tsSec: number, tsNsec: number, data: Uint8Array, origlen: number = data.length): void {
    if (this.closed) throw new Error(`${this.path}: write after close()`);
    const caplen = data.length;
    if (!isUint32(tsSec)) throw new RangeError(`${this.path}: tsSec ${tsSec} is not a u32`);
    if (!Number.isInteger(tsNsec) || tsNsec < 0 || tsNsec >= 1e9) {
      throw new RangeError(`${this.path}: tsNsec ${tsNsec} is outside 0..999999999`);
    }
    if (caplen > this.snaplen) throw new RangeError(`${this.path}: caplen ${caplen} exceeds snaplen ${this.snaplen}`);
    if (!isUint32(origlen) || origlen < caplen) {
      throw new RangeError(`${this.path}: origlen ${origlen} is below caplen ${caplen} or not a u32`);
    }
    if (this.used + RECORD_HEADER_BYTES + caplen > this.buffer.length) this.flush();
    const view = this.view;
    const p = this.used;
    view.setUint32(p, tsSec, true);
    view.setUint32(p + 4, this.nanosecond ? tsNsec : Math.floor(tsNsec / 1000), true);
    view.setUint32(p + 8, caplen, true);
    view.setUint32(p + 12, origlen, true);
    this.used += RECORD_HEADER_BYTES;
    if (caplen > this.buffer.length - this.used) {
      // Bigger than the whole buffer: no point copying it through.
      this.flush();
      writeAll(this.fd, data);
    } else {
      this.buffer.set(data, this.used);
      this.used += caplen;
    }
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

function recordWhere(n: number, offset: number): string {
  return `record ${n} (offset ${offset})`;
}

function byteSwap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}

function isUint32(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
}

/** A file the user named cannot be opened or read: their mistake, so an InputError. */
function fsInputError(path: string, action: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (!code) return err instanceof Error ? err : new Error(String(err));
  // Node's message is "CODE: description, syscall 'path'"; the path is already in front.
  const description = (err as Error).message.split(',')[0];
  return inputError([path], `${action}: ${description}`);
}
