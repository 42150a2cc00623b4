// Errors: one class per gRPC status code, split where the `sluice-code` trailer splits a code
// (FAILED_PRECONDITION: lease_lost vs failed_precondition; UNAVAILABLE: closed vs transport;
// INTERNAL: io_error vs internal). Classify on `code` / `grpcCode` or on the class, never on the
// message (docs/errors.md). Class names match the in-process binding (`sluice-engine`).
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

/** gRPC status codes by name (the numeric values of google.rpc.Code). */
export const GrpcCode = GrpcStatus;

const grpcNames: Record<number, string> = Object.fromEntries(
  Object.entries(GrpcStatus)
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => [v as number, k.toLowerCase()]),
);

/** Options every SluiceError is built from. */
export interface SluiceErrorInit {
  /** The gRPC status code (GrpcCode.NOT_FOUND, ...). */
  grpcCode: number;
  /** The `sluice-code` trailer, or '' when the call failed before the server answered. */
  sluiceCode?: string;
  /** Trailing metadata of the failed call, when there was one. */
  metadata?: Metadata;
  /** How many times the call was tried (1 + retries). */
  attempts?: number;
  /** Whether sluiceCode came from the server (default: whenever one is given). */
  serverCode?: boolean;
  cause?: unknown;
}

/**
 * Base class of every error the client raises for a failed call.
 * - `code`: the stable lowercase name: the server's `sluice-code` ("not_found", "lease_lost", ...)
 *   or, when the server sent none (transport failures, client deadlines), the gRPC code's name
 *   ("unavailable", "deadline_exceeded", ...).
 * - `grpcCode`: the numeric gRPC status.
 * - `serverCode`: true when `code` came from the server's trailer.
 * - `attempts`: how many times the call was sent (retries included).
 */
export class SluiceError extends Error {
  readonly code: string;
  readonly grpcCode: number;
  readonly serverCode: boolean;
  readonly attempts: number;
  readonly metadata: Metadata | undefined;

  constructor(message: string, init: SluiceErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.grpcCode = init.grpcCode;
    this.serverCode = init.serverCode ?? Boolean(init.sluiceCode);
    this.code = init.sluiceCode || grpcNames[init.grpcCode] || 'unknown';
    this.attempts = init.attempts ?? 1;
    this.metadata = init.metadata;
  }
}

/**
 * CANCELLED: the call was cancelled before it finished: the caller aborted it (AbortSignal, a
 * closed client), or the server cancelled it (sluice-code `cancelled`, e.g. a query whose call
 * was cancelled; or no trailer when a draining server cut it off).
 */
export class CancelledError extends SluiceError {}
/** NOT_FOUND (not_found): no such job in this tenant, or no such floating limit. */
export class NotFoundError extends SluiceError {}
/** INVALID_ARGUMENT (invalid_argument): malformed input; the message names the field. */
export class InvalidArgumentError extends SluiceError {}
/** RESOURCE_EXHAUSTED: a field over its cap (too_large) or a request over the message cap. */
export class TooLargeError extends SluiceError {}
/** FAILED_PRECONDITION (lease_lost): the lease is no longer this worker's; stop, never report. */
export class LeaseLostError extends SluiceError {}
/** FAILED_PRECONDITION (failed_precondition): the job's state forbids the operation. */
export class FailedPreconditionError extends SluiceError {}
/** UNAVAILABLE without a trailer: the server could not be reached (transport). Retried. */
export class UnavailableError extends SluiceError {}
/** UNAVAILABLE (closed): the server is closing or draining. Retried like UnavailableError. */
export class ClosedError extends UnavailableError {}
/** INTERNAL (io_error): the server's storage failed; it stops and restarts. */
export class StorageError extends SluiceError {}
/** INTERNAL / UNKNOWN without a storage code: a bug, or a transport failure inside gRPC. */
export class InternalError extends SluiceError {}
/** DATA_LOSS (corruption): a stored record could not be decoded. */
export class CorruptionError extends SluiceError {}
/** DEADLINE_EXCEEDED: the call's deadline passed (client side) or a bounded wait timed out. */
export class SluiceTimeoutError extends SluiceError {}
/** ALREADY_EXISTS (already_exists): reserved by the server. */
export class AlreadyExistsError extends SluiceError {}
/** ABORTED (busy): a conflicting write; retry the call as is. */
export class BusyError extends SluiceError {}
/** UNAUTHENTICATED: no token, or an unknown one. */
export class UnauthenticatedError extends SluiceError {}
/** PERMISSION_DENIED: a tenant-bound token named another tenant. */
export class PermissionDeniedError extends SluiceError {}
/** UNIMPLEMENTED: the server does not know this RPC (an older sluiced). */
export class UnimplementedError extends SluiceError {}

type ErrorClass = new (message: string, init: SluiceErrorInit) => SluiceError;

const byGrpcCode: Record<number, ErrorClass> = {
  [GrpcStatus.CANCELLED]: CancelledError,
  [GrpcStatus.UNKNOWN]: InternalError,
  [GrpcStatus.INVALID_ARGUMENT]: InvalidArgumentError,
  [GrpcStatus.DEADLINE_EXCEEDED]: SluiceTimeoutError,
  [GrpcStatus.NOT_FOUND]: NotFoundError,
  [GrpcStatus.ALREADY_EXISTS]: AlreadyExistsError,
  [GrpcStatus.PERMISSION_DENIED]: PermissionDeniedError,
  [GrpcStatus.RESOURCE_EXHAUSTED]: TooLargeError,
  [GrpcStatus.FAILED_PRECONDITION]: FailedPreconditionError,
  [GrpcStatus.ABORTED]: BusyError,
  [GrpcStatus.OUT_OF_RANGE]: InvalidArgumentError,
  [GrpcStatus.UNIMPLEMENTED]: UnimplementedError,
  [GrpcStatus.INTERNAL]: InternalError,
  [GrpcStatus.UNAVAILABLE]: UnavailableError,
  [GrpcStatus.DATA_LOSS]: CorruptionError,
  [GrpcStatus.UNAUTHENTICATED]: UnauthenticatedError,
};

// Where the trailer refines a gRPC code.
const bySluiceCode: Record<string, ErrorClass> = {
  lease_lost: LeaseLostError,
  failed_precondition: FailedPreconditionError,
  closed: ClosedError,
  io_error: StorageError,
  cancelled: CancelledError,
};

/** The class for a (gRPC code, sluice-code) pair; exported for tests and ReportOutcomes. */
export function errorClassFor(grpcCode: number, sluiceCode: string): ErrorClass {
  const refined = bySluiceCode[sluiceCode];
  if (refined !== undefined) return refined;
  return byGrpcCode[grpcCode] ?? SluiceError;
}

/** Builds the error for a (gRPC code, sluice-code, message) triple. */
export function makeError(grpcCode: number, sluiceCode: string, message: string,
  extra: Omit<SluiceErrorInit, 'grpcCode' | 'sluiceCode'> = {}): SluiceError {
  const cls = errorClassFor(grpcCode, sluiceCode);
  return new cls(message, { ...extra, grpcCode, sluiceCode });
}

/** Converts a grpc-js ServiceError into its SluiceError. */
export function fromServiceError(e: ServiceError, attempts: number): SluiceError {
  const trailer = e.metadata?.get('sluice-code')?.[0];
  const sluiceCode = typeof trailer === 'string' ? trailer : '';
  return makeError(e.code, sluiceCode, e.details || e.message, {
    metadata: e.metadata, attempts, cause: e,
  });
}

/**
 * Whether a failed attempt may be retried by an idempotent call: UNAVAILABLE, DEADLINE_EXCEEDED,
 * and INTERNAL/UNKNOWN *without* a `sluice-code` trailer. The server tags every error of its own
 * with the trailer; an untagged INTERNAL is grpc-js reporting a broken HTTP/2 stream (a reset or
 * truncated connection), i.e. a transport failure like UNAVAILABLE (LESSONS.md: transport resets
 * surface as INTERNAL). Classified on codes and the trailer's presence, never on the message.
 */
export function isTransient(e: unknown): boolean {
  if (!(e instanceof SluiceError)) return false;
  switch (e.grpcCode) {
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.DEADLINE_EXCEEDED:
      return true;
    case GrpcStatus.INTERNAL:
    case GrpcStatus.UNKNOWN:
      return !e.serverCode;
    default:
      return false;
  }
}
