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

func hubJobSet() *jobset.JobSet {
	js := &jobset.JobSet{ObjectMeta: metav1.ObjectMeta{
		Namespace: "team", Name: "train", UID: "uid-1",
		Labels: map[string]string{"app": "train", fleet.ClusterLabel: "m1"},
		Annotations: map[string]string{
			"owner": "alice", EpochAnnotation: "2", RestartsCarriedAnnotation: "3", RestartsTowardsMaxCarriedAnnotation: "2",
			"kubectl.kubernetes.io/last-applied-configuration": "{}",
		},
	}}
	js.Spec.ManagedBy = ptr.To(fleet.ManagedByFleet)
	js.Spec.Suspend = ptr.To(true)
	js.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 5}
	js.Spec.ReplicatedJobs = []jobset.ReplicatedJob{{Name: "w", Replicas: 2}}
	return js
}

func TestRecordedPlacementRoundTrip(t *testing.T) {
	js := hubJobSet()
	p := RecordedPlacement(js)
	want := Placement{Cluster: "m1", Epoch: 2, Carried: Carried{Restarts: 3, RestartsTowardsMax: 2}}
	if p != want {
		t.Fatalf("RecordedPlacement = %+v, want %+v", p, want)
	}
	fresh := &jobset.JobSet{}
	want.Record(fresh)
	if got := RecordedPlacement(fresh); got != want {
		t.Errorf("Record then read = %+v, want %+v", got, want)
	}
	if got := RecordedPlacement(&jobset.JobSet{}); got != (Placement{}) {
		t.Errorf("unplaced JobSet: %+v", got)
	}
}

func TestTemplate(t *testing.T) {
	js := hubJobSet()
	tpl := Template(js, RecordedPlacement(js).Carried)
	if tpl.Spec.ManagedBy != nil {
		t.Error("the member copy must be left to the member's built-in controller")
	}
	if tpl.Spec.FailurePolicy.MaxRestarts != 3 {
		t.Errorf("maxRestarts = %d, want 5 - 2 carried", tpl.Spec.FailurePolicy.MaxRestarts)
	}
	if js.Spec.FailurePolicy.MaxRestarts != 5 {
		t.Error("Template must not modify the hub JobSet")
	}
	if len(tpl.Labels) != 1 || tpl.Labels["app"] != "train" || len(tpl.Annotations) != 1 || tpl.Annotations["owner"] != "alice" {
		t.Errorf("labels %v annotations %v: want the user's only", tpl.Labels, tpl.Annotations)
	}
	if !ptr.Deref(tpl.Spec.Suspend, false) {
		t.Error("suspend must propagate")
	}
	js.Spec.FailurePolicy.MaxRestarts = 1
	if got := Template(js, Carried{RestartsTowardsMax: 4}).Spec.FailurePolicy.MaxRestarts; got != 0 {
		t.Errorf("maxRestarts floor: got %d, want 0", got)
	}
	d := NewDispatch(js, Placement{Cluster: "m2", Epoch: 3})
	if d.Namespace != "fleet-member-m2" || d.Name != "team.train" || d.Spec.Epoch != 3 || d.Labels[fleet.OriginUIDLabel] != "uid-1" ||
		d.Spec.Origin != (fleet.Origin{Namespace: "team", Name: "train", UID: "uid-1"}) || d.Finalizers[0] != DispatchFinalizer {
		t.Errorf("NewDispatch = %+v", d)
	}
}

func reported(epoch, observed int64, s jobset.JobSetStatus) *fleet.JobSetDispatch {
	d := &fleet.JobSetDispatch{}
	d.Spec.Epoch = epoch
	d.Status.ObservedEpoch = observed
	d.Status.JobSetStatus = s
	return d
}

func TestMirrorStatus(t *testing.T) {
	hubConds := []metav1.Condition{{Type: ConditionDispatched, Status: metav1.ConditionTrue, Reason: ReasonDispatched}}
	memberStatus := jobset.JobSetStatus{
		Restarts: 1, RestartsCountTowardsMax: 1,
		ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "w", Active: 2}},
		Conditions: []metav1.Condition{
			{Type: string(jobset.JobSetSuspended), Status: metav1.ConditionFalse, Reason: "Resumed"},
			// A member must not be able to forge hub conditions.
			{Type: ConditionDispatched, Status: metav1.ConditionFalse, Reason: "Forged"},
		},
	}
	tests := []struct {
		name     string
		current  jobset.JobSetStatus
		d        *fleet.JobSetDispatch
		carried  Carried
		restarts int32
		active   int32
		conds    []string
	}{
		{"not reported yet: unchanged", jobset.JobSetStatus{Conditions: hubConds}, reported(1, 0, memberStatus), Carried{}, 0, 0, []string{"Dispatched=True"}},
		{"report for another epoch is ignored", jobset.JobSetStatus{Conditions: hubConds}, reported(2, 1, memberStatus), Carried{}, 0, 0, []string{"Dispatched=True"}},
		{"reported", jobset.JobSetStatus{Conditions: hubConds}, reported(1, 1, memberStatus), Carried{}, 1, 2, []string{"Dispatched=True", "Suspended=False"}},
		{"carried restarts add up", jobset.JobSetStatus{Conditions: hubConds}, reported(2, 2, memberStatus), Carried{Restarts: 3, RestartsTowardsMax: 2}, 4, 2, []string{"Dispatched=True", "Suspended=False"}},
		{"carried shown before the new member reports", jobset.JobSetStatus{Restarts: 1}, reported(2, 0, memberStatus), Carried{Restarts: 3}, 3, 0, nil},
		{"finished stays finished", jobset.JobSetStatus{TerminalState: "Failed", Restarts: 7}, reported(1, 1, memberStatus), Carried{}, 7, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := MirrorStatus(tc.current, tc.d, tc.carried)
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

func TestAgentReports(t *testing.T) {
	d := &fleet.JobSetDispatch{}
	d.Namespace = "fleet-member-m1"
	if AgentDeleted(d) {
		t.Error("no report is not deleted")
	}
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionFalse, Reason: "Conflict", Message: "a JobSet train exists"})
	if msg, ok := AgentRejected(d); !ok || msg != "member m1 refused the JobSet: Conflict: a JobSet train exists" {
		t.Errorf("AgentRejected = %q, %t", msg, ok)
	}
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue, Reason: "MemberJobSetDeleted"})
	if !AgentDeleted(d) {
		t.Error("Deleted=True is the agent's deletion report")
	}
	d.Status.Conditions = []metav1.Condition{
		{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue, Reason: "Accepted"},
		{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue, Reason: "MemberJobSetDeleted"},
	}
	if _, ok := AgentRejected(d); ok {
		t.Error("a deletion report is not a refusal")
	}
}

func TestOnMemberLost(t *testing.T) {
	for v, want := range map[string]string{"": OnMemberLostRedispatch, "Fail": OnMemberLostFail, "Wait": OnMemberLostWait, "bogus": OnMemberLostRedispatch} {
		js := &jobset.JobSet{}
		if v != "" {
			js.Annotations = map[string]string{fleet.OnMemberLostAnnotation: v}
		}
		if got := OnMemberLost(js); got != want {
			t.Errorf("OnMemberLost(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestTTLExpiry(t *testing.T) {
	finishedAt := metav1.NewTime(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC))
	completed := jobset.JobSetStatus{
		TerminalState: string(jobset.JobSetCompleted),
		Conditions:    []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue, LastTransitionTime: finishedAt}},
	}
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
		{name: "terminal state without its condition", ttl: ptr.To[int32](60), status: jobset.JobSetStatus{TerminalState: "Failed"}},
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
