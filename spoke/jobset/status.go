package jobset

import (
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// replicatedJobStatuses counts the current run's Jobs per replicatedJob.
//
// The shape is upstream's, because clients diff it: one entry per
// replicatedJob, in descending order of name (the order upstream's
// controller stores), and the per-index restart counters carried over only
// while the RestartJob gate is on (upstream drops them otherwise); they are
// history, not observation.
func replicatedJobStatuses(js *jobset.JobSet, kids children) []jobset.ReplicatedJobStatus {
	out := make([]jobset.ReplicatedJobStatus, len(js.Spec.ReplicatedJobs))
	index := make(map[string]*jobset.ReplicatedJobStatus, len(out))
	for i, rjob := range js.Spec.ReplicatedJobs {
		out[i].Name = rjob.Name
		if features.Enabled(features.RestartJob) {
			if prev := findReplicatedJobStatus(js.Status.ReplicatedJobsStatus, rjob.Name); prev != nil {
				out[i].JobRestarts = slices.Clone(prev.JobRestarts)
				out[i].JobRestartsCountTowardsMax = slices.Clone(prev.JobRestartsCountTowardsMax)
			}
		}
		index[rjob.Name] = &out[i]
	}
	count := func(jobs []*batchv1.Job, add func(*jobset.ReplicatedJobStatus, *batchv1.Job)) {
		for _, job := range jobs {
			if s := index[job.Labels[jobset.ReplicatedJobNameKey]]; s != nil {
				add(s, job)
			}
		}
	}
	count(kids.active, func(s *jobset.ReplicatedJobStatus, job *batchv1.Job) {
		if jobReady(job) {
			s.Ready++
		}
		// Upstream counts a Job being deleted too, as long as it has pods.
		if job.Status.Active > 0 {
			s.Active++
		}
		if jobSuspended(job) {
			s.Suspended++
		}
	})
	count(kids.succeeded, func(s *jobset.ReplicatedJobStatus, _ *batchv1.Job) { s.Succeeded++ })
	count(kids.failed, func(s *jobset.ReplicatedJobStatus, _ *batchv1.Job) { s.Failed++ })
	slices.SortFunc(out, func(a, b jobset.ReplicatedJobStatus) int { return strings.Compare(b.Name, a.Name) })
	return out
}

// jobReady: every pod the Job runs at once is ready or already succeeded.
func jobReady(job *batchv1.Job) bool {
	want := ptr.Deref(job.Spec.Parallelism, 1)
	if c := job.Spec.Completions; c != nil && *c < want {
		want = *c
	}
	return job.Status.Succeeded+ptr.Deref(job.Status.Ready, 0) >= want
}

func findReplicatedJobStatus(statuses []jobset.ReplicatedJobStatus, name string) *jobset.ReplicatedJobStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

// setCondition applies c the way upstream's controller does and reports
// whether the status changed, which is when upstream emits an event for it:
//   - a condition of that type whose status differs is replaced (new
//     lastTransitionTime);
//   - one with the same status but another reason or message is updated,
//     keeping its lastTransitionTime;
//   - a missing condition is added only when it is True, so a JobSet that
//     was never suspended shows no Suspended condition;
//   - a True startup-policy condition turns the other one False (status
//     only, as upstream does).
func setCondition(st *jobset.JobSetStatus, c metav1.Condition, now metav1.Time) bool {
	c.LastTransitionTime = now
	changed, found := false, false
	for i := range st.Conditions {
		cur := &st.Conditions[i]
		switch {
		case cur.Type == c.Type:
			found = true
			if cur.Status != c.Status {
				*cur = c
				changed = true
			} else if cur.Reason != c.Reason || cur.Message != c.Message {
				c.LastTransitionTime = cur.LastTransitionTime
				*cur = c
				changed = true
			}
		case exclusive(cur.Type, c.Type) && cur.Status == metav1.ConditionTrue && c.Status == metav1.ConditionTrue:
			cur.Status = metav1.ConditionFalse
			changed = true
		}
	}
	if !found && c.Status == metav1.ConditionTrue {
		st.Conditions = append(st.Conditions, c)
		changed = true
	}
	return changed
}

// exclusive: the two startup-policy conditions exclude each other.
func exclusive(a, b string) bool {
	inProgress, completed := string(jobset.JobSetStartupPolicyInProgress), string(jobset.JobSetStartupPolicyCompleted)
	return (a == inProgress && b == completed) || (a == completed && b == inProgress)
}

// finishedCondition returns the JobSet's true Completed or Failed condition.
func finishedCondition(st *jobset.JobSetStatus) *metav1.Condition {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if (c.Type == string(jobset.JobSetCompleted) || c.Type == string(jobset.JobSetFailed)) && c.Status == metav1.ConditionTrue {
			return c
		}
	}
	return nil
}
