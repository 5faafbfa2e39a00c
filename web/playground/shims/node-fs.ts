/** node:fs, for the browser bundle: the page gets its files from the user as bytes and texts, and writes none. */
import { notInBrowser } from './not-in-browser.js';

const stub = (name: string) => notInBrowser(`node:fs ${name}`);
export const closeSync = stub('closeSync');
export const existsSync = stub('existsSync');
export const fchmodSync = stub('fchmodSync');
export const fstatSync = stub('fstatSync');
export const lstatSync = stub('lstatSync');
export const openSync = stub('openSync');
export const readdirSync = stub('readdirSync');
export const readFileSync = stub('readFileSync');
export const readlinkSync = stub('readlinkSync');
export const readSync = stub('readSync');
export const realpathSync = stub('realpathSync');
export const renameSync = stub('renameSync');
export const rmSync = stub('rmSync');
export const statSync = stub('statSync');
export const writeSync = stub('writeSync');
/** Read only as arguments to openSync, which throws. */
export const constants = {};
