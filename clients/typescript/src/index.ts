// @sluice/client: the gRPC client and Worker of the Sluice job queue.
export { SluiceClient } from './client.js';
export type {
  CallOptions, QueryOptions, RetryInfo, SluiceClientOptions, TlsOptions,
} from './client.js';
export { JobHandle } from './job-handle.js';
export { LeaseStream } from './lease-stream.js';
export { Worker } from './worker.js';
export type {
  ErrorContext, StopResult, WorkerEvents, WorkerMetrics, WorkerOptions,
} from './worker.js';
export {
  CancelRequestedError, JobCancelled, JobFailure, RefreshTimeoutError, WorkerStoppedError,
} from './handler.js';
export type { JobContext, JobHandler, RefreshContext, RefreshHandler } from './handler.js';
export type { RefreshHandlers } from './refresh.js';
export {
  AlreadyExistsError, BusyError, CancelledError, ClosedError, CorruptionError,
  FailedPreconditionError, GrpcCode, InternalError, InvalidArgumentError, LeaseLostError,
  NotFoundError, PermissionDeniedError, SluiceError, SluiceTimeoutError, StorageError,
  TooLargeError, UnauthenticatedError, UnavailableError, UnimplementedError, errorClassFor,
  isTransient,
} from './errors.js';
export type { RetryOptions } from './retry.js';
export { jsonBytes, parseJson, resultBytes, toBuffer } from './payload.js';
export type { Bytes } from './payload.js';
export { uuidv7 } from './ids.js';
export type * from './types.js';
