// The part of the plane's API (PlaneApi) that serves pipelines (PROTOCOL.md section 7): batch
// submit, listing, attempts and retry. Its own unit so the composition root only spreads it in.
import type { Logger } from 'pino';
import type { PlaneApi } from '../admin/plane-api.js';
import type { Bus } from '../bus/bus.js';
import type { JobRecord, JobStore, OwnerToken } from '../store/job-store.js';
import { submitSpans } from './job-trace.js';
import type { JobCoordinator } from './job-coordinator.js';
import type { Scheduler } from './scheduler.js';

export interface PipelineApiDeps {
  store: JobStore;
  owner: OwnerToken;
  scheduler: Pick<Scheduler, 'enqueue'>;
  coordinator: JobCoordinator;
  bus: Bus;
  logger: Logger;
  /** Asks the scheduler for a pass. */
  wakeScheduler(): void;
}

export type PipelineApi = Pick<PlaneApi, 'submitJobs' | 'listJobs' | 'jobAttempts' | 'retryJob'>;

export function pipelineApi(d: PipelineApiDeps): PipelineApi {
  return {
    submitJobs: async (jobs) => {
      // One trace per job, each under the request's span: the store keeps each job's context.
      const traced = submitSpans(jobs);
      let records: JobRecord[] = [];
      try {
        records = await d.store.submitMany(traced.jobs, d.owner);
      } finally {
        traced.done(records);
      }
      d.logger.info({ jobs: records.length, first_job_id: records[0]?.job_id }, 'jobs submitted in a batch');
      for (const r of records) d.scheduler.enqueue(r);
      for (const r of records) d.bus.publish({ kind: 'job', job_id: r.job_id, state: r.state, attempt: r.attempt });
      d.wakeScheduler();
      return records;
    },
    listJobs: (filter, limit) => d.store.listJobs(filter, limit),
    jobAttempts: async (jobId) => ((await d.store.get(jobId)) === undefined ? undefined : d.store.attempts(jobId)),
    retryJob: (jobId) => d.coordinator.retry(jobId),
  };
}
