// Cluster dumps as clusters produce them (test/fixtures/managed/, each file's
// header says what it stands for): every one loads with no flags through the
// CLI, and a generated capture replayed against it is decided as the cluster
// would decide it. What each Service's endpoints are is read from the dump
// with the yaml library, not through svcpath's loader.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import ipaddr from 'ipaddr.js';
import { parse } from 'yaml';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { hostPort } from '../control/compile/layout.js';
import { decodeFrame } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { checksumsValid, cli, endpoints, ipOf, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';

const MANAGED = fileURLToPath(new URL('fixtures/managed/', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'svcpath-managed-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const UNKNOWN_RANGES_NOTE =
  'service cluster IP ranges unknown: the state has no ServiceCIDR objects (kubectl get servicecidrs ' +
  '-o yaml, Kubernetes 1.33 and later) and --service-cluster-ip-range was not given; no cluster IP is checked against a range, ' +
  'UNALLOCATED_IP is not applied, and Services without a cluster IP get one from 10.96.0.0/12 or fd00:10:96::/112';

// biome-ignore lint/suspicious/noExplicitAny: a dump's objects are read field by field, as the API names them
type K8sObject = Record<string, any>;

/** The objects of a dump, as the yaml library reads it: a List's items. */
function objectsOf(file: string): K8sObject[] {
  return (parse(readFileSync(join(MANAGED, file), 'utf8')) as K8sObject).items;
}

/**
 * The backends a Service port has in the dump, read from its EndpointSlices of
 * the address's family: "ip:port" → the node of the endpoint.
 */
function dumpBackends(file: string, namespace: string, name: string, portName: string, family: 'IPv4' | 'IPv6'): Map<string, string> {
  const backends = new Map<string, string>();
  for (const s of objectsOf(file)) {
    if (s.kind !== 'EndpointSlice' || s.metadata.namespace !== namespace || s.addressType !== family) continue;
    if (s.metadata.labels['kubernetes.io/service-name'] !== name) continue;
    const port = s.ports.find((p: K8sObject) => (p.name ?? '') === portName);
    for (const e of s.endpoints ?? []) backends.set(hostPort(e.addresses[0], port.port), e.nodeName);
  }
  return backends;
}

let captures = 0;

/** Replays frames through `svcpath replay` with the given flags; the verdicts, output frames and summary JSON. */
async function replay(cluster: string[], frames: Uint8Array[], flags: string[] = []) {
  const dir = join(scratch, `replay-${++captures}`);
  mkdirSync(dir);
  const writer = createPcapWriter(join(dir, 'in.pcap'), { linktype: 1 });
  frames.forEach((frame, i) => writer.write(1_768_000_000 + i, 0, frame));
  writer.close();
  const run = await cli([
    'replay',
    join(dir, 'in.pcap'),
    ...cluster.flatMap((c) => ['--cluster', c]),
    '--verdicts',
    join(dir, 'v.jsonl'),
    '--out',
    join(dir, 'out.pcap'),
    '--summary',
    join(dir, 'summary.json'),
    ...flags,
  ]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  return {
    run,
    verdicts: readFileSync(join(dir, 'v.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    output: Array.from(openCapture(join(dir, 'out.pcap')).records(), (r) => r.data.slice()),
    summary: JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')),
  };
}

interface Dump {
  file: string;
  node: string;
  /** The Service port a packet is sent to: its frontend address, port, protocol and where its endpoints are. */
  frontend: { ip: string; port: number; protocol: 'TCP' | 'UDP'; namespace: string; name: string; portName: string };
  /** An address inside the cluster's service range that is no Service's. */
  unallocated: string;
  /** Whether the dump holds ServiceCIDR objects, so that the ranges are known. */
  serviceCIDRs: boolean;
}

const DUMPS: Dump[] = [
  {
    file: 'eks.yaml',
    node: 'ip-10-0-1-23.ec2.internal',
    unallocated: '172.20.99.99',
    serviceCIDRs: false,
    frontend: { ip: '172.20.113.7', port: 80, protocol: 'TCP', namespace: 'shop', name: 'web', portName: 'http' },
  },
  {
    file: 'eks-10-100.json',
    node: 'ip-10-0-2-45.ec2.internal',
    unallocated: '10.100.99.99',
    serviceCIDRs: true,
    frontend: { ip: '10.100.113.7', port: 80, protocol: 'TCP', namespace: 'shop', name: 'web', portName: 'http' },
  },
  {
    file: 'gke.yaml',
    node: 'gke-prod-default-pool-8f3c1a2b-6kzq',
    unallocated: '34.118.230.99',
    serviceCIDRs: false,
    frontend: { ip: '34.118.224.10', port: 53, protocol: 'UDP', namespace: 'kube-system', name: 'kube-dns', portName: 'dns' },
  },
  {
    file: 'gke-servicecidr.yaml',
    node: 'gke-prod-default-pool-8f3c1a2b-6kzq',
    unallocated: '34.118.230.99',
    serviceCIDRs: true,
    frontend: { ip: '34.118.224.10', port: 53, protocol: 'UDP', namespace: 'kube-system', name: 'kube-dns', portName: 'dns' },
  },
  {
    file: 'aks.yaml',
    node: 'aks-nodepool1-27345951-vmss000000',
    unallocated: '10.0.99.99',
    serviceCIDRs: false,
    frontend: { ip: '10.0.0.11', port: 6379, protocol: 'TCP', namespace: 'default', name: 'redis-primary', portName: '' },
  },
  {
    // traefik's load-balancer IPs are the node addresses klipper-lb holds the ports on.
    file: 'k3s.yaml',
    node: 'k3s-server',
    unallocated: '10.43.99.99',
    serviceCIDRs: false,
    frontend: { ip: '192.168.1.10', port: 80, protocol: 'TCP', namespace: 'kube-system', name: 'traefik', portName: 'web' },
  },
  {
    file: 'kind.yaml',
    node: 'kind-worker',
    unallocated: '10.96.200.1',
    serviceCIDRs: true,
    frontend: { ip: '10.96.142.7', port: 80, protocol: 'TCP', namespace: 'default', name: 'echo', portName: 'http' },
  },
  {
    file: 'kind-dual-stack.yaml',
    node: 'kind-worker',
    unallocated: 'fd00:10:96::ffff',
    serviceCIDRs: true,
    frontend: { ip: 'fd00:10:96::8e07', port: 80, protocol: 'TCP', namespace: 'default', name: 'echo', portName: 'http' },
  },
];

describe.each(DUMPS)('the $file dump', (dump) => {
  const path = join(MANAGED, dump.file);
  const v6 = dump.frontend.ip.includes(':');
  const client = v6 ? '2001:db8:7::15' : '198.51.100.15';
  const send = (dst: string, sport: number, port = dump.frontend.port) =>
    dump.frontend.protocol === 'UDP' ? udp(client, sport, dst, port) : tcp(client, sport, dst, port, ['SYN']);

  it('loads with no flags: svcpath services lists every Service, without a warning', async () => {
    const run = await cli(['services', '--cluster', path]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    for (const s of objectsOf(dump.file).filter((o) => o.kind === 'Service')) {
      expect(run.stdout).toMatch(new RegExp(`^${s.metadata.namespace}\\s+${s.metadata.name}\\s`, 'm'));
    }
  });

  it(`sends a packet to its frontend to one of its endpoints, and one to an unallocated service address ${dump.serviceCIDRs ? 'is UNALLOCATED_IP' : 'on (NO_SERVICE)'}`, async () => {
    const backends = dumpBackends(dump.file, dump.frontend.namespace, dump.frontend.name, dump.frontend.portName, v6 ? 'IPv6' : 'IPv4');
    expect(backends.size).toBeGreaterThan(0);
    const flows = [40001, 40002, 40003, 40004, 40005, 40006];
    const { verdicts, output, summary } = await replay(
      [path],
      [...flows.map((p) => send(dump.frontend.ip, p)), send(dump.unallocated, 40100)],
      ['--node', dump.node],
    );

    flows.forEach((_, i) => {
      const v = verdicts[i];
      expect(v.reason, `flow ${i}`).toBe('SERVICE');
      expect([...backends.keys()]).toContain(v.backend);
      // Local endpoints are REDIRECTed, the others sent on (TX).
      expect(v.verdict).toBe(backends.get(v.backend) === dump.node ? 'REDIRECT' : 'TX');
      const out = output[i];
      const decoded = decodeFrame(out);
      expect(hostPort(ipOf(out).dst, (decoded.tcp ?? decoded.udp)!.dport)).toBe(v.backend);
      expect(checksumsValid(out)).toBe(true);
    });
    const last = verdicts[flows.length];
    expect(`${last.verdict} ${last.reason}`).toBe(dump.serviceCIDRs ? 'DROP UNALLOCATED_IP' : 'PASS NO_SERVICE');
    expect(summary.notes.filter((n: string) => n === UNKNOWN_RANGES_NOTE)).toHaveLength(dump.serviceCIDRs ? 0 : 1);
    expect(summary.settings.serviceNetwork === null).toBe(!dump.serviceCIDRs);
    expect(summary.warnings).toEqual([]);
  });
});

describe('service cluster IP ranges', () => {
  it('come from the ServiceCIDR objects into the service_ranges maps, none when unknown', async () => {
    const ranges = async (file: string) => {
      const run = await cli(['maps', '--cluster', join(MANAGED, file), '--node', 'kind-worker', '--json']);
      expect(run.code).toBe(0);
      const maps = JSON.parse(run.stdout) as Array<{ name: string; entries: Array<{ key: Record<string, unknown> }> }>;
      return ['service_ranges4', 'service_ranges6'].map((name) => maps.find((m) => m.name === name)!.entries.map((e) => e.key));
    };
    expect(await ranges('kind-dual-stack.yaml')).toEqual([
      [{ prefixlen: 16, address: '10.96.0.0' }],
      [{ prefixlen: 112, address: 'fd00:10:96::' }],
    ]);
    expect(await ranges('typed-lists')).toEqual([[], []]);
  });

  it("are the flag's when the dump has no ServiceCIDR: a cluster IP outside is a warning naming the flag, and --strict an error", async () => {
    const path = join(MANAGED, 'aks.yaml');
    const run = await cli(['services', '--cluster', path, '--service-cluster-ip-range', '10.96.0.0/12']);
    expect(run.code).toBe(0);
    const warnings = run.stderr.split('\n');
    expect(warnings).toHaveLength(5);
    expect(warnings).toContain(
      `svcpath: warning: ${path}: Service default/redis-primary: spec.clusterIPs[0]: 10.0.0.11 is outside ` +
        'the service cluster IP ranges (10.96.0.0/12 from --service-cluster-ip-range); the datapath serves it as a cluster IP all the same',
    );
    const strict = await cli(['services', '--cluster', path, '--service-cluster-ip-range', '10.96.0.0/12', '--strict']);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toBe(`svcpath: ${warnings[0].replace('svcpath: warning: ', '')}`);
  });

  it('name the ServiceCIDR a cluster IP is outside of', () => {
    const extra = join(scratch, 'outside.yaml');
    writeFileSync(
      extra,
      'apiVersion: v1\nkind: Service\nmetadata: {name: legacy, namespace: default}\nspec:\n  clusterIP: 10.200.0.5\n  ports: [{port: 80}]\n',
    );
    expect(loadClusterState([join(MANAGED, 'kind.yaml'), extra]).warnings).toEqual([
      `${extra}: Service default/legacy: spec.clusterIP: 10.200.0.5 is outside the service cluster IP ranges (10.96.0.0/16 from ` +
        'ServiceCIDR kubernetes); the datapath serves it as a cluster IP all the same',
    ]);
  });

  it('are the union of the ServiceCIDRs and the flag, with a note when they differ', () => {
    const state = loadClusterState([join(MANAGED, 'gke-servicecidr.yaml')], { serviceClusterIPRanges: ['10.96.0.0/12'] });
    expect(state.serviceRanges?.cidrs).toEqual(['10.96.0.0/12', '34.118.224.0/20']);
    expect(state.warnings).toEqual([]);
    expect(state.notes).toContain(
      '--service-cluster-ip-range 10.96.0.0/12 differs from the ServiceCIDR objects (34.118.224.0/20 from ' +
        'ServiceCIDR kubernetes): the service cluster IP ranges are their union (the API server makes the kubernetes ServiceCIDR ' +
        'from the flag only when it does not exist)',
    );
  });

  it.each([3, 12])('%i of them per family all decide UNALLOCATED_IP (past 8 the datapath looks them up in its LPM maps)', async (count) => {
    const v4 = Array.from({ length: count }, (_, i) => `10.${100 + 2 * i}.0.0/16`);
    const v6 = Array.from({ length: count }, (_, i) => `fd00:${2 * i + 1}::/64`);
    const web = makeService('default', 'web', '10.100.0.10', [{ port: 80 }]);
    const { dp } = await program([resolvedService(web, [endpoints([['10.244.0.5', 80, 'node-a']])])], {
      serviceClusterIPRanges: [...v4, ...v6],
    });
    const inside = [...v4, ...v6].map((cidr) =>
      ipaddr
        .parseCIDR(cidr)[0]
        .toString()
        .replace(/(\.0|::)$/, (end) => (end === '.0' ? '.9' : '::9')),
    );
    const outside = ['10.101.0.9', `10.${100 + 2 * count}.0.9`, '10.99.255.9', 'fd00:2::9', `fd00:${2 * count + 1}::9`, 'fd00::9'];
    const addresses = [...inside, ...outside];
    const inRange = (ip: string) =>
      [...v4, ...v6].some((cidr) => {
        const [net, bits] = ipaddr.parseCIDR(cidr);
        const address = ipaddr.parse(ip);
        return address.kind() === net.kind() && address.match(net, bits);
      });
    const results = runFrames(
      dp,
      addresses.map((ip, i) => udp(ip.includes(':') ? '2001:db8::7' : '192.0.2.7', 5000 + i, ip, 53)),
    );
    expect(results.map((r, i) => `${addresses[i]} ${r.verdict} ${r.reason}`)).toEqual(
      addresses.map((ip) => `${ip} ${inRange(ip) ? 'DROP UNALLOCATED_IP' : 'PASS NO_SERVICE'}`),
    );
    expect(inside.every(inRange) && !outside.some(inRange)).toBe(true);
  });

  it("let IPAddress objects name what they hold: one that is no Service's is noted", () => {
    const path = join(MANAGED, 'kind.yaml');
    expect(loadClusterState([path]).notes).toContain(
      "1 IPAddress object names an address that is no Service's cluster IP in the " +
        'state (its Service is not in the state, or the address leaked); svcpath allocates none of them: ' +
        `${path}: IPAddress 10.96.77.3 (parentRef services monitoring/prometheus)`,
    );
  });
});

describe('typed lists, as kubectl get --raw and client libraries return them', () => {
  const dir = join(MANAGED, 'typed-lists');

  it('load: items without kind take it and the apiVersion from their list', async () => {
    const state = loadClusterState([dir]);
    expect(state.services.map((s) => s.name).sort()).toEqual(['echo', 'external-db', 'kube-dns', 'kubernetes', 'whoami']);
    expect(state.nodes.map((n) => n.name)).toEqual(['kind-control-plane', 'kind-worker']);
    expect(state.pods?.map((p) => p.name).sort()).toEqual([
      'coredns-668d6bf9bc-fq7xm',
      'coredns-668d6bf9bc-n2w8s',
      'echo-6f7d8c9b5-zt5lq',
      'whoami-7c5f9d8b6-j4x9z',
      'whoami-7c5f9d8b6-p2c7w',
    ]);
    const resolved = resolveServices(state).services;
    const endpointsOf = (name: string) => resolved.find((r) => r.service.name === name)!;
    // The Endpoints of a Service without selector, and the slices the controller makes of whoami's Pods.
    expect(endpointsOf('external-db').endpointsFrom).toBe('Endpoints');
    expect(endpointsOf('external-db').ports[0].endpoints.map((e) => `${e.ip}:${e.port}`)).toEqual([
      '192.168.50.10:5432',
      '192.168.50.11:5432',
    ]);
    expect(endpointsOf('whoami').endpointsFrom).toBe('Pods');
    expect(endpointsOf('whoami').ports[0].endpoints.map((e) => `${e.ip}:${e.port}`)).toEqual(['10.244.1.17:8000', '10.244.0.21:8000']);
    const run = await cli(['services', '--cluster', dir]);
    expect([run.code, run.stderr]).toEqual([0, '']);
  });

  it('name a Pod left out for a Node not in the state, grouped per Service and node', () => {
    const nodes = join(scratch, 'one-node.json');
    const list = JSON.parse(readFileSync(join(dir, 'nodes.json'), 'utf8'));
    writeFileSync(nodes, JSON.stringify({ ...list, items: list.items.filter((n: K8sObject) => n.metadata.name === 'kind-control-plane') }));
    const services = join(dir, 'services.json');
    const state = loadClusterState([services, join(dir, 'endpointslices.json'), join(dir, 'pods.json'), nodes]);
    expect(state.notes).toContain(
      `${services}: Service default/whoami: 1 Pod not made endpoints: its node "kind-worker" is not among ` +
        'the Nodes (the EndpointSlice controller skips such Pods unless publishNotReadyAddresses): default/whoami-7c5f9d8b6-j4x9z',
    );
  });

  it("of kind List still need their items' kinds", () => {
    const file = join(scratch, 'list.json');
    writeFileSync(
      file,
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ metadata: { name: 'web' }, spec: { ports: [{ port: 80 }] } }] }),
    );
    expect(() => loadClusterState([file])).toThrow(`${file}: items[0]: kind: required`);
  });
});

describe('discovery.k8s.io/v1beta1 EndpointSlices', () => {
  const path = join(MANAGED, 'v1beta1-endpointslices.yaml');

  it('take node and zone from the topology map', () => {
    const [slice] = loadClusterState([path]).endpointSlices;
    expect(slice.endpoints.map((e) => [e.addresses[0], e.nodeName, e.zone])).toEqual([
      ['10.244.0.7', 'node-1', 'zone-a'],
      ['10.244.1.9', 'node-2', 'zone-b'],
    ]);
  });

  it('so an endpoint on the emulated node is local: REDIRECT, the other TX', async () => {
    const frames = Array.from({ length: 32 }, (_, i) => tcp(`198.51.100.${i + 1}`, 41000 + 7 * i, '10.96.5.80', 80, ['SYN']));
    const { verdicts } = await replay([path], frames, ['--node', 'node-1']);
    const seen = new Set<string>();
    for (const v of verdicts) {
      seen.add(v.backend);
      expect(v.verdict).toBe(v.backend === '10.244.0.7:8080' ? 'REDIRECT' : 'TX');
    }
    expect(seen).toEqual(new Set(['10.244.0.7:8080', '10.244.1.9:8080']));
  });
});

describe('a repository of manifests', () => {
  const repository = join(MANAGED, 'repository');

  it('skips hidden files and directories, and notes YAML that is no Kubernetes object', () => {
    const state = loadClusterState([repository]);
    expect(state.services.map((s) => s.name)).toEqual(['web']);
    const notFromState = state.notes.filter((n) => n.includes(repository));
    expect(notFromState).toEqual([
      `${join(repository, 'chart', 'values.yaml')}: document 1: skipped: not a Kubernetes object: no apiVersion or kind`,
      `${join(repository, 'ci', 'pipeline.yml')}: document 1: skipped: not a Kubernetes object: no apiVersion or kind`,
    ]);
  });

  it('skips a .git directory too, and reads a hidden file that is named', () => {
    const copy = join(scratch, 'repository');
    cpSync(repository, copy, { recursive: true });
    mkdirSync(join(copy, '.git', 'refs'), { recursive: true });
    writeFileSync(join(copy, '.git', 'HEAD'), 'ref: refs/heads/main\n');
    writeFileSync(join(copy, '.git', 'refs', 'broken.yaml'), 'a: b: c\n');
    expect(loadClusterState([copy]).services.map((s) => s.name)).toEqual(['web']);
    expect(loadClusterState([copy, join(copy, '.extra.yaml')]).services.map((s) => s.name)).toEqual(['web', 'extra']);
  });

  it('with nothing but hidden files is as empty as a directory without manifests', () => {
    const hidden = join(scratch, 'only-hidden');
    mkdirSync(join(hidden, '.github', 'workflows'), { recursive: true });
    cpSync(join(repository, '.github', 'workflows', 'ci.yaml'), join(hidden, '.github', 'workflows', 'ci.yaml'));
    expect(() => loadClusterState([hidden])).toThrow(`${hidden}: no .yaml, .yml, .json files in this directory`);
  });

  it('still refuses a document with only one of apiVersion and kind, naming the missing field', () => {
    const file = join(scratch, 'half.yaml');
    writeFileSync(file, 'kind: Deployment\nmetadata: {name: web}\n---\napiVersion: v1\nmetadata: {name: web}\n');
    expect(() => loadClusterState([file])).toThrow(`${file}: document 1: apiVersion: required`);
    writeFileSync(file, 'apiVersion: v1\nmetadata: {name: web}\n');
    expect(() => loadClusterState([file])).toThrow(`${file}: document 1: kind: required`);
  });
});

describe('warnings and --strict', () => {
  const manifest = join(scratch, 'hand-written.yaml');
  writeFileSync(
    manifest,
    `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node-a}, status: {addresses: [{type: InternalIP, address: 192.168.0.10}]}}
- apiVersion: v1
  kind: Service
  metadata: {name: Web_1, namespace: default}
  spec:
    clusterIP: 10.96.0.80
    ports: [{name: http, port: 80, targetPort: 8080}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: Web_1}}
  addressType: IPv4
  endpoints: [{addresses: [10.244.0.5], nodeName: node-a}]
  ports: [{name: http, port: 8080}]
`,
  );
  const warning =
    `${manifest}: Service default/Web_1: metadata.name: "Web_1" is not an RFC 1035 label: at most 63 characters, ` +
    "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit; svcpath uses it as it is";

  it('a warning is on stderr for every command that loads the cluster, and in the replay summary', async () => {
    for (const command of [['services'], ['endpoints'], ['maps'], ['dns'], ['env', '--namespace', 'default']]) {
      const run = await cli([...command, '--cluster', manifest]);
      expect(run.code, command[0]).toBe(0);
      expect(run.stderr.split('\n'), command[0]).toContain(`svcpath: warning: ${warning}`);
    }
    const dir = join(scratch, 'warned');
    mkdirSync(dir);
    const writer = createPcapWriter(join(dir, 'in.pcap'), { linktype: 1 });
    writer.write(1_768_000_000, 0, tcp('10.244.1.1', 5000, '10.96.0.80', 80, ['SYN']));
    writer.close();
    const run = await cli([
      'replay',
      join(dir, 'in.pcap'),
      '--cluster',
      manifest,
      '--summary',
      join(dir, 's.json'),
      '--verdicts',
      join(dir, 'v.jsonl'),
    ]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(`svcpath: warning: ${warning}`);
    expect(run.stdout).toContain(`  ${warning}`);
    expect(JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')).warnings).toEqual([warning]);
    expect(JSON.parse(readFileSync(join(dir, 'v.jsonl'), 'utf8'))).toMatchObject({
      verdict: 'REDIRECT',
      reason: 'SERVICE',
      backend: '10.244.0.5:8080',
    });
  });

  it('--strict makes the first warning the error, with the same message, on every command', async () => {
    for (const command of [['services'], ['maps'], ['replay', 'traces/samples/sample.pcap']]) {
      const run = await cli([...command, '--cluster', manifest, '--strict']);
      expect(run.code, command[0]).toBe(1);
      expect(run.stderr, command[0]).toBe(`svcpath: ${warning}`);
    }
  });
});
