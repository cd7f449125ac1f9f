// Building the page from data without ever parsing it as HTML: every text from the network
// goes in through textContent or an attribute, never innerHTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * An element `tag` with attributes `attrs` (`class`, `data-*`, `onclick`...) and children
 * (nodes or strings, strings become text nodes).
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {Array<Node | string | null | undefined>} [children]
 * @returns {HTMLElement}
 */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/**
 * The same for SVG.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {Array<Node | string | null | undefined>} [children]
 * @returns {SVGElement}
 */
export function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

/** @param {Element} node @param {Record<string, unknown>} attrs */
function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') node.addEventListener(key.slice(2), /** @type {EventListener} */ (value));
    else node.setAttribute(key, String(value));
  }
}

/** Empties `node` and fills it with `children`. @param {Element} node @param {Array<Node | string>} children */
export function replace(node, children) {
  node.replaceChildren(...children);
}

/** A relative time, `12 s ago`. @param {string | undefined} iso */
export function ago(iso) {
  if (iso === undefined) return '';
  const seconds = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.max(0, seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

/** `#/node/<id>` for a node id, encoded. @param {string} kind @param {string} id */
export function link(kind, id) {
  return `#/${kind}/${encodeURIComponent(id)}`;
}
