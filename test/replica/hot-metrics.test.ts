import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import client from 'prom-client';
import { HotCounter, HotHistogram } from '../../replica/hot-metrics.js';

// The hot-path metrics must read like prom-client's own, so dashboards and alerts do not notice
// which one a replica uses: the same HELP and TYPE lines and the same samples (label order aside,
// which Prometheus ignores).
function samples(text: string): string[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const m = /^([^{ ]+)(?:\{(.*)\})? (.+)$/.exec(line);
      if (!m || line.startsWith('#')) return line;
      const labels = (m[2] ?? '').split(',').filter(Boolean).sort().join(',');
      return `${m[1]}{${labels}} ${m[3]}`;
    })
    .sort();
}

describe('hot-path metrics', () => {
  it('a histogram prints what prom-client prints for the same observations, per label set', async () => {
    const ours = new client.Registry();
    const theirs = new client.Registry();
    for (const r of [ours, theirs]) r.setDefaultLabels({ node: 'n1' });
    const buckets = [0.001, 0.01, 0.1, 1];
    const hot = new HotHistogram(ours, { name: 'x_seconds', help: 'h', buckets, labelNames: ['op', 'status'] });
    const ref = new client.Histogram({ name: 'x_seconds', help: 'h', buckets, labelNames: ['op', 'status'], registers: [theirs] });
    const seen: [string, string, number][] = [['GET', 'OK', 0.0005], ['GET', 'OK', 0.05], ['SET', 'ERROR', 2], ['GET', 'OK', 0.001], ['SET', 'ERROR', 0.1]];
    for (const [op, status, v] of seen) {
      hot.labels({ op, status }).observe(v);
      ref.observe({ op, status }, v);
    }
    assert.deepEqual(samples(await ours.metrics()), samples(await theirs.metrics()));
  });

  it('an unlabelled histogram times a span, and counters add up per label set', async () => {
    const ours = new client.Registry();
    const theirs = new client.Registry();
    const hot = new HotHistogram(ours, { name: 'y', help: 'h', buckets: [1, 2, 4] });
    const ref = new client.Histogram({ name: 'y', help: 'h', buckets: [1, 2, 4], registers: [theirs] });
    for (const v of [0, 1, 3, 9]) {
      hot.observe(v);
      ref.observe(v);
    }
    const c = new HotCounter(ours, { name: 'c_total', help: 'h', labelNames: ['direction'] });
    const cref = new client.Counter({ name: 'c_total', help: 'h', labelNames: ['direction'], registers: [theirs] });
    const sent = c.labels({ direction: 'sent' });
    for (const n of [3, 4]) {
      sent.inc(n);
      cref.inc({ direction: 'sent' }, n);
    }
    c.labels({ direction: 'received' }).inc();
    cref.inc({ direction: 'received' });
    const plain = new HotCounter(ours, { name: 'p_total', help: 'h' });
    const pref = new client.Counter({ name: 'p_total', help: 'h', registers: [theirs] });
    plain.inc(5);
    pref.inc(5);
    assert.deepEqual(samples(await ours.metrics()), samples(await theirs.metrics()));

    const end = hot.startTimer();
    await new Promise((r) => setTimeout(r, 5));
    end();
    assert.match(await ours.metrics(), /^y_count 5$/m);
  });
});
