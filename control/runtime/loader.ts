/**
 * Loading a compiled state into a datapath instance: maps created with sizes
 * that fit it, then filled through the map API only.
 */
import { type Compiled, type FamilyEntries, familyOf } from '../compile/compiler.js';
import { Datapath, u32Key } from './datapath.js';
import { inputError } from '../common/errors.js';
import { hexOf } from '../../traces/errors.js';
import {
  ARRIVAL_ENTRIES,
  BPF_NOEXIST,
  CONFIG,
  IPPROTO,
  STEER_CLASS,
  STEER_F,
  STEER_KEY,
  encode,
  type MapName,
  type StructValue,
} from '../compile/layout.js';
import type { Protocol } from '../cluster/state.js';

/** Default size of the conntrack LRU map (two entries per flow). */
export const DEFAULT_CT_ENTRIES = 1 << 18;

/**
 * Size of the LRU map of the node's masquerade tuples (datapath/node_masq.ts):
 * one per masqueraded flow whose copies the capture holds, a quarter of the
 * flows conntrack holds, and no fewer than 1024.
 */
export function nodeMasqEntries(ctEntries: number): number {
  return Math.max(1024, ctEntries >> 3);
}

/**
 * Room to grow beyond the compiled state, for incremental updates (control/runtime/update.ts) and
 * state changes applied in place (control/runtime/rebase.ts roomFor); each map's default is none.
 */
export interface MapRoom {
  backends: number;
  tables: number;
  members: number;
  /** Frontend entries (lb4_services, lb6_services). */
  services?: number;
  services6?: number;
  /** Reverse-NAT entries: a frontend's stays for its flows after it goes. */
  revNat?: number;
  revNat6?: number;
  /** Service port ids beyond the compiled ones (the service_stats array). */
  serviceIds?: number;
  sourceRanges?: number;
  sourceRanges6?: number;
  nodeIps?: number;
  nodeIps6?: number;
  serviceRanges?: number;
  serviceRanges6?: number;
  /** Steer entries: a frontend or backend endpoint that appears, and its address (control/runtime/steer-update.ts). */
  steer?: number;
}

export interface ProgramOptions {
  /** The datapath's compiled module; default build/datapath.wasm (Datapath.load). */
  module?: WebAssembly.Module;
  ctEntries?: number;
  /** Spare backends, Maglev tables and table members in the maps; default none (the maps fit the state exactly). */
  room?: MapRoom;
  /** Worker `index` of `count` of a sharded replay: it processes only the packets of its clients' flows. */
  shard?: { index: number; count: number };
}

/**
 * Classes of masquerade ports (datapath/snat.ts): a power of two up to 64,
 * as many as keep 256 ports or more each.
 */
export function portClasses(size: number): number {
  let classes = 1;
  while (classes < 64 && Math.floor(size / (classes * 2)) >= 256) classes *= 2;
  return classes;
}

/**
 * The config map's value: the compiled one, and this worker's place when
 * sharded. A worker holds whole classes of masquerade ports, so the number of
 * workers must divide the classes.
 */
function configFor(compiled: Compiled, shard: ProgramOptions['shard']): StructValue {
  const config = compiled.entries.config;
  if (!shard || shard.count <= 1) return config;
  const min = Number(config.snatPortMin);
  const max = Number(config.snatPortMax);
  if (shard.count > 64 || (shard.count & (shard.count - 1)) !== 0) {
    throw inputError(['--workers'], `${shard.count}: must be a power of two up to 64, as clients are spread over 64 classes`);
  }
  if (min !== 0 && portClasses(max - min + 1) % shard.count !== 0) {
    throw inputError(
      ['--workers'],
      `${shard.count} workers need at least ${shard.count * 256} SNAT ports to share, ` +
        `one class of 256 or more each; the range ${min}-${max} has ${max - min + 1}`,
    );
  }
  return { ...config, shard: shard.index, shards: shard.count };
}

export async function loadProgram(compiled: Compiled, opts: ProgramOptions = {}): Promise<Datapath> {
  const dp = await Datapath.load(opts.module);
  const e = compiled.entries;
  const steerEntries = steeringClasses(compiled);
  const room = opts.room;
  dp.createMaps({
    services: e.v4.services.length + (room?.services ?? 0),
    backends: compiled.backends.length + (room?.backends ?? 0),
    revNat: e.v4.revnat.length + (room?.revNat ?? 0),
    maglevM: compiled.maglevTableSize,
    maglevTables: e.maglev.length + (room?.tables ?? 0),
    serviceIds: compiled.services.length + (room?.serviceIds ?? 0),
    members: e.lbMembers.length + (room?.members ?? 0),
    sourceRanges: e.v4.sourceRanges.length + (room?.sourceRanges ?? 0),
    nodeIps: e.v4.nodeIps.length + (room?.nodeIps ?? 0),
    services6: e.v6.services.length + (room?.services6 ?? 0),
    revNat6: e.v6.revnat.length + (room?.revNat6 ?? 0),
    sourceRanges6: e.v6.sourceRanges.length + (room?.sourceRanges6 ?? 0),
    nodeIps6: e.v6.nodeIps.length + (room?.nodeIps6 ?? 0),
    serviceRanges: e.v4.serviceRanges.length + (room?.serviceRanges ?? 0),
    serviceRanges6: e.v6.serviceRanges.length + (room?.serviceRanges6 ?? 0),
    steer: steerEntries.size + (room?.steer ?? 0),
    conntrack: opts.ctEntries ?? DEFAULT_CT_ENTRIES,
  });
  // The maps of the node's own masquerade tuples, beside createMaps's, for the copies in captures taken on the node.
  dp.createMap('arrivals', ARRIVAL_ENTRIES);
  dp.createMap('nodeMasq', nodeMasqEntries(opts.ctEntries ?? DEFAULT_CT_ENTRIES));
  dp.map('config').updateRaw(u32Key(0), encode(CONFIG, configFor(compiled, opts.shard)));
  const maglev = dp.map('maglev');
  for (const { table, slots } of e.maglev) {
    maglev.updateRaw(u32Key(table), new Uint8Array(slots.buffer, slots.byteOffset, slots.byteLength), BPF_NOEXIST);
  }
  const members = dp.map('lbMembers');
  for (const key of e.lbMembers) members.update(key, PRESENT, BPF_NOEXIST);
  fillFamily(dp, e.v4, {
    services: 'lb4Services',
    backends: 'lb4Backends',
    revnat: 'lb4Revnat',
    sourceRanges: 'lb4SourceRanges',
    serviceRanges: 'serviceRanges4',
    nodeIps: 'nodeIps4',
  });
  fillFamily(dp, e.v6, {
    services: 'lb6Services',
    backends: 'lb6Backends',
    revnat: 'lb6Revnat',
    sourceRanges: 'lb6SourceRanges',
    serviceRanges: 'serviceRanges6',
    nodeIps: 'nodeIps6',
  });
  const steer = dp.map('steer');
  for (const [key, flags] of steerEntries) steer.updateRaw(hexToBytes(key), encode(STEER_CLASS, { flags }), BPF_NOEXIST);
  return dp;
}

/**
 * The steer map's entries (hex key -> STEER_F_*): every frontend and backend
 * endpoint, and its address alone, which packets without ports go by.
 * Cluster changes add to them (control/runtime/steer-update.ts).
 */
export function steeringClasses(compiled: Compiled): Map<string, number> {
  const classes = new Map<string, number>();
  const add = (ip: string, port: number, protocol: Protocol, flag: number) => {
    for (const key of [steerKey(ip, port, protocol), steerKey(ip)]) {
      const hex = hexOf(key);
      classes.set(hex, (classes.get(hex) ?? 0) | flag);
    }
  };
  for (const svc of compiled.services) {
    for (const f of svc.frontends) add(f.address, f.port, f.protocol, STEER_F.FRONTEND);
  }
  for (const b of compiled.backends) add(b.ip, b.port, b.protocol, STEER_F.BACKEND);
  return classes;
}

/** The steer map's key of an endpoint, or of an address alone when no port is given (IPv4 mapped into IPv6). */
export function steerKey(ip: string, port = 0, protocol?: Protocol): Uint8Array {
  const address = familyOf(ip) === 'v4' ? `::ffff:${ip}` : ip;
  return encode(STEER_KEY, { address, port, proto: protocol ? IPPROTO[protocol] : 0 });
}

function hexToBytes(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

const PRESENT = { present: 1 };

/** One address family's maps, filled with its entries. */
function fillFamily(dp: Datapath, e: FamilyEntries, maps: Record<keyof FamilyEntries, MapName>): void {
  const services = dp.map(maps.services);
  for (const { key, value } of e.services) services.update(key, value, BPF_NOEXIST);
  const backends = dp.map(maps.backends);
  for (const { id, value } of e.backends) backends.update({ value: id }, value, BPF_NOEXIST);
  const revnat = dp.map(maps.revnat);
  for (const { index, value } of e.revnat) revnat.update({ value: index }, value, BPF_NOEXIST);
  const ranges = dp.map(maps.sourceRanges);
  for (const key of e.sourceRanges) ranges.update(key, PRESENT);
  const serviceRanges = dp.map(maps.serviceRanges);
  for (const key of e.serviceRanges) serviceRanges.update(key, PRESENT);
  const nodeIps = dp.map(maps.nodeIps);
  for (const address of e.nodeIps) nodeIps.update({ address }, PRESENT);
}
