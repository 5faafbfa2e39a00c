// The policy matrix end to end, IPv4 and IPv6 through dual-stack Services:
// manifests and a capture written to files, a replay through the CLI, and its verdicts and output frames checked against
// kube-proxy's decisions. The capture holds what a node would see: each
// client's SYN, and the backend's answer to the packet the node sent it (so
// a masqueraded flow's answer goes to the node's address and port).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { compile } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { main } from '../control/cli/main.js';
import { loadProgram } from '../control/runtime/loader.js';
import { hostPort } from '../control/compile/layout.js';
import { decodeFrame } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { checksumsValid, ipOf, runFrames, tcp } from './helpers.js';
import {
  CASES,
  FAMILIES,
  SERVICE_RANGES,
  SOURCES,
  type Family,
  type Source,
  casesManifest,
  expected,
  frontends,
  replyTo,
  sources,
} from './policy-cases.js';

interface Sent {
  label: string;
  kind: 'request' | 'reply';
  client: string;
  clientPort: number;
  frontend: [string, number];
  want: ReturnType<typeof expected>;
  family: Family;
}

describe('the policy matrix through a replay of files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-policy-'));
  const sent: Sent[] = [];
  let verdicts: Array<{ n: number; verdict: string; reason: string; backend: string | null; snat: boolean }>;
  let output: Uint8Array[];

  beforeAll(async () => {
    writeFileSync(join(dir, 'cluster.yaml'), casesManifest());
    // The node that made the capture: the same state, so its answers are the ones svcpath would see.
    const state = loadClusterState([join(dir, 'cluster.yaml')], { serviceClusterIPRanges: SERVICE_RANGES });
    const compiled = compile(state, resolveServices(state).services, {
      node: 'node-a',
      seed: 0,
      maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
      serviceClusterIPRanges: SERVICE_RANGES,
    });
    const capturer = await loadProgram(compiled);
    const w = createPcapWriter(join(dir, 'capture.pcap'), { linktype: 1 });
    let t = 1_800_000_000;
    let port = 40000;
    for (const family of FAMILIES)
      for (const caseName of Object.keys(CASES)) {
        for (const [kind, frontend] of Object.entries(frontends(CASES[caseName], family))) {
          for (const source of Object.keys(SOURCES) as Source[]) {
            for (let i = 0; i < 6; i++) {
              const client = sources(family)[source];
              const clientPort = port++;
              const label = `${family} ${caseName} ${kind} from ${source} #${i}`;
              const want = expected(caseName, kind, source, true, family);
              const syn = tcp(client, clientPort, frontend[0], frontend[1], ['SYN']);
              w.write(t, 0, syn);
              sent.push({ label, kind: 'request', client, clientPort, frontend, want, family });
              const [r] = runFrames(capturer, [syn], [t++]);
              if (r.reason !== 'SERVICE') continue;
              w.write(t, 0, replyTo(r.out));
              runFrames(capturer, [replyTo(r.out)], [t++]);
              sent.push({ label, kind: 'reply', client, clientPort, frontend, want, family });
            }
          }
        }
      }
    w.close();
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    const code = await main([
      'replay',
      join(dir, 'capture.pcap'),
      '--cluster',
      join(dir, 'cluster.yaml'),
      '--node',
      'node-a',
      '--service-cluster-ip-range',
      SERVICE_RANGES.join(','),
      '--verdicts',
      join(dir, 'verdicts.jsonl'),
      '--out',
      join(dir, 'out.pcap'),
    ]);
    log.mockRestore();
    expect(code).toBe(0);
    verdicts = readFileSync(join(dir, 'verdicts.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    output = Array.from(openCapture(join(dir, 'out.pcap')).records(), (r) => r.data.slice());
  });

  it('decides every request as kube-proxy would, and restores every reply', () => {
    expect(verdicts.length).toBe(sent.length);
    let k = 0; // index into the output frames
    const snatOfFlow = new Map<string, boolean>();
    sent.forEach((s, i) => {
      const v = verdicts[i];
      const out = v.verdict === 'TX' || v.verdict === 'REDIRECT' ? output[k++] : undefined;
      if (s.kind === 'request') {
        if (s.want.outcome) {
          expect(`${v.verdict} ${v.reason}`, s.label).toBe(s.want.outcome);
          return;
        }
        expect(v.reason, s.label).toBe('SERVICE');
        expect(s.want.backends, s.label).toContain(v.backend!.replace(/^\[?(.*?)\]?:\d+$/, '$1'));
        expect(v.snat, s.label).toBe(s.want.snat);
        snatOfFlow.set(s.label, v.snat);
        const d = decodeFrame(out!);
        expect(hostPort(ipOf(out!).dst, d.tcp!.dport), s.label).toBe(v.backend);
        if (s.want.snat) expect(ipOf(out!).src, s.label).toBe(sources(s.family).node);
        else expect([ipOf(out!).src, d.tcp!.sport], s.label).toEqual([s.client, s.clientPort]);
      } else {
        expect(`${v.verdict} ${v.reason}`, `${s.label} reply`).toBe('TX REPLY');
        expect(v.snat, `${s.label} reply`).toBe(snatOfFlow.get(s.label));
        const d = decodeFrame(out!);
        expect([ipOf(out!).src, d.tcp!.sport, ipOf(out!).dst, d.tcp!.dport], `${s.label} reply`).toEqual([
          ...s.frontend,
          s.client,
          s.clientPort,
        ]);
      }
      expect(checksumsValid(out!), s.label).toBe(true);
    });
    expect(k).toBe(output.length);
  });
});
