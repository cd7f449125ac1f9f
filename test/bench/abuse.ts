// `npm run bench abuse`: a bystander node's round trip through the plane, quiet and while one
// other node floods it with the trial's abusive heartbeat (valid, 110,000 extra keys, ~880 KB of
// MessagePack: issue 8 item 8), in the same run. The round trip is a message the plane answers
// (an unknown type, answered `unknown_type` with our id): it goes through the same read path as
// every frame. The plane runs with its default node limits (byte and message rates, reading
// time). The abusive frames are refused by size before they are decoded, and what reading them
// costs is charged to the abuser (`nodeDecodeMsPerSecond`).
import { Packr } from 'msgpackr';
import { CODEC_MSGPACK, encodeBody } from '../../protocol/codec.js';
import { encodeFrame } from '../../protocol/frame-encoder.js';
import { DEFAULTS } from '../../supervisor/config.js';
import { heartbeatEnvelope, mintNodeToken, registerNode, type BenchNode } from './bench-node.js';
import { startPlane } from './processes.js';
import { summarize, type Summary } from './quantiles.js';

const PROBES = Number(process.env.BENCH_PROBES ?? 500);
const EXTRA_KEYS = 110_000;

/** The plane's default node limits: the benchmarks' own plane lifts them (processes.ts). */
const DEFAULT_NODE_LIMITS = {
  MUSTER_NODE_MESSAGE_RATE: String(DEFAULTS.nodeMessageRate),
  MUSTER_NODE_MESSAGE_BURST: String(DEFAULTS.nodeMessageBurst),
  MUSTER_NODE_BYTE_RATE: String(DEFAULTS.nodeByteRate),
  MUSTER_NODE_BYTE_BURST: String(DEFAULTS.nodeByteBurst),
  MUSTER_NODE_DECODE_MS_PER_SECOND: String(DEFAULTS.nodeDecodeMsPerSecond),
  MUSTER_NODE_DECODE_BURST_MS: String(DEFAULTS.nodeDecodeBurstMs),
};

export async function runAbuse(): Promise<void> {
  const plane = await startPlane({ MUSTER_HEARTBEAT_INTERVAL_MS: '60000', ...DEFAULT_NODE_LIMITS });
  try {
    const token = await mintNodeToken(plane.dataDir, 600);
    const bystander = await registerNode(plane.tcpUrl, CODEC_MSGPACK, token, { hostname: 'bystander' });
    const abuser = await registerNode(plane.tcpUrl, CODEC_MSGPACK, token, { hostname: 'abuser' });
    const quiet = await roundTrips(bystander, 'quiet');
    let refused = 0;
    abuser.socket.onMessage = (e) => {
      if (e.type === 'Error') refused++;
    };
    let flooding = true;
    let sent = 0;
    const frame = abusiveHeartbeat(abuser.nodeId);
    const flood = (async () => {
      while (flooding) {
        await abuser.socket.write(frame);
        sent++;
      }
    })();
    const abused = await roundTrips(bystander, 'abused');
    flooding = false;
    await flood;
    console.log(`abusive heartbeat: ${frame.length.toLocaleString('en-US')} bytes, ${EXTRA_KEYS.toLocaleString('en-US')} extra keys; default node limits`);
    console.log(`bystander round trip, quiet           ${line(quiet)}`);
    console.log(`bystander round trip, under the flood ${line(abused)}   (${sent} abusive frames sent, ${refused} Error answers)`);
    console.log(`p50 ratio ${(abused.p50 / quiet.p50).toFixed(2)}, p99 ratio ${(abused.p99 / quiet.p99).toFixed(2)}`);
    bystander.socket.close();
    abuser.socket.close();
  } finally {
    await plane.stop();
  }
}

function abusiveHeartbeat(nodeId: string): Uint8Array {
  const { data } = heartbeatEnvelope(nodeId);
  const extra: Record<string, unknown> = { ...data };
  for (let i = 0; i < EXTRA_KEYS; i++) extra[`k${i}`] = 0;
  const body = new Packr({ useRecords: false, variableMapSize: true }).pack({ type: 'Heartbeat', id: 'abuse', data: extra });
  return encodeFrame(CODEC_MSGPACK, body);
}

async function roundTrips(node: BenchNode, tag: string): Promise<Summary> {
  const samples: number[] = [];
  for (let i = 0; i < PROBES; i++) {
    const id = `${tag}-${i}`;
    const answered = node.socket.next((e) => e.reply_to === id);
    const started = performance.now();
    await node.socket.write(encodeFrame(CODEC_MSGPACK, encodeBody(CODEC_MSGPACK, { type: 'BenchProbe', id, data: {} })));
    await answered;
    samples.push(performance.now() - started);
  }
  return summarize(samples);
}

function line(s: Summary): string {
  const us = (ms: number): string => `${Math.round(ms * 1000).toLocaleString('en-US')} µs`.padStart(10);
  return `p50 ${us(s.p50)}  p99 ${us(s.p99)}  max ${us(s.max)}`;
}
