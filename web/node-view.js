// One node: what it is, its state machine drawn from the real definition (GET /v1/machines/node,
// laid out by graph-layout.js) with its current state lit, its last transitions and the event
// behind each, its last messages in and out (type, id, size: never their data), its running
// jobs, and drain / undrain (an operator token: a viewer's is refused,
// and the page says so).
import { api } from './api.js';
import { ago, el, link, svg } from './dom.js';
import { fleet } from './fleet-state.js';
import { layoutMachine } from './graph-layout.js';

/** @type {Promise<any> | undefined} */
let graphOnce;

export class NodeView {
  /** @param {string} id */
  constructor(id) {
    this.id = id;
    this.root = el('div', { class: 'node-page' });
    this.errorEl = el('p', { class: 'error', id: 'action-error', role: 'alert', hidden: true });
    /** @type {any} */
    this.graph = undefined;
    this.pending = false;
    this.stopped = false;
  }

  /** @param {HTMLElement} root */
  mount(root) {
    root.append(el('p', {}, [el('a', { href: '#/fleet' }, ['← fleet'])]), this.root);
    graphOnce ??= api('GET', '/v1/machines/node');
    graphOnce.then(
      (graph) => {
        this.graph = graph;
        void this.load();
      },
      (err) => this.root.replaceChildren(el('p', { class: 'error' }, [`machine graph: ${err.message}`])),
    );
  }

  unmount() {
    this.stopped = true;
  }

  /** @param {import('./fleet-state.js').Change} change */
  update(change) {
    if (change.snapshot || change.nodes.includes(this.id)) void this.load();
  }

  /** Reads the node again; changes meanwhile make one more read, not one each. */
  async load() {
    if (this.pending || this.graph === undefined) {
      this.again = true;
      return;
    }
    this.pending = true;
    try {
      do {
        this.again = false;
        let node;
        try {
          node = await api('GET', `/v1/nodes/${encodeURIComponent(this.id)}`);
        } catch (err) {
          node = fleet.nodes.get(this.id);
          if (node === undefined) {
            this.root.replaceChildren(el('p', { class: 'error' }, [`node ${this.id}: ${err instanceof Error ? err.message : String(err)}`]));
            continue;
          }
        }
        if (!this.stopped) this.draw(node);
      } while (this.again && !this.stopped);
    } finally {
      this.pending = false;
    }
  }

  /** @param {any} node */
  draw(node) {
    const transitions = [...(node.transitions ?? [])].reverse();
    this.root.replaceChildren(
      el('h2', {}, [node.name ?? node.hostname, ' ', el('span', { class: `badge state-${node.state}`, id: 'node-state' }, [node.state])]),
      el('dl', { class: 'facts' }, [
        ...fact('node id', node.node_id),
        ...fact('hostname', node.hostname),
        ...fact('owner replica', node.owner),
        ...fact('transport', node.transport),
        ...fact('connected', node.connected ? 'yes' : 'no'),
        ...fact('last heard', ago(node.last_heartbeat)),
        ...fact('tags', Object.entries(node.tags).map(([k, v]) => `${k}=${v}`).join(', ') || '—'),
      ]),
      el('div', { class: 'actions' }, [
        el('button', { type: 'button', id: 'drain', onclick: () => this.act('drain') }, ['Drain']),
        el('button', { type: 'button', id: 'undrain', onclick: () => this.act('undrain') }, ['Undrain']),
      ]),
      this.errorEl,
      el('h3', {}, ['State machine']),
      drawMachine(this.graph, node.state),
      el('h3', {}, ['Recent transitions']),
      transitions.length === 0
        ? el('p', { class: 'muted' }, ['none while connected'])
        : el('table', { class: 'transitions', id: 'transitions' }, [
            el('thead', {}, [el('tr', {}, ['when', 'from', 'to', 'event'].map((h) => el('th', {}, [h])))]),
            el(
              'tbody',
              {},
              transitions.map((/** @type {any} */ t) =>
                el('tr', { 'data-from': t.from, 'data-to': t.to }, [
                  el('td', { class: 'muted', title: t.at }, [ago(t.at)]),
                  el('td', {}, [el('span', { class: `badge state-${t.from}` }, [t.from])]),
                  el('td', {}, [el('span', { class: `badge state-${t.to}` }, [t.to])]),
                  el('td', { class: 'mono' }, [t.event ?? '']),
                ]),
              ),
            ),
          ]),
      el('h3', {}, ['Recent messages']),
      drawMessages(node.recent_messages ?? []),
      el('h3', {}, ['Running jobs']),
      node.running_jobs.length === 0
        ? el('p', { class: 'muted', id: 'running-jobs' }, ['none'])
        : el('ul', { id: 'running-jobs' }, node.running_jobs.map((/** @type {string} */ j) => el('li', {}, [el('a', { class: 'mono', href: link('job', j) }, [j])]))),
    );
  }

  /** @param {'drain' | 'undrain'} action */
  async act(action) {
    this.errorEl.hidden = true;
    try {
      await api('POST', `/v1/nodes/${encodeURIComponent(this.id)}/${action}`);
      this.errorEl.className = 'notice';
      this.errorEl.textContent = action === 'drain' ? 'drain requested' : 'undrain requested';
    } catch (err) {
      this.errorEl.className = 'error';
      const status = /** @type {{status?: number}} */ (err).status;
      this.errorEl.textContent =
        status === 403 ? `${action} needs an operator token: ${err instanceof Error ? err.message : ''}` : `${action} failed: ${err instanceof Error ? err.message : String(err)}`;
    }
    this.errorEl.hidden = false;
  }
}

/**
 * Newest first: the direction, the type, the id it carries (or answers) and its size.
 * @param {any[]} messages
 */
function drawMessages(messages) {
  if (messages.length === 0) return el('p', { class: 'muted', id: 'messages' }, ['none while connected']);
  return el('table', { class: 'messages', id: 'messages' }, [
    el('thead', {}, [el('tr', {}, ['when', '', 'type', 'id', 'bytes'].map((h) => el('th', {}, [h])))]),
    el(
      'tbody',
      {},
      [...messages].reverse().map((m) =>
        el('tr', { 'data-direction': m.direction, 'data-type': m.type }, [
          el('td', { class: 'muted', title: m.at }, [ago(m.at)]),
          el('td', { title: m.direction === 'in' ? 'from the node' : 'to the node' }, [m.direction === 'in' ? '→ in' : '← out']),
          el('td', { class: 'mono' }, [m.type]),
          el('td', { class: 'mono muted' }, [m.id ?? (m.reply_to === undefined ? '' : `re ${m.reply_to}`)]),
          el('td', { class: 'num' }, [m.bytes === 0 ? '' : String(m.bytes)]),
        ]),
      ),
    ),
  ]);
}

/** @param {string} name @param {string} value */
function fact(name, value) {
  return [el('dt', {}, [name]), el('dd', {}, [value])];
}

/**
 * The machine as SVG, the state node of `state` lit.
 * @param {any} graph @param {string} state
 */
function drawMachine(graph, state) {
  const layout = layoutMachine(graph.root);
  const lit = graph.states[state];
  const marker = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, [
    svg('path', { d: 'M0,0 L10,5 L0,10 z' }),
  ]);
  const boxes = layout.boxes.map((b) =>
    svg('g', { class: `state${b.compound ? ' compound' : ''}${b.final ? ' final' : ''}${b.id === lit ? ' current' : ''}`, 'data-state-id': b.id }, [
      svg('rect', { x: b.x, y: b.y, width: b.w, height: b.h, rx: 8 }),
      svg('text', b.compound ? { x: b.x + 8, y: b.y + 14 } : { x: b.x + b.w / 2, y: b.y + b.h / 2 + 4, 'text-anchor': 'middle' }, [b.label]),
    ]),
  );
  const edges = layout.edges.map((e) =>
    svg('g', { class: 'edge' }, [svg('title', {}, [e.title]), svg('path', { d: e.path, 'marker-end': 'url(#arrow)' }), svg('text', { x: e.lx, y: e.ly, 'text-anchor': e.anchor }, [e.label])]),
  );
  return el('figure', { class: 'machine' }, [
    svg('svg', { id: 'machine', viewBox: `${layout.minX} 0 ${layout.width} ${layout.height}`, width: layout.width, height: layout.height, role: 'img', 'aria-label': `state machine, current state ${state}` }, [
      svg('defs', {}, [marker]),
      ...boxes,
      ...edges,
    ]),
    el('figcaption', { class: 'muted' }, [`From any state: ${layout.global.join(', ')}. Transitions that change no state are not drawn.`]),
  ]);
}
