// The files in deploy/ checked against the code: no container engine or Kubernetes runs here, so
// each file is parsed and what it tells the program (commands, flags, MUSTER_* variables, ports,
// probe paths, images) is compared with the CLI's own options and the configuration's defaults.
// The probe paths are asked of a real plane.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { agentCommand } from '../../cli/agent-command.js';
import { serveCommand } from '../../cli/serve-command.js';
import { DEFAULTS, envName, type Config } from '../../supervisor/config.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';

const DEPLOY = fileURLToPath(new URL('../../deploy/', import.meta.url));
const read = (name: string): string => fs.readFileSync(path.join(DEPLOY, name), 'utf8');

/** Every MUSTER_* variable the plane reads: one per configuration key, and MUSTER_CONFIG. */
const PLANE_VARIABLES = new Set([...Object.keys(DEFAULTS).map((k) => envName(k as keyof Config)), 'MUSTER_CONFIG']);
/** The agent's variables, from its options' `.env(...)`. */
const AGENT_VARIABLES = new Set(agentCommand().options.flatMap((o) => (o.envVar === undefined ? [] : [o.envVar])));
/** Standard OpenTelemetry variables the deploy files may set. */
const OTEL_VARIABLE = /^OTEL_[A-Z_]+$/;

const port = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
const DEFAULT_PORTS = { tcp: port(DEFAULTS.tcp), ws: port(DEFAULTS.ws), grpc: port(DEFAULTS.grpc), http: port(DEFAULTS.http) };

/** Long flags of a command, e.g. `--nats`. */
function flags(command: Command): Set<string> {
  return new Set(command.options.map((o) => o.long ?? ''));
}

/** The flags used in an argument list (`--x` or `--x=v`). */
function usedFlags(args: readonly string[]): string[] {
  return args.filter((a) => a.startsWith('--')).map((a) => a.split('=')[0]!);
}

function expectPinned(image: string): void {
  const tag = image.slice(image.lastIndexOf(':') + 1);
  expect(image, 'an image with a tag').toContain(':');
  expect(tag, `${image} pins a version`).not.toBe('latest');
  expect(tag, `${image} pins a version`).toMatch(/\d/);
}

function expectPlaneEnv(names: readonly string[], where: string): void {
  for (const name of names) {
    expect(PLANE_VARIABLES.has(name) || OTEL_VARIABLE.test(name), `${where}: ${name} is a setting of the plane`).toBe(true);
  }
}

interface ComposeService {
  image: string;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  healthcheck?: { test: string[] };
}

describe('deploy/compose.yaml', () => {
  const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, ComposeService> };
  const replicas = Object.entries(compose.services).filter(([name]) => name.startsWith('muster-'));

  it('runs three replicas of muster serve on one NATS server with JetStream on a volume, and a collector', () => {
    expect(replicas.map(([name]) => name)).toEqual(['muster-1', 'muster-2', 'muster-3']);
    const nats = compose.services.nats!;
    expect(nats.command).toEqual(expect.arrayContaining(['-js', '-sd', '/data']));
    expect(compose.services['otel-collector']).toBeDefined();
    for (const service of Object.values(compose.services)) expectPinned(service.image);
  });

  it('gives each replica its own id, the shared NATS address and secret, and settings the plane knows', () => {
    const ids = new Set<string>();
    for (const [name, service] of replicas) {
      expect(service.command?.[0]).toBe('serve');
      expect(usedFlags(service.command ?? []).filter((f) => !flags(serveCommand()).has(f))).toEqual([]);
      const env = service.environment ?? {};
      expectPlaneEnv(Object.keys(env), name);
      expect(env.MUSTER_NATS_URL).toBe('nats://nats:4222');
      expect(env.MUSTER_JWT_SECRET).toContain('MUSTER_JWT_SECRET');
      ids.add(env.MUSTER_CONTROL_PLANE_ID ?? '');
      expect(env.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://otel-collector:4318');
    }
    expect(ids.size).toBe(3);
  });

  it('listens on every interface at the default ports, and publishes them', () => {
    for (const [name, service] of replicas) {
      const env = service.environment ?? {};
      for (const listener of ['tcp', 'ws', 'grpc', 'http'] as const) {
        const value = env[envName(listener)];
        expect(value, `${name} ${listener}`).toBe(`0.0.0.0:${DEFAULT_PORTS[listener]}`);
        expect(service.ports?.some((p) => p.endsWith(`:${DEFAULT_PORTS[listener]}`)), `${name} publishes ${listener}`).toBe(true);
      }
      expect(service.healthcheck?.test.join(' ')).toContain(`127.0.0.1:${DEFAULT_PORTS.http}/readyz`);
    }
  });

  it('points the collector at its own config file, which receives OTLP on 4317 and 4318', () => {
    const collector = parse(read('otel-collector.yaml')) as { receivers: { otlp: { protocols: Record<string, { endpoint: string }> } } };
    expect(Object.values(collector.receivers.otlp.protocols).map((p) => port(p.endpoint)).sort()).toEqual([4317, 4318]);
  });
});

interface Manifest {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec: {
    replicas?: number;
    ports?: { name: string; port: number; targetPort: string }[];
    template?: {
      spec: {
        containers: {
          image: string;
          args: string[];
          env: { name: string; value?: string }[];
          ports: { name: string; containerPort: number }[];
          readinessProbe: { httpGet: { path: string; port: string } };
          livenessProbe: { httpGet: { path: string; port: string } };
        }[];
      };
    };
  };
}

describe('deploy/k8s', () => {
  const manifests = fs
    .readdirSync(path.join(DEPLOY, 'k8s'))
    .filter((f) => f.endsWith('.yaml') && f !== 'nats-values.yaml')
    .flatMap((f) => parseAllDocuments(read(`k8s/${f}`)).map((d) => d.toJS() as Manifest));
  const deployment = manifests.find((m) => m.kind === 'Deployment')!;
  const container = deployment.spec.template!.spec.containers[0]!;

  it('runs three replicas of muster serve with the plane settings it knows', () => {
    expect(deployment.spec.replicas).toBe(3);
    expectPinned(container.image);
    expect(container.args[0]).toBe('serve');
    expect(usedFlags(container.args).filter((f) => !flags(serveCommand()).has(f))).toEqual([]);
    expectPlaneEnv(container.env.map((e) => e.name), 'deployment');
    expect(container.env.map((e) => e.name)).toEqual(expect.arrayContaining(['MUSTER_NATS_URL', 'MUSTER_CONTROL_PLANE_ID', 'MUSTER_JWT_SECRET']));
  });

  it('exposes every default port, with one Service per transport', () => {
    const ports = Object.fromEntries(container.ports.map((p) => [p.name, p.containerPort]));
    expect(ports).toEqual(DEFAULT_PORTS);
    const services = manifests.filter((m) => m.kind === 'Service');
    expect(services.map((s) => s.spec.ports![0]!.targetPort).sort()).toEqual(['grpc', 'http', 'tcp', 'ws']);
    for (const s of services) expect(s.spec.ports![0]!.port).toBe(DEFAULT_PORTS[s.spec.ports![0]!.targetPort as keyof typeof DEFAULT_PORTS]);
  });

  it('configures listeners on every interface at the default ports, with keys the plane knows', () => {
    const configMap = manifests.find((m) => m.kind === 'ConfigMap')!;
    const settings = JSON.parse(configMap.data!['muster.json']!) as Record<string, unknown>;
    for (const key of Object.keys(settings)) expect(Object.keys(DEFAULTS), key).toContain(key);
    for (const listener of ['tcp', 'ws', 'grpc', 'http'] as const) expect(settings[listener]).toBe(`0.0.0.0:${DEFAULT_PORTS[listener]}`);
  });

  it('takes NATS from its official Helm chart with JetStream on', () => {
    const values = parse(read('k8s/nats-values.yaml')) as { config: { jetstream: { enabled: boolean } } };
    expect(values.config.jetstream.enabled).toBe(true);
    expect(read('k8s/nats-values.yaml')).toContain('https://nats-io.github.io/k8s/helm/charts/');
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = read('Dockerfile');

  it('runs Node 20 and exposes the default ports', () => {
    expect(dockerfile).toMatch(/^FROM node:20\.[\d.]+-/m);
    const exposed = /^EXPOSE (.+)$/m.exec(dockerfile)![1]!.split(/\s+/).map(Number).sort();
    expect(exposed).toEqual(Object.values(DEFAULT_PORTS).sort());
    expect(dockerfile).toContain('ENTRYPOINT ["/opt/muster/bin/muster"]');
  });
});

describe('deploy/*.service', () => {
  /** `Key=value` lines of a unit file. */
  const directives = (unit: string, key: string): string[] =>
    unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

  it.each([
    ['muster.service', 'serve', serveCommand()],
    ['muster-replica.service', 'serve', serveCommand()],
    ['muster-agent.service', 'agent', agentCommand()],
  ] as const)('%s runs muster %s with flags and variables it knows', (file, command, cli) => {
    const unit = read(file);
    const [exec] = directives(unit, 'ExecStart');
    const args = exec!.split(/\s+/);
    expect(args.slice(0, 2)).toEqual(['/opt/muster/bin/muster', command]);
    expect(usedFlags(args).filter((f) => !flags(cli).has(f))).toEqual([]);
    const known = command === 'serve' ? PLANE_VARIABLES : AGENT_VARIABLES;
    for (const env of directives(unit, 'Environment')) expect(known.has(env.split('=')[0]!), `${file}: ${env}`).toBe(true);
    // Variables named in the unit's comments (what to put in its environment file) exist too.
    for (const name of unit.match(/MUSTER_[A-Z_]+/g) ?? []) expect(known.has(name), `${file}: ${name}`).toBe(true);
  });
});

describe('probe paths of the manifests', () => {
  let plane: SecurityPlane;
  beforeAll(async () => {
    plane = await startSecurityPlane();
  });
  afterAll(() => plane.stop());

  it('answer 200 on a running plane', async () => {
    const k8s = parse(read('k8s/deployment.yaml')) as Manifest;
    const c = k8s.spec.template!.spec.containers[0]!;
    for (const probe of [c.readinessProbe, c.livenessProbe]) {
      expect((await plane.http('GET', probe.httpGet.path)).status, probe.httpGet.path).toBe(200);
    }
  });
});
