package jobset

// Keys and reasons that upstream JobSet v0.12 uses but that are not part of
// the API package. Their values are upstream's so that tooling written for
// upstream JobSet (Kueue, dashboards, alerts) keeps working.
const (
	// JobRestartAttemptKey labels a Job with the number of individual
	// (RestartJob) restarts of its index. A Job whose value is below
	// status.replicatedJobsStatus[].jobRestarts[index] is outdated.
	JobRestartAttemptKey = "jobset.sigs.k8s.io/job-restart-attempt"

	// ConditionRestarting is True while the JobSet is recreating Jobs after a
	// failure.
	ConditionRestarting = "RestartingJobSet"
)

// Condition and event reasons.
const (
	ReasonAllJobsCompleted = "AllJobsCompleted"
	ReasonFailedJobs       = "FailedJobs"
	ReasonReachedMax       = "ReachedMaxRestarts"
	ReasonSuspended        = "SuspendedJobs"
	ReasonResumed          = "ResumeJobs"

	ReasonInOrderInProgress = "InOrderStartupPolicyInProgress"
	ReasonInOrderCompleted  = "InOrderStartupPolicyCompleted"

	ReasonFailJobSetAction              = "FailJobSetFailurePolicyAction"
	ReasonRestartJobSetAction           = "RestartJobSetFailurePolicyAction"
	ReasonRestartJobSetIgnoreMaxAction  = "RestartJobSetAndIgnoreMaxRestartsFailurePolicyAction"
	ReasonRestartJobAction              = "RestartJobFailurePolicyAction"
	ReasonRestartJobIgnoreMaxAction     = "RestartJobAndIgnoreMaxRestartsFailurePolicyAction"
	ReasonRestartingDefaultPolicy       = "DefaultFailurePolicy"
	reasonRestartingRulePrefix          = "FailurePolicy_"
	ReasonRestartingJobsReady           = "JobsReady"
	ReasonRestartingJobSetFailed        = "JobSetFailed"
	ReasonRestartingJobSetCompleted     = "JobSetCompleted"
	ReasonRestartingJobSetSuspended     = "JobSetSuspended"
	ReasonJobCreationFailed             = "JobCreationFailed"
	ReasonHeadlessServiceCreationFailed = "HeadlessServiceCreationFailed"
)

const (
	// maxIndividualRestartReplicas is the largest replicatedJob for which
	// per-Job restart counters fit in the status (the API caps the lists).
	maxIndividualRestartReplicas = 1024
)
