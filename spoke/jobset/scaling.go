package jobset

import (
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// jobScale brings a running Job's parallelism and completions to its
// replicatedJob's (ElasticJobSet).
type jobScale struct {
	job                      *batchv1.Job
	parallelism, completions *int32
}

// planScaling lists the current run's Jobs whose parallelism or completions
// differ from their replicatedJob's template. Only a template that keeps
// them equal counts (an elastic Indexed Job needs them equal); admission
// makes sure it does.
func planScaling(js *jobset.JobSet, active []*batchv1.Job) []jobScale {
	var scales []jobScale
	for _, job := range active {
		i := replicatedJobIndex(js, job)
		if i < 0 {
			continue
		}
		want := &js.Spec.ReplicatedJobs[i].Template.Spec
		if !ptr.Equal(want.Parallelism, want.Completions) {
			continue
		}
		if ptr.Equal(job.Spec.Parallelism, want.Parallelism) && ptr.Equal(job.Spec.Completions, want.Completions) {
			continue
		}
		scales = append(scales, jobScale{job: job, parallelism: want.Parallelism, completions: want.Completions})
	}
	return scales
}

func replicatedJobIndex(js *jobset.JobSet, job *batchv1.Job) int {
	name, ok := job.Labels[jobset.ReplicatedJobNameKey]
	if !ok {
		return -1
	}
	for i := range js.Spec.ReplicatedJobs {
		if js.Spec.ReplicatedJobs[i].Name == name {
			return i
		}
	}
	return -1
}
