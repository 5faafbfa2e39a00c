/**
 * node:net, for the browser bundle. isIP, isIPv4 and isIPv6 really work, as
 * Node's do: control/cluster/validate.ts asks them which form an address
 * has, in the page as in the CLI. Node's isIPv4 takes four decimal parts
 * without leading zeros (ipaddr.js's isValidFourPartDecimal); its isIPv6
 * takes an embedded IPv4 part only so, and a zone of letters, digits, '-',
 * '.' and ':' (ipaddr.js takes leading zeros there, and fewer zones).
 * Socket (standard input as a pipe) is never made in a page.
 */
import ipaddr from 'ipaddr.js';
import { notInBrowser } from './not-in-browser.js';

export function isIPv4(text: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(text);
}

export function isIPv6(text: string): boolean {
  const percent = text.indexOf('%');
  const address = percent < 0 ? text : text.slice(0, percent);
  if (percent >= 0 && !/^[0-9a-zA-Z.:-]+$/.test(text.slice(percent + 1))) return false;
  if (!ipaddr.IPv6.isValid(address)) return false;
  const last = address.slice(address.lastIndexOf(':') + 1);
  return !last.includes('.') || isIPv4(last);
}

export function isIP(text: string): 0 | 4 | 6 {
  return isIPv4(text) ? 4 : isIPv6(text) ? 6 : 0;
}

export const Socket = notInBrowser('node:net Socket');
