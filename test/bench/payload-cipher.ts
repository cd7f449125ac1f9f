// What payload encryption costs per frame: encrypt + decrypt of a ~300-byte MessagePack
// heartbeat (and a few larger bodies) with transports/payload-cipher.ts, in µs per frame.
// A measurement to print, not a test: `npx tsx test/bench/payload-cipher.ts`.
import { randomBytes } from 'node:crypto';
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { PayloadCipher } from '../../transports/payload-cipher.js';
import { sampleMessages } from '../protocol/sample-messages.js';

const ROUNDS = 200_000;
const key = randomBytes(32);
const sender = new PayloadCipher(key);
const receiver = new PayloadCipher(key);

function measure(label: string, body: Uint8Array, rounds: number): void {
  for (let i = 0; i < 2_000; i++) receiver.decrypt(0x82, sender.encrypt(0x82, body)); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) receiver.decrypt(0x82, sender.encrypt(0x82, body));
  const micros = Number(process.hrtime.bigint() - start) / 1_000 / rounds;
  const perSecond = Math.round(1_000_000 / micros);
  console.log(`${label.padEnd(28)} ${body.length.toString().padStart(7)} B  ${micros.toFixed(2).padStart(7)} µs/frame (encrypt+decrypt)  ${perSecond.toLocaleString('en')} frames/s on one core`);
}

const heartbeat = encodeBody(CODEC_MSGPACK, sampleMessages().Heartbeat);
measure('MessagePack heartbeat', heartbeat, ROUNDS);
measure('4 KiB log chunk', randomBytes(4096), ROUNDS / 4);
measure('64 KiB frame', randomBytes(65_536), ROUNDS / 40);
