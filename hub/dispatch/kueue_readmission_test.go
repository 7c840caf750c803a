package dispatch

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// TestBackToQueue: a JobSet Kueue suspends before any Pod of its placement
// started goes back to its queue through the confirmed-stop path; one that
// started stays suspended where it is.
func TestBackToQueue(t *testing.T) {
	at := jobset.FleetStatus{Cluster: "a", Epoch: 1}
	pending := func(d *fleet.JobSetDispatch) { // accepted, its Pod not running yet
		d.Status.ObservedEpoch = d.Spec.Epoch
		d.Status.JobSetStatus.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 1}}
	}
	running := func(d *fleet.JobSetDispatch) {
		d.Status.ObservedEpoch = d.Spec.Epoch
		d.Status.JobSetStatus.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 1, Ready: 1}}
	}
	mirrored := func(js *jobset.JobSet) *jobset.JobSet {
		js.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 1}}
		return js
	}
	tests := []struct {
		name       string
		js         *jobset.JobSet
		dispatch   []func(*fleet.JobSetDispatch)
		want       summary
		wantMsg    string
		wantActive int32
	}{{
		name:     "preempted before a Pod started: the copy is removed, the JobSet waits for its queue",
		js:       mirrored(inKueue(planJobSet(at), "team-a", true)),
		dispatch: []func(*fleet.JobSetDispatch){pending},
		want: summary{Delete: []string{"a"}, Dispatched: "False/AwaitingAdmission",
			EventReasons: []string{fleet.ReasonAwaitingAdmission, fleet.ReasonSuspending}},
		wantMsg: "that copy is being removed", wantActive: 1,
	}, {
		name:     "its copy not confirmed gone yet: it waits, saying so, and nothing is placed",
		js:       mirrored(inKueue(planJobSet(at), "team-a", true)),
		dispatch: []func(*fleet.JobSetDispatch){pending, deleting},
		want:     summary{Dispatched: "False/AwaitingAdmission", EventReasons: []string{fleet.ReasonAwaitingAdmission}},
		wantMsg:  "LocalQueue team-a admits it again", wantActive: 1,
	}, {
		name:     "its copy confirmed gone: released and unplaced, no Job active (Kueue releases the quota)",
		js:       mirrored(inKueue(planJobSet(at), "team-a", true)),
		dispatch: []func(*fleet.JobSetDispatch){pending, deleting, reportedDeleted},
		want:     summary{Release: []string{"a"}, Dispatched: "False/AwaitingAdmission", EventReasons: []string{fleet.ReasonAwaitingAdmission}},
		wantMsg:  "placed on a member once admitted", wantActive: 0,
	}, {
		name:     "readmitted before the copy is confirmed gone: still nothing placed",
		js:       mirrored(inKueue(planJobSet(at), "team-a", false)),
		dispatch: []func(*fleet.JobSetDispatch){pending, deleting},
		want:     summary{Dispatched: "False/DispatchDeleted", EventReasons: []string{fleet.ReasonDispatchDeleted}},
		wantMsg:  "confirms its copy stopped", wantActive: 1,
	}, {
		name:     "preempted after a Pod started: suspended in place",
		js:       inKueue(planJobSet(at), "team-a", true),
		dispatch: []func(*fleet.JobSetDispatch){running, func(d *fleet.JobSetDispatch) { d.Spec.JobSet.Spec.Suspend = nil }},
		want:     summary{Update: true, Dispatched: "True/Dispatched", Stale: "False/HeartbeatFresh", EventReasons: []string{fleet.ReasonSuspending}},
		wantMsg:  "dispatched to member a", wantActive: 1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			members := []inventory.Member{planMember("a"), planMember("b")}
			o := Observed{JobSet: tc.js, KueueOnHub: true, Dispatches: []fleet.JobSetDispatch{planDispatch(tc.js, at, tc.dispatch...)},
				Members: map[string]inventory.Member{}, Now: t0, LostTimeout: lostAfter}
			for _, m := range members {
				o.Members[m.Name] = m
			}
			p, err := ComputePlan(o, func(excluded map[string]string) (Choice, error) {
				res, err := placement.Place(placement.Request{JobSet: tc.js, Members: members, Excluded: excluded})
				return Choice{Result: res}, err
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, summarize(p)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			st := writtenStatus(p)
			if st == nil {
				st = &tc.js.Status
			}
			if c := meta.FindStatusCondition(st.Conditions, fleet.ConditionDispatched); c == nil || !strings.Contains(c.Message, tc.wantMsg) {
				t.Errorf("Dispatched %+v does not say %q", c, tc.wantMsg)
			}
			if rs := st.ReplicatedJobsStatus; len(rs) > 0 && rs[0].Active != tc.wantActive {
				t.Errorf("active %d, want %d", rs[0].Active, tc.wantActive)
			}
			if tc.want.Delete != nil && p.Update != nil {
				t.Error("the copy is both removed and updated")
			}
		})
	}
}
