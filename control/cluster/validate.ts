/**
 * Checking and defaulting: parsed manifests → the typed model of
 * control/cluster/state.ts. The API server's defaults are applied and its validation
 * rules checked here, so the rest of svcpath can trust every field. A mistake
 * that leaves the datapath unbuildable or ambiguous (an address that does not
 * parse, a port without a number, one frontend claimed by two Services) is an
 * InputError naming the file, the object and the field; one the API server
 * would refuse but a datapath still programs (a name rule, a NodePort outside
 * the range) is a warning with the same words and what svcpath does instead.
 */
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';
import { inputError } from '../common/errors.js';
import type {
  ClusterState,
  ConntrackTimeouts,
  Endpoint,
  EndpointHints,
  EndpointPort,
  EndpointSlice,
  IPFamily,
  LegacyEndpointAddress,
  LegacyEndpointPort,
  LegacyEndpoints,
  LegacyEndpointSubset,
  LoadBalancerIngress,
  Node,
  NodeAddress,
  Origin,
  ContainerPort,
  Pod,
  Protocol,
  ProxyConfig,
  Service,
  ServiceCIDR,
  ServicePort,
  ServiceRanges,
  ServiceType,
  TrafficPolicy,
} from './state.js';
import { describe, isMapping, type Manifest } from './load.js';
import { rangeFamilies, serviceRanges } from './service-ranges.js';
import type { Warnings } from './warnings.js';

export interface ValidateOptions {
  /** The API server's --service-cluster-ip-range, when given: joined with the state's ServiceCIDRs. */
  serviceClusterIPRanges?: string[];
  /** The API server's --service-node-port-range, both ends included: every nodePort should fall inside. */
  serviceNodePortRange: [number, number];
  warnings: Warnings;
}

export interface Validated {
  state: ClusterState;
  /** The addresses IPAddress objects hold: taken, whether or not a Service of the state has them. */
  takenIPs: string[];
}

/** The apiVersions read of each kind, the current one first. */
const API_VERSIONS = {
  Service: ['v1'],
  // v1beta1 for clusters older than 1.21 and dumps made with it; its topology map carries node and zone.
  EndpointSlice: ['discovery.k8s.io/v1', 'discovery.k8s.io/v1beta1'],
  Endpoints: ['v1'],
  Node: ['v1'],
  Pod: ['v1'],
  ServiceCIDR: ['networking.k8s.io/v1', 'networking.k8s.io/v1beta1'],
  IPAddress: ['networking.k8s.io/v1', 'networking.k8s.io/v1beta1'],
  KubeProxyConfiguration: ['kubeproxy.config.k8s.io/v1alpha1'],
} as const satisfies Record<string, readonly string[]>;
type Kind = keyof typeof API_VERSIONS;
const NAMESPACED_KINDS: readonly Kind[] = ['Service', 'EndpointSlice', 'Endpoints', 'Pod'];

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
/** The v1beta1 EndpointSlice topology keys that became v1's nodeName and zone. */
const HOSTNAME_TOPOLOGY_KEY = 'kubernetes.io/hostname';
const ZONE_TOPOLOGY_KEY = 'topology.kubernetes.io/zone';
/** The Service annotations that ask for topology-aware routing (kube-proxy: v1.AnnotationTopologyMode, AnnotationTopologyAwareHints). */
const TOPOLOGY_MODE_ANNOTATION = 'service.kubernetes.io/topology-mode';
const TOPOLOGY_HINTS_ANNOTATION = 'service.kubernetes.io/topology-aware-hints';

const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];
const IP_FAMILIES: readonly IPFamily[] = ['IPv4', 'IPv6'];
const IP_FAMILY_POLICIES = ['SingleStack', 'PreferDualStack', 'RequireDualStack'] as const;
const TRAFFIC_POLICIES: readonly TrafficPolicy[] = ['Cluster', 'Local'];
const ADDRESS_TYPES = ['IPv4', 'IPv6', 'FQDN'] as const;
const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 10800;
const MAX_AFFINITY_TIMEOUT_SECONDS = 86400;
/** Kinds whose Pod templates make Pods; svcpath derives nothing from a template, only from Pods. */
const WORKLOAD_KINDS = ['Deployment', 'ReplicaSet', 'StatefulSet', 'DaemonSet', 'ReplicationController', 'Job', 'CronJob'];
const POD_PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'] as const;
const MAX_ENDPOINT_ADDRESSES = 100;

/** What each warning's "instead" says, where several rules share it. */
const USED_AS_GIVEN = 'svcpath uses it as it is';
const SERVED_ALL_THE_SAME = 'the datapath serves it all the same';
const SENT_TO_ALL_THE_SAME = 'the datapath sends to it all the same';

/** A manifest of a kind svcpath reads, with its kind and apiVersion checked. */
interface KnownObject {
  kind: Kind;
  apiVersion: string;
  origin: Origin;
  doc: Field;
  position: string;
}

export function validateManifests(manifests: Manifest[], opts: ValidateOptions): Validated {
  const { warnings } = opts;
  const nodePortRange = serviceNodePortRange(opts.serviceNodePortRange);
  const legacyEndpoints: LegacyEndpoints[] = [];
  const pods: Pod[] = [];
  const state: ClusterState = { services: [], endpointSlices: [], legacyEndpoints, nodes: [], pods, notes: [] };
  const hasPods = manifests.some((m) => m.object.kind === 'Pod');
  const objects = manifests.flatMap((m) => knownObject(m, hasPods, state.notes, warnings) ?? []);
  /** "Kind ns/name" → where it was first defined, to report duplicates. */
  const defined = new Map<string, string>();

  // ServiceCIDRs first: every Service's cluster IP is checked against them, wherever they are in the files.
  const serviceCIDRs: ServiceCIDR[] = [];
  for (const object of objects.filter((o) => o.kind === 'ServiceCIDR')) {
    serviceCIDRs.push(toServiceCIDR(object.doc, object.origin));
    checkDefinedOnce(object, defined);
  }
  const { ranges, checks } = knownRanges(serviceCIDRs, opts.serviceClusterIPRanges, warnings, state.notes);
  const ipAddresses: IPAddressObject[] = [];

  for (const object of objects) {
    const { doc, origin } = object;
    // Validated first, so that an object without a name fails on that
    // rather than look like a duplicate of another nameless one.
    switch (object.kind) {
      case 'ServiceCIDR':
        continue;
      case 'IPAddress':
        ipAddresses.push(toIPAddress(doc, origin));
        break;
      case 'Service':
        state.services.push(toService(doc, origin, checks, nodePortRange));
        break;
      case 'EndpointSlice': {
        const slice = toEndpointSlice(doc, origin, object.apiVersion, state.notes);
        if (!slice) continue;
        state.endpointSlices.push(slice);
        break;
      }
      case 'Endpoints':
        legacyEndpoints.push(toLegacyEndpoints(doc, origin));
        break;
      case 'Node':
        state.nodes.push(toNode(doc, origin));
        break;
      case 'Pod':
        pods.push(toPod(doc, origin));
        break;
      case 'KubeProxyConfiguration':
        state.proxyConfig = toProxyConfig(doc, origin);
        break;
    }
    checkDefinedOnce(object, defined);
  }
  checkClusterIPOwners(state.services);
  state.services = frontendsOnce(state.services, warnings);
  checkNodePortOwners(state.services, warnings);
  checkEndpointsAreNotClusterIPs(state.services, state.endpointSlices, legacyEndpoints, pods, warnings);
  noteUnclaimedIPAddresses(ipAddresses, state.services, state.notes);
  return { state: { ...state, serviceRanges: ranges }, takenIPs: ipAddresses.map((a) => a.ip) };
}

/**
 * The manifest with its kind and apiVersion checked, or undefined (and a note)
 * for a kind svcpath does not read. Kubernetes objects have both fields; a
 * document with neither was skipped when read (load.ts), so one missing here
 * is a mistake.
 */
function knownObject(manifest: Manifest, hasPods: boolean, notes: string[], warnings: Warnings): KnownObject | undefined {
  const { file, position, object } = manifest;
  const top = new Field([file, position], '', object, warnings);
  const kind = top.get('kind').str();
  if (!isKnownKind(kind)) {
    top.get('apiVersion').str();
    notes.push(
      `${file}: skipped ${skippedLabel(kind, manifest)} (${
        WORKLOAD_KINDS.includes(kind) && !hasPods
          ? 'a workload template, not Pods: give the Pods themselves, e.g. kubectl get pods -o yaml, to derive endpoints'
          : 'not used by svcpath'
      })`,
    );
    return undefined;
  }
  const origin = originOf(kind, manifest);
  const doc = new Field([file, origin.object], '', object, warnings);
  const apiVersionField = doc.get('apiVersion');
  const apiVersion = apiVersionField.str();
  const versions: readonly string[] = API_VERSIONS[kind];
  if (!versions.includes(apiVersion)) {
    apiVersionField.fail(`${kind} must be ${versions.join(' or ')}, got ${describe(apiVersion)}`);
  }
  return { kind, apiVersion, origin, doc, position };
}

/** One object per kind, namespace and name; one KubeProxyConfiguration in all. */
function checkDefinedOnce({ kind, origin, position }: KnownObject, defined: Map<string, string>): void {
  const identity = kind === 'KubeProxyConfiguration' ? kind : origin.object;
  const first = defined.get(identity);
  if (first) {
    throw inputError(
      [origin.file, origin.object],
      kind === 'KubeProxyConfiguration'
        ? `a second KubeProxyConfiguration; there must be at most one, and the first is in ${first}`
        : `defined twice; the first is in ${first}`,
    );
  }
  defined.set(identity, `${origin.file} (${position})`);
}

function isKnownKind(kind: string): kind is Kind {
  return Object.hasOwn(API_VERSIONS, kind);
}

/** "Service default/web", "Node worker-1"; the position in the file for an object without a name. */
function originOf(kind: Kind, { file, position, object }: Manifest): Origin {
  const meta = isMapping(object.metadata) ? object.metadata : {};
  const name = typeof meta.name === 'string' ? meta.name : undefined;
  if (!name) return { file, object: position };
  if (!NAMESPACED_KINDS.includes(kind)) return { file, object: `${kind} ${name}` };
  return { file, object: `${kind} ${typeof meta.namespace === 'string' && meta.namespace ? meta.namespace : 'default'}/${name}` };
}

/**
 * Names an object of a kind svcpath does not read without validating it. We cannot
 * tell a namespaced kind from a cluster-scoped one, so the namespace is shown only
 * when the manifest gives it.
 */
function skippedLabel(kind: string, { position, object }: Manifest): string {
  const meta = isMapping(object.metadata) ? object.metadata : {};
  if (typeof meta.name !== 'string') return `${kind} in ${position}`;
  return typeof meta.namespace === 'string' ? `${kind} ${meta.namespace}/${meta.name}` : `${kind} ${meta.name}`;
}

// ---------------------------------------------------------------------------
// ServiceCIDR and IPAddress (networking.k8s.io, KEP-1880)

function toServiceCIDR(doc: Field, origin: Origin): ServiceCIDR {
  const meta = doc.get('metadata');
  const nameField = meta.get('name');
  const name = nameField.str();
  checkName(nameField, name, DNS1123_SUBDOMAIN);
  const cidrsField = doc.get('spec').get('cidrs');
  const fields = cidrsField.items();
  const cidrs = fields.map((f) => canonicalCIDR(f, parseCIDR(f, f.str())));
  if (cidrs.length === 0) cidrsField.warn('required: one CIDR per IP family; this ServiceCIDR adds no range');
  if (cidrs.length > 2) cidrsField.warn(`at most 2 entries (one per IP family), got ${cidrs.length}; svcpath uses every one`);
  if (cidrs.length === 2 && cidrs[0].ip.kind() === cidrs[1].ip.kind()) {
    fields[1].warn(`must be of a different IP family than ${cidrs[0].text}; svcpath uses both`);
  }
  // The allocator takes new addresses only from a ServiceCIDR that is ready (no Ready condition counts as ready) and not being deleted.
  const notReady = doc
    .get('status')
    .get('conditions')
    .items()
    .some((c) => c.get('type').optStr() === 'Ready' && c.get('status').optStr() === 'False');
  const deleting = meta.get('deletionTimestamp').isSet;
  return { origin, name, cidrs: [...new Set(cidrs.map((c) => c.text))], allocatable: !notReady && !deleting };
}

/** The API server wants spec.cidrs in canonical form; a CIDR with host bits set still names its network. */
function canonicalCIDR(f: Field, cidr: Cidr): Cidr {
  if (f.value !== cidr.text) f.warn(`${JSON.stringify(f.value)} is not in canonical form; svcpath reads it as ${cidr.text}`);
  return cidr;
}

/** An IPAddress object: an address the allocator has given out, named after it. */
interface IPAddressObject {
  origin: Origin;
  ip: string;
  /** "services shop/web", or undefined when the object does not say. */
  parentRef?: string;
}

function toIPAddress(doc: Field, origin: Origin): IPAddressObject {
  const nameField = doc.get('metadata').get('name');
  const name = nameField.str();
  const ip = parseIP(nameField, name).toString();
  if (ip !== name) nameField.warn(`${JSON.stringify(name)} is not in canonical form; svcpath reads it as ${ip}`);
  const ref = doc.get('spec').get('parentRef');
  const resource = ref.get('resource').optStr();
  const refName = ref.get('name').optStr();
  const namespace = ref.get('namespace').optStr();
  if (!resource || !refName) {
    ref.warn('required: resource and name of the object the address belongs to; the address counts as taken all the same');
    return { origin, ip };
  }
  return { origin, ip, parentRef: `${resource} ${namespace ? `${namespace}/` : ''}${refName}` };
}

/** How many IPAddress objects a note names before it only counts the rest. */
const NAMED_IN_NOTE = 3;

/**
 * An IPAddress whose address is no Service's cluster IP: its Service was left
 * out of the dump, or the address leaked. Either way it stays taken.
 */
function noteUnclaimedIPAddresses(ipAddresses: IPAddressObject[], services: Service[], notes: string[]): void {
  const clusterIPs = new Set(services.flatMap((s) => s.clusterIPs));
  const unclaimed = ipAddresses.filter((a) => !clusterIPs.has(a.ip));
  if (unclaimed.length === 0) return;
  const named = unclaimed
    .slice(0, NAMED_IN_NOTE)
    .map((a) => `${a.origin.file}: ${a.origin.object}${a.parentRef ? ` (parentRef ${a.parentRef})` : ''}`);
  const more = unclaimed.length > NAMED_IN_NOTE ? ` and ${unclaimed.length - NAMED_IN_NOTE} more` : '';
  notes.push(
    `${unclaimed.length} IPAddress object${unclaimed.length === 1 ? '' : 's'} name${unclaimed.length === 1 ? 's' : ''} ` +
      `an address that is no Service's cluster IP in the state (its Service is not in the state, or the address leaked); ` +
      `svcpath allocates none of them: ${named.join(', ')}${more}`,
  );
}

// ---------------------------------------------------------------------------
// Service

/** What a Service's cluster IPs and IP families are checked against. */
interface RangeChecks {
  /** The known service cluster IP ranges; empty when they are unknown. */
  known: Cidr[];
  /** Where they come from: "10.96.0.0/12 from --service-cluster-ip-range". */
  source: string;
  /** The cluster's IP families, the primary one first; undefined when the ranges are unknown. */
  families?: IPFamily[];
}

function rangeChecks(ranges: ServiceRanges): RangeChecks {
  return { known: ranges.cidrs.map(cidrOf), source: ranges.source, families: rangeFamilies(ranges) };
}

/**
 * The ranges of given texts alone (no ServiceCIDR objects), with the notes they
 * made, when they warned nothing: a file of watch events validates each event
 * as a manifest of its own against the same ranges (control/cluster/events.ts).
 */
const rangesOfFlag = new Map<string, { ranges: ServiceRanges; checks: RangeChecks; notes: string[] }>();

/** The known service cluster IP ranges (objects and flag), and the checks made of them; notes go to `notes`. */
function knownRanges(
  serviceCIDRs: readonly ServiceCIDR[],
  flagTexts: string[] | undefined,
  warnings: Warnings,
  notes: string[],
): { ranges: ServiceRanges; checks: RangeChecks } {
  const key = serviceCIDRs.length === 0 && flagTexts ? flagTexts.join(',') : undefined;
  const known = key === undefined ? undefined : rangesOfFlag.get(key);
  if (known) {
    notes.push(...known.notes);
    return known;
  }
  const [warned, noted] = [warnings.messages.length, notes.length];
  const flag = flagTexts && flagRanges(flagTexts, warnings);
  const ranges = serviceRanges(serviceCIDRs, flag, notes);
  const checks = rangeChecks(ranges);
  if (key !== undefined && warnings.messages.length === warned) rangesOfFlag.set(key, { ranges, checks, notes: notes.slice(noted) });
  return { ranges, checks };
}

function toService(doc: Field, origin: Origin, ranges: RangeChecks, nodePortRange: PortRange): Service {
  const meta = doc.get('metadata');
  const name = meta.get('name').str();
  checkName(meta.get('name'), name, RFC1035_LABEL);
  const namespace = namespaceOf(meta);
  const spec = doc.get('spec');
  const type = spec.get('type').optOneOf(SERVICE_TYPES) ?? 'ClusterIP';
  const selector = spec.get('selector').optStringMap();

  if (type === 'ExternalName') {
    for (const key of ['clusterIP', 'clusterIPs', 'ipFamilies', 'ipFamilyPolicy']) {
      const field = spec.get(key);
      if (field.isSet && field.value !== '' && !(Array.isArray(field.value) && field.value.length === 0)) {
        field.warn('must not be set for ExternalName Services; ignored: an ExternalName Service gets no datapath entries');
      }
    }
  }
  // An empty one is allocated later (allocate.ts), as the API server does on create.
  const clusterIPs = type === 'ExternalName' ? [] : serviceClusterIPs(spec, type, ranges);
  const headless = clusterIPs[0] === 'None';
  const ipFamilyPolicy = spec.get('ipFamilyPolicy').optOneOf(IP_FAMILY_POLICIES);
  const ipFamilies = type === 'ExternalName' ? [] : serviceIPFamilies(spec, clusterIPs, ipFamilyPolicy, headless && !selector, ranges);

  const portsField = spec.get('ports');
  const portFields = portsField.items();
  if (portFields.length === 0 && type !== 'ExternalName' && !headless) {
    portsField.warn(
      'at least one port is required (only headless and ExternalName Services may have none); ' +
        'the datapath serves no port of it: every packet to its cluster IP is UNSERVED_PORT',
    );
  }
  const ports = portFields.map((p) => toServicePort(p, type, portFields.length > 1, nodePortRange));
  checkUnique(
    portFields,
    ports,
    (p) => p.name,
    (p) => `name ${JSON.stringify(p.name)}`,
    'name',
    'both take the endpoints of the EndpointSlice port of that name',
  );
  checkUnique(
    portFields,
    ports,
    (p) => `${p.port}/${p.protocol}`,
    (p) => `port ${p.port}/${p.protocol}`,
  );

  const sessionAffinity = spec.get('sessionAffinity').optOneOf(['None', 'ClientIP'] as const) ?? 'None';
  const affinityConfig = spec.get('sessionAffinityConfig');
  if (sessionAffinity === 'None' && affinityConfig.isSet) {
    affinityConfig.warn('must not be set when sessionAffinity is None; ignored');
  }
  const affinityTimeoutSeconds = affinityTimeout(affinityConfig.get('clientIP').get('timeoutSeconds'));

  // Older dumps may say "Global", which meant what "Cluster" means.
  const etp = spec.get('externalTrafficPolicy');
  const externalTrafficPolicy = etp.value === 'Global' ? 'Cluster' : (etp.optOneOf(TRAFFIC_POLICIES) ?? 'Cluster');
  const internalTrafficPolicy = spec.get('internalTrafficPolicy').optOneOf(TRAFFIC_POLICIES) ?? 'Cluster';
  const externalIPFields = spec.get('externalIPs').items();
  const externallyAccessible = type === 'NodePort' || type === 'LoadBalancer' || (type === 'ClusterIP' && externalIPFields.length > 0);
  if (externalTrafficPolicy === 'Local' && !externallyAccessible) {
    etp.warn(
      'may only be set for externally-accessible Services (NodePort, LoadBalancer, or with externalIPs); ignored: no traffic reaches it from outside',
    );
  }

  const sourceRanges = spec.get('loadBalancerSourceRanges');
  const loadBalancerSourceRanges = sourceRanges.items().map((f) => parseCIDR(f, f.str().trim()).text);
  if (loadBalancerSourceRanges.length > 0 && type !== 'LoadBalancer') {
    sourceRanges.warn('may only be used when type is LoadBalancer; ignored: source ranges guard load-balancer IPs only');
  }

  return {
    origin,
    namespace,
    name,
    type,
    clusterIPs,
    ipFamilies,
    ipFamilyPolicy,
    ports,
    selector,
    sessionAffinity,
    affinityTimeoutSeconds,
    externalTrafficPolicy,
    internalTrafficPolicy,
    externalIPs: externalIPFields.map((f) => parseUnicastIP(f, f.str(), SERVED_ALL_THE_SAME).toString()),
    externalName: type === 'ExternalName' ? externalName(spec.get('externalName')) : undefined,
    loadBalancerIngress: doc.get('status').get('loadBalancer').get('ingress').items().map(toIngress),
    loadBalancerSourceRanges,
    loadBalancerClass: spec.get('loadBalancerClass').optStr(),
    allocateLoadBalancerNodePorts: spec.get('allocateLoadBalancerNodePorts').optBool() ?? true,
    publishNotReadyAddresses: spec.get('publishNotReadyAddresses').optBool() ?? false,
    healthCheckNodePort: healthCheckNodePort(spec.get('healthCheckNodePort'), nodePortRange),
    trafficDistribution: spec.get('trafficDistribution').optStr(),
    topologyAnnotation: topologyAnnotation(meta.get('annotations')),
  };
}

/** The topology annotation kube-proxy reads: topology-mode, else the older topology-aware-hints. */
function topologyAnnotation(annotations: Field): string | undefined {
  return annotations.get(TOPOLOGY_MODE_ANNOTATION).optStr() ?? annotations.get(TOPOLOGY_HINTS_ANNOTATION).optStr();
}

/** ClientIP affinity's timeout: the API allows at most a day, the datapath's u32 seconds take more. */
function affinityTimeout(f: Field): number {
  const seconds = f.optInt(1, 0xffffffff) ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  if (seconds > MAX_AFFINITY_TIMEOUT_SECONDS) {
    f.warn(`${seconds} is out of range 1..${MAX_AFFINITY_TIMEOUT_SECONDS}; the datapath keeps affinities that long all the same`);
  }
  return seconds;
}

/** spec.clusterIP and spec.clusterIPs reconciled: [] when unset, ['None'] when headless, else canonical IPs. */
function serviceClusterIPs(spec: Field, type: ServiceType, ranges: RangeChecks): string[] {
  const single = spec.get('clusterIP');
  const clusterIP = single.optStr() || undefined;
  const listField = spec.get('clusterIPs');
  const list = listField.items();
  const values = list.map((f) => f.str());
  if (clusterIP !== undefined && values.length > 0 && values[0] !== clusterIP) {
    single.fail(`${JSON.stringify(clusterIP)} must equal spec.clusterIPs[0] (${JSON.stringify(values[0])})`);
  }
  const fields = values.length > 0 ? list : clusterIP !== undefined ? [single] : [];
  const texts = values.length > 0 ? values : clusterIP !== undefined ? [clusterIP] : [];

  if (texts.includes('None')) {
    if (texts.length > 1) listField.fail('"None" (headless) must be the only entry');
    if (type !== 'ClusterIP')
      fields[0].warn(`may not be "None" (headless) for ${type} Services; svcpath treats it as headless: no datapath entries`);
    return ['None'];
  }
  if (texts.length > 2) listField.fail(`at most 2 entries (one per IP family), got ${texts.length}`);
  const ips = texts.map((text, i) => {
    const ip = parseIP(fields[i], text);
    if (ranges.known.length > 0 && !ranges.known.some((range) => contains(range, ip))) {
      fields[i].warn(
        `${text} is outside the service cluster IP ranges (${ranges.source}); the datapath serves it as a cluster IP all the same`,
      );
    }
    return ip;
  });
  if (ips.length === 2 && ips[0].kind() === ips[1].kind()) {
    fields[1].fail(`must be of a different IP family than ${texts[0]}`);
  }
  return ips.map((ip) => ip.toString());
}

/**
 * spec.ipFamilies as given (checked against the cluster IPs, completed from them), else as the API server
 * fills it in: the cluster IPs' families, or for a Service without one the cluster's
 * primary family — both families for dual-stack requests and selectorless headless
 * Services, which the API server makes RequireDualStack. On a dual-stack cluster a
 * PreferDualStack or RequireDualStack Service with one family gets the other one too
 * (and allocate.ts then gives it a cluster IP of that family). When the ranges are
 * unknown so is the cluster's stack: IPv4 is taken as primary, nothing is refused for
 * its family, and only RequireDualStack gets both.
 */
function serviceIPFamilies(
  spec: Field,
  clusterIPs: string[],
  policy: string | undefined,
  headlessWithoutSelector: boolean,
  ranges: RangeChecks,
): IPFamily[] {
  const ipFamiliesField = spec.get('ipFamilies');
  const givenFields = ipFamiliesField.items();
  let given = givenFields.map((f) => f.oneOf(IP_FAMILIES));
  const ipFamilies = clusterIPs.filter((ip) => ip !== 'None').map((ip) => familyOf(ipaddr.parse(ip)));
  if (given.length > 2) ipFamiliesField.fail(`at most 2 entries (one per IP family), got ${given.length}`);
  if (given.length === 2 && given[0] === given[1]) {
    givenFields[1].warn(`${given[1]} is listed twice; svcpath reads it once`);
    given = [given[0]];
  }
  const mismatch = ipFamilies.findIndex((family, i) => i < given.length && given[i] !== family);
  if (mismatch >= 0) {
    givenFields[mismatch].warn(
      `${given[mismatch]} does not match the family of spec.clusterIPs[${mismatch}] ` +
        `(${ipFamilies[mismatch]}); svcpath goes by the cluster IPs`,
    );
    given = ipFamilies;
  }
  if (policy === 'SingleStack' && Math.max(given.length, ipFamilies.length) > 1) {
    spec
      .get('ipFamilyPolicy')
      .warn('must be PreferDualStack or RequireDualStack for a Service with two IP families; ' + 'the datapath serves both');
  }
  // A selectorless headless Service gets no cluster IP, so the API server lets it name any family.
  if (!headlessWithoutSelector && ranges.families) {
    const configured = `service cluster IP ranges: ${ranges.source}`;
    if (policy === 'RequireDualStack' && ranges.families.length < 2) {
      spec.get('ipFamilyPolicy').warn(`RequireDualStack needs a dual-stack cluster (${configured}); svcpath serves the families it has`);
    }
    given.forEach((family, i) => {
      if (!ranges.families!.includes(family)) {
        givenFields[i].warn(`${family} is not configured on this cluster (${configured}); ${SERVED_ALL_THE_SAME}`);
      }
    });
  }
  const clusterFamilies =
    ranges.families ?? (policy === 'RequireDualStack' || (headlessWithoutSelector && !policy) ? IP_FAMILIES : IP_FAMILIES.slice(0, 1));
  // Checked above to agree where both say something: the longer one says it all.
  const families = given.length > ipFamilies.length ? given : ipFamilies;
  if (families.length === 0) {
    const effectivePolicy = policy ?? (headlessWithoutSelector ? 'RequireDualStack' : 'SingleStack');
    return clusterFamilies.slice(0, effectivePolicy === 'SingleStack' ? 1 : 2);
  }
  const dualStackPolicy = policy === 'PreferDualStack' || policy === 'RequireDualStack';
  if (families.length === 1 && dualStackPolicy && clusterFamilies.length === 2 && !headlessWithoutSelector) {
    return [families[0], families[0] === 'IPv4' ? 'IPv6' : 'IPv4'];
  }
  return families;
}

function toServicePort(f: Field, type: ServiceType, named: boolean, nodePortRange: PortRange): ServicePort {
  const nameField = f.get('name');
  const name = nameField.optStr() ?? '';
  if (name) checkName(nameField, name, DNS1123_LABEL);
  else if (named) nameField.warn('required when the Service has more than one port; svcpath names the port by its number');
  const port = f.get('port').int(1, 65535);

  const targetField = f.get('targetPort');
  let targetPort: number | string;
  // The API server defaults an unset, 0 or "" targetPort to the port.
  if (!targetField.isSet || targetField.value === 0 || targetField.value === '') targetPort = port;
  else if (typeof targetField.value === 'string') targetPort = ianaServiceName(targetField, targetField.value);
  else targetPort = targetField.int(1, 65535);

  const nodePortField = f.get('nodePort');
  let nodePort = nodePortField.optInt(0, 65535) || undefined;
  if (nodePort !== undefined && (type === 'ClusterIP' || type === 'ExternalName')) {
    nodePortField.warn(`may not be used when type is ${type}; ignored: a ${type} Service has no NodePort`);
    nodePort = undefined;
  }
  if (nodePort !== undefined) checkInNodePortRange(nodePortField, nodePort, nodePortRange, SERVED_ALL_THE_SAME);
  return {
    name,
    protocol: f.get('protocol').optOneOf(PROTOCOLS) ?? 'TCP',
    port,
    targetPort,
    nodePort,
    appProtocol: f.get('appProtocol').optStr(),
  };
}

/** What a healthCheckNodePort warning says the datapath does: it has no entry for that port. */
const NOT_A_DATAPATH_PORT = "nothing in the datapath listens on it (only the load balancer's health checks use it), so it changes nothing";

/** Given explicitly it is allocated from the NodePort range like a nodePort, so it should lie inside. */
function healthCheckNodePort(f: Field, nodePortRange: PortRange): number | undefined {
  // 0 asks the API server to allocate one; it is not a port anything listens on.
  const port = f.optInt(0, 65535) || undefined;
  if (port !== undefined) checkInNodePortRange(f, port, nodePortRange, NOT_A_DATAPATH_PORT);
  return port;
}

function checkInNodePortRange(f: Field, port: number, range: PortRange, instead: string): void {
  if (port < range.first || port > range.last) {
    f.warn(`${port} is outside the NodePort range ${range.first}-${range.last} (--service-node-port-range); ${instead}`);
  }
}

/**
 * One cluster IP, one Service: two Services on one address would make the
 * datapath's frontends and reverse NAT ambiguous.
 */
function checkClusterIPOwners(services: Service[]): void {
  const owners = new Map<string, { service: Service; path: string }>();
  for (const service of services) {
    service.clusterIPs.forEach((ip, i) => {
      if (ip === 'None') return;
      const path = `spec.clusterIPs[${i}]`;
      const owner = owners.get(ip);
      if (owner) {
        throw inputError(
          [service.origin.file, service.origin.object, path],
          `${ip} is already the cluster IP of Service ` +
            `${owner.service.namespace}/${owner.service.name} (${owner.service.origin.file}: ${owner.path}); a cluster IP belongs to one Service`,
        );
      }
      owners.set(ip, { service, path });
    });
  }
}

/**
 * One frontend (address, port, protocol), one entry of the datapath's service
 * map: a cluster, external or load-balancer IP of two Services on one port and
 * protocol is an error, as the datapath could not tell which Service a packet
 * is for. One Service naming an address twice (an external IP that is also its
 * load-balancer IP) is served once, as the first.
 */
function frontendsOnce(services: Service[], warnings: Warnings): Service[] {
  const owners = new Map<string, { service: Service; path: string }>();
  return services.map((service) => {
    const { file, object } = service.origin;
    const keep = (ip: string, path: string): boolean => {
      let earlier: string | undefined;
      for (const port of service.ports) {
        const key = `${ip} ${port.port}/${port.protocol}`;
        const owner = owners.get(key);
        if (!owner) {
          owners.set(key, { service, path });
        } else if (owner.service !== service) {
          throw inputError(
            [file, object, path],
            `${ip} port ${port.port}/${port.protocol} is already a frontend of Service ` +
              `${owner.service.namespace}/${owner.service.name} (${owner.service.origin.file}: ${owner.path}); ` +
              'the datapath could not tell which Service a packet to it is for',
          );
        } else {
          earlier = owner.path;
        }
      }
      if (earlier)
        warnings.add([file, object, path], `${ip} is already a frontend of this Service (${earlier}); the datapath serves it once`);
      return earlier === undefined;
    };
    service.clusterIPs.forEach((ip, i) => ip !== 'None' && keep(ip, `spec.clusterIPs[${i}]`));
    const externalIPs = service.externalIPs.filter((ip, i) => keep(ip, `spec.externalIPs[${i}]`));
    // Only a LoadBalancer's VIP-mode ingress IPs are frontends; the others are carried as they are.
    const loadBalancerIngress = service.loadBalancerIngress.filter(
      (ingress, i) =>
        service.type !== 'LoadBalancer' ||
        !ingress.ip ||
        ingress.ipMode === 'Proxy' ||
        keep(ingress.ip, `status.loadBalancer.ingress[${i}].ip`),
    );
    return { ...service, externalIPs, loadBalancerIngress };
  });
}

/** A NodePort number a Service holds, on one of its ports or as its healthCheckNodePort. */
interface NodePortClaim {
  service: Service;
  port: number | undefined;
  /** "spec.ports[1].nodePort" or "spec.healthCheckNodePort". */
  path: string;
  /** Only for a Service port's nodePort. */
  protocol?: Protocol;
}

/**
 * A NodePort is one Service's, whatever the protocol: the API server's allocator
 * refuses a port another Service holds. Within one Service two ports may share a
 * nodePort when their protocols differ (DNS on 53/UDP and 53/TCP), never with the
 * Service's healthCheckNodePort, which comes from the same allocator. Only one
 * number and protocol on two ports is an error: the datapath could not tell which
 * one a packet is for. The rest it programs, with a warning.
 */
function checkNodePortOwners(services: Service[], warnings: Warnings): void {
  const claimsByPort = new Map<number, NodePortClaim[]>();
  for (const service of services) {
    const claims: NodePortClaim[] = [
      ...service.ports.map((p, i) => ({
        service,
        port: p.nodePort,
        path: `spec.ports[${i}].nodePort`,
        protocol: p.protocol,
      })),
      { service, port: service.healthCheckNodePort, path: 'spec.healthCheckNodePort' },
    ];
    for (const claim of claims) {
      if (claim.port === undefined) continue;
      const earlier = claimsByPort.get(claim.port) ?? [];
      const conflict = earlier.find((e) => !mayShareNodePort(e, claim));
      if (conflict) {
        const { where, problem } = nodePortConflict(claim, conflict);
        if (claim.protocol !== undefined && claim.protocol === conflict.protocol) throw inputError(where, problem);
        const instead =
          claim.protocol !== undefined && conflict.protocol !== undefined
            ? 'the datapath serves each protocol to its own Service'
            : NOT_A_DATAPATH_PORT;
        warnings.add(where, `${problem}; ${instead}`);
      }
      claimsByPort.set(claim.port, [...earlier, claim]);
    }
  }
}

function mayShareNodePort(a: NodePortClaim, b: NodePortClaim): boolean {
  return a.service === b.service && a.protocol !== undefined && b.protocol !== undefined && a.protocol !== b.protocol;
}

function nodePortConflict(claim: NodePortClaim, holder: NodePortClaim): { where: string[]; problem: string } {
  const { origin } = claim.service;
  const other = holder.service;
  return {
    where: [origin.file, origin.object, claim.path],
    problem:
      other === claim.service
        ? `${claim.port}${claim.protocol ? `/${claim.protocol}` : ''} is already used by ${holder.path}`
        : `${claim.port} is already allocated to Service ${other.namespace}/${other.name} ` +
          `(${other.origin.file}: ${holder.path}); a NodePort belongs to one Service whatever the protocol`,
  };
}

function toIngress(f: Field): LoadBalancerIngress {
  const ipField = f.get('ip');
  const ipText = ipField.optStr() || undefined;
  const ip = ipText === undefined ? undefined : parseIP(ipField, ipText).toString();
  const ipModeField = f.get('ipMode');
  let ipMode = ipModeField.optOneOf(['VIP', 'Proxy'] as const);
  if (ipMode && !ip) {
    ipModeField.warn('may only be set together with ip; ignored');
    ipMode = undefined;
  }
  // The API server defaults ipMode to VIP on an ingress with an ip.
  return { ip, hostname: f.get('hostname').optStr() || undefined, ipMode: ip ? (ipMode ?? 'VIP') : undefined };
}

function externalName(f: Field): string {
  const name = f.str('required for ExternalName Services');
  // A trailing dot marks a fully qualified name, which the API server accepts.
  checkName(f, name.endsWith('.') ? name.slice(0, -1) : name, DNS1123_SUBDOMAIN);
  return name;
}

// ---------------------------------------------------------------------------
// EndpointSlice

function toEndpointSlice(doc: Field, origin: Origin, apiVersion: string, notes: string[]): EndpointSlice | undefined {
  const meta = doc.get('metadata');
  const name = meta.get('name').str();
  checkName(meta.get('name'), name, DNS1123_SUBDOMAIN);
  const namespace = namespaceOf(meta);
  const labels = meta.get('labels');
  const serviceName = labels.get(SERVICE_NAME_LABEL).optStr();
  if (!serviceName) {
    notes.push(`${origin.file}: ${origin.object}: skipped: no ${SERVICE_NAME_LABEL} label, so it belongs to no Service`);
    return undefined;
  }
  const addressType = doc.get('addressType').oneOf(ADDRESS_TYPES);
  const portFields = doc.get('ports').items();
  const ports = portFields.map(toEndpointPort);
  checkUnique(
    portFields,
    ports,
    (p) => p.name,
    (p) => `name ${JSON.stringify(p.name)}`,
    'name',
  );
  const v1beta1 = apiVersion === 'discovery.k8s.io/v1beta1';
  return {
    origin,
    namespace,
    name,
    serviceName,
    addressType,
    // kubectl prints "endpoints: null" for a slice without endpoints; items() reads that as [].
    endpoints: doc
      .get('endpoints')
      .items()
      .map((f) => toEndpoint(f, addressType, v1beta1)),
    ports,
    managedBy: labels.get(MANAGED_BY_LABEL).optStr(),
  };
}

/**
 * An endpoint; of a v1beta1 slice, with its node and zone taken from the
 * topology map as the API server converts them to v1 (its nodeName, when
 * set, wins). The fields v1 and v1beta1 share (conditions, hostname, hints,
 * targetRef) read alike.
 */
function toEndpoint(f: Field, addressType: EndpointSlice['addressType'], v1beta1: boolean): Endpoint {
  const addressesField = f.get('addresses');
  const addressFields = addressesField.items();
  const count = `must have 1 to ${MAX_ENDPOINT_ADDRESSES} entries, has ${addressFields.length}`;
  if (addressFields.length < 1) addressesField.fail(count);
  if (addressFields.length > MAX_ENDPOINT_ADDRESSES) addressesField.warn(`${count}; kube-proxy and svcpath use only the first`);
  const addresses = addressFields.map((a) => {
    const text = a.str();
    if (addressType === 'FQDN') return text;
    const ip = parseUnicastIP(a, text, SENT_TO_ALL_THE_SAME);
    if (familyOf(ip) !== addressType) {
      a.fail(`${text} is an ${familyOf(ip)} address in a slice of addressType ${addressType}`);
    }
    return ip.toString();
  });
  // Unset conditions, as the EndpointSlice API defines them: ready, serving as ready, not terminating.
  const conditions = f.get('conditions');
  const ready = conditions.get('ready').optBool() ?? true;
  const unsetConditions = (['ready', 'serving', 'terminating'] as const).filter((k) => !conditions.get(k).isSet);
  const topology = v1beta1 ? f.get('topology') : undefined;
  return {
    addresses,
    conditions: {
      ready,
      serving: conditions.get('serving').optBool() ?? ready,
      terminating: conditions.get('terminating').optBool() ?? false,
    },
    nodeName: f.get('nodeName').optStr() ?? topology?.get(HOSTNAME_TOPOLOGY_KEY).optStr(),
    zone: topology ? topology.get(ZONE_TOPOLOGY_KEY).optStr() : f.get('zone').optStr(),
    ...endpointHints(f.get('hints')),
    hostname: f.get('hostname').optStr(),
    ...(unsetConditions.length > 0 ? { unsetConditions } : {}),
  };
}

/** An endpoint's `hints`, when it has any. */
function endpointHints(hints: Field): { hints?: EndpointHints } {
  if (!hints.isSet) return {};
  const names = (list: Field) => list.items().map((item) => item.get('name').str());
  return { hints: { forZones: names(hints.get('forZones')), forNodes: names(hints.get('forNodes')) } };
}

function toEndpointPort(f: Field): EndpointPort {
  const nameField = f.get('name');
  const name = nameField.optStr() ?? '';
  if (name) checkName(nameField, name, DNS1123_LABEL);
  return {
    name,
    protocol: f.get('protocol').optOneOf(PROTOCOLS) ?? 'TCP',
    port: f.get('port').optInt(1, 65535),
    appProtocol: f.get('appProtocol').optStr(),
  };
}

// ---------------------------------------------------------------------------
// Endpoints (the legacy API)

function toLegacyEndpoints(doc: Field, origin: Origin): LegacyEndpoints {
  const meta = doc.get('metadata');
  const name = meta.get('name').str();
  checkName(meta.get('name'), name, DNS1123_SUBDOMAIN);
  return { origin, namespace: namespaceOf(meta), name, subsets: doc.get('subsets').items().map(toLegacyEndpointSubset) };
}

function toLegacyEndpointSubset(f: Field): LegacyEndpointSubset {
  const addresses = f.get('addresses').items().map(toLegacyEndpointAddress);
  const notReadyAddresses = f.get('notReadyAddresses').items().map(toLegacyEndpointAddress);
  if (addresses.length === 0 && notReadyAddresses.length === 0) f.warn('must have addresses or notReadyAddresses; it adds no endpoint');
  const portFields = f.get('ports').items();
  return { addresses, notReadyAddresses, ports: portFields.map((p) => toLegacyEndpointPort(p, portFields.length > 1)) };
}

function toLegacyEndpointAddress(f: Field): LegacyEndpointAddress {
  const ipField = f.get('ip');
  const hostnameField = f.get('hostname');
  const hostname = hostnameField.optStr() || undefined;
  if (hostname !== undefined) checkName(hostnameField, hostname, DNS1123_LABEL);
  const nodeNameField = f.get('nodeName');
  const nodeName = nodeNameField.optStr() || undefined;
  if (nodeName !== undefined) checkName(nodeNameField, nodeName, DNS1123_SUBDOMAIN);
  return { ip: parseUnicastIP(ipField, ipField.str(), SENT_TO_ALL_THE_SAME).toString(), nodeName, hostname };
}

function toLegacyEndpointPort(f: Field, named: boolean): LegacyEndpointPort {
  const nameField = f.get('name');
  const name = nameField.optStr() ?? '';
  if (name) checkName(nameField, name, DNS1123_LABEL);
  else if (named) nameField.warn('required when the subset has more than one port; svcpath matches it as the unnamed port');
  return {
    name,
    protocol: f.get('protocol').optOneOf(PROTOCOLS) ?? 'TCP',
    port: f.get('port').int(1, 65535),
    appProtocol: f.get('appProtocol').optStr(),
  };
}

/**
 * A Service's cluster IP as an endpoint would send the Service's traffic back
 * into the Service; the API server refuses it wherever an endpoint is listed.
 */
function checkEndpointsAreNotClusterIPs(
  services: Service[],
  slices: EndpointSlice[],
  legacyEndpoints: LegacyEndpoints[],
  pods: Pod[],
  warnings: Warnings,
): void {
  const owners = new Map<string, Service>();
  for (const service of services) {
    for (const ip of service.clusterIPs) if (ip !== 'None') owners.set(ip, service);
  }
  const check = (origin: Origin, path: string, ip: string) => {
    const owner = owners.get(ip);
    if (owner) {
      warnings.add(
        [origin.file, origin.object, path],
        `${ip} is the cluster IP of Service ${owner.namespace}/${owner.name}; ` +
          `an endpoint must not be a Service's cluster IP; ${SENT_TO_ALL_THE_SAME}, and the packet comes back to that Service`,
      );
    }
  };
  for (const slice of slices) {
    if (slice.addressType === 'FQDN') continue;
    slice.endpoints.forEach((endpoint, i) => {
      endpoint.addresses.forEach((ip, j) => check(slice.origin, `endpoints[${i}].addresses[${j}]`, ip));
    });
  }
  for (const endpoints of legacyEndpoints) {
    endpoints.subsets.forEach((subset, i) => {
      subset.addresses.forEach((a, j) => check(endpoints.origin, `subsets[${i}].addresses[${j}].ip`, a.ip));
      subset.notReadyAddresses.forEach((a, j) => check(endpoints.origin, `subsets[${i}].notReadyAddresses[${j}].ip`, a.ip));
    });
  }
  for (const pod of pods) pod.podIPs.forEach((ip, i) => check(pod.origin, `status.podIPs[${i}].ip`, ip));
}

// ---------------------------------------------------------------------------
// Pod

function toPod(doc: Field, origin: Origin): Pod {
  const meta = doc.get('metadata');
  const nameField = meta.get('name');
  const name = nameField.str();
  checkName(nameField, name, DNS1123_SUBDOMAIN);
  const namespace = namespaceOf(meta);
  const labels = meta.get('labels').optStringMap() ?? {};
  // Any timestamp marks the Pod as terminating; its value does not matter here.
  const terminating = meta.get('deletionTimestamp').isSet;

  const spec = doc.get('spec');
  const nodeNameField = spec.get('nodeName');
  const nodeName = nodeNameField.optStr() || undefined;
  if (nodeName !== undefined) checkName(nodeNameField, nodeName, DNS1123_SUBDOMAIN);
  const hostnameField = spec.get('hostname');
  const hostname = hostnameField.optStr() || undefined;
  if (hostname !== undefined) checkName(hostnameField, hostname, DNS1123_LABEL);
  const subdomainField = spec.get('subdomain');
  const subdomain = subdomainField.optStr() || undefined;
  if (subdomain !== undefined) checkName(subdomainField, subdomain, DNS1123_LABEL);

  // FindPort searches the containers, then the restartable init containers (sidecars).
  const containers = spec.get('containers').items();
  const sidecars = spec
    .get('initContainers')
    .items()
    .filter((c) => c.get('restartPolicy').optStr() === 'Always');
  const containerPorts = [...containers, ...sidecars].flatMap((c) => c.get('ports').items().map(toContainerPort));

  const status = doc.get('status');
  const podIPs = podIPsOf(status);
  const phase = status.get('phase').optOneOf(POD_PHASES);
  const ready = status
    .get('conditions')
    .items()
    .some((c) => {
      const type = c.get('type').str();
      const conditionStatus = c.get('status').oneOf(['True', 'False', 'Unknown'] as const);
      return type === 'Ready' && conditionStatus === 'True';
    });
  return { origin, namespace, name, labels, podIPs, nodeName, hostname, subdomain, phase, ready, terminating, containerPorts };
}

function toContainerPort(f: Field): ContainerPort {
  const nameField = f.get('name');
  const name = nameField.optStr() ?? '';
  if (name) ianaServiceName(nameField, name);
  return { name, containerPort: f.get('containerPort').int(1, 65535), protocol: f.get('protocol').optOneOf(PROTOCOLS) ?? 'TCP' };
}

/** status.podIPs reconciled with status.podIP, as the API server keeps them: podIP is podIPs[0]. */
function podIPsOf(status: Field): string[] {
  const single = status.get('podIP');
  const podIP = single.optStr() || undefined;
  const listField = status.get('podIPs');
  const list = listField.items().map((f) => f.get('ip'));
  if (list.length > 2) listField.fail(`at most 2 entries (one per IP family), got ${list.length}`);
  const ips = list.map((f) => parseUnicastIP(f, f.str(), SENT_TO_ALL_THE_SAME));
  if (podIP !== undefined) {
    // Checked as an endpoint address once: here only when podIPs does not list it.
    if (ips.length === 0) return [parseUnicastIP(single, podIP, SENT_TO_ALL_THE_SAME).toString()];
    if (ips[0].toString() !== parseIP(single, podIP).toString())
      single.fail(`${JSON.stringify(podIP)} must equal status.podIPs[0].ip (${JSON.stringify(list[0].value)})`);
  }
  if (ips.length === 2 && ips[0].kind() === ips[1].kind()) list[1].fail(`must be of a different IP family than ${ips[0].toString()}`);
  return ips.map((ip) => ip.toString());
}

// ---------------------------------------------------------------------------
// Node and KubeProxyConfiguration

function toNode(doc: Field, origin: Origin): Node {
  const nameField = doc.get('metadata').get('name');
  const name = nameField.str();
  checkName(nameField, name, DNS1123_SUBDOMAIN);
  const addresses = doc
    .get('status')
    .get('addresses')
    .items()
    .map((f): NodeAddress => {
      const type = f.get('type').str();
      const addressField = f.get('address');
      const address = addressField.str();
      const isIP = type === 'InternalIP' || type === 'ExternalIP';
      return { type, address: isIP ? parseIP(addressField, address).toString() : address };
    });
  const zone = doc.get('metadata').get('labels').get(ZONE_TOPOLOGY_KEY).optStr();
  const allocatableMilliCPU = milliCPU(doc.get('status').get('allocatable').get('cpu'));
  const ready = doc
    .get('status')
    .get('conditions')
    .items()
    .find((c) => c.get('type').optStr() === 'Ready');
  const labels = doc.get('metadata').get('labels');
  const controlPlane = CONTROL_PLANE_LABELS.some((label) => labels.get(label).optStr() !== undefined);
  return {
    origin,
    name,
    addresses,
    ...(zone !== undefined && { zone }),
    ...(allocatableMilliCPU !== undefined && { allocatableMilliCPU }),
    ...(ready && ready.get('status').optStr() !== 'True' && { notReady: true as const }),
    ...(controlPlane && { controlPlane: true as const }),
  };
}

/** The role labels by which the EndpointSlice controller leaves a Node out of its zones' CPU. */
const CONTROL_PLANE_LABELS = ['node-role.kubernetes.io/control-plane', 'node-role.kubernetes.io/master'];

/**
 * A CPU quantity ("4", "3920m", "1.5", "2k") in millicores. Written by hand:
 * no library here parses Kubernetes quantities, and CPU takes only a number
 * with an optional decimal SI suffix. Anything else is warned about and left out.
 */
function milliCPU(f: Field): number | undefined {
  if (!f.isSet) return undefined;
  const text = String(f.value).trim();
  const m = /^(\d+(?:\.\d+)?)(n|u|m|k|M|G|T|P|E)?$/.exec(text);
  if (!m) {
    f.warn(
      `${JSON.stringify(text)} is not a CPU quantity (a number, optionally with m or another decimal suffix); the Node's CPU is left out`,
    );
    return undefined;
  }
  const scale: Record<string, number> = { n: 1e-6, u: 1e-3, m: 1, '': 1e3, k: 1e6, M: 1e9, G: 1e12, T: 1e15, P: 1e18, E: 1e21 };
  return Number(m[1]) * scale[m[2] ?? ''];
}

function toProxyConfig(doc: Field, origin: Origin): ProxyConfig {
  const clusterCIDRField = doc.get('clusterCIDR');
  const clusterCIDRs = (clusterCIDRField.optStr() ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => parseCIDR(clusterCIDRField, s).text);

  const addressFields = doc.get('nodePortAddresses').items();
  const nodePortAddresses = addressFields.map((f) => {
    const text = f.str();
    // "primary" selects each node's primary IPs; kube-proxy refuses it mixed with CIDRs.
    if (text !== 'primary') return parseCIDR(f, text).text;
    if (addressFields.length > 1) f.fail('"primary" cannot be combined with CIDRs');
    return text;
  });

  const conntrack = doc.get('conntrack');
  const timeouts: ConntrackTimeouts = {
    tcpEstablishedTimeout: durationSeconds(conntrack.get('tcpEstablishedTimeout')),
    tcpCloseWaitTimeout: durationSeconds(conntrack.get('tcpCloseWaitTimeout')),
    udpTimeout: durationSeconds(conntrack.get('udpTimeout')),
    udpStreamTimeout: durationSeconds(conntrack.get('udpStreamTimeout')),
  };
  const mode = doc.get('mode').optStr() ?? '';
  const minSyncPeriod = minSyncPeriodOf(doc, mode);
  return { origin, clusterCIDRs, nodePortAddresses, mode, conntrack: timeouts, ...(minSyncPeriod !== undefined && { minSyncPeriod }) };
}

/**
 * The minSyncPeriod of the mode in force, in seconds: v1alpha1 keeps one per
 * mode (`nftables`, `iptables` for iptables and the empty mode, `ipvs`),
 * v1alpha2 one at the top; the top one wins when both are given.
 */
function minSyncPeriodOf(doc: Field, mode: string): number | undefined {
  const top = doc.get('minSyncPeriod');
  const field = top.isSet ? top : doc.get(mode === '' ? 'iptables' : mode).get('minSyncPeriod');
  const nanoseconds = durationNanoseconds(field);
  return nanoseconds === undefined ? undefined : nanoseconds / 1e9;
}

const DURATION_UNIT_NANOSECONDS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
const DURATION = /^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|0)$/;
const DURATION_PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;

/**
 * A Go time.Duration string ("24h0m0s", "1m30s") in whole seconds, truncated as
 * kube-proxy does; 0 means "keep the default", so it maps to undefined.
 */
function durationSeconds(f: Field): number | undefined {
  const nanoseconds = durationNanoseconds(f);
  if (nanoseconds === undefined) return undefined;
  const whole = Math.floor(nanoseconds / 1e9);
  if (nanoseconds > 0 && whole === 0) {
    f.fail(`${JSON.stringify(f.value)} is less than a second; use at least 1s, or 0s to keep the default`);
  }
  return whole === 0 ? undefined : whole;
}

/** A Go time.Duration string in nanoseconds (whole); undefined when the field is not set. */
function durationNanoseconds(f: Field): number | undefined {
  if (!f.isSet) return undefined;
  const nanoseconds = typeof f.value === 'string' ? parseGoDuration(f.value) : undefined;
  if (nanoseconds === undefined) f.fail(`must be a duration like "24h0m0s", "1h", "30s" or "1m30s", got ${describe(f.value)}`);
  if (nanoseconds < 0) f.fail('must not be negative');
  return nanoseconds;
}

/** A Go time.Duration string ("1m30s", "500ms", "0") in whole nanoseconds, or undefined when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  let nanoseconds = 0;
  for (const [, amount, unit] of match[2].matchAll(DURATION_PART)) {
    nanoseconds += Number(amount) * DURATION_UNIT_NANOSECONDS[unit];
  }
  return (match[1] === '-' ? -1 : 1) * Math.floor(nanoseconds);
}

// ---------------------------------------------------------------------------
// Names

interface NameRule {
  pattern: RegExp;
  maxLength: number;
  description: string;
}

const RFC1035_LABEL: NameRule = {
  pattern: /^[a-z]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description:
    "an RFC 1035 label: at most 63 characters, lowercase letters, digits and '-', " +
    'starting with a letter and ending with a letter or digit',
};
const DNS1123_LABEL: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/,
  maxLength: 63,
  description:
    "a DNS-1123 label: at most 63 characters, lowercase letters, digits and '-', " + 'starting and ending with a letter or digit',
};
const DNS1123_SUBDOMAIN: NameRule = {
  pattern: /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
  maxLength: 253,
  description: 'a DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels',
};

/** Names only name things in svcpath: one the API server would refuse is used as it is. */
function checkName(f: Field, name: string, rule: NameRule): void {
  if (name.length > rule.maxLength || !rule.pattern.test(name)) {
    f.warn(`${JSON.stringify(name)} is not ${rule.description}; ${USED_AS_GIVEN}`);
  }
}

function namespaceOf(meta: Field): string {
  const field = meta.get('namespace');
  const namespace = field.optStr() || 'default';
  checkName(field, namespace, DNS1123_LABEL);
  return namespace;
}

/** IANA_SVC_NAME (RFC 6335), what a named targetPort must be. */
function ianaServiceName(f: Field, name: string): string {
  const valid =
    name.length <= 15 &&
    /^[-a-z0-9]+$/.test(name) &&
    /[a-z]/.test(name) &&
    !name.startsWith('-') &&
    !name.endsWith('-') &&
    !name.includes('--');
  if (!valid) {
    f.warn(
      `${JSON.stringify(name)} is neither a port number nor a port name (IANA_SVC_NAME: at most 15 characters, ` +
        `lowercase letters, digits and '-', at least one letter, no leading, trailing or double '-'); ${USED_AS_GIVEN}`,
    );
  }
  return name;
}

/** Fails on the second of two list entries whose key is equal, or warns, saying what svcpath does `instead`. */
function checkUnique<T>(
  fields: Field[],
  values: T[],
  key: (v: T) => string,
  show: (v: T) => string,
  subField?: string,
  instead?: string,
): void {
  const first = new Map<string, number>();
  values.forEach((value, i) => {
    const k = key(value);
    const earlier = first.get(k);
    if (earlier === undefined) {
      first.set(k, i);
      return;
    }
    const duplicate = subField ? fields[i].get(subField) : fields[i];
    const problem = `${show(value)} is already used by ${fields[earlier].path}`;
    if (instead) duplicate.warn(`${problem}; ${instead}`);
    else duplicate.fail(problem);
  });
}

// ---------------------------------------------------------------------------
// Addresses

type IP = ipaddr.IPv4 | ipaddr.IPv6;

interface Cidr {
  ip: IP;
  prefix: number;
  /** Canonical form: the network address and the prefix length. */
  text: string;
}

/**
 * An IP address as the API server's strict validation reads it: IPv4 only as four
 * decimal parts without leading zeros (ipaddr.js alone would also take "10.1" and
 * hex), IPv6 without a zone and not IPv4-mapped.
 */
function parseIP(f: Field, text: string): IP {
  // node:net says which form a valid address has without throwing, as ipaddr.js's isValid does
  // for the other family (the slow part of reading many events); the rest words what is wrong.
  if (isIPv4(text)) return ipaddr.IPv4.parse(text);
  if (!isIPv6(text) && ipaddr.IPv4.isValid(text)) {
    if (!ipaddr.IPv4.isValidFourPartDecimal(text)) {
      f.fail(`${JSON.stringify(text)} is not a valid IP address: IPv4 must be four decimal numbers without leading zeros`);
    }
    return ipaddr.IPv4.parse(text);
  }
  if (ipaddr.IPv6.isValid(text)) {
    const ip = ipaddr.IPv6.parse(text);
    if (ip.zoneId !== undefined) {
      f.fail(`${JSON.stringify(text)} is not a valid IP address: a zone (%${ip.zoneId}) is not allowed`);
    }
    if (ip.isIPv4MappedAddress()) {
      f.fail(`${JSON.stringify(text)} is not a valid IP address: IPv4-mapped IPv6 addresses are not allowed`);
    }
    return ip;
  }
  f.fail(`${JSON.stringify(text)} is not a valid IP address`);
}

const NON_UNICAST_RANGES: Record<string, string> = {
  unspecified: 'an unspecified',
  loopback: 'a loopback',
  linkLocal: 'a link-local',
  multicast: 'a multicast',
};

/**
 * An address the API server wants unicast (endpoints and external IPs); the
 * datapath takes any, so another is a warning saying what it does `instead`.
 */
function parseUnicastIP(f: Field, text: string, instead: string): IP {
  const ip = parseIP(f, text);
  const range = NON_UNICAST_RANGES[ip.range()];
  if (range) f.warn(`${text} is ${range} address, which cannot be used here; ${instead}`);
  return ip;
}

function parseCIDR(f: Field, text: string): Cidr {
  const v4 = ipaddr.IPv4.isValidCIDR(text);
  const valid = v4 ? ipaddr.IPv4.isValidCIDRFourPartDecimal(text) : ipaddr.IPv6.isValidCIDR(text);
  if (!valid) f.fail(`${JSON.stringify(text)} is not a valid CIDR (like 10.96.0.0/12 or fd00::/108)`);
  const [, prefix] = ipaddr.parseCIDR(text);
  // Host bits are allowed (the API server only warns about them): the range is that of the network address.
  const ip = v4 ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
  if (ip.range() === 'ipv4Mapped') {
    f.fail(`${JSON.stringify(text)} is not a valid CIDR: IPv4-mapped IPv6 addresses are not allowed`);
  }
  return { ip, prefix, text: `${ip.toString()}/${prefix}` };
}

/** A CIDR already checked and made canonical. */
function cidrOf(text: string): Cidr {
  const [ip, prefix] = ipaddr.parseCIDR(text);
  return { ip, prefix, text };
}

function contains(range: Cidr, ip: IP): boolean {
  return range.ip.kind() === ip.kind() && ip.match(range.ip, range.prefix);
}

function familyOf(ip: IP): IPFamily {
  return ip.kind() === 'ipv4' ? 'IPv4' : 'IPv6';
}

/** --service-cluster-ip-range in canonical form: one CIDR per IP family, the primary family first, as the API server takes it. */
function flagRanges(texts: string[], warnings: Warnings): string[] {
  if (texts.length === 0) throw inputError(['serviceClusterIPRanges'], 'at least one range is required');
  if (texts.length > 2) throw inputError(['serviceClusterIPRanges'], `at most 2 (one per IP family), got ${texts.length}`);
  const ranges = texts.map((text, i) => parseCIDR(new Field([], `serviceClusterIPRanges[${i}]`, text, warnings), text));
  if (ranges.length === 2 && ranges[0].ip.kind() === ranges[1].ip.kind()) {
    throw inputError(['serviceClusterIPRanges[1]'], `must be of a different IP family than ${ranges[0].text}`);
  }
  return ranges.map((r) => r.text);
}

interface PortRange {
  first: number;
  last: number;
}

function serviceNodePortRange([first, last]: [number, number]): PortRange {
  const valid = [first, last].every((p) => Number.isInteger(p) && p >= 1 && p <= 65535) && first <= last;
  if (!valid) throw inputError(['serviceNodePortRange'], `${first}-${last} is not a port range within 1-65535`);
  return { first, last };
}

// ---------------------------------------------------------------------------

/** A value inside one object, with the path that names it in error messages ("spec.ports[1].name"). */
class Field {
  constructor(
    /** [file, object]: what precedes the path in a message. */
    private readonly where: string[],
    readonly path: string,
    readonly value: unknown,
    private readonly warnings: Warnings,
  ) {}

  /** Unset covers null: kubectl prints "endpoints: null" and the like for empty fields. */
  get isSet(): boolean {
    return this.value !== undefined && this.value !== null;
  }

  fail(problem: string): never {
    throw inputError([...this.where, this.path || undefined], problem);
  }

  /** A problem the datapath can live with: `problem` ends with what svcpath does instead. */
  warn(problem: string): void {
    this.warnings.add([...this.where, this.path || undefined], problem);
  }

  get(key: string): Field {
    if (this.isSet && !isMapping(this.value)) this.fail(`must be a mapping, got ${describe(this.value)}`);
    const value = this.isSet ? (this.value as Record<string, unknown>)[key] : undefined;
    return new Field(this.where, this.path ? `${this.path}.${key}` : key, value, this.warnings);
  }

  items(): Field[] {
    if (!this.isSet) return [];
    if (!Array.isArray(this.value)) this.fail(`must be a list, got ${describe(this.value)}`);
    return this.value.map((v, i) => new Field(this.where, `${this.path}[${i}]`, v, this.warnings));
  }

  optStr(): string | undefined {
    if (!this.isSet) return undefined;
    if (typeof this.value !== 'string') this.fail(`must be a string, got ${describe(this.value)}`);
    return this.value;
  }

  str(missing = 'required'): string {
    const s = this.optStr();
    if (!s) this.fail(missing);
    return s;
  }

  optInt(min: number, max: number): number | undefined {
    if (!this.isSet) return undefined;
    if (typeof this.value !== 'number' || !Number.isInteger(this.value)) {
      this.fail(`must be an integer, got ${describe(this.value)}`);
    }
    if (this.value < min || this.value > max) this.fail(`${this.value} is out of range ${min}..${max}`);
    return this.value;
  }

  int(min: number, max: number): number {
    const n = this.optInt(min, max);
    if (n === undefined) this.fail('required');
    return n;
  }

  optBool(): boolean | undefined {
    if (!this.isSet) return undefined;
    if (typeof this.value !== 'boolean') this.fail(`must be true or false, got ${describe(this.value)}`);
    return this.value;
  }

  /** undefined when unset or "", which the API server replaces with the default. */
  optOneOf<T extends string>(allowed: readonly T[]): T | undefined {
    const s = this.optStr();
    if (!s) return undefined;
    if (!allowed.includes(s as T)) this.fail(`${JSON.stringify(s)} is not one of ${allowed.join(', ')}`);
    return s as T;
  }

  oneOf<T extends string>(allowed: readonly T[]): T {
    const s = this.optOneOf(allowed);
    if (s === undefined) this.fail(`required: one of ${allowed.join(', ')}`);
    return s;
  }

  /** Label maps such as spec.selector; an empty map is no map, as the API stores it. */
  optStringMap(): Record<string, string> | undefined {
    if (!this.isSet) return undefined;
    if (!isMapping(this.value)) this.fail(`must be a mapping, got ${describe(this.value)}`);
    const entries = Object.keys(this.value).map((key) => [key, this.get(key).optStr() ?? ''] as const);
    return entries.length > 0 ? Object.fromEntries(entries) : undefined;
  }
}
