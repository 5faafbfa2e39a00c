import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadClusterState, type LoadOptions } from '../control/cluster/index.js';
import { InputError } from '../control/common/errors.js';
import type { ClusterState, Service } from '../control/cluster/state.js';

const scratch = mkdtempSync(join(tmpdir(), 'svcpath-allocate-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let written = 0;
function writeManifest(docs: object[]): string {
  const file = join(scratch, `case-${++written}.yaml`);
  writeFileSync(file, docs.map((doc) => stringify(doc)).join('---\n'));
  return file;
}

function service(name: string, spec: object, namespace = 'default'): object {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec };
}

/** `count` Services svc-00, svc-01, … of one spec. */
function services(count: number, spec: object): object[] {
  return Array.from({ length: count }, (_, i) => service(`svc-${String(i).padStart(2, '0')}`, spec));
}

const nodePortSpec = { type: 'NodePort', ports: [{ port: 80 }] };
const clusterIPSpec = { ports: [{ port: 80 }] };

/** kube-apiserver's default range, given as the flag, unless a test says otherwise. */
const withRanges = (opts?: LoadOptions): LoadOptions => ({ serviceClusterIPRanges: ['10.96.0.0/12'], ...opts });

function load(docs: object[], opts?: LoadOptions): ClusterState {
  return loadClusterState([writeManifest(docs)], withRanges(opts));
}

/** The one warning of a load, which --strict makes the error. */
function loadWarning(docs: object[], opts?: LoadOptions): { file: string; state: ClusterState; warning: string } {
  const file = writeManifest(docs);
  const state = loadClusterState([file], withRanges(opts));
  expect(state.warnings).toHaveLength(1);
  expect(loadError(file, { ...opts, strict: true })).toBe(state.warnings![0]);
  return { file, state, warning: state.warnings![0] };
}

function loadError(file: string, opts?: LoadOptions): string {
  try {
    loadClusterState([file], withRanges(opts));
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as Error).message;
  }
  throw new Error('expected an InputError');
}

const nodePorts = (state: ClusterState) => state.services.flatMap((s) => s.ports.map((p) => p.nodePort));
const clusterIPs = (state: ClusterState) => state.services.flatMap((s) => s.clusterIPs);
const byName = (state: ClusterState, name: string): Service => state.services.find((s) => s.name === name)!;
const range = (first: number, last: number) => Array.from({ length: last - first + 1 }, (_, i) => first + i);
const sorted = (values: Array<number | undefined>) => [...values].sort((a, b) => (a ?? 0) - (b ?? 0));
const lastOctets = (ips: string[]) => ips.map((ip) => Number(ip.split('.')[3])).sort((a, b) => a - b);

describe('allocation is deterministic', () => {
  const docs = [...services(20, { type: 'NodePort', ports: [{ port: 80 }] })];

  it('gives the same state and seed the same cluster IPs and NodePorts', () => {
    const first = load(docs, { seed: 7 });
    const second = load(docs, { seed: 7 });
    expect(clusterIPs(second)).toEqual(clusterIPs(first));
    expect(nodePorts(second)).toEqual(nodePorts(first));
  });

  it('gives another seed other numbers', () => {
    const zero = load(docs);
    const one = load(docs, { seed: 1 });
    expect(clusterIPs(one)).not.toEqual(clusterIPs(zero));
    expect(nodePorts(one)).not.toEqual(nodePorts(zero));
  });

  it('does not depend on the order of the manifests: Services are served in namespace/name order', () => {
    const reversed = load([...docs].reverse());
    const forward = load(docs);
    for (const svc of forward.services) {
      expect(byName(reversed, svc.name)).toMatchObject({ clusterIPs: svc.clusterIPs, ports: svc.ports });
    }
    expect(reversed.services.map((s) => s.name)).toEqual(docs.map((d) => (d as { metadata: { name: string } }).metadata.name).reverse());
  });

  it('notes every allocation, in namespace/name order', () => {
    const state = load([
      service(
        'web',
        {
          type: 'NodePort',
          ports: [
            { name: 'http', port: 80 },
            { name: 'https', port: 443, nodePort: 30443 },
          ],
        },
        'shop',
      ),
      service('api', { type: 'LoadBalancer', externalTrafficPolicy: 'Local', ports: [{ port: 8080 }] }, 'shop'),
      service('dns', { clusterIP: '10.96.0.10', ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] }, 'kube-system'),
    ]);
    const [web, api] = state.services;
    expect(state.notes).toEqual([
      `allocated clusterIP ${api.clusterIPs[0]} to Service shop/api`,
      `allocated nodePort ${api.ports[0].nodePort} to Service shop/api port 8080`,
      `allocated healthCheckNodePort ${api.healthCheckNodePort} to Service shop/api`,
      `allocated clusterIP ${web.clusterIPs[0]} to Service shop/web`,
      `allocated nodePort ${web.ports[0].nodePort} to Service shop/web port http`,
    ]);
  });
});

describe('NodePort allocation', () => {
  // 30000-30063: a static band of 16 ports (30000-30015) under a dynamic band of 48 (30016-30063).
  const tiny: LoadOptions = { serviceNodePortRange: [30000, 30063] };

  it('draws from the dynamic band of the default range', () => {
    // 30000-32767 holds 2768 ports: the static band is the lowest 2768/32 = 86.
    const ports = nodePorts(load(services(40, nodePortSpec)));
    expect(new Set(ports).size).toBe(40);
    for (const port of ports) expect(port).toBeGreaterThanOrEqual(30086);
    for (const port of ports) expect(port).toBeLessThanOrEqual(32767);
  });

  it('fills the dynamic band before touching the static band', () => {
    expect(sorted(nodePorts(load(services(48, nodePortSpec), tiny)))).toEqual(range(30016, 30063));
    const ports = nodePorts(load(services(49, nodePortSpec), tiny));
    expect(ports.filter((p) => p! < 30016)).toHaveLength(1);
    expect(sorted(nodePorts(load(services(64, nodePortSpec), tiny)))).toEqual(range(30000, 30063));
  });

  it('warns on the port that finds the range full, naming the Service and field, and leaves it without a NodePort', () => {
    const { file, state, warning } = loadWarning(services(65, nodePortSpec), tiny);
    expect(warning).toBe(
      `${file}: Service default/svc-64: spec.ports[0].nodePort: cannot allocate a nodePort: ` +
        'the NodePort range 30000-30063 is full; the port gets no NodePort',
    );
    expect(byName(state, 'svc-64').ports[0].nodePort).toBeUndefined();
  });

  it('never hands out a port a Service already has, in either band', () => {
    const given = range(30016, 30062).map((nodePort) => ({ name: `p${nodePort}`, port: nodePort, nodePort }));
    const staticGiven = range(30000, 30014).map((nodePort) => ({ name: `p${nodePort}`, port: nodePort, nodePort }));
    const state = load([service('taken', { type: 'NodePort', ports: [...given, ...staticGiven] }), ...services(2, nodePortSpec)], tiny);
    // One port left in each band: the dynamic one goes first.
    expect(nodePorts(state).slice(-2)).toEqual([30063, 30015]);
  });

  it('counts a healthCheckNodePort as taken', () => {
    const state = load(
      [
        service('lb', {
          type: 'LoadBalancer',
          externalTrafficPolicy: 'Local',
          healthCheckNodePort: 30063,
          ports: [{ port: 80, nodePort: 30062 }],
        }),
        service('np', {
          type: 'NodePort',
          ports: range(30016, 30060).map((nodePort) => ({ name: `p${nodePort}`, port: nodePort, nodePort })),
        }),
        service('new', nodePortSpec),
      ],
      tiny,
    );
    expect(byName(state, 'new').ports[0].nodePort).toBe(30061);
  });

  it('gives the ports of one number, one per protocol, one nodePort', () => {
    const state = load([
      service('dns', {
        type: 'NodePort',
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP' },
          { name: 'dns-tcp', port: 53, protocol: 'TCP' },
        ],
      }),
      service('given', {
        type: 'NodePort',
        ports: [
          { name: 'a', port: 53, protocol: 'UDP' },
          { name: 'b', port: 53, protocol: 'TCP', nodePort: 31053 },
        ],
      }),
    ]);
    const [dns, given] = state.services;
    expect(dns.ports[1].nodePort).toBe(dns.ports[0].nodePort);
    expect(given.ports.map((p) => p.nodePort)).toEqual([31053, 31053]);
    expect(state.notes).toContain(
      `allocated nodePort ${dns.ports[0].nodePort} to Service default/dns port dns-tcp, shared with port dns of the same number`,
    );
    expect(state.notes).toContain('allocated nodePort 31053 to Service default/given port a, shared with port b of the same number');
  });

  it('allocates for NodePort and LoadBalancer Services only, and not when allocateLoadBalancerNodePorts is false', () => {
    const state = load([
      service('cip', clusterIPSpec),
      service('lb', { type: 'LoadBalancer', ports: [{ port: 80 }] }),
      service('lb-none', { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80 }] }),
      service('lb-local', {
        type: 'LoadBalancer',
        allocateLoadBalancerNodePorts: false,
        externalTrafficPolicy: 'Local',
        ports: [{ port: 80 }],
      }),
    ]);
    expect(state.services.map((s) => [s.name, s.ports[0].nodePort !== undefined, s.healthCheckNodePort !== undefined])).toEqual([
      ['cip', false, false],
      ['lb', true, false],
      ['lb-none', false, false],
      // The health check port does not depend on allocateLoadBalancerNodePorts.
      ['lb-local', false, true],
    ]);
  });
});

describe('cluster IP allocation', () => {
  it('draws from the dynamic band of the default range', () => {
    // 10.96.0.0/12: the static band is the lowest 256 addresses after the network address, 10.96.0.1-10.96.1.0.
    const ips = clusterIPs(load(services(40, clusterIPSpec)));
    expect(new Set(ips).size).toBe(40);
    for (const ip of ips) expect(ip).toMatch(/^10\.(9[6-9]|10\d|11[01])\./);
    for (const ip of ips) expect(ip).not.toMatch(/^10\.96\.(0\.\d+|1\.0)$/);
  });

  it('fills the dynamic band before the static band, and never hands out the network or broadcast address', () => {
    // A /27 has 32 addresses: 16 static (.1-.16), then 14 dynamic (.17-.30); .0 and .31 are never used.
    const opts: LoadOptions = { serviceClusterIPRanges: ['10.100.0.0/27'] };
    expect(lastOctets(clusterIPs(load(services(14, clusterIPSpec), opts)))).toEqual(range(17, 30));
    expect(lastOctets(clusterIPs(load(services(15, clusterIPSpec), opts))).filter((n) => n <= 16)).toHaveLength(1);
    expect(lastOctets(clusterIPs(load(services(30, clusterIPSpec), opts)))).toEqual(range(1, 30));
    const { file, state, warning } = loadWarning(services(31, clusterIPSpec), opts);
    expect(warning).toBe(
      `${file}: Service default/svc-30: spec.clusterIPs[0]: cannot allocate a cluster IP: ` +
        'the service cluster IP range 10.100.0.0/27 is full; the Service gets no IPv4 cluster IP',
    );
    expect(byName(state, 'svc-30').clusterIPs).toEqual([]);
  });

  it('hands out every IPv6 address but the network address', () => {
    const opts: LoadOptions = { serviceClusterIPRanges: ['fd00:10:96::/125'] };
    expect(clusterIPs(load(services(7, clusterIPSpec), opts)).sort()).toEqual(range(1, 7).map((n) => `fd00:10:96::${n}`));
    expect(loadWarning(services(8, clusterIPSpec), opts).warning).toContain('the service cluster IP range fd00:10:96::/125 is full');
  });

  it('never hands out an IP a Service already has', () => {
    // A /28 is too small for a static band: its 14 addresses are all dynamic.
    const given = range(1, 14)
      .filter((n) => n !== 9)
      .map((n, i) => service(`given-${i}`, { clusterIP: `10.100.0.${n}`, ports: [{ port: 80 }] }));
    const state = load([...given, service('new', clusterIPSpec)], { serviceClusterIPRanges: ['10.100.0.0/28'] });
    expect(byName(state, 'new').clusterIPs).toEqual(['10.100.0.9']);
  });

  it('gives a dual-stack Service one address per family, in the order of spec.ipFamilies', () => {
    const state = load(
      [
        service('both', { ipFamilyPolicy: 'RequireDualStack', ports: [{ port: 80 }] }),
        service('v6-first', { ipFamilyPolicy: 'PreferDualStack', ipFamilies: ['IPv6', 'IPv4'], ports: [{ port: 80 }] }),
        service('v6-given', { ipFamilyPolicy: 'RequireDualStack', clusterIPs: ['fd00:10:96::77'], ports: [{ port: 80 }] }),
      ],
      { serviceClusterIPRanges: ['10.96.0.0/16', 'fd00:10:96::/112'] },
    );
    const [both, v6First, v6Given] = state.services;
    expect(both.ipFamilies).toEqual(['IPv4', 'IPv6']);
    expect(both.clusterIPs).toEqual([expect.stringMatching(/^10\.96\./), expect.stringMatching(/^fd00:10:96::/)]);
    expect(v6First.clusterIPs).toEqual([expect.stringMatching(/^fd00:10:96::/), expect.stringMatching(/^10\.96\./)]);
    expect(v6Given.ipFamilies).toEqual(['IPv6', 'IPv4']);
    expect(v6Given.clusterIPs).toEqual(['fd00:10:96::77', expect.stringMatching(/^10\.96\./)]);
  });

  it('leaves headless and ExternalName Services without one', () => {
    const state = load([
      service('db', { clusterIP: 'None', selector: { app: 'db' } }),
      service('ext', { type: 'ExternalName', externalName: 'db.example.com' }),
    ]);
    expect(state.services.map((s) => s.clusterIPs)).toEqual([['None'], []]);
    expect(state.notes).toEqual([]);
  });
});

describe('cluster IP allocation from ServiceCIDR objects', () => {
  const serviceCIDR = (name: string, cidrs: string[], extra: object = {}) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'ServiceCIDR',
    metadata: { name },
    spec: { cidrs },
    ...extra,
  });
  const ipAddress = (ip: string, parent: string) => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'IPAddress',
    metadata: { name: ip },
    spec: { parentRef: { group: '', resource: 'services', namespace: 'default', name: parent } },
  });
  const noFlag: LoadOptions = { serviceClusterIPRanges: undefined };
  const inRange = (ips: string[], prefix: string) => ips.filter((ip) => ip.startsWith(prefix));

  it('draws from every ready range of the family, each Service from a seeded one, and goes on past a full one', () => {
    // Two /28s of 14 usable addresses each (no static band): 20 Services take some of both, 28 take them all.
    const cidrs = [serviceCIDR('kubernetes', ['10.100.0.0/28']), serviceCIDR('extra', ['10.200.0.0/28'])];
    const some = clusterIPs(load([...cidrs, ...services(20, clusterIPSpec)], noFlag));
    expect(new Set(some).size).toBe(20);
    expect(inRange(some, '10.100.0.').length).toBeGreaterThan(0);
    expect(inRange(some, '10.200.0.').length).toBeGreaterThan(0);
    const all = load([...cidrs, ...services(28, clusterIPSpec)], noFlag);
    expect(lastOctets(inRange(clusterIPs(all), '10.100.0.'))).toEqual(range(1, 14));
    expect(lastOctets(inRange(clusterIPs(all), '10.200.0.'))).toEqual(range(1, 14));
    expect(all.warnings).toEqual([]);
  });

  it('never from a ServiceCIDR that is being deleted or not ready, though addresses inside them are known', () => {
    const state = load(
      [
        serviceCIDR('kubernetes', ['10.100.0.0/28']),
        serviceCIDR('old', ['10.200.0.0/16'], { metadata: { name: 'old', deletionTimestamp: '2026-01-01T00:00:00Z' } }),
        serviceCIDR('new', ['10.201.0.0/16'], {
          status: { conditions: [{ type: 'Ready', status: 'False', reason: 'OverlappingServiceCIDR' }] },
        }),
        service('given', { clusterIP: '10.200.0.5', ports: [{ port: 80 }] }),
        ...services(10, clusterIPSpec),
      ],
      noFlag,
    );
    expect(inRange(clusterIPs(state), '10.100.0.')).toHaveLength(10);
    expect(state.warnings).toEqual([]);
    expect(state.serviceRanges).toMatchObject({
      cidrs: ['10.100.0.0/28', '10.200.0.0/16', '10.201.0.0/16'],
      allocatable: ['10.100.0.0/28'],
    });
  });

  it('never hands out an address an IPAddress object holds, and notes those no Service of the state has', () => {
    const held = range(1, 14)
      .filter((n) => n !== 6)
      .map((n) => ipAddress(`10.100.0.${n}`, `gone-${n}`));
    const file = writeManifest([serviceCIDR('kubernetes', ['10.100.0.0/28']), ...held, service('new', clusterIPSpec)]);
    const state = loadClusterState([file]);
    expect(byName(state, 'new').clusterIPs).toEqual(['10.100.0.6']);
    expect(state.notes).toContain(
      "13 IPAddress objects name an address that is no Service's cluster IP in the state (its Service is " +
        'not in the state, or the address leaked); svcpath allocates none of them: ' +
        `${file}: IPAddress 10.100.0.1 (parentRef services default/gone-1), ${file}: IPAddress 10.100.0.2 (parentRef services default/gone-2), ` +
        `${file}: IPAddress 10.100.0.3 (parentRef services default/gone-3) and 10 more`,
    );
  });
});

describe('cluster IP allocation with the ranges unknown', () => {
  it('draws from 10.96.0.0/12, IPv6 from fd00:10:96::/112, and says so in one note', () => {
    const state = load(
      [
        service('v4', clusterIPSpec),
        service('both', { ipFamilyPolicy: 'RequireDualStack', ports: [{ port: 80 }] }),
        service('prefer', { ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] }),
      ],
      { serviceClusterIPRanges: undefined },
    );
    const v4 = /^10\.(9[6-9]|10\d|11[01])\./;
    expect(byName(state, 'v4').clusterIPs).toEqual([expect.stringMatching(v4)]);
    expect(byName(state, 'both').clusterIPs).toEqual([expect.stringMatching(v4), expect.stringMatching(/^fd00:10:96::[0-9a-f]{1,4}$/)]);
    // Unknown ranges say nothing of a second family: PreferDualStack stays single-stack.
    expect(byName(state, 'prefer').clusterIPs).toEqual([expect.stringMatching(v4)]);
    expect(state.notes.filter((n) => n.includes('unknown'))).toEqual([
      'service cluster IP ranges unknown: the state has no ServiceCIDR objects (kubectl get servicecidrs -o yaml, Kubernetes 1.33 ' +
        'and later) and --service-cluster-ip-range was not given; no cluster IP is checked against a range, UNALLOCATED_IP is ' +
        'not applied, and Services without a cluster IP get one from 10.96.0.0/12 or fd00:10:96::/112',
    ]);
    expect(state.serviceRanges?.cidrs).toEqual([]);
  });
});
