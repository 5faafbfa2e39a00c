import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { corpusDir, corpusIndexPath, readAll, seededRandom, type Written } from './captures.js';
import { CaptureError } from '../traces/errors.js';
import { createPcapWriter, openCapture, type CaptureRecord } from '../traces/pcap.js';
import { createPcapngWriter, PcapngReader, type PcapngWriterInterface } from '../traces/pcapng.js';

let tmpDir: string;
beforeAll(() => {
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'svcpath-pcapng-test-'));
});
afterAll(() => {
  fs.rmSync(tmpDir, { recursive: true, force: true });
});

function pcapngReader(reader: unknown): PcapngReader {
  expect(reader).toBeInstanceOf(PcapngReader);
  return reader as PcapngReader;
}

/** Runs `read` and returns the message of the CaptureError it throws. */
function captureErrorFrom(read: () => unknown): string {
  try {
    read();
  } catch (err) {
    expect(err).toBeInstanceOf(CaptureError);
    return (err as Error).message;
  }
  throw new Error('expected an CaptureError, nothing was thrown');
}

function md5(text: string | Uint8Array): string {
  return createHash('md5').update(text).digest('hex');
}

/** As tshark prints frame.time_epoch. */
function epoch(r: { tsSec: number; tsNsec: number }): string {
  return `${r.tsSec}.${String(r.tsNsec).padStart(9, '0')}`;
}

const BLOCK_SHB = 0x0a0d0d0a;
const IF_TSRESOL = 9;
const IF_TSOFFSET = 14;

/** Builds pcapng blocks from the spec by hand, in either byte order, including ones our writer would refuse. */
function encoder(bigEndian: boolean) {
  const u16 = (v: number) => {
    const b = Buffer.alloc(2);
    if (bigEndian) b.writeUInt16BE(v);
    else b.writeUInt16LE(v);
    return b;
  };
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    if (bigEndian) b.writeUInt32BE(v);
    else b.writeUInt32LE(v);
    return b;
  };
  const i64 = (v: bigint) => {
    const b = Buffer.alloc(8);
    if (bigEndian) b.writeBigInt64BE(v);
    else b.writeBigInt64LE(v);
    return b;
  };
  const padded = (b: Buffer) => Buffer.concat([b, Buffer.alloc(-b.length & 3)]);
  const block = (type: number, ...parts: Buffer[]) => {
    const body = padded(Buffer.concat(parts));
    return Buffer.concat([u32(type), u32(12 + body.length), body, u32(12 + body.length)]);
  };
  const timestamp = (ts: bigint) => [u32(Number(ts >> 32n)), u32(Number(ts & 0xffffffffn))];
  return {
    u32,
    i64,
    block,
    shb: (major = 1, minor = 0) => block(BLOCK_SHB, u32(0x1a2b3c4d), u16(major), u16(minor), i64(-1n)),
    idb: (linktype: number, snaplen = 0, options: Array<[number, Buffer]> = []) =>
      block(
        1,
        u16(linktype),
        u16(0),
        u32(snaplen),
        ...options.flatMap(([code, value]) => [u16(code), u16(value.length), padded(value)]),
        ...(options.length > 0 ? [u32(0)] : []),
      ),
    epb: (iface: number, ts: bigint, data: Buffer, origlen = data.length) =>
      block(6, u32(iface), ...timestamp(ts), u32(data.length), u32(origlen), data),
    pb: (iface: number, ts: bigint, data: Buffer, origlen = data.length) =>
      block(2, u16(iface), u16(0), ...timestamp(ts), u32(data.length), u32(origlen), data),
    spb: (origlen: number, data: Buffer) => block(3, u32(origlen), data),
  };
}
const le = encoder(false);
const be = encoder(true);
const tsresol = (value: number): [number, Buffer] => [IF_TSRESOL, Buffer.from([value])];

function frame(size: number, fill: number): Buffer {
  return Buffer.alloc(size, fill);
}

/** Writes the blocks to a file, returning it and each block's offset. */
function saveBlocks(name: string, blocks: Buffer[]) {
  const file = path.join(tmpDir, name);
  fs.writeFileSync(file, Buffer.concat(blocks));
  const offsets: number[] = [];
  let offset = 0;
  for (const b of blocks) {
    offsets.push(offset);
    offset += b.length;
  }
  return { file, offsets };
}

/**
 * The corpus facts, confirmed with tshark 4.0 (`tshark -r FILE -T fields -e frame.interface_id
 * -e frame.time_epoch -e frame.len -e frame.cap_len -e frame.encap_type`, and
 * `-o frame.generate_md5_hash:TRUE -e frame.md5_hash`) and by decoding the blocks by hand.
 */
interface CorpusFacts {
  packets: number;
  /** Interface Description Blocks in the whole file. */
  interfaces: number;
  linktype: number;
  snaplen: number;
  nanosecond: boolean;
  /** Packets per link type. */
  linktypes: Record<number, number>;
  /** md5 of the "time_epoch\tframe.len\tframe.cap_len\n" lines tshark prints. */
  timesAndLengths?: string;
  /** md5 of the concatenated hex md5 of every packet's captured bytes (tshark's frame.md5_hash). */
  data: string;
}

const corpusFacts: Record<string, CorpusFacts> = {
  'empty.pcapng': {
    packets: 0,
    interfaces: 1,
    linktype: 1,
    snaplen: 262144,
    nanosecond: false,
    linktypes: {},
    timesAndLengths: md5(''),
    data: md5(''),
  },
  // One EPB whose µs timestamp is 4294967296000000 (high word 1000000, low 0): exactly 2^32 s, 2106-02-07.
  'time_2106_overflow.pcapng': {
    packets: 1,
    interfaces: 1,
    linktype: 1,
    snaplen: 262144,
    nanosecond: false,
    linktypes: { 1: 1 },
    timesAndLengths: 'ed0f0510e4179bc60a8321019ab95f4a',
    data: '51f5eef6332590c8b04bcedcb617f822',
  },
  // Interface 0 (Ethernet, if_tsresol 9) carries packets 1-59; then an ISB, then interface 1 (LINUX_SLL,
  // snaplen 0, no if_tsresol so µs) carries 60-159, 39 of them cut to 128 bytes.
  'pcapng-example.pcapng': {
    packets: 159,
    interfaces: 2,
    linktype: 1,
    snaplen: 262144,
    nanosecond: true,
    linktypes: { 1: 59, 113: 100 },
    timesAndLengths: 'e23a879eb766de9b398536514619261d',
    data: 'f4bad7e4dff6674ec656d3d4da610ea9',
  },
  // 11 IDBs (µs): Ethernet ×8, NULL ×2 (interfaces 4 and 10), RAW ×1; packets only on interfaces 0 and 10.
  'many_interfaces-1.pcapng': {
    packets: 64,
    interfaces: 11,
    linktype: 1,
    snaplen: 262144,
    nanosecond: false,
    linktypes: { 1: 62, 0: 2 },
    timesAndLengths: '6d9aa06e5516d530a141bf6362854691',
    data: '164094d86ead4477ec62c02d047e51b3',
  },
  // Three sections (BE, LE, BE) with 2, 1 and 2 interfaces. Its SPBs have no timestamp, which tshark
  // leaves blank, so the times are checked record by record below instead of by digest.
  'test202.pcapng': {
    packets: 8,
    interfaces: 5,
    linktype: 1,
    snaplen: 96,
    nanosecond: false,
    linktypes: { 1: 6, 0: 2 },
    data: '7075129736628c46fbdde45bbd989f35',
  },
  // if_tsresol 0x88 = 2^-8 s: 388896768050 / 256 = 1519128000.1953125 s exactly. snaplen 0 = unlimited.
  'test902.pcapng': {
    packets: 1,
    interfaces: 1,
    linktype: 1,
    snaplen: 262144,
    nanosecond: false,
    linktypes: { 1: 1 },
    timesAndLengths: '48a5051b7f1d472010bbd08ba847edc3',
    data: '10930320604f21071af8d50dea2a1df6',
  },
};

/** The pcapng lines of INDEX.txt ("file | repo | path | bytes | scan | tshark | notes"), with the scan's pkts. */
function corpusPcapngFiles(): Array<{ file: string; pkts: number }> {
  return fs
    .readFileSync(corpusIndexPath, 'utf8')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'))
    .map((line) => line.split(' | '))
    .filter(([, , , , scan]) => scan.startsWith('pcapng '))
    .map(([file, , , , scan]) => ({ file, pkts: Number(/\bpkts=(\d+)/.exec(scan)?.[1]) }));
}

describe('corpus of real pcapng captures', () => {
  const indexed = fs.existsSync(corpusIndexPath) ? corpusPcapngFiles() : [];

  it('is present, with facts for every pcapng file', () => {
    expect(indexed.map((e) => e.file).sort()).toEqual(Object.keys(corpusFacts).sort());
  });

  it.each(indexed)('$file reads as tshark reads it', ({ file, pkts }) => {
    const facts = corpusFacts[file];
    const { reader, records, error } = readAll(path.join(corpusDir, file));
    expect(error).toBeUndefined();
    // INDEX.txt's scan counts packets; for test202.pcapng it says 8 where tshark says 11, and 8 is right:
    // tshark also shows its three custom blocks (0xbad, 0x40000bad twice) as frames without an interface.
    // Decoded: 6 EPBs and 2 SPBs.
    expect(records.length).toBe(pkts);
    expect(records.length).toBe(facts.packets);
    expect([reader.format, reader.linktype, reader.snaplen, reader.nanosecond]).toEqual([
      'pcapng',
      facts.linktype,
      facts.snaplen,
      facts.nanosecond,
    ]);
    expect(pcapngReader(reader).interfacesRead).toBe(facts.interfaces);
    expect([reader.recordsRead, reader.bytesRead, reader.warnings]).toEqual([facts.packets, reader.fileSize, []]);
    const linktypes: Record<number, number> = {};
    for (const r of records) linktypes[r.linktype] = (linktypes[r.linktype] ?? 0) + 1;
    expect(linktypes).toEqual(facts.linktypes);
    expect(records.map((r) => r.n)).toEqual(records.map((_, i) => i + 1));
    expect(records.every((r) => r.data.length === r.caplen && r.caplen <= r.origlen)).toBe(true);
    if (facts.timesAndLengths) {
      expect(md5(records.map((r) => `${epoch(r)}\t${r.origlen}\t${r.caplen}\n`).join(''))).toBe(facts.timesAndLengths);
    }
    expect(md5(records.map((r) => md5(r.data)).join(''))).toBe(facts.data);
  });

  it('reads time_2106_overflow.pcapng past 2^32 seconds', () => {
    const { records } = readAll(path.join(corpusDir, 'time_2106_overflow.pcapng'));
    expect(records.map((r) => [r.tsSec, r.tsNsec, r.caplen])).toEqual([[4294967296, 0, 98]]);
    expect(new Date(records[0].tsSec * 1000).toISOString()).toBe('2106-02-07T06:28:16.000Z');
  });

  it('reads pcapng-example.pcapng at ns then µs resolution, with the timestamps the file really holds', () => {
    const { records } = readAll(path.join(corpusDir, 'pcapng-example.pcapng'));
    expect([1, 2, 59, 60, 159].map((n) => [epoch(records[n - 1]), records[n - 1].linktype])).toEqual([
      ['1422527998.578402281', 1],
      // Implausible but encoded so (tshark agrees): 2894531997938836488 ns, in 2061.
      ['2894531997.938836488', 1],
      ['1422528033.092194163', 1],
      // Interface 1 counts 18446744073204126329 µs, 2^64 minus 505 s: a negative time written unsigned.
      ['18446744073204.126329000', 113],
      ['18446744073204.277451000', 113],
    ]);
    expect(records.filter((r) => r.caplen < r.origlen).length).toBe(39);
    const years = records.slice(0, 59).map((r) => new Date(r.tsSec * 1000).getUTCFullYear());
    expect(years.filter((y) => y !== 2015)).toEqual([2061]);
  });

  it('reads many_interfaces-1.pcapng, whose packets use interfaces 0 (Ethernet) and 10 (NULL)', () => {
    const { records } = readAll(path.join(corpusDir, 'many_interfaces-1.pcapng'));
    expect(records.filter((r) => r.linktype === 0).map((r) => [r.n, epoch(r)])).toEqual([
      [3, '1439753725.701568000'],
      [4, '1439753725.701822000'],
    ]);
    expect(records.every((r) => new Date(r.tsSec * 1000).toISOString().startsWith('2015-08-16T19:35'))).toBe(true);
  });

  it('reads test202.pcapng across its big- and little-endian sections', () => {
    const { records } = readAll(path.join(corpusDir, 'test202.pcapng'));
    // [block offset, time, origlen, caplen, linktype]. Sections start at 0 (BE), 928 (LE) and 2128 (BE).
    // The SPBs (1108, 1824) take the previous packet's time; their caplen is interface 0's snaplen, 128.
    expect(records.map((r) => [r.offset, epoch(r), r.origlen, r.caplen, r.linktype])).toEqual([
      [448, '1340954905.298858000', 314, 96, 1],
      [600, '1340954905.298858000', 342, 96, 1],
      [728, '1340954905.301858000', 168, 168, 0],
      [1108, '1340954905.301858000', 314, 128, 1],
      [1252, '1340954905.298858000', 342, 128, 1],
      [1824, '1340954905.298858000', 314, 128, 1],
      [1968, '1340954905.298858000', 342, 128, 1],
      [2708, '1340954905.301858000', 168, 168, 0],
    ]);
    // LINKTYPE_NULL: AF_INET (2) in the capturing host's byte order, little-endian though the section is not.
    expect([...records[2].data.subarray(0, 4)]).toEqual([2, 0, 0, 0]);
  });

  it('reads test902.pcapng, whose if_tsresol is 2^-8 s', () => {
    const { records } = readAll(path.join(corpusDir, 'test902.pcapng'));
    expect(records.map((r) => [r.tsSec, r.tsNsec])).toEqual([[1519128000, 195_312_500]]);
  });
});

describe('reading', () => {
  it('keeps byte order and interfaces per section, and skips the blocks that carry no packet', () => {
    const { file, offsets } = saveBlocks('sections.pcapng', [
      le.shb(),
      le.idb(1, 0, [tsresol(9)]),
      le.epb(0, 1_700_000_000_123_456_789n, frame(60, 1)),
      le.block(4, le.u32(0)), // Name Resolution: just the end of records
      le.block(5, le.u32(0), le.u32(0), le.u32(0)), // Interface Statistics
      be.shb(),
      be.idb(113),
      be.idb(0, 0, [tsresol(3)]),
      be.block(10, be.u32(0x544c534b), be.u32(4), Buffer.from('keys')), // Decryption Secrets
      be.block(0xbad, be.u32(32473), Buffer.from('copy me')),
      be.epb(1, 1_700_000_001_500n, frame(40, 2)),
      be.block(0x40000bad, be.u32(32473), Buffer.from('do not copy me')),
      be.block(0x12345678, Buffer.from('unknown')),
      be.pb(0, 1_700_000_002_000_001n, frame(100, 3), 1500),
      le.shb(),
      le.idb(12),
      le.spb(80, frame(80, 4)),
    ]);
    const { reader, records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(records.map((r) => [r.n, r.offset, r.tsSec, r.tsNsec, r.caplen, r.origlen, r.linktype, r.data[0]])).toEqual([
      [1, offsets[2], 1_700_000_000, 123_456_789, 60, 60, 1, 1],
      [2, offsets[10], 1_700_000_001, 500_000_000, 40, 40, 0, 2],
      [3, offsets[13], 1_700_000_002, 1000, 100, 1500, 113, 3],
      [4, offsets[16], 1_700_000_002, 1000, 80, 80, 12, 4],
    ]);
    expect([reader.linktype, reader.snaplen, reader.nanosecond, pcapngReader(reader).interfacesRead]).toEqual([1, 262144, true, 4]);
  });

  it('sizes Simple Packet Blocks by original length, block room and snaplen, timed like the packet before', () => {
    const { file } = saveBlocks('spb.pcapng', [
      le.shb(),
      le.idb(1, 64),
      le.spb(100, frame(60, 1)), // cut by the writer: room 60
      le.spb(50, frame(52, 2)), // padded: origlen 50
      le.spb(100, frame(80, 3)), // more room than snaplen 64
      le.epb(0, 1_700_000_000_000_007n, frame(10, 4)),
      le.spb(10, frame(12, 5)),
    ]);
    const { records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(records.map((r) => [r.caplen, r.origlen, r.data.length, r.data[0], r.tsSec, r.tsNsec])).toEqual([
      [60, 100, 60, 1, 0, 0],
      [50, 50, 50, 2, 0, 0],
      [64, 100, 64, 3, 0, 0],
      [10, 10, 10, 4, 1_700_000_000, 7000],
      [10, 10, 10, 5, 1_700_000_000, 7000],
    ]);
  });

  it('converts every resolution exactly, as BigInt arithmetic does, past 2106 included', () => {
    const random = seededRandom(7);
    const u64 = () => (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
    // 10^0 .. 10^-12 s, then 2^-1, 2^-8, 2^-20, 2^-32 and 2^-64 s.
    const resolutions = [...Array.from({ length: 13 }, (_, k) => k), ...[1, 8, 20, 32, 64].map((e) => 0x80 | e)];
    const blocks = [le.shb(), ...resolutions.map((r) => le.idb(1, 0, [tsresol(r)]))];
    const expected: string[] = [];
    resolutions.forEach((r, iface) => {
      const perSecond = (r & 0x80 ? 2n : 10n) ** BigInt(r & 0x7f);
      // Seconds must stay below 2^53 to be plain numbers, which only bounds the coarsest resolutions.
      let bound = 2n ** 53n * perSecond;
      if (bound > 2n ** 64n) bound = 2n ** 64n;
      const samples = [0n, 1n, bound - 1n, perSecond - 1n, perSecond, 2n ** 32n * perSecond, 2n ** 53n, 2n ** 63n];
      for (let i = 0; i < 300; i++) samples.push(u64() % bound);
      for (const ts of samples.filter((s) => s < bound)) {
        blocks.push(le.epb(iface, ts, frame(1, 0)));
        const ns = ((ts % perSecond) * 1_000_000_000n) / perSecond;
        expected.push(`${ts / perSecond}.${String(ns).padStart(9, '0')}`);
      }
    });
    const { file } = saveBlocks('resolutions.pcapng', blocks);
    const { reader, records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(reader.nanosecond).toBe(true); // 10^-7 s and finer are among the leading interfaces
    expect(records.map(epoch)).toEqual(expected);
    expect(records.some((r) => r.tsSec > 2 ** 32)).toBe(true);
  });

  it('adds if_tsoffset, which may be negative', () => {
    const { file } = saveBlocks('tsoffset.pcapng', [
      le.shb(),
      le.idb(1, 0, [[IF_TSOFFSET, le.i64(1_000_000_000n)]]),
      le.idb(1, 0, [tsresol(9), [IF_TSOFFSET, le.i64(-100n)]]),
      le.epb(0, 700_000_000_250_000n, frame(1, 0)),
      le.epb(1, 1_700_000_000_000_000_001n, frame(1, 0)),
      le.epb(1, 50_000_000_000n, frame(1, 0)),
    ]);
    expect(readAll(file).records.map((r) => [r.tsSec, r.tsNsec])).toEqual([
      [1_700_000_000, 250_000_000],
      [1_699_999_900, 1],
      [-50, 0],
    ]);
  });

  it.each([
    ['µs and ns', [[], [tsresol(9)]], [], true],
    ['2^-20 s (finer than µs)', [[tsresol(0x80 | 20)]], [], true],
    ['2^-19 s (coarser than µs)', [[tsresol(0x80 | 19)]], [], false],
    ['ms', [[tsresol(3)]], [], false],
    ['µs, with ns declared after the first packet', [[]], [tsresol(9)], false],
  ] as Array<[string, Array<Array<[number, Buffer]>>, Array<[number, Buffer]>, boolean]>)(
    'says nanosecond from the interfaces before the first packet: %s',
    (_, leading, late, nanosecond) => {
      const { file } = saveBlocks('nanosecond.pcapng', [
        le.shb(),
        ...leading.map((options) => le.idb(1, 0, options)),
        le.epb(0, 0n, frame(1, 0)),
        le.idb(1, 0, late),
        le.shb(),
        le.idb(1, 0, [tsresol(9)]), // another section's interfaces do not count
      ]);
      expect(readAll(file).reader.nanosecond).toBe(nanosecond);
    },
  );

  it('describes a file without interfaces as Ethernet, snaplen 262144', () => {
    const { file } = saveBlocks('no-interfaces.pcapng', [le.shb(), le.shb(), le.idb(113, 100)]);
    const { reader, records, error } = readAll(file);
    expect([error, records, reader.linktype, reader.snaplen, reader.nanosecond]).toEqual([undefined, [], 1, 262144, false]);
  });
});

describe('malformed files', () => {
  /** Two good packets in four blocks (SHB, IDB, EPB, EPB), so the bad block is block 5 or later. */
  const good = [le.shb(), le.idb(1, 0), le.epb(0, 1_700_000_000_000_000n, frame(60, 1)), le.epb(0, 1_700_000_001_000_000n, frame(60, 2))];
  const goodBytes = Buffer.concat(good).length;
  const headerOnly = (type: number, length: number, bodyBytes: number) =>
    Buffer.concat([le.u32(type), le.u32(length), Buffer.alloc(bodyBytes)]);
  const withTrailer = (block: Buffer, trailer: number) => {
    const copy = Buffer.from(block);
    copy.writeUInt32LE(trailer, copy.length - 4);
    return copy;
  };
  const withField = (block: Buffer, at: number, value: number) => {
    const copy = Buffer.from(block);
    copy.writeUInt32LE(value, at);
    return copy;
  };
  const epb60 = le.epb(0, 1_700_000_002_000_000n, frame(60, 3));
  const manyInterfaces = Array.from({ length: 65537 }, () => le.idb(1));

  /** [what, blocks after the good ones, index among them of the bad one, problem]. */
  const cases: Array<[string, Buffer[], number, string]> = [
    ['a block total length not a multiple of 4', [headerOnly(4, 30, 22)], 0, 'block total length: 30 is not a multiple of 4'],
    ['a block total length below 12', [headerOnly(4, 8, 0), epb60], 0, 'block total length: 8 is below the 12-byte minimum'],
    [
      'a trailing block total length unlike the leading one',
      [withTrailer(le.block(5, Buffer.alloc(8)), 24)],
      0,
      'trailing block total length: 24 differs from the leading 20',
    ],
    ['a block running past the end of file', [epb60.subarray(0, 50)], 0, 'truncated: block total length says 92 bytes, file ends after 50'],
    ['a truncated block header', [Buffer.alloc(5)], 0, 'truncated: a block header needs 8 bytes, file ends after 5'],
    [
      'an EPB captured length beyond the block',
      [withField(epb60, 20, 64)],
      0,
      'captured packet length: 64 exceeds the 60 bytes the block holds',
    ],
    [
      'a captured length above the original length',
      [le.epb(0, 0n, frame(60, 3), 59)],
      0,
      'captured packet length: 60 exceeds the original packet length 59',
    ],
    [
      'an interface another section defined',
      [be.shb(), be.idb(1), be.epb(1, 0n, frame(60, 3))],
      2,
      'interface id: 1 is not defined in this section, which has described 1 interface so far',
    ],
    [
      'a Simple Packet Block in a section without interfaces',
      [le.shb(), le.spb(60, frame(60, 3))],
      1,
      'interface id: 0 is not defined in this section, which has described 0 interfaces so far',
    ],
    ['a bad byte-order magic', [withField(le.shb(), 8, 0x01020304)], 0, 'byte-order magic: 04030201 is not 1a2b3c4d in either byte order'],
    ['a section of an unknown major version', [le.shb(2, 0)], 0, 'version: 2.0 is not a pcapng 1.x section'],
    [
      'a block too short for its type',
      [le.block(6, Buffer.alloc(16))],
      0,
      'block total length: 28 is too small for an enhanced packet block (needs 32)',
    ],
    [
      'an option running past its block',
      [withField(le.idb(1, 0, [tsresol(6)]), 18, 9)],
      0,
      'options: option 9 claims 9 bytes, the block has 8 left',
    ],
    ['an if_tsresol of the wrong length', [le.idb(1, 0, [[IF_TSRESOL, Buffer.from([6, 0])]])], 0, 'if_tsresol: option length is 2, not 1'],
    [
      'seconds past 2^53',
      [le.idb(1, 0, [tsresol(0)]), le.epb(1, 2n ** 60n, frame(60, 3))],
      1,
      'timestamp: 1152921504606846976 units of 1/1 s is beyond 2^53 s',
    ],
    ['too many interfaces in one section', manyInterfaces, 65535, 'more than 65536 interfaces in one section'],
  ];

  it.each(cases)('yields the good packets, then rejects %s', (what, bad, badIndex, problem) => {
    const { file, offsets } = saveBlocks(`${what.replaceAll(' ', '-')}.pcapng`, [...good, ...bad]);
    const { reader, records, error } = readAll(file);
    expect(records.map((r) => [r.n, r.caplen, r.data[0], r.data[59]])).toEqual([
      [1, 60, 1, 1],
      [2, 60, 2, 2],
    ]);
    expect(reader.recordsRead).toBe(2);
    const blockIndex = good.length + badIndex;
    expect(error).toBeInstanceOf(CaptureError);
    expect((error as Error).message).toBe(`${file}: block ${blockIndex + 1} (offset ${offsets[blockIndex]}): ${problem}`);
    expect(offsets[good.length]).toBe(goodBytes);
  });

  it('rejects a bad first section when opening', () => {
    const { file } = saveBlocks('bad-first-magic.pcapng', [withField(le.shb(), 8, 0x1a2b3c4e), ...good.slice(1)]);
    expect(captureErrorFrom(() => openCapture(file))).toBe(
      `${file}: block 1 (offset 0): byte-order magic: 4e3c2b1a is not 1a2b3c4d in either byte order`,
    );
    const { file: idbFile } = saveBlocks('bad-first-idb.pcapng', [le.shb(), withTrailer(le.idb(1), 4), ...good.slice(2)]);
    expect(captureErrorFrom(() => openCapture(idbFile))).toBe(
      `${idbFile}: block 2 (offset 28): trailing block total length: 4 differs from the leading 20`,
    );
  });

  it('rejects a block claiming more than 256 MiB at once, without allocating it', () => {
    const { file, offsets } = saveBlocks('huge-block.pcapng', [...good, headerOnly(6, (256 << 20) + 4, 100)]);
    const started = performance.now();
    const memoryBefore = process.memoryUsage().arrayBuffers;
    const { records, error } = readAll(file);
    expect(performance.now() - started).toBeLessThan(500);
    expect(process.memoryUsage().arrayBuffers - memoryBefore).toBeLessThan(64 << 20);
    expect(records.length).toBe(2);
    expect((error as Error).message).toBe(
      `${file}: block 5 (offset ${offsets[4]}): block total length: 268435460 bytes is absurd (above 256 MiB); the file is corrupt`,
    );
  });
});

/** Random records whose bytes are slices of one random pool, plus a few bigger than the 4 MiB read chunk. */
function randomRecords(count: number, random: () => number): Written[] {
  const pool = new Uint8Array(6 << 20);
  for (let i = 0; i < pool.length; i += 97) pool[i] = random() * 256;
  const records = Array.from({ length: count }, () => {
    const size = Math.floor(random() * 1515);
    const start = Math.floor(random() * (pool.length - size));
    return {
      tsSec: 1_600_000_000 + Math.floor(random() * 1e8),
      tsNsec: Math.floor(random() * 1e9),
      data: pool.subarray(start, start + size),
      origlen: random() < 0.2 ? size + Math.floor(random() * 9000) : size,
    };
  });
  for (const [at, size] of [
    [10, 100 << 10],
    [1000, 5 << 20],
    [1001, 3],
    [3000, (1 << 20) + 1],
  ]) {
    records.splice(at, 0, { tsSec: 1_700_000_000, tsNsec: 999_999_999, data: pool.subarray(1, 1 + size), origlen: size });
  }
  return records;
}

/** Everything but the file offset, which differs between formats. */
function comparable(records: CaptureRecord[]) {
  return records.map(({ offset: _, data, ...rest }) => ({ ...rest, data: md5(data) }));
}

describe('writer', () => {
  it('writes what classic pcap holds, µs and ns alike', () => {
    const written = randomRecords(5000, seededRandom(1));
    const files = {
      pcapUsec: path.join(tmpDir, 'same.pcap'),
      pcapNsec: path.join(tmpDir, 'same-ns.pcap'),
      pcapngUsec: path.join(tmpDir, 'same.pcapng'),
      pcapngNsec: path.join(tmpDir, 'same-ns.pcapng'),
    };
    const snaplen = 8 << 20;
    for (const nanosecond of [false, true]) {
      const pcap = createPcapWriter(nanosecond ? files.pcapNsec : files.pcapUsec, { linktype: 1, snaplen, nanosecond });
      const pcapng = createPcapngWriter(nanosecond ? files.pcapngNsec : files.pcapngUsec, {
        interfaces: [{ linktype: 1, snaplen, tsresolNs: nanosecond }],
      });
      for (const w of written) {
        pcap.write(w.tsSec, w.tsNsec, w.data, w.origlen);
        pcapng.write(0, w.tsSec, w.tsNsec, w.data, w.origlen);
      }
      pcap.close();
      pcapng.close();
    }
    const read = Object.fromEntries(Object.entries(files).map(([name, file]) => [name, readAll(file)]));
    for (const { reader, records, error } of Object.values(read)) {
      expect(error).toBeUndefined();
      expect([records.length, reader.bytesRead, reader.linktype, reader.snaplen]).toEqual([written.length, reader.fileSize, 1, snaplen]);
    }
    expect([read.pcapngUsec.reader.nanosecond, read.pcapngNsec.reader.nanosecond]).toEqual([false, true]);
    expect(comparable(read.pcapngUsec.records)).toEqual(comparable(read.pcapUsec.records));
    expect(comparable(read.pcapngNsec.records)).toEqual(comparable(read.pcapNsec.records));
    expect(read.pcapngNsec.records.map((r) => [r.tsSec, r.tsNsec])).toEqual(written.map((w) => [w.tsSec, w.tsNsec]));
  });

  it('writes the spec layout: one little-endian SHB, IDBs with if_tsresol 9 when asked, EPBs', () => {
    const file = path.join(tmpDir, 'layout.pcapng');
    const writer = createPcapngWriter(file, { interfaces: [{ linktype: 1 }, { linktype: 113, snaplen: 96, tsresolNs: true }] });
    writer.write(1, 2 ** 32, 5, frame(61, 7), 1500);
    writer.write(0, 1_700_000_000, 123_456_789, frame(4, 8));
    writer.close();
    expect(fs.readFileSync(file)).toEqual(
      Buffer.concat([
        le.shb(),
        le.idb(1, 262144),
        le.idb(113, 96, [tsresol(9)]),
        le.epb(1, 2n ** 32n * 1_000_000_000n + 5n, frame(61, 7), 1500),
        le.epb(0, 1_700_000_000_123_456n, frame(4, 8)),
      ]),
    );
  });

  it('round-trips several link types and timestamps up to the end of u64 time', () => {
    const interfaces: PcapngWriterInterface[] = [{ linktype: 1 }, { linktype: 113, tsresolNs: true }, { linktype: 0, snaplen: 128 }];
    const maxSec = [18_446_744_073_708, 18_446_744_072, 18_446_744_073_708];
    const file = path.join(tmpDir, 'interfaces.pcapng');
    const writer = createPcapngWriter(file, { interfaces });
    const expected: Array<[number, number, number, number]> = [];
    let i = 0;
    for (const tsSec of [0, 2 ** 32 - 1, 2 ** 32, 2 ** 34 + 3]) {
      for (const id of [0, 1, 2]) {
        const sec = Math.min(tsSec, maxSec[id]);
        writer.write(id, sec, 999_999_999, frame(100, i++));
        expected.push([interfaces[id].linktype, sec, id === 1 ? 999_999_999 : 999_999_000, 100]);
      }
    }
    for (const id of [0, 1, 2]) {
      writer.write(id, maxSec[id], 999_999_999, frame(100, i++));
      expected.push([interfaces[id].linktype, maxSec[id], id === 1 ? 999_999_999 : 999_999_000, 100]);
    }
    writer.close();
    const { reader, records, error } = readAll(file);
    expect(error).toBeUndefined();
    expect(records.map((r) => [r.linktype, r.tsSec, r.tsNsec, r.caplen])).toEqual(expected);
    expect(records.map((r) => r.data[0])).toEqual(records.map((_, n) => n));
    expect([reader.linktype, reader.snaplen, reader.nanosecond, pcapngReader(reader).interfacesRead]).toEqual([1, 262144, true, 3]);
  });

  it('refuses what it cannot write', () => {
    const file = path.join(tmpDir, 'refused.pcapng');
    expect(() => createPcapngWriter(file, { interfaces: [{ linktype: 0x10000 }] })).toThrow(/linktype 65536 is not a u16/);
    expect(() => createPcapngWriter(file, { interfaces: [{ linktype: 1, snaplen: 0 }] })).toThrow(/snaplen 0 is outside/);
    const writer = createPcapngWriter(file, {
      interfaces: [
        { linktype: 1, snaplen: 100 },
        { linktype: 1, tsresolNs: true },
      ],
    });
    expect(() => writer.write(2, 0, 0, frame(10, 0))).toThrow(/interface 2 is not one of the 2 declared/);
    expect(() => writer.write(0, 0, 0, frame(101, 0))).toThrow(/caplen 101 exceeds snaplen 100/);
    expect(() => writer.write(0, -1, 0, frame(10, 0))).toThrow(/tsSec -1 is outside 0\.\.18446744073708/);
    expect(() => writer.write(1, 18_446_744_073, 0, frame(10, 0))).toThrow(/tsSec 18446744073 is outside 0\.\.18446744072/);
    expect(() => writer.write(0, 0, 1e9, frame(10, 0))).toThrow(/tsNsec 1000000000 is outside/);
    expect(() => writer.write(0, 0, 0, frame(10, 0), 9)).toThrow(/origlen 9 is below caplen 10/);
    writer.close();
    expect(() => writer.write(0, 0, 0, frame(10, 0))).toThrow(/write after close/);
  });
});
