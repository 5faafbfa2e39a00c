/**
 * The control plane's view of the datapath's structs and maps
 * (datapath/layout.ts). Each struct names the prefix of its constants there,
 * and test/layout.test.ts checks every offset and size here against the
 * constants the WebAssembly module exports, so the two sides cannot drift.
 *
 * Addresses and ports are encoded in network byte order, everything else
 * little-endian, as the datapath expects.
 */
import ipaddr from 'ipaddr.js';

export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'be16' | 'be32' | 'ipv4' | 'ipv6';

export interface Field {
  name: string;
  /** Suffix of the datapath constant holding this field's offset. */
  constant: string;
  offset: number;
  type: FieldType;
}

export interface Struct {
  name: string;
  /** Prefix of the datapath constants (`${prefix}_${field}` and `${prefix}_SIZE`). */
  prefix: string;
  size: number;
  fields: Field[];
}

const FIELD_SIZE: Record<FieldType, number> = { u8: 1, u16: 2, u32: 4, u64: 8, be16: 2, be32: 4, ipv4: 4, ipv6: 16 };

function struct(name: string, prefix: string, size: number, fields: Array<[string, string, number, FieldType]>): Struct {
  return { name, prefix, size, fields: fields.map(([n, constant, offset, type]) => ({ name: n, constant, offset, type })) };
}

export const CONFIG = struct('config', 'CONFIG', 132, [
  ['seed', 'SEED', 0, 'u32'],
  ['ctTcpEstablished', 'CT_TCP_ESTABLISHED', 4, 'u32'],
  ['ctTcpClosing', 'CT_TCP_CLOSING', 8, 'u32'],
  ['ctUdp', 'CT_UDP', 12, 'u32'],
  ['ctUdpStream', 'CT_UDP_STREAM', 16, 'u32'],
  ['flags', 'FLAGS', 20, 'u32'],
  ['snatAddress', 'SNAT_ADDR4', 24, 'ipv4'],
  ['snatPortMin', 'SNAT_PORT_MIN', 28, 'u16'],
  ['snatPortMax', 'SNAT_PORT_MAX', 30, 'u16'],
  ['podCidr', 'POD_CIDR4', 32, 'ipv4'],
  ['podMask', 'POD_MASK4', 36, 'ipv4'],
  ['snatAddress6', 'SNAT_ADDR6', 48, 'ipv6'],
  ['podCidr6', 'POD_CIDR6', 64, 'ipv6'],
  ['podMask6', 'POD_MASK6', 80, 'ipv6'],
  ['shard', 'SHARD', 128, 'u16'],
  ['shards', 'SHARDS', 130, 'u16'],
]);

export const LB4_KEY = struct('lb4_key', 'LB4_KEY', 8, [
  ['address', 'ADDRESS', 0, 'ipv4'],
  ['port', 'DPORT', 4, 'be16'],
  ['proto', 'PROTO', 6, 'u8'],
  ['scope', 'SCOPE', 7, 'u8'],
]);

export const LB4_SERVICE = struct('lb4_service', 'LB4_SVC', 24, [
  ['serviceId', 'SERVICE_ID', 0, 'u32'],
  ['backendCount', 'BACKEND_COUNT', 4, 'u32'],
  ['localBackendCount', 'LOCAL_BACKEND_COUNT', 8, 'u32'],
  ['flags', 'FLAGS', 12, 'u32'],
  ['affinityTimeout', 'AFFINITY_TIMEOUT', 16, 'u32'],
  ['revNatIndex', 'REV_NAT_INDEX', 20, 'u32'],
]);

export const LB4_BACKEND = struct('lb4_backend', 'LB4_BE', 8, [
  ['address', 'ADDRESS', 0, 'ipv4'],
  ['port', 'PORT', 4, 'be16'],
  ['proto', 'PROTO', 6, 'u8'],
  ['flags', 'FLAGS', 7, 'u8'],
]);

export const LB4_REVNAT = struct('lb4_revnat', 'LB4_REVNAT', 8, [
  ['address', 'ADDRESS', 0, 'ipv4'],
  ['port', 'PORT', 4, 'be16'],
]);

export const CT4_TUPLE = struct('ct4_tuple', 'CT4', 16, [
  ['saddr', 'SADDR', 0, 'ipv4'],
  ['daddr', 'DADDR', 4, 'ipv4'],
  ['sport', 'SPORT', 8, 'be16'],
  ['dport', 'DPORT', 10, 'be16'],
  ['proto', 'PROTO', 12, 'u8'],
  ['dir', 'DIR', 13, 'u8'],
]);

export const CT_ENTRY = struct('ct_entry', 'CT', 24, [
  ['backendId', 'BACKEND_ID', 0, 'u32'],
  ['revNatIndex', 'REV_NAT_INDEX', 4, 'u32'],
  ['serviceId', 'SERVICE_ID', 8, 'u32'],
  ['flags', 'FLAGS', 12, 'u16'],
  ['snatPort', 'SNAT_PORT', 14, 'be16'],
  ['lastSeen', 'LAST_SEEN', 16, 'u64'],
]);

export const LB_MEMBER_KEY = struct('lb_member_key', 'LB_MEMBER', 8, [
  ['table', 'TABLE', 0, 'u32'],
  ['backendId', 'BACKEND', 4, 'u32'],
]);

export const LB4_AFFINITY_KEY = struct('lb4_affinity_key', 'LB4_AFF', 8, [
  ['client', 'CLIENT', 0, 'ipv4'],
  ['serviceId', 'SERVICE_ID', 4, 'u32'],
]);

export const LB_AFFINITY = struct('lb_affinity', 'AFF', 16, [
  ['backendId', 'BACKEND_ID', 0, 'u32'],
  ['lastUsed', 'LAST_USED', 8, 'u64'],
]);

export const SNAT4_ORIGIN = struct('snat4_origin', 'SNAT4', 8, [
  ['address', 'ADDRESS', 0, 'ipv4'],
  ['port', 'PORT', 4, 'be16'],
  ['nodePort', 'NODE_PORT', 6, 'be16'],
]);

export const LB4_SRC_RANGE_KEY = struct('lb4_src_range_key', 'LB4_SRC', 12, [
  ['prefixlen', 'PREFIXLEN', 0, 'u32'],
  ['serviceId', 'SERVICE_ID', 4, 'be32'],
  ['address', 'ADDRESS', 8, 'ipv4'],
]);

export const LB6_KEY = struct('lb6_key', 'LB6_KEY', 20, [
  ['address', 'ADDRESS', 0, 'ipv6'],
  ['port', 'DPORT', 16, 'be16'],
  ['proto', 'PROTO', 18, 'u8'],
  ['scope', 'SCOPE', 19, 'u8'],
]);

export const LB6_BACKEND = struct('lb6_backend', 'LB6_BE', 20, [
  ['address', 'ADDRESS', 0, 'ipv6'],
  ['port', 'PORT', 16, 'be16'],
  ['proto', 'PROTO', 18, 'u8'],
  ['flags', 'FLAGS', 19, 'u8'],
]);

export const LB6_REVNAT = struct('lb6_revnat', 'LB6_REVNAT', 20, [
  ['address', 'ADDRESS', 0, 'ipv6'],
  ['port', 'PORT', 16, 'be16'],
]);

export const CT6_TUPLE = struct('ct6_tuple', 'CT6', 40, [
  ['saddr', 'SADDR', 0, 'ipv6'],
  ['daddr', 'DADDR', 16, 'ipv6'],
  ['sport', 'SPORT', 32, 'be16'],
  ['dport', 'DPORT', 34, 'be16'],
  ['proto', 'PROTO', 36, 'u8'],
  ['dir', 'DIR', 37, 'u8'],
]);

export const SNAT6_ORIGIN = struct('snat6_origin', 'SNAT6', 20, [
  ['address', 'ADDRESS', 0, 'ipv6'],
  ['port', 'PORT', 16, 'be16'],
  ['nodePort', 'NODE_PORT', 18, 'be16'],
]);

export const LB6_AFFINITY_KEY = struct('lb6_affinity_key', 'LB6_AFF', 20, [
  ['client', 'CLIENT', 0, 'ipv6'],
  ['serviceId', 'SERVICE_ID', 16, 'u32'],
]);

export const LB6_SRC_RANGE_KEY = struct('lb6_src_range_key', 'LB6_SRC', 24, [
  ['prefixlen', 'PREFIXLEN', 0, 'u32'],
  ['serviceId', 'SERVICE_ID', 4, 'be32'],
  ['address', 'ADDRESS', 8, 'ipv6'],
]);

export const NODE_IP6_KEY = struct('node_ip6', 'NODE_IP6', 16, [['address', 'ADDRESS', 0, 'ipv6']]);

/** A known service cluster IP range: LPM keys of the service_ranges maps. */
export const SVC_RANGE4_KEY = struct('svc_range4_key', 'SVC_RANGE4', 8, [
  ['prefixlen', 'PREFIXLEN', 0, 'u32'],
  ['address', 'ADDRESS', 4, 'ipv4'],
]);
export const SVC_RANGE6_KEY = struct('svc_range6_key', 'SVC_RANGE6', 20, [
  ['prefixlen', 'PREFIXLEN', 0, 'u32'],
  ['address', 'ADDRESS', 4, 'ipv6'],
]);

/** Key of the steer map: a frontend or backend endpoint, or (port and proto 0) an address; IPv4 as ::ffff:a.b.c.d. */
export const STEER_KEY = struct('steer_key', 'STEER', 20, [
  ['address', 'ADDRESS', 0, 'ipv6'],
  ['port', 'PORT', 16, 'be16'],
  ['proto', 'PROTO', 18, 'u8'],
]);
export const STEER_CLASS = struct('steer_class', 'STEER_CLASS', 4, [['flags', 'FLAGS', 0, 'u32']]);
export const STEER_F = { FRONTEND: 1 << 0, BACKEND: 1 << 1 } as const;

/** A packet svcpath rewrote, by what NAT leaves alone, and what it sent (datapath/conformance.ts). */
export const REWRITE_KEY = struct('rewrite_key', 'RW_KEY', 20, [
  ['family', 'FAMILY', 0, 'u8'],
  ['proto', 'PROTO', 1, 'u8'],
  ['payloadLength', 'PAYLOAD_LEN', 2, 'u16'],
  ['ipId', 'IP_ID', 4, 'be32'],
  ['l4A', 'L4_A', 8, 'be32'],
  ['l4B', 'L4_B', 12, 'be32'],
  ['payloadHash', 'PAYLOAD_HASH', 16, 'u32'],
]);
export const REWRITE = struct('rewrite', 'RW', 40, [
  ['source', 'SADDR', 0, 'ipv6'],
  ['destination', 'DADDR', 16, 'ipv6'],
  ['sport', 'SPORT', 32, 'be16'],
  ['dport', 'DPORT', 34, 'be16'],
  ['reason', 'REASON', 36, 'u8'],
  ['flags', 'FLAGS', 37, 'u8'],
]);
export const RW_F = { MASQUERADED: 1 << 0 } as const;
/**
 * Entries of the rewrites LRU map: rewritten packets between one's arrival
 * and the node's copy of it leaving, which in a capture are a few packets
 * apart. Small enough to stay in cache: a capture without the node's copies
 * (filtered on the arrivals' ports) evicts on every rewrite.
 */
export const REWRITE_ENTRIES = 1 << 13;
/**
 * How the node's copies of rewritten packets compared, by index of the
 * conformance map; and the node's masquerade tuples they taught (learned),
 * or would have but another live flow held (taken).
 */
export const CONFORMANCE_COUNTER = struct('conformance_counter', 'CONFORM', 8, [['count', 'COUNT', 0, 'u64']]);
export const CONFORM = { REPRODUCED: 0, OTHER_BACKEND: 1, DIFFERS: 2, LEARNED: 3, TAKEN: 4, MASQUERADE_DIFFERS: 5 } as const;

/** A request that arrived for a frontend, by its identity (a rewrite_key): its flow (datapath/node_masq.ts). */
export const ARRIVAL = struct('arrival', 'ARRIVAL', 36, [
  ['client', 'CLIENT', 0, 'ipv6'],
  ['frontend', 'FRONTEND', 16, 'ipv6'],
  ['clientPort', 'CLIENT_PORT', 32, 'be16'],
  ['frontendPort', 'FRONTEND_PORT', 34, 'be16'],
]);
/** Entries of the arrivals LRU map: as the rewrites map, a request's copy follows it closely. */
export const ARRIVAL_ENTRIES = 1 << 13;
/** A tuple the node masqueraded a flow to: backend -> the node's address and port, as the replies arrive. */
export const NODE_MASQ_KEY = struct('node_masq_key', 'NM_KEY', 40, [
  ['backend', 'BACKEND', 0, 'ipv6'],
  ['node', 'NODE', 16, 'ipv6'],
  ['backendPort', 'BACKEND_PORT', 32, 'be16'],
  ['nodePort', 'NODE_PORT', 34, 'be16'],
  ['proto', 'PROTO', 36, 'u8'],
]);
/** The flow holding a node tuple, and the tuple's own clock (CT_F flags, last frame on it). */
export const NODE_MASQ = struct('node_masq', 'NM', 48, [
  ['client', 'CLIENT', 0, 'ipv6'],
  ['frontend', 'FRONTEND', 16, 'ipv6'],
  ['clientPort', 'CLIENT_PORT', 32, 'be16'],
  ['frontendPort', 'FRONTEND_PORT', 34, 'be16'],
  ['flags', 'FLAGS', 36, 'u16'],
  ['lastSeen', 'LAST_SEEN', 40, 'u64'],
]);

export const FRAG6_KEY = struct('frag6_key', 'FRAG6', 40, [
  ['saddr', 'SADDR', 0, 'ipv6'],
  ['daddr', 'DADDR', 16, 'ipv6'],
  ['id', 'ID', 32, 'be32'],
  ['proto', 'PROTO', 36, 'u8'],
]);

/** The value of set-like maps: always 1. */
export const PRESENCE = struct('presence', 'PRESENCE', 4, [['present', 'VALUE', 0, 'u32']]);

export const NODE_IP4_KEY = struct('node_ip4', 'NODE_IP4', 4, [['address', 'ADDRESS', 0, 'ipv4']]);

export const FRAG4_KEY = struct('frag4_key', 'FRAG4', 12, [
  ['saddr', 'SADDR', 0, 'ipv4'],
  ['daddr', 'DADDR', 4, 'ipv4'],
  ['id', 'ID', 8, 'be16'],
  ['proto', 'PROTO', 10, 'u8'],
]);

export const FRAG4_PORTS = struct('frag4_ports', 'FRAG4', 4, [
  ['sport', 'SPORT', 0, 'be16'],
  ['dport', 'DPORT', 2, 'be16'],
]);

export const TRAFFIC_COUNTER = struct('traffic_counter', 'METRIC', 16, [
  ['packets', 'PACKETS', 0, 'u64'],
  ['bytes', 'BYTES', 8, 'u64'],
]);

export const FLOW_COUNTER = struct('flow_counter', 'STAT', 24, [
  ['packets', 'PACKETS', 0, 'u64'],
  ['bytes', 'BYTES', 8, 'u64'],
  ['flows', 'FLOWS', 16, 'u64'],
]);

/**
 * Packets a cluster change affected, per kind: the flowChanges map's value,
 * at index FLOW_CHANGES.indexOf(kind) + 1 (index 0 is never counted).
 */
export const FLOW_CHANGE_COUNTER = struct('flow_change_counter', 'FC', 8, [['packets', 'PACKETS', 0, 'u64']]);

export const FRAME_DESC = struct('frame_desc', 'DESC', 48, [
  ['data', 'DATA', 0, 'u32'],
  ['len', 'LEN', 4, 'u32'],
  ['wireLen', 'WIRE_LEN', 8, 'u32'],
  ['capacity', 'CAPACITY', 12, 'u32'],
  ['tsSecLo', 'TS_SEC_LO', 16, 'u32'],
  ['tsSecHi', 'TS_SEC_HI', 20, 'u32'],
  ['tsNsec', 'TS_NSEC', 24, 'u32'],
  ['verdict', 'VERDICT', 28, 'u8'],
  ['reason', 'REASON', 29, 'u8'],
  ['flags', 'FLAGS', 30, 'u16'],
  ['serviceId', 'SERVICE_ID', 32, 'u32'],
  ['backendId', 'BACKEND_ID', 36, 'u32'],
  ['linktype', 'LINKTYPE', 40, 'u32'],
  ['caplen', 'CAPLEN', 44, 'u32'],
]);

/** A u32 key: ids, indices. */
export const U32_KEY = struct('u32', 'U32', 4, [['value', 'VALUE', 0, 'u32']]);

/** Size constants whose name does not follow `${prefix}_SIZE`. */
export const SIZE_CONSTANTS: Record<string, string> = {
  ct4_tuple: 'CT4_TUPLE_SIZE',
  ct_entry: 'CT_ENTRY_SIZE',
  lb_member_key: 'LB_MEMBER_KEY_SIZE',
  lb4_affinity_key: 'LB4_AFF_KEY_SIZE',
  lb4_src_range_key: 'LB4_SRC_KEY_SIZE',
  node_ip4: 'NODE_IP4_KEY_SIZE',
  frag4_key: 'FRAG4_KEY_SIZE',
  frag4_ports: 'FRAG4_PORTS_SIZE',
  ct6_tuple: 'CT6_TUPLE_SIZE',
  lb6_key: 'LB6_KEY_SIZE',
  lb6_affinity_key: 'LB6_AFF_KEY_SIZE',
  lb6_src_range_key: 'LB6_SRC_KEY_SIZE',
  node_ip6: 'NODE_IP6_KEY_SIZE',
  frag6_key: 'FRAG6_KEY_SIZE',
  steer_key: 'STEER_KEY_SIZE',
  svc_range4_key: 'SVC_RANGE4_KEY_SIZE',
  svc_range6_key: 'SVC_RANGE6_KEY_SIZE',
  trace_record: 'TRACE_RECORD_SIZE',
};

export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, LRU_HASH: 9, LPM_TRIE: 11 } as const;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

export const ERRNO_NAMES: Record<number, string> = { 2: 'ENOENT', 7: 'E2BIG', 12: 'ENOMEM', 17: 'EEXIST', 22: 'EINVAL' };

export interface MapSpec {
  id: number;
  name: string;
  type: number;
  key: Struct;
  /** undefined for the Maglev map, whose value is M u32 backend ids. */
  value?: Struct;
}

export const MAPS = {
  config: { id: 0, name: 'config', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: CONFIG },
  lb4Services: { id: 1, name: 'lb4_services', type: BPF_MAP_TYPE.HASH, key: LB4_KEY, value: LB4_SERVICE },
  lb4Backends: { id: 2, name: 'lb4_backends', type: BPF_MAP_TYPE.HASH, key: U32_KEY, value: LB4_BACKEND },
  lb4Revnat: { id: 3, name: 'lb4_reverse_nat', type: BPF_MAP_TYPE.HASH, key: U32_KEY, value: LB4_REVNAT },
  maglev: { id: 4, name: 'lb_maglev', type: BPF_MAP_TYPE.HASH, key: U32_KEY },
  ct4: { id: 5, name: 'ct4', type: BPF_MAP_TYPE.LRU_HASH, key: CT4_TUPLE, value: CT_ENTRY },
  metrics: { id: 6, name: 'metrics', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: TRAFFIC_COUNTER },
  serviceStats: { id: 7, name: 'service_stats', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: FLOW_COUNTER },
  backendStats: { id: 8, name: 'backend_stats', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: FLOW_COUNTER },
  lbMembers: { id: 9, name: 'lb_members', type: BPF_MAP_TYPE.HASH, key: LB_MEMBER_KEY, value: PRESENCE },
  lb4Affinity: { id: 10, name: 'lb4_affinity', type: BPF_MAP_TYPE.LRU_HASH, key: LB4_AFFINITY_KEY, value: LB_AFFINITY },
  snat4: { id: 11, name: 'snat4', type: BPF_MAP_TYPE.LRU_HASH, key: CT4_TUPLE, value: SNAT4_ORIGIN },
  lb4SourceRanges: { id: 12, name: 'lb4_source_ranges', type: BPF_MAP_TYPE.LPM_TRIE, key: LB4_SRC_RANGE_KEY, value: PRESENCE },
  nodeIps4: { id: 13, name: 'node_ips4', type: BPF_MAP_TYPE.HASH, key: NODE_IP4_KEY, value: PRESENCE },
  frag4: { id: 14, name: 'frag4', type: BPF_MAP_TYPE.LRU_HASH, key: FRAG4_KEY, value: FRAG4_PORTS },
  lb6Services: { id: 15, name: 'lb6_services', type: BPF_MAP_TYPE.HASH, key: LB6_KEY, value: LB4_SERVICE },
  lb6Backends: { id: 16, name: 'lb6_backends', type: BPF_MAP_TYPE.HASH, key: U32_KEY, value: LB6_BACKEND },
  lb6Revnat: { id: 17, name: 'lb6_reverse_nat', type: BPF_MAP_TYPE.HASH, key: U32_KEY, value: LB6_REVNAT },
  ct6: { id: 18, name: 'ct6', type: BPF_MAP_TYPE.LRU_HASH, key: CT6_TUPLE, value: CT_ENTRY },
  snat6: { id: 19, name: 'snat6', type: BPF_MAP_TYPE.LRU_HASH, key: CT6_TUPLE, value: SNAT6_ORIGIN },
  lb6Affinity: { id: 20, name: 'lb6_affinity', type: BPF_MAP_TYPE.LRU_HASH, key: LB6_AFFINITY_KEY, value: LB_AFFINITY },
  lb6SourceRanges: { id: 21, name: 'lb6_source_ranges', type: BPF_MAP_TYPE.LPM_TRIE, key: LB6_SRC_RANGE_KEY, value: PRESENCE },
  nodeIps6: { id: 22, name: 'node_ips6', type: BPF_MAP_TYPE.HASH, key: NODE_IP6_KEY, value: PRESENCE },
  frag6: { id: 23, name: 'frag6', type: BPF_MAP_TYPE.LRU_HASH, key: FRAG6_KEY, value: FRAG4_PORTS },
  steer: { id: 24, name: 'steer', type: BPF_MAP_TYPE.HASH, key: STEER_KEY, value: STEER_CLASS },
  rewrites: { id: 25, name: 'rewrites', type: BPF_MAP_TYPE.LRU_HASH, key: REWRITE_KEY, value: REWRITE },
  conformance: { id: 26, name: 'conformance', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: CONFORMANCE_COUNTER },
  serviceRanges4: { id: 27, name: 'service_ranges4', type: BPF_MAP_TYPE.LPM_TRIE, key: SVC_RANGE4_KEY, value: PRESENCE },
  serviceRanges6: { id: 28, name: 'service_ranges6', type: BPF_MAP_TYPE.LPM_TRIE, key: SVC_RANGE6_KEY, value: PRESENCE },
  arrivals: { id: 29, name: 'arrivals', type: BPF_MAP_TYPE.LRU_HASH, key: REWRITE_KEY, value: ARRIVAL },
  nodeMasq: { id: 30, name: 'node_masq', type: BPF_MAP_TYPE.LRU_HASH, key: NODE_MASQ_KEY, value: NODE_MASQ },
  flowChanges: { id: 31, name: 'flow_changes', type: BPF_MAP_TYPE.ARRAY, key: U32_KEY, value: FLOW_CHANGE_COUNTER },
} as const satisfies Record<string, MapSpec>;

export type MapName = keyof typeof MAPS;

/** Entries of the metrics map: reasons x verdicts. */
export const METRIC_ENTRIES = 64 << 3;

export const LB_SCOPE_EXTERNAL = 0;
export const SVC_F = {
  CLUSTER_IP: 1 << 0,
  NODEPORT: 1 << 1,
  EXTERNAL_IP: 1 << 2,
  LOADBALANCER: 1 << 3,
  EXT_LOCAL: 1 << 4,
  INT_LOCAL: 1 << 5,
  AFFINITY: 1 << 6,
  SOURCE_RANGE: 1 << 7,
  WILDCARD: 1 << 8,
} as const;
export const CFG_F = {
  MASQUERADE_ALL: 1 << 0,
  POD_CIDR4: 1 << 1,
  POD_CIDR6: 1 << 3,
  SNAT_ADDR6: 1 << 5,
  RESELECT_GONE: 1 << 6,
  /** A sync removed a frontend (control/runtime/rebase.ts): flows to one may still be tracked. */
  REMOVED_FRONTENDS: 1 << 7,
} as const;
export const BE_F_LOCAL = 1 << 0;
export const BE_F_GONE = 1 << 1;
export const CT_F = { SEEN_REPLY: 1 << 0, CLOSING: 1 << 1, SNAT: 1 << 2, FLUSHED: 1 << 3 } as const;
/** The zero-copy walker's format flags and stop reasons (datapath/capture.ts). */
export const PCAP_F = { BIG_ENDIAN: 1 << 0, NANOSECOND: 1 << 1 } as const;
export const WALK = { NEED_DATA: 0, BATCH_FULL: 1, ANOMALY: 2, TIME_REACHED: 3 } as const;
export const DESC_F_SNAT = 1 << 0;
export const DESC_F_OTHER_SHARD = 1 << 1;
export const DESC_F_INBOUND = 1 << 3;
export const DESC_F_OUTBOUND = 1 << 4;
/** The packet made its flow's conntrack entry (what the service and backend stats count as a flow). */
export const DESC_F_NEW_FLOW = 1 << 9;
export const DESC_F_TRACE = 1 << 15;
/** What a cluster change did to a packet's flow (verdict lines' flowChange), and the descriptor flag of each. */
export const FLOW_CHANGES = ['STALE_BACKEND', 'FLUSHED', 'RESELECTED', 'AFFINITY_RESET'] as const;
export type FlowChange = (typeof FLOW_CHANGES)[number];
export const FLOW_CHANGE_FLAGS: Record<FlowChange, number> = {
  STALE_BACKEND: 1 << 5,
  FLUSHED: 1 << 6,
  RESELECTED: 1 << 7,
  AFFINITY_RESET: 1 << 8,
};

/** One step of a traced frame (datapath/trace.ts). */
export const TRACE_RECORD = struct('trace_record', 'TRACE', 112, [
  ['kind', 'KIND', 0, 'u8'],
  ['map', 'MAP', 1, 'u8'],
  ['found', 'FOUND', 2, 'u8'],
  ['keyLen', 'KEY_LEN', 3, 'u8'],
  ['frame', 'FRAME', 4, 'u32'],
  ['valueLen', 'VALUE_LEN', 8, 'u32'],
]);
export const TRACE_KEY_OFFSET = 12;
export const TRACE_VALUE_OFFSET = 52;
export const TRACE_KIND = { LOOKUP: 1, MAGLEV: 2, VERDICT: 3 } as const;

export const IPPROTO: Record<string, number> = { ICMP: 1, TCP: 6, UDP: 17, SCTP: 132 };

/** XDP actions, index = code. */
export const VERDICTS = ['ABORTED', 'DROP', 'PASS', 'TX', 'REDIRECT'] as const;
export type Verdict = (typeof VERDICTS)[number];

/** Reason codes, index = code (0 unused). The README documents each. */
export const REASONS = [
  '',
  'SERVICE',
  'REPLY',
  'NO_SERVICE',
  'NO_ENDPOINTS',
  'NO_LOCAL_ENDPOINTS',
  'SOURCE_RANGE',
  'MALFORMED',
  'TRUNCATED',
  'NON_IP',
  'FRAGMENT',
  'STATE_MISMATCH',
  'NO_ROOM',
  'UNSERVED_PORT',
  'UNALLOCATED_IP',
  'SNAT_EXHAUSTED',
  'UNSUPPORTED_LINKTYPE',
  'FRAGMENT_UNTRACKED',
  'ICMP_RELATED',
  'OUTGOING',
  'OTHER_HOST',
] as const;

/** The link types the datapath parses (tcpdump.org LINKTYPE_* values). */
export const LINKTYPES = {
  NULL: 0,
  ETHERNET: 1,
  RAW_OPENBSD: 12,
  RAW: 101,
  LOOP: 108,
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  LINUX_SLL2: 276,
} as const;
export type Reason = Exclude<(typeof REASONS)[number], ''>;

export type StructValue = Record<string, number | string>;

/** Encodes an object into a struct's bytes; missing fields are zero. */
export function encode(s: Struct, value: StructValue): Uint8Array {
  const bytes = new Uint8Array(s.size);
  const view = new DataView(bytes.buffer);
  for (const f of s.fields) {
    const v = value[f.name];
    if (v === undefined) continue;
    switch (f.type) {
      case 'u8':
        view.setUint8(f.offset, v as number);
        break;
      case 'u16':
        view.setUint16(f.offset, v as number, true);
        break;
      case 'u32':
        view.setUint32(f.offset, v as number, true);
        break;
      case 'u64':
        view.setBigUint64(f.offset, BigInt(v), true);
        break;
      case 'be16':
        view.setUint16(f.offset, v as number, false);
        break;
      case 'be32':
        view.setUint32(f.offset, v as number, false);
        break;
      case 'ipv4':
        writeIPv4(view, f.offset, v as string);
        break;
      case 'ipv6':
        writeIPv6(view, f.offset, v as string);
        break;
    }
  }
  return bytes;
}

/** A dotted quad read by hand (most addresses), anything else by ipaddr. */
function writeIPv4(view: DataView, offset: number, ip: string): void {
  const quad = dottedQuad(ip);
  if (quad >= 0) view.setUint32(offset, quad, false);
  else new Uint8Array(view.buffer).set(ipaddr.IPv4.parse(ip).toByteArray(), offset);
}

const MAPPED = '::ffff:';

/** An IPv4-mapped address (every IPv4 steer key) read by hand, anything else by ipaddr. */
function writeIPv6(view: DataView, offset: number, ip: string): void {
  const quad = ip.startsWith(MAPPED) ? dottedQuad(ip.slice(MAPPED.length)) : -1;
  if (quad >= 0) {
    view.setUint16(offset + 10, 0xffff, false);
    view.setUint32(offset + 12, quad, false);
  } else new Uint8Array(view.buffer).set(ipaddr.IPv6.parse(ip).toByteArray(), offset);
}

/**
 * A plain dotted quad (four decimal bytes, no leading zeros: all a validated state
 * holds) as a number, read without allocating; -1 for anything else, which ipaddr reads.
 */
export function dottedQuad(ip: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let parts = 0;
  for (let i = 0; i <= ip.length; i++) {
    const c = i < ip.length ? ip.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 255 || ++parts > 4) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return -1;
      part = part * 10 + (c - 48);
      if (++digits > 3) return -1;
    } else return -1;
  }
  return parts === 4 ? value : -1;
}

/** Decodes a struct's bytes; u64 counters come back as numbers (exact below 2^53). */
export function decode(s: Struct, bytes: Uint8Array): StructValue {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: StructValue = {};
  for (const f of s.fields) {
    switch (f.type) {
      case 'u8':
        out[f.name] = view.getUint8(f.offset);
        break;
      case 'u16':
        out[f.name] = view.getUint16(f.offset, true);
        break;
      case 'u32':
        out[f.name] = view.getUint32(f.offset, true);
        break;
      case 'u64':
        out[f.name] = Number(view.getBigUint64(f.offset, true));
        break;
      case 'be16':
        out[f.name] = view.getUint16(f.offset, false);
        break;
      case 'be32':
        out[f.name] = view.getUint32(f.offset, false);
        break;
      case 'ipv4':
        out[f.name] = Array.from(bytes.subarray(f.offset, f.offset + 4)).join('.');
        break;
      case 'ipv6':
        out[f.name] = ipaddr.fromByteArray(Array.from(bytes.subarray(f.offset, f.offset + 16))).toString();
        break;
    }
  }
  return out;
}

export function fieldSize(f: Field): number {
  return FIELD_SIZE[f.type];
}

/** "ip:port", or "[ip]:port" for IPv6, as the verdicts and the summary write addresses. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}
