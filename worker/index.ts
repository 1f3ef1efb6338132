// The worker side of nbjob: the worker kernel, its job queue and the dispatch protocol clients speak.
export { WorkerKernel } from "./kernel";
export type { WorkerKernelOptions } from "./kernel";
export { JobRunner } from "./job-runner";
export type { JobListener } from "./job-runner";
export { WORKER_COMM_TARGET } from "../runtime/shared/protocol";
export type { JobBundle, JobFailure, JobId, WorkerEvent, WorkerIdentity, WorkerKernelInfo, WorkerRequest } from "../runtime/shared/protocol";
