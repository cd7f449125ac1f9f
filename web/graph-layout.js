// A small layered layout of a state machine graph (the JSON of GET /v1/machines/node): leaf
// states in rows by their longest path from the initial state (edges that go back are found by
// a depth-first walk and left out of the ranking), in the machine's own order within a row;
// compound states are boxes around their leaves. Edges between neighbouring rows are straight,
// longer or backward ones curve round the side, so they do not cross the boxes between.

const BOX_W = 128;
const BOX_H = 36;
const GAP_X = 44;
const ROW_H = 96;
const PAD = 14;
const MARGIN = 24;

/**
 * @typedef {{id: string, key: string, type: string, initial?: string, children: GraphNode[], edges: GraphEdge[]}} GraphNode
 * @typedef {{source: string, target: string, event: string, guard?: string, targetless?: true, reenter?: true}} GraphEdge
 * @typedef {{id: string, label: string, x: number, y: number, w: number, h: number, compound: boolean, final: boolean}} Box
 * @typedef {{path: string, label: string, title: string, lx: number, ly: number, anchor: string}} EdgeShape
 */

/**
 * @param {GraphNode} root
 * @returns {{minX: number, width: number, height: number, boxes: Box[], edges: EdgeShape[], global: string[]}}
 */
export function layoutMachine(root) {
  /** @type {Map<string, GraphNode>} */
  const byId = new Map();
  /** @type {Map<string, string>} */
  const parentOf = new Map();
  /** @type {GraphNode[]} */
  const leaves = [];
  const walk = (/** @type {GraphNode} */ n) => {
    byId.set(n.id, n);
    if (n.children.length === 0) leaves.push(n);
    for (const c of n.children) {
      parentOf.set(c.id, n.id);
      walk(c);
    }
  };
  walk(root);
  const initialLeaf = (/** @type {string} */ id) => {
    let node = byId.get(id);
    while (node !== undefined && node.children.length > 0) node = byId.get(node.initial ?? node.children[0].id);
    return node?.id ?? id;
  };

  // Transitions that move between states, grouped by (from, to); the root's own ones are global.
  /** @type {Map<string, {source: string, target: string, events: string[], details: string[]}>} */
  const grouped = new Map();
  /** @type {string[]} */
  const global = [];
  for (const node of byId.values()) {
    for (const e of node.edges) {
      if (e.targetless || e.source === e.target) continue;
      if (e.source === root.id) {
        global.push(`${e.event} → ${e.target.slice(e.target.lastIndexOf(".") + 1)}`);
        continue;
      }
      const target = initialLeaf(e.target);
      // From a compound state into one of its own: drawn from where it is entered.
      const source = target.startsWith(`${e.source}.`) ? initialLeaf(e.source) : e.source;
      const key = `${source}>${target}`;
      const entry = grouped.get(key) ?? { source, target, events: [], details: [] };
      if (!entry.events.includes(e.event)) entry.events.push(e.event);
      entry.details.push(e.guard === undefined ? e.event : `${e.event} [${e.guard}]`);
      grouped.set(key, entry);
    }
  }
  const edges = [...grouped.values()];

  const rank = rankLeaves(leaves, edges, initialLeaf, initialLeaf(root.id));
  const boxes = placeBoxes(root, leaves, rank, parentOf);
  const boxOf = new Map(boxes.map((b) => [b.id, b]));
  const right = Math.max(...boxes.map((b) => b.x + b.w));
  const left = Math.min(...boxes.map((b) => b.x));
  const height = Math.max(...boxes.map((b) => b.y + b.h)) + MARGIN;
  // Long edges down go round the left, edges back up round the right, each a little further out.
  let lefts = 0;
  let rights = 0;
  let minX = 0;
  let maxX = right + MARGIN;
  const shapes = edges.map((e) => {
    const from = /** @type {Box} */ (boxOf.get(e.source));
    const to = /** @type {Box} */ (boxOf.get(e.target));
    const label = cut(e.events.join(', '), 30);
    const title = e.details.join('\n');
    const down = to.y - (from.y + from.h);
    if (down > 0 && down <= ROW_H) {
      const x1 = from.x + from.w / 2;
      const y1 = from.y + from.h;
      const x2 = to.x + to.w / 2;
      const y2 = to.y;
      // Nearer the source than the middle: edges that meet at one target keep their labels apart.
      return { path: `M${x1},${y1} L${x2},${y2}`, label, title, lx: x1 + (x2 - x1) * 0.35 + 4, ly: y1 + (y2 - y1) * 0.35 + 3, anchor: 'start' };
    }
    const leftward = down > 0;
    const n = leftward ? ++lefts : ++rights;
    const y1 = from.y + from.h / 2;
    // Arrivals spread over the target's side, so that they do not meet in one point.
    const y2 = to.y + to.h / 2 + (((n % 3) - 1) * to.h) / 4;
    if (leftward) {
      const x1 = from.x;
      const x2 = to.x;
      const cx = left - 18 - n * 12;
      minX = Math.min(minX, cx - label.length * 5.6 - 8);
      return { path: `M${x1},${y1} C${cx},${y1} ${cx},${y2} ${x2},${y2}`, label, title, lx: mid(x1, cx, x2) - 3, ly: (y1 + y2) / 2 + 3, anchor: 'end' };
    }
    const x1 = from.x + from.w;
    const x2 = to.x + to.w;
    const cx = right + 18 + n * 12;
    maxX = Math.max(maxX, cx + label.length * 5.6 + 8);
    return { path: `M${x1},${y1} C${cx},${y1} ${cx},${y2} ${x2},${y2}`, label, title, lx: mid(x1, cx, x2) + 3, ly: (y1 + y2) / 2 + 3, anchor: 'start' };
  });
  unclutter(shapes);
  return { minX, width: maxX - minX, height: Math.max(height, ...shapes.map((e) => e.ly + MARGIN)), boxes, edges: shapes, global };
}

/**
 * Moves each label down a line until it overlaps none placed before it (widths estimated
 * from the length: the layout runs before anything is drawn).
 * @param {EdgeShape[]} shapes
 */
function unclutter(shapes) {
  /** @type {Array<{x1: number, x2: number, y1: number, y2: number}>} */
  const placed = [];
  for (const e of shapes) {
    const width = e.label.length * 5.6;
    const x1 = e.anchor === 'end' ? e.lx - width : e.lx;
    const box = () => ({ x1, x2: x1 + width, y1: e.ly - 10, y2: e.ly + 2 });
    for (let tries = 0; tries < 8 && placed.some((p) => overlaps(p, box())); tries++) e.ly += 12;
    placed.push(box());
  }
}

/** @param {{x1: number, x2: number, y1: number, y2: number}} a @param {{x1: number, x2: number, y1: number, y2: number}} b */
function overlaps(a, b) {
  return a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
}

/**
 * Longest path from `start` over the edges that do not go back.
 * @param {GraphNode[]} leaves
 * @param {Array<{source: string, target: string}>} edges
 * @param {(id: string) => string} initialLeaf
 * @param {string} start
 */
function rankLeaves(leaves, edges, initialLeaf, start) {
  /** @type {Map<string, string[]>} */
  const next = new Map();
  for (const e of edges) {
    const from = initialLeaf(e.source);
    next.set(from, [...(next.get(from) ?? []), e.target]);
  }
  // Back edges: those into a state still on the depth-first path.
  const back = new Set();
  const onPath = new Set();
  const seen = new Set();
  const dfs = (/** @type {string} */ id) => {
    seen.add(id);
    onPath.add(id);
    for (const to of next.get(id) ?? []) {
      if (onPath.has(to)) back.add(`${id}>${to}`);
      else if (!seen.has(to)) dfs(to);
    }
    onPath.delete(id);
  };
  dfs(start);
  /** @type {Map<string, number>} */
  const rank = new Map([[start, 0]]);
  for (let round = 0; round < leaves.length; round++) {
    for (const [from, targets] of next) {
      const r = rank.get(from);
      if (r === undefined) continue;
      for (const to of targets) if (!back.has(`${from}>${to}`) && (rank.get(to) ?? -1) < r + 1) rank.set(to, r + 1);
    }
  }
  for (const leaf of leaves) if (!rank.has(leaf.id)) rank.set(leaf.id, 0);
  return rank;
}

/**
 * Leaves in rows, compound states as boxes round their leaves (padded per level of nesting).
 * @param {GraphNode} root @param {GraphNode[]} leaves @param {Map<string, number>} rank @param {Map<string, string>} parentOf
 * @returns {Box[]}
 */
function placeBoxes(root, leaves, rank, parentOf) {
  /** @type {Map<number, GraphNode[]>} */
  const rows = new Map();
  for (const leaf of leaves) {
    const r = /** @type {number} */ (rank.get(leaf.id));
    rows.set(r, [...(rows.get(r) ?? []), leaf]);
  }
  const widest = Math.max(...[...rows.values()].map((row) => row.length));
  const rowWidth = (/** @type {number} */ n) => n * BOX_W + (n - 1) * GAP_X;
  /** @type {Box[]} */
  const boxes = [];
  for (const [r, row] of rows) {
    const left = MARGIN + PAD * 2 + (rowWidth(widest) - rowWidth(row.length)) / 2;
    row.forEach((leaf, i) => {
      boxes.push({ id: leaf.id, label: leaf.key, x: left + i * (BOX_W + GAP_X), y: MARGIN + PAD * 2 + r * ROW_H, w: BOX_W, h: BOX_H, compound: false, final: leaf.type === 'final' });
    });
  }
  // Compound states (not the root): the box round their leaves, outer ones padded more.
  const depthOf = (/** @type {string} */ id) => {
    let d = 0;
    for (let p = parentOf.get(id); p !== undefined; p = parentOf.get(p)) d++;
    return d;
  };
  /** @type {Box[]} */
  const compounds = [];
  const visit = (/** @type {GraphNode} */ n) => {
    for (const c of n.children) visit(c);
    if (n === root || n.children.length === 0) return;
    const inside = boxes.filter((b) => b.id.startsWith(`${n.id}.`));
    if (inside.length === 0) return;
    const deepest = Math.max(...inside.map((b) => depthOf(b.id))) - depthOf(n.id);
    const pad = PAD * deepest;
    const x = Math.min(...inside.map((b) => b.x)) - pad;
    const y = Math.min(...inside.map((b) => b.y)) - pad - 12;
    const x2 = Math.max(...inside.map((b) => b.x + b.w)) + pad;
    const y2 = Math.max(...inside.map((b) => b.y + b.h)) + pad;
    compounds.push({ id: n.id, label: n.key, x, y, w: x2 - x, h: y2 - y, compound: true, final: false });
  };
  visit(root);
  return [...compounds, ...boxes];
}

/** The x of a side curve (control points both at `cx`) half way: where its label goes. @param {number} x1 @param {number} cx @param {number} x2 */
function mid(x1, cx, x2) {
  return (x1 + x2) / 8 + (cx * 3) / 4;
}

/** @param {string} text @param {number} n */
function cut(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
