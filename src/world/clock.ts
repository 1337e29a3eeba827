/**
 * Time, as the node runtime sees it. Every read of time and every timer in the runtime goes
 * through a Clock so that the simulator (src/sim/) can run the same code on virtual time.
 */
export interface TimerHandle {
  /** Stops the timer; calling it again, or after the timer fired, does nothing. */
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds from an arbitrary origin; never goes backwards. */
  nowMs(): number;
  /** Milliseconds since the Unix epoch, as the machine's wall clock says (may jump). */
  wallMs(): number;
  /** Calls `callback` once after `delayMs`. Timers never keep the process alive on their own. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

export class SystemClock implements Clock {
  nowMs(): number {
    return performance.now();
  }

  wallMs(): number {
    return Date.now();
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer = setTimeout(callback, delayMs);
    timer.unref();
    return { cancel: () => clearTimeout(timer) };
  }
}

/** Resolves after `delayMs` of the given clock's time. */
export function sleep(clock: Clock, delayMs: number): Promise<void> {
  return new Promise((resolve) => clock.setTimer(delayMs, resolve));
}
