// Every real capture of ../shared/corpus through a whole replay: each gets its
// expected outcome — a verdict for every packet, or a stop at the first record
// svcpath cannot take, naming it — and never a crash or an access outside a frame.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/paths.js';
import { replay } from '../control/replay.js';
import { openCapture } from '../traces/pcap.js';
import { verifyChecksums } from '../traces/frames.js';
import { endpoints, makeService, program, resolvedService } from './helpers.js';

const CORPUS = resolve(PROJECT_ROOT, '..', 'shared', 'corpus');

/** Where each file stops, if it does. */
const STOPS: Record<string, RegExp> = {
  'aoe-oobr-1.pcap': /record 1 \(offset 24\): caplen/,
};

/** A fresh datapath with one Service, so that some corpus frames get rewritten too. */
function datapath() {
  const svc = makeService('default', 'dns', '10.96.0.53', [{ name: 'dns', port: 53, protocol: 'UDP' }]);
  return program([resolvedService(svc, [endpoints([['10.244.0.2', 53]])])]);
}

describe('the corpus through a replay', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'svcpath-corpus-'));
  beforeAll(() => {
    if (!existsSync(CORPUS)) throw new Error(`capture corpus not found at ${CORPUS}`);
  });

  const files = existsSync(CORPUS) ? readdirSync(CORPUS).filter((f) => /\.pcap(ng)?$/.test(f)).sort() : [];
  it('has files', () => expect(files.length).toBeGreaterThan(20));

  it.each(files)('%s', async (file) => {
    const { dp, compiled } = await datapath();
    const out = join(tmp, `${file}.out.pcap`);
    const result = replay(join(CORPUS, file), compiled, dp, { out, verdicts: join(tmp, `${file}.jsonl`) });
    const stop = STOPS[file];
    if (stop) {
      expect(result.stoppedAt?.error).toMatch(stop);
    } else {
      expect(result.stoppedAt).toBeUndefined();
      let records = 0;
      for (const _ of openCapture(join(CORPUS, file)).records()) records++;
      expect(result.packets).toBe(records);
    }
    // Every frame svcpath sends out carries the checksums it came in with, or ones it fixed up correctly.
    for (const rec of openCapture(out).records()) {
      const sums = verifyChecksums(rec.data);
      expect(sums.ipv4 === undefined || sums.ipv4 === true || sums.ipv4 === 'truncated').toBe(true);
    }
  });
});
