package dispatch

import (
	"maps"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

func TestComputeGauges(t *testing.T) {
	named := func(js *jobset.JobSet, name string) *jobset.JobSet {
		js.Name, js.UID = name, types.UID("uid-"+name)
		return js
	}
	waiting := func(name, reason string) jobset.JobSet {
		js := named(planJobSet(jobset.FleetStatus{}), name)
		if reason != "" {
			meta.SetStatusCondition(&js.Status.Conditions, metav1.Condition{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse, Reason: reason})
		}
		return *js
	}
	placed := func(name, member string) jobset.JobSet {
		return *named(planJobSet(jobset.FleetStatus{Cluster: member, Epoch: 1}), name)
	}
	awaiting := func(js jobset.JobSet) jobset.JobSet {
		meta.SetStatusCondition(&js.Status.Conditions, metav1.Condition{Type: fleet.ConditionMemberStatusStale, Status: metav1.ConditionTrue, Reason: fleet.ReasonAwaitingFence})
		return js
	}
	dispatchOf := func(js jobset.JobSet, member string) fleet.JobSetDispatch {
		return planDispatch(&js, jobset.FleetStatus{Cluster: member, Epoch: 1})
	}
	done := placed("done", "a")
	done.Status.TerminalState = string(jobset.JobSetCompleted)
	meta.SetStatusCondition(&done.Status.Conditions, metav1.Condition{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue, Reason: "x"})
	onLost := awaiting(placed("on-lost", "lost"))

	members := []inventory.Member{
		planMember("a"), planMember("idle"), planMember("lost", silent), planMember("quiet-lost", silent),
		planMember("oos", outOfService), planMember("cordoned", func(m *inventory.Member) { m.Cordoned = true }),
	}
	jobSets := []jobset.JobSet{
		waiting("new", ""), waiting("q1", fleet.ReasonQueued), waiting("q2", fleet.ReasonQueued), waiting("nofit", fleet.ReasonNoFit),
		placed("p1", "a"), placed("p2", "a"), done, onLost,
		// Left the fleet with its copy unconfirmed: still counted.
		awaiting(placed("on-gone", "gone")),
	}
	dispatches := []fleet.JobSetDispatch{dispatchOf(placed("p1", "a"), "a"), dispatchOf(onLost, "lost"), dispatchOf(jobSets[8], "gone")}
	// The hub's finalizer marks a dispatch not released yet.
	for i := range dispatches {
		dispatches[i].Finalizers = append(dispatches[i].Finalizers, fleet.DispatchFinalizer)
	}

	g := computeGauges(members, lostAfter, jobSets, dispatches, true)

	wantWaiting := map[string]int{}
	for _, r := range waitingReasons {
		wantWaiting[r] = 0
	}
	wantWaiting[reasonNotEvaluated], wantWaiting[fleet.ReasonQueued], wantWaiting[fleet.ReasonNoFit] = 1, 2, 1
	check := func(what string, got, want any) {
		t.Helper()
		if g, w := got.(map[string]int), want.(map[string]int); !maps.Equal(g, w) {
			t.Errorf("%s = %v, want %v", what, g, w)
		}
	}
	check("waiting", g.Waiting, wantWaiting)
	check("per member", g.PerMember, map[string]int{"a": 2, "idle": 0, "lost": 1, "quiet-lost": 0, "oos": 0, "cordoned": 0, "gone": 1})
	check("awaiting fence", g.AwaitingFence, map[string]int{"a": 0, "idle": 0, "lost": 1, "quiet-lost": 0, "oos": 0, "cordoned": 0, "gone": 1})
	wantStates := map[string]string{
		"a": inventory.StateHealthy, "idle": inventory.StateHealthy, "lost": inventory.StateAwaitingFence, "quiet-lost": inventory.StateLost,
		"oos": inventory.StateOutOfService, "cordoned": inventory.StateCordoned,
	}
	if !maps.Equal(g.States, wantStates) {
		t.Errorf("states = %v, want %v", g.States, wantStates)
	}
}
