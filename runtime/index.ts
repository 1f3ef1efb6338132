// The package's public entry (`import { display, SnippetCollector } from "nbjob"`); the names
// exported here are also the globals every notebook cell sees.
export { display } from "./display";
export type { Display, DisplayHandle } from "./display";
export { input } from "./input";
export type { InputOptions } from "./input";
export { sourceOfFunction } from "./notebook";
export { SnippetCollector } from "./snippets";
export type { Snippet, SnippetKind } from "./snippets";
export { ParamLogger } from "./params";
export type { JsonValue, ParamValues } from "./params";
export { DBWrapper } from "./db-wrapper";
export type { CreateJobOptions, CreateJobsOptions, FieldCondition, JobsFilter, JobSummary } from "./db-wrapper";
export type { SampleDistribution, SampleSettings, SampleSpec } from "./random-search";
export { Client, DirectView, LoadBalancedView } from "./client";
export type { ConnectOptions, View } from "./client";
export { Job, JobError, JobGroup, StoreUnreachableError } from "./job";
export type { JobGroupRow, WaitOptions } from "./job";
export { GroupProgress } from "./group-progress";
export type { CheckpointAccessors } from "./shared/jobtracker";
export { nbjob } from "./nbjob";
export type { Dashboard, DashboardOptions } from "./dashboard";
export { Analyzer } from "./analyzer";
export type { AnalysisFunctionValue, AnalysisRow, AnalysisRowOf, AnalyzerOptions, AnalyzerStats, PlotField, RowValue } from "./analyzer";
export type { PlotOptions } from "./analyzer-plot";
export type { MetricsPlot, MetricsPlotOptions } from "./metrics-plot";
export type { MetricSeries } from "../store/metrics";
export { jobtracker } from "./jobtracker";
