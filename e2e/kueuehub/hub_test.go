package kueuehub_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestKueueQuotaGatesDispatch: a ClusterQueue with quota for two JobSets,
// three submitted. Kueue admits two; the hub dispatches exactly those, with
// the flavor's node label in their pod templates, to the member whose nodes
// carry it. The third stays suspended and undispatched, saying which queue
// holds it, until one of the two completes on its member: the completion
// reaches Kueue through the mirrored status, releases the quota, and the
// third is admitted and dispatched.
func TestKueueQuotaGatesDispatch(t *testing.T) {
	startHub(t)
	ns := namespace(t, "kueue-quota")
	clusterQueue(t, ns, "quota", "fleet", "2", nil)
	join(t, "quota-other", "8", "other", map[string]string{"kueue-test": "quota"})
	join(t, "quota-fleet", "8", "fleet", map[string]string{"kueue-test": "quota"})

	var all []*jobset.JobSet
	for _, name := range []string{"first", "second", "third"} {
		js := queuedJobSet(ns, name, "quota", "1", "quota")
		create(t, js)
		all = append(all, js)
		if s := get(t, js); !ptr.Deref(s.Spec.Suspend, false) || ptr.Deref(s.Spec.ManagedBy, "") != fleet.ManagedByFleet {
			t.Fatalf("%s: Kueue's webhook must suspend it and the hub's claim it; suspend=%v managedBy=%v", name, s.Spec.Suspend, s.Spec.ManagedBy)
		}
		time.Sleep(1100 * time.Millisecond) // Kueue orders by creation time, to the second
	}

	// Two are admitted and dispatched, where the flavor's label points.
	testenv.Eventually(t, timeout, "two dispatched", func() error {
		for _, js := range all[:2] {
			d := dispatchOf(t, js, "quota-fleet")
			if d == nil {
				return fmt.Errorf("%s not dispatched to quota-fleet; conditions %+v", js.Name, get(t, js).Status.Conditions)
			}
		}
		return nil
	})
	for _, js := range all[:2] {
		d := dispatchOf(t, js, "quota-fleet")
		tmpl := d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
		if ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) || tmpl.NodeSelector[poolLabel] != "fleet" {
			t.Errorf("%s's member copy: suspend=%v nodeSelector=%v, want running with Kueue's %s=fleet",
				js.Name, d.Spec.JobSet.Spec.Suspend, tmpl.NodeSelector, poolLabel)
		}
		if len(dispatches(t, js)) != 1 {
			t.Errorf("%s has %d dispatches, want 1", js.Name, len(dispatches(t, js)))
		}
	}

	// The third waits at the hub, suspended and undispatched, and says why.
	third := all[2]
	testenv.Eventually(t, timeout, "third awaiting admission", func() error {
		c := meta.FindStatusCondition(get(t, third).Status.Conditions, fleet.ConditionDispatched)
		if c == nil || c.Status != metav1.ConditionFalse || c.Reason != fleet.ReasonAwaitingAdmission {
			return fmt.Errorf("Dispatched is %+v", c)
		}
		if !strings.Contains(c.Message, "LocalQueue quota") {
			return fmt.Errorf("message %q does not name the queue", c.Message)
		}
		return nil
	})
	testenv.Consistently(t, 3*time.Second, "third stays suspended and undispatched", func() error {
		if ds := dispatches(t, third); len(ds) > 0 {
			return fmt.Errorf("dispatched to %s while Kueue holds it", ds[0].Namespace)
		}
		if !ptr.Deref(get(t, third).Spec.Suspend, false) {
			return fmt.Errorf("admitted beyond the quota")
		}
		return nil
	})

	// The first runs, then completes on its member.
	first := dispatchOf(t, all[0], "quota-fleet")
	report(t, first, running(1))
	report(t, first, completed)
	testenv.Eventually(t, timeout, "Kueue sees the first finished", func() error {
		if !workloadFinished(t, all[0]) {
			return fmt.Errorf("the first's Workload is not Finished")
		}
		return nil
	})
	testenv.Eventually(t, timeout, "third admitted and dispatched", func() error {
		if d := dispatchOf(t, third, "quota-fleet"); d == nil {
			return fmt.Errorf("not dispatched; suspend=%v conditions %+v", get(t, third).Spec.Suspend, get(t, third).Status.Conditions)
		}
		return nil
	})
	if d := dispatchOf(t, third, "quota-fleet"); ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
		t.Error("the third's member copy is suspended")
	}
}

// TestKueuePreemptionSuspendsMemberCopy: a high-priority JobSet preempts a
// running low-priority one in a ClusterQueue with room for one. Kueue
// suspends the low one at the hub; the hub suspends its member copy; only
// once the member reports its Pods gone does Kueue release the quota, so
// the high one is dispatched after the low one's copy is stopped. The low
// one stays where it was, suspended, and runs there again when the high one
// completes.
func TestKueuePreemptionSuspendsMemberCopy(t *testing.T) {
	startHub(t)
	ns := namespace(t, "kueue-preempt")
	clusterQueue(t, ns, "preempt", "fleet", "1", map[string]any{"withinClusterQueue": "LowerPriority"})
	priorityClasses(t, map[string]int64{"fleet-low": 10, "fleet-high": 1000})
	join(t, "preempt-a", "8", "fleet", map[string]string{"kueue-test": "preempt"})

	low := queuedJobSet(ns, "low", "preempt", "1", "preempt")
	low.Labels["kueue.x-k8s.io/priority-class"] = "fleet-low"
	create(t, low)
	var lowCopy *fleet.JobSetDispatch
	testenv.Eventually(t, timeout, "low dispatched", func() error {
		if lowCopy = dispatchOf(t, low, "preempt-a"); lowCopy == nil {
			return fmt.Errorf("not dispatched; conditions %+v", get(t, low).Status.Conditions)
		}
		return nil
	})
	report(t, lowCopy, running(1))
	testenv.Eventually(t, timeout, "low's running Pod mirrored to the hub", func() error {
		if rs := get(t, low).Status.ReplicatedJobsStatus; len(rs) != 1 || rs[0].Active != 1 {
			return fmt.Errorf("low's replicatedJobsStatus %+v", rs)
		}
		return nil
	})

	high := queuedJobSet(ns, "high", "preempt", "1", "preempt")
	high.Labels["kueue.x-k8s.io/priority-class"] = "fleet-high"
	create(t, high)

	// Kueue preempts low: its member copy is told to suspend, and the high
	// one is not dispatched while the low one's Pods may run.
	testenv.Eventually(t, timeout, "low's member copy suspended", func() error {
		d := dispatchOf(t, low, "preempt-a")
		if d == nil || !ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
			return fmt.Errorf("low's dispatch is not suspended; low's suspend=%v", get(t, low).Spec.Suspend)
		}
		return nil
	})
	testenv.Consistently(t, 3*time.Second, "high waits while low's Pods run", func() error {
		if ds := dispatches(t, high); len(ds) > 0 {
			return fmt.Errorf("high dispatched to %s while low's Pods still run there", ds[0].Namespace)
		}
		return nil
	})
	// The member stops the copy's Pods and says so.
	report(t, lowCopy, running(0))
	var highCopy *fleet.JobSetDispatch
	testenv.Eventually(t, timeout, "high dispatched", func() error {
		if highCopy = dispatchOf(t, high, "preempt-a"); highCopy == nil {
			return fmt.Errorf("not dispatched; suspend=%v conditions %+v", get(t, high).Spec.Suspend, get(t, high).Status.Conditions)
		}
		return nil
	})
	// The low one stays placed, suspended where it was.
	if ds := dispatches(t, low); len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace("preempt-a") || !ptr.Deref(ds[0].Spec.JobSet.Spec.Suspend, false) {
		t.Fatalf("low's dispatches %v: want one, suspended, on preempt-a", ds)
	}

	// The high one completes; Kueue admits the low one again, and its copy
	// resumes where it is.
	report(t, highCopy, running(1))
	report(t, highCopy, completed)
	testenv.Eventually(t, timeout, "low resumed on its member", func() error {
		d := dispatchOf(t, low, "preempt-a")
		if d == nil || ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
			return fmt.Errorf("low's copy is not resumed; low's suspend=%v", get(t, low).Spec.Suspend)
		}
		return nil
	})
}

// workloadFinished reports whether Kueue's Workload of js is Finished.
func workloadFinished(t *testing.T, js *jobset.JobSet) bool {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	list.SetKind("WorkloadList")
	if err := hub.Client.List(context.Background(), list, client.InNamespace(js.Namespace)); err != nil {
		t.Fatal(err)
	}
	uid := get(t, js).UID
	for _, wl := range list.Items {
		for _, ref := range wl.GetOwnerReferences() {
			if ref.UID != uid {
				continue
			}
			conds, _, _ := unstructured.NestedSlice(wl.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Finished" && m["status"] == "True" {
					return true
				}
			}
		}
	}
	return false
}
