// A host that made a few bad calls does not lock out good ones: by default failed
// authentications from loopback are audited but neither spend a budget nor ban it
// (banExemptCidrs); and where an address is refused, even a valid admin token hears why and
// for how long.
import { afterEach, expect, it } from 'vitest';
import { DEFAULTS } from '../../../supervisor/config.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { registerNodeMessage } from '../node-client.js';
import { refusedAtOnce, startSecurityPlane, type SecurityPlane } from '../security-plane.js';

let plane: SecurityPlane | undefined;

afterEach(async () => {
  await plane?.stop();
  plane = undefined;
});

/** A well-formed token signed with another secret: auth_failed, and a failed authentication. */
const badToken = (): Promise<string> =>
  new TokenAuthority(new TextEncoder().encode('another-secret-another-secret-0123456789')).mintRegistrationToken({ ttlSeconds: 60 });

it('by default, bad tokens from loopback neither exhaust its budget nor ban it', async () => {
  expect(DEFAULTS.banExemptCidrs).toBe('127.0.0.0/8,::1/128');
  plane = await startSecurityPlane({ banExemptCidrs: DEFAULTS.banExemptCidrs, failedAuthPerMinute: 3, banAfterViolations: 2 });
  for (let i = 0; i < 10; i++) expect((await plane.http('GET', '/v1/nodes', 'not-a-token')).status).toBe(401);
  for (let i = 0; i < 5; i++) {
    const c = await plane.client();
    c.send(registerNodeMessage({ token: await badToken() }));
    expect((await c.next('Error')).message.data.code).toBe('auth_failed');
    await c.closedWithin();
  }
  expect((await plane.http('GET', '/v1/nodes', await plane.apiToken('admin'))).status).toBe(200);
  const c = await plane.client();
  c.send(registerNodeMessage({ token: await plane.registrationToken() }));
  expect((await c.next('RegisterAck')).message.type).toBe('RegisterAck');
});

it('a banned address is told why and for how long, even with a valid admin token', async () => {
  plane = await startSecurityPlane({ failedAuthPerMinute: 3, banAfterViolations: 2, banSeconds: 120 });
  for (let i = 0; i < 3; i++) expect((await plane.http('GET', '/v1/nodes', 'not-a-token')).status).toBe(401);

  const overBudget = await plane.http('GET', '/v1/nodes', await plane.apiToken('admin'));
  expect(overBudget.status).toBe(429);
  expect(overBudget.json).toMatchObject({
    error: { code: 'rate_limited', message: expect.stringMatching(/^3 failed authentications from this address within a minute \(failedAuthPerMinute\); refused for \d+ s more/) as unknown },
  });
  expect(Number(overBudget.headers.get('retry-after'))).toBeGreaterThan(0);

  // The second violation within the minute bans the address.
  await refusedAtOnce(await plane.client());
  const banned = await plane.http('GET', '/v1/nodes', await plane.apiToken('admin'));
  expect(banned.status).toBe(429);
  const message = (banned.json as { error: { message: string } }).error.message;
  expect(message).toMatch(/^this address is banned: 2 violations within a minute \(last: .+\); refused for (\d+) s more, whatever the token$/);
  expect(Number(/refused for (\d+) s/.exec(message)?.[1])).toBeGreaterThan(100);
  expect(Number(banned.headers.get('retry-after'))).toBeGreaterThan(100);
});
