/**
 * A loaded datapath brought to a new cluster state in place, through the map
 * API, as kube-proxy's sync brings its rules to the state it watches: for
 * cluster changes during a replay (control/runtime/cluster-sync.ts).
 *
 * The new state is compared with the live one object by object, by value,
 * where each was read (`origin`) aside, and the narrowest path that gives the
 * general path's result is taken:
 * - nothing the datapath uses differs (kubectl's watch prints MODIFIED for a
 *   status, an annotation, a resourceVersion): nothing is compiled or written;
 * - only EndpointSlices differ: they are applied as slice updates (update.ts
 *   applyEndpointSliceUpdates): only the Services they belong to are compiled
 *   again;
 * - Services differ (added, changed, deleted), and maybe EndpointSlices and
 *   legacy Endpoints, but no Node, KubeProxyConfiguration or service range:
 *   the Services that changed or whose endpoints did are compiled alone, with
 *   the same Nodes, configuration and ranges, given the live ids as below, and
 *   only the entries they own are compared and written (applyServiceChanges);
 * - anything else compiles the whole new state (rebaseState).
 *
 * Ids: every id the maps and conntrack entries hold is kept: a Service port
 * keeps its id by name, a backend by (Service port, address, port, protocol),
 * a frontend its reverse-NAT index by (Service port, kind, address, port).
 * New Service ports and frontends get ids after the highest ever used, never
 * one that named something else; new backends take ids from the live
 * program's pool as slice updates do. The compiled entries are renamed to
 * those ids and only the entries that differ are written, deletes first.
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
  NO_IPV6_MASQUERADE_NOTE,
  addTableEntries,
  backendKey,
  backendValue,
  compareServices,
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
  type SkippedService,
} from '../compile/compiler.js';
import { lazyTable } from '../compile/maglev.js';
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
  /**
   * The path taken (module comment): `none`, nothing the datapath uses differed; `endpoints`,
   * slice updates; `services`, the changed Services compiled alone; `rebase`, the whole state.
   */
  path: 'none' | 'endpoints' | 'services' | 'rebase';
  /** Service ports (compiled names) that appeared, went, or changed otherwise than by their endpoints. */
  services: { added: string[]; removed: string[]; modified: string[] };
  endpoints: EndpointChanges[];
  /** Backends that went: tombstones now (or ids taken again at once, when no other was free). */
  removedBackendIds: number[];
  /** Map entries written or deleted; a Maglev table is one entry. */
  touched: number;
  byMap: TouchedEntries;
}

type Applied = { live: LiveProgram; change: StateChange };

/**
 * Brings a live program to the state `after` (with `afterResolved =
 * resolveServices(after).services`, resolved here when needed and not given).
 * Returns the live program that now describes it (the same object when nothing
 * or only slices differ, a new one otherwise: use it from then on) and what
 * changed. Throws NeedsReloadError, having changed nothing, when a map has no room.
 */
export function applyStateChange(live: LiveProgram, after: ClusterState, afterResolved?: readonly ResolvedService[]): Applied {
  const changed = differences(live, after);
  if (!changed) return rebaseState(live, after, afterResolved);
  if (changed.services.size > 0) return applyServiceChanges(live, after, changed, afterResolved);
  if (changed.slices.length > 0) return applySliceChanges(live, after, changed.slices);
  return unchanged(live, after);
}

// ---------------------------------------------------------------------------
// What differs

/** The objects that differ, when no Node, KubeProxyConfiguration or service range does. */
interface Differences {
  /** "namespace/name" of the Services added, removed or changed, and of those whose legacy Endpoints were. */
  services: Set<string>;
  slices: EndpointSliceChange[];
}

const keyOf = (o: { namespace: string; name: string }) => `${o.namespace}/${o.name}`;
const serviceKeyOf = (slice: { namespace: string; serviceName: string }) => `${slice.namespace}/${slice.serviceName}`;
const sameItems = <T>(a: readonly T[], b: readonly T[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * What differs from the live state to `after`, or undefined when anything but
 * Services, EndpointSlices, legacy Endpoints (and Pods, which reach the
 * datapath only through the slices derived from them) does. By value, where
 * each object was read aside: events.ts applyEvent replaces the objects it
 * changes, and a MODIFIED that changes nothing svcpath reads leaves an equal
 * object.
 */
function differences(live: LiveProgram, after: ClusterState): Differences | undefined {
  const was = live.state;
  const others =
    sameValue(was.nodes, after.nodes) && sameValue(was.proxyConfig, after.proxyConfig) && sameValue(was.serviceRanges, after.serviceRanges);
  if (!others) return undefined;
  const services = new Set([
    ...changedKeys(was.services, after.services),
    ...changedKeys(was.legacyEndpoints ?? [], after.legacyEndpoints ?? []),
  ]);
  return { services, slices: sliceChanges(live, after) };
}

/** The "namespace/name" of the objects added, removed or changed. */
function changedKeys<T extends { namespace: string; name: string }>(before: readonly T[], after: readonly T[]): string[] {
  if (sameItems(before, after)) return [];
  const was = new Map(before.map((o) => [keyOf(o), o]));
  const keys: string[] = [];
  for (const o of after) {
    const key = keyOf(o);
    if (!sameValue(was.get(key), o)) keys.push(key);
    was.delete(key);
  }
  return [...keys, ...was.keys()];
}

/** The slice changes from the live state to `after`: the slices derived from Pods are made again by every event, hence by value. */
function sliceChanges(live: LiveProgram, after: ClusterState): EndpointSliceChange[] {
  const changes: EndpointSliceChange[] = [];
  const present = new Set<string>();
  for (const slice of after.endpointSlices) {
    const key = keyOf(slice);
    present.add(key);
    if (!sameValue(live.slices.byName.get(key), slice)) changes.push({ op: 'upsert', slice });
  }
  for (const [key, slice] of live.slices.byName) {
    if (!present.has(key)) changes.push({ op: 'delete', namespace: slice.namespace, name: slice.name });
  }
  return changes;
}

/** The Services ("namespace/name") the changed slices belonged to and belong to now. */
function sliceServices(live: LiveProgram, changes: readonly EndpointSliceChange[]): string[] {
  return changes.flatMap((c) => {
    const before = live.slices.byName.get(c.op === 'upsert' ? keyOf(c.slice) : keyOf(c));
    return [before, c.op === 'upsert' ? c.slice : undefined].flatMap((s) => (s ? [serviceKeyOf(s)] : []));
  });
}

/**
 * Deep equality of plain data (what the cluster loader makes: objects, arrays,
 * strings, numbers, booleans), `origin` (the file and object an object was
 * read from) aside.
 */
function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = (o: Record<string, unknown>) => Object.keys(o).filter((k) => k !== 'origin' && o[k] !== undefined);
  const [ra, rb] = [a as Record<string, unknown>, b as Record<string, unknown>];
  const ka = keys(ra);
  return ka.length === keys(rb).length && ka.every((k) => sameValue(ra[k], rb[k]));
}

/** The live state takes the new objects; the slices are its own (update.ts). */
function adopt(live: LiveProgram, after: ClusterState): void {
  const { endpointSlices: _, ...rest } = after;
  Object.assign(live.state, rest);
}

const noServiceChanges = (): StateChange['services'] => ({ added: [], removed: [], modified: [] });

/** Nothing the datapath uses differs: nothing is compiled or written. */
function unchanged(live: LiveProgram, after: ClusterState): Applied {
  adopt(live, after);
  return {
    live,
    change: { path: 'none', services: noServiceChanges(), endpoints: [], removedBackendIds: [], touched: 0, byMap: {} },
  };
}

// ---------------------------------------------------------------------------
// Only EndpointSlices differ

function applySliceChanges(live: LiveProgram, after: ClusterState, changes: EndpointSliceChange[]): Applied {
  // The Services the slices belong to, before and after, as resolved now.
  const at = [...new Set(sliceServices(live, changes))].flatMap((key) => {
    const place = live.services.get(key);
    return place ? [{ index: place.index, before: live.resolved[place.index] }] : [];
  });
  const update = applyEndpointSliceUpdates(live, changes);
  adopt(live, after);
  return {
    live,
    change: {
      path: 'endpoints',
      services: noServiceChanges(),
      endpoints: at.flatMap(({ index, before }) => endpointChanges(before, live.resolved[index])),
      removedBackendIds: update.removedBackendIds,
      touched: update.touched,
      byMap: update.byMap,
    },
  };
}

// ---------------------------------------------------------------------------
// The whole state compiled again, with the live ids

/** Fresh ids (a compile's, dense) to the live program's. */
interface IdRenaming {
  /** Indexed by fresh Service port id. */
  service: number[];
  /** Indexed by fresh backend id. */
  backend: number[];
  revNat: Map<number, number>;
  plan: Pick<BackendPlan, 'added' | 'removed' | 'changed' | 'fromPool'>;
  /** Every backend of the compiled Service ports after the change, with the live ids. */
  inUse: CompiledBackend[];
}

/**
 * The general path alone: the whole new state compiled, the live ids kept. What
 * applyStateChange's narrower paths give the same result as (test/rebase.test.ts
 * compares them), and the path for a change of Nodes, the KubeProxyConfiguration
 * or the service ranges.
 */
export function rebaseState(live: LiveProgram, after: ClusterState, afterResolved?: readonly ResolvedService[]): Applied {
  const resolved = afterResolved ?? resolveServices(after).services;
  const fresh = compile(after, resolved, live.opts);
  const ids = renaming(live, fresh);
  const ports = renamedPorts(live, fresh, ids);
  const family = (f: Family): FamilyEntries => {
    const e = fresh.entries[f];
    return {
      services: renamedFrontendEntries(e.services, ids),
      backends: backendEntries(ids.inUse, ports.tombstones, f),
      revnat: revnatAfter(live, fresh, ids, f),
      sourceRanges: renamedSourceRanges(e.sourceRanges, ids),
      serviceRanges: e.serviceRanges,
      nodeIps: e.nodeIps,
    };
  };
  const entries: MapEntries = { config: fresh.entries.config, maglev: [], lbMembers: [], v4: family('v4'), v6: family('v6') };
  entries.config = configAfter(live.compiled.entries, entries);
  for (const cs of ports.services) addTableEntries(entries, cs);
  const compiled: Compiled = { ...fresh, services: ports.services, backends: ports.backends, entries };
  const applied = applyCompiled(live, after, resolved, compiled, ids.plan, entryOps(live.compiled.entries, compiled.entries));
  return {
    live: applied.live,
    change: {
      path: 'rebase',
      services: serviceChanges(live.compiled.services, compiled.services),
      endpoints: resolvedChanges(live.resolved, resolved),
      ...applied.touched,
    },
  };
}

/**
 * The maps brought to `compiled`: backends as the plan says, the entries
 * `entryOps` writes, the config; checked for room first. Returns the live
 * program that describes the result, and what was touched.
 */
function applyCompiled(
  live: LiveProgram,
  after: ClusterState,
  resolved: readonly ResolvedService[],
  compiled: Compiled,
  plan: IdRenaming['plan'],
  entryOps: readonly MapOp[],
): { live: LiveProgram; touched: Pick<StateChange, 'removedBackendIds' | 'touched' | 'byMap'> } {
  const ops = [...backendOps(plan, live.tombstones), ...entryOps, ...configOps(live, compiled)];
  checkServiceIds(live, compiled);
  checkRoom(live.dp, ops);
  applyOps(live.dp, ops);
  settleIds(live.freeIds, plan);
  const byMap: TouchedEntries = {};
  for (const op of ops) byMap[op.map] = (byMap[op.map] ?? 0) + 1;
  return {
    live: trackProgram(live.dp, { state: after, resolved, compiled, opts: live.opts, freeIds: live.freeIds }),
    touched: { removedBackendIds: plan.removed.map((b) => b.id), touched: ops.length, byMap },
  };
}

const frontendIdentity = (name: string, f: CompiledFrontend) => `${name} ${f.kind} ${f.address} ${f.port}`;

/**
 * The live ids of a compile's Service ports, frontends and backends; new ones
 * as the module comment says. `scope`: the live Service ports the compile is of
 * (every one when not given); a backend of another port neither goes nor comes.
 */
function renaming(live: LiveProgram, fresh: Compiled, scope?: ReadonlySet<number>): IdRenaming {
  const all = live.compiled.services;
  const held = scope ? all.filter((cs) => scope.has(cs.id)) : all;
  const portIds = new Map(held.map((cs) => [cs.name, cs.id]));
  let lastPort = all.length;
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
  for (const [key, { backend: b }] of live.backends) {
    if (!present.has(key) && (!scope || scope.has(b.serviceId))) plan.removed.push(b);
  }
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

/**
 * Every Service port and backend after the change, by live id: the compiled
 * ones renamed, the live ports in `scope` (all when not given) that the
 * compile does not have kept as removed, the others as they are; and the
 * backends that stay in their maps as tombstones.
 */
function renamedPorts(
  live: LiveProgram,
  fresh: Compiled,
  ids: IdRenaming,
  scope?: ReadonlySet<number>,
): { services: CompiledService[]; backends: CompiledBackend[]; tombstones: CompiledBackend[] } {
  // The table is renamed when first read, as the compiled one is built then.
  const renameSet = (set: BackendSet): BackendSet =>
    lazyTable(
      {
        backendIds: set.backendIds.map((id) => ids.backend[id]).sort((a, b) => a - b),
        selection: set.selection,
        maglev: NO_BACKENDS.maglev,
      },
      'maglev',
      () => set.maglev.map((id) => ids.backend[id]),
    );
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
  for (const cs of live.compiled.services) {
    if (!present.has(cs.id) && !cs.removed && (!scope || scope.has(cs.id))) services[cs.id - 1] = removedPort(cs);
  }
  const backends = [...live.compiled.backends];
  for (const b of ids.inUse) backends[b.id - 1] = b;
  const taken = new Set(ids.plan.added.map((b) => b.id));
  const tombstones = [...[...live.tombstones.values()].filter((b) => !taken.has(b.id)), ...tombstonedBy(ids.plan)];
  return { services, backends, tombstones };
}

/** A compile's frontend entries with the live ids (a cluster IP's wildcard names none). */
function renamedFrontendEntries(list: FamilyEntries['services'], ids: IdRenaming): FamilyEntries['services'] {
  return list.map(({ key, value }) => ({
    key,
    value:
      value.serviceId === 0
        ? value
        : { ...value, serviceId: ids.service[value.serviceId as number], revNatIndex: ids.revNat.get(value.revNatIndex as number)! },
  }));
}

const renamedSourceRanges = (list: StructValue[], ids: IdRenaming): StructValue[] =>
  list.map((key) => ({ ...key, serviceId: ids.service[key.serviceId as number] }));

/** The backends a family's map holds: those in use and the tombstones, by id. */
function backendEntries(inUse: readonly CompiledBackend[], tombstones: readonly CompiledBackend[], f: Family): FamilyEntries['backends'] {
  return [
    ...inUse.filter((b) => familyOf(b.ip) === f).map((b) => ({ id: b.id, value: backendValue(b) })),
    ...tombstones.filter((b) => familyOf(b.ip) === f).map((b) => ({ id: b.id, value: tombstoneValue(b) })),
  ].sort((a, b) => a.id - b.id);
}

/** Every reverse-NAT entry the live program has (a frontend that went keeps its own) and the compile's, with the live indices. */
function revnatAfter(live: LiveProgram, fresh: Compiled, ids: IdRenaming, f: Family): FamilyEntries['revnat'] {
  const revnat = new Map(live.compiled.entries[f].revnat.map((r) => [r.index, r]));
  for (const r of fresh.entries[f].revnat) {
    const index = ids.revNat.get(r.index)!;
    revnat.set(index, { index, value: r.value });
  }
  return [...revnat.values()].sort((a, b) => a.index - b.index);
}

// ---------------------------------------------------------------------------
// Services differ: those compiled alone

/**
 * The Services that changed (`changed.services`, and those whose slices did)
 * compiled alone, in a state holding only them, their slices and legacy
 * Endpoints, with the same Nodes, configuration and ranges; every Service is
 * compiled on its own, so they get what a compile of the whole state gives
 * them. Renamed as rebaseState renames, then only the entries they own
 * before or after are compared: their frontends and their cluster IPs'
 * wildcards (with those of other Services on the same keys), the reverse NAT
 * of their frontends, their source ranges, Maglev tables and members, their
 * backends. The result equals rebaseState's: the maps, the live ids, the
 * StateChange.
 */
function applyServiceChanges(
  live: LiveProgram,
  after: ClusterState,
  changed: Differences,
  afterResolved?: readonly ResolvedService[],
): Applied {
  const keys = new Set([...changed.services, ...sliceServices(live, changed.slices)]);
  const inScope = (o: { namespace: string; name: string }) => keys.has(keyOf(o));
  const part: ClusterState = {
    ...after,
    services: after.services.filter(inScope),
    endpointSlices: after.endpointSlices.filter((s) => keys.has(serviceKeyOf(s))),
    legacyEndpoints: (after.legacyEndpoints ?? []).filter(inScope),
  };
  const partResolved = afterResolved?.filter((rs) => inScope(rs.service)) ?? resolveServices(part).services;
  const fresh = compile(part, partResolved, live.opts);
  const scope = new Set(live.compiled.services.filter((cs) => inScope(cs.service)).map((cs) => cs.id));
  const ids = renaming(live, fresh, scope);
  const ports = renamedPorts(live, fresh, ids, scope);
  const before = live.compiled.services.filter((cs) => scope.has(cs.id));
  for (const cs of fresh.services) scope.add(ids.service[cs.id]);

  const { entries, owned } = mergedEntries(live, after, fresh, ids, ports, scope, inScope);
  const compiled: Compiled = {
    ...fresh,
    services: ports.services,
    backends: ports.backends,
    skipped: mergedSkipped(live.compiled.skipped, fresh.skipped, keys),
    notes: mergedNotes(live.compiled.notes, fresh.notes, keys, entries),
    entries,
  };
  const byKey = new Map(partResolved.map((rs) => [keyOf(rs.service), rs]));
  const resolved = afterResolved ?? after.services.map((s) => byKey.get(keyOf(s)) ?? live.resolved[live.services.get(keyOf(s))!.index]);
  const applied = applyCompiled(live, after, resolved, compiled, ids.plan, entryOps(owned.before, owned.after));
  return {
    live: applied.live,
    change: {
      path: 'services',
      services: serviceChanges(
        before,
        [...scope].map((id) => ports.services[id - 1]),
      ),
      endpoints: resolvedChanges(
        live.resolved.filter((rs) => inScope(rs.service)),
        partResolved,
      ),
      ...applied.touched,
    },
  };
}

/** A frontend entry's key (a wildcard's too) as text. */
const frontendKey = (key: StructValue) => `${key.address} ${key.port} ${key.proto}`;

/**
 * Every entry after the change, the live ones of the Service ports out of
 * `scope` and the fresh ones of those in it; and `owned`: the entries the
 * ports in scope own, before and after, for the diff (with the live config
 * before and the new one after). A frontend key other Services also have
 * (refused when a state is loaded, but events are validated one by one)
 * holds the entry of the first in compile order, as in a full compile; a
 * wildcard stays while any Service has its cluster IP.
 */
function mergedEntries(
  live: LiveProgram,
  after: ClusterState,
  fresh: Compiled,
  ids: IdRenaming,
  ports: ReturnType<typeof renamedPorts>,
  scope: ReadonlySet<number>,
  inScope: (s: Service) => boolean,
): { entries: MapEntries; owned: { before: MapEntries; after: MapEntries } } {
  const held = live.compiled.entries;
  const elsewhere = new Set(after.services.filter((s) => !inScope(s) && !skipReason(s)).flatMap((s) => s.clusterIPs));
  const indices = new Set(ids.revNat.values());
  const ownerOf = (value: StructValue) => ports.services[(value.serviceId as number) - 1].service;
  const inUse = [...[...live.backends.values()].flatMap(({ backend: b }) => (scope.has(b.serviceId) ? [] : [b])), ...ids.inUse];
  const family = (f: Family) => {
    const was = held[f];
    const mine = renamedFrontendEntries(fresh.entries[f].services, ids);
    const ownedKeys = new Set(mine.map((e) => frontendKey(e.key)));
    const kept: FamilyEntries['services'] = [];
    for (const e of was.services) {
      const id = e.value.serviceId as number;
      if (id === 0 ? elsewhere.has(e.key.address as string) : !scope.has(id)) kept.push(e);
      else ownedKeys.add(frontendKey(e.key));
    }
    const keptKeys = new Map<string, FamilyEntries['services'][number]>();
    for (const e of kept) if (!keptKeys.has(frontendKey(e.key))) keptKeys.set(frontendKey(e.key), e);
    const [first, last]: Array<FamilyEntries['services']> = [[], []];
    for (const e of mine) {
      const other = keptKeys.get(frontendKey(e.key));
      if (other?.value.serviceId === 0) continue; // the wildcard is there
      (other && compareServices(ownerOf(e.value), ownerOf(other.value)) < 0 ? first : last).push(e);
    }
    const services = [...first, ...kept, ...last];
    const mySourceRanges = renamedSourceRanges(fresh.entries[f].sourceRanges, ids);
    const revnat = revnatAfter(live, fresh, ids, f);
    const ownedBy = (e: { key: StructValue }) => ownedKeys.has(frontendKey(e.key));
    const restricted = (list: FamilyEntries, sourceRanges: StructValue[]): FamilyEntries => ({
      services: list.services.filter(ownedBy),
      backends: [],
      revnat: list.revnat.filter((r) => indices.has(r.index)),
      sourceRanges,
      serviceRanges: [],
      nodeIps: [],
    });
    const now: FamilyEntries = {
      services,
      backends: backendEntries(inUse, ports.tombstones, f),
      revnat,
      sourceRanges: [...was.sourceRanges.filter((k) => !scope.has(k.serviceId as number)), ...mySourceRanges],
      serviceRanges: fresh.entries[f].serviceRanges,
      nodeIps: fresh.entries[f].nodeIps,
    };
    return {
      now,
      before: restricted(
        was,
        was.sourceRanges.filter((k) => scope.has(k.serviceId as number)),
      ),
      after: restricted(now, mySourceRanges),
    };
  };
  const [v4, v6] = [family('v4'), family('v6')];
  const tables = (services: ReadonlyArray<CompiledService | undefined>) => {
    const t: Pick<MapEntries, 'maglev' | 'lbMembers'> = { maglev: [], lbMembers: [] };
    for (const cs of services) if (cs) addTableEntries(t, cs);
    return t;
  };
  const owned = {
    before: { config: held.config, ...tables([...scope].map((id) => live.compiled.services[id - 1])), v4: v4.before, v6: v6.before },
    after: { config: fresh.entries.config, ...tables([...scope].map((id) => ports.services[id - 1])), v4: v4.after, v6: v6.after },
  };
  owned.after.config = configAfter(owned.before, owned.after);
  const entries: MapEntries = { config: owned.after.config, ...tables(ports.services), v4: v4.now, v6: v6.now };
  return { entries, owned };
}

/** The skipped Services: the others' as they were, those compiled now as they are, in compile order. */
function mergedSkipped(before: readonly SkippedService[], now: readonly SkippedService[], keys: ReadonlySet<string>): SkippedService[] {
  const named = (s: SkippedService) => {
    const [namespace, name] = s.service.split('/');
    return { namespace, name };
  };
  return [...before.filter((s) => !keys.has(s.service)), ...now].sort((a, b) => compareServices(named(a), named(b)));
}

/**
 * The notes: the others' Service ports' as they were, those compiled now as
 * they are, the notes of the node and configuration once; the IPv6
 * masquerade note when any Service has an IPv6 frontend (compile's rule).
 */
function mergedNotes(before: readonly string[], now: readonly string[], keys: ReadonlySet<string>, entries: MapEntries): string[] {
  // A Service port's notes start with its name, "namespace/name:port: ".
  const ofScope = (note: string) => keys.has(note.slice(0, note.indexOf(':')));
  const notes = [...new Set([...before.filter((n) => !ofScope(n)), ...now])].filter((n) => n !== NO_IPV6_MASQUERADE_NOTE);
  const v6Frontends = entries.v6.services.some((e) => e.value.serviceId !== 0);
  const masquerade6 = ((entries.config.flags as number) & CFG_F.SNAT_ADDR6) !== 0;
  return v6Frontends && !masquerade6 ? [...notes, NO_IPV6_MASQUERADE_NOTE] : notes;
}

// ---------------------------------------------------------------------------
// Entries and ops

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

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The ops from one list of entries to another; of entries on one key, the map holds the first (as written here). */
function diff(map: MapName, before: readonly Entry[], after: readonly Entry[]): MapOp[] {
  const spec: MapSpec = MAPS[map];
  const keyOf = (e: Entry) => String.fromCharCode(...encode(spec.key, e.key));
  const bytes = (e: Entry) => (e.value instanceof Uint8Array ? e.value : encode(spec.value!, e.value));
  const was = new Map<string, Entry>();
  for (const e of before) {
    const k = keyOf(e);
    if (!was.has(k)) was.set(k, e);
  }
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
    // steer-update.ts: an entry per backend and frontend any version may have (reverse NAT counts each frontend once), and one per address.
    steer: 2 * (room.backends + grown.revNat.v4 + grown.revNat.v6),
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
