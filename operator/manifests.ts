/**
 * What the operator needs from the API, the single statement of it: the chart's ClusterRole
 * (charts/raftkv/templates/rbac.yaml) must say exactly this (the chart test compares them) and the
 * install test checks it against the API server's request log: nothing denied, nothing unused.
 */

export const OPERATOR_NAMESPACE = 'raftkv-system';

/** What the operator does, resource by resource (the e2e test compares this with what it did). */
export const OPERATOR_RULES = [
  { apiGroups: ['raftkv.io'], resources: ['raftclusters'], verbs: ['list', 'watch'] },
  { apiGroups: ['raftkv.io'], resources: ['raftclusters/status'], verbs: ['patch'] },
  { apiGroups: ['raftkv.io'], resources: ['raftloggergroups'], verbs: ['list', 'watch'] },
  { apiGroups: ['raftkv.io'], resources: ['raftloggergroups/status'], verbs: ['patch'] },
  { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch', 'create', 'delete'] },
  { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
  { apiGroups: [''], resources: ['services'], verbs: ['get', 'create', 'patch'] },
  { apiGroups: [''], resources: ['persistentvolumeclaims'], verbs: ['create', 'delete'] },
  { apiGroups: [''], resources: ['events'], verbs: ['create'] },
  { apiGroups: [''], resources: ['serviceaccounts'], verbs: ['get', 'create', 'patch'] },
  { apiGroups: ['rbac.authorization.k8s.io'], resources: ['roles', 'rolebindings'], verbs: ['get', 'create', 'patch'] },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: ['get', 'create', 'patch'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] },
  { apiGroups: ['monitoring.coreos.com'], resources: ['servicemonitors'], verbs: ['get', 'create', 'patch'] },
];
