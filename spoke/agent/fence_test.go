package agent

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
)

func TestShouldFence(t *testing.T) {
	for _, tc := range []struct {
		since time.Duration
		want  bool
	}{{0, false}, {29 * time.Second, false}, {30 * time.Second, true}, {time.Hour, true}} {
		if got := ShouldFence(tc.since, 30*time.Second); got != tc.want {
			t.Errorf("ShouldFence(%s, 30s) = %v, want %v", tc.since, got, tc.want)
		}
	}
}

func TestFenceActions(t *testing.T) {
	type opt func(*jobset.JobSet)
	suspended := func(j *jobset.JobSet) { j.Spec.Suspend = ptr.To(true) }
	deleting := func(j *jobset.JobSet) { j.DeletionTimestamp = &now }
	foreground := func(j *jobset.JobSet) { j.Finalizers = append(j.Finalizers, metav1.FinalizerDeleteDependents) }
	finished := func(j *jobset.JobSet) { j.Status.TerminalState = string(jobset.JobSetCompleted) }
	js := func(name, dispatch string, opts ...opt) jobset.JobSet {
		w := jstesting.MakeJobSet("ns", name).UID(types.UID(name)).Suspend(false)
		if dispatch != "" {
			w.Annotation(fleet.DispatchAnnotation, dispatch)
		}
		j := w.Obj()
		for _, o := range opts {
			o(j)
		}
		return *j
	}
	all := []jobset.JobSet{
		js("fleet-running", "fleet-member-a/ns.x"),
		js("fleet-suspended", "fleet-member-a/ns.y", suspended),
		js("fleet-deleting-jobs-gone", "fleet-member-a/ns.z", deleting),
		js("fleet-deleting-background", "fleet-member-a/ns.b", deleting),
		js("fleet-deleting-foreground", "fleet-member-a/ns.f", deleting, foreground),
		js("fleet-finished", "fleet-member-a/ns.d", finished),
		js("other-member", "fleet-member-b/ns.x"),
		js("local", ""),
	}
	jobs := map[types.UID]int{"fleet-deleting-background": 2, "fleet-deleting-foreground": 2}
	names := func(l []*jobset.JobSet) []string {
		out := []string{}
		for _, j := range l {
			out = append(out, j.Name)
		}
		return out
	}
	for _, tc := range []struct {
		action               FenceAction
		wantSuspend, wantDel []string
	}{
		{FenceSuspend, []string{"fleet-running"}, []string{"fleet-deleting-background"}},
		{FenceDelete, []string{}, []string{"fleet-running", "fleet-suspended", "fleet-deleting-background"}},
	} {
		suspend, del := FenceActions(all, jobs, "fleet-member-a", tc.action)
		if diff := cmp.Diff(tc.wantSuspend, names(suspend)); diff != "" {
			t.Errorf("%s: suspend (-want +got):\n%s", tc.action, diff)
		}
		if diff := cmp.Diff(tc.wantDel, names(del)); diff != "" {
			t.Errorf("%s: delete (-want +got):\n%s", tc.action, diff)
		}
	}
	if _, err := ParseFenceAction("pause"); err == nil {
		t.Error("ParseFenceAction accepted an unknown action")
	}
}

func TestLivenessRestore(t *testing.T) {
	c := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	l := newLiveness(c)
	// A previous process renewed 20s ago: 10s more and the agent fences,
	// not 30s after it started.
	l.restore(c.Now(), 20*time.Second)
	c.Step(9 * time.Second)
	if ShouldFence(l.sinceRenewal(), 30*time.Second) {
		t.Fatalf("fenced %s after the recorded renewal", l.sinceRenewal())
	}
	c.Step(time.Second)
	if !ShouldFence(l.sinceRenewal(), 30*time.Second) {
		t.Fatalf("not fenced %s after the recorded renewal", l.sinceRenewal())
	}
	// A renewal sent before the restored time does not move it back.
	l.markRenewed(c.Now().Add(-time.Minute))
	if got := l.sinceRenewal(); got != 30*time.Second {
		t.Errorf("since renewal %s after an older renewal, want 30s", got)
	}
	l.markRenewed(c.Now())
	if got := l.sinceRenewal(); got != 0 {
		t.Errorf("since renewal %s right after a renewal", got)
	}
}
