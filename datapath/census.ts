// A census of the conntrack maps at one moment of the capture's clock: the
// flows still live, and of them the masqueraded ones (each holds a
// masquerade port). The control plane asks for it between batches, at the
// times its report samples (control/runtime/report-data.ts), as an agent
// runs a BPF iterator over a map: the walk and the liveness rule are the
// datapath's own (conntrack.ts ctIsLive), so the numbers are the ones the
// next packet would see.

import { CT_DIR_ORIGINAL, CT_F_FLUSHED, CT_F_SNAT, CT_FLAGS } from './layout';
import { ctIsLive } from './conntrack';
import { flowNextRecord, flowRecordHoldsDir, flowRecordProto, flowRecordValue } from './flow_table';
import { BpfMap } from './maps';
import { ct4, ct6 } from './registry';

let liveFlows: u32 = 0;
let liveMasqueraded: u32 = 0;

/** Counts the live flows of the conntrack maps at `now`; read them with censusFlows and censusMasqueraded. */
export function takeCensus(now: u64): void {
  liveFlows = 0;
  liveMasqueraded = 0;
  countLive(ct4, now);
  countLive(ct6, now);
}

export function censusFlows(): u32 {
  return liveFlows;
}

export function censusMasqueraded(): u32 {
  return liveMasqueraded;
}

/** A flow is a record holding an original-direction key; one the control plane flushed is over. */
function countLive(m: BpfMap, now: u64): void {
  if (changetype<usize>(m) == 0) return;
  const t = m.flows!;
  for (let r = flowNextRecord(t, 0); r != 0; r = flowNextRecord(t, r)) {
    if (!flowRecordHoldsDir(t, r, CT_DIR_ORIGINAL)) continue;
    const entry = flowRecordValue(t, r);
    const flags = load<u16>(entry + CT_FLAGS);
    if ((flags & CT_F_FLUSHED) != 0 || !ctIsLive(entry, now, flowRecordProto(t, r))) continue;
    liveFlows++;
    if ((flags & CT_F_SNAT) != 0) liveMasqueraded++;
  }
}
