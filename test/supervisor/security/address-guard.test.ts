// Per-address limits and bans on a frozen clock: connection attempts, the failed-authentication
// budget, violations that ban, bans that end, IPv6 /64 grouping, and memory that stays bounded.
import { describe, expect, it } from 'vitest';
import { AddressGuard, type AddressLimits } from '../../../supervisor/security/address-guard.js';
import type { AuditEvent, AuditSink } from '../../../supervisor/security/audit-log.js';

class RecordingAudit implements AuditSink {
  readonly events: AuditEvent[] = [];
  private readonly seen = new Set<string>();
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  recordThrottled(key: string, event: AuditEvent): boolean {
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    this.events.push(event);
    return true;
  }
  named(name: string): AuditEvent[] {
    return this.events.filter((e) => e.event === name);
  }
}

const LIMITS: AddressLimits = { connectionsPerSecond: 2, connectionBurst: 3, failedAuthPerMinute: 4, banAfterViolations: 3, banSeconds: 10 };

function guard(limits: Partial<AddressLimits> = {}) {
  let now = 0;
  const audit = new RecordingAudit();
  const g = new AddressGuard({ ...LIMITS, ...limits }, audit, { clock: () => now, wallClock: () => 1_700_000_000_000 + now });
  return { g, audit, advance: (ms: number) => (now += ms) };
}

describe('AddressGuard', () => {
  it('lets the connection burst through, then refuses, then refills at the rate', () => {
    const { g } = guard({ banAfterViolations: 0 });
    expect([1, 2, 3, 4].map(() => g.admitConnection('10.0.0.1', {}))).toEqual(['ok', 'ok', 'ok', 'rate_limited']);
    expect(g.admitConnection('10.0.0.2', {})).toBe('ok');
    g.close();
  });

  it('over the rate, lets connections in on probation up to connectionProbation; a resume costs nothing, anything else is a violation', () => {
    const { g, audit } = guard({ connectionProbation: 2, banAfterViolations: 3 });
    expect([1, 2, 3, 4, 5, 6].map(() => g.admitConnection('10.0.0.1', {}))).toEqual(['ok', 'ok', 'ok', 'probation', 'probation', 'rate_limited']);
    expect(g.probationEnded('10.0.0.1', true, {})).toBe('ok');
    expect(audit.named('address_banned')).toHaveLength(0);
    expect(g.admitConnection('10.0.0.1', {})).toBe('probation'); // the resume gave its place back
    expect(g.probationEnded('10.0.0.1', false, {})).toBe('rate_limited');
    expect(g.probationEnded('10.0.0.1', false, {})).toBe('banned'); // the third violation: the refusal above, and these two
    expect(audit.named('address_banned')).toHaveLength(1);
    g.close();
  });

  it('audits failures within the budget one by one, then one suspicious_activity, and refuses the address', () => {
    const { g, audit, advance } = guard({ banAfterViolations: 0 });
    for (let i = 0; i < 4; i++) g.authFailed('10.0.0.1', { correlation_id: `c-${i}` });
    for (let i = 0; i < 20; i++) g.authFailed('10.0.0.1', { correlation_id: `late-${i}` });
    expect(audit.named('auth_failed')).toHaveLength(4);
    expect(audit.named('suspicious_activity')).toMatchObject([{ address: '10.0.0.1', count: 4 }]);
    expect(g.admitConnection('10.0.0.1', {})).toBe('rate_limited');
    expect(g.checkRequest('10.0.0.1', {})).toBe('rate_limited');
    advance(15_001); // 4 a minute: one failure's worth back every 15 s
    expect(g.checkRequest('10.0.0.1', {})).toBe('ok');
    g.close();
  });

  it('bans after banAfterViolations within a minute, and the ban ends after banSeconds', () => {
    const { g, audit, advance } = guard({ connectionBurst: 1, connectionsPerSecond: 0.001 });
    expect(g.admitConnection('10.0.0.1', {})).toBe('ok');
    expect(g.admitConnection('10.0.0.1', {})).toBe('rate_limited');
    expect(g.admitConnection('10.0.0.1', {})).toBe('rate_limited');
    expect(g.admitConnection('10.0.0.1', {})).toBe('banned');
    expect(g.bannedSeconds('10.0.0.1')).toBe(10);
    expect(audit.named('address_banned')).toMatchObject([{ address: '10.0.0.1', until: new Date(1_700_000_000_000 + 10_000).toISOString() }]);
    advance(9_000);
    expect(g.admitConnection('10.0.0.1', {})).toBe('banned');
    advance(1_001);
    expect(g.bannedSeconds('10.0.0.1')).toBe(0);
    expect(g.checkRequest('10.0.0.1', {})).toBe('ok');
    g.close();
  });

  it('forgets violations older than a minute', () => {
    const { g, advance } = guard({ connectionBurst: 1, connectionsPerSecond: 0.001 });
    g.admitConnection('10.0.0.1', {});
    g.admitConnection('10.0.0.1', {});
    g.admitConnection('10.0.0.1', {});
    advance(61_000);
    expect(g.admitConnection('10.0.0.1', {})).toBe('rate_limited');
    g.close();
  });

  it('bans on request (a node that kept flooding), once', () => {
    const { g, audit } = guard();
    expect(g.ban('10.0.0.1', { reason: 'flood' })).toBe(true);
    expect(g.ban('10.0.0.1', { reason: 'flood' })).toBe(false);
    expect(g.admitConnection('10.0.0.1', {})).toBe('banned');
    expect(audit.named('address_banned')).toHaveLength(1);
    g.close();
  });

  it('keeps IPv6 addresses of one /64 under one key', () => {
    const { g } = guard();
    g.ban('2001:db8:1:2::1', {});
    expect(g.admitConnection('2001:db8:1:2::ffff', {})).toBe('banned');
    expect(g.admitConnection('2001:db8:1:3::1', {})).toBe('ok');
    g.close();
  });

  it('tracks at most maxAddresses, forgetting the least recently seen', () => {
    const { g } = guard({ maxAddresses: 100 });
    for (let i = 0; i < 10_000; i++) g.admitConnection(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, {});
    expect(g.size).toBe(100);
    g.close();
  });

  it('does nothing for limits set to 0', () => {
    const { g, audit } = guard({ connectionsPerSecond: 0, failedAuthPerMinute: 0, banAfterViolations: 0 });
    for (let i = 0; i < 1_000; i++) expect(g.admitConnection('10.0.0.1', {})).toBe('ok');
    for (let i = 0; i < 1_000; i++) g.authFailed('10.0.0.1', {});
    expect(g.checkRequest('10.0.0.1', {})).toBe('ok');
    // Without a budget, failures are still aggregated: one line per address and window.
    expect(audit.named('auth_failed')).toHaveLength(1);
    g.close();
  });
});
