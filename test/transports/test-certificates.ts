// A throwaway PKI for tests of the TLS-carrying transports (tls, wss, grpcs): a CA, a server
// certificate for localhost / 127.0.0.1 / ::1, client certificates on demand, and a second,
// unrelated CA for "wrong CA" cases. Made with the `openssl` command in a temp dir, with EC
// P-256 keys (fast), once per process: every test file asking again gets the same PEM text.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A certificate and its private key, as PEM text. */
export interface CertAndKey {
  cert: string;
  key: string;
}

/** A certificate authority that can issue client certificates. */
export interface TestCa extends CertAndKey {
  /** A client certificate (extendedKeyUsage clientAuth) with subject CN `cn` and DNS SANs `dnsNames`. */
  client(cn: string, dnsNames?: readonly string[]): CertAndKey;
}

export interface TestPki {
  /** The CA's certificate: the `ca` both sides trust. */
  ca: string;
  /** The CA's private key, should a test need to issue something unusual itself. */
  caKey: string;
  /** Server certificate for CN localhost, SANs DNS:localhost, IP:127.0.0.1, IP:::1; signed by `ca`. */
  server: CertAndKey;
  /** A client certificate signed by `ca`. */
  client(cn: string, dnsNames?: readonly string[]): CertAndKey;
  /** A second CA that has nothing to do with `ca`. */
  otherCa: TestCa;
}

const cache = new Map<string, TestPki>();

/**
 * The test PKI, made on first use and cached per process (per `dir`). Without `dir` the files
 * go to a fresh temp dir that is removed when the process exits.
 */
export function makeTestPki(dir?: string): TestPki {
  const cacheKey = dir ?? '';
  const cached = cache.get(cacheKey);
  if (cached !== undefined) return cached;
  const workDir = dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'muster-pki-'));
  fs.mkdirSync(workDir, { recursive: true });
  if (dir === undefined) process.once('exit', () => fs.rmSync(workDir, { recursive: true, force: true }));

  const ca = issueCa(workDir, 'ca', 'Muster Test CA');
  const otherCa = issueCa(workDir, 'other-ca', 'Unrelated Test CA');
  const server = issue(workDir, 'server', ca, 'localhost', { extendedKeyUsage: 'serverAuth' }, [
    'DNS:localhost',
    'IP:127.0.0.1',
    'IP:::1',
  ]);
  const pki: TestPki = { ca: ca.cert, caKey: ca.key, server, client: ca.client, otherCa };
  cache.set(cacheKey, pki);
  return pki;
}

let counter = 0;

function issueCa(dir: string, name: string, cn: string): TestCa {
  const files = paths(dir, name);
  writeConfig(files.config, {
    basicConstraints: 'critical, CA:TRUE',
    keyUsage: 'critical, keyCertSign, cRLSign',
    subjectKeyIdentifier: 'hash',
  });
  openssl(['req', '-x509', ...newKeyArgs(files), '-subj', subject(cn), '-days', '2', ...configArgs(files)]);
  const ca: CertAndKey = read(files);
  const clients = new Map<string, CertAndKey>();
  const client = (clientCn: string, dnsNames: readonly string[] = []): CertAndKey => {
    const key = JSON.stringify([clientCn, dnsNames]);
    let issued = clients.get(key);
    if (issued === undefined) {
      const sans = dnsNames.map((n) => `DNS:${n}`);
      issued = issue(dir, `${name}-client-${++counter}`, ca, clientCn, { extendedKeyUsage: 'clientAuth' }, sans);
      clients.set(key, issued);
    }
    return issued;
  };
  return { ...ca, client };
}

/** A leaf certificate signed by `issuer`; `sans` as `DNS:name` / `IP:address`. */
function issue(
  dir: string,
  name: string,
  issuer: CertAndKey,
  cn: string,
  extensions: Record<string, string>,
  sans: readonly string[] = [],
): CertAndKey {
  const files = paths(dir, name);
  const issuerFiles = paths(dir, `${name}-issuer`);
  fs.writeFileSync(issuerFiles.cert, issuer.cert);
  fs.writeFileSync(issuerFiles.key, issuer.key, { mode: 0o600 });
  writeConfig(files.config, {
    basicConstraints: 'critical, CA:FALSE',
    keyUsage: 'critical, digitalSignature',
    authorityKeyIdentifier: 'keyid',
    ...extensions,
  }, sans);
  openssl([
    'req',
    '-x509',
    ...newKeyArgs(files),
    '-subj',
    subject(cn),
    '-days',
    '2',
    '-CA',
    issuerFiles.cert,
    '-CAkey',
    issuerFiles.key,
    ...configArgs(files),
  ]);
  return read(files);
}

interface Files {
  cert: string;
  key: string;
  config: string;
}

function paths(dir: string, name: string): Files {
  return {
    cert: path.join(dir, `${name}.crt`),
    key: path.join(dir, `${name}.key`),
    config: path.join(dir, `${name}.cnf`),
  };
}

function newKeyArgs(files: Files): string[] {
  return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', files.key, '-out', files.cert];
}

// Our own minimal config, so the system's openssl.cnf adds no extensions of its own.
function configArgs(files: Files): string[] {
  return ['-config', files.config, '-extensions', 'ext'];
}

function writeConfig(file: string, extensions: Record<string, string>, sans: readonly string[] = []): void {
  const lines = ['[req]', 'distinguished_name = dn', '[dn]', '[ext]'];
  for (const [name, value] of Object.entries(extensions)) lines.push(`${name} = ${value}`);
  if (sans.length > 0) {
    // A section of its own, one name a line: a name may then hold a comma.
    lines.push('subjectAltName = @alt', '[alt]');
    sans.forEach((san, i) => {
      const [type, ...rest] = san.split(':');
      lines.push(`${type}.${i + 1} = ${rest.join(':')}`);
    });
  }
  fs.writeFileSync(file, `${lines.join('\n')}\n`);
}

/** `/CN=...`, with the characters that `-subj` treats specially escaped. */
function subject(cn: string): string {
  return `/CN=${cn.replace(/[\\/+=]/g, (ch) => `\\${ch}`)}`;
}

function read(files: Files): CertAndKey {
  return { cert: fs.readFileSync(files.cert, 'utf8'), key: fs.readFileSync(files.key, 'utf8') };
}

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
