package dispatch

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// hubConditionTypes are set by the hub, never copied from the member.
var hubConditionTypes = map[string]bool{fleet.ConditionDispatched: true, fleet.ConditionMemberStatusStale: true}

// fleetOf is the hub's bookkeeping in a status (zero when none).
func fleetOf(s *jobset.JobSetStatus) jobset.FleetStatus {
	if s.Fleet == nil {
		return jobset.FleetStatus{}
	}
	return *s.Fleet
}

// failedByHub marks a status Failed because its member was lost.
func failedByHub(s *jobset.JobSetStatus, msg string) {
	s.TerminalState = string(jobset.JobSetFailed)
	meta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: string(jobset.JobSetFailed), Status: metav1.ConditionTrue, Reason: fleet.ReasonMemberLost, Message: fleet.Bounded(msg, fleet.MaxConditionMessage),
	})
}

// queuedOnMember is the JobSet's QueuedOnMember condition while its copy
// waits in member's Kueue, as the agent reported in d: "Queued in
// member-2's ClusterQueue team-a: <Kueue's reason>". It keeps its
// transition time while it stays True.
func queuedOnMember(current []metav1.Condition, member string, q *fleet.MemberQueued, d *fleet.JobSetDispatch) metav1.Condition {
	c := metav1.Condition{
		Type: fleet.ConditionQueuedOnMember, Status: metav1.ConditionTrue, Reason: fleet.ReasonQueuedInMemberKueue,
		Message: fleet.QueuedMessage(member, q), LastTransitionTime: d.CreationTimestamp,
	}
	if prev := meta.FindStatusCondition(current, c.Type); prev != nil && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	} else if d.Status.LastSyncTime != nil {
		c.LastTransitionTime = *d.Status.LastSyncTime
	}
	return c
}
