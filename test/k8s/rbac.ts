/**
 * RBAC as the API server enforces it for ServiceAccount tokens: RoleBindings in the request's
 * namespace and ClusterRoleBindings grant the rules of their Role/ClusterRole to their subjects
 * (ServiceAccounts, users, the groups system:serviceaccounts[:NS] and system:authenticated).
 * The admin (the kubeconfig's token) may do everything; anonymous requests nothing but discovery.
 */
import type { KObject } from './store.js';

export interface RequestAttributes {
  user: string;
  verb: string;
  group: string;
  resource: string;
  subresource?: string;
  namespace?: string;
  name?: string;
}

interface Rule {
  apiGroups?: string[];
  resources?: string[];
  verbs?: string[];
  resourceNames?: string[];
}

interface ObjectSource {
  listObjects(group: string, version: string, plural: string, namespace?: string): KObject[];
  getObject(group: string, version: string, plural: string, namespace: string | undefined, name: string): KObject | undefined;
}

const RBAC = 'rbac.authorization.k8s.io';

/** The kubeconfig's user: may do everything. */
export const ADMIN = 'kubernetes-admin';

export class Authorizer {
  constructor(private readonly objects: ObjectSource) {}

  allowed(a: RequestAttributes): boolean {
    if (a.user === ADMIN) return true;
    if (a.user === 'system:anonymous') return false;
    return this.rulesFor(a.user, a.namespace).some((r) => matches(r, a));
  }

  private rulesFor(user: string, namespace: string | undefined): Rule[] {
    const groups = groupsOf(user);
    const bound = (b: KObject) =>
      (b.subjects ?? []).some((s: any) => {
        if (s.kind === 'ServiceAccount') return user === `system:serviceaccount:${s.namespace ?? b.metadata.namespace}:${s.name}`;
        if (s.kind === 'User') return s.name === user;
        if (s.kind === 'Group') return groups.includes(s.name);
        return false;
      });
    const rules: Rule[] = [];
    const roleRules = (ref: any, ns: string | undefined) => {
      const role = ref.kind === 'ClusterRole' ? this.objects.getObject(RBAC, 'v1', 'clusterroles', undefined, ref.name) : ns ? this.objects.getObject(RBAC, 'v1', 'roles', ns, ref.name) : undefined;
      return (role?.rules ?? []) as Rule[];
    };
    for (const b of this.objects.listObjects(RBAC, 'v1', 'clusterrolebindings')) if (bound(b)) rules.push(...roleRules(b.roleRef, undefined));
    if (namespace) for (const b of this.objects.listObjects(RBAC, 'v1', 'rolebindings', namespace)) if (bound(b)) rules.push(...roleRules(b.roleRef, namespace));
    return rules;
  }
}

function groupsOf(user: string): string[] {
  const m = /^system:serviceaccount:([^:]+):/.exec(user);
  return ['system:authenticated', ...(m ? ['system:serviceaccounts', `system:serviceaccounts:${m[1]}`] : [])];
}

function matches(r: Rule, a: RequestAttributes): boolean {
  const resource = a.subresource ? `${a.resource}/${a.subresource}` : a.resource;
  const has = (list: string[] | undefined, v: string) => (list ?? []).includes('*') || (list ?? []).includes(v);
  if (!has(r.apiGroups, a.group)) return false;
  if (!has(r.resources, resource)) return false;
  if (!has(r.verbs, a.verb)) return false;
  if (r.resourceNames && r.resourceNames.length > 0 && (!a.name || !r.resourceNames.includes(a.name))) return false;
  return true;
}
