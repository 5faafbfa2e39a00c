/**
 * A loaded datapath brought to a new cluster state in place, through the map
 * API, as kube-proxy's sync brings its rules to the state it watches: for
 * cluster changes during a replay (control/runtime/cluster-sync.ts).
 *
 * When only EndpointSlices differ, they are applied as slice updates
 * (update.ts applyEndpointSliceUpdates): only the Services they belong to are
 * compiled again. Any other change (a Service, a Node, the
 * KubeProxyConfiguration, legacy Endpoints) compiles the whole new state, then
 * keeps every id the maps and conntrack entries hold: a Service port keeps
 * its id by name, a backend by (Service port, address, port, protocol), a
 * frontend its reverse-NAT index by (Service port, kind, address, port). New
 * Service ports and frontends get ids after the highest ever used, never one
 * that named something else; new backends take ids from the live program's
 * pool as slice updates do. The compiled entries are renamed to those ids and
 * only the entries that differ are written, deletes first.
 *
 * What established flows see, as with kube-proxy's conntrack: a backend that
 * goes stays as a tombstone (BE_F_GONE) for the flows that name it; the
 * reverse-NAT entry of a frontend that goes stays, so that the replies of its
 * flows are still translated; a Service port that goes keeps its compiled
 * form at its id (`removed`, no backends), so that its flows keep a name;
 * once a frontend went, the config says so (CFG_F.REMOVED_FRONTENDS, kept
 * from then on), so that a packet to no frontend is looked up in conntrack.
 * New flows see what a datapath loaded from a full compile of the new state
 * would decide: the same frontends, Maglev tables (by backend names) and
 * configuration (that flag aside).
 *
 * Map sizes are fixed when the program is loaded: `roomFor` says how much
 * room a replay's events may need. A change that does not fit throws
 * NeedsReloadError before it touches a map.
 */
import { resolveServices } from '../cluster/index.js';
import type { ClusterEvent } from '../cluster/events.js';
import type { ClusterState, ResolvedEndpoint, ResolvedService, Service } from '../cluster/state.js';
import {
  addTableEntries,
  backendKey,
  backendValue,
  compile,
  familyOf,
  serviceName,
  skipReason,
  type BackendSet,
  type Compiled,
  type CompiledBackend,
  type CompiledFrontend,
  type CompiledService,
  type Family,
  type FamilyEntries,
  type MapEntries,
} from '../compile/compiler.js';
import {
  BPF_ANY,
  BPF_EXIST,
  BPF_NOEXIST,
  CFG_F,
  CONFIG,
  MAPS,
  decode,
  encode,
  hostPort,
  type MapName,
  type MapSpec,
  type StructValue,
} from '../compile/layout.js';
import { u32Key } from './datapath.js';
import type { MapRoom } from './loader.js';
import {
  NeedsReloadError,
  applyEndpointSliceUpdates,
  applyOps,
  backendOps,
  checkRoom,
  newIds,
  settleIds,
  tombstoneValue,
  tombstonedBy,
  trackProgram,
  type BackendPlan,
  type EndpointSliceChange,
  type LiveProgram,
  type MapOp,
  type TouchedEntries,
} from './update.js';

/** One Service port's endpoints that changed, as "ip:port" ("[ip]:port" for IPv6), sorted. */
export interface EndpointChanges {
  /** The Service port, "namespace/name:port". */
  service: string;
  /** Ready now, and were not (new, or ready again). */
  added: string[];
  /** Ready or serving while terminating before, and neither now: gone, or no longer serving. */
  removed: string[];
  /** Serving only as terminating now (not ready), and were not. */
  terminating: string[];
}

/** What a state change did, for the timeline. */
export interface StateChange {
  /** `endpoints`: only EndpointSlices differed, applied as slice updates; `rebase`: the state was compiled again. */
  path: 'endpoints' | 'rebase';
  /** Service ports (compiled names) that appeared, went, or changed otherwise than by their endpoints. */
  services: { added: string[]; removed: string[]; modified: string[] };
  endpoints: EndpointChanges[];
  /** Backends that went: tombstones now (or ids taken again at once, when no other was free). */
  removedBackendIds: number[];
  /** Map entries written or deleted; a Maglev table is one entry. */
  touched: number;
  byMap: TouchedEntries;
}

/**
 * Brings a live program to the state `after` (with `afterResolved =
 * resolveServices(after).services`, resolved here when not given). Returns the
 * live program that now describes it (the same object on the slice path, a
 * new one otherwise: use it from then on) and what changed. Throws
 * NeedsReloadError, having changed nothing, when a map has no room.
 */
export function applyStateChange(
  live: LiveProgram,
  after: ClusterState,
  afterResolved?: readonly ResolvedService[],
): { live: LiveProgram; change: StateChange } {
  const slices = sliceChangesOnly(live, after);
  return slices ? applySliceChanges(live, after, slices) : rebase(live, after, afterResolved ?? resolveServices(after).services);
}

// ---------------------------------------------------------------------------
// Only EndpointSlices differ

const sameItems = <T>(a: readonly T[] = [], b: readonly T[] = []) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * The slice changes from the live state to `after`, or undefined when anything
 * else differs. Objects are compared by identity (events.ts applyEvent replaces
 * what it changes), slices also by value: the slices derived from Pods are
 * made again by every event.
 */
function sliceChangesOnly(live: LiveProgram, after: ClusterState): EndpointSliceChange[] | undefined {
  const was = live.state;
  const others =
    sameItems(was.services, after.services) &&
    sameItems(was.nodes, after.nodes) &&
    sameItems(was.legacyEndpoints, after.legacyEndpoints) &&
    was.proxyConfig === after.proxyConfig &&
    was.serviceRanges === after.serviceRanges;
  if (!others) return undefined;
  const changes: EndpointSliceChange[] = [];
  const present = new Set<string>();
  for (const slice of after.endpointSlices) {
    const key = `${slice.namespace}/${slice.name}`;
    present.add(key);
    const before = live.slices.byName.get(key);
    if (before !== slice && !sameValue(before, slice)) changes.push({ op: 'upsert', slice });
  }
  for (const [key, slice] of live.slices.byName) {
    if (!present.has(key)) changes.push({ op: 'delete', namespace: slice.namespace, name: slice.name });
  }
  return changes;
}

/** Deep equality of plain data (what the cluster loader makes: objects, arrays, strings, numbers, booleans). */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a).filter((k) => (a as Record<string, unknown>)[k] !== undefined);
  const kb = Object.keys(b).filter((k) => (b as Record<string, unknown>)[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => sameValue((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function applySliceChanges(
  live: LiveProgram,
  after: ClusterState,
  changes: EndpointSliceChange[],
): { live: LiveProgram; change: StateChange } {
  // The Services the slices belong to, before and after, as resolved now.
  const keys = new Set<string>();
  for (const c of changes) {
    const name = c.op === 'upsert' ? `${c.slice.namespace}/${c.slice.name}` : `${c.namespace}/${c.name}`;
    const slices = [live.slices.byName.get(name), c.op === 'upsert' ? c.slice : undefined];
    for (const s of slices) if (s) keys.add(`${s.namespace}/${s.serviceName}`);
  }
  const at = [...keys].flatMap((key) => {
    const place = live.services.get(key);
    return place ? [{ index: place.index, before: live.resolved[place.index] }] : [];
  });
  const update = applyEndpointSliceUpdates(live, changes);
  const { endpointSlices: _, ...rest } = after;
  Object.assign(live.state, rest);
  return {
    live,
    change: {
      path: 'endpoints',
      services: { added: [], removed: [], modified: [] },
      endpoints: at.flatMap(({ index, before }) => endpointChanges(before, live.resolved[index])),
      removedBackendIds: update.removedBackendIds,
      touched: update.touched,
      byMap: update.byMap,
    },
  };
}

// ---------------------------------------------------------------------------
// Anything else: the whole state compiled again, with the live ids

/** Fresh ids (a full compile's, dense) to the live program's. */
interface IdRenaming {
  /** Indexed by fresh Service port id. */
  service: number[];
  /** Indexed by fresh backend id. */
  backend: number[];
  revNat: Map<number, number>;
  plan: Pick<BackendPlan, 'added' | 'removed' | 'changed' | 'fromPool'>;
  /** Every backend in use after the change, with the live ids. */
  inUse: CompiledBackend[];
}

function rebase(live: LiveProgram, after: ClusterState, resolved: readonly ResolvedService[]): { live: LiveProgram; change: StateChange } {
  const fresh = compile(after, resolved, live.opts);
  const ids = renaming(live, fresh);
  const compiled = renamed(live, fresh, ids);
  const ops = [
    ...backendOps(ids.plan, live.tombstones),
    ...entryOps(live.compiled.entries, compiled.entries),
    ...configOps(live, compiled),
  ];
  checkServiceIds(live, compiled);
  checkRoom(live.dp, ops);
  const before = { services: live.compiled.services, resolved: live.resolved };
  applyOps(live.dp, ops);
  settleIds(live.freeIds, ids.plan);
  const next = trackProgram(live.dp, { state: after, resolved, compiled, opts: live.opts, freeIds: live.freeIds });
  const byMap: TouchedEntries = {};
  for (const op of ops) byMap[op.map] = (byMap[op.map] ?? 0) + 1;
  return {
    live: next,
    change: {
      path: 'rebase',
      services: serviceChanges(before.services, compiled.services),
      endpoints: resolvedChanges(before.resolved, resolved),
      removedBackendIds: ids.plan.removed.map((b) => b.id),
      touched: ops.length,
      byMap,
    },
  };
}

const frontendIdentity = (name: string, f: CompiledFrontend) => `${name} ${f.kind} ${f.address} ${f.port}`;

/** The live ids of a full compile's Service ports, frontends and backends; new ones as the module comment says. */
function renaming(live: LiveProgram, fresh: Compiled): IdRenaming {
  const held = live.compiled.services;
  const portIds = new Map(held.map((cs) => [cs.name, cs.id]));
  let lastPort = held.length;
  const service = [0, ...fresh.services.map((cs) => portIds.get(cs.name) ?? ++lastPort)];

  const indices = new Map(held.flatMap((cs) => cs.frontends.map((f) => [frontendIdentity(cs.name, f), f.revNatIndex])));
  const { v4, v6 } = live.compiled.entries;
  let lastIndex = [...v4.revnat, ...v6.revnat].reduce((max, e) => Math.max(max, e.index), 0);
  const revNat = new Map<number, number>();
  for (const cs of fresh.services) {
    for (const f of cs.frontends) revNat.set(f.revNatIndex, indices.get(frontendIdentity(cs.name, f)) ?? ++lastIndex);
  }

  const plan: IdRenaming['plan'] = { added: [], removed: [], changed: [], fromPool: 0 };
  const backend = new Array<number>(fresh.backends.length + 1).fill(0);
  const inUse: CompiledBackend[] = [];
  const newcomers: CompiledBackend[] = [];
  const present = new Set<string>();
  for (const b of fresh.backends) {
    const serviceId = service[b.serviceId];
    const key = backendKey(serviceId, b.ip, b.port, b.protocol);
    present.add(key);
    const known = live.backends.get(key)?.backend;
    if (!known) {
      newcomers.push({ ...b, serviceId });
      continue;
    }
    const now = { ...b, id: known.id, serviceId };
    backend[b.id] = known.id;
    if (now.local !== known.local || now.nodeName !== known.nodeName || now.zone !== known.zone)
      plan.changed.push({ before: known, after: now });
    inUse.push(now);
  }
  for (const [key, { backend: b }] of live.backends) if (!present.has(key)) plan.removed.push(b);
  const taken = newIds(live, newcomers.length, plan);
  newcomers.forEach((b, i) => {
    const now = { ...b, id: taken[i] };
    backend[b.id] = now.id;
    plan.added.push(now);
    inUse.push(now);
  });
  return { service, backend, revNat, plan, inUse };
}

const NO_BACKENDS: BackendSet = { backendIds: [], selection: 'none', maglev: new Uint32Array(0) };

/** A Service port that went: its name and frontends kept for the flows that name its id, no backends. */
function removedPort(cs: CompiledService): CompiledService {
  const { local: _, local6: __, ...rest } = cs;
  return { ...rest, cluster: NO_BACKENDS, cluster6: NO_BACKENDS, unusableEndpoints: 0, removed: true };
}

/** A full compile's output with the live ids, the ids out of use kept as they are, and every entry the maps will hold. */
function renamed(live: LiveProgram, fresh: Compiled, ids: IdRenaming): Compiled {
  const renameSet = (set: BackendSet): BackendSet => ({
    backendIds: set.backendIds.map((id) => ids.backend[id]).sort((a, b) => a - b),
    selection: set.selection,
    maglev: set.maglev.map((id) => ids.backend[id]),
  });
  const services = [...live.compiled.services];
  const present = new Set<number>();
  for (const cs of fresh.services) {
    const id = ids.service[cs.id];
    present.add(id);
    services[id - 1] = {
      ...cs,
      id,
      frontends: cs.frontends.map((f) => ({ ...f, revNatIndex: ids.revNat.get(f.revNatIndex)! })),
      cluster: renameSet(cs.cluster),
      cluster6: renameSet(cs.cluster6),
      ...(cs.local ? { local: renameSet(cs.local) } : {}),
      ...(cs.local6 ? { local6: renameSet(cs.local6) } : {}),
    };
  }
  for (const cs of live.compiled.services) if (!present.has(cs.id) && !cs.removed) services[cs.id - 1] = removedPort(cs);

  const backends = [...live.compiled.backends];
  for (const b of ids.inUse) backends[b.id - 1] = b;
  const taken = new Set(ids.plan.added.map((b) => b.id));
  const tombstones = [...[...live.tombstones.values()].filter((b) => !taken.has(b.id)), ...tombstonedBy(ids.plan)];

  const family = (f: Family): FamilyEntries => {
    const e = fresh.entries[f];
    const revnat = new Map(live.compiled.entries[f].revnat.map((r) => [r.index, r]));
    for (const r of e.revnat) {
      const index = ids.revNat.get(r.index)!;
      revnat.set(index, { index, value: r.value });
    }
    return {
      services: e.services.map(({ key, value }) => ({
        key,
        value:
          value.serviceId === 0
            ? value
            : { ...value, serviceId: ids.service[value.serviceId as number], revNatIndex: ids.revNat.get(value.revNatIndex as number)! },
      })),
      backends: [
        ...ids.inUse.filter((b) => familyOf(b.ip) === f).map((b) => ({ id: b.id, value: backendValue(b) })),
        ...tombstones.filter((b) => familyOf(b.ip) === f).map((b) => ({ id: b.id, value: tombstoneValue(b) })),
      ].sort((a, b) => a.id - b.id),
      revnat: [...revnat.values()].sort((a, b) => a.index - b.index),
      sourceRanges: e.sourceRanges.map((key) => ({ ...key, serviceId: ids.service[key.serviceId as number] })),
      serviceRanges: e.serviceRanges,
      nodeIps: e.nodeIps,
    };
  };
  const entries: MapEntries = { config: fresh.entries.config, maglev: [], lbMembers: [], v4: family('v4'), v6: family('v6') };
  entries.config = configAfter(live.compiled.entries, entries);
  for (const cs of services) addTableEntries(entries, cs);
  return { ...fresh, services, backends, entries };
}

/**
 * The new config, flagged CFG_F.REMOVED_FRONTENDS once a frontend entry went
 * (a deleted Service or port, a removed external IP, LoadBalancer IP or node
 * address), and from then on: the conntrack entries of established flows to
 * it stay, and the datapath looks for them on a packet to no frontend only
 * when this flag is set.
 */
function configAfter(before: MapEntries, after: MapEntries): StructValue {
  const frontendKeys = (e: MapEntries) =>
    new Set((['v4', 'v6'] as const).flatMap((f) => e[f].services.map(({ key }) => `${f} ${key.address} ${key.port} ${key.proto}`)));
  const now = frontendKeys(after);
  const flags = after.config.flags as number;
  const went = ((before.config.flags as number) & CFG_F.REMOVED_FRONTENDS) !== 0 || [...frontendKeys(before)].some((k) => !now.has(k));
  return went ? { ...after.config, flags: flags | CFG_F.REMOVED_FRONTENDS } : after.config;
}

/** The service_stats array is indexed by Service port id: it cannot grow. */
function checkServiceIds(live: LiveProgram, compiled: Compiled): void {
  const room = live.dp.map('serviceStats').maxEntries - 1;
  if (compiled.services.length > room) {
    throw new NeedsReloadError(
      `${compiled.services.length} Service port ids, but the maps were sized for ${room}: ` +
        "compile the new state and load it again (loadProgram's room option leaves room to grow)",
    );
  }
}

const PRESENT = { present: 1 };

type Entry = { key: StructValue; value: StructValue | Uint8Array };

const FAMILY_MAPS = {
  v4: {
    services: 'lb4Services',
    revnat: 'lb4Revnat',
    sourceRanges: 'lb4SourceRanges',
    serviceRanges: 'serviceRanges4',
    nodeIps: 'nodeIps4',
  },
  v6: {
    services: 'lb6Services',
    revnat: 'lb6Revnat',
    sourceRanges: 'lb6SourceRanges',
    serviceRanges: 'serviceRanges6',
    nodeIps: 'nodeIps6',
  },
} as const;

/** The writes and deletes from one set of entries to another; backends aside (backendOps), and the config (configOps). */
function entryOps(before: MapEntries, after: MapEntries): MapOp[] {
  const tables = (e: MapEntries): Entry[] =>
    e.maglev.map(({ table, slots }) => ({
      key: { value: table },
      value: new Uint8Array(slots.buffer, slots.byteOffset, slots.byteLength),
    }));
  const members = (e: MapEntries): Entry[] => e.lbMembers.map((key) => ({ key, value: PRESENT }));
  const ops = [...diff('maglev', tables(before), tables(after)), ...diff('lbMembers', members(before), members(after))];
  for (const f of ['v4', 'v6'] as const) {
    const maps = FAMILY_MAPS[f];
    const [was, now] = [before[f], after[f]];
    const revnat = (e: FamilyEntries): Entry[] => e.revnat.map(({ index, value }) => ({ key: { value: index }, value }));
    const keys = (list: StructValue[]): Entry[] => list.map((key) => ({ key, value: PRESENT }));
    const nodeIps = (e: FamilyEntries): Entry[] => e.nodeIps.map((address) => ({ key: { address }, value: PRESENT }));
    ops.push(
      ...diff(maps.services, was.services, now.services),
      ...diff(maps.revnat, revnat(was), revnat(now)),
      ...diff(maps.sourceRanges, keys(was.sourceRanges), keys(now.sourceRanges)),
      ...diff(maps.serviceRanges, keys(was.serviceRanges), keys(now.serviceRanges)),
      ...diff(maps.nodeIps, nodeIps(was), nodeIps(now)),
    );
  }
  return ops;
}

const bytesEqual = (a: Uint8Array, b: Uint8Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

function diff(map: MapName, before: readonly Entry[], after: readonly Entry[]): MapOp[] {
  const spec: MapSpec = MAPS[map];
  const keyOf = (e: Entry) => Buffer.from(encode(spec.key, e.key)).toString('latin1');
  const bytes = (e: Entry) => (e.value instanceof Uint8Array ? e.value : encode(spec.value!, e.value));
  const was = new Map(before.map((e) => [keyOf(e), e]));
  const seen = new Set<string>();
  const ops: MapOp[] = [];
  for (const e of after) {
    const k = keyOf(e);
    if (seen.has(k)) continue;
    seen.add(k);
    const old = was.get(k);
    if (!old) ops.push({ map, key: e.key, value: e.value, flags: BPF_NOEXIST });
    else if (!bytesEqual(bytes(old), bytes(e))) ops.push({ map, key: e.key, value: e.value, flags: BPF_EXIST });
  }
  for (const [k, e] of was) if (!seen.has(k)) ops.push({ map, key: e.key, flags: BPF_ANY });
  return ops;
}

/** The config map's entry, when it changes (timeouts, masquerade, pod networks); a sharded worker's place is kept. */
function configOps(live: LiveProgram, compiled: Compiled): MapOp[] {
  const current = live.dp.map('config').lookupRaw(u32Key(0))!;
  const { shard, shards } = decode(CONFIG, current);
  const next = encode(CONFIG, { ...compiled.entries.config, shard, shards });
  return bytesEqual(current, next) ? [] : [{ map: 'config', key: { value: 0 }, value: next, flags: BPF_ANY }];
}

// ---------------------------------------------------------------------------
// What changed, for the timeline

/** What a Service port is, but for its endpoints: its Service (but where it came from and its other ports), its port and its frontends. */
function portShape(cs: CompiledService): string {
  const { origin: _, ports: __, ...service } = cs.service;
  return JSON.stringify([service, cs.port, cs.frontends.map((f) => [f.kind, f.address, f.port, f.protocol])]);
}

function serviceChanges(before: readonly CompiledService[], after: readonly CompiledService[]): StateChange['services'] {
  const served = (list: readonly CompiledService[]) => new Map(list.filter((cs) => !cs.removed).map((cs) => [cs.name, cs]));
  const [was, now] = [served(before), served(after)];
  const sorted = (names: Iterable<string>) => [...names].sort();
  return {
    added: sorted([...now.keys()].filter((name) => !was.has(name))),
    removed: sorted([...was.keys()].filter((name) => !now.has(name))),
    modified: sorted([...now].filter(([name, cs]) => was.has(name) && portShape(was.get(name)!) !== portShape(cs)).map(([name]) => name)),
  };
}

/** Endpoint changes of every Service, before and after. */
function resolvedChanges(before: readonly ResolvedService[], after: readonly ResolvedService[]): EndpointChanges[] {
  const byKey = (list: readonly ResolvedService[]) => new Map(list.map((rs) => [`${rs.service.namespace}/${rs.service.name}`, rs]));
  const [was, now] = [byKey(before), byKey(after)];
  return [...new Set([...was.keys(), ...now.keys()])].sort().flatMap((key) => endpointChanges(was.get(key), now.get(key)));
}

type Serving = 'ready' | 'terminating';

/** The endpoints kube-proxy sends to, per compiled port name: ready ones, and serving terminating ones. */
function servingByPort(rs: ResolvedService | undefined): Map<string, Map<string, Serving>> {
  const ports = new Map<string, Map<string, Serving>>();
  if (!rs || skipReason(rs.service)) return ports;
  for (const rp of rs.ports) {
    const serving = new Map<string, Serving>();
    for (const ep of rp.endpoints) {
      const state = servingState(ep);
      if (state && serving.get(hostPort(ep.ip, ep.port)) !== 'ready') serving.set(hostPort(ep.ip, ep.port), state);
    }
    ports.set(serviceName(rs.service, rp.port.name, rp.port.port), serving);
  }
  return ports;
}

function servingState(ep: ResolvedEndpoint): Serving | undefined {
  if (ep.conditions.ready) return 'ready';
  return ep.conditions.serving && ep.conditions.terminating ? 'terminating' : undefined;
}

/** One Service's endpoint changes, per port; ports without any left out. */
function endpointChanges(before: ResolvedService | undefined, after: ResolvedService | undefined): EndpointChanges[] {
  if (before === after) return [];
  const [was, now] = [servingByPort(before), servingByPort(after)];
  return [...new Set([...was.keys(), ...now.keys()])].sort().flatMap((service): EndpointChanges[] => {
    const [old, next] = [was.get(service) ?? new Map<string, Serving>(), now.get(service) ?? new Map<string, Serving>()];
    const change = {
      service,
      added: [...next].filter(([ep, s]) => s === 'ready' && old.get(ep) !== 'ready').map(([ep]) => ep),
      removed: [...old.keys()].filter((ep) => !next.has(ep)),
      terminating: [...next].filter(([ep, s]) => s === 'terminating' && old.get(ep) !== 'terminating').map(([ep]) => ep),
    };
    for (const list of [change.added, change.removed, change.terminating]) list.sort();
    return change.added.length + change.removed.length + change.terminating.length > 0 ? [change] : [];
  });
}

// ---------------------------------------------------------------------------
// Room for a replay's changes

/**
 * Room in every map that a replay's events may grow, beyond the initial
 * state's compiled entries: generous upper bounds from every object the
 * events carry, so that the changes apply in place. Backends: per Service,
 * every endpoint address any object names for it (EndpointSlices, Endpoints,
 * Pods its selector matches) times every port any version of it or of its
 * slices has, so that no backend ever takes a tombstone's id; tables and
 * Service port ids: per Service, every port name it ever has; frontends and
 * reverse-NAT entries: every frontend any version of a Service has, on any
 * address any Node ever has.
 */
export function roomFor(initial: ClusterState, events: readonly ClusterEvent[]): MapRoom {
  const versions = new Map<string, Service[]>();
  const addresses = new Map<string, Set<string>>();
  const slicePorts = new Map<string, Set<string>>();
  const add = <T>(map: Map<string, Set<T>>, key: string, value: T) => {
    let set = map.get(key);
    if (!set) map.set(key, (set = new Set()));
    set.add(value);
  };
  const services = [...initial.services, ...events.flatMap((e) => (e.kind === 'Service' ? [e.object] : []))];
  for (const s of services) versions.set(`${s.namespace}/${s.name}`, [...(versions.get(`${s.namespace}/${s.name}`) ?? []), s]);
  const slices = [...initial.endpointSlices, ...events.flatMap((e) => (e.kind === 'EndpointSlice' ? [e.object] : []))];
  for (const slice of slices) {
    const key = `${slice.namespace}/${slice.serviceName}`;
    for (const ep of slice.endpoints) for (const ip of ep.addresses) add(addresses, key, ip);
    for (const p of slice.ports) add(slicePorts, key, `${p.name} ${p.protocol} ${p.port}`);
  }
  const legacy = [...(initial.legacyEndpoints ?? []), ...events.flatMap((e) => (e.kind === 'Endpoints' ? [e.object] : []))];
  for (const e of legacy) {
    for (const subset of e.subsets)
      for (const a of [...subset.addresses, ...subset.notReadyAddresses]) add(addresses, `${e.namespace}/${e.name}`, a.ip);
  }
  const pods = [...(initial.pods ?? []), ...events.flatMap((e) => (e.kind === 'Pod' ? [e.object] : []))];
  for (const pod of pods) {
    for (const s of services) {
      const selector = s.selector;
      if (s.namespace !== pod.namespace || !selector) continue;
      if (Object.entries(selector).every(([k, v]) => pod.labels[k] === v))
        for (const ip of pod.podIPs) add(addresses, `${s.namespace}/${s.name}`, ip);
    }
  }
  const nodes = [...initial.nodes, ...events.flatMap((e) => (e.kind === 'Node' ? [e.object] : []))];
  const nodeAddresses = (f: Family) =>
    Math.max(
      0,
      ...nodes.map(
        (n) => n.addresses.filter((a) => (a.type === 'InternalIP' || a.type === 'ExternalIP') && familyOf(a.address) === f).length,
      ),
    );
  const node = { v4: nodeAddresses('v4'), v6: nodeAddresses('v6') };

  const room = { backends: 0, tables: 0, members: 0, serviceIds: 0 };
  const grown = { services: { v4: 0, v6: 0 }, revNat: { v4: 0, v6: 0 }, sourceRanges: { v4: 0, v6: 0 } };
  for (const [key, list] of versions) {
    const portNames = new Set(list.flatMap((s) => s.ports.map((p) => p.name || String(p.port))));
    const ports = new Set([
      ...list.flatMap((s) => s.ports.map((p) => `${p.name} ${p.protocol} ${p.targetPort}`)),
      ...(slicePorts.get(key) ?? []),
    ]);
    room.backends += (addresses.get(key)?.size ?? 0) * ports.size;
    room.tables += 4 * portNames.size;
    room.serviceIds += portNames.size;
    for (const f of ['v4', 'v6'] as const) {
      const counts = list.map((s) => frontendCounts(s, f, node[f]));
      grown.services[f] += Math.max(...counts.map((c) => c.entries));
      grown.revNat[f] += counts.reduce((n, c) => n + c.frontends, 0);
      grown.sourceRanges[f] += Math.max(...counts.map((c) => c.sourceRanges));
    }
  }
  // A Node's new addresses (or a KubeProxyConfiguration's nodePortAddresses) give every NodePort new frontends.
  const nodePorts = [...versions.values()].reduce(
    (n, list) => n + Math.max(...list.map((s) => s.ports.filter((p) => p.nodePort).length)),
    0,
  );
  const proxyChanges = events.filter((e) => e.kind === 'KubeProxyConfiguration').length;
  for (const f of ['v4', 'v6'] as const) {
    const nodeEvents = events.reduce(
      (n, e) => n + (e.kind === 'Node' ? e.object.addresses.filter((a) => familyOf(a.address) === f).length : 0),
      0,
    );
    grown.revNat[f] += (nodeEvents + proxyChanges * node[f]) * nodePorts;
  }
  return {
    ...room,
    members: 2 * room.backends,
    services: grown.services.v4,
    services6: grown.services.v6,
    revNat: grown.revNat.v4,
    revNat6: grown.revNat.v6,
    sourceRanges: grown.sourceRanges.v4,
    sourceRanges6: grown.sourceRanges.v6,
    nodeIps: node.v4,
    nodeIps6: node.v6,
  };
}

/** One version of a Service, in one family: its frontend entries (with the cluster IPs' wildcards), its frontends, its source-range entries. */
function frontendCounts(s: Service, f: Family, nodeAddresses: number): { entries: number; frontends: number; sourceRanges: number } {
  const inFamily = (list: readonly string[]) => list.filter((a) => a !== 'None' && familyOf(a) === f).length;
  const clusterIPs = inFamily(s.clusterIPs);
  const lbIPs = s.type === 'LoadBalancer' ? inFamily(s.loadBalancerIngress.flatMap((i) => (i.ip ? [i.ip] : []))) : 0;
  const perPort = clusterIPs + inFamily(s.externalIPs) + lbIPs;
  const frontends = s.ports.reduce((n, p) => n + perPort + (p.nodePort ? nodeAddresses : 0), 0);
  const ranges = s.loadBalancerSourceRanges.filter((c) => familyOf(c.split('/')[0]) === f).length;
  return { entries: frontends + clusterIPs, frontends, sourceRanges: s.ports.length * (ranges + lbIPs) };
}
