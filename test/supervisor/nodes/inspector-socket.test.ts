// The inspector's WebSocket: events sent before it is connected are held (at most HELD_EVENTS,
// the oldest dropped) and delivered in order once it is; an inspector that stops reading costs
// no more than MAX_BUFFERED_BYTES; after `stop()` nothing more is sent or dialled.
import type { AddressInfo } from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import type { StatelyInspectionEvent } from '@statelyai/inspect';
import { HELD_EVENTS, InspectorSocket, MAX_BUFFERED_BYTES } from '../../../supervisor/nodes/inspector-socket.js';

const servers: WebSocketServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

async function inspector(): Promise<{ url: string; heard: string[]; next(count: number): Promise<void> }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const heard: string[] = [];
  const waiters: (() => void)[] = [];
  server.on('connection', (ws) =>
    ws.on('message', (data) => {
      heard.push(String(data));
      for (const w of waiters.splice(0)) w();
    }),
  );
  const next = async (count: number): Promise<void> => {
    while (heard.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
  };
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, heard, next };
}

const event = (n: number): StatelyInspectionEvent =>
  ({ type: '@xstate.event', sessionId: 'x:1', event: { type: `e${n}` }, sourceId: undefined, rootId: 'x:1', createdAt: '0', id: String(n), _version: '0.7.2' }) as StatelyInspectionEvent;

it('holds the events sent before it is connected, the last HELD_EVENTS, and delivers them in order', async () => {
  const server = await inspector();
  const socket = new InspectorSocket(server.url);
  for (let n = 0; n < HELD_EVENTS + 3; n++) socket.send(event(n));
  socket.start();
  await server.next(HELD_EVENTS);
  socket.send(event(HELD_EVENTS + 3));
  await server.next(HELD_EVENTS + 1);
  const ids = server.heard.map((m) => (JSON.parse(m) as { id: string }).id);
  expect(ids).toEqual(Array.from({ length: HELD_EVENTS + 1 }, (_, i) => String(i + 3)));
  socket.stop();
});

it('sends nothing after stop', async () => {
  const server = await inspector();
  const socket = new InspectorSocket(server.url);
  socket.start();
  socket.send(event(1));
  await server.next(1);
  socket.stop();
  socket.send(event(2));
  socket.start();
  // The server's own close: once it has seen the client go, nothing more can come.
  await new Promise<void>((resolve) => [...servers[0]!.clients][0]?.once('close', () => resolve()) ?? resolve());
  expect(server.heard).toHaveLength(1);
});

it('drops events while an inspector that stopped reading has MAX_BUFFERED_BYTES unread', async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  servers.push(server);
  await new Promise<void>((resolve) => server.once('listening', resolve));
  const connected = new Promise<void>((resolve) =>
    server.on('connection', (_ws, req) => {
      // It reads nothing from now on: the kernel's buffers fill, then the client's.
      req.socket.pause();
      resolve();
    }),
  );
  const socket = new InspectorSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
  socket.start();
  await connected;
  // Open once the handshake's answer is in; then far more than the kernel and the limit hold.
  const big = { ...event(0), event: { type: 'x'.repeat(64 * 1024) } } as StatelyInspectionEvent;
  while (socket.bufferedAmount === 0) {
    socket.send(big);
    await new Promise((resolve) => setImmediate(resolve));
  }
  for (let n = 0; n < 2 * (MAX_BUFFERED_BYTES / (64 * 1024)) + 400; n++) socket.send(big);
  expect(socket.bufferedAmount).toBeGreaterThan(MAX_BUFFERED_BYTES / 2);
  expect(socket.bufferedAmount).toBeLessThanOrEqual(MAX_BUFFERED_BYTES + 70 * 1024);
  socket.stop();
  for (const client of server.clients) client.terminate();
});
