import { pino, type Logger } from 'pino';
import type { Random } from '../core/random.js';
import type { FileHandle, FileSystem } from '../world/file-system.js';
import type { MemoryFileSystem } from '../world/memory-file-system.js';
import type { Scheduler, TimerOwner } from './scheduler.js';

/** One life of a simulated node process: it ends with a crash (or a clean stop). */
export class Incarnation implements TimerOwner {
  alive = true;
  paused = false;
  constructor(
    readonly nodeId: string,
    readonly number: number,
  ) {}
}

/**
 * The last events of a run, newest last, for the report of a failing seed: the simulator's own
 * choices (faults, client operations) and the nodes' log lines, each at its virtual time.
 */
export class Trace {
  private readonly lines: string[] = [];
  private next = 0;
  private written = 0;
  /** Every line of the simulator's own (source 'sim': faults, starts, phases), kept whole. */
  readonly simulatorLines: string[] = [];

  constructor(
    private readonly scheduler: Scheduler,
    private readonly capacity = 400,
  ) {}

  add(source: string, text: string): void {
    const line = `${formatTime(this.scheduler.nowMs)} ${source.padEnd(8)} ${text}`;
    if (source === 'sim') this.simulatorLines.push(line);
    if (this.lines.length < this.capacity) this.lines.push(line);
    else this.lines[this.next] = line;
    this.next = (this.next + 1) % this.capacity;
    this.written += 1;
  }

  /** The last `count` lines, oldest first. */
  last(count = this.capacity): string[] {
    const ordered = this.lines.length < this.capacity ? this.lines : [...this.lines.slice(this.next), ...this.lines.slice(0, this.next)];
    return ordered.slice(-count);
  }

  get total(): number {
    return this.written;
  }
}

export function formatTime(ms: number): string {
  return `${(ms / 1000).toFixed(3).padStart(9)}s`;
}

/** A node's logger writing into the trace (info and above), without wall-clock timestamps. */
export function traceLogger(trace: Trace, nodeId: string): Logger {
  const stream = {
    write(line: string): void {
      const { level, msg, ...rest } = JSON.parse(line) as { level: number; msg?: string } & Record<string, unknown>;
      const name = level >= 50 ? 'ERROR ' : level >= 40 ? 'WARN ' : '';
      const fields = Object.keys(rest).length === 0 ? '' : ` ${JSON.stringify(rest)}`;
      trace.add(nodeId, `${name}${msg ?? ''}${fields}`.slice(0, 400));
    },
  };
  return pino({ level: 'info', base: null, timestamp: false }, stream);
}

export interface DiskLatency {
  /** Virtual milliseconds an fsync takes, drawn per call. */
  syncMs(): number;
}

/**
 * The disk as one incarnation of a node sees it: the node's MemoryFileSystem (which survives the
 * crash, minus what was not synced), with fsyncs that take virtual time, fenced so that a dead
 * incarnation's leftover promise chains can never touch the disk its successor uses: every call
 * after the crash, and every fsync the crash interrupted, never completes (the process is gone).
 * `syncReads`: whether handles offer readSync, so that both ways the engine reads a block that
 * misses its cache get simulated.
 */
export function incarnationDisk(disk: MemoryFileSystem, owner: Incarnation, scheduler: Scheduler, latency: DiskLatency, options: { readonly syncReads: boolean }): FileSystem {
  const never = <T>(): Promise<T> => new Promise<T>(() => {});
  const guard = <T>(operation: () => Promise<T>): Promise<T> => (owner.alive ? operation() : never<T>());
  const wrapHandle = (handle: FileHandle): FileHandle => ({
    read: (position, length) => guard(() => handle.read(position, length)),
    // Synchronous reads (the LSM engine's cold point reads) take no virtual time; a dead
    // incarnation may still read, which changes nothing. Without them the engine reads in the "pool".
    ...(options.syncReads && handle.readSync !== undefined ? { readSync: (position: number, target: Uint8Array) => handle.readSync!(position, target) } : {}),
    write: (data, position) => guard(() => handle.write(data, position)),
    sync: () =>
      guard(
        () =>
          new Promise<void>((resolve, reject) => {
            // The data is durable when the fsync returns: a crash while it runs loses it.
            scheduler.schedule(latency.syncMs(), () => handle.sync().then(resolve, reject), owner);
          }),
      ),
    size: () => guard(() => handle.size()),
    truncate: (length) => guard(() => handle.truncate(length)),
    close: () => guard(() => handle.close()),
  });
  return {
    open: (path, options) => guard(async () => wrapHandle(await disk.open(path, options))),
    readFile: (path) => guard(() => disk.readFile(path)),
    exists: (path) => guard(() => disk.exists(path)),
    mkdir: (path) => guard(() => disk.mkdir(path)),
    readdir: (path) => guard(() => disk.readdir(path)),
    rename: (from, to) => guard(() => disk.rename(from, to)),
    unlink: (path) => guard(() => disk.unlink(path)),
    syncDirectory: (path) =>
      guard(
        () =>
          new Promise<void>((resolve, reject) => {
            scheduler.schedule(latency.syncMs(), () => disk.syncDirectory(path).then(resolve, reject), owner);
          }),
      ),
  };
}

/** A Random of its own for each part of the run, drawn from the run's one generator. */
export function childRandom(parent: Random, make: (seed: number) => Random): Random {
  return make(parent.nextUint32() * 0x1_0000 + (parent.nextUint32() & 0xffff));
}
