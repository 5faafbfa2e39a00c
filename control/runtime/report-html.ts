/**
 * The HTML report as one self-contained document: the page's script and
 * style (web/report/, built into dist/web/) and the data inlined, nothing
 * fetched. Pure (no node: import), so the playground can offer the same
 * file for download from the browser.
 */
import type { ReportData } from './report-types.js';

export interface ReportAssets {
  /** The bundled page script (dist/web/report.js). */
  script: string;
  /** The page's style (dist/web/report.css). */
  css: string;
}

/**
 * The data as JSON that cannot end its <script> element early: every `<`
 * escaped (a `</script>` in a Service name or a path stays text), and the
 * line separators U+2028/U+2029 too, which some tools read as line ends.
 */
export function inlineJson(data: unknown): string {
  return JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/**
 * Code inlined in a raw-text element: a closing tag inside it would end the
 * element, so `</script` (`</style`) becomes `<\/script`, the same string
 * to JavaScript and CSS; `<!--`, which can make a script element swallow
 * what follows it, becomes `<\!--`, the same in a string literal, the only
 * place bundled code holds it.
 */
function rawText(code: string, element: 'script' | 'style'): string {
  return code.replace(new RegExp(`</(${element})`, 'gi'), '<\\/$1').replace(/<!--/g, '<\\!--');
}

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * No request of any kind: the Content-Security-Policy allows only the inline
 * script and style and data: images, and the icon is an empty data: URL so
 * the browser asks for no /favicon.ico.
 */
const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:";

export function reportHtml(data: ReportData, assets: ReportAssets): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${CSP}">
<meta name="generator" content="${escapeHtml(data.generator)}">
<link rel="icon" href="data:,">
<title>${escapeHtml(data.command)}</title>
<style>
${rawText(assets.css, 'style')}
</style>
</head>
<body>
<noscript><p>This report is drawn by the script inside it: open it in a browser with JavaScript on.</p></noscript>
<main id="report"></main>
<script type="application/json" id="svcpath-report">${inlineJson(data)}</script>
<script>
${rawText(assets.script, 'script')}
</script>
</body>
</html>
`;
}
