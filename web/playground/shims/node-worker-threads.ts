/** node:worker_threads, for the browser bundle: the gunzip thread and the sharded replay's workers; a page replays on one thread. */
import { notInBrowser } from './not-in-browser.js';

export const MessageChannel = notInBrowser('node:worker_threads MessageChannel');
export const receiveMessageOnPort = notInBrowser('node:worker_threads receiveMessageOnPort');
export const Worker = notInBrowser('node:worker_threads Worker');
