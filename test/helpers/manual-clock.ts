import type { Clock, TimerHandle } from '../../src/world/clock.js';

/** Lets pending promise chains run: a few turns of the event loop. */
export async function settle(): Promise<void> {
  for (let round = 0; round < 5; round++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Virtual time for tests: timers fire only when the test advances the clock, in time order,
 * with promises settling after each, so back-off, timeouts and retries are exact and instant.
 */
export class ManualClock implements Clock {
  private now = 0;
  private sequence = 0;
  private readonly timers = new Map<number, { readonly atMs: number; readonly callback: () => void }>();

  nowMs(): number {
    return this.now;
  }

  wallMs(): number {
    return 1_700_000_000_000 + this.now;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const id = this.sequence++;
    this.timers.set(id, { atMs: this.now + delayMs, callback });
    return { cancel: () => this.timers.delete(id) };
  }

  get timersPending(): number {
    return this.timers.size;
  }

  /** Moves time forward, firing due timers (also ones set meanwhile) in time order. */
  async advance(durationMs: number): Promise<void> {
    const targetMs = this.now + durationMs;
    await settle();
    for (let next = this.nextDue(targetMs); next !== undefined; next = this.nextDue(targetMs)) {
      const [id, timer] = next;
      this.timers.delete(id);
      this.now = timer.atMs;
      timer.callback();
      await settle();
    }
    this.now = targetMs;
  }

  private nextDue(targetMs: number): [number, { atMs: number; callback: () => void }] | undefined {
    let due: [number, { atMs: number; callback: () => void }] | undefined;
    for (const [id, timer] of this.timers) {
      if (timer.atMs <= targetMs && (due === undefined || timer.atMs < due[1].atMs)) due = [id, timer];
    }
    return due;
  }
}
