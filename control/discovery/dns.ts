/**
 * The records the cluster DNS serves for Services, after the Kubernetes
 * DNS-based service discovery specification (github.com/kubernetes/dns,
 * docs/specification.md), with the choices it leaves open made as CoreDNS's
 * kubernetes plugin makes them; and how one name resolves from a Pod, with the
 * search path and ndots the kubelet writes into a ClusterFirst Pod's
 * resolv.conf and the glibc resolver's search rules.
 *
 * Records:
 * - `dns-version.<zone>. TXT "1.1.0"`, the schema version.
 * - A Service with cluster IPs: A (IPv4) / AAAA (IPv6) `<svc>.<ns>.svc.<zone>.`
 *   per cluster IP; SRV `_<port>._<proto>.<svc>.<ns>.svc.<zone>.` per named
 *   port, on the Service port, to the Service name; PTR per cluster IP.
 * - A headless Service: A/AAAA at the Service name per ready endpoint (every
 *   endpoint with publishNotReadyAddresses), and at `<hostname>.<svc>...` — the
 *   endpoint's `hostname` (a Pod's `spec.hostname` when its `spec.subdomain`
 *   names the Service), else the address with dashes, as CoreDNS names it; SRV
 *   per named port and ready endpoint, on the endpoint's port, to that name;
 *   PTR per ready endpoint. No ready endpoint: no records (NXDOMAIN).
 * - An ExternalName Service: CNAME to its external name — unless the name
 *   looks like an IPv4 address: the API server accepts it as a name made of
 *   digits, but DNS servers do not resolve such names, and CoreDNS serves
 *   nothing for it.
 * SRV records have priority 0 and weight 100 divided among the records of
 * their name (CoreDNS's choice); every TTL is CoreDNS's default of 5 seconds.
 */
import ipaddr from 'ipaddr.js';
import { inputError } from '../common/errors.js';
import type { ClusterState, EndpointConditions, Service } from '../cluster/state.js';
import { resolveServices } from '../cluster/index.js';

export type RecordType = 'A' | 'AAAA' | 'SRV' | 'CNAME' | 'PTR' | 'TXT';
export const QUERY_TYPES: readonly RecordType[] = ['A', 'AAAA', 'SRV', 'CNAME', 'PTR', 'TXT'];

export interface DnsRecord {
  /** Fully qualified, lower case, with the final dot. */
  name: string;
  ttl: number;
  type: RecordType;
  /** The RDATA as a zone file writes it. */
  data: string;
}

/** The records of one Service, or why it has none. */
export interface ServiceRecords {
  namespace: string;
  name: string;
  kind: 'ClusterIP' | 'Headless' | 'ExternalName';
  records: DnsRecord[];
  /** Said as comments in the zone file: no ready endpoints, an IPv4-looking external name. */
  notes: string[];
}

export interface ClusterZone {
  /** The cluster domain, without a final dot. */
  domain: string;
  /** The schema-version record. */
  version: DnsRecord;
  services: ServiceRecords[];
}

/** CoreDNS kubernetes plugin's default TTL. */
export const DEFAULT_TTL = 5;
/** The version of the specification this follows, as `dns-version` announces it. */
export const SCHEMA_VERSION = '1.1.0';
export const DEFAULT_DOMAIN = 'cluster.local';
/** The kubelet writes `options ndots:5` into a ClusterFirst Pod's resolv.conf. */
export const NDOTS = 5;

export interface ZoneOptions {
  /** The cluster domain (kubelet --cluster-domain); default cluster.local. */
  domain?: string;
}

/** Every record the cluster DNS serves for the Services of the state, Services in namespace/name order. */
export function clusterZone(state: ClusterState, opts: ZoneOptions = {}): ClusterZone {
  const domain = normaliseDomain(opts.domain ?? DEFAULT_DOMAIN);
  const resolved = new Map(resolveServices(state).services.map((r) => [key(r.service), r]));
  const services = [...state.services]
    .sort((a, b) => compare(a.namespace, b.namespace) || compare(a.name, b.name))
    .map((service): ServiceRecords => {
      const base = `${service.name}.${service.namespace}.svc.${domain}.`;
      if (service.type === 'ExternalName') return externalNameRecords(service, base);
      if (service.clusterIPs[0] === 'None') return headlessRecords(state, service, base, resolved.get(key(service))?.ports ?? []);
      return clusterIPRecords(service, base);
    });
  return { domain, version: record(`dns-version.${domain}.`, 'TXT', `"${SCHEMA_VERSION}"`), services };
}

function clusterIPRecords(service: Service, base: string): ServiceRecords {
  const records: DnsRecord[] = service.clusterIPs.map((ip) => record(base, ip.includes(':') ? 'AAAA' : 'A', ip));
  const named = service.ports.filter((p) => p.name !== '');
  for (const port of named) {
    records.push(record(srvName(port.name, port.protocol, base), 'SRV', `0 100 ${port.port} ${base}`));
  }
  for (const ip of service.clusterIPs) records.push(record(reverseName(ip), 'PTR', base));
  return { namespace: service.namespace, name: service.name, kind: 'ClusterIP', records, notes: [] };
}

interface HeadlessEndpoint {
  ip: string;
  /** The endpoint's own hostname, else its address with dashes. */
  hostname: string;
}

function headlessRecords(
  state: ClusterState,
  service: Service,
  base: string,
  ports: ReturnType<typeof resolveServices>['services'][number]['ports'],
): ServiceRecords {
  const endpoints = headlessEndpoints(state, service);
  const ready = (c: EndpointConditions) => c.ready || service.publishNotReadyAddresses;
  const records: DnsRecord[] = [];
  const notes: string[] = [];
  const family = (ip: string): RecordType => (ip.includes(':') ? 'AAAA' : 'A');
  for (const e of endpoints) records.push(record(base, family(e.ip), e.ip));
  for (const e of endpoints) records.push(record(`${e.hostname}.${base}`, family(e.ip), e.ip));
  const hostnameOf = new Map(endpoints.map((e) => [e.ip, e.hostname]));
  for (const { port, endpoints: backends } of ports) {
    if (port.name === '') continue;
    // Two endpoints may share a hostname: one record per distinct target and port.
    const targets = [
      ...new Set(
        backends.filter((b) => ready(b.conditions) && hostnameOf.has(b.ip)).map((b) => `${b.port} ${hostnameOf.get(b.ip)}.${base}`),
      ),
    ];
    const name = srvName(port.name, port.protocol, base);
    const weight = Math.floor(100 / Math.max(targets.length, 1));
    for (const target of targets) records.push(record(name, 'SRV', `0 ${weight} ${target}`));
  }
  for (const e of endpoints) records.push(record(reverseName(e.ip), 'PTR', `${e.hostname}.${base}`));
  if (endpoints.length === 0) {
    notes.push(service.publishNotReadyAddresses ? 'no endpoints: no records (NXDOMAIN)' : 'no ready endpoints: no records (NXDOMAIN)');
  }
  return { namespace: service.namespace, name: service.name, kind: 'Headless', records, notes };
}

/**
 * The ready endpoints of a headless Service with their hostnames, from its
 * EndpointSlices, else its Endpoints object, of the Service's IP families;
 * the first address of each endpoint, once per address. Unlike the per-port
 * join (resolveServices), this keeps endpoints of slices without ports: a
 * headless Service need not have any, and its name still resolves.
 */
function headlessEndpoints(state: ClusterState, service: Service): HeadlessEndpoint[] {
  const ofService = (o: { namespace: string }, name: string) => o.namespace === service.namespace && name === service.name;
  const slices = state.endpointSlices.filter((s) => ofService(s, s.serviceName)).sort((a, b) => compare(a.name, b.name));
  const candidates: Array<{ ip: string; hostname?: string; ready: boolean }> = [];
  if (slices.length > 0) {
    for (const slice of slices) {
      if (slice.addressType === 'FQDN' || !service.ipFamilies.includes(slice.addressType)) continue;
      for (const e of slice.endpoints) candidates.push({ ip: e.addresses[0], hostname: e.hostname, ready: e.conditions.ready });
    }
  } else {
    const legacy = (state.legacyEndpoints ?? []).find((e) => ofService(e, e.name));
    for (const subset of legacy?.subsets ?? []) {
      for (const a of subset.addresses) candidates.push({ ip: a.ip, hostname: a.hostname, ready: true });
      for (const a of subset.notReadyAddresses) candidates.push({ ip: a.ip, hostname: a.hostname, ready: false });
    }
  }
  const seen = new Set<string>();
  const out: HeadlessEndpoint[] = [];
  for (const c of candidates) {
    if (!(c.ready || service.publishNotReadyAddresses) || seen.has(c.ip)) continue;
    if (!service.ipFamilies.includes(c.ip.includes(':') ? 'IPv6' : 'IPv4')) continue;
    seen.add(c.ip);
    out.push({ ip: c.ip, hostname: c.hostname ?? dashedAddress(c.ip) });
  }
  return out;
}

function externalNameRecords(service: Service, base: string): ServiceRecords {
  const target = (service.externalName ?? '').replace(/\.$/, '').toLowerCase();
  const common = { namespace: service.namespace, name: service.name, kind: 'ExternalName' as const };
  if (ipaddr.IPv4.isValidFourPartDecimal(target)) {
    return {
      ...common,
      records: [],
      notes: [
        `externalName ${JSON.stringify(service.externalName)} looks like an IPv4 address: the API server takes it ` +
          'for a name made of digits, which DNS servers do not resolve; no record (use a headless Service with ' +
          'its own endpoints to name an IP address)',
      ],
    };
  }
  return { ...common, records: [record(base, 'CNAME', `${target}.`)], notes: [] };
}

/** The zone file: the version record, then each Service's records under a comment naming it. No final newline. */
export function formatZone(zone: ClusterZone): string {
  const lines = [
    `; cluster domain ${zone.domain}: the records the cluster DNS serves for Services`,
    `; and, for any address and namespace ns, a-b-c-d.ns.pod.${zone.domain}. A a.b.c.d (AAAA for IPv6; deprecated, still required)`,
    formatRecord(zone.version),
  ];
  for (const s of zone.services) {
    lines.push(
      '',
      `; ${s.kind === 'Headless' ? 'headless ' : s.kind === 'ExternalName' ? 'ExternalName ' : ''}Service ${s.namespace}/${s.name}`,
    );
    for (const note of s.notes) lines.push(`; ${note}`);
    lines.push(...s.records.map(formatRecord));
  }
  return lines.join('\n');
}

export function formatRecord(r: DnsRecord): string {
  return `${r.name}\t${r.ttl}\tIN\t${r.type}\t${r.data}`;
}

// ---------------------------------------------------------------------------
// Queries

export type QueryStatus = 'NOERROR' | 'NXDOMAIN' | 'NODATA' | 'UPSTREAM';

/** One name the resolver asked for and what the cluster DNS said. */
export interface QueryTry {
  name: string;
  /** UPSTREAM: outside the cluster zones, so forwarded to the upstream resolvers, which svcpath does not emulate. */
  status: QueryStatus;
}

export interface QueryResult {
  query: string;
  type: RecordType;
  fromNamespace: string;
  searchPath: string[];
  ndots: number;
  /** The names asked, in order, up to the first with an answer (or forwarded upstream). */
  tries: QueryTry[];
  /** The final outcome: the status of the answering try, else NXDOMAIN, or NODATA when a name existed without such records. */
  status: QueryStatus;
  answer: DnsRecord[];
  notes: string[];
}

export interface QueryOptions {
  type?: RecordType;
  /** The querying Pod's namespace; default `default`. */
  fromNamespace?: string;
}

/** The search path of a ClusterFirst Pod in `namespace` (the node's own search domains left out). */
export function searchPath(namespace: string, domain: string): string[] {
  return [`${namespace}.svc.${domain}`, `svc.${domain}`, domain];
}

/**
 * Resolves `query` as a Pod's resolver does: a name ending in a dot as it is;
 * a name with at least ndots dots as it is first, then with each search domain;
 * any other name with each search domain first, then as it is. The first name
 * with records of the type asked for answers; names that exist without them
 * (NODATA) and names that do not (NXDOMAIN) move on to the next.
 */
export function resolveQuery(zone: ClusterZone, query: string, opts: QueryOptions = {}): QueryResult {
  const type = opts.type ?? 'A';
  const fromNamespace = opts.fromNamespace ?? 'default';
  const path = searchPath(fromNamespace, zone.domain);
  const name = query.trim().toLowerCase();
  if (name === '' || name === '.') throw inputError(['--query'], 'empty name');
  if (name.startsWith('.') || name.includes('..')) throw inputError(['--query'], `${JSON.stringify(query)} has an empty label`);

  let candidates: string[];
  if (name.endsWith('.')) candidates = [name];
  else {
    const withSearch = path.map((d) => `${name}.${d}.`);
    const dots = [...name].filter((c) => c === '.').length;
    candidates = dots >= NDOTS ? [`${name}.`, ...withSearch] : [...withSearch, `${name}.`];
  }

  const index = indexZone(zone);
  const result: QueryResult = {
    query,
    type,
    fromNamespace,
    searchPath: path,
    ndots: NDOTS,
    tries: [],
    status: 'NXDOMAIN',
    answer: [],
    notes: [],
  };
  let sawNoData = false;
  for (const candidate of candidates) {
    const { status, answer, notes } = lookup(zone, index, candidate, type);
    result.tries.push({ name: candidate, status });
    result.notes.push(...notes);
    if (status === 'NOERROR' || status === 'UPSTREAM') {
      result.status = status;
      result.answer = answer;
      return result;
    }
    if (status === 'NODATA') sawNoData = true;
  }
  result.status = sawNoData ? 'NODATA' : 'NXDOMAIN';
  return result;
}

interface ZoneIndex {
  byName: Map<string, DnsRecord[]>;
  /** Names with records below them (empty non-terminals such as `<ns>.svc.<zone>.`). */
  parents: Set<string>;
  /** ExternalName Services whose names resolve to nothing, for a note when asked. */
  unresolvable: Map<string, string>;
}

function indexZone(zone: ClusterZone): ZoneIndex {
  const byName = new Map<string, DnsRecord[]>();
  const parents = new Set<string>();
  const unresolvable = new Map<string, string>();
  for (const r of [zone.version, ...zone.services.flatMap((s) => s.records)]) {
    byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
    const labels = r.name.split('.');
    for (let i = 1; i < labels.length - 1; i++) parents.add(labels.slice(i).join('.'));
  }
  for (const s of zone.services) {
    if (s.kind === 'ExternalName' && s.records.length === 0) {
      unresolvable.set(`${s.name}.${s.namespace}.svc.${zone.domain}.`, `Service ${s.namespace}/${s.name}: ${s.notes.join('; ')}`);
    }
    // Namespaces with Services exist even when they serve nothing.
    parents.add(`${s.namespace}.svc.${zone.domain}.`);
  }
  parents.add(`svc.${zone.domain}.`);
  parents.add(`${zone.domain}.`);
  return { byName, parents, unresolvable };
}

/** What the cluster DNS answers for one fully qualified name, following CNAMEs inside its zones. */
function lookup(
  zone: ClusterZone,
  index: ZoneIndex,
  name: string,
  type: RecordType,
  depth = 0,
): { status: QueryStatus; answer: DnsRecord[]; notes: string[] } {
  if (!isServed(zone, name)) return { status: 'UPSTREAM', answer: [], notes: [] };
  const notes: string[] = [];
  const why = index.unresolvable.get(name);
  if (why) notes.push(why);
  const records = index.byName.get(name) ?? [];
  const pod = podRecord(zone, name);
  if (pod && type === pod.type) return { status: 'NOERROR', answer: [pod], notes };
  if (records.length === 0) {
    return { status: index.parents.has(name) || pod ? 'NODATA' : 'NXDOMAIN', answer: [], notes };
  }
  const ofType = records.filter((r) => r.type === type);
  if (ofType.length > 0) return { status: 'NOERROR', answer: ofType, notes };
  const cname = records.find((r) => r.type === 'CNAME');
  if (cname && depth < 8) {
    const target = lookup(zone, index, cname.data, type, depth + 1);
    if (target.status === 'UPSTREAM')
      notes.push(`${cname.data} is not in the cluster zone: the cluster DNS asks its upstream resolvers for it (not emulated)`);
    return { status: 'NOERROR', answer: [cname, ...target.answer], notes: [...notes, ...target.notes] };
  }
  return { status: 'NODATA', answer: [], notes };
}

/** The cluster domain and the reverse zones are the cluster DNS's own; anything else goes upstream. */
function isServed(zone: ClusterZone, name: string): boolean {
  return [`${zone.domain}.`, 'in-addr.arpa.', 'ip6.arpa.'].some((z) => name === z || name.endsWith(`.${z}`));
}

/**
 * The deprecated, still required `a-b-c-d.<ns>.pod.<zone>` records, as CoreDNS's
 * `pods insecure` answers them for any address: A for four dash-separated
 * numbers, else AAAA for an IPv6 address with its colons as dashes.
 */
function podRecord(zone: ClusterZone, name: string): DnsRecord | undefined {
  const suffix = `.pod.${zone.domain}.`;
  if (!name.endsWith(suffix)) return undefined;
  const labels = name.slice(0, -suffix.length).split('.');
  if (labels.length !== 2) return undefined;
  const dashed = labels[0];
  const v4 = dashed.split('-').length === 4 && !dashed.includes('--');
  const ip = v4 ? dashed.replaceAll('-', '.') : dashed.replaceAll('-', ':');
  if (v4 ? !ipaddr.IPv4.isValidFourPartDecimal(ip) : !ipaddr.IPv6.isValid(ip)) return undefined;
  return record(name, v4 ? 'A' : 'AAAA', v4 ? ip : ipaddr.parse(ip).toString());
}

export function formatQuery(r: QueryResult): string {
  const lines = [
    `; ${r.query} ${r.type} from namespace ${r.fromNamespace}: search ${r.searchPath.join(' ')}, ndots:${r.ndots}`,
    ...r.tries.map(
      (t) => `; ${t.name} ${t.status === 'UPSTREAM' ? 'outside the cluster zone: forwarded upstream (not emulated)' : t.status}`,
    ),
    ...r.notes.map((n) => `; ${n}`),
    `; status: ${r.status}`,
    ...r.answer.map(formatRecord),
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------

function record(name: string, type: RecordType, data: string): DnsRecord {
  return { name: name.toLowerCase(), ttl: DEFAULT_TTL, type, data };
}

function srvName(portName: string, protocol: string, base: string): string {
  return `_${portName}._${protocol.toLowerCase()}.${base}`;
}

/** `in-addr.arpa` or nibble `ip6.arpa` name of an address. */
export function reverseName(ip: string): string {
  const bytes = ipaddr.parse(ip).toByteArray();
  if (bytes.length === 4) return `${bytes.reverse().join('.')}.in-addr.arpa.`;
  const nibbles = bytes.flatMap((b) => [b >> 4, b & 15].map((n) => n.toString(16)));
  return `${nibbles.reverse().join('.')}.ip6.arpa.`;
}

/** CoreDNS's name for an endpoint without a hostname: its address, dots or colons as dashes. */
export function dashedAddress(ip: string): string {
  if (!ip.includes(':')) return ip.replaceAll('.', '-');
  const dashed = ip.replaceAll(':', '-');
  return dashed.endsWith('-') ? `${dashed}0` : dashed;
}

function normaliseDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/\.$/, '');
  const label = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  if (d === '' || !d.split('.').every((l) => label.test(l))) {
    throw inputError(['--domain'], `${JSON.stringify(domain)} is not a DNS name`);
  }
  return d;
}

function key(s: Service): string {
  return `${s.namespace}/${s.name}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
