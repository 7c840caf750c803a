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
