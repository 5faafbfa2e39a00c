/**
 * Loading a compiled state into a datapath instance: maps created with sizes
 * that fit it, then filled through the map API only.
 */
import type { Compiled, FamilyEntries } from './compiler.js';
import { Datapath, u32Key } from './datapath.js';
import { BPF_NOEXIST, CONFIG, encode, type MapName } from './layout.js';

/** Default size of the conntrack LRU map (two entries per flow). */
export const DEFAULT_CT_ENTRIES = 1 << 18;

export interface ProgramOptions {
  ctEntries?: number;
}

export async function loadProgram(compiled: Compiled, opts: ProgramOptions = {}): Promise<Datapath> {
  const dp = await Datapath.load();
  const e = compiled.entries;
  dp.createMaps({
    services: e.v4.services.length,
    backends: compiled.backends.length,
    revNat: e.v4.revnat.length,
    maglevM: compiled.maglevTableSize,
    maglevTables: e.maglev.length,
    serviceIds: compiled.services.length,
    members: e.lbMembers.length,
    sourceRanges: e.v4.sourceRanges.length,
    nodeIps: e.v4.nodeIps.length,
    services6: e.v6.services.length,
    revNat6: e.v6.revnat.length,
    sourceRanges6: e.v6.sourceRanges.length,
    nodeIps6: e.v6.nodeIps.length,
    conntrack: opts.ctEntries ?? DEFAULT_CT_ENTRIES,
  });
  dp.map('config').updateRaw(u32Key(0), encode(CONFIG, e.config));
  const maglev = dp.map('maglev');
  for (const { table, slots } of e.maglev) {
    maglev.updateRaw(u32Key(table), new Uint8Array(slots.buffer, slots.byteOffset, slots.byteLength), BPF_NOEXIST);
  }
  const members = dp.map('lbMembers');
  for (const key of e.lbMembers) members.update(key, PRESENT, BPF_NOEXIST);
  fillFamily(dp, e.v4, { services: 'lb4Services', backends: 'lb4Backends', revnat: 'lb4Revnat', sourceRanges: 'lb4SourceRanges', nodeIps: 'nodeIps4' });
  fillFamily(dp, e.v6, { services: 'lb6Services', backends: 'lb6Backends', revnat: 'lb6Revnat', sourceRanges: 'lb6SourceRanges', nodeIps: 'nodeIps6' });
  return dp;
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
  const nodeIps = dp.map(maps.nodeIps);
  for (const address of e.nodeIps) nodeIps.update({ address }, PRESENT);
}
