/**
 * The Grafana dashboard the chart ships (charts/raftkv/files/grafana-dashboard.json, written by
 * `npm run gen`): replicas (Raft progress, leadership, client latency, durability), loggers
 * (lag, throughput, fsync) and the operator (reconciles, queue, Lease). Every metric it queries is
 * one the processes export; the chart test checks that against their /metrics.
 */

interface Panel {
  title: string;
  unit: string;
  exprs: [expr: string, legend: string][];
}

const sel = '{namespace=~"$namespace"}';

const ROWS: [string, Panel[]][] = [
  [
    'Replicas',
    [
      { title: 'Commit and applied index', unit: 'short', exprs: [[`raftkv_raft_commit_index${sel}`, 'commit {{pod}}'], [`raftkv_raft_applied_index${sel}`, 'applied {{pod}}']] },
      { title: 'Committed entries per second', unit: 'ops', exprs: [[`rate(raftkv_raft_commit_index${sel}[1m])`, '{{pod}}']] },
      { title: 'Term and leader', unit: 'short', exprs: [[`raftkv_raft_term${sel}`, 'term {{pod}}'], [`raftkv_raft_is_leader${sel}`, 'leader {{pod}}']] },
      { title: 'Leader changes', unit: 'short', exprs: [[`increase(raftkv_raft_leader_changes_total${sel}[5m])`, '{{pod}}']] },
      { title: 'Client requests per second', unit: 'reqps', exprs: [[`sum by (op) (rate(raftkv_client_request_seconds_count${sel}[1m]))`, '{{op}}']] },
      { title: 'Client latency p99', unit: 's', exprs: [[`histogram_quantile(0.99, sum by (le, op) (rate(raftkv_client_request_seconds_bucket${sel}[1m])))`, '{{op}}']] },
      { title: 'Log append + fsync p99', unit: 's', exprs: [[`histogram_quantile(0.99, sum by (le, pod) (rate(raftkv_storage_append_seconds_bucket${sel}[1m])))`, '{{pod}}']] },
      { title: 'Peer round trip p99', unit: 's', exprs: [[`histogram_quantile(0.99, sum by (le, peer) (rate(raftkv_peer_rtt_seconds_bucket${sel}[1m])))`, '{{peer}}']] },
      { title: 'Snapshots', unit: 'short', exprs: [[`increase(raftkv_snapshots_total${sel}[5m])`, '{{pod}}']] },
      { title: 'Keys', unit: 'short', exprs: [[`raftkv_keys${sel}`, '{{pod}}']] },
    ],
  ],
  [
    'Loggers',
    [
      { title: 'Logger lag (entries)', unit: 'short', exprs: [[`raftkv_logger_lag_entries${sel}`, '{{pod}} {{cluster}}']] },
      { title: 'Logger lag (seconds)', unit: 's', exprs: [[`raftkv_logger_lag_seconds${sel}`, '{{pod}} {{cluster}}']] },
      { title: 'Logged entries per second', unit: 'ops', exprs: [[`rate(raftkv_logger_entries_total${sel}[1m])`, '{{pod}}']] },
      { title: 'Logger fsync p99', unit: 's', exprs: [[`histogram_quantile(0.99, sum by (le, pod) (rate(raftkv_logger_fsync_seconds_bucket${sel}[1m])))`, '{{pod}}']] },
    ],
  ],
  [
    'Operator',
    [
      { title: 'Reconciles per second', unit: 'ops', exprs: [[`sum by (result) (rate(raftkv_operator_reconciles_total${sel}[5m]))`, '{{result}}']] },
      { title: 'Reconcile p99', unit: 's', exprs: [[`histogram_quantile(0.99, sum by (le) (rate(raftkv_operator_reconcile_seconds_bucket${sel}[5m])))`, 'p99']] },
      { title: 'Queue depth and Lease', unit: 'short', exprs: [[`raftkv_operator_queue_depth${sel}`, 'queue {{pod}}'], [`raftkv_operator_leader${sel}`, 'leader {{pod}}']] },
    ],
  ],
];

export function grafanaDashboard(): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const [row, ps] of ROWS) {
    panels.push({ id: id++, type: 'row', title: row, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y: y++ }, panels: [] });
    ps.forEach((p, i) => {
      panels.push({
        id: id++,
        type: 'timeseries',
        title: p.title,
        datasource: { type: 'prometheus', uid: '${datasource}' },
        fieldConfig: { defaults: { unit: p.unit }, overrides: [] },
        gridPos: { h: 8, w: 8, x: (i % 3) * 8, y: y + Math.floor(i / 3) * 8 },
        targets: p.exprs.map(([expr, legendFormat], k) => ({ refId: String.fromCharCode(65 + k), expr, legendFormat })),
      });
    });
    y += Math.ceil(ps.length / 3) * 8;
  }
  return {
    title: 'raftkv',
    uid: 'raftkv',
    tags: ['raftkv', 'raft'],
    schemaVersion: 39,
    version: 1,
    refresh: '10s',
    time: { from: 'now-1h', to: 'now' },
    templating: {
      list: [
        { name: 'datasource', type: 'datasource', query: 'prometheus', label: 'Data source' },
        { name: 'namespace', type: 'query', datasource: { type: 'prometheus', uid: '${datasource}' }, query: 'label_values(raftkv_raft_term, namespace)', includeAll: true, multi: true, allValue: '.*', label: 'Namespace' },
      ],
    },
    panels,
  };
}

/** The metric names the dashboard queries (histograms by their base name). */
export function dashboardMetrics(): string[] {
  const names = new Set<string>();
  for (const [, ps] of ROWS) for (const p of ps) for (const [expr] of p.exprs) for (const m of expr.matchAll(/raftkv_[a-z_]+/g)) names.add(m[0].replace(/_(bucket|count|sum)$/, ''));
  return [...names].sort();
}
