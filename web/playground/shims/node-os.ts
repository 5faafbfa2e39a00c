/** node:os, for the browser bundle: a capture from a pipe is copied to a temporary file; a page's never is. */
import { notInBrowser } from './not-in-browser.js';

export const tmpdir = notInBrowser('node:os tmpdir');
