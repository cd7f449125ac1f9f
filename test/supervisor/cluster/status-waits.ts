// Awaiting a NATS connection's state in tests: resolves once the tracker enters it, fails the
// test after a deadline (never a sleep).
import type { NatsState, NatsStatus, NatsStatusTracker } from '../../../supervisor/cluster/nats-status.js';

export function entered(status: NatsStatusTracker, state: NatsState, ms = 10_000): Promise<NatsStatus> {
  if (status.state === state) return Promise.resolve(status.status());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`not ${state} within ${ms} ms: ${JSON.stringify(status.status())}`)), ms);
    const stop = status.onChange((s) => {
      if (s.state !== state) return;
      clearTimeout(timer);
      stop();
      resolve(s);
    });
  });
}
