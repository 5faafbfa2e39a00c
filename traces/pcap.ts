/**
 * Streaming reader and writer for classic pcap capture files, and openCapture,
 * which hands pcapng files to pcapng.ts.
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
import { captureError, hexOf } from './errors.js';
import { type ByteSink, type ByteSource, ChunkedFile, ChunkedWriter, DEFAULT_SNAPLEN, isUint32, MAX_SANE_SNAPLEN } from './chunked.js';
import { MAX_BLOCK_BYTES, PcapngReader } from './pcapng.js';
import { openSource } from './source.js';

export interface CaptureRecord {
  /** 1-based record number; pcapng counts packets only, not the other blocks. */
  n: number;
  /** File offset of the record header (pcap) or of the packet's block (pcapng). */
  offset: number;
  /** Seconds; a plain number because pcapng timestamps go past 2^32. */
  tsSec: number;
  /** 0..999_999_999; coarser resolutions are scaled up, finer ones rounded down. */
  tsNsec: number;
  caplen: number;
  origlen: number;
  /** Per record, because a pcapng file can mix interfaces of different link types. */
  linktype: number;
  /** pcapng's epb_flags direction, when the record has one; classic pcap records have none. */
  direction?: Direction;
  /** caplen bytes: a view into the reader's buffer, valid only until the next record is read. */
  data: Uint8Array;
}

/** Which way a packet went, as the capture says: it arrived at the interface, or the host sent it. */
export type Direction = 'inbound' | 'outbound';

/** Implemented per capture format: classic pcap here, pcapng in pcapng.ts. */
export interface CaptureReader {
  readonly path: string;
  readonly format: 'pcap' | 'pcapng';
  /**
   * Whether the file's timestamps are finer than microseconds: pcap's magic
   * says; for pcapng see PcapngReader.
   */
  readonly nanosecond: boolean;
  /**
   * Effective snaplen: the global header's, or 262144 when that one is bogus;
   * pcapng: the first interface's, 262144 when it says 0 (unlimited).
   */
  readonly snaplen: number;
  /** pcapng: the first interface's; each record carries its own interface's. */
  readonly linktype: number;
  /**
   * Every link type known when the file was opened, in order of appearance:
   * pcap's one; pcapng's interfaces described before the first packet.
   */
  readonly linktypes: readonly number[];
  /** Bytes of the capture, when known before reading it: not for a pipe, nor inflated from gzip. */
  readonly fileSize: number | undefined;
  /** Capture bytes consumed so far (global header and the records yielded). */
  readonly bytesRead: number;
  readonly recordsRead: number;
  /** Non-fatal oddities, each naming where it is; capped so that memory stays constant. */
  readonly warnings: string[];
  /**
   * Yields every complete record in order, then throws CaptureError at the
   * first bad one. When the source must not wait (ByteSource.waits) and the
   * next record has not arrived, the generator ends with WouldBlock and a
   * fresh call to records() goes on from that record.
   */
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
  readonly nanosecond: boolean;
  /** caplen is data.length; origlen defaults to it. Microsecond files round tsNsec down. */
  write(tsSec: number, tsNsec: number, data: Uint8Array, origlen?: number): void;
  /** Whole records laid out as write() lays them (the datapath's pcap_emit writes them so). */
  writeRecords(records: Uint8Array): void;
  close(): void;
  abort(): void;
}

const GLOBAL_HEADER_BYTES = 24;
const RECORD_HEADER_BYTES = 16;
const READ_CHUNK_BYTES = 4 << 20;
/** Above any real snaplen; a larger caplen means a corrupt file, not a packet to allocate for. */
const MAX_CAPLEN = 256 << 20;
const MAX_WARNINGS = 100;

/** Magics read as big-endian u32 from the first four bytes of the file. */
const PCAP_USEC_MAGIC = 0xa1b2c3d4;
const PCAP_NSEC_MAGIC = 0xa1b23c4d;
const PCAPNG_BLOCK_TYPE_SHB = 0x0a0d0d0a;

/**
 * Opens a capture for streaming, telling the format from its magic: a path
 * (`-` for standard input; gzip is inflated on the way) or a source already
 * open. The caller must close() it.
 */
export function openCapture(from: string | ByteSource): CaptureReader {
  const source = typeof from === 'string' ? openSource(from) : from;
  const path = source.name;
  try {
    const file = new ChunkedFile(source, READ_CHUNK_BYTES, Math.max(MAX_CAPLEN + RECORD_HEADER_BYTES, MAX_BLOCK_BYTES));
    const available = file.fill(GLOBAL_HEADER_BYTES);
    const truncatedHeader = () =>
      captureError([path, 'global header'], `truncated: needs ${GLOBAL_HEADER_BYTES} bytes, file has ${available}`);
    if (available < 4) throw truncatedHeader();
    const magic = file.view.getUint32(0, false);
    if (magic === PCAPNG_BLOCK_TYPE_SHB) return new PcapngReader(path, file, source.size);
    let littleEndian: boolean;
    let nanosecond: boolean;
    if (magic === PCAP_USEC_MAGIC || magic === PCAP_NSEC_MAGIC) {
      littleEndian = false;
      nanosecond = magic === PCAP_NSEC_MAGIC;
    } else if (magic === byteSwap32(PCAP_USEC_MAGIC) || magic === byteSwap32(PCAP_NSEC_MAGIC)) {
      littleEndian = true;
      nanosecond = magic === byteSwap32(PCAP_NSEC_MAGIC);
    } else {
      const hex = hexOf(file.buffer.subarray(0, 4));
      throw captureError([path, 'global header', 'magic'], `unknown magic ${hex}: not a pcap or pcapng file`);
    }
    if (available < GLOBAL_HEADER_BYTES) throw truncatedHeader();
    const reader = new PcapReader(path, file, source.size, littleEndian, nanosecond);
    file.pos = GLOBAL_HEADER_BYTES;
    return reader;
  } catch (err) {
    source.close();
    throw err;
  }
}

/**
 * Starts the output `to` (a path, `-`: standard output; or a sink, such as
 * memory) and writes the global header; close() puts the file in place
 * (traces/chunked.ts OutputFile), abort() drops it.
 */
export function createPcapWriter(to: string | ByteSink, opts: PcapWriterOptions): PcapWriter {
  return new StreamingPcapWriter(to, opts);
}

/** Classic pcap, read by JavaScript; the replay walks the same records in the datapath (control/runtime/zero-copy-replay.ts). */
export class PcapReader implements CaptureReader {
  readonly format = 'pcap';
  readonly snaplen: number;
  readonly linktype: number;
  readonly linktypes: readonly number[];
  readonly warnings: string[] = [];
  recordsRead = 0;
  /** The offset of the last record header judged, so that a record read again (after WouldBlock) warns once. */
  private judgedOffset = -1;

  constructor(
    readonly path: string,
    private readonly file: ChunkedFile,
    readonly fileSize: number | undefined,
    readonly littleEndian: boolean,
    readonly nanosecond: boolean,
  ) {
    const view = file.view;
    const versionMajor = view.getUint16(4, littleEndian);
    const versionMinor = view.getUint16(6, littleEndian);
    if (versionMajor !== 2) {
      throw captureError([path, 'global header', 'version'], `${versionMajor}.${versionMinor} is not a pcap 2.x file`);
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
    this.linktypes = [this.linktype];
    if (linktypeField !== this.linktype) {
      this.warn(['global header', 'linktype'], `upper bits of 0x${linktypeField.toString(16)} ignored`);
    }
  }

  get bytesRead(): number {
    return this.file.offset;
  }

  *records(): Generator<CaptureRecord> {
    const file = this.file;
    for (;;) {
      const n = this.recordsRead + 1;
      const offset = file.offset;
      const headerBytes = file.fill(RECORD_HEADER_BYTES);
      if (headerBytes === 0) return;
      if (headerBytes < RECORD_HEADER_BYTES) throw this.truncatedHeader(n, offset, headerBytes);
      const { tsSec, tsNsec, caplen, origlen } = this.recordHeader(n, offset, file.view, file.pos);
      // Nothing is consumed before the whole record is there, so that a read cut short by WouldBlock can start it again.
      const recordBytes = file.fill(RECORD_HEADER_BYTES + caplen);
      if (recordBytes < RECORD_HEADER_BYTES + caplen) throw this.truncatedData(n, offset, caplen, recordBytes - RECORD_HEADER_BYTES);
      const start = file.pos + RECORD_HEADER_BYTES;
      file.pos = start + caplen;
      this.recordsRead = n;
      yield { n, offset, tsSec, tsNsec, caplen, origlen, linktype: this.linktype, data: file.buffer.subarray(start, start + caplen) };
    }
  }

  /**
   * Hands over the bytes after the records read so far (the zero-copy
   * replay reads them into the datapath's memory itself): up to `length` into
   * into[at..], 0 at the end. Reading records() afterwards is not possible.
   */
  readRest(into: Uint8Array, at: number, length: number): number {
    return this.file.read(into, at, length);
  }

  /**
   * Reads and checks record `n`'s header at view[p..p+16), the record being at
   * file `offset`: throws CaptureError for a corrupt one; carries a timestamp
   * fraction of a second or more into the seconds, with a warning, as libpcap does.
   */
  recordHeader(n: number, offset: number, view: DataView, p: number): { tsSec: number; tsNsec: number; caplen: number; origlen: number } {
    const littleEndian = this.littleEndian;
    const fractionsPerSecond = this.nanosecond ? 1e9 : 1e6;
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
      if (offset > this.judgedOffset)
        this.warn(
          [recordWhere(n, offset), 'timestamp'],
          `fraction ${fraction} ${this.nanosecond ? 'ns' : 'µs'} is not below 1 s; carried ${carry} s into the seconds`,
        );
      tsSec += carry;
      fraction -= carry * fractionsPerSecond;
    }
    this.judgedOffset = Math.max(this.judgedOffset, offset);
    return { tsSec, tsNsec: fraction * (this.nanosecond ? 1 : 1000), caplen, origlen };
  }

  truncatedHeader(n: number, offset: number, have: number): Error {
    return this.recordError(n, offset, undefined, `truncated: record header needs ${RECORD_HEADER_BYTES} bytes, file ends after ${have}`);
  }

  truncatedData(n: number, offset: number, caplen: number, have: number): Error {
    return this.recordError(n, offset, undefined, `truncated: caplen says ${caplen} bytes, file ends after ${have}`);
  }

  close(): void {
    this.file.close();
  }

  private recordError(n: number, offset: number, field: string | undefined, problem: string): Error {
    return captureError([this.path, recordWhere(n, offset), field], problem);
  }

  /** Same "file: where: field: problem" shape as CaptureError messages. */
  private warn(where: string[], problem: string): void {
    if (this.warnings.length < MAX_WARNINGS) {
      this.warnings.push([this.path, ...where, problem].join(': '));
    } else if (this.warnings.length === MAX_WARNINGS) {
      this.warnings.push(`${this.path}: further warnings omitted (only the first ${MAX_WARNINGS} are kept)`);
    }
  }
}

/** Writes little-endian pcap through a ChunkedWriter. */
class StreamingPcapWriter implements PcapWriter {
  private readonly out: ChunkedWriter;
  private closed = false;
  private readonly snaplen: number;
  readonly nanosecond: boolean;
  readonly path: string;

  constructor(to: string | ByteSink, opts: PcapWriterOptions) {
    const path = typeof to === 'string' ? to : to.path;
    this.path = path;
    this.snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    this.nanosecond = opts.nanosecond ?? false;
    if (!isUint32(opts.linktype)) throw new RangeError(`${path}: linktype ${opts.linktype} is not a u32`);
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > MAX_SANE_SNAPLEN) {
      throw new RangeError(`${path}: snaplen ${this.snaplen} is outside 1..2^31`);
    }
    this.out = new ChunkedWriter(to);
    const view = this.out.view;
    const p = this.out.reserve(GLOBAL_HEADER_BYTES);
    view.setUint32(p, this.nanosecond ? PCAP_NSEC_MAGIC : PCAP_USEC_MAGIC, true);
    view.setUint16(p + 4, 2, true);
    view.setUint16(p + 6, 4, true);
    view.setInt32(p + 8, 0, true); // thiszone: timestamps are UTC
    view.setUint32(p + 12, 0, true); // sigfigs
    view.setUint32(p + 16, this.snaplen, true);
    view.setUint32(p + 20, opts.linktype, true);
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
    const view = this.out.view;
    const p = this.out.reserve(RECORD_HEADER_BYTES);
    view.setUint32(p, tsSec, true);
    view.setUint32(p + 4, this.nanosecond ? tsNsec : Math.floor(tsNsec / 1000), true);
    view.setUint32(p + 8, caplen, true);
    view.setUint32(p + 12, origlen, true);
    this.out.append(data);
  }

  writeRecords(records: Uint8Array): void {
    if (this.closed) throw new Error(`${this.path}: write after close()`);
    this.out.append(records);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.out.close();
  }

  abort(): void {
    this.closed = true;
    this.out.abort();
  }
}

function recordWhere(n: number, offset: number): string {
  return `record ${n} (offset ${offset})`;
}

function byteSwap32(x: number): number {
  return (((x & 0xff) << 24) | ((x & 0xff00) << 8) | ((x >>> 8) & 0xff00) | (x >>> 24)) >>> 0;
}
