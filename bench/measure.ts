/**
 * Turning timings into the report's scenario results: benchmark.js for
 * in-process operations, plain repeated wall-clock runs for child processes.
 */
import Benchmark from 'benchmark';

export type Impl = 'wasm' | 'ts';

export interface ScenarioResult {
  name: string;
  impl: Impl;
  mpps: number;
  nsPerPacket: number;
  /** Relative margin of error of the mean, percent (95% confidence). */
  rme: number;
}

export interface Timing {
  minSamples: number;
  /** Seconds benchmark.js may spend sampling. */
  maxTime: number;
}

/** The WASM datapath is fast and noisy: many samples. The model is ~20x slower: few, still enough for an rme. */
export const WASM_TIMING: Timing = { minSamples: 20, maxTime: 3 };
export const TS_TIMING: Timing = { minSamples: 5, maxTime: 2 };

function result(name: string, impl: Impl, secondsPerPacket: number, rme: number): ScenarioResult {
  return { name, impl, mpps: 1e-6 / secondsPerPacket, nsPerPacket: 1e9 * secondsPerPacket, rme };
}

/** benchmark.js on `op`, which processes `packetsPerOp` packets. */
export function measure(name: string, impl: Impl, packetsPerOp: number, op: () => void, timing: Timing): ScenarioResult {
  const bench = new Benchmark(`${name} ${impl}`, op, timing);
  bench.run();
  if (bench.error) throw bench.error;
  return result(name, impl, bench.stats.mean / packetsPerOp, bench.stats.rme);
}

/** Two-sided 95% Student t quantiles for 1..10 degrees of freedom; 1.96 beyond. */
const T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];

/** The result of repeated whole runs of `packets` packets each: mean time, rme as benchmark.js computes it (0 for one run). */
export function fromRuns(name: string, impl: Impl, packets: number, seconds: number[]): ScenarioResult {
  const n = seconds.length;
  const mean = seconds.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? seconds.reduce((a, s) => a + (s - mean) ** 2, 0) / (n - 1) : 0;
  const rme = n > 1 ? (100 * (T95[n - 2] ?? 1.96) * Math.sqrt(variance / n)) / mean : 0;
  return result(name, impl, mean / packets, rme);
}

/** Wall-clock seconds of `fn`. */
export function seconds(fn: () => void): number {
  const started = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

export function formatResult(r: ScenarioResult): string {
  const ns = r.nsPerPacket >= 10_000 ? `${(r.nsPerPacket / 1000).toFixed(1)} µs` : `${r.nsPerPacket.toFixed(0)} ns`;
  return `${r.name.padEnd(16)} ${r.impl.padEnd(4)} ${r.mpps.toFixed(2).padStart(7)} Mpps ${ns.padStart(9)}/packet ±${r.rme.toFixed(1)}%`;
}
