/** node:tty, for the browser bundle: whether standard input is a terminal; a page has none. */
import { notInBrowser } from './not-in-browser.js';

export const isatty = notInBrowser('node:tty isatty');
