import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadClusterState } from '../control/cluster/index.js';
import { formatServicesTable, serviceRows } from '../control/cli/services-table.js';
import { cli, makeService } from './helpers.js';

const fixture = fileURLToPath(new URL('fixtures/cluster/services-table.yaml', import.meta.url));
const state = loadClusterState([fixture], { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] });

describe('the services table', () => {
  it("prints kubectl get svc -A -o wide's columns, AGE aside, in namespace/name order", () => {
    expect(formatServicesTable(state)).toBe(
      [
        'NAMESPACE     NAME         TYPE           CLUSTER-IP                   EXTERNAL-IP                                PORT(S)                      SELECTOR',
        'default       kubernetes   ClusterIP      10.96.0.1                    <none>                                     443/TCP                      <none>',
        'kube-system   kube-dns     ClusterIP      10.96.0.10                   <none>                                     53/UDP,53/TCP,9153/TCP       k8s-app=kube-dns',
        'shop          db           ClusterIP      None                         <none>                                     5432/TCP                     app=db',
        'shop          dual         ClusterIP      10.96.20.50,fd00:10:96::50   192.0.2.50                                 80/TCP,81/UDP                app=dual',
        'shop          legacy       NodePort       10.96.20.40                  <none>                                     8080:30808/TCP               <none>',
        'shop          payments     ExternalName   <none>                       payments.example.com                       <none>                       <none>',
        'shop          pending      LoadBalancer   10.96.20.60                  <pending>                                  8443/TCP                     app=pending',
        'shop          web          LoadBalancer   10.96.20.30                  203.0.113.10,lb.example.com,198.51.100.7   80:30080/TCP,443:30443/TCP   app=web,tier=fe',
      ].join('\n'),
    );
  });

  it('adds endpoints, traffic policies, session affinity and topology when wide', () => {
    expect(formatServicesTable(state, { wide: true })).toBe(
      [
        'NAMESPACE     NAME         TYPE           CLUSTER-IP                   EXTERNAL-IP                                PORT(S)                      SELECTOR           ENDPOINTS   TRAFFIC                   AFFINITY         TOPOLOGY',
        'default       kubernetes   ClusterIP      10.96.0.1                    <none>                                     443/TCP                      <none>             1/1         int=Cluster               None             -',
        'kube-system   kube-dns     ClusterIP      10.96.0.10                   <none>                                     53/UDP,53/TCP,9153/TCP       k8s-app=kube-dns   2/2         int=Cluster               None             -',
        'shop          db           ClusterIP      None                         <none>                                     5432/TCP                     app=db             1/1         -                         None             -',
        'shop          dual         ClusterIP      10.96.20.50,fd00:10:96::50   192.0.2.50                                 80/TCP,81/UDP                app=dual           0/0         ext=Cluster,int=Cluster   None             -',
        'shop          legacy       NodePort       10.96.20.40                  <none>                                     8080:30808/TCP               <none>             1/2         ext=Cluster,int=Local     None             -',
        'shop          payments     ExternalName   <none>                       payments.example.com                       <none>                       <none>             -           -                         None             -',
        'shop          pending      LoadBalancer   10.96.20.60                  <pending>                                  8443/TCP                     app=pending        0/0         ext=Cluster,int=Cluster   None             -',
        'shop          web          LoadBalancer   10.96.20.30                  203.0.113.10,lb.example.com,198.51.100.7   80:30080/TCP,443:30443/TCP   app=web,tier=fe    2/3         ext=Local,int=Cluster     ClientIP 3600s   -',
      ].join('\n'),
    );
  });

  it('gives typed rows for JSON: numbers, arrays, null for what does not apply', () => {
    const rows = serviceRows(state);
    expect(rows.map((r) => `${r.namespace}/${r.name}`)).toEqual([
      'default/kubernetes',
      'kube-system/kube-dns',
      'shop/db',
      'shop/dual',
      'shop/legacy',
      'shop/payments',
      'shop/pending',
      'shop/web',
    ]);
    const byName = new Map(rows.map((r) => [r.name, r]));
    expect(byName.get('web')).toEqual({
      namespace: 'shop',
      name: 'web',
      type: 'LoadBalancer',
      clusterIPs: ['10.96.20.30'],
      headless: false,
      ipFamilies: ['IPv4'],
      externalIPs: ['198.51.100.7'],
      loadBalancerIngress: [
        { ip: null, hostname: 'lb.example.com', ipMode: null },
        { ip: '203.0.113.10', hostname: null, ipMode: 'VIP' },
      ],
      externalName: null,
      ports: [
        { name: 'http', protocol: 'TCP', port: 80, targetPort: 8080, nodePort: 30080, appProtocol: null },
        { name: 'https', protocol: 'TCP', port: 443, targetPort: 8443, nodePort: 30443, appProtocol: null },
      ],
      selector: { tier: 'fe', app: 'web' },
      endpoints: { ready: 2, total: 3 },
      externalTrafficPolicy: 'Local',
      internalTrafficPolicy: 'Cluster',
      sessionAffinity: 'ClientIP',
      sessionAffinityTimeoutSeconds: 3600,
      trafficDistribution: null,
      topologyAnnotation: null,
      topology: null,
    });
    // No selector, an unnamed port, one of two addresses ready; no affinity.
    expect(byName.get('legacy')).toMatchObject({
      selector: null,
      ports: [{ name: null, protocol: 'TCP', port: 8080, targetPort: 8080, nodePort: 30808, appProtocol: null }],
      endpoints: { ready: 1, total: 2 },
      externalTrafficPolicy: 'Cluster',
      internalTrafficPolicy: 'Local',
      sessionAffinityTimeoutSeconds: null,
    });
    // Nothing proxies a headless or an ExternalName Service; an ExternalName one has no cluster IP and no endpoints.
    expect(byName.get('db')).toMatchObject({
      clusterIPs: ['None'],
      headless: true,
      externalTrafficPolicy: null,
      internalTrafficPolicy: null,
      endpoints: { ready: 1, total: 1 },
    });
    expect(byName.get('payments')).toMatchObject({
      clusterIPs: [],
      headless: false,
      externalName: 'payments.example.com',
      ports: [],
      endpoints: null,
      externalTrafficPolicy: null,
      internalTrafficPolicy: null,
    });
    // Reachable from outside only through its external IP; dual-stack.
    expect(byName.get('dual')).toMatchObject({
      clusterIPs: ['10.96.20.50', 'fd00:10:96::50'],
      ipFamilies: ['IPv4', 'IPv6'],
      endpoints: { ready: 0, total: 0 },
      externalTrafficPolicy: 'Cluster',
    });
    expect(byName.get('kubernetes')).toMatchObject({
      externalTrafficPolicy: null,
      internalTrafficPolicy: 'Cluster',
      loadBalancerIngress: [],
    });
  });

  it('svcpath services --json prints the typed rows', async () => {
    const r = await cli(['services', '--cluster', fixture, '--service-cluster-ip-range', '10.96.0.0/12,fd00:10:96::/112', '--json']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const rows = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(rows).toEqual(JSON.parse(JSON.stringify(serviceRows(state))));
    const pending = rows.find((row) => row.name === 'pending')!;
    // allocateLoadBalancerNodePorts: false: a port without a NodePort, and no ingress yet.
    expect(pending).toMatchObject({ ports: [{ name: null, port: 8443, nodePort: null }], loadBalancerIngress: [], externalIPs: [] });
  });

  it('lists each load balancer ingress once, and takes a state built by hand', () => {
    const lb = makeService('shop', 'lb', '10.96.0.7', [{ port: 80, nodePort: 30007 }], {
      type: 'LoadBalancer',
      loadBalancerIngress: [{ hostname: 'b.example.com' }, { ip: '203.0.113.9', hostname: 'a.example.com' }, { hostname: 'b.example.com' }],
    });
    const table = formatServicesTable({ services: [lb], endpointSlices: [], nodes: [], notes: [] });
    expect(table.split('\n')[1]).toBe('shop        lb     LoadBalancer   10.96.0.7    203.0.113.9,b.example.com   80:30007/TCP   <none>');
    expect(serviceRows({ services: [lb], endpointSlices: [], nodes: [], notes: [] })[0].loadBalancerIngress).toHaveLength(3);
  });

  it('prints only the header for a state without Services', () => {
    expect(formatServicesTable({ services: [], endpointSlices: [], nodes: [], notes: [] })).toBe(
      'NAMESPACE   NAME   TYPE   CLUSTER-IP   EXTERNAL-IP   PORT(S)   SELECTOR',
    );
  });
});

describe('svcpath services --node', () => {
  const hints = (name: string) => fileURLToPath(new URL(`fixtures/hints/${name}`, import.meta.url));
  const cluster = ['--cluster', hints('cluster.yaml'), '--cluster', hints('pods.yaml')];
  const topologyColumn = (stdout: string) => {
    const [header, ...rows] = stdout.trimEnd().split('\n');
    const at = header.indexOf('TOPOLOGY');
    return Object.fromEntries(rows.map((row) => [row.split(/\s+/)[1], row.slice(at)]));
  };

  it("shows the topology each Service's endpoints get on that node's proxy, and what they ask for without it", async () => {
    const onNodeC = await cli(['services', ...cluster, '--node', 'node-c']);
    expect(onNodeC.code).toBe(0);
    expect(topologyColumn(onNodeC.stdout)).toEqual({
      api: 'topology annotation Auto: zone zone-c',
      cache: 'PreferSameNode: node node-c',
      plain: '-',
      web: 'PreferClose: zone zone-c',
    });
    const anyNode = await cli(['services', ...cluster]);
    expect(topologyColumn(anyNode.stdout)).toEqual({
      api: 'topology annotation Auto',
      cache: 'PreferSameNode',
      plain: '-',
      web: 'PreferClose',
    });
  });

  it('refuses a Node the state does not have', async () => {
    const { code, stderr } = await cli(['services', ...cluster, '--node', 'node-x']);
    expect(code).toBe(1);
    expect(stderr.trim()).toBe('svcpath: --node: no Node named "node-x" in the cluster state (Nodes: node-a, node-b, node-c)');
  });
});
