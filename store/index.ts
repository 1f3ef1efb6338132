// The store's public face: open a store, then call one function per write or query with it.
// Every function takes a `Db` (the store, or a transaction from `db.transaction`), so callers
// can group writes atomically. See types.ts for the row types and a glossary.
export { Store, openStore } from "./db";
export type { Db, Queryable, StoreOptions, StoreLocation } from "./db";
export { StoreError, PgCode, pgCode, isRetryable, isStoreUnreachable, explainDatabaseError } from "./errors";
export { nbjobHome, databaseUrlFromEnv, redactUrl, checkDatabaseUrl } from "./config";
export { ensureSchema, schemaStatus, knownMigrations, MIGRATIONS_DIR } from "./migrate";
export type { Migration, SchemaStatus } from "./migrate";
export { sha256, canonicalJson } from "./hash";
export { clusterKey, clusterKeyPath, signBundle, verifyBundleSignature, CLUSTER_KEY_ENV, GATEWAY_CLUSTER_KEY_ENV } from "./signing";
export type { ClusterKey, SignedBundle } from "./signing";
export { snippetHash, putSnippets, putBundle, getSnippet, getBundle, getFiles, signStoredBundle, putEnvironment, linkJobEnvironments, getEnvironment } from "./code";
export type { SnippetInput, BundleInput, BundleFileRow, BundleWithSnippets, EnvironmentInput } from "./code";
export {
  createJob, createJobGroup, transitionJob, releaseCancelledClaim, getJob, requireJob, listJobs, listJobsByIds, getJobsByIds, unfinishedAmong, listGroupJobs, isJobStatus,
  LEGAL_TRANSITIONS, IllegalTransitionError, UnknownJobError, ClaimLostError,
} from "./jobs";
export type { CreateJobInput, TransitionDetails, JobErrorInput, ListJobsFilter, DbJobListed } from "./jobs";
export { queryJobs, countJobs, compileJobQuery, indexedFields, fieldIndexName, fieldRef, mapConditions, resultConditions, fieldConditions, JobQueryError, OPERATORS, FIELDS_HELP } from "./job-query";
export { createFieldIndex, dropFieldIndex, listFieldIndexes, indexableField, INDEXABLE_FIELDS_HELP } from "./field-index";
export type { FieldIndex } from "./field-index";
export type { OrderPart, JobQuery, JobCondition, Condition, FieldRef, Operator, ScalarValue, ValueCondition, DbJobQueried } from "./job-query";
export { parseWhere, WhereSyntaxError } from "./where";
export { getJobGroup, groupCounts, cancelGroupJobs } from "./job-groups";
export type { GroupCounts } from "./job-groups";
export { appendLogs, readLogs } from "./logs";
export { checkStorableText, checkStorableJson, visibleText, isUnstorableText, encodeLogLine, decodeLogLine } from "./text";
export type { LogLine } from "./logs";
export { CHUNK_SIZE, putBlob, putSmallBlobs, readBlob, readBlobChunks, getBlobInfo } from "./blobs";
export type { PutBlobResult } from "./blobs";
export { putMetrics, readMetrics, lastMetricsOf, missingMetricText, formatLastMetrics, formatMetricNumber, metricNameProblem, metricJson, METRIC_NAME_MAX } from "./metrics";
export type { MetricPoint, MetricSeries } from "./metrics";
export { putCheckpoint, listCheckpoints, readCheckpoint, readCheckpoints, lastCheckpointIndex } from "./checkpoints";
export type { CheckpointSummary, PutCheckpointResult } from "./checkpoints";
export { createAnalysis, putAnalysisRow, putAnalysisRows, getAnalysisRows, analysisBacklog, deleteAnalysis, getAnalysis, storedAnalysisCells, withAnalysisLock, withAnalysisLocks } from "./analyses";
export type { AnalysisFunctionInput, AnalysisRowInput } from "./analyses";
export { deleteJobs, collectGarbage, collectAndVacuum, vacuumStore, storeSize, jobSizes, setJobTags, formatBytes, parseDuration, KEEP_TAG, ActiveJobError, KeptJobError } from "./cleanup";
export type { DeleteJobsFilter, DeletionPlan, GcOptions, GcReport, GcResult, JobSize } from "./cleanup";
export { getWorker, heartbeatWorker, listWorkers, removeWorker } from "./workers";
export type { WorkerHeartbeat } from "./workers";
export { announceClaims, claimNextJob, notifyJobQueued, notifyJobCancelled, cancelJob, untilCancelledRunsOver, CANCEL_SETTLE_MS, markLostJobs, JOB_QUEUED_CHANNEL, JOB_CANCELLED_CHANNEL, WORKER_HEARTBEAT_MS, WORKER_STALE_MS } from "./queue";
export type { ClaimInput, LostJobsInput } from "./queue";
export { bundleDeclarations, compareDeclarations, jobLog, declarationHistory, jobCodeText, diffJobs, declarationInJob } from "./versions";
export type { DeclarationChange, JobLogEntry, DeclarationVersion } from "./versions";
export {
  ensureEmbeddedServer, embeddedServerStatus, describeDiskReserve, stopEmbeddedServer, destroyEmbeddedServer, embeddedServerFiles, embeddedLayout, postgresBinDir, dataPlace,
  describeDataPlace, outsideClusterDir,
} from "./embedded";
export type { EmbeddedLayout, EmbeddedStatus } from "./embedded";
export * from "./types";
export { browseJobs, readLogTail, jobsDerivedFrom, setJobNote, paramPreviews, paramValueText, storedParamsBytes, analysisPoints, jobForPage, jobOutcomeText, bundleCode, PREVIEW_CHARS, BROWSE_SORTS, PARAM_OPERATORS } from "./job-browse";
export type { JobForPage, BrowseJobsFilter, BrowseSort, JobPreview, ParamCondition, ParamOperator } from "./job-browse";
