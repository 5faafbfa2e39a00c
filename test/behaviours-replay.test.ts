// Each Service behaviour as a user meets it: manifests and a generated capture
// written to files, replayed through `svcpath replay`, every packet's verdict
// checked against what Kubernetes does.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../control/cli/main.js';
import { buildFrame, decodeFrame } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { tcp } from './helpers.js';

const NODES = `
- {apiVersion: v1, kind: Node, metadata: {name: node-a}, status: {addresses: [{type: InternalIP, address: 192.168.0.10}]}}
- {apiVersion: v1, kind: Node, metadata: {name: node-b}, status: {addresses: [{type: InternalIP, address: 192.168.0.11}]}}`;

function slice(service: string, eps: Array<[string, string, string?]>, port = 8080, protocol = 'TCP', name = 'http'): string {
  const endpoints = eps.map(
    ([ip, node, conditions]) => `{addresses: [${ip}], nodeName: ${node}${conditions ? `, conditions: ${conditions}` : ''}}`,
  );
  return `
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: ${service}-x1, namespace: default, labels: {kubernetes.io/service-name: ${service}}}
  addressType: IPv4
  endpoints: [${endpoints.join(', ')}]
  ports: [{name: ${name}, port: ${port}, protocol: ${protocol}}]`;
}

interface Expect {
  verdict: string;
  reason: string;
  snat?: boolean;
  backend?: RegExp;
}

async function replayScenario(name: string, manifest: string, packets: Array<[Uint8Array, number]>, flags: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), `svcpath-${name}-`));
  writeFileSync(join(dir, 'cluster.yaml'), `apiVersion: v1\nkind: List\nitems:${NODES}${manifest}\n`);
  const w = createPcapWriter(join(dir, 'capture.pcap'), { linktype: 1 });
  for (const [frame, t] of packets) w.write(t, 0, frame);
  w.close();
  const log = vi.spyOn(console, 'log').mockImplementation(() => {});
  const err = vi.spyOn(console, 'error').mockImplementation(() => {});
  const code = await main([
    'replay',
    join(dir, 'capture.pcap'),
    '--cluster',
    join(dir, 'cluster.yaml'),
    '--node',
    'node-a',
    '--verdicts',
    join(dir, 'v.jsonl'),
    '--out',
    join(dir, 'out.pcap'),
    '--summary',
    join(dir, 's.json'),
    ...flags,
  ]);
  const errors = err.mock.calls.map((c) => c.join(' '));
  log.mockRestore();
  err.mockRestore();
  expect(errors).toEqual([]);
  expect(code).toBe(0);
  return {
    verdicts: readFileSync(join(dir, 'v.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    output: Array.from(openCapture(join(dir, 'out.pcap')).records(), (r) => r.data.slice()),
    summary: JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')),
    dir,
  };
}

function check(verdicts: Array<Record<string, unknown>>, want: Expect[]): void {
  expect(verdicts.length).toBe(want.length);
  want.forEach((w, i) => {
    const v = verdicts[i];
    expect(`${v.verdict} ${v.reason}`, `packet ${i + 1}`).toBe(`${w.verdict} ${w.reason}`);
    if (w.snat !== undefined) expect(v.snat, `packet ${i + 1} snat`).toBe(w.snat);
    if (w.backend) expect(v.backend, `packet ${i + 1} backend`).toMatch(w.backend);
  });
}

const T = 1_800_000_000;
const svc = (name: string, spec: string) => `
- apiVersion: v1
  kind: Service
  metadata: {name: ${name}, namespace: default}
  ${spec}`;

describe('Service behaviours through svcpath replay', () => {
  it('loadBalancerSourceRanges guard the LB IP only', async () => {
    const manifest =
      svc(
        'ranged',
        `spec: {type: LoadBalancer, clusterIP: 10.96.1.1, loadBalancerSourceRanges: [' 172.16.0.0/16 '], ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]}
  status: {loadBalancer: {ingress: [{ip: 203.0.113.7}]}}`,
      ) + slice('ranged', [['10.244.2.5', 'node-b']]);
    const { verdicts } = await replayScenario('ranges', manifest, [
      [tcp('172.16.1.1', 1000, '203.0.113.7', 80, ['SYN']), T],
      [tcp('172.17.1.1', 1001, '203.0.113.7', 80, ['SYN']), T + 1],
      [tcp('172.17.1.1', 1002, '192.168.0.10', 30080, ['SYN']), T + 2],
    ]);
    check(verdicts, [
      { verdict: 'TX', reason: 'SERVICE', snat: true },
      { verdict: 'DROP', reason: 'SOURCE_RANGE' },
      { verdict: 'TX', reason: 'SERVICE', snat: true },
    ]);
  });

  it('session affinity keeps a client on one backend until the timeout', async () => {
    const manifest =
      svc(
        'sticky',
        `spec: {clusterIP: 10.96.1.2, sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 30}}, ports: [{name: http, port: 80, targetPort: 8080}]}`,
      ) +
      slice(
        'sticky',
        Array.from({ length: 6 }, (_, i): [string, string] => [`10.244.2.${i + 1}`, 'node-b']),
      );
    const packets: Array<[Uint8Array, number]> = Array.from({ length: 10 }, (_, i) => [
      tcp('10.244.0.9', 2000 + i, '10.96.1.2', 80, ['SYN']),
      T + i * 20,
    ]);
    const { verdicts } = await replayScenario('affinity', manifest, packets);
    expect(new Set(verdicts.map((v) => v.backend)).size).toBe(1);
    const spread = await replayScenario(
      'affinity-expired',
      manifest,
      packets.map(([f], i) => [f, T + i * 40]),
    );
    expect(new Set(spread.verdicts.map((v) => v.backend)).size).toBeGreaterThan(1);
  });

  it('two Services sharing endpoints (a ClusterIP and LoadBalancer pair) each count their own flows per backend', async () => {
    const endpoints: Array<[string, string]> = [
      ['10.244.2.1', 'node-b'],
      ['10.244.2.2', 'node-b'],
      ['10.244.0.3', 'node-a'],
    ];
    const manifest =
      svc('web', 'spec: {clusterIP: 10.96.1.4, ports: [{name: http, port: 80, targetPort: 8080}]}') +
      svc(
        'web-lb',
        `spec: {type: LoadBalancer, clusterIP: 10.96.1.5, ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30081}]}
  status: {loadBalancer: {ingress: [{ip: 203.0.113.9}]}}`,
      ) +
      slice('web', endpoints) +
      slice('web-lb', endpoints);
    // 30 flows through the cluster IP and 12 through the LB IP, each a SYN and the backend's SYN-ACK.
    const flows = [
      ...Array.from({ length: 30 }, (_, i) => ({ client: '10.244.9.9', port: 4000 + i, vip: '10.96.1.4' })),
      ...Array.from({ length: 12 }, (_, i) => ({ client: '198.51.100.7', port: 5000 + i, vip: '203.0.113.9' })),
    ];
    const syns = await replayScenario(
      'shared-syns',
      manifest,
      flows.map((f, i) => [tcp(f.client, f.port, f.vip, 80, ['SYN']), T + i]),
    );
    // The replies come from the backend each SYN was sent to, to the (possibly masqueraded) source it was sent from.
    const replies = syns.output.map((frame) => {
      const d = decodeFrame(frame);
      return tcp(d.ipv4!.dst, d.tcp!.dport, d.ipv4!.src, d.tcp!.sport, ['SYN', 'ACK']);
    });
    const packets: Array<[Uint8Array, number]> = flows.flatMap(
      (f, i): Array<[Uint8Array, number]> => [
        [tcp(f.client, f.port, f.vip, 80, ['SYN']), T + 2 * i],
        [replies[i], T + 2 * i + 1],
      ],
    );
    const { verdicts, summary } = await replayScenario('shared', manifest, packets);
    // What each Service sent to each backend, from the verdict lines (the counters are a separate path in the datapath).
    const sent = new Map<string, number>();
    for (const v of verdicts) {
      expect(`${v.verdict} ${v.reason}`).toMatch(/^(TX|REDIRECT) (SERVICE|REPLY)$/);
      if (v.reason === 'SERVICE') sent.set(`${v.service} ${v.backend}`, (sent.get(`${v.service} ${v.backend}`) ?? 0) + 1);
    }
    for (const [name, total] of [
      ['default/web:http', 30],
      ['default/web-lb:http', 12],
    ] as const) {
      const s = summary.services.find((x: { service: string }) => x.service === name);
      expect(s.flows, name).toBe(total);
      expect(s.packets, name).toBe(2 * total);
      expect(s.backends.map((b: { backend: string }) => b.backend).sort()).toEqual(endpoints.map(([ip]) => `${ip}:8080`).sort());
      expect(
        s.backends.reduce((n: number, b: { flows: number }) => n + b.flows, 0),
        name,
      ).toBe(total);
      expect(
        s.backends.reduce((n: number, b: { packets: number }) => n + b.packets, 0),
        name,
      ).toBe(2 * total);
      for (const b of s.backends) expect(b.flows, `${name} ${b.backend}`).toBe(sent.get(`${name} ${b.backend}`) ?? 0);
    }
  });

  it('SCTP, hairpin masquerade, unserved ports and unallocated service IPs', async () => {
    const manifest =
      svc(
        'sig',
        `spec: {clusterIP: 10.96.1.3, ports: [{name: sctp, port: 3868, protocol: SCTP, targetPort: 3869}, {name: http, port: 80, targetPort: 8080}]}`,
      ) +
      slice('sig', [['10.244.0.5', 'node-a']], 3869, 'SCTP', 'sctp').replace('sig-x1', 'sig-sctp') +
      slice('sig', [['10.244.0.5', 'node-a']]);
    const sctp = new Uint8Array(28);
    new DataView(sctp.buffer).setUint16(0, 5000);
    new DataView(sctp.buffer).setUint16(2, 3868);
    const sctpFrame = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: '10.244.1.1', dst: '10.96.1.3' },
      l4: { kind: 'raw', protocol: 132 },
      payload: sctp,
    });
    const { verdicts } = await replayScenario(
      'misc',
      manifest,
      [
        [sctpFrame, T],
        [tcp('10.244.0.5', 3000, '10.96.1.3', 80, ['SYN']), T + 1],
        [tcp('10.244.1.1', 3001, '10.96.1.3', 81, ['SYN']), T + 2],
        [tcp('10.244.1.1', 3002, '10.96.99.99', 80, ['SYN']), T + 3],
      ],
      ['--cluster-cidr', '10.244.0.0/16', '--service-cluster-ip-range', '10.96.0.0/12'],
    );
    check(verdicts, [
      { verdict: 'REDIRECT', reason: 'SERVICE', backend: /^10\.244\.0\.5:3869$/ },
      { verdict: 'REDIRECT', reason: 'SERVICE', snat: true },
      { verdict: 'TX', reason: 'UNSERVED_PORT' },
      { verdict: 'DROP', reason: 'UNALLOCATED_IP' },
    ]);
  });

  it('endpoint conditions: serving-terminating fallback, none serving rejects', async () => {
    const manifest =
      svc('draining', `spec: {clusterIP: 10.96.1.4, ports: [{name: http, port: 80, targetPort: 8080}]}`) +
      slice('draining', [['10.244.2.1', 'node-b', '{ready: false, serving: true, terminating: true}']]) +
      svc('gone', `spec: {clusterIP: 10.96.1.5, ports: [{name: http, port: 80, targetPort: 8080}]}`) +
      slice('gone', [['10.244.2.2', 'node-b', '{ready: false, serving: false, terminating: true}']]);
    const { verdicts } = await replayScenario('conditions', manifest, [
      [tcp('10.244.1.1', 4000, '10.96.1.4', 80, ['SYN']), T],
      [tcp('10.244.1.1', 4001, '10.96.1.5', 80, ['SYN']), T + 1],
    ]);
    check(verdicts, [
      { verdict: 'TX', reason: 'SERVICE', backend: /^10\.244\.2\.1:8080$/ },
      { verdict: 'TX', reason: 'NO_ENDPOINTS' },
    ]);
  });

  it('a selectorless Service with a legacy Endpoints object; headless and ExternalName get no entries', async () => {
    const manifest =
      svc('external-db', `spec: {clusterIP: 10.96.1.6, ports: [{name: pg, port: 5432}]}`) +
      `
- apiVersion: v1
  kind: Endpoints
  metadata: {name: external-db, namespace: default}
  subsets: [{addresses: [{ip: 10.50.0.7}], ports: [{name: pg, port: 5432}]}]` +
      svc('headless', `spec: {clusterIP: None, selector: {app: x}, ports: [{port: 80}]}`) +
      svc('alias', `spec: {type: ExternalName, externalName: db.example.com}`);
    const { verdicts, summary } = await replayScenario('legacy', manifest, [[tcp('10.244.1.1', 5000, '10.96.1.6', 5432, ['SYN']), T]]);
    check(verdicts, [{ verdict: 'TX', reason: 'SERVICE', backend: /^10\.50\.0\.7:5432$/ }]);
    expect(summary.skipped.map((s: { service: string }) => s.service)).toEqual(['default/alias', 'default/headless']);
  });

  it('allocated cluster IPs and NodePorts are the ones served', async () => {
    const manifest =
      svc('auto', `spec: {type: NodePort, selector: {app: auto}, ports: [{name: http, port: 80, targetPort: 8080}]}`) +
      slice('auto', [['10.244.2.9', 'node-b']]);
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-alloc-'));
    writeFileSync(join(dir, 'cluster.yaml'), `apiVersion: v1\nkind: List\nitems:${NODES}${manifest}\n`);
    const out: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((s) => {
      out.push(s);
    });
    expect(await main(['services', '--cluster', join(dir, 'cluster.yaml'), '--json', '--seed', '7'])).toBe(0);
    log.mockRestore();
    const [row] = JSON.parse(out[0]);
    const clusterIP = row.clusterIPs[0] as string;
    const nodePort = row.ports[0].nodePort as number;
    expect(nodePort).toBeGreaterThanOrEqual(30000);
    const { verdicts, output } = await replayScenario(
      'alloc',
      manifest,
      [
        [tcp('10.244.1.1', 6000, clusterIP, 80, ['SYN']), T],
        [tcp('172.16.0.1', 6001, '192.168.0.10', nodePort, ['SYN']), T + 1],
      ],
      ['--seed', '7'],
    );
    check(verdicts, [
      { verdict: 'TX', reason: 'SERVICE' },
      { verdict: 'TX', reason: 'SERVICE', snat: true },
    ]);
    expect(decodeFrame(output[1]).ipv4!.dst).toBe('10.244.2.9');
  });
});
