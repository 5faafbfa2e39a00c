// svcpath dns: the records the cluster DNS serves (the Kubernetes DNS
// specification, CoreDNS's choices where it leaves them open) and how a Pod's
// resolver finds a name with its search path and ndots:5.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadClusterState } from '../control/cluster/index.js';
import { clusterZone, dashedAddress, formatRecord, resolveQuery, reverseName, type ClusterZone } from '../control/discovery/dns.js';
import { cli } from './helpers.js';

const fixture = fileURLToPath(new URL('fixtures/cluster/discovery.yaml', import.meta.url));
const RANGES = '10.0.0.0/16,fd00:10:96::/112';
const state = loadClusterState([fixture], { serviceClusterIPRanges: RANGES.split(',') });
const zone = clusterZone(state);

const recordsOf = (z: ClusterZone, ns: string, name: string) =>
  z.services.find((s) => s.namespace === ns && s.name === name)!.records.map(formatRecord);

describe('the cluster zone', () => {
  it('has A, SRV per named port and PTR for a ClusterIP Service', () => {
    expect(recordsOf(zone, 'shop', 'web')).toEqual([
      'web.shop.svc.cluster.local.\t5\tIN\tA\t10.0.0.20',
      '_http._tcp.web.shop.svc.cluster.local.\t5\tIN\tSRV\t0 100 80 web.shop.svc.cluster.local.',
      '_dns-udp._udp.web.shop.svc.cluster.local.\t5\tIN\tSRV\t0 100 53 web.shop.svc.cluster.local.',
      '20.0.0.10.in-addr.arpa.\t5\tIN\tPTR\tweb.shop.svc.cluster.local.',
    ]);
    // An unnamed port has no SRV record.
    expect(recordsOf(zone, 'shop', 'redis-primary').filter((r) => r.includes('SRV'))).toEqual([]);
  });

  it('has AAAA and A for a dual-stack Service', () => {
    expect(recordsOf(zone, 'shop', 'dual').slice(0, 2)).toEqual([
      'dual.shop.svc.cluster.local.\t5\tIN\tAAAA\tfd00:10:96::50',
      'dual.shop.svc.cluster.local.\t5\tIN\tA\t10.0.0.50',
    ]);
  });

  it('has A per ready endpoint of a headless Service, by hostname or dashed address, and SRV on the endpoint port', () => {
    expect(recordsOf(zone, 'shop', 'db')).toEqual([
      'db.shop.svc.cluster.local.\t5\tIN\tA\t10.244.1.5',
      'db.shop.svc.cluster.local.\t5\tIN\tA\t10.244.2.6',
      'db-0.db.shop.svc.cluster.local.\t5\tIN\tA\t10.244.1.5',
      '10-244-2-6.db.shop.svc.cluster.local.\t5\tIN\tA\t10.244.2.6',
      '_postgres._tcp.db.shop.svc.cluster.local.\t5\tIN\tSRV\t0 50 15432 db-0.db.shop.svc.cluster.local.',
      '_postgres._tcp.db.shop.svc.cluster.local.\t5\tIN\tSRV\t0 50 15432 10-244-2-6.db.shop.svc.cluster.local.',
      '5.1.244.10.in-addr.arpa.\t5\tIN\tPTR\tdb-0.db.shop.svc.cluster.local.',
      '6.2.244.10.in-addr.arpa.\t5\tIN\tPTR\t10-244-2-6.db.shop.svc.cluster.local.',
    ]);
  });

  it('publishes not-ready endpoints when asked, even of a headless Service without ports; none ready, no records', () => {
    expect(recordsOf(zone, 'shop', 'peers')).toEqual([
      'peers.shop.svc.cluster.local.\t5\tIN\tA\t10.244.1.9',
      'peer-0.peers.shop.svc.cluster.local.\t5\tIN\tA\t10.244.1.9',
      '9.1.244.10.in-addr.arpa.\t5\tIN\tPTR\tpeer-0.peers.shop.svc.cluster.local.',
    ]);
    const idle = zone.services.find((s) => s.name === 'idle')!;
    expect(idle.records).toEqual([]);
    expect(idle.notes).toEqual(['no ready endpoints: no records (NXDOMAIN)']);
  });

  it('names a Pod hostname.subdomain when its subdomain is the headless Service, through the slices the controller makes', () => {
    const pods = fileURLToPath(new URL('fixtures/cluster/dns-pods.yaml', import.meta.url));
    const z = clusterZone(loadClusterState([pods]));
    expect(recordsOf(z, 'default', 'busybox-subdomain').filter((r) => !r.includes('PTR'))).toEqual([
      'busybox-subdomain.default.svc.cluster.local.\t5\tIN\tA\t10.244.1.10',
      'busybox-subdomain.default.svc.cluster.local.\t5\tIN\tA\t10.244.2.11',
      'busybox-1.busybox-subdomain.default.svc.cluster.local.\t5\tIN\tA\t10.244.1.10',
      '10-244-2-11.busybox-subdomain.default.svc.cluster.local.\t5\tIN\tA\t10.244.2.11',
      '_foo._tcp.busybox-subdomain.default.svc.cluster.local.\t5\tIN\tSRV\t0 50 1234 busybox-1.busybox-subdomain.default.svc.cluster.local.',
      '_foo._tcp.busybox-subdomain.default.svc.cluster.local.\t5\tIN\tSRV\t0 50 1234 10-244-2-11.busybox-subdomain.default.svc.cluster.local.',
    ]);
    expect(resolveQuery(z, 'busybox-1.busybox-subdomain').answer.map((r) => r.data)).toEqual(['10.244.1.10']);
  });

  it('has a CNAME for an ExternalName Service, and nothing for one that looks like an IPv4 address', () => {
    expect(recordsOf(zone, 'shop', 'payments')).toEqual(['payments.shop.svc.cluster.local.\t5\tIN\tCNAME\tpayments.example.com.']);
    const byIP = zone.services.find((s) => s.name === 'by-ip')!;
    expect(byIP.records).toEqual([]);
    expect(byIP.notes[0]).toMatch(/"192\.0\.2\.1" looks like an IPv4 address/);
  });

  it('names reverse and dashed addresses as CoreDNS does', () => {
    expect(reverseName('10.0.0.1')).toBe('1.0.0.10.in-addr.arpa.');
    expect(reverseName('fd00::1')).toBe(`1.${'0.'.repeat(27)}0.0.d.f.ip6.arpa.`);
    expect(dashedAddress('10.244.2.6')).toBe('10-244-2-6');
    expect(dashedAddress('fd00::5')).toBe('fd00--5');
    expect(dashedAddress('fd00:1::')).toBe('fd00-1--0');
  });
});

describe('resolving a name from a Pod', () => {
  it('finds my-service from its namespace and my-service.my-ns from any, through the search path', () => {
    const short = resolveQuery(zone, 'web', { fromNamespace: 'shop' });
    expect(short.status).toBe('NOERROR');
    expect(short.tries).toEqual([{ name: 'web.shop.svc.cluster.local.', status: 'NOERROR' }]);
    expect(short.answer.map(formatRecord)).toEqual(['web.shop.svc.cluster.local.\t5\tIN\tA\t10.0.0.20']);

    const qualified = resolveQuery(zone, 'web.shop', { fromNamespace: 'default' });
    expect(qualified.tries.map((t) => `${t.name} ${t.status}`)).toEqual([
      'web.shop.default.svc.cluster.local. NXDOMAIN',
      'web.shop.svc.cluster.local. NOERROR',
    ]);
    expect(qualified.answer.map((r) => r.data)).toEqual(['10.0.0.20']);
    // From another namespace the short name is not found in the cluster and goes upstream.
    expect(resolveQuery(zone, 'web', { fromNamespace: 'other' }).status).toBe('UPSTREAM');
  });

  it('asks a name with five dots as it is first, and a name with a final dot only as it is', () => {
    const many = resolveQuery(zone, 'a.b.c.d.e.f', { fromNamespace: 'shop' });
    expect(many.tries[0].name).toBe('a.b.c.d.e.f.');
    const fqdn = resolveQuery(zone, 'web.shop.svc.cluster.local.');
    expect(fqdn.tries).toEqual([{ name: 'web.shop.svc.cluster.local.', status: 'NOERROR' }]);
  });

  it("answers SRV for a named port and a headless Service's endpoints", () => {
    const srv = resolveQuery(zone, '_postgres._tcp.db.shop', { type: 'SRV' });
    expect(srv.status).toBe('NOERROR');
    expect(srv.answer.map((r) => r.data)).toEqual([
      '0 50 15432 db-0.db.shop.svc.cluster.local.',
      '0 50 15432 10-244-2-6.db.shop.svc.cluster.local.',
    ]);
    expect(resolveQuery(zone, 'db-0.db.shop').answer.map((r) => r.data)).toEqual(['10.244.1.5']);
  });

  it('follows a CNAME inside the cluster and says when its target is outside', () => {
    const alias = resolveQuery(zone, 'alias.shop');
    expect(alias.answer.map(formatRecord)).toEqual([
      'alias.shop.svc.cluster.local.\t5\tIN\tCNAME\tweb.shop.svc.cluster.local.',
      'web.shop.svc.cluster.local.\t5\tIN\tA\t10.0.0.20',
    ]);
    const payments = resolveQuery(zone, 'payments', { fromNamespace: 'shop', type: 'CNAME' });
    expect(payments.answer.map((r) => r.data)).toEqual(['payments.example.com.']);
    const a = resolveQuery(zone, 'payments', { fromNamespace: 'shop' });
    expect(a.notes).toEqual([expect.stringMatching(/payments\.example\.com\. is not in the cluster zone/)]);
  });

  it('says NODATA for a name that exists without records of the type, and why an IPv4-looking ExternalName fails', () => {
    expect(resolveQuery(zone, 'web.shop.svc.cluster.local.', { type: 'AAAA' }).status).toBe('NODATA');
    const byIP = resolveQuery(zone, 'by-ip', { fromNamespace: 'shop' });
    expect(byIP.tries[0]).toEqual({ name: 'by-ip.shop.svc.cluster.local.', status: 'NXDOMAIN' });
    expect(byIP.notes[0]).toMatch(/looks like an IPv4 address/);
  });

  it('answers the deprecated pod records and the schema version', () => {
    expect(resolveQuery(zone, '10-1-2-3.shop.pod.cluster.local.').answer.map((r) => r.data)).toEqual(['10.1.2.3']);
    expect(resolveQuery(zone, 'fd00--1.shop.pod.cluster.local.', { type: 'AAAA' }).answer.map((r) => r.data)).toEqual(['fd00::1']);
    expect(resolveQuery(zone, 'fd00--1.shop.pod.cluster.local.').status).toBe('NODATA');
    expect(resolveQuery(zone, 'dns-version.cluster.local.', { type: 'TXT' }).answer.map((r) => r.data)).toEqual(['"1.1.0"']);
  });

  it('is case-insensitive and follows --domain', () => {
    expect(resolveQuery(zone, 'WEB.Shop').status).toBe('NOERROR');
    const other = clusterZone(state, { domain: 'example.internal.' });
    expect(resolveQuery(other, 'web', { fromNamespace: 'shop' }).tries[0]).toEqual({
      name: 'web.shop.svc.example.internal.',
      status: 'NOERROR',
    });
  });
});

describe('svcpath dns', () => {
  const base = ['dns', '--cluster', fixture, '--service-cluster-ip-range', RANGES];

  it('prints the zone file', async () => {
    const r = await cli(base);
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines).toContain('dns-version.cluster.local.\t5\tIN\tTXT\t"1.1.0"');
    expect(lines).toContain('; headless Service shop/db');
    expect(lines).toContain('kubernetes.default.svc.cluster.local.\t5\tIN\tA\t10.0.0.1');
    expect(lines).toContain(
      '_https._tcp.kubernetes.default.svc.cluster.local.\t5\tIN\tSRV\t0 100 443 kubernetes.default.svc.cluster.local.',
    );
    expect(lines).toContain('payments.shop.svc.cluster.local.\t5\tIN\tCNAME\tpayments.example.com.');
    expect(lines.filter((l) => !l.startsWith(';') && l !== '').every((l) => /^\S+\.\t5\tIN\t[A-Z]+\t\S/.test(l))).toBe(true);
  });

  it('resolves one name with --query, --type and --from-namespace', async () => {
    const r = await cli([...base, '--query', 'my-nope', '--from-namespace', 'shop']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').slice(0, 2)).toEqual([
      '; my-nope A from namespace shop: search shop.svc.cluster.local svc.cluster.local cluster.local, ndots:5',
      '; my-nope.shop.svc.cluster.local. NXDOMAIN',
    ]);
    const srv = await cli([...base, '--query', '_http._tcp.web', '--type', 'srv', '--from-namespace', 'shop', '--json']);
    expect(JSON.parse(srv.stdout).answer).toEqual([
      { name: '_http._tcp.web.shop.svc.cluster.local.', ttl: 5, type: 'SRV', data: '0 100 80 web.shop.svc.cluster.local.' },
    ]);
  });

  it('rejects a bad --type, --domain or --from-namespace, and query flags without --query', async () => {
    for (const [args, message] of [
      [['--query', 'web', '--type', 'MX'], /--type: "MX" is not one of A, AAAA, SRV, CNAME, PTR, TXT/],
      [['--domain', 'bad_domain'], /--domain: "bad_domain" is not a DNS name/],
      [['--query', 'web', '--from-namespace', 'No'], /--from-namespace: "No" is not a namespace name/],
      [['--type', 'A'], /--type: only with --query/],
      [['--query', 'a..b'], /--query: "a..b" has an empty label/],
    ] as const) {
      const r = await cli([...base, ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(message);
    }
  });
});
