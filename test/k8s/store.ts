/**
 * The emulator's etcd: every object under one counter of resource versions, a window of recent
 * changes for watches to resume from (older than the window: 410 Gone, as the real API server
 * answers once etcd compacted), and the live watchers.
 */
export type KObject = Record<string, any> & { metadata: Record<string, any> };

export type WatchType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface WatchEvent {
  rv: number;
  type: WatchType;
  typeKey: string;
  namespace: string;
  object: KObject;
}

export interface Watcher {
  typeKey: string;
  namespace?: string;
  accept: (o: KObject) => boolean;
  send: (type: WatchType | 'BOOKMARK' | 'ERROR', object: unknown) => void;
}

export class GoneError extends Error {}

export class Store {
  private rv = 100;
  private readonly objects = new Map<string, KObject>();
  private readonly history: WatchEvent[] = [];
  readonly watchers = new Set<Watcher>();

  constructor(private readonly window = 2000) {}

  get resourceVersion(): number {
    return this.rv;
  }

  private key(typeKey: string, namespace: string, name: string): string {
    return `${typeKey}|${namespace}|${name}`;
  }

  get(typeKey: string, namespace: string, name: string): KObject | undefined {
    const o = this.objects.get(this.key(typeKey, namespace, name));
    return o && structuredClone(o);
  }

  list(typeKey: string, namespace?: string): KObject[] {
    const prefix = `${typeKey}|${namespace ?? ''}`;
    const out: KObject[] = [];
    for (const [k, o] of this.objects) {
      if (namespace === undefined ? k.startsWith(`${typeKey}|`) : k.startsWith(`${prefix}|`)) out.push(structuredClone(o));
    }
    out.sort((a, b) => (a.metadata.namespace ?? '').localeCompare(b.metadata.namespace ?? '') || a.metadata.name.localeCompare(b.metadata.name));
    return out;
  }

  /** Store `o` (a new version of it) and tell the watchers; returns the stored copy. */
  put(typeKey: string, o: KObject, type: 'ADDED' | 'MODIFIED'): KObject {
    o.metadata.resourceVersion = String(++this.rv);
    const stored = structuredClone(o);
    this.objects.set(this.key(typeKey, o.metadata.namespace ?? '', o.metadata.name), stored);
    this.record({ rv: this.rv, type, typeKey, namespace: o.metadata.namespace ?? '', object: stored });
    return structuredClone(stored);
  }

  remove(typeKey: string, o: KObject): KObject {
    this.objects.delete(this.key(typeKey, o.metadata.namespace ?? '', o.metadata.name));
    const gone = structuredClone(o);
    gone.metadata.resourceVersion = String(++this.rv);
    this.record({ rv: this.rv, type: 'DELETED', typeKey, namespace: o.metadata.namespace ?? '', object: gone });
    return structuredClone(gone);
  }

  private record(e: WatchEvent): void {
    this.history.push(e);
    if (this.history.length > this.window) this.history.splice(0, this.history.length - this.window);
    for (const w of this.watchers) {
      if (w.typeKey !== e.typeKey || (w.namespace !== undefined && w.namespace !== e.namespace)) continue;
      if (w.accept(e.object)) w.send(e.type, e.object);
    }
  }

  /**
   * The changes after `rv` that a watcher resuming from it missed, or GoneError if they are no
   * longer kept.
   */
  since(rv: number, typeKey: string, namespace?: string): WatchEvent[] {
    const oldest = this.history[0]?.rv ?? this.rv + 1;
    if (rv < oldest - 1 && rv < this.rv) throw new GoneError(`too old resource version: ${rv} (${oldest - 1})`);
    return this.history.filter((e) => e.rv > rv && e.typeKey === typeKey && (namespace === undefined || e.namespace === namespace)).map((e) => ({ ...e, object: structuredClone(e.object) }));
  }

  /** Forget the change history (a test's "etcd compaction"): older watches get 410 Gone. */
  compact(): void {
    this.history.length = 0;
  }
}
