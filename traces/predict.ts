/**
 * Which backend the datapath will give a new flow, computed outside the
 * datapath: the compiled Maglev table indexed with the documented flow hash.
 * Generated traces use it so that the backends' replies in them come from
 * the backend the datapath actually picks, as they would in a real capture.
 */
import ipaddr from 'ipaddr.js';
import type { Compiled } from '../control/compiler.js';
import { IPPROTO } from '../control/layout.js';
import { flowHash4 } from '../control/murmur3.js';
import type { BackendChooser } from './generate.js';

export function maglevChooser(compiled: Compiled, seed: number): BackendChooser {
  const byFrontend = new Map<string, Compiled['services'][number]>();
  for (const s of compiled.services) for (const f of s.frontends) byFrontend.set(`${f.address} ${f.port} ${f.protocol}`, s);
  return (flow) => {
    const svc = byFrontend.get(`${flow.vip} ${flow.vport} ${flow.protocol}`);
    if (!svc || svc.maglev.length === 0) return null;
    const slot = flowHash4(seed, ipaddr.parse(flow.clientIp).toByteArray(), ipaddr.parse(flow.vip).toByteArray(),
      flow.clientPort, flow.vport, IPPROTO[flow.protocol]) % svc.maglev.length;
    const b = compiled.backends[svc.maglev[slot] - 1];
    return { ip: b.ip, port: b.port };
  };
}
