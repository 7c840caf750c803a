package dispatch

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// TestQueueDemand: what the hub sent to a member's Kueue counts against
// that queue's reported free quota until the member's figures show it:
// while the copy is not reported at its epoch, or waits in the queue.
func TestQueueDemand(t *testing.T) {
	cpu := func(v string) corev1.ResourceList {
		return corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(v)}
	}
	dispatch := func(uid, member, queue string, mutate func(*fleet.JobSetDispatch)) fleet.JobSetDispatch {
		d := fleet.JobSetDispatch{}
		d.UID, d.Namespace, d.Name = types.UID("d-"+uid), fleet.MemberNamespace(member), uid
		d.Spec.Origin = fleet.Origin{Namespace: "team", Name: uid, UID: types.UID(uid)}
		d.Spec.Epoch = 1
		if queue != "" {
			d.Spec.JobSet.Labels = map[string]string{fleet.KueueQueueNameLabel: queue}
		}
		d.Spec.JobSet.Spec.ReplicatedJobs = []jobset.ReplicatedJob{{Name: "w", Replicas: 1}}
		d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: cpu("2")}}}
		if mutate != nil {
			mutate(&d)
		}
		return d
	}
	reported := func(d *fleet.JobSetDispatch) { d.Status.ObservedEpoch = d.Spec.Epoch }
	queued := func(d *fleet.JobSetDispatch) {
		reported(d)
		d.Status.Queued = &fleet.MemberQueued{LocalQueue: "team-a", ClusterQueue: "team-a"}
	}
	finished := func(d *fleet.JobSetDispatch) {
		reported(d)
		d.Status.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
	}
	dispatches := []fleet.JobSetDispatch{
		dispatch("sent", "m1", "team-a", nil),          // not reported yet: demand
		dispatch("waiting", "m1", "team-a", queued),    // waits in the member's queue: demand
		dispatch("admitted", "m1", "team-a", reported), // admitted: in the member's figures
		dispatch("other-queue", "m1", "team-b", nil),   // demand on another queue
		dispatch("no-queue", "m1", "", nil),            // Kueue plays no part
		dispatch("done", "m2", "team-a", finished),     // finished: no demand
		dispatch("placing", "m2", "team-a", nil),       // the JobSet being placed
		dispatch("elsewhere", "m2", "team-a", queued),  // another member
	}
	l := &ledger{}
	// Placed by this process; the cache does not show the dispatch yet.
	l.put("burst", commitment{member: "m2", epoch: 1, resources: cpu("4"), queue: "team/team-a"})

	_, _, got := l.committed(dispatches, nil, "placing")
	want := map[string]map[string]corev1.ResourceList{
		"m1": {"team/team-a": cpu("4"), "team/team-b": cpu("2")},
		"m2": {"team/team-a": cpu("6")},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
		t.Errorf("queue demand (-want +got):\n%s", diff)
	}
}
