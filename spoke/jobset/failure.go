package jobset

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// failureDecision is what the failure policy says to do about the current
// run's failed Jobs.
type failureDecision struct {
	action jobset.FailurePolicyAction
	// rule is the first rule that matched, nil when none did (or when the
	// JobSet has no failure policy).
	rule *jobset.FailurePolicyRule
	// job is the failed Job the decision is about: the earliest failed Job
	// the rule matched, or the earliest failed Job when no rule matched.
	job *batchv1.Job
}

// decideFailure evaluates the failure policy against failed (non-empty).
// Rules are tried in order and the first one matching any failed Job wins;
// with no match the action is RestartJobSet. Without a failure policy the
// JobSet fails at once (action FailJobSet, no rule).
func decideFailure(js *jobset.JobSet, failed []*batchv1.Job) failureDecision {
	fp := js.Spec.FailurePolicy
	if fp == nil {
		return failureDecision{action: jobset.FailJobSet, job: earliestFailed(failed, nil)}
	}
	for i := range fp.Rules {
		rule := &fp.Rules[i]
		if job := earliestFailed(failed, func(job *batchv1.Job) bool { return ruleMatches(rule, job) }); job != nil {
			return failureDecision{action: rule.Action, rule: rule, job: job}
		}
	}
	return failureDecision{action: jobset.RestartJobSet, job: earliestFailed(failed, nil)}
}

// ruleMatches: a rule matches a failed Job when each of its non-empty lists
// matches — the Job's Failed condition's reason, a regular expression
// matching the condition's message, and the Job's replicatedJob (a Job
// without the replicatedJob label matches no rule).
func ruleMatches(rule *jobset.FailurePolicyRule, job *batchv1.Job) bool {
	cond := jobFailure(job)
	if cond == nil {
		return false
	}
	if len(rule.OnJobFailureReasons) > 0 && !slices.Contains(rule.OnJobFailureReasons, cond.Reason) {
		return false
	}
	if len(rule.OnJobFailureMessagePatterns) > 0 && !slices.ContainsFunc(rule.OnJobFailureMessagePatterns, func(pattern string) bool {
		// Admission does not compile the patterns (upstream's does not
		// either); one that does not compile matches nothing.
		re, err := regexp.Compile(pattern)
		return err == nil && re.MatchString(cond.Message)
	}) {
		return false
	}
	rjobName := job.Labels[jobset.ReplicatedJobNameKey]
	if rjobName == "" {
		return false
	}
	return len(rule.TargetReplicatedJobs) == 0 || slices.Contains(rule.TargetReplicatedJobs, rjobName)
}

// earliestFailed returns the Job that failed first among those accepted by
// keep (all when keep is nil); ties go to the lower name so the choice is
// stable across reconciles.
func earliestFailed(jobs []*batchv1.Job, keep func(*batchv1.Job) bool) *batchv1.Job {
	var best *batchv1.Job
	var bestTime metav1.Time
	for _, job := range jobs {
		cond := jobFailure(job)
		if cond == nil || (keep != nil && !keep(job)) {
			continue
		}
		t := cond.LastTransitionTime
		if best == nil || t.Before(&bestTime) || (t.Equal(&bestTime) && job.Name < best.Name) {
			best, bestTime = job, t
		}
	}
	return best
}

// restartsCountedTowardsMax is the part of failurePolicy.maxRestarts already
// used: whole-JobSet restarts plus individual Job restarts that count.
func restartsCountedTowardsMax(st *jobset.JobSetStatus) int32 {
	used := st.RestartsCountTowardsMax
	for _, rs := range st.ReplicatedJobsStatus {
		for _, n := range rs.JobRestartsCountTowardsMax {
			used += n
		}
	}
	return used
}

// withFirstFailedJob is how upstream names the Job behind a failure.
func withFirstFailedJob(message, jobName string) string {
	return fmt.Sprintf("%s (first failed job: %s)", message, jobName)
}

// applyFailure carries out the decision on the planned status, as
// upstream's failure policy actions do. It returns an error, and changes
// nothing, for an action whose feature gate is off: upstream fails the
// reconcile then, and so retries until the gate is turned on.
func (p *Plan) applyFailure(js *jobset.JobSet, d failureDecision) error {
	st := &p.Status
	jobName := d.job.Name
	if js.Spec.FailurePolicy == nil {
		p.fail(ReasonFailedJobs, withFirstFailedJob(MessageFailedJobs, jobName))
		return nil
	}
	maxRestarts := js.Spec.FailurePolicy.MaxRestarts
	restartingReason := ReasonRestartingDefaultPolicy
	if d.rule != nil {
		restartingReason = fmt.Sprintf(reasonRestartingRuleFormat, d.rule.Name)
	}

	switch d.action {
	case jobset.FailJobSet:
		p.fail(ReasonFailJobSetAction, withFirstFailedJob(MessageFailJobSetAction, jobName))
	case jobset.RestartJobSet:
		// Individual restarts count towards the maximum only while they
		// exist, i.e. with the RestartJob gate on.
		used := st.RestartsCountTowardsMax
		if features.Enabled(features.RestartJob) {
			used = restartsCountedTowardsMax(st)
		}
		if used >= maxRestarts {
			p.fail(ReasonReachedMaxRestarts, withFirstFailedJob(MessageReachedMaxRestarts, jobName))
			return nil
		}
		p.restartAll(true, restartingReason, ReasonRestartJobSetAction, withFirstFailedJob(MessageRestartJobSetAction, jobName))
	case jobset.RestartJobSetAndIgnoreMaxRestarts:
		p.restartAll(false, restartingReason, ReasonRestartJobSetIgnoreMaxAction, withFirstFailedJob(MessageRestartJobSetIgnoreMaxAction, jobName))
	case jobset.RestartJob:
		if !features.Enabled(features.RestartJob) {
			return fmt.Errorf("RestartJob failure policy action cannot be used when the feature gate RestartJob is disabled")
		}
		if restartsCountedTowardsMax(st) >= maxRestarts {
			p.fail(ReasonReachedMaxRestarts, withFirstFailedJob(MessageReachedMaxRestarts, jobName))
			return nil
		}
		if err := p.restartOneJob(js, d.job, true); err != nil {
			return err
		}
		p.event(corev1.EventTypeWarning, ReasonRestartJobAction, withFirstFailedJob(MessageRestartJobAction, jobName))
	case jobset.RestartJobAndIgnoreMaxRestarts:
		if !features.Enabled(features.RestartJob) {
			return fmt.Errorf("RestartJobAndIgnoreMaxRestarts failure policy action cannot be used when the feature gate RestartJob is disabled")
		}
		if err := p.restartOneJob(js, d.job, false); err != nil {
			return err
		}
		p.event(corev1.EventTypeWarning, ReasonRestartJobIgnoreMaxAction, withFirstFailedJob(MessageRestartJobIgnoreMaxAction, jobName))
	default:
		return fmt.Errorf("failed to find a corresponding action for the FailurePolicyRuleAction %v", d.action)
	}
	return nil
}

// restartAll recreates every Job: the next reconcile finds them all from
// an earlier attempt and replaces them. The Restarting condition and the
// action's event both announce it.
func (p *Plan) restartAll(countsTowardsMax bool, conditionReason, eventReason, message string) {
	p.Status.Restarts++
	if countsTowardsMax {
		p.Status.RestartsCountTowardsMax++
	}
	p.setCondition(metav1.Condition{
		Type: string(jobset.JobSetRestarting), Status: metav1.ConditionTrue, Reason: conditionReason, Message: message,
	}, corev1.EventTypeWarning)
	p.event(corev1.EventTypeWarning, eventReason, message)
}

// restartOneJob bumps the individual restart counters of job's index so that
// the next reconcile replaces just that Job. The counter lists are created
// with one entry per replica when first needed; jobRestartsCountTowardsMax
// only by an action that counts.
func (p *Plan) restartOneJob(js *jobset.JobSet, job *batchv1.Job, countsTowardsMax bool) error {
	rjobName, ok := job.Labels[jobset.ReplicatedJobNameKey]
	if !ok {
		return fmt.Errorf("failed job %s missing %s label", job.Name, jobset.ReplicatedJobNameKey)
	}
	idxLabel, ok := job.Labels[jobset.JobIndexKey]
	if !ok {
		return fmt.Errorf("failed job %s missing %s label", job.Name, jobset.JobIndexKey)
	}
	idx, err := strconv.Atoi(idxLabel)
	if err != nil {
		return fmt.Errorf("failed job %s has invalid %s label: %s: %w", job.Name, jobset.JobIndexKey, idxLabel, err)
	}
	rs := findReplicatedJobStatus(p.Status.ReplicatedJobsStatus, rjobName)
	replicas := replicasOf(js, rjobName)
	if rs == nil || idx < 0 || idx >= int(replicas) {
		return fmt.Errorf("failed job %s has index %d out of bounds for replicated job %s (replicas: %d)", job.Name, idx, rjobName, replicas)
	}
	rs.JobRestarts = countersFor(rs.JobRestarts, replicas)
	rs.JobRestarts[idx]++
	if countsTowardsMax {
		rs.JobRestartsCountTowardsMax = countersFor(rs.JobRestartsCountTowardsMax, replicas)
		rs.JobRestartsCountTowardsMax[idx]++
	}
	return nil
}

// countersFor returns counters, or replicas zeros when there are none yet.
func countersFor(counters []int32, replicas int32) []int32 {
	if len(counters) == 0 {
		return make([]int32, replicas)
	}
	return slices.Clone(counters)
}

func replicasOf(js *jobset.JobSet, rjobName string) int32 {
	for _, r := range js.Spec.ReplicatedJobs {
		if r.Name == rjobName {
			return r.Replicas
		}
	}
	return 0
}
