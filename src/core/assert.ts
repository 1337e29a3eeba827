import { recordAssertionFailure } from './simulation-hooks.js';

/**
 * Assertions stay on in production (TigerBeetle style): they guard arguments, results and
 * invariants, and a failed one is a bug, never an expected condition. Expected failures are
 * typed results with codes from errors.ts.
 */
export class AssertionError extends Error {
  override readonly name = 'AssertionError';

  constructor(message: string) {
    super(message);
    recordAssertionFailure(message);
  }
}

/**
 * Throws an AssertionError when `condition` is false. A message that interpolates values is
 * passed as a function: a template literal would be formatted on every call, failed or not,
 * and formatting a number costs tens of nanoseconds (eslint.config.js forbids it).
 */
export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new AssertionError(typeof message === 'string' ? message : message());
}

/** Marks a branch that the type system proves unreachable. */
export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${String(value)}`);
}
