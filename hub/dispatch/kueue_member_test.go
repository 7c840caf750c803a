package dispatch

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// TestMirrorQueuedOnMember: while the agent reports the copy waiting in the
// member's Kueue, the hub JobSet says where and why, keeping the time it
// started waiting; once Kueue admits it (or it finishes), it says so no
// more.
func TestMirrorQueuedOnMember(t *testing.T) {
	d := reportedAt(1, 1, jobset.JobSetStatus{})
	d.Namespace = fleet.MemberNamespace("member-2")
	first := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d.Status.LastSyncTime = &first
	d.Status.Queued = &fleet.MemberQueued{LocalQueue: "team-a", ClusterQueue: "team-a", Message: "insufficient quota for cpu"}

	s := mirrorStatus(jobset.JobSetStatus{}, d, jobset.FleetStatus{})
	c := meta.FindStatusCondition(s.Conditions, fleet.ConditionQueuedOnMember)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != fleet.ReasonQueuedInMemberKueue ||
		c.Message != "Queued in member-2's ClusterQueue team-a: insufficient quota for cpu" || !c.LastTransitionTime.Equal(&first) {
		t.Fatalf("QueuedOnMember is %+v", c)
	}

	// Reported again later, with Kueue's reason changed: still the time
	// it started waiting.
	later := metav1.NewTime(first.Add(time.Minute))
	d.Status.LastSyncTime = &later
	d.Status.Queued.Message = "insufficient quota for memory"
	s = mirrorStatus(s, d, jobset.FleetStatus{})
	if c := meta.FindStatusCondition(s.Conditions, fleet.ConditionQueuedOnMember); c == nil || !c.LastTransitionTime.Equal(&first) || c.Message != "Queued in member-2's ClusterQueue team-a: insufficient quota for memory" {
		t.Errorf("QueuedOnMember after a new reason is %+v", c)
	}

	// No ClusterQueue known: the LocalQueue is named.
	d.Status.Queued = &fleet.MemberQueued{LocalQueue: "team-b", Message: "LocalQueue team/team-b does not exist on the member"}
	s2 := mirrorStatus(jobset.JobSetStatus{}, d, jobset.FleetStatus{})
	if c := meta.FindStatusCondition(s2.Conditions, fleet.ConditionQueuedOnMember); c == nil || c.Message != "Queued in member-2's LocalQueue team-b: LocalQueue team/team-b does not exist on the member" {
		t.Errorf("QueuedOnMember without a ClusterQueue is %+v", c)
	}

	// Admitted: the agent reports no queue, and the condition goes.
	d.Status.Queued = nil
	s = mirrorStatus(s, d, jobset.FleetStatus{})
	if c := meta.FindStatusCondition(s.Conditions, fleet.ConditionQueuedOnMember); c != nil {
		t.Errorf("still queued once admitted: %+v", c)
	}
}
