// The tls transport over real sockets on port 0 with a throwaway PKI: the transport contract
// (transport-contract.ts), then the certificate checks: server trust on dial, and mutual TLS
// with `peerNames`.
import { describe, it, expect, afterEach } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import '../../transports/builtin.js';
import { transportFor, type ClientTlsOptions, type Connection, type ServerTlsOptions } from '../../transports/transport.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { CODEC_JSON } from '../../protocol/codec.js';
import { peerNamesOf } from '../../transports/peer-names.js';
import { makeTestPki, type CertAndKey } from './test-certificates.js';
import { RecordingSink } from './recording-sink.js';
import { Harness, MAX_FRAME, dial as dialWith, sample, transportContract, type TransportFixture } from './transport-contract.js';

// A TLS socket counts what was written in this turn of the event loop until the next one, even
// when the kernel took it at once, so the limit must hold a whole burst of sends (as the
// default, 8 × max_frame_bytes, does).
const SEND_LIMIT = 1024 * 1024;
const pki = makeTestPki();
const SERVER_TLS: ServerTlsOptions = { cert: pki.server.cert, key: pki.server.key, requireClientCert: false };
const MUTUAL_TLS: ServerTlsOptions = { ...SERVER_TLS, ca: pki.ca, requireClientCert: true };

const TLS: TransportFixture = {
  name: 'tls',
  kind: 'stream',
  listenUrl: () => 'tls://127.0.0.1:0',
  urlPattern: /^tls:\/\/127\.0\.0\.1:[1-9]\d*$/,
  acceptedAddress: /^127\.0\.0\.1:\d+$/,
  dialedAddress: (url) => url.host,
  sendLimit: SEND_LIMIT,
  serverTls: SERVER_TLS,
  clientTls: { ca: pki.ca },
  carriesEncryptedCodecBytes: true,
  byteStream: true,
  refusedDial: /connect to tls:.* failed/,
};

transportContract(TLS);

const dial = (url: URL, clientTls?: ClientTlsOptions): Promise<Connection> =>
  dialWith(url, { tls: clientTls, sendLimit: SEND_LIMIT });

const harnesses: Harness[] = [];
const harness = async (serverTls?: ServerTlsOptions): Promise<Harness> => {
  const h = await new Harness(TLS).listen(undefined, { tls: serverTls });
  harnesses.push(h);
  return h;
};
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});

/**
 * Dials and expects the handshake to be refused. With TLS 1.3 the client finishes its side
 * before the server has checked the client certificate, so a refusal comes as a failed dial or
 * as a connection that closes at once (with an alert's error when OpenSSL refused, none when
 * Node's own check did: it ends the socket without an alert).
 */
async function expectRefused(h: Harness, clientTls: ClientTlsOptions): Promise<void> {
  let conn: Connection;
  try {
    conn = await dial(new URL(h.server.url), clientTls);
  } catch {
    return;
  }
  const sink = new RecordingSink();
  conn.start(sink);
  conn.send(CODEC_JSON, sample(0).body);
  await sink.until(() => sink.closes.length > 0);
  expect(sink.frames).toEqual([]);
  expect(conn.isClosed).toBe(true);
}

describe('tls transport', () => {
  it('dials by host name when the certificate names it', async () => {
    const h = await harness();
    const port = new URL(h.server.url).port;
    const conn = await dial(new URL(`tls://localhost:${port}`), { ca: pki.ca });
    await conn.close();
  });

  it('hands over no connection to a client that does not speak TLS', async () => {
    const h = await harness();
    const url = new URL(h.server.url);
    const plain = net.connect({ host: url.hostname, port: Number(url.port) });
    await once(plain, 'connect');
    plain.on('error', () => {}); // the server may reset it
    plain.write(encodeFrame(CODEC_JSON, sample(0).body));
    await once(plain, 'close');
    expect(h.accepted).toEqual([]);
  });

  it('refuses to listen without a certificate, or with required client certificates but no CA', async () => {
    const url = new URL('tls://127.0.0.1:0');
    const options = { maxFrameBytes: MAX_FRAME, maxSendBufferBytes: SEND_LIMIT, onConnection: () => {} };
    await expect(transportFor(url).listen(url, options)).rejects.toThrow(/needs a certificate and key/);
    await expect(
      transportFor(url).listen(url, { ...options, tls: { ...SERVER_TLS, requireClientCert: true } }),
    ).rejects.toThrow(/needs a CA/);
  });
});

describe('tls transport server trust', () => {
  it('fails to dial a server whose certificate is not from a CA the client trusts', async () => {
    const h = await harness();
    const url = new URL(h.server.url);
    await expect(dial(url, { ca: pki.otherCa.cert })).rejects.toThrow(/connect to tls:.* failed/);
    // No `ca`: the system's CAs, which do not know the test CA either.
    await expect(dial(url)).rejects.toThrow(/connect to tls:.* failed/);
    expect(h.accepted).toEqual([]);
  });

  it('fails to dial a server whose certificate is for another name', async () => {
    const h = await harness();
    await expect(dial(new URL(h.server.url), { ca: pki.ca, servername: 'elsewhere.example' })).rejects.toThrow(
      /elsewhere\.example/,
    );
  });
});

describe('tls transport with mutual TLS', () => {
  it('refuses a client without a certificate', async () => {
    const h = await harness(MUTUAL_TLS);
    await expectRefused(h, { ca: pki.ca });
    expect(h.accepted).toEqual([]);
  });

  it('refuses a client whose certificate is from another CA', async () => {
    const h = await harness(MUTUAL_TLS);
    const stranger = pki.otherCa.client('runner-1.example', ['runner-1.example']);
    await expectRefused(h, { ca: pki.ca, ...stranger });
    expect(h.accepted).toEqual([]);
  });

  it('gives a client with a good certificate peerNames of its CN and DNS SANs', async () => {
    const h = await harness(MUTUAL_TLS);
    const cert = pki.client('runner-1', ['runner-1.ci.example', 'runner-1.local']);
    const client = await h.dial({ tls: { ca: pki.ca, ...cert } });
    const server = await h.nth(0);
    expect(server.conn.peerNames).toEqual(['runner-1', 'runner-1.ci.example', 'runner-1.local']);
    expect(client.conn.peerNames).toEqual([]);
    client.conn.send(sample(0).codecByte, sample(0).body);
    await server.sink.until(() => server.sink.frames.length === 1);
  });

  it('reads a DNS SAN that holds a comma as one name, and names a certificate once', async () => {
    const h = await harness(MUTUAL_TLS);
    const cert = pki.client('same.example', ['same.example', 'odd,name.example']);
    await h.dial({ tls: { ca: pki.ca, ...cert } });
    const server = await h.nth(0);
    expect(server.conn.peerNames).toEqual(['same.example', 'odd,name.example']);
  });
});

describe('peerNamesOf', () => {
  /** The names a server that asks for, but does not insist on, a client certificate reads. */
  async function namesSeenBy(clientCert: CertAndKey | undefined): Promise<string[]> {
    const server = tls.createServer({ ...pki.server, ca: pki.ca, requestCert: true, rejectUnauthorized: false });
    try {
      const seen = new Promise<string[]>((resolve) => server.once('secureConnection', (s) => resolve(peerNamesOf(s))));
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      const { port } = server.address() as net.AddressInfo;
      const client = tls.connect({ host: '127.0.0.1', port, ca: pki.ca, ...clientCert });
      try {
        return await seen;
      } finally {
        client.destroy();
      }
    } finally {
      server.close();
    }
  }

  it('names a verified certificate, and nothing for a missing or unverified one', async () => {
    expect(await namesSeenBy(pki.client('runner-2', ['runner-2.example']))).toEqual(['runner-2', 'runner-2.example']);
    expect(await namesSeenBy(undefined)).toEqual([]);
    expect(await namesSeenBy(pki.otherCa.client('runner-2', ['runner-2.example']))).toEqual([]);
  });
});
