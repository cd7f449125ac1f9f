// `npm run bench -- visualizer`: how soon the visualizer's fleet page (/ui in Debian's chromium,
// driven by playwright-core) shows a node's change, with a large fleet on one plane (its own
// process) and one node flapping every 100 ms beside it. Prints, over the samples, the time
// from the heartbeat that changes a node to its row in the page's DOM (stamped in the page:
// row-watch.ts), and the page's longest gap between two animation frames (how smooth it stays).
//
//   BENCH_VIS_NODES    registered nodes (default 10000)
//   BENCH_VIS_SAMPLES  changes timed (default 20)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CODEC_JSON, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { heartbeatFrame, mintApiToken, mintNodeToken, registerEnvelope } from './bench-node.js';
import { FrameSocket, type Envelope } from './frame-socket.js';
import { startPlane } from './processes.js';
import { summarize } from './quantiles.js';
import { rowShownAt, watchRows } from '../web/row-watch.js';

const NODES = Number(process.env.BENCH_VIS_NODES ?? 10_000);
const SAMPLES = Number(process.env.BENCH_VIS_SAMPLES ?? 20);
const BATCH = 500;

export async function runVisualizer(): Promise<void> {
  const plane = await startPlane({ MUSTER_HEARTBEAT_INTERVAL_MS: '120000' }, { logLevel: 'warn', fdLimit: 65_536 });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-bench-chromium-'));
  const sockets: FrameSocket[] = [];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const viewer = await mintApiToken(plane.dataDir, 'viewer');
    const token = await mintNodeToken(plane.dataDir);
    const ids: string[] = [];
    const started = performance.now();
    for (let from = 0; from < NODES; from += BATCH) {
      const acks = await Promise.all(
        Array.from({ length: Math.min(BATCH, NODES - from) }, async (_, k) => {
          const socket = await FrameSocket.open(plane.tcpUrl.hostname, Number(plane.tcpUrl.port));
          sockets.push(socket);
          const answer = socket.next((e: Envelope) => e.type === 'RegisterAck' || e.type === 'Error', 120_000);
          await socket.write(encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, registerEnvelope(token, { hostname: `vis-${from + k}` }))));
          return answer;
        }),
      );
      for (const ack of acks) {
        if (ack.type !== 'RegisterAck') throw new Error(`registration refused: ${JSON.stringify(ack.data)}`);
        ids.push(String(ack.data.node_id));
      }
    }
    console.log(`${NODES} nodes registered in ${Math.round(performance.now() - started)} ms`);

    const opened = performance.now();
    await page.goto(`${plane.httpUrl}/ui/#token=${encodeURIComponent(viewer)}`);
    await page.waitForSelector(`[data-count="ready"]:text-is("${NODES}")`, { timeout: 120_000 });
    console.log(`page open with every node shown in ${Math.round(performance.now() - opened)} ms`);

    await watchRows(page);
    // Frame gaps in the page from now on.
    await page.evaluate(`(() => { let last = performance.now(); window.__maxGap = 0;
      const tick = (t) => { window.__maxGap = Math.max(window.__maxGap, t - last); last = t; requestAnimationFrame(tick); };
      requestAnimationFrame(tick); })()`);
    // Node 0 flaps every 100 ms for the whole measurement.
    let busy = false;
    const flapper = setInterval(() => {
      busy = !busy;
      void sockets[0]!.write(heartbeatFrame(ids[0]!, CODEC_JSON, undefined, busy ? 'Busy' : 'Ready'));
    }, 100);
    const latencies: number[] = [];
    try {
      for (let i = 0; i < SAMPLES; i++) {
        const which = 1 + Math.floor(((i + 0.5) * (NODES - 1)) / SAMPLES);
        const sent = Date.now();
        await sockets[which]!.write(heartbeatFrame(ids[which]!, CODEC_JSON, undefined, 'Busy'));
        latencies.push((await rowShownAt(page, ids[which]!, 'busy', 30_000)) - sent);
      }
    } finally {
      clearInterval(flapper);
    }
    const gap = Number(await page.evaluate('window.__maxGap'));
    const s = summarize(latencies);
    console.log(
      `change → row shown, ${NODES} nodes, one flapping every 100 ms: p50 ${s.p50.toFixed(0)} ms, p99 ${s.p99.toFixed(0)} ms, max ${s.max.toFixed(0)} ms (${s.count} samples); longest frame gap ${gap.toFixed(0)} ms`,
    );
  } finally {
    await context.close();
    for (const socket of sockets) socket.close();
    fs.rmSync(profile, { recursive: true, force: true });
    await plane.stop();
  }
}
