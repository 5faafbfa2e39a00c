/**
 * The cluster state svcpath reasons about: the subset of the Kubernetes API
 * objects that decide where a packet to a Service goes, after loading and
 * validation. Field names follow the API so that a reader who knows
 * `kubectl get -o yaml` output recognises them; defaults are already applied.
 */

export type Protocol = 'TCP' | 'UDP' | 'SCTP';
export type IPFamily = 'IPv4' | 'IPv6';

/** Where an object came from, for error messages: "file: Kind ns/name". */
export interface Origin {
  file: string;
  /** e.g. "Service default/web" */
  object: string;
}

export interface ServicePort {
  /** '' when the Service has a single unnamed port. */
  name: string;
  protocol: Protocol;
  port: number;
  /** Numeric target port, or the name of a container port. Defaults to `port`. */
  targetPort: number | string;
  nodePort?: number;
  appProtocol?: string;
}

export type ServiceType = 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
export type TrafficPolicy = 'Cluster' | 'Local';

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
  ipMode?: 'VIP' | 'Proxy';
}

export interface Service {
  origin: Origin;
  namespace: string;
  name: string;
  type: ServiceType;
  /** `spec.clusterIPs` (or `[spec.clusterIP]`); empty when unset, ['None'] for headless. */
  clusterIPs: string[];
  ipFamilies: IPFamily[];
  ipFamilyPolicy?: 'SingleStack' | 'PreferDualStack' | 'RequireDualStack';
  ports: ServicePort[];
  /** undefined when the Service has no selector (manually managed endpoints). */
  selector?: Record<string, string>;
  sessionAffinity: 'None' | 'ClientIP';
  /** sessionAffinityConfig.clientIP.timeoutSeconds, default 10800. */
  affinityTimeoutSeconds: number;
  externalTrafficPolicy: TrafficPolicy;
  internalTrafficPolicy: TrafficPolicy;
  externalIPs: string[];
  externalName?: string;
  loadBalancerIngress: LoadBalancerIngress[];
  loadBalancerSourceRanges: string[];
  loadBalancerClass?: string;
  allocateLoadBalancerNodePorts: boolean;
  publishNotReadyAddresses: boolean;
  healthCheckNodePort?: number;
  /** `spec.trafficDistribution` as written (PreferClose, PreferSameZone, PreferSameNode; kube-proxy ignores others). */
  trafficDistribution?: string;
  /**
   * The topology annotation as kube-proxy reads it: `service.kubernetes.io/topology-mode`,
   * else the older `service.kubernetes.io/topology-aware-hints` (Auto, Disabled, ...).
   */
  topologyAnnotation?: string;
}

export interface EndpointConditions {
  /** Unset conditions count as true, as the EndpointSlice API says for ready and serving. */
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

export interface Endpoint {
  addresses: string[];
  conditions: EndpointConditions;
  nodeName?: string;
  zone?: string;
  /** `hints`: the zones and nodes the EndpointSlice controller meant the endpoint for. */
  hints?: EndpointHints;
  hostname?: string;
  /** The Pod an endpoint derived from Pods stands for. */
  targetRef?: { kind: 'Pod'; namespace: string; name: string };
  /**
   * Conditions the manifest left unset (and which were defaulted above): the
   * Pod with the endpoint's address, if the state has one, decides them instead.
   */
  unsetConditions?: Array<keyof EndpointConditions>;
}

export interface EndpointHints {
  /** `hints.forZones[].name`. */
  forZones: string[];
  /** `hints.forNodes[].name` (Kubernetes 1.33 and later, PreferSameNode). */
  forNodes: string[];
}

export interface EndpointPort {
  /** '' when unnamed. */
  name: string;
  protocol: Protocol;
  /** undefined: the API allows a port without a number ("all ports"). */
  port?: number;
  appProtocol?: string;
}

export interface EndpointSlice {
  origin: Origin;
  namespace: string;
  name: string;
  /** The `kubernetes.io/service-name` label. */
  serviceName: string;
  addressType: 'IPv4' | 'IPv6' | 'FQDN';
  endpoints: Endpoint[];
  ports: EndpointPort[];
  managedBy?: string;
  /** Made by svcpath's EndpointSlice controller from Pods (control/cluster/endpointslice-controller.ts), not given. */
  derived?: boolean;
}

/** An address of a legacy Endpoints subset. */
export interface LegacyEndpointAddress {
  ip: string;
  nodeName?: string;
  hostname?: string;
}

/** A port of a legacy Endpoints subset; unlike an EndpointSlice port, it always has a number. */
export interface LegacyEndpointPort {
  /** '' when unnamed. */
  name: string;
  protocol: Protocol;
  port: number;
  appProtocol?: string;
}

/** Addresses that all offer the same ports. */
export interface LegacyEndpointSubset {
  addresses: LegacyEndpointAddress[];
  notReadyAddresses: LegacyEndpointAddress[];
  ports: LegacyEndpointPort[];
}

/**
 * A v1 Endpoints object, the API EndpointSlices replaced. It still matters for
 * a Service without EndpointSlices: the mirroring controller makes slices of it.
 */
export interface LegacyEndpoints {
  origin: Origin;
  namespace: string;
  /** The name of the Service it belongs to. */
  name: string;
  subsets: LegacyEndpointSubset[];
}

/** A named port of a Pod's container, what a named targetPort resolves through. */
export interface ContainerPort {
  /** '' when unnamed. */
  name: string;
  containerPort: number;
  protocol: Protocol;
}

/** A v1 Pod: what the EndpointSlice controller reads of it. */
export interface Pod {
  origin: Origin;
  namespace: string;
  name: string;
  labels: Record<string, string>;
  /** `status.podIPs` (or `[status.podIP]`), canonical; empty before the Pod has an IP. */
  podIPs: string[];
  nodeName?: string;
  hostname?: string;
  subdomain?: string;
  /** `status.phase`; Succeeded and Failed Pods are never endpoints. */
  phase?: string;
  /** The `Ready` condition of `status.conditions` is "True". */
  ready: boolean;
  /** `metadata.deletionTimestamp` is set. */
  terminating: boolean;
  /** The ports of `spec.containers[]` (and of restartable init containers, sidecars), in order. */
  containerPorts: ContainerPort[];
}

export interface NodeAddress {
  type: string; // InternalIP, ExternalIP, Hostname, ...
  address: string;
}

export interface Node {
  origin: Origin;
  name: string;
  addresses: NodeAddress[];
  /** The `topology.kubernetes.io/zone` label. */
  zone?: string;
  /** `status.allocatable.cpu` in millicores, what the EndpointSlice controller weighs zones by. */
  allocatableMilliCPU?: number;
  /** The Ready condition's status is not True; unset when the Node states no Ready condition. */
  notReady?: true;
  /** Labelled `node-role.kubernetes.io/control-plane` or `node-role.kubernetes.io/master`. */
  controlPlane?: true;
}

/** The parts of KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1) svcpath uses. */
export interface ProxyConfig {
  origin: Origin;
  clusterCIDRs: string[];
  nodePortAddresses: string[];
  /** `mode` as written; empty is kube-proxy's default on Linux, iptables. */
  mode: string;
  conntrack: ConntrackTimeouts;
  /** Seconds (fractions kept): how long kube-proxy waits after a sync before the next; unset: its default, 1 s. */
  minSyncPeriod?: number;
}

/** Seconds; undefined leaves the datapath's default. */
export interface ConntrackTimeouts {
  tcpEstablishedTimeout?: number;
  tcpCloseWaitTimeout?: number;
  udpTimeout?: number;
  udpStreamTimeout?: number;
}

/**
 * The service cluster IP ranges (KEP-1880): the union of the state's ServiceCIDR
 * objects and the API server's --service-cluster-ip-range, or unknown.
 */
export interface ServiceRanges {
  /** Every known range, canonical, the primary family's first; empty when the ranges are unknown. */
  cidrs: string[];
  /** Where the known ranges come from, each with its CIDRs, for messages: "172.20.0.0/16 from ServiceCIDR kubernetes". */
  source: string;
  /**
   * The ranges new cluster IPs are allocated from, the primary family's first: the
   * known ranges of ServiceCIDRs that are ready and not being deleted, and the flag's;
   * the API server's defaults when the ranges are unknown.
   */
  allocatable: string[];
}

/** A ServiceCIDR (networking.k8s.io/v1 or v1beta1): ranges the API server allocates cluster IPs from. */
export interface ServiceCIDR {
  origin: Origin;
  name: string;
  /** `spec.cidrs`, canonical; at most one per family. */
  cidrs: string[];
  /** Ready (its Ready condition is not False) and not being deleted: the allocator uses it for new cluster IPs. */
  allocatable: boolean;
}

export interface ClusterState {
  services: Service[];
  endpointSlices: EndpointSlice[];
  /** Optional so that states built by hand need not mention it; absent means none. */
  legacyEndpoints?: LegacyEndpoints[];
  nodes: Node[];
  /** Optional like legacyEndpoints; absent means none. */
  pods?: Pod[];
  proxyConfig?: ProxyConfig;
  /** Absent in states built by hand, which give their ranges to the compiler instead. */
  serviceRanges?: ServiceRanges;
  /** Human notes gathered while loading: skipped kinds, ignored fields. */
  notes: string[];
  /**
   * What the API server would refuse but a datapath still programs, each naming
   * file, object and field and saying what svcpath does instead. Optional like
   * legacyEndpoints; absent means none.
   */
  warnings?: string[];
}

/** One backend of one Service port, after slices are merged and target ports resolved. */
export interface ResolvedEndpoint {
  ip: string;
  port: number;
  conditions: EndpointConditions;
  nodeName?: string;
  /** The endpoint's `zone`, as its EndpointSlice says. */
  zone?: string;
  /** The endpoint's hints, which topology-aware routing follows (control/compile/topology.ts). */
  hints?: EndpointHints;
}

export interface ResolvedPort {
  port: ServicePort;
  endpoints: ResolvedEndpoint[];
}

/** A Service with its endpoints joined from its EndpointSlices, per Service port. */
export interface ResolvedService {
  service: Service;
  /**
   * Where the endpoints came from: EndpointSlices given in the manifests, slices
   * derived from Pods, a legacy Endpoints object, or nowhere.
   */
  endpointsFrom?: EndpointsSource;
  ports: ResolvedPort[];
}

export type EndpointsSource = 'EndpointSlices' | 'Pods' | 'Endpoints' | 'none';
