import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The `ringkv` command run from source (tsx), as `npm start` runs the built one. */
export const cliEntry = join(import.meta.dirname, '../../src/cli/main.ts');

/**
 * A port free now on `host`. Probe on 0.0.0.0 for a node on its own loopback IP (127.0.0.11):
 * a port is free on every address then, whichever of 127.0.0.0/8 other sockets use.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

export function temporaryDirectory(): string {
  return mkdtempSync(join(tmpdir(), 'ringkv-test-'));
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `ringkv ARGS` to completion (for commands that exit by themselves). */
export function runCli(args: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cliEntry, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`ringkv ${args.join(' ')} did not exit within ${options.timeoutMs ?? 20_000} ms`));
    }, options.timeoutMs ?? 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface NodePorts {
  readonly httpPort: number;
  readonly respPort: number;
  readonly peerPort: number;
}

export interface RunningNode {
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** The address every listener binds to (`--host`); 127.0.0.1 unless the test chose one. */
  readonly host: string;
  readonly httpPort: number;
  readonly respPort: number;
  readonly peerPort: number;
  readonly baseUrl: string;
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[];
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

type StartOptions = {
  dataDir?: string;
  args?: readonly string[];
  env?: Record<string, string>;
  /** `--host`: e.g. a loopback address of its own, so that a firewall rule can tell the node's traffic apart. */
  host?: string;
  /** Listen on these ports (a restart on the ports it had) instead of freshly probed ones. */
  ports?: NodePorts;
};

/** Attempts to start on freshly probed ports: another socket may take a probed port first. */
const portAttemptsMax = 3;

/**
 * Starts `ringkv start` on free loopback ports and resolves once it logs that it is ready.
 * A port probed free can be taken (by an outgoing connection's ephemeral port) before the node
 * binds it: then it tries again on new ports.
 */
export async function startNode(options: StartOptions = {}): Promise<RunningNode> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNodeOnce(options);
    } catch (error) {
      if (options.ports !== undefined || attempt >= portAttemptsMax || !/EADDRINUSE/.test(String(error))) throw error;
    }
  }
}

async function startNodeOnce(options: StartOptions): Promise<RunningNode> {
  const dataDir = options.dataDir ?? temporaryDirectory();
  const host = options.host ?? '127.0.0.1';
  const probeHost = host === '127.0.0.1' ? host : '0.0.0.0';
  const { httpPort, respPort, peerPort } = options.ports ?? { httpPort: await freePort(probeHost), respPort: await freePort(probeHost), peerPort: await freePort(probeHost) };
  const hostArgs = options.host === undefined ? [] : ['--host', options.host];
  const child = spawn(process.execPath, [
    '--import', 'tsx', cliEntry, 'start', '--data-dir', dataDir, '--http-port', String(httpPort),
    '--resp-port', String(respPort), '--peer-port', String(peerPort), '--log-format', 'json', ...hostArgs, ...(options.args ?? []),
  ], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => reject(new Error(`node not ready in 20 s; stderr: ${stderr}`)), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop() ?? '';
      for (const line of lines) {
        if (line.trim() === '') continue;
        const entry = JSON.parse(line) as Record<string, unknown>;
        logs.push(entry);
        if (entry['msg'] === 'ringkv node ready') {
          clearTimeout(timer);
          resolve();
        }
      }
    });
    void exited.then((code) => reject(new Error(`node exited with ${code} before it was ready; stderr: ${stderr}`)));
  });
  return {
    child,
    dataDir,
    host,
    httpPort,
    respPort,
    peerPort,
    baseUrl: `http://${host}:${httpPort}`,
    logs,
    stop: (signal = 'SIGTERM') => {
      child.kill(signal);
      return exited;
    },
  };
}
