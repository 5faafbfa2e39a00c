/**
 * compile: the control plane's cost for a large cluster, 10k Services x 10
 * endpoints with the default Maglev table size: compiling the whole state to
 * map entries, building the Maglev tables the compile leaves to their first
 * reader, loading it all into the maps, and applying one changed
 * EndpointSlice to the loaded maps.
 */
import { compile, type Compiled } from '../control/compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/compile/maglev.js';
import type { EndpointSlice } from '../control/cluster/state.js';
import { loadProgram } from '../control/runtime/loader.js';
import { applyEndpointSliceUpdate, trackProgram } from '../control/runtime/update.js';
import { syntheticCluster, syntheticCompileOptions, syntheticSlice } from './synthetic.js';

const SERVICES = 10_000;
const ENDPOINTS_PER_SERVICE = 10;
const COMPILE_RUNS = 3;
/** Each to another Service, spread over all of them. */
const UPDATES = 25;

export interface CompileReport {
  services: number;
  endpointsPerService: number;
  /** Best of three; the Maglev tables are not built yet (control/compile/maglev.ts lazyTable). */
  ms: number;
  /** Building every Maglev table of the compiled state, as the load asks for them; best of three. */
  tablesMs: number;
  /** loadProgram with the tables built: creating the maps and writing every entry; once. */
  loadMs: number;
  /** Median of 25 updates, each to another Service's EndpointSlice: one endpoint replaced by a new pod. */
  updateMs: number;
}

function elapsedMs(fn: () => void): number {
  const started = performance.now();
  fn();
  return performance.now() - started;
}

/** Service `s`'s slice with its first endpoint replaced: one backend goes, one comes, its Maglev table changes. */
function movedSlice(s: number): EndpointSlice {
  const slice = syntheticSlice(s, ENDPOINTS_PER_SERVICE);
  slice.endpoints[0] = { ...slice.endpoints[0], addresses: [`10.160.${s >> 8}.${s & 255}`] };
  return slice;
}

export async function compileReport(): Promise<CompileReport> {
  const { state, resolved } = syntheticCluster(SERVICES, ENDPOINTS_PER_SERVICE);
  const opts = syntheticCompileOptions(DEFAULT_MAGLEV_TABLE_SIZE);
  let compiled!: Compiled;
  let slots = 0;
  // Each run compiles, then builds the tables as the loader's reads would: both best of three.
  const runs = Array.from({ length: COMPILE_RUNS }, () => {
    const compileMs = elapsedMs(() => {
      compiled = compile(state, resolved, opts);
    });
    slots = 0;
    const tablesMs = elapsedMs(() => {
      for (const table of compiled.entries.maglev) slots += table.slots.length;
    });
    return { compileMs, tablesMs };
  });
  const ms = Math.min(...runs.map((r) => r.compileMs));
  const tablesMs = Math.min(...runs.map((r) => r.tablesMs));
  console.log(`compile: ${SERVICES} Services x ${ENDPOINTS_PER_SERVICE} endpoints in ${ms.toFixed(0)} ms (best of ${COMPILE_RUNS})`);
  console.log(
    `compile: its ${compiled.entries.maglev.length} Maglev tables (${slots} slots) built in ${tablesMs.toFixed(0)} ms (best of ${COMPILE_RUNS})`,
  );

  // Room for the new pods; the moved endpoints' old backends free their ids only once they are gone.
  const started = performance.now();
  const dp = await loadProgram(compiled, { room: { backends: UPDATES, tables: 0, members: UPDATES } });
  const loadMs = performance.now() - started;
  console.log(
    `compile: loaded into the maps in ${loadMs.toFixed(0)} ms; compile, tables and load: ${(ms + tablesMs + loadMs).toFixed(0)} ms`,
  );
  const live = trackProgram(dp, { state, resolved, compiled, opts });
  const updates = Array.from({ length: UPDATES }, (_, i) => {
    const slice = movedSlice(Math.floor((i * SERVICES) / UPDATES));
    return elapsedMs(() => applyEndpointSliceUpdate(live, { op: 'upsert', slice }));
  }).sort((a, b) => a - b);
  const updateMs = updates[UPDATES >> 1];
  console.log(
    `compile: one EndpointSlice update applied to the loaded maps in ${updateMs.toFixed(2)} ms (median of ${UPDATES}; ${updates[0].toFixed(2)}-${updates[UPDATES - 1].toFixed(2)} ms)`,
  );
  return { services: SERVICES, endpointsPerService: ENDPOINTS_PER_SERVICE, ms, tablesMs, loadMs, updateMs };
}
