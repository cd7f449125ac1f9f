// authenticateNode with a real TokenAuthority (random secret): the mutual-TLS rule that a
// client certificate must name the registration token's `sub`, and that nothing changes
// without a certificate or without a `sub`.
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { MusterError } from '../../../protocol/errors.js';
import type { EnvelopeOf } from '../../../protocol/messages.js';
import { authenticateNode } from '../../../supervisor/nodes/node-authenticator.js';
import { TokenAuthority } from '../../../supervisor/tokens/tokens.js';
import { sampleMessages } from '../../protocol/sample-messages.js';

const HOST = 'runner-01.example.test';
const SESSION_TTL = 3600;
const tokens = new TokenAuthority(randomBytes(32));

/** A first registration (no `resume`) from `HOST` with `authToken`. */
function register(authToken: string): EnvelopeOf<'RegisterNode'> {
  const message = sampleMessages().RegisterNode;
  expect(message.data.node_info.hostname).toBe(HOST);
  message.data.auth_token = authToken;
  delete message.data.resume;
  return message;
}

const pinnedToken = (): Promise<string> => tokens.mintRegistrationToken({ ttlSeconds: 60, sub: HOST });

async function refusal(promise: Promise<unknown>): Promise<MusterError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(MusterError);
    return err as MusterError;
  }
  throw new Error('expected the registration to be refused');
}

describe('authenticateNode with a client certificate', () => {
  it("accepts a certificate whose CN or a DNS SAN is the registration token's sub", async () => {
    const message = register(await pinnedToken());
    for (const peerNames of [[HOST], ['runner-01', HOST], ['something-else', HOST, 'more']]) {
      const result = await authenticateNode(tokens, SESSION_TTL, message, peerNames);
      expect(result.registration.resumed).toBe(false);
      expect(result.registration.info.hostname).toBe(HOST);
    }
  });

  it("refuses with forbidden a certificate that does not name the token's sub", async () => {
    const message = register(await pinnedToken());
    for (const peerNames of [['runner-02.example.test'], ['runner-01', 'RUNNER-01.example.test.evil']]) {
      const err = await refusal(authenticateNode(tokens, SESSION_TTL, message, peerNames));
      expect(err.code).toBe('forbidden');
      expect(err.fatal).toBe(true);
    }
  });

  it('needs no certificate match without a certificate, or when the token has no sub', async () => {
    const pinned = register(await pinnedToken());
    await expect(authenticateNode(tokens, SESSION_TTL, pinned, [])).resolves.toBeDefined();

    const unpinned = register(await tokens.mintRegistrationToken({ ttlSeconds: 60 }));
    await expect(authenticateNode(tokens, SESSION_TTL, unpinned, ['runner-99'])).resolves.toBeDefined();
  });

  it('reports a bad token as such before looking at the certificate', async () => {
    const other = new TokenAuthority(randomBytes(32));
    const message = register(await other.mintRegistrationToken({ ttlSeconds: 60, sub: HOST }));
    const err = await refusal(authenticateNode(tokens, SESSION_TTL, message, ['runner-02.example.test']));
    expect(err.code).toBe('auth_failed');
  });

  it('resumes with a session token, whose sub is the node id, over a certificate for the host', async () => {
    const first = await authenticateNode(tokens, SESSION_TTL, register(await pinnedToken()), [HOST]);
    const nodeId = first.registration.nodeId;
    const message = register(first.session.token);
    message.data.resume = { node_id: nodeId, running_jobs: [], unacked_results: [] };
    const again = await authenticateNode(tokens, SESSION_TTL, message, [HOST]);
    expect(again.registration).toMatchObject({ nodeId, resumed: true });
  });
});
