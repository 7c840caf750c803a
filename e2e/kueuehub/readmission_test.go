package kueuehub_test

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestKueueReadmissionPlacesAgain: Kueue preempts a JobSet admitted on
// flavor A (member readmit-a) before any of its Pods started. Its copy on
// readmit-a is removed, not kept suspended there; the JobSet that preempted
// it is dispatched only once readmit-a confirms that copy gone; and when
// Kueue admits the preempted JobSet again, on flavor B now, the hub places
// it against that admission: on readmit-b. It never has two dispatches.
func TestKueueReadmissionPlacesAgain(t *testing.T) {
	startHub(t)
	ns := namespace(t, "kueue-readmit")
	priorityClasses(t, map[string]int64{"readmit-low": 10, "readmit-high": 1000})
	clusterQueueOf(t, ns, "readmit", map[string]any{"preemption": map[string]any{"withinClusterQueue": "LowerPriority"}},
		flavor{Name: "readmit-a", NodeLabels: map[string]any{poolLabel: "readmit-a"}, CPU: "2"},
		flavor{Name: "readmit-b", NodeLabels: map[string]any{poolLabel: "readmit-b"}, CPU: "1"})
	join(t, "readmit-a", "8", "readmit-a", map[string]string{"kueue-test": "readmit"})
	join(t, "readmit-b", "8", "readmit-b", map[string]string{"kueue-test": "readmit"})

	low := queuedJobSet(ns, "low", "readmit", "1", "readmit")
	low.Labels["kueue.x-k8s.io/priority-class"] = "readmit-low"
	create(t, low)
	var lowCopy *fleet.JobSetDispatch
	testenv.Eventually(t, timeout, "low dispatched to readmit-a", func() error {
		if lowCopy = dispatchOf(t, low, "readmit-a"); lowCopy == nil {
			return fmt.Errorf("not dispatched; conditions %+v", get(t, low).Status.Conditions)
		}
		return nil
	})
	// Accepted on the member; its Pod is created but never runs.
	report(t, lowCopy, pending)
	// Kueue counts a preempted JobSet's quota as released once the hub's
	// status shows no active Job: wait until it shows the member's.
	testenv.Eventually(t, timeout, "low's pending Pod mirrored to the hub", func() error {
		if rs := get(t, low).Status.ReplicatedJobsStatus; len(rs) != 1 || rs[0].Active != 1 {
			return fmt.Errorf("low's replicatedJobsStatus %+v", rs)
		}
		return nil
	})

	// high needs 2 cpu: only flavor A holds that, so Kueue preempts low.
	high := queuedJobSet(ns, "high", "readmit", "2", "readmit")
	high.Labels["kueue.x-k8s.io/priority-class"] = "readmit-high"
	create(t, high)
	testenv.Eventually(t, timeout, "low's copy on readmit-a being removed", func() error {
		d := dispatchOf(t, low, "readmit-a")
		if d == nil || d.DeletionTimestamp == nil {
			return fmt.Errorf("low's dispatch on readmit-a is not being deleted; low's suspend=%v", get(t, low).Spec.Suspend)
		}
		return nil
	})
	c := meta.FindStatusCondition(get(t, low).Status.Conditions, fleet.ConditionDispatched)
	if c == nil || c.Reason != fleet.ReasonAwaitingAdmission {
		t.Errorf("low's Dispatched is %+v, want AwaitingAdmission", c)
	}
	testenv.Consistently(t, 3*time.Second, "high waits while low's copy may exist", func() error {
		if ds := dispatches(t, high); len(ds) > 0 {
			return fmt.Errorf("high dispatched to %s before readmit-a confirmed low's copy gone", ds[0].Namespace)
		}
		if ds := dispatches(t, low); len(ds) > 1 {
			return fmt.Errorf("low has %d dispatches", len(ds))
		}
		return nil
	})

	reportDeleted(t, lowCopy)
	testenv.Eventually(t, timeout, "high dispatched to readmit-a", func() error {
		if dispatchOf(t, high, "readmit-a") == nil {
			return fmt.Errorf("not dispatched; suspend=%v conditions %+v", get(t, high).Spec.Suspend, get(t, high).Status.Conditions)
		}
		return nil
	})
	testenv.Eventually(t, timeout, "low placed again, on readmit-b", func() error {
		d := dispatchOf(t, low, "readmit-b")
		if d == nil {
			return fmt.Errorf("not on readmit-b; suspend=%v conditions %+v", get(t, low).Spec.Suspend, get(t, low).Status.Conditions)
		}
		if ds := dispatches(t, low); len(ds) != 1 {
			return fmt.Errorf("low has %d dispatches, want 1", len(ds))
		}
		return nil
	})
	d := dispatchOf(t, low, "readmit-b")
	tmpl := d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
	if ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) || tmpl.NodeSelector[poolLabel] != "readmit-b" {
		t.Errorf("low's new copy: suspend=%v nodeSelector=%v, want running with flavor B's %s=readmit-b",
			d.Spec.JobSet.Spec.Suspend, tmpl.NodeSelector, poolLabel)
	}
	if s := get(t, low).Status; s.Fleet == nil || s.Fleet.Cluster != "readmit-b" || s.Fleet.Epoch < 2 || s.Restarts != 0 {
		t.Errorf("low's status %+v: want placed on readmit-b, a new epoch, no restart", s)
	}
}
