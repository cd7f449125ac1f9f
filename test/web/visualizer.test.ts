// The visualizer in a real browser: playwright-core (pinned, 1.65.1) driving Debian's chromium
// (`/usr/bin/chromium`, installed by .ci/run; not the build Playwright was made against, hence
// the smoke test), against a real plane started in this process and nodes over real TCP.
// One browser launch for the file. A viewer opens /ui and watches a node register (`ready`),
// take a job (`busy`, the transition and its event listed) and give it back (its messages
// in and out listed, without their data), follows the job's
// log as it streams, is refused a drain, then drains it with an operator token, and sees a
// job wait in the queue with its reason. Then 2,000
// nodes register and the page still answers and shows a change; the time that takes is written
// to test-artifacts/visualizer-latency.json with the screenshots (a figure, not an assertion:
// this machine's load varies). VIS_NODES=10000 runs the large part with more nodes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CODEC_JSON, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { createLogger } from '../../observability/logger.js';
import { loadConfig } from '../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../supervisor/control-plane.js';
import { heartbeatFrame, registerEnvelope } from '../bench/bench-node.js';
import { FrameSocket, type Envelope } from '../bench/frame-socket.js';
import { FakeNode } from '../e2e/harness.js';
import { rowShownAt, watchRows } from './row-watch.js';
import { TCP_ONLY } from '../supervisor/tcp-only.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = fs.existsSync(CHROMIUM);
const ARTIFACTS = path.resolve('test-artifacts');
const MANY = Number(process.env.VIS_NODES ?? 2_000);
/** 100 nodes per loopback address, as the reconnect storm test does, under the per-address connection limits. */
const ADDRESSES = Math.max(20, Math.ceil(MANY / 100));
/** Generous: a loaded 2-core machine. What the page takes is measured and reported, not asserted. */
const SEEN_MS = 15_000;

if (!haveChromium) console.warn(`visualizer browser test skipped: ${CHROMIUM} is absent (.ci/run installs Debian's chromium)`);

describe.skipIf(!haveChromium)('the visualizer in chromium', () => {
  let plane: ControlPlane;
  let dataDir: string;
  let profileDir: string;
  let context: BrowserContext;
  let page: Page;
  let viewer: string;
  let operator: string;
  let node: FakeNode;
  const sockets: FrameSocket[] = [];
  const figures: Record<string, number> = {};

  beforeAll(async () => {
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-visualizer-'));
    profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'muster-chromium-'));
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir,
        ...TCP_ONLY,
        http: '127.0.0.1:0',
        // The raw nodes send no heartbeats: none may expire while the test runs.
        heartbeatIntervalMs: 120_000,
        registerTimeoutMs: 60_000,
      },
    });
    plane = await startControlPlane(config, createLogger({ level: 'silent' }));
    viewer = await plane.tokens.mintApiToken({ role: 'viewer', ttlSeconds: 600 });
    operator = await plane.tokens.mintApiToken({ role: 'operator', ttlSeconds: 600 });
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    page = context.pages()[0] ?? (await context.newPage());
  }, 60_000);

  afterAll(async () => {
    fs.writeFileSync(path.join(ARTIFACTS, 'visualizer-latency.json'), `${JSON.stringify({ nodes: MANY, ...figures }, null, 2)}\n`);
    await context?.close();
    node?.drop();
    for (const s of sockets) s.close();
    await plane?.shutdown();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(profileDir, { recursive: true, force: true });
  }, 60_000);

  /** Submits a job with the operator token; its id. */
  async function submit(body: unknown): Promise<string> {
    const res = await fetch(`${plane.httpUrl}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${operator}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(201);
    return ((await res.json()) as { job_id: string }).job_id;
  }

  it('starts Debian chromium and renders a page (smoke)', async () => {
    expect(String(await page.evaluate('navigator.userAgent'))).toMatch(/Chrome\/\d+/);
    await page.setContent('<p id="smoke">rendered</p>');
    expect(await page.textContent('#smoke')).toBe('rendered');
  });

  it('shows a node register, take a job and give it back, its log stream, and a drain (operator only)', async () => {
    await page.goto(`${plane.httpUrl}/ui/#token=${encodeURIComponent(viewer)}`);
    await page.waitForSelector('#feed-status[data-status="live"]', { timeout: SEEN_MS });
    // The token left the address bar.
    expect(page.url()).not.toContain(viewer);

    node = await FakeNode.connect(plane.nodeUrls[0]!);
    await node.register({ token: await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 }), tags: { pool: 'linux' } });
    const nodeId = node.nodeId!;
    await page.waitForSelector(`[data-node="${nodeId}"][data-state="ready"]`, { timeout: SEEN_MS });
    expect(await page.textContent('[data-count="ready"]')).toBe('1');
    await page.screenshot({ path: path.join(ARTIFACTS, 'fleet.png') });

    // A job that takes the node's one core: the node turns busy.
    const jobId = await submit({ job: { command: ['make', 'test'] } });
    await node.next('JobAssignment', (d) => d.job_id === jobId);
    node.send('JobAccepted', { job_id: jobId, attempt: 1 });
    await page.waitForSelector(`[data-node="${nodeId}"][data-state="busy"]`, { timeout: SEEN_MS });

    // Its page: the machine with `busy` lit, the transition and the event behind it, the job.
    await page.click(`[data-node="${nodeId}"] a`);
    await page.waitForSelector('#machine g.state.current[data-state-id="node.online.busy"]', { timeout: SEEN_MS });
    await page.waitForSelector('#transitions tr[data-from="ready"][data-to="busy"]', { timeout: SEEN_MS });
    expect(await page.textContent('#transitions tr[data-from="ready"][data-to="busy"] td:last-child')).toBe('job.assigned');
    expect(await page.textContent('#running-jobs')).toContain(jobId);
    await page.screenshot({ path: path.join(ARTIFACTS, 'node-busy.png'), fullPage: true });

    // The job's page: attempts, and the log as the node sends it.
    await page.click(`#running-jobs a`);
    await page.waitForSelector('#job-attempts tr[data-attempt="1"]', { timeout: SEEN_MS });
    node.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 0, data: 'compiling <b>not bold</b>\n' });
    await page.waitForSelector('#job-log:has-text("compiling")', { timeout: SEEN_MS });
    node.send('LogChunk', { job_id: jobId, attempt: 1, stream: 'stdout', seq: 1, data: 'all 42 tests passed\n' });
    await page.waitForSelector('#job-log:has-text("42 tests passed")', { timeout: SEEN_MS });
    // Data from the network is text, never markup.
    expect(await page.locator('#job-log b').count()).toBe(0);
    node.sendResult(jobId, 1);
    await page.waitForSelector('#log-end:has-text("ended: Completed")', { timeout: SEEN_MS });
    await page.screenshot({ path: path.join(ARTIFACTS, 'job.png'), fullPage: true });

    // Back to the node: ready again, both transitions listed.
    await page.goto(`${plane.httpUrl}/ui/#/node/${encodeURIComponent(nodeId)}`);
    await page.waitForSelector('#transitions tr[data-from="busy"][data-to="ready"]', { timeout: SEEN_MS });
    await page.waitForSelector('#machine g.state.current[data-state-id="node.online.ready"]', { timeout: SEEN_MS });
    // Its recent messages, both ways, by type and size: never their data (the log's text).
    for (const [direction, type] of [['out', 'RegisterAck'], ['out', 'JobAssignment'], ['in', 'JobAccepted'], ['in', 'LogChunk'], ['in', 'JobResult']]) {
      await page.waitForSelector(`#messages tr[data-direction="${direction}"][data-type="${type}"]`, { timeout: SEEN_MS });
    }
    expect(Number(await page.textContent('#messages tr[data-type="JobResult"] td:last-child'))).toBeGreaterThan(0);
    expect(await page.textContent('#messages')).not.toContain('compiling');

    // A viewer may not drain: the page says why. With an operator token it drains.
    await page.click('#drain');
    await page.waitForSelector('#action-error.error:has-text("needs an operator token")', { timeout: SEEN_MS });
    await page.fill('#token-input', operator);
    await page.click('#token-form button');
    await page.waitForSelector('#drain', { timeout: SEEN_MS });
    await page.click('#drain');
    await node.next('Drain');
    await page.waitForSelector('#machine g.state.current[data-state-id="node.online.draining"]', { timeout: SEEN_MS });
    await page.waitForSelector('#transitions tr[data-from="ready"][data-to="draining"]', { timeout: SEEN_MS });
    expect(await page.textContent('#transitions tr[data-from="ready"][data-to="draining"] td:last-child')).toBe('drain');
    await page.screenshot({ path: path.join(ARTIFACTS, 'node-draining.png'), fullPage: true });

    // The jobs view: a job no node takes (the only one drains) waits in the queue, and says why.
    await page.click('a[data-nav="jobs"]');
    await page.waitForSelector('#queue-counts td[data-priority="High"]:text-is("0")', { timeout: SEEN_MS });
    const waiting = await submit({ job: { command: ['true'] }, priority: 'High' });
    await page.waitForSelector('#queue-counts td[data-priority="High"]:text-is("1")', { timeout: SEEN_MS });
    await page.waitForSelector(`#queued-jobs tr[data-job="${waiting}"]`, { timeout: SEEN_MS });
    expect(await page.textContent(`#queued-jobs tr[data-job="${waiting}"] td:nth-child(3)`)).toMatch(/^(no_matching_node|matching_nodes_full)$/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'jobs.png'), fullPage: true });
    // Cancelled, it leaves the queue (and takes no node of the next test).
    const cancelled = await fetch(`${plane.httpUrl}/v1/jobs/${waiting}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${operator}` } });
    expect(cancelled.ok).toBe(true);
    await page.waitForSelector('#queue-counts td[data-priority="High"]:text-is("0")', { timeout: SEEN_MS });
  }, 120_000);

  it(`still answers with ${MANY} nodes, and shows a change of one of them`, async () => {
    await page.goto(`${plane.httpUrl}/ui/#token=${encodeURIComponent(viewer)}`);
    await page.waitForSelector('#feed-status[data-status="live"]', { timeout: SEEN_MS });
    const token = await plane.tokens.mintRegistrationToken({ ttlSeconds: 600 });
    const port = Number(new URL(plane.nodeUrls[0]!).port);
    const started = performance.now();
    const acks = await Promise.all(
      Array.from({ length: MANY }, async (_, i) => {
        const socket = await FrameSocket.open('127.0.0.1', port, true, `127.0.0.${2 + (i % ADDRESSES)}`);
        sockets.push(socket);
        const answer = socket.next((e: Envelope) => e.type === 'RegisterAck' || e.type === 'Error', 120_000);
        await socket.write(encodeFrame(CODEC_JSON, encodeBody(CODEC_JSON, registerEnvelope(token, { hostname: `many-${i}` }))));
        return answer;
      }),
    );
    expect(acks.filter((a) => a.type !== 'RegisterAck')).toEqual([]);
    const registered = performance.now();
    figures.register_ms = Math.round(registered - started);
    // Every one of them shown (the first node is draining).
    await page.waitForSelector(`[data-count="ready"]:text-is("${MANY}")`, { timeout: 60_000 });
    figures.all_shown_after_last_ack_ms = Math.round(performance.now() - registered);

    // One node turns busy: the time from its heartbeat to its row in the page's DOM.
    await watchRows(page);
    const which = MANY - 7;
    const nodeId = String(acks[which]!.data.node_id);
    const changed = Date.now();
    await sockets[which]!.write(heartbeatFrame(nodeId, CODEC_JSON, undefined, 'Busy'));
    figures.one_change_ms = Math.round((await rowShownAt(page, nodeId, 'busy', SEEN_MS)) - changed);
    await page.waitForSelector(`#node-${nodeId}[data-state="busy"]`, { state: 'attached', timeout: SEEN_MS });
    expect(await page.textContent('[data-count="busy"]')).toBe('1');

    // And the page still answers: a node's page opens, with its machine.
    const opened = performance.now();
    await page.goto(`${plane.httpUrl}/ui/#/node/${encodeURIComponent(nodeId)}`);
    await page.waitForSelector('#machine g.state.current[data-state-id="node.online.busy"]', { timeout: SEEN_MS });
    figures.node_page_ms = Math.round(performance.now() - opened);
    await page.goto(`${plane.httpUrl}/ui/#/fleet`);
    await page.waitForSelector(`[data-count="ready"]:text-is("${MANY - 1}")`, { timeout: 60_000 });
    await page.screenshot({ path: path.join(ARTIFACTS, `fleet-${MANY}.png`) });
    console.info(`visualizer with ${MANY} nodes: ${JSON.stringify(figures)}`);
  }, 180_000);
});
