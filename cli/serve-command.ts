// `muster serve`: runs the control plane in this process until SIGTERM or SIGINT.
import { Command } from 'commander';
import { loadConfig, type ConfigSources } from '../supervisor/config.js';

export interface ServeOptions {
  dataDir?: string;
  tcp?: string;
  unix?: string;
  http?: string;
  ws?: string;
  grpc?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requireClientCert?: boolean;
  encryptKeyFile?: string;
  auditLog?: string;
  config?: string;
  logLevel?: string;
  controlPlaneId?: string;
  nats?: string;
  natsCreds?: string;
  natsToken?: string;
  natsNkeySeed?: string;
  natsTlsCa?: string;
  natsTlsCert?: string;
  natsTlsKey?: string;
  natsReplicas?: string;
  leaseTtlMs?: string;
  leaseRenewMs?: string;
  natsRequestTimeoutMs?: string;
  inspect?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the control plane (embedded: SQLite store in the data directory, listeners on loopback)')
    .option('--data-dir <dir>', 'job store, secret and Unix socket directory (default ./.muster)')
    .option('--tcp <host:port>', 'TCP node listener, or "off" (default 127.0.0.1:7420)')
    .option('--unix <path>', 'Unix socket node listener, or "off" (default <data-dir>/muster.sock)')
    .option('--ws <host:port>', 'WebSocket node listener at /v1/connect, or "off" (default 127.0.0.1:7421)')
    .option('--grpc <host:port>', 'gRPC node listener, or "off" (default 127.0.0.1:7422)')
    .option('--http <host:port>', 'admin HTTP API listener (default 127.0.0.1:7480)')
    .option('--tls-cert <file>', 'PEM certificate: TCP, WebSocket and gRPC then serve tls://, wss://, grpcs://')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--tls-ca <file>', 'PEM CA bundle that client certificates must chain to')
    .option('--require-client-cert', 'mutual TLS: refuse nodes without a client certificate signed by --tls-ca')
    .option('--encrypt-key-file <file>', 'base64 32-byte key: every node listener encrypts every frame (AES-256-GCM)')
    .option('--audit-log <file>', 'append the audit log (JSON lines: authentication, connections, tokens, bans) to this file')
    .option('--config <file>', 'JSON configuration file (also MUSTER_CONFIG)')
    .option('--log-level <level>', 'trace, debug, info, warn, error or silent (default info)')
    .option('--inspect <url>', "feed every node actor to a Stately inspector's WebSocket (ws://host:port), @statelyai/inspect")
    .option('--control-plane-id <id>', "this replica's id in RegisterAck and on NATS (default <hostname>-<random>)")
    .option('--nats <urls>', 'NATS servers, comma-separated (nats://h1:4222,nats://h2:4222): run as one replica of a cluster')
    .option('--nats-creds <file>', 'NATS credentials file (.creds)')
    .option('--nats-token <token>', 'NATS token')
    .option('--nats-nkey-seed <file>', 'file holding an NKey seed for NATS')
    .option('--nats-tls-ca <file>', "PEM CA bundle the NATS servers' certificates must chain to")
    .option('--nats-tls-cert <file>', 'PEM client certificate for NATS')
    .option('--nats-tls-key <file>', 'PEM private key of --nats-tls-cert')
    .option('--nats-replicas <n>', 'JetStream replicas of the cluster streams and buckets (default 1)')
    .option('--lease-ttl-ms <ms>', "a replica's lease ages out this long after its last renewal (default 10000)")
    .option('--lease-renew-ms <ms>', 'how often a replica renews its lease, at most a third of the TTL (default 2000)')
    .option('--nats-request-timeout-ms <ms>', 'how long a command to the replica owning a node waits for its answer (default 2000)')
    .action(async (options: ServeOptions) => serve(options));
}

/** The settings `muster serve`'s flags give, by config key (absent flags: undefined, ignored by loadConfig). */
export function serveOverrides(options: ServeOptions): ConfigSources['overrides'] {
  return {
    dataDir: options.dataDir,
    tcp: options.tcp,
    unix: options.unix,
    http: options.http,
    ws: options.ws,
    grpc: options.grpc,
    tlsCert: options.tlsCert,
    tlsKey: options.tlsKey,
    tlsCa: options.tlsCa,
    requireClientCert: options.requireClientCert,
    encryptKeyFile: options.encryptKeyFile,
    auditLog: options.auditLog,
    logLevel: options.logLevel,
    controlPlaneId: options.controlPlaneId,
    nats: options.nats,
    natsCredsFile: options.natsCreds,
    natsToken: options.natsToken,
    natsNkeySeedFile: options.natsNkeySeed,
    natsTlsCaFile: options.natsTlsCa,
    natsTlsCertFile: options.natsTlsCert,
    natsTlsKeyFile: options.natsTlsKey,
    natsReplicas: options.natsReplicas,
    leaseTtlMs: options.leaseTtlMs,
    leaseRenewMs: options.leaseRenewMs,
    natsRequestTimeoutMs: options.natsRequestTimeoutMs,
    inspect: options.inspect,
  };
}

async function serve(options: ServeOptions): Promise<void> {
  const config = loadConfig({ file: options.config, overrides: serveOverrides(options) });
  // Loaded here, not at the top: client commands should not pay for the plane's modules.
  const { createLogger } = await import('../observability/logger.js');
  const { startControlPlane } = await import('../supervisor/control-plane.js');
  const logger = createLogger({ level: config.logLevel, name: 'muster' });
  const { EXIT_STORE_UNUSABLE, isStoreUnusable } = await import('../supervisor/store/store-unusable.js');
  // Before the plane, so that its admin API registers the fastify plugin; nothing without an OTLP endpoint.
  const { startTracing } = await import('../observability/tracing.js');
  const tracing = await startTracing('muster');
  if (tracing !== undefined) logger.info({ endpoint: tracing.endpoint, service_name: tracing.serviceName }, 'exporting traces');
  const plane = await startControlPlane(config, logger).catch(async (err: unknown) => {
    await tracing?.shutdown();
    // A store no restart makes usable (damaged, read-only, or cluster data of another format): its
    // own exit status, so that a supervisor does not restart in a loop.
    if (isStoreUnusable(err)) throw Object.assign(new Error((err as Error).message), { exitStatus: EXIT_STORE_UNUSABLE });
    throw err;
  });
  const lines = [...plane.nodeUrls.map((url) => `muster: nodes connect at ${url}`), `muster: admin API at ${plane.httpUrl}`];
  process.stdout.write(`${lines.join('\n')}\n`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    // A second signal while shutting down means "now".
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, 'shutting down');
    plane
      .shutdown(signal)
      .then(
        () => 0,
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          return 1;
        },
      )
      // The shutdown's own spans too, then whatever the batch still holds; a collector that is
      // down costs the exporter's timeout, not the exit.
      .then(async (status) => {
        await tracing?.shutdown().catch(() => undefined);
        process.exit(status);
      });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
