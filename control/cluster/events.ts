/**
 * Cluster changes over time: a file of watch events, as `kubectl get <kind>
 * --watch --output-watch-events -o json` prints them (optionally through
 * `ts %.s`), read into a time-ordered list of validated changes, and applied
 * one by one to a ClusterState. Each event's object is validated as a manifest
 * object is (validate.ts), so its mistakes read the same, with the line of the
 * event where a manifest has its document.
 */
import { readFileSync } from 'node:fs';
import { InputError, inputError } from '../common/errors.js';
import { withPodEndpoints } from './index.js';
import { describe, isMapping } from './load.js';
import type { ClusterState, EndpointSlice, LegacyEndpoints, Node, Pod, ProxyConfig, Service } from './state.js';
import { validateManifests } from './validate.js';
import { Warnings } from './warnings.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';
const EVENT_TYPES: readonly EventType[] = ['ADDED', 'MODIFIED', 'DELETED'];

/**
 * The typed object each kind of event carries. A ServiceCIDR is validated but
 * carries nothing: the state keeps only the union of the ranges, not the
 * objects, so one ServiceCIDR's change cannot be applied to it (the ranges in
 * force stay the initial state's).
 */
interface EventObjects {
  Service: Service;
  EndpointSlice: EndpointSlice;
  Endpoints: LegacyEndpoints;
  Pod: Pod;
  Node: Node;
  KubeProxyConfiguration: ProxyConfig;
  ServiceCIDR: undefined;
}
export type EventKind = keyof EventObjects;
const EVENT_KINDS: readonly string[] = [
  'Service',
  'EndpointSlice',
  'Endpoints',
  'Pod',
  'Node',
  'KubeProxyConfiguration',
  'ServiceCIDR',
] satisfies EventKind[];

interface EventBase {
  /** Nanoseconds since the Unix epoch, exact (a float would lose the nanoseconds of today's times). */
  time: bigint;
  /** The line of the file the event starts on. */
  line: number;
  type: EventType;
  /** Undefined for cluster-scoped kinds. */
  namespace?: string;
  name: string;
}

/**
 * One change. `object` is the object as the event carries it, validated: for
 * DELETED, its state immediately before deletion, as the API server sends it.
 */
export type ClusterEvent = { [K in EventKind]: EventBase & { kind: K; object: EventObjects[K] } }[EventKind];

export interface EventsRead {
  /** Every event read before `error`, in time order. */
  events: ClusterEvent[];
  /** ADDED events of objects of the initial state, which kubectl prints first (its initial list): no-ops. */
  initialListSkipped: number;
  /** ADDED events repeating an object already ADDED, unchanged (a re-list after a watch restart): no-ops. */
  repeatsSkipped: number;
  notes: string[];
  warnings: string[];
  /** The first mistake in the file; the events before it are in `events`, so a caller can replay up to it. */
  error?: InputError;
}

export interface ReadEventsOptions {
  /** --strict: the first warning is the error. */
  strict?: boolean;
  /** The API server's --service-node-port-range, both ends included; default [30000, 32767]. */
  serviceNodePortRange?: [number, number];
}

/** Reads a watch-events file; `-` is standard input. Only a file that cannot be read throws. */
export function readEvents(path: string, initial: ClusterState, opts: ReadEventsOptions = {}): EventsRead {
  const name = path === '-' ? 'stdin' : path;
  let text: string;
  try {
    text = readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw inputError([name], code === 'ENOENT' ? 'no such file or directory' : (e as Error).message);
  }
  return parseEvents(text, name, initial, opts);
}

/**
 * Reads the text of a watch-events file named `name` (for messages). The
 * initial state decides which ADDED events are kubectl's initial list and which
 * objects a MODIFIED or DELETED may name.
 */
export function parseEvents(text: string, name: string, initial: ClusterState, opts: ReadEventsOptions = {}): EventsRead {
  const result: EventsRead = { events: [], initialListSkipped: 0, repeatsSkipped: 0, notes: [], warnings: [] };
  const tracker = new ObjectTracker(initial);
  const warnings = new Warnings(opts.strict);
  let previous: { time: bigint; line: number } | undefined;
  try {
    for (const value of jsonValues(text, name)) {
      const where = `${name}: line ${value.line}`;
      const time = eventTime(value, where);
      if (previous && time < previous.time) {
        throw inputError(
          [where],
          `time ${formatTime(time)} is before the time of the event on line ${previous.line} (${formatTime(previous.time)}); ` +
            'events must be in time order',
        );
      }
      previous = { time, line: value.line };
      const event = toEvent(value, where, time, initial, opts, warnings, result.notes);
      if (event) tracker.admit(event, where, result);
    }
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    result.error = e;
  }
  result.warnings = warnings.messages;
  return result;
}

/** An event time as "seconds.nanoseconds", for messages. */
export function formatTime(time: bigint): string {
  return `${time / NANOS_PER_SECOND}.${(time % NANOS_PER_SECOND).toString().padStart(9, '0')}`;
}

/**
 * The state after `event`: its object added, replaced (in place, so the order of
 * the rest is kept) or removed, and the EndpointSlices derived from Pods made
 * again as loading makes them (index.ts, withPodEndpoints). Pure. The state's
 * notes are kept as they are: a change is not a new load.
 */
export function applyEvent(state: ClusterState, event: ClusterEvent, opts: { maxEndpointsPerSlice?: number } = {}): ClusterState {
  const given: ClusterState = { ...state, endpointSlices: state.endpointSlices.filter((s) => !s.derived) };
  const changed = withChange(given, event);
  return { ...withPodEndpoints(changed, opts), notes: state.notes };
}

function withChange(state: ClusterState, event: ClusterEvent): ClusterState {
  const removed = event.type === 'DELETED';
  switch (event.kind) {
    case 'Service':
      return { ...state, services: upsert(state.services, event, removed) };
    case 'EndpointSlice':
      return { ...state, endpointSlices: upsert(state.endpointSlices, event, removed) };
    case 'Endpoints':
      return { ...state, legacyEndpoints: upsert(state.legacyEndpoints ?? [], event, removed) };
    case 'Pod':
      return { ...state, pods: upsert(state.pods ?? [], event, removed) };
    case 'Node':
      return { ...state, nodes: upsert(state.nodes, event, removed) };
    case 'KubeProxyConfiguration':
      return { ...state, proxyConfig: removed ? undefined : event.object };
    case 'ServiceCIDR':
      return state;
  }
}

/** The list with the event's object put in the place of the one with its namespace and name, or appended; or removed. */
function upsert<T extends { namespace?: string; name: string }>(list: T[], event: { object: T } & EventBase, removed: boolean): T[] {
  const same = (o: T) => o.name === event.name && o.namespace === event.namespace;
  if (removed) return list.filter((o) => !same(o));
  const i = list.findIndex(same);
  return i < 0 ? [...list, event.object] : [...list.slice(0, i), event.object, ...list.slice(i + 1)];
}

// ---------------------------------------------------------------------------
// Which objects exist when

/** "Kind ns/name", or "Kind name" for cluster-scoped kinds; the one KubeProxyConfiguration is its kind. */
function keyOf(kind: EventKind, namespace: string | undefined, name: string): string {
  if (kind === 'KubeProxyConfiguration') return kind;
  return namespace === undefined ? `${kind} ${name}` : `${kind} ${namespace}/${name}`;
}

/**
 * Follows which objects exist as the events go, to refuse a change of an
 * object that does not, and to tell kubectl's initial list and re-lists from
 * real additions.
 */
class ObjectTracker {
  /** Objects of the initial state no event has touched yet: an ADDED of one is the initial list. */
  private readonly untouched = new Set<string>();
  /** Objects present now, each with the last event that added or changed it (absent for untouched ones). */
  private readonly present = new Map<string, ClusterEvent | undefined>();
  /** Objects deleted, with the line of their DELETED, for the message of a later change. */
  private readonly deletedOn = new Map<string, number>();

  constructor(initial: ClusterState) {
    const keys = [
      ...initial.services.map((o) => keyOf('Service', o.namespace, o.name)),
      // Slices derived from Pods are svcpath's, not objects of the cluster's.
      ...initial.endpointSlices.filter((o) => !o.derived).map((o) => keyOf('EndpointSlice', o.namespace, o.name)),
      ...(initial.legacyEndpoints ?? []).map((o) => keyOf('Endpoints', o.namespace, o.name)),
      ...(initial.pods ?? []).map((o) => keyOf('Pod', o.namespace, o.name)),
      ...initial.nodes.map((o) => keyOf('Node', undefined, o.name)),
      ...(initial.proxyConfig ? ['KubeProxyConfiguration'] : []),
    ];
    for (const key of keys) {
      this.untouched.add(key);
      this.present.set(key, undefined);
    }
  }

  /** Adds the event to the result, skips it as a no-op, or throws where it names an object that is not there. */
  admit(event: ClusterEvent, where: string, result: EventsRead): void {
    const key = keyOf(event.kind, event.namespace, event.name);
    // The state keeps no ServiceCIDR objects (see EventObjects), so there is nothing to check one against.
    if (event.kind === 'ServiceCIDR') {
      result.events.push(event);
      return;
    }
    if (event.type === 'ADDED' && this.untouched.has(key)) {
      result.initialListSkipped++;
      return;
    }
    const last = this.present.get(key);
    if (event.type !== 'ADDED' && !this.present.has(key)) {
      const deleted = this.deletedOn.get(key);
      throw inputError(
        [where, key],
        `${event.type}, but there is no such object at this time: ` +
          (deleted === undefined ? 'not in the initial state and not ADDED before' : `DELETED on line ${deleted}`),
      );
    }
    if (event.type === 'ADDED' && last) {
      // A watch that restarts lists again, as ADDED, every object it already
      // sent (the reflector's re-list): an unchanged one is a no-op, a changed
      // one changed while the watch was down, which is a MODIFIED.
      if (sameObject(last.object, event.object)) {
        result.repeatsSkipped++;
        return;
      }
      result.notes.push(`${where}: ${key}: ADDED again, changed: taken as MODIFIED (a re-list after the watch restarted)`);
      event.type = 'MODIFIED';
    }
    this.untouched.delete(key);
    if (event.type === 'DELETED') {
      this.present.delete(key);
      this.deletedOn.set(key, event.line);
    } else {
      this.present.set(key, event);
      this.deletedOn.delete(key);
    }
    result.events.push(event);
  }
}

/** Whether two validated objects say the same, apart from where they were read. */
function sameObject(a: unknown, b: unknown): boolean {
  const withoutOrigin = (o: unknown) => JSON.stringify({ ...(o as object), origin: undefined });
  return withoutOrigin(a) === withoutOrigin(b);
}

// ---------------------------------------------------------------------------
// One event: its type, time and object

/** The event of one JSON value, or undefined (and a note) for an object svcpath does not read. */
function toEvent(
  value: JsonValue,
  where: string,
  time: bigint,
  initial: ClusterState,
  opts: ReadEventsOptions,
  warnings: Warnings,
  notes: string[],
): ClusterEvent | undefined {
  const { parsed } = value;
  const type = parsed.type;
  if (!EVENT_TYPES.includes(type as EventType)) {
    throw inputError([where, 'type'], `must be ${EVENT_TYPES.slice(0, -1).join(', ')} or ${EVENT_TYPES.at(-1)}, got ${describe(type)}`);
  }
  const object = parsed.object;
  if (!isMapping(object)) throw inputError([where, 'object'], `must be a Kubernetes object (a mapping), got ${describe(object)}`);
  const kind = object.kind;
  if (typeof kind === 'string' && !EVENT_KINDS.includes(kind) && object.apiVersion != null) {
    notes.push(`${where}: skipped ${type} ${kind} (not a kind of the cluster state; events of ${EVENT_KINDS.join(', ')} are read)`);
    return undefined;
  }
  // Validated alone, as the only manifest of a file named after the event's line,
  // so that its mistakes read "file: line N: Kind ns/name: field: problem".
  const validationNotes: string[] = [];
  const { state } = validateManifests([{ file: where, position: 'object', object }], {
    serviceClusterIPRanges: initial.serviceRanges?.cidrs.length ? initial.serviceRanges.cidrs : undefined,
    serviceNodePortRange: opts.serviceNodePortRange ?? [30000, 32767],
    warnings,
  });
  validationNotes.push(...state.notes.filter((n) => n.startsWith(`${where}: `)));
  notes.push(...validationNotes);
  const base = { time, line: value.line, type: type as EventType };
  const meta = isMapping(object.metadata) ? object.metadata : {};
  switch (kind as EventKind) {
    case 'Service':
      return typed(base, 'Service', state.services[0]);
    case 'EndpointSlice':
      // A slice without a Service label is skipped as loading skips it (validate.ts said so in a note).
      return state.endpointSlices[0] && typed(base, 'EndpointSlice', state.endpointSlices[0]);
    case 'Endpoints':
      return typed(base, 'Endpoints', (state.legacyEndpoints ?? [])[0]);
    case 'Pod':
      return typed(base, 'Pod', (state.pods ?? [])[0]);
    case 'Node':
      return { ...base, kind: 'Node', name: state.nodes[0].name, object: state.nodes[0] };
    case 'KubeProxyConfiguration':
      return { ...base, kind: 'KubeProxyConfiguration', name: String(meta.name ?? ''), object: state.proxyConfig as ProxyConfig };
    case 'ServiceCIDR':
      return { ...base, kind: 'ServiceCIDR', name: String(meta.name), object: undefined };
  }
}

function typed<K extends 'Service' | 'EndpointSlice' | 'Endpoints' | 'Pod'>(
  base: Omit<EventBase, 'namespace' | 'name'>,
  kind: K,
  object: EventObjects[K],
): ClusterEvent {
  return { ...base, kind, namespace: object.namespace, name: object.name, object } as ClusterEvent;
}

const NANOS_PER_SECOND = 1_000_000_000n;
/** Epoch seconds with an optional fraction, as `ts %.s` prints them (microseconds) and as a number "time" is written. */
const EPOCH_SECONDS = /^(\d+)(?:\.(\d{1,9}))?$/;
/** RFC 3339 with an optional fraction of up to nanoseconds, as Kubernetes writes MicroTime. */
const RFC3339 = /^(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$/;

/** The event's time: its "time" field when it has one, else the epoch prefix of its first line. */
function eventTime(value: JsonValue, where: string): bigint {
  const field = value.parsed.time;
  if (field === undefined) {
    if (value.prefixTime === undefined) {
      throw inputError(
        [where],
        'no time: neither an epoch time in front of the line, as `ts %.s` writes it (e.g. "1733412345.123456 "), nor a "time" field',
      );
    }
    return epochNanos(value.prefixTime) as bigint;
  }
  const time =
    typeof field === 'string' ? rfc3339Nanos(field) : typeof field === 'number' && value.timeText ? epochNanos(value.timeText) : undefined;
  if (time === undefined) {
    throw inputError(
      [where, 'time'],
      `must be an RFC 3339 time (e.g. "2024-12-05T15:25:45.123456Z") or epoch seconds (e.g. 1733412345.123456), got ${value.timeText ?? describe(field)}`,
    );
  }
  return time;
}

function epochNanos(text: string): bigint | undefined {
  const m = EPOCH_SECONDS.exec(text);
  return m ? BigInt(m[1]) * NANOS_PER_SECOND + fractionNanos(m[2]) : undefined;
}

function rfc3339Nanos(text: string): bigint | undefined {
  const m = RFC3339.exec(text);
  if (!m) return undefined;
  const [, date, clock, fraction, zone] = m;
  // Date.parse is exact to the second here (the fraction is left out), and checks the calendar.
  const millis = Date.parse(`${date}T${clock}${zone.toUpperCase()}`);
  if (Number.isNaN(millis)) return undefined;
  return BigInt(millis / 1000) * NANOS_PER_SECOND + fractionNanos(fraction);
}

function fractionNanos(digits: string | undefined): bigint {
  return digits ? BigInt(digits.padEnd(9, '0')) : 0n;
}

// ---------------------------------------------------------------------------
// The file: concatenated JSON values, each line maybe with an epoch prefix

interface JsonValue {
  /** The line the value starts on. */
  line: number;
  /** The epoch prefix of that line, if it has one. */
  prefixTime?: string;
  /** The text of a top-level "time" number, exact (JSON.parse would round it to a double). */
  timeText?: string;
  parsed: Record<string, unknown>;
}

/** `ts %.s` puts "seconds.microseconds " in front of every line. */
const LINE_PREFIX = /^(\d+(?:\.\d+)?) /;

/**
 * The JSON values of the text, one after the other, whether one per line or
 * pretty-printed over many (kubectl -o json prints each event indented), with
 * the epoch prefix of every line taken off. Written by hand because JSON.parse
 * reads exactly one value: the scanner only finds where each value ends (depth
 * outside strings), JSON.parse still reads it. No JSON string holds a raw line
 * break, so every line starts outside a string and a prefix cannot be mistaken.
 */
function* jsonValues(text: string, name: string): Generator<JsonValue> {
  const lines = text.split('\n');
  let current: { line: number; prefixTime?: string; parts: string[]; scan: Scan } | undefined;
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    const prefix = LINE_PREFIX.exec(line);
    if (prefix) line = line.slice(prefix[0].length);
    let from = 0;
    while (from < line.length) {
      if (!current) {
        const start = line.slice(from).search(/\S/);
        if (start < 0) break;
        from += start;
        if (line[from] !== '{') {
          throw inputError(
            [`${name}: line ${i + 1}`],
            `expected a watch event (a JSON object), got ${JSON.stringify(line.slice(from, from + 20))}`,
          );
        }
        current = { line: i + 1, prefixTime: prefix?.[1], parts: [], scan: new Scan() };
      }
      const end = current.scan.feed(line, from);
      current.parts.push(line.slice(from, end));
      from = end;
      if (current.scan.depth === 0) {
        yield complete(current.parts.join('\n'), current, name);
        current = undefined;
      }
    }
  }
  if (current) throw inputError([`${name}: line ${current.line}`], 'the event starting here is cut off at the end of the file');
}

function complete(text: string, value: { line: number; prefixTime?: string; scan: Scan }, name: string): JsonValue {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw inputError([`${name}: line ${value.line}`], `not JSON: ${(e as Error).message}`);
  }
  return { line: value.line, prefixTime: value.prefixTime, timeText: value.scan.timeText, parsed: parsed as Record<string, unknown> };
}

/**
 * Where a JSON object ends: braces and brackets counted outside strings. On
 * the way it notes the text of a number given to the top-level key "time".
 */
class Scan {
  depth = 0;
  timeText?: string;
  private inString = false;
  private escaped = false;
  /** The last string closed at depth 1 and where it started, a key when a colon follows. */
  private lastString = '';
  private stringStart = 0;
  private key = '';
  private afterColon = false;

  /** Scans line from `from`; returns where the value ends on it (the line's length if it goes on). */
  feed(line: string, from: number): number {
    for (let i = from; i < line.length; i++) {
      const c = line[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') {
          this.inString = false;
          if (this.depth === 1) this.lastString = line.slice(this.stringStart, i);
        }
        continue;
      }
      if (this.depth === 1 && this.afterColon && /[-\d]/.test(c)) {
        const number = /^-?[\d.eE+-]+/.exec(line.slice(i))?.[0] ?? '';
        if (this.key === 'time') this.timeText = number;
        i += number.length - 1;
        this.afterColon = false;
        continue;
      }
      if (c !== ' ' && c !== '\t') this.afterColon = false;
      if (c === '"') {
        this.inString = true;
        this.stringStart = i + 1;
      } else if (c === ':' && this.depth === 1) {
        this.key = this.lastString;
        this.afterColon = true;
      } else if (c === '{' || c === '[') this.depth++;
      else if (c === '}' || c === ']') {
        this.depth--;
        if (this.depth === 0) return i + 1;
      }
    }
    return line.length;
  }
}
