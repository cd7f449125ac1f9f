// `muster ui` against a real plane: the link it prints opens the visualizer, and the token in
// its fragment is a viewer token minted (and recorded) by the plane, or the one given.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uiLink } from '../../cli/ui-command.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';

let p: SecurityPlane;

beforeAll(async () => {
  // No secret in the settings: the plane writes <dataDir>/secret, which the CLI reads to reach its API.
  p = await startSecurityPlane({ jwtSecret: '' });
});

afterAll(() => p.stop());

function tokenOf(link: string): string {
  const url = new URL(link);
  expect(url.pathname).toBe('/ui/');
  const token = /^#token=(.+)$/.exec(url.hash)?.[1];
  expect(token).toBeDefined();
  return decodeURIComponent(token!);
}

describe('muster ui', () => {
  it('mints a viewer token through the plane and prints a link with it in the fragment', async () => {
    const link = await uiLink({ api: p.plane.httpUrl, dataDir: p.dataDir, role: 'viewer', ttl: '8h' });
    expect(link.startsWith(`${p.plane.httpUrl}/ui/#token=`)).toBe(true);
    const token = tokenOf(link);
    expect((await p.http('GET', '/v1/nodes', token)).status).toBe(200);
    // A viewer's: it may look, not drain.
    expect((await p.http('POST', '/v1/nodes/n-1/drain', token)).status).toBe(403);
    const page = await fetch(`${p.plane.httpUrl}/ui/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<script type="module" src="app.js">');
    // Recorded by the plane, so it can be listed and revoked.
    const admin = await p.apiToken('admin');
    const listed = (await p.http('GET', '/v1/tokens', admin)).json as Array<{ sub?: string; role: string }>;
    expect(listed.some((t) => t.sub === 'muster-ui' && t.role === 'viewer')).toBe(true);
  });

  it('puts a given token in the link as it is, and refuses a node token', async () => {
    const operator = await p.apiToken('operator');
    expect(tokenOf(await uiLink({ api: `${p.plane.httpUrl}/`, token: operator, role: 'viewer', ttl: '8h' }))).toBe(operator);
    await expect(uiLink({ api: p.plane.httpUrl, token: await p.registrationToken(), role: 'viewer', ttl: '8h' })).rejects.toThrow(/node registration token/);
  });
});
