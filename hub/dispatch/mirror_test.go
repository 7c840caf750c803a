package dispatch

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func reportedAt(epoch, observed int64, s jobset.JobSetStatus) *fleet.JobSetDispatch {
	d := &fleet.JobSetDispatch{}
	d.Spec.Epoch = epoch
	d.Status.ObservedEpoch = observed
	d.Status.JobSetStatus = s
	return d
}

func TestMirrorStatus(t *testing.T) {
	hubConds := []metav1.Condition{{Type: fleet.ConditionDispatched, Status: metav1.ConditionTrue, Reason: fleet.ReasonDispatched}}
	memberStatus := jobset.JobSetStatus{
		Restarts: 1, RestartsCountTowardsMax: 1,
		ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w", Active: 2}},
		Conditions: []metav1.Condition{
			{Type: string(jobset.JobSetSuspended), Status: metav1.ConditionFalse, Reason: "Resumed"},
			// A member must not be able to forge hub conditions.
			{Type: fleet.ConditionDispatched, Status: metav1.ConditionFalse, Reason: "Forged"},
		},
	}
	tests := []struct {
		name     string
		current  jobset.JobSetStatus
		d        *fleet.JobSetDispatch
		carried  jobset.FleetStatus
		restarts int32
		active   int32
		conds    []string
	}{
		{"not reported yet: unchanged", jobset.JobSetStatus{Conditions: hubConds}, reportedAt(1, 0, memberStatus), jobset.FleetStatus{}, 0, 0, []string{"Dispatched=True"}},
		{"report for another epoch is ignored", jobset.JobSetStatus{Conditions: hubConds}, reportedAt(2, 1, memberStatus), jobset.FleetStatus{}, 0, 0, []string{"Dispatched=True"}},
		{"reported", jobset.JobSetStatus{Conditions: hubConds}, reportedAt(1, 1, memberStatus), jobset.FleetStatus{}, 1, 2, []string{"Dispatched=True", "Suspended=False"}},
		{"carried restarts add up", jobset.JobSetStatus{Conditions: hubConds}, reportedAt(2, 2, memberStatus), jobset.FleetStatus{RestartsCarried: 3, RestartsCountTowardsMaxCarried: 2}, 4, 2, []string{"Dispatched=True", "Suspended=False"}},
		{"carried shown before the new member reports", jobset.JobSetStatus{Restarts: 1}, reportedAt(2, 0, memberStatus), jobset.FleetStatus{RestartsCarried: 3}, 3, 0, nil},
		{"restarts never go backwards (a copy re-created with fewer)", jobset.JobSetStatus{Restarts: 5}, reportedAt(1, 1, memberStatus), jobset.FleetStatus{}, 5, 2, []string{"Suspended=False"}},
		{"nothing started yet: no counts shown", jobset.JobSetStatus{Conditions: hubConds}, reportedAt(1, 1, jobset.JobSetStatus{ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w"}}}), jobset.FleetStatus{}, 0, 0, []string{"Dispatched=True"}},
		{"finished stays finished", jobset.JobSetStatus{TerminalState: "Failed", Restarts: 7}, reportedAt(1, 1, memberStatus), jobset.FleetStatus{}, 7, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := mirrorStatus(tc.current, tc.d, tc.carried)
			if got.Restarts != tc.restarts {
				t.Errorf("restarts = %d, want %d", got.Restarts, tc.restarts)
			}
			var active int32
			if len(got.ReplicatedJobsStatus) > 0 {
				active = got.ReplicatedJobsStatus[0].Active
			}
			if active != tc.active {
				t.Errorf("active = %d, want %d", active, tc.active)
			}
			if tc.active == 0 && len(tc.current.ReplicatedJobsStatus) == 0 && len(got.ReplicatedJobsStatus) > 0 {
				t.Errorf("counts of nothing shown: %+v", got.ReplicatedJobsStatus)
			}
			if len(got.Conditions) != len(tc.conds) {
				t.Fatalf("conditions %+v, want %v", got.Conditions, tc.conds)
			}
			for i, c := range got.Conditions {
				if s := c.Type + "=" + string(c.Status); s != tc.conds[i] {
					t.Errorf("condition %d = %s, want %s", i, s, tc.conds[i])
				}
			}
		})
	}
}

func TestRejected(t *testing.T) {
	d := &fleet.JobSetDispatch{}
	d.Namespace = "fleet-member-m1"
	if rejected(d) {
		t.Error("no report is no refusal")
	}
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionFalse, Reason: "Conflict", Message: "a JobSet train exists"})
	if !rejected(d) || rejectionMessage(d) != "Conflict: a JobSet train exists" {
		t.Errorf("rejected = %t, %q", rejected(d), rejectionMessage(d))
	}
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue, Reason: "Accepted"})
	if rejected(d) {
		t.Error("an accepted dispatch is not refused")
	}
}

func TestOnMemberLost(t *testing.T) {
	for v, want := range map[string]string{"": fleet.OnMemberLostRedispatch, "Fail": fleet.OnMemberLostFail, "Wait": fleet.OnMemberLostWait,
		"RedispatchAtLeastOnce": fleet.OnMemberLostAtLeastOnce, "bogus": fleet.OnMemberLostRedispatch} {
		js := &jobset.JobSet{}
		if v != "" {
			js.Annotations = map[string]string{fleet.OnMemberLostAnnotation: v}
		}
		if got := fleet.OnMemberLost(js); got != want {
			t.Errorf("fleet.OnMemberLost(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestTTLExpiry(t *testing.T) {
	seen := metav1.NewTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	// The member's clock is a year behind: its time never counts.
	memberTime := metav1.NewTime(seen.AddDate(-1, 0, 0))
	completed := jobset.JobSetStatus{
		TerminalState: string(jobset.JobSetCompleted),
		Conditions:    []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue, LastTransitionTime: memberTime}},
		Fleet:         &jobset.FleetStatus{Cluster: "m1", Epoch: 1, FinishedObservedTime: &seen},
	}
	notSeen := *completed.DeepCopy()
	notSeen.Fleet.FinishedObservedTime = nil
	finishedAt := seen
	cases := []struct {
		name   string
		ttl    *int32
		status jobset.JobSetStatus
		want   time.Time
		wantOK bool
	}{
		{name: "no TTL", status: completed},
		{name: "running", ttl: ptr.To[int32](60)},
		{name: "completed with TTL", ttl: ptr.To[int32](60), status: completed, want: finishedAt.Add(time.Minute), wantOK: true},
		{name: "zero TTL expires at once", ttl: ptr.To[int32](0), status: completed, want: finishedAt.Time, wantOK: true},
		{name: "finished, but the hub has not recorded when it saw that", ttl: ptr.To[int32](60), status: notSeen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := &jobset.JobSet{Spec: jobset.JobSetSpec{TTLSecondsAfterFinished: tc.ttl}}
			got, ok := TTLExpiry(js, &tc.status)
			if ok != tc.wantOK || !got.Equal(tc.want) {
				t.Fatalf("TTLExpiry = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestNoJobCounts(t *testing.T) {
	for _, tc := range []struct {
		name string
		rs   []jobset.ReplicatedJobStatus
		want bool
	}{
		{"none", nil, true},
		{"all zero", []jobset.ReplicatedJobStatus{{Name: "a"}, {Name: "b", JobRestarts: []int32{0, 0}}}, true},
		{"one active", []jobset.ReplicatedJobStatus{{Name: "a"}, {Name: "b", Active: 1}}, false},
		{"suspended", []jobset.ReplicatedJobStatus{{Name: "a", Suspended: 2}}, false},
		{"succeeded", []jobset.ReplicatedJobStatus{{Name: "a", Succeeded: 1}}, false},
		{"a Job restarted", []jobset.ReplicatedJobStatus{{Name: "a", JobRestarts: []int32{0, 1}}}, false},
	} {
		if got := noJobCounts(tc.rs); got != tc.want {
			t.Errorf("%s: noJobCounts = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Counts already shown are mirrored as they are, zeros included: a JobSet
// whose Jobs went back to none active says so.
func TestMirrorStatusKeepsShownCountsExact(t *testing.T) {
	current := jobset.JobSetStatus{ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w", Active: 2}}}
	got := mirrorStatus(current, reportedAt(1, 1, jobset.JobSetStatus{ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w"}}}), jobset.FleetStatus{})
	if len(got.ReplicatedJobsStatus) != 1 || got.ReplicatedJobsStatus[0].Active != 0 {
		t.Errorf("ReplicatedJobsStatus = %+v, want w with none active", got.ReplicatedJobsStatus)
	}
}
