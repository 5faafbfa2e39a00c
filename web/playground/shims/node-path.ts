/** node:path, for the browser bundle: only file paths use it, and the page has none. */
import { notInBrowser } from './not-in-browser.js';

export const basename = notInBrowser('node:path basename');
export const dirname = notInBrowser('node:path dirname');
export const join = notInBrowser('node:path join');
export const resolve = notInBrowser('node:path resolve');
export const sep = '/';
