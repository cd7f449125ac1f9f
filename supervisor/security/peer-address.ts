// The peer's IP address, from what a transport reports as `Connection.remoteAddress`
// (`10.1.2.3:5000`, `[2001:db8::7]:5000`, a Unix socket path, or `unknown`), and the key
// that per-address limits and bans are kept under.
import { isIP } from 'node:net';

const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/**
 * The bare IP of `remoteAddress`, IPv4-mapped IPv6 written as IPv4; undefined when there is
 * none: a Unix socket (its peer has no name; the path is reported) or an unknown peer.
 */
export function peerIp(remoteAddress: string): string | undefined {
  let host = remoteAddress;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    host = end < 0 ? '' : host.slice(1, end);
  } else if (isIP(host) === 0) {
    const colon = host.lastIndexOf(':');
    host = colon < 0 ? '' : host.slice(0, colon);
  }
  if (isIP(host) === 0) return undefined;
  return host.replace(MAPPED_V4, '$1');
}

/**
 * The key of `ip` for limits and bans: the address itself for IPv4, its /64 network for IPv6,
 * because one IPv6 host usually holds a whole /64 and could otherwise hop between addresses.
 */
export function addressKey(ip: string): string {
  if (isIP(ip) !== 6) return ip;
  const zoneless = ip.split('%', 1)[0] as string;
  const gap = zoneless.indexOf('::');
  const head = gap < 0 ? zoneless : zoneless.slice(0, gap);
  const tail = gap < 0 ? '' : zoneless.slice(gap + 2);
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  // An embedded IPv4 (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) takes two groups, at the end.
  const width = (groups: string[]): number => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const zeros = gap < 0 ? 0 : 8 - width(headGroups) - width(tailGroups);
  const groups = [...headGroups, ...new Array<string>(zeros).fill('0'), ...tailGroups];
  const prefix = groups.slice(0, 4).map((g) => (g.includes('.') ? '0' : Number.parseInt(g, 16).toString(16)));
  return `${prefix.join(':')}::/64`;
}
