package jobset

import (
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// dependenciesReached: every replicatedJob rjob depends on has all of its
// Jobs in the required state — Complete: succeeded; Ready: ready, succeeded
// or failed. seen holds the replicas of the replicatedJobs up to and
// including rjob (dependsOn may only point backwards).
func dependenciesReached(rjob *jobset.ReplicatedJob, seen map[string]int32, statuses []jobset.ReplicatedJobStatus) bool {
	for _, dep := range rjob.DependsOn {
		s := findReplicatedJobStatus(statuses, dep.Name)
		if s == nil {
			return false
		}
		switch dep.Status {
		case jobset.DependencyComplete:
			if seen[dep.Name] != s.Succeeded {
				return false
			}
		case jobset.DependencyReady:
			if seen[dep.Name] != s.Ready+s.Succeeded+s.Failed {
				return false
			}
		}
	}
	return true
}

// allStarted: every Job of the replicatedJob is ready or already finished;
// an InOrder startup moves on to the next replicatedJob then.
func allStarted(replicas int32, s *jobset.ReplicatedJobStatus) bool {
	return s != nil && replicas == s.Ready+s.Succeeded+s.Failed
}

func inOrder(js *jobset.JobSet) bool {
	sp := js.Spec.StartupPolicy
	return sp != nil && sp.StartupPolicyOrder == jobset.InOrder
}

// allJobsReady: as many Jobs are ready or succeeded as the JobSet has.
func allJobsReady(js *jobset.JobSet, statuses []jobset.ReplicatedJobStatus) bool {
	var want, have int32
	for _, rjob := range js.Spec.ReplicatedJobs {
		want += rjob.Replicas
	}
	for _, s := range statuses {
		have += s.Ready + s.Succeeded
	}
	return want == have
}
