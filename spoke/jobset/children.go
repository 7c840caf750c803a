package jobset

import (
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// children sorts a JobSet's child Jobs by the role they play in this
// reconcile.
type children struct {
	// previous Jobs belong to an earlier restart attempt (of the whole
	// JobSet or of their index) or to no current replicatedJob index; they
	// are deleted before replacements are created.
	previous []*batchv1.Job
	// active, succeeded and failed are the Jobs of the current attempt.
	active    []*batchv1.Job
	succeeded []*batchv1.Job
	failed    []*batchv1.Job
	// names holds every existing child Job name, whatever its bucket: a Job
	// is never created while one with its name still exists.
	names map[string]bool
}

// classify buckets the child Jobs of js (defaulted, with the status the
// buckets are relative to).
func classify(js *jobset.JobSet, jobs []batchv1.Job) children {
	replicas := make(map[string]int32, len(js.Spec.ReplicatedJobs))
	for _, rjob := range js.Spec.ReplicatedJobs {
		replicas[rjob.Name] = rjob.Replicas
	}
	kids := children{names: make(map[string]bool, len(jobs))}
	for i := range jobs {
		job := &jobs[i]
		kids.names[job.Name] = true
		if outdated(js, job, replicas) {
			kids.previous = append(kids.previous, job)
			continue
		}
		switch jobFinishedType(job) {
		case batchv1.JobComplete:
			kids.succeeded = append(kids.succeeded, job)
		case batchv1.JobFailed:
			kids.failed = append(kids.failed, job)
		default:
			kids.active = append(kids.active, job)
		}
	}
	return kids
}

// outdated reports whether job is not part of the JobSet's current run.
func outdated(js *jobset.JobSet, job *batchv1.Job, replicas map[string]int32) bool {
	attempt, err := strconv.Atoi(job.Labels[jobset.RestartsKey])
	if err != nil || int32(attempt) < js.Status.Restarts {
		return true
	}
	rjobName := job.Labels[jobset.ReplicatedJobNameKey]
	idx, err := strconv.Atoi(job.Labels[jobset.JobIndexKey])
	rjobReplicas, known := replicas[rjobName]
	if err != nil || !known || idx < 0 || int32(idx) >= rjobReplicas {
		// Left over from a replicatedJob that was scaled down.
		return true
	}
	if !features.Enabled(features.RestartJob) {
		// Individual restarts exist only behind the gate; upstream ignores
		// the label without it.
		return false
	}
	individual, err := strconv.Atoi(job.Labels[JobRestartAttemptKey])
	if err != nil {
		// Upstream keeps a Job without the label (created before the gate
		// was turned on): it gets one when recreated.
		return false
	}
	return int32(individual) < individualRestarts(&js.Status, rjobName, idx)
}

// jobFinishedType returns Complete or Failed for a finished Job, "" otherwise.
func jobFinishedType(job *batchv1.Job) batchv1.JobConditionType {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.Type
		}
	}
	return ""
}

// jobFailure returns the Job's Failed=True condition, or nil.
func jobFailure(job *batchv1.Job) *batchv1.JobCondition {
	i := slices.IndexFunc(job.Status.Conditions, func(c batchv1.JobCondition) bool {
		return c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue
	})
	if i < 0 {
		return nil
	}
	return &job.Status.Conditions[i]
}

func jobSuspended(job *batchv1.Job) bool {
	return job.Spec.Suspend != nil && *job.Spec.Suspend
}

// notDeleting drops Jobs that are already being deleted.
func notDeleting(jobs []*batchv1.Job) []*batchv1.Job {
	var out []*batchv1.Job
	for _, job := range jobs {
		if job.DeletionTimestamp == nil {
			out = append(out, job)
		}
	}
	return out
}
