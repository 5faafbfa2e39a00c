// Batch lookups (datapath/prewarm.ts) start a window's conntrack lookups
// ahead once conntrack holds 65536 entries or more. They only read: every
// frame must still be decided as the reference model decides it, and frames
// the warming pass cannot parse (cut short, bad header lengths) as well.
import { describe, expect, it } from 'vitest';
import { Batch } from '../control/runtime/datapath.js';
import { Mulberry32 } from '../control/common/random.js';
import { LINKTYPES } from '../control/compile/layout.js';
import { ReferenceDatapath } from '../model/reference-datapath.js';
import { decodeFrame } from '../traces/frames.js';
import { endpoints, makeService, program, resolvedService, runFrames, tcp } from './helpers.js';

const VIP = '10.96.0.10';
const FLOWS = 34_000; // 68,000 conntrack entries: past the 65,536 where warming starts
const BATCH = 4096;
const T0 = 1_700_000_000;

const client = (i: number) => `10.1.${(i >> 8) & 255}.${i & 255}`;
const clientPort = (i: number) => 20_000 + (i >> 16);

describe('batch lookups', () => {
  it('leave every decision as the model makes it once conntrack is big enough to warm', async () => {
    const svc = makeService('default', 'web', VIP, [{ port: 80 }]);
    const eps = endpoints(Array.from({ length: 4 }, (_, i): [string, number] => [`10.244.${i}.5`, 8080]));
    const { dp, compiled } = await program([resolvedService(svc, [eps])], { ctEntries: 1 << 17 });
    const model = new ReferenceDatapath(compiled);
    const batch = dp.createBatch(BATCH, BATCH * Batch.footprint(128));
    let clock = 0;
    // The model takes only well-formed frames: the others are decided as a datapath too small to warm decides them.
    const { dp: cold } = await program([resolvedService(svc, [eps])]);
    const both = (frames: Uint8Array[], odd: (k: number) => boolean = () => false) => {
      const times = frames.map(() => T0 + ++clock * 1e-6);
      const results = runFrames(dp, frames, times, batch);
      results.forEach((r, k) => {
        if (odd(k)) {
          const [c] = runFrames(cold, [frames[k]], [times[k]]);
          expect([r.verdict, r.reason, Buffer.from(r.out).toString('hex')]).toEqual([
            c.verdict,
            c.reason,
            Buffer.from(c.out).toString('hex'),
          ]);
          return;
        }
        const sec = Math.floor(times[k]);
        const m = model.process(frames[k], {
          wireLen: frames[k].length,
          tsSec: sec,
          tsNsec: Math.round((times[k] - sec) * 1e9),
          linktype: LINKTYPES.ETHERNET,
        });
        expect([r.verdict, r.reason, r.serviceId, r.backendId, r.snat], `frame ${k}`).toEqual([
          m.verdict,
          m.reason,
          m.serviceId,
          m.backendId,
          m.snat,
        ]);
        expect(Buffer.from(r.out).equals(Buffer.from(m.out)), `frame ${k}`).toBe(true);
      });
      return results;
    };

    const backendOf: Array<{ ip: string; port: number }> = [];
    for (let first = 0; first < FLOWS; first += BATCH) {
      const ids = Array.from({ length: Math.min(BATCH, FLOWS - first) }, (_, k) => first + k);
      const out = both(ids.map((i) => tcp(client(i), clientPort(i), VIP, 80, ['SYN'])));
      out.forEach((r, k) => {
        const d = decodeFrame(r.out);
        backendOf[ids[k]] = { ip: d.ipv4!.dst, port: d.tcp!.dport };
      });
    }
    expect(dp.map('ct4').count()).toBeGreaterThanOrEqual(1 << 16);

    // Each flow's next packet and its backend's reply, in a shuffled order, with frames warming must skip among them.
    const frames: Uint8Array[] = [];
    const kinds: string[] = [];
    for (let i = 0; i < FLOWS; i++) {
      frames.push(tcp(client(i), clientPort(i), VIP, 80, ['ACK']));
      kinds.push('request');
      frames.push(tcp(backendOf[i].ip, backendOf[i].port, client(i), clientPort(i), ['ACK']));
      kinds.push('reply');
    }
    const rng = new Mulberry32(16);
    for (let i = frames.length - 1; i > 0; i--) {
      const j = rng.int(0, i);
      [frames[i], frames[j]] = [frames[j], frames[i]];
      [kinds[i], kinds[j]] = [kinds[j], kinds[i]];
    }
    const request = tcp(client(1), clientPort(1), VIP, 80, ['ACK']);
    const badIhl = request.slice(0, 40);
    badIhl[14] = 0x4f; // a 60-byte IPv4 header in a 26-byte IP packet
    for (const odd of [request.slice(0, 14), request.slice(0, 33), badIhl]) {
      const at = rng.int(0, frames.length);
      frames.splice(at, 0, odd);
      kinds.splice(at, 0, 'odd');
    }
    const seen = new Map<string, number>();
    for (let first = 0; first < frames.length; first += BATCH) {
      both(frames.slice(first, first + BATCH), (k) => kinds[first + k] === 'odd').forEach((r, k) => {
        const kind = kinds[first + k];
        const decided = `${kind} ${r.reason}`;
        seen.set(decided, (seen.get(decided) ?? 0) + 1);
      });
    }
    expect(seen.get('request SERVICE')).toBe(FLOWS);
    expect(seen.get('reply REPLY')).toBe(FLOWS);
    expect([...seen].filter(([k]) => k.startsWith('odd')).reduce((n, [, c]) => n + c, 0)).toBe(3);
  }, 120_000);
});
