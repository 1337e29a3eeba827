import { posix } from 'node:path';
import { assert } from '../core/assert.js';
import { SeededRandom, type Random } from '../core/random.js';
import type { FileHandle, FileSystem } from './file-system.js';

/**
 * A disk in memory that forgets what was not made durable (LevelDB's fault-injecting Env,
 * FoundationDB's simulated disk). It models ext4 without `data=journal`:
 *
 * - File contents survive a crash only as of the file's last `FileHandle.sync()`.
 * - Directory entries (a file or directory created, renamed or unlinked) survive a crash only
 *   once `syncDirectory(parent)` ran after the change. A file whose contents were synced but
 *   whose entry was not disappears (or keeps its old name) on a crash.
 * - Files are inodes: a rename moves the inode, an unlinked file stays usable through handles
 *   already open on it, as on POSIX.
 *
 * Faults for tests and the simulator: `crash()` (with an optional torn last write),
 * `flipBit()`, `failNextWrites()`. Everything random comes from the injected Random, so a seed
 * reproduces a run. Operations complete at once (resolved promises): the disk has no latency.
 */
export interface MemoryFileSystem extends FileSystem {
  /**
   * Power loss: every open handle becomes invalid (later calls throw EBADF), every unsynced
   * write and every directory change not covered by `syncDirectory` is lost. With
   * `tearLastWrite`, one file chosen at random among those whose last change was an unsynced
   * write (and that survive the crash) keeps its unsynced state except that its last write
   * survives only as a prefix of random length (0 .. length - 1 bytes): a disk that wrote in
   * order and lost power in the middle of the last write.
   */
  crash(options?: { readonly tearLastWrite?: boolean }): void;
  /** Flips bit `bit` (0 = least significant) of byte `byteOffset` of a file's durable contents (and its current contents). */
  flipBit(path: string, byteOffset: number, bit: number): void;
  /** The next `count` FileHandle writes throw an error with `code` (default 'ENOSPC') and write nothing. */
  failNextWrites(count: number, code?: string): void;
  /** Paths of every file (not directory) that exists now, sorted. */
  listFiles(): string[];
}

export function createMemoryFileSystem(options: { readonly random?: Random } = {}): MemoryFileSystem {
  return new MemoryDisk(options.random ?? new SeededRandom(0));
}

/** An error shaped like node:fs's: `code` set, message starting with it. */
export function fileSystemError(code: string, operation: string, path: string): Error & { code: string } {
  const error = new Error(`${code}: ${operation} '${path}'`) as Error & { code: string };
  error.code = code;
  return error;
}

/** A growable byte array: appends are amortized O(1) instead of copying the whole file. */
class ByteStore {
  private bytes = new Uint8Array(0);
  length = 0;

  resize(length: number): void {
    if (length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(length, this.bytes.length * 2, 64));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    } else if (length < this.length) {
      this.bytes.fill(0, length, this.length);
    }
    this.length = length;
  }

  write(data: Uint8Array, position: number): void {
    if (position + data.length > this.length) this.resize(position + data.length);
    this.bytes.set(data, position);
  }

  /** A copy of [start, end). */
  slice(start: number, end: number): Uint8Array {
    return this.bytes.slice(start, Math.min(end, this.length));
  }

  view(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  replaceWith(source: ByteStore): void {
    this.resize(0);
    this.write(source.view(), 0);
  }

  flipBit(byteOffset: number, bit: number): void {
    this.bytes[byteOffset]! ^= 1 << bit;
  }
}

/** The last write to a file, with what it overwrote, so a crash can keep only a prefix of it. */
interface LastWrite {
  readonly position: number;
  readonly data: Uint8Array;
  readonly previousBytes: Uint8Array;
  readonly previousLength: number;
}

class Inode {
  readonly current = new ByteStore();
  readonly durable = new ByteStore();
  /** Lowest offset changed since the last sync; Infinity when clean. */
  dirtyFrom = Infinity;
  /** Set while the file's latest change is an unsynced write. */
  lastWrite: LastWrite | undefined;

  write(data: Uint8Array, position: number): void {
    const previousLength = this.current.length;
    const previousBytes = this.current.slice(position, position + data.length);
    if (position > previousLength) this.current.resize(position);
    this.current.write(data, position);
    this.dirtyFrom = Math.min(this.dirtyFrom, previousLength, position);
    this.lastWrite = { position, data: data.slice(), previousBytes, previousLength };
  }

  truncate(length: number): void {
    this.dirtyFrom = Math.min(this.dirtyFrom, length, this.current.length);
    this.current.resize(length);
    this.lastWrite = undefined;
  }

  sync(): void {
    if (this.dirtyFrom !== Infinity) {
      this.durable.resize(this.current.length);
      if (this.dirtyFrom < this.current.length) this.durable.write(this.current.view().subarray(this.dirtyFrom), this.dirtyFrom);
    }
    this.dirtyFrom = Infinity;
    this.lastWrite = undefined;
  }

  /** Power loss: back to the durable contents. */
  revert(): void {
    if (this.dirtyFrom !== Infinity) this.current.replaceWith(this.durable);
    this.dirtyFrom = Infinity;
    this.lastWrite = undefined;
  }

  /** Power loss in the middle of the last write: keep everything else, and `prefixBytes` of it. */
  tear(prefixBytes: number): void {
    const last = this.lastWrite;
    assert(last !== undefined && prefixBytes < last.data.length, 'tear needs an unsynced last write and a partial prefix');
    const cut = last.position + prefixBytes;
    // A write that extended the file leaves the extension only as far as its surviving prefix.
    this.current.resize(prefixBytes === 0 ? last.previousLength : Math.max(last.previousLength, cut));
    const restored = last.previousBytes.subarray(prefixBytes);
    if (restored.length > 0) this.current.write(restored, cut);
    this.sync();
  }
}

type Entry = { readonly kind: 'file'; readonly inode: Inode } | { readonly kind: 'directory' };

const directoryEntry: Entry = { kind: 'directory' };

/** Paths that always exist and have no parent. */
function isRoot(path: string): boolean {
  return path === '/' || path === '.';
}

function normalize(path: string): string {
  assert(typeof path === 'string' && path.length > 0, 'a path is a non-empty string');
  const normalized = posix.normalize(path);
  return normalized.length > 1 && normalized.endsWith('/') ? normalized.slice(0, -1) : normalized;
}

class MemoryDisk implements MemoryFileSystem {
  /** What the running system sees. */
  private entries = new Map<string, Entry>();
  /** What survives a crash: entries as of the last syncDirectory of their parent. */
  private durableEntries = new Map<string, Entry>();
  /** Bumped by every crash: handles opened before it are dead. */
  private generation = 0;
  private writeFailures: { count: number; code: string } = { count: 0, code: 'ENOSPC' };

  constructor(private readonly random: Random) {}

  open(path: string, options: { create: boolean }): Promise<FileHandle> {
    return attempt(() => {
      const name = normalize(path);
      let entry = this.entries.get(name);
      if (entry === undefined) {
        if (!options.create) throw fileSystemError('ENOENT', 'open', name);
        this.requireDirectory(posix.dirname(name), 'open', name);
        entry = { kind: 'file', inode: new Inode() };
        this.entries.set(name, entry);
      }
      if (entry.kind !== 'file') throw fileSystemError('EISDIR', 'open', name);
      return new MemoryFileHandle(this, entry.inode, name, this.generation);
    });
  }

  readFile(path: string): Promise<Uint8Array> {
    return attempt(() => {
      const name = normalize(path);
      const entry = this.entries.get(name);
      if (entry === undefined) throw fileSystemError('ENOENT', 'open', name);
      if (entry.kind !== 'file') throw fileSystemError('EISDIR', 'read', name);
      return entry.inode.current.slice(0, entry.inode.current.length);
    });
  }

  exists(path: string): Promise<boolean> {
    const name = normalize(path);
    return Promise.resolve(isRoot(name) || this.entries.has(name));
  }

  /** Creates the directory and any missing ancestors (like `mkdir -p`); each is durable once its parent is synced. */
  mkdir(path: string): Promise<void> {
    return attempt(() => {
      const name = normalize(path);
      if (isRoot(name)) return;
      const entry = this.entries.get(name);
      if (entry !== undefined) {
        if (entry.kind !== 'directory') throw fileSystemError('EEXIST', 'mkdir', name);
        return;
      }
      const parent = posix.dirname(name);
      if (!isRoot(parent) && !this.entries.has(parent)) this.mkdirNow(parent);
      this.requireDirectory(parent, 'mkdir', name);
      this.entries.set(name, directoryEntry);
    });
  }

  readdir(path: string): Promise<string[]> {
    return attempt(() => {
      const name = normalize(path);
      this.requireDirectory(name, 'scandir', name);
      return [...this.entries.keys()].filter((entry) => !isRoot(entry) && posix.dirname(entry) === name).map((entry) => posix.basename(entry)).sort();
    });
  }

  rename(from: string, to: string): Promise<void> {
    return attempt(() => {
      const source = normalize(from);
      const target = normalize(to);
      const entry = this.entries.get(source);
      if (entry === undefined) throw fileSystemError('ENOENT', 'rename', source);
      // Directory renames would have to move every descendant; the engine never needs one.
      if (entry.kind !== 'file') throw fileSystemError('ENOTSUP', 'rename a directory', source);
      if (this.entries.get(target)?.kind === 'directory') throw fileSystemError('EISDIR', 'rename', target);
      this.requireDirectory(posix.dirname(target), 'rename', target);
      this.entries.delete(source);
      this.entries.set(target, entry);
    });
  }

  unlink(path: string): Promise<void> {
    return attempt(() => {
      const name = normalize(path);
      const entry = this.entries.get(name);
      if (entry === undefined) throw fileSystemError('ENOENT', 'unlink', name);
      if (entry.kind !== 'file') throw fileSystemError('EISDIR', 'unlink', name);
      this.entries.delete(name);
    });
  }

  syncDirectory(path: string): Promise<void> {
    return attempt(() => {
      const name = normalize(path);
      this.requireDirectory(name, 'fsync', name);
      for (const entry of [...this.durableEntries.keys()]) {
        if (!isRoot(entry) && posix.dirname(entry) === name && !this.entries.has(entry)) this.durableEntries.delete(entry);
      }
      for (const [entry, value] of this.entries) {
        if (!isRoot(entry) && posix.dirname(entry) === name) this.durableEntries.set(entry, value);
      }
    });
  }

  crash(options: { readonly tearLastWrite?: boolean } = {}): void {
    this.generation += 1;
    const survivors = this.reachableDurableEntries();
    const inodes = new Set<Inode>();
    for (const entry of [...this.entries.values(), ...this.durableEntries.values()]) if (entry.kind === 'file') inodes.add(entry.inode);
    let torn: Inode | undefined;
    if (options.tearLastWrite === true) {
      const candidates = [...survivors.values()].flatMap((entry) => (entry.kind === 'file' && entry.inode.lastWrite !== undefined ? [entry.inode] : []));
      const unique = [...new Set(candidates)];
      if (unique.length > 0) torn = unique[this.random.nextInt(unique.length)]!;
    }
    for (const inode of inodes) {
      if (inode === torn) inode.tear(this.random.nextInt(inode.lastWrite!.data.length));
      else inode.revert();
    }
    this.entries = survivors;
    this.durableEntries = new Map(survivors);
  }

  flipBit(path: string, byteOffset: number, bit: number): void {
    const name = normalize(path);
    const entry = this.entries.get(name) ?? this.durableEntries.get(name);
    assert(entry !== undefined && entry.kind === 'file', () => `flipBit: no file ${name}`);
    assert(Number.isInteger(bit) && bit >= 0 && bit < 8, () => `flipBit: bit ${bit} outside [0, 8)`);
    const { inode } = entry;
    assert(Number.isInteger(byteOffset) && byteOffset >= 0 && byteOffset < inode.durable.length, () => `flipBit: offset ${byteOffset} outside the durable ${inode.durable.length} bytes of ${name}`);
    inode.durable.flipBit(byteOffset, bit);
    if (byteOffset < inode.current.length) inode.current.flipBit(byteOffset, bit);
  }

  failNextWrites(count: number, code = 'ENOSPC'): void {
    assert(Number.isInteger(count) && count >= 0, () => `failNextWrites: count ${count} must be an integer >= 0`);
    this.writeFailures = { count, code };
  }

  listFiles(): string[] {
    return [...this.entries].flatMap(([path, entry]) => (entry.kind === 'file' ? [path] : [])).sort();
  }

  /** Called by every handle operation: throws when the handle predates a crash. */
  checkHandle(generation: number, path: string, operation: string): void {
    if (generation !== this.generation) throw fileSystemError('EBADF', `${operation} (handle lost in a crash)`, path);
  }

  /** Called by every handle write: throws the injected failure, if one is due. */
  takeWriteFailure(path: string): void {
    if (this.writeFailures.count === 0) return;
    this.writeFailures.count -= 1;
    throw fileSystemError(this.writeFailures.code, 'write', path);
  }

  private mkdirNow(path: string): void {
    const parent = posix.dirname(path);
    if (!isRoot(parent) && !this.entries.has(parent)) this.mkdirNow(parent);
    this.requireDirectory(parent, 'mkdir', path);
    this.entries.set(path, directoryEntry);
  }

  private requireDirectory(path: string, operation: string, subject: string): void {
    if (isRoot(path)) return;
    const entry = this.entries.get(path);
    if (entry === undefined) throw fileSystemError('ENOENT', operation, subject);
    if (entry.kind !== 'directory') throw fileSystemError('ENOTDIR', operation, subject);
  }

  /** Durable entries whose every ancestor directory is durable too: what a crash leaves. */
  private reachableDurableEntries(): Map<string, Entry> {
    const reachable = new Map<string, Entry>();
    const isReachable = (path: string): boolean => {
      for (let parent = posix.dirname(path); !isRoot(parent); parent = posix.dirname(parent)) {
        if (this.durableEntries.get(parent)?.kind !== 'directory') return false;
      }
      return true;
    };
    for (const [path, entry] of this.durableEntries) if (isReachable(path)) reachable.set(path, entry);
    return reachable;
  }
}

/** Runs a synchronous operation as a promise, turning a throw into a rejection. */
function attempt<T>(operation: () => T): Promise<T> {
  try {
    return Promise.resolve(operation());
  } catch (error) {
    return Promise.reject(error as Error);
  }
}

class MemoryFileHandle implements FileHandle {
  private closed = false;

  constructor(
    private readonly disk: MemoryDisk,
    private readonly inode: Inode,
    private readonly path: string,
    private readonly generation: number,
  ) {}

  read(position: number, length: number): Promise<Uint8Array> {
    return attempt(() => {
      this.check('read');
      assert(Number.isInteger(position) && position >= 0 && Number.isInteger(length) && length >= 0, 'read: position and length are integers >= 0');
      return this.inode.current.slice(position, position + length);
    });
  }

  readSync(position: number, target: Uint8Array): number {
    this.check('read');
    assert(Number.isInteger(position) && position >= 0, 'readSync: position is an integer >= 0');
    const bytes = this.inode.current.view().subarray(position, position + target.length);
    target.set(bytes);
    return bytes.length;
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return attempt(() => {
      this.check('write');
      assert(Number.isInteger(position) && position >= 0, 'write: position is an integer >= 0');
      this.disk.takeWriteFailure(this.path);
      this.inode.write(data, position);
    });
  }

  sync(): Promise<void> {
    return attempt(() => {
      this.check('fsync');
      this.inode.sync();
    });
  }

  size(): Promise<number> {
    return attempt(() => {
      this.check('fstat');
      return this.inode.current.length;
    });
  }

  truncate(length: number): Promise<void> {
    return attempt(() => {
      this.check('ftruncate');
      assert(Number.isInteger(length) && length >= 0, 'truncate: length is an integer >= 0');
      this.inode.truncate(length);
    });
  }

  close(): Promise<void> {
    return attempt(() => {
      this.check('close');
      this.closed = true;
    });
  }

  private check(operation: string): void {
    if (this.closed) throw fileSystemError('EBADF', `${operation} (handle closed)`, this.path);
    this.disk.checkHandle(this.generation, this.path, operation);
  }
}
