import { assert } from '../../core/assert.js';
import type { Clock } from '../../world/clock.js';

/**
 * Whether a data block the cache misses is read on the calling thread (a synchronous pread) or
 * in the thread pool. Reads from the OS page cache cost a few microseconds done synchronously,
 * and several times that on the pool, which on two cores also competes with the main thread for
 * CPU (measured: docs/storage-engine.md, "Reads that miss the block cache"). LevelDB gets the
 * same effect by mapping its tables into memory: a read is a memory copy, and a page not in
 * memory stalls the reading thread.
 *
 * Here the reading thread is the event loop, so a read that has to go to the disk stalls every
 * connection. The gate watches for that: a page cache read takes microseconds, a disk read
 * tenths of a millisecond to milliseconds. When `slowOfRecent` of the last `recent` synchronous
 * reads took longer than `slowReadMs`, the reads of the next `holdMs` go to the thread pool, after
 * which misses try again. One slow read alone does not count (a busy machine preempts the process
 * now and then). So on a data set the page cache holds, misses stay on the main thread; on one it
 * does not, a few reads per `holdMs` stall the loop.
 */
export class SyncReadGate {
  private asyncUntilMs = Number.NEGATIVE_INFINITY;
  /** One bit per recent synchronous read, newest lowest: 1 when it was slow. */
  private history = 0;
  private slowCount = 0;
  private switchCount = 0;

  constructor(
    private readonly clock: Clock,
    readonly slowReadMs = 0.25,
    readonly holdMs = 1000,
    readonly recent = 16,
    readonly slowOfRecent = 3,
  ) {
    assert(slowReadMs > 0 && holdMs >= 0, 'SyncReadGate: slowReadMs > 0 and holdMs >= 0');
    assert(Number.isInteger(recent) && recent >= 1 && recent <= 30 && Number.isInteger(slowOfRecent) && slowOfRecent >= 1 && slowOfRecent <= recent, 'SyncReadGate: 1 <= slowOfRecent <= recent <= 30');
  }

  /** The time to pass to `finished` when synchronous reads are allowed now; undefined: read asynchronously. */
  begin(): number | undefined {
    const now = this.clock.nowMs();
    return now >= this.asyncUntilMs ? now : undefined;
  }

  /** A synchronous read that began at `startedMs` returned. */
  finished(startedMs: number): void {
    const now = this.clock.nowMs();
    const slow = now - startedMs > this.slowReadMs;
    this.history = ((this.history << 1) | (slow ? 1 : 0)) & ((1 << this.recent) - 1);
    if (!slow) return;
    this.slowCount++;
    if (bitCount(this.history) < this.slowOfRecent) return;
    this.switchCount++;
    this.history = 0;
    this.asyncUntilMs = now + this.holdMs;
  }

  /** Synchronous reads slower than `slowReadMs`. */
  get slowReads(): number {
    return this.slowCount;
  }

  /** Times reads were sent to the thread pool for `holdMs`. */
  get switchesToPool(): number {
    return this.switchCount;
  }
}

function bitCount(value: number): number {
  let rest = value - ((value >>> 1) & 0x55555555);
  rest = (rest & 0x33333333) + ((rest >>> 2) & 0x33333333);
  return (((rest + (rest >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
