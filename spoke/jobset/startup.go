package jobset

import (
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// startupGate says which replicatedJobs may have their Jobs created and
// resumed now, given dependsOn and the InOrder startup policy.
type startupGate struct {
	open []bool
	// inOrder is set when an InOrder startup policy applies right now (it
	// does not while the JobSet is suspended: suspended Jobs are all
	// created up front and resumed in order later).
	inOrder bool
	// waitingOn is the index of the replicatedJob an in-order startup waits
	// for, or -1 when every replicatedJob has started.
	waitingOn int
}

// gateStartup evaluates the startup constraints against this reconcile's
// replicatedJob statuses.
func gateStartup(js *v1alpha2.JobSet, statuses []v1alpha2.ReplicatedJobStatus) startupGate {
	g := startupGate{
		open:      make([]bool, len(js.Spec.ReplicatedJobs)),
		inOrder:   js.Spec.StartupPolicy != nil && js.Spec.StartupPolicy.StartupPolicyOrder == v1alpha2.InOrder && !js.IsSuspended(),
		waitingOn: -1,
	}
	for i := range js.Spec.ReplicatedJobs {
		rjob := &js.Spec.ReplicatedJobs[i]
		if !dependenciesMet(js, rjob, statuses) {
			continue
		}
		g.open[i] = true
		if g.inOrder && !allStarted(rjob, findReplicatedJobStatus(statuses, rjob.Name)) {
			// Later replicatedJobs wait until all of this one's Jobs run.
			g.waitingOn = i
			break
		}
	}
	return g
}

// allStarted: every Job of the replicatedJob is ready or already finished.
func allStarted(rjob *v1alpha2.ReplicatedJob, s *v1alpha2.ReplicatedJobStatus) bool {
	return s != nil && s.Ready+s.Succeeded+s.Failed >= rjob.Replicas
}

// dependenciesMet: each replicatedJob rjob depends on has reached the
// required state with all of its Jobs — Complete means succeeded, Ready means
// ready (or already finished).
func dependenciesMet(js *v1alpha2.JobSet, rjob *v1alpha2.ReplicatedJob, statuses []v1alpha2.ReplicatedJobStatus) bool {
	for _, dep := range rjob.DependsOn {
		var replicas int32
		for _, r := range js.Spec.ReplicatedJobs {
			if r.Name == dep.Name {
				replicas = r.Replicas
			}
		}
		s := findReplicatedJobStatus(statuses, dep.Name)
		if s == nil {
			return false
		}
		switch dep.Status {
		case v1alpha2.DependencyComplete:
			if s.Succeeded < replicas {
				return false
			}
		default: // Ready
			if s.Ready+s.Succeeded+s.Failed < replicas {
				return false
			}
		}
	}
	return true
}
