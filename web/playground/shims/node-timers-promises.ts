/** node:timers/promises, for the browser bundle: the waits for a pipe's writer; a page's capture is all there. */
import { notInBrowser } from './not-in-browser.js';

export const setTimeout = notInBrowser('node:timers/promises setTimeout');
