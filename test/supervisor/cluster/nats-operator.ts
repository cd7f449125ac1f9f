// A throwaway NATS operator, account and user for tests of `.creds` authentication, made as
// `nsc` would make them (ed25519-nkey signed JWTs) but in-process: a server configuration that
// trusts the operator with the accounts preloaded, and the user's creds file text.
import { nkeys } from '@nats-io/nats-core';

type KeyPair = ReturnType<typeof nkeys.createUser>;

const UNLIMITED = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
const JETSTREAM = { mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 };

export interface TestOperator {
  /** nats-server configuration (`-c FILE`) trusting the operator, its accounts preloaded. */
  serverConfig: string;
  /** The text of a `.creds` file for a user of the operator's account. */
  userCreds: string;
  /** The text of a `.creds` file for a user of an account the server does not know. */
  strangerCreds: string;
}

export function makeTestOperator(): TestOperator {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  const system = nkeys.createAccount();
  const opJwt = sign(operator, { sub: operator.getPublicKey(), name: 'muster-test', nats: { type: 'operator', version: 2, system_account: system.getPublicKey() } });
  const accountJwt = sign(operator, { sub: account.getPublicKey(), name: 'muster', nats: { limits: { ...UNLIMITED, ...JETSTREAM }, type: 'account', version: 2 } });
  const systemJwt = sign(operator, { sub: system.getPublicKey(), name: 'SYS', nats: { limits: UNLIMITED, type: 'account', version: 2 } });
  const serverConfig =
    `operator: ${opJwt}\nsystem_account: ${system.getPublicKey()}\nresolver: MEMORY\n` +
    `resolver_preload: {\n  ${account.getPublicKey()}: ${accountJwt}\n  ${system.getPublicKey()}: ${systemJwt}\n}\n`;
  return { serverConfig, userCreds: userCreds(account), strangerCreds: userCreds(nkeys.createAccount()) };
}

function userCreds(account: KeyPair): string {
  const user = nkeys.createUser();
  const jwt = sign(account, { sub: user.getPublicKey(), name: 'replica', nats: { pub: {}, sub: {}, subs: -1, data: -1, payload: -1, type: 'user', version: 2 } });
  const seed = new TextDecoder().decode(user.getSeed());
  return `-----BEGIN NATS USER JWT-----\n${jwt}\n------END NATS USER JWT------\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n`;
}

let serial = 0;

function sign(issuer: KeyPair, claims: Record<string, unknown>): string {
  const header = base64url({ typ: 'JWT', alg: 'ed25519-nkey' });
  const body = base64url({ jti: `MUSTERTEST${++serial}`, iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), ...claims });
  const signature = Buffer.from(issuer.sign(new TextEncoder().encode(`${header}.${body}`))).toString('base64url');
  return `${header}.${body}.${signature}`;
}

function base64url(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}
