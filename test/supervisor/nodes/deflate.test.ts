// The `deflate` wire feature (PROTOCOL.md section 8) over real TCP against a real plane: agreed
// only when offered on a version 2 session, then used both ways; a compression bomb costs the
// plane no more than the frame limit and gets `frame_too_large`, a body that does not inflate
// `malformed_frame`, both fatal, while a bystander node stays served; a compressed frame on a
// session that did not agree is `unsupported_codec`. Where it is offered is a unit table.
import { deflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODEC_JSON, DEFLATE_BIT, encodeBody } from '../../../protocol/codec.js';
import { toNewJob } from '../../../supervisor/admin/job-request.js';
import { offerableFeatures } from '../../../supervisor/nodes/protocol-versions.js';
import { inflateBody } from '../../../transports/deflate-body.js';
import type { NodeClient } from '../node-client.js';
import { startSecurityPlane, type SecurityPlane } from '../security-plane.js';

let p: SecurityPlane;
let bystander: NodeClient;
beforeAll(async () => {
  p = await startSecurityPlane();
  bystander = await p.client();
  await bystander.register({ token: await p.registrationToken(), hostname: 'bystander.example.test', protocolVersions: [1, 2], wireFeatures: ['deflate'] });
});
afterAll(async () => p?.stop());

async function deflating(tags: Record<string, string> = {}): Promise<NodeClient> {
  const c = await p.client();
  const ack = await c.register({ token: await p.registrationToken(), protocolVersions: [1, 2], wireFeatures: ['deflate'], tags });
  expect(ack.data).toMatchObject({ protocol_version: 2, wire_features: ['deflate'], compress_min_bytes: 1024 });
  return c;
}

/** The bystander is still registered and answered: an unknown type with an id gets its Error. */
async function bystanderServed(): Promise<void> {
  bystander.send({ type: 'Telemetry', id: 'still-there', data: {} });
  expect((await bystander.next('Error')).message).toMatchObject({ reply_to: 'still-there', data: { code: 'unknown_type' } });
}

describe('deflate', () => {
  it('is turned on for a version 2 node that offers it, and then used both ways', async () => {
    const tags = { deflate: 'both-ways' };
    const c = await deflating(tags);
    // A message from the node, compressed: the plane inflates and reads it (an unknown type answers its id).
    c.sendFrame(CODEC_JSON | DEFLATE_BIT, deflateRawSync(encodeBody(CODEC_JSON, { type: 'Telemetry', id: 'zipped', data: { pad: 'x'.repeat(5000) } })));
    expect((await c.next('Error')).message).toMatchObject({ reply_to: 'zipped', data: { code: 'unknown_type', fatal: false } });
    // A large message from the plane comes compressed, and inflates to what the plane meant.
    const job = await p.plane.api.submitJob(toNewJob({ job: { command: ['true'], environment: { BIG: 'y'.repeat(20_000) } }, selector: { tags } }, p.plane.api.defaults));
    const assignment = await c.next('JobAssignment');
    expect(assignment.message.data).toMatchObject({ job_id: job.job_id, job: { environment: { BIG: 'y'.repeat(20_000) } } });
    expect(assignment.codecByte & DEFLATE_BIT).toBe(DEFLATE_BIT);
    expect(assignment.frameBytes).toBeLessThan(2_000);
    // A small one is sent as it is.
    c.send({ type: 'Telemetry', id: 'small', data: {} });
    expect((await c.next('Error')).codecByte & DEFLATE_BIT).toBe(0);
  });

  it('answers a compression bomb with frame_too_large, inflating no further than the frame limit', async () => {
    const c = await deflating();
    // 64 MiB of zeros in about 64 KB: within max_frame_bytes on the wire, far past it inflated.
    const bomb = deflateRawSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const before = process.memoryUsage().rss;
    c.sendFrame(CODEC_JSON | DEFLATE_BIT, bomb);
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'frame_too_large', fatal: true });
    await c.closedWithin();
    // The plane runs in this process: it held at most the frame limit, not the 64 MiB.
    expect(process.memoryUsage().rss - before).toBeLessThan(32 * 1024 * 1024);
    await bystanderServed();
  });

  it('answers a body that does not inflate with malformed_frame', async () => {
    const c = await deflating();
    c.sendFrame(CODEC_JSON | DEFLATE_BIT, Uint8Array.from([0xff, 0xff, 0xff, 0x00, 0x13, 0x37]));
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'malformed_frame', fatal: true });
    await c.closedWithin();
    await bystanderServed();
  });

  it.each([
    ['a version 1 session', {}],
    ['a version 2 session that did not offer it', { protocolVersions: [1, 2] }],
  ])('refuses a compressed frame on %s: unsupported_codec, and nothing comes compressed', async (_name, o) => {
    const c = await p.client();
    const ack = await c.register({ token: await p.registrationToken(), ...o });
    expect(ack.data.wire_features ?? []).toEqual([]);
    c.sendFrame(CODEC_JSON | DEFLATE_BIT, deflateRawSync(encodeBody(CODEC_JSON, { type: 'Telemetry', id: 'z', data: {} })));
    expect((await c.next('Error')).message.data).toMatchObject({ code: 'unsupported_codec', fatal: true });
    await c.closedWithin();
  });

  it('is offered on TCP, TLS and Unix sockets without payload encryption only', () => {
    const deflating = (t: string, encrypted: boolean): boolean => offerableFeatures(t, encrypted).has('deflate');
    expect(deflating('tcp', false)).toBe(true);
    expect(deflating('tls', false)).toBe(true);
    expect(deflating('unix', false)).toBe(true);
    for (const t of ['ws', 'wss', 'grpc', 'grpcs']) expect(deflating(t, false), t).toBe(false);
    expect(deflating('tcp', true)).toBe(false);
    expect(() => inflateBody(deflateRawSync(Buffer.alloc(10)), 9)).toThrow(/inflates past 9 bytes/);
  });
});
