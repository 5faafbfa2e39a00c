/**
 * What an HTML report shows (`--report`, and the playground's page): plain
 * JSON-able data, collected by control/runtime/report-data.ts and drawn by
 * web/report/. The page draws only this; every number in it is one the run
 * computed, none the page derives but rates (a count over its bin's width).
 */
import type { DiffReport } from './diff.js';
import type { Summary } from './summary.js';

export const REPORT_FORMAT = 1;

export interface ReportData {
  format: typeof REPORT_FORMAT;
  /** "svcpath 0.1.0". */
  generator: string;
  /** The command line that made the report, as the user typed it (for the page's title and the trace commands). */
  command: string;
  run?: RunReport;
  diff?: DiffView;
  cases?: CaseView[];
}

/** One replay. */
export interface RunReport {
  /**
   * The replay's summary as `--summary` writes it, but that its `services`
   * are the `services.cap` with the most packets (in the summary's order)
   * and its `changes.syncs` the first `markersCap`.
   */
  summary: Summary;
  services: { cap: number; total: number };
  /** Cluster changes shown at most (markers, and the summary's syncs). */
  markersCap: number;
  markersTotal: number;
  /** Per Service port with a backend set: each backend's expected share of new flows beside what it got. */
  balance: ServiceBalance[];
  /** Over the capture's time, in bins. */
  series: Series;
  /** The first flows of the capture, in order of their first packet. */
  flows: FlowTable;
}

export interface ServiceBalance {
  /** "ns/name:port", as Summary.services[].service. */
  service: string;
  /** Flows the Service got (new conntrack entries). */
  flows: number;
  /** Flows and packets masqueraded (the source rewritten to the node's). */
  masqueraded: { flows: number; packets: number };
  backends: BackendBalance[];
}

/** A backend of the Service beside its share of the Maglev table (its flows, packets and bytes are the summary's). */
export interface BackendBalance {
  /** "ip:port". */
  backend: string;
  /**
   * Share of the Maglev table's slots, 0..1, in the set the Service's ClusterIP
   * traffic uses (the node-local one under internalTrafficPolicy Local, else the
   * cluster-wide one); null when the backend is in no table of the final state
   * (it went, or is unusable).
   */
  expected: number | null;
  /** Which table `expected` is of. */
  table: 'cluster' | 'local' | null;
}

/** Counts per bin of `binSeconds` from `start`; the last bin may be partial. */
export interface Series {
  /** Seconds since the epoch of the first packet (float). */
  start: number;
  binSeconds: number;
  /** Bin start times, seconds since the epoch. */
  time: number[];
  /** Packets per bin, by verdict name (only verdicts that occur). */
  packets: Record<string, number[]>;
  /** New conntrack entries (flows) per bin. */
  newFlows: number[];
  /** Conntrack entries not yet expired at each bin's end (IPv4 and IPv6 maps). */
  conntrack: number[];
  /** Masquerade (SNAT) entries not yet expired at each bin's end: ports in use. */
  masqueradePorts: number[];
  /** Cluster changes (--events) applied, at the time they applied. */
  markers: ChangeMarker[];
}

export interface ChangeMarker {
  /** Seconds since the epoch. */
  time: number;
  /** The state the sync starts (1, 2, ...). */
  state: number;
  /** What changed, in a few words ("endpoints of default/web:http: -1 +1"). */
  label: string;
  /** Flows the sync affected at once: established ones kept on a backend that left (or to choose again), UDP ones flushed. */
  flows: number;
  /** Packets of flows a change affected while its state was in force (moved, reset, stale), and new flows rejected. */
  packetsChanged: number;
}

export interface FlowTable {
  /** At most this many rows are kept: the first flows by their first packet. */
  cap: number;
  /** Flows (new conntrack entries) in the whole replay. */
  total: number;
  rows: FlowRow[];
}

export interface FlowRow {
  /** The flow's first packet (1-based, as verdict lines number them). */
  packet: number;
  /** Seconds since the epoch of its first packet. */
  time: number;
  protocol: 'TCP' | 'UDP' | 'SCTP';
  /** The client, "ip:port" (as captured). */
  client: string;
  /** The frontend it addressed, "ip:port". */
  frontend: string;
  service: string;
  backend: string | null;
  masqueraded: boolean;
  /** Both directions. */
  packets: number;
  bytes: number;
  /** The verdict and reason of the flow's last packet. */
  lastVerdict: string;
  lastReason: string;
  /** The `svcpath trace` command that explains the flow, ready to copy. */
  trace: string;
}

/** `svcpath diff`: the report's own JSON (`--json`), its list of changed flows capped, with per Service the flows moved. */
export interface DiffView {
  report: DiffReport;
  /** `report.changes` holds the first `changesCap` changed flows of `report.changed`. */
  changesCap: number;
  /** Per Service with flows: decisions before (rows) and after (columns), flows per cell; the diagonal stayed. */
  matrices: MoveMatrix[];
}

export interface MoveMatrix {
  service: string;
  /** Row labels: a flow's decision in the first replay, as diff words it ("TX SERVICE 10.244.0.12:8080", "(snat)" when masqueraded). */
  before: string[];
  /** Column labels: its decision in the second. */
  after: string[];
  /** flows[row][column]. */
  flows: number[][];
}

/** `svcpath test`: one case. */
export interface CaseView {
  name: string;
  passed: boolean;
  /** The first differences, one line each. */
  failures: string[];
  run?: RunReport;
}
