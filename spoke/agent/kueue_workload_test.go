package agent

import (
	"maps"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// workloadOf is a Workload as Kueue makes it for JobSet owner: controlled
// by it, labelled with its UID.
func workloadOf(owner *jobset.JobSet, active *bool, marked bool, conds ...string) kueueWorkload {
	wl := kueueWorkload{Metadata: metav1.ObjectMeta{
		Namespace: owner.Namespace, Name: "jobset-" + owner.Name + "-1a2b3", ResourceVersion: "7",
		Labels: map[string]string{kueueJobUIDLabel: string(owner.UID)},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: jobset.GroupVersion.String(), Kind: "JobSet", Name: owner.Name, UID: owner.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}}
	wl.Spec.Active = active
	if marked {
		wl.Metadata.Annotations = map[string]string{KueueDeactivatedAnnotation: "fleet-member-a/team.train"}
	}
	for _, typ := range conds {
		meta.SetStatusCondition(&wl.Status.Conditions, metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: typ})
	}
	return wl
}

// kueueCopy is the member copy of testDispatch naming LocalQueue team-a.
func kueueCopy(d *fleet.JobSetDispatch) *jobset.JobSet {
	js := memberCopy(d)
	js.Labels[fleet.KueueQueueNameLabel] = "team-a"
	return js
}

// TestKueueWorkloadChange: the agent deactivates the Workload of its copy
// while the hub wants the copy suspended, activates it again only if it
// deactivated it, and never touches another job's Workload.
func TestKueueWorkloadChange(t *testing.T) {
	ours := kueueCopy(testDispatch(1))
	finished := ours.DeepCopy()
	finished.Status.TerminalState = string(jobset.JobSetCompleted)
	userJobSet := ours.DeepCopy() // same name, not made by the agent
	delete(userJobSet.Annotations, fleet.DispatchAnnotation)
	delete(userJobSet.Labels, fleet.OriginUIDLabel)
	other := ours.DeepCopy()
	other.UID = "other-uid"

	ofOther := workloadOf(other, nil, false)
	ofJob := workloadOf(ours, nil, false)
	ofJob.Metadata.OwnerReferences[0].APIVersion, ofJob.Metadata.OwnerReferences[0].Kind = "batch/v1", "Job"
	notController := workloadOf(ours, nil, false)
	notController.Metadata.OwnerReferences[0].Controller = nil

	const (
		none = iota
		deactivate
		activate
	)
	cases := []struct {
		name         string
		copy         *jobset.JobSet
		hubSuspended bool
		wl           kueueWorkload
		want         int
	}{
		{"hub suspends an admitted copy: deactivate", ours, true, workloadOf(ours, nil, false, "QuotaReserved", "Admitted"), deactivate},
		{"hub suspends a copy waiting in the queue: deactivate", ours, true, workloadOf(ours, ptr.To(true), false), deactivate},
		{"hub suspends, already deactivated by the agent", ours, true, workloadOf(ours, ptr.To(false), true), none},
		{"hub suspends, deactivated by Kueue or an admin: left alone", ours, true, workloadOf(ours, ptr.To(false), false), none},
		{"hub resumes a copy the agent deactivated: activate", ours, false, workloadOf(ours, ptr.To(false), true, "Evicted"), activate},
		{"hub resumes, someone activated it already: the mark goes", ours, false, workloadOf(ours, ptr.To(true), true), activate},
		{"hub resumes, deactivated by Kueue or an admin: left alone", ours, false, workloadOf(ours, ptr.To(false), false), none},
		{"hub wants it running and it is active", ours, false, workloadOf(ours, nil, false, "Admitted"), none},
		{"finished Workload", ours, true, workloadOf(ours, nil, false, "Finished"), none},
		{"finished copy", finished, true, workloadOf(finished, nil, false), none},
		{"Workload of another JobSet of the same name", ours, true, ofOther, none},
		{"Workload of a Job", ours, true, ofJob, none},
		{"Workload owned but not controlled by the copy", ours, true, notController, none},
		{"JobSet not made by the agent", userJobSet, true, workloadOf(userJobSet, nil, false), none},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := KueueWorkloadChange(tc.copy, tc.hubSuspended, &tc.wl)
			got := none
			switch {
			case ch == nil:
			case !ch.Active && ch.Mark == tc.copy.Annotations[fleet.DispatchAnnotation]:
				got = deactivate
			case ch.Active && ch.Mark == "":
				got = activate
			default:
				t.Fatalf("inconsistent change %+v", ch)
			}
			if got != tc.want {
				t.Fatalf("change %+v, want %v", ch, []string{"none", "deactivate", "activate"}[tc.want])
			}
			if ch != nil && (ch.Name != tc.wl.Metadata.Name || ch.Namespace != tc.wl.Metadata.Namespace || ch.ResourceVersion != "7") {
				t.Errorf("change %+v does not name the Workload at the version read", ch)
			}
		})
	}
}

// TestPlanKueueWorkloads: the plan of a tracked Kueue-managed copy carries
// the Workload changes; activating one waits for a live read of the
// dispatch (it starts work); a copy the hub suspends whose Workload Kueue
// has not made yet is looked at again; a copy no Kueue manages gets none.
func TestPlanKueueWorkloads(t *testing.T) {
	running := testDispatch(1)
	suspended := testDispatch(1)
	suspended.Spec.JobSet.Spec.Suspend = ptr.To(true)
	plan := func(d *fleet.JobSetDispatch, kc KueueCopy, copySuspended bool) Plan {
		c := kueueCopy(d)
		c.Spec.Suspend = ptr.To(copySuspended)
		for i := range kc.Workloads {
			kc.Workloads[i] = workloadOf(c, kc.Workloads[i].Spec.Active, len(kc.Workloads[i].Metadata.Annotations) > 0)
		}
		return ComputePlan(Observed{Key: "fleet-member-a/team.train", ClusterName: "a", Now: now,
			Dispatch: d, Target: c, Copies: []jobset.JobSet{*c}, Kueue: kc})
	}
	wl := func(active bool, marked bool) kueueWorkload {
		return workloadOf(&jobset.JobSet{}, ptr.To(active), marked)
	}

	p := plan(suspended, KueueCopy{Managed: true, Workloads: []kueueWorkload{wl(true, false)}}, false)
	if len(p.Workloads) != 1 || p.Workloads[0].Active || p.Update != nil {
		t.Errorf("hub suspends a running copy: Workloads %+v, Update %v; want one deactivation and the copy's suspend left to Kueue", p.Workloads, p.Update != nil)
	}
	p = plan(running, KueueCopy{Managed: true, Workloads: []kueueWorkload{wl(false, true)}}, true)
	if len(p.Workloads) != 1 || !p.Workloads[0].Active || !p.ConfirmDispatchCurrent {
		t.Errorf("hub resumes: Workloads %+v, ConfirmDispatchCurrent %v; want one activation after a live read", p.Workloads, p.ConfirmDispatchCurrent)
	}
	p = plan(suspended, KueueCopy{Managed: true}, true)
	if len(p.Workloads) != 0 || p.ReportAfter != KueueRecheckInterval {
		t.Errorf("no Workload yet: Workloads %+v, ReportAfter %v; want a look again after %v", p.Workloads, p.ReportAfter, KueueRecheckInterval)
	}
	p = plan(suspended, KueueCopy{Managed: true, Workloads: []kueueWorkload{wl(false, true)}}, true)
	if len(p.Workloads) != 0 || p.ReportAfter != 0 {
		t.Errorf("stopped: Workloads %+v, ReportAfter %v; want nothing to do", p.Workloads, p.ReportAfter)
	}
	p = plan(suspended, KueueCopy{Workloads: []kueueWorkload{wl(true, false)}}, false)
	if len(p.Workloads) != 0 || p.Update == nil || !p.Update.IsSuspended() {
		t.Errorf("no Kueue: Workloads %+v; want none, and the copy suspended itself", p.Workloads)
	}
}

// TestFenceKueueChanges: a fenced agent deactivates the Workload of every
// live, unfinished fleet copy its member's Kueue manages, admitted or
// held, and no other Workload; it leaves those copies, whose Workloads are
// or become inactive, for Kueue to suspend.
func TestFenceKueueChanges(t *testing.T) {
	const memberNS = "fleet-member-a"
	named := func(name string, mutate func(*jobset.JobSet)) *jobset.JobSet {
		d := testDispatch(1)
		d.Spec.Origin.Name, d.Name = name, "team."+name
		js := kueueCopy(d)
		js.UID = "uid-" + types.UID(name)
		if mutate != nil {
			mutate(js)
		}
		return js
	}
	admitted := named("admitted", nil)
	held := named("held", func(js *jobset.JobSet) { js.Spec.Suspend = ptr.To(true) })
	noQueue := named("no-queue", func(js *jobset.JobSet) { delete(js.Labels, fleet.KueueQueueNameLabel) })
	finished := named("finished", func(js *jobset.JobSet) { js.Status.TerminalState = string(jobset.JobSetFailed) })
	deleting := named("deleting", func(js *jobset.JobSet) { js.DeletionTimestamp = &now })
	otherHub := named("other-hub", func(js *jobset.JobSet) {
		js.Annotations[fleet.DispatchAnnotation] = "fleet-member-b/team.other-hub"
	})
	users := named("users", func(js *jobset.JobSet) { delete(js.Annotations, fleet.DispatchAnnotation) })
	already := named("already", nil)

	var jobSets []jobset.JobSet
	var workloads []kueueWorkload
	for _, js := range []*jobset.JobSet{admitted, held, noQueue, finished, deleting, otherHub, users, already} {
		jobSets = append(jobSets, *js)
		wl := workloadOf(js, nil, false)
		if js == already {
			wl = workloadOf(js, ptr.To(false), true)
		}
		workloads = append(workloads, wl)
	}
	orphan := workloadOf(named("orphan", nil), nil, false) // its JobSet is not on the member
	workloads = append(workloads, orphan)

	changes, byKueue := FenceKueueChanges(jobSets, workloads, memberNS)
	if want := map[types.UID]bool{admitted.UID: true, held.UID: true, already.UID: true}; !maps.Equal(byKueue, want) {
		t.Errorf("stopped by Kueue: %v, want %v", byKueue, want)
	}
	got := map[string]bool{}
	for _, ch := range changes {
		if ch.Active || ch.Mark == "" {
			t.Errorf("%s: change %+v, want a marked deactivation", ch.Name, ch)
		}
		got[ch.Name] = true
	}
	want := map[string]bool{workloadOf(admitted, nil, false).Metadata.Name: true, workloadOf(held, nil, false).Metadata.Name: true}
	if !maps.Equal(got, want) {
		t.Errorf("deactivated %v, want %v", got, want)
	}
}
