// Captures from pipes and gzip, through the built CLI in a real process
// where standard input, pipes and signals need one (the file replays they
// are compared with run in-process): a capture from standard input, a pipe
// through cat, a FIFO, or gzip-compressed (by its magic and by its name)
// gives the file replay's verdicts, output and summary byte for byte;
// a truncated gzip stream keeps what came before it and says where; outputs
// on standard output; a Ctrl-C part-way through a capture that is still
// coming ends the replay with complete, valid outputs of what was processed.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as pause } from 'node:timers/promises';
import { constants, gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { verifyChecksums } from '../traces/frames.js';
import { cli } from './helpers.js';
import { readWithPcapParser } from './pcap-parser.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-stdin-'));
const CLI = join(PROJECT_ROOT, 'dist', 'control', 'cli', 'bin.js');
const SAMPLE = join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap');
const SAMPLE_ARGS = ['--cluster', join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml'), '--node', 'node-a'];
const COOKED = join(PROJECT_ROOT, 'test', 'cases', 'cooked-pcapng');
const COOKED_ARGS = ['--cluster', join(COOKED, 'cluster.yaml'), ...readFileSync(join(COOKED, 'args'), 'utf8').trim().split(/\s+/)];

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/**
 * Runs the built CLI. `input`, when given, goes to its standard input in
 * pieces with a pause between them, so that the replay finds the pipe empty
 * part-way through a record and has to wait for the rest.
 */
async function svcpath(args: string[], input?: Buffer, pieces = 1): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: tmp, stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  return finished(child, async () => {
    if (!input) return;
    const size = Math.ceil(input.length / pieces);
    for (let at = 0; at < input.length; at += size) {
      if (!child.stdin!.write(input.subarray(at, at + size))) await new Promise((resolve) => child.stdin!.once('drain', resolve));
      if (pieces > 1) await pause(2);
    }
    child.stdin!.end();
  });
}

/** Collects a child's output until it exits, after `feed` has run. */
async function finished(child: ReturnType<typeof spawn>, feed: () => Promise<void> = async () => {}): Promise<Run> {
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => stdout.push(d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await feed();
  return { code: await exited, stdout: Buffer.concat(stdout), stderr };
}

/**
 * A replay of `capture` with every output to a file named after `tag`, and
 * those outputs: in a process of its own when there is `input` for its
 * standard input, else in this one.
 */
async function replay(tag: string, capture: string, args: string[], outExt: string, input?: Buffer, pieces = 1) {
  const out = join(tmp, `${tag}.${outExt}`);
  const verdicts = join(tmp, `${tag}.jsonl`);
  const summary = join(tmp, `${tag}.json`);
  const argv = ['replay', capture, ...args, '--out', out, '--verdicts', verdicts, '--summary', summary];
  const run = input ? await svcpath(argv, input, pieces) : inProcess(await cli(argv));
  return {
    ...run,
    out: existsSync(out) ? readFileSync(out) : undefined,
    verdicts: existsSync(verdicts) ? readFileSync(verdicts, 'utf8') : undefined,
    summary: existsSync(summary) ? JSON.parse(readFileSync(summary, 'utf8')) : undefined,
  };
}

type Replayed = Awaited<ReturnType<typeof replay>>;

/** cli()'s result as a Run: what it printed to stdout, as the process would have. */
function inProcess(r: { code: number; stdout: string; stderr: string }): Run {
  return { code: r.code, stdout: Buffer.from(r.stdout ? `${r.stdout}\n` : ''), stderr: r.stderr ? `${r.stderr}\n` : '' };
}

/** The same verdicts, output bytes and summary (but for the capture's name). */
function expectSameReplay(got: Replayed, want: Replayed, name: string) {
  expect(got.stderr).toBe('');
  expect(got.code).toBe(0);
  expect(got.verdicts).toBe(want.verdicts);
  expect(Buffer.compare(got.out!, want.out!)).toBe(0);
  expect(got.summary.trace).toBe(name);
  expect({ ...got.summary, trace: '' }).toEqual({ ...want.summary, trace: '' });
}

/** The packets of a classic pcap, counted from its record headers (little-endian, as svcpath's writer and the sample are). */
function completeRecords(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let records = 0;
  for (let at = 24; at + 16 <= bytes.length; records++) {
    const next = at + 16 + view.getUint32(at + 8, true);
    if (next > bytes.length) break;
    at = next;
  }
  return records;
}

const sentLines = (verdicts: string) =>
  verdicts
    .trim()
    .split('\n')
    .filter((l) => /"verdict":"(TX|REDIRECT)"/.test(l));

const captures: Array<[string, string, string[], string]> = [
  ['classic pcap', SAMPLE, SAMPLE_ARGS, 'pcap'],
  ['pcapng', join(COOKED, 'input.pcapng'), COOKED_ARGS, 'pcapng'],
];

describe('a capture from standard input, a pipe or gzip', () => {
  const fromFile = new Map<string, Promise<Replayed>>();
  const fileReplay = (name: string, file: string, args: string[], ext: string) => {
    if (!fromFile.has(name)) fromFile.set(name, replay(`file-${ext}`, file, args, ext));
    return fromFile.get(name)!;
  };

  it.each(captures)(
    '%s from standard input, arriving in pieces, is replayed as the file is, byte for byte',
    async (name, file, args, ext) => {
      const want = await fileReplay(name, file, args, ext);
      expect(want.code).toBe(0);
      const got = await replay(`stdin-${ext}`, '-', args, ext, readFileSync(file), 40);
      expectSameReplay(got, want, 'standard input');
      expect(got.summary.packets).toBeGreaterThan(100);
      if (ext === 'pcap') {
        // The second reader agrees: every input record replayed, one output frame per TX/REDIRECT verdict, each one valid.
        expect(got.summary.packets).toBe((await readWithPcapParser(file)).length);
        const frames = await readWithPcapParser(join(tmp, `stdin-${ext}.pcap`));
        expect(frames.length).toBe(sentLines(got.verdicts!).length);
        for (const f of frames) expect(verifyChecksums(f.data)).toMatchObject({ ipv4: true });
      }
    },
  );

  it.each(captures)(
    '%s gzip-compressed is read as it is: by its magic, by a .gz name, and from standard input',
    async (name, file, args, ext) => {
      const want = await fileReplay(name, file, args, ext);
      const compressed = gzipSync(readFileSync(file));
      writeFileSync(join(tmp, `capture-${ext}.gz`), compressed);
      writeFileSync(join(tmp, `capture-${ext}`), compressed);
      expectSameReplay(await replay(`gz-name-${ext}`, join(tmp, `capture-${ext}.gz`), args, ext), want, join(tmp, `capture-${ext}.gz`));
      expectSameReplay(await replay(`gz-magic-${ext}`, join(tmp, `capture-${ext}`), args, ext), want, join(tmp, `capture-${ext}`));
      if (ext === 'pcapng') expectSameReplay(await replay(`gz-stdin-${ext}`, '-', args, ext, compressed, 20), want, 'standard input');
    },
  );

  it('reads a capture piped through cat, and one written into a FIFO', async () => {
    const want = await fileReplay('classic pcap', SAMPLE, SAMPLE_ARGS, 'pcap');
    const outputs = (tag: string) => [
      '--out',
      join(tmp, `${tag}.pcap`),
      '--verdicts',
      join(tmp, `${tag}.jsonl`),
      '--summary',
      join(tmp, `${tag}.json`),
    ];
    const read = (tag: string, run: Run): Replayed => ({
      ...run,
      out: readFileSync(join(tmp, `${tag}.pcap`)),
      verdicts: readFileSync(join(tmp, `${tag}.jsonl`), 'utf8'),
      summary: JSON.parse(readFileSync(join(tmp, `${tag}.json`), 'utf8')),
    });
    const quoted = (args: string[]) => args.map((a) => `'${a}'`).join(' ');
    const piped = spawn('sh', [
      '-c',
      `cat '${SAMPLE}' | '${process.execPath}' '${CLI}' replay - ${quoted([...SAMPLE_ARGS, ...outputs('cat')])}`,
    ]);
    expectSameReplay(read('cat', await finished(piped)), want, 'standard input');

    const fifo = join(tmp, 'capture.fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // The replay opens the FIFO before any writer has: it waits for one, and for the bytes.
    const replaying = finished(spawn(process.execPath, [CLI, 'replay', fifo, ...SAMPLE_ARGS, ...outputs('fifo')]));
    await pause(200);
    const writer = finished(spawn('sh', ['-c', `cat '${SAMPLE}' > '${fifo}'`]));
    expectSameReplay(read('fifo', await replaying), want, fifo);
    expect((await writer).code).toBe(0);
  });

  it('keeps what came before a truncated gzip stream, and names the compressed byte where it ends', async () => {
    const want = await fileReplay('classic pcap', SAMPLE, SAMPLE_ARGS, 'pcap');
    const compressed = gzipSync(readFileSync(SAMPLE));
    const cut = Math.floor(compressed.length * 0.6);
    const file = join(tmp, 'cut.pcap.gz');
    writeFileSync(file, compressed.subarray(0, cut));
    // zlib itself says how much of the capture the cut stream holds, and so how many whole records.
    const kept = completeRecords(gunzipSync(compressed.subarray(0, cut), { finishFlush: constants.Z_SYNC_FLUSH }));
    expect(kept).toBeGreaterThan(100);
    for (const [tag, capture, input] of [
      ['cut-file', file, undefined],
      ['cut-stdin', '-', compressed.subarray(0, cut)],
    ] as const) {
      const got = await replay(tag, capture, SAMPLE_ARGS, 'pcap', input);
      const name = capture === '-' ? 'standard input' : file;
      expect(got.code).toBe(1);
      expect(got.stderr).toBe(`svcpath: ${name}: gzip: truncated: the compressed data ends at byte ${cut}, inside the gzip stream\n`);
      expect(got.summary).toMatchObject({ packets: kept, complete: false, stoppedAt: { record: kept + 1 } });
      const lines = want.verdicts!.split('\n');
      expect(got.verdicts).toBe(`${lines.slice(0, kept).join('\n')}\n`);
      expect((await readWithPcapParser(join(tmp, `${tag}.pcap`))).length).toBe(sentLines(got.verdicts!).length);
    }
  });

  it('says so of a corrupt gzip stream, and of a .gz name on a capture that is not compressed', async () => {
    const compressed = gzipSync(readFileSync(SAMPLE));
    compressed[2] = 9; // the compression method: 8 is deflate, the only one there is
    writeFileSync(join(tmp, 'corrupt.gz'), compressed);
    const corrupt = await cli(['replay', join(tmp, 'corrupt.gz'), ...SAMPLE_ARGS]);
    expect(corrupt.code).toBe(1);
    const where = new RegExp(
      `^svcpath: ${join(tmp, 'corrupt.gz')}: gzip: corrupt: unknown compression method, in compressed bytes (\\d+) to (\\d+)$`,
    ).exec(corrupt.stderr);
    // The range it names holds the byte that was spoilt.
    expect(Number(where![1])).toBeLessThanOrEqual(2);
    expect(Number(where![2])).toBeGreaterThan(2);
    writeFileSync(join(tmp, 'plain.pcap.gz'), readFileSync(SAMPLE));
    const plain = await cli(['replay', join(tmp, 'plain.pcap.gz'), ...SAMPLE_ARGS]);
    expect([plain.code, plain.stderr]).toEqual([
      1,
      `svcpath: ${join(tmp, 'plain.pcap.gz')}: named .gz, but it is not gzip-compressed: it starts with d4c3, not the gzip magic 1f8b`,
    ]);
  });

  it('writes --verdicts - or --out - to standard output, with the summary on standard error', async () => {
    const want = await fileReplay('classic pcap', SAMPLE, SAMPLE_ARGS, 'pcap');
    const verdicts = await svcpath(['replay', '-', ...SAMPLE_ARGS, '--verdicts', '-'], readFileSync(SAMPLE));
    expect(verdicts.code).toBe(0);
    expect(verdicts.stdout.toString()).toBe(want.verdicts);
    expect(verdicts.stderr).toMatch(/^standard input: 1256 packets replayed on node node-a, 0 written\n/);
    const out = await svcpath(['replay', SAMPLE, ...SAMPLE_ARGS, '--out', '-', '--summary', join(tmp, 'out-stdout.json')]);
    expect(out.code).toBe(0);
    expect(Buffer.compare(out.stdout, want.out!)).toBe(0);
    expect(out.stderr).toContain(`${SAMPLE}: 1256 packets replayed on node node-a, 1218 written`);
  });

  it('trace - and diff - read standard input; --workers refuses it, and replays a gzip file as one worker does', async () => {
    const traced = await cli(['trace', SAMPLE, '--packet', '7', ...SAMPLE_ARGS]);
    const tracedStdin = await svcpath(['trace', '-', '--packet', '7', ...SAMPLE_ARGS], readFileSync(SAMPLE), 10);
    expect(tracedStdin.code).toBe(0);
    expect(tracedStdin.stdout.toString()).toBe(`${traced.stdout}\n`);
    expect(traced.stdout).toMatch(/^packet 7 /);

    const diffArgs = [...SAMPLE_ARGS, '--against', join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml'), '--json'];
    const diffFile = JSON.parse((await cli(['diff', SAMPLE, ...diffArgs])).stdout);
    const diffStdin = await svcpath(['diff', '-', ...diffArgs], readFileSync(SAMPLE), 10);
    expect(diffStdin.code).toBe(0);
    expect(JSON.parse(diffStdin.stdout.toString())).toEqual({ ...diffFile, trace: 'standard input' });
    expect(diffFile.flows).toBeGreaterThan(100);
    // The copy diff made of standard input is gone.
    expect(readdirSync(tmpdir()).filter((f) => f.endsWith('.capture') && f.startsWith('svcpath-'))).toEqual([]);

    const workers = await svcpath(['replay', '-', ...SAMPLE_ARGS, '--workers', '2'], readFileSync(SAMPLE));
    expect([workers.code, workers.stderr]).toEqual([
      1,
      'svcpath: --workers 2: every worker reads the whole capture, and standard input can be read only once: replay it with one worker, or save it to a file first\n',
    ]);
    writeFileSync(join(tmp, 'workers.pcap.gz'), gzipSync(readFileSync(SAMPLE)));
    const sharded = await replay('workers-gz', join(tmp, 'workers.pcap.gz'), [...SAMPLE_ARGS, '--workers', '2'], 'pcap');
    const single = await fileReplay('classic pcap', SAMPLE, SAMPLE_ARGS, 'pcap');
    expect(sharded.code).toBe(0);
    expect(sharded.verdicts).toBe(single.verdicts);
    expect(Buffer.compare(sharded.out!, single.out!)).toBe(0);
  });
});

describe('a signal part-way through a capture that is still coming', () => {
  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s ends the replay: the outputs hold what was processed, complete and valid, exit %i', async (signal, status) => {
    const want = await replay(`whole-${signal}`, SAMPLE, SAMPLE_ARGS, 'pcap');
    expect(want.code).toBe(0);
    const bytes = readFileSync(SAMPLE);
    const dir = mkdtempSync(join(tmp, `${signal}-`));
    const outputs = { out: join(dir, 'out.pcap'), verdicts: join(dir, 'verdicts.jsonl'), summary: join(dir, 'summary.json') };
    const child = spawn(process.execPath, [
      CLI,
      'replay',
      '-',
      ...SAMPLE_ARGS,
      '--out',
      outputs.out,
      '--verdicts',
      outputs.verdicts,
      '--summary',
      outputs.summary,
    ]);
    const run = finished(child, async () => {
      // Part of the capture, cut inside a record; the pipe stays open, as tcpdump's would.
      child.stdin!.write(bytes.subarray(0, Math.floor(bytes.length / 2) + 7));
      // The outputs are opened, as temporary files, once the capture's header has been read.
      while (readdirSync(dir).filter((f) => f.endsWith('.tmp')).length < 2) await pause(20);
      child.kill(signal);
    });
    const { code, stdout } = await run;
    child.stdin!.destroy();
    expect(code).toBe(status);
    expect(readdirSync(dir).sort()).toEqual(['out.pcap', 'summary.json', 'verdicts.jsonl']);
    const summary = JSON.parse(readFileSync(outputs.summary, 'utf8'));
    const packets = summary.packets as number;
    expect(summary).toMatchObject({ interrupted: true, complete: false, stoppedAt: null });
    expect(stdout.toString()).toContain(`INTERRUPTED after record ${packets}:`);
    // Every packet read was processed, and no more than were written: the whole records of the first half at most.
    expect(packets).toBeGreaterThan(0);
    expect(packets).toBeLessThanOrEqual(completeRecords(bytes.subarray(0, Math.floor(bytes.length / 2) + 7)));
    const lines = want.verdicts!.split('\n');
    expect(readFileSync(outputs.verdicts, 'utf8')).toBe(`${lines.slice(0, packets).join('\n')}\n`);
    // The output capture is whole and valid: the frames of those packets' TX/REDIRECT verdicts, as the full replay wrote them.
    const frames = await readWithPcapParser(outputs.out);
    const all = await readWithPcapParser(join(tmp, `whole-${signal}.pcap`));
    expect(frames.length).toBe(sentLines(lines.slice(0, packets).join('\n')).length);
    expect(frames.map((f) => f.data.toString('hex'))).toEqual(all.slice(0, frames.length).map((f) => f.data.toString('hex')));
    expect(summary.written).toBe(frames.length);
  });
});
