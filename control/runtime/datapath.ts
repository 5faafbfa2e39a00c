/**
 * The datapath host: instantiates the WebAssembly program (through
 * @assemblyscript/loader), creates its maps, and gives the control plane a
 * bpf(2)-shaped map API — lookup, update with BPF_ANY/NOEXIST/EXIST, delete,
 * iterate — as the only way to touch them. Packets go through `Batch`: frames
 * and descriptors are laid in linear memory and the program runs once per
 * batch, never once per packet.
 */
import { instantiate } from '@assemblyscript/loader';
import {
  BPF_ANY,
  CONFORM,
  DESC_F_INBOUND,
  DESC_F_OTHER_SHARD,
  DESC_F_OUTBOUND,
  DESC_F_TRACE,
  ERRNO_NAMES,
  FLOW_CHANGE_FLAGS,
  FLOW_CHANGES,
  FRAME_DESC,
  MAPS,
  REWRITE_ENTRIES,
  TRACE_RECORD,
  U32_KEY,
  decode,
  encode,
  VERDICTS,
  type FlowChange,
  type MapName,
  type MapSpec,
  type StructValue,
} from '../compile/layout.js';
import type { Direction } from '../../traces/pcap.js';

interface DatapathExports {
  memory: WebAssembly.Memory;
  map_create(id: number, type: number, keySize: number, valueSize: number, maxEntries: number): number;
  map_lookup(id: number, key: number, valueOut: number): number;
  map_update(id: number, key: number, value: number, flags: number): number;
  map_delete(id: number, key: number): number;
  map_get_next_key(id: number, key: number, next: number): number;
  map_lookup_batch(id: number, cursor: number, keysOut: number, valuesOut: number, max: number): number;
  map_count(id: number): number;
  ct_census(now: bigint, out: number): void;
  memory_reserve(bytes: number): number;
  memory_top(): number;
  process_batch(descs: number, count: number): number;
  pcap_walk(
    chunk: number,
    len: number,
    format: number,
    snaplen: number,
    linktype: number,
    descs: number,
    count: number,
    maxFrames: number,
    frames: number,
    framesCapacity: number,
    state: number,
    stopAt: bigint,
  ): number;
  pcap_emit(descs: number, from: number, count: number, nanosecond: number, out: number, capacity: number, written: number): number;
  verdicts_emit(
    descs: number,
    from: number,
    count: number,
    firstN: bigint,
    tables: number,
    maxLine: number,
    out: number,
    capacity: number,
    written: number,
    lengths: number,
    state: number,
  ): number;
  copy_runs(runs: number, count: number, out: number): number;
  trace_configure(base: number, records: number): void;
  trace_count(): number;
  [constant: string]: unknown;
}

/** A failed map operation: the errno the datapath returned, named. */
export class MapError extends Error {
  override readonly name = 'MapError';
  constructor(
    readonly map: string,
    readonly op: string,
    readonly errno: number,
    detail = '',
  ) {
    super(`${op} on map ${map} failed: ${ERRNO_NAMES[errno] ?? `errno ${errno}`}${detail ? ` (${detail})` : ''}`);
  }
}

let built: WebAssembly.Module | undefined;

/**
 * build/datapath.wasm, compiled once. The file is found and read through
 * dynamic imports, so that a page, which brings its own module, never
 * evaluates them (they need Node).
 */
async function builtDatapath(): Promise<WebAssembly.Module> {
  if (!built) {
    const [{ readFileSync }, { DATAPATH_WASM }] = await Promise.all([import('node:fs'), import('../common/paths.js')]);
    built = await WebAssembly.compile(readFileSync(DATAPATH_WASM));
  }
  return built;
}

export interface MapSizes {
  services: number;
  backends: number;
  revNat: number;
  /** Maglev lookup table size M (entries per table). */
  maglevM: number;
  maglevTables: number;
  /** Highest service id (ARRAY maps are indexed by it). */
  serviceIds: number;
  members: number;
  sourceRanges: number;
  nodeIps: number;
  services6: number;
  revNat6: number;
  sourceRanges6: number;
  nodeIps6: number;
  /** Known service cluster IP ranges per family. */
  serviceRanges: number;
  serviceRanges6: number;
  /** Frontend and backend endpoints and addresses, for sharding (datapath/steer.ts). */
  steer: number;
  /** Conntrack entries; the NAT and affinity maps are sized alike (one entry per flow or client at most). */
  conntrack: number;
}

/** One instance of the datapath with its own maps. */
export class Datapath {
  private scratch = 0;
  private scratchSize = 0;
  private readonly created = new Map<string, { spec: MapSpec; keySize: number; valueSize: number; maxEntries: number }>();

  private constructor(readonly exports: DatapathExports) {}

  /** An instance of `module` (the playground's, fetched with its page), by default of build/datapath.wasm. */
  static async load(module?: WebAssembly.Module): Promise<Datapath> {
    const instance = await instantiate<DatapathExports>(module ?? (await builtDatapath()), {});
    return new Datapath(instance.exports as unknown as DatapathExports);
  }

  /** A constant the datapath exports (layout offsets, codes). */
  constant(name: string): number {
    const g = this.exports[name] as WebAssembly.Global | undefined;
    if (!(g instanceof WebAssembly.Global)) throw new Error(`datapath exports no constant ${name}`);
    return Number(g.value);
  }

  get memory(): ArrayBuffer {
    return this.exports.memory.buffer;
  }

  /** BPF_MAP_CREATE for one of the datapath's maps, then scratch room for its keys and values. */
  createMap(name: MapName, maxEntries: number, valueSize?: number): void {
    const spec: MapSpec = MAPS[name];
    valueSize ??= spec.value?.size ?? 0;
    const rc = this.exports.map_create(spec.id, spec.type, spec.key.size, valueSize, maxEntries);
    if (rc !== 0) throw new MapError(spec.name, 'create', -rc, `max_entries ${maxEntries}, value size ${valueSize}`);
    this.created.set(name, { spec, keySize: spec.key.size, valueSize, maxEntries });
    this.ensureScratch(2 * (spec.key.size + valueSize) + 16);
  }

  /** Creates every map, sized for a compiled state. */
  createMaps(sizes: MapSizes): void {
    this.createMap('config', 1);
    this.createMap('lb4Services', Math.max(1, sizes.services));
    this.createMap('lb4Backends', Math.max(1, sizes.backends));
    this.createMap('lb4Revnat', Math.max(1, sizes.revNat));
    this.createMap('maglev', Math.max(1, sizes.maglevTables), sizes.maglevM * 4);
    this.createMap('ct4', Math.max(2, sizes.conntrack));
    this.createMap('metrics', 64 << 3);
    this.createMap('serviceStats', sizes.serviceIds + 1);
    this.createMap('backendStats', sizes.backends + 1);
    this.createMap('lbMembers', Math.max(1, sizes.members));
    this.createMap('lb4Affinity', Math.max(1, sizes.conntrack >> 1));
    this.createMap('snat4', Math.max(1, sizes.conntrack >> 1));
    this.createMap('lb4SourceRanges', Math.max(1, sizes.sourceRanges));
    this.createMap('nodeIps4', Math.max(1, sizes.nodeIps));
    this.createMap('frag4', Math.max(64, sizes.conntrack >> 2));
    // IPv6 twins; the per-flow ones a quarter of the IPv4 size, as most traffic is still IPv4.
    const flows6 = Math.max(64, sizes.conntrack >> 2);
    this.createMap('lb6Services', Math.max(1, sizes.services6));
    this.createMap('lb6Backends', Math.max(1, sizes.backends));
    this.createMap('lb6Revnat', Math.max(1, sizes.revNat6));
    this.createMap('ct6', flows6);
    this.createMap('snat6', Math.max(1, flows6 >> 1));
    this.createMap('lb6Affinity', Math.max(1, flows6 >> 1));
    this.createMap('lb6SourceRanges', Math.max(1, sizes.sourceRanges6));
    this.createMap('nodeIps6', Math.max(1, sizes.nodeIps6));
    this.createMap('frag6', Math.max(64, flows6 >> 2));
    this.createMap('steer', Math.max(1, sizes.steer));
    this.createMap('rewrites', REWRITE_ENTRIES);
    this.createMap('conformance', Object.keys(CONFORM).length);
    this.createMap('serviceRanges4', Math.max(1, sizes.serviceRanges));
    this.createMap('serviceRanges6', Math.max(1, sizes.serviceRanges6));
    this.createMap('flowChanges', FLOW_CHANGES.length + 1);
  }

  /** Room in linear memory to pass keys and values to the map API (reserved once per size increase). */
  private ensureScratch(bytes: number): void {
    if (bytes <= this.scratchSize) return;
    const addr = this.exports.memory_reserve(bytes);
    if (addr === 0) throw new MapError('scratch', 'reserve', 12);
    this.scratch = addr;
    this.scratchSize = bytes;
  }

  /** The bpf(2) map API on one map. */
  map(name: MapName): BpfMap {
    const m = this.created.get(name);
    if (!m) throw new Error(`map ${name} has not been created`);
    return new BpfMap(this, m.spec, m.keySize, m.valueSize, m.maxEntries);
  }

  private batchArea?: { cursor: number; keys: number; values: number; bytes: number };

  /** Entries one BPF_MAP_LOOKUP_BATCH call copies. */
  private static readonly BATCH_LOOKUP_ENTRIES = 1024;

  /** @internal room for one BPF_MAP_LOOKUP_BATCH call's keys and values (reserved once per size increase). */
  batchLookupArea(keySize: number, valueSize: number): { cursor: number; keys: number; values: number; entries: number } {
    const entries = Datapath.BATCH_LOOKUP_ENTRIES;
    const keyBytes = (entries * keySize + 7) & ~7;
    const bytes = 8 + keyBytes + entries * valueSize;
    if (!this.batchArea || this.batchArea.bytes < bytes) {
      const cursor = this.reserve(bytes);
      this.batchArea = { cursor, keys: cursor + 8, values: cursor + 8 + keyBytes, bytes };
    }
    const { cursor, keys } = this.batchArea;
    return { cursor, keys, values: keys + keyBytes, entries };
  }

  private censusOut = 0;

  /**
   * The conntrack maps' live flows at `now` (nanoseconds of the capture's
   * clock), and of them the masqueraded ones (masquerade ports in use): the
   * datapath walks its own maps (datapath/census.ts), one crossing.
   */
  census(now: bigint): { flows: number; masqueraded: number } {
    if (this.censusOut === 0) this.censusOut = this.reserve(8);
    this.exports.ct_census(now, this.censusOut);
    const words = new Uint32Array(this.memory, this.censusOut, 2);
    return { flows: words[0], masqueraded: words[1] };
  }

  /** @internal scratch addresses for one key and one value. */
  scratchFor(keySize: number): { key: number; value: number } {
    return { key: this.scratch, value: this.scratch + ((keySize + 7) & ~7) };
  }

  /** Reserves a trace ring of `records` records and hands it to the program; returns its address. */
  enableTrace(records: number): number {
    const base = this.exports.memory_reserve(records * TRACE_RECORD.size);
    if (base === 0) throw new MapError('trace', 'reserve', 12);
    this.traceRing = { base, records };
    this.exports.trace_configure(base, records);
    return base;
  }

  /** The raw trace records written since the last reset, and a reset for the next batch. */
  takeTrace(): Uint8Array[] {
    if (!this.traceRing) return [];
    const n = this.exports.trace_count();
    const mem = new Uint8Array(this.memory);
    const out: Uint8Array[] = [];
    for (let i = 0; i < n; i++) {
      const at = this.traceRing.base + i * TRACE_RECORD.size;
      out.push(mem.slice(at, at + TRACE_RECORD.size));
    }
    this.exports.trace_configure(this.traceRing.base, this.traceRing.records);
    return out;
  }

  private traceRing?: { base: number; records: number };

  /** Reserves a batch area for up to `maxFrames` frames and `dataBytes` of frame data. */
  createBatch(maxFrames: number, dataBytes: number): Batch {
    const descBytes = maxFrames * FRAME_DESC.size;
    const base = this.reserve(descBytes + dataBytes);
    return new Batch(this, base, maxFrames, base + descBytes, dataBytes);
  }

  /** Reserves `bytes` of linear memory for the life of the instance; returns the address. */
  reserve(bytes: number): number {
    const base = this.exports.memory_reserve(bytes);
    if (base === 0) throw new MapError('memory', 'reserve', 12, `${bytes} bytes`);
    return base;
  }
}

/** The bpf(2) operations on one map, in terms of raw key and value bytes or decoded structs. */
export class BpfMap {
  constructor(
    private readonly dp: Datapath,
    readonly spec: MapSpec,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
  ) {}

  private bytes(): Uint8Array {
    return new Uint8Array(this.dp.memory);
  }

  /** BPF_MAP_LOOKUP_ELEM: the value, or undefined. Does not refresh LRU recency. */
  lookupRaw(key: Uint8Array): Uint8Array | undefined {
    const s = this.dp.scratchFor(this.keySize);
    this.bytes().set(key.subarray(0, this.keySize), s.key);
    const rc = this.dp.exports.map_lookup(this.spec.id, s.key, s.value);
    if (rc === -2) return undefined;
    if (rc !== 0) throw new MapError(this.spec.name, 'lookup', -rc);
    return this.bytes().slice(s.value, s.value + this.valueSize);
  }

  /** BPF_MAP_UPDATE_ELEM with BPF_ANY, BPF_NOEXIST or BPF_EXIST; throws MapError (E2BIG when full). */
  updateRaw(key: Uint8Array, value: Uint8Array, flags = BPF_ANY): void {
    if (key.length !== this.keySize || value.length !== this.valueSize) {
      throw new Error(`map ${this.spec.name}: key/value must be ${this.keySize}/${this.valueSize} bytes`);
    }
    const s = this.dp.scratchFor(this.keySize);
    const mem = this.bytes();
    mem.set(key, s.key);
    mem.set(value, s.value);
    const rc = this.dp.exports.map_update(this.spec.id, s.key, s.value, flags);
    if (rc !== 0) {
      throw new MapError(this.spec.name, 'update', -rc, rc === -7 ? `map is full: max_entries ${this.maxEntries}` : '');
    }
  }

  /** BPF_MAP_DELETE_ELEM: false when the key was not there. */
  deleteRaw(key: Uint8Array): boolean {
    const s = this.dp.scratchFor(this.keySize);
    this.bytes().set(key, s.key);
    const rc = this.dp.exports.map_delete(this.spec.id, s.key);
    if (rc === -2) return false;
    if (rc !== 0) throw new MapError(this.spec.name, 'delete', -rc);
    return true;
  }

  /** BPF_MAP_GET_NEXT_KEY walk: every key, in the map's own order. Safe to use other operations in between. */
  *keysRaw(): Generator<Uint8Array> {
    let key: Uint8Array | undefined;
    for (;;) {
      const s = this.dp.scratchFor(this.keySize);
      if (key) this.bytes().set(key, s.key);
      const rc = this.dp.exports.map_get_next_key(this.spec.id, key ? s.key : 0, s.value);
      if (rc === -2) return;
      if (rc !== 0) throw new MapError(this.spec.name, 'get_next_key', -rc);
      key = this.bytes().slice(s.value, s.value + this.keySize);
      yield key;
    }
  }

  /**
   * Every entry of a hash map, through BPF_MAP_LOOKUP_BATCH: `visit` gets each
   * key and value as views of linear memory, valid only during the call (copy
   * what is kept). The map must not change during the walk.
   */
  scanRaw(visit: (key: Uint8Array, value: Uint8Array) => void): void {
    const area = this.dp.batchLookupArea(this.keySize, this.valueSize);
    const mem = new Uint8Array(this.dp.memory);
    mem.fill(0, area.cursor, area.cursor + 8);
    for (;;) {
      const n = this.dp.exports.map_lookup_batch(this.spec.id, area.cursor, area.keys, area.values, area.entries);
      if (n < 0) throw new MapError(this.spec.name, 'lookup_batch', -n);
      const bytes = this.bytes();
      for (let i = 0; i < n; i++) {
        const key = bytes.subarray(area.keys + i * this.keySize, area.keys + (i + 1) * this.keySize);
        visit(key, bytes.subarray(area.values + i * this.valueSize, area.values + (i + 1) * this.valueSize));
      }
      if (n < area.entries) return;
    }
  }

  /** Entries in use (max_entries for arrays). */
  count(): number {
    return this.dp.exports.map_count(this.spec.id);
  }

  lookup(key: StructValue): StructValue | undefined {
    const raw = this.lookupRaw(encode(this.spec.key, key));
    return raw && this.spec.value ? decode(this.spec.value, raw) : undefined;
  }

  update(key: StructValue, value: StructValue, flags = BPF_ANY): void {
    if (!this.spec.value) throw new Error(`map ${this.spec.name} has no struct value; use updateRaw`);
    this.updateRaw(encode(this.spec.key, key), encode(this.spec.value, value), flags);
  }

  delete(key: StructValue): boolean {
    return this.deleteRaw(encode(this.spec.key, key));
  }

  *entries(): Generator<[StructValue, StructValue]> {
    for (const key of this.keysRaw()) {
      const value = this.lookupRaw(key);
      if (value && this.spec.value) yield [decode(this.spec.key, key), decode(this.spec.value, value)];
    }
  }

  /** An ARRAY map's value at `index`, decoded. */
  at(index: number): StructValue | undefined {
    return this.lookup({ value: index });
  }
}

export function u32Key(n: number): Uint8Array {
  return encode(U32_KEY, { value: n });
}

const DIRECTION_FLAGS: Record<Direction | 'unknown', number> = { inbound: DESC_F_INBOUND, outbound: DESC_F_OUTBOUND, unknown: 0 };

const XDP_TX = VERDICTS.indexOf('TX');
const XDP_REDIRECT = VERDICTS.indexOf('REDIRECT');

/**
 * Frame area bytes a frame gets at least: room to turn it into an ICMP error
 * (the datapath's FRAME_MIN_CAPACITY; test/layout.test.ts checks they agree).
 */
export const MIN_FRAME_CAPACITY = 1304;

/** pcap_walk's state: bytes consumed, frame area used, why it stopped (datapath/layout.ts WALK_*). */
const WALK_STATE_BYTES = 12;

/** pcap_walk's stop time meaning none: u64 max. */
const NO_STOP_TIME = 2n ** 64n - 1n;

/** Each descriptor flag of a flow change and its name. */
const FLOW_CHANGE_BY_FLAG = FLOW_CHANGES.map((kind) => [FLOW_CHANGE_FLAGS[kind], kind] as const);

/**
 * A batch of frames in linear memory. `add` copies one frame in, `walk` has
 * the datapath take whole pcap records from a chunk in linear memory; `run`
 * processes every frame added since the last `clear` in one call.
 */
export class Batch {
  count = 0;
  private dataUsed = 0;
  private buffer!: ArrayBuffer;
  private view!: DataView;
  private mem!: Uint8Array;
  private readonly walkState: number;

  constructor(
    private readonly dp: Datapath,
    readonly descBase: number,
    readonly maxFrames: number,
    readonly dataBase: number,
    readonly dataBytes: number,
  ) {
    this.walkState = dp.reserve(WALK_STATE_BYTES);
    this.refresh();
  }

  /** Views of linear memory, made again when memory grew (which detaches the old buffer). */
  private refresh(): void {
    if (this.buffer === this.dp.memory) return;
    this.buffer = this.dp.memory;
    this.view = new DataView(this.buffer);
    this.mem = new Uint8Array(this.buffer);
  }

  /** Bytes of frame data a frame of `caplen` captured bytes takes. */
  static footprint(caplen: number): number {
    return (Math.max(caplen, MIN_FRAME_CAPACITY) + 7) & ~7;
  }

  /**
   * False when the batch has no room left for this frame: run it, clear it,
   * add again. `direction` is what the capture says of the frame (pcapng).
   */
  add(data: Uint8Array, wireLen: number, tsSec: number, tsNsec: number, linktype = 1, trace = false, direction?: Direction): boolean {
    const room = Batch.footprint(data.length);
    if (this.count === this.maxFrames || this.dataUsed + room > this.dataBytes) return false;
    this.refresh();
    const addr = this.dataBase + this.dataUsed;
    this.mem.set(data, addr);
    const d = this.descBase + this.count * FRAME_DESC.size;
    const v = this.view;
    v.setUint32(d + 0, addr, true);
    v.setUint32(d + 4, data.length, true);
    v.setUint32(d + 8, wireLen, true);
    v.setUint32(d + 12, room, true);
    v.setUint32(d + 16, tsSec >>> 0, true);
    v.setUint32(d + 20, Math.floor(tsSec / 0x1_0000_0000), true);
    v.setUint32(d + 24, tsNsec, true);
    v.setUint32(d + 28, 0, true);
    v.setUint16(d + 30, (trace ? DESC_F_TRACE : 0) | DIRECTION_FLAGS[direction ?? 'unknown'], true);
    v.setBigUint64(d + 32, 0n, true);
    v.setUint32(d + 40, linktype, true);
    v.setUint32(d + 44, data.length, true);
    this.dataUsed += room;
    this.count++;
    return true;
  }

  /**
   * Has the datapath add the pcap records at chunk[consumed..len) (datapath/capture.ts),
   * up to the first whose time is `stopAtNs` (nanoseconds) or later.
   * Returns how many bytes of the chunk it consumed in all and why it stopped (WALK).
   */
  walk(
    chunk: number,
    len: number,
    consumed: number,
    format: number,
    snaplen: number,
    linktype: number,
    stopAtNs = NO_STOP_TIME,
  ): { consumed: number; stop: number } {
    this.refresh();
    const state = this.walkState;
    this.view.setUint32(state, consumed, true);
    this.view.setUint32(state + 4, this.dataUsed, true);
    this.count = this.dp.exports.pcap_walk(
      chunk,
      len,
      format,
      snaplen,
      linktype,
      this.descBase,
      this.count,
      this.maxFrames,
      this.dataBase,
      this.dataBytes,
      state,
      stopAtNs,
    );
    this.refresh();
    this.dataUsed = this.view.getUint32(state + 4, true);
    return { consumed: this.view.getUint32(state, true), stop: this.view.getUint32(state + 8, true) };
  }

  run(): void {
    const rc = this.dp.exports.process_batch(this.descBase, this.count);
    if (rc !== 0) throw new MapError('datapath', 'process_batch', -rc, 'maps missing or not configured');
    this.refresh();
  }

  clear(): void {
    this.count = 0;
    this.dataUsed = 0;
  }

  private at(i: number): number {
    return this.descBase + i * FRAME_DESC.size;
  }

  verdict(i: number): number {
    return this.mem[this.at(i) + 28];
  }

  reason(i: number): number {
    return this.mem[this.at(i) + 29];
  }

  flags(i: number): number {
    return this.view.getUint16(this.at(i) + 30, true);
  }

  /** What a cluster change did to the frame's flow, if anything. */
  flowChange(i: number): FlowChange | undefined {
    const flags = this.flags(i);
    for (const [flag, kind] of FLOW_CHANGE_BY_FLAG) if (flags & flag) return kind;
    return undefined;
  }

  serviceId(i: number): number {
    return this.view.getUint32(this.at(i) + 32, true);
  }

  backendId(i: number): number {
    return this.view.getUint32(this.at(i) + 36, true);
  }

  tsSec(i: number): number {
    return this.view.getUint32(this.at(i) + 16, true) + this.view.getUint32(this.at(i) + 20, true) * 0x1_0000_0000;
  }

  tsNsec(i: number): number {
    return this.view.getUint32(this.at(i) + 24, true);
  }

  /** The frame's original length on the wire, as the capture said. */
  wireLen(i: number): number {
    return this.view.getUint32(this.at(i) + 8, true);
  }

  /** Captured bytes of the frame as it came in. */
  caplen(i: number): number {
    return this.view.getUint32(this.at(i) + 44, true);
  }

  linktype(i: number): number {
    return this.view.getUint32(this.at(i) + 40, true);
  }

  /** Whether this instance sent the frame out (TX or REDIRECT): it belongs in the output capture. */
  sent(i: number): boolean {
    const v = this.verdict(i);
    return (v === XDP_TX || v === XDP_REDIRECT) && (this.flags(i) & DESC_F_OTHER_SHARD) === 0;
  }

  /** Where the frame is in linear memory (`memoryBytes`), and its length: a frame read in place, with no view made per frame. */
  frameOffset(i: number): number {
    return this.view.getUint32(this.at(i), true);
  }

  frameLength(i: number): number {
    return this.view.getUint32(this.at(i) + 4, true);
  }

  /** Linear memory as bytes (valid until the next batch). */
  get memoryBytes(): Uint8Array {
    return this.mem;
  }

  /** The frame as the datapath left it (a view into linear memory, valid until the next batch). */
  frame(i: number): Uint8Array {
    const d = this.at(i);
    const addr = this.view.getUint32(d, true);
    return this.mem.subarray(addr, addr + this.view.getUint32(d + 4, true));
  }
}
