package jobset

import (
	"slices"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// successPolicyMet reports whether the succeeded Jobs of the current run
// satisfy the success policy: with operator All every Job of the targeted
// replicatedJobs (all when none are named) succeeded, with Any at least one
// of them did. js must be defaulted.
func successPolicyMet(js *v1alpha2.JobSet, succeeded []*batchv1.Job) bool {
	sp := js.Spec.SuccessPolicy
	targeted := func(rjobName string) bool {
		return len(sp.TargetReplicatedJobs) == 0 || slices.Contains(sp.TargetReplicatedJobs, rjobName)
	}
	done := 0
	for _, job := range succeeded {
		if targeted(job.Labels[v1alpha2.ReplicatedJobNameKey]) {
			done++
		}
	}
	if done == 0 {
		return false
	}
	if sp.Operator == v1alpha2.OperatorAny {
		return true
	}
	want := 0
	for _, rjob := range js.Spec.ReplicatedJobs {
		if targeted(rjob.Name) {
			want += int(rjob.Replicas)
		}
	}
	return done >= want
}
