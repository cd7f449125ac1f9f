// The visualizer's shell: the token, the live feed (`GET /v1/events`: a snapshot, then deltas
// applied to one map of nodes), and a hash router over the fleet, node, jobs and job views.
// Each view gets the change of every delta and re-draws only what it touches.
import { adoptToken, setToken } from './api.js';
import { FleetView } from './fleet-view.js';
import { JobView, JobsView } from './jobs-view.js';
import { NodeView } from './node-view.js';
import { fleet } from './fleet-state.js';

/** @typedef {import('./fleet-state.js').FleetNode} FleetNode @typedef {import('./fleet-state.js').Change} Change */

/** @type {{mount(el: HTMLElement): void, update(change: Change): void, unmount(): void} | undefined} */
let current;
const viewEl = /** @type {HTMLElement} */ (document.getElementById('view'));
const statusEl = /** @type {HTMLElement} */ (document.getElementById('feed-status'));

/** @type {EventSource | undefined} */
let feed;

function connect() {
  feed?.close();
  statusEl.dataset.status = 'connecting';
  statusEl.textContent = 'connecting…';
  const source = new EventSource('/v1/events');
  feed = source;
  source.addEventListener('open', () => {
    statusEl.dataset.status = 'live';
    statusEl.textContent = 'live';
  });
  source.addEventListener('error', () => {
    // Closed for good (a refused token): the browser will not retry.
    const closed = source.readyState === EventSource.CLOSED;
    statusEl.dataset.status = closed ? 'refused' : 'connecting';
    statusEl.textContent = closed ? 'feed refused: is the token valid?' : 'reconnecting…';
  });
  source.addEventListener('snapshot', (event) => {
    const data = JSON.parse(/** @type {MessageEvent} */ (event).data);
    fleet.nodes = new Map(data.nodes.map((/** @type {FleetNode} */ n) => [n.node_id, n]));
    fleet.queue = data.queue;
    seen(data.seq);
    current?.update({ snapshot: true, nodes: [], jobs: [], queue: true });
  });
  source.addEventListener('delta', (event) => {
    const data = JSON.parse(/** @type {MessageEvent} */ (event).data);
    for (const node of data.nodes) fleet.nodes.set(node.node_id, node);
    for (const id of data.removed) fleet.nodes.delete(id);
    if (data.queue !== undefined) fleet.queue = data.queue;
    seen(data.seq);
    const ids = [...data.nodes.map((/** @type {FleetNode} */ n) => n.node_id), ...data.removed];
    current?.update({ snapshot: false, nodes: ids, jobs: data.jobs, queue: data.queue !== undefined });
  });
}

/** @param {number} seq */
function seen(seq) {
  fleet.seq = seq;
  document.body.dataset.seq = String(seq);
}

function route() {
  const [, kind = 'fleet', rawId = ''] = /^#\/([a-z]+)(?:\/(.*))?$/.exec(location.hash) ?? [];
  const id = decodeURIComponent(rawId);
  current?.unmount();
  current = kind === 'node' && id !== '' ? new NodeView(id) : kind === 'jobs' ? new JobsView() : kind === 'job' && id !== '' ? new JobView(id) : new FleetView();
  for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('active', a.getAttribute('data-nav') === (kind === 'job' ? 'jobs' : kind));
  viewEl.replaceChildren();
  current.mount(viewEl);
}

document.getElementById('token-form')?.addEventListener('submit', (event) => {
  event.preventDefault();
  const input = /** @type {HTMLInputElement} */ (document.getElementById('token-input'));
  if (input.value.trim() === '') return;
  setToken(input.value.trim());
  input.value = '';
  connect();
  route();
});

adoptToken();
window.addEventListener('hashchange', route);
connect();
route();
