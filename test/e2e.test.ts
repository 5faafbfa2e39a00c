// End to end: the bundled sample through the CLI, against the reviewed golden
// files, against what the sample's generator meant each packet to be, and the
// output pcap read back by both readers with every checksum recomputed.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { LINKTYPES } from '../control/compile/layout.js';
import { buildFrame, verifyChecksums, decodeFrame, toLinkType } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import { maglevChooser } from '../traces/synth/predict.js';
import { buildSample, SAMPLE_CLUSTER, SAMPLE_NODE, SAMPLE_SEED, type SamplePacket } from '../traces/synth/sample.js';
import { readWithPcapParser } from './pcap-parser.js';
import { cli } from './helpers.js';

interface VerdictLine {
  n: number;
  verdict: string;
  reason: string;
  service: string | null;
  backend: string | null;
  snat: boolean;
}

const GOLDEN = join(PROJECT_ROOT, 'test', 'golden');
const tmp = mkdtempSync(join(tmpdir(), 'svcpath-e2e-'));

const readLines = (path: string): VerdictLine[] =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

describe('the bundled sample', () => {
  let sample: SamplePacket[];
  let run: { code: number; stdout: string; stderr: string };
  beforeAll(async () => {
    process.chdir(PROJECT_ROOT);
    sample = buildSample();
    run = await cli([
      'replay',
      'traces/samples/sample.pcap',
      '--cluster',
      'traces/samples/cluster.yaml',
      '--node',
      'node-a',
      '--out',
      join(tmp, 'out.pcap'),
      '--verdicts',
      join(tmp, 'verdicts.jsonl'),
      '--summary',
      join(tmp, 'summary.json'),
    ]);
  });
  afterEach(() => vi.restoreAllMocks());

  it('is exactly what traces/synth/sample.ts builds', () => {
    const reader = openCapture(join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap'));
    let i = 0;
    for (const rec of reader.records()) {
      const p = sample[i++];
      expect([rec.tsSec, rec.tsNsec, rec.origlen], `record ${rec.n}`).toEqual([
        p.tsSec,
        Math.floor(p.tsNsec / 1000) * 1000,
        p.origlen ?? p.data.length,
      ]);
      expect(rec.data).toEqual(p.data);
    }
    expect(i).toBe(sample.length);
  });

  it('replays with exit 0 and prints the summary', () => {
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`${sample.length} packets replayed on node node-a`);
    expect(run.stdout).toMatch(/default\/web:http/);
  });

  it('matches the reviewed golden verdicts and summary', () => {
    expect(readFileSync(join(tmp, 'verdicts.jsonl'), 'utf8')).toBe(readFileSync(join(GOLDEN, 'sample.verdicts.jsonl'), 'utf8'));
    const summary = JSON.parse(readFileSync(join(tmp, 'summary.json'), 'utf8'));
    expect({ ...summary, written: 0 }).toEqual(JSON.parse(readFileSync(join(GOLDEN, 'sample.summary.json'), 'utf8')));
  });

  it('decides every packet as the generator meant it', () => {
    const state = loadClusterState([SAMPLE_CLUSTER]);
    const compiled = compile(state, resolveServices(state).services, {
      node: SAMPLE_NODE,
      seed: SAMPLE_SEED,
      maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
    });
    const choose = maglevChooser(compiled, SAMPLE_SEED);
    const verdicts = readLines(join(tmp, 'verdicts.jsonl'));
    expect(verdicts.length).toBe(sample.length);
    sample.forEach((p, i) => {
      const v = verdicts[i];
      expect(v.n).toBe(i + 1);
      if (p.expect) {
        expect(`${v.verdict} ${v.reason}`, p.expect.what).toBe(`${p.expect.verdict} ${p.expect.reason}`);
      } else if (!p.flow) {
        expect(`${v.verdict} ${v.reason}`).toBe('PASS NO_SERVICE');
      } else {
        const backend = choose(p.flow);
        if (!backend) {
          expect(`${v.verdict} ${v.reason}`).toBe('TX NO_ENDPOINTS');
          expect(v.backend).toBeNull();
        } else {
          expect(v.reason).toBe(p.direction === 'request' ? 'SERVICE' : 'REPLY');
          expect(v.backend).toBe(`${backend.ip}:${backend.port}`);
        }
        expect(v.service).toMatch(/^[a-z-]+\/[a-z-]+:[a-z0-9-]+$/);
      }
      expect(v.snat).toBe(false);
    });
  });

  it('writes exactly the TX/REDIRECT frames, rewritten, readable by both readers, every checksum valid', async () => {
    const verdicts = readLines(join(tmp, 'verdicts.jsonl'));
    const sent = verdicts.filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT');
    const ours = Array.from(openCapture(join(tmp, 'out.pcap')).records(), (r) => ({ ...r, data: r.data.slice() }));
    const theirs = await readWithPcapParser(join(tmp, 'out.pcap'));
    expect(ours.length).toBe(sent.length);
    expect(theirs.length).toBe(sent.length);
    ours.forEach((rec, k) => {
      expect(Buffer.from(rec.data)).toEqual(theirs[k].data);
      const v = sent[k];
      const input = sample[v.n - 1];
      expect([rec.tsSec, Math.floor(rec.tsNsec / 1000)]).toEqual([input.tsSec, Math.floor(input.tsNsec / 1000)]);
      const report = verifyChecksums(rec.data);
      expect(report, `output frame ${k + 1} (packet ${v.n})`).toMatchObject({ ipv4: true, l4: true });
      const d = decodeFrame(rec.data);
      if (v.reason === 'SERVICE') expect(`${d.ipv4!.dst}:${(d.tcp ?? d.udp)!.dport}`).toBe(v.backend);
      if (v.reason === 'REPLY') expect(`${d.ipv4!.src}:${(d.tcp ?? d.udp)!.sport}`).toBe(`${input.flow!.vip}:${input.flow!.vport}`);
      if (v.reason === 'NO_ENDPOINTS') expect([d.icmp!.type, d.icmp!.code, report.icmpEmbedded?.ipv4]).toEqual([3, 3, true]);
    });
  });
});

describe('CLI errors name what is wrong and keep what was done', () => {
  it('a truncated trace: everything before the bad record is written, exit 1 naming the record', async () => {
    const whole = readFileSync(join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap'));
    const cut = join(tmp, 'cut.pcap');
    writeFileSync(cut, whole.subarray(0, whole.length - 30));
    const r = await cli([
      'replay',
      cut,
      '--cluster',
      SAMPLE_CLUSTER,
      '--node',
      'node-a',
      '--verdicts',
      join(tmp, 'cut.jsonl'),
      '--summary',
      join(tmp, 'cut.json'),
    ]);
    const last = buildSample().length;
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`cut\\.pcap: record ${last} \\(offset \\d+\\): truncated`));
    expect(readLines(join(tmp, 'cut.jsonl')).length).toBe(last - 1);
    expect(JSON.parse(readFileSync(join(tmp, 'cut.json'), 'utf8'))).toMatchObject({
      packets: last - 1,
      complete: false,
      stoppedAt: { record: last },
    });
    expect(r.stdout).toContain(`STOPPED at record ${last}`);
  });

  it('a frame past 2106 cannot go into a classic pcap --out, but into pcapng it can', async () => {
    const late = join(tmp, 'late.pcapng');
    const w = createPcapngWriter(late, { interfaces: [{ linktype: 1 }] });
    const syn = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: '10.244.0.5', dst: '10.96.0.10' },
      l4: { kind: 'tcp', sport: 1000, dport: 80, flags: ['SYN'] },
    });
    w.write(0, 2 ** 32 - 1, 0, syn);
    w.write(0, 2 ** 32 + 5, 0, syn);
    w.close();
    const args = ['replay', late, '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--verdicts', join(tmp, 'late.jsonl')];
    const classic = await cli([...args, '--out', join(tmp, 'late.pcap')]);
    expect(classic.code).toBe(1);
    expect(classic.stderr).toMatch(/late\.pcap: output of record 2: timestamp: 4294967301 s does not fit a classic pcap file/);
    expect([...openCapture(join(tmp, 'late.pcap')).records()].length).toBe(1);
    const pcapng = await cli([...args, '--out', join(tmp, 'late-out.pcapng')]);
    expect(pcapng.code).toBe(0);
    expect([...openCapture(join(tmp, 'late-out.pcapng')).records()].map((r) => r.tsSec)).toEqual([2 ** 32 - 1, 2 ** 32 + 5]);
  });

  it.each([
    [['replay'], /expected one trace file/],
    [['replay', 'x.pcap'], /--cluster is required/],
    [['replay', 'x.pcap', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a'], /x\.pcap: cannot open/],
    [['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER], /--node: required: the cluster state has 3 Nodes/],
    [['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--node', 'node-z'], /--node: no Node named "node-z"/],
    [['replay', 'traces/samples/sample.pcap', '--cluster', 'nope.yaml'], /nope\.yaml/],
    [['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--seed', '-1'], /--seed/],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--maglev-table-size', '1000'],
      /--maglev-table-size: 1000 is not prime/,
    ],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--service-cluster-ip-range', '10.0.0.0/33'],
      /--service-cluster-ip-range: "10\.0\.0\.0\/33" is not a CIDR/,
    ],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--service-node-port-range', '30000'],
      /--service-node-port-range/,
    ],
    [['replay', 'traces/samples/sample.pcap', '--bogus'], /bogus/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--snat-port-range', '2000-1000'],
      /--snat-port-range: 2000-1000 is empty/,
    ],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--masquerade-address', '10.0.0'],
      /--masquerade-address: "10\.0\.0" is not an IP address/,
    ],
    [
      ['replay', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--nodeport-addresses', 'eth0'],
      /--nodeport-addresses: "eth0" is neither a CIDR nor "primary"/,
    ],
    [
      [
        'replay',
        'traces/samples/sample.pcap',
        '--cluster',
        SAMPLE_CLUSTER,
        '--node',
        'node-a',
        '--cluster-cidr',
        '10.244.0.0/16,10.245.0.0/16',
      ],
      /--cluster-cidr: more than one IPv4 CIDR/,
    ],
    [['services'], /--cluster is required/],
  ])('%j', async (args, message) => {
    const r = await cli(args as string[]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it("flags reach the datapath: --masquerade-all masquerades the pods' cluster-IP flows", async () => {
    const r = await cli([
      'replay',
      'traces/samples/sample.pcap',
      '--cluster',
      SAMPLE_CLUSTER,
      '--node',
      'node-a',
      '--masquerade-all',
      '--verdicts',
      join(tmp, 'masq.jsonl'),
    ]);
    expect(r.code).toBe(0);
    const service = readLines(join(tmp, 'masq.jsonl')).filter((v) => v.reason === 'SERVICE');
    expect(service.length).toBeGreaterThan(100);
    expect(service.every((v) => v.snat)).toBe(true);
  });

  it('svcpath services lists every Service after allocation, as a table or JSON', async () => {
    const table = await cli(['services', '--cluster', SAMPLE_CLUSTER]);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^NAMESPACE\s+NAME\s+TYPE\s+CLUSTER-IP\s+EXTERNAL-IP\s+PORT\(S\)\s+SELECTOR/);
    expect(table.stdout).toMatch(/kube-system\s+kube-dns\s+ClusterIP\s+10\.96\.0\.53\s+<none>\s+53\/UDP,53\/TCP/);
    expect(table.stdout).toMatch(/shop\s+payments\s+ExternalName\s+<none>\s+payments\.example\.com/);
    const json = await cli(['services', '--cluster', SAMPLE_CLUSTER, '--json']);
    expect(JSON.parse(json.stdout).length).toBe(7);
  });

  it('svcpath maps dumps every map, decoded, through the map API', async () => {
    const text = await cli(['maps', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^lb4_services: hash {2}key 8B {2}value 24B/m);
    expect(text.stdout).toMatch(
      /key: address 10\.96\.0\.10 {2}port 80 {2}proto 6 {2}scope 0\n {4}value: serviceId \d+ {2}backendCount 2 .*flags CLUSTER_IP/,
    );
    const json = await cli(['maps', '--cluster', SAMPLE_CLUSTER, '--node', 'node-a', '--json']);
    const dumps = JSON.parse(json.stdout) as Array<{
      name: string;
      inUse: number;
      entries: Array<{ key: Record<string, unknown>; value: Record<string, number> }>;
    }>;
    const maglev = dumps.find((d) => d.name === 'lb_maglev')!;
    for (const { value } of maglev.entries) {
      const { slots, ...perBackend } = value;
      expect(Object.values(perBackend).reduce((a, b) => a + b, 0)).toBe(slots);
    }
    expect(dumps.find((d) => d.name === 'ct4')!.inUse).toBe(0);
    expect(dumps.map((d) => d.name)).toContain('frag4');
  });

  it("svcpath diff: removing one of three backends moves about a third of that Service's flows, and only those", async () => {
    const after = join(tmp, 'after.yaml');
    const yaml = readFileSync(SAMPLE_CLUSTER, 'utf8');
    // shop/api lists 10.244.1.41 in both of its slices: take it out of both.
    const removed = yaml.replace(/  - addresses: \[10\.244\.1\.41\]\n    nodeName: node-b\n/g, '');
    expect(removed).not.toBe(yaml);
    writeFileSync(after, removed);
    const r = await cli([
      'diff',
      'traces/samples/sample.pcap',
      '--cluster',
      SAMPLE_CLUSTER,
      '--against',
      after,
      '--node',
      'node-a',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as {
      flows: number;
      changed: number;
      services: Array<{ service: string; flows: number; changed: number }>;
      changes: Array<{ service: string; before: string; after: string }>;
    };
    const api = report.services.find((s) => s.service === 'shop/api:https')!;
    expect(api.changed / api.flows).toBeGreaterThan(0.2);
    expect(api.changed / api.flows).toBeLessThan(0.5);
    expect(report.changed).toBe(api.changed);
    for (const c of report.changes) {
      expect(c.before).toMatch(/SERVICE 10\.244\.1\.41:8443$/);
      expect(c.after).not.toMatch(/10\.244\.1\.41/);
    }
    const text = await cli(['diff', 'traces/samples/sample.pcap', '--cluster', SAMPLE_CLUSTER, '--against', after, '--node', 'node-a']);
    expect(text.stdout).toMatch(/shop\/api:https {2}flows \d+ {2}changed \d+ \(\d+\.\d%\)/);
  });

  it('svcpath diff finds the same flows in a raw-IP capture as in its Ethernet twin', async () => {
    const after = join(tmp, 'after-raw.yaml');
    writeFileSync(after, readFileSync(SAMPLE_CLUSTER, 'utf8').replace(/  - addresses: \[10\.244\.1\.41\]\n    nodeName: node-b\n/g, ''));
    // The sample's untagged IP frames, on Ethernet and as raw IP (which carries no VLAN tags and no other protocol).
    const framed = (linktype: number) => {
      const path = join(tmp, `sample-${linktype}.pcap`);
      const w = createPcapWriter(path, { linktype });
      for (const rec of openCapture(join(PROJECT_ROOT, 'traces', 'samples', 'sample.pcap')).records()) {
        const d = decodeFrame(rec.data);
        if (!(d.ipv4 || d.ipv6) || d.eth?.vlans.length) continue;
        const frame = toLinkType(rec.data, linktype);
        w.write(rec.tsSec, rec.tsNsec, frame, rec.origlen - rec.caplen + frame.length);
      }
      w.close();
      return path;
    };
    const diff = async (capture: string) =>
      JSON.parse((await cli(['diff', capture, '--cluster', SAMPLE_CLUSTER, '--against', after, '--node', 'node-a', '--json'])).stdout);
    const [want, got] = [await diff(framed(LINKTYPES.ETHERNET)), await diff(framed(LINKTYPES.RAW))];
    expect(want.changed).toBeGreaterThan(0);
    expect({ ...got, trace: '' }).toEqual({ ...want, trace: '' });
  });

  it('--help', async () => {
    const r = await cli(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/svcpath replay <trace/);
  });
});
