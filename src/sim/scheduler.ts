import { assert } from '../core/assert.js';
import type { Clock, TimerHandle } from '../world/clock.js';

/** Who a timer belongs to: a node's incarnation dies with a crash, and its timers with it. */
export interface TimerOwner {
  readonly alive: boolean;
  /** A paused owner's timers wait (SIGSTOP) and fire, late, once it is resumed. */
  readonly paused?: boolean;
}

interface Event {
  readonly atMs: number;
  readonly sequence: number;
  readonly callback: () => void;
  readonly owner: TimerOwner | undefined;
  cancelled: boolean;
}

const forever: TimerOwner = { alive: true };

/** Lets every pending promise continuation run: setImmediate comes after the whole microtask queue. */
function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Virtual time. Timers fire in (time, creation) order, one at a time, and every promise chain a
 * timer started runs to its end (or to its next wait on a timer) before the next timer fires:
 * a run depends only on the order of events, never on the machine's speed, so a seed replays
 * exactly. Time jumps from event to event; nothing ever waits for the wall clock.
 */
export class Scheduler {
  private now = 0;
  private sequence = 0;
  private readonly heap: Event[] = [];
  /** Events that came due while their owner was paused. */
  private held: Event[] = [];
  private eventsRunTotal = 0;

  get nowMs(): number {
    return this.now;
  }

  get eventsRun(): number {
    return this.eventsRunTotal;
  }

  get pending(): number {
    return this.heap.length;
  }

  /** Calls `callback` after `delayMs` of virtual time, unless cancelled or its owner died first. */
  schedule(delayMs: number, callback: () => void, owner?: TimerOwner): TimerHandle {
    assert(Number.isFinite(delayMs), () => `timer delay must be finite, got ${delayMs}`);
    const event: Event = { atMs: this.now + Math.max(0, delayMs), sequence: this.sequence++, callback, owner, cancelled: false };
    this.push(event);
    return {
      cancel: () => {
        event.cancelled = true;
      },
    };
  }

  /** A Clock for one owner; `wallOffsetMs` skews its wall clock (its monotonic time is the simulation's). */
  clock(owner: TimerOwner = forever, wallOffsetMs: () => number = () => 0, epochMs = 1_767_225_600_000): Clock {
    return {
      nowMs: () => this.now,
      wallMs: () => Math.round(epochMs + this.now + wallOffsetMs()),
      setTimer: (delayMs, callback) => (owner.alive ? this.schedule(delayMs, callback, owner) : { cancel: () => {} }),
    };
  }

  /** Runs events until virtual time `untilMs` (then stands there) or until `stop()` says so after an event. */
  async runUntil(untilMs: number, stop: () => boolean = () => false): Promise<void> {
    await drainMicrotasks();
    for (;;) {
      if (stop()) return;
      const next = this.heap[0];
      if (next === undefined || next.atMs > untilMs) break;
      this.pop();
      if (next.cancelled || (next.owner !== undefined && !next.owner.alive)) continue;
      if (next.owner?.paused === true) {
        this.held.push(next);
        continue;
      }
      this.now = next.atMs;
      this.eventsRunTotal += 1;
      next.callback();
      await drainMicrotasks();
    }
    this.now = Math.max(this.now, untilMs);
  }

  /**
   * Runs events until `promise` settles (everything in the simulation waits on virtual time, so
   * awaiting it without running the scheduler would wait forever); undefined after `limitMs`.
   */
  async settle<T>(promise: Promise<T>, limitMs: number): Promise<{ readonly value: T } | undefined> {
    let outcome: { value: T } | { error: unknown } | undefined;
    promise.then(
      (value) => (outcome = { value }),
      (error: unknown) => (outcome = { error }),
    );
    await this.runFor(limitMs, () => outcome !== undefined);
    if (outcome === undefined) return undefined;
    if ('error' in outcome) throw outcome.error;
    return outcome;
  }

  /** The owner is no longer paused: its timers that came due meanwhile fire now, in their order. */
  release(owner: TimerOwner): void {
    const mine = this.held.filter((event) => event.owner === owner);
    this.held = this.held.filter((event) => event.owner !== owner);
    for (const event of mine) this.push({ ...event, atMs: this.now });
  }

  /** Runs for `durationMs` of virtual time from now. */
  runFor(durationMs: number, stop?: () => boolean): Promise<void> {
    return this.runUntil(this.now + durationMs, stop);
  }

  private push(event: Event): void {
    const heap = this.heap;
    heap.push(event);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!before(event, heap[parent]!)) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = event;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    let index = 0;
    for (;;) {
      const left = 2 * index + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
      if (!before(heap[child]!, last)) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = last;
  }
}

function before(a: Event, b: Event): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.sequence < b.sequence);
}
