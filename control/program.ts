/**
 * Loading a compiled state into a datapath instance: maps created with sizes
 * that fit it, then filled through the map API only.
 */
import type { Compiled } from './compiler.js';
import { Datapath, u32Key } from './datapath.js';
import { BPF_NOEXIST, CONFIG, encode } from './layout.js';

/** Default size of the conntrack LRU map (two entries per flow). */
export const DEFAULT_CT_ENTRIES = 1 << 18;

export interface ProgramOptions {
  ctEntries?: number;
}

export async function loadProgram(compiled: Compiled, opts: ProgramOptions = {}): Promise<Datapath> {
  const dp = await Datapath.load();
  const e = compiled.entries;
  dp.createMaps({
    services: e.lb4Services.length,
    backends: e.lb4Backends.length,
    revNat: e.lb4Revnat.length,
    maglevM: compiled.maglevTableSize,
    maglevTables: e.maglev.length,
    serviceIds: compiled.services.length,
    members: e.lbMembers.length,
    sourceRanges: e.lb4SourceRanges.length,
    nodeIps: e.nodeIps4.length,
    conntrack: opts.ctEntries ?? DEFAULT_CT_ENTRIES,
  });
  dp.map('config').updateRaw(u32Key(0), encode(CONFIG, e.config));
  const services = dp.map('lb4Services');
  for (const { key, value } of e.lb4Services) services.update(key, value, BPF_NOEXIST);
  const backends = dp.map('lb4Backends');
  for (const { id, value } of e.lb4Backends) backends.update({ value: id }, value, BPF_NOEXIST);
  const revnat = dp.map('lb4Revnat');
  for (const { index, value } of e.lb4Revnat) revnat.update({ value: index }, value, BPF_NOEXIST);
  const maglev = dp.map('maglev');
  for (const { table, slots } of e.maglev) {
    maglev.updateRaw(u32Key(table), new Uint8Array(slots.buffer, slots.byteOffset, slots.byteLength), BPF_NOEXIST);
  }
  const members = dp.map('lbMembers');
  for (const key of e.lbMembers) members.update(key, PRESENT, BPF_NOEXIST);
  const ranges = dp.map('lb4SourceRanges');
  for (const key of e.lb4SourceRanges) ranges.update(key, PRESENT);
  const nodeIps = dp.map('nodeIps4');
  for (const address of e.nodeIps4) nodeIps.update({ address }, PRESENT);
  return dp;
}

const PRESENT = { present: 1 };
