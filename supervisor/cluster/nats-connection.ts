// The replica's one NATS connection, opened from plain options (the servers, one way to
// authenticate, TLS files): named after the replica so that the server's monitoring shows who
// is who, reconnecting forever with jitter (a replica never gives up on NATS: it fences itself
// instead, replica-lease.ts), with a status tracker for `/readyz` and `GET /v1/cluster`.
import { readFileSync } from 'node:fs';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { MusterError } from '../../protocol/errors.js';
import type { Config } from '../config.js';
import { boundedWait } from './nats-waits.js';
import { NatsStatusTracker } from './nats-status.js';

export interface NatsConnectionSettings {
  /** Server URLs (`nats://host:port`, `tls://host:port`, or `host:port`), as a list or comma-separated. */
  servers: string | readonly string[];
  /** The client's name on the server: the replica id. */
  name: string;
  /** A `.creds` file (user JWT and seed); read on every (re)connect, so a rotated file is picked up. */
  credsFile?: string;
  token?: string;
  /** A file holding a user NKey seed (`SU...`); read on every (re)connect. */
  nkeySeedFile?: string;
  /** PEM CA bundle for the servers' certificates; any TLS file, or a `tls://` URL, requires TLS. */
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Wait between reconnect attempts to one server; default 2,000 ms (nats.js's). */
  reconnectTimeWaitMs?: number;
  /** Up to this much random extra wait, so that replicas do not reconnect in step; default 1,000 ms. */
  reconnectJitterMs?: number;
  /** How long one connection attempt (TCP, TLS, INFO/CONNECT) may take; default 10,000 ms. */
  connectTimeoutMs?: number;
  /**
   * The client pings the server this often and reconnects after two pings go unanswered: a hung
   * server or a half-open TCP connection is noticed within about twice this, not nats.js's
   * default four minutes. Default 5,000 ms.
   */
  pingIntervalMs?: number;
  /** Keep trying when no server answers the first time, instead of failing at once. */
  waitOnFirstConnect?: boolean;
}

export interface OpenNatsConnection {
  nc: NatsConnection;
  status: NatsStatusTracker;
  /** Sends what is still buffered, then closes the connection and its tracker. */
  close(): Promise<void>;
}

/** `nats://a:4222, nats://b:4222` → `['nats://a:4222', 'nats://b:4222']`. */
export function natsServerList(servers: string | readonly string[]): string[] {
  const list = typeof servers === 'string' ? servers.split(',') : [...servers];
  return list.map((s) => s.trim()).filter((s) => s !== '');
}

/** The settings of `config`'s cluster keys, for the replica named `name`. */
export function natsSettingsOf(config: Config, name: string): NatsConnectionSettings {
  const optional = (value: string): string | undefined => (value === '' ? undefined : value);
  return {
    servers: config.nats,
    name,
    credsFile: optional(config.natsCredsFile),
    token: optional(config.natsToken),
    nkeySeedFile: optional(config.natsNkeySeedFile),
    tlsCaFile: optional(config.natsTlsCaFile),
    tlsCertFile: optional(config.natsTlsCertFile),
    tlsKeyFile: optional(config.natsTlsKeyFile),
  };
}

/** nats.js's options for `settings` (apart so that a test can read them). */
export function natsConnectionOptions(settings: NatsConnectionSettings): NodeConnectionOptions {
  const servers = natsServerList(settings.servers);
  if (servers.length === 0) throw new MusterError('internal', 'no NATS server given');
  const jitter = settings.reconnectJitterMs ?? 1_000;
  const options: NodeConnectionOptions = {
    servers,
    name: settings.name,
    // Forever: a replica cut off from NATS fences itself and waits; giving up would need a restart.
    maxReconnectAttempts: -1,
    reconnectTimeWait: settings.reconnectTimeWaitMs ?? 2_000,
    reconnectJitter: jitter,
    reconnectJitterTLS: jitter,
    timeout: settings.connectTimeoutMs ?? 10_000,
    pingInterval: settings.pingIntervalMs ?? 5_000,
    maxPingOut: 2,
    waitOnFirstConnect: settings.waitOnFirstConnect ?? false,
    // A replica hears its own events, as the in-process bus delivers to its own subscribers.
    noEcho: false,
    // nats.js otherwise builds two Errors (stack captured) for every request, to name its caller
    // should it time out: about a tenth of a replica's CPU per job. A timeout still says what timed out.
    noAsyncTraces: true,
    // A rotated creds file or token may fail once while it is replaced; never stop reconnecting.
    ignoreAuthErrorAbort: true,
  };
  if (settings.token !== undefined) options.token = settings.token;
  const { credsFile, nkeySeedFile } = settings;
  if (credsFile !== undefined) options.authenticator = credsAuthenticator(() => readFileSync(credsFile));
  else if (nkeySeedFile !== undefined) options.authenticator = nkeyAuthenticator(() => readSeed(nkeySeedFile));
  const wantsTls = servers.some((s) => s.startsWith('tls://')) || [settings.tlsCaFile, settings.tlsCertFile, settings.tlsKeyFile].some((f) => f !== undefined);
  if (wantsTls) {
    options.tls = {};
    if (settings.tlsCaFile !== undefined) options.tls.caFile = settings.tlsCaFile;
    if (settings.tlsCertFile !== undefined) options.tls.certFile = settings.tlsCertFile;
    if (settings.tlsKeyFile !== undefined) options.tls.keyFile = settings.tlsKeyFile;
  }
  return options;
}

/** Connects, or fails with one MusterError naming the servers and the reason (refused, authorization, TLS). */
export async function openNatsConnection(settings: NatsConnectionSettings): Promise<OpenNatsConnection> {
  const options = natsConnectionOptions(settings);
  let nc: NatsConnection;
  try {
    nc = await connect(options);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new MusterError('internal', `cannot connect to NATS at ${(options.servers as string[]).join(', ')}: ${reason}`, { cause: err });
  }
  const status = new NatsStatusTracker(nc);
  return {
    nc,
    status,
    async close(): Promise<void> {
      // What was published goes out first, unless NATS is away (then there is no one to send it to).
      if (status.state === 'connected') await boundedWait(nc.flush(), CLOSE_FLUSH_MS);
      if (!nc.isClosed()) await nc.close();
      status.stop();
    },
  };
}

const CLOSE_FLUSH_MS = 2_000;


/** The seed's text without the newline an editor adds; nats.js wants its bytes. */
function readSeed(file: string): Uint8Array {
  return new TextEncoder().encode(readFileSync(file, 'utf8').trim());
}
