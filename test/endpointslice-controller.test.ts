// The EndpointSlice controller (control/cluster/endpointslice-controller.ts): Pods → EndpointSlices as
// kube-controller-manager makes them, the legacy Endpoints of the same Pods, malformed Pods, and a cluster given
// as Pods replaying to the same decisions as the same cluster given as EndpointSlices.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stringify } from 'yaml';
import { loadClusterState, resolveServices } from '../control/cluster/index.js';
import { deriveEndpointSlices, endpointSlicesFor, legacyEndpointsFor } from '../control/cluster/endpointslice-controller.js';
import { InputError } from '../control/common/errors.js';
import { main } from '../control/cli/main.js';
import type { Pod, Service } from '../control/cluster/state.js';
import { createPcapWriter } from '../traces/pcap.js';
import { cli, makeService, tcp } from './helpers.js';

const scratch = mkdtempSync(join(tmpdir(), 'svcpath-esc-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let written = 0;
function writeManifest(docs: object[]): string {
  const file = join(scratch, `case-${++written}.yaml`);
  writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
  return file;
}

function pod(name: string, ip: string | string[], extra: Partial<Pod> = {}): Pod {
  return {
    origin: { file: 'test', object: `Pod default/${name}` },
    namespace: 'default',
    name,
    labels: { app: 'web' },
    podIPs: Array.isArray(ip) ? ip : [ip],
    nodeName: 'node-a',
    ready: true,
    terminating: false,
    containerPorts: [{ name: 'http-web-svc', containerPort: 80, protocol: 'TCP' }],
    ...extra,
  };
}

const web = (extra: Partial<Service> = {}): Service =>
  makeService('default', 'web', '10.96.0.10', [{ port: 80, targetPort: 'http-web-svc' }], { selector: { app: 'web' }, ...extra });

describe('the EndpointSlice controller', () => {
  it('splits 250 matching Pods into three slices of at most 100 endpoints, labelled as the controller labels them', () => {
    const pods = Array.from({ length: 250 }, (_, i) => pod(`web-${String(i).padStart(3, '0')}`, `10.244.${i >> 8}.${(i & 255) + 1}`));
    const slices = endpointSlicesFor(web(), pods);
    expect(slices.map((s) => s.endpoints.length)).toEqual([100, 100, 50]);
    expect(new Set(slices.map((s) => s.name)).size).toBe(3);
    for (const s of slices) {
      expect(s.name).toMatch(/^web-[bcdfghjklmnpqrstvwxz2456789]{5}$/);
      expect(s).toMatchObject({
        serviceName: 'web',
        namespace: 'default',
        addressType: 'IPv4',
        derived: true,
        managedBy: 'endpointslice-controller.k8s.io',
        ports: [{ name: '', protocol: 'TCP', port: 80 }],
      });
    }
    // Deterministic: the same input, the same names.
    expect(endpointSlicesFor(web(), pods).map((s) => s.name)).toEqual(slices.map((s) => s.name));
    // --max-endpoints-per-slice.
    expect(endpointSlicesFor(web(), pods, { maxEndpointsPerSlice: 1000 }).map((s) => s.endpoints.length)).toEqual([250]);
    expect(endpointSlicesFor(web(), pods, { maxEndpointsPerSlice: 60 }).map((s) => s.endpoints.length)).toEqual([60, 60, 60, 60, 10]);
  });

  it('gives not-ready and terminating Pods their conditions, and skips Pods that are no endpoints', () => {
    const pods = [
      pod('a-ready', '10.244.1.1'),
      pod('b-not-ready', '10.244.1.2', { ready: false, nodeName: 'node-b' }),
      pod('c-terminating', '10.244.1.3', { terminating: true }),
      pod('d-terminating-not-ready', '10.244.1.4', { terminating: true, ready: false }),
      pod('e-succeeded', '10.244.1.5', { phase: 'Succeeded' }),
      pod('f-failed', '10.244.1.6', { phase: 'Failed' }),
      pod('g-no-ip', []),
      pod('h-other-namespace', '10.244.1.8', { namespace: 'other' }),
      pod('i-other-labels', '10.244.1.9', { labels: { app: 'web', tier: 'x' } }),
      pod('j-wrong-label', '10.244.1.10', { labels: { app: 'api' } }),
    ];
    const conditions = (svc: Service) =>
      Object.fromEntries(
        endpointSlicesFor(svc, pods)
          .flatMap((s) => s.endpoints)
          .map((e) => [e.addresses[0], { ...e.conditions, node: e.nodeName }]),
      );
    expect(conditions(web())).toEqual({
      '10.244.1.1': { ready: true, serving: true, terminating: false, node: 'node-a' },
      '10.244.1.2': { ready: false, serving: false, terminating: false, node: 'node-b' },
      '10.244.1.3': { ready: false, serving: true, terminating: true, node: 'node-a' },
      '10.244.1.4': { ready: false, serving: false, terminating: true, node: 'node-a' },
      '10.244.1.9': { ready: true, serving: true, terminating: false, node: 'node-a' },
    });
    // publishNotReadyAddresses: every endpoint ready; serving and terminating still the Pod's.
    expect(conditions(web({ publishNotReadyAddresses: true }))).toEqual({
      '10.244.1.1': { ready: true, serving: true, terminating: false, node: 'node-a' },
      '10.244.1.2': { ready: true, serving: false, terminating: false, node: 'node-b' },
      '10.244.1.3': { ready: true, serving: true, terminating: true, node: 'node-a' },
      '10.244.1.4': { ready: true, serving: false, terminating: true, node: 'node-a' },
      '10.244.1.9': { ready: true, serving: true, terminating: false, node: 'node-a' },
    });
  });

  it('resolves a named targetPort per Pod: one slice per distinct port mapping, a Pod without the name in none of that port', () => {
    const pods = [
      pod('v1-a', '10.244.1.1'),
      pod('v2-a', '10.244.2.1', { containerPorts: [{ name: 'http-web-svc', containerPort: 8080, protocol: 'TCP' }] }),
      pod('v1-b', '10.244.1.2'),
      pod('nameless', '10.244.3.1', { containerPorts: [{ name: 'other', containerPort: 80, protocol: 'TCP' }] }),
      pod('udp-only', '10.244.3.2', { containerPorts: [{ name: 'http-web-svc', containerPort: 80, protocol: 'UDP' }] }),
    ];
    const slices = endpointSlicesFor(web(), pods);
    expect(slices.map((s) => ({ ports: s.ports.map((p) => p.port), ips: s.endpoints.map((e) => e.addresses[0]) }))).toEqual([
      { ports: [], ips: ['10.244.3.1', '10.244.3.2'] },
      { ports: [80], ips: ['10.244.1.1', '10.244.1.2'] },
      { ports: [8080], ips: ['10.244.2.1'] },
    ]);
    const [resolved] = resolveServices({ services: [web()], endpointSlices: slices, nodes: [], notes: [] }).services;
    expect(resolved.endpointsFrom).toBe('Pods');
    expect(resolved.ports[0].endpoints.map((e) => `${e.ip}:${e.port}`).sort()).toEqual([
      '10.244.1.1:80',
      '10.244.1.2:80',
      '10.244.2.1:8080',
    ]);
  });

  it('makes one slice per IP family of a dual-stack Service, and a placeholder for a Service without endpoints', () => {
    const dual = web({ clusterIPs: ['10.96.0.10', 'fd00::10'], ipFamilies: ['IPv4', 'IPv6'], ipFamilyPolicy: 'PreferDualStack' });
    const slices = endpointSlicesFor(dual, [pod('a', ['10.244.1.1', 'fd00:244::1']), pod('b', ['10.244.1.2'])]);
    expect(slices.map((s) => [s.addressType, s.endpoints.map((e) => e.addresses)])).toEqual([
      ['IPv4', [['10.244.1.1'], ['10.244.1.2']]],
      ['IPv6', [['fd00:244::1']]],
    ]);
    const placeholder = endpointSlicesFor(web(), []);
    expect(placeholder).toHaveLength(1);
    expect(placeholder[0]).toMatchObject({ addressType: 'IPv4', endpoints: [], ports: [] });
    // A placeholder per family without endpoints: the controller reconciles each family apart.
    expect(endpointSlicesFor(dual, [pod('b', ['10.244.1.2'])]).map((s) => [s.addressType, s.endpoints.length, s.ports.length])).toEqual([
      ['IPv4', 1, 1],
      ['IPv6', 0, 0],
    ]);
    // Services without a selector, and ExternalName Services, are not the controller's.
    expect(
      deriveEndpointSlices([web({ selector: undefined }), web({ type: 'ExternalName', clusterIPs: [] })], [pod('a', '10.244.1.1')]),
    ).toEqual([]);
  });

  it('leaves out Pods on Nodes that do not exist, unless publishNotReadyAddresses; names each Pod in targetRef', () => {
    const pods = [pod('a', '10.244.1.1'), pod('b', '10.244.1.2', { nodeName: 'gone' }), pod('c', '10.244.1.3', { nodeName: undefined })];
    const ips = (svc: Service, nodeNames?: Set<string>) =>
      endpointSlicesFor(svc, pods, { nodeNames }).flatMap((s) => s.endpoints.map((e) => e.addresses[0]));
    expect(ips(web())).toEqual(['10.244.1.1', '10.244.1.2', '10.244.1.3']);
    expect(ips(web(), new Set(['node-a']))).toEqual(['10.244.1.1']);
    expect(ips(web({ publishNotReadyAddresses: true }), new Set(['node-a']))).toEqual(['10.244.1.1', '10.244.1.2', '10.244.1.3']);
    expect(endpointSlicesFor(web(), pods)[0].endpoints[0].targetRef).toEqual({ kind: 'Pod', namespace: 'default', name: 'a' });
  });

  it('makes the legacy Endpoints: not-ready addresses apart, terminating Pods left out, 1000 addresses at most', () => {
    const pods = [
      pod('a', '10.244.1.1'),
      pod('b', '10.244.1.2', { ready: false }),
      pod('c', '10.244.1.3', { terminating: true }),
      pod('d', '10.244.1.4', { containerPorts: [{ name: 'http-web-svc', containerPort: 8080, protocol: 'TCP' }] }),
    ];
    const { endpoints, truncated } = legacyEndpointsFor(web(), pods)!;
    expect(truncated).toBe(0);
    expect(
      endpoints.subsets.map((s) => [s.addresses.map((a) => a.ip), s.notReadyAddresses.map((a) => a.ip), s.ports.map((p) => p.port)]),
    ).toEqual([
      [['10.244.1.1'], ['10.244.1.2'], [80]],
      [['10.244.1.4'], [], [8080]],
    ]);
    const published = legacyEndpointsFor(web({ publishNotReadyAddresses: true }), pods)!.endpoints;
    expect(published.subsets[0].addresses.map((a) => a.ip)).toEqual(['10.244.1.1', '10.244.1.2', '10.244.1.3']);

    const many = Array.from({ length: 1200 }, (_, i) =>
      pod(`p${String(i).padStart(4, '0')}`, `10.244.${i >> 7}.${(i & 127) + 1}`, { ready: i >= 300 }),
    );
    const big = legacyEndpointsFor(web(), many)!;
    expect(big.truncated).toBe(200);
    expect(big.endpoints.subsets[0].addresses).toHaveLength(900);
    expect(big.endpoints.subsets[0].notReadyAddresses).toHaveLength(100);
    // Too many ready ones: each subset keeps its share of 1000, rounded up, and no not-ready ones.
    const split = legacyEndpointsFor(
      web(),
      many.map((p, i) => ({
        ...p,
        ready: true,
        containerPorts: [{ name: 'http-web-svc', containerPort: i < 300 ? 80 : 8080, protocol: 'TCP' as const }],
      })),
    )!;
    expect(split.truncated).toBe(200);
    expect(split.endpoints.subsets.map((s) => [s.ports[0].port, s.addresses.length, s.notReadyAddresses.length])).toEqual([
      [80, 250, 0],
      [8080, 750, 0],
    ]);
  });
});

describe('Pods in manifests', () => {
  const svcDoc = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web' },
    spec: { selector: { app: 'web' }, ports: [{ port: 80, targetPort: 'http-web-svc' }] },
  };
  const podDoc = (name: string, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'web' } },
    spec: { nodeName: 'node-a', containers: [{ name: 'c', ports: [{ name: 'http-web-svc', containerPort: 80 }] }] },
    status: { phase: 'Running', podIP: '10.244.1.1', podIPs: [{ ip: '10.244.1.1' }], conditions: [{ type: 'Ready', status: 'True' }] },
    ...extra,
  });

  function loadError(docs: object[]): string {
    const file = writeManifest(docs);
    try {
      loadClusterState([file]);
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      return (e as Error).message.replace(`${file}: `, '');
    }
    throw new Error('expected an InputError');
  }

  it('rejects malformed Pods naming the file, the Pod and the field', () => {
    const status = podDoc('x').status;
    expect(loadError([podDoc('x', { status: { ...status, podIP: '10.244.1.300', podIPs: undefined } })])).toBe(
      'Pod default/x: status.podIP: "10.244.1.300" is not a valid IP address',
    );
    expect(loadError([podDoc('x', { status: { ...status, podIP: '10.244.1.2' } })])).toMatch(
      /^Pod default\/x: status.podIP: "10.244.1.2" must equal status.podIPs\[0\].ip/,
    );
    expect(loadError([podDoc('x', { spec: { containers: [{ name: 'c', ports: [{ containerPort: 70000 }] }] } })])).toBe(
      'Pod default/x: spec.containers[0].ports[0].containerPort: 70000 is out of range 1..65535',
    );
    expect(loadError([podDoc('x', { status: { ...status, conditions: [{ type: 'Ready', status: 'yes' }] } })])).toBe(
      'Pod default/x: status.conditions[0].status: "yes" is not one of True, False, Unknown',
    );
    expect(loadError([podDoc('x', { metadata: { name: 'x', labels: ['app'] } })])).toBe(
      'Pod default/x: metadata.labels: must be a mapping, got a list',
    );
    expect(loadError([podDoc('x', { status: { ...status, phase: 'Sleeping' } })])).toMatch(
      /^Pod default\/x: status.phase: "Sleeping" is not one of Pending, Running/,
    );
    expect(loadError([podDoc('x'), podDoc('x')])).toMatch(/^Pod default\/x: defined twice/);
  });

  it('warns of what the API server refuses in a Pod but a datapath still programs', () => {
    const spec = podDoc('x').spec;
    const status = podDoc('x').status;
    const warnings = (docs: object[]) => {
      const file = writeManifest(docs);
      return (loadClusterState([file]).warnings ?? []).map((w) => w.replace(`${file}: `, ''));
    };
    expect(warnings([podDoc('x', { spec: { containers: [{ name: 'c', ports: [{ name: 'HTTP', containerPort: 80 }] }] } })])).toEqual([
      expect.stringMatching(
        /^Pod default\/x: spec.containers\[0\].ports\[0\].name: "HTTP" is neither a port number nor a port name .*; svcpath uses it as it is$/,
      ),
    ]);
    expect(warnings([podDoc('x', { spec: { ...spec, nodeName: 'Node_A' } })])).toEqual([
      expect.stringMatching(/^Pod default\/x: spec.nodeName: "Node_A" is not a DNS-1123 subdomain.*; svcpath uses it as it is$/),
    ]);
    expect(
      warnings([
        { ...svcDoc, spec: { ...svcDoc.spec, clusterIP: '10.96.0.1' } },
        podDoc('x', { status: { ...status, podIP: '10.96.0.1', podIPs: undefined } }),
      ]),
    ).toEqual([
      'Pod default/x: status.podIPs[0].ip: 10.96.0.1 is the cluster IP of Service default/web; ' +
        "an endpoint must not be a Service's cluster IP; the datapath sends to it all the same, and the packet comes back to that Service",
    ]);
    expect(warnings([podDoc('x', { status: { ...status, podIP: '169.254.0.9', podIPs: [{ ip: '169.254.0.9' }] } })])).toEqual([
      'Pod default/x: status.podIPs[0].ip: 169.254.0.9 is a link-local address, which cannot be used here; the datapath sends to it all the same',
    ]);
  });

  it('derives slices for Services without given ones, and lets given slices win but take node and unset conditions from Pods', () => {
    const given = {
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      addressType: 'IPv4',
      metadata: { name: 'api-1', labels: { 'kubernetes.io/service-name': 'api' } },
      ports: [{ port: 8080 }],
      endpoints: [{ addresses: ['10.244.1.1'] }, { addresses: ['10.244.1.2'], nodeName: 'node-c', conditions: { ready: true } }],
    };
    const api = { ...svcDoc, metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ port: 80, targetPort: 8080 }] } };
    const notReady = podDoc('p2', {
      status: { podIP: '10.244.1.2', conditions: [{ type: 'Ready', status: 'False' }] },
      metadata: { name: 'p2', labels: { app: 'web' }, deletionTimestamp: '2026-01-01T00:00:00Z' },
    });
    const state = loadClusterState([writeManifest([svcDoc, api, given, podDoc('p1'), notReady])]);
    const resolved = resolveServices(state).services;
    const of = (name: string) => resolved.find((r) => r.service.name === name)!;
    expect(of('web').endpointsFrom).toBe('Pods');
    expect(of('api').endpointsFrom).toBe('EndpointSlices');
    expect(of('web').ports[0].endpoints.map((e) => [e.ip, e.port, e.nodeName, e.conditions])).toEqual([
      ['10.244.1.1', 80, 'node-a', { ready: true, serving: true, terminating: false }],
      ['10.244.1.2', 80, 'node-a', { ready: false, serving: false, terminating: true }],
    ]);
    expect(of('api').ports[0].endpoints.map((e) => [e.ip, e.nodeName, e.conditions])).toEqual([
      ['10.244.1.1', 'node-a', { ready: true, serving: true, terminating: false }],
      // ready was given; serving and terminating were not, so they are the Pod's.
      ['10.244.1.2', 'node-c', { ready: true, serving: false, terminating: true }],
    ]);
    expect(state.notes).toContain(
      `${state.services[0].origin.file}: Service default/web: 1 EndpointSlice derived from its Pods (2 endpoints)`,
    );
  });

  it('notes the Pods it leaves out for being on a Node the state does not have, grouped per Service and node', () => {
    const nodeB = { apiVersion: 'v1', kind: 'Node', metadata: { name: 'node-b' } };
    const onNode = (name: string, node: string, ip: string) =>
      podDoc(name, {
        spec: { ...podDoc(name).spec, nodeName: node },
        status: { ...podDoc(name).status, podIP: ip, podIPs: [{ ip }] },
      });
    const gone = 'ip-10-0-3-7.ec2.internal';
    const pods = [
      onNode('web-5', gone, '10.244.3.5'),
      onNode('web-1', gone, '10.244.3.1'),
      onNode('web-3', gone, '10.244.3.3'),
      onNode('web-2', gone, '10.244.3.2'),
      onNode('web-4', gone, '10.244.3.4'),
      onNode('web-a', 'node-a', '10.244.1.1'),
      onNode('web-b', 'node-b', '10.244.2.1'),
    ];
    const file = writeManifest([svcDoc, nodeB, ...pods]);
    const state = loadClusterState([file]);
    expect(resolveServices(state).services[0].ports[0].endpoints.map((e) => e.ip)).toEqual(['10.244.2.1']);
    const skipped = '(the EndpointSlice controller skips such Pods unless publishNotReadyAddresses)';
    expect(state.notes.filter((n) => n.includes('not made endpoints'))).toEqual([
      `${file}: Service default/web: 5 Pods not made endpoints: their node "${gone}" is not among the Nodes ${skipped}: ` +
        'default/web-1, default/web-2, default/web-3 and 2 more',
      `${file}: Service default/web: 1 Pod not made endpoints: its node "node-a" is not among the Nodes ${skipped}: default/web-a`,
    ]);
  });

  it('notes workload templates as such only when no Pods are given', () => {
    const deployment = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web', namespace: 'default' } };
    const without = loadClusterState([writeManifest([svcDoc, deployment])]);
    expect(without.notes.join('\n')).toContain('skipped Deployment default/web (a workload template, not Pods');
    const withPods = loadClusterState([writeManifest([svcDoc, deployment, podDoc('p1')])]);
    expect(withPods.notes.join('\n')).toContain('skipped Deployment default/web (not used by svcpath)');
  });
});

// The same cluster twice: as Services and Pods, and as Services and the EndpointSlices the controller would
// make (written out by hand here), replayed on node-a; every verdict line must be the same.
describe('a cluster given as Pods replays as the same cluster given as EndpointSlices', () => {
  const node = (name: string, ip: string) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name },
    status: { addresses: [{ type: 'InternalIP', address: ip }] },
  });
  const proxy = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16' };
  const service = (name: string, clusterIP: string, spec: Record<string, unknown>) => ({
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name },
    spec: { clusterIP, selector: { app: name }, ...spec },
  });
  const services = [
    // The Service page's example: a named targetPort, served on 80 by v1 Pods and on 8080 by v2 Pods.
    service('web', '10.96.0.10', { ports: [{ port: 80, targetPort: 'http-web-svc' }] }),
    service('api', '10.96.0.20', {
      type: 'NodePort',
      externalTrafficPolicy: 'Local',
      ports: [
        { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
        { name: 'metrics', port: 9090, targetPort: 'metrics', nodePort: 30090 },
      ],
    }),
    service('drain', '10.96.0.30', { ports: [{ port: 80, targetPort: 80 }] }),
    service('peers', '10.96.0.40', { publishNotReadyAddresses: true, ports: [{ port: 7000, targetPort: 7000 }] }),
  ];
  interface P {
    name: string;
    app: string;
    ip: string;
    node: string;
    ready?: boolean;
    terminating?: boolean;
    ports: Array<[string, number]>;
  }
  const pods: P[] = [
    { name: 'web-v1-a', app: 'web', ip: '10.244.1.11', node: 'node-a', ports: [['http-web-svc', 80]] },
    { name: 'web-v1-b', app: 'web', ip: '10.244.2.11', node: 'node-b', ports: [['http-web-svc', 80]] },
    { name: 'web-v2-a', app: 'web', ip: '10.244.1.12', node: 'node-a', ports: [['http-web-svc', 8080]] },
    { name: 'web-v2-b', app: 'web', ip: '10.244.2.12', node: 'node-b', ports: [['http-web-svc', 8080]] },
    { name: 'web-starting', app: 'web', ip: '10.244.2.13', node: 'node-b', ready: false, ports: [['http-web-svc', 8080]] },
    { name: 'web-sidecarless', app: 'web', ip: '10.244.2.14', node: 'node-b', ports: [['admin', 80]] },
    { name: 'api-a', app: 'api', ip: '10.244.1.21', node: 'node-a', ports: [['metrics', 9100]] },
    { name: 'api-b', app: 'api', ip: '10.244.2.21', node: 'node-b', ports: [['metrics', 9200]] },
    { name: 'api-c', app: 'api', ip: '10.244.2.22', node: 'node-b', ports: [] },
    { name: 'drain-a', app: 'drain', ip: '10.244.1.31', node: 'node-a', terminating: true, ports: [] },
    { name: 'drain-b', app: 'drain', ip: '10.244.2.31', node: 'node-b', terminating: true, ports: [] },
    { name: 'peers-a', app: 'peers', ip: '10.244.1.41', node: 'node-a', ready: false, ports: [] },
    { name: 'peers-b', app: 'peers', ip: '10.244.2.41', node: 'node-b', ready: false, ports: [] },
  ];
  const podDocs = pods.map((p) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, labels: { app: p.app }, ...(p.terminating ? { deletionTimestamp: '2026-11-27T10:00:00Z' } : {}) },
    spec: { nodeName: p.node, containers: [{ name: 'main', ports: p.ports.map(([name, containerPort]) => ({ name, containerPort })) }] },
    status: { phase: 'Running', podIP: p.ip, conditions: [{ type: 'Ready', status: p.ready === false ? 'False' : 'True' }] },
  }));
  const ep = (ip: string, nodeName: string, ready: boolean, serving: boolean, terminating: boolean) => ({
    addresses: [ip],
    nodeName,
    conditions: { ready, serving, terminating },
  });
  const slice = (name: string, svc: string, ports: object[], endpoints: object[]) => ({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType: 'IPv4',
    metadata: {
      name,
      labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    ports,
    endpoints,
  });
  const sliceDocs = [
    slice(
      'web-80',
      'web',
      [{ name: '', port: 80 }],
      [ep('10.244.1.11', 'node-a', true, true, false), ep('10.244.2.11', 'node-b', true, true, false)],
    ),
    slice(
      'web-8080',
      'web',
      [{ name: '', port: 8080 }],
      [
        ep('10.244.1.12', 'node-a', true, true, false),
        ep('10.244.2.12', 'node-b', true, true, false),
        ep('10.244.2.13', 'node-b', false, false, false),
      ],
    ),
    slice('web-none', 'web', [], [ep('10.244.2.14', 'node-b', true, true, false)]),
    slice(
      'api-a',
      'api',
      [
        { name: 'http', port: 8080 },
        { name: 'metrics', port: 9100 },
      ],
      [ep('10.244.1.21', 'node-a', true, true, false)],
    ),
    slice(
      'api-b',
      'api',
      [
        { name: 'http', port: 8080 },
        { name: 'metrics', port: 9200 },
      ],
      [ep('10.244.2.21', 'node-b', true, true, false)],
    ),
    slice('api-c', 'api', [{ name: 'http', port: 8080 }], [ep('10.244.2.22', 'node-b', true, true, false)]),
    slice(
      'drain-1',
      'drain',
      [{ name: '', port: 80 }],
      [ep('10.244.1.31', 'node-a', false, true, true), ep('10.244.2.31', 'node-b', false, true, true)],
    ),
    slice(
      'peers-1',
      'peers',
      [{ name: '', port: 7000 }],
      [ep('10.244.1.41', 'node-a', true, false, false), ep('10.244.2.41', 'node-b', true, false, false)],
    ),
  ];
  const common = [node('node-a', '192.168.0.10'), node('node-b', '192.168.0.11'), proxy, ...services];

  const dir = mkdtempSync(join(tmpdir(), 'svcpath-esc-replay-'));
  const outputs: Record<'pods' | 'slices', { verdicts: Array<Record<string, unknown>>; summary: string }> = {} as never;

  beforeAll(async () => {
    writeFileSync(join(dir, 'pods.yaml'), [...common, ...podDocs].map((d) => stringify(d)).join('---\n'));
    writeFileSync(join(dir, 'slices.yaml'), [...common, ...sliceDocs].map((d) => stringify(d)).join('---\n'));
    const frontends: Array<[string, number]> = [
      ['10.96.0.10', 80],
      ['10.96.0.20', 80],
      ['10.96.0.20', 9090],
      ['192.168.0.10', 30080],
      ['192.168.0.10', 30090],
      ['10.96.0.30', 80],
      ['10.96.0.40', 7000],
      ['10.96.0.10', 81],
    ];
    const clients = ['10.244.3.5', '10.244.1.99', '203.0.113.7', '198.51.100.20'];
    const w = createPcapWriter(join(dir, 'capture.pcap'), { linktype: 1 });
    let t = 1_800_000_000;
    let port = 20000;
    for (const [ip, p] of frontends)
      for (const client of clients) for (let i = 0; i < 16; i++) w.write(t++, 0, tcp(client, port++, ip, p, ['SYN']));
    w.close();
    for (const kind of ['pods', 'slices'] as const) {
      const lines: string[] = [];
      const log = vi.spyOn(console, 'log').mockImplementation((...a) => {
        lines.push(a.join(' '));
      });
      const code = await main([
        'replay',
        join(dir, 'capture.pcap'),
        '--cluster',
        join(dir, `${kind}.yaml`),
        '--node',
        'node-a',
        '--verdicts',
        join(dir, `${kind}.jsonl`),
      ]);
      log.mockRestore();
      expect(code).toBe(0);
      outputs[kind] = {
        verdicts: readFileSync(join(dir, `${kind}.jsonl`), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l)),
        summary: lines.join('\n'),
      };
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('makes every decision the same', () => {
    expect(outputs.pods.verdicts.length).toBe(8 * 4 * 16);
    expect(outputs.pods.verdicts).toEqual(outputs.slices.verdicts);
  });

  it("reaches the named port on each Pod's own number, and the other conditions as they should", () => {
    const backends = (service: string) => new Set(outputs.pods.verdicts.filter((v) => v.service === service).map((v) => v.backend));
    expect(backends('default/web:80')).toEqual(new Set(['10.244.1.11:80', '10.244.2.11:80', '10.244.1.12:8080', '10.244.2.12:8080']));
    expect(backends('default/api:metrics')).toEqual(new Set(['10.244.1.21:9100', '10.244.2.21:9200']));
    expect(backends('default/drain:80')).toEqual(new Set(['10.244.1.31:80', '10.244.2.31:80']));
    expect(backends('default/peers:7000')).toEqual(new Set(['10.244.1.41:7000', '10.244.2.41:7000']));
  });

  it("says in the summary where each Service's endpoints came from", () => {
    expect(outputs.pods.summary).toMatch(/default\/web:80 .* endpoints: 4 ready, 1 unusable \(from Pods\)/);
    expect(outputs.slices.summary).toMatch(/default\/web:80 .* endpoints: 4 ready, 1 unusable \(from EndpointSlices\)/);
  });
});

describe('svcpath endpoints', () => {
  const svc = {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'web', namespace: 'shop' },
    spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http-web-svc' }] },
  };
  const pods = Array.from({ length: 250 }, (_, i) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: `web-${String(i).padStart(3, '0')}`, namespace: 'shop', labels: { app: 'web' } },
    spec: { nodeName: `node-${i % 3}`, containers: [{ name: 'c', ports: [{ name: 'http-web-svc', containerPort: i < 200 ? 80 : 8080 }] }] },
    status: { podIP: `10.244.${i >> 7}.${(i & 127) + 1}`, conditions: [{ type: 'Ready', status: i % 10 === 0 ? 'False' : 'True' }] },
  }));

  it('prints the derived slices as kubectl get endpointslices does, and -o yaml that loads back to the same endpoints', async () => {
    const file = writeManifest([svc, ...pods]);
    const table = await cli(['endpoints', '--cluster', file]);
    expect(table.code).toBe(0);
    const rows = table.stdout.split('\n');
    expect(rows[0]).toMatch(/^NAMESPACE\s+NAME\s+ADDRESSTYPE\s+PORTS\s+ENDPOINTS$/);
    expect(
      rows
        .slice(1)
        .map((r) => r.split(/\s+/).slice(2, 4))
        .sort(),
    ).toEqual([
      ['IPv4', '80'],
      ['IPv4', '80'],
      ['IPv4', '8080'],
    ]);
    expect(rows[1]).toMatch(/\+ 97 more\.\.\.$|\+ 47 more\.\.\.$/);

    const yaml = await cli(['endpoints', '--cluster', file, '-o', 'yaml', '--max-endpoints-per-slice', '60']);
    expect(yaml.code).toBe(0);
    expect(yaml.stdout).toMatch(
      /^apiVersion: v1\nitems:\n- addressType: IPv4\n  apiVersion: discovery.k8s.io\/v1\n  endpoints:\n  - addresses:\n/,
    );
    expect(yaml.stdout).toContain('endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io');
    const given = writeManifest([svc]);
    writeFileSync(join(scratch, 'derived.yaml'), yaml.stdout);
    const fromPods = loadClusterState([file], { maxEndpointsPerSlice: 60 });
    expect(fromPods.endpointSlices.map((s) => s.endpoints.length)).toEqual([60, 60, 60, 20, 50]);
    const fromYaml = loadClusterState([given, join(scratch, 'derived.yaml')]);
    const backends = (state: typeof fromPods) =>
      resolveServices(state)
        .services[0].ports[0].endpoints.map(
          (e) => `${e.ip}:${e.port} ${e.nodeName} ${e.conditions.ready}${e.conditions.serving}${e.conditions.terminating}`,
        )
        .sort();
    expect(backends(fromYaml)).toEqual(backends(fromPods));
    expect(backends(fromPods)).toHaveLength(250);
    expect(resolveServices(fromYaml).services[0].endpointsFrom).toBe('EndpointSlices');
  });

  it('prints the legacy Endpoints with --legacy, truncated past 1000 addresses', async () => {
    const many = Array.from({ length: 1001 }, (_, i) => ({
      ...pods[0],
      metadata: { ...pods[0].metadata, name: `p-${i}` },
      status: { podIP: `10.244.${i >> 7}.${(i & 127) + 1}`, conditions: [{ type: 'Ready', status: 'True' }] },
    }));
    const { code, stdout: out } = await cli(['endpoints', '--cluster', writeManifest([svc, ...many]), '-o', 'json', '--legacy']);
    expect(code).toBe(0);
    type Item = { kind: string; metadata: { annotations?: Record<string, string> }; subsets?: Array<{ addresses: unknown[] }> };
    const items = JSON.parse(out).items as Item[];
    expect(items.filter((i) => i.kind === 'EndpointSlice')).toHaveLength(11);
    const [endpoints] = items.filter((i) => i.kind === 'Endpoints');
    expect(endpoints.metadata.annotations).toEqual({ 'endpoints.kubernetes.io/over-capacity': 'truncated' });
    expect(endpoints.subsets?.[0].addresses).toHaveLength(1000);
  });

  it('refuses a bad --max-endpoints-per-slice and a bad --output', async () => {
    const file = writeManifest([svc]);
    expect((await cli(['endpoints', '--cluster', file, '--max-endpoints-per-slice', '0'])).stderr).toBe(
      'svcpath: --max-endpoints-per-slice: 0 is outside 1..1000',
    );
    expect((await cli(['endpoints', '--cluster', file, '-o', 'wide'])).stderr).toBe('svcpath: --output: "wide" is not yaml or json');
  });
});
