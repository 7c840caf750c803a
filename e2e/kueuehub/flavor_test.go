package kueuehub_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestKueueFlavorPerMember: the recipe of docs/kueue.md. One ResourceFlavor
// per member (nodeLabels fleet.MemberNodeLabel=<member>, plus the pool label
// and a toleration for the members' tainted nodes), a ClusterQueue with 1
// cpu of each: a per-member quota. Three JobSets of 1 cpu: one runs on each
// member, the one its flavor names; the third waits suspended at the hub;
// when the one on fm-1 completes, the third is admitted on fm-1's flavor
// and runs there. The copies carry the flavor's pool label and toleration
// (without the toleration no member's nodes would take them) but not the
// member key, which no node has.
func TestKueueFlavorPerMember(t *testing.T) {
	startHub(t)
	ns := namespace(t, "kueue-flavor")
	taint := corev1.Taint{Key: "example.com/dedicated", Value: "fleet", Effect: corev1.TaintEffectNoSchedule}
	toleration := map[string]any{"key": taint.Key, "operator": "Equal", "value": taint.Value, "effect": string(taint.Effect)}
	memberFlavor := func(member string) flavor {
		return flavor{Name: member, CPU: "1", Tolerations: []any{toleration},
			NodeLabels: map[string]any{fleet.MemberNodeLabel: member, poolLabel: "fm"}}
	}
	clusterQueueOf(t, ns, "per-member", map[string]any{}, memberFlavor("fm-1"), memberFlavor("fm-2"))
	// fm-2 has more room: placement alone would prefer it.
	join(t, "fm-1", "4", "fm", map[string]string{"kueue-test": "flavor"}, taint)
	join(t, "fm-2", "8", "fm", map[string]string{"kueue-test": "flavor"}, taint)

	var all []*jobset.JobSet
	for _, name := range []string{"first", "second", "third"} {
		js := queuedJobSet(ns, name, "per-member", "1", "flavor")
		create(t, js)
		all = append(all, js)
		time.Sleep(1100 * time.Millisecond) // Kueue orders by creation time, to the second
	}
	// Kueue tries the flavors in order: the first gets fm-1's, the second
	// fm-2's.
	for i, member := range []string{"fm-1", "fm-2"} {
		js := all[i]
		testenv.Eventually(t, timeout, js.Name+" dispatched to "+member, func() error {
			if ds := dispatches(t, js); len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace(member) {
				return fmt.Errorf("dispatches %v; conditions %+v", namespaces(ds), get(t, js).Status.Conditions)
			}
			return nil
		})
		checkCopy(t, dispatchOf(t, js, member), taint)
	}
	third := all[2]
	testenv.Consistently(t, 3*time.Second, "third waits suspended at the hub", func() error {
		if ds := dispatches(t, third); len(ds) > 0 {
			return fmt.Errorf("dispatched to %s beyond the members' quotas", ds[0].Namespace)
		}
		if !ptr.Deref(get(t, third).Spec.Suspend, false) {
			return fmt.Errorf("admitted beyond the members' quotas")
		}
		if c := meta.FindStatusCondition(get(t, third).Status.Conditions, fleet.ConditionDispatched); c == nil || c.Reason != fleet.ReasonAwaitingAdmission {
			return fmt.Errorf("Dispatched is %+v", c)
		}
		return nil
	})

	first := dispatchOf(t, all[0], "fm-1")
	report(t, first, running(1))
	report(t, first, completed)
	testenv.Eventually(t, timeout, "third runs on fm-1, whose flavor freed", func() error {
		if ds := dispatches(t, third); len(ds) != 1 || ds[0].Namespace != fleet.MemberNamespace("fm-1") {
			return fmt.Errorf("dispatches %v; suspend=%v conditions %+v", namespaces(dispatches(t, third)), get(t, third).Spec.Suspend,
				get(t, third).Status.Conditions)
		}
		return nil
	})
	checkCopy(t, dispatchOf(t, third, "fm-1"), taint)
	if c := meta.FindStatusCondition(get(t, third).Status.Conditions, fleet.ConditionDispatched); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("third's Dispatched is %+v", c)
	}
}

// checkCopy asserts a member copy runs with the flavor's pool label and
// toleration and without the member key.
func checkCopy(t *testing.T, d *fleet.JobSetDispatch, taint corev1.Taint) {
	t.Helper()
	pod := d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec
	if ptr.Deref(d.Spec.JobSet.Spec.Suspend, false) {
		t.Errorf("%s: the copy is suspended", d.Namespace)
	}
	if _, ok := pod.NodeSelector[fleet.MemberNodeLabel]; ok || pod.NodeSelector[poolLabel] != "fm" {
		t.Errorf("%s: the copy's nodeSelector is %v, want %s=fm and no %s", d.Namespace, pod.NodeSelector, poolLabel, fleet.MemberNodeLabel)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Key == taint.Key && tol.Value == taint.Value && tol.Effect == taint.Effect
	}) {
		t.Errorf("%s: the copy's tolerations %v do not tolerate the flavor's taint %v", d.Namespace, pod.Tolerations, taint)
	}
}

func namespaces(ds []fleet.JobSetDispatch) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Namespace)
	}
	return strings.Join(out, ",")
}
