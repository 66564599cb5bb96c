/** The one naming and labelling convention for everything a RaftCluster owns. */
export const LABEL_CLUSTER = 'raftkv.io/cluster';
export const LABEL_ROLE = 'raftkv.io/role';
export const LABEL_ORDINAL = 'raftkv.io/ordinal';
/** On the pods of a RaftLoggerGroup (they serve several clusters, so they carry no cluster label). */
export const LABEL_GROUP = 'raftkv.io/logger-group';
export type MemberRole = 'replica' | 'logger' | 'loadgen';

export function memberLabels(cluster: string, role: MemberRole, ordinal?: number): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'raftkv',
    'app.kubernetes.io/instance': cluster,
    'app.kubernetes.io/component': role,
    'app.kubernetes.io/managed-by': 'raftkv-operator',
    [LABEL_CLUSTER]: cluster,
    [LABEL_ROLE]: role,
    ...(ordinal === undefined ? {} : { [LABEL_ORDINAL]: String(ordinal) }),
  };
}

export function groupLabels(group: string, ordinal?: number): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'raftkv',
    'app.kubernetes.io/instance': group,
    'app.kubernetes.io/component': 'logger',
    'app.kubernetes.io/managed-by': 'raftkv-operator',
    [LABEL_GROUP]: group,
    [LABEL_ROLE]: 'logger',
    ...(ordinal === undefined ? {} : { [LABEL_ORDINAL]: String(ordinal) }),
  };
}
