package jobset

// ReportingController is the name the reconciler's events are reported
// under; it is upstream's, so tooling filtering on it keeps working. Create
// the recorder with mgr.GetEventRecorder(ReportingController).
const ReportingController = "jobset"

// Keys that upstream JobSet v0.12 uses but that are not part of the API
// package. Their values are upstream's so that tooling written for upstream
// JobSet (Kueue, dashboards, alerts) keeps working.
const (
	// JobRestartAttemptKey labels a Job with the number of individual
	// (RestartJob) restarts of its index, with the RestartJob gate on. A Job
	// whose value is below status.replicatedJobsStatus[].jobRestarts[index]
	// is outdated.
	JobRestartAttemptKey = "jobset.sigs.k8s.io/job-restart-attempt"

	// podsByJobSetIndex indexes Pods by "<namespace>/<jobset>" for in-place
	// restart (only registered with the InPlaceRestart gate on).
	podsByJobSetIndex = "jobset.x-k8s.io/pods-by-jobset"
)

// Condition and event reasons and messages: upstream's, word for word.
const (
	ReasonAllJobsCompleted  = "AllJobsCompleted"
	MessageAllJobsCompleted = "jobset completed successfully"

	ReasonFailedJobs  = "FailedJobs"
	MessageFailedJobs = "jobset failed due to one or more job failures"

	ReasonReachedMaxRestarts  = "ReachedMaxRestarts"
	MessageReachedMaxRestarts = "jobset failed due to reaching max number of restarts"

	ReasonSuspended  = "SuspendedJobs"
	MessageSuspended = "jobset is suspended"
	ReasonResumed    = "ResumeJobs"
	MessageResumed   = "jobset is resumed"

	ReasonInOrderInProgress  = "InOrderStartupPolicyInProgress"
	MessageInOrderInProgress = "in order startup policy is in progress"
	ReasonInOrderCompleted   = "InOrderStartupPolicyCompleted"
	MessageInOrderCompleted  = "in order startup policy has completed"

	ReasonFailJobSetAction              = "FailJobSetFailurePolicyAction"
	MessageFailJobSetAction             = "applying FailJobSet failure policy action"
	ReasonRestartJobSetAction           = "RestartJobSetFailurePolicyAction"
	MessageRestartJobSetAction          = "applying RestartJobSet failure policy action"
	ReasonRestartJobSetIgnoreMaxAction  = "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction"
	MessageRestartJobSetIgnoreMaxAction = "applying RestartJobSetAndIgnoreMaxRestarts failure policy action"
	ReasonRestartJobAction              = "RestartJobFailurePolicyAction"
	MessageRestartJobAction             = "applying RestartJob failure policy action"
	ReasonRestartJobIgnoreMaxAction     = "RestartJobAndIgnoreMaxRestartsFailurePolicyAction"
	MessageRestartJobIgnoreMaxAction    = "applying RestartJobAndIgnoreMaxRestarts failure policy action"

	// Reasons of the RestartingJobSet condition.
	ReasonRestartingDefaultPolicy   = "DefaultFailurePolicy"
	reasonRestartingRuleFormat      = "FailurePolicy_%s"
	ReasonRestartingJobsReady       = "JobsReady"
	MessageRestartingJobsReady      = "all jobs are ready"
	ReasonRestartingJobSetFailed    = "JobSetFailed"
	MessageRestartingJobSetFailed   = "jobset failed"
	ReasonRestartingJobSetCompleted = "JobSetCompleted"
	ReasonRestartingJobSetSuspended = "JobSetSuspended"

	// Warnings emitted when creating a child object fails; the note is the
	// error.
	ReasonJobCreationFailed             = "JobCreationFailed"
	ReasonHeadlessServiceCreationFailed = "HeadlessServiceCreationFailed"
	ReasonPVCCreationFailed             = "PVCCreationFailed"
)

// eventAction is the events.k8s.io "action" of every event the reconciler
// emits, upstream's.
const eventAction = "Reconciling"
