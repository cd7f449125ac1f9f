// An allow-list of IPv4 and IPv6 networks in CIDR notation (`10.0.0.0/8, 2001:db8::/32,
// 192.168.1.7`), for the `nodeAllowCidrs` and `apiAllowCidrs` settings. Node's `net.BlockList`
// does the matching (it also matches IPv4-mapped IPv6 addresses, `::ffff:10.1.2.3`, against
// IPv4 networks, as a dual-stack listener reports them). An empty list allows every address.
import { BlockList, isIP } from 'node:net';

export class CidrList {
  private readonly list = new BlockList();

  private constructor(
    /** The networks as written in the setting, normalised to `address/prefix`. */
    readonly networks: readonly string[],
  ) {
    for (const network of networks) {
      const [address, prefix] = network.split('/') as [string, string];
      this.list.addSubnet(address, Number(prefix), isIP(address) === 4 ? 'ipv4' : 'ipv6');
    }
  }

  /**
   * Parses a comma-separated list (whitespace around entries ignored); a bare address is a
   * network of one (`/32`, `/128`). Throws a plain Error naming the bad entry and `setting`.
   */
  static parse(text: string, setting = 'allow-list'): CidrList {
    const entries = text
      .split(',')
      .map((entry) => entry.trim())
      .filter((entry) => entry !== '');
    return new CidrList(entries.map((entry) => normalise(entry, setting)));
  }

  /** True when the list is empty: every address is allowed. */
  get allowsAll(): boolean {
    return this.networks.length === 0;
  }

  /** Whether `ip` (a bare IPv4 or IPv6 address) is inside one of the networks; false for anything that is not an IP. */
  allows(ip: string): boolean {
    if (this.allowsAll) return true;
    const family = isIP(ip);
    if (family === 0) return false;
    return this.list.check(ip, family === 4 ? 'ipv4' : 'ipv6');
  }
}

function normalise(entry: string, setting: string): string {
  const slash = entry.indexOf('/');
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  if (family === 0) throw new Error(`${setting}: "${entry}" is not an IPv4 or IPv6 address or network`);
  const max = family === 4 ? 32 : 128;
  const prefixText = slash < 0 ? String(max) : entry.slice(slash + 1);
  const prefix = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefix > max) {
    throw new Error(`${setting}: "${entry}" has a bad prefix length (0 to ${max})`);
  }
  return `${address}/${prefix}`;
}
