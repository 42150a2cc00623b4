// Payload helpers. On the wire payloads, results and error data are opaque bytes; these helpers
// turn JSON values and strings into bytes and back, so producers and workers agree on one rule.

/** Bytes in: a Uint8Array (Buffer included) or a string, sent as UTF-8. Bytes out are Buffers. */
export type Bytes = Uint8Array | string;

/** Encodes a value as UTF-8 JSON bytes (JSON.stringify; undefined is refused). */
export function jsonBytes(value: unknown): Buffer {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('jsonBytes: value is not JSON-serializable');
  return Buffer.from(text, 'utf8');
}

/** Decodes UTF-8 JSON bytes; empty bytes decode to undefined. Throws SyntaxError on bad JSON. */
export function parseJson<T = unknown>(bytes: Uint8Array): T {
  if (bytes.length === 0) return undefined as T;
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')) as T;
}

/** Bytes (or a UTF-8 string) as a Buffer, without copying a Buffer that is one already. */
export function toBuffer(b: Bytes | undefined): Buffer {
  if (b === undefined) return EMPTY;
  if (typeof b === 'string') return Buffer.from(b, 'utf8');
  if (Buffer.isBuffer(b)) return b;
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The bytes a handler's return value is stored as: bytes as they are (a Uint8Array or Buffer,
 * an ArrayBuffer, or the bytes any other typed array or DataView spans), a string as UTF-8,
 * undefined/null as empty, anything else (objects, arrays, numbers, booleans) as JSON.
 */
export function resultBytes(value: unknown): Buffer {
  if (value === undefined || value === null) return EMPTY;
  if (typeof value === 'string' || value instanceof Uint8Array) return toBuffer(value);
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return jsonBytes(value);
}

export const EMPTY: Buffer = Buffer.alloc(0);
