/** `svcpath trace`: what the datapath did with chosen packets, step by step. */
import { formatTraces, traceReplay } from '../../runtime/trace.js';
import { parseCommandArgs } from '../args.js';
import {
  buildReplayDatapath,
  CLUSTER_OPTIONS,
  DATAPATH_FLAGS,
  DATAPATH_OPTIONS,
  EVENTS_FLAGS,
  EVENTS_OPTIONS,
  HELP_FOOTER,
  oneTrace,
  parseInteger,
  printHelp,
} from '../common-flags.js';

export const HELP = `svcpath trace: what the datapath did with each chosen packet, step by step: headers, every map
lookup with key and result, the Maglev slot, the rewrite, the verdict

Usage:
  svcpath trace <trace> --cluster <file-or-dir> [--packet N]... [--flow IP:PORT]... [--service NS/NAME[:PORT]]... [flags]

A packet is traced when any of --packet, --flow, --service chooses it; every packet when none is given.
One that chooses nothing is named on stderr, and the exit status is 1.

Flags:
  --packet N                       the N-th packet of the capture (repeatable)
  --flow IP:PORT                   packets from or to IP:PORT, as captured or as rewritten: a frontend's
                                   flows and their replies, a backend's flows (repeatable; [IPv6]:PORT)
  --service NS/NAME[:PORT]         packets decided for the Service (or one of its ports, by name or number)
  --json                           the traces as JSON
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${EVENTS_OPTIONS}
${HELP_FOOTER}`;

const FLAGS = {
  ...DATAPATH_FLAGS,
  ...EVENTS_FLAGS,
  packet: { type: 'string', multiple: true },
  flow: { type: 'string', multiple: true },
  service: { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('trace', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  const trace = oneTrace('trace', positionals);
  const packets = (values.packet ?? []).map((p) => parseInteger('--packet', p, 1, Number.MAX_SAFE_INTEGER));
  const { compiled, dp, changes, eventsError } = await buildReplayDatapath(values, trace);
  const { traces, unmatched, stoppedAt } = await traceReplay(
    trace,
    compiled,
    dp,
    { packets, flows: values.flow ?? [], services: values.service ?? [] },
    changes,
  );
  // What was found is printed even when a selector found nothing or the capture broke part-way.
  console.log(values.json ? JSON.stringify(traces, null, 2) : formatTraces(traces));
  for (const line of unmatched) console.error(`svcpath: trace: ${line}`);
  if (stoppedAt) console.error(`svcpath: ${stoppedAt.error}`);
  if (eventsError) console.error(`svcpath: ${eventsError.message}`);
  return unmatched.length > 0 || stoppedAt || eventsError ? 1 : 0;
}
