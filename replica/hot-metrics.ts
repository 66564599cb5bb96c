/**
 * Counters and histograms for the paths every request takes, exposed through a prom-client
 * registry in the same text format. prom-client builds, validates and hashes a label object on
 * every update (and closures for timers): 4-6% of each replica's CPU under load went there. Here
 * a label set is resolved once to a child that updates plain numbers.
 */
import type { Registry } from 'prom-client';

type Labels<L extends string> = Record<L, string>;

interface MetricValue {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/** What prom-client's registry reads from a metric (its `get()` contract). */
abstract class HotMetric<L extends string, C> {
  private readonly children = new Map<string, { labels: Labels<L>; child: C }>();
  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'histogram',
    private readonly labelNames: readonly L[],
  ) {
    registry.registerMetric(this as never);
  }

  /** The child for one label set; keep it where the labels are fixed. */
  labels(labels: Labels<L>): C {
    let key = '';
    for (const n of this.labelNames) key += `${labels[n]}\u0000`;
    let c = this.children.get(key);
    if (!c) {
      const own = {} as Labels<L>;
      for (const n of this.labelNames) own[n] = String(labels[n]);
      this.children.set(key, (c = { labels: own, child: this.newChild() }));
    }
    return c.child;
  }

  protected abstract newChild(): C;
  protected abstract values(labels: Labels<L>, child: C): MetricValue[];

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    for (const { labels, child } of this.children.values()) values.push(...this.values(labels, child));
    return { name: this.name, help: this.help, type: this.type, values, aggregator: 'sum' };
  }
}

export class HotCounterChild {
  value = 0;
  inc(n = 1): void {
    this.value += n;
  }
}

export class HotCounter<L extends string = never> extends HotMetric<L, HotCounterChild> {
  private readonly unlabelled: HotCounterChild | undefined;
  constructor(registry: Registry, o: { name: string; help: string; labelNames?: readonly L[] }) {
    super(registry, o.name, o.help, 'counter', o.labelNames ?? []);
    if (!o.labelNames?.length) this.unlabelled = this.labels({} as Labels<L>);
  }
  /** For a counter without labels. */
  inc(n = 1): void {
    this.unlabelled!.value += n;
  }
  protected newChild(): HotCounterChild {
    return new HotCounterChild();
  }
  protected values(labels: Labels<L>, c: HotCounterChild): MetricValue[] {
    return [{ labels, value: c.value }];
  }
}

export class HotHistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly upperBounds: readonly number[]) {
    this.counts = new Float64Array(upperBounds.length);
  }
  observe(v: number): void {
    const b = this.upperBounds;
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    if (i < b.length) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
  /** Seconds from now until the returned function is called (observed then). */
  startTimer(): () => void {
    const t0 = performance.now();
    return () => this.observe((performance.now() - t0) / 1000);
  }
}

export class HotHistogram<L extends string = never> extends HotMetric<L, HotHistogramChild> {
  private readonly unlabelled: HotHistogramChild | undefined;
  private readonly buckets: readonly number[];
  constructor(registry: Registry, o: { name: string; help: string; buckets: readonly number[]; labelNames?: readonly L[] }) {
    super(registry, o.name, o.help, 'histogram', o.labelNames ?? []);
    this.buckets = [...o.buckets].sort((a, b) => a - b);
    if (!o.labelNames?.length) this.unlabelled = this.labels({} as Labels<L>);
  }
  /** For a histogram without labels. */
  observe(v: number): void {
    this.unlabelled!.observe(v);
  }
  startTimer(): () => void {
    return this.unlabelled!.startTimer();
  }
  protected newChild(): HotHistogramChild {
    return new HotHistogramChild(this.buckets);
  }
  protected values(labels: Labels<L>, c: HotHistogramChild): MetricValue[] {
    const out: MetricValue[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      cumulative += c.counts[i];
      out.push({ metricName: `${this.name}_bucket`, labels: { le: this.buckets[i], ...labels }, value: cumulative });
    }
    out.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: c.count });
    out.push({ metricName: `${this.name}_sum`, labels, value: c.sum });
    out.push({ metricName: `${this.name}_count`, labels, value: c.count });
    return out;
  }
}
