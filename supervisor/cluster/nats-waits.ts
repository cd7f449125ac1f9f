// Best-effort waits on NATS: with a deadline, for the steps of a shutdown that must not hang (a
// flush while the server is away would wait for it to come back), and for a new subscription.
import type { NatsConnection } from '@nats-io/transport-node';

/** Waits for `work` at most `ms`, ignoring its failure. */
export async function boundedWait(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([work.catch(() => undefined), deadline]);
  clearTimeout(timer);
}

/**
 * Resolves once the server has a subscription just made (a round trip), so that nothing
 * published after is missed. While NATS is away there is nothing to wait for: nats.js sends
 * every subscription again on reconnect, and a flush cut short by a disconnect is no failure.
 */
export async function serverHas(nc: NatsConnection, state: 'connected' | 'reconnecting' | 'closed' = 'connected'): Promise<void> {
  if (state !== 'connected') return;
  await nc.flush().catch(() => undefined);
}
