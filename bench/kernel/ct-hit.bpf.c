// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel yardstick for the `ct-hit` bench scenario: an XDP program of
 * the same shape, JIT-compiled by the running kernel and timed with
 * BPF_PROG_TEST_RUN by bench/kernel.ts (`npm run bench -- --kernel`).
 *
 * State as in ct-hit: 100 ClusterIP Services (10.96.0.s:80/TCP) of 10
 * backends (10.128.x.y:8080), and the 4096 established IPv4 TCP flows of
 * bench/synthetic.ts's flowPacket(i, 100) in a 262144-entry LRU conntrack
 * map, two entries a flow (original and reply), with svcpath's key and
 * value sizes (16 and 24 bytes).
 *
 * Per packet: parse Ethernet, IPv4 and TCP; one conntrack lookup; refresh
 * the entry's time (and its closing flag on FIN or RST); DNAT to the
 * entry's backend with incremental IPv4 and TCP checksum updates; XDP_TX.
 * A packet of no known flow opens one (service lookup, backend pick, both
 * entries inserted); the bench sends every flow once before timing, as
 * ct-hit does, and checks that no timed packet opened a flow. `harness`,
 * timed apart, is the test run's own share of ct_hit's time.
 *
 * Self-contained: no kernel or libbpf headers, so that only clang and
 * bpftool are needed. The UAPI values below are stable ABI.
 */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;

#define SEC(name) __attribute__((section(name), used))
#define ALWAYS_INLINE static inline __attribute__((always_inline))
/* BTF-defined maps, as libbpf reads them from the .maps section. */
#define MAP_UINT(name, value) int (*name)[value]
#define MAP_TYPE(name, type) type *name

enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_ARRAY = 2, BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_LRU_HASH = 9 };
enum { XDP_ABORTED = 0, XDP_DROP = 1, XDP_PASS = 2, XDP_TX = 3 };
enum { BPF_ANY = 0 };

/* Helpers by their stable numbers (include/uapi/linux/bpf.h). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, u64 flags) = (void *)2;
static u64 (*bpf_ktime_get_ns)(void) = (void *)5;

struct xdp_md {
  u32 data;
  u32 data_end;
  u32 data_meta;
  u32 ingress_ifindex;
  u32 rx_queue_index;
  u32 egress_ifindex;
};

/* Wire headers: Ethernet without VLAN tags, IPv4 (options refused), TCP. Naturally aligned, as the kernel's own. */
struct eth {
  u8 dst_mac[6];
  u8 src_mac[6];
  u16 ethertype;
};

struct ipv4 {
  u8 version_ihl;
  u8 tos;
  u16 total_length;
  u16 id;
  u16 fragment;
  u8 ttl;
  u8 protocol;
  u16 check;
  u32 saddr;
  u32 daddr;
};

struct tcp {
  u16 sport;
  u16 dport;
  u32 seq;
  u32 ack;
  u8 data_offset;
  u8 flags;
  u16 window;
  u16 check;
  u16 urgent;
};

/* The headers of one packet. */
struct packet {
  struct ipv4 *ip;
  struct tcp *tcp;
};

#define ETHERTYPE_IPV4 0x0800
#define IPPROTO_TCP 6
#define TCP_FIN 0x01
#define TCP_RST 0x04
#define CT_DIR_ORIGINAL 0
#define CT_DIR_REPLY 1
#define CT_F_CLOSING 1
/* svcpath's default established-TCP timeout (kube-proxy's too), 24 h. */
#define CT_TCP_TIMEOUT_NS (24ull * 3600 * 1000000000)

/* Keys hold addresses and ports in network order, as read from the packet. */
struct ct_key {
  u32 saddr;
  u32 daddr;
  u16 sport;
  u16 dport;
  u8 proto;
  u8 dir;
  u16 pad;
};

/* 24 bytes, as svcpath's ct_entry; the backend's address and port in place of its id's lookup. */
struct ct_entry {
  u64 last_seen;
  u32 nat_addr;
  u16 nat_port;
  u16 flags;
  u32 backend_id;
  u32 service_id;
};

struct service_key {
  u32 addr;
  u16 port;
  u8 proto;
  u8 pad;
};

struct service {
  u32 backend_count;
  u32 first_backend;
  u32 service_id;
};

struct backend {
  u32 addr;
  u16 port;
  u16 pad;
};

/* Per CPU: which flow the test run's next packet belongs to, and what became of the packets. */
struct run_state {
  u32 next_flow;
  u32 pad;
  u64 hits;
  u64 opened;
  u64 passed;
};

struct {
  MAP_UINT(type, BPF_MAP_TYPE_LRU_HASH);
  MAP_UINT(max_entries, 262144);
  MAP_TYPE(key, struct ct_key);
  MAP_TYPE(value, struct ct_entry);
} ct4 SEC(".maps");

struct {
  MAP_UINT(type, BPF_MAP_TYPE_HASH);
  MAP_UINT(max_entries, 1024);
  MAP_TYPE(key, struct service_key);
  MAP_TYPE(value, struct service);
} services SEC(".maps");

struct {
  MAP_UINT(type, BPF_MAP_TYPE_ARRAY);
  MAP_UINT(max_entries, 1024);
  MAP_TYPE(key, u32);
  MAP_TYPE(value, struct backend);
} backends SEC(".maps");

struct {
  MAP_UINT(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  MAP_UINT(max_entries, 1);
  MAP_TYPE(key, u32);
  MAP_TYPE(value, struct run_state);
} run_state SEC(".maps");

#define FLOWS 4096
#define SERVICES 100

/* Host to network order: clang's bpf target has the host's byte order. */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define HTONS(x) __builtin_bswap16(x)
#define HTONL(x) __builtin_bswap32(x)
#else
#define HTONS(x) (x)
#define HTONL(x) (x)
#endif

ALWAYS_INLINE u32 ip4(u32 a, u32 b, u32 c, u32 d) { return HTONL(a << 24 | b << 16 | c << 8 | d); }

ALWAYS_INLINE u16 fold(u32 sum) {
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (u16)sum;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changed from m to m'. */
ALWAYS_INLINE void replace16(u16 *check, u16 from, u16 to) { *check = ~fold((u16)~*check + (u16)~from + to); }

ALWAYS_INLINE void replace32(u16 *check, u32 from, u32 to) {
  *check = ~fold((u16)~*check + (u16)~(from & 0xffff) + (u16)~(from >> 16) + (to & 0xffff) + (to >> 16));
}

/* An address: covered by the IPv4 header checksum and by TCP's pseudo-header. */
ALWAYS_INLINE void rewrite_addr(struct packet *p, u32 *field, u32 to) {
  replace32(&p->ip->check, *field, to);
  replace32(&p->tcp->check, *field, to);
  *field = to;
}

ALWAYS_INLINE void rewrite_port(struct packet *p, u16 *field, u16 to) {
  replace16(&p->tcp->check, *field, to);
  *field = to;
}

/* The packet of flow i, as flowPacket(i, 100) builds it, with valid checksums. */
ALWAYS_INLINE void become_flow(struct packet *p, u32 i) {
  u32 s = i % SERVICES;
  rewrite_addr(p, &p->ip->saddr, ip4(10, 1 + ((i >> 24) & 0x3f), (i >> 16) & 255, (i >> 8) & 255));
  rewrite_addr(p, &p->ip->daddr, ip4(10, 96 + (s >> 16), (s >> 8) & 255, s & 255));
  rewrite_port(p, &p->tcp->sport, HTONS(1024 + (i & 255) * 200 + (i >> 8) % 200));
  rewrite_port(p, &p->tcp->dport, HTONS(80));
}

/*
 * Test-run harness, not datapath: BPF_PROG_TEST_RUN runs the program again
 * and again on one buffer, which keeps the previous run's DNAT. This makes
 * the buffer the next flow's packet, per CPU, so that the timed runs cycle
 * through all the flows; the CPU's run_state, or 0.
 */
ALWAYS_INLINE struct run_state *next_flow_packet(struct packet *p) {
  u32 zero = 0;
  struct run_state *run = bpf_map_lookup_elem(&run_state, &zero);
  if (!run) return 0;
  become_flow(p, run->next_flow);
  run->next_flow = (run->next_flow + 1) % FLOWS;
  return run;
}

/* A client's hash for the backend pick of a new flow. */
ALWAYS_INLINE u32 flow_hash(u32 saddr, u16 sport) {
  u32 h = saddr * 0x9e3779b1u ^ sport;
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  return h ^ (h >> 13);
}

/* A new flow to a Service: a backend picked, both directions' entries inserted; 0 for no Service. */
ALWAYS_INLINE struct ct_entry *open_flow(struct ct_key *key, struct ct_entry *entry, u64 now) {
  struct service_key sk = {.addr = key->daddr, .port = key->dport, .proto = key->proto};
  struct service *svc = bpf_map_lookup_elem(&services, &sk);
  if (!svc || svc->backend_count == 0) return 0;
  u32 id = svc->first_backend + flow_hash(key->saddr, key->sport) % svc->backend_count;
  struct backend *be = bpf_map_lookup_elem(&backends, &id);
  if (!be) return 0;
  *entry = (struct ct_entry){.last_seen = now, .nat_addr = be->addr, .nat_port = be->port, .backend_id = id, .service_id = svc->service_id};
  bpf_map_update_elem(&ct4, key, entry, BPF_ANY);
  struct ct_key reply = {.saddr = be->addr, .daddr = key->saddr, .sport = be->port, .dport = key->sport, .proto = key->proto, .dir = CT_DIR_REPLY};
  struct ct_entry back = {.last_seen = now, .nat_addr = key->daddr, .nat_port = key->dport, .backend_id = id, .service_id = svc->service_id};
  bpf_map_update_elem(&ct4, &reply, &back, BPF_ANY);
  return entry;
}

/* The refresh of an established flow's entry, as svcpath's ctTouch. */
ALWAYS_INLINE void touch(struct ct_entry *entry, u64 now, u8 tcp_flags) {
  if (now > entry->last_seen) entry->last_seen = now;
  if (tcp_flags & (TCP_FIN | TCP_RST)) entry->flags |= CT_F_CLOSING;
}

/* Ethernet, IPv4 without options, TCP: 1 with the headers in `p`, 0 for any other packet. */
ALWAYS_INLINE int parse(struct xdp_md *ctx, struct packet *p) {
  struct eth *eth = (void *)(long)ctx->data;
  struct ipv4 *ip = (void *)(eth + 1);
  struct tcp *tcp = (void *)(ip + 1);
  if ((void *)(tcp + 1) > (void *)(long)ctx->data_end) return 0;
  if (eth->ethertype != HTONS(ETHERTYPE_IPV4) || ip->version_ihl != 0x45 || ip->protocol != IPPROTO_TCP) return 0;
  *p = (struct packet){.ip = ip, .tcp = tcp};
  return 1;
}

SEC("xdp")
int ct_hit(struct xdp_md *ctx) {
  struct packet p;
  if (!parse(ctx, &p)) return XDP_PASS;
  struct run_state *run = next_flow_packet(&p);
  if (!run) return XDP_ABORTED;

  u64 now = bpf_ktime_get_ns();
  struct ct_key key = {
      .saddr = p.ip->saddr, .daddr = p.ip->daddr, .sport = p.tcp->sport, .dport = p.tcp->dport, .proto = IPPROTO_TCP, .dir = CT_DIR_ORIGINAL};
  struct ct_entry opened;
  struct ct_entry *entry = bpf_map_lookup_elem(&ct4, &key);
  if (entry && now - entry->last_seen <= CT_TCP_TIMEOUT_NS) {
    run->hits++;
    touch(entry, now, p.tcp->flags);
  } else if ((entry = open_flow(&key, &opened, now))) {
    run->opened++;
  } else {
    run->passed++;
    return XDP_PASS;
  }

  rewrite_addr(&p, &p.ip->daddr, entry->nat_addr);
  rewrite_port(&p, &p.tcp->dport, entry->nat_port);
  return XDP_TX;
}

/* The harness alone, timed apart: the part of ct_hit's time that is not the datapath's work. */
SEC("xdp")
int harness(struct xdp_md *ctx) {
  struct packet p;
  if (!parse(ctx, &p)) return XDP_PASS;
  return next_flow_packet(&p) ? XDP_TX : XDP_ABORTED;
}

char LICENSE[] SEC("license") = "GPL";
