/**
 * compile: the control plane's cost of a large cluster, from the resolved
 * state to every map entry, for 10k Services x 10 endpoints with the default
 * Maglev table size.
 */
import { compile } from '../control/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../control/maglev.js';
import { syntheticCluster, syntheticCompileOptions } from './synthetic.js';

const SERVICES = 10_000;
const ENDPOINTS_PER_SERVICE = 10;
const RUNS = 3;

export interface CompileReport {
  services: number;
  endpointsPerService: number;
  /** Best of three. */
  ms: number;
}

/** The best of `runs` wall-clock times of `fn`, in milliseconds. */
function bestMs(runs: number, fn: () => void): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    fn();
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

export function compileReport(): CompileReport {
  const { state, resolved } = syntheticCluster(SERVICES, ENDPOINTS_PER_SERVICE);
  const ms = bestMs(RUNS, () => compile(state, resolved, syntheticCompileOptions(DEFAULT_MAGLEV_TABLE_SIZE)));
  console.log(`compile: ${SERVICES} Services x ${ENDPOINTS_PER_SERVICE} endpoints in ${ms.toFixed(0)} ms (best of ${RUNS})`);
  return { services: SERVICES, endpointsPerService: ENDPOINTS_PER_SERVICE, ms };
}
