// The fleet: counts per state, and every node in groups (by state, owner replica, hostname or
// a tag), filterable, live. One table row per node, kept and moved between groups as the node
// changes: a delta re-draws the rows of the nodes in it, not the fleet.
import { fleet } from './fleet-state.js';
import { ago, el, link } from './dom.js';

const STATES = ['registering', 'ready', 'busy', 'draining', 'dead'];

/** @typedef {import('./fleet-state.js').FleetNode} FleetNode */

export class FleetView {
  constructor() {
    /** @type {Map<string, {tr: HTMLElement, group: string}>} */
    this.rows = new Map();
    /** @type {Map<string, {section: HTMLElement, body: HTMLElement, count: HTMLElement, size: number}>} */
    this.groups = new Map();
    this.groupBy = sessionStorage.getItem('muster.groupBy') ?? 'state';
    this.filter = sessionStorage.getItem('muster.filter') ?? '';
    this.countsEl = el('div', { class: 'counts', id: 'state-counts' });
    /** @type {{total: HTMLElement, numbers: Record<string, HTMLElement>} | undefined} */
    this.countEls = undefined;
    this.groupsEl = el('div', { class: 'groups', id: 'node-groups' });
    this.groupSelect = /** @type {HTMLSelectElement} */ (el('select', { id: 'group-by', 'aria-label': 'group by' }));
    this.filterInput = /** @type {HTMLInputElement} */ (
      el('input', { id: 'node-filter', type: 'search', placeholder: 'filter: text, state:busy, tag:pool=linux, owner:…, host:…', value: this.filter })
    );
    this.filterInput.addEventListener('input', () => {
      this.filter = this.filterInput.value;
      sessionStorage.setItem('muster.filter', this.filter);
      this.redraw();
    });
    this.groupSelect.addEventListener('change', () => {
      this.groupBy = this.groupSelect.value;
      sessionStorage.setItem('muster.groupBy', this.groupBy);
      this.redraw();
    });
  }

  /** @param {HTMLElement} root */
  mount(root) {
    root.append(
      el('h2', {}, ['Fleet']),
      this.countsEl,
      el('div', { class: 'controls' }, [el('label', {}, ['group by ', this.groupSelect]), this.filterInput]),
      this.groupsEl,
    );
    this.redraw();
  }

  unmount() {}

  /** @param {import('./fleet-state.js').Change} change */
  update(change) {
    if (change.snapshot) {
      this.redraw();
      return;
    }
    for (const id of change.nodes) this.place(id);
    this.drawCounts();
  }

  redraw() {
    this.rows.clear();
    this.groups.clear();
    this.groupsEl.replaceChildren();
    this.fillGroupChoices();
    const ids = [...fleet.nodes.values()].sort(byName).map((n) => n.node_id);
    for (const id of ids) this.place(id);
    this.drawCounts();
  }

  /** Draws (or moves, or removes) the row of node `id` as it is now. @param {string} id */
  place(id) {
    const node = fleet.nodes.get(id);
    const row = this.rows.get(id);
    if (node === undefined || !matches(node, this.filter)) {
      if (row !== undefined) {
        row.tr.remove();
        this.resize(row.group, -1);
        this.rows.delete(id);
      }
      return;
    }
    const group = groupOf(node, this.groupBy);
    const tr = rowOf(node);
    if (row === undefined) {
      insertSorted(this.groupFor(group).body, tr, node);
      this.resize(group, 1);
    } else if (row.group === group) {
      row.tr.replaceWith(tr);
    } else {
      row.tr.remove();
      this.resize(row.group, -1);
      insertSorted(this.groupFor(group).body, tr, node);
      this.resize(group, 1);
    }
    this.rows.set(id, { tr, group });
  }

  /** @param {string} key */
  groupFor(key) {
    let group = this.groups.get(key);
    if (group !== undefined) return group;
    const count = el('span', { class: 'group-count' });
    const body = el('div', { class: 'rows' });
    const head = el('div', { class: 'row head' }, ['name', 'node id', 'state', 'owner', 'transport', 'tags', 'jobs', 'heard'].map((h) => el('span', {}, [h])));
    const section = el('section', { class: 'group', 'data-group': key }, [el('h3', {}, [key === '' ? '(none)' : key, ' ', count]), el('div', { class: 'nodes', role: 'table' }, [head, body])]);
    group = { section, body, count, size: 0 };
    this.groups.set(key, group);
    // Groups in order of their key (states in their own order).
    const rank = (/** @type {string} */ k) => (this.groupBy === 'state' ? String(STATES.indexOf(k)).padStart(2, '0') : k);
    const after = [...this.groups.entries()].filter(([k]) => k !== key && rank(k) > rank(key)).sort(([a], [b]) => rank(a).localeCompare(rank(b)))[0];
    if (after === undefined) this.groupsEl.append(section);
    else after[1].section.before(section);
    return group;
  }

  /** @param {string} key @param {number} by */
  resize(key, by) {
    const group = this.groups.get(key);
    if (group === undefined) return;
    group.size += by;
    group.count.textContent = `(${group.size})`;
    group.section.hidden = group.size === 0;
  }

  /** The counts per state: the buttons made once, their numbers set on each change. */
  drawCounts() {
    /** @type {Record<string, number>} */
    const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
    for (const node of fleet.nodes.values()) counts[node.state] = (counts[node.state] ?? 0) + 1;
    if (this.countEls === undefined) {
      const total = el('span', { class: 'count total' });
      /** @type {Record<string, HTMLElement>} */
      const numbers = {};
      const buttons = STATES.map((s) => {
        numbers[s] = el('b', { 'data-count': s });
        const toggle = () => {
          this.filterInput.value = this.filter === `state:${s}` ? '' : `state:${s}`;
          this.filterInput.dispatchEvent(new Event('input'));
        };
        return el('button', { class: `count state-${s}`, 'data-state': s, type: 'button', title: `show only ${s} nodes`, onclick: toggle }, [`${s} `, numbers[s]]);
      });
      this.countsEl.replaceChildren(total, ...buttons);
      this.countEls = { total, numbers };
    }
    this.countEls.total.textContent = `${fleet.nodes.size} nodes`;
    for (const s of STATES) this.countEls.numbers[s].textContent = String(counts[s]);
  }

  fillGroupChoices() {
    const tagKeys = new Set();
    for (const node of fleet.nodes.values()) for (const key of Object.keys(node.tags)) tagKeys.add(key);
    const choices = ['state', 'owner', 'hostname', ...[...tagKeys].sort().map((k) => `tag:${k}`)];
    if (!choices.includes(this.groupBy)) this.groupBy = 'state';
    this.groupSelect.replaceChildren(...choices.map((c) => el('option', { value: c, selected: c === this.groupBy }, [c])));
  }
}

const collator = new Intl.Collator('en', { numeric: true });

/** By name (`runner-9` before `runner-10`), then id. @param {FleetNode} a @param {FleetNode} b */
function byName(a, b) {
  return collator.compare(a.name ?? a.hostname, b.name ?? b.hostname) || (a.node_id < b.node_id ? -1 : a.node_id > b.node_id ? 1 : 0);
}

/**
 * Puts `row` among the sorted rows of `body`, found by halving (O(log n) rows looked at).
 * @param {HTMLElement} body @param {HTMLElement} row @param {FleetNode} node
 */
function insertSorted(body, row, node) {
  const rows = body.children;
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const other = fleet.nodes.get(/** @type {HTMLElement} */ (rows[mid]).dataset.node ?? '');
    if (other !== undefined && byName(other, node) < 0) lo = mid + 1;
    else hi = mid;
  }
  body.insertBefore(row, rows[lo] ?? null);
}

/** @param {FleetNode} node @param {string} by */
function groupOf(node, by) {
  if (by === 'owner') return node.owner;
  if (by === 'hostname') return node.hostname;
  if (by.startsWith('tag:')) return node.tags[by.slice(4)] ?? '';
  return node.state;
}

/** Every term must match: `state:`, `owner:`, `host:`, `tag:k=v` / `tag:k`, or text anywhere. @param {FleetNode} node @param {string} filter */
function matches(node, filter) {
  for (const term of filter.toLowerCase().split(/\s+/).filter((t) => t !== '')) {
    const colon = term.indexOf(':');
    const field = colon > 0 ? term.slice(0, colon) : '';
    const value = colon > 0 ? term.slice(colon + 1) : term;
    if (field === 'state' && node.state !== value) return false;
    else if (field === 'owner' && !node.owner.toLowerCase().includes(value)) return false;
    else if (field === 'host' && !node.hostname.toLowerCase().includes(value)) return false;
    else if (field === 'tag' && !Object.entries(node.tags).some(([k, v]) => `${k}=${v}`.toLowerCase().startsWith(value))) return false;
    else if (field === '' && !searchText(node).includes(value)) return false;
    else if (!['', 'state', 'owner', 'host', 'tag'].includes(field) && !searchText(node).includes(term)) return false;
  }
  return true;
}

/** @param {FleetNode} node */
function searchText(node) {
  return `${node.node_id} ${node.hostname} ${node.name ?? ''} ${node.state} ${node.owner} ${node.transport} ${Object.entries(node.tags)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ')}`.toLowerCase();
}

/**
 * One node's row: a grid of fixed columns whose off-screen rows the browser skips
 * (`content-visibility`), so a change re-lays out one row, not a table of thousands.
 * @param {FleetNode} node
 */
function rowOf(node) {
  const tags = Object.entries(node.tags).map(([k, v]) => el('span', { class: 'tag' }, [`${k}=${v}`]));
  // The id lets a script find one row among thousands without a scan (`getElementById`).
  return el('div', { class: 'row', role: 'row', id: `node-${node.node_id}`, 'data-node': node.node_id, 'data-state': node.state }, [
    el('span', {}, [el('a', { href: link('node', node.node_id) }, [node.name ?? node.hostname])]),
    el('span', { class: 'mono' }, [node.node_id]),
    el('span', {}, [el('span', { class: `badge state-${node.state}` }, [node.state]), node.connected ? null : el('span', { class: 'muted' }, [' (disconnected)'])]),
    el('span', {}, [node.owner]),
    el('span', {}, [node.transport]),
    el('span', {}, tags),
    el('span', {}, [String(node.running_jobs.length)]),
    el('span', { class: 'muted' }, [ago(node.last_heartbeat)]),
  ]);
}
