/**
 * The replay's zero-copy path (datapath/capture.ts): a classic pcap capture is
 * read in large chunks straight into linear memory, where the datapath walks
 * its records into the batch; after the batch, the datapath writes the
 * verdict lines and the output pcap records into output areas, and those go
 * to their files as they are. JavaScript touches no packet.
 *
 * The JavaScript reader (traces/pcap.ts) stays the judge of the format: a
 * record the walker will not take (a corrupt header, a timestamp to carry)
 * is checked by the reader's own code, with its own messages and warnings,
 * and added by the host.
 */
import type { Batch, Datapath } from './datapath.js';
import { FLOW_CHANGES, PCAP_F, REASONS, VERDICTS, WALK } from '../compile/layout.js';
import { WouldBlock } from '../../traces/chunked.js';
import type { PcapReader } from '../../traces/pcap.js';

const RECORD_HEADER_BYTES = 16;
const NANOS_PER_SECOND = 1_000_000_000n;

/**
 * Why PcapFeeder.fill returned: the batch is full, the next record is at or
 * after the stop time it was given, or the capture has ended.
 */
export type FillStop = 'full' | 'time' | 'ended';

/**
 * Feeds a classic pcap capture's records into batches, through the
 * datapath's walker. The bytes come from the reader's own stream, after the
 * global header and whatever the reader had buffered, so a pipe, standard
 * input and gzip take this path as a file does.
 */
export class PcapFeeder {
  private readonly chunk: number;
  /** Valid bytes in the chunk, and how many of them are consumed. */
  private len = 0;
  private consumed = 0;
  /** Capture offset of the chunk's first byte. */
  private chunkOffset: number;
  private eof = false;
  /** What ended the last read after some bytes had come (a gzip stream cut short): thrown once they are walked. */
  private failure?: unknown;
  private readonly format: number;
  recordsRead = 0;

  constructor(
    private readonly reader: PcapReader,
    private readonly dp: Datapath,
    /** At least one whole record of the largest size the batch takes. */
    private readonly chunkBytes: number,
  ) {
    this.chunk = dp.reserve(chunkBytes);
    this.chunkOffset = reader.bytesRead;
    this.format = (reader.littleEndian ? 0 : PCAP_F.BIG_ENDIAN) | (reader.nanosecond ? PCAP_F.NANOSECOND : 0);
  }

  /** Capture bytes consumed so far. */
  get bytesRead(): number {
    return this.chunkOffset + this.consumed;
  }

  /**
   * Adds records to the batch until it is full, the next record's time is
   * `stopAtNs` (nanoseconds) or later ('time': the next call, with a later
   * stop time or none, goes on from that record), or the capture has ended.
   * Throws InputError at a bad record; the batch holds the good ones before
   * it. A WouldBlock from a source that must not wait leaves the batch and
   * the feeder as they were: call again once data came.
   */
  fill(batch: Batch, stopAtNs?: bigint): FillStop {
    for (;;) {
      const before = batch.count;
      const walked = batch.walk(this.chunk, this.len, this.consumed, this.format, this.reader.snaplen, this.reader.linktype, stopAtNs);
      this.recordsRead += batch.count - before;
      this.consumed = walked.consumed;
      if (walked.stop === WALK.BATCH_FULL) return 'full';
      if (walked.stop === WALK.TIME_REACHED) return 'time';
      if (walked.stop === WALK.ANOMALY) {
        const judged = this.addJudged(batch, stopAtNs);
        if (judged !== 'walk on') return judged;
        continue;
      }
      // WALK.NEED_DATA: the rest of the chunk is part of a record.
      if (this.consumed === 0 && this.len === this.chunkBytes) return 'full'; // one larger than any batch takes
      const left = this.len - this.consumed;
      if (this.eof) {
        if (left === 0) return 'ended';
        if (left < RECORD_HEADER_BYTES) throw this.reader.truncatedHeader(this.recordsRead + 1, this.bytesRead, left);
        const { caplen } = this.header();
        throw this.reader.truncatedData(this.recordsRead + 1, this.bytesRead, caplen, left - RECORD_HEADER_BYTES);
      }
      this.readMore();
    }
  }

  /**
   * Moves the unconsumed tail to the chunk's start and reads after it until
   * the chunk is full, the capture ends, a read gives less than asked (no
   * more has come yet), or the source fails: what did arrive is walked
   * first.
   */
  private readMore(): void {
    if (this.failure !== undefined) throw this.failure;
    const mem = new Uint8Array(this.dp.memory);
    const left = this.len - this.consumed;
    mem.copyWithin(this.chunk, this.chunk + this.consumed, this.chunk + this.len);
    this.chunkOffset += this.consumed;
    this.consumed = 0;
    this.len = left;
    while (this.len < this.chunkBytes) {
      const wanted = this.chunkBytes - this.len;
      let got: number;
      try {
        got = this.reader.readRest(mem, this.chunk + this.len, wanted);
      } catch (e) {
        if (this.len === left) throw e;
        if (!(e instanceof WouldBlock)) this.failure = e;
        return;
      }
      if (got === 0) {
        this.eof = true;
        return;
      }
      this.len += got;
      // A short read: no more has come yet (a pipe, the gunzip thread); walk what has, while more comes.
      if (got < wanted) return;
    }
  }

  /** The next record's time in nanoseconds, as its header states: where fill stopped at 'time'. */
  nextTime(): bigint {
    const view = new DataView(this.dp.memory);
    const at = this.chunk + this.consumed;
    const fraction = view.getUint32(at + 4, this.reader.littleEndian);
    return (
      BigInt(view.getUint32(at, this.reader.littleEndian)) * NANOS_PER_SECOND + BigInt(this.reader.nanosecond ? fraction : fraction * 1000)
    );
  }

  /** The captured length the next record's header states, unchecked. */
  nextCaplen(): number {
    return new DataView(this.dp.memory).getUint32(this.chunk + this.consumed + 8, this.reader.littleEndian);
  }

  /** The next record's header, checked by the reader (which throws for a corrupt one, and warns once per record). */
  private header() {
    const view = new DataView(this.dp.memory);
    return this.reader.recordHeader(this.recordsRead + 1, this.bytesRead, view, this.chunk + this.consumed);
  }

  /**
   * The record the walker left to the host: checked by the reader, then added
   * as the reader reads it ('walk on': added, or more data read to judge it).
   * 'full' when the batch has no room for it yet, 'time' when its time, as
   * the reader reads it, is the stop time or later.
   */
  private addJudged(batch: Batch, stopAtNs: bigint | undefined): 'walk on' | 'full' | 'time' {
    const offset = this.bytesRead;
    const record = this.header();
    if (this.len - this.consumed < RECORD_HEADER_BYTES + record.caplen) {
      if (this.eof)
        throw this.reader.truncatedData(this.recordsRead + 1, offset, record.caplen, this.len - this.consumed - RECORD_HEADER_BYTES);
      this.readMore();
      return 'walk on';
    }
    if (stopAtNs !== undefined && BigInt(record.tsSec) * NANOS_PER_SECOND + BigInt(record.tsNsec) >= stopAtNs) return 'time';
    const start = this.chunk + this.consumed + RECORD_HEADER_BYTES;
    const data = new Uint8Array(this.dp.memory, start, record.caplen);
    if (!batch.add(data, record.origlen, record.tsSec, record.tsNsec, this.reader.linktype)) return 'full';
    this.consumed += RECORD_HEADER_BYTES + record.caplen;
    this.recordsRead++;
    return 'walk on';
  }
}

const utf8 = new TextEncoder();

/** A string table as verdicts_emit reads it: count, (offset, length) pairs, bytes. */
function stringTable(strings: readonly string[]): Uint8Array {
  const bytes = strings.map((s) => utf8.encode(s));
  const head = 4 + 8 * bytes.length;
  const table = new Uint8Array(head + bytes.reduce((n, b) => n + b.length, 0));
  const view = new DataView(table.buffer);
  view.setUint32(0, bytes.length, true);
  let at = head;
  bytes.forEach((b, i) => {
    view.setUint32(4 + 8 * i, at, true);
    view.setUint32(8 + 8 * i, b.length, true);
    table.set(b, at);
    at += b.length;
  });
  return table;
}

/** The fixed text of a verdict line, without its five values. */
const LINE_FRAME = '{"n":,"verdict":"","reason":"","service":,"backend":,"snat":false}\n'.length;
const MAX_DECIMAL_DIGITS = 20;
/** With cluster changes: the state (an i32) and the longest flow change. */
const STATE_FIELDS = ',"state":,"flowChange":""'.length + String(2 ** 31 - 1).length + Math.max(...FLOW_CHANGES.map((c) => c.length));

/** The longest verdict line these service and backend JSON values can make, in bytes, with a state and flow change. */
export function maxVerdictLine(serviceJson: readonly string[], backendJson: readonly string[]): number {
  const longest = (list: readonly string[]) => Math.max(...list.map((s) => utf8.encode(s).length));
  return (
    LINE_FRAME + MAX_DECIMAL_DIGITS + STATE_FIELDS + longest(VERDICTS) + longest(REASONS) + longest(serviceJson) + longest(backendJson)
  );
}

/** verdicts_emit's table of string tables: the addresses of the verdicts', reasons', services' and backends' (datapath VT_*). */
const VT = { VERDICTS: 0, REASONS: 4, SERVICES: 8, BACKENDS: 12 } as const;

/**
 * The datapath's verdict-line writer: string tables of verdict and reason
 * names and of every service's and backend's JSON value in linear memory,
 * and an output area for a batch's lines. The service and backend values
 * change with the cluster (setValues).
 */
export class VerdictWriter {
  private readonly tables: number;
  private maxLine = 0;
  private out = 0;
  private capacity = 0;
  private readonly scratch: number;
  /** Where the service and backend tables lie, and the bytes reserved there. */
  private valuesAt = 0;
  private valuesRoom = 0;

  constructor(
    private readonly dp: Datapath,
    serviceJson: readonly string[],
    backendJson: readonly string[],
    private readonly maxFrames: number,
  ) {
    this.tables = dp.reserve(16);
    this.scratch = dp.reserve(8);
    for (const [slot, names] of [
      [VT.VERDICTS, VERDICTS],
      [VT.REASONS, REASONS],
    ] as const) {
      const table = stringTable(names);
      this.place(slot, table, dp.reserve(table.length));
    }
    this.setValues(serviceJson, backendJson);
  }

  /**
   * The JSON values that name services and backends by id from now on (a
   * cluster change gives new ones): written over the last ones when they
   * fit there, else where more room is reserved; the output area grows with
   * the longest line.
   */
  setValues(serviceJson: readonly string[], backendJson: readonly string[]): void {
    const services = stringTable(serviceJson);
    const backends = stringTable(backendJson);
    const bytes = services.length + backends.length;
    if (bytes > this.valuesRoom) {
      // Reserved memory is never given back: room to spare, so that growing tables rarely reserve again.
      this.valuesRoom = Math.max(bytes, 2 * this.valuesRoom);
      this.valuesAt = this.dp.reserve(this.valuesRoom);
    }
    this.place(VT.SERVICES, services, this.valuesAt);
    this.place(VT.BACKENDS, backends, this.valuesAt + services.length);
    this.maxLine = maxVerdictLine(serviceJson, backendJson);
    if (this.maxLine > this.capacity) {
      this.capacity = Math.max(this.maxLine, Math.min(this.maxFrames, 4096) * this.maxLine);
      this.out = this.dp.reserve(this.capacity);
    }
  }

  /** Copies a string table to `at` and points verdicts_emit's entry `slot` at it. */
  private place(slot: number, table: Uint8Array, at: number): void {
    new Uint8Array(this.dp.memory).set(table, at);
    new DataView(this.dp.memory).setUint32(this.tables + slot, at, true);
  }

  /**
   * Writes the lines of frames from..count of the batch, numbered from
   * firstN, handing each full output area to `sink`; `lengths` (when given)
   * gets each line's length, 0 for another worker's frame. With cluster
   * changes, `state` (0 or more) is the state the batch was decided under:
   * each line says it, and the flow change of a flagged frame.
   */
  write(batch: Batch, firstN: number, sink: (bytes: Uint8Array) => void, lengths = 0, state = -1): void {
    for (let from = 0; from < batch.count; ) {
      from = this.dp.exports.verdicts_emit(
        batch.descBase,
        from,
        batch.count,
        BigInt(firstN),
        this.tables,
        this.maxLine,
        this.out,
        this.capacity,
        this.scratch,
        lengths,
        state,
      );
      const written = new DataView(this.dp.memory).getUint32(this.scratch, true);
      sink(new Uint8Array(this.dp.memory, this.out, written));
    }
  }
}

/** The datapath's pcap record writer for the sent frames of a batch. */
export class PcapRecordWriter {
  private readonly out: number;
  private readonly scratch: number;

  constructor(
    private readonly dp: Datapath,
    private readonly capacity: number,
  ) {
    this.out = dp.reserve(capacity);
    this.scratch = dp.reserve(8);
  }

  /**
   * Writes the records of the batch's sent frames (TX, REDIRECT) from `from`
   * on, handing them to `sink`; returns the index of the first frame it could
   * not write (its timestamp does not fit classic pcap), or the batch's count.
   */
  write(batch: Batch, nanosecond: boolean, sink: (bytes: Uint8Array) => void, from = 0): number {
    while (from < batch.count) {
      const next = this.dp.exports.pcap_emit(batch.descBase, from, batch.count, nanosecond ? 1 : 0, this.out, this.capacity, this.scratch);
      const written = new DataView(this.dp.memory).getUint32(this.scratch, true);
      if (written > 0) sink(new Uint8Array(this.dp.memory, this.out, written));
      if (next === from) return next; // the frame at `from` cannot be written
      from = next;
    }
    return from;
  }
}
