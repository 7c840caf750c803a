package agent

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
)

var now = metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))

func testDispatch(epoch int64) *fleet.JobSetDispatch {
	d := &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fleet-member-a", Name: "team.train", Generation: 3},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: "team", Name: "train", UID: "uid-1"},
			Epoch:  epoch,
			JobSet: fleet.JobSetTemplate{
				Labels:      map[string]string{"app": "train"},
				Annotations: map[string]string{"note": "x"},
				Spec: jobset.JobSetSpec{
					ManagedBy:      ptr.To(fleet.ManagedByFleet),
					ReplicatedJobs: []jobset.ReplicatedJob{{Name: "w", Replicas: 2}},
				},
			},
		},
	}
	d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	return d
}

// memberCopy is the JobSet the agent would have created for d, as stored.
func memberCopy(d *fleet.JobSetDispatch) *jobset.JobSet {
	js := NewCopy(d, 0, 0)
	js.UID = "member-uid"
	return js
}

func TestDesiredJobSet(t *testing.T) {
	d := testDispatch(4)
	js := DesiredJobSet(d)
	if js.Namespace != "team" || js.Name != "train" {
		t.Errorf("name: got %s/%s, want team/train", js.Namespace, js.Name)
	}
	for k, want := range map[string]string{"app": "train", fleet.OriginUIDLabel: "uid-1", fleet.EpochLabel: "4"} {
		if got := js.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if got := js.Annotations[fleet.DispatchAnnotation]; got != "fleet-member-a/team.train" {
		t.Errorf("dispatch annotation = %q", got)
	}
	if js.Annotations["note"] != "x" {
		t.Errorf("user annotation lost: %v", js.Annotations)
	}
	if js.ManagedByOther() {
		t.Errorf("member copy must be run by the built-in controller, managedBy=%v", ptr.Deref(js.Spec.ManagedBy, ""))
	}
	if d.Spec.JobSet.Labels[fleet.EpochLabel] != "" || *d.Spec.JobSet.Spec.ManagedBy != fleet.ManagedByFleet {
		t.Error("DesiredJobSet modified the dispatch")
	}
	if fleet.Epoch(js) != 4 {
		t.Errorf("Epoch() = %d", fleet.Epoch(js))
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
	// ElasticJobSet: a running JobSet's parallelism and completions follow
	// the hub (the member's admission decides whether they may).
	scaled := testDispatch(1)
	scaled.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Parallelism = ptr.To[int32](7)
	scaled.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Completions = ptr.To[int32](7)
	got = MergeMutable(current, DesiredJobSet(scaled))
	if got == nil || ptr.Deref(got.Spec.ReplicatedJobs[0].Template.Spec.Parallelism, 0) != 7 || ptr.Deref(got.Spec.ReplicatedJobs[0].Template.Spec.Completions, 0) != 7 {
		t.Errorf("scaling not propagated: %+v", got)
	}
}

// planSummary is what a test compares of a Plan.
type planSummary struct {
	Delete, Release []string
	Create          *copySummary
	Update          *copySummary
	ConfirmGone     bool
	ConfirmCurrent  bool
	AddFinalizer    bool
	RemoveFinalizer bool
	Waiting         bool
	State           string
	Status          *statusSummary
	ReportAfter     time.Duration
}

type copySummary struct {
	Suspended                  bool
	Finalizers                 []string
	RestartsOffset, TowardsMax string
	MaxRestarts                int32
}

type statusSummary struct {
	ObservedEpoch        int64
	Restarts, TowardsMax int32
	TerminalState        string
	Accepted             string // reason, "" when absent
	Deleted              bool
}

func summarize(p Plan) planSummary {
	names := func(l []*jobset.JobSet) []string {
		var out []string
		for _, js := range l {
			out = append(out, string(js.UID))
		}
		return out
	}
	copyOf := func(js *jobset.JobSet) *copySummary {
		if js == nil {
			return nil
		}
		c := &copySummary{
			Suspended:      js.IsSuspended(),
			Finalizers:     js.Finalizers,
			RestartsOffset: js.Annotations[fleet.RestartsOffsetAnnotation],
			TowardsMax:     js.Annotations[fleet.RestartsTowardsMaxOffsetAnnotation],
		}
		if js.Spec.FailurePolicy != nil {
			c.MaxRestarts = js.Spec.FailurePolicy.MaxRestarts
		}
		return c
	}
	s := planSummary{
		Delete: names(p.Delete), Release: names(p.Release), Create: copyOf(p.Create), Update: copyOf(p.Update),
		ConfirmGone: p.ConfirmDispatchGone, ConfirmCurrent: p.ConfirmDispatchCurrent,
		AddFinalizer: p.AddFinalizer, RemoveFinalizer: p.RemoveFinalizer, Waiting: p.Waiting != "", State: p.State,
		ReportAfter: p.ReportAfter,
	}
	if st := p.Status; st != nil {
		s.Status = &statusSummary{
			ObservedEpoch: st.ObservedEpoch, Restarts: st.JobSetStatus.Restarts, TowardsMax: st.JobSetStatus.RestartsCountTowardsMax,
			TerminalState: st.JobSetStatus.TerminalState, Deleted: meta.IsStatusConditionTrue(st.Conditions, fleet.DispatchDeleted),
		}
		if c := meta.FindStatusCondition(st.Conditions, fleet.DispatchAccepted); c != nil {
			s.Status.Accepted = c.Reason
		}
		if st.LastSyncTime == nil {
			s.Status.Accepted += " (no lastSyncTime)"
		}
	}
	return s
}

func TestComputePlan(t *testing.T) {
	report := []string{fleet.ReportFinalizer}
	d := testDispatch(2)
	d.Finalizers = []string{fleet.AgentFinalizer}
	d.Spec.JobSet.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 5}
	fresh := d.DeepCopy()
	fresh.Finalizers = nil

	ours := memberCopy(d)
	ours.UID = "ours"
	ours.Status.Restarts = 1

	// reported is d once the hub holds what memberCopy reports.
	reported := func(memberCopy *jobset.JobSet) *fleet.JobSetDispatch {
		r := d.DeepCopy()
		p := ComputePlan(Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now, Dispatch: r, Target: memberCopy, Copies: []jobset.JobSet{*memberCopy}, Jobs: map[types.UID]int{}})
		if p.Status != nil {
			r.Status = *p.Status
		}
		return r
	}
	with := func(js *jobset.JobSet, uid string, mutate func(*jobset.JobSet)) *jobset.JobSet {
		js = js.DeepCopy()
		js.UID = types.UID(uid)
		mutate(js)
		return js
	}
	legacy := with(ours, "legacy", func(js *jobset.JobSet) { js.Finalizers = nil })
	fresh0 := with(NewCopy(d, 0, 0), "fresh", func(*jobset.JobSet) {})
	progress := with(ours, "progress", func(js *jobset.JobSet) {
		js.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: "w", Active: 2}}
	})
	done := with(ours, "done", func(js *jobset.JobSet) { js.Status.TerminalState = string(jobset.JobSetCompleted) })
	stale := with(memberCopy(testDispatch(1)), "stale", func(*jobset.JobSet) {})
	staleGone := with(stale, "stale-gone", func(js *jobset.JobSet) { js.DeletionTimestamp = &now })
	foreign := jstesting.MakeJobSet("team", "train").UID("foreign").Obj()
	newer := with(memberCopy(testDispatch(3)), "newer", func(*jobset.JobSet) {})
	suspended := with(ours, "suspended", func(js *jobset.JobSet) { js.Spec.Suspend = ptr.To(true) })
	// A finished copy deleted by its TTL (foreground, Jobs gone).
	ttl := with(ours, "ttl", func(js *jobset.JobSet) {
		js.DeletionTimestamp = &now
		js.Status.TerminalState = string(jobset.JobSetCompleted)
	})
	// An unfinished copy deleted by hand (kubectl's background deletion).
	byHand := with(ours, "by-hand", func(js *jobset.JobSet) {
		js.DeletionTimestamp = &now
		js.Status.Restarts, js.Status.RestartsCountTowardsMax = 3, 2
	})
	byHandForeground := with(byHand, "by-hand", func(js *jobset.JobSet) {
		js.Finalizers = append(js.Finalizers, metav1.FinalizerDeleteDependents)
	})
	// A copy created again after one was deleted by hand.
	again := with(NewCopy(d, 3, 2), "again", func(js *jobset.JobSet) { js.Status.Restarts, js.Status.RestartsCountTowardsMax = 1, 1 })

	deleting := d.DeepCopy()
	deleting.DeletionTimestamp = &now
	finished := d.DeepCopy()
	finished.Status.ObservedEpoch = 2
	finished.Status.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
	finishedEarlierEpoch := finished.DeepCopy()
	finishedEarlierEpoch.Status.ObservedEpoch = 1
	// The hub holds the hand-deleted copy's restarts; the copy is gone.
	afterHandDelete := reported(byHand)

	tests := []struct {
		name string
		o    Observed
		want planSummary
	}{
		{
			name: "new dispatch: finalizer, create held by ReportFinalizer after a live check; Accepted comes with the copy's first status",
			o:    Observed{Dispatch: fresh},
			want: planSummary{
				AddFinalizer: true, ConfirmCurrent: true, State: StatePending,
				Create:      &copySummary{Finalizers: report, MaxRestarts: 5},
				ReportAfter: ReportInterval,
			},
		},
		{
			name: "copy just created: its first status waits to be merged with what follows",
			o:    Observed{Dispatch: d, Target: fresh0, Copies: []jobset.JobSet{*fresh0}, LastReport: now.Add(-300 * time.Millisecond)},
			want: planSummary{State: StateRunning, ReportAfter: 700 * time.Millisecond},
		},
		{
			name: "copy created a while ago: Accepted and its status, in one report",
			o:    Observed{Dispatch: d, Target: fresh0, Copies: []jobset.JobSet{*fresh0}, LastReport: now.Add(-2 * time.Second)},
			want: planSummary{State: StateRunning, Status: &statusSummary{ObservedEpoch: 2, Accepted: fleet.ReasonAccepted}},
		},
		{
			name: "progress right after a report: held back",
			o:    Observed{Dispatch: reported(ours), Target: progress, Copies: []jobset.JobSet{*progress}, LastReport: now.Add(-100 * time.Millisecond)},
			want: planSummary{State: StateRunning, ReportAfter: 900 * time.Millisecond},
		},
		{
			name: "a terminal state right after a report: reported at once",
			o:    Observed{Dispatch: reported(ours), Target: done, Copies: []jobset.JobSet{*done}, LastReport: now.Add(-100 * time.Millisecond)},
			want: planSummary{State: StateFinished, Status: &statusSummary{ObservedEpoch: 2, Restarts: 1, TerminalState: "Completed", Accepted: fleet.ReasonAccepted}},
		},
		{
			name: "running copy: status from the member",
			o:    Observed{Dispatch: d, Target: ours, Copies: []jobset.JobSet{*ours}},
			want: planSummary{State: StateRunning, Status: &statusSummary{ObservedEpoch: 2, Restarts: 1, Accepted: fleet.ReasonAccepted}},
		},
		{
			name: "copy made before ReportFinalizer: adopted",
			o:    Observed{Dispatch: d, Target: legacy, Copies: []jobset.JobSet{*legacy}},
			want: planSummary{
				State:  StateRunning,
				Update: &copySummary{Finalizers: report, MaxRestarts: 5},
				Status: &statusSummary{ObservedEpoch: 2, Restarts: 1, Accepted: fleet.ReasonAccepted},
			},
		},
		{
			name: "fenced copy: resuming it needs a live check of the dispatch",
			o:    Observed{Dispatch: reported(suspended), Target: suspended, Copies: []jobset.JobSet{*suspended}},
			want: planSummary{
				State: StateSuspended, ConfirmCurrent: true,
				Update: &copySummary{Finalizers: report, MaxRestarts: 5},
			},
		},
		{
			name: "finished copy deleted by its TTL before the hub knew: report, keep it",
			o:    Observed{Dispatch: d, Target: ttl, Copies: []jobset.JobSet{*ttl}, Jobs: map[types.UID]int{"ttl": 0}},
			want: planSummary{
				State: StateFinished, Waiting: true,
				Status: &statusSummary{ObservedEpoch: 2, Restarts: 1, TerminalState: "Completed", Accepted: fleet.ReasonAccepted},
			},
		},
		{
			name: "finished copy deleted by its TTL, the hub holds its result: release",
			o:    Observed{Dispatch: reported(ttl), Target: ttl, Copies: []jobset.JobSet{*ttl}, Jobs: map[types.UID]int{"ttl": 0}},
			want: planSummary{State: StateFinished, Release: []string{"ttl"}},
		},
		{
			name: "finished copy gone after its result reached the hub: not run again",
			o:    Observed{Dispatch: finished},
			want: planSummary{State: StateFinished},
		},
		{
			name: "copy missing after a finish in an earlier epoch: run this epoch",
			o:    Observed{Dispatch: finishedEarlierEpoch},
			want: planSummary{
				ConfirmCurrent: true, State: StatePending,
				Create:      &copySummary{Finalizers: report, MaxRestarts: 5},
				ReportAfter: ReportInterval,
			},
		},
		{
			name: "copy deleted by hand in the background: made foreground so its Jobs stop first",
			o:    Observed{Dispatch: reported(byHand), Target: byHand, Copies: []jobset.JobSet{*byHand}, Jobs: map[types.UID]int{"by-hand": 2}},
			want: planSummary{State: StateDeleting, Delete: []string{"by-hand"}, Waiting: true},
		},
		{
			name: "copy deleted by hand, Jobs being deleted: wait",
			o:    Observed{Dispatch: reported(byHand), Target: byHandForeground, Copies: []jobset.JobSet{*byHandForeground}, Jobs: map[types.UID]int{"by-hand": 2}},
			want: planSummary{State: StateDeleting, Waiting: true},
		},
		{
			name: "copy deleted by hand, Jobs gone, restarts not yet reported: report first",
			o:    Observed{Dispatch: d, Target: byHand, Copies: []jobset.JobSet{*byHand}, Jobs: map[types.UID]int{"by-hand": 0}},
			want: planSummary{
				State: StateDeleting, Waiting: true,
				Status: &statusSummary{ObservedEpoch: 2, Restarts: 3, TowardsMax: 2, Accepted: fleet.ReasonAccepted},
			},
		},
		{
			name: "copy deleted by hand, Jobs gone, restarts reported: release",
			o:    Observed{Dispatch: afterHandDelete, Target: byHand, Copies: []jobset.JobSet{*byHand}, Jobs: map[types.UID]int{"by-hand": 0}},
			want: planSummary{State: StateDeleting, Release: []string{"by-hand"}},
		},
		{
			name: "copy deleted by hand is gone: created again with its restarts carried",
			o:    Observed{Dispatch: afterHandDelete},
			want: planSummary{
				ConfirmCurrent: true, State: StatePending,
				Create:      &copySummary{Finalizers: report, RestartsOffset: "3", TowardsMax: "2", MaxRestarts: 3},
				ReportAfter: ReportInterval,
			},
		},
		{
			name: "copy created again: reports its restarts plus those carried",
			o:    Observed{Dispatch: afterHandDelete, Target: again, Copies: []jobset.JobSet{*again}},
			want: planSummary{State: StateRunning, Status: &statusSummary{ObservedEpoch: 2, Restarts: 4, TowardsMax: 3, Accepted: fleet.ReasonAccepted}},
		},
		{
			name: "foreign JobSet: Conflict, no takeover",
			o:    Observed{Dispatch: fresh, Target: foreign},
			want: planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonConflict}},
		},
		{
			name: "stale epoch at the origin: delete, wait, then create",
			o:    Observed{Dispatch: d, Target: stale, Copies: []jobset.JobSet{*stale}},
			want: planSummary{State: StatePending, Delete: []string{"stale"}, Waiting: true},
		},
		{
			name: "stale copy deleted, Jobs gone: released whatever it reported",
			o:    Observed{Dispatch: d, Target: staleGone, Copies: []jobset.JobSet{*staleGone}, Jobs: map[types.UID]int{"stale-gone": 0}},
			want: planSummary{State: StatePending, Release: []string{"stale-gone"}, Waiting: true},
		},
		{
			name: "newer epoch on the member: refuse",
			o:    Observed{Dispatch: d, Target: newer, Copies: []jobset.JobSet{*newer}},
			want: planSummary{State: StateRefused, Status: &statusSummary{Accepted: fleet.ReasonNewerEpoch}},
		},
		{
			name: "dispatch gone: delete orphan after a live check",
			o:    Observed{Copies: []jobset.JobSet{*ours}},
			want: planSummary{State: StateDeleting, Delete: []string{"ours"}, ConfirmGone: true, Waiting: true},
		},
		{
			name: "dispatch gone, orphan's Jobs gone: released after a live check",
			o:    Observed{Copies: []jobset.JobSet{*ttl}, Jobs: map[types.UID]int{"ttl": 0}},
			want: planSummary{State: StateDeleting, Release: []string{"ttl"}, ConfirmGone: true, Waiting: true},
		},
		{
			name: "dispatch deleting, copy present: delete and wait, report its status",
			o:    Observed{Dispatch: deleting, Target: ours, Copies: []jobset.JobSet{*ours}},
			want: planSummary{State: StateDeleting, Delete: []string{"ours"}, Waiting: true, Status: &statusSummary{ObservedEpoch: 2, Restarts: 1}},
		},
		{
			name: "dispatch deleting, copy's Jobs gone: released",
			o:    Observed{Dispatch: deleting, Target: ttl, Copies: []jobset.JobSet{*ttl}, Jobs: map[types.UID]int{"ttl": 0}},
			want: planSummary{State: StateDeleting, Release: []string{"ttl"}, Waiting: true, Status: &statusSummary{ObservedEpoch: 2, Restarts: 1, TerminalState: "Completed"}},
		},
		{
			name: "dispatch deleting, copy gone: Deleted, release",
			o:    Observed{Dispatch: deleting},
			want: planSummary{RemoveFinalizer: true, Status: &statusSummary{Deleted: true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Key, tc.o.ClusterName, tc.o.Now = "fleet-member-a/team.train", "a", now
			if diff := cmp.Diff(tc.want, summarize(ComputePlan(tc.o))); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewCopy(t *testing.T) {
	d := testDispatch(2)
	d.Spec.JobSet.Spec.FailurePolicy = &jobset.FailurePolicy{MaxRestarts: 2}
	for _, tc := range []struct {
		name                 string
		restarts, towardsMax int32
		want                 copySummary
	}{
		{"first copy", 0, 0, copySummary{Finalizers: []string{fleet.ReportFinalizer}, MaxRestarts: 2}},
		{"restarts that do not count", 4, 0, copySummary{Finalizers: []string{fleet.ReportFinalizer}, RestartsOffset: "4", TowardsMax: "0", MaxRestarts: 2}},
		{"some count", 4, 1, copySummary{Finalizers: []string{fleet.ReportFinalizer}, RestartsOffset: "4", TowardsMax: "1", MaxRestarts: 1}},
		{"never below zero", 5, 5, copySummary{Finalizers: []string{fleet.ReportFinalizer}, RestartsOffset: "5", TowardsMax: "5", MaxRestarts: 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := NewCopy(d, tc.restarts, tc.towardsMax)
			got := copySummary{
				Finalizers: js.Finalizers, RestartsOffset: js.Annotations[fleet.RestartsOffsetAnnotation],
				TowardsMax: js.Annotations[fleet.RestartsTowardsMaxOffsetAnnotation], MaxRestarts: js.Spec.FailurePolicy.MaxRestarts,
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("copy (-want +got):\n%s", diff)
			}
			if d.Spec.JobSet.Spec.FailurePolicy.MaxRestarts != 2 {
				t.Error("NewCopy modified the dispatch")
			}
			js.Status.Restarts, js.Status.RestartsCountTowardsMax = 1, 1
			st := fleet.ReportedStatus(js)
			if st.Restarts != tc.restarts+1 || st.RestartsCountTowardsMax != tc.towardsMax+1 {
				t.Errorf("reported restarts %d/%d, want %d/%d", st.Restarts, st.RestartsCountTowardsMax, tc.restarts+1, tc.towardsMax+1)
			}
		})
	}
}

func TestStatusWrittenOnlyOnChange(t *testing.T) {
	d := testDispatch(2)
	d.Finalizers = []string{fleet.AgentFinalizer}
	ours := memberCopy(d)
	o := Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now, Dispatch: d, Target: ours, Copies: []jobset.JobSet{*ours}}
	first := ComputePlan(o)
	if first.Status == nil {
		t.Fatal("first reconcile must write the status")
	}
	d.Status = *first.Status
	o.Now = metav1.NewTime(now.Add(time.Minute))
	if again := ComputePlan(o); again.Status != nil {
		t.Errorf("unchanged member status rewrote the dispatch status: %+v", again.Status)
	}
	ours.Status.TerminalState = string(jobset.JobSetCompleted)
	o.Target = ours
	if changed := ComputePlan(o); changed.Status == nil || changed.Status.JobSetStatus.TerminalState != "Completed" {
		t.Errorf("member status change not reported")
	}
}
