import assert from 'node:assert/strict';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { AssertionError } from '../core/assert.js';
import { SystemClock, sleep } from '../world/clock.js';
import { silentLogger, type Logger } from './logger.js';
import {
  Supervisor,
  type EscalationReason,
  type Service,
  type ServiceContext,
  type SupervisorOptions,
} from './supervisor.js';


/** A service that records its starts and stops in a shared journal and fails on command. */
class FakeService implements Service {
  /** Contexts handed to each start, oldest first; the last is the current incarnation's. */
  readonly contexts: ServiceContext[] = [];
  /** How many of the next starts reject. */
  startFailuresLeft = 0;
  onStop: (() => void) | undefined;

  constructor(
    readonly name: string,
    private readonly journal: string[],
  ) {}

  async start(context: ServiceContext): Promise<void> {
    this.contexts.push(context);
    this.journal.push(`start ${this.name}`);
    if (this.startFailuresLeft > 0) {
      this.startFailuresLeft -= 1;
      throw new Error(`${this.name} cannot start`);
    }
  }

  async stop(): Promise<void> {
    this.journal.push(`stop ${this.name}`);
    this.onStop?.();
  }

  fail(message = `${this.name} crashed`): void {
    const context = this.contexts.at(-1);
    assert.ok(context !== undefined, `${this.name} was never started`);
    context.fail(new Error(message));
  }
}

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly [field: string]: unknown;
}

/** A pino logger writing JSON lines into an array, to assert on what operators would see. */
function memoryLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level: 'trace', base: null }, { write: (line: string) => void lines.push(JSON.parse(line) as LogLine) });
  return { logger, lines };
}

const levelWarn = 40;
const levelError = 50;
const levelFatal = 60;

interface Harness {
  readonly clock: ManualClock;
  readonly supervisor: Supervisor;
  readonly services: FakeService[];
  readonly journal: string[];
  readonly escalations: EscalationReason[];
  readonly lines: LogLine[];
}

function harness(names: readonly string[], options: Partial<SupervisorOptions> = {}): Harness {
  const clock = new ManualClock();
  const journal: string[] = [];
  const escalations: EscalationReason[] = [];
  const { logger, lines } = memoryLogger();
  const supervisor = new Supervisor({
    strategy: 'one-for-one',
    restartsMax: 10,
    restartWindowMs: 60_000,
    backoffInitialMs: 100,
    backoffMaxMs: 1_000,
    clock,
    logger,
    onEscalate: (reason) => escalations.push(reason),
    ...options,
  });
  const services = names.map((name) => new FakeService(name, journal));
  return { clock, supervisor, services, journal, escalations, lines };
}

/** Starts the harness's services and clears the journal so tests look only at what follows. */
async function started(h: Harness): Promise<Harness> {
  await h.supervisor.start(h.services);
  h.journal.length = 0;
  return h;
}

function service(h: Harness, index: number): FakeService {
  const found = h.services[index];
  assert.ok(found !== undefined);
  return found;
}

function states(h: Harness): string[] {
  return h.supervisor.status().map((child) => `${child.name}:${child.state}`);
}

describe('supervisor', () => {
  test('supervisor: starts children in order and stops them in reverse (3 services)', async () => {
    const h = harness(['a', 'b', 'c']);
    await h.supervisor.start(h.services);
    assert.deepEqual(h.journal, ['start a', 'start b', 'start c']);
    assert.deepEqual(states(h), ['a:running', 'b:running', 'c:running']);
    await h.supervisor.stop();
    await h.supervisor.stop();
    assert.deepEqual(h.journal, ['start a', 'start b', 'start c', 'stop c', 'stop b', 'stop a']);
    assert.deepEqual(states(h), ['a:stopped', 'b:stopped', 'c:stopped']);
  });

  test('supervisor: one-for-one restarts only the failed child (3 services, b fails, back-off 100 ms)', async () => {
    const h = await started(harness(['a', 'b', 'c']));
    service(h, 1).fail('b lost its socket');
    await h.clock.advance(99);
    assert.deepEqual(h.journal, ['stop b']);
    assert.deepEqual(states(h), ['a:running', 'b:restarting', 'c:running']);
    await h.clock.advance(1);
    assert.deepEqual(h.journal, ['stop b', 'start b']);
    assert.deepEqual(h.supervisor.status()[1], { name: 'b', state: 'running', restarts: 1, lastError: 'b lost its socket' });
    assert.deepEqual(h.supervisor.status()[0], { name: 'a', state: 'running', restarts: 0 });

    const failed = h.lines.find((line) => line.level === levelError);
    assert.equal(failed?.['service'], 'b');
    assert.match(failed?.msg ?? '', /service 'b' failed: b lost its socket/);
    const restart = h.lines.find((line) => line.level === levelWarn);
    assert.deepEqual([restart?.['service'], restart?.['attempt'], restart?.['delayMs']], ['b', 1, 100]);
  });

  test('supervisor: rest-for-one restarts the failed child and every later one (4 services, b fails)', async () => {
    const h = await started(harness(['a', 'b', 'c', 'd'], { strategy: 'rest-for-one' }));
    service(h, 1).fail();
    await h.clock.advance(99);
    assert.deepEqual(h.journal, ['stop d', 'stop c', 'stop b']);
    assert.deepEqual(states(h), ['a:running', 'b:restarting', 'c:restarting', 'd:restarting']);
    await h.clock.advance(1);
    assert.deepEqual(h.journal, ['stop d', 'stop c', 'stop b', 'start b', 'start c', 'start d']);
    assert.deepEqual(
      h.supervisor.status().map((child) => child.restarts),
      [0, 1, 1, 1],
    );
  });

  test('supervisor: rest-for-one folds a later pending restart into an earlier failure (3 services, c then a fail)', async () => {
    const h = await started(harness(['a', 'b', 'c'], { strategy: 'rest-for-one' }));
    service(h, 2).fail();
    await h.clock.advance(100);
    service(h, 2).fail(); // c's second failure: its own restart would be due 200 ms later, at 300 ms
    await h.clock.advance(10);
    service(h, 0).fail(); // a's restart, due at 210 ms, takes c's over
    await h.clock.advance(99);
    assert.deepEqual(h.journal, ['stop c', 'start c', 'stop c', 'stop b', 'stop a']);
    await h.clock.advance(1);
    assert.deepEqual(h.journal.slice(5), ['start a', 'start b', 'start c']);
    assert.deepEqual(states(h), ['a:running', 'b:running', 'c:running']);
    assert.equal(h.clock.timersPending, 0);
  });

  test('supervisor: back-off doubles and caps (initial 100 ms, max 400 ms, 5 failures)', async () => {
    const h = await started(harness(['a'], { backoffMaxMs: 400 }));
    for (const delayMs of [100, 200, 400, 400, 400]) {
      service(h, 0).fail();
      await h.clock.advance(delayMs - 1);
      assert.equal(h.supervisor.status()[0]?.state, 'restarting', `still waiting before ${delayMs} ms`);
      await h.clock.advance(1);
      assert.equal(h.supervisor.status()[0]?.state, 'running', `restarted after ${delayMs} ms`);
    }
    const warnings = h.lines.filter((line) => line.level === levelWarn).map((line) => [line['attempt'], line['delayMs']]);
    assert.deepEqual(warnings, [[1, 100], [2, 200], [3, 400], [4, 400], [5, 400]]);
  });

  test('supervisor: back-off resets after running a whole window (window 1000 ms)', async () => {
    const h = await started(harness(['a'], { restartWindowMs: 1_000 }));
    service(h, 0).fail();
    await h.clock.advance(100);
    service(h, 0).fail();
    await h.clock.advance(200);
    await h.clock.advance(1_000);
    service(h, 0).fail();
    const delays = h.lines.filter((line) => line.level === levelWarn).map((line) => line['delayMs']);
    assert.deepEqual(delays, [100, 200, 100]);
  });

  test('supervisor: escalates after restartsMax + 1 failures in the window (restartsMax 2, window 1000 ms)', async () => {
    const h = await started(harness(['a', 'b', 'c'], { restartsMax: 2, restartWindowMs: 1_000 }));
    service(h, 1).fail();
    await h.clock.advance(100);
    service(h, 1).fail();
    await h.clock.advance(200);
    h.journal.length = 0;
    service(h, 1).fail('b crashed for good');
    await h.clock.advance(0);
    assert.deepEqual(h.journal, ['stop c', 'stop b', 'stop a']);
    assert.equal(h.escalations.length, 1);
    const reason = h.escalations[0];
    assert.deepEqual([reason?.service, reason?.restarts, reason?.windowMs], ['b', 3, 1_000]);
    assert.equal((reason?.error as Error).message, 'b crashed for good');
    assert.deepEqual(states(h), ['a:stopped', 'b:failed', 'c:stopped']);

    const fatal = h.lines.filter((line) => line.level === levelFatal);
    assert.equal(fatal.length, 1);
    assert.equal(fatal[0]?.msg, "service 'b' failed; 3 failures within 1000 ms exceed restartsMax 2; shutting the node down");

    // Nothing restarts or escalates again, and stop() is still safe.
    service(h, 0).fail();
    await h.clock.advance(10_000);
    await h.supervisor.stop();
    assert.equal(h.escalations.length, 1);
    assert.deepEqual(h.journal, ['stop c', 'stop b', 'stop a']);
    assert.equal(h.clock.timersPending, 0);
  });

  test('supervisor: failures spread beyond the window do not escalate (restartsMax 1, window 1000 ms, 1500 ms apart)', async () => {
    const h = await started(harness(['a', 'b'], { restartsMax: 1, restartWindowMs: 1_000 }));
    for (let failure = 0; failure < 6; failure++) {
      service(h, failure % 2).fail();
      await h.clock.advance(1_500);
    }
    assert.equal(h.escalations.length, 0);
    assert.deepEqual(states(h), ['a:running', 'b:running']);
    assert.deepEqual(
      h.supervisor.status().map((child) => child.restarts),
      [3, 3],
    );
  });

  test('supervisor: a start failure is retried with back-off before later children start (b rejects twice)', async () => {
    const h = harness(['a', 'b', 'c']);
    service(h, 1).startFailuresLeft = 2;
    let running = false;
    const starting = h.supervisor.start(h.services).then(() => {
      running = true;
    });
    await h.clock.advance(99);
    assert.deepEqual(h.journal, ['start a', 'start b', 'stop b']);
    assert.deepEqual(states(h), ['a:running', 'b:restarting', 'c:stopped']);
    await h.clock.advance(1);
    assert.deepEqual(h.journal.slice(3), ['start b', 'stop b']);
    await h.clock.advance(199);
    assert.equal(running, false);
    await h.clock.advance(1);
    await starting;
    assert.deepEqual(h.journal.slice(5), ['start b', 'start c']);
    assert.deepEqual(h.supervisor.status()[1], { name: 'b', state: 'running', restarts: 2, lastError: 'b cannot start' });
  });

  test('supervisor: start() rejects when escalation happens during start (b never starts, restartsMax 1)', async () => {
    const h = harness(['a', 'b', 'c'], { restartsMax: 1 });
    service(h, 1).startFailuresLeft = Infinity;
    const starting = h.supervisor.start(h.services);
    const rejected = assert.rejects(starting, /service 'b' failed; 2 failures within 60000 ms exceed restartsMax 1/);
    await h.clock.advance(100);
    await rejected;
    assert.deepEqual(h.journal, ['start a', 'start b', 'stop b', 'start b', 'stop b', 'stop a']);
    assert.equal(h.escalations.length, 1);
    assert.deepEqual(states(h), ['a:stopped', 'b:failed', 'c:stopped']);
  });

  test('supervisor: a repeated fail counts once and a stale fail is ignored (restartsMax 1)', async () => {
    const h = await started(harness(['a'], { restartsMax: 1 }));
    const first = service(h, 0).contexts[0];
    assert.ok(first !== undefined);
    first.fail(new Error('once'));
    first.fail(new Error('twice, same incarnation'));
    await h.clock.advance(100);
    first.fail(new Error('stale: the incarnation was restarted'));
    await h.clock.advance(1_000);
    assert.equal(h.escalations.length, 0);
    assert.deepEqual(h.supervisor.status()[0], { name: 'a', state: 'running', restarts: 1, lastError: 'once' });
    assert.deepEqual(h.journal, ['stop a', 'start a']);
  });

  test('supervisor: a fail reported during start restarts the child (a fails inside start)', async () => {
    const h = harness(['a', 'b']);
    const a = service(h, 0);
    let crashes = 1;
    a.start = async (context: ServiceContext): Promise<void> => {
      h.journal.push('start a');
      if (crashes-- > 0) context.fail(new Error('crashed while starting'));
    };
    await Promise.all([h.supervisor.start(h.services), h.clock.advance(100)]);
    assert.deepEqual(h.journal, ['start a', 'stop a', 'start a', 'start b']);
  });

  test('supervisor: stop cancels a pending restart and ignores failures while stopping (2 services)', async () => {
    const h = await started(harness(['a', 'b']));
    service(h, 1).fail();
    await h.clock.advance(10);
    assert.equal(h.clock.timersPending, 1);
    service(h, 0).onStop = () => service(h, 0).fail('noise while stopping');
    await h.supervisor.stop();
    assert.equal(h.clock.timersPending, 0);
    await h.clock.advance(10_000);
    assert.deepEqual(h.journal, ['stop b', 'stop a']);
    assert.deepEqual(states(h), ['a:stopped', 'b:stopped']);
    assert.equal(h.lines.filter((line) => line.level >= levelError).length, 1, 'only b failing is logged');
  });

  test('supervisor: stop during start rejects start() (b rejects forever)', async () => {
    const h = harness(['a', 'b']);
    service(h, 1).startFailuresLeft = Infinity;
    const starting = h.supervisor.start(h.services);
    await h.clock.advance(0);
    await h.supervisor.stop();
    await assert.rejects(starting, /stopped before every service started/);
    assert.deepEqual(h.journal, ['start a', 'start b', 'stop b', 'stop a']);
    assert.equal(h.clock.timersPending, 0);
  });

  test('supervisor: rejects options that make no sense (restartsMax, windows, back-off)', () => {
    const base: SupervisorOptions = {
      strategy: 'one-for-one',
      restartsMax: 3,
      restartWindowMs: 1_000,
      backoffInitialMs: 10,
      backoffMaxMs: 100,
      clock: new ManualClock(),
      logger: silentLogger(),
      onEscalate: () => {},
    };
    const bad: Partial<SupervisorOptions>[] = [
      { restartsMax: -1 },
      { restartsMax: 1.5 },
      { restartWindowMs: 0 },
      { backoffInitialMs: 0 },
      { backoffInitialMs: 200 },
      { backoffMaxMs: Infinity },
    ];
    for (const override of bad) {
      assert.throws(() => new Supervisor({ ...base, ...override }), AssertionError, JSON.stringify(override));
    }
    const supervisor = new Supervisor(base);
    const twins = [new FakeService('x', []), new FakeService('x', [])];
    assert.throws(() => supervisor.start(twins), /unique/);
  });
});

/** A tiny TCP server that greets every connection; `crash()` destroys its listener for real. */
class GreeterService implements Service {
  readonly name = 'greeter';
  private server: Server | undefined;
  private context: ServiceContext | undefined;
  private readonly sockets = new Set<Socket>();
  /** Fixed after the first start so that clients find the restarted server where it was. */
  port = 0;

  async start(context: ServiceContext): Promise<void> {
    this.context = context;
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.end('hello\n');
    });
    this.server = server;
    server.listen(this.port, '127.0.0.1');
    await once(server, 'listening');
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server === undefined || !server.listening) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  crash(): void {
    this.server?.close();
    this.context?.fail(new Error('listener destroyed'));
  }
}

async function greeting(port: number): Promise<string> {
  const socket = connect({ port, host: '127.0.0.1' });
  socket.setEncoding('utf8');
  let received = '';
  socket.on('data', (chunk: string) => (received += chunk));
  await once(socket, 'end');
  socket.destroy();
  return received;
}

test('supervisor: restarts a real TCP server whose listener was destroyed (SystemClock, 127.0.0.1 port 0)', async () => {
  // SystemClock timers are unref'd; during the back-off nothing else would keep the test alive.
  const keepAlive = setInterval(() => {}, 1_000);
  const clock = new SystemClock();
  const greeter = new GreeterService();
  const supervisor = new Supervisor({
    strategy: 'one-for-one',
    restartsMax: 3,
    restartWindowMs: 10_000,
    backoffInitialMs: 50,
    backoffMaxMs: 200,
    clock,
    logger: silentLogger(),
    onEscalate: () => assert.fail('must not escalate'),
  });
  try {
    await supervisor.start([greeter]);
    const port = greeter.port;
    assert.equal(await greeting(port), 'hello\n');

    greeter.crash();
    await assert.rejects(greeting(port), { code: 'ECONNREFUSED' });
    assert.equal(supervisor.status()[0]?.state, 'restarting');

    for (let waitedMs = 0; supervisor.status()[0]?.state !== 'running'; waitedMs += 10) {
      assert.ok(waitedMs < 2_000, 'greeter restarted within 2 s');
      await sleep(clock, 10);
    }
    assert.equal(greeter.port, port);
    assert.equal(await greeting(port), 'hello\n');
    assert.deepEqual(supervisor.status()[0], { name: 'greeter', state: 'running', restarts: 1, lastError: 'listener destroyed' });
  } finally {
    await supervisor.stop();
    clearInterval(keepAlive);
  }
});
