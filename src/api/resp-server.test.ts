// End-to-end tests of the Redis-protocol server (resp-server.ts, resp-commands.ts): a real
// RespServer on 127.0.0.1 over a real KvService, driven by ioredis, node-redis (RESP2 and RESP3),
// redis-cli and raw sockets. Each describe starts its own server and stops it, with every
// client closed, so that the process exits.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { createClient } from 'redis';
import {
  DelayedEngine,
  RawClient,
  encodeCommand,
  hasRedisCli,
  rawExchange,
  redisCliMissing,
  runRedisCli,
  startRespFixture,
  type RespFixture,
} from '../../test/helpers/resp-fixture.js';

/** Starts a fixture before the describe's tests and stops it after them. */
function serverPerDescribe(options: Parameters<typeof startRespFixture>[0] = {}): () => RespFixture {
  let fixture: RespFixture | undefined;
  before(async () => {
    fixture = await startRespFixture(options);
  });
  after(async () => {
    await fixture?.stop();
  });
  return () => {
    assert.ok(fixture !== undefined, 'fixture used before it started');
    return fixture;
  };
}

/** An ioredis client that gives up at once instead of reconnecting forever. */
function ioredis(port: number, options: { readonly db?: number } = {}): Redis {
  return new Redis({ host: '127.0.0.1', port, db: options.db ?? 0, maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
}

async function withIoredis<T>(port: number, use: (client: Redis) => Promise<T>, options: { readonly db?: number } = {}): Promise<T> {
  const client = ioredis(port, options);
  await client.connect();
  try {
    return await use(client);
  } finally {
    client.disconnect();
  }
}

/** The bytes of a byte-value sweep: every byte value, CR/LF runs and RESP markers. */
const binaryValue = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, index) => index)), Buffer.from('\r\n$-1\r\n*0\r\n\r\r\n\n')]);

// ---------------------------------------------------------------------------------------------

describe('resp: ioredis', () => {
  const fixture = serverPerDescribe();
  let client: Redis;
  before(async () => {
    client = ioredis(fixture().port);
    await client.connect();
  });
  after(() => client.disconnect());

  it('resp: ioredis SET/GET/DEL/EXISTS', async () => {
    assert.equal(await client.set('alpha', 'one'), 'OK');
    assert.equal(await client.get('alpha'), 'one');
    assert.equal(await client.set('alpha', 'two'), 'OK');
    assert.equal(await client.get('alpha'), 'two');
    assert.equal(await client.exists('alpha', 'alpha', 'absent'), 2);
    assert.equal(await client.del('alpha', 'absent'), 1);
    assert.equal(await client.del('alpha'), 0);
    assert.equal(await client.get('alpha'), null);
    assert.equal(await client.exists('alpha'), 0);
  });

  it('resp: ioredis MSET/MGET (missing keys are nil)', async () => {
    assert.equal(await client.mset('m1', 'v1', 'm2', 'v2', 'm3', ''), 'OK');
    assert.deepEqual(await client.mget('m1', 'missing', 'm2', 'm3'), ['v1', null, 'v2', '']);
    await assert.rejects(client.call('mset', 'm1', 'v1', 'm2'), { message: "ERR wrong number of arguments for 'mset' command" });
  });

  it('resp: ioredis SET NX/XX', async () => {
    assert.equal(await client.set('nx', 'first', 'NX'), 'OK');
    assert.equal(await client.set('nx', 'second', 'NX'), null);
    assert.equal(await client.get('nx'), 'first');
    assert.equal(await client.set('xx-absent', 'value', 'XX'), null);
    assert.equal(await client.exists('xx-absent'), 0);
    assert.equal(await client.set('nx', 'third', 'XX'), 'OK');
    assert.equal(await client.get('nx'), 'third');
    await client.del('nx');
    assert.equal(await client.set('nx', 'again', 'NX'), 'OK', 'NX after DEL writes');
    await assert.rejects(client.call('set', 'nx', 'v', 'NX', 'XX'), { message: 'ERR syntax error' });
    await assert.rejects(client.call('set', 'nx', 'v', 'BOGUS'), { message: 'ERR syntax error' });
  });

  it('resp: ioredis binary-safe keys and values (getBuffer)', async () => {
    const key = Buffer.from([0, 13, 10, 255, 0x24]);
    assert.equal(await client.set(key, binaryValue), 'OK');
    const value = await client.getBuffer(key);
    assert.ok(value !== null && value.equals(binaryValue));
    assert.deepEqual(await client.mgetBuffer(key, Buffer.from('absent')), [binaryValue, null]);
    assert.equal(await client.set('empty', Buffer.alloc(0)), 'OK');
    assert.deepEqual(await client.getBuffer('empty'), Buffer.alloc(0));
  });

  it('resp: ioredis pipeline of 1000 commands, replies in order', async () => {
    const pipeline = client.pipeline();
    for (let index = 0; index < 250; index++) {
      pipeline.set(`p${index}`, `value-${index}`);
      pipeline.get(`p${index}`);
      pipeline.exists(`p${index}`, `p${index - 1}`);
      pipeline.echo(`echo-${index}`);
    }
    const results = await pipeline.exec();
    assert.ok(results !== null);
    assert.equal(results.length, 1000);
    for (let index = 0; index < 250; index++) {
      const replies: unknown[] = results.slice(index * 4, index * 4 + 4);
      assert.deepEqual(replies, [
        [null, 'OK'],
        [null, `value-${index}`],
        [null, index === 0 ? 1 : 2],
        [null, `echo-${index}`],
      ]);
    }
  });

  it('resp: ioredis db option (SELECT 3) is namespace db3, isolated from the default', async () => {
    await client.set('shared-name', 'in-default');
    await withIoredis(
      fixture().port,
      async (db3) => {
        assert.equal(await db3.get('shared-name'), null);
        await db3.set('shared-name', 'in-db3');
        assert.equal(await db3.get('shared-name'), 'in-db3');
      },
      { db: 3 },
    );
    assert.equal(await client.get('shared-name'), 'in-default');
    await withIoredis(fixture().port, async (db3) => assert.equal(await db3.get('shared-name'), 'in-db3'), { db: 3 });
    // SELECT 0 is the default namespace again; a name is a namespace of that name.
    await withIoredis(fixture().port, async (other) => {
      assert.equal(await other.select(0), 'OK');
      assert.equal(await other.get('shared-name'), 'in-default');
      assert.equal(await other.call('select', 'db3'), 'OK');
      assert.equal(await other.get('shared-name'), 'in-db3');
      await assert.rejects(other.call('select', 'no spaces'), { message: /^NAMESPACE_INVALID / });
    });
  });

  it('resp: ioredis PING/ECHO', async () => {
    assert.equal(await client.ping(), 'PONG');
    assert.equal(await client.ping('hello'), 'hello');
    assert.equal(await client.echo('a b\r\nc'), 'a b\r\nc');
    await assert.rejects(client.call('ping', 'a', 'b'), { message: "ERR wrong number of arguments for 'ping' command" });
  });

  it('resp: ioredis INFO has redis_version and # Keyspace', async () => {
    const info = await client.info();
    assert.match(info, /^# Server\r\n/);
    assert.match(info, /\r\nredis_version:7\.2\.0\r\n/);
    assert.match(info, /\r\n# Keyspace\r\ndb0:keys=\d+,expires=0,avg_ttl=0\r\n/);
    const server = await client.info('server');
    assert.match(server, /redis_version:/);
    assert.doesNotMatch(server, /# Keyspace/);
  });

  it('resp: ioredis unknown command names the command and its first arguments', async () => {
    await assert.rejects(client.call('foo', 'a', 'b'), (error: Error) => {
      assert.match(error.message, /^ERR unknown command 'foo', with args beginning with: 'a' 'b'/);
      return true;
    });
    await assert.rejects(client.call('foo'), { message: "ERR unknown command 'foo', with args beginning with: " });
  });

  it(
    "resp: unknown command error in Redis 7's exact wording",
    async () => {
      await assert.rejects(client.call('foo', 'a', 'b'), { message: "ERR unknown command 'foo', with args beginning with: 'a' 'b' " });
      await assert.rejects(client.call('foo', 'a', 'b', 'c', 'd', 'e'), {
        message: "ERR unknown command 'foo', with args beginning with: 'a' 'b' 'c' 'd' 'e' ",
      });
    },
  );

  it('resp: ioredis wrong arity', async () => {
    await assert.rejects(client.call('get'), { message: "ERR wrong number of arguments for 'get' command" });
    await assert.rejects(client.call('get', 'a', 'b'), { message: "ERR wrong number of arguments for 'get' command" });
    await assert.rejects(client.call('set', 'a'), { message: "ERR wrong number of arguments for 'set' command" });
    await assert.rejects(client.call('GET'), { message: "ERR wrong number of arguments for 'get' command" });
  });

  it('resp: ioredis SET with EX is a clear error and writes nothing', async () => {
    await assert.rejects(client.set('expiring', 'v', 'EX', 10), { message: /^ERR expiry \(EX\/PX\/EXAT\/PXAT\/KEEPTTL\) is not supported/ });
    await assert.rejects(client.call('set', 'expiring', 'v', 'PX', '10'), { message: /not supported/ });
    assert.equal(await client.exists('expiring'), 0);
  });

  it('resp: ioredis store errors carry their stable code', async () => {
    await assert.rejects(client.set('', 'v'), { message: /^KEY_INVALID / });
    await assert.rejects(client.set('k'.repeat(2000), 'v'), { message: /^KEY_TOO_LARGE / });
  });
});

// ---------------------------------------------------------------------------------------------

function nodeRedisClient(url: string, resp: 2 | 3) {
  return createClient({ url, RESP: resp, socket: { reconnectStrategy: false } });
}
type NodeRedisClient = ReturnType<typeof nodeRedisClient>;

for (const resp of [2, 3] as const) {
  describe(`resp: node-redis RESP${resp}`, () => {
    const fixture = serverPerDescribe();

    async function withClient(use: (client: NodeRedisClient) => Promise<void>): Promise<void> {
      const client = nodeRedisClient(fixture().url, resp);
      client.on('error', () => undefined);
      await client.connect();
      try {
        await use(client);
      } finally {
        client.destroy();
      }
    }

    it(`resp: node-redis RESP${resp} set/get/del/mGet/mSet`, async () => {
      await withClient(async (client) => {
        assert.equal(await client.set('k1', 'v1'), 'OK');
        assert.equal(await client.get('k1'), 'v1');
        assert.equal(await client.mSet({ k2: 'v2', k3: 'v3' }), 'OK');
        assert.deepEqual(await client.mGet(['k1', 'k2', 'k3']), ['v1', 'v2', 'v3']);
        assert.equal(await client.del(['k1', 'k2', 'absent']), 2);
        assert.equal(await client.exists(['k1', 'k3']), 1);
      });
    });

    it(`resp: node-redis RESP${resp} null replies decode as null`, async () => {
      await withClient(async (client) => {
        assert.equal(await client.get('absent'), null);
        assert.deepEqual(await client.mGet(['absent', 'absent-too']), [null, null]);
        await client.set('present', 'v');
        assert.equal(await client.set('present', 'w', { condition: 'NX' }), null);
        assert.equal(await client.set('absent', 'w', { condition: 'XX' }), null);
        assert.equal(await client.sendCommand(['CLIENT', 'GETNAME']), null);
      });
    });

    it(`resp: node-redis RESP${resp} HELLO reports protocol ${resp}`, async () => {
      await withClient(async (client) => {
        // A RESP3 client sent HELLO 3 in its handshake: connecting at all means it was accepted.
        const hello = await client.sendCommand(['HELLO']);
        // RESP3 decodes the map to an object; RESP2 gets the same pairs as a flat array.
        const fields: unknown[] = resp === 3 ? Object.entries(hello as unknown as Record<string, unknown>).flat() : (hello as unknown as unknown[]);
        assert.equal(fields[fields.indexOf('proto') + 1], resp);
        assert.equal(fields[fields.indexOf('version') + 1], '7.2.0');
        assert.equal(await client.ping(), 'PONG');
      });
    });
  });
}

// ---------------------------------------------------------------------------------------------

describe('resp: redis-cli', () => {
  const fixture = serverPerDescribe();
  const skip = hasRedisCli ? false : redisCliMissing;

  it('resp: redis-cli ping, set, get', { skip }, async () => {
    const port = fixture().port;
    assert.equal(await runRedisCli(port, ['ping']), 'PONG\n');
    assert.equal(await runRedisCli(port, ['set', 'cli-key', 'cli value']), 'OK\n');
    assert.equal(await runRedisCli(port, ['get', 'cli-key']), 'cli value\n');
  });

  it('resp: redis-cli --no-raw formats replies as in a terminal', { skip }, async () => {
    const port = fixture().port;
    await runRedisCli(port, ['set', 'cli-formatted', 'v']);
    assert.equal(await runRedisCli(port, ['--no-raw', 'get', 'cli-formatted']), '"v"\n');
    assert.equal(await runRedisCli(port, ['--no-raw', 'get', 'cli-absent']), '(nil)\n');
    assert.equal(await runRedisCli(port, ['--no-raw', 'exists', 'cli-formatted']), '(integer) 1\n');
    assert.equal(await runRedisCli(port, ['--no-raw', 'mget', 'cli-formatted', 'cli-absent']), '1) "v"\n2) (nil)\n');
  });

  it('resp: redis-cli session of several commands piped on stdin', { skip }, async () => {
    const input = 'set session-key 42\nget session-key\nexists session-key\nget\ndel session-key\nget session-key\nping\n';
    const output = await runRedisCli(fixture().port, [], input);
    // redis-cli follows an error with an empty line, and prints nil as an empty line when raw.
    assert.equal(output, "OK\n42\n1\nERR wrong number of arguments for 'get' command\n\n1\n\nPONG\n");
  });

  it('resp: redis-cli info server', { skip }, async () => {
    const output = await runRedisCli(fixture().port, ['info', 'server']);
    assert.match(output, /^# Server\r?\n/);
    assert.match(output, /redis_version:7\.2\.0/);
    assert.match(output, new RegExp(`tcp_port:${fixture().port}`));
  });
});

// ---------------------------------------------------------------------------------------------

const quit = encodeCommand('QUIT');

/** A short script of commands that covers every reply type, ending with QUIT. */
const script = Buffer.concat([
  encodeCommand('PING'),
  encodeCommand('SET', 'script-key', 'a\r\nb'),
  encodeCommand('GET', 'script-key'),
  Buffer.from('ECHO inline\r\n'),
  encodeCommand('MGET', 'script-key', 'script-absent'),
  encodeCommand('EXISTS', 'script-key'),
  encodeCommand('DEL', 'script-key'),
  encodeCommand('GET', 'script-key'),
  encodeCommand('GET'),
  quit,
]);

const scriptReplies =
  '+PONG\r\n+OK\r\n$4\r\na\r\nb\r\n$6\r\ninline\r\n*2\r\n$4\r\na\r\nb\r\n$-1\r\n:1\r\n:1\r\n$-1\r\n' +
  "-ERR wrong number of arguments for 'get' command\r\n+OK\r\n";

describe('resp: raw sockets', () => {
  const fixture = serverPerDescribe();

  it('resp: malformed frame gets -ERR Protocol error and a close; the server serves on', async () => {
    const reply = await rawExchange(fixture().port, [Buffer.from('*1\r\n$abc\r\n')]);
    assert.equal(reply.toString('latin1'), '-ERR Protocol error: invalid bulk count\r\n');
    // Commands before the bad frame in the same chunk are answered first.
    const mixed = await rawExchange(fixture().port, [Buffer.concat([encodeCommand('PING'), Buffer.from('*1\r\n+PING\r\n'), encodeCommand('PING')])]);
    assert.equal(mixed.toString('latin1'), "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n");
    assert.equal((await rawExchange(fixture().port, [encodeCommand('PING'), quit])).toString('latin1'), '+PONG\r\n+OK\r\n');
  });

  it('resp: oversized bulk header gets an error and a close before any payload is sent', async () => {
    const client = await RawClient.connect(fixture().port);
    try {
      client.write(Buffer.from(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${1024 * 1024 * 1024}\r\n`));
      const reply = await client.waitForClose();
      assert.match(reply.toString('latin1'), /^-ERR Protocol error: invalid bulk length 1073741824 \(the limit is 1048576 bytes\)\r\n$/);
    } finally {
      client.destroy();
    }
    await waitUntil(() => fixture().server.connectionCount === 0, 'the connection was not released');
  });

  it('resp: a script split at every byte boundary gets the same reply bytes as sent whole', async () => {
    const whole = await rawExchange(fixture().port, [script]);
    assert.equal(whole.toString('latin1'), scriptReplies);
    for (let offset = 1; offset < script.length; offset++) {
      const split = await rawExchange(fixture().port, [script.subarray(0, offset), script.subarray(offset)]);
      assert.equal(split.toString('latin1'), scriptReplies, `split at ${offset}`);
    }
  });

  it('resp: a script sent 1 byte at a time gets the same reply bytes', async () => {
    const bytes = Array.from({ length: script.length }, (_, index) => script.subarray(index, index + 1));
    assert.equal((await rawExchange(fixture().port, bytes, 0)).toString('latin1'), scriptReplies);
  });

  it('resp: QUIT replies +OK and closes; later commands in the same chunk are not run', async () => {
    const reply = await rawExchange(fixture().port, [Buffer.concat([quit, encodeCommand('SET', 'after-quit', 'v')])]);
    assert.equal(reply.toString('latin1'), '+OK\r\n');
    assert.equal((await rawExchange(fixture().port, [encodeCommand('EXISTS', 'after-quit'), quit])).toString('latin1'), ':0\r\n+OK\r\n');
  });

  it('resp: inline PING works', async () => {
    assert.equal((await rawExchange(fixture().port, [Buffer.from('PING\r\nping hello\r\nQUIT\r\n')])).toString('latin1'), '+PONG\r\n$5\r\nhello\r\n+OK\r\n');
  });

  it('resp: 200 concurrent connections each doing 50 SET/GET', async () => {
    const clients = Array.from({ length: 200 }, () => ioredis(fixture().port));
    try {
      await Promise.all(clients.map((client) => client.connect()));
      await Promise.all(
        clients.map(async (client, clientIndex) => {
          for (let index = 0; index < 50; index++) {
            const key = `c${clientIndex}-${index % 10}`;
            const value = `${clientIndex}:${index}`;
            assert.equal(await client.set(key, value), 'OK');
            assert.equal(await client.get(key), value);
          }
        }),
      );
    } finally {
      for (const client of clients) client.disconnect();
    }
    const check = ioredis(fixture().port);
    await check.connect();
    try {
      assert.equal(await check.get('c199-9'), '199:49');
      assert.equal(await check.get('c0-0'), '0:40');
    } finally {
      check.disconnect();
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** Resolves with whether `promise` settled within `timeoutMs`. */
async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
  try {
    return await Promise.race([promise.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

/** Fills a server with connectionsMax 2, has a third connection refused, then frees a place. */
async function refuseOneConnection(fixture: RespFixture): Promise<void> {
  const first = await RawClient.connect(fixture.port);
  const second = await RawClient.connect(fixture.port);
  try {
    for (const client of [first, second]) {
      client.write('PING\r\n');
      await client.waitFor((received) => received.toString('latin1') === '+PONG\r\n');
    }
    const third = await rawExchange(fixture.port, [encodeCommand('PING')]);
    assert.equal(third.toString('latin1'), '-ERR max number of clients reached\r\n');
    first.destroy();
    await waitUntil(() => fixture.server.connectionCount === 1, 'the first connection was not released');
    assert.equal((await rawExchange(fixture.port, [encodeCommand('PING'), quit])).toString('latin1'), '+PONG\r\n+OK\r\n');
  } finally {
    first.destroy();
    second.destroy();
  }
}

/** A refused socket must neither linger (an fd leak that keeps stop() from resolving) nor crash the server on a reset. */

describe('resp: connection limit', () => {
  it('resp: the third connection with connectionsMax 2 gets -ERR max number of clients reached', async () => {
    const fixture = await startRespFixture({ connectionsMax: 2 });
    try {
      await refuseOneConnection(fixture);
    } finally {
      await settlesWithin(fixture.stop(100), 500);
    }
  });

  it('resp: stop() resolves after a connection was refused at the limit', async () => {
    const fixture = await startRespFixture({ connectionsMax: 2 });
    await refuseOneConnection(fixture);
    assert.ok(await settlesWithin(fixture.stop(100), 1000), 'stop(100) did not resolve within 1 s');
  });

  it(
    'resp: a refused client that resets its connection does not crash the server',
    async () => {
      const fixture = await startRespFixture({ connectionsMax: 1 });
      const holder = await RawClient.connect(fixture.port);
      try {
        // Reset at once on connect, so that the RST often beats the server's error reply.
        const resets = Array.from({ length: 20 }, async () => {
          const refused = connect({ host: '127.0.0.1', port: fixture.port });
          refused.on('error', () => undefined);
          await once(refused, 'connect');
          refused.write(encodeCommand('PING'));
          refused.resetAndDestroy();
          await once(refused, 'close');
        });
        await Promise.all(resets);
        await new Promise((resolve) => setTimeout(resolve, 100));
        holder.write('PING\r\n');
        await holder.waitFor((received) => received.toString('latin1') === '+PONG\r\n');
      } finally {
        holder.destroy();
        await settlesWithin(fixture.stop(100), 500);
      }
    },
  );
});

// ---------------------------------------------------------------------------------------------

describe('resp: an engine that answers later', () => {
  const fixture = serverPerDescribe({ engine: new DelayedEngine(1) });

  it('resp: replies keep command order while commands wait for the engine', async () => {
    const whole = await rawExchange(fixture().port, [script]);
    assert.equal(whole.toString('latin1'), scriptReplies);
    const bytes = Array.from({ length: script.length }, (_, index) => script.subarray(index, index + 1));
    assert.equal((await rawExchange(fixture().port, bytes, 0)).toString('latin1'), scriptReplies);
  });

  it('resp: QUIT behind a waiting command replies after it', async () => {
    const reply = await rawExchange(fixture().port, [Buffer.concat([encodeCommand('SET', 'later', 'v'), encodeCommand('GET', 'later'), quit, encodeCommand('PING')])]);
    assert.equal(reply.toString('latin1'), '+OK\r\n$1\r\nv\r\n+OK\r\n');
  });

  it(
    'resp: a protocol error behind a waiting command is answered after it',
    async () => {
      const reply = await rawExchange(fixture().port, [Buffer.concat([encodeCommand('GET', 'absent'), Buffer.from('*1\r\n$abc\r\n')])]);
      assert.equal(reply.toString('latin1'), '$-1\r\n-ERR Protocol error: invalid bulk count\r\n');
    },
  );
});

describe('resp: graceful stop', () => {
  it('resp: stop(1000) answers the commands already received, then closes and refuses connections', async () => {
    const fixture = await startRespFixture({ engine: new DelayedEngine(20) });
    const client = await RawClient.connect(fixture.port);
    try {
      const commandCount = 40;
      const commands: Buffer[] = [];
      for (let index = 0; index < commandCount / 2; index++) commands.push(encodeCommand('SET', `g${index}`, `v${index}`), encodeCommand('GET', `g${index}`));
      client.write(Buffer.concat(commands));
      await waitUntil(() => fixture.server.commandsProcessed === commandCount, 'the pipeline did not reach the server');
      assert.equal(client.received().length, 0, 'replies came before the engine answered: the test proves nothing');
      const stoppedAtMs = Date.now();
      const stopping = fixture.stop(1000);
      await assert.rejects(RawClient.connect(fixture.port), { code: 'ECONNREFUSED' });
      const received = await client.waitForClose(2000);
      let expected = '';
      for (let index = 0; index < commandCount / 2; index++) expected += `+OK\r\n$${`v${index}`.length}\r\nv${index}\r\n`;
      assert.equal(received.toString('latin1'), expected);
      await stopping;
      assert.ok(Date.now() - stoppedAtMs < 900, `stop took ${Date.now() - stoppedAtMs} ms: the connection was destroyed by the timeout, not closed`);
    } finally {
      client.destroy();
      await fixture.stop();
    }
  });

  it('resp: stop(timeoutMs) destroys a connection whose commands do not finish in time', async () => {
    const fixture = await startRespFixture({ engine: new DelayedEngine(500) });
    const client = await RawClient.connect(fixture.port);
    try {
      client.write(encodeCommand('GET', 'slow'));
      await waitUntil(() => fixture.server.commandsProcessed === 1, 'the command did not reach the server');
      const stoppedAtMs = Date.now();
      await fixture.stop(50);
      await client.closed;
      assert.ok(Date.now() - stoppedAtMs < 400, 'stop waited for the slow command');
      assert.equal(client.received().length, 0);
    } finally {
      client.destroy();
    }
  });
});

async function waitUntil(condition: () => boolean, message: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(message);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
