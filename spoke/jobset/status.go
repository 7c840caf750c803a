package jobset

import (
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// replicatedJobStatuses counts the current run's Jobs per replicatedJob, in
// spec order. The per-index restart counters are history, not observation,
// so they are carried over from prev.
func replicatedJobStatuses(js *v1alpha2.JobSet, kids children, prev []v1alpha2.ReplicatedJobStatus) []v1alpha2.ReplicatedJobStatus {
	out := make([]v1alpha2.ReplicatedJobStatus, len(js.Spec.ReplicatedJobs))
	index := make(map[string]*v1alpha2.ReplicatedJobStatus, len(out))
	for i, rjob := range js.Spec.ReplicatedJobs {
		out[i].Name = rjob.Name
		if j := slices.IndexFunc(prev, func(s v1alpha2.ReplicatedJobStatus) bool { return s.Name == rjob.Name }); j >= 0 {
			out[i].JobRestarts = slices.Clone(prev[j].JobRestarts)
			out[i].JobRestartsCountTowardsMax = slices.Clone(prev[j].JobRestartsCountTowardsMax)
		}
		index[rjob.Name] = &out[i]
	}
	count := func(jobs []*batchv1.Job, add func(*v1alpha2.ReplicatedJobStatus, *batchv1.Job)) {
		for _, job := range jobs {
			if s := index[job.Labels[v1alpha2.ReplicatedJobNameKey]]; s != nil {
				add(s, job)
			}
		}
	}
	count(kids.active, func(s *v1alpha2.ReplicatedJobStatus, job *batchv1.Job) {
		if jobReady(job) {
			s.Ready++
		}
		if job.Status.Active > 0 && job.DeletionTimestamp == nil {
			s.Active++
		}
		if jobSuspended(job) {
			s.Suspended++
		}
	})
	count(kids.succeeded, func(s *v1alpha2.ReplicatedJobStatus, _ *batchv1.Job) { s.Succeeded++ })
	count(kids.failed, func(s *v1alpha2.ReplicatedJobStatus, _ *batchv1.Job) { s.Failed++ })
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

func findReplicatedJobStatus(statuses []v1alpha2.ReplicatedJobStatus, name string) *v1alpha2.ReplicatedJobStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

// setCondition applies c (LastTransitionTime taken from now) and reports
// whether the condition's status flipped, i.e. whether this is a transition
// worth an event. A False condition is never added, only flipped, so that a
// JobSet that was never suspended shows no Suspended condition at all.
func setCondition(st *v1alpha2.JobSetStatus, c metav1.Condition, now metav1.Time) bool {
	c.LastTransitionTime = now
	existing := meta.FindStatusCondition(st.Conditions, c.Type)
	if existing == nil && c.Status != metav1.ConditionTrue {
		return false
	}
	flipped := existing == nil || existing.Status != c.Status
	if flipped && c.Status == metav1.ConditionTrue {
		// The two startup-policy conditions exclude each other.
		if other := exclusiveWith(c.Type); other != "" {
			if o := meta.FindStatusCondition(st.Conditions, other); o != nil && o.Status == metav1.ConditionTrue {
				o.Status = metav1.ConditionFalse
				o.LastTransitionTime = now
			}
		}
	}
	meta.SetStatusCondition(&st.Conditions, c)
	return flipped
}

func exclusiveWith(conditionType string) string {
	switch conditionType {
	case string(v1alpha2.JobSetStartupPolicyInProgress):
		return string(v1alpha2.JobSetStartupPolicyCompleted)
	case string(v1alpha2.JobSetStartupPolicyCompleted):
		return string(v1alpha2.JobSetStartupPolicyInProgress)
	}
	return ""
}

func conditionTrue(st *v1alpha2.JobSetStatus, conditionType string) bool {
	return meta.IsStatusConditionTrue(st.Conditions, conditionType)
}

// finishedCondition returns the JobSet's true Completed or Failed condition.
func finishedCondition(st *v1alpha2.JobSetStatus) *metav1.Condition {
	for _, t := range []v1alpha2.JobSetConditionType{v1alpha2.JobSetCompleted, v1alpha2.JobSetFailed} {
		if c := meta.FindStatusCondition(st.Conditions, string(t)); c != nil && c.Status == metav1.ConditionTrue {
			return c
		}
	}
	return nil
}
