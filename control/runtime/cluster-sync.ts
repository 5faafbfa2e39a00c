/**
 * Cluster changes during a replay, as kube-proxy (or Cilium) applies them:
 * the events of a watch file (control/cluster/events.ts) grouped into syncs
 * (sync-schedule.ts), each sync brought to the loaded datapath through the
 * map API (rebase.ts, update.ts), then, under kube-proxy's semantics, the
 * UDP conntrack entries it made stale flushed (conntrack-flush.ts). The
 * replay asks when the next sync is due and applies it between batches, so
 * that every packet is decided under the state in force at its timestamp.
 *
 * Each applied sync is a state (1, 2, ...; 0 is the initial one) with a
 * record for the timeline: what changed, and the flows it affected, at the
 * sync (kept on a backend that left, flushed) and after it (moved, reset,
 * rejected), the latter read from the datapath's counters at the next
 * boundary, never per packet.
 */
import { applyEvent, formatTime, type ClusterEvent, type EventKind, type EventsRead, type EventType } from '../cluster/events.js';
import type { ClusterState } from '../cluster/state.js';
import type { DatapathSemantics } from '../compile/compiler.js';
import { FLOW_CHANGES, REASONS, VERDICTS, hostPort, type FlowChange } from '../compile/layout.js';
import { inputError } from '../common/errors.js';
import { countFlowsOnBackends, flushStaleUdp } from './conntrack-flush.js';
import type { Datapath } from './datapath.js';
import { applyStateChange, type EndpointChanges, type StateChange } from './rebase.js';
import { steerChanges } from './steer-update.js';
import { scheduleSyncs, type Sync } from './sync-schedule.js';
import { NeedsReloadError, type LiveProgram } from './update.js';

/** An event as the timeline names it. */
export interface EventRef {
  line: number;
  time: string;
  type: EventType;
  kind: EventKind;
  /** "namespace/name", or the name of a cluster-scoped object. */
  object: string;
}

/** Flow counts per Service port name. */
export type FlowsByService = Record<string, number>;

/** One applied sync: the state it starts, what changed, and the flows it affected. */
export interface SyncRecord {
  state: number;
  /** When it applied (the capture's clock): "seconds.nanoseconds". */
  at: string;
  events: EventRef[];
  services: { added: string[]; removed: string[]; modified: string[] };
  /**
   * Per Service port whose endpoints changed, "ip:port": now ready (`added`), no longer
   * serving (`removed`), now serving only as terminating, and gone from its slices.
   */
  endpoints: Array<{ service: string; added: string[]; removed: string[]; terminating: string[]; gone: string[] }>;
  /** At the sync: established flows whose backend left: kept on it (kube-proxy) or to choose again (Cilium). */
  onRemovedBackends: FlowsByService;
  /** At the sync: UDP flows whose conntrack entries were flushed (kube-proxy). */
  flushed: FlowsByService;
  /** While this state was in force: packets, packets per flowChange, new flows rejected for lack of endpoints. */
  observed: { packets: number; flowChanges: Record<FlowChange, number>; rejected: number };
}

export interface ChangeOptions {
  /** The events file, for messages. */
  file: string;
  semantics: DatapathSemantics;
  minSyncPeriodNs: bigint;
  maxEndpointsPerSlice?: number;
  /** What reading the file found besides the events, for the timeline. */
  read: Pick<EventsRead, 'initialListSkipped' | 'repeatsSkipped' | 'notes'>;
}

/** metrics indices (reason << 3 | verdict) of packets of new flows refused for lack of endpoints. */
const REJECTING = ['NO_ENDPOINTS', 'NO_LOCAL_ENDPOINTS'].flatMap((reason) =>
  VERDICTS.map((_, verdict) => (REASONS.indexOf(reason as (typeof REASONS)[number]) << 3) | verdict),
);

/** The counters the timeline reads between batches. */
interface Tally {
  packets: number;
  flowChanges: number[];
  rejected: number;
}

/** The counters after `packets` packets: a few map lookups, once per sync. */
function readTally(dp: Datapath, packets: number): Tally {
  const metrics = dp.map('metrics');
  const rejected = REJECTING.reduce((n, i) => n + Number(metrics.at(i)!.packets), 0);
  const counts = dp.map('flowChanges');
  return { packets, rejected, flowChanges: FLOW_CHANGES.map((_, i) => Number(counts.at(i + 1)!.packets)) };
}

/**
 * The changes of one replay: their syncs, applied in turn to a live
 * program, and the timeline they make.
 */
export class ClusterChanges {
  private readonly syncs: Array<Sync<ClusterEvent>>;
  private next = 0;
  private tally: Tally;
  private state: ClusterState;
  private current: LiveProgram;
  /** Syncs applied so far, in order. */
  readonly applied: SyncRecord[] = [];
  /** What state 0 saw, while it was in force. */
  readonly initial: { observed: SyncRecord['observed'] } = {
    observed: { packets: 0, flowChanges: noChanges(), rejected: 0 },
  };

  /** `initial`: the state `live` was loaded from, as loaded (a live program's own state changes with it). */
  constructor(
    live: LiveProgram,
    initial: ClusterState,
    events: readonly ClusterEvent[],
    readonly opts: ChangeOptions,
  ) {
    this.current = live;
    this.state = initial;
    this.syncs = scheduleSyncs(events, opts.minSyncPeriodNs);
    this.tally = readTally(live.dp, 0);
  }

  get live(): LiveProgram {
    return this.current;
  }

  /** The state in force: 0 before the first sync. */
  get stateIndex(): number {
    return this.applied.length;
  }

  /** When the next sync applies (nanoseconds on the capture's clock), or undefined when none is left. */
  get nextAt(): bigint | undefined {
    return this.syncs[this.next]?.at;
  }

  /** Syncs that never applied: the capture ended before them. */
  get notReached(): number {
    return this.syncs.length - this.next;
  }

  /**
   * Closes the observation of the state in force, after `packets` packets of
   * the replay: its counters since it started. Call at the end of the replay too.
   */
  observe(packets: number): void {
    const now = readTally(this.current.dp, packets);
    const into = this.applied.at(-1)?.observed ?? this.initial.observed;
    into.packets += now.packets - this.tally.packets;
    into.rejected += now.rejected - this.tally.rejected;
    FLOW_CHANGES.forEach((kind, i) => {
      into.flowChanges[kind] += now.flowChanges[i] - this.tally.flowChanges[i];
    });
    this.tally = now;
  }

  /** Applies the next sync, after `packets` packets: its events to the state, the state to the maps, then the flush. */
  applyNext(packets: number): SyncRecord {
    this.observe(packets);
    const sync = this.syncs[this.next++];
    const before = this.state;
    let after = before;
    for (const event of sync.changes) after = applyEvent(after, event, { maxEndpointsPerSlice: this.opts.maxEndpointsPerSlice });
    let change: StateChange;
    try {
      ({ live: this.current, change } = applyStateChange(this.current, after));
      steerChanges(this.current);
    } catch (e) {
      if (!(e instanceof NeedsReloadError)) throw e;
      const first = sync.changes[0];
      throw inputError([this.opts.file, `line ${first.line}`], `the change cannot be applied in place: ${e.message}`);
    }
    this.state = after;
    // Flushed first: the census then counts the flows that stay on a backend that went.
    const flushed = this.opts.semantics === 'kube-proxy' ? flushStaleUdp(this.current, before, sync.at) : {};
    const flows = change.removedBackendIds.length > 0 ? countFlowsOnBackends(this.current, change.removedBackendIds, sync.at) : {};
    const record: SyncRecord = {
      state: this.applied.length + 1,
      at: formatTime(sync.at),
      events: sync.changes.map(eventRef),
      services: change.services,
      endpoints: withGone(change.endpoints, this.current, change.removedBackendIds),
      onRemovedBackends: flows,
      flushed,
      observed: { packets: 0, flowChanges: noChanges(), rejected: 0 },
    };
    this.applied.push(record);
    return record;
  }
}

/** The endpoint changes with the backends that went from their slices, by Service port. */
function withGone(endpoints: readonly EndpointChanges[], live: LiveProgram, removedIds: readonly number[]): SyncRecord['endpoints'] {
  const byService = new Map(endpoints.map((e) => [e.service, { ...e, gone: [] as string[] }]));
  for (const id of removedIds) {
    const b = live.compiled.backends[id - 1];
    const service = live.compiled.services[b.serviceId - 1].name;
    let entry = byService.get(service);
    if (!entry) byService.set(service, (entry = { service, added: [], removed: [], terminating: [], gone: [] }));
    entry.gone.push(hostPort(b.ip, b.port));
  }
  return [...byService.values()];
}

function noChanges(): Record<FlowChange, number> {
  return Object.fromEntries(FLOW_CHANGES.map((k) => [k, 0])) as Record<FlowChange, number>;
}

function eventRef(e: ClusterEvent): EventRef {
  return {
    line: e.line,
    time: formatTime(e.time),
    type: e.type,
    kind: e.kind,
    object: e.namespace === undefined ? e.name : `${e.namespace}/${e.name}`,
  };
}

/** The timeline of a replay's cluster changes, for the summary (text and JSON). */
export interface Timeline {
  events: string;
  semantics: DatapathSemantics;
  /** Seconds. */
  minSyncPeriod: number;
  /** Events that changed something, and those skipped as kubectl's initial list or a re-list. */
  eventsApplied: number;
  initialListSkipped: number;
  repeatsSkipped: number;
  /** State 0, while it was in force. */
  initial: SyncRecord['observed'];
  syncs: SyncRecord[];
  /** Syncs due after the capture's last packet: never applied. */
  syncsAfterEnd: number;
  notes: string[];
}

export function timelineOf(changes: ClusterChanges): Timeline {
  const { opts } = changes;
  return {
    events: opts.file,
    semantics: opts.semantics,
    minSyncPeriod: Number(opts.minSyncPeriodNs) / 1e9,
    eventsApplied: changes.applied.reduce((n, s) => n + s.events.length, 0),
    initialListSkipped: opts.read.initialListSkipped,
    repeatsSkipped: opts.read.repeatsSkipped,
    initial: changes.initial.observed,
    syncs: changes.applied,
    syncsAfterEnd: changes.notReached,
    notes: opts.read.notes,
  };
}
