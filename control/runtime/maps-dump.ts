/**
 * The datapath's maps as `bpftool map dump` would show them: every entry's
 * key and value decoded through the layouts, read through the map API only.
 * Maglev tables are summarised (slots per backend) rather than listed slot
 * by slot; ARRAY maps list their non-zero entries.
 */
import type { Datapath } from './datapath.js';
import { BE_F_GONE, BE_F_LOCAL, CFG_F, MAPS, SVC_F, decode, type MapName, type StructValue, type MapSpec } from '../compile/layout.js';

export interface MapDump {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** Entries in use (for ARRAY maps: max_entries). */
  inUse: number;
  entries: Array<{ key: StructValue; value: StructValue }>;
  /** ARRAY entries that are all zero, not listed. */
  zeroEntries?: number;
}

const TYPE_NAMES: Record<number, string> = { 1: 'hash', 2: 'array', 9: 'lru_hash', 11: 'lpm_trie' };

/** Flag bits spelled out, so a dump reads without the layout at hand. */
function flagNames(bits: number, names: Record<string, number>): string {
  const set = Object.entries(names)
    .filter(([, bit]) => (bits & bit) !== 0)
    .map(([name]) => name);
  return set.length ? set.join('|') : '0';
}

function describeValue(map: MapName, value: StructValue): StructValue {
  if (map === 'config') return { ...value, flags: flagNames(value.flags as number, CFG_F) };
  if (map === 'lb4Services') return { ...value, flags: flagNames(value.flags as number, SVC_F) };
  if (map === 'lb4Backends') return { ...value, flags: flagNames(value.flags as number, { LOCAL: BE_F_LOCAL, GONE: BE_F_GONE }) };
  return value;
}

/** Slot counts per backend id of a Maglev table. */
function maglevSummary(slots: Uint8Array): StructValue {
  const ids = new Uint32Array(slots.buffer, slots.byteOffset, slots.byteLength >> 2);
  const counts = new Map<number, number>();
  for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
  const out: StructValue = { slots: ids.length };
  for (const [id, n] of [...counts].sort((a, b) => a[0] - b[0])) out[`backend ${id}`] = n;
  return out;
}

export function dumpMaps(dp: Datapath): MapDump[] {
  return (Object.keys(MAPS) as MapName[]).map((name) => {
    const m = dp.map(name);
    const spec: MapSpec = MAPS[name];
    const dump: MapDump = {
      name: spec.name,
      type: TYPE_NAMES[spec.type],
      keySize: m.keySize,
      valueSize: m.valueSize,
      maxEntries: m.maxEntries,
      inUse: m.count(),
      entries: [],
    };
    let zero = 0;
    for (const rawKey of m.keysRaw()) {
      const rawValue = m.lookupRaw(rawKey)!;
      if (spec.type === 2 && rawValue.every((b) => b === 0)) {
        zero++;
        continue;
      }
      const key = decode(spec.key, rawKey);
      const value = spec.value ? describeValue(name, decode(spec.value, rawValue)) : maglevSummary(rawValue);
      dump.entries.push({ key, value });
    }
    if (spec.type === 2) dump.zeroEntries = zero;
    return dump;
  });
}

function inline(v: StructValue): string {
  const fields = Object.entries(v);
  // A bare u32 key (an id or index) reads best as the number alone.
  if (fields.length === 1 && fields[0][0] === 'value') return String(fields[0][1]);
  return fields.map(([k, x]) => `${k} ${x}`).join('  ');
}

export function formatMapDump(dumps: MapDump[]): string {
  const lines: string[] = [];
  for (const d of dumps) {
    lines.push(`${d.name}: ${d.type}  key ${d.keySize}B  value ${d.valueSize}B  max_entries ${d.maxEntries}  in use ${d.inUse}`);
    for (const e of d.entries) lines.push(`  key: ${inline(e.key)}`, `    value: ${inline(e.value)}`);
    if (d.zeroEntries) lines.push(`  (${d.zeroEntries} zero entries not shown)`);
    lines.push('');
  }
  return lines.join('\n').trimEnd();
}
