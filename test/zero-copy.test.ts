// The zero-copy replay (datapath/capture.ts, control/runtime/zero-copy-replay.ts) against
// the JavaScript reader path on the same files: the same decisions, verdict
// file, output file, warnings and stopping point — on the sample, on every
// classic pcap of the corpus (big-endian, nanosecond, out-of-range
// timestamp fractions), on the sample cut or corrupted at random places, and
// on the sample gzip-compressed or coming through a FIFO in pieces (the
// walker then takes its bytes from the reader's stream, not from the file).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { loadProgram } from '../control/runtime/loader.js';
import { replay, type PacketDecision, type ReplayOptions } from '../control/runtime/replay.js';
import { corpusDir, seededRandom } from './captures.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-zero-copy-'));
const SAMPLE = join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap');
const state = loadClusterState([join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml')]);
const compiled = compile(state, resolveServices(state).services, { node: 'node-a', seed: 0, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE });

/** A replay with outputs; `reader` forces the JavaScript reader path (tracing takes it). */
async function run(file: string, name: string, reader: boolean) {
  const dp = await loadProgram(compiled);
  const decisions: PacketDecision[] = [];
  const out = join(tmp, `${name}-${reader}.pcap`);
  const verdicts = join(tmp, `${name}-${reader}.jsonl`);
  const opts: ReplayOptions = { out, verdicts, onDecision: (d) => decisions.push(d) };
  if (reader) opts.trace = { select: () => false, onPacket: () => {} };
  const result = await replay(file, compiled, dp, opts);
  return { result, decisions, out: readFileSync(out), verdicts: readFileSync(verdicts, 'utf8') };
}

async function expectSame(file: string, name: string) {
  const zeroCopy = await run(file, name, false);
  const jsReader = await run(file, name, true);
  expect(zeroCopy.result).toEqual(jsReader.result);
  expect(zeroCopy.decisions).toEqual(jsReader.decisions);
  expect(zeroCopy.verdicts).toBe(jsReader.verdicts);
  expect(Buffer.compare(zeroCopy.out, jsReader.out)).toBe(0);
  return zeroCopy;
}

describe('zero-copy replay', () => {
  it('decides and writes the sample as the reader path does', async () => {
    const { result } = await expectSame(SAMPLE, 'sample');
    expect(result.packets).toBe(1256);
    expect(result.written).toBeGreaterThan(1000);
  });

  const corpus = readdirSync(corpusDir)
    .filter((f) => f.endsWith('.pcap'))
    .sort();
  it.each(corpus)('reads %s as the reader does', async (file) => {
    await expectSame(join(corpusDir, file), file);
  });

  it('stops where the reader stops, keeping what came before, when the file is cut anywhere', async () => {
    const bytes = readFileSync(SAMPLE);
    const random = seededRandom(20261127);
    for (let i = 0; i < 12; i++) {
      const cut = 24 + Math.floor(random() * (bytes.length - 24));
      const file = join(tmp, `cut-${cut}.pcap`);
      writeFileSync(file, bytes.subarray(0, cut));
      const { result } = await expectSame(file, `cut-${cut}`);
      expect(result.stoppedAt?.error ?? 'complete').toMatch(/truncated|complete/);
    }
  });

  it('hands corrupt and odd record headers to the reader, which warns or stops as it always does', async () => {
    const bytes = readFileSync(SAMPLE);
    // Record headers of the sample, from its first record on.
    const headers: number[] = [];
    for (let at = 24; at + 16 <= bytes.length; at += 16 + bytes.readUInt32LE(at + 8)) headers.push(at);
    const random = seededRandom(7);
    for (let i = 0; i < 8; i++) {
      const copy = Buffer.from(bytes);
      const at = headers[1 + Math.floor(random() * (headers.length - 2))];
      if (i % 2 === 0)
        copy.writeUInt32LE(1_500_000 + i, at + 4); // a fraction of more than a second: carried, with a warning
      else copy.writeUInt32LE(copy.readUInt32LE(at + 12) - 1, at + 8 + 4 * (i % 4 === 1 ? 1 : 0)); // caplen above origlen, or origlen below caplen
      const file = join(tmp, `odd-${i}.pcap`);
      writeFileSync(file, copy);
      const { result } = await expectSame(file, `odd-${i}`);
      if (i % 2 === 0) expect(result.warnings.some((w) => w.includes('carried 1 s into the seconds'))).toBe(true);
      else expect(result.stoppedAt?.error).toMatch(/caplen|origlen/);
    }
  });

  it('reads the sample gzip-compressed as the reader does, and as the plain file is read; cut short, both keep what came before', async () => {
    const plain = await run(SAMPLE, 'plain', false);
    const compressed = gzipSync(readFileSync(SAMPLE));
    const file = join(tmp, 'sample.pcap.gz');
    writeFileSync(file, compressed);
    const { result, verdicts } = await expectSame(file, 'gzip');
    expect({ ...result, trace: SAMPLE }).toEqual(plain.result);
    expect(verdicts).toBe(plain.verdicts);
    const cut = join(tmp, 'cut.pcap.gz');
    writeFileSync(cut, compressed.subarray(0, compressed.length >> 1));
    const cutShort = await expectSame(cut, 'gzip-cut');
    expect(cutShort.result.stoppedAt?.error).toBe(
      `${cut}: gzip: truncated: the compressed data ends at byte ${compressed.length >> 1}, inside the gzip stream`,
    );
    expect(cutShort.result.packets).toBeGreaterThan(100);
    expect(plain.verdicts.startsWith(cutShort.verdicts)).toBe(true);
  });

  it('reads the sample from a FIFO its writer fills in pieces as the reader does, and as the file is read', async () => {
    const plain = await run(SAMPLE, 'plain', false);
    /** A replay of a FIFO that a separate process writes the sample into, 3001 bytes at a time: records arrive cut in two. */
    const viaFifo = async (reader: boolean) => {
      const fifo = join(tmp, `sample-${reader}.fifo`);
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      const writer = spawn(process.execPath, ['-e', TRICKLE, SAMPLE, fifo]);
      const exited = new Promise((resolve) => writer.on('close', resolve));
      const replayed = await run(fifo, 'fifo', reader);
      expect(await exited).toBe(0);
      return replayed;
    };
    const zeroCopy = await viaFifo(false);
    const jsReader = await viaFifo(true);
    for (const r of [zeroCopy, jsReader]) {
      expect(r.result.packets).toBe(plain.result.packets);
      expect(r.decisions).toEqual(plain.decisions);
      expect(r.verdicts).toBe(plain.verdicts);
      expect(Buffer.compare(r.out, plain.out)).toBe(0);
    }
  });
});

/** Writes the file argv[1] into the FIFO argv[2] in pieces, with a pause between them. */
const TRICKLE = `
const fs = require('node:fs');
const [from, to] = process.argv.slice(1);
const bytes = fs.readFileSync(from);
const fd = fs.openSync(to, 'w');
let at = 0;
(function next() {
  if (at >= bytes.length) return fs.closeSync(fd);
  fs.writeSync(fd, bytes.subarray(at, at += 3001));
  setTimeout(next, 1);
})();
`;
