/**
 * The compiled map entries (control/compile/compiler.ts `Compiled.entries`), read
 * into plain lookups: what the datapath's maps hold, without their layout.
 */
import type { Compiled, FamilyEntries } from '../control/compile/compiler.js';
import { BE_F_GONE, BE_F_LOCAL, CFG_F, SVC_F } from '../control/compile/layout.js';
import { addressBytes, addressText, canonical, inPrefix, type Family } from './addresses.js';

/** A frontend's entry: which service port, and how it is reached. */
export interface Frontend {
  serviceId: number;
  /** Usable backends of the packet's family, cluster-wide and on this node. */
  backendCount: number;
  localBackendCount: number;
  flags: number;
  affinityTimeoutSeconds: number;
  revNatIndex: number;
}

export interface Backend {
  address: Uint8Array;
  port: number;
  local: boolean;
  /** No endpoint any more: kept for the flows that name it (BE_F_GONE). */
  gone: boolean;
}

export interface ReverseNat {
  address: Uint8Array;
  port: number;
}

export interface Network {
  address: Uint8Array;
  mask: Uint8Array;
}

export interface Settings {
  seed: number;
  /** Conntrack timeouts, seconds. */
  tcpEstablished: number;
  tcpClosing: number;
  udp: number;
  udpStream: number;
  masqueradeAll: boolean;
  podNetwork: Record<Family, Network | undefined>;
  /** Masquerade address per family; undefined when there is none (such flows cannot be masqueraded). */
  masqueradeAddress: Record<Family, Uint8Array | undefined>;
  snatPorts: { min: number; max: number };
  /** Cilium's semantics: a flow whose backend went chooses again. */
  reselectGone: boolean;
}

interface FamilyTables {
  frontends: Map<string, Frontend>;
  clusterIPs: Set<string>;
  backends: Map<number, Backend>;
  reverseNat: Map<number, ReverseNat>;
  sourceRanges: Array<{ serviceId: number; prefix: Uint8Array; bits: number }>;
  /** The known service cluster IP ranges; none when they are unknown. */
  serviceRanges: Array<{ prefix: Uint8Array; bits: number }>;
  nodeAddresses: Set<string>;
}

const frontendKey = (address: string, port: number, proto: number) => `${address} ${port} ${proto}`;

function familyTables(e: FamilyEntries, family: Family): FamilyTables {
  const tables: FamilyTables = {
    frontends: new Map(),
    clusterIPs: new Set(),
    backends: new Map(),
    reverseNat: new Map(),
    sourceRanges: [],
    serviceRanges: e.serviceRanges.map((r) => ({ prefix: addressBytes(r.address as string), bits: r.prefixlen as number })),
    nodeAddresses: new Set(e.nodeIps.map(canonical)),
  };
  for (const { key, value } of e.services) {
    const address = canonical(key.address as string);
    const flags = value.flags as number;
    // A cluster IP's wildcard entry (port 0, protocol 0) marks the address, it is no frontend.
    if (flags & SVC_F.WILDCARD) {
      tables.clusterIPs.add(address);
      continue;
    }
    tables.frontends.set(frontendKey(address, key.port as number, key.proto as number), {
      serviceId: value.serviceId as number,
      backendCount: value.backendCount as number,
      localBackendCount: value.localBackendCount as number,
      flags,
      affinityTimeoutSeconds: value.affinityTimeout as number,
      revNatIndex: value.revNatIndex as number,
    });
  }
  for (const { id, value } of e.backends) {
    tables.backends.set(id, {
      address: addressBytes(value.address as string),
      port: value.port as number,
      local: ((value.flags as number) & BE_F_LOCAL) !== 0,
      gone: ((value.flags as number) & BE_F_GONE) !== 0,
    });
  }
  for (const { index, value } of e.revnat)
    tables.reverseNat.set(index, { address: addressBytes(value.address as string), port: value.port as number });
  const addressBits = family === 4 ? 32 : 128;
  for (const r of e.sourceRanges) {
    // The LPM key's prefix length counts the 32 bits of the service id before the address.
    const bits = (r.prefixlen as number) - 32;
    if (bits < 0 || bits > addressBits) throw new RangeError(`source range prefix length ${r.prefixlen} out of range`);
    tables.sourceRanges.push({ serviceId: r.serviceId as number, prefix: addressBytes(r.address as string), bits });
  }
  return tables;
}

export class CompiledTables {
  readonly settings: Settings;
  private readonly families: Record<Family, FamilyTables>;
  private readonly maglev = new Map<number, Uint32Array>();
  private readonly members = new Set<string>();

  constructor(compiled: Compiled) {
    const e = compiled.entries;
    this.families = { 4: familyTables(e.v4, 4), 6: familyTables(e.v6, 6) };
    for (const { table, slots } of e.maglev) this.maglev.set(table, slots);
    for (const m of e.lbMembers) this.members.add(`${m.table} ${m.backendId}`);
    const c = e.config;
    const flags = c.flags as number;
    const network = (flag: number, address: unknown, mask: unknown): Network | undefined =>
      flags & flag ? { address: addressBytes(address as string), mask: addressBytes(mask as string) } : undefined;
    this.settings = {
      seed: c.seed as number,
      tcpEstablished: c.ctTcpEstablished as number,
      tcpClosing: c.ctTcpClosing as number,
      udp: c.ctUdp as number,
      udpStream: c.ctUdpStream as number,
      masqueradeAll: (flags & CFG_F.MASQUERADE_ALL) !== 0,
      podNetwork: { 4: network(CFG_F.POD_CIDR4, c.podCidr, c.podMask), 6: network(CFG_F.POD_CIDR6, c.podCidr6, c.podMask6) },
      // The config's port range is 0-0 when the node has no IPv4 address to masquerade with.
      masqueradeAddress: {
        4: (c.snatPortMin as number) !== 0 ? addressBytes(c.snatAddress as string) : undefined,
        6: flags & CFG_F.SNAT_ADDR6 ? addressBytes(c.snatAddress6 as string) : undefined,
      },
      snatPorts: { min: c.snatPortMin as number, max: c.snatPortMax as number },
      reselectGone: (flags & CFG_F.RESELECT_GONE) !== 0,
    };
  }

  frontend(family: Family, address: Uint8Array, port: number, proto: number): Frontend | undefined {
    return this.families[family].frontends.get(frontendKey(addressText(address), port, proto));
  }

  isClusterIP(family: Family, address: Uint8Array): boolean {
    return this.families[family].clusterIPs.has(addressText(address));
  }

  backend(family: Family, id: number): Backend | undefined {
    return this.families[family].backends.get(id);
  }

  reverseNat(family: Family, index: number): ReverseNat | undefined {
    return this.families[family].reverseNat.get(index);
  }

  /** Whether the address lies in a known service cluster IP range. */
  inServiceRange(family: Family, address: Uint8Array): boolean {
    return this.families[family].serviceRanges.some((r) => inPrefix(address, r.prefix, r.bits));
  }

  isNodeAddress(family: Family, address: Uint8Array): boolean {
    return this.families[family].nodeAddresses.has(addressText(address));
  }

  /** Whether a load-balancer source range of the service port admits `source`. */
  sourceAllowed(family: Family, serviceId: number, source: Uint8Array): boolean {
    return this.families[family].sourceRanges.some((r) => r.serviceId === serviceId && inPrefix(source, r.prefix, r.bits));
  }

  /** Slot -> backend id of a Maglev table, or undefined when the table does not exist. */
  maglevTable(table: number): Uint32Array | undefined {
    return this.maglev.get(table);
  }

  tableHolds(table: number, backendId: number): boolean {
    return this.members.has(`${table} ${backendId}`);
  }
}
