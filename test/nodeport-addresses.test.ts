// Which node addresses a NodePort is served on. kube-proxy's nftables mode
// defaults --nodeport-addresses to "primary" (cmd/kube-proxy/app/server_linux.go,
// platformApplyDefaults): the node IP of each family as GetNodeHostIPs picks it,
// the first InternalIP of the family, else its first ExternalIP. A CIDR list
// selects per family, and a family none of the CIDRs is of is served on all its
// addresses (pkg/proxy/util/nodeport_addresses.go, NewNodePortAddresses). The
// expected addresses below are those facts applied by hand to each node.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import { LINKTYPES } from '../control/compile/layout.js';
import type { Node, ProxyConfig } from '../control/cluster/state.js';
import { createPcapWriter } from '../traces/pcap.js';
import { cli, endpoints, ipOf, makeService, program, resolvedService, runFrames, stateOf, tcp } from './helpers.js';

const FIRST4 = '192.168.0.10';
const SECOND4 = '192.168.0.11';
const FIRST6 = 'fd00:168::10';
const SECOND6 = 'fd00:168::11';
const EXTERNAL4 = '203.0.113.10';
const EXTERNAL6 = '2001:db8:113::10';
const BACKEND4 = '10.244.2.5';
const BACKEND6 = 'fd00:244::5';
const CLIENT4 = '198.51.100.7';
const CLIENT6 = '2001:db8:51::7';
const NODE_PORT = 30080;

function node(addresses: Array<['InternalIP' | 'ExternalIP', string]>): Node {
  return {
    origin: { file: 'test', object: 'Node node-a' },
    name: 'node-a',
    addresses: addresses.map(([type, address]) => ({ type, address })),
  };
}

/** Both families' addresses, each with a second InternalIP and an ExternalIP, interleaved as a cloud lists them. */
const DUAL = node([
  ['ExternalIP', EXTERNAL4],
  ['InternalIP', FIRST4],
  ['ExternalIP', EXTERNAL6],
  ['InternalIP', SECOND4],
  ['InternalIP', FIRST6],
  ['InternalIP', SECOND6],
]);
const ALL = [FIRST4, SECOND4, FIRST6, SECOND6, EXTERNAL4, EXTERNAL6];

const SERVICE = makeService('default', 'web', '10.96.0.10', [{ name: 'http', port: 80, targetPort: 8080, nodePort: NODE_PORT }], {
  type: 'NodePort',
  clusterIPs: ['10.96.0.10', 'fd00:96::10'],
  ipFamilies: ['IPv4', 'IPv6'],
});
const RESOLVED = [
  resolvedService(SERVICE, [
    endpoints([
      [BACKEND4, 8080, 'node-b'],
      [BACKEND6, 8080, 'node-b'],
    ]),
  ]),
];

function nodePortsOf(n: Node, opts: { nodePortAddresses?: string[]; proxyConfig?: string[] } = {}): string[] {
  const state = stateOf(RESOLVED, [n]);
  if (opts.proxyConfig) {
    const proxyConfig: ProxyConfig = {
      origin: { file: 'test', object: 'KubeProxyConfiguration' },
      clusterCIDRs: [],
      nodePortAddresses: opts.proxyConfig,
      mode: 'nftables',
      conntrack: {},
    };
    state.proxyConfig = proxyConfig;
  }
  const compiled = compile(state, RESOLVED, {
    node: 'node-a',
    seed: 0,
    maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE,
    nodePortAddresses: opts.nodePortAddresses,
  });
  return compiled.services[0].frontends
    .filter((f) => f.kind === 'NodePort')
    .map((f) => f.address)
    .sort();
}

const sorted = (xs: string[]) => [...xs].sort();

describe('NodePort addresses', () => {
  it('default to the first InternalIP of each family: no second InternalIP, no ExternalIP', () => {
    expect(nodePortsOf(DUAL)).toEqual(sorted([FIRST4, FIRST6]));
    // An empty list is the default too: the nftables mode defaults any list of length 0.
    expect(nodePortsOf(DUAL, { nodePortAddresses: [] })).toEqual(sorted([FIRST4, FIRST6]));
    expect(nodePortsOf(DUAL, { nodePortAddresses: ['primary'] })).toEqual(sorted([FIRST4, FIRST6]));
  });

  it('default to the first InternalIP on a single-family node with two of them and an ExternalIP', () => {
    const n = node([
      ['InternalIP', FIRST4],
      ['InternalIP', SECOND4],
      ['ExternalIP', EXTERNAL4],
    ]);
    expect(nodePortsOf(n)).toEqual([FIRST4]);
  });

  it("take a family's first ExternalIP as its primary when it has no InternalIP, as kube-proxy's node IPs do", () => {
    const n = node([
      ['ExternalIP', EXTERNAL4],
      ['InternalIP', FIRST4],
      ['ExternalIP', EXTERNAL6],
    ]);
    expect(nodePortsOf(n)).toEqual(sorted([FIRST4, EXTERNAL6]));
  });

  it('serve every address of the node with 0.0.0.0/0 and ::/0, and all of a family no CIDR names', () => {
    expect(nodePortsOf(DUAL, { nodePortAddresses: ['0.0.0.0/0', '::/0'] })).toEqual(sorted(ALL));
    expect(nodePortsOf(DUAL, { nodePortAddresses: ['0.0.0.0/0'] })).toEqual(sorted(ALL));
    // Only IPv4 is narrowed: IPv6 is as if given ::/0.
    expect(nodePortsOf(DUAL, { nodePortAddresses: ['192.168.0.0/24'] })).toEqual(sorted([FIRST4, SECOND4, FIRST6, SECOND6, EXTERNAL6]));
    expect(nodePortsOf(DUAL, { nodePortAddresses: ['203.0.113.0/24', `${SECOND6}/128`] })).toEqual(sorted([EXTERNAL4, SECOND6]));
  });

  it("take the KubeProxyConfiguration's nodePortAddresses, and the flag over it", () => {
    expect(nodePortsOf(DUAL, { proxyConfig: ['0.0.0.0/0', '::/0'] })).toEqual(sorted(ALL));
    expect(nodePortsOf(DUAL, { proxyConfig: [] })).toEqual(sorted([FIRST4, FIRST6]));
    expect(nodePortsOf(DUAL, { proxyConfig: ['0.0.0.0/0', '::/0'], nodePortAddresses: ['primary'] })).toEqual(sorted([FIRST4, FIRST6]));
    expect(nodePortsOf(DUAL, { proxyConfig: ['primary'], nodePortAddresses: ['203.0.113.0/24', '2001:db8::/32'] })).toEqual(
      sorted([EXTERNAL4, EXTERNAL6]),
    );
  });

  it('in the datapath: a packet to the primary NodePort is DNATed to a backend, one to another address is no Service packet', async () => {
    const frames = [FIRST4, SECOND4, EXTERNAL4, FIRST6, SECOND6, EXTERNAL6].map((dst) =>
      tcp(dst.includes(':') ? CLIENT6 : CLIENT4, 40000, dst, NODE_PORT, ['SYN']),
    );
    const byDefault = await program(RESOLVED, { node: 'node-a', nodes: [DUAL] });
    const got = runFrames(byDefault.dp, frames);
    expect(got.map((r) => `${r.verdict} ${r.reason}`)).toEqual([
      'TX SERVICE',
      'PASS NO_SERVICE',
      'PASS NO_SERVICE',
      'TX SERVICE',
      'PASS NO_SERVICE',
      'PASS NO_SERVICE',
    ]);
    expect(ipOf(got[0].out).dst).toBe(BACKEND4);
    expect(ipOf(got[3].out).dst).toBe(BACKEND6);

    const everywhere = await program(RESOLVED, { node: 'node-a', nodes: [DUAL], nodePortAddresses: ['0.0.0.0/0', '::/0'] });
    const all = runFrames(everywhere.dp, frames);
    expect(all.map((r) => `${r.verdict} ${r.reason}`)).toEqual(Array(6).fill('TX SERVICE'));
    expect(all.map((r) => ipOf(r.out).dst)).toEqual([BACKEND4, BACKEND4, BACKEND4, BACKEND6, BACKEND6, BACKEND6]);
  });
});

describe('NodePort addresses through the CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'svcpath-nodeport-addresses-'));
  const cluster = (proxyConfig: string) => {
    const path = join(dir, `cluster-${proxyConfig.length}.yaml`);
    writeFileSync(
      path,
      `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node-a}
  status:
    addresses:
    - {type: InternalIP, address: ${FIRST4}}
    - {type: InternalIP, address: ${SECOND4}}
    - {type: ExternalIP, address: ${EXTERNAL4}}
- apiVersion: v1
  kind: Service
  metadata: {name: web, namespace: default}
  spec:
    type: NodePort
    clusterIP: 10.96.0.10
    ports: [{name: http, port: 80, targetPort: 8080, nodePort: ${NODE_PORT}}]
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
  addressType: IPv4
  endpoints: [{addresses: [${BACKEND4}], nodeName: node-b}]
  ports: [{name: http, port: 8080, protocol: TCP}]
${proxyConfig}`,
    );
    return path;
  };
  const capture = join(dir, 'nodeports.pcap');
  const w = createPcapWriter(capture, { linktype: LINKTYPES.ETHERNET });
  [FIRST4, SECOND4, EXTERNAL4].forEach((dst, i) => {
    const frame = tcp(CLIENT4, 40000 + i, dst, NODE_PORT, ['SYN']);
    w.write(1_800_000_000 + i, 0, frame, frame.length);
  });
  w.close();

  const reasons = async (clusterFile: string, flags: string[] = []) => {
    const out = join(dir, `verdicts-${Math.random().toString(36).slice(2)}.jsonl`);
    const r = await cli(['replay', capture, '--cluster', clusterFile, '--node', 'node-a', '--verdicts', out, ...flags]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).reason as string);
  };
  const KUBE_PROXY = (list: string) => `---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
nodePortAddresses: ${list}
`;

  it('serves the NodePort on the first InternalIP only, unless the flag or the KubeProxyConfiguration says otherwise', async () => {
    const plain = cluster('');
    expect(await reasons(plain)).toEqual(['SERVICE', 'NO_SERVICE', 'NO_SERVICE']);
    expect(await reasons(plain, ['--nodeport-addresses', '0.0.0.0/0'])).toEqual(['SERVICE', 'SERVICE', 'SERVICE']);
    expect(await reasons(plain, ['--nodeport-addresses', `${SECOND4}/32,${EXTERNAL4}/32`])).toEqual(['NO_SERVICE', 'SERVICE', 'SERVICE']);
    const configured = cluster(KUBE_PROXY('[203.0.113.0/24]'));
    expect(await reasons(configured)).toEqual(['NO_SERVICE', 'NO_SERVICE', 'SERVICE']);
    expect(await reasons(configured, ['--nodeport-addresses', 'primary'])).toEqual(['SERVICE', 'NO_SERVICE', 'NO_SERVICE']);
    expect(await reasons(cluster(KUBE_PROXY('[]')))).toEqual(['SERVICE', 'NO_SERVICE', 'NO_SERVICE']);
  });

  it("the summary's Node addresses line says where NodePorts are served when not on every address", async () => {
    const line = async (flags: string[]) =>
      (await cli(['replay', capture, '--cluster', cluster(''), '--node', 'node-a', ...flags])).stdout.split('\n')[1];
    expect(await line([])).toMatch(
      new RegExp(`^Node addresses [^;]*${SECOND4.replace(/\./g, '\\.')}[^;]* \\(NodePorts on ${FIRST4.replace(/\./g, '\\.')}\\);`),
    );
    expect(await line(['--nodeport-addresses', '0.0.0.0/0'])).not.toContain('NodePorts on');
  });

  it('serves NodePorts on every node address by default when the KubeProxyConfiguration is of the iptables or ipvs mode', async () => {
    const ofMode = (mode: string, list = '') =>
      cluster(`---\napiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: ${mode}\n${list}`);
    // An empty mode is kube-proxy's default on Linux, iptables.
    for (const mode of ['iptables', 'ipvs', '""']) {
      expect(await reasons(ofMode(mode))).toEqual(['SERVICE', 'SERVICE', 'SERVICE']);
      expect(await reasons(ofMode(mode), ['--nodeport-addresses', 'primary'])).toEqual(['SERVICE', 'NO_SERVICE', 'NO_SERVICE']);
    }
    expect(await reasons(ofMode('iptables', `nodePortAddresses: [${EXTERNAL4}/32]\n`))).toEqual(['NO_SERVICE', 'NO_SERVICE', 'SERVICE']);
    expect(await reasons(ofMode('nftables'))).toEqual(['SERVICE', 'NO_SERVICE', 'NO_SERVICE']);
    const replay = await cli(['replay', capture, '--cluster', ofMode('iptables'), '--node', 'node-a']);
    expect(replay.stdout).toMatch(
      /: KubeProxyConfiguration mode "iptables": svcpath decides as the nftables mode does, except that NodePorts/,
    );
  });

  it('refuses "primary" mixed with CIDRs in one line, as kube-proxy does', async () => {
    const r = await cli(['maps', '--cluster', cluster(''), '--node', 'node-a', '--nodeport-addresses', 'primary,10.0.0.0/8']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toBe('svcpath: --nodeport-addresses: "primary" cannot be combined with CIDRs');
  });
});
