/**
 * How the PostgreSQL store maps driver and server errors to {@link PlmError}s,
 * and how it redacts a connection URL's password.
 *
 * @module
 */
import { PlmError } from "../../../shared/mod.ts";
import { APPEND_ONLY_CODE } from "./migrations.ts";

/** `location` with the password of its user info and any `password=` parameter as `***`. */
export function redactUrl(location: string): string {
  // The user info ends at the authority's LAST "@" (a password may hold "@" itself).
  return location
    .replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*:)[^/?#]*@/i, "$1***@")
    .replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/**
 * Every PostgreSQL URL in `text` with its password replaced by `***` (the
 * user info's and a `password` query parameter's), as {@link redactUrl} does.
 */
export function redactUrls(text: string): string {
  return text.replace(/postgres(?:ql)?:\/\/\S+/gi, (url) => redactUrl(url));
}

/** The SQLSTATE of a server error, or the system error code of a socket error. */
function codeOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Whether `error` says the server cannot be reached or refused this login. */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof AggregateError) return error.errors.some(isUnavailable);
  const code = codeOf(error);
  if (code !== undefined) {
    return /^E[A-Z]+$/.test(code) || // ECONNREFUSED, ENOTFOUND, ETIMEDOUT, ECONNRESET, ...
      code.startsWith("08") || // connection exception
      code.startsWith("28") || // invalid authorization
      code === "3D000" || // the database does not exist
      code === "57P01" || code === "57P02" || code === "57P03"; // shutdown, cannot connect now
  }
  const message = messageOf(error);
  return /Connection terminated|connection (?:is )?closed|Client has encountered a connection error/i
    .test(message);
}

/**
 * The {@link PlmError} an error of the driver or the server stands for; a
 * `PlmError` (from the caller's own code) is returned as is.
 */
export function toPlmError(error: unknown, location: string): unknown {
  if (error instanceof PlmError) return error;
  const message = messageOf(error);
  if (message.startsWith(`${APPEND_ONLY_CODE}:`)) {
    return new PlmError(
      "ERR_AUDIT_APPEND_ONLY",
      message.slice(APPEND_ONLY_CODE.length + 1).trim(),
      {
        cause: error,
      },
    );
  }
  const code = codeOf(error);
  if (code === "25006") {
    return new PlmError("ERR_STORE_READ_ONLY", `Cannot write to a read-only store: ${message}`, {
      cause: error,
    });
  }
  if (code === "40001" || code === "40P01" || code === "55P03") {
    return new PlmError("ERR_STORE_BUSY", `The store is busy: ${message}`, { cause: error });
  }
  if (isUnavailable(error)) {
    return new PlmError(
      "ERR_STORE_UNAVAILABLE",
      `Cannot reach the PostgreSQL store at ${redactUrl(location)}: ${message}`,
      { cause: error },
    );
  }
  return new PlmError("ERR_INTERNAL", `PostgreSQL store: ${message}`, { cause: error });
}
