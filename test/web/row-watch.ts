// Times, inside the page, when the visualizer puts a node's row in the DOM with a given state:
// a MutationObserver on the fleet's groups stamps each row added (`node:state` → epoch ms) and
// hands the stamp to whoever waits for that row. Waiting with a Playwright selector instead
// would time Playwright: its polling scans every row of a large fleet on each animation frame,
// which costs more than the page's own update.
import type { Page } from 'playwright-core';

/** Starts stamping rows; call on the fleet view, after it has drawn. */
export async function watchRows(page: Page): Promise<void> {
  await page.evaluate(`(() => {
    window.__rowSeen = {};
    window.__rowWaiters = {};
    new MutationObserver((records) => {
      const at = performance.timeOrigin + performance.now();
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (!n.dataset || !n.dataset.node) continue;
          const key = n.dataset.node + ':' + n.dataset.state;
          if (key in window.__rowSeen) continue;
          window.__rowSeen[key] = at;
          for (const resolve of window.__rowWaiters[key] ?? []) resolve(at);
          delete window.__rowWaiters[key];
        }
      }
    }).observe(document.getElementById('node-groups'), { childList: true, subtree: true });
  })()`);
}

/** When (epoch ms) the row of `nodeId` was first shown in `state`; waits for it up to `timeoutMs`. */
export async function rowShownAt(page: Page, nodeId: string, state: string, timeoutMs: number): Promise<number> {
  const key = JSON.stringify(`${nodeId}:${state}`);
  // The page answers when its observer stamps the row (at once if it already has); the timer is a deadline only.
  const at = await page.evaluate(`new Promise((resolve) => {
    const seen = window.__rowSeen[${key}];
    if (seen !== undefined) return resolve(seen);
    (window.__rowWaiters[${key}] ??= []).push(resolve);
    setTimeout(() => resolve(null), ${timeoutMs});
  })`);
  if (typeof at !== 'number') throw new Error(`the row of ${nodeId} was not shown ${state} within ${timeoutMs} ms`);
  return at;
}
