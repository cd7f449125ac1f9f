// Version negotiation (PROTOCOL.md section 3, `RegisterAck`, and section 8) over real TCP against a
// real plane: the highest version in common is agreed, none in common is `unsupported_version`
// (fatal, naming the plane's versions), a version 1 session's RegisterAck carries none of the
// version 2 fields, and a wire feature not agreed is refused as the protocol says (deflate:
// deflate.test.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeView } from '../../../supervisor/admin/wire-types.js';
import { offerableFeatures } from '../../../supervisor/nodes/protocol-versions.js';
import { registerNodeMessage } from '../node-client.js';
import { startSecurityPlane, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
beforeAll(async () => {
  p = await startSecurityPlane();
});
afterAll(async () => p?.stop());

const V2_FIELDS = ['wire_features', 'compress_min_bytes', 'artifact_window_bytes'];

describe('protocol versions', () => {
  it.each([
    ['absent', undefined, 1],
    ['[1]', [1], 1],
    ['[1, 2]', [1, 2], 2],
    ['[2]', [2], 2],
    ['[2, 3, 1]', [2, 3, 1], 2],
  ])('%s agrees on %j, version %i', async (_name, versions, agreed) => {
    const c = await p.client();
    const ack = await c.register({ token: await p.registrationToken(), ...(versions === undefined ? {} : { protocolVersions: versions }) });
    expect(ack.data.protocol_version).toBe(agreed);
    const extra = V2_FIELDS.filter((f) => f in ack.data);
    if (agreed === 1) expect(extra).toEqual([]);
    else expect(ack.data).toMatchObject({ wire_features: [], compress_min_bytes: 1024, artifact_window_bytes: 4 * 1024 * 1024 });
    const nodes = (await p.http('GET', '/v1/nodes', await p.apiToken('viewer'))).json as NodeView[];
    expect(nodes.find((n) => n.node_id === c.nodeId)?.protocol_version).toBe(agreed);
  });

  it.each([
    ['[3]', [3]],
    ['[]', []],
  ])('%s has none in common: unsupported_version, fatal, naming the versions spoken', async (_name, versions) => {
    const c = await p.client();
    c.send({ type: 'RegisterNode', id: 'reg', data: { ...(await registerData(p)), protocol_versions: versions } });
    const { message } = await c.next('Error');
    expect(message.data).toMatchObject({ code: 'unsupported_version', fatal: true });
    expect(message.data.message).toContain('speaks 1, 2');
    await c.closedWithin();
  });

  it('turns on only the offered features it builds (deflate, batch and artifacts on TCP), ignoring names it does not know', async () => {
    const c = await p.client();
    const ack = await c.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: ['deflate', 'batch', 'artifacts', 'teleport'] });
    expect(ack.data.wire_features).toEqual(['deflate', 'batch', 'artifacts']);
    // Artifact messages without the feature: below; a Batch without batch: batch.test.ts; a compressed frame without deflate: deflate.test.ts.
  });

  it('offers artifacts on every transport, encrypted or not, when the plane keeps them', () => {
    for (const t of ['tcp', 'tls', 'unix', 'ws', 'wss', 'grpc', 'grpcs']) {
      expect([...offerableFeatures(t, true, { artifacts: true })], t).toEqual(['batch', 'artifacts']);
      expect([...offerableFeatures(t, true)], t).toEqual(['batch']);
    }
  });

  it.each([
    ['a version 1 session', {}],
    ['a version 2 session that did not offer artifacts', { protocolVersions: [1, 2], wireFeatures: ['deflate'] }],
  ])('answers artifact messages on %s with unknown_type, before looking at their fields', async (_name, o) => {
    const c = await p.client();
    await c.register({ token: await p.registrationToken(), ...o });
    for (const [i, type] of ['ArtifactStart', 'ArtifactChunk', 'ArtifactEnd'].entries()) {
      c.send({ type, id: `a-${i}`, data: {} });
      expect((await c.next('Error')).message).toMatchObject({ reply_to: `a-${i}`, data: { code: 'unknown_type', fatal: false } });
    }
  });
});

/** A valid RegisterNode's data with a fresh registration token. */
async function registerData(plane: SecurityPlane): Promise<Record<string, unknown>> {
  return registerNodeMessage({ token: await plane.registrationToken() }).data as unknown as Record<string, unknown>;
}
