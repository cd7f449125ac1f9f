// Times, inside the page, when the visualizer puts a node's row in the DOM with a given state:
// a MutationObserver on the fleet's groups stamps each row added (`node:state` → epoch ms).
// Waiting with a Playwright selector instead would time Playwright: its polling scans every row
// of a large fleet on each animation frame, which costs more than the page's own update.
import type { Page } from 'playwright-core';

/** Starts stamping rows; call on the fleet view, after it has drawn. */
export async function watchRows(page: Page): Promise<void> {
  await page.evaluate(`(() => {
    window.__rowSeen = {};
    new MutationObserver((records) => {
      const at = performance.timeOrigin + performance.now();
      for (const r of records) for (const n of r.addedNodes) if (n.dataset && n.dataset.node) window.__rowSeen[n.dataset.node + ':' + n.dataset.state] ??= at;
    }).observe(document.getElementById('node-groups'), { childList: true, subtree: true });
  })()`);
}

/** When (epoch ms) the row of `nodeId` was first shown in `state`; waits up to `timeoutMs`. */
export async function rowShownAt(page: Page, nodeId: string, state: string, timeoutMs: number): Promise<number> {
  const key = JSON.stringify(`${nodeId}:${state}`);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const at = await page.evaluate(`window.__rowSeen[${key}]`);
    if (typeof at === 'number') return at;
    if (Date.now() > deadline) throw new Error(`the row of ${nodeId} was not shown ${state} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
