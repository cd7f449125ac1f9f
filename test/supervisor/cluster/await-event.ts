// Waits for the next event of a component that matches, with a deadline that fails the test:
// the tests synchronise on events, never on sleeps.
export interface Subscribable<E> {
  subscribe(handler: (event: E) => void): () => void;
}

export function nextEvent<E, M extends E = E>(
  source: Subscribable<E>,
  match: (event: E) => event is M,
  timeoutMs: number,
  what?: string,
): Promise<M>;
export function nextEvent<E>(source: Subscribable<E>, match: (event: E) => boolean, timeoutMs: number, what?: string): Promise<E>;
export function nextEvent<E>(source: Subscribable<E>, match: (event: E) => boolean, timeoutMs: number, what = 'event'): Promise<E> {
  return new Promise<E>((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = source.subscribe((event) => {
      if (!match(event)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(event);
    });
  });
}

/**
 * Resolves once `check()` holds, checked at once and after every event of `source` (a lease
 * renews every few hundred ms, so its events pace the checks); fails the test after `timeoutMs`
 * with `what` and, when given, `seen()` (what held instead). For state that changes without an
 * event of its own, such as the peers a replica's last poll listed.
 */
export function until<E>(source: Subscribable<E>, check: () => boolean, timeoutMs: number, what: string, seen?: () => string): Promise<void> {
  if (check()) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`not ${what} within ${timeoutMs} ms${seen ? `: ${seen()}` : ''}`));
    }, timeoutMs);
    const unsubscribe = source.subscribe(() => {
      if (!check()) return;
      clearTimeout(timer);
      unsubscribe();
      resolve();
    });
  });
}
