// How the JetStream stores tell a lost compare-and-set (an expected last sequence that no longer
// holds: another writer came first) from a failure of NATS itself.
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

export function isWrongLast(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}

export function isStreamNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound;
}
