// svcpath trace: the datapath's own account of a NodePort flow with
// masquerading and of its reply — every lookup, the Maglev slot, the rewrite.
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../control/main.js';
import { PROJECT_ROOT } from '../control/paths.js';
import { decodeFrame } from '../traces/frames.js';
import { openCapture } from '../traces/pcap.js';

const CASE = join(PROJECT_ROOT, 'test', 'cases', 'frontends-and-policies');
const ARGS = ['--cluster', join(CASE, 'cluster.yaml'), '--node', 'node-a', '--snat-port-range', '40000-40999',
  '--service-cluster-ip-range', '10.96.0.0/12,fd00:96::/108'];

async function svcpath(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => { lines.push(a.join(' ')); });
  try {
    return { code: await main(args), out: lines.join('\n') };
  } finally {
    log.mockRestore();
  }
}

interface Step { step: string; map?: string; key?: Record<string, unknown>; value?: Record<string, unknown> | null; slot?: number; backend?: string }
interface Traced { packet: number; steps: Step[]; rewrite: Array<[string, string, string]>; checksumsValid: boolean; verdict: string; reason: string; snat: boolean }

describe('svcpath trace', () => {
  it('shows every lookup and rewrite of a masqueraded NodePort flow and of its reply', async () => {
    // The external client's SYN to the NodePort, and the backend's answer right after it.
    const records = [...openCapture(join(CASE, 'input.pcap')).records()];
    const syn = records.find((r) => {
      const d = decodeFrame(r.data);
      return d.ipv4?.src === '172.16.3.4' && d.tcp?.dport === 30080;
    })!;
    const { code, out } = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--packet', String(syn.n), '--packet', String(syn.n + 1), '--json']);
    expect(code).toBe(0);
    const [request, reply] = JSON.parse(out) as Traced[];

    expect([request.reason, request.snat]).toEqual(['SERVICE', true]);
    expect(['TX', 'REDIRECT']).toContain(request.verdict);
    // The frontend is found; it is a NodePort, so conntrack is asked first whether this is a tracked reply.
    // The Service has ClientIP affinity, and this client used it before: the affinity record
    // names the backend, its table membership is checked, and Maglev is not asked.
    const lookups = request.steps.filter((s) => s.step === 'lookup').map((s) => `${s.map} ${s.value ? 'hit' : 'miss'}`);
    expect(lookups).toEqual(['lb4_services hit', 'ct4 miss', 'ct4 miss', 'node_ips4 miss', 'lb4_affinity hit', 'lb_members hit', 'lb4_backends hit']);
    expect(request.steps.some((s) => s.step === 'maglev')).toBe(false);
    const backend = request.steps.find((s) => s.map === 'lb4_backends')!.value!;
    expect(request.steps.find((s) => s.map === 'lb4_affinity')!.value).toMatchObject({ backendId: request.steps.find((s) => s.map === 'lb4_backends')!.key!.value });
    expect(request.steps.at(-1)).toEqual({ step: 'verdict', verdict: request.verdict, reason: 'SERVICE' });
    const changed = Object.fromEntries(request.rewrite.map(([f, a, b]) => [f, [a, b]]));
    expect(changed['ipv4.dst']).toEqual(['"192.168.0.10"', JSON.stringify(backend.address)]);
    expect(changed['ipv4.src']).toEqual(['"172.16.3.4"', '"192.168.0.10"']);
    expect(changed['tcp.dport']).toEqual(['30080', '8080']);
    expect(Object.keys(changed)).toEqual(expect.arrayContaining(['ipv4.checksum', 'tcp.sport', 'tcp.checksum']));
    expect(request.checksumsValid).toBe(true);

    expect([reply.verdict, reply.reason, reply.snat]).toEqual(['TX', 'REPLY', true]);
    const replyLookups = reply.steps.filter((s) => s.step === 'lookup').map((s) => `${s.map} ${s.value ? 'hit' : 'miss'}`);
    expect(replyLookups).toEqual(['lb4_services miss', 'ct4 hit', 'lb4_reverse_nat hit', 'snat4 hit', 'ct4 hit']);
    const snat = reply.steps.find((s) => s.map === 'snat4')!;
    expect(snat.value).toMatchObject({ address: '172.16.3.4' });
    const back = Object.fromEntries(reply.rewrite.map(([f, a, b]) => [f, [a, b]]));
    expect(back['ipv4.dst']![1]).toBe('"172.16.3.4"');
    expect(back['tcp.sport']![1]).toBe('30080');
    expect(reply.checksumsValid).toBe(true);
  });

  it('prints a readable account, and selects by flow and by Service', async () => {
    const text = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--flow', '172.16.3.4:41016']);
    expect(text.code).toBe(0);
    const byService = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--service', 'default/local', '--json']);
    const traced = JSON.parse(byService.out) as Array<{ service: string }>;
    expect(traced.length).toBeGreaterThan(0);
    expect(traced.every((t) => t.service === 'default/local:http')).toBe(true);
    const first = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--packet', '1']);
    // A cluster-IP frontend: no reply goes to a cluster IP, so the flow's own entry is the only conntrack lookup.
    expect(first.out).toMatch(/^packet 1 {2}\S+ {2}TCP 10\.244\.0\.77:\d+ > 10\.96\.0\.10:80 flags 0x2\n {2}lookup lb4_services +address 10\.96\.0\.10 {2}port 80 .*\n {2}lookup ct4 +saddr 10\.244\.0\.77 .* dir 0 {2}-> {2}miss\n/);
    expect(first.out).toMatch(/\n {2}maglev table \d+ slot \d+ {2}-> {2}backend \d+ \(10\.244\.\d+\.\d+:8080\)\n/);
    expect(first.out).toMatch(/\n {2}verdict (TX|REDIRECT) SERVICE default\/lb:http 10\.244\.\d+\.\d+:8080$/);
  });
});
