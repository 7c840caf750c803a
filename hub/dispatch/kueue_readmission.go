package dispatch

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// backToQueue handles a placed JobSet that Kueue suspended again
// (preempted, or evicted) before any Pod of its placement started: it goes
// back to its queue rather than waiting, suspended, on the member chosen at
// its last admission. Its dispatch d is retired; once the member confirms
// the copy gone (never two copies) the JobSet is unplaced, and when Kueue
// admits it again it is placed against the capacity of that moment, with
// the flavor of that admission: possibly on another member. A JobSet that
// started stays where it is: suspending and resuming it there keeps what
// its Pods wrote on that member. It reports whether it handled d.
func (pl *planner) backToQueue(d *fleet.JobSetDispatch, fs jobset.FleetStatus) bool {
	queue, held := heldByQueue(pl.o.JobSet, pl.o.KueueOnHub)
	if !held || fs.StartedEpoch == fs.Epoch || started(d) || IsFinished(pl.status) {
		return false
	}
	if d.DeletionTimestamp == nil {
		pl.event(corev1.EventTypeNormal, fleet.ReasonSuspending, "Kueue suspended it before any Pod of epoch %d started on member %s: removing that copy", fs.Epoch, fs.Cluster)
		pl.retire(d)
	}
	pl.wait(fleet.ReasonAwaitingAdmission, fmt.Sprintf("Kueue suspended it before any Pod of epoch %d started on member %s: that copy is being removed, "+
		"and once LocalQueue %s admits it again it is placed against the capacity of that moment", fs.Epoch, fs.Cluster, queue))
	return true
}

// unplacedStatus is the status of a JobSet whose copy is confirmed gone
// and that waits for its queue: nothing of it runs, so no replicated Job
// is active. Kueue counts a preempted JobSet's quota as released only
// once none is.
func unplacedStatus(s *jobset.JobSetStatus) {
	for i := range s.ReplicatedJobsStatus {
		rj := &s.ReplicatedJobsStatus[i]
		rj.Active, rj.Ready = 0, 0
	}
}
