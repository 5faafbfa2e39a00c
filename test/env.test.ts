// svcpath env: the Service environment variables the kubelet gives a new Pod
// (pkg/kubelet/envvars FromServices and the kubelet's getServiceEnvVarMap).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadClusterState } from '../control/cluster/index.js';
import { envVariableName, formatEnv, podEnv, serviceEnvVars } from '../control/discovery/env.js';
import type { ClusterState } from '../control/cluster/state.js';
import { cli, makeService } from './helpers.js';

const fixture = fileURLToPath(new URL('fixtures/cluster/discovery.yaml', import.meta.url));
const RANGES = '10.0.0.0/16,fd00:10:96::/112';
const state = loadClusterState([fixture], { serviceClusterIPRanges: RANGES.split(',') });

/** The variables whose name starts with the prefix, as the CLI prints them. */
const withPrefix = (text: string, prefix: string) => text.split('\n').filter((line) => line.startsWith(prefix));

describe('svcpath env', () => {
  it("gives redis-primary exactly the variables of the Service page's example", async () => {
    const r = await cli(['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES, '--namespace', 'shop']);
    expect(r.code).toBe(0);
    expect(withPrefix(r.stdout, 'REDIS_PRIMARY_')).toEqual([
      'REDIS_PRIMARY_SERVICE_HOST=10.0.0.11',
      'REDIS_PRIMARY_SERVICE_PORT=6379',
      'REDIS_PRIMARY_PORT=tcp://10.0.0.11:6379',
      'REDIS_PRIMARY_PORT_6379_TCP=tcp://10.0.0.11:6379',
      'REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp',
      'REDIS_PRIMARY_PORT_6379_TCP_PORT=6379',
      'REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.0.0.11',
    ]);
  });

  it("covers the namespace's Services with a cluster IP and default's kubernetes, in name order", async () => {
    const r = await cli(['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES, '--namespace', 'shop']);
    const prefixes = [...new Set(r.stdout.split('\n').map((line) => line.split('_SERVICE_')[0].split('_PORT')[0]))];
    // Not db, peers, idle (headless), nor payments, alias, by-ip (ExternalName), nor other/metrics.
    expect(prefixes).toEqual(['DUAL', 'KUBERNETES', 'REDIS_PRIMARY', 'WEB']);
    expect(withPrefix(r.stdout, 'KUBERNETES_')).toEqual([
      'KUBERNETES_SERVICE_HOST=10.0.0.1',
      'KUBERNETES_SERVICE_PORT=443',
      'KUBERNETES_SERVICE_PORT_HTTPS=443',
      'KUBERNETES_PORT=tcp://10.0.0.1:443',
      'KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443',
      'KUBERNETES_PORT_443_TCP_PROTO=tcp',
      'KUBERNETES_PORT_443_TCP_PORT=443',
      'KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1',
    ]);
    expect(r.stderr).toBe('');
  });

  it('names every named port, uses the first port for _PORT, and lower-cases the protocol in values only', async () => {
    const r = await cli(['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES, '--namespace', 'shop']);
    expect(withPrefix(r.stdout, 'WEB_')).toEqual([
      'WEB_SERVICE_HOST=10.0.0.20',
      'WEB_SERVICE_PORT=80',
      'WEB_SERVICE_PORT_HTTP=80',
      'WEB_SERVICE_PORT_DNS_UDP=53',
      'WEB_PORT=tcp://10.0.0.20:80',
      'WEB_PORT_80_TCP=tcp://10.0.0.20:80',
      'WEB_PORT_80_TCP_PROTO=tcp',
      'WEB_PORT_80_TCP_PORT=80',
      'WEB_PORT_80_TCP_ADDR=10.0.0.20',
      'WEB_PORT_53_UDP=udp://10.0.0.20:53',
      'WEB_PORT_53_UDP_PROTO=udp',
      'WEB_PORT_53_UDP_PORT=53',
      'WEB_PORT_53_UDP_ADDR=10.0.0.20',
    ]);
  });

  it('uses the primary cluster IP of a dual-stack Service, an IPv6 one bracketed in URLs', () => {
    const dual = podEnv(state, 'shop').services.find((s) => s.name === 'dual')!;
    expect(dual.vars.map((v) => `${v.name}=${v.value}`)).toEqual([
      'DUAL_SERVICE_HOST=fd00:10:96::50',
      'DUAL_SERVICE_PORT=80',
      'DUAL_SERVICE_PORT_HTTP=80',
      'DUAL_PORT=tcp://[fd00:10:96::50]:80',
      'DUAL_PORT_80_TCP=tcp://[fd00:10:96::50]:80',
      'DUAL_PORT_80_TCP_PROTO=tcp',
      'DUAL_PORT_80_TCP_PORT=80',
      'DUAL_PORT_80_TCP_ADDR=fd00:10:96::50',
    ]);
  });

  it("lets a namespace's own kubernetes Service replace default's, unless service links are off", async () => {
    const on = await cli(['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES, '--namespace', 'other']);
    expect(withPrefix(on.stdout, 'KUBERNETES_SERVICE_HOST')).toEqual(['KUBERNETES_SERVICE_HOST=10.0.0.99']);
    expect(on.stdout).toContain('METRICS_SERVICE_PORT_PROM=9090');
    const off = await cli([
      'env',
      '--cluster',
      fixture,
      '--service-cluster-ip-range',
      RANGES,
      '--namespace',
      'other',
      '--enable-service-links=false',
    ]);
    expect(off.code).toBe(0);
    expect(off.stdout.split('\n')).toEqual([
      'KUBERNETES_SERVICE_HOST=10.0.0.1',
      'KUBERNETES_SERVICE_PORT=443',
      'KUBERNETES_SERVICE_PORT_HTTPS=443',
      'KUBERNETES_PORT=tcp://10.0.0.1:443',
      'KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443',
      'KUBERNETES_PORT_443_TCP_PROTO=tcp',
      'KUBERNETES_PORT_443_TCP_PORT=443',
      'KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1',
    ]);
  });

  it('gives a namespace without Services only the kubernetes variables, and JSON per Service', async () => {
    const r = await cli(['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES, '--namespace', 'empty', '--json']);
    const env = JSON.parse(r.stdout) as ReturnType<typeof podEnv>;
    expect(env.services.map((s) => `${s.namespace}/${s.name}`)).toEqual(['default/kubernetes']);
    expect(env.enableServiceLinks).toBe(true);
    expect(env.vars).toHaveLength(8);
  });

  it('rejects a missing or bad --namespace and a bad --enable-service-links', async () => {
    const base = ['env', '--cluster', fixture, '--service-cluster-ip-range', RANGES];
    for (const [args, message] of [
      [[], /--namespace is required/],
      [['--namespace', 'Shop'], /--namespace: "Shop" is not a namespace name/],
      [['--namespace', 'shop', '--enable-service-links=no'], /--enable-service-links: "no" is neither true nor false/],
      [['--namespace', 'shop', 'extra'], /env: unexpected argument "extra"/],
    ] as const) {
      const r = await cli([...base, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('the environment, computed', () => {
  it('turns dashes to underscores and upper-cases', () => {
    expect(envVariableName('redis-primary')).toBe('REDIS_PRIMARY');
    expect(envVariableName('a1-b2')).toBe('A1_B2');
  });

  it('makes nothing for headless and ExternalName Services', () => {
    expect(serviceEnvVars(makeService('ns', 'h', 'None', [{ port: 80 }]))).toEqual([]);
    expect(serviceEnvVars(makeService('ns', 'x', '', [], { type: 'ExternalName', clusterIPs: [], externalName: 'a.example' }))).toEqual([]);
  });

  it('uses SCTP as the protocol of SCTP ports', () => {
    const vars = serviceEnvVars(makeService('ns', 'sig', '10.0.0.7', [{ port: 3868, protocol: 'SCTP' }]));
    expect(vars.map((v) => `${v.name}=${v.value}`)).toContain('SIG_PORT_3868_SCTP=sctp://10.0.0.7:3868');
  });

  it('reports two Services making the same variable; the later one in name order wins', () => {
    // Service "a" port 80 makes A_PORT_80_TCP_PORT=80; Service "a-port-80-tcp" makes A_PORT_80_TCP_PORT=tcp://…
    const s: ClusterState = {
      services: [makeService('ns', 'a-port-80-tcp', '10.0.0.8', [{ port: 81 }]), makeService('ns', 'a', '10.0.0.9', [{ port: 80 }])],
      endpointSlices: [],
      nodes: [],
      notes: [],
    };
    const env = podEnv(s, 'ns');
    expect(env.services.map((x) => x.name)).toEqual(['a', 'a-port-80-tcp']);
    expect(formatEnv(env)).toContain('A_PORT_80_TCP_PORT=tcp://10.0.0.8:81');
    expect(env.notes).toEqual([
      expect.stringMatching(/^A_PORT_80_TCP_PORT is made by Service ns\/a \(80\) and by Service ns\/a-port-80-tcp/),
    ]);
  });
});
