import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Human-readable lines (pino-pretty) instead of JSON; the default when stdout is a terminal. */
  readonly pretty: boolean;
}

/** Structured JSON logs on stdout; human-readable when `pretty` (a terminal). */
export function createLogger(options: LoggerOptions): Logger {
  if (!options.pretty) return pino({ level: options.level, base: null });
  // In-process and synchronous, so the last lines before an exit are never lost.
  const stream = pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', sync: true });
  return pino({ level: options.level, base: null }, stream);
}

/** A logger that drops everything, for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
