/**
 * The steer map through cluster changes. loadProgram fills it once
 * (loader.ts steeringClasses): every frontend and backend endpoint (address,
 * port, protocol) and each address alone, flagged STEER_F.FRONTEND or
 * STEER_F.BACKEND. Besides steering a sharded replay, it tells the datapath
 * which of the node's own copies of packets teach its masquerade tuples
 * (datapath/node_masq.ts: an arrival for a frontend, the node's copy of it
 * to a backend) and which of them went to a backend (datapath/conformance.ts).
 * So after each sync (control/runtime/cluster-sync.ts) a frontend or backend
 * that appeared gets its entries, its flag OR-ed into an entry its address
 * may have already.
 *
 * Entries only grow during a replay: a frontend or backend that goes keeps
 * its entries, since its flows outlive it, as kube-proxy's conntrack keeps
 * the established flows of a deleted Service and of a gone backend (and
 * rebase.ts keeps their tombstones and reverse NAT): the node's copies of
 * those flows' requests still teach its tuples.
 *
 * What the map holds is also kept here, per datapath, read from the map at
 * the first sync: a sync is one pass over the live compiled frontends and
 * backends, and makes no map call for what is there already.
 */
import { IPPROTO, STEER_CLASS, STEER_F, STEER_KEY, decode, encode } from '../compile/layout.js';
import type { Protocol } from '../cluster/state.js';
import ipaddr from 'ipaddr.js';
import type { Datapath } from './datapath.js';
import { steerKey } from './loader.js';
import { NeedsReloadError, type LiveProgram } from './update.js';

/**
 * What the steer map holds, per address (as the cluster state writes it):
 * the flags of the address alone, and of each of its endpoints by
 * port << 8 | protocol number.
 */
type Held = Map<string, { flags: number; endpoints: Map<number, number> }>;

const offsetOf = (field: string) => STEER_KEY.fields.find((f) => f.name === field)!.offset;
const [KEY_ADDRESS, KEY_PORT, KEY_PROTO] = ['address', 'port', 'proto'].map(offsetOf);

/** Per datapath, what its steer map holds. */
const held = new WeakMap<Datapath, Held>();

/** An entry a sync adds or widens: its key's parts and the flags it must gain; no port for an address alone. */
interface Missing {
  ip: string;
  port?: number;
  protocol?: Protocol;
  flags: number;
}

/**
 * Brings the steer map up to the frontends and backends `live` has now:
 * writes the entries they lack and deletes none. Returns the entries
 * written. Throws NeedsReloadError, having written nothing, when the map
 * has no room for the new ones (loadProgram's room.steer, which
 * rebase.ts roomFor counts).
 */
export function steerChanges(live: LiveProgram): number {
  const known = held.get(live.dp) ?? readSteerMap(live.dp);
  held.set(live.dp, known);
  const missing = new Map<string, Missing>();
  const lack = (text: string, part: Omit<Missing, 'flags'>, flag: number) => {
    const entry = missing.get(text);
    if (entry) entry.flags |= flag;
    else missing.set(text, { ...part, flags: flag });
  };
  const want = (ip: string, port: number, protocol: Protocol, flag: number) => {
    const at = known.get(ip);
    if (((at?.flags ?? 0) & flag) === 0) lack(ip, { ip }, flag);
    if (((at?.endpoints.get((port << 8) | IPPROTO[protocol]) ?? 0) & flag) === 0)
      lack(`${ip} ${port} ${protocol}`, { ip, port, protocol }, flag);
  };
  // Removed Service ports and tombstones are there already: they were live once.
  for (const svc of live.compiled.services) for (const f of svc.frontends) want(f.address, f.port, f.protocol, STEER_F.FRONTEND);
  for (const b of live.compiled.backends) want(b.ip, b.port, b.protocol, STEER_F.BACKEND);
  return missing.size === 0 ? 0 : write(live.dp, known, [...missing.values()]);
}

/** Writes the missing entries, each OR-ed into what its key holds, all or none. */
function write(dp: Datapath, known: Held, missing: readonly Missing[]): number {
  const steer = dp.map('steer');
  const writes = missing.map((m) => {
    const key = steerKey(m.ip, m.port, m.protocol);
    const was = steer.lookupRaw(key);
    return { m, key, isNew: !was, flags: (was ? (decode(STEER_CLASS, was).flags as number) : 0) | m.flags };
  });
  const added = writes.filter((w) => w.isNew).length;
  if (steer.count() + added > steer.maxEntries) {
    throw new NeedsReloadError(
      `map steer has room for ${steer.maxEntries} entries and holds ${steer.count()}; the change's new frontends and ` +
        `backends need ${added} more: load it with room for them (rebase.ts roomFor)`,
    );
  }
  for (const { m, key, flags } of writes) {
    steer.updateRaw(key, encode(STEER_CLASS, { flags }));
    remember(known, m.ip, m.port === undefined ? undefined : (m.port << 8) | IPPROTO[m.protocol!], flags);
  }
  return writes.length;
}

function remember(known: Held, ip: string, endpoint: number | undefined, flags: number): void {
  let at = known.get(ip);
  if (!at) known.set(ip, (at = { flags: 0, endpoints: new Map() }));
  if (endpoint === undefined) at.flags = flags;
  else at.endpoints.set(endpoint, flags);
}

/** What the steer map holds: one batch walk, at a datapath's first sync. */
function readSteerMap(dp: Datapath): Held {
  const known: Held = new Map();
  dp.map('steer').scanRaw((key, value) => {
    // Read in place: decode's address text costs ten times the walk.
    const proto = key[KEY_PROTO];
    const endpoint = proto === 0 ? undefined : (((key[KEY_PORT] << 8) | key[KEY_PORT + 1]) << 8) | proto;
    remember(known, stateAddress(key.subarray(KEY_ADDRESS, KEY_ADDRESS + 16)), endpoint, decode(STEER_CLASS, value).flags as number);
  });
  return known;
}

/** A key's address (IPv6, IPv4 mapped) as the cluster state writes it: an IPv4 one dotted. */
function stateAddress(bytes: Uint8Array): string {
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? bytes.subarray(12, 16).join('.') : ipaddr.fromByteArray(Array.from(bytes)).toString();
}
