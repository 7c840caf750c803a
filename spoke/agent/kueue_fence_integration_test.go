package agent

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestFenceStopsKueueCopy: on a member with the real Kueue manager, a
// fleet copy naming a LocalQueue is admitted and resumed by Kueue. The
// agent is fenced: the copy must stop and stay stopped, though Kueue
// resumes any job whose Workload it admitted: its Workload is deactivated
// (marked for the agent to activate again), Kueue evicts it, suspends the
// copy and releases its quota, and the copy stays suspended.
func TestFenceStopsKueueCopy(t *testing.T) {
	ctx := context.Background()
	member := testenv.Start(t, "kueue-fence-member")
	k, err := testenv.StartKueue(ctx, member, testenv.KueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	c := member.Client

	d := testDispatch(1)
	mc := kueueCopy(d)
	mc.UID = ""
	mc.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	kueueObj := func(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		u.SetAPIVersion(kueueAPIVersion)
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: mc.Namespace}},
		kueueObj("ResourceFlavor", "", "default", map[string]any{}),
		kueueObj("ClusterQueue", "", "team-a", map[string]any{
			"namespaceSelector": map[string]any{},
			"resourceGroups": []any{map[string]any{
				"coveredResources": []any{"cpu"},
				"flavors":          []any{map[string]any{"name": "default", "resources": []any{map[string]any{"name": "cpu", "nominalQuota": "4"}}}},
			}},
		}),
		kueueObj("LocalQueue", mc.Namespace, "team-a", map[string]any{"clusterQueue": "team-a"}),
		mc,
	} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}
	current := func() *jobset.JobSet {
		t.Helper()
		js := &jobset.JobSet{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(mc), js); err != nil {
			t.Fatal(err)
		}
		return js
	}
	workload := func() *kueueWorkload {
		t.Helper()
		list := &unstructured.UnstructuredList{}
		list.SetAPIVersion(kueueAPIVersion)
		list.SetKind("WorkloadList")
		if err := c.List(ctx, list, client.InNamespace(mc.Namespace)); err != nil {
			t.Fatal(err)
		}
		js := current()
		for i := range list.Items {
			var wl kueueWorkload
			if err := fromUnstructured(&list.Items[i], &wl); err != nil {
				t.Fatal(err)
			}
			if wl.ownedBy(js) {
				return &wl
			}
		}
		return nil
	}
	testenv.Eventually(t, 30*time.Second, "Kueue admits and resumes the copy", func() error {
		if wl := workload(); wl == nil || !meta.IsStatusConditionTrue(wl.Status.Conditions, "Admitted") {
			return fmt.Errorf("Workload not admitted yet")
		}
		if current().IsSuspended() {
			return fmt.Errorf("copy still suspended")
		}
		return nil
	})

	f := &fencer{member: c, memberNamespace: d.Namespace, action: FenceSuspend}
	if err := f.enforce(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the copy suspended", func() error {
		if !current().IsSuspended() {
			return fmt.Errorf("copy running")
		}
		return nil
	})
	testenv.Consistently(t, 3*time.Second, "the copy stays suspended", func() error {
		if !current().IsSuspended() {
			return fmt.Errorf("Kueue resumed the fenced copy")
		}
		return nil
	})
	wl := workload()
	if wl == nil || wl.active() || wl.Metadata.Annotations[KueueDeactivatedAnnotation] != d.Namespace+"/"+d.Name {
		t.Fatalf("Workload not deactivated by the agent: %v", wl != nil && !wl.active())
	}
	if meta.IsStatusConditionTrue(wl.Status.Conditions, "QuotaReserved") || !meta.IsStatusConditionTrue(wl.Status.Conditions, "Evicted") {
		t.Errorf("Workload not evicted, or still holds quota: %+v", wl.Status.Conditions)
	}
}
