import * as fs from 'node:fs';
import { readWithPcapParser, type ParserPacket } from './pcap-parser.js';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusDir, corpusIndexPath, readAll, seededRandom, type Written } from './captures.js';
import { CaptureError } from '../traces/errors.js';
import { createPcapWriter, openCapture, type CaptureRecord, type PcapWriterOptions } from '../traces/pcap.js';

const corpusMissing = `capture corpus not found: expected ${corpusIndexPath} (the vendored corpus of real pcap files)`;

/** One INDEX.txt line: "file | repo | path | bytes | scan | tshark | notes". */
interface CorpusEntry {
  file: string;
  format: string;
  timestampResolution: string;
  pkts: number;
  /** File offset of the record our reader must reject ("ERR: ... at <offset>"). */
  errorOffset?: number;
}

function parseCorpusIndex(text: string): CorpusEntry[] {
  return text
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
    .map((line) => {
      const [file, , , , scan] = line.split(' | ');
      const field = (key: string) => new RegExp(`\\b${key}=(\\S+)`).exec(scan)?.[1];
      const errorOffset = /ERR: .* at (\d+)/.exec(scan)?.[1];
      return {
        file,
        format: scan.split(' ')[0],
        timestampResolution: field('ts') ?? '',
        pkts: Number(field('pkts')),
        errorOffset: errorOffset === undefined ? undefined : Number(errorOffset),
      };
    });
}

const corpus = fs.existsSync(corpusIndexPath) ? parseCorpusIndex(fs.readFileSync(corpusIndexPath, 'utf8')) : undefined;
/** What pcap-parser can read: classic pcap with microsecond timestamps (it rejects the nanosecond magic). */
const classicMicrosecondFiles = (corpus ?? []).filter((e) => e.format === 'pcap' && e.timestampResolution === 'us');
const pcapngFiles = (corpus ?? []).filter((e) => e.format === 'pcapng');

function corpusEntry(file: string): CorpusEntry & { path: string } {
  if (!corpus) throw new Error(corpusMissing);
  const entry = corpus.find((e) => e.file === file);
  if (!entry) throw new Error(`${corpusIndexPath} does not list ${file}`);
  return { ...entry, path: path.join(corpusDir, file) };
}

/** Runs `read` and returns the CaptureError it throws. */
function captureErrorFrom(read: () => unknown): CaptureError {
  try {
    read();
  } catch (err) {
    expect(err).toBeInstanceOf(CaptureError);
    return err as CaptureError;
  }
  throw new Error('expected an CaptureError, nothing was thrown');
}

/**
 * Compares our records with pcap-parser's. Out-of-range fractions are
 * normalized on our side, so the expectation carries whole seconds too.
 */
function expectSameRecords(ours: CaptureRecord[], theirs: ParserPacket[], nsPerFraction: number): void {
  expect(ours.length).toBe(theirs.length);
  const mismatches: string[] = [];
  for (let i = 0; i < ours.length && mismatches.length < 5; i++) {
    const a = ours[i];
    const b = theirs[i];
    const ns = b.tsFraction * nsPerFraction;
    const expected = { tsSec: b.tsSec + Math.floor(ns / 1e9), tsNsec: ns % 1e9, caplen: b.caplen, origlen: b.origlen };
    const actual = { tsSec: a.tsSec, tsNsec: a.tsNsec, caplen: a.caplen, origlen: a.origlen };
    if (JSON.stringify(actual) !== JSON.stringify(expected) || !b.data.equals(a.data) || a.n !== i + 1) {
      mismatches.push(`record ${i + 1}: ours ${JSON.stringify(actual)}, pcap-parser ${JSON.stringify(expected)}`);
    }
  }
  expect(mismatches).toEqual([]);
}

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcpath-pcap-test-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

describe('corpus of real captures', () => {
  it('is present', () => {
    expect(corpus, corpusMissing).toBeDefined();
    expect(classicMicrosecondFiles.length).toBeGreaterThan(10);
    expect(pcapngFiles.length).toBeGreaterThan(0);
  });

  it.each(classicMicrosecondFiles.map((e) => e.file))('%s reads like pcap-parser', async (file) => {
    const entry = corpusEntry(file);
    const theirs = await readWithPcapParser(entry.path);
    const { reader, records, error } = readAll(entry.path);
    expect(reader.nanosecond).toBe(false);
    expect(theirs.length).toBe(entry.pkts);
    if (entry.errorOffset === undefined) {
      expect(error).toBeUndefined();
      expect(reader.bytesRead).toBe(reader.fileSize);
      expect(reader.recordsRead).toBe(entry.pkts);
      expectSameRecords(records, theirs, 1000);
    } else {
      // pcap-parser silently accepts the bad record; we stop there and keep what came before.
      expect(error).toBeInstanceOf(CaptureError);
      const bad = records.length + 1;
      expect((error as Error).message).toMatch(`${entry.path}: record ${bad} (offset ${entry.errorOffset}): caplen: `);
      expectSameRecords(records, theirs.slice(0, records.length), 1000);
    }
  });

  it('rejects aoe-oobr-1.pcap at record 1, whose caplen exceeds origlen and snaplen', () => {
    const { records, error } = readAll(corpusEntry('aoe-oobr-1.pcap').path);
    expect(records).toEqual([]);
    expect((error as Error).message).toMatch(/: record 1 \(offset 24\): caplen: 34 exceeds/);
  });

  it.each(['tcp-handshake-nano.pcap', 'nanosecs_big_endian.pcap', 'timestamp_invalid_nano.pcap'])(
    'nanosecond %s matches pcap-parser reading it under the microsecond magic',
    async (file) => {
      const entry = corpusEntry(file);
      const bytes = fs.readFileSync(entry.path);
      const magic = bytes.subarray(0, 4).toString('hex');
      bytes.write(magic === '4d3cb2a1' ? 'd4c3b2a1' : 'a1b2c3d4', 0, 'hex');
      const disguised = path.join(tmpDir, `as-usec-${file}`);
      fs.writeFileSync(disguised, bytes);

      const { reader, records, error } = readAll(entry.path);
      expect(error).toBeUndefined();
      expect(reader.nanosecond).toBe(true);
      expect(records.length).toBe(entry.pkts);
      expectSameRecords(records, await readWithPcapParser(disguised), 1);
      for (const r of records) {
        expect(new Date(r.tsSec * 1000).getUTCFullYear()).toBeGreaterThanOrEqual(2000);
        expect(new Date(r.tsSec * 1000).getUTCFullYear()).toBeLessThan(2040);
      }
      // Genuine nanosecond resolution, not microseconds scaled up.
      expect(records.some((r) => r.tsNsec % 1000 !== 0)).toBe(true);
    },
  );

  it('reads the plausible nanosecond files without warnings, in time order', () => {
    for (const file of ['tcp-handshake-nano.pcap', 'nanosecs_big_endian.pcap']) {
      const { reader, records } = readAll(corpusEntry(file).path);
      expect(reader.warnings).toEqual([]);
      const times = records.map((r) => r.tsSec * 1e9 + r.tsNsec);
      expect(times).toEqual([...times].sort((x, y) => x - y));
    }
  });

  it('normalizes the out-of-range fractions of timestamp_invalid_nano.pcap with a warning each', () => {
    const { path: file } = corpusEntry('timestamp_invalid_nano.pcap');
    const { reader, records } = readAll(file);
    // On disk: seconds 0x54872e59, 0x54872e5a, 0x54872e5a; fractions 999999999, 1000000000, 2147483648 ns.
    expect(records.map((r) => [r.tsSec, r.tsNsec])).toEqual([
      [0x54872e59, 999_999_999],
      [0x54872e5a + 1, 0],
      [0x54872e5a + 2, 147_483_648],
    ]);
    expect(reader.warnings).toEqual([
      `${file}: record 2 (offset 116): timestamp: fraction 1000000000 ns is not below 1 s; carried 1 s into the seconds`,
      `${file}: record 3 (offset 208): timestamp: fraction 2147483648 ns is not below 1 s; carried 2 s into the seconds`,
    ]);
  });

  it('reads lisp_invalid_length.pcap, whose snaplen is bogus, with a warning', () => {
    const { path: file } = corpusEntry('lisp_invalid_length.pcap');
    const { reader, records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(reader.snaplen).toBe(262144);
    expect(reader.warnings).toEqual([`${file}: global header: snaplen: 2164523008 is bogus; using 262144 as libpcap does`]);
    expect(records.map((r) => [r.caplen, r.origlen])).toEqual([[109, 65642]]);
  });

  it('reads big-endian pptp.pcap', () => {
    const { reader, records, error } = readAll(corpusEntry('pptp.pcap').path);
    expect(error).toBeUndefined();
    expect([reader.format, reader.linktype, reader.snaplen, reader.recordsRead]).toEqual(['pcap', 1, 65535, 23]);
    expect(records.every((r) => r.linktype === 1)).toBe(true);
  });

  it('reads the 80 KB BIG TCP frame of bigtcp-ipv4.pcap whole', () => {
    const { records } = readAll(corpusEntry('bigtcp-ipv4.pcap').path);
    expect(records.map((r) => [r.caplen, r.data.length])).toEqual([[80066, 80066]]);
  });

  it.each(pcapngFiles.map((e) => e.file))('opens pcapng %s with the pcapng reader', (file) => {
    const entry = corpusEntry(file);
    const { reader, records, error } = readAll(entry.path);
    expect(error).toBeUndefined();
    expect([reader.format, records.length]).toEqual(['pcapng', entry.pkts]);
  });
});

/** Writes a little-endian µs pcap with one record per size, returning the file's bytes for patching. */
function writeSynthetic(name: string, sizes: number[], opts: Partial<PcapWriterOptions> = {}) {
  const file = path.join(tmpDir, name);
  const writer = createPcapWriter(file, { linktype: 1, ...opts });
  sizes.forEach((size, i) => writer.write(1_700_000_000 + i, i * 1000, new Uint8Array(size).fill(i + 1)));
  writer.close();
  const bytes = fs.readFileSync(file);
  const offsets: number[] = [];
  for (let offset = 24, i = 0; i < sizes.length; offset += 16 + sizes[i++]) offsets.push(offset);
  return { file, bytes, offsets, save: (patched: Uint8Array) => fs.writeFileSync(file, patched) };
}

describe('malformed files', () => {
  it('rejects a file shorter than the global header', () => {
    const file = path.join(tmpDir, 'short-header.pcap');
    fs.writeFileSync(file, Buffer.from('d4c3b2a102000400', 'hex'));
    expect(captureErrorFrom(() => openCapture(file)).message).toBe(`${file}: global header: truncated: needs 24 bytes, file has 8`);
    fs.writeFileSync(file, Buffer.alloc(0));
    expect(captureErrorFrom(() => openCapture(file)).message).toBe(`${file}: global header: truncated: needs 24 bytes, file has 0`);
  });

  it('rejects an unknown magic, naming its bytes', () => {
    const file = path.join(tmpDir, 'not-a-capture.pcap');
    fs.writeFileSync(file, 'hello, this is not a capture file');
    expect(captureErrorFrom(() => openCapture(file)).message).toBe(
      `${file}: global header: magic: unknown magic 68656c6c: not a pcap or pcapng file`,
    );
  });

  it('rejects an unsupported version', () => {
    const { file, bytes, save } = writeSynthetic('version.pcap', [60]);
    bytes.writeUInt16LE(3, 4);
    save(bytes);
    expect(captureErrorFrom(() => openCapture(file)).message).toBe(`${file}: global header: version: 3.4 is not a pcap 2.x file`);
  });

  it('reports a missing file as an CaptureError', () => {
    const file = path.join(tmpDir, 'does-not-exist.pcap');
    expect(captureErrorFrom(() => openCapture(file)).message).toBe(`${file}: cannot open: ENOENT: no such file or directory`);
  });

  it('yields the good records, then rejects a truncated record header', () => {
    const { file, bytes, save } = writeSynthetic('short-record-header.pcap', [60, 70, 80]);
    save(Buffer.concat([bytes, Buffer.alloc(5)]));
    const { records, error } = readAll(file);
    expect(records.map((r) => r.caplen)).toEqual([60, 70, 80]);
    expect((error as Error).message).toBe(
      `${file}: record 4 (offset ${bytes.length}): truncated: record header needs 16 bytes, file ends after 5`,
    );
  });

  it('yields the good records, then rejects truncated record data', () => {
    const { file, bytes, offsets, save } = writeSynthetic('short-record-data.pcap', [60, 60, 60, 60, 60]);
    save(bytes.subarray(0, bytes.length - 48));
    const { records, error } = readAll(file);
    expect(records.map((r) => [r.n, r.offset, r.data[0], r.data[59]])).toEqual([
      [1, 24, 1, 1],
      [2, 100, 2, 2],
      [3, 176, 3, 3],
      [4, 252, 4, 4],
    ]);
    expect(error).toBeInstanceOf(CaptureError);
    expect((error as Error).message).toBe(`${file}: record 5 (offset ${offsets[4]}): truncated: caplen says 60 bytes, file ends after 12`);
  });

  it('rejects caplen above snaplen', () => {
    const { file, bytes, offsets, save } = writeSynthetic('caplen-over-snaplen.pcap', [80, 150]);
    bytes.writeUInt32LE(100, 16);
    save(bytes);
    const { records, error } = readAll(file);
    expect(records.length).toBe(1);
    expect((error as Error).message).toBe(`${file}: record 2 (offset ${offsets[1]}): caplen: 150 exceeds the snaplen 100`);
  });

  it('rejects caplen above origlen', () => {
    const { file, bytes, offsets, save } = writeSynthetic('caplen-over-origlen.pcap', [80, 150, 60]);
    bytes.writeUInt32LE(149, offsets[1] + 12);
    save(bytes);
    const { records, error } = readAll(file);
    expect(records.length).toBe(1);
    expect((error as Error).message).toBe(`${file}: record 2 (offset ${offsets[1]}): caplen: 150 exceeds origlen 149`);
  });

  it('rejects a record claiming 2 GiB at once, without allocating it', () => {
    const file = path.join(tmpDir, 'huge-record.pcap');
    const bytes = Buffer.alloc(24 + 16 + 100);
    bytes.write('d4c3b2a102000400', 0, 'hex');
    bytes.writeUInt32LE(2 ** 31, 16); // snaplen: the largest one that is not bogus
    bytes.writeUInt32LE(1, 20);
    bytes.writeUInt32LE(2 ** 31, 24 + 8);
    bytes.writeUInt32LE(2 ** 31, 24 + 12);
    fs.writeFileSync(file, bytes);
    const started = performance.now();
    const memoryBefore = process.memoryUsage().arrayBuffers;
    const { records, error } = readAll(file);
    expect(performance.now() - started).toBeLessThan(500);
    expect(process.memoryUsage().arrayBuffers - memoryBefore).toBeLessThan(64 << 20);
    expect(records).toEqual([]);
    expect((error as Error).message).toBe(
      `${file}: record 1 (offset 24): caplen: 2147483648 bytes is absurd (above 256 MiB); the file is corrupt`,
    );
  });

  it('substitutes 262144 for a zero snaplen, with a warning', () => {
    const { file, bytes, save } = writeSynthetic('zero-snaplen.pcap', [60, 1500]);
    bytes.writeUInt32LE(0, 16);
    save(bytes);
    const { reader, records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(records.length).toBe(2);
    expect(reader.snaplen).toBe(262144);
    expect(reader.warnings).toEqual([`${file}: global header: snaplen: 0 is bogus; using 262144 as libpcap does`]);
  });

  it('keeps the low 16 bits of a linktype field that carries an FCS length, with a warning', () => {
    const { file, bytes, save } = writeSynthetic('fcs-linktype.pcap', [60]);
    bytes.writeUInt32LE(0x14000001, 20); // FCS-length-present flag, FCS length 1 (16 bits), Ethernet
    save(bytes);
    const { reader, records } = readAll(file);
    expect([reader.linktype, records[0].linktype]).toEqual([1, 1]);
    expect(reader.warnings).toEqual([`${file}: global header: linktype: upper bits of 0x14000001 ignored`]);
  });

  it('carries a microsecond fraction of a second or more into the seconds, with a warning', () => {
    const { file, bytes, offsets, save } = writeSynthetic('usec-overflow.pcap', [60, 60]);
    bytes.writeUInt32LE(2_500_000, offsets[1] + 4);
    save(bytes);
    const { reader, records } = readAll(file);
    expect(records.map((r) => [r.tsSec, r.tsNsec])).toEqual([
      [1_700_000_000, 0],
      [1_700_000_003, 500_000_000],
    ]);
    expect(reader.warnings).toEqual([
      `${file}: record 2 (offset ${offsets[1]}): timestamp: fraction 2500000 µs is not below 1 s; carried 2 s into the seconds`,
    ]);
  });
});

/** Random records whose bytes are slices of one random pool, so generating them stays cheap. */
function randomRecords(count: number, maxSize: number, random: () => number): Written[] {
  const pool = new Uint8Array(maxSize + 4096);
  for (let i = 0; i < pool.length; i++) pool[i] = random() * 256;
  return Array.from({ length: count }, () => {
    const size = Math.floor(random() * (maxSize + 1));
    const start = Math.floor(random() * (pool.length - size));
    return {
      tsSec: 1_600_000_000 + Math.floor(random() * 1e8),
      tsNsec: Math.floor(random() * 1e9),
      data: pool.subarray(start, start + size),
      origlen: random() < 0.2 ? size + Math.floor(random() * 9000) : size,
    };
  });
}

function writeRecords(file: string, records: Written[], opts: PcapWriterOptions): void {
  const writer = createPcapWriter(file, opts);
  for (const r of records) writer.write(r.tsSec, r.tsNsec, r.data, r.origlen);
  writer.close();
}

/** Streams the file through our reader, comparing with what was written (µs files lose the sub-µs digits). */
function expectReadsBack(file: string, written: Written[], nanosecond: boolean): void {
  const reader = openCapture(file);
  const mismatches: string[] = [];
  try {
    expect(reader.nanosecond).toBe(nanosecond);
    let i = 0;
    for (const r of reader.records()) {
      const w = written[i++];
      const tsNsec = nanosecond ? w.tsNsec : Math.floor(w.tsNsec / 1000) * 1000;
      const same =
        r.tsSec === w.tsSec &&
        r.tsNsec === tsNsec &&
        r.caplen === w.data.length &&
        r.origlen === w.origlen &&
        Buffer.from(r.data.buffer, r.data.byteOffset, r.caplen).equals(w.data);
      if (!same && mismatches.length < 5) mismatches.push(`record ${r.n} at offset ${r.offset} differs`);
    }
    expect(mismatches).toEqual([]);
    expect(reader.recordsRead).toBe(written.length);
    expect(reader.bytesRead).toBe(reader.fileSize);
    expect(reader.warnings).toEqual([]);
  } finally {
    reader.close();
  }
}

function toParserPackets(written: Written[]): ParserPacket[] {
  return written.map((w) => ({
    tsSec: w.tsSec,
    tsFraction: Math.floor(w.tsNsec / 1000),
    caplen: w.data.length,
    origlen: w.origlen,
    data: Buffer.from(w.data),
  }));
}

describe('writer round trip', () => {
  it('writes microsecond files both readers read back', async () => {
    const written = randomRecords(500, 1514, seededRandom(1));
    const file = path.join(tmpDir, 'roundtrip-usec.pcap');
    writeRecords(file, written, { linktype: 1 });
    expectReadsBack(file, written, false);
    const ours = readAll(file).records;
    expectSameRecords(ours, await readWithPcapParser(file), 1000);
    expectSameRecords(ours, toParserPackets(written), 1000);
  });

  it('writes nanosecond files', () => {
    const written = randomRecords(500, 1514, seededRandom(2));
    const file = path.join(tmpDir, 'roundtrip-nsec.pcap');
    writeRecords(file, written, { linktype: 113, nanosecond: true });
    expectReadsBack(file, written, true);
    expect(readAll(file).reader.linktype).toBe(113);
  });

  it('round-trips a file many chunks long, with records bigger than the read chunk', async () => {
    const random = seededRandom(3);
    const written = randomRecords(20_000, 1500, random);
    // 100 KiB records straddle chunk boundaries; the 5 and 9 MiB ones outgrow the 4 MiB read buffer twice.
    for (const [at, size] of [
      [10, 100 << 10],
      [5000, 5 << 20],
      [5001, 100 << 10],
      [12_000, 9 << 20],
      [19_999, 100 << 10],
    ]) {
      const data = new Uint8Array(size);
      for (let i = 0; i < size; i += 4096) data[i] = random() * 256;
      written.splice(at, 0, { tsSec: 1_700_000_000, tsNsec: 123_456_789, data, origlen: size });
    }
    const file = path.join(tmpDir, 'roundtrip-big.pcap');
    writeRecords(file, written, { linktype: 1, snaplen: 16 << 20 });
    expect(fs.statSync(file).size).toBeGreaterThan(3 * (4 << 20));
    expectReadsBack(file, written, false);
    const theirs = await readWithPcapParser(file);
    expect(theirs.length).toBe(written.length);
    expect(theirs.every((p, i) => p.data.equals(written[i].data) && p.origlen === written[i].origlen)).toBe(true);
  });

  it('refuses records the reader would reject', () => {
    const writer = createPcapWriter(path.join(tmpDir, 'refused.pcap'), { linktype: 1, snaplen: 100 });
    expect(() => writer.write(0, 0, new Uint8Array(101))).toThrow(/caplen 101 exceeds snaplen 100/);
    expect(() => writer.write(0, 1e9, new Uint8Array(10))).toThrow(/tsNsec 1000000000 is outside/);
    expect(() => writer.write(0, 0, new Uint8Array(10), 9)).toThrow(/origlen 9 is below caplen 10/);
    writer.close();
    expect(() => writer.write(0, 0, new Uint8Array(10))).toThrow(/write after close/);
  });
});
