/** `npm run make-rolling-update`: rewrites traces/samples/rolling-update.pcap from traces/synth/rolling-update.ts. */
import { ROLLING_UPDATE_TRACE, writeRollingUpdate } from './rolling-update.js';

const n = writeRollingUpdate();
console.log(`${ROLLING_UPDATE_TRACE}: ${n} packets`);
