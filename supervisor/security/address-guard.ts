// Per-address limits and bans, shared by the node listeners and the admin API: connection
// attempts (a token bucket per address), failed authentications (a budget a minute), and a
// temporary ban for an address that keeps going over a limit ("violations"). It also writes the
// audit events of all this, aggregated: within its budget each failed authentication is one
// audit line; past it the address gets one `suspicious_activity` line a window, not one a try.
//
// A connection over the connection rate is not refused at once while the address has
// probation room (`connectionProbation`): it is let in on probation, and refused after its
// first frame unless that resumes a session with a valid session token (`probationEnded`).
// A fleet behind one NAT address that reconnects at once (a replica failover) is so let in
// whole, while a flood of fresh or unauthenticated connections is refused as before, each
// refusal counted as a violation. Probation costs nothing until then, so no ban follows a storm.
//
// State is bounded: addresses are keyed by `addressKey` (IPv6 by /64), an entry is dropped once
// idle long enough that it would start afresh anyway (one unref'd sweep timer), and beyond
// `maxAddresses` the least recently seen entry is forgotten, so a flood of addresses cannot
// grow memory without bound.
import { DEFAULTS } from '../config.js';
import type { AuditEvent, AuditSink } from './audit-log.js';
import type { CidrList } from './cidr-list.js';
import { addressKey } from './peer-address.js';
import { TokenBucket } from './token-bucket.js';

export interface AddressLimits {
  /** New node connections a second per address; 0 turns the limit off. */
  connectionsPerSecond: number;
  /** Connections an address may open at once before the rate applies. */
  connectionBurst: number;
  /** Failed authentications (node registrations, admin API tokens) a minute per address; 0 turns the limit off. */
  failedAuthPerMinute: number;
  /** Violations (refusals for going over a limit) within `violationWindowMs` that get an address banned; 0 never bans. */
  banAfterViolations: number;
  /** The window violations (and failed authentications, for the suspicious-activity line) are counted in; default config.ts's. */
  violationWindowMs?: number;
  /** How long a ban lasts. */
  banSeconds: number;
  /**
   * Connections over the connection rate one address may hold open at once, each on probation
   * until its `RegisterNode` shows a resumed session; 0 (the default here) refuses them at once.
   */
  connectionProbation?: number;
  /** Most addresses tracked at once; default config.ts's `maxTrackedAddresses`. */
  maxAddresses?: number;
  /**
   * Addresses never locked out (`banExemptCidrs`, loopback by default): their failed
   * authentications are audited but spend no budget, and they are never banned. A few bad calls
   * from the plane's own host must not shut its operator out.
   */
  exempt?: CidrList;
}

/** What an address may do now: go ahead, back off (over a limit), or nothing (banned). */
export type Admission = 'ok' | 'rate_limited' | 'banned';

/** Why an address is refused, and for how long: what a 429 says. */
export interface Refusal {
  reason: string;
  /** Seconds until it is let in again (at least 1). */
  seconds: number;
}

/** A connection: as an `Admission`, or let in over the rate on probation (see `probationEnded`). */
export type ConnectionAdmission = Admission | 'probation';

/** What the audit lines about one event carry besides the address. */
export type GuardContext = Pick<AuditEvent, 'correlation_id' | 'node_id' | 'jti' | 'reason' | 'code' | 'method' | 'path'>;

export interface AddressGuardOptions {
  /** Monotonic clock in ms; default `performance.now()`. */
  clock?: () => number;
  /** Wall clock in ms, for the `until` of bans; default `Date.now()`. */
  wallClock?: () => number;
}

interface Entry {
  connections: TokenBucket | undefined;
  failures: TokenBucket | undefined;
  /** Start of the window that violations are counted in. */
  windowStart: number;
  violations: number;
  /** Failed authentications in the window, for the suspicious-activity line. */
  failuresInWindow: number;
  /** Monotonic ms the ban ends at; 0 when not banned. */
  bannedUntil: number;
  /** Why the current ban was imposed. */
  banReason: string;
  lastSeen: number;
  /** Connections over the rate that are open on probation now. */
  probation: number;
}

export class AddressGuard {
  private readonly entries = new Map<string, Entry>();
  private readonly clock: () => number;
  private readonly wallClock: () => number;
  private readonly maxAddresses: number;
  private readonly windowMs: number;
  /** How long an idle entry still matters: its window, or its buckets refilling. */
  private readonly idleMs: number;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: AddressLimits,
    private readonly audit: AuditSink,
    options: AddressGuardOptions = {},
  ) {
    this.clock = options.clock ?? (() => performance.now());
    this.wallClock = options.wallClock ?? Date.now;
    this.maxAddresses = limits.maxAddresses ?? DEFAULTS.maxTrackedAddresses;
    this.windowMs = limits.violationWindowMs ?? DEFAULTS.violationWindowMs;
    const sample = this.newEntry(0);
    this.idleMs = Math.max(this.windowMs, sample.connections?.fillMs ?? 0, sample.failures?.fillMs ?? 0);
    this.sweeper = setInterval(() => this.sweep(), this.windowMs);
    this.sweeper.unref();
  }

  /** A new node connection from `ip`: spends one connection token, or one probation place when none is left. */
  admitConnection(ip: string, context: GuardContext): ConnectionAdmission {
    const now = this.clock();
    const key = addressKey(ip);
    const entry = this.touch(key, now);
    const blocked = this.blocked(entry, key, ip, now, context);
    if (blocked !== 'ok') return blocked;
    if (entry.connections !== undefined && !entry.connections.take(1, now)) {
      if (entry.probation < (this.limits.connectionProbation ?? 0)) {
        entry.probation++;
        return 'probation';
      }
      return this.overLimit(entry, key, ip, now, { ...context, reason: this.overRate() });
    }
    return 'ok';
  }

  /**
   * A connection let in on probation showed what it is: a resumed session (`resumed`), which
   * costs nothing, or anything else (a new registration, a failure, silence), which is refused
   * and counted as the connection-rate violation it was. Returns the admission it ends with.
   */
  probationEnded(ip: string, resumed: boolean, context: GuardContext): Admission {
    const now = this.clock();
    const key = addressKey(ip);
    const entry = this.touch(key, now);
    entry.probation = Math.max(0, entry.probation - 1);
    return resumed ? 'ok' : this.overLimit(entry, key, ip, now, { ...context, reason: this.overRate() });
  }

  private overRate(): string {
    return `over ${this.limits.connectionsPerSecond} connection attempts a second`;
  }

  /** An admin API request from `ip`: refused while banned or out of failed-authentication budget; spends nothing. */
  checkRequest(ip: string, context: GuardContext): Admission {
    const key = addressKey(ip);
    const entry = this.entries.get(key);
    if (entry === undefined) return 'ok';
    const now = this.clock();
    entry.lastSeen = now;
    return this.blocked(entry, key, ip, now, context);
  }

  /** An authentication from `ip` failed: audited while within budget, then counted as a violation. */
  authFailed(ip: string, context: GuardContext): void {
    const now = this.clock();
    const key = addressKey(ip);
    const event: AuditEvent = { event: 'auth_failed', address: ip, ...context };
    if (this.isExempt(ip)) {
      this.audit.recordThrottled(`auth_failed|${key}`, event);
      return;
    }
    const entry = this.touch(key, now);
    this.rollWindow(entry, now);
    entry.failuresInWindow++;
    if (entry.failures === undefined) {
      // No budget to hold a flood back: one line per address a window says it all.
      this.audit.recordThrottled(`auth_failed|${key}`, event);
      return;
    }
    if (entry.failures.take(1, now)) {
      this.audit.record(event);
      // The failure that spends the budget makes the address suspicious: one line a window.
      if (entry.failures.available(now) < 1) this.suspicious(entry, key, ip, context);
      return;
    }
    // Past the budget (connections that were already open): counted, not written one by one.
    this.suspicious(entry, key, ip, context);
    this.violation(entry, ip, now, context);
  }

  private suspicious(entry: Entry, key: string, ip: string, context: GuardContext): void {
    this.audit.recordThrottled(`suspicious_activity|${key}`, {
      event: 'suspicious_activity',
      address: ip,
      correlation_id: context.correlation_id,
      count: entry.failuresInWindow,
      reason: `${this.limits.failedAuthPerMinute} failed authentications from this address within a minute: refused until the budget refills`,
    });
  }

  /** Bans `ip` now (a node that kept flooding after `rate_limited`); false when it already was, or is exempt. */
  ban(ip: string, context: GuardContext): boolean {
    if (this.isExempt(ip)) return false;
    const now = this.clock();
    const entry = this.touch(addressKey(ip), now);
    if (entry.bannedUntil > now) return false;
    this.startBan(entry, ip, now, context, context.reason ?? 'abuse');
    return true;
  }

  /** Seconds left of the ban of `ip`; 0 when it is not banned. */
  bannedSeconds(ip: string): number {
    const entry = this.entries.get(addressKey(ip));
    if (entry === undefined) return 0;
    const left = entry.bannedUntil - this.clock();
    return left > 0 ? Math.ceil(left / 1000) : 0;
  }

  /** Why `ip` is refused now (banned, or out of failed-authentication budget) and for how long; undefined when it is not. */
  refusal(ip: string): Refusal | undefined {
    const entry = this.entries.get(addressKey(ip));
    if (entry === undefined) return undefined;
    const now = this.clock();
    if (entry.bannedUntil > now) {
      return { reason: `this address is banned: ${entry.banReason}`, seconds: Math.ceil((entry.bannedUntil - now) / 1000) };
    }
    const { failures } = entry;
    if (failures === undefined || failures.available(now) >= 1) return undefined;
    return {
      reason: `${this.limits.failedAuthPerMinute} failed authentications from this address within a minute (failedAuthPerMinute)`,
      seconds: Math.max(1, Math.ceil((1 - failures.available(now)) / failures.rate)),
    };
  }

  /** Addresses tracked now (for tests and metrics). */
  get size(): number {
    return this.entries.size;
  }

  /** Stops the sweep timer. */
  close(): void {
    clearInterval(this.sweeper);
  }

  /** Banned, or out of failed-authentication budget: the refusal (audited, throttled); else 'ok'. */
  private blocked(entry: Entry, key: string, ip: string, now: number, context: GuardContext): Admission {
    if (entry.bannedUntil > now) {
      this.audit.recordThrottled(`access_denied|${key}`, { event: 'access_denied', address: ip, ...context, code: 'rate_limited', reason: 'address banned' });
      return 'banned';
    }
    if (entry.bannedUntil !== 0) entry.bannedUntil = 0;
    if (entry.failures !== undefined && entry.failures.available(now) < 1) {
      return this.overLimit(entry, key, ip, now, {
        ...context,
        reason: `over ${this.limits.failedAuthPerMinute} failed authentications a minute`,
      });
    }
    return 'ok';
  }

  private overLimit(entry: Entry, key: string, ip: string, now: number, context: GuardContext): Admission {
    this.audit.recordThrottled(`rate_limited|${key}`, { event: 'rate_limited', address: ip, ...context });
    return this.violation(entry, ip, now, context) ? 'banned' : 'rate_limited';
  }

  private violation(entry: Entry, ip: string, now: number, context: GuardContext): boolean {
    if (this.isExempt(ip)) return false;
    this.rollWindow(entry, now);
    entry.violations++;
    const { banAfterViolations } = this.limits;
    if (banAfterViolations === 0 || entry.violations < banAfterViolations || entry.bannedUntil > now) return false;
    this.startBan(entry, ip, now, context, `${banAfterViolations} violations within ${this.windowMs === 60_000 ? 'a minute' : `${this.windowMs / 1000} s`} (last: ${context.reason ?? 'over a limit'})`);
    return true;
  }

  private startBan(entry: Entry, ip: string, now: number, context: GuardContext, reason: string): void {
    const { banSeconds } = this.limits;
    entry.bannedUntil = now + banSeconds * 1000;
    entry.banReason = reason;
    entry.violations = 0;
    this.audit.record({
      event: 'address_banned',
      address: ip,
      correlation_id: context.correlation_id,
      node_id: context.node_id,
      reason,
      until: new Date(this.wallClock() + banSeconds * 1000).toISOString(),
    });
  }

  private rollWindow(entry: Entry, now: number): void {
    if (now - entry.windowStart < this.windowMs) return;
    entry.windowStart = now;
    entry.violations = 0;
    entry.failuresInWindow = 0;
  }

  /** The entry of `key`, made if new, moved to the back (most recently seen). */
  private touch(key: string, now: number): Entry {
    let entry = this.entries.get(key);
    if (entry === undefined) {
      entry = this.newEntry(now);
      if (this.entries.size >= this.maxAddresses) this.entries.delete(this.entries.keys().next().value as string);
    } else {
      this.entries.delete(key);
    }
    entry.lastSeen = now;
    this.entries.set(key, entry);
    return entry;
  }

  private newEntry(now: number): Entry {
    const { connectionsPerSecond, connectionBurst, failedAuthPerMinute } = this.limits;
    return {
      connections: connectionsPerSecond > 0 ? new TokenBucket(connectionsPerSecond, Math.max(1, connectionBurst), now) : undefined,
      failures: failedAuthPerMinute > 0 ? new TokenBucket(failedAuthPerMinute / 60, Math.max(1, failedAuthPerMinute), now) : undefined,
      windowStart: now,
      violations: 0,
      failuresInWindow: 0,
      bannedUntil: 0,
      banReason: '',
      lastSeen: now,
      probation: 0,
    };
  }

  private isExempt(ip: string): boolean {
    const { exempt } = this.limits;
    return exempt !== undefined && !exempt.allowsAll && exempt.allows(ip);
  }

  /** Drops entries idle long enough to start afresh, unless banned. */
  private sweep(): void {
    const now = this.clock();
    for (const [key, entry] of this.entries) {
      if (now - entry.lastSeen > this.idleMs && entry.bannedUntil <= now && entry.probation === 0) this.entries.delete(key);
    }
  }
}
