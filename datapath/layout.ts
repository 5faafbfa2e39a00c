// The datapath's contract with the control plane: map ids, the byte layout of
// every map key and value, the frame descriptor of a batch, verdicts and
// reason codes. Like Katran's balancer_structs.h, each struct is written out
// field by field with its offset.
//
// Byte order: addresses and ports are kept in network byte order, exactly as
// they sit in the packet, so the datapath compares and copies them without
// swapping. Ids, counters, flags and times are little-endian host values.
//
// The control plane reads every constant exported here at load time, and
// test/layout.test.ts checks its own field tables against them, so a layout
// change on one side of the boundary fails a test instead of corrupting maps.

// --- map types (the subset of enum bpf_map_type we model) -------------------
export const BPF_MAP_TYPE_HASH: u32 = 1;
export const BPF_MAP_TYPE_ARRAY: u32 = 2;
export const BPF_MAP_TYPE_LRU_HASH: u32 = 9;
export const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;

// --- update flags, as bpf(2) BPF_MAP_UPDATE_ELEM ----------------------------
export const BPF_ANY: u32 = 0;
export const BPF_NOEXIST: u32 = 1;
export const BPF_EXIST: u32 = 2;

// --- errno values returned negated by the map API ---------------------------
export const ENOENT: i32 = 2;
export const E2BIG: i32 = 7;
export const ENOMEM: i32 = 12;
export const EEXIST: i32 = 17;
export const EINVAL: i32 = 22;

// --- map ids: the datapath's fixed set of maps, like pinned map names -------
export const MAP_CONFIG: u32 = 0; // ARRAY[1] of config
export const MAP_LB4_SERVICES: u32 = 1; // HASH lb4_key -> lb4_service
export const MAP_LB4_BACKENDS: u32 = 2; // HASH backend_id -> lb4_backend
export const MAP_LB4_REVNAT: u32 = 3; // HASH rev_nat_index -> lb4_revnat
export const MAP_LB_MAGLEV: u32 = 4; // HASH table id -> u32[M] backend ids
export const MAP_CT4: u32 = 5; // LRU_HASH ct4_tuple -> ct_entry
export const MAP_METRICS: u32 = 6; // ARRAY (reason << 3 | verdict) -> traffic_counter
export const MAP_SERVICE_STATS: u32 = 7; // ARRAY service_id -> flow_counter
export const MAP_BACKEND_STATS: u32 = 8; // ARRAY backend_id -> flow_counter
export const MAP_LB_MEMBERS: u32 = 9; // HASH lb_member_key -> u32 (1): which backends a table holds
export const MAP_LB4_AFFINITY: u32 = 10; // LRU_HASH lb4_affinity_key -> lb_affinity
export const MAP_SNAT4: u32 = 11; // LRU_HASH ct4_tuple (reply direction) -> snat4_origin
export const MAP_LB4_SOURCE_RANGES: u32 = 12; // LPM_TRIE lb4_src_range_key -> u32 (1)
export const MAP_NODE_IPS4: u32 = 13; // HASH be32 address -> u32 (1): this node's addresses
export const MAP_FRAG4: u32 = 14; // LRU_HASH frag4_key -> frag4_ports
// The IPv6 twins, as Cilium keeps lb4_*/lb6_* and ct4/ct6 apart: IPv4 entries
// stay small, and each family's lookups touch only its own keys.
export const MAP_LB6_SERVICES: u32 = 15; // HASH lb6_key -> lb4_service (same value layout)
export const MAP_LB6_BACKENDS: u32 = 16; // HASH backend_id -> lb6_backend
export const MAP_LB6_REVNAT: u32 = 17; // HASH rev_nat_index -> lb6_revnat
export const MAP_CT6: u32 = 18; // LRU_HASH ct6_tuple -> ct_entry
export const MAP_SNAT6: u32 = 19; // LRU_HASH ct6_tuple (reply direction) -> snat6_origin
export const MAP_LB6_AFFINITY: u32 = 20; // LRU_HASH lb6_affinity_key -> lb_affinity
export const MAP_LB6_SOURCE_RANGES: u32 = 21; // LPM_TRIE lb6_src_range_key -> u32 (1)
export const MAP_NODE_IPS6: u32 = 22; // HASH address -> u32 (1)
export const MAP_FRAG6: u32 = 23; // LRU_HASH frag6_key -> frag4_ports (same value layout)
export const MAP_STEER: u32 = 24; // HASH steer_key -> u32 STEER_F_*: which endpoints are frontends and backends
export const MAP_REWRITES: u32 = 25; // LRU_HASH rewrite_key -> rewrite: packets svcpath rewrote, for the node's own copies
export const MAP_CONFORMANCE: u32 = 26; // ARRAY CONFORM_* -> conformance_counter
export const MAP_SERVICE_RANGES4: u32 = 27; // LPM_TRIE svc_range4_key -> u32 (1): the known service cluster IP ranges
export const MAP_SERVICE_RANGES6: u32 = 28; // LPM_TRIE svc_range6_key -> u32 (1)
export const MAP_ARRIVALS: u32 = 29; // LRU_HASH rewrite_key -> arrival: requests to frontends, for the node's copies of them
export const MAP_NODE_MASQ: u32 = 30; // LRU_HASH node_masq_key -> node_masq: the tuples the node masqueraded flows to
export const MAP_FLOW_CHANGES: u32 = 31; // ARRAY FC_* index -> flow_change_counter: packets per flowChange kind
export const MAP_COUNT: u32 = 32;

// --- struct config (value of MAP_CONFIG[0]) ---------------------------------
export const CONFIG_SEED: u32 = 0; // u32: Maglev and SNAT-port hash seed (--seed)
export const CONFIG_CT_TCP_ESTABLISHED: u32 = 4; // u32 seconds (also SCTP)
export const CONFIG_CT_TCP_CLOSING: u32 = 8; // u32 seconds, after FIN or RST
export const CONFIG_CT_UDP: u32 = 12; // u32 seconds, no reply seen yet
export const CONFIG_CT_UDP_STREAM: u32 = 16; // u32 seconds, replies seen
export const CONFIG_FLAGS: u32 = 20; // u32 CFG_F_*
export const CONFIG_SNAT_ADDR4: u32 = 24; // be32 masquerade address
export const CONFIG_SNAT_PORT_MIN: u32 = 28; // u16 host order, first SNAT port
export const CONFIG_SNAT_PORT_MAX: u32 = 30; // u16 host order, last SNAT port
export const CONFIG_POD_CIDR4: u32 = 32; // be32 --cluster-cidr network
export const CONFIG_POD_MASK4: u32 = 36; // be32 its netmask
// 40..47 unused: the service cluster IP ranges are MAP_SERVICE_RANGES4/6, as there may be several.
export const CONFIG_SNAT_ADDR6: u32 = 48; // u8[16] IPv6 masquerade address
export const CONFIG_POD_CIDR6: u32 = 64; // u8[16] IPv6 pod network
export const CONFIG_POD_MASK6: u32 = 80; // u8[16] its netmask
// 96..127 unused, as 40..47.
// A replay sharded over workers (datapath/steer.ts): this instance is worker
// SHARD of SHARDS (0 and 0 or 1: not sharded).
export const CONFIG_SHARD: u32 = 128; // u16
export const CONFIG_SHARDS: u32 = 130; // u16
export const CONFIG_SIZE: u32 = 132;

export const CFG_F_MASQUERADE_ALL: u32 = 1 << 0;
export const CFG_F_POD_CIDR4: u32 = 1 << 1; // the pod network is known: pods can be told apart
export const CFG_F_POD_CIDR6: u32 = 1 << 3;
export const CFG_F_SNAT_ADDR6: u32 = 1 << 5; // an IPv6 masquerade address exists
export const CFG_F_RESELECT_GONE: u32 = 1 << 6; // Cilium: a flow whose backend went chooses again
// A sync removed a frontend: a packet to no frontend may still be an established flow's (its conntrack entry stays).
export const CFG_F_REMOVED_FRONTENDS: u32 = 1 << 7;

// --- struct lb4_key (key of MAP_LB4_SERVICES): one service frontend ---------
export const LB4_KEY_ADDRESS: u32 = 0; // be32 frontend IPv4 address
export const LB4_KEY_DPORT: u32 = 4; // be16 frontend port
export const LB4_KEY_PROTO: u32 = 6; // u8 IPPROTO_*
export const LB4_KEY_SCOPE: u32 = 7; // u8 LB_SCOPE_*: which traffic this entry serves
export const LB4_KEY_SIZE: u32 = 8;

export const LB_SCOPE_EXTERNAL: u8 = 0;

// --- struct lb4_service (value of MAP_LB4_SERVICES) -------------------------
// One service port reached through one frontend. A wildcard entry (port 0,
// protocol 0) marks a cluster IP itself, so that its unserved ports are rejected.
export const LB4_SVC_SERVICE_ID: u32 = 0; // u32 service port: stats, affinity, Maglev tables
export const LB4_SVC_BACKEND_COUNT: u32 = 4; // u32 usable backends cluster-wide; 0 = reject
export const LB4_SVC_LOCAL_BACKEND_COUNT: u32 = 8; // u32 usable backends on this node
export const LB4_SVC_FLAGS: u32 = 12; // u32 SVC_F_*
export const LB4_SVC_AFFINITY_TIMEOUT: u32 = 16; // u32 seconds (ClientIP affinity)
export const LB4_SVC_REV_NAT_INDEX: u32 = 20; // u32 key of MAP_LB4_REVNAT
export const LB4_SVC_SIZE: u32 = 24;

export const SVC_F_CLUSTER_IP: u32 = 1 << 0;
export const SVC_F_NODEPORT: u32 = 1 << 1;
export const SVC_F_EXTERNAL_IP: u32 = 1 << 2;
export const SVC_F_LOADBALANCER: u32 = 1 << 3;
export const SVC_F_EXT_LOCAL: u32 = 1 << 4; // externalTrafficPolicy: Local
export const SVC_F_INT_LOCAL: u32 = 1 << 5; // internalTrafficPolicy: Local
export const SVC_F_AFFINITY: u32 = 1 << 6; // sessionAffinity: ClientIP
export const SVC_F_SOURCE_RANGE: u32 = 1 << 7; // loadBalancerSourceRanges apply
export const SVC_F_WILDCARD: u32 = 1 << 8; // the cluster IP itself: reject unserved ports
export const SVC_F_EXTERNAL: u32 = SVC_F_NODEPORT | SVC_F_EXTERNAL_IP | SVC_F_LOADBALANCER;

// --- struct lb4_backend (value of MAP_LB4_BACKENDS, key: u32 backend_id) ----
export const LB4_BE_ADDRESS: u32 = 0; // be32
export const LB4_BE_PORT: u32 = 4; // be16
export const LB4_BE_PROTO: u32 = 6; // u8
export const LB4_BE_FLAGS: u32 = 7; // u8 BE_F_*
export const LB4_BE_SIZE: u32 = 8;
export const BACKEND_ID_SIZE: u32 = 4;

export const BE_F_LOCAL: u8 = 1 << 0; // runs on the emulated node: REDIRECT, not TX
export const BE_F_GONE: u8 = 1 << 1; // no endpoint any more; kept for the conntrack entries that name it

// --- struct lb4_revnat (value of MAP_LB4_REVNAT, key: u32 rev_nat_index) ----
export const LB4_REVNAT_ADDRESS: u32 = 0; // be32 frontend address
export const LB4_REVNAT_PORT: u32 = 4; // be16 frontend port
export const LB4_REVNAT_SIZE: u32 = 8;
export const REV_NAT_INDEX_SIZE: u32 = 4;

// --- MAP_LB_MAGLEV: key u32 table id, value u32 backend_id[M] ---------------
// Each service port has, per address family, a table of its cluster-wide
// backends and, when a Local traffic policy needs it, one of its local ones:
// table id = 4 * service_id + 2 * (IPv6 ? 1 : 0) + (local ? 1 : 0).
export const MAGLEV_KEY_SIZE: u32 = 4;

// --- struct lb_member_key (key of MAP_LB_MEMBERS) ---------------------------
export const LB_MEMBER_TABLE: u32 = 0; // u32 table id
export const LB_MEMBER_BACKEND: u32 = 4; // u32 backend id
export const LB_MEMBER_KEY_SIZE: u32 = 8;
export const PRESENCE_SIZE: u32 = 4; // u32 value of set-like maps, always 1

// --- struct lb4_affinity_key / lb_affinity (MAP_LB4_AFFINITY) ---------------
// kube-proxy records affinity per client IP and service port, whichever
// frontend was used, and refreshes it with each new connection.
export const LB4_AFF_CLIENT: u32 = 0; // be32 client address
export const LB4_AFF_SERVICE_ID: u32 = 4; // u32
export const LB4_AFF_KEY_SIZE: u32 = 8;
export const AFF_BACKEND_ID: u32 = 0; // u32
export const AFF_LAST_USED: u32 = 8; // u64 ns, packet time of the last new connection
export const AFF_SIZE: u32 = 16;

// --- struct snat4_origin (value of MAP_SNAT4) -------------------------------
// Keyed by the reply tuple as it arrives (backend -> masquerade address and
// port): the client the reply really goes to, and which of the node's
// masquerade tuples of the flow is its current one (datapath/node_masq.ts).
export const SNAT4_ADDRESS: u32 = 0; // be32 client address
export const SNAT4_PORT: u32 = 4; // be16 client port
export const SNAT4_NODE_PORT: u32 = 6; // be16 the node's masquerade port for the flow, as its copies showed it last; 0 none
export const SNAT4_SIZE: u32 = 8;

// --- struct lb4_src_range_key (key of MAP_LB4_SOURCE_RANGES) ----------------
// An LPM trie key: the prefix length counts bits of service_id then address.
export const LB4_SRC_PREFIXLEN: u32 = 0; // u32 bits that matter, 32 + address prefix
export const LB4_SRC_SERVICE_ID: u32 = 4; // be32 service port id (big-endian: it is prefix bits)
export const LB4_SRC_ADDRESS: u32 = 8; // be32
export const LB4_SRC_KEY_SIZE: u32 = 12;

// --- struct frag4_key / frag4_ports (MAP_FRAG4) -----------------------------
// A fragmented datagram of a service flow: only its first fragment carries the
// ports, so they are remembered for the later ones, as Cilium's
// IPV4_FRAG_DATAGRAMS_MAP does.
export const FRAG4_SADDR: u32 = 0; // be32
export const FRAG4_DADDR: u32 = 4; // be32
export const FRAG4_ID: u32 = 8; // be16 IPv4 identification
export const FRAG4_PROTO: u32 = 10; // u8
export const FRAG4_KEY_SIZE: u32 = 12; // 1 byte padding, always zero
export const FRAG4_SPORT: u32 = 0; // be16
export const FRAG4_DPORT: u32 = 2; // be16
export const FRAG4_PORTS_SIZE: u32 = 4;

// --- IPv6 structs: the IPv4 ones with 16-byte addresses ----------------------
export const IPV6_ADDR_SIZE: u32 = 16;

export const LB6_KEY_ADDRESS: u32 = 0; // u8[16]
export const LB6_KEY_DPORT: u32 = 16; // be16
export const LB6_KEY_PROTO: u32 = 18; // u8
export const LB6_KEY_SCOPE: u32 = 19; // u8
export const LB6_KEY_SIZE: u32 = 20;

export const LB6_BE_ADDRESS: u32 = 0; // u8[16]
export const LB6_BE_PORT: u32 = 16; // be16
export const LB6_BE_PROTO: u32 = 18; // u8
export const LB6_BE_FLAGS: u32 = 19; // u8 BE_F_*
export const LB6_BE_SIZE: u32 = 20;

export const LB6_REVNAT_ADDRESS: u32 = 0; // u8[16]
export const LB6_REVNAT_PORT: u32 = 16; // be16
export const LB6_REVNAT_SIZE: u32 = 20;

export const CT6_SADDR: u32 = 0; // u8[16]
export const CT6_DADDR: u32 = 16; // u8[16]
export const CT6_SPORT: u32 = 32; // be16
export const CT6_DPORT: u32 = 34; // be16
export const CT6_PROTO: u32 = 36; // u8
export const CT6_DIR: u32 = 37; // u8 CT_DIR_*
export const CT6_TUPLE_SIZE: u32 = 40; // 2 bytes padding, always zero

export const SNAT6_ADDRESS: u32 = 0; // u8[16] client address
export const SNAT6_PORT: u32 = 16; // be16 client port
export const SNAT6_NODE_PORT: u32 = 18; // be16 as SNAT4_NODE_PORT
export const SNAT6_SIZE: u32 = 20;

export const LB6_AFF_CLIENT: u32 = 0; // u8[16]
export const LB6_AFF_SERVICE_ID: u32 = 16; // u32
export const LB6_AFF_KEY_SIZE: u32 = 20;

export const LB6_SRC_PREFIXLEN: u32 = 0; // u32 bits that matter, 32 + address prefix
export const LB6_SRC_SERVICE_ID: u32 = 4; // be32
export const LB6_SRC_ADDRESS: u32 = 8; // u8[16]
export const LB6_SRC_KEY_SIZE: u32 = 24;

export const NODE_IP6_ADDRESS: u32 = 0; // u8[16]
export const NODE_IP6_KEY_SIZE: u32 = 16;

export const FRAG6_SADDR: u32 = 0; // u8[16]
export const FRAG6_DADDR: u32 = 16; // u8[16]
export const FRAG6_ID: u32 = 32; // be32 fragment header identification
export const FRAG6_PROTO: u32 = 36; // u8 upper-layer protocol
export const FRAG6_KEY_SIZE: u32 = 40; // 3 bytes padding, always zero

// --- struct steer_key (key of MAP_STEER), struct steer_class (value) --------
// For sharding a replay over workers (datapath/steer.ts): every frontend and
// backend endpoint by address, port and protocol, and by address alone
// (port and protocol 0) for packets without ports. Both families in one map:
// IPv4 addresses as IPv4-mapped IPv6 (::ffff:a.b.c.d). Read-only per packet.
export const STEER_ADDRESS: u32 = 0; // u8[16]
export const STEER_PORT: u32 = 16; // be16; 0 for the address alone
export const STEER_PROTO: u32 = 18; // u8 IPPROTO_*; 0 for the address alone
export const STEER_KEY_SIZE: u32 = 20; // 1 byte padding, always zero
export const STEER_CLASS_FLAGS: u32 = 0; // u32 STEER_F_*
export const STEER_CLASS_SIZE: u32 = 4;
export const STEER_F_FRONTEND: u32 = 1 << 0;
export const STEER_F_BACKEND: u32 = 1 << 1;

// --- struct rewrite_key / rewrite (MAP_REWRITES), datapath/conformance.ts ----
// A packet svcpath rewrote, keyed by what NAT leaves alone, so that the node's
// own rewritten copy of it in the capture (an outgoing frame) finds it; the
// value is what svcpath wrote. Both families in one map, addresses IPv4-mapped.
export const RW_KEY_FAMILY: u32 = 0; // u8 4 or 6
export const RW_KEY_PROTO: u32 = 1; // u8 IPPROTO_*
export const RW_KEY_PAYLOAD_LEN: u32 = 2; // u16 bytes after the L4 header, by the IP header
export const RW_KEY_IP_ID: u32 = 4; // be32: IPv4 identification (be16, then 0), or the IPv6 flow label bits
export const RW_KEY_L4_A: u32 = 8; // be32: TCP sequence, SCTP verification tag, ICMP type and code; UDP 0
export const RW_KEY_L4_B: u32 = 12; // be32: TCP acknowledgment, ICMP rest of header; 0 otherwise
export const RW_KEY_PAYLOAD_HASH: u32 = 16; // u32 MurmurHash3 of the first 64 payload bytes captured (0 for ICMP)
export const RW_KEY_SIZE: u32 = 20;
export const RW_SADDR: u32 = 0; // u8[16] source as sent; with RW_F_MASQUERADED, the client it replaced
export const RW_DADDR: u32 = 16; // u8[16] destination as sent
export const RW_SPORT: u32 = 32; // be16, 0 without ports; with RW_F_MASQUERADED, the client's
export const RW_DPORT: u32 = 34; // be16, 0 without ports
export const RW_REASON: u32 = 36; // u8 REASON_SERVICE, REASON_REPLY or REASON_ICMP_RELATED
export const RW_FLAGS: u32 = 37; // u8 RW_F_*
export const RW_SIZE: u32 = 40; // 2 bytes padding, always zero
export const RW_F_MASQUERADED: u8 = 1 << 0; // svcpath masqueraded this request's source

// --- struct conformance_counter (value of MAP_CONFORMANCE) ------------------
// How the node's copies of rewritten packets compare with svcpath's rewrites.
export const CONFORM_REPRODUCED: u32 = 0; // same backend and rewrite
export const CONFORM_OTHER_BACKEND: u32 = 1; // the same but for the backend, another Service backend
export const CONFORM_DIFFERS: u32 = 2; // anything else but CONFORM_MASQUERADE_DIFFERS
// And what the node's copies taught of its masquerade tuples (datapath/node_masq.ts), in tuples.
export const CONFORM_LEARNED: u32 = 3; // a tuple the node masqueraded a flow svcpath masqueraded to, learned
export const CONFORM_TAKEN: u32 = 4; // such a tuple not learned, another live flow holding it (once per flow)
// A request sent to the same backend (or another), but masqueraded by one of the node and svcpath only:
// the masquerade settings (--cluster-cidr, --masquerade-all) are not the node's.
export const CONFORM_MASQUERADE_DIFFERS: u32 = 5;
export const CONFORM_ENTRIES: u32 = 6;
export const CONFORM_COUNT: u32 = 0; // u64 packets (tuples for LEARNED and TAKEN)
export const CONFORM_SIZE: u32 = 8;

// --- struct arrival (value of MAP_ARRIVALS; key: rewrite_key) ---------------
// A packet that arrived for a service frontend, in a capture with direction,
// by its NAT-invariant identity: the flow it belongs to, for the node's
// outgoing copy of it (datapath/node_masq.ts). Addresses IPv4-mapped.
export const ARRIVAL_CLIENT: u32 = 0; // u8[16]
export const ARRIVAL_FRONTEND: u32 = 16; // u8[16]
export const ARRIVAL_CLIENT_PORT: u32 = 32; // be16
export const ARRIVAL_FRONTEND_PORT: u32 = 34; // be16
export const ARRIVAL_SIZE: u32 = 36;

// --- struct node_masq_key / node_masq (MAP_NODE_MASQ) -----------------------
// A tuple the node masqueraded a flow to, as its replies arrive (backend ->
// the node's masquerade address and port), learned from the node's copy of
// one of the flow's requests: the flow (its client and frontend, laid out as
// an arrival) and a clock of its own, kept by the node's frames on the tuple
// with conntrack's timeouts. Both families in one map, IPv4-mapped.
export const NM_KEY_BACKEND: u32 = 0; // u8[16]
export const NM_KEY_NODE: u32 = 16; // u8[16] the node's masquerade address
export const NM_KEY_BACKEND_PORT: u32 = 32; // be16
export const NM_KEY_NODE_PORT: u32 = 34; // be16 the node's masquerade port
export const NM_KEY_PROTO: u32 = 36; // u8
export const NM_KEY_SIZE: u32 = 40; // 3 bytes padding, always zero
export const NM_CLIENT: u32 = 0; // u8[16], as ARRIVAL_CLIENT
export const NM_FRONTEND: u32 = 16; // u8[16]
export const NM_CLIENT_PORT: u32 = 32; // be16
export const NM_FRONTEND_PORT: u32 = 34; // be16
export const NM_FLAGS: u32 = 36; // u16 CT_F_SEEN_REPLY, CT_F_CLOSING
export const NM_LAST_SEEN: u32 = 40; // u64 ns, packet time of the last frame on the tuple
export const NM_SIZE: u32 = 48;

// --- struct svc_range4_key / svc_range6_key (keys of MAP_SERVICE_RANGES4/6) --
// A known service cluster IP range (a ServiceCIDR's, or the flag's); an
// address inside one that is no cluster IP is UNALLOCATED_IP. Empty maps: the
// ranges are unknown.
export const SVC_RANGE4_PREFIXLEN: u32 = 0; // u32 bits of the address that matter
export const SVC_RANGE4_ADDRESS: u32 = 4; // be32
export const SVC_RANGE4_KEY_SIZE: u32 = 8;
export const SVC_RANGE6_PREFIXLEN: u32 = 0; // u32
export const SVC_RANGE6_ADDRESS: u32 = 4; // u8[16]
export const SVC_RANGE6_KEY_SIZE: u32 = 20;

// --- MAP_NODE_IPS4: key be32 address, value u32 (1) -------------------------
export const NODE_IP4_ADDRESS: u32 = 0; // be32
export const NODE_IP4_KEY_SIZE: u32 = 4;

// --- struct ct4_tuple (key of MAP_CT4) --------------------------------------
// A flow as seen on the wire. The original direction (client -> frontend) and
// the reply direction (backend -> client, after DNAT) are one key each, so
// that a reply is recognised by a single lookup of its own tuple; both keys
// of a flow name one record and its one ct_entry (flow_table.ts).
export const CT4_SADDR: u32 = 0; // be32
export const CT4_DADDR: u32 = 4; // be32
export const CT4_SPORT: u32 = 8; // be16
export const CT4_DPORT: u32 = 10; // be16
export const CT4_PROTO: u32 = 12; // u8
export const CT4_DIR: u32 = 13; // u8 CT_DIR_*
export const CT4_TUPLE_SIZE: u32 = 16; // 2 bytes padding, always zero

export const CT_DIR_ORIGINAL: u8 = 0;
export const CT_DIR_REPLY: u8 = 1;

// --- struct ct_entry (value of MAP_CT4) -------------------------------------
export const CT_BACKEND_ID: u32 = 0; // u32 chosen backend
export const CT_REV_NAT_INDEX: u32 = 4; // u32 frontend to restore on replies
export const CT_SERVICE_ID: u32 = 8; // u32 for per-service counters
export const CT_FLAGS: u32 = 12; // u16 CT_F_*
export const CT_SNAT_PORT: u32 = 14; // be16 masquerade port, with CT_F_SNAT
export const CT_LAST_SEEN: u32 = 16; // u64 ns, packet time of the last packet
export const CT_ENTRY_SIZE: u32 = 24;

export const CT_F_SEEN_REPLY: u16 = 1 << 0;
export const CT_F_CLOSING: u16 = 1 << 1; // FIN or RST seen
export const CT_F_SNAT: u16 = 1 << 2; // the client's source was masqueraded
export const CT_F_FLUSHED: u16 = 1 << 3; // the control plane deleted the flow (kube-proxy's stale UDP flush): its next packet starts it again

// --- struct traffic_counter (value of MAP_METRICS) --------------------------
export const METRIC_PACKETS: u32 = 0; // u64
export const METRIC_BYTES: u32 = 8; // u64 wire bytes
export const METRIC_SIZE: u32 = 16;
export const METRIC_ENTRIES: u32 = 64 << 3; // reasons x verdicts

// --- struct flow_counter (value of MAP_SERVICE_STATS / MAP_BACKEND_STATS) ---
export const STAT_PACKETS: u32 = 0; // u64
export const STAT_BYTES: u32 = 8; // u64 wire bytes
export const STAT_FLOWS: u32 = 16; // u64 new flows
export const STAT_SIZE: u32 = 24;

// --- struct flow_change_counter (value of MAP_FLOW_CHANGES) -----------------
// Packets a cluster change affected, per kind (DESC_F_STALE_BACKEND ...), so
// that the control plane reads them between syncs without touching packets.
// Index: the flag's bit - 4, the order of the verdict lines' names (control/compile/layout.ts
// FLOW_CHANGES) + 1; index 0 (no change) is never counted.
export const FC_PACKETS: u32 = 0; // u64
export const FC_SIZE: u32 = 8;
export const FC_ENTRIES: u32 = 5;

// --- struct frame_desc: one frame of a batch, in linear memory --------------
// The control plane fills the input fields; process_batch fills the rest.
export const DESC_DATA: u32 = 0; // u32 address of the first byte of the frame
export const DESC_LEN: u32 = 4; // u32 captured bytes in; bytes to send out
export const DESC_WIRE_LEN: u32 = 8; // u32 original length on the wire
export const DESC_CAPACITY: u32 = 12; // u32 bytes the frame may grow to (tailroom)
export const DESC_TS_SEC_LO: u32 = 16; // u32 timestamp seconds, low word
export const DESC_TS_SEC_HI: u32 = 20; // u32 timestamp seconds, high word
export const DESC_TS_NSEC: u32 = 24; // u32 timestamp nanoseconds
export const DESC_VERDICT: u32 = 28; // u8 XDP_*  (out)
export const DESC_REASON: u32 = 29; // u8 REASON_* (out)
export const DESC_FLAGS: u32 = 30; // u16 DESC_F_* (out)
export const DESC_SERVICE_ID: u32 = 32; // u32, 0 = none (out)
export const DESC_BACKEND_ID: u32 = 36; // u32, 0 = none (out)
export const DESC_LINKTYPE: u32 = 40; // u32 LINKTYPE_* of the frame's capture interface
export const DESC_CAPLEN: u32 = 44; // u32 captured bytes in, kept (LEN becomes the bytes out)
export const DESC_SIZE: u32 = 48;
// Frame area bytes a frame gets at least: room to become an ICMP error (an
// ICMPv6 one is up to 1280 bytes, after a link layer of up to 22: Ethernet and two VLAN tags).
export const FRAME_MIN_CAPACITY: u32 = 1304;

// --- zero-copy replay (datapath/capture.ts) ----------------------------------
// pcap_walk's format flags, and why it stopped (in its state's STOP word).
export const PCAP_F_BIG_ENDIAN: u32 = 1 << 0;
export const PCAP_F_NANOSECOND: u32 = 1 << 1;
export const WALK_NEED_DATA: u32 = 0; // less than a whole record left in the chunk
export const WALK_BATCH_FULL: u32 = 1; // no descriptor or frame room left: run the batch
export const WALK_ANOMALY: u32 = 2; // the next record is for the host's reader to judge
export const WALK_TIME_REACHED: u32 = 3; // the next record is at or after the stop time: apply what is due first

// The walker's state, in and out: where it is in the chunk and the frame area.
export const WALK_CONSUMED: u32 = 0; // u32 chunk bytes consumed
export const WALK_FRAMES_USED: u32 = 4; // u32 frame area bytes used
export const WALK_STOP: u32 = 8; // u32 WALK_*
export const WALK_STATE_SIZE: u32 = 12;

// What verdicts_emit reads: the addresses of four string tables.
export const VT_VERDICTS: u32 = 0; // by XDP_* code
export const VT_REASONS: u32 = 4; // by REASON_* code
export const VT_SERVICES: u32 = 8; // JSON values by service id, 0 = null
export const VT_BACKENDS: u32 = 12; // JSON values by backend id, 0 = null
export const VT_SIZE: u32 = 16;


// --- link types (the tcpdump.org LINKTYPE_* values) the parser knows ---------
export const LINKTYPE_NULL: u32 = 0; // BSD loopback: 4-byte family in the capturing host's order
export const LINKTYPE_ETHERNET: u32 = 1;
export const LINKTYPE_RAW_OPENBSD: u32 = 12; // raw IP, as DLT_RAW on OpenBSD
export const LINKTYPE_RAW: u32 = 101; // raw IP: the frame starts with the IP header
export const LINKTYPE_LOOP: u32 = 108; // OpenBSD loopback: 4-byte family, network order
export const LINKTYPE_LINUX_SLL: u32 = 113; // Linux cooked capture v1 (tcpdump -i any)
export const LINKTYPE_LINUX_SLL2: u32 = 276; // Linux cooked capture v2
export const LINKTYPE_IPV4: u32 = 228; // raw IPv4: the frame is an IPv4 packet (scapy's default without Ethernet)
export const LINKTYPE_IPV6: u32 = 229; // raw IPv6

export const DESC_F_SNAT: u16 = 1 << 0; // out: the flow is masqueraded
export const DESC_F_OTHER_SHARD: u16 = 1 << 1; // out: another worker's packet, not processed (verdict 0)
export const DESC_F_STEERED: u16 = 1 << 2; // in: the walker found this worker's (sharded replay)
export const DESC_F_INBOUND: u16 = 1 << 3; // in: the capture says the frame arrived (pcapng epb_flags)
export const DESC_F_OUTBOUND: u16 = 1 << 4; // in: the capture says the node sent the frame (pcapng epb_flags)
// out: what a cluster change did to the packet's flow (at most one):
export const DESC_F_STALE_BACKEND: u16 = 1 << 5; // still DNATed to a backend that is no longer an endpoint (kube-proxy)
export const DESC_F_FLUSHED: u16 = 1 << 6; // its UDP conntrack entry was flushed: load-balanced again
export const DESC_F_RESELECTED: u16 = 1 << 7; // its backend went: moved to another mid-flow (Cilium)
export const DESC_F_AFFINITY_RESET: u16 = 1 << 8; // the client's affinity backend left: chosen again
export const DESC_F_FLOW_CHANGES: u16 = DESC_F_STALE_BACKEND | DESC_F_FLUSHED | DESC_F_RESELECTED | DESC_F_AFFINITY_RESET;
export const DESC_F_NEW_FLOW: u16 = 1 << 9; // out: the packet made its flow's conntrack entry (a flow the stats count)
export const DESC_F_TRACE: u16 = 1 << 15; // in: record what the program does with this frame

// --- struct trace_record: one step of a traced frame, in the trace ring -------
// The host reserves the ring (trace_configure) and reads it after each batch.
export const TRACE_KIND: u32 = 0; // u8 TRACE_*
export const TRACE_MAP: u32 = 1; // u8 map id (TRACE_LOOKUP)
export const TRACE_FOUND: u32 = 2; // u8 1 when the lookup hit
export const TRACE_KEY_LEN: u32 = 3; // u8
export const TRACE_FRAME: u32 = 4; // u32 index of the frame in its batch
export const TRACE_VALUE_LEN: u32 = 8; // u32
export const TRACE_KEY: u32 = 12; // u8[40] the key looked up
export const TRACE_VALUE: u32 = 52; // u8[60] the value found (its first 60 bytes)
export const TRACE_RECORD_SIZE: u32 = 112;
export const TRACE_KEY_MAX: u32 = 40;
export const TRACE_VALUE_MAX: u32 = 60;

export const TRACE_LOOKUP: u8 = 1; // a map lookup: key, value or miss
export const TRACE_MAGLEV: u8 = 2; // key: u32 table, u32 slot; value: u32 backend id
export const TRACE_VERDICT: u8 = 3; // key: u8 verdict, u8 reason

// --- verdicts: the XDP action codes -----------------------------------------
export const XDP_ABORTED: u8 = 0;
export const XDP_DROP: u8 = 1;
export const XDP_PASS: u8 = 2;
export const XDP_TX: u8 = 3;
export const XDP_REDIRECT: u8 = 4;

// --- reason codes (README lists them with their meaning) --------------------
export const REASON_SERVICE: u8 = 1; // DNAT of a new or tracked flow to a backend
export const REASON_REPLY: u8 = 2; // reverse NAT of a backend's reply
export const REASON_NO_SERVICE: u8 = 3; // not addressed to a service frontend: PASS
export const REASON_NO_ENDPOINTS: u8 = 4; // service without usable endpoints: ICMP reject
export const REASON_NO_LOCAL_ENDPOINTS: u8 = 5; // Local policy, none local: DROP
export const REASON_SOURCE_RANGE: u8 = 6; // loadBalancerSourceRanges: DROP
export const REASON_MALFORMED: u8 = 7; // headers inconsistent with each other or the wire length: DROP
export const REASON_TRUNCATED: u8 = 8; // the capture cut the headers we need: ABORTED
export const REASON_NON_IP: u8 = 9; // not IPv4/IPv6 (ARP, LLDP, ...): PASS
export const REASON_FRAGMENT: u8 = 10; // a later IPv4 fragment of no tracked flow: PASS
export const REASON_STATE_MISMATCH: u8 = 11; // an entry the decision needs is missing: DROP
export const REASON_NO_ROOM: u8 = 12; // no tailroom to build the ICMP error: ABORTED
export const REASON_UNSERVED_PORT: u8 = 13; // a cluster IP's port no service uses: ICMP reject
export const REASON_UNALLOCATED_IP: u8 = 14; // inside the service range, no such cluster IP: DROP
export const REASON_SNAT_EXHAUSTED: u8 = 15; // no free masquerade port for the flow: DROP
export const REASON_UNSUPPORTED_LINKTYPE: u8 = 16; // a link type the parser does not know: PASS
export const REASON_FRAGMENT_UNTRACKED: u8 = 17; // a later fragment to a cluster IP, its first one unseen: DROP
export const REASON_ICMP_RELATED: u8 = 18; // an ICMP error about a translated flow, translated too
export const REASON_OUTGOING: u8 = 19; // a frame the node sent, not an arrival: PASS
export const REASON_OTHER_HOST: u8 = 20; // addressed to another host's link address (promiscuous capture): PASS
