package agent

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func TestPodsRan(t *testing.T) {
	owned := func(uid types.UID, st batchv1.JobStatus) batchv1.Job {
		return batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{UID: uid, Controller: ptr.To(true)}}},
			Status:     st,
		}
	}
	for _, tc := range []struct {
		name string
		jobs []batchv1.Job
		want bool
	}{
		{name: "no Jobs"},
		{name: "Pods pending", jobs: []batchv1.Job{owned("c", batchv1.JobStatus{Active: 4, Ready: ptr.To[int32](0)})}},
		{name: "one of four Pods ready", jobs: []batchv1.Job{owned("c", batchv1.JobStatus{Active: 4, Ready: ptr.To[int32](1)})}, want: true},
		{name: "a Pod succeeded", jobs: []batchv1.Job{owned("c", batchv1.JobStatus{Succeeded: 1})}, want: true},
		{name: "a Pod failed", jobs: []batchv1.Job{owned("c", batchv1.JobStatus{Failed: 1})}, want: true},
		{name: "another copy's Job ran", jobs: []batchv1.Job{owned("other", batchv1.JobStatus{Ready: ptr.To[int32](2)})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodsRan(tc.jobs, "c"); got != tc.want {
				t.Errorf("PodsRan = %v, want %v", got, tc.want)
			}
		})
	}
}

// A copy only some of whose Pods run shows no count in its JobSet status;
// the dispatch says Started, so the hub's start deadline never moves it.
func TestStartedReported(t *testing.T) {
	d := testDispatch(2)
	d.Finalizers = []string{fleet.AgentFinalizer}
	cp := memberCopy(d)
	cp.Finalizers = []string{fleet.ReportFinalizer}
	cp.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 2}}
	observe := func(d *fleet.JobSetDispatch, ran bool) Plan {
		return ComputePlan(Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now, Dispatch: d, Target: cp, Copies: []jobset.JobSet{*cp}, PodsRan: ran})
	}
	p := observe(d, false)
	if p.Status == nil || meta.FindStatusCondition(p.Status.Conditions, fleet.DispatchStarted) != nil {
		t.Fatalf("no Pod ran yet: status %+v, want a report without Started", p.Status)
	}
	reported := d.DeepCopy()
	reported.Status = *p.Status
	p = observe(reported, true)
	if p.Status == nil || !meta.IsStatusConditionTrue(p.Status.Conditions, fleet.DispatchStarted) {
		t.Fatalf("a Pod ran: status %+v, want Started=True", p.Status)
	}
	if !urgentReport(&reported.Status, p.Status) {
		t.Error("Started is reported with the progress merging's delay; the hub's deadline may pass meanwhile")
	}
}

// A refusal that says what the status already says writes nothing, so the
// status's sync time stays at the first refusal; the agent's own last
// attempt still spaces the retries.
func TestRefusalRetriesAreSpacedByTheLastAttempt(t *testing.T) {
	d := testDispatch(2)
	d.Finalizers = []string{fleet.AgentFinalizer}
	first := metav1.NewTime(now.Add(-time.Minute))
	d.Status.LastSyncTime = &first
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionFalse, Reason: fleet.ReasonQuotaExceeded, ObservedGeneration: d.Generation})
	o := Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now, Dispatch: d}

	if p := ComputePlan(o); p.Create == nil {
		t.Errorf("refused a minute ago and not tried since: plan %+v, want a new create attempt", p)
	}
	o.LastReport = now.Add(-5 * time.Second)
	p := ComputePlan(o)
	if p.Create != nil || p.State != StateRefused || p.ReportAfter != RefusalRetryInterval-5*time.Second {
		t.Errorf("tried 5 s ago: create %v, state %s, report after %s; want no create, %s, %s", p.Create != nil, p.State, p.ReportAfter, StateRefused, RefusalRetryInterval-5*time.Second)
	}
}
