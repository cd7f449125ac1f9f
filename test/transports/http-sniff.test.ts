// HTTP on a stream transport, over real sockets: an HTTP client that reached a node port reads
// one clear HTTP 400, and a node that dialled an HTTP server is told so instead of a frame error.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import '../../transports/builtin.js';
import { HttpPeerError } from '../../transports/http-sniff.js';
import { transportFor, type TransportServer } from '../../transports/transport.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';
import { RecordingSink } from './recording-sink.js';

const LIMITS = { maxFrameBytes: 64 * 1024, maxSendBufferBytes: 64 * 1024 };

let cleanup: (() => Promise<void>) | undefined;

afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

it('a node listener answers an HTTP request with a 400 that says what it is', async () => {
  const sinks: RecordingSink[] = [];
  const server: TransportServer = await transportFor(new URL('tcp://127.0.0.1:0')).listen(new URL('tcp://127.0.0.1:0'), {
    ...LIMITS,
    httpNotice: 'This is a Muster node port; the admin API is at http://127.0.0.1:7480.',
    onConnection: (conn) => {
      const sink = new RecordingSink();
      sinks.push(sink);
      conn.start(sink);
    },
  });
  cleanup = () => server.close();
  const res = await fetch(server.url.replace(/^tcp:/, 'http:') + '/v1/jobs');
  expect(res.status).toBe(400);
  expect(await res.text()).toBe('This is a Muster node port; the admin API is at http://127.0.0.1:7480.\n');
  // Not a frame error for the owner: the connection just closed.
  await sinks[0]!.until(() => sinks[0]!.closes.length === 1);
  expect(sinks[0]!.errors).toEqual([]);
});

it("the plane's node port names the admin API to an HTTP client", async () => {
  const plane: SecurityPlane = await startSecurityPlane();
  cleanup = () => plane.stop();
  const res = await fetch(plane.tcpUrl.replace(/^tcp:/, 'http:') + '/');
  expect(res.status).toBe(400);
  expect(await res.text()).toMatch(/^This is a Muster node port: .* the admin API is at http:\/\/127\.0\.0\.1:\d+\.\n$/);
});

it('a dialled HTTP server is reported as one, not as an oversize frame', async () => {
  const server = http.createServer((_req, res) => res.end('hello'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  };
  const url = new URL(`tcp://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const conn = await transportFor(url).dial(url, { ...LIMITS, connectTimeoutMs: 5_000 });
  const sink = new RecordingSink();
  conn.start(sink);
  conn.send(0x01, Buffer.from('{}'));
  await sink.until(() => sink.errors.length > 0);
  expect(sink.errors[0]).toBeInstanceOf(HttpPeerError);
  expect(sink.errors[0]!.message).toMatch(/^this looks like an HTTP server: the node listener is on 7420/);
  await conn.close();
});
