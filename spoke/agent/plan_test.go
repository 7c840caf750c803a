package agent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

var now = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func testDispatch(epoch int64) *fleetv1alpha1.JobSetDispatch {
	d := &fleetv1alpha1.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-member-a", Name: "team.train", Generation: 3},
		Spec: fleetv1alpha1.JobSetDispatchSpec{
			Origin: fleetv1alpha1.Origin{Namespace: "team", Name: "train", UID: "uid-1"},
			Epoch:  epoch,
			JobSet: fleetv1alpha1.JobSetTemplate{
				Labels:      map[string]string{"app": "train"},
				Annotations: map[string]string{"note": "x"},
				Spec: v1alpha2.JobSetSpec{
					ManagedBy:      ptr.To(fleetv1alpha1.ManagedByFleet),
					ReplicatedJobs: []v1alpha2.ReplicatedJob{{Name: "w", Replicas: 2}},
				},
			},
		},
	}
	d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	return d
}

// memberCopy is the JobSet the agent would have created for d, as stored.
func memberCopy(d *fleetv1alpha1.JobSetDispatch) *v1alpha2.JobSet {
	js := DesiredJobSet(d)
	js.UID = "member-uid"
	return js
}

func TestDesiredJobSet(t *testing.T) {
	d := testDispatch(4)
	js := DesiredJobSet(d)
	if js.Namespace != "team" || js.Name != "train" {
		t.Errorf("name: got %s/%s, want team/train", js.Namespace, js.Name)
	}
	for k, want := range map[string]string{"app": "train", fleetv1alpha1.OriginUIDLabel: "uid-1", fleetv1alpha1.EpochLabel: "4"} {
		if got := js.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if got := js.Annotations[fleetv1alpha1.DispatchAnnotation]; got != "fleet-member-a/team.train" {
		t.Errorf("dispatch annotation = %q", got)
	}
	if js.Annotations["note"] != "x" {
		t.Errorf("user annotation lost: %v", js.Annotations)
	}
	if js.ManagedByOther() {
		t.Errorf("member copy must be run by the built-in controller, managedBy=%v", ptr.Deref(js.Spec.ManagedBy, ""))
	}
	if d.Spec.JobSet.Labels[fleetv1alpha1.EpochLabel] != "" || *d.Spec.JobSet.Spec.ManagedBy != fleetv1alpha1.ManagedByFleet {
		t.Error("DesiredJobSet modified the dispatch")
	}
	if Epoch(js) != 4 {
		t.Errorf("Epoch() = %d", Epoch(js))
	}
}

func TestMergeMutable(t *testing.T) {
	d := testDispatch(1)
	current := memberCopy(d)
	current.Labels["added-by-member"] = "kept"

	if got := MergeMutable(current, DesiredJobSet(d)); got != nil {
		t.Fatalf("no change expected, got an update")
	}

	suspend := testDispatch(1)
	suspend.Spec.JobSet.Spec.Suspend = ptr.To(true)
	got := MergeMutable(current, DesiredJobSet(suspend))
	if got == nil || !got.IsSuspended() || got.Labels["added-by-member"] != "kept" {
		t.Fatalf("suspend not propagated or member label dropped: %+v", got)
	}

	// A template edit of a running JobSet is immutable: not sent.
	edit := testDispatch(1)
	edit.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector = map[string]string{"pool": "b"}
	if got := MergeMutable(current, DesiredJobSet(edit)); got != nil {
		t.Errorf("template edit of a running JobSet must not be sent")
	}
	// While suspended it is sent, together with the suspend.
	edit.Spec.JobSet.Spec.Suspend = ptr.To(true)
	got = MergeMutable(current, DesiredJobSet(edit))
	if got == nil || got.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector["pool"] != "b" || !got.IsSuspended() {
		t.Errorf("suspended template edit not propagated: %+v", got)
	}
	// Resuming with an edit made while suspended sends both.
	suspended := current.DeepCopy()
	suspended.Spec.Suspend = ptr.To(true)
	edit.Spec.JobSet.Spec.Suspend = ptr.To(false)
	got = MergeMutable(suspended, DesiredJobSet(edit))
	if got == nil || got.IsSuspended() || got.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.NodeSelector["pool"] != "b" {
		t.Errorf("resume with edit not propagated: %+v", got)
	}
}

func TestComputePlan(t *testing.T) {
	d := testDispatch(2)
	ours := memberCopy(d)
	ours.Status.Restarts = 1
	stale := memberCopy(testDispatch(1))
	foreign := &v1alpha2.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "train", UID: "x"}}
	newer := memberCopy(testDispatch(3))
	deleting := d.DeepCopy()
	deleting.DeletionTimestamp = &now
	deleting.Finalizers = []string{fleetv1alpha1.AgentFinalizer}
	withFinalizer := d.DeepCopy()
	withFinalizer.Finalizers = []string{fleetv1alpha1.AgentFinalizer}
	key := "fleet-member-a/team.train"
	fenced := ours.DeepCopy()
	fenced.Spec.Suspend = ptr.To(true)
	finished := withFinalizer.DeepCopy()
	finished.Status.ObservedEpoch = 2
	finished.Status.JobSetStatus.TerminalState = string(v1alpha2.JobSetCompleted)
	finishedEarlierEpoch := finished.DeepCopy()
	finishedEarlierEpoch.Status.ObservedEpoch = 1

	tests := []struct {
		name   string
		o      Observed
		check  func(t *testing.T, p Plan)
		reason string // Accepted reason in the new status, "" for no status write
	}{
		{
			name: "new dispatch: finalizer, create after a live check, Accepted",
			o:    Observed{Dispatch: d},
			check: func(t *testing.T, p Plan) {
				if !p.AddFinalizer || p.Create == nil || !p.ConfirmDispatchCurrent || p.Update != nil || len(p.Delete) != 0 {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonAccepted,
		},
		{
			name: "running copy: status from the member",
			o:    Observed{Dispatch: withFinalizer, Target: ours, Copies: []v1alpha2.JobSet{*ours}},
			check: func(t *testing.T, p Plan) {
				if p.ConfirmDispatchCurrent || p.AddFinalizer || p.Create != nil || p.Update != nil || p.Status.JobSetStatus.Restarts != 1 || p.Status.ObservedEpoch != 2 || p.Status.ObservedGeneration != 3 {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonAccepted,
		},
		{
			name: "finished copy removed (TTL): not run again",
			o:    Observed{Dispatch: finished},
			check: func(t *testing.T, p Plan) {
				if p.Create != nil || p.Update != nil || len(p.Delete) != 0 || p.Status != nil {
					t.Errorf("plan %+v", p)
				}
			},
		},
		{
			name: "copy missing after a finish in an earlier epoch: run this epoch",
			o:    Observed{Dispatch: finishedEarlierEpoch},
			check: func(t *testing.T, p Plan) {
				if p.Create == nil {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonAccepted,
		},
		{
			name: "fenced copy: resuming it needs a live check of the dispatch",
			o:    Observed{Dispatch: withFinalizer, Target: fenced, Copies: []v1alpha2.JobSet{*fenced}},
			check: func(t *testing.T, p Plan) {
				if p.Update == nil || p.Update.IsSuspended() || !p.ConfirmDispatchCurrent {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonAccepted,
		},
		{
			name: "foreign JobSet: Conflict, no takeover",
			o:    Observed{Dispatch: d, Target: foreign},
			check: func(t *testing.T, p Plan) {
				if p.Create != nil || p.Update != nil || len(p.Delete) != 0 || p.AddFinalizer {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonConflict,
		},
		{
			name: "stale epoch at the origin: delete, wait, then create",
			o:    Observed{Dispatch: d, Target: stale, Copies: []v1alpha2.JobSet{*stale}},
			check: func(t *testing.T, p Plan) {
				if len(p.Delete) != 1 || p.Create != nil || p.Waiting == "" {
					t.Errorf("plan %+v", p)
				}
			},
		},
		{
			name: "newer epoch on the member: refuse",
			o:    Observed{Dispatch: d, Target: newer, Copies: []v1alpha2.JobSet{*newer}},
			check: func(t *testing.T, p Plan) {
				if len(p.Delete) != 0 || p.Update != nil {
					t.Errorf("plan %+v", p)
				}
			},
			reason: ReasonNewerEpoch,
		},
		{
			name: "dispatch gone: delete orphan after a live check",
			o:    Observed{Copies: []v1alpha2.JobSet{*ours}},
			check: func(t *testing.T, p Plan) {
				if len(p.Delete) != 1 || !p.ConfirmDispatchGone || p.Status != nil {
					t.Errorf("plan %+v", p)
				}
			},
		},
		{
			name: "dispatch deleting, copy present: delete and wait",
			o:    Observed{Dispatch: deleting, Target: ours, Copies: []v1alpha2.JobSet{*ours}},
			check: func(t *testing.T, p Plan) {
				if len(p.Delete) != 1 || p.Waiting == "" || p.RemoveFinalizer || p.Status != nil {
					t.Errorf("plan %+v", p)
				}
			},
		},
		{
			name: "dispatch deleting, copy gone: Deleted, release",
			o:    Observed{Dispatch: deleting},
			check: func(t *testing.T, p Plan) {
				if !p.RemoveFinalizer || p.Status == nil || !meta.IsStatusConditionTrue(p.Status.Conditions, fleetv1alpha1.DispatchDeleted) {
					t.Errorf("plan %+v", p)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Key, tc.o.ClusterName, tc.o.Now = key, "a", now
			p := ComputePlan(tc.o)
			tc.check(t, p)
			if tc.reason == "" {
				return
			}
			if p.Status == nil {
				t.Fatalf("want a status write with reason %s", tc.reason)
			}
			c := meta.FindStatusCondition(p.Status.Conditions, fleetv1alpha1.DispatchAccepted)
			if c == nil || c.Reason != tc.reason || p.Status.LastSyncTime == nil {
				t.Errorf("Accepted condition %+v, want reason %s", c, tc.reason)
			}
		})
	}
}

func TestStatusWrittenOnlyOnChange(t *testing.T) {
	d := testDispatch(2)
	d.Finalizers = []string{fleetv1alpha1.AgentFinalizer}
	ours := memberCopy(d)
	o := Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now, Dispatch: d, Target: ours, Copies: []v1alpha2.JobSet{*ours}}
	first := ComputePlan(o)
	if first.Status == nil {
		t.Fatal("first reconcile must write the status")
	}
	d.Status = *first.Status
	o.Now = metav1.NewTime(now.Add(time.Minute))
	if again := ComputePlan(o); again.Status != nil {
		t.Errorf("unchanged member status rewrote the dispatch status: %+v", again.Status)
	}
	ours.Status.TerminalState = string(v1alpha2.JobSetCompleted)
	o.Target = ours
	if changed := ComputePlan(o); changed.Status == nil || changed.Status.JobSetStatus.TerminalState != "Completed" {
		t.Errorf("member status change not reported")
	}
}
