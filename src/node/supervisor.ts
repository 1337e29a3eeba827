/**
 * Runs a node's services and restarts the ones that fail, in the OTP sense (Erlang/OTP Design
 * Principles, "Supervisor Behaviour"):
 *
 * - strategy: `one-for-one` restarts only the failed child; `rest-for-one` also restarts every
 *   child started after it, because later children may depend on earlier ones.
 * - intensity: more than `restartsMax` restarts within `restartWindowMs`, counted over all
 *   children as OTP does, means restarting does not help; every child is stopped and the node
 *   is told to shut down (`onEscalate`) instead of looping.
 * - back-off (not in OTP, which restarts at once): a child's restart waits `backoffInitialMs`,
 *   doubled for each consecutive failure of that child, capped at `backoffMaxMs`.
 *
 * Every start and stop of a child runs on one serial queue, so a service never sees its start
 * and stop overlap, and stops and starts happen in the order their causes were reported.
 * Failures are recorded synchronously when reported; the queue then performs the stops and
 * starts. All timing goes through the injected Clock so that the simulator can drive it.
 */
import { assert } from '../core/assert.js';
import type { Clock, TimerHandle } from '../world/clock.js';
import type { Logger } from './logger.js';
import { mark } from '../core/simulation-hooks.js';

export interface ServiceContext {
  /**
   * The service calls this when it has failed after start (the OTP "crash"); the supervisor
   * stops it and restarts it. Calls from an earlier incarnation, repeated calls and calls while
   * the supervisor stops are ignored, so it is always safe to call.
   */
  fail(error: unknown): void;
  /** The supervisor's logger with `service` bound. */
  readonly logger: Logger;
}

export interface Service {
  /** Unique among the supervisor's children; used in logs and status. */
  readonly name: string;
  /** Starts; resolves when ready. A rejection counts as a failure (restarted with back-off). */
  start(context: ServiceContext): Promise<void>;
  /** Stops gracefully (finish in-flight work). Must be safe to call on a failed service. */
  stop(): Promise<void>;
}

export type RestartStrategy = 'one-for-one' | 'rest-for-one';

export interface EscalationReason {
  /** The service whose failure exceeded the restart intensity. */
  readonly service: string;
  /** Failures counted in the window, all children, including this one (= restartsMax + 1). */
  readonly restarts: number;
  readonly windowMs: number;
  /** What that service failed with. */
  readonly error: unknown;
}

export interface SupervisorOptions {
  readonly strategy: RestartStrategy;
  /** Intensity: more than this many restarts within `restartWindowMs` escalates. */
  readonly restartsMax: number;
  /** Period of the intensity rule; also how long a child must run to reset its back-off. */
  readonly restartWindowMs: number;
  /** First restart delay of a child, doubled for each consecutive failure of that child. */
  readonly backoffInitialMs: number;
  readonly backoffMaxMs: number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called once when intensity is exceeded, after every service was stopped in reverse order. */
  readonly onEscalate: (reason: EscalationReason) => void;
}

export type ChildState = 'starting' | 'running' | 'restarting' | 'stopped' | 'failed';

export interface ChildStatus {
  readonly name: string;
  /** `failed` only for the child that caused escalation; never-started children are `stopped`. */
  readonly state: ChildState;
  /** Starts after the first one, including rest-for-one restarts caused by an earlier child. */
  readonly restarts: number;
  readonly lastError?: string;
}

interface Child {
  readonly service: Service;
  state: ChildState;
  /** Bumped at every start; a context's fail() carries its own, so stale calls are recognised. */
  incarnation: number;
  restarts: number;
  lastError: string | undefined;
  /** start() was called and stop() not since: the service may hold resources. */
  needsStop: boolean;
  /** Pending back-off: the child may not start until it fires. */
  restartTimer: TimerHandle | undefined;
  /** Failures since the child last ran a whole window without failing; the back-off exponent. */
  failuresConsecutive: number;
  runningSinceMs: number | undefined;
}

/** 2 ** 30 times any initial delay is past any sane cap; stopping there keeps the product finite. */
const backoffExponentMax = 30;

export class Supervisor {
  private readonly options: SupervisorOptions;
  private children: Child[] = [];
  /** Serial queue of lifecycle operations; each link never rejects. */
  private queue: Promise<void> = Promise.resolve();
  private reconcileQueued = false;
  /** Times of failures inside the intensity window, oldest first; at most restartsMax + 1. */
  private readonly failureTimesMs: number[] = [];
  private started = false;
  /** Settles start()'s promise; cleared once every child ran or the supervisor shut down. */
  private boot: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** Set once stop() or escalation began; from then on nothing starts and failures are ignored. */
  private shutdown: Promise<void> | undefined;

  constructor(options: SupervisorOptions) {
    const { strategy, restartsMax, restartWindowMs, backoffInitialMs, backoffMaxMs } = options;
    assert(strategy === 'one-for-one' || strategy === 'rest-for-one', () => `Supervisor: unknown strategy '${String(strategy)}'`);
    assert(Number.isSafeInteger(restartsMax) && restartsMax >= 0, () => `Supervisor: restartsMax must be an integer >= 0, got ${restartsMax}`);
    assert(Number.isFinite(restartWindowMs) && restartWindowMs > 0, () => `Supervisor: restartWindowMs must be > 0, got ${restartWindowMs}`);
    // A zero delay would let a child that fails at once spin the event loop until intensity trips.
    assert(Number.isFinite(backoffInitialMs) && backoffInitialMs > 0, () => `Supervisor: backoffInitialMs must be > 0, got ${backoffInitialMs}`);
    assert(
      Number.isFinite(backoffMaxMs) && backoffInitialMs <= backoffMaxMs,
      () => `Supervisor: backoffInitialMs (${backoffInitialMs}) must be <= backoffMaxMs (${backoffMaxMs})`,
    );
    this.options = options;
  }

  /**
   * Starts children in order, each once the one before it is running; one that fails to start is
   * retried with back-off under the same intensity rule. Resolves when all are running; rejects
   * if escalation, or stop(), happened first. Call once.
   */
  start(children: readonly Service[]): Promise<void> {
    assert(!this.started && this.shutdown === undefined, 'Supervisor.start: called twice or after stop()');
    const names = new Set(children.map((service) => service.name));
    assert(names.size === children.length, 'Supervisor.start: service names must be unique');
    assert(!names.has(''), 'Supervisor.start: a service name is empty');
    this.started = true;
    this.children = children.map(newChild);
    const booted = new Promise<void>((resolve, reject) => {
      this.boot = { resolve, reject };
    });
    this.enqueueReconcile();
    return booted;
  }

  /**
   * Stops all children in reverse start order, waiting for each, after any start or stop in
   * progress; cancels pending restarts. Idempotent: every call returns the same promise.
   */
  stop(): Promise<void> {
    return this.shutdown ?? this.beginShutdown(new Error('Supervisor: stopped before every service started'));
  }

  /** Per child, in start order; for /status. */
  status(): ReadonlyArray<ChildStatus> {
    return this.children.map((child) => ({
      name: child.service.name,
      state: child.state,
      restarts: child.restarts,
      ...(child.lastError === undefined ? {} : { lastError: child.lastError }),
    }));
  }

  private enqueue(operation: () => Promise<void>): Promise<void> {
    const done = this.queue.then(operation);
    // Services' own errors are caught where they are called; what lands here is a bug, and it
    // must not wedge every later operation.
    this.queue = done.catch((error: unknown) => {
      this.options.logger.error({ err: error }, 'supervisor: operation threw');
    });
    return done;
  }

  /** Reconciling is idempotent, so one queued run serves every trigger that arrives before it. */
  private enqueueReconcile(): void {
    if (this.reconcileQueued) return;
    this.reconcileQueued = true;
    void this.enqueue(async () => {
      this.reconcileQueued = false;
      await this.reconcile();
    });
  }

  /**
   * Starts, in order, every child that is down and free to start: its stop has finished and its
   * back-off has elapsed. A child that is down holds back every later child under rest-for-one,
   * and under one-for-one only those never started yet, so that start order holds at boot.
   */
  private async reconcile(): Promise<void> {
    let blocked = false;
    for (const child of this.children) {
      if (this.shutdown !== undefined) return;
      if (child.state === 'running') continue;
      const heldBack = blocked && (this.options.strategy === 'rest-for-one' || child.incarnation === 0);
      const free = !heldBack && !child.needsStop && child.restartTimer === undefined;
      if (free && (await this.startChild(child))) continue;
      blocked = true;
    }
    if (this.boot !== undefined && this.children.every((child) => child.state === 'running')) {
      this.boot.resolve();
      this.boot = undefined;
    }
  }

  /** Returns whether the child is running; if not, its failure has been reported. */
  private async startChild(child: Child): Promise<boolean> {
    const name = child.service.name;
    child.incarnation += 1;
    if (child.incarnation > 1) {
      child.restarts += 1;
      mark('supervisor.service-restarted');
    }
    const incarnation = child.incarnation;
    child.state = 'starting';
    child.needsStop = true;
    const context: ServiceContext = {
      fail: (error) => this.onFailure(child, incarnation, error),
      logger: this.options.logger.child({ service: name }),
    };
    try {
      await child.service.start(context);
    } catch (error) {
      this.onFailure(child, incarnation, error);
      return false;
    }
    // A fail() during start, or a rest-for-one restart of an earlier child, took over.
    if (child.state !== 'starting') return false;
    child.state = 'running';
    child.runningSinceMs = this.options.clock.nowMs();
    this.options.logger.info({ service: name, incarnation }, `service '${name}' running`);
    return true;
  }

  private onFailure(child: Child, incarnation: number, error: unknown): void {
    const name = child.service.name;
    // While stopping, services failing is expected noise: everything is being stopped anyway.
    if (this.shutdown !== undefined) return;
    const current = incarnation === child.incarnation && (child.state === 'running' || child.state === 'starting');
    if (!current) {
      this.options.logger.debug({ service: name, incarnation }, `service '${name}': stale or repeated failure ignored`);
      return;
    }
    child.lastError = errorMessage(error);
    this.options.logger.error({ service: name, err: error }, `service '${name}' failed: ${child.lastError}`);
    const failures = this.countFailure();
    if (failures > this.options.restartsMax) this.escalate(child, failures, error);
    else this.scheduleRestart(child);
  }

  /** Records a failure now; returns how many fall inside the intensity window. */
  private countFailure(): number {
    const nowMs = this.options.clock.nowMs();
    const windowStartMs = nowMs - this.options.restartWindowMs;
    while ((this.failureTimesMs[0] ?? Infinity) <= windowStartMs) this.failureTimesMs.shift();
    this.failureTimesMs.push(nowMs);
    assert(this.failureTimesMs.length <= this.options.restartsMax + 1, 'Supervisor: failure window past its bound');
    return this.failureTimesMs.length;
  }

  private scheduleRestart(failed: Child): void {
    const name = failed.service.name;
    // Under rest-for-one every later child may depend on the failed one: it goes down too, and
    // the failed child's restart takes over any restart of its own that was pending.
    const later = this.options.strategy === 'rest-for-one' ? this.children.slice(this.children.indexOf(failed) + 1) : [];
    const stopping = [failed, ...later.filter((child) => child.state === 'running' || child.state === 'starting')];
    for (const child of later) cancelRestartTimer(child);
    for (const child of stopping) child.state = 'restarting';
    const delayMs = this.nextDelayMs(failed);
    failed.restartTimer = this.options.clock.setTimer(delayMs, () => {
      failed.restartTimer = undefined;
      this.enqueueReconcile();
    });
    const alsoRestarting = stopping.slice(1).map((child) => child.service.name);
    this.options.logger.warn(
      { service: name, attempt: failed.failuresConsecutive, delayMs, alsoRestarting },
      `restarting service '${name}' in ${delayMs} ms (attempt ${failed.failuresConsecutive})`,
    );
    void this.enqueue(() => this.stopForRestart(stopping));
  }

  private nextDelayMs(child: Child): number {
    const { clock, restartWindowMs, backoffInitialMs, backoffMaxMs } = this.options;
    // A child that ran a whole window without failing is healthy again: its back-off starts over.
    if (child.runningSinceMs !== undefined && clock.nowMs() - child.runningSinceMs >= restartWindowMs) {
      child.failuresConsecutive = 0;
    }
    child.runningSinceMs = undefined;
    child.failuresConsecutive += 1;
    const exponent = Math.min(child.failuresConsecutive - 1, backoffExponentMax);
    return Math.min(backoffInitialMs * 2 ** exponent, backoffMaxMs);
  }

  /** `children` in start order: the failed child first. Stops them in reverse, then restarts. */
  private async stopForRestart(children: readonly Child[]): Promise<void> {
    for (const child of [...children].reverse()) {
      // Once shutting down, the shutdown stops every child in reverse order instead.
      if (this.shutdown !== undefined) return;
      await this.stopChild(child);
    }
    this.enqueueReconcile();
  }

  private escalate(child: Child, failures: number, error: unknown): void {
    const { restartWindowMs: windowMs, restartsMax, logger } = this.options;
    const name = child.service.name;
    child.state = 'failed';
    const line = `service '${name}' failed; ${failures} failures within ${windowMs} ms exceed restartsMax ${restartsMax}; shutting the node down`;
    logger.fatal({ service: name, failures, windowMs, restartsMax, err: error }, line);
    const reason: EscalationReason = { service: name, restarts: failures, windowMs, error };
    void this.beginShutdown(new Error(`Supervisor: ${line}`, { cause: error }), () => {
      try {
        this.options.onEscalate(reason);
      } catch (thrown) {
        logger.error({ err: thrown }, 'supervisor: onEscalate threw');
      }
    });
  }

  /** Cancels every pending restart and queues the stop of every child, in reverse order. */
  private beginShutdown(bootError: Error, afterStopped?: () => void): Promise<void> {
    for (const child of this.children) cancelRestartTimer(child);
    const boot = this.boot;
    this.boot = undefined;
    const shutdown = this.enqueue(async () => {
      for (const child of [...this.children].reverse()) {
        await this.stopChild(child);
        if (child.state !== 'failed') child.state = 'stopped';
      }
      afterStopped?.();
    });
    this.shutdown = shutdown;
    if (boot !== undefined) {
      const rejectBoot = (): void => boot.reject(bootError);
      void shutdown.then(rejectBoot, rejectBoot);
    }
    return shutdown;
  }

  private async stopChild(child: Child): Promise<void> {
    if (!child.needsStop) return;
    child.needsStop = false;
    const name = child.service.name;
    try {
      await child.service.stop();
    } catch (error) {
      // Nothing more can be done for it; the next start gets a fresh chance.
      this.options.logger.error({ service: name, err: error }, `service '${name}' failed to stop`);
    }
  }
}

function newChild(service: Service): Child {
  return {
    service,
    state: 'stopped',
    incarnation: 0,
    restarts: 0,
    lastError: undefined,
    needsStop: false,
    restartTimer: undefined,
    failuresConsecutive: 0,
    runningSinceMs: undefined,
  };
}

function cancelRestartTimer(child: Child): void {
  child.restartTimer?.cancel();
  child.restartTimer = undefined;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
