/** `npm run make-sample`: rewrites traces/samples/sample.pcap from traces/synth/sample.ts. */
import { SAMPLE_TRACE, writeSample } from './sample.js';

const n = writeSample();
console.log(`${SAMPLE_TRACE}: ${n} packets`);
