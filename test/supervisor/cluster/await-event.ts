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
