// Jobs: the queue by priority (live from the feed), the queued jobs with why each waits
// (`waiting_for`), the latest jobs; and one job: its record, every attempt, and its logs as
// they stream (GET /v1/jobs/{id}/logs?follow=1).
import { api, followLogs } from './api.js';
import { ago, el, link } from './dom.js';
import { fleet } from './fleet-state.js';

const PRIORITIES = ['Critical', 'High', 'Normal', 'Low'];

/** Runs `fn` at most once per `ms`, the last call winning. @param {() => Promise<void>} fn @param {number} ms */
function throttled(fn, ms) {
  let timer = 0;
  let running = false;
  let again = false;
  const run = async () => {
    timer = 0;
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = () => {
    if (timer === 0) timer = window.setTimeout(run, ms);
  };
  return { now: run, later: schedule, stop: () => window.clearTimeout(timer) };
}

export class JobsView {
  constructor() {
    this.queueEl = el('table', { class: 'queue', id: 'queue-counts' });
    this.queuedEl = el('div', { id: 'queued-jobs' });
    this.recentEl = el('div', { id: 'recent-jobs' });
    this.refresh = throttled(() => this.load(), 500);
  }

  /** @param {HTMLElement} root */
  mount(root) {
    root.append(el('h2', {}, ['Jobs']), el('h3', {}, ['Queue by priority']), this.queueEl, el('h3', {}, ['Queued']), this.queuedEl, el('h3', {}, ['Latest']), this.recentEl);
    this.drawQueue();
    void this.refresh.now();
  }

  unmount() {
    this.refresh.stop();
  }

  /** @param {import('./fleet-state.js').Change} change */
  update(change) {
    if (change.queue || change.snapshot) this.drawQueue();
    if (change.jobs.length > 0 || change.snapshot) this.refresh.later();
  }

  drawQueue() {
    this.queueEl.replaceChildren(
      el('tr', {}, PRIORITIES.map((p) => el('th', {}, [p]))),
      el('tr', {}, PRIORITIES.map((p) => el('td', { 'data-priority': p }, [String(fleet.queue[p] ?? 0)]))),
    );
  }

  async load() {
    try {
      const [queued, recent] = await Promise.all([api('GET', '/v1/jobs?state=Queued&limit=100'), api('GET', '/v1/jobs?limit=50')]);
      this.queuedEl.replaceChildren(jobTable(queued.jobs, true));
      this.recentEl.replaceChildren(jobTable(recent.jobs, false));
    } catch (err) {
      this.recentEl.replaceChildren(el('p', { class: 'error' }, [`jobs: ${err instanceof Error ? err.message : String(err)}`]));
    }
  }
}

/** @param {any[]} jobs @param {boolean} queued */
function jobTable(jobs, queued) {
  if (jobs.length === 0) return el('p', { class: 'muted' }, ['none']);
  const head = queued ? ['job', 'priority', 'waiting for', 'submitted'] : ['job', 'state', 'attempt', 'node', 'submitted'];
  return el('table', { class: 'jobs' }, [
    el('thead', {}, [el('tr', {}, head.map((h) => el('th', {}, [h])))]),
    el(
      'tbody',
      {},
      jobs.map((j) =>
        el('tr', { 'data-job': j.job_id, 'data-state': j.state }, [
          el('td', {}, [el('a', { class: 'mono', href: link('job', j.job_id) }, [j.job_id])]),
          ...(queued
            ? [el('td', {}, [j.priority]), el('td', {}, [j.waiting_for ?? '—'])]
            : [
                el('td', {}, [el('span', { class: `badge job-${String(j.state).toLowerCase()}` }, [j.state])]),
                el('td', {}, [String(j.attempt)]),
                el('td', { class: 'mono' }, [j.node_id === undefined ? '—' : el('a', { href: link('node', j.node_id) }, [j.node_id])]),
              ]),
          el('td', { class: 'muted' }, [ago(j.created_at)]),
        ]),
      ),
    ),
  ]);
}

export class JobView {
  /** @param {string} id */
  constructor(id) {
    this.id = id;
    this.summaryEl = el('div', { id: 'job-summary' });
    this.attemptsEl = el('div', { id: 'job-attempts' });
    this.logEl = el('pre', { class: 'log', id: 'job-log' });
    this.endEl = el('p', { class: 'muted', id: 'log-end' });
    this.refresh = throttled(() => this.load(), 300);
    /** @type {() => void} */
    this.stopLogs = () => {};
  }

  /** @param {HTMLElement} root */
  mount(root) {
    root.append(
      el('p', {}, [el('a', { href: '#/jobs' }, ['← jobs'])]),
      el('h2', {}, ['Job ', el('span', { class: 'mono' }, [this.id])]),
      this.summaryEl,
      el('h3', {}, ['Attempts']),
      this.attemptsEl,
      el('h3', {}, ['Logs']),
      this.logEl,
      this.endEl,
    );
    void this.refresh.now();
    this.stopLogs = followLogs(
      this.id,
      (chunk) => {
        const line = el('span', { class: `log-${chunk.stream}`, 'data-attempt': chunk.attempt }, [chunk.data]);
        this.logEl.append(line);
      },
      (end) => {
        this.endEl.textContent = end instanceof Error ? `log stream: ${end.message}` : `ended: ${end.state}${end.reason === undefined ? '' : ` (${end.reason})`}`;
        void this.refresh.now();
      },
    );
  }

  unmount() {
    this.refresh.stop();
    this.stopLogs();
  }

  /** @param {import('./fleet-state.js').Change} change */
  update(change) {
    if (change.jobs.some((j) => j.job_id === this.id)) this.refresh.later();
  }

  async load() {
    try {
      const [job, attempts] = await Promise.all([
        api('GET', `/v1/jobs/${encodeURIComponent(this.id)}`),
        api('GET', `/v1/jobs/${encodeURIComponent(this.id)}/attempts`),
      ]);
      this.summaryEl.replaceChildren(
        el('dl', { class: 'facts' }, [
          el('dt', {}, ['state']),
          el('dd', {}, [el('span', { class: `badge job-${String(job.state).toLowerCase()}`, id: 'job-state' }, [job.state])]),
          el('dt', {}, ['priority']),
          el('dd', {}, [job.priority]),
          el('dt', {}, ['command']),
          el('dd', { class: 'mono' }, [JSON.stringify(job.job?.command ?? job.job)]),
          el('dt', {}, ['waiting for']),
          el('dd', {}, [job.waiting_for ?? '—']),
        ]),
      );
      this.attemptsEl.replaceChildren(
        attempts.length === 0
          ? el('p', { class: 'muted' }, ['none yet'])
          : el('table', { class: 'attempts' }, [
              el('thead', {}, [el('tr', {}, ['attempt', 'node', 'assigned', 'accepted', 'ended', 'outcome'].map((h) => el('th', {}, [h])))]),
              el(
                'tbody',
                {},
                attempts.map((/** @type {any} */ a) =>
                  el('tr', { 'data-attempt': a.attempt }, [
                    el('td', {}, [String(a.attempt)]),
                    el('td', { class: 'mono' }, [el('a', { href: link('node', a.node_id) }, [a.node_id])]),
                    el('td', { class: 'muted' }, [ago(a.assigned_at)]),
                    el('td', { class: 'muted' }, [ago(a.accepted_at)]),
                    el('td', { class: 'muted' }, [ago(a.ended_at)]),
                    el('td', {}, [a.outcome ?? '', a.reason === undefined ? '' : ` (${a.reason})`]),
                  ]),
                ),
              ),
            ]),
      );
    } catch (err) {
      this.summaryEl.replaceChildren(el('p', { class: 'error' }, [`job: ${err instanceof Error ? err.message : String(err)}`]));
    }
  }
}
