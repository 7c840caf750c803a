package agent

import (
	"context"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestReadKueueQuotas: on a member apiserver without Kueue the agent reads
// nothing and no error; once Kueue's CRDs are installed (after the agent's
// client first looked), it reads the LocalQueues and what their
// ClusterQueue has free from the status Kueue keeps (written here as
// Kueue's manager writes it; e2e/kueuemember runs the real manager).
func TestReadKueueQuotas(t *testing.T) {
	ctx := context.Background()
	member := testenv.Start(t, "kueue-quotas-member")
	q, err := readKueueQuotas(ctx, member.Client)
	if q != nil || err != nil {
		t.Fatalf("without Kueue: %+v, %v; want nothing and no error", q, err)
	}

	src, err := testenv.KueueSourceDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(member.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(src, "config", "components", "crd", "bases")}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatal(err)
	}
	obj := func(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
		u.SetAPIVersion(kueueAPIVersion)
		u.SetKind(kind)
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(member.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}))
	cq := obj("ClusterQueue", "", "team-a", map[string]any{
		"resourceGroups": []any{map[string]any{
			"coveredResources": []any{"cpu"},
			"flavors":          []any{map[string]any{"name": "default", "resources": []any{map[string]any{"name": "cpu", "nominalQuota": "8"}}}},
		}},
	})
	must(member.Client.Create(ctx, cq))
	must(member.Client.Create(ctx, obj("LocalQueue", "team", "team-a", map[string]any{"clusterQueue": "team-a"})))
	cq.Object["status"] = map[string]any{
		"conditions":         []any{map[string]any{"type": "Active", "status": "True", "reason": "Ready", "message": "Can admit new workloads", "lastTransitionTime": "2026-01-01T00:00:00Z"}},
		"flavorsReservation": []any{map[string]any{"name": "default", "resources": []any{map[string]any{"name": "cpu", "total": "5", "borrowed": "0"}}}},
		"pendingWorkloads":   int64(0), "reservingWorkloads": int64(1), "admittedWorkloads": int64(1),
	}
	must(member.Client.Status().Update(ctx, cq))

	q, err = readKueueQuotas(ctx, member.Client)
	if err != nil || q == nil {
		t.Fatalf("with Kueue: %+v, %v", q, err)
	}
	if len(q.LocalQueues) != 1 || q.LocalQueues[0].Namespace != "team" || q.LocalQueues[0].ClusterQueue != "team-a" {
		t.Errorf("LocalQueues %+v", q.LocalQueues)
	}
	if got := freeOf(t, *q, "team-a", "default")[corev1.ResourceCPU]; got.Cmp(resource.MustParse("3")) != 0 || q.ClusterQueues[0].Inactive {
		t.Errorf("ClusterQueue team-a: %+v; want active with 3 cpu free", q.ClusterQueues[0])
	}
}
