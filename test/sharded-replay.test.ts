// replay --workers N against one worker: the same verdict lines, output bytes
// and summary, on the bundled sample and on the regression cases, which hold
// masqueraded NodePort flows and their replies, IPv6, UDP and SCTP. The
// masquerade ports are equal too, by design (datapath/snat.ts port classes).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { main } from '../control/main.js';
import { PROJECT_ROOT } from '../control/paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-workers-'));
const CASES = join(PROJECT_ROOT, 'test', 'cases');

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...a) => { out.push(a.join(' ')); });
  vi.spyOn(console, 'error').mockImplementation((...a) => { err.push(a.join(' ')); });
  const code = await main(args);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

afterEach(() => vi.restoreAllMocks());

/** Replays with `workers` workers; returns the verdict lines, output bytes and the summary without its notes. */
async function run(trace: string, args: string[], workers: number, name: string, outExt = 'pcap') {
  const out = join(tmp, `${name}-${workers}.${outExt}`);
  const verdicts = join(tmp, `${name}-${workers}.jsonl`);
  const summary = join(tmp, `${name}-${workers}.json`);
  const r = await cli(['replay', trace, ...args, '--out', out, '--verdicts', verdicts, '--summary', summary, '--workers', String(workers)]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const s = JSON.parse(readFileSync(summary, 'utf8'));
  const perWorker = (s.notes as string[]).find((n) => n.includes('workers decided'));
  delete s.notes;
  return { verdicts: readFileSync(verdicts, 'utf8'), out: readFileSync(out), summary: s, perWorker };
}

const inputs: Array<[string, string, string[], number[]]> = [
  ['sample', join(PROJECT_ROOT, 'traces/samples/sample.pcap'), ['--cluster', join(PROJECT_ROOT, 'traces/samples/cluster.yaml'), '--node', 'node-a'], [2, 4]],
  ...['frontends-and-policies', 'sctp-udp-nanosecond'].map((c): [string, string, string[], number[]] => [
    c, join(CASES, c, 'input.pcap'),
    ['--cluster', join(CASES, c, 'cluster.yaml'), ...readFileSync(join(CASES, c, 'args'), 'utf8').trim().split(/\s+/)], [2],
  ]),
];

describe('replay --workers', () => {
  for (const [name, trace, args, counts] of inputs) {
    it(`gives ${name} the single worker's verdicts, output and summary`, async () => {
      const single = await run(trace, args, 1, name);
      expect(single.verdicts).toContain('"snat":' + (name === 'sample' ? 'false' : 'true'));
      for (const workers of counts) {
        const sharded = await run(trace, args, workers, name);
        expect(sharded.verdicts).toBe(single.verdicts);
        expect(Buffer.compare(sharded.out, single.out)).toBe(0);
        expect(sharded.summary).toEqual(single.summary);
        // Every worker had a share of the work.
        const shares = sharded.perWorker!.match(/decided ([\d, ]+) packets/)![1].split(', ').map(Number);
        expect(shares).toHaveLength(workers);
        for (const share of shares) expect(share).toBeGreaterThan(0);
      }
    }, 60_000);
  }

  it('merges frames for a pcapng output (written by this thread, not as whole records) alike', async () => {
    const [, trace, args] = inputs[1];
    const single = await run(trace, args, 1, 'pcapng-out', 'pcapng');
    const sharded = await run(trace, args, 2, 'pcapng-out', 'pcapng');
    expect(sharded.verdicts).toBe(single.verdicts);
    expect(Buffer.compare(sharded.out, single.out)).toBe(0);
    expect(single.out.readUInt32LE(0)).toBe(0x0a0d0d0a);
  }, 60_000);

  it('refuses a worker count the masquerade ports cannot be shared by', async () => {
    const [, trace, args] = inputs[1];
    const r = await cli(['replay', trace, ...args, '--workers', '4']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('svcpath: --workers: 4 workers need at least 1024 SNAT ports to share, one class of 256 or more each; the range 40000-40999 has 1000');
    const three = await cli(['replay', trace, ...args, '--workers', '3']);
    expect(three.code).toBe(1);
    expect(three.stderr).toBe('svcpath: --workers: 3: must be a power of two up to 64, as clients are spread over 64 classes');
  });
});
