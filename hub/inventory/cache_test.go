package inventory_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// TestHubSeesOnlyHeartbeatLeases: with the hub's generated ClusterRole
// and its cache options, on a real apiserver, the hub caches the members'
// heartbeat Leases and can read no other Lease of the cluster.
func TestHubSeesOnlyHeartbeatLeases(t *testing.T) {
	c := testenv.Start(t, "hub-leases")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The hub's identity: the generated ClusterRole, bound to a user the
	// test impersonates.
	const hubUser = "jobset-fleet-hub-test"
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "hub", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		r := &rbacv1.ClusterRole{}
		if err := yaml.Unmarshal(doc, r); err != nil {
			t.Fatal(err)
		}
		if r.Kind == "ClusterRole" {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no ClusterRole in config/rbac/hub/role.yaml")
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: hubUser}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := c.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	lease := func(ns, name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	heartbeat := lease(fleet.MemberNamespace("m1"), fleet.HeartbeatLeaseName)
	other := lease("team", "other-lease")
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: heartbeat.Namespace}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other.Namespace}},
		heartbeat, other,
	} {
		if err := c.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	hubConfig := rest.CopyConfig(c.Config)
	hubConfig.Impersonate = rest.ImpersonationConfig{UserName: hubUser}
	hubCache, err := cache.New(hubConfig, cache.Options{Scheme: testenv.Scheme(), ByObject: inventory.CacheByObject(fleet.DefaultInventoryNamespace)})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := hubCache.Start(ctx); err != nil {
			t.Errorf("hub cache: %v", err)
		}
	}()
	if !hubCache.WaitForCacheSync(ctx) {
		t.Fatal("the hub's cache did not start")
	}
	// Listing starts the Lease informer; it syncs only if the hub may
	// list and watch heartbeat Leases.
	leases := &coordinationv1.LeaseList{}
	if err := hubCache.List(ctx, leases); err != nil {
		t.Fatalf("listing Leases from the hub's cache: %v", err)
	}
	var cached []string
	for _, l := range leases.Items {
		cached = append(cached, l.Namespace+"/"+l.Name)
	}
	if !slices.Contains(cached, heartbeat.Namespace+"/"+heartbeat.Name) || slices.Contains(cached, other.Namespace+"/"+other.Name) {
		t.Errorf("the hub's cache holds Leases %v, want %s/%s and not %s/%s", cached, heartbeat.Namespace, heartbeat.Name, other.Namespace, other.Name)
	}

	hubClient, err := client.New(hubConfig, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	if err := hubClient.Get(ctx, client.ObjectKeyFromObject(heartbeat), &coordinationv1.Lease{}); err != nil {
		t.Errorf("the hub reading a heartbeat Lease live: %v", err)
	}
	if err := hubClient.Get(ctx, client.ObjectKeyFromObject(other), &coordinationv1.Lease{}); !apierrors.IsForbidden(err) {
		t.Errorf("the hub reading Lease %s/%s: %v, want Forbidden", other.Namespace, other.Name, err)
	}
	if err := hubClient.List(ctx, &coordinationv1.LeaseList{}); !apierrors.IsForbidden(err) {
		t.Errorf("the hub listing every Lease: %v, want Forbidden", err)
	}
}
