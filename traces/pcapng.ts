/**
 * Streaming reader and writer for pcapng capture files.
 *
 * Written by hand: no well-kept npm pcapng reader streams with constant
 * memory (they buffer the file or emit events without back-pressure) and
 * reports malformed blocks precisely. We read synchronously through the same
 * ChunkedFile as the classic pcap reader, one block at a time, and name the
 * block number, offset and field of the first bad one.
 *
 * File format: https://datatracker.ietf.org/doc/draft-ietf-opsawg-pcapng/
 * openCapture (pcap.ts) hands files that start with a Section Header Block here.
 */
import { captureError } from './errors.js';
import { type ByteSink, type ChunkedFile, ChunkedWriter, DEFAULT_SNAPLEN, isUint32, MAX_SANE_SNAPLEN } from './chunked.js';
import type { CaptureReader, CaptureRecord, Direction } from './pcap.js';

/** Above any real block; a longer one means a corrupt file, not a block to allocate for. */
export const MAX_BLOCK_BYTES = 256 << 20;
/** Keeps memory bounded on a corrupt file; real captures have a few dozen interfaces. */
const MAX_INTERFACES_PER_SECTION = 1 << 16;

const BLOCK_SHB = 0x0a0d0d0a;
const BLOCK_IDB = 1;
const BLOCK_PB = 2;
const BLOCK_SPB = 3;
const BLOCK_EPB = 6;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Type and total length before the body, total length again after it. */
const BLOCK_OVERHEAD_BYTES = 12;
const SHB_MIN_BYTES = 28;
const IDB_MIN_BYTES = 20;
const SPB_MIN_BYTES = 16;
/** Enhanced and obsolete Packet Blocks: interface, timestamp high and low, captured and original lengths. */
const PACKET_BLOCK_MIN_BYTES = 32;

const OPT_ENDOFOPT = 0;
/** Enhanced (and obsolete) Packet Block flags; bits 0-1 say the direction. */
const EPB_FLAGS = 2;
const DIRECTIONS: ReadonlyArray<Direction | undefined> = [undefined, 'inbound', 'outbound'];
const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;
/** 10^-6 s, the resolution of an interface without if_tsresol. */
const DEFAULT_TSRESOL = 6;
const TSRESOL_NS = 9;
const LINKTYPE_ETHERNET = 1;

interface Interface {
  linktype: number;
  /** Effective: 0 (unlimited) becomes DEFAULT_SNAPLEN. */
  snaplen: number;
  /** 10^-k s with k ≤ 9: units per second as a plain number, and ns per unit; both 0 for other resolutions. */
  unitsPerSecond: number;
  nsPerUnit: number;
  /** Every resolution, for the BigInt path. */
  unitsPerSecondBig: bigint;
  /** if_tsoffset: seconds added to every timestamp. */
  offsetSec: number;
}

/**
 * Reads a pcapng file block by block. Sections (each Section Header Block
 * starts one) have their own byte order and their own interfaces, numbered
 * from 0. Packets come from Enhanced, Simple and obsolete Packet Blocks;
 * Name Resolution, Interface Statistics, Decryption Secrets, custom and
 * unknown blocks are checked for framing and skipped.
 *
 * Opening reads ahead to the first packet block, the second section or the
 * end of file, whichever comes first, and takes the file-wide properties from
 * the interfaces described by then (the first section's leading IDBs, which
 * is where writers put them):
 * - `linktype` and `snaplen` are the first interface's (262144 for its
 *   unlimited 0); Ethernet and 262144 when there is none. Records carry
 *   their own interface's link type; `linktypes` lists those interfaces' ones.
 * - `nanosecond` is true when any of those interfaces has a timestamp
 *   resolution finer than 1 µs, so that an output pcap keeps the precision.
 */
export class PcapngReader implements CaptureReader {
  readonly format = 'pcapng';
  readonly linktype: number;
  readonly linktypes: readonly number[];
  readonly snaplen: number;
  readonly nanosecond: boolean;
  /** Stays empty: nothing in a pcapng file is tolerated with a warning; it is read or rejected. */
  readonly warnings: string[] = [];
  recordsRead = 0;
  /** Interface Description Blocks read so far, all sections together. */
  interfacesRead = 0;

  private blocksRead = 0;
  private littleEndian = true;
  private interfaces: Interface[] = [];
  /** The block loaded at file.pos by loadBlock(). */
  private blockType = 0;
  private blockLength = 0;
  private blockLittleEndian = true;
  private blockOffset = 0;
  /** The last packet's timestamp, which a Simple Packet Block (it has none) reuses. */
  private tsSec = 0;
  private tsNsec = 0;

  constructor(
    readonly path: string,
    private readonly file: ChunkedFile,
    readonly fileSize: number | undefined,
  ) {
    this.advanceToPacket(true);
    const first = this.interfaces[0];
    this.linktype = first?.linktype ?? LINKTYPE_ETHERNET;
    this.linktypes = this.interfaces.length ? [...new Set(this.interfaces.map((i) => i.linktype))] : [this.linktype];
    this.snaplen = first?.snaplen ?? DEFAULT_SNAPLEN;
    this.nanosecond = this.interfaces.some((i) => i.unitsPerSecondBig > 1_000_000n);
  }

  get bytesRead(): number {
    return this.file.offset;
  }

  *records(): Generator<CaptureRecord> {
    while (this.advanceToPacket(false)) {
      const record = this.readPacket();
      this.consumeBlock();
      this.recordsRead = record.n;
      yield record;
    }
  }

  close(): void {
    this.file.close();
  }

  /**
   * Reads blocks until a packet block is loaded at file.pos (true), or the
   * end of file, or, when asked, the start of a second section (false).
   */
  private advanceToPacket(stopAtSecondSection: boolean): boolean {
    for (;;) {
      if (!this.loadBlock()) return false;
      switch (this.blockType) {
        case BLOCK_SHB:
          if (stopAtSecondSection && this.blocksRead > 0) return false;
          this.readSectionHeader();
          break;
        case BLOCK_IDB:
          this.readInterface();
          break;
        case BLOCK_EPB:
        case BLOCK_SPB:
        case BLOCK_PB:
          return true;
        // Any other type (name resolution, statistics, secrets, custom, unknown) carries no packet.
      }
      this.consumeBlock();
    }
  }

  /**
   * Loads the next block whole, from its type to its trailing length, at
   * file.pos without consuming it, after checking its framing. False at the
   * end of file.
   */
  private loadBlock(): boolean {
    const file = this.file;
    this.blockOffset = file.offset;
    const headerBytes = file.fill(8);
    if (headerBytes === 0) return false;
    if (headerBytes < 8) {
      throw this.blockError(undefined, `truncated: a block header needs 8 bytes, file ends after ${headerBytes}`);
    }
    let littleEndian = this.littleEndian;
    // The SHB type reads the same in both byte orders; its byte-order magic says how to read the rest.
    if (file.view.getUint32(file.pos, true) === BLOCK_SHB) {
      const got = file.fill(12);
      if (got < 12) throw this.blockError(undefined, `truncated: a section header needs 12 bytes, file ends after ${got}`);
      const magic = file.view.getUint32(file.pos + 8, false);
      if (magic === BYTE_ORDER_MAGIC) {
        littleEndian = false;
      } else if (file.view.getUint32(file.pos + 8, true) === BYTE_ORDER_MAGIC) {
        littleEndian = true;
      } else {
        const onDisk = magic.toString(16).padStart(8, '0');
        throw this.blockError('byte-order magic', `${onDisk} is not 1a2b3c4d in either byte order`);
      }
    }
    const type = file.view.getUint32(file.pos, littleEndian);
    const length = file.view.getUint32(file.pos + 4, littleEndian);
    if (length < BLOCK_OVERHEAD_BYTES) {
      throw this.blockError('block total length', `${length} is below the ${BLOCK_OVERHEAD_BYTES}-byte minimum`);
    }
    if (length % 4 !== 0) throw this.blockError('block total length', `${length} is not a multiple of 4`);
    if (length > MAX_BLOCK_BYTES) {
      throw this.blockError('block total length', `${length} bytes is absurd (above 256 MiB); the file is corrupt`);
    }
    const got = file.fill(length);
    if (got < length) {
      throw this.blockError(undefined, `truncated: block total length says ${length} bytes, file ends after ${got}`);
    }
    const trailing = file.view.getUint32(file.pos + length - 4, littleEndian);
    if (trailing !== length) {
      throw this.blockError('trailing block total length', `${trailing} differs from the leading ${length}`);
    }
    this.blockType = type;
    this.blockLength = length;
    this.blockLittleEndian = littleEndian;
    return true;
  }

  private consumeBlock(): void {
    this.file.pos += this.blockLength;
    this.blocksRead++;
  }

  private readSectionHeader(): void {
    this.requireLength(SHB_MIN_BYTES, 'a section header block');
    const view = this.file.view;
    const p = this.file.pos;
    const major = view.getUint16(p + 12, this.blockLittleEndian);
    const minor = view.getUint16(p + 14, this.blockLittleEndian);
    // Minor versions stay compatible; a new major one may lay blocks out differently.
    if (major !== 1) throw this.blockError('version', `${major}.${minor} is not a pcapng 1.x section`);
    this.littleEndian = this.blockLittleEndian;
    this.interfaces = [];
  }

  private readInterface(): void {
    this.requireLength(IDB_MIN_BYTES, 'an interface description block');
    if (this.interfaces.length === MAX_INTERFACES_PER_SECTION) {
      throw this.blockError(undefined, `more than ${MAX_INTERFACES_PER_SECTION} interfaces in one section`);
    }
    const view = this.file.view;
    const p = this.file.pos;
    const le = this.littleEndian;
    const linktype = view.getUint16(p + 8, le);
    const snaplen = view.getUint32(p + 12, le);
    let tsresol = DEFAULT_TSRESOL;
    let offsetSec = 0;
    this.readOptions(p + IDB_MIN_BYTES - 4, (code, value, length) => {
      if (code === IF_TSRESOL) {
        if (length !== 1) throw this.blockError('if_tsresol', `option length is ${length}, not 1`);
        tsresol = view.getUint8(value);
      } else if (code === IF_TSOFFSET) {
        if (length !== 8) throw this.blockError('if_tsoffset', `option length is ${length}, not 8`);
        const offset = view.getBigInt64(value, le);
        if (offset > BigInt(Number.MAX_SAFE_INTEGER) || offset < -BigInt(Number.MAX_SAFE_INTEGER)) {
          throw this.blockError('if_tsoffset', `${offset} s is beyond ±2^53`);
        }
        offsetSec = Number(offset);
      }
    });
    // High bit set: a negative power of 2; clear: a negative power of 10.
    const exponent = tsresol & 0x7f;
    const decimal = (tsresol & 0x80) === 0;
    const exact = decimal && exponent <= 9;
    this.interfaces.push({
      linktype,
      snaplen: snaplen === 0 ? DEFAULT_SNAPLEN : snaplen,
      unitsPerSecond: exact ? 10 ** exponent : 0,
      nsPerUnit: exact ? 10 ** (9 - exponent) : 0,
      unitsPerSecondBig: (decimal ? 10n : 2n) ** BigInt(exponent),
      offsetSec,
    });
    this.interfacesRead++;
  }

  private readPacket(): CaptureRecord {
    const view = this.file.view;
    const p = this.file.pos;
    const le = this.littleEndian;
    let iface: Interface;
    let caplen: number;
    let origlen: number;
    let dataStart: number;
    let direction: Direction | undefined;
    if (this.blockType === BLOCK_SPB) {
      this.requireLength(SPB_MIN_BYTES, 'a simple packet block');
      // No interface id and no timestamp: interface 0, and the previous packet's time.
      iface = this.interfaceById(0);
      origlen = view.getUint32(p + 8, le);
      caplen = Math.min(origlen, this.blockLength - SPB_MIN_BYTES, iface.snaplen);
      dataStart = p + 12;
    } else {
      const enhanced = this.blockType === BLOCK_EPB;
      this.requireLength(PACKET_BLOCK_MIN_BYTES, enhanced ? 'an enhanced packet block' : 'a packet block');
      // The obsolete Packet Block has a 16-bit interface id, then a 16-bit drops count.
      iface = this.interfaceById(enhanced ? view.getUint32(p + 8, le) : view.getUint16(p + 8, le));
      caplen = view.getUint32(p + 20, le);
      origlen = view.getUint32(p + 24, le);
      const room = this.blockLength - PACKET_BLOCK_MIN_BYTES;
      if (caplen > room) {
        throw this.blockError('captured packet length', `${caplen} exceeds the ${room} bytes the block holds`);
      }
      if (caplen > origlen) {
        throw this.blockError('captured packet length', `${caplen} exceeds the original packet length ${origlen}`);
      }
      this.setTimestamp(view.getUint32(p + 12, le), view.getUint32(p + 16, le), iface);
      dataStart = p + 28;
      direction = this.packetDirection(dataStart + ((caplen + 3) & ~3));
    }
    return {
      n: this.recordsRead + 1,
      offset: this.blockOffset,
      tsSec: this.tsSec,
      tsNsec: this.tsNsec,
      caplen,
      origlen,
      linktype: iface.linktype,
      ...(direction && { direction }),
      data: this.file.buffer.subarray(dataStart, dataStart + caplen),
    };
  }

  /** The direction an Enhanced (or obsolete) Packet Block's flags option, from `start`, gives, if any. */
  private packetDirection(start: number): Direction | undefined {
    let direction: Direction | undefined;
    this.readOptions(start, (code, value, length) => {
      if (code !== EPB_FLAGS) return;
      if (length !== 4) throw this.blockError('epb_flags', `option length is ${length}, not 4`);
      const bits = this.file.view.getUint32(value, this.littleEndian) & 3;
      if (bits === 3) throw this.blockError('epb_flags', 'direction bits are 3, which means nothing (0 unknown, 1 inbound, 2 outbound)');
      direction = DIRECTIONS[bits];
    });
    return direction;
  }

  /**
   * Calls `visit` with each option (code, value offset, length) of the loaded
   * block from `start` to its trailing length, up to opt_endofopt; throws at
   * an option that overruns the block.
   */
  private readOptions(start: number, visit: (code: number, value: number, length: number) => void): void {
    const view = this.file.view;
    const le = this.littleEndian;
    const end = this.file.pos + this.blockLength - 4;
    for (let q = start; q + 4 <= end; ) {
      const code = view.getUint16(q, le);
      const length = view.getUint16(q + 2, le);
      if (code === OPT_ENDOFOPT) break;
      const value = q + 4;
      if (value + length > end) {
        throw this.blockError('options', `option ${code} claims ${length} bytes, the block has ${end - value} left`);
      }
      visit(code, value, length);
      q = value + ((length + 3) & ~3);
    }
  }

  /**
   * Splits the 64-bit count of interface time units high:low into tsSec and
   * tsNsec (rounded down), then adds if_tsoffset. For 10^-k s with k ≤ 9,
   * long division in 32-, 16- and 16-bit steps keeps every intermediate below
   * 2^48, so plain numbers are exact; other resolutions go through BigInt.
   */
  private setTimestamp(high: number, low: number, iface: Interface): void {
    let tsSec: number;
    const units = iface.unitsPerSecond;
    if (units !== 0) {
      const highRest = high % units;
      const middle = highRest * 65536 + (low >>> 16);
      const middleRest = middle % units;
      const bottom = middleRest * 65536 + (low & 0xffff);
      const bottomRest = bottom % units;
      tsSec = ((high - highRest) / units) * 4294967296 + ((middle - middleRest) / units) * 65536 + (bottom - bottomRest) / units;
      this.tsNsec = bottomRest * iface.nsPerUnit;
    } else {
      const ticks = (BigInt(high) << 32n) | BigInt(low);
      const perSecond = iface.unitsPerSecondBig;
      tsSec = Number(ticks / perSecond);
      this.tsNsec = Number(((ticks % perSecond) * 1_000_000_000n) / perSecond);
    }
    // Only resolutions of 10 ms or coarser can count seconds past 2^53 (285 million years).
    if (!Number.isSafeInteger(tsSec) || !Number.isSafeInteger(tsSec + iface.offsetSec)) {
      const ticks = (BigInt(high) << 32n) | BigInt(low);
      throw this.blockError('timestamp', `${ticks} units of 1/${iface.unitsPerSecondBig} s is beyond 2^53 s`);
    }
    this.tsSec = tsSec + iface.offsetSec;
  }

  private interfaceById(id: number): Interface {
    const iface = this.interfaces[id];
    if (iface) return iface;
    const count = this.interfaces.length;
    const described = count === 1 ? '1 interface' : `${count} interfaces`;
    throw this.blockError('interface id', `${id} is not defined in this section, which has described ${described} so far`);
  }

  private requireLength(min: number, what: string): void {
    if (this.blockLength < min) {
      throw this.blockError('block total length', `${this.blockLength} is too small for ${what} (needs ${min})`);
    }
  }

  /** The block loadBlock() is at: blocks count from 1 across the whole file, every type included. */
  private blockError(field: string | undefined, problem: string): Error {
    return captureError([this.path, `block ${this.blocksRead + 1} (offset ${this.blockOffset})`, field], problem);
  }
}

export interface PcapngWriterInterface {
  linktype: number;
  /** Default 262144, libpcap's maximum. */
  snaplen?: number;
  /** Nanosecond timestamps (if_tsresol 9) instead of the default microseconds. */
  tsresolNs?: boolean;
}

export interface PcapngWriterOptions {
  /** One Interface Description Block each; write() names them by index. */
  interfaces: PcapngWriterInterface[];
}

export interface PcapngWriter {
  readonly path: string;
  /**
   * caplen is data.length; origlen defaults to it. Microsecond interfaces
   * round tsNsec down. tsSec may pass 2^32.
   */
  write(interfaceId: number, tsSec: number, tsNsec: number, data: Uint8Array, origlen?: number): void;
  close(): void;
  /** Drops the output: an existing file of that name stays as it was. */
  abort(): void;
}

/**
 * Creates (or truncates) `to`, a path or a sink (memory), and writes one
 * little-endian section header and the interfaces; packets follow as
 * Enhanced Packet Blocks. The caller must close() to flush.
 */
export function createPcapngWriter(to: string | ByteSink, opts: PcapngWriterOptions): PcapngWriter {
  return new StreamingPcapngWriter(to, opts);
}

class StreamingPcapngWriter implements PcapngWriter {
  private readonly out: ChunkedWriter;
  private closed = false;
  private readonly interfaces: Array<{ snaplen: number; unitsPerSecond: number; nsPerUnit: number; maxSec: number }>;

  readonly path: string;

  constructor(to: string | ByteSink, opts: PcapngWriterOptions) {
    const path = typeof to === 'string' ? to : to.path;
    this.path = path;
    this.interfaces = opts.interfaces.map(({ linktype, snaplen = DEFAULT_SNAPLEN, tsresolNs = false }, id) => {
      if (!Number.isInteger(linktype) || linktype < 0 || linktype > 0xffff) {
        throw new RangeError(`${path}: interface ${id}: linktype ${linktype} is not a u16`);
      }
      if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > MAX_SANE_SNAPLEN) {
        throw new RangeError(`${path}: interface ${id}: snaplen ${snaplen} is outside 1..2^31`);
      }
      const unitsPerSecond = tsresolNs ? 1e9 : 1e6;
      // Timestamps are u64 units; seconds from this one on would overflow.
      return { snaplen, unitsPerSecond, nsPerUnit: tsresolNs ? 1 : 1000, maxSec: Math.floor(2 ** 64 / unitsPerSecond) };
    });
    this.out = new ChunkedWriter(to);
    const out = this.out;
    const view = out.view;
    let p = out.reserve(SHB_MIN_BYTES);
    view.setUint32(p, BLOCK_SHB, true);
    view.setUint32(p + 4, SHB_MIN_BYTES, true);
    view.setUint32(p + 8, BYTE_ORDER_MAGIC, true);
    view.setUint16(p + 12, 1, true);
    view.setUint16(p + 14, 0, true);
    view.setBigInt64(p + 16, -1n, true); // section length: not given
    view.setUint32(p + 24, SHB_MIN_BYTES, true);
    opts.interfaces.forEach(({ linktype, tsresolNs }, id) => {
      // if_tsresol (1 byte, padded to 4) and opt_endofopt.
      const length = IDB_MIN_BYTES + (tsresolNs ? 12 : 0);
      p = out.reserve(length);
      out.buffer.fill(0, p, p + length);
      view.setUint32(p, BLOCK_IDB, true);
      view.setUint32(p + 4, length, true);
      view.setUint16(p + 8, linktype, true);
      view.setUint32(p + 12, this.interfaces[id].snaplen, true);
      if (tsresolNs) {
        view.setUint16(p + 16, IF_TSRESOL, true);
        view.setUint16(p + 18, 1, true);
        view.setUint8(p + 20, TSRESOL_NS);
      }
      view.setUint32(p + length - 4, length, true);
    });
  }

  write(interfaceId: number, tsSec: number, tsNsec: number, data: Uint8Array, origlen: number = data.length): void {
    if (this.closed) throw new Error(`${this.path}: write after close()`);
    const iface = this.interfaces[interfaceId];
    if (!Number.isInteger(interfaceId) || !iface) {
      throw new RangeError(`${this.path}: interface ${interfaceId} is not one of the ${this.interfaces.length} declared`);
    }
    const caplen = data.length;
    if (!Number.isInteger(tsSec) || tsSec < 0 || tsSec >= iface.maxSec) {
      throw new RangeError(`${this.path}: tsSec ${tsSec} is outside 0..${iface.maxSec - 1}`);
    }
    if (!Number.isInteger(tsNsec) || tsNsec < 0 || tsNsec >= 1e9) {
      throw new RangeError(`${this.path}: tsNsec ${tsNsec} is outside 0..999999999`);
    }
    if (caplen > iface.snaplen) throw new RangeError(`${this.path}: caplen ${caplen} exceeds snaplen ${iface.snaplen}`);
    if (!isUint32(origlen) || origlen < caplen) {
      throw new RangeError(`${this.path}: origlen ${origlen} is below caplen ${caplen} or not a u32`);
    }
    const padding = -caplen & 3;
    const length = PACKET_BLOCK_MIN_BYTES + caplen + padding;
    const out = this.out;
    const view = out.view;
    const p = out.reserve(28);
    view.setUint32(p, BLOCK_EPB, true);
    view.setUint32(p + 4, length, true);
    view.setUint32(p + 8, interfaceId, true);
    // tsSec·units can pass 2^53: split it as high·2^16 + low, each exact, then carry into two u32 words.
    const units = iface.unitsPerSecond;
    const secLow = tsSec % 65536;
    const high = ((tsSec - secLow) / 65536) * units;
    const highLow = high % 65536;
    const lowWord = highLow * 65536 + secLow * units + Math.floor(tsNsec / iface.nsPerUnit);
    view.setUint32(p + 12, (high - highLow) / 65536 + Math.floor(lowWord / 4294967296), true);
    view.setUint32(p + 16, lowWord % 4294967296, true);
    view.setUint32(p + 20, caplen, true);
    view.setUint32(p + 24, origlen, true);
    out.append(data);
    const q = out.reserve(padding + 4);
    out.buffer.fill(0, q, q + padding);
    view.setUint32(q + padding, length, true);
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
