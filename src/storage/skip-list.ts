import { assert } from '../core/assert.js';
import type { Random } from '../core/random.js';

/**
 * An ordered map from string keys to values: a skip list (Pugh 1990) with branching factor 4,
 * as in LevelDB's memtable and Redis's sorted sets. Keys compare with plain JS `<`, i.e. by
 * UTF-16 code unit; the storage engine passes latin1 strings of byte keys, for which that order
 * is unsigned byte order. get, set and delete cost O(log n) expected; levels are drawn from an
 * injected `Random`, so a seed reproduces the exact shape of the list.
 *
 * Level 0 is doubly linked (a `previous` pointer per node, like Redis's zskiplist) so reverse
 * iteration costs O(log n) to find the start and O(1) per step.
 */

/** The tallest tower; with branching 4 it keeps searches O(log n) up to 4^16 (about 4e9) keys. */
export const levelsMax = 16;

/** 1 in 2^branchingBits = 4 nodes of level i also reaches level i + 1. */
const branchingBits = 2;
const branchingMask = (1 << branchingBits) - 1;

/** A key range: `gte` inclusive, `lt` exclusive; an absent bound is open. */
export interface SkipListRange {
  readonly gte?: string | undefined;
  readonly lt?: string | undefined;
  /** Descending key order. */
  readonly reverse?: boolean | undefined;
}

class SkipListNode<V> {
  /** `next[i]` is the following node at level i; the tower's height is `next.length`. */
  readonly next: (SkipListNode<V> | null)[];
  /** The preceding node at level 0; the head for the first node. */
  previous: SkipListNode<V> | null = null;

  constructor(
    readonly key: string,
    public value: V,
    level: number,
  ) {
    this.next = new Array<SkipListNode<V> | null>(level).fill(null);
  }
}

export class SkipList<V> {
  /** A sentinel before every key; its key and value are never read. */
  private readonly head: SkipListNode<V>;
  /** The last node at level 0, or the head when the list is empty. */
  private tail: SkipListNode<V>;
  /** Levels in use: every level at or above this one is empty. */
  private levelCount = 1;
  private count = 0;
  /** Bumped by every insert and delete, so a suspended iterator notices a structural change. */
  private structureVersion = 0;
  /** Scratch for the predecessors of a key at each level, reused so set/delete allocate nothing. */
  private readonly predecessors: SkipListNode<V>[];

  constructor(private readonly random: Random) {
    this.head = new SkipListNode<V>('', undefined as V, levelsMax);
    this.tail = this.head;
    this.predecessors = new Array<SkipListNode<V>>(levelsMax).fill(this.head);
  }

  get size(): number {
    return this.count;
  }

  get(key: string): V | undefined {
    const node = this.findGreaterOrEqual(key);
    return node !== null && node.key === key ? node.value : undefined;
  }

  has(key: string): boolean {
    const node = this.findGreaterOrEqual(key);
    return node !== null && node.key === key;
  }

  /** Inserts or replaces; returns true when `key` is new. Replacing does not change the shape. */
  set(key: string, value: V): boolean {
    const predecessors = this.fillPredecessors(key);
    const found = predecessors[0]!.next[0] ?? null;
    if (found !== null && found.key === key) {
      found.value = value;
      return false;
    }
    const level = this.randomLevel();
    if (level > this.levelCount) {
      for (let index = this.levelCount; index < level; index++) predecessors[index] = this.head;
      this.levelCount = level;
    }
    const node = new SkipListNode(key, value, level);
    for (let index = 0; index < level; index++) {
      const predecessor = predecessors[index]!;
      node.next[index] = predecessor.next[index] ?? null;
      predecessor.next[index] = node;
    }
    node.previous = predecessors[0]!;
    const following = node.next[0] ?? null;
    if (following === null) this.tail = node;
    else following.previous = node;
    this.count++;
    this.structureVersion++;
    return true;
  }

  /** Removes `key`; returns true when it was present. */
  delete(key: string): boolean {
    const predecessors = this.fillPredecessors(key);
    const node = predecessors[0]!.next[0] ?? null;
    if (node === null || node.key !== key) return false;
    for (let index = 0; index < node.next.length; index++) {
      assert(predecessors[index]!.next[index] === node, 'skip list: predecessor does not point at node');
      predecessors[index]!.next[index] = node.next[index] ?? null;
    }
    const following = node.next[0] ?? null;
    if (following === null) this.tail = node.previous!;
    else following.previous = node.previous;
    while (this.levelCount > 1 && this.head.next[this.levelCount - 1] === null) this.levelCount--;
    this.count--;
    this.structureVersion++;
    return true;
  }

  clear(): void {
    this.head.next.fill(null);
    this.tail = this.head;
    this.levelCount = 1;
    this.count = 0;
    this.structureVersion++;
  }

  /**
   * Entries within `range` in key order (descending when `reverse`). The list must not gain or
   * lose keys while the iterator is suspended (replacing a value is fine): the next step then
   * fails an assertion instead of walking an unlinked node.
   */
  *entries(range: SkipListRange = {}): Generator<[key: string, value: V]> {
    const { gte, lt } = range;
    if (gte !== undefined && lt !== undefined && !(gte < lt)) return;
    const versionAtStart = this.structureVersion;
    if (range.reverse === true) {
      let node = lt === undefined ? this.tail : this.findLessThan(lt);
      while (node !== this.head && (gte === undefined || node.key >= gte)) {
        yield [node.key, node.value];
        assert(this.structureVersion === versionAtStart, 'skip list: modified during iteration');
        node = node.previous!;
      }
    } else {
      let node = gte === undefined ? this.head.next[0] ?? null : this.findGreaterOrEqual(gte);
      while (node !== null && (lt === undefined || node.key < lt)) {
        yield [node.key, node.value];
        assert(this.structureVersion === versionAtStart, 'skip list: modified during iteration');
        node = node.next[0] ?? null;
      }
    }
  }

  /** Checks the whole structure: O(n levels). For tests and debugging, not the hot path. */
  invariants(): void {
    assert(this.levelCount >= 1 && this.levelCount <= levelsMax, () => `skip list: level count ${this.levelCount}`);
    assert(this.head.next.length === levelsMax, 'skip list: head tower must be levelsMax tall');
    for (let level = this.levelCount; level < levelsMax; level++) {
      assert(this.head.next[level] === null, () => `skip list: level ${level} above level count is not empty`);
    }
    assert(this.levelCount === 1 || this.head.next[this.levelCount - 1] !== null, 'skip list: top level is empty');
    let count = 0;
    let previous = this.head;
    for (let node = this.head.next[0] ?? null; node !== null; node = node.next[0] ?? null) {
      assert(node.next.length >= 1 && node.next.length <= this.levelCount, () => `skip list: tower height ${node.next.length}`);
      assert(node.previous === previous, () => `skip list: previous pointer of ${JSON.stringify(node.key)}`);
      assert(previous === this.head || previous.key < node.key, () => `skip list: keys out of order at ${JSON.stringify(node.key)}`);
      previous = node;
      count++;
    }
    assert(this.tail === previous, 'skip list: tail is not the last node');
    assert(count === this.count, () => `skip list: size ${this.count} but ${count} nodes`);
    for (let level = 1; level < this.levelCount; level++) this.levelInvariants(level);
  }

  /** Level `level` is an ordered subsequence of level `level - 1`, of nodes at least that tall. */
  private levelInvariants(level: number): void {
    let below = this.head.next[level - 1] ?? null;
    for (let node = this.head.next[level] ?? null; node !== null; node = node.next[level] ?? null) {
      assert(node.next.length > level, () => `skip list: node ${JSON.stringify(node.key)} linked above its height`);
      while (below !== null && below !== node) below = below.next[level - 1] ?? null;
      assert(below === node, () => `skip list: level ${level} node ${JSON.stringify(node.key)} missing below`);
    }
    const tallEnough = [];
    for (let node = this.head.next[0] ?? null; node !== null; node = node.next[0] ?? null) {
      if (node.next.length > level) tallEnough.push(node);
    }
    let index = 0;
    for (let node = this.head.next[level] ?? null; node !== null; node = node.next[level] ?? null) {
      assert(tallEnough[index] === node, () => `skip list: level ${level} skips a tall node`);
      index++;
    }
    assert(index === tallEnough.length, () => `skip list: level ${level} misses tall nodes`);
  }

  /** Fills `predecessors[i]` with the last node at level i whose key is < `key`. */
  private fillPredecessors(key: string): SkipListNode<V>[] {
    let node = this.head;
    for (let level = this.levelCount - 1; level >= 0; level--) {
      let next = node.next[level] ?? null;
      while (next !== null && next.key < key) {
        node = next;
        next = node.next[level] ?? null;
      }
      this.predecessors[level] = node;
    }
    return this.predecessors;
  }

  /** The first node with key >= `key`, or null. */
  private findGreaterOrEqual(key: string): SkipListNode<V> | null {
    return this.findLessThan(key).next[0] ?? null;
  }

  /** The last node with key < `key`, or the head. */
  private findLessThan(key: string): SkipListNode<V> {
    let node = this.head;
    for (let level = this.levelCount - 1; level >= 0; level--) {
      let next = node.next[level] ?? null;
      while (next !== null && next.key < key) {
        node = next;
        next = node.next[level] ?? null;
      }
    }
    return node;
  }

  /** Height 1 + k with probability (1 - 1/4) / 4^k, capped at levelsMax: two bits per level. */
  private randomLevel(): number {
    let bits = this.random.nextUint32();
    let level = 1;
    while (level < levelsMax && (bits & branchingMask) === 0) {
      level++;
      bits >>>= branchingBits;
    }
    assert(level >= 1 && level <= levelsMax, () => `skip list: level ${level} out of range`);
    return level;
  }
}
