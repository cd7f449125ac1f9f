// Allow-lists in CIDR notation and the peer addresses they are checked against.
import { describe, expect, it } from 'vitest';
import { CidrList } from '../../../supervisor/security/cidr-list.js';
import { addressKey, peerIp } from '../../../supervisor/security/peer-address.js';

describe('CidrList', () => {
  it('allows every address when empty', () => {
    const list = CidrList.parse('');
    expect(list.allowsAll).toBe(true);
    expect(list.allows('203.0.113.9')).toBe(true);
    expect(list.allows('2001:db8::1')).toBe(true);
  });

  it('matches IPv4 networks, and only them', () => {
    const list = CidrList.parse('10.0.0.0/8, 192.168.1.0/24');
    expect(list.allows('10.200.3.4')).toBe(true);
    expect(list.allows('192.168.1.77')).toBe(true);
    expect(list.allows('192.168.2.1')).toBe(false);
    expect(list.allows('127.0.0.1')).toBe(false);
    expect(list.allows('2001:db8::1')).toBe(false);
  });

  it('matches IPv6 networks', () => {
    const list = CidrList.parse('2001:db8::/32,::1');
    expect(list.allows('2001:db8:1234::7')).toBe(true);
    expect(list.allows('2001:db9::7')).toBe(false);
    expect(list.allows('::1')).toBe(true);
    expect(list.networks).toEqual(['2001:db8::/32', '::1/128']);
  });

  it('treats a bare address as a network of one', () => {
    const list = CidrList.parse(' 198.51.100.7 ');
    expect(list.networks).toEqual(['198.51.100.7/32']);
    expect(list.allows('198.51.100.7')).toBe(true);
    expect(list.allows('198.51.100.8')).toBe(false);
  });

  it('matches IPv4-mapped IPv6 addresses (dual-stack listeners) against IPv4 networks', () => {
    expect(CidrList.parse('127.0.0.0/8').allows('::ffff:127.0.0.1')).toBe(true);
  });

  it('refuses anything that is not an IP', () => {
    const list = CidrList.parse('10.0.0.0/8');
    expect(list.allows('not-an-ip')).toBe(false);
    expect(list.allows('/var/run/muster.sock')).toBe(false);
  });

  it('names the setting and the bad entry', () => {
    expect(() => CidrList.parse('10.0.0.0/8, 10.0.0.300/8', 'nodeAllowCidrs')).toThrow(/nodeAllowCidrs: "10.0.0.300\/8"/);
    expect(() => CidrList.parse('10.0.0.0/33', 'apiAllowCidrs')).toThrow(/apiAllowCidrs: .*prefix length \(0 to 32\)/);
    expect(() => CidrList.parse('2001:db8::/129')).toThrow(/0 to 128/);
    expect(() => CidrList.parse('10.0.0.0/')).toThrow(/prefix/);
    expect(() => CidrList.parse('10.0.0.0/8x')).toThrow(/prefix/);
    expect(() => CidrList.parse('example.com/8')).toThrow(/not an IPv4 or IPv6/);
  });
});

describe('peerIp', () => {
  it('reads IPv4 and bracketed IPv6 host:port, and unmaps IPv4-mapped addresses', () => {
    expect(peerIp('10.1.2.3:5000')).toBe('10.1.2.3');
    expect(peerIp('[2001:db8::7]:5000')).toBe('2001:db8::7');
    expect(peerIp('[::ffff:127.0.0.1]:5000')).toBe('127.0.0.1');
    expect(peerIp('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(peerIp('127.0.0.1')).toBe('127.0.0.1');
  });

  it('has no IP for a Unix socket or an unknown peer', () => {
    expect(peerIp('/tmp/muster/muster.sock')).toBeUndefined();
    expect(peerIp('unknown')).toBeUndefined();
    expect(peerIp('unknown:0')).toBeUndefined();
  });
});

describe('addressKey', () => {
  it('keys IPv4 by address and IPv6 by /64', () => {
    expect(addressKey('10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});
