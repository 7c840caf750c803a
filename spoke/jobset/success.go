package jobset

import (
	"slices"

	batchv1 "k8s.io/api/batch/v1"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// successPolicyMet reports whether the succeeded Jobs of the current run
// satisfy the success policy: with operator All as many Jobs of the targeted
// replicatedJobs (all when none are named) succeeded as they have, with Any
// at least one did. Like upstream, it is asked only once some Job
// succeeded. js must be defaulted.
func successPolicyMet(js *jobset.JobSet, succeeded []*batchv1.Job) bool {
	sp := js.Spec.SuccessPolicy
	targeted := func(rjobName string) bool {
		return len(sp.TargetReplicatedJobs) == 0 || slices.Contains(sp.TargetReplicatedJobs, rjobName)
	}
	done := 0
	for _, job := range succeeded {
		if targeted(job.Labels[jobset.ReplicatedJobNameKey]) {
			done++
		}
	}
	want := 0
	switch sp.Operator {
	case jobset.OperatorAny:
		want = 1
	case jobset.OperatorAll:
		for _, rjob := range js.Spec.ReplicatedJobs {
			if targeted(rjob.Name) {
				want += int(rjob.Replicas)
			}
		}
	}
	return done >= want
}
