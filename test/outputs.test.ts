// Outputs never destroy inputs: an output that is the capture (by the same
// path, another spelling of it, a symbolic or a hard link, or the file
// standard input comes from), a cluster file, a file inside a cluster
// directory or a test case, or another output, is refused with one line
// before anything is written, and the input is left byte for byte as it
// was. Outputs go through temporary files: an existing file is replaced
// only by a finished run, keeps its permissions, and a symbolic link is
// written through. And the exit status of a capture nothing could be
// decided of.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { buildFrame } from '../traces/frames.js';
import { createPcapWriter } from '../traces/pcap.js';
import { cli } from './helpers.js';
import { readWithPcapParser } from './pcap-parser.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-outputs-'));
const CLUSTER_FILE = join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml');
const CLI = join(PROJECT_ROOT, 'dist', 'control', 'cli', 'bin.js');

/** A fresh directory holding a copy of the sample capture and of its cluster file. */
function workspace(name: string): { dir: string; capture: string; cluster: string; args: string[] } {
  const dir = join(tmp, name);
  mkdirSync(dir);
  const capture = join(dir, 'capture.pcap');
  const cluster = join(dir, 'cluster.yaml');
  copyFileSync(join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap'), capture);
  copyFileSync(CLUSTER_FILE, cluster);
  return { dir, capture, cluster, args: ['--cluster', cluster, '--node', 'node-a'] };
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Every file of a directory with its content's hash: what a refused run must leave as it was. */
const snapshot = (dir: string) =>
  Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, lstatSync(join(dir, f)).isFile() ? sha256(join(dir, f)) : 'link']),
  );

/** Runs a replay that must be refused: exit 1, one line naming `names`, and nothing in `dir` touched. */
async function expectRefused(dir: string, argv: string[], names: string[]) {
  const before = snapshot(dir);
  const r = await cli(argv);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe('');
  expect(r.stderr.split('\n')).toHaveLength(1);
  for (const name of names) expect(r.stderr).toContain(name);
  expect(snapshot(dir)).toEqual(before);
  return r.stderr;
}

describe('an output that would destroy an input is refused before anything is written', () => {
  it('the capture, by its path, another spelling of it, a symbolic link and a hard link, for every output', async () => {
    const w = workspace('capture');
    symlinkSync(w.capture, join(w.dir, 'symlink.pcap'));
    linkSync(w.capture, join(w.dir, 'hardlink.pcap'));
    const spellings = [
      w.capture,
      `./${relative(process.cwd(), w.capture)}`,
      join(w.dir, '..', 'capture', 'capture.pcap'),
      join(w.dir, 'symlink.pcap'),
      join(w.dir, 'hardlink.pcap'),
    ];
    for (const flag of ['--out', '--verdicts', '--summary']) {
      for (const output of spellings) {
        const line = await expectRefused(w.dir, ['replay', w.capture, ...w.args, flag, output], [`${flag} ${output}`, w.capture]);
        expect(line).toBe(
          `svcpath: ${flag} ${output}: is the capture ${w.capture}, which svcpath reads; an output never overwrites an input`,
        );
      }
    }
  });

  it('a cluster file, and a file inside a cluster directory', async () => {
    const w = workspace('cluster');
    await expectRefused(
      w.dir,
      ['replay', w.capture, ...w.args, '--summary', w.cluster],
      [`--summary ${w.cluster}`, `the --cluster file ${w.cluster}`],
    );
    const manifests = join(w.dir, 'manifests');
    mkdirSync(manifests);
    copyFileSync(w.cluster, join(manifests, 'cluster.yaml'));
    // Written there, the summary would be read as a manifest the next time: refused even though it does not exist yet.
    const inside = join(manifests, 'summary.json');
    await expectRefused(
      w.dir,
      ['replay', w.capture, '--cluster', `${manifests}/`, '--node', 'node-a', '--summary', inside],
      [`--summary ${inside}`, `is inside ${manifests}/ (--cluster)`],
    );
    expect(readdirSync(manifests)).toEqual(['cluster.yaml']);
  });

  it('another output; several outputs may name one device', async () => {
    const w = workspace('two-outputs');
    const out = join(w.dir, 'out.pcap');
    await expectRefused(
      w.dir,
      ['replay', w.capture, ...w.args, '--out', out, '--verdicts', join(w.dir, '.', 'out.pcap')],
      [`--verdicts ${join(w.dir, 'out.pcap')}`, `--out (${out})`],
    );
    symlinkSync(out, join(w.dir, 'to-out'));
    await expectRefused(w.dir, ['replay', w.capture, ...w.args, '--out', out, '--summary', join(w.dir, 'to-out')], ['--summary', '--out']);
    await expectRefused(
      w.dir,
      ['replay', w.capture, ...w.args, '--out', '-', '--verdicts', '-'],
      ['--out - and --verdicts -: only one output can go to standard output'],
    );
    const nulls = await cli(['replay', w.capture, ...w.args, '--out', '/dev/null', '--verdicts', '/dev/null', '--summary', '/dev/null']);
    expect(nulls.code).toBe(0);
    expect(statSync('/dev/null').isCharacterDevice()).toBe(true);
  });

  it('the --junit report of svcpath test inside a case it reads', async () => {
    const cases = join(tmp, 'cases');
    cpSync(join(PROJECT_ROOT, 'test', 'cases', 'clusterip-sample'), join(cases, 'clusterip-sample'), { recursive: true });
    const inside = join(cases, 'clusterip-sample', 'expected', 'verdicts.jsonl');
    await expectRefused(
      join(cases, 'clusterip-sample', 'expected'),
      ['test', cases, '--junit', inside],
      [`--junit ${inside}`, 'test case'],
    );
    const beside = await cli(['test', cases, '--junit', join(cases, 'report.xml')]);
    expect(beside.code).toBe(0);
    expect(readFileSync(join(cases, 'report.xml'), 'utf8')).toContain('<testsuite name="svcpath" tests="1" failures="0"');
  });

  it('the file standard input comes from', async () => {
    const w = workspace('stdin');
    const before = snapshot(w.dir);
    const child = spawn(process.execPath, [CLI, 'replay', '-', ...w.args, '--verdicts', join(w.dir, 'capture.pcap')], {
      stdio: [openSync(w.capture, 'r'), 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d));
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(code).toBe(1);
    expect(stderr).toBe(
      `svcpath: --verdicts ${w.capture}: is the capture standard input, which svcpath reads; an output never overwrites an input\n`,
    );
    expect(snapshot(w.dir)).toEqual(before);
  });

  it.skipIf(spawnSync('script', ['--version']).status !== 0)('--out - to a terminal, as tcpdump -w - refuses', () => {
    const w = workspace('terminal');
    // script(1) gives the replay a terminal as its standard output.
    const run = spawnSync(
      'script',
      ['-qec', `'${process.execPath}' '${CLI}' replay '${w.capture}' ${w.args.join(' ')} --out -`, '/dev/null'],
      { encoding: 'utf8' },
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('svcpath: --out -: standard output is a terminal, and a capture is binary');
  });
});

describe('outputs go through temporary files', () => {
  it("an existing output is replaced only by a finished run, and keeps its permissions; a new one gets the umask's", async () => {
    const w = workspace('replace');
    const verdicts = join(w.dir, 'verdicts.jsonl');
    writeFileSync(verdicts, 'an earlier run\n');
    chmodSync(verdicts, 0o640);
    writeFileSync(join(w.dir, 'broken.pcap'), Buffer.from('not a capture at all'));
    const failed = await cli(['replay', join(w.dir, 'broken.pcap'), ...w.args, '--verdicts', verdicts, '--out', join(w.dir, 'out.pcap')]);
    expect(failed.code).toBe(1);
    expect(readFileSync(verdicts, 'utf8')).toBe('an earlier run\n');
    expect(readdirSync(w.dir).sort()).toEqual(['broken.pcap', 'capture.pcap', 'cluster.yaml', 'verdicts.jsonl']);

    const done = await cli(['replay', w.capture, ...w.args, '--verdicts', verdicts, '--out', join(w.dir, 'out.pcap')]);
    expect(done.code).toBe(0);
    expect(readFileSync(verdicts, 'utf8').split('\n')).toHaveLength(1256 + 1);
    expect(statSync(verdicts).mode & 0o777).toBe(0o640);
    const umask = process.umask();
    expect(statSync(join(w.dir, 'out.pcap')).mode & 0o777).toBe(0o666 & ~umask);
    expect((await readWithPcapParser(join(w.dir, 'out.pcap'))).length).toBe(1218);
    expect(readdirSync(w.dir).filter((f) => f.includes('.svcpath-'))).toEqual([]);
  });

  it('an output named through a symbolic link is written to the file the link names', async () => {
    const w = workspace('link');
    const target = join(w.dir, 'real.jsonl');
    writeFileSync(target, '');
    symlinkSync(target, join(w.dir, 'link.jsonl'));
    const r = await cli(['replay', w.capture, ...w.args, '--verdicts', join(w.dir, 'link.jsonl')]);
    expect(r.code).toBe(0);
    expect(lstatSync(join(w.dir, 'link.jsonl')).isSymbolicLink()).toBe(true);
    expect(readFileSync(target, 'utf8').split('\n')).toHaveLength(1256 + 1);
  });
});

describe('exit status', () => {
  it('a capture of which not one frame could be decided exits 1 with one line naming its link type; an empty capture is no error', async () => {
    const dir = join(tmp, 'undecided');
    mkdirSync(dir);
    const frame = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: '10.244.0.5', dst: '10.96.0.10' },
      l4: { kind: 'udp', sport: 4000, dport: 53 },
    });
    // LINKTYPE_USER0 (147): whatever the capturing site meant; nothing svcpath can parse.
    const user = createPcapWriter(join(dir, 'user0.pcap'), { linktype: 147 });
    for (let i = 0; i < 3; i++) user.write(1_700_000_000 + i, 0, frame);
    user.close();
    const summary = join(dir, 'summary.json');
    const r = await cli(['replay', join(dir, 'user0.pcap'), '--cluster', CLUSTER_FILE, '--node', 'node-a', '--summary', summary]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `svcpath: ${join(dir, 'user0.pcap')}: not one of its 3 packets could be decided: link type 147 is not one svcpath parses (see Captures in the README)`,
    );
    // The summary is still written, and says what happened.
    expect(JSON.parse(readFileSync(summary, 'utf8'))).toMatchObject({ packets: 3, complete: true, reasons: { UNSUPPORTED_LINKTYPE: 3 } });

    const empty = createPcapWriter(join(dir, 'empty.pcap'), { linktype: 1 });
    empty.close();
    const e = await cli(['replay', join(dir, 'empty.pcap'), '--cluster', CLUSTER_FILE, '--node', 'node-a']);
    expect([e.code, e.stderr]).toEqual([0, '']);
  });
});
