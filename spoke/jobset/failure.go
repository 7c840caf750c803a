package jobset

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// failureDecision is what the failure policy says to do about the current
// run's failed Jobs.
type failureDecision struct {
	action v1alpha2.FailurePolicyAction
	// rule is the first rule that matched, nil when none did (or when the
	// JobSet has no failure policy).
	rule *v1alpha2.FailurePolicyRule
	// job is the failed Job the decision is about: the earliest failed Job
	// the rule matched.
	job *batchv1.Job
}

// decideFailure evaluates the failure policy against failed (non-empty).
// Rules are tried in order and the first one matching any failed Job wins;
// with no match the action is RestartJobSet. Without a failure policy the
// JobSet fails at once (action FailJobSet, no rule).
func decideFailure(js *v1alpha2.JobSet, failed []*batchv1.Job) failureDecision {
	fp := js.Spec.FailurePolicy
	if fp == nil {
		return failureDecision{action: v1alpha2.FailJobSet, job: earliestFailed(failed, nil)}
	}
	for i := range fp.Rules {
		rule := &fp.Rules[i]
		if job := earliestFailed(failed, func(job *batchv1.Job) bool { return ruleMatches(rule, job) }); job != nil {
			return failureDecision{action: rule.Action, rule: rule, job: job}
		}
	}
	return failureDecision{action: v1alpha2.RestartJobSet, job: earliestFailed(failed, nil)}
}

// ruleMatches: a rule matches a failed Job when each of its non-empty lists
// matches — the Job's replicatedJob, its Failed condition's reason, and a
// regular expression matching the condition's message.
func ruleMatches(rule *v1alpha2.FailurePolicyRule, job *batchv1.Job) bool {
	cond := jobFailure(job)
	if cond == nil {
		return false
	}
	if len(rule.TargetReplicatedJobs) > 0 && !slices.Contains(rule.TargetReplicatedJobs, job.Labels[v1alpha2.ReplicatedJobNameKey]) {
		return false
	}
	if len(rule.OnJobFailureReasons) > 0 && !slices.Contains(rule.OnJobFailureReasons, cond.Reason) {
		return false
	}
	if len(rule.OnJobFailureMessagePatterns) > 0 && !slices.ContainsFunc(rule.OnJobFailureMessagePatterns, func(pattern string) bool {
		re, err := regexp.Compile(pattern)
		// An invalid pattern (admission should have caught it) matches
		// nothing rather than everything.
		return err == nil && re.MatchString(cond.Message)
	}) {
		return false
	}
	return true
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
func restartsCountedTowardsMax(st *v1alpha2.JobSetStatus) int32 {
	used := st.RestartsCountTowardsMax
	for _, rs := range st.ReplicatedJobsStatus {
		for _, n := range rs.JobRestartsCountTowardsMax {
			used += n
		}
	}
	return used
}

// applyFailure carries out the decision on the planned status.
func (p *plan) applyFailure(js *v1alpha2.JobSet, d failureDecision) {
	st := &p.status
	jobName := d.job.Name
	if js.Spec.FailurePolicy == nil {
		p.fail(ReasonFailedJobs, fmt.Sprintf("JobSet failed because its child Job %s failed", jobName))
		return
	}
	countsTowardsMax := d.action == v1alpha2.RestartJobSet || d.action == v1alpha2.RestartJob
	if countsTowardsMax {
		if used, max := restartsCountedTowardsMax(st), js.Spec.FailurePolicy.MaxRestarts; used >= max {
			p.fail(ReasonReachedMax, fmt.Sprintf("JobSet failed: child Job %s failed and all %d restarts allowed by failurePolicy.maxRestarts are used", jobName, max))
			return
		}
	}
	restartingReason := ReasonRestartingDefaultPolicy
	ruleText := "no failure policy rule matched"
	if d.rule != nil {
		restartingReason = reasonRestartingRulePrefix + d.rule.Name
		ruleText = fmt.Sprintf("failure policy rule %q matched", d.rule.Name)
	}

	switch d.action {
	case v1alpha2.FailJobSet:
		p.fail(ReasonFailJobSetAction, fmt.Sprintf("JobSet failed: child Job %s failed and %s with action FailJobSet", jobName, ruleText))
		return
	case v1alpha2.RestartJob, v1alpha2.RestartJobAndIgnoreMaxRestarts:
		if p.restartOneJob(js, d.job, countsTowardsMax) {
			reason := ReasonRestartJobAction
			if !countsTowardsMax {
				reason = ReasonRestartJobIgnoreMaxAction
			}
			msg := fmt.Sprintf("recreating child Job %s after it failed (%s, action %s)", jobName, ruleText, d.action)
			p.event(corev1.EventTypeWarning, reason, msg)
			p.setRestarting(restartingReason, msg)
			return
		}
		// The Job cannot be restarted on its own (its replicatedJob is too
		// large for per-Job counters): restart the whole JobSet instead.
	}

	reason := ReasonRestartJobSetAction
	if d.action == v1alpha2.RestartJobSetAndIgnoreMaxRestarts || d.action == v1alpha2.RestartJobAndIgnoreMaxRestarts {
		reason = ReasonRestartJobSetIgnoreMaxAction
	}
	st.Restarts++
	if countsTowardsMax {
		st.RestartsCountTowardsMax++
	}
	msg := fmt.Sprintf("restarting the JobSet (attempt %d) after child Job %s failed (%s, action %s)", st.Restarts, jobName, ruleText, d.action)
	p.event(corev1.EventTypeWarning, reason, msg)
	p.setRestarting(restartingReason, msg)
}

// restartOneJob bumps the individual restart counters of job's index so that
// the next reconcile replaces just that Job. It reports false when the
// replicatedJob has too many replicas for per-index counters.
func (p *plan) restartOneJob(js *v1alpha2.JobSet, job *batchv1.Job, countsTowardsMax bool) bool {
	rjobName := job.Labels[v1alpha2.ReplicatedJobNameKey]
	idx, err := strconv.Atoi(job.Labels[v1alpha2.JobIndexKey])
	rjobIdx := slices.IndexFunc(js.Spec.ReplicatedJobs, func(r v1alpha2.ReplicatedJob) bool { return r.Name == rjobName })
	rs := findReplicatedJobStatus(p.status.ReplicatedJobsStatus, rjobName)
	if err != nil || rjobIdx < 0 || rs == nil {
		return false
	}
	replicas := int(js.Spec.ReplicatedJobs[rjobIdx].Replicas)
	if replicas > maxIndividualRestartReplicas || idx >= replicas {
		return false
	}
	rs.JobRestarts = padTo(rs.JobRestarts, replicas)
	rs.JobRestartsCountTowardsMax = padTo(rs.JobRestartsCountTowardsMax, replicas)
	rs.JobRestarts[idx]++
	if countsTowardsMax {
		rs.JobRestartsCountTowardsMax[idx]++
	}
	return true
}

func padTo(counters []int32, n int) []int32 {
	if len(counters) >= n {
		return counters
	}
	return append(counters, make([]int32, n-len(counters))...)
}
