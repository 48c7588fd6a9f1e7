import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { validateConfig } from '../src/config/index.ts';
import { PollSchedule } from '../src/scheduler/poll-schedule.ts';
import { metric } from './reliability/scenarios.ts';
import { BUCKET, ledger, runDaemon, startStack, waitFor } from './helpers/stack.ts';

describe('poll schedule: sooner while files arrive, pollInterval while idle', () => {
  it('backs off from activePollInterval by doubling to pollInterval, and resets on a failure', () => {
    const schedule = new PollSchedule();
    const job = { id: 'j', pollInterval: 10_000, activePollInterval: 1000 };
    const seen = [schedule.interval(job)];
    for (const found of [true, false, false, false, false, false, true, false]) {
      schedule.polled(job, found);
      seen.push(schedule.interval(job));
    }
    assert.deepEqual(seen, [10_000, 1000, 2000, 4000, 8000, 10_000, 10_000, 1000, 2000]);
    schedule.reset('j');
    assert.equal(schedule.interval(job), 10_000);
    // Off when the intervals are equal; a pollInterval lowered by a reload caps a shortened wait.
    const off = { id: 'off', pollInterval: 5000, activePollInterval: 5000 };
    schedule.polled(off, true);
    assert.equal(schedule.interval(off), 5000);
    schedule.polled(job, true);
    schedule.polled(job, false);
    assert.equal(schedule.interval({ ...job, pollInterval: 1500 }), 1500);
  });

  it('resolves activePollInterval per job: the default, capped by pollInterval, and off for query sources', () => {
    const config = validateConfig({
      store: { kind: 'duckdb', path: '/tmp/unused.duckdb' },
      jobs: [
        { id: 'a', source: 's3://bkt/a/', model: { id: 'a' }, schema: { predictionId: 'id', predictionScore: 's' } },
        { id: 'b', source: 's3://bkt/b/', pollInterval: '500ms', model: { id: 'b' }, schema: { predictionId: 'id', predictionScore: 's' } },
        { id: 'c', source: 's3://bkt/c/', pollInterval: '1m', activePollInterval: '5s', model: { id: 'c' }, schema: { predictionId: 'id', predictionScore: 's' } },
        { id: 'q', source: { sql: { url: 'postgres://h/d', query: 'SELECT * FROM t' } }, model: { id: 'q' }, schema: { predictionId: 'id', predictionScore: 's' } },
      ],
    });
    assert.deepEqual(config.jobs.map((j) => [j.id, j.pollInterval, j.activePollInterval]), [
      ['a', 10_000, 1000], ['b', 500, 500], ['c', 60_000, 5000], ['q', 300_000, 300_000],
    ]);
  });

  it('a file landing after a poll found one is imported long before pollInterval; an idle prefix is listed once an hour as before', async () => {
    const stack = await startStack();
    const csv = (id: string) => `pid,score\n${id},0.5\n`;
    const job = (id: string) => ({ id, source: `s3://${BUCKET}/${id}/`, model: { id }, schema: { predictionId: 'pid', predictionScore: 'score' }, pollInterval: '1h', activePollInterval: '1s' });
    await stack.s3.put(BUCKET, 'burst/a.csv', csv('a'));
    const daemon = await runDaemon(stack.config([job('burst'), job('idle')]));
    const lists = (prefix: string) => stack.s3.requestLog.filter((r) => r.method === 'GET' && r.query['list-type'] === '2' && r.query.prefix === prefix).length;
    try {
      await waitFor('a.csv imported by the first poll', async () => (await ledger(daemon, 'burst')).some((r) => r.status === 'succeeded'));
      await stack.s3.put(BUCKET, 'burst/b.csv', csv('b'));
      // The first poll found a.csv, so the next ones come 1, 2, 4, … s later, not in an hour.
      const rows = await waitFor('b.csv imported', async () => {
        const l = await ledger(daemon, 'burst');
        return l.length === 2 && l.every((r) => r.status === 'succeeded') && l;
      }, 60_000);
      assert.deepEqual(rows.map((r) => [r.key, r.predictions_loaded]), [['burst/a.csv', 1], ['burst/b.csv', 1]]);
      assert.ok(lists('burst/') >= 2, `burst/ was listed again (${lists('burst/')} LIST requests)`);
      const wait = await metric(daemon, 'importer_poll_interval_seconds{job="burst"}');
      assert.ok(wait >= 1 && wait < 3600, `the next poll of burst/ is due soon (${wait} s)`);
      // The job that found nothing keeps its hour: one LIST request, at start.
      assert.equal(lists('idle/'), 1);
      assert.equal(await metric(daemon, 'importer_poll_interval_seconds{job="idle"}'), 3600);
    } finally {
      await daemon.stop();
      await stack.stop();
    }
  });
});
