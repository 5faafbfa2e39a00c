/**
 * Which backend the datapath will give a new flow, computed outside the
 * datapath: the compiled cluster-wide Maglev table indexed with the documented
 * flow hash. Generated traces use it so that the backends' replies in them
 * come from the backend the datapath actually picks, as they would in a real
 * capture. It knows nothing of traffic policies, affinity or masquerading:
 * use it for flows none of those touch (pods to cluster IPs of Services with
 * Cluster policies).
 */
import ipaddr from 'ipaddr.js';
import type { Compiled } from '../../control/compile/compiler.js';
import { IPPROTO } from '../../control/compile/layout.js';
import { flowHash4 } from '../../control/common/murmur3.js';
import type { BackendChooser } from './generate.js';

export function maglevChooser(compiled: Compiled, seed: number): BackendChooser {
  const byFrontend = new Map<string, Compiled['services'][number]>();
  for (const s of compiled.services) for (const f of s.frontends) byFrontend.set(`${f.address} ${f.port} ${f.protocol}`, s);
  return (flow) => {
    const svc = byFrontend.get(`${flow.vip} ${flow.vport} ${flow.protocol}`);
    const table = svc?.cluster.maglev;
    if (!table || table.length === 0) return null;
    const slot =
      flowHash4(
        seed,
        ipaddr.parse(flow.clientIp).toByteArray(),
        ipaddr.parse(flow.vip).toByteArray(),
        flow.clientPort,
        flow.vport,
        IPPROTO[flow.protocol],
      ) % table.length;
    const b = compiled.backends[table[slot] - 1];
    return { ip: b.ip, port: b.port };
  };
}
