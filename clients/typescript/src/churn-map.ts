// ChurnMap: a Map for keys that come and go all the time (a Worker's running tasks).

/** Writes after which a ChurnMap starts a fresh Map (copying what it holds). */
const RENEW_EVERY = 1024;

/**
 * A Map for keys that come and go all the time, such as a Worker's running tasks by id.
 *
 * V8 links each hash table a Map outgrows or compacts to the table that replaces it (live
 * iterators follow the link). Once a Map's table is in the old generation (it survived two
 * scavenges, or any full collection), every later table is kept alive by the one before it
 * until the next full collection, and so is every value each table held. For a Worker that
 * meant each task's objects (the task, its decoded strings and payload, its state) outlived the
 * young generation: about 400 bytes per job promoted, and 4-6 full collections per 100,000 jobs
 * (docs/BENCHMARKS.md, session 19). A fresh Map every RENEW_EVERY writes ends such a chain;
 * copying the few dozen entries a Worker holds costs little.
 */
export class ChurnMap<K, V> {
  private map = new Map<K, V>();
  private writes = 0;

  /** Number of entries. */
  get size(): number {
    return this.map.size;
  }

  /** The value stored for `key`, if any. */
  get(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Whether `key` has a value. */
  has(key: K): boolean {
    return this.map.has(key);
  }

  /** Stores `value` for `key`. */
  set(key: K, value: V): void {
    this.map.set(key, value);
    if (++this.writes >= RENEW_EVERY) {
      this.writes = 0;
      this.map = new Map(this.map);
    }
  }

  /** Removes `key`; whether it had a value. */
  delete(key: K): boolean {
    return this.map.delete(key);
  }

  /** The values at this moment, in insertion order (a copy: safe to change the map meanwhile). */
  values(): V[] {
    return [...this.map.values()];
  }
}
