package membership_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestRotationAndDrain: cordon, drain and uncordon change only the two
// labels of the member's ClusterProfile, with hub credentials alone; drain
// lists the member's dispatches, says which started, and returns once none
// is left, or at its timeout with what remains.
func TestRotationAndDrain(t *testing.T) {
	hub := testenv.Start(t, "rotation-hub")
	member := testenv.Start(t, "rotation-member")
	ctx := context.Background()
	opts := membership.Options{ClusterName: "m1", HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, SkipCRDs: true, Labels: map[string]string{"region": "eu"}}
	_, err := membership.Join(ctx, hub.Client, member.Client, opts)
	must(t, err)
	labels := func() map[string]string {
		cp := &clusterinventory.ClusterProfile{}
		must(t, hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, cp))
		out := map[string]string{}
		for _, k := range []string{"region", fleet.CordonedLabel, fleet.DrainingLabel} {
			if v, ok := cp.Labels[k]; ok {
				out[k] = v
			}
		}
		return out
	}
	rotation := membership.Options{ClusterName: "m1"}
	steps := []struct {
		to   membership.Rotation
		want map[string]string
	}{
		{membership.Cordoned, map[string]string{"region": "eu", fleet.CordonedLabel: "true"}},
		{membership.Cordoned, map[string]string{"region": "eu", fleet.CordonedLabel: "true"}},
		{membership.Draining, map[string]string{"region": "eu", fleet.CordonedLabel: "true", fleet.DrainingLabel: "true"}},
		{membership.Cordoned, map[string]string{"region": "eu", fleet.CordonedLabel: "true"}},
		{membership.InRotation, map[string]string{"region": "eu"}},
	}
	for _, s := range steps {
		must(t, membership.SetRotation(ctx, hub.Client, rotation, s.to))
		if diff := cmp.Diff(s.want, labels()); diff != "" {
			t.Errorf("%s: labels (-want +got):\n%s", s.to, diff)
		}
	}
	if err := membership.SetRotation(ctx, hub.Client, membership.Options{ClusterName: "nope"}, membership.Cordoned); err == nil || !strings.Contains(err.Error(), "member nope is not in the fleet") {
		t.Errorf("cordoning an unknown member: %v", err)
	}

	// Two dispatches: one the member reports started, one it does not.
	for _, d := range []struct {
		name    string
		started bool
	}{{"running", true}, {"waiting", false}} {
		obj := &fleet.JobSetDispatch{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace("m1"), Name: fleet.DispatchName("team", d.name)},
			Spec: fleet.JobSetDispatchSpec{
				Origin: fleet.Origin{Namespace: "team", Name: d.name, UID: types.UID("uid-" + d.name)},
				Epoch:  1,
				JobSet: fleet.JobSetTemplate{Spec: jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{oneJob()}}},
			},
		}
		must(t, hub.Client.Create(ctx, obj))
		if d.started {
			obj.Status.Conditions = []metav1.Condition{{Type: fleet.DispatchStarted, Status: metav1.ConditionTrue, Reason: "PodsRan", LastTransitionTime: metav1.Now()}}
			must(t, hub.Client.Status().Update(ctx, obj))
		}
	}
	var out bytes.Buffer
	err = membership.Drain(ctx, hub.Client, rotation, membership.DrainOptions{Timeout: 300 * time.Millisecond, Interval: 100 * time.Millisecond, Out: &out})
	t.Logf("drain output:\n%s", out.String())
	if !errors.Is(err, membership.ErrNotDrained) || !strings.Contains(err.Error(), "2 dispatches (1 started, 1 not started, 0 finished)") {
		t.Errorf("drain with two dispatches left: %v", err)
	}
	if got := labels(); got[fleet.DrainingLabel] != "true" || got[fleet.CordonedLabel] != "true" {
		t.Errorf("drain must leave the member cordoned and draining, labels %v", got)
	}
	for _, want := range []string{"team/running", "started: left to finish", "team/waiting", "not started"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("drain output lacks %q:\n%s", want, out.String())
		}
	}
	if n := strings.Count(out.String(), "JOBSET"); n != 1 {
		t.Errorf("drain printed the unchanged list %d times, want once:\n%s", n, out.String())
	}

	// unjoin --drain drains first: not drained in time, it unjoins nothing.
	unjoin := membership.Options{ClusterName: "m1", Progress: &out,
		Drain: &membership.DrainOptions{Timeout: 300 * time.Millisecond, Interval: 100 * time.Millisecond}}
	out.Reset()
	if err := membership.Unjoin(ctx, hub.Client, member.Client, unjoin); !errors.Is(err, membership.ErrNotDrained) {
		t.Errorf("unjoin --drain with dispatches left: want ErrNotDrained, got %v", err)
	}
	if !strings.Contains(out.String(), "team/waiting") {
		t.Errorf("unjoin --drain shows no progress:\n%s", out.String())
	}
	must(t, hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, &clusterinventory.ClusterProfile{}))

	// The hub withdraws the waiting one and the running one finishes (its
	// dispatch stays until its hub JobSet goes): nothing is left to run, so
	// the drain returns and the unjoin goes on.
	go func() {
		time.Sleep(500 * time.Millisecond)
		_ = hub.Client.Delete(ctx, &fleet.JobSetDispatch{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.MemberNamespace("m1"), Name: fleet.DispatchName("team", "waiting")}})
		running := &fleet.JobSetDispatch{}
		if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace("m1"), Name: fleet.DispatchName("team", "running")}, running); err != nil {
			t.Errorf("reading the running dispatch: %v", err)
			return
		}
		running.Status.JobSetStatus.TerminalState = string(jobset.JobSetCompleted)
		if err := hub.Client.Status().Update(ctx, running); err != nil {
			t.Errorf("finishing the running dispatch: %v", err)
		}
	}()
	out.Reset()
	unjoin.Drain.Timeout = 30 * time.Second
	must(t, membership.Unjoin(ctx, hub.Client, member.Client, unjoin))
	t.Logf("unjoin --drain output:\n%s", out.String())
	if !strings.Contains(out.String(), "team/waiting") || !strings.Contains(out.String(), "m1: nothing left to run (1 finished)") {
		t.Errorf("unjoin --drain output lacks the dispatches or the end:\n%s", out.String())
	}
	if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, &clusterinventory.ClusterProfile{}); !apierrors.IsNotFound(err) {
		t.Errorf("profile after unjoin --drain: want NotFound, got %v", err)
	}
}
