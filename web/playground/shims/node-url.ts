/** node:url, for the browser bundle: the gunzip thread's file; a page inflates with DecompressionStream (traces/gzip.ts). */
import { notInBrowser } from './not-in-browser.js';

export const fileURLToPath = notInBrowser('node:url fileURLToPath');
