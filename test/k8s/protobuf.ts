/**
 * The Kubernetes protobuf wire format ("k8s\0" + runtime.Unknown) for the kinds clients send
 * that way: helm's release storage writes its Secrets (and ConfigMaps) in protobuf and does
 * not fall back to JSON. Decoded into the same JSON objects the rest of the emulator handles;
 * answers always go out as JSON (clients accept it).
 */
import protobuf from 'protobufjs';

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

type Reader = protobuf.Reader;

function fields(buf: Uint8Array, each: (field: number, r: Reader, wire: number) => void): void {
  const r = protobuf.Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    const before = r.pos;
    each(field, r, wire);
    if (r.pos === before) r.skipType(wire);
  }
}

function mapEntry(buf: Uint8Array, asBytes: boolean): [string, string] {
  let k = '';
  let v = '';
  fields(buf, (f, r) => {
    if (f === 1) k = r.string();
    else if (f === 2) v = asBytes ? Buffer.from(r.bytes()).toString('base64') : r.string();
  });
  return [k, v];
}

function time(buf: Uint8Array): string {
  let seconds = 0;
  fields(buf, (f, r) => {
    if (f === 1) seconds = Number(r.int64());
  });
  return new Date(seconds * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

function ownerReference(buf: Uint8Array): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  fields(buf, (f, r) => {
    if (f === 1) o.kind = r.string();
    else if (f === 3) o.name = r.string();
    else if (f === 4) o.uid = r.string();
    else if (f === 5) o.apiVersion = r.string();
    else if (f === 6) o.controller = r.bool();
    else if (f === 7) o.blockOwnerDeletion = r.bool();
  });
  return o;
}

function objectMeta(buf: Uint8Array): Record<string, unknown> {
  const m: Record<string, any> = {};
  fields(buf, (f, r) => {
    switch (f) {
      case 1: m.name = r.string(); break;
      case 2: m.generateName = r.string(); break;
      case 3: m.namespace = r.string(); break;
      case 5: m.uid = r.string(); break;
      case 6: m.resourceVersion = r.string(); break;
      case 7: m.generation = Number(r.int64()); break;
      case 8: m.creationTimestamp = time(r.bytes()); break;
      case 11: { const [k, v] = mapEntry(r.bytes(), false); (m.labels ??= {})[k] = v; break; }
      case 12: { const [k, v] = mapEntry(r.bytes(), false); (m.annotations ??= {})[k] = v; break; }
      case 13: (m.ownerReferences ??= []).push(ownerReference(r.bytes())); break;
      case 14: (m.finalizers ??= []).push(r.string()); break;
    }
  });
  for (const k of ['resourceVersion', 'uid', 'generateName', 'namespace']) if (m[k] === '') delete m[k];
  return m;
}

function secret(buf: Uint8Array): Record<string, any> {
  const o: Record<string, any> = { metadata: {} };
  fields(buf, (f, r) => {
    if (f === 1) o.metadata = objectMeta(r.bytes());
    else if (f === 2) { const [k, v] = mapEntry(r.bytes(), true); (o.data ??= {})[k] = v; }
    else if (f === 3) o.type = r.string();
    else if (f === 4) { const [k, v] = mapEntry(r.bytes(), false); (o.stringData ??= {})[k] = v; }
    else if (f === 5) o.immutable = r.bool();
  });
  return o;
}

function configMap(buf: Uint8Array): Record<string, any> {
  const o: Record<string, any> = { metadata: {} };
  fields(buf, (f, r) => {
    if (f === 1) o.metadata = objectMeta(r.bytes());
    else if (f === 2) { const [k, v] = mapEntry(r.bytes(), false); (o.data ??= {})[k] = v; }
    else if (f === 3) { const [k, v] = mapEntry(r.bytes(), true); (o.binaryData ??= {})[k] = v; }
    else if (f === 4) o.immutable = r.bool();
  });
  return o;
}

function deleteOptions(buf: Uint8Array): Record<string, any> {
  const o: Record<string, any> = {};
  fields(buf, (f, r) => {
    if (f === 1) o.gracePeriodSeconds = Number(r.int64());
    else if (f === 2) {
      const pre: Record<string, string> = {};
      fields(r.bytes(), (g, rr) => {
        if (g === 1) pre.uid = rr.string();
        else if (g === 2) pre.resourceVersion = rr.string();
      });
      o.preconditions = pre;
    } else if (f === 3) o.orphanDependents = r.bool();
    else if (f === 4) o.propagationPolicy = r.string();
    else if (f === 5) (o.dryRun ??= []).push(r.string());
  });
  return o;
}

const DECODERS: Record<string, (b: Uint8Array) => Record<string, any>> = {
  'v1/Secret': secret,
  'v1/ConfigMap': configMap,
  'v1/DeleteOptions': deleteOptions,
  'meta.k8s.io/v1/DeleteOptions': deleteOptions,
};

/** Decode a protobuf request body; throws with the reason when the kind is not one we speak. */
export function decodeK8sProtobuf(body: Buffer): Record<string, any> {
  if (!body.subarray(0, 4).equals(MAGIC)) throw new Error('not a Kubernetes protobuf body (no k8s magic)');
  let apiVersion = '';
  let kind = '';
  let raw: Uint8Array = new Uint8Array(0);
  fields(body.subarray(4), (f, r) => {
    if (f === 1) {
      fields(r.bytes(), (g, rr) => {
        if (g === 1) apiVersion = rr.string();
        else if (g === 2) kind = rr.string();
      });
    } else if (f === 2) raw = r.bytes();
  });
  const decode = DECODERS[`${apiVersion}/${kind}`];
  if (!decode) throw new Error(`protobuf bodies are understood for ${Object.keys(DECODERS).join(', ')} only, not ${apiVersion}/${kind}: send JSON`);
  return { apiVersion, kind, ...decode(raw) };
}
