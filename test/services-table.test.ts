import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadClusterState } from '../control/cluster/index.js';
import { formatServicesTable, servicesTable } from '../control/services-table.js';
import { makeService } from './helpers.js';

const fixture = fileURLToPath(new URL('fixtures/cluster/services-table.yaml', import.meta.url));
const state = loadClusterState([fixture], { serviceClusterIPRanges: ['10.96.0.0/12', 'fd00:10:96::/112'] });

describe('the services table', () => {
  it('prints kubectl get svc -A -o wide\'s columns, AGE aside, in namespace/name order', () => {
    expect(formatServicesTable(state)).toBe([
      'NAMESPACE     NAME         TYPE           CLUSTER-IP                   EXTERNAL-IP                                PORT(S)                      SELECTOR',
      'default       kubernetes   ClusterIP      10.96.0.1                    <none>                                     443/TCP                      <none>',
      'kube-system   kube-dns     ClusterIP      10.96.0.10                   <none>                                     53/UDP,53/TCP,9153/TCP       k8s-app=kube-dns',
      'shop          db           ClusterIP      None                         <none>                                     5432/TCP                     app=db',
      'shop          dual         ClusterIP      10.96.20.50,fd00:10:96::50   192.0.2.50                                 80/TCP,81/UDP                app=dual',
      'shop          legacy       NodePort       10.96.20.40                  <none>                                     8080:30808/TCP               <none>',
      'shop          payments     ExternalName   <none>                       payments.example.com                       <none>                       <none>',
      'shop          pending      LoadBalancer   10.96.20.60                  <pending>                                  8443/TCP                     app=pending',
      'shop          web          LoadBalancer   10.96.20.30                  203.0.113.10,lb.example.com,198.51.100.7   80:30080/TCP,443:30443/TCP   app=web,tier=fe',
    ].join('\n'));
  });

  it('adds endpoints, traffic policies and session affinity when wide', () => {
    expect(formatServicesTable(state, { wide: true })).toBe([
      'NAMESPACE     NAME         TYPE           CLUSTER-IP                   EXTERNAL-IP                                PORT(S)                      SELECTOR           ENDPOINTS   TRAFFIC                   AFFINITY',
      'default       kubernetes   ClusterIP      10.96.0.1                    <none>                                     443/TCP                      <none>             1/1         int=Cluster               None',
      'kube-system   kube-dns     ClusterIP      10.96.0.10                   <none>                                     53/UDP,53/TCP,9153/TCP       k8s-app=kube-dns   2/2         int=Cluster               None',
      'shop          db           ClusterIP      None                         <none>                                     5432/TCP                     app=db             1/1         -                         None',
      'shop          dual         ClusterIP      10.96.20.50,fd00:10:96::50   192.0.2.50                                 80/TCP,81/UDP                app=dual           0/0         ext=Cluster,int=Cluster   None',
      'shop          legacy       NodePort       10.96.20.40                  <none>                                     8080:30808/TCP               <none>             1/2         ext=Cluster,int=Local     None',
      'shop          payments     ExternalName   <none>                       payments.example.com                       <none>                       <none>             -           -                         None',
      'shop          pending      LoadBalancer   10.96.20.60                  <pending>                                  8443/TCP                     app=pending        0/0         ext=Cluster,int=Cluster   None',
      'shop          web          LoadBalancer   10.96.20.30                  203.0.113.10,lb.example.com,198.51.100.7   80:30080/TCP,443:30443/TCP   app=web,tier=fe    2/3         ext=Local,int=Cluster     ClientIP 3600s',
    ].join('\n'));
  });

  it('gives the same cells as rows for JSON', () => {
    const rows = servicesTable(state);
    expect(rows.map((r) => `${r.namespace}/${r.name}`)).toEqual([
      'default/kubernetes', 'kube-system/kube-dns', 'shop/db', 'shop/dual', 'shop/legacy', 'shop/payments', 'shop/pending', 'shop/web',
    ]);
    expect(rows[7]).toEqual({
      namespace: 'shop',
      name: 'web',
      type: 'LoadBalancer',
      clusterIP: '10.96.20.30',
      externalIP: '203.0.113.10,lb.example.com,198.51.100.7',
      ports: '80:30080/TCP,443:30443/TCP',
      selector: 'app=web,tier=fe',
      endpoints: '2/3',
      traffic: 'ext=Local,int=Cluster',
      affinity: 'ClientIP 3600s',
    });
    expect(JSON.parse(JSON.stringify(rows))).toEqual(rows);
  });

  it('lists each load balancer ingress once, and takes a state built by hand', () => {
    const lb = makeService('shop', 'lb', '10.96.0.7', [{ port: 80, nodePort: 30007 }], {
      type: 'LoadBalancer',
      loadBalancerIngress: [{ hostname: 'b.example.com' }, { ip: '203.0.113.9', hostname: 'a.example.com' }, { hostname: 'b.example.com' }],
    });
    const [row] = servicesTable({ services: [lb], endpointSlices: [], nodes: [], notes: [] });
    expect(row.externalIP).toBe('203.0.113.9,b.example.com');
  });

  it('prints only the header for a state without Services', () => {
    expect(formatServicesTable({ services: [], endpointSlices: [], nodes: [], notes: [] }))
      .toBe('NAMESPACE   NAME   TYPE   CLUSTER-IP   EXTERNAL-IP   PORT(S)   SELECTOR');
  });
});
