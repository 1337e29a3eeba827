#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { RingkvError } from '../core/errors.js';
import { configOptions, environmentVariable, resolveConfig, type Config, type ConfigKey } from '../node/config.js';
import { createLogger, type Logger } from '../node/logger.js';
import { RingkvNode } from '../node/ringkv-node.js';
import { ringkvVersion } from '../node/version.js';
import { SystemClock } from '../world/clock.js';
import { NodeFileSystem } from '../world/file-system.js';
import { createRandom } from '../world/random.js';
import { registerAdminCommands } from './admin-commands.js';
import { registerDevCommand } from './dev-cluster.js';

/** Exit codes: 0 clean stop, 1 failure at run time, 2 bad usage or configuration. */
const exitConfigInvalid = 2;
const exitFailure = 1;

function fail(message: string, code: number): never {
  process.stderr.write(`ringkv: ${message}\n`);
  process.exit(code);
}

function readConfigFile(path: string | undefined): Record<string, unknown> | undefined {
  if (path === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    return fail(`invalid --config: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`, exitConfigInvalid);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
    return parsed as Record<string, unknown>;
  } catch (error) {
    return fail(`invalid --config: ${path} is not a JSON object (${(error as Error).message})`, exitConfigInvalid);
  }
}

function loadConfig(flags: Record<string, unknown>): Config {
  const given: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of Object.keys(configOptions) as ConfigKey[]) if (flags[key] !== undefined) given[key] = flags[key];
  const file = readConfigFile((flags['config'] as string | undefined) ?? process.env['RINGKV_CONFIG']);
  const config = resolveConfig({ flags: given, environment: process.env, file });
  if (!config.ok) return fail(config.message, exitConfigInvalid);
  return config.value;
}

async function start(flags: Record<string, unknown>): Promise<void> {
  const config = loadConfig(flags);
  const pretty = config.logFormat === 'pretty' || (config.logFormat === 'auto' && process.stdout.isTTY === true);
  const logger = createLogger({ level: config.logLevel, pretty });
  let node: RingkvNode | undefined;
  const shutdown = async (reason: string, code: number): Promise<void> => {
    logger.info({ reason }, 'shutting down: no new requests; finishing in-flight ones');
    await node?.stop();
    logger.info('stopped cleanly');
    process.exit(code);
  };
  installSignalHandlers(logger, (signal) => void shutdown(signal, 0));
  // A node that left the cluster has nothing more to serve once everything is handed off.
  const onLeft = (): void => void shutdown('left the cluster; every partition handed off', 0);
  const world = { clock: new SystemClock(), random: createRandom(), fs: new NodeFileSystem(), logger, onLeft };
  // Clock timers do not hold the process open; while services start (and retry) nothing else may.
  const holdOpen = setInterval(() => {}, 60_000);
  try {
    node = await RingkvNode.start(config, world, (reason) => {
      // During start-up, start() itself rejects with the cause and is reported below.
      if (node === undefined) return;
      logger.fatal({ service: reason.service, failures: reason.restarts, windowMs: reason.windowMs }, 'restart intensity exceeded; node shutting down');
      void shutdown(`service ${reason.service} kept failing`, exitFailure);
    });
  } catch (error) {
    if (error instanceof RingkvError) fail(error.message, exitConfigInvalid);
    // The supervisor retried the failing service; its last error is the cause.
    const cause = (error as { cause?: unknown }).cause ?? error;
    const { code, syscall, path } = cause as NodeJS.ErrnoException;
    if (syscall === 'listen' && (code === 'EADDRINUSE' || code === 'EACCES')) fail(`cannot listen: ${(cause as Error).message} (choose another port with --http-port / --resp-port)`, exitFailure);
    if (path !== undefined) fail(`cannot use the data directory: ${code ?? 'error'} on ${path} (${(cause as Error).message})`, exitFailure);
    logger.fatal({ err: error }, 'node failed to start');
    process.exit(exitFailure);
  } finally {
    clearInterval(holdOpen);
  }
}

function installSignalHandlers(logger: Logger, onSignal: (signal: string) => void): void {
  let received = false;
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (received) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(exitFailure);
      }
      received = true;
      onSignal(signal);
    });
  }
}

function buildProgram(): Command {
  const program = new Command('ringkv')
    .description('ringkv: a Dynamo-style distributed key-value store')
    .version(ringkvVersion)
    .exitOverride();
  const startCommand = program.command('start').description('run a node (embedded default: one node, ./data, HTTP 8098, RESP 6380)');
  startCommand.addOption(new Option('--config <file>', 'JSON config file (keys: option names in camelCase or kebab-case)'));
  for (const key of Object.keys(configOptions) as ConfigKey[]) {
    const spec = configOptions[key];
    const shown = spec.default === undefined ? '' : ` (default: ${String(spec.default)})`;
    // The environment is read by resolveConfig, so that an error names the variable, not the flag.
    startCommand.addOption(new Option(`--${spec.flag} <value>`, `${spec.doc}${shown} [env: ${environmentVariable(key)}]`));
  }
  startCommand.action((flags: Record<string, unknown>) => start(flags));
  registerDevCommand(program);
  registerAdminCommands(program);
  return program;
}

try {
  await buildProgram().parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? 0 : exitConfigInvalid);
  throw error;
}
