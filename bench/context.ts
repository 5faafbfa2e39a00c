/**
 * What the scenarios share: a scratch directory, the user's flags, and the
 * mixed-traffic cluster and trace, made once for `mixed` and `replay-e2e`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Compiled } from '../control/compile/compiler.js';
import { compileMixCluster, generateMix, mixClusterManifests, type MixTrace } from '../traces/synth/bench-traffic.js';

/** Packets of the mixed trace; `replay-e2e` repeats it to make its capture. */
const MIX_PACKETS = 1 << 16;

export interface MixFixture {
  /** The manifests, for `svcpath replay --cluster`. */
  clusterPath: string;
  compiled: Compiled;
  trace: MixTrace;
}

export class BenchContext {
  private mix?: MixFixture;

  constructor(
    /** Removed at the end of the run. */
    readonly scratch: string,
    /** --keep: leave the big generated captures in the temp directory for the next run. */
    readonly keep: boolean,
  ) {}

  mixFixture(): MixFixture {
    if (!this.mix) {
      const clusterPath = join(this.scratch, 'mix-cluster.yaml');
      writeFileSync(clusterPath, mixClusterManifests());
      const compiled = compileMixCluster(clusterPath);
      this.mix = { clusterPath, compiled, trace: generateMix(compiled, { seed: 1, packets: MIX_PACKETS }) };
    }
    return this.mix;
  }
}
