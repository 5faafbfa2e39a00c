/**
 * Incremental EndpointSlice updates: an added, changed or deleted
 * EndpointSlice (or several at once) applied to a loaded datapath in place, as Cilium's service
 * manager upserts one service's backends, instead of compiling the whole
 * state again and reloading. Only the Services the slice belongs to are
 * resolved and compiled again, with the compiler's own per-port functions, so
 * they get what a full compile would give them; then only the map entries
 * that differ are written: backends that appear, go or change locality, the
 * members and Maglev tables of the backend sets that changed, and the service
 * entries whose backend counts changed.
 *
 * Backends that stay keep their ids. Conntrack entries name their backend by
 * id, so established flows to a backend that stays keep it. A backend that
 * goes stays in its map as a tombstone (BE_F_GONE), in no Maglev table, so
 * that the established flows that name it keep going to it, as kube-proxy's
 * conntrack entries keep their DNAT to an endpoint that is gone. New backends
 * get ids that are free, the longest free first: a tombstone's id is taken
 * again only after every id freed before it. Ids therefore
 * differ from a full compile of the new state, which numbers backends densely
 * in address order; decisions do not, as Maglev tables are built from backend
 * names, not ids.
 *
 * Map sizes are fixed when the program is loaded: loadProgram sizes them to
 * the compiled state exactly; loadProgram's `room` leaves room to grow. An
 * update that does not fit throws NeedsReloadError before it touches a map.
 * The steer map is not written here: steer-update.ts `steerChanges` adds
 * the entries of new frontends and backends after each sync.
 */
import { resolveServices } from '../cluster/index.js';
import {
  addTableEntries,
  backendKey,
  backendValue,
  compileServiceBackends,
  endpointZone,
  familyOf,
  frontendEntry,
  nodeContext,
  serviceName,
  serviceNotes,
  serviceTables,
  type BackendSet,
  type Compiled,
  type CompiledBackend,
  type CompiledService,
  type CompileOptions,
  type FamilyEntries,
  type MapEntries,
  type NodeContext,
  type ServiceContext,
} from '../compile/compiler.js';
import type { Datapath } from './datapath.js';
import { BE_F_GONE, BPF_ANY, BPF_EXIST, BPF_NOEXIST, encode, type MapName, type StructValue } from '../compile/layout.js';
import type { ClusterState, EndpointSlice, Protocol, ResolvedEndpoint, ResolvedService } from '../cluster/state.js';

/** An EndpointSlice (validated, as the cluster loader makes them) added or changed, or one deleted; known by namespace and name. */
export type EndpointSliceChange = { op: 'upsert'; slice: EndpointSlice } | { op: 'delete'; namespace: string; name: string };

/**
 * What a datapath was loaded from: `compiled = compile(state, resolved, opts)`, `resolved = resolveServices(state).services`,
 * or the compiled form of a live program brought to `state` in place (control/runtime/rebase.ts).
 */
export interface ProgramInputs {
  state: ClusterState;
  resolved: readonly ResolvedService[];
  compiled: Compiled;
  opts: CompileOptions;
  /** The free backend ids of the live program this one continues, in their order; by default every id the maps hold no backend at. */
  freeIds?: IdPool;
}

/** A backend and the node each endpoint naming it says it is on (a Service port's slices may list one endpoint twice). */
export interface BackendRecord {
  backend: CompiledBackend;
  nodeNames: Array<string | undefined>;
}

/**
 * A loaded datapath with the state it holds, kept up to date by
 * applyEndpointSliceUpdate. The state, resolution and compiled form are this
 * object's own copies, changed in place by each update; `compiled.entries` is
 * built from the rest when read.
 */
export interface LiveProgram {
  readonly dp: Datapath;
  readonly opts: CompileOptions;
  /** Its `endpointSlices` are listed from `slices` when read. */
  readonly state: ClusterState;
  readonly resolved: ResolvedService[];
  /** `backends` is indexed by id as always; an id out of use keeps the backend that last had it. */
  readonly compiled: Compiled;
  /** Backends in use, by backendKey. */
  readonly backends: Map<string, BackendRecord>;
  readonly freeIds: IdPool;
  /** Backends that went, by id, until their id is taken again: still in their map, with BE_F_GONE. */
  readonly tombstones: Map<number, CompiledBackend>;
  /** Per Service "namespace/name": its place in `resolved`, and the compiled id of each of its ports, in order (none when it is not compiled). */
  readonly services: Map<string, { index: number; ids: number[] }>;
  readonly slices: {
    /** By "namespace/name". */
    byName: Map<string, EndpointSlice>;
    /** By their Service's "namespace/name", then by name. */
    byService: Map<string, Map<string, EndpointSlice>>;
  };
  readonly context: NodeContext;
  /** Updates applied so far. */
  updates: number;
}

/** Entries written or deleted, per map; a Maglev table is one entry. */
export type TouchedEntries = Partial<Record<MapName, number>>;

export interface EndpointSliceUpdate {
  /** The live program's compiled form, now describing the new state. */
  compiled: Compiled;
  /** The ids of the backends that went (tombstones now, or taken at once by new backends when no other id was free). */
  removedBackendIds: number[];
  /** Map entries written or deleted. */
  touched: number;
  byMap: TouchedEntries;
}

/** An update the maps have no room for. Nothing was changed: compile the new state and load it again. */
export class NeedsReloadError extends Error {
  override readonly name = 'NeedsReloadError';
}

/** Backend ids not in use, handed out the longest free first, so a stale conntrack entry rarely finds its id taken. */
export class IdPool {
  private head = 0;

  constructor(private readonly ids: number[]) {}

  /** The next `n` ids (fewer when there are not as many), not taken yet. */
  peek(n: number): number[] {
    return this.ids.slice(this.head, this.head + n);
  }

  take(n: number): void {
    this.head += n;
    // Drop the taken prefix now and then, so that releases do not grow the array for ever.
    if (this.head >= 1024 && 2 * this.head >= this.ids.length) {
      this.ids.splice(0, this.head);
      this.head = 0;
    }
  }

  release(ids: readonly number[]): void {
    this.ids.push(...ids);
  }
}

const objectKey = (namespace: string, name: string) => `${namespace}/${name}`;

/** Starts keeping track of a datapath loaded from `inputs.compiled` (by loadProgram, with `room` to grow into). */
export function trackProgram(dp: Datapath, inputs: ProgramInputs): LiveProgram {
  const { compiled, opts } = inputs;
  const resolved = [...inputs.resolved];
  const services = portIds(resolved, compiled);
  const slices: LiveProgram['slices'] = { byName: new Map(), byService: new Map() };
  for (const slice of inputs.state.endpointSlices) storeSlice(slices, slice);
  const state: ClusterState = { ...inputs.state };
  Object.defineProperty(state, 'endpointSlices', { enumerable: true, get: () => [...slices.byName.values()] });
  const capacity = dp.map('backendStats').maxEntries - 1;
  // The backends the maps hold: a compiled form from an earlier update also keeps ids out of use, its tombstones last in line.
  const held = [...compiled.entries.v4.backends, ...compiled.entries.v6.backends];
  const gone = held.filter((b) => ((b.value.flags as number) & BE_F_GONE) !== 0).map((b) => b.id);
  const isGone = new Set(gone);
  const inUse = new Set(held.map((b) => b.id).filter((id) => !isGone.has(id)));
  const live: LiveProgram = {
    dp,
    opts,
    state,
    resolved,
    services,
    slices,
    compiled: { ...compiled, services: [...compiled.services], backends: [...compiled.backends], notes: [...compiled.notes] },
    backends: indexBackends(compiled, inUse, resolved, services),
    freeIds:
      inputs.freeIds ??
      new IdPool([...Array.from({ length: capacity }, (_, i) => i + 1).filter((id) => !inUse.has(id) && !isGone.has(id)), ...gone]),
    tombstones: new Map(gone.map((id) => [id, compiled.backends[id - 1]])),
    context: nodeContext(inputs.state, opts),
    updates: 0,
  };
  let cache: { updates: number; entries: MapEntries } | undefined;
  Object.defineProperty(live.compiled, 'entries', {
    enumerable: true,
    get: () => {
      if (cache?.updates !== live.updates) cache = { updates: live.updates, entries: currentEntries(live, compiled.entries) };
      return cache.entries;
    },
  });
  return live;
}

/**
 * Each Service's place in `resolved` and its ports' compiled ids, found by name: a live
 * program brought to a new state keeps each port's id, so a Service's ids need not follow on.
 */
function portIds(resolved: readonly ResolvedService[], compiled: Compiled): LiveProgram['services'] {
  const byName = new Map(compiled.services.filter((cs) => !cs.removed).map((cs) => [cs.name, cs.id]));
  return new Map(
    resolved.map((rs, index) => {
      const ids = rs.ports.map((rp) => byName.get(serviceName(rs.service, rp.port.name, rp.port.port)));
      return [objectKey(rs.service.namespace, rs.service.name), { index, ids: ids.every((id) => id) ? (ids as number[]) : [] }];
    }),
  );
}

/** Every backend with the nodes its endpoints name. */
function indexBackends(
  compiled: Compiled,
  inUse: ReadonlySet<number>,
  resolved: readonly ResolvedService[],
  services: LiveProgram['services'],
): Map<string, BackendRecord> {
  const backends = new Map(
    compiled.backends
      .filter((b) => inUse.has(b.id))
      .map((b) => [backendKey(b.serviceId, b.ip, b.port, b.protocol), { backend: b, nodeNames: [] as Array<string | undefined> }]),
  );
  for (const cs of compiled.services) {
    if (cs.removed) continue;
    const { index, ids } = services.get(objectKey(cs.service.namespace, cs.service.name))!;
    for (const ep of resolved[index].ports[ids.indexOf(cs.id)].endpoints) {
      backends.get(backendKey(cs.id, ep.ip, ep.port, cs.port.protocol))!.nodeNames.push(ep.nodeName);
    }
  }
  return backends;
}

function storeSlice(slices: LiveProgram['slices'], slice: EndpointSlice): void {
  const service = objectKey(slice.namespace, slice.serviceName);
  let ofService = slices.byService.get(service);
  if (!ofService) slices.byService.set(service, (ofService = new Map()));
  ofService.set(slice.name, slice);
  slices.byName.set(objectKey(slice.namespace, slice.name), slice);
}

function dropSlice(slices: LiveProgram['slices'], slice: EndpointSlice): void {
  slices.byService.get(objectKey(slice.namespace, slice.serviceName))!.delete(slice.name);
  slices.byName.delete(objectKey(slice.namespace, slice.name));
}

/** A Service resolved again, with the EndpointSlices it would have after the change. */
interface ServiceChange {
  at: { index: number; ids: number[] };
  before: ResolvedService;
  after: ResolvedService;
}

/** One compiled Service port before and after. */
interface PortChange {
  before: CompiledService;
  after: CompiledService;
}

/** A map operation: write `value` (BPF_NOEXIST, BPF_EXIST or BPF_ANY), or delete when there is none. */
export interface MapOp {
  map: MapName;
  key: StructValue;
  value?: StructValue | Uint8Array;
  flags: number;
}

/**
 * Applies one EndpointSlice change to a live program: the maps first, through
 * the map API, then the live state. Throws NeedsReloadError, having changed
 * nothing, when the maps have no room for the result.
 */
export function applyEndpointSliceUpdate(live: LiveProgram, change: EndpointSliceChange): EndpointSliceUpdate {
  return applyEndpointSliceUpdates(live, [change]);
}

/**
 * Applies several EndpointSlice changes (at most one per slice) as one: each
 * Service they touch is resolved once with all its new slices, so an endpoint
 * that moves from one slice to another stays the backend it was. All or
 * nothing: NeedsReloadError, having changed nothing, when the maps have no room.
 */
export function applyEndpointSliceUpdates(live: LiveProgram, sliceChanges: readonly EndpointSliceChange[]): EndpointSliceUpdate {
  const pairs = sliceChanges.map((change): SlicePair => {
    const { namespace, name } = change.op === 'upsert' ? change.slice : change;
    return { before: live.slices.byName.get(objectKey(namespace, name)), after: change.op === 'upsert' ? change.slice : undefined };
  });
  const services = resolveAffected(live, pairs);
  const ports = services.flatMap(({ at, before: was, after: now }) =>
    now.ports.flatMap((rp, j): PortEndpoints[] =>
      at.ids.length === 0 ? [] : [{ id: at.ids[j], protocol: rp.port.protocol, before: was.ports[j].endpoints, after: rp.endpoints }],
    ),
  );
  const plan = planBackends(live, ports);
  const portContext = (serviceId: number): ServiceContext => ({
    ...live.context,
    backendId: (ip, port, protocol) => {
      const key = backendKey(serviceId, ip, port, protocol);
      return (plan.records.has(key) ? plan.records.get(key) : live.backends.get(key))!.backend.id;
    },
  });
  const changes = services.flatMap(({ at, after: now }) =>
    now.ports.flatMap((rp, j): PortChange[] => {
      if (at.ids.length === 0) return [];
      const was = live.compiled.services[at.ids[j] - 1];
      return [{ before: was, after: { ...was, ...compileServiceBackends(portContext(was.id), was.service, rp, was.frontends) } }];
    }),
  );
  const ops = [...backendOps(plan, live.tombstones), ...changes.flatMap(portOps)];
  checkRoom(live.dp, ops);
  applyOps(live.dp, ops);
  commit(live, pairs, services, plan, changes);
  const byMap: TouchedEntries = {};
  for (const op of ops) byMap[op.map] = (byMap[op.map] ?? 0) + 1;
  return { compiled: live.compiled, removedBackendIds: plan.removed.map((b) => b.id), touched: ops.length, byMap };
}

/** One slice before and after a change: undefined when it is new, or deleted. */
interface SlicePair {
  before?: EndpointSlice;
  after?: EndpointSlice;
}

const serviceOf = (s: EndpointSlice) => objectKey(s.namespace, s.serviceName);

/** The Services the slices belonged to and belong to now, resolved with the slices they will have. */
function resolveAffected(live: LiveProgram, pairs: readonly SlicePair[]): ServiceChange[] {
  const keys = new Set(pairs.flatMap(({ before, after }) => [before, after].filter((s): s is EndpointSlice => !!s).map(serviceOf)));
  return [...keys].flatMap((key): ServiceChange[] => {
    const at = live.services.get(key);
    if (!at) return []; // a slice of no Service: only kept
    const slices = new Map(live.slices.byService.get(key));
    for (const { before } of pairs) if (before && serviceOf(before) === key) slices.delete(before.name);
    for (const { after } of pairs) if (after && serviceOf(after) === key) slices.set(after.name, after);
    const rs = live.resolved[at.index];
    return [{ at, before: rs, after: resolveService(live.state, rs, [...slices.values()]) }];
  });
}

/** One Service joined with its slices (or its legacy Endpoints), exactly as resolveServices joins the whole state. */
function resolveService(state: ClusterState, rs: ResolvedService, slices: EndpointSlice[]): ResolvedService {
  const { namespace, name } = rs.service;
  const legacyEndpoints = (state.legacyEndpoints ?? []).filter((e) => e.namespace === namespace && e.name === name);
  return resolveServices({ services: [rs.service], endpointSlices: slices, legacyEndpoints, nodes: [], notes: [] }).services[0];
}

/** Backends whose Service ports change: their new records (undefined when they go), and which appear, go or change. */
export interface BackendPlan {
  records: Map<string, BackendRecord | undefined>;
  added: CompiledBackend[];
  removed: CompiledBackend[];
  /** Backends that stay with another node named or another locality, as they are now. */
  changed: Array<{ before: CompiledBackend; after: CompiledBackend }>;
  /** Ids the added backends take from the pool; the rest reuse ids of removed ones. */
  fromPool: number;
}

/** The endpoints of one compiled Service port before and after. */
interface PortEndpoints {
  id: number;
  protocol: Protocol;
  before: readonly ResolvedEndpoint[];
  after: readonly ResolvedEndpoint[];
}

/** A backend of a changed Service port, and the endpoints that name it after the change. */
interface TouchedBackend {
  serviceId: number;
  ip: string;
  port: number;
  protocol: Protocol;
  nodeNames: Array<string | undefined>;
  /** The zone of each endpoint in nodeNames (control/compile/compiler.ts endpointZone). */
  zones: Array<string | undefined>;
}

function planBackends(live: LiveProgram, ports: readonly PortEndpoints[]): BackendPlan {
  // A backend belongs to one Service port, so the endpoints of the changed ports are all that name their backends.
  const touched = new Map<string, TouchedBackend>();
  const touch = (serviceId: number, ip: string, port: number, protocol: Protocol) => {
    const key = backendKey(serviceId, ip, port, protocol);
    let entry = touched.get(key);
    if (!entry) touched.set(key, (entry = { serviceId, ip, port, protocol, nodeNames: [], zones: [] }));
    return entry;
  };
  for (const p of ports) {
    for (const ep of p.before) touch(p.id, ep.ip, ep.port, p.protocol);
    for (const ep of p.after) {
      const entry = touch(p.id, ep.ip, ep.port, p.protocol);
      entry.nodeNames.push(ep.nodeName);
      entry.zones.push(endpointZone(ep, live.context.nodeZones));
    }
  }
  const plan: BackendPlan = { records: new Map(), added: [], removed: [], changed: [], fromPool: 0 };
  const fresh: Array<[string, TouchedBackend]> = [];
  for (const [key, entry] of touched) {
    const known = live.backends.get(key)?.backend;
    if (entry.nodeNames.length === 0) {
      if (known) plan.removed.push(known);
      plan.records.set(key, undefined);
    } else if (!known) {
      fresh.push([key, entry]);
    } else {
      let backend = backendOf(known.id, entry, live.context.nodeName);
      if (backend.local !== known.local || backend.nodeName !== known.nodeName || backend.zone !== known.zone)
        plan.changed.push({ before: known, after: backend });
      else backend = known;
      plan.records.set(key, { backend, nodeNames: entry.nodeNames });
    }
  }
  const ids = newIds(live, fresh.length, plan);
  fresh.forEach(([key, entry], i) => {
    const backend = backendOf(ids[i], entry, live.context.nodeName);
    plan.added.push(backend);
    plan.records.set(key, { backend, nodeNames: entry.nodeNames });
  });
  return plan;
}

/**
 * Ids for `n` new backends: free ones first, then those the update frees
 * (a flow that outlived its backend would then reach the new one; only
 * when the maps are that full).
 */
export function newIds(live: LiveProgram, n: number, plan: Pick<BackendPlan, 'removed' | 'fromPool'>): number[] {
  const pooled = live.freeIds.peek(n);
  plan.fromPool = pooled.length;
  const ids = [...pooled, ...plan.removed.map((b) => b.id).slice(0, n - pooled.length)];
  if (ids.length < n) {
    throw new NeedsReloadError(
      `${n} new backends, but only ${ids.length} backend ids are free ` +
        `(the maps were sized for ${live.dp.map('backendStats').maxEntries - 1}): compile the new state and load it again`,
    );
  }
  return ids;
}

/** The removed backends of a plan that stay as tombstones: all but those whose ids new backends took at once (newIds). */
export function tombstonedBy(plan: Pick<BackendPlan, 'added' | 'removed' | 'fromPool'>): CompiledBackend[] {
  return plan.removed.slice(plan.added.length - plan.fromPool);
}

/** The pool after a plan is applied: the ids it took gone, the tombstones' ids last in line. */
export function settleIds(pool: IdPool, plan: Pick<BackendPlan, 'added' | 'removed' | 'fromPool'>): void {
  pool.take(plan.fromPool);
  pool.release(tombstonedBy(plan).map((b) => b.id));
}

/** A backend as a full compile makes it from its endpoints: the first one on this node if any, else the first. */
function backendOf(
  id: number,
  { serviceId, ip, port, protocol, nodeNames, zones }: TouchedBackend,
  node: string | undefined,
): CompiledBackend {
  const local = node !== undefined && nodeNames.includes(node);
  const zone = zones[local ? nodeNames.indexOf(node) : 0];
  return { id, serviceId, ip, port, protocol, nodeName: local ? node : nodeNames[0], ...(zone ? { zone } : {}), local };
}

const backendMap = (b: CompiledBackend): MapName => (familyOf(b.ip) === 'v4' ? 'lb4Backends' : 'lb6Backends');
const ZERO_COUNTERS = { packets: 0, bytes: 0, flows: 0 };

/** A backend that went, as its map keeps it for the flows that name it. */
export const tombstoneValue = (b: CompiledBackend): StructValue => {
  const value = backendValue(b);
  return { ...value, flags: (value.flags as number) | BE_F_GONE };
};

/** The backend map writes of a plan: tombstones for the backends that go, the new ones, the changed localities. */
export function backendOps(
  plan: Pick<BackendPlan, 'added' | 'removed' | 'changed'>,
  tombstones: ReadonlyMap<number, CompiledBackend>,
): MapOp[] {
  const takenAgain = new Set(plan.added.map((b) => b.id));
  const remove = (b: CompiledBackend): MapOp => ({ map: backendMap(b), key: { value: b.id }, flags: BPF_ANY });
  return [
    // An id this update gives to a new backend at once is freed outright; the others leave a tombstone.
    ...plan.removed.map(
      (b): MapOp =>
        takenAgain.has(b.id) ? remove(b) : { map: backendMap(b), key: { value: b.id }, value: tombstoneValue(b), flags: BPF_EXIST },
    ),
    ...plan.added.flatMap((b): MapOp[] => [
      ...(tombstones.has(b.id) ? [remove(tombstones.get(b.id)!)] : []),
      { map: backendMap(b), key: { value: b.id }, value: backendValue(b), flags: BPF_NOEXIST },
      // Counters start again: the id may have counted another backend's traffic.
      { map: 'backendStats', key: { value: b.id }, value: ZERO_COUNTERS, flags: BPF_ANY },
    ]),
    ...plan.changed
      .filter(({ before, after }) => before.local !== after.local)
      .map(({ after: b }): MapOp => ({ map: backendMap(b), key: { value: b.id }, value: backendValue(b), flags: BPF_EXIST })),
  ];
}

/** The Maglev tables, members and service entries of one Service port that differ. */
function portOps({ before, after }: PortChange): MapOp[] {
  const ops: MapOp[] = [];
  const was = new Map(serviceTables(before).map(({ table, set }) => [table, set]));
  const now = new Map(serviceTables(after).map(({ table, set }) => [table, set]));
  for (const table of new Set([...was.keys(), ...now.keys()])) {
    const [old, set] = [was.get(table), now.get(table)];
    if (!set) ops.push({ map: 'maglev', key: { value: table }, flags: BPF_ANY });
    else if (!old || !sameTable(old, set))
      ops.push({ map: 'maglev', key: { value: table }, value: tableBytes(set), flags: old ? BPF_EXIST : BPF_NOEXIST });
    const [had, has] = [new Set(old?.backendIds), new Set(set?.backendIds)];
    for (const backendId of had) if (!has.has(backendId)) ops.push({ map: 'lbMembers', key: { table, backendId }, flags: BPF_ANY });
    for (const backendId of has)
      if (!had.has(backendId)) ops.push({ map: 'lbMembers', key: { table, backendId }, value: PRESENT, flags: BPF_NOEXIST });
  }
  for (const f of after.frontends) {
    const [old, entry] = [frontendEntry(before, f), frontendEntry(after, f)];
    if (Object.keys(entry.value).some((k) => entry.value[k] !== old.value[k])) {
      ops.push({ map: entry.family === 'v4' ? 'lb4Services' : 'lb6Services', key: entry.key, value: entry.value, flags: BPF_EXIST });
    }
  }
  return ops;
}

const PRESENT = { present: 1 };

function sameTable(a: BackendSet, b: BackendSet): boolean {
  if (a.backendIds.length !== b.backendIds.length || a.backendIds.some((id, i) => id !== b.backendIds[i])) return false;
  return a.maglev.every((id, slot) => id === b.maglev[slot]);
}

function tableBytes(set: BackendSet): Uint8Array {
  return new Uint8Array(set.maglev.buffer, set.maglev.byteOffset, set.maglev.byteLength);
}

/** Throws NeedsReloadError when a map would overflow: inserts past the deletes, beyond max_entries. */
export function checkRoom(dp: Datapath, ops: readonly MapOp[]): void {
  const growth = new Map<MapName, number>();
  for (const op of ops) {
    if (!op.value) growth.set(op.map, (growth.get(op.map) ?? 0) - 1);
    else if (op.flags === BPF_NOEXIST) growth.set(op.map, (growth.get(op.map) ?? 0) + 1);
  }
  for (const [name, n] of growth) {
    const map = dp.map(name);
    if (n > 0 && map.count() + n > map.maxEntries) {
      throw new NeedsReloadError(
        `map ${map.spec.name} has room for ${map.maxEntries} entries and holds ${map.count()}; ` +
          `the update needs ${n} more: compile the new state and load it again (loadProgram's room option leaves room to grow)`,
      );
    }
  }
}

/** Deletes first, so that an update that frees as much as it takes fits. */
export function applyOps(dp: Datapath, ops: readonly MapOp[]): void {
  for (const op of ops) if (!op.value) dp.map(op.map).delete(op.key);
  for (const op of ops) {
    if (!op.value) continue;
    const map = dp.map(op.map);
    if (op.value instanceof Uint8Array) map.updateRaw(encode(map.spec.key, op.key), op.value, op.flags);
    else map.update(op.key, op.value, op.flags);
  }
}

/** The live state catches up with the maps. */
function commit(live: LiveProgram, pairs: readonly SlicePair[], services: ServiceChange[], plan: BackendPlan, ports: PortChange[]): void {
  for (const { before } of pairs) if (before) dropSlice(live.slices, before);
  for (const { after } of pairs) if (after) storeSlice(live.slices, after);
  for (const { at, after } of services) live.resolved[at.index] = after;
  for (const [key, record] of plan.records) {
    if (record) live.backends.set(key, record);
    else live.backends.delete(key);
  }
  settleIds(live.freeIds, plan);
  for (const b of plan.added) live.tombstones.delete(b.id);
  for (const b of tombstonedBy(plan)) live.tombstones.set(b.id, b);
  const { compiled } = live;
  for (const b of [...plan.added, ...plan.changed.map((c) => c.after)]) compiled.backends[b.id - 1] = b;
  const M = compiled.maglevTableSize;
  for (const { after } of ports) {
    compiled.services[after.id - 1] = after;
    compiled.notes = [...compiled.notes.filter((n) => !n.startsWith(`${after.name}: `)), ...serviceNotes(after, M)];
  }
  live.updates++;
}

/** The map entries of the live state: those no EndpointSlice decides as loaded, the rest from the compiled services and backends. */
function currentEntries(live: LiveProgram, loaded: MapEntries): MapEntries {
  const { services } = live.compiled;
  const backends = [...live.backends.values()].map((r) => r.backend);
  const entry = (b: CompiledBackend) => ({ id: b.id, value: live.tombstones.has(b.id) ? tombstoneValue(b) : backendValue(b) });
  const held = [...backends, ...live.tombstones.values()].sort((a, b) => a.id - b.id);
  const family = (f: 'v4' | 'v6'): FamilyEntries => ({
    ...loaded[f],
    services: loaded[f].services.map(({ key, value }) => {
      const id = value.serviceId as number;
      if (id === 0) return { key, value }; // a cluster IP's wildcard
      const cs = services[id - 1];
      return { key, value: frontendEntry(cs, cs.frontends.find((fe) => fe.revNatIndex === value.revNatIndex)!).value };
    }),
    backends: held.filter((b) => familyOf(b.ip) === f).map(entry),
  });
  const tables: Pick<MapEntries, 'maglev' | 'lbMembers'> = { maglev: [], lbMembers: [] };
  for (const cs of services) addTableEntries(tables, cs);
  return { ...loaded, ...tables, v4: family('v4'), v6: family('v6') };
}
