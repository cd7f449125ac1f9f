// A replica that only submits one batch, run as its own process so a test can kill -9 it in the
// middle of `submitMany`: env NATS_URL, STORE_NAMES (JSON of the store's names), SECRET_KEY (hex),
// BATCH_SIZE.
import { connect } from '@nats-io/transport-node';
import { JetStreamJobStore } from '../../../supervisor/cluster/jetstream-job-store.js';
import { SecretBox } from '../../../supervisor/store/secret-box.js';
import { OWNER, newJob } from '../store/job-store-contract.js';

const nc = await connect({ servers: process.env.NATS_URL! });
const store = await JetStreamJobStore.open({
  nc,
  box: SecretBox.fromKey(Buffer.from(process.env.SECRET_KEY!, 'hex')),
  ...(JSON.parse(process.env.STORE_NAMES!) as object),
});
const jobs = Array.from({ length: Number(process.env.BATCH_SIZE) }, (_, i) => newJob({ priority: i % 2 === 0 ? 'Low' : 'High' }));
await store.submitMany(jobs, OWNER);
process.stdout.write('submitted\n');
await store.close();
await nc.close();
