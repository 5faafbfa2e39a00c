/**
 * The standalone report's script (bundled by web/build.ts into
 * dist/web/report.js and inlined by control/runtime/report-html.ts): draws
 * the JSON the page carries into its #report element.
 */
import type { ReportData } from '../../control/runtime/report-types.js';
import { renderReport } from './render.js';

const json = document.getElementById('svcpath-report')?.textContent;
const root = document.getElementById('report');
if (!json || !root) throw new Error('svcpath report: the page has no #svcpath-report data or no #report element');
renderReport(root, JSON.parse(json) as ReportData);
