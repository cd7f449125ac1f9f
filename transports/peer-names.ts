// The names a verified TLS client certificate vouches for (`Connection.peerNames`): its
// subject CN and its DNS subject alternative names. Shared by every TLS-carrying transport
// (tls, wss, grpcs) so that registration checks the same names whichever way a node dials.
import type { TLSSocket } from 'node:tls';

/**
 * Subject CN and `DNS:` SANs of the peer's certificate, without duplicates; empty when the
 * peer sent no certificate or it did not verify against the listener's CA (`authorized`).
 */
export function peerNamesOf(socket: TLSSocket): string[] {
  if (!socket.authorized) return [];
  const cert = socket.getPeerCertificate();
  // Node returns an empty object, not null, when there is no peer certificate.
  if (cert === null || Object.keys(cert).length === 0) return [];
  const names = new Set<string>();
  for (const cn of asList(cert.subject?.CN)) names.add(cn);
  for (const name of dnsNames(cert.subjectaltname)) names.add(name);
  return [...names];
}

/** A subject field is a string, or an array when the certificate repeats it. */
function asList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/**
 * The `DNS:` entries of Node's `subjectaltname` text (`DNS:a, IP Address:1.2.3.4, DNS:b`).
 * Node quotes an entry that itself holds a comma or a quote (`DNS:"a,b"`), as JSON.
 */
function dnsNames(subjectaltname: string | undefined): string[] {
  if (subjectaltname === undefined || subjectaltname === '') return [];
  const names: string[] = [];
  for (const entry of splitEntries(subjectaltname)) {
    if (!entry.startsWith('DNS:')) continue;
    const value = entry.slice('DNS:'.length);
    names.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return names;
}

/** Splits on `, ` outside double quotes. */
function splitEntries(text: string): string[] {
  const entries: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '\\' && quoted) {
      current += ch + (text[i + 1] ?? '');
      i += 1;
      continue;
    }
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      entries.push(current.trim());
      current = '';
      continue;
    }
    current += ch;
  }
  if (current.trim() !== '') entries.push(current.trim());
  return entries;
}
