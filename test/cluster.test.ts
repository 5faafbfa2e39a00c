import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadClusterState, resolveServices, type LoadOptions } from '../control/cluster/index.js';
import { InputError } from '../control/common/errors.js';
import type { ClusterState, ResolvedService } from '../control/cluster/state.js';
import { escapeRegExp } from './helpers.js';

const fixtures = fileURLToPath(new URL('fixtures/cluster/', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'svcpath-cluster-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let written = 0;
/** Writes manifests (objects become YAML documents, strings are taken as they are) to a fresh file. */
function writeManifest(content: string | object[], name = `case-${++written}.yaml`): string {
  const file = join(scratch, name);
  writeFileSync(file, typeof content === 'string' ? content : content.map((doc) => stringify(doc)).join('---\n'));
  return file;
}

/**
 * Loads with kube-apiserver's default range given as the flag: most tests are
 * about something else than where the ranges come from (see "service cluster
 * IP ranges" for that).
 */
function load(paths: string[], opts: LoadOptions = {}): ClusterState {
  return loadClusterState(paths, { serviceClusterIPRanges: ['10.96.0.0/12'], ...opts });
}

function loadError(paths: string[], opts?: LoadOptions): InputError {
  try {
    load(paths, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error('expected an InputError');
}

/** Asserts that loading fails with a message "<file>: <where>: <problem…>". */
function expectError(content: string | object[], where: string, problem: string, opts?: LoadOptions): void {
  const file = writeManifest(content);
  const { message } = loadError([file], opts);
  expect(message).toContain(`${file}: ${where}: `);
  expect(message).toContain(problem);
  expect(message).not.toContain('\n');
}

/**
 * Asserts that loading succeeds with the warning "<file>: <where>: <problem…>; <what
 * svcpath does instead>" as the first one, and that --strict makes it the error.
 */
function expectWarning(content: string | object[], where: string, problem: string, opts?: LoadOptions): string {
  const file = writeManifest(content);
  const [warning] = load([file], opts).warnings ?? [];
  expect(warning).toContain(`${file}: ${where}: `);
  expect(warning).toContain(problem);
  expect(warning.slice(warning.indexOf(problem) + problem.length)).toMatch(/; \w/);
  expect(loadError([file], { ...opts, strict: true }).message).toBe(warning);
  return warning;
}

function service(spec: object, metadata: object = { name: 'web' }): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Service', metadata, spec };
}

function slice(fields: object, metadata: object = {}): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'web-abc12', labels: { 'kubernetes.io/service-name': 'web' }, ...metadata },
    addressType: 'IPv4',
    ...fields,
  };
}

function legacyEndpoints(subsets: object[] | null, metadata: object = { name: 'web' }): Record<string, unknown> {
  return { apiVersion: 'v1', kind: 'Endpoints', metadata, subsets };
}

function proxyConfig(fields: object): Record<string, unknown> {
  return { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', ...fields };
}

function resolved(state: ClusterState, namespace: string, name: string): ResolvedService {
  const found = resolveServices(state).services.find((r) => r.service.namespace === namespace && r.service.name === name);
  if (!found) throw new Error(`no Service ${namespace}/${name}`);
  return found;
}

/** Port → "ip:port ready/serving/terminating" lines, for compact assertions. */
function backends(r: ResolvedService): Record<string, string[]> {
  const flag = (b: boolean) => (b ? 'y' : 'n');
  return Object.fromEntries(
    r.ports.map(({ port, endpoints }) => [
      `${port.name || '-'} ${port.port}/${port.protocol}`,
      endpoints.map(({ ip, port: p, conditions: c }) => `${ip}:${p} ${flag(c.ready)}${flag(c.serving)}${flag(c.terminating)}`),
    ]),
  );
}

describe('a kubectl get svc,endpointslices,nodes -A -o yaml dump', () => {
  const file = join(fixtures, 'kubectl-dump.yaml');
  const state = load([file]);

  it('flattens the List into Services, EndpointSlices and Nodes with origins', () => {
    expect(state.services.map((s) => `${s.namespace}/${s.name}`)).toEqual([
      'default/kubernetes',
      'kube-system/kube-dns',
      'shop/web',
      'shop/db',
      'shop/idle',
    ]);
    expect(state.endpointSlices.map((s) => s.name)).toEqual(['kubernetes', 'kube-dns-7xk2p', 'web-w2cjd', 'web-4kq9z', 'db-lm5rt']);
    expect(state.nodes).toEqual([
      {
        origin: { file, object: 'Node control-plane' },
        name: 'control-plane',
        addresses: [
          { type: 'InternalIP', address: '172.18.0.2' },
          { type: 'Hostname', address: 'control-plane' },
        ],
        // Its node-role.kubernetes.io/control-plane label: left out of topology mode Auto's zones.
        controlPlane: true,
      },
      {
        origin: { file, object: 'Node worker-1' },
        name: 'worker-1',
        addresses: [
          { type: 'InternalIP', address: '172.18.0.3' },
          { type: 'Hostname', address: 'worker-1' },
        ],
      },
    ]);
    expect(state.proxyConfig).toBeUndefined();
    expect(state.notes).toEqual([]);
  });

  it('keeps every field of a LoadBalancer Service', () => {
    const web = state.services[2];
    expect(web).toEqual({
      origin: { file, object: 'Service shop/web' },
      namespace: 'shop',
      name: 'web',
      type: 'LoadBalancer',
      clusterIPs: ['10.100.20.30'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 'http-web', nodePort: 30080, appProtocol: undefined },
        { name: 'https', protocol: 'TCP', port: 443, targetPort: 8443, nodePort: 30443, appProtocol: undefined },
      ],
      selector: { app: 'web' },
      sessionAffinity: 'ClientIP',
      affinityTimeoutSeconds: 3600,
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Cluster',
      externalIPs: [],
      externalName: undefined,
      loadBalancerIngress: [{ ip: '203.0.113.10', hostname: undefined, ipMode: 'VIP' }],
      loadBalancerSourceRanges: [],
      loadBalancerClass: undefined,
      allocateLoadBalancerNodePorts: true,
      publishNotReadyAddresses: false,
      healthCheckNodePort: 31234,
    });
  });

  it('carries slice fields, the managed-by label and endpoint details', () => {
    const db = state.endpointSlices[4];
    expect(db).toMatchObject({
      namespace: 'shop',
      serviceName: 'db',
      addressType: 'IPv4',
      managedBy: 'endpointslice-controller.k8s.io',
      ports: [{ name: 'pg', protocol: 'TCP', port: 5432 }],
    });
    expect(db.endpoints[0]).toMatchObject({ addresses: ['10.244.1.8'], hostname: 'db-0', nodeName: 'worker-1' });
    expect(state.endpointSlices[3].endpoints[0]).toMatchObject({ nodeName: 'worker-1', zone: 'zone-a' });
  });

  it('defaults unset conditions: ready true, serving as ready, terminating false', () => {
    const [, unset] = state.endpointSlices[3].endpoints;
    expect(unset.conditions).toEqual({ ready: true, serving: true, terminating: false });
    const [onlyReady] = state.endpointSlices[0].endpoints;
    expect(onlyReady.conditions).toEqual({ ready: true, serving: true, terminating: false });
  });

  it('resolves a named targetPort through the slice port of the same name', () => {
    const web = resolved(state, 'shop', 'web');
    expect(web.ports[0].port.targetPort).toBe('http-web');
    expect(web.ports[0].endpoints.map((e) => e.port)).toEqual([8080, 8080, 8080]);
  });

  it('merges two slices in name order and keeps the first of a duplicate endpoint', () => {
    // web-4kq9z sorts before web-w2cjd, so its ready copy of 10.244.2.7 wins over the not-ready one.
    expect(backends(resolved(state, 'shop', 'web'))).toEqual({
      'http 80/TCP': ['10.244.1.5:8080 yyn', '10.244.2.7:8080 yyn', '10.244.3.9:8080 nyy'],
      'https 443/TCP': ['10.244.1.5:8443 yyn', '10.244.2.7:8443 yyn', '10.244.3.9:8443 nyy'],
    });
    expect(resolved(state, 'shop', 'web').ports[0].endpoints[0].nodeName).toBe('worker-1');
  });

  it('matches slice ports by name and protocol', () => {
    expect(backends(resolved(state, 'kube-system', 'kube-dns'))).toEqual({
      'dns 53/UDP': ['10.244.0.2:53 yyn', '10.244.0.3:53 yyn'],
      'dns-tcp 53/TCP': ['10.244.0.2:53 yyn', '10.244.0.3:53 yyn'],
      'metrics 9153/TCP': ['10.244.0.2:9153 yyn', '10.244.0.3:9153 yyn'],
    });
  });

  it('returns headless Services and Services without slices', () => {
    const resolution = resolveServices(state);
    expect(resolution.notes).toEqual([]);
    expect(resolved(state, 'shop', 'db').service.clusterIPs).toEqual(['None']);
    expect(backends(resolved(state, 'shop', 'db'))).toEqual({ 'pg 5432/TCP': ['10.244.1.8:5432 yyn'] });
    expect(backends(resolved(state, 'shop', 'idle'))).toEqual({ '- 8080/TCP': [] });
  });
});

describe('a directory of manifests', () => {
  const dir = join(fixtures, 'dir');
  const state = load([dir]);

  it('reads every .yaml, .yml and .json file below it in sorted order, ignoring other files and empty documents', () => {
    expect(state.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(['shop/api', 'default/legacy']);
    expect(state.services[1].origin).toEqual({ file: join(dir, '10-services.yaml'), object: 'Service default/legacy' });
    expect(state.endpointSlices.map((s) => s.origin.file)).toEqual([join(dir, 'slices', 'api.yml')]);
    expect(state.nodes).toEqual([
      {
        origin: { file: join(dir, 'nodes.json'), object: 'Node worker-1' },
        name: 'worker-1',
        addresses: [
          { type: 'InternalIP', address: '172.18.0.3' },
          { type: 'InternalIP', address: 'fd00:18::3' }, // canonical form
          { type: 'Hostname', address: 'worker-1' },
        ],
      },
    ]);
  });

  it('applies the API server defaults', () => {
    const legacy = state.services[1];
    expect(legacy).toMatchObject({
      type: 'NodePort',
      ipFamilies: ['IPv4'],
      sessionAffinity: 'None',
      affinityTimeoutSeconds: 10800,
      externalTrafficPolicy: 'Cluster', // "Global" in the manifest
      internalTrafficPolicy: 'Cluster',
      allocateLoadBalancerNodePorts: true,
      publishNotReadyAddresses: false,
      selector: undefined,
    });
    expect(legacy.ports).toEqual([{ name: '', protocol: 'TCP', port: 8080, targetPort: 8080, nodePort: 30808, appProtocol: undefined }]);
  });

  it('notes the kinds it skips', () => {
    expect(state.notes).toEqual([
      `${join(dir, '20-deploy.yaml')}: skipped Deployment shop/api (a workload template, not Pods: ` +
        'give the Pods themselves, e.g. kubectl get pods -o yaml, to derive endpoints)',
      `${join(dir, '20-deploy.yaml')}: skipped ConfigMap shop/api-config (not used by svcpath)`,
    ]);
  });

  it('reads KubeProxyConfiguration, with Go durations in seconds and 0s as "keep the default"', () => {
    expect(state.proxyConfig).toEqual({
      origin: { file: join(dir, 'kube-proxy.yaml'), object: 'document 1' },
      clusterCIDRs: ['10.244.0.0/16', 'fd00:10:244::/56'],
      nodePortAddresses: ['172.18.0.0/16'],
      mode: 'iptables',
      conntrack: { tcpEstablishedTimeout: 86400, tcpCloseWaitTimeout: 3600, udpTimeout: undefined, udpStreamTimeout: 90 },
    });
  });

  it('resolves the named targetPort of a manual slice', () => {
    expect(backends(resolved(state, 'shop', 'api'))).toEqual({
      'grpc 9000/TCP': ['10.244.1.20:50051 yyn', '10.244.2.21:50051 nnn'],
    });
  });

  it('reads files and directories together', () => {
    const both = load([join(fixtures, 'list.json'), join(dir, 'slices')]);
    expect(both.services.map((s) => s.name)).toEqual(['echo']);
    expect(both.endpointSlices.map((s) => s.name)).toEqual(['echo-abc12', 'api-manual']);
  });
});

describe('JSON input', () => {
  it('reads a kubectl -o json List (tabs and all)', () => {
    const state = load([join(fixtures, 'list.json')]);
    expect(backends(resolved(state, 'default', 'echo'))).toEqual({
      'tcp 7/TCP': ['10.244.0.9:7007 yyn'],
      'udp 7/UDP': ['10.244.0.9:7 yyn'],
    });
  });
});

describe('resolving slices that contribute nothing', () => {
  const file = join(fixtures, 'resolve-edges.yaml');
  const state = load([file]);
  const { services, notes } = resolveServices(state);

  it('uses a numeric targetPort for a slice port without a number, and skips a named one', () => {
    expect(backends(services[0])).toEqual({
      'web 80/TCP': ['10.244.0.10:8080 yyn'], // only the endpoint's first address, as kube-proxy
      'admin 81/TCP': [],
    });
  });

  it('says why', () => {
    expect(state.notes).toEqual([
      `${file}: EndpointSlice default/unlabelled: skipped: no kubernetes.io/service-name label, so it belongs to no Service`,
    ]);
    expect(notes).toEqual([
      `${file}: EndpointSlice default/gone-x1y2z: ignored: its Service default/gone does not exist`,
      `${file}: EndpointSlice default/app-fqdn: ignored: FQDN EndpointSlices are not supported (kube-proxy ignores them too)`,
      `${file}: EndpointSlice default/app-v6: ignored: addressType IPv6 is not among the IP families of Service default/app (IPv4)`,
      `${file}: EndpointSlice default/app-portless: port "admin" has no number and Service default/app names its targetPort "admin"; skipped`,
    ]);
  });
});

describe('loading errors', () => {
  it('names a missing path', () => {
    const missing = join(scratch, 'nope.yaml');
    expect(loadError([missing]).message).toBe(`${missing}: no such file or directory`);
  });

  it('names the line and column of a YAML syntax error', () => {
    const file = writeManifest('apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}\n  type: ClusterIP\n');
    expect(loadError([file]).message).toMatch(new RegExp(`^${escapeRegExp(file)}: line 7, column 3: .+`));
  });

  it('names the document of a YAML error in a later document', () => {
    const file = writeManifest('kind: Pod\n---\na: b: c\n');
    expect(loadError([file]).message).toMatch(new RegExp(`^${escapeRegExp(file)}: line 3, column 4: Nested mappings`));
  });

  it('notes YAML warnings, such as a tag it does not know', () => {
    const file = writeManifest('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata:\n  token: !vault db/token\n');
    expect(load([file]).notes).toEqual([
      `${file}: line 5, column 10: Unresolved tag: !vault`,
      `${file}: skipped ConfigMap cfg (not used by svcpath)`,
    ]);
  });

  it('rejects an alias without an anchor, naming the document', () => {
    expectError('kind: Pod\n---\nkind: Service\nmetadata: *meta\n', 'document 2', 'Unresolved alias');
  });

  it('rejects a document without kind', () => {
    expectError('---\napiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nmetadata: {name: web}\n', 'document 2: kind', 'required');
  });

  it('rejects a document that is not an object', () => {
    expectError('- a\n- b\n', 'document 1', 'expected a Kubernetes object (a mapping), got a list');
  });

  it('names a List item without a name by its index', () => {
    expectError(
      [{ apiVersion: 'v1', kind: 'List', items: [service({ ports: [{ port: 80 }] }, { name: 'ok' }), service({}, {})] }],
      'items[1]: metadata.name',
      'required',
    );
  });

  it('flattens typed lists such as ServiceList', () => {
    const file = writeManifest([{ apiVersion: 'v1', kind: 'ServiceList', items: [service({ ports: [{ port: 80 }] })] }]);
    expect(load([file]).services.map((s) => s.name)).toEqual(['web']);
  });

  it('rejects a known kind with the wrong apiVersion', () => {
    expectError(
      [{ ...slice({}), apiVersion: 'discovery.k8s.io/v1alpha1' }],
      'EndpointSlice default/web-abc12: apiVersion',
      'EndpointSlice must be discovery.k8s.io/v1 or discovery.k8s.io/v1beta1, got "discovery.k8s.io/v1alpha1"',
    );
  });

  it('rejects a duplicate object, naming both files', () => {
    const first = writeManifest([service({ ports: [{ port: 80 }] })]);
    const second = writeManifest([service({ ports: [{ port: 81 }] })]);
    expect(loadError([first, second]).message).toBe(`${second}: Service default/web: defined twice; the first is in ${first} (document 1)`);
  });

  it('rejects a second KubeProxyConfiguration', () => {
    const first = writeManifest([proxyConfig({})]);
    const second = writeManifest([proxyConfig({})]);
    expect(loadError([first, second]).message).toBe(
      `${second}: document 1: a second KubeProxyConfiguration; there must be at most one, and the first is in ${first} (document 1)`,
    );
  });

  it('rejects a directory without manifests', () => {
    const empty = join(scratch, 'empty');
    mkdirSync(empty);
    expect(loadError([empty]).message).toBe(`${empty}: no .yaml, .yml, .json files in this directory`);
  });

  it('rejects an invalid service cluster IP range option', () => {
    const file = writeManifest([service({ ports: [{ port: 80 }] })]);
    expect(loadError([file], { serviceClusterIPRanges: ['10.96.0.0/33'] }).message).toBe(
      'serviceClusterIPRanges[0]: "10.96.0.0/33" is not a valid CIDR (like 10.96.0.0/12 or fd00::/108)',
    );
  });
});

describe('Service validation', () => {
  const port80 = [{ port: 80 }];
  // Each row: rule, spec (or [spec, metadata]), field, a distinctive part of the problem.
  // Errors: the datapath could not be built, or would be ambiguous.
  const rules: Array<[string, object | [object, object], string, string]> = [
    [
      'type is one of the four',
      { type: 'Internal', ports: port80 },
      'spec.type',
      '"Internal" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName',
    ],
    ['ExternalName requires externalName', { type: 'ExternalName' }, 'spec.externalName', 'required for ExternalName Services'],
    [
      'protocol is TCP, UDP or SCTP',
      { ports: [{ port: 80, protocol: 'ICMP' }] },
      'spec.ports[0].protocol',
      '"ICMP" is not one of TCP, UDP, SCTP',
    ],
    ['port is required', { ports: [{ name: 'http' }] }, 'spec.ports[0].port', 'required'],
    ['port is 1..65535', { ports: [{ port: 0 }] }, 'spec.ports[0].port', '0 is out of range 1..65535'],
    ['port is an integer', { ports: [{ port: '80' }] }, 'spec.ports[0].port', 'must be an integer, got "80"'],
    [
      'numeric targetPort is 1..65535',
      { ports: [{ port: 80, targetPort: 65536 }] },
      'spec.ports[0].targetPort',
      '65536 is out of range 1..65535',
    ],
    [
      'nodePort is 0..65535',
      { type: 'NodePort', ports: [{ port: 80, nodePort: 70000 }] },
      'spec.ports[0].nodePort',
      '70000 is out of range 0..65535',
    ],
    [
      'port and protocol pairs are unique',
      {
        ports: [
          { name: 'a', port: 53, protocol: 'UDP' },
          { name: 'b', port: 53, protocol: 'UDP' },
        ],
      },
      'spec.ports[1]',
      'port 53/UDP is already used by spec.ports[0]',
    ],
    ['clusterIP is an IP', { clusterIP: '10.96.0.300', ports: port80 }, 'spec.clusterIP', '"10.96.0.300" is not a valid IP address'],
    ['clusterIP has no leading zeros', { clusterIP: '10.96.0.010', ports: port80 }, 'spec.clusterIP', 'without leading zeros'],
    [
      'clusterIP equals clusterIPs[0]',
      { clusterIP: '10.96.0.5', clusterIPs: ['10.96.0.6'], ports: port80 },
      'spec.clusterIP',
      'must equal spec.clusterIPs[0] ("10.96.0.6")',
    ],
    [
      'each of clusterIPs is an IP',
      { clusterIPs: ['10.96.0.5', 'fd00::zz'], ports: port80 },
      'spec.clusterIPs[1]',
      '"fd00::zz" is not a valid IP address',
    ],
    [
      'at most 2 clusterIPs',
      { clusterIPs: ['10.96.0.5', '10.96.0.6', '10.96.0.7'], ports: port80 },
      'spec.clusterIPs',
      'at most 2 entries',
    ],
    [
      'clusterIPs are of different families',
      { clusterIPs: ['10.96.0.5', '10.96.0.6'], ports: port80 },
      'spec.clusterIPs[1]',
      'must be of a different IP family than 10.96.0.5',
    ],
    [
      'None is the only clusterIP',
      { clusterIPs: ['None', '10.96.0.5'], ports: port80 },
      'spec.clusterIPs',
      '"None" (headless) must be the only entry',
    ],
    ['ipFamilies are IPv4 or IPv6', { ipFamilies: ['IPv5'], ports: port80 }, 'spec.ipFamilies[0]', '"IPv5" is not one of IPv4, IPv6'],
    [
      'sessionAffinity is None or ClientIP',
      { sessionAffinity: 'Cookie', ports: port80 },
      'spec.sessionAffinity',
      '"Cookie" is not one of None, ClientIP',
    ],
    [
      'externalTrafficPolicy is Cluster or Local',
      { type: 'NodePort', externalTrafficPolicy: 'Nearest', ports: port80 },
      'spec.externalTrafficPolicy',
      '"Nearest" is not one of Cluster, Local',
    ],
    [
      'internalTrafficPolicy is Cluster or Local',
      { internalTrafficPolicy: 'Global', ports: port80 },
      'spec.internalTrafficPolicy',
      '"Global" is not one of Cluster, Local',
    ],
    [
      'externalIPs are IPs',
      { externalIPs: ['192.0.2.10', 'example.com'], ports: port80 },
      'spec.externalIPs[1]',
      '"example.com" is not a valid IP address',
    ],
    [
      'ingress ip is an IP',
      { type: 'LoadBalancer', ports: port80, status: true },
      'status.loadBalancer.ingress[0].ip',
      '"203.0.113.300" is not a valid IP address',
    ],
    [
      'ingress ipMode is VIP or Proxy',
      { type: 'LoadBalancer', ports: port80, status: 'Direct' },
      'status.loadBalancer.ingress[0].ipMode',
      '"Direct" is not one of VIP, Proxy',
    ],
    [
      'loadBalancerSourceRanges are CIDRs',
      { type: 'LoadBalancer', loadBalancerSourceRanges: ['10.0.0.0/8', '192.168.0.0'], ports: port80 },
      'spec.loadBalancerSourceRanges[1]',
      '"192.168.0.0" is not a valid CIDR',
    ],
    [
      'allocateLoadBalancerNodePorts is a boolean',
      { type: 'LoadBalancer', allocateLoadBalancerNodePorts: 'yes', ports: port80 },
      'spec.allocateLoadBalancerNodePorts',
      'must be true or false, got "yes"',
    ],
    [
      'publishNotReadyAddresses is a boolean',
      { publishNotReadyAddresses: 1, ports: port80 },
      'spec.publishNotReadyAddresses',
      'must be true or false, got 1',
    ],
    [
      'selector values are strings',
      { selector: { app: 'web', tier: { name: 'front' } }, ports: port80 },
      'spec.selector.tier',
      'must be a string, got a mapping',
    ],
    [
      'a nodePort is on one port per protocol',
      {
        type: 'NodePort',
        ports: [
          { name: 'a', port: 80, nodePort: 30080 },
          { name: 'b', port: 81, nodePort: 30080 },
        ],
      },
      'spec.ports[1].nodePort',
      '30080/TCP is already used by spec.ports[0].nodePort',
    ],
  ];
  // Warnings: the API server refuses these, but the datapath programs them.
  const warningRules: Array<[string, object | [object, object], string, string]> = [
    ['name is an RFC 1035 label', [{ ports: port80 }, { name: '1web' }], 'Service default/1web: metadata.name', 'is not an RFC 1035 label'],
    [
      'name is at most 63 characters',
      [{ ports: port80 }, { name: 'w'.repeat(64) }],
      `Service default/${'w'.repeat(64)}: metadata.name`,
      'is not an RFC 1035 label',
    ],
    [
      'namespace is an RFC 1123 label',
      [{ ports: port80 }, { name: 'web', namespace: 'Shop' }],
      'Service Shop/web: metadata.namespace',
      'is not a DNS-1123 label',
    ],
    ['externalName is a DNS name', { type: 'ExternalName', externalName: 'db_host' }, 'spec.externalName', 'is not a DNS-1123 subdomain'],
    [
      'ExternalName takes no cluster IP',
      { type: 'ExternalName', externalName: 'db.example.com', clusterIP: '10.96.0.5' },
      'spec.clusterIP',
      'must not be set for ExternalName Services',
    ],
    ['ports are required', { clusterIP: '10.96.0.5' }, 'spec.ports', 'at least one port is required'],
    ['port name is a DNS-1123 label', { ports: [{ name: 'Http', port: 80 }] }, 'spec.ports[0].name', '"Http" is not a DNS-1123 label'],
    [
      'port name is required with several ports',
      { ports: [{ name: 'http', port: 80 }, { port: 443 }] },
      'spec.ports[1].name',
      'required when the Service has more than one port',
    ],
    [
      'port names are unique',
      {
        ports: [
          { name: 'http', port: 80 },
          { name: 'http', port: 8080 },
        ],
      },
      'spec.ports[1].name',
      'name "http" is already used by spec.ports[0]',
    ],
    [
      'named targetPort is an IANA_SVC_NAME',
      { ports: [{ port: 80, targetPort: 'http--web' }] },
      'spec.ports[0].targetPort',
      '"http--web" is neither a port number nor a port name',
    ],
    ['named targetPort has a letter', { ports: [{ port: 80, targetPort: '8080' }] }, 'spec.ports[0].targetPort', '"8080" is neither'],
    [
      'named targetPort is at most 15 characters',
      { ports: [{ port: 80, targetPort: 'a-very-long-name' }] },
      'spec.ports[0].targetPort',
      'IANA_SVC_NAME',
    ],
    [
      'nodePort needs NodePort or LoadBalancer',
      { ports: [{ port: 80, nodePort: 30080 }] },
      'spec.ports[0].nodePort',
      'may not be used when type is ClusterIP',
    ],
    [
      'clusterIP is inside a service range',
      { clusterIP: '10.200.0.1', ports: port80 },
      'spec.clusterIP',
      '10.200.0.1 is outside the service cluster IP ranges (10.96.0.0/12 from --service-cluster-ip-range)',
    ],
    [
      'headless is ClusterIP only',
      { type: 'NodePort', clusterIP: 'None', ports: port80 },
      'spec.clusterIP',
      'may not be "None" (headless) for NodePort Services',
    ],
    [
      'ipFamilies match the clusterIPs',
      { clusterIP: '10.96.0.5', ipFamilies: ['IPv6'], ports: port80 },
      'spec.ipFamilies[0]',
      'IPv6 does not match the family of spec.clusterIPs[0] (IPv4)',
    ],
    [
      'SingleStack has one family',
      { ipFamilyPolicy: 'SingleStack', ipFamilies: ['IPv4', 'IPv6'], ports: port80 },
      'spec.ipFamilyPolicy',
      'must be PreferDualStack or RequireDualStack',
    ],
    [
      'affinity timeout is 1..86400',
      { sessionAffinity: 'ClientIP', sessionAffinityConfig: { clientIP: { timeoutSeconds: 86401 } }, ports: port80 },
      'spec.sessionAffinityConfig.clientIP.timeoutSeconds',
      '86401 is out of range 1..86400',
    ],
    [
      'affinity config needs ClientIP',
      { sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } }, ports: port80 },
      'spec.sessionAffinityConfig',
      'must not be set when sessionAffinity is None',
    ],
    ['externalIPs are unicast', { externalIPs: ['127.0.0.1'], ports: port80 }, 'spec.externalIPs[0]', '127.0.0.1 is a loopback address'],
    [
      'loadBalancerSourceRanges need a LoadBalancer',
      { loadBalancerSourceRanges: ['10.0.0.0/8'], ports: port80 },
      'spec.loadBalancerSourceRanges',
      'may only be used when type is LoadBalancer',
    ],
    [
      'externalTrafficPolicy Local needs a way in from outside',
      { externalTrafficPolicy: 'Local', ports: port80 },
      'spec.externalTrafficPolicy',
      'may only be set for externally-accessible Services (NodePort, LoadBalancer, or with externalIPs)',
    ],
    [
      'ipFamilies are configured on the cluster',
      { ipFamilies: ['IPv6'], ports: port80 },
      'spec.ipFamilies[0]',
      'IPv6 is not configured on this cluster (service cluster IP ranges: 10.96.0.0/12 from --service-cluster-ip-range)',
    ],
    [
      'RequireDualStack needs a dual-stack cluster',
      { ipFamilyPolicy: 'RequireDualStack', ports: port80 },
      'spec.ipFamilyPolicy',
      'RequireDualStack needs a dual-stack cluster',
    ],
    [
      'nodePort is inside the NodePort range',
      { type: 'NodePort', ports: [{ port: 80, nodePort: 8080 }] },
      'spec.ports[0].nodePort',
      '8080 is outside the NodePort range 30000-32767 (--service-node-port-range)',
    ],
    [
      'nodePort is inside the NodePort range, also with allocateLoadBalancerNodePorts false',
      { type: 'LoadBalancer', allocateLoadBalancerNodePorts: false, ports: [{ port: 80, nodePort: 32768 }] },
      'spec.ports[0].nodePort',
      '32768 is outside the NodePort range 30000-32767',
    ],
    [
      'healthCheckNodePort is inside the NodePort range',
      { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 10256, ports: port80 },
      'spec.healthCheckNodePort',
      '10256 is outside the NodePort range 30000-32767',
    ],
    [
      'a nodePort is not the healthCheckNodePort',
      { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 30080, ports: [{ port: 80, nodePort: 30080 }] },
      'spec.healthCheckNodePort',
      '30080 is already used by spec.ports[0].nodePort',
    ],
  ];

  const serviceManifest = (input: object | [object, object]) => {
    const [spec, metadata] = Array.isArray(input) ? input : [input, { name: 'web' }];
    const { status, ...rest } = spec as { status?: true | string };
    const manifest: Record<string, unknown> = service(rest, metadata);
    if (status !== undefined) {
      const ingress = status === true ? { ip: '203.0.113.300' } : { ip: '203.0.113.10', ipMode: status };
      manifest.status = { loadBalancer: { ingress: [ingress] } };
    }
    return manifest;
  };
  const whereIn = (field: string) => (field.startsWith('Service ') ? field : `Service default/web: ${field}`);

  it.each(rules)('%s', (_rule, input, field, problem) => {
    expectError([serviceManifest(input)], whereIn(field), problem);
  });

  it.each(warningRules)('%s (a warning)', (_rule, input, field, problem) => {
    expectWarning([serviceManifest(input)], whereIn(field), problem);
  });

  it('takes the NodePort range from the options', () => {
    expectWarning(
      [service({ type: 'NodePort', ports: [{ port: 80, nodePort: 30080 }] })],
      'Service default/web: spec.ports[0].nodePort',
      '30080 is outside the NodePort range 20000-20999',
      { serviceNodePortRange: [20000, 20999] },
    );
    const file = writeManifest([service({ type: 'NodePort', ports: [{ port: 80, nodePort: 20080 }] })]);
    expect(load([file], { serviceNodePortRange: [20000, 20999] }).services[0].ports[0].nodePort).toBe(20080);
  });

  it('rejects a nodePort and protocol of another Service, naming both: the datapath could not tell them apart', () => {
    const first = writeManifest([
      service(
        { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'TCP', nodePort: 30053 }] },
        { name: 'dns', namespace: 'infra' },
      ),
    ]);
    const second = writeManifest([
      service(
        {
          type: 'LoadBalancer',
          ports: [
            { name: 'a', port: 80 },
            { name: 'b', port: 53, nodePort: 30053 },
          ],
        },
        { name: 'web' },
      ),
    ]);
    expect(loadError([first, second]).message).toBe(
      `${second}: Service default/web: spec.ports[1].nodePort: 30053 is already allocated to ` +
        `Service infra/dns (${first}: spec.ports[0].nodePort); a NodePort belongs to one Service whatever the protocol`,
    );
  });

  it('warns of a nodePort of another Service with another protocol, and serves each to its own Service', () => {
    const first = writeManifest([
      service(
        { type: 'NodePort', ports: [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }] },
        { name: 'dns', namespace: 'infra' },
      ),
    ]);
    const second = writeManifest([
      service(
        {
          type: 'LoadBalancer',
          ports: [
            { name: 'a', port: 80 },
            { name: 'b', port: 53, nodePort: 30053 },
          ],
        },
        { name: 'web' },
      ),
    ]);
    const message =
      `${second}: Service default/web: spec.ports[1].nodePort: 30053 is already allocated to ` +
      `Service infra/dns (${first}: spec.ports[0].nodePort); a NodePort belongs to one Service whatever the protocol; ` +
      'the datapath serves each protocol to its own Service';
    const state = load([first, second]);
    expect(state.warnings).toEqual([message]);
    expect(state.services.map((s) => s.ports.map((p) => p.nodePort))).toEqual([[30053], [expect.any(Number), 30053]]);
    expect(loadError([first, second], { strict: true }).message).toBe(message);
  });

  it('warns of a healthCheckNodePort used by another Service: no datapath port', () => {
    const file = writeManifest([
      service(
        { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 31000, ports: [{ port: 80, nodePort: 30080 }] },
        { name: 'a' },
      ),
      service({ type: 'NodePort', ports: [{ port: 80, nodePort: 31000 }] }, { name: 'b' }),
      service(
        { type: 'LoadBalancer', externalTrafficPolicy: 'Local', healthCheckNodePort: 31000, ports: [{ port: 80, nodePort: 30081 }] },
        { name: 'c' },
      ),
    ]);
    const instead = "nothing in the datapath listens on it (only the load balancer's health checks use it), so it changes nothing";
    expect(load([file]).warnings).toEqual([
      `${file}: Service default/b: spec.ports[0].nodePort: 31000 is already allocated to ` +
        `Service default/a (${file}: spec.healthCheckNodePort); a NodePort belongs to one Service whatever the protocol; ${instead}`,
      `${file}: Service default/c: spec.healthCheckNodePort: 31000 is already allocated to ` +
        `Service default/a (${file}: spec.healthCheckNodePort); a NodePort belongs to one Service whatever the protocol; ${instead}`,
    ]);
  });

  it('rejects one cluster IP on two Services, naming both', () => {
    const file = writeManifest([
      service({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }, { name: 'a' }),
      service({ clusterIP: '10.96.0.10', ports: [{ port: 81 }] }, { name: 'b' }),
    ]);
    expect(loadError([file]).message).toBe(
      `${file}: Service default/b: spec.clusterIPs[0]: 10.96.0.10 is already the cluster IP of ` +
        `Service default/a (${file}: spec.clusterIPs[0]); a cluster IP belongs to one Service`,
    );
  });

  it('shares a nodePort between two ports of one Service when their protocols differ', () => {
    const file = writeManifest([
      service({
        type: 'NodePort',
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 },
          { name: 'dns-tcp', port: 53, protocol: 'TCP', nodePort: 30053 },
        ],
      }),
    ]);
    expect(load([file]).services[0].ports.map((p) => p.nodePort)).toEqual([30053, 30053]);
  });

  it('keeps a given nodePort of a LoadBalancer that allocates none, and allocates no other', () => {
    const file = writeManifest([
      service({
        type: 'LoadBalancer',
        allocateLoadBalancerNodePorts: false,
        clusterIP: '10.96.0.5',
        ports: [
          { name: 'http', port: 80, nodePort: 30080 },
          { name: 'https', port: 443 },
        ],
      }),
    ]);
    const state = load([file]);
    expect(state.services[0].ports.map((p) => p.nodePort)).toEqual([30080, undefined]);
    expect(state.notes).toEqual([]);
  });

  it('rejects two service cluster IP ranges of one family, and a bad NodePort range', () => {
    const file = writeManifest([service({ ports: [{ port: 80 }] })]);
    expect(loadError([file], { serviceClusterIPRanges: ['10.96.0.0/12', '10.112.0.0/12'] }).message).toBe(
      'serviceClusterIPRanges[1]: must be of a different IP family than 10.96.0.0/12',
    );
    expect(loadError([file], { serviceNodePortRange: [32767, 30000] }).message).toBe(
      'serviceNodePortRange: 32767-30000 is not a port range within 1-65535',
    );
  });

  it('allows headless and ExternalName Services without ports', () => {
    const file = writeManifest([
      service({ clusterIP: 'None', selector: { app: 'db' } }, { name: 'db' }),
      service({ type: 'ExternalName', externalName: 'db.example.com.' }, { name: 'ext' }),
    ]);
    const [db, ext] = load([file]).services;
    expect(db).toMatchObject({ clusterIPs: ['None'], ipFamilies: ['IPv4'], ports: [] });
    expect(ext).toMatchObject({ type: 'ExternalName', externalName: 'db.example.com.', clusterIPs: [], ipFamilies: [], ports: [] });
  });

  it("defaults the family of a Service without a cluster IP to the primary service range's, and allocates one there", () => {
    const file = writeManifest([service({ ports: [{ port: 80 }] })]);
    const state = load([file], { serviceClusterIPRanges: ['fd00:10:96::/112', '10.96.0.0/12'] });
    const [web] = state.services;
    expect(web.ipFamilies).toEqual(['IPv6']);
    expect(web.clusterIPs).toHaveLength(1);
    expect(web.clusterIPs[0]).toMatch(/^fd00:10:96::[0-9a-f]{1,4}$/);
    expect(state.notes).toEqual([`allocated clusterIP ${web.clusterIPs[0]} to Service default/web`]);
  });

  it('gives a PreferDualStack Service on a dual-stack cluster both families, and a cluster IP of the second', () => {
    const file = writeManifest([service({ clusterIP: '10.96.0.5', ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] })]);
    const [web] = load([file], { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] }).services;
    expect(web.ipFamilies).toEqual(['IPv4', 'IPv6']);
    expect(web.clusterIPs[0]).toBe('10.96.0.5');
    expect(web.clusterIPs[1]).toMatch(/^fd00:10:96::[0-9a-f]{1,4}$/);
  });

  it('completes spec.ipFamilies from the cluster IPs', () => {
    const file = writeManifest([
      service({
        clusterIPs: ['10.96.0.5', 'fd00:10:96::5'],
        ipFamilies: ['IPv4'],
        ipFamilyPolicy: 'PreferDualStack',
        ports: [{ port: 80 }],
      }),
    ]);
    const state = load([file], { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] });
    expect(state.services[0]).toMatchObject({ clusterIPs: ['10.96.0.5', 'fd00:10:96::5'], ipFamilies: ['IPv4', 'IPv6'] });
    expect(state.notes).toEqual([]);
  });

  it('keeps PreferDualStack single-stack on a single-stack cluster', () => {
    const file = writeManifest([service({ clusterIP: '10.96.0.5', ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] })]);
    expect(load([file]).services[0]).toMatchObject({ clusterIPs: ['10.96.0.5'], ipFamilies: ['IPv4'] });
  });

  it('accepts dual-stack cluster IPs inside the given ranges, in canonical form', () => {
    const file = writeManifest([service({ clusterIPs: ['10.96.0.5', 'FD00:10:96::0005'], ports: [{ port: 80 }] })]);
    const [web] = load([file], { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] }).services;
    expect(web).toMatchObject({ clusterIPs: ['10.96.0.5', 'fd00:10:96::5'], ipFamilies: ['IPv4', 'IPv6'] });
  });

  it('trims loadBalancerSourceRanges and defaults the ingress ipMode', () => {
    const manifest = {
      ...service({ type: 'LoadBalancer', loadBalancerSourceRanges: [' 10.0.0.0/8 ', '192.168.1.7/24'], ports: [{ port: 80 }] }),
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.10' }, { hostname: 'lb.example.com' }] } },
    };
    const [web] = load([writeManifest([manifest])]).services;
    expect(web.loadBalancerSourceRanges).toEqual(['10.0.0.0/8', '192.168.1.0/24']);
    expect(web.loadBalancerIngress).toEqual([
      { ip: '203.0.113.10', hostname: undefined, ipMode: 'VIP' },
      { ip: undefined, hostname: 'lb.example.com', ipMode: undefined },
    ]);
  });
});

describe('EndpointSlice validation', () => {
  const ready = (address: string) => ({ addresses: [address] });
  const rules: Array<[string, object, string, string]> = [
    ['addressType is required', { addressType: null }, 'addressType', 'required: one of IPv4, IPv6, FQDN'],
    ['addressType is IPv4, IPv6 or FQDN', { addressType: 'IPv5' }, 'addressType', '"IPv5" is not one of IPv4, IPv6, FQDN'],
    [
      'an endpoint has at least one address',
      { endpoints: [{ addresses: [] }] },
      'endpoints[0].addresses',
      'must have 1 to 100 entries, has 0',
    ],
    [
      'addresses are IPs',
      { endpoints: [ready('10.1.0.1'), ready('pod-1')] },
      'endpoints[1].addresses[0]',
      '"pod-1" is not a valid IP address',
    ],
    [
      'addresses are of the addressType',
      { endpoints: [ready('fd00::1')] },
      'endpoints[0].addresses[0]',
      'fd00::1 is an IPv6 address in a slice of addressType IPv4',
    ],
    [
      'conditions are booleans',
      { endpoints: [{ addresses: ['10.1.0.1'], conditions: { ready: 'yes' } }] },
      'endpoints[0].conditions.ready',
      'must be true or false, got "yes"',
    ],
    [
      'port names are unique',
      {
        ports: [
          { name: 'http', port: 80 },
          { name: 'http', port: 81 },
        ],
      },
      'ports[1].name',
      'name "http" is already used by ports[0]',
    ],
    [
      'port protocol is TCP, UDP or SCTP',
      { ports: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
      'ports[0].protocol',
      '"HTTP" is not one of TCP, UDP, SCTP',
    ],
    ['port number is 1..65535', { ports: [{ name: 'http', port: 0 }] }, 'ports[0].port', '0 is out of range 1..65535'],
  ];
  const warningRules: Array<[string, object, string, string]> = [
    [
      'name is a DNS-1123 subdomain',
      { metadataName: 'Web_1' },
      'EndpointSlice default/Web_1: metadata.name',
      'is not a DNS-1123 subdomain',
    ],
    [
      'an endpoint has at most 100 addresses',
      { endpoints: [{ addresses: Array.from({ length: 101 }, (_, i) => `10.1.0.${i + 1}`) }] },
      'endpoints[0].addresses',
      'must have 1 to 100 entries, has 101',
    ],
    ['addresses are not loopback', { endpoints: [ready('127.0.0.1')] }, 'endpoints[0].addresses[0]', '127.0.0.1 is a loopback address'],
    [
      'addresses are not IPv6 loopback',
      { addressType: 'IPv6', endpoints: [ready('::1')] },
      'endpoints[0].addresses[0]',
      '::1 is a loopback address',
    ],
    [
      'addresses are not link-local',
      { endpoints: [ready('169.254.169.254')] },
      'endpoints[0].addresses[0]',
      '169.254.169.254 is a link-local address',
    ],
    [
      'addresses are not IPv6 link-local',
      { addressType: 'IPv6', endpoints: [ready('fe80::1')] },
      'endpoints[0].addresses[0]',
      'fe80::1 is a link-local address',
    ],
    [
      'addresses are not link-local multicast',
      { endpoints: [ready('224.0.0.251')] },
      'endpoints[0].addresses[0]',
      '224.0.0.251 is a multicast address',
    ],
    [
      'addresses are not IPv6 link-local multicast',
      { addressType: 'IPv6', endpoints: [ready('ff02::1')] },
      'endpoints[0].addresses[0]',
      'ff02::1 is a multicast address',
    ],
    ['addresses are not multicast', { endpoints: [ready('239.1.2.3')] }, 'endpoints[0].addresses[0]', '239.1.2.3 is a multicast address'],
    ['addresses are not unspecified', { endpoints: [ready('0.0.0.0')] }, 'endpoints[0].addresses[0]', '0.0.0.0 is an unspecified address'],
    [
      'addresses are not IPv6 unspecified',
      { addressType: 'IPv6', endpoints: [ready('::')] },
      'endpoints[0].addresses[0]',
      ':: is an unspecified address',
    ],
    ['port name is a DNS-1123 label', { ports: [{ name: 'HTTP', port: 80 }] }, 'ports[0].name', '"HTTP" is not a DNS-1123 label'],
  ];

  const sliceOf = (input: object) => {
    const { metadataName, ...fields } = input as { metadataName?: string };
    return slice(fields, metadataName ? { name: metadataName } : {});
  };
  const whereIn = (field: string) => (field.startsWith('EndpointSlice ') ? field : `EndpointSlice default/web-abc12: ${field}`);

  it.each(rules)('%s', (_rule, input, field, problem) => {
    expectError([sliceOf(input)], whereIn(field), problem);
  });

  it.each(warningRules)('%s (a warning)', (_rule, input, field, problem) => {
    expectWarning([sliceOf(input)], whereIn(field), problem);
  });

  it('skips a slice without the service-name label, with a note naming it', () => {
    const file = writeManifest([slice({}, { name: 'orphan', labels: { app: 'web' } })]);
    const state = load([file]);
    expect(state.endpointSlices).toEqual([]);
    expect(state.notes).toEqual([
      `${file}: EndpointSlice default/orphan: skipped: no kubernetes.io/service-name label, so it belongs to no Service`,
    ]);
  });

  it('defaults port protocol and name, and reads "endpoints: null"', () => {
    const file = writeManifest([slice({ endpoints: null, ports: [{ port: 8080, appProtocol: 'http' }] })]);
    expect(load([file]).endpointSlices[0]).toMatchObject({
      endpoints: [],
      ports: [{ name: '', protocol: 'TCP', port: 8080, appProtocol: 'http' }],
    });
  });

  it('keeps serving when given and follows ready when not', () => {
    const file = writeManifest([
      slice({
        endpoints: [
          { addresses: ['10.1.0.1'], conditions: { ready: false } },
          { addresses: ['10.1.0.2'], conditions: { ready: false, serving: true, terminating: true } },
        ],
      }),
    ]);
    expect(load([file]).endpointSlices[0].endpoints.map((e) => e.conditions)).toEqual([
      { ready: false, serving: false, terminating: false },
      { ready: false, serving: true, terminating: true },
    ]);
  });
});

describe('Endpoints validation', () => {
  const subset = (fields: object) => ({ addresses: [{ ip: '10.244.0.5' }], ports: [{ port: 8080 }], ...fields });
  const rules: Array<[string, object[] | null, string, string]> = [
    ['ip is required', [subset({ addresses: [{ hostname: 'pg-0' }] })], 'subsets[0].addresses[0].ip', 'required'],
    [
      'ip is an IP',
      [subset({ addresses: [{ ip: '10.244.0.300' }] })],
      'subsets[0].addresses[0].ip',
      '"10.244.0.300" is not a valid IP address',
    ],
    ['port is required', [subset({ ports: [{ name: 'http' }] })], 'subsets[0].ports[0].port', 'required'],
    ['port is 1..65535', [subset({ ports: [{ port: 65536 }] })], 'subsets[0].ports[0].port', '65536 is out of range 1..65535'],
    [
      'port protocol is TCP, UDP or SCTP',
      [subset({ ports: [{ port: 80, protocol: 'ICMP' }] })],
      'subsets[0].ports[0].protocol',
      '"ICMP" is not one of TCP, UDP, SCTP',
    ],
  ];
  const warningRules: Array<[string, object[] | null, string, string]> = [
    ['a subset has addresses', [{ ports: [{ port: 8080 }] }], 'subsets[0]', 'must have addresses or notReadyAddresses'],
    [
      'ip is not loopback',
      [subset({ notReadyAddresses: [{ ip: '127.0.0.1' }] })],
      'subsets[0].notReadyAddresses[0].ip',
      '127.0.0.1 is a loopback address',
    ],
    [
      'ip is not link-local',
      [subset({}), subset({ addresses: [{ ip: 'fe80::1' }] })],
      'subsets[1].addresses[0].ip',
      'fe80::1 is a link-local address',
    ],
    [
      'ip is not multicast',
      [subset({ addresses: [{ ip: '224.0.0.251' }] })],
      'subsets[0].addresses[0].ip',
      '224.0.0.251 is a multicast address',
    ],
    [
      'ip is not unspecified',
      [subset({ addresses: [{ ip: '0.0.0.0' }] })],
      'subsets[0].addresses[0].ip',
      '0.0.0.0 is an unspecified address',
    ],
    [
      'hostname is a DNS-1123 label',
      [subset({ addresses: [{ ip: '10.244.0.5', hostname: 'pg.0' }] })],
      'subsets[0].addresses[0].hostname',
      '"pg.0" is not a DNS-1123 label',
    ],
    [
      'nodeName is a DNS-1123 subdomain',
      [subset({ addresses: [{ ip: '10.244.0.5', nodeName: 'Worker_1' }] })],
      'subsets[0].addresses[0].nodeName',
      'is not a DNS-1123 subdomain',
    ],
    [
      'port name is required with several ports',
      [subset({ ports: [{ name: 'http', port: 80 }, { port: 81 }] })],
      'subsets[0].ports[1].name',
      'required when the subset has more than one port',
    ],
    [
      'port name is a DNS-1123 label',
      [subset({ ports: [{ name: 'HTTP', port: 80 }] })],
      'subsets[0].ports[0].name',
      '"HTTP" is not a DNS-1123 label',
    ],
  ];

  it.each(rules)('%s', (_rule, subsets, field, problem) => {
    expectError([legacyEndpoints(subsets)], `Endpoints default/web: ${field}`, problem);
  });

  it.each(warningRules)('%s (a warning)', (_rule, subsets, field, problem) => {
    expectWarning([legacyEndpoints(subsets)], `Endpoints default/web: ${field}`, problem);
  });

  it('wants a DNS-1123 subdomain name, and requires apiVersion v1', () => {
    expectWarning([legacyEndpoints(null, { name: 'Web_1' })], 'Endpoints default/Web_1: metadata.name', 'is not a DNS-1123 subdomain');
    expectError(
      [{ ...legacyEndpoints(null), apiVersion: 'discovery.k8s.io/v1' }],
      'Endpoints default/web: apiVersion',
      'Endpoints must be v1',
    );
  });

  it('reads addresses, defaults and "subsets: null"', () => {
    const file = writeManifest([
      legacyEndpoints([
        {
          addresses: [{ ip: '10.244.0.5', nodeName: 'worker-1', hostname: 'web-0' }],
          notReadyAddresses: [{ ip: 'FD00::0006' }],
          ports: [{ port: 8080 }],
        },
      ]),
      legacyEndpoints(null, { name: 'empty', namespace: 'shop' }),
    ]);
    const state = load([file]);
    expect(state.legacyEndpoints).toEqual([
      {
        origin: { file, object: 'Endpoints default/web' },
        namespace: 'default',
        name: 'web',
        subsets: [
          {
            addresses: [{ ip: '10.244.0.5', nodeName: 'worker-1', hostname: 'web-0' }],
            notReadyAddresses: [{ ip: 'fd00::6', nodeName: undefined, hostname: undefined }],
            ports: [{ name: '', protocol: 'TCP', port: 8080, appProtocol: undefined }],
          },
        ],
      },
      { origin: { file, object: 'Endpoints shop/empty' }, namespace: 'shop', name: 'empty', subsets: [] },
    ]);
    expect(state.notes).toEqual([]);
  });

  it('rejects a duplicate Endpoints object', () => {
    const file = writeManifest([legacyEndpoints(null), legacyEndpoints(null)]);
    expect(loadError([file]).message).toBe(`${file}: Endpoints default/web: defined twice; the first is in ${file} (document 1)`);
  });
});

describe('endpoint addresses that are cluster IPs (the API server refuses them; the datapath sends to them)', () => {
  const web = service(
    { clusterIPs: ['10.96.0.10', 'fd00:10:96::10'], ipFamilyPolicy: 'PreferDualStack', ports: [{ port: 80 }] },
    { name: 'web', namespace: 'shop' },
  );
  const dualStack = { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] };

  it('are warned of in an EndpointSlice, naming the Service', () => {
    const manifest = slice(
      { endpoints: [{ addresses: ['10.244.0.5'] }, { addresses: ['10.244.0.6'] }, { addresses: ['10.96.0.10'] }] },
      { name: 'api-1' },
    );
    expectWarning(
      [manifest, web],
      'EndpointSlice default/api-1: endpoints[2].addresses[0]',
      "10.96.0.10 is the cluster IP of Service shop/web; an endpoint must not be a Service's cluster IP",
      dualStack,
    );
  });

  it('are warned of in an Endpoints object, ready or not, in any family', () => {
    expectWarning(
      [web, legacyEndpoints([{ addresses: [{ ip: '10.244.0.5' }], notReadyAddresses: [{ ip: 'fd00:10:96::10' }] }])],
      'Endpoints default/web: subsets[0].notReadyAddresses[0].ip',
      'fd00:10:96::10 is the cluster IP of Service shop/web',
      dualStack,
    );
  });

  it('are never allocated to a Service', () => {
    // A /29 has six usable addresses; five are endpoints, so the Service can only get the sixth.
    const endpoints = ['10.96.0.1', '10.96.0.2', '10.96.0.3', '10.96.0.5', '10.96.0.6'];
    const file = writeManifest([service({ ports: [{ port: 80 }] }), slice({ endpoints: endpoints.map((ip) => ({ addresses: [ip] })) })]);
    expect(load([file], { serviceClusterIPRanges: ['10.96.0.0/29'] }).services[0].clusterIPs).toEqual(['10.96.0.4']);
  });
});

describe('legacy Endpoints', () => {
  const file = join(fixtures, 'legacy-endpoints.yaml');
  const state = load([file]);
  const resolution = resolveServices(state);

  it('stand in for the EndpointSlices of a Service that has none, mirrored: ready addresses ready and serving, the others neither', () => {
    expect(backends(resolved(state, 'data', 'pg'))).toEqual({
      // 192.0.2.12 is ready in the second subset, which wins over its not-ready entry in the first.
      'pg 5432/TCP': ['192.0.2.10:15432 yyn', '192.0.2.11:15432 yyn', '192.0.2.12:15432 yyn'],
      'metrics 9187/TCP': ['192.0.2.10:9187 yyn', '192.0.2.11:9187 yyn', '192.0.2.12:9187 nnn'],
    });
    expect(resolved(state, 'data', 'pg').ports[0].endpoints[0].nodeName).toBe('worker-1');
  });

  it('are ignored when the Service has EndpointSlices', () => {
    expect(backends(resolved(state, 'data', 'web'))).toEqual({ '- 80/TCP': ['10.244.1.5:8080 yyn'] });
  });

  it('say what they could not contribute', () => {
    expect(resolution.notes).toEqual([
      `${file}: Endpoints kube-system/kube-scheduler: ignored: its Service kube-system/kube-scheduler does not exist`,
      `${file}: Endpoints data/pg: its IPv6 addresses are ignored: IPv6 is not among the IP families of Service data/pg (IPv4)`,
    ]);
  });

  describe('over the capacity of 1000 addresses', () => {
    const ips = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => ({ ip: `${prefix}.${i >> 8}.${i & 255}` }));
    const loadSubsets = (subsets: object[]) => {
      const path = writeManifest([service({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }), legacyEndpoints(subsets)]);
      const {
        services: [web],
        notes,
      } = resolveServices(load([path]));
      const endpoints = web.ports[0].endpoints;
      return { path, notes, ready: endpoints.filter((e) => e.conditions.ready), notReady: endpoints.filter((e) => !e.conditions.ready) };
    };

    it('keep the first 1000, ready ones first across subsets, with a note naming the annotation', () => {
      const { path, notes, ready, notReady } = loadSubsets([
        { notReadyAddresses: ips('10.1', 300), addresses: ips('10.2', 400), ports: [{ port: 80 }] },
        { addresses: ips('10.3', 700), ports: [{ port: 80 }] },
      ]);
      expect(ready).toHaveLength(1000);
      expect(notReady).toHaveLength(0);
      expect(ready[0].ip).toBe('10.2.0.0');
      expect(ready[399].ip).toBe('10.2.1.143');
      expect(ready[400].ip).toBe('10.3.0.0');
      expect(ready[999].ip).toBe('10.3.2.87'); // the 600th of the second subset
      expect(notes).toEqual([
        `${path}: Endpoints default/web: 1400 addresses exceed the capacity of 1000 ` +
          '(the API marks it endpoints.kubernetes.io/over-capacity: truncated): only the first 1000, ready ones first, are used; 400 dropped',
      ]);
    });

    it('fill what the ready ones leave with not-ready ones', () => {
      const { notes, ready, notReady } = loadSubsets([
        { addresses: ips('10.2', 900), notReadyAddresses: ips('10.1', 300), ports: [{ port: 80 }] },
      ]);
      expect(ready).toHaveLength(900);
      expect(notReady.map((e) => e.ip)).toEqual(ips('10.1', 100).map((a) => a.ip));
      expect(notes).toHaveLength(1);
    });

    it('are all used at exactly 1000, without a note', () => {
      const { notes, ready, notReady } = loadSubsets([
        { addresses: ips('10.2', 600), notReadyAddresses: ips('10.1', 400), ports: [{ port: 80 }] },
      ]);
      expect([ready.length, notReady.length, notes]).toEqual([600, 400, []]);
    });
  });
});

describe('Node validation', () => {
  const node = (metadata: object, addresses: object[]) => ({ apiVersion: 'v1', kind: 'Node', metadata, status: { addresses } });

  it('requires a name', () => {
    expectError([node({}, [])], 'document 1: metadata.name', 'required');
  });

  it('requires InternalIP and ExternalIP addresses to be IPs', () => {
    expectError(
      [
        node({ name: 'worker-1' }, [
          { type: 'Hostname', address: 'worker-1' },
          { type: 'InternalIP', address: 'worker-1' },
        ]),
      ],
      'Node worker-1: status.addresses[1].address',
      '"worker-1" is not a valid IP address',
    );
  });
});

describe('KubeProxyConfiguration validation', () => {
  const rules: Array<[string, object, string, string]> = [
    ['clusterCIDR holds CIDRs', { clusterCIDR: '10.244.0.0/16,10.245.0.0' }, 'clusterCIDR', '"10.245.0.0" is not a valid CIDR'],
    [
      'nodePortAddresses are CIDRs',
      { nodePortAddresses: ['172.18.0.0/33'] },
      'nodePortAddresses[0]',
      '"172.18.0.0/33" is not a valid CIDR',
    ],
    [
      '"primary" stands alone',
      { nodePortAddresses: ['10.0.0.0/8', 'primary'] },
      'nodePortAddresses[1]',
      '"primary" cannot be combined with CIDRs',
    ],
    ['timeouts are Go durations', { conntrack: { udpTimeout: '30 seconds' } }, 'conntrack.udpTimeout', 'must be a duration like "24h0m0s"'],
    ['timeouts are strings', { conntrack: { tcpEstablishedTimeout: 86400 } }, 'conntrack.tcpEstablishedTimeout', 'got 86400'],
    ['timeouts are not negative', { conntrack: { tcpCloseWaitTimeout: '-1h' } }, 'conntrack.tcpCloseWaitTimeout', 'must not be negative'],
    [
      'timeouts are whole seconds or more',
      { conntrack: { udpStreamTimeout: '500ms' } },
      'conntrack.udpStreamTimeout',
      'less than a second',
    ],
  ];

  it.each(rules)('%s', (_rule, fields, field, problem) => {
    expectError([proxyConfig(fields)], `document 1: ${field}`, problem);
  });

  it('reads durations with several units', () => {
    const file = writeManifest([
      proxyConfig({
        clusterCIDR: '',
        nodePortAddresses: ['primary'],
        conntrack: { tcpEstablishedTimeout: '1h30m', tcpCloseWaitTimeout: '90s', udpTimeout: '1.5m', udpStreamTimeout: '0' },
      }),
    ]);
    expect(load([file]).proxyConfig).toMatchObject({
      clusterCIDRs: [],
      nodePortAddresses: ['primary'],
      conntrack: { tcpEstablishedTimeout: 5400, tcpCloseWaitTimeout: 90, udpTimeout: 90, udpStreamTimeout: undefined },
    });
  });
});

describe('frontends claimed twice', () => {
  it('reject an external IP, port and protocol of two Services, naming both: the datapath could not tell them apart', () => {
    const file = writeManifest([
      service({ clusterIP: '10.96.0.10', externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] }, { name: 'a' }),
      service({ clusterIP: '10.96.0.11', externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] }, { name: 'b' }),
    ]);
    expect(loadError([file]).message).toBe(
      `${file}: Service default/b: spec.externalIPs[0]: 192.0.2.1 port 80/TCP is already a frontend ` +
        `of Service default/a (${file}: spec.externalIPs[0]); the datapath could not tell which Service a packet to it is for`,
    );
  });

  it("reject another Service's cluster IP as an external or load-balancer IP on the same port", () => {
    const lb = {
      ...service({ type: 'LoadBalancer', clusterIP: '10.96.0.11', ports: [{ port: 80 }] }, { name: 'b' }),
      status: { loadBalancer: { ingress: [{ ip: '10.96.0.10' }] } },
    };
    const file = writeManifest([service({ clusterIP: '10.96.0.10', ports: [{ port: 80 }] }, { name: 'a' }), lb]);
    expect(loadError([file]).message).toBe(
      `${file}: Service default/b: status.loadBalancer.ingress[0].ip: 10.96.0.10 port 80/TCP is already ` +
        `a frontend of Service default/a (${file}: spec.clusterIPs[0]); the datapath could not tell which Service a packet to it is for`,
    );
  });

  it('allow one address on other ports or protocols, as MetalLB shares an IP', () => {
    const shared = (name: string, port: number, protocol: string, clusterIP: string) => ({
      ...service({ type: 'LoadBalancer', clusterIP, ports: [{ port, protocol }] }, { name }),
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } },
    });
    const file = writeManifest([
      shared('dns', 53, 'UDP', '10.96.0.20'),
      shared('dns-tcp', 53, 'TCP', '10.96.0.21'),
      shared('web', 80, 'TCP', '10.96.0.22'),
    ]);
    expect(load([file]).warnings).toEqual([]);
  });

  it('warn of one Service naming an address twice, which the datapath serves once', () => {
    const manifest = {
      ...service({ type: 'LoadBalancer', clusterIP: '10.96.0.10', externalIPs: ['203.0.113.7'], ports: [{ port: 80 }] }),
      status: { loadBalancer: { ingress: [{ ip: '203.0.113.7' }] } },
    };
    const warning = expectWarning(
      [manifest],
      'Service default/web: status.loadBalancer.ingress[0].ip',
      '203.0.113.7 is already a frontend of this Service (spec.externalIPs[0])',
    );
    expect(warning).toMatch(/; the datapath serves it once$/);
    const [web] = load([writeManifest([manifest])]).services;
    expect([web.externalIPs, web.loadBalancerIngress]).toEqual([['203.0.113.7'], []]);
  });
});

describe('ServiceCIDR and IPAddress validation', () => {
  const serviceCIDR = (spec: object, metadata: object = { name: 'extra' }, apiVersion = 'networking.k8s.io/v1') => ({
    apiVersion,
    kind: 'ServiceCIDR',
    metadata,
    spec,
  });
  const ipAddress = (name: string, spec: object) => ({
    apiVersion: 'networking.k8s.io/v1beta1',
    kind: 'IPAddress',
    metadata: { name },
    spec,
  });
  const ref = { parentRef: { group: '', resource: 'services', namespace: 'default', name: 'web' } };

  it('reject what does not parse, and a wrong apiVersion', () => {
    expectError([serviceCIDR({ cidrs: ['10.96.0.0/33'] })], 'ServiceCIDR extra: spec.cidrs[0]', '"10.96.0.0/33" is not a valid CIDR');
    expectError(
      [serviceCIDR({ cidrs: ['10.96.0.0/16'] }, { name: 'extra' }, 'networking.k8s.io/v1alpha1')],
      'ServiceCIDR extra: apiVersion',
      'ServiceCIDR must be networking.k8s.io/v1 or networking.k8s.io/v1beta1, got "networking.k8s.io/v1alpha1"',
    );
    expectError([ipAddress('web', ref)], 'IPAddress web: metadata.name', '"web" is not a valid IP address');
  });

  it('warn of what the API server refuses but still names a range or an address', () => {
    expectWarning(
      [serviceCIDR({ cidrs: ['10.96.1.0/16'] })],
      'ServiceCIDR extra: spec.cidrs[0]',
      '"10.96.1.0/16" is not in canonical form',
    );
    expectWarning(
      [serviceCIDR({ cidrs: ['10.96.0.0/16', '10.100.0.0/16'] })],
      'ServiceCIDR extra: spec.cidrs[1]',
      'must be of a different IP family than 10.96.0.0/16',
    );
    expectWarning([serviceCIDR({})], 'ServiceCIDR extra: spec.cidrs', 'required: one CIDR per IP family');
    expectWarning(
      [serviceCIDR({ cidrs: ['10.96.0.0/16'] }, { name: 'Extra' })],
      'ServiceCIDR Extra: metadata.name',
      'is not a DNS-1123 subdomain',
    );
    expectWarning(
      [ipAddress('fd00:10:96::000a', ref)],
      'IPAddress fd00:10:96::000a: metadata.name',
      '"fd00:10:96::000a" is not in canonical form',
    );
    expectWarning([ipAddress('10.96.0.10', {})], 'IPAddress 10.96.0.10: spec.parentRef', 'required: resource and name');
  });

  it('make the ranges, the kubernetes one first whatever the order of the files', () => {
    const file = writeManifest([
      serviceCIDR({ cidrs: ['10.100.0.0/16'] }),
      serviceCIDR({ cidrs: ['10.96.0.0/16', 'fd00:10:96::/112'] }, { name: 'kubernetes' }),
    ]);
    expect(loadClusterState([file]).serviceRanges).toEqual({
      cidrs: ['10.96.0.0/16', '10.100.0.0/16', 'fd00:10:96::/112'],
      source: '10.96.0.0/16, fd00:10:96::/112 from ServiceCIDR kubernetes, 10.100.0.0/16 from ServiceCIDR extra',
      allocatable: ['10.96.0.0/16', '10.100.0.0/16', 'fd00:10:96::/112'],
    });
  });
});

describe('service cluster IP ranges unknown', () => {
  it("check no cluster IP against a range and no Service against the cluster's families, and say so once", () => {
    const file = writeManifest([
      service({ clusterIP: '10.0.0.11', ports: [{ port: 6379 }] }, { name: 'redis-primary' }),
      service({ clusterIPs: ['fd00:abcd::5'], ipFamilies: ['IPv6'], ports: [{ port: 80 }] }, { name: 'v6' }),
      service({ ipFamilyPolicy: 'RequireDualStack', ports: [{ port: 80 }] }, { name: 'dual' }),
    ]);
    const state = loadClusterState([file]);
    expect(state.warnings).toEqual([]);
    expect(state.services.map((s) => s.clusterIPs[0])).toEqual(['10.0.0.11', 'fd00:abcd::5', expect.stringMatching(/^10\./)]);
    expect(state.notes.filter((n) => n.startsWith('service cluster IP ranges unknown'))).toHaveLength(1);
  });
});

describe('typed lists', () => {
  it("give items their kind and the list's apiVersion, and keep an item's own", () => {
    const file = writeManifest([
      {
        apiVersion: 'discovery.k8s.io/v1',
        kind: 'EndpointSliceList',
        metadata: { resourceVersion: '7' },
        items: [
          {
            metadata: { name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' } },
            addressType: 'IPv4',
            endpoints: [{ addresses: ['10.244.0.5'], zone: 'zone-a' }],
          },
          {
            ...slice({}, { name: 'web-2' }),
            apiVersion: 'discovery.k8s.io/v1beta1',
            endpoints: [{ addresses: ['10.244.0.6'], topology: { 'kubernetes.io/hostname': 'node-b' } }],
          },
        ],
      },
    ]);
    const state = load([file]);
    expect(state.endpointSlices.map((s) => [s.name, s.endpoints[0].nodeName, s.endpoints[0].zone])).toEqual([
      ['web-1', undefined, 'zone-a'],
      ['web-2', 'node-b', undefined],
    ]);
  });
});

describe('what topology-aware routing reads', () => {
  const node = (labels: object, allocatable?: object) => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-a', labels },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.0.1' }], ...(allocatable && { allocatable }) },
  });

  it("reads the Service's traffic distribution and topology annotation, the newer annotation first", () => {
    const state = load([
      writeManifest([
        service({ ports: [{ port: 80 }], trafficDistribution: 'PreferClose' }, { name: 'web' }),
        service({ ports: [{ port: 80 }] }, { name: 'old', annotations: { 'service.kubernetes.io/topology-aware-hints': 'auto' } }),
        service(
          { ports: [{ port: 80 }] },
          {
            name: 'both',
            annotations: { 'service.kubernetes.io/topology-mode': 'Auto', 'service.kubernetes.io/topology-aware-hints': 'Disabled' },
          },
        ),
      ]),
    ]);
    const byName = Object.fromEntries(state.services.map((s) => [s.name, [s.trafficDistribution, s.topologyAnnotation]]));
    expect(byName).toEqual({ web: ['PreferClose', undefined], old: [undefined, 'auto'], both: [undefined, 'Auto'] });
  });

  it("reads endpoints' zone and node hints", () => {
    const state = load([
      writeManifest([
        service({ ports: [{ port: 80 }] }),
        slice({
          endpoints: [
            { addresses: ['10.244.0.1'], zone: 'a', hints: { forZones: [{ name: 'a' }, { name: 'b' }], forNodes: [{ name: 'node-a' }] } },
            { addresses: ['10.244.0.2'], zone: 'b' },
          ],
          ports: [{ port: 8080 }],
        }),
      ]),
    ]);
    expect(state.endpointSlices[0].endpoints.map((e) => e.hints)).toEqual([{ forZones: ['a', 'b'], forNodes: ['node-a'] }, undefined]);
  });

  it("reads the Node's zone label and allocatable CPU in millicores", () => {
    const cpu = (value: unknown) => load([writeManifest([node({}, { cpu: value })])]).nodes[0].allocatableMilliCPU;
    expect([cpu('4'), cpu('3920m'), cpu('1.5'), cpu(2)]).toEqual([4000, 3920, 1500, 2000]);
    expect(load([writeManifest([node({ 'topology.kubernetes.io/zone': 'us-east-1a' })])]).nodes[0]).toMatchObject({ zone: 'us-east-1a' });
    expect(load([writeManifest([node({})])]).nodes[0].zone).toBeUndefined();
    expectWarning([node({}, { cpu: '4 cores' })], 'Node node-a: status.allocatable.cpu', '"4 cores" is not a CPU quantity');
  });
});
