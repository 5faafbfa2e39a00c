// The playground's seams, in Node: manifests from texts, a capture from
// bytes (gzip inflated by DecompressionStream) and outputs to memory must
// give exactly what the CLI's files give; the browser's stand-in for
// node:net's isIP* must answer as node:net does.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { loadClusterState, parseClusterState } from '../control/cluster/index.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { replay } from '../control/runtime/replay.js';
import { buildReplayDatapath } from '../control/runtime/setup.js';
import { MemorySink, openBytes } from '../traces/memory.js';
import * as shim from '../web/playground/shims/node-net.js';

const SAMPLE = join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap');
const CLUSTER = join(PROJECT_ROOT, 'traces', 'samples', 'cluster.yaml');
const tmp = mkdtempSync(join(tmpdir(), 'svcpath-memory-io-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The sample replayed on node-a from `capture`, its outputs to `out` and `verdicts`. */
async function replaySample(capture: Parameters<typeof replay>[0], out: string | MemorySink, verdicts: string | MemorySink) {
  const inputs = { manifests: { count: 1, load: () => loadClusterState([CLUSTER]) } };
  const { compiled, dp } = await buildReplayDatapath({ node: 'node-a' }, inputs);
  return replay(capture, compiled, dp, { out, verdicts });
}

describe('playground seams', () => {
  it('parses manifest texts as it reads manifest files', () => {
    const files = loadClusterState([CLUSTER]);
    const texts = parseClusterState([{ name: CLUSTER, text: readFileSync(CLUSTER, 'utf8') }]);
    expect(texts).toEqual(files);
    expect(() => parseClusterState([{ name: 'bad.yaml', text: 'kind: [' }])).toThrow(/^bad\.yaml: line 1, column/);
  });

  it('replays bytes into memory as it replays a file into files', async () => {
    const files = await replaySample(SAMPLE, join(tmp, 'out.pcap'), join(tmp, 'verdicts.jsonl'));
    const out = new MemorySink('out.pcap');
    const verdicts = new MemorySink('verdicts.jsonl');
    const bytes = readFileSync(SAMPLE);
    const memory = await replaySample(await openBytes(SAMPLE, gzipSync(bytes)), out, verdicts);
    expect({ ...memory, trace: files.trace }).toEqual(files);
    expect(Buffer.from(out.bytes()).equals(readFileSync(join(tmp, 'out.pcap')))).toBe(true);
    expect(Buffer.from(verdicts.bytes()).equals(readFileSync(join(tmp, 'verdicts.jsonl')))).toBe(true);
    expect(files.packets).toBe(1256);
  });

  it('says which gzip streams are broken, naming the capture, after the bytes before the break', async () => {
    const gzip = gzipSync(readFileSync(SAMPLE));
    const cut = await openBytes('cut.gz', gzip.subarray(0, gzip.length - 1000));
    const buffer = new Uint8Array(1 << 20);
    let read = 0;
    expect(() => {
      for (let n = 1; n > 0; read += n) n = cut.read(buffer, 0, buffer.length);
    }).toThrow(`cut.gz: gzip: truncated: the compressed data ends at byte ${gzip.length - 1000}, inside the gzip stream`);
    expect(read).toBeGreaterThan(0);
    const corrupt = Buffer.from(gzip);
    corrupt[corrupt.length - 6] ^= 0xff; // the CRC
    const bad = await openBytes('bad.gz', corrupt);
    expect(() => bad.read(buffer, 0, buffer.length) + bad.read(buffer, 0, buffer.length)).toThrow(/^bad\.gz: gzip: corrupt: /);
    await expect(openBytes('plain.pcap.gz', readFileSync(SAMPLE))).rejects.toThrow(
      'plain.pcap.gz: named .gz, but it is not gzip-compressed: it starts with d4c3, not the gzip magic 1f8b',
    );
  });

  it("answers isIP, isIPv4 and isIPv6 as node:net's do (the browser's stand-in)", () => {
    const addresses = [
      ...['1.2.3.4', '01.2.3.4', '1.2.3', '0x1.2.3.4', '256.1.1.1', ' 1.2.3.4', '1.2.3.04', '0.0.0.0', '10.1', '', 'abc'],
      ...['::', '::1', 'fe80::1%eth0', 'fe80::1%eth0.1', 'fe80::1%a:b', 'fe80::1%', 'fe80::1%%', '::ffff:1.2.3.4'],
      ...['::ffff:01.2.3.4', '::256.1.1.1', '1::2::3', '2001:db8::/32', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '[::1]'],
    ];
    const answers = (m: { isIP(s: string): number; isIPv4(s: string): boolean; isIPv6(s: string): boolean }) =>
      addresses.map((a) => [a, m.isIP(a), m.isIPv4(a), m.isIPv6(a)]);
    expect(answers(shim)).toEqual(answers(net));
  });
});
