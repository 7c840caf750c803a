package charts

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// TestTenantRolesAggregate: on a real apiserver whose
// kube-controller-manager aggregates ClusterRoles, the hub's tenant roles
// (config/rbac/hub/tenant_roles.yaml, the same in the hub chart) fold into
// the built-in ones: a user bound to edit in a namespace creates, changes
// and deletes JobSets there and reads their PlacementDecisions; a user bound
// to view reads both and changes nothing; neither reaches another
// namespace. Cost: one apiserver and a controller-manager, ~10 s.
func TestTenantRolesAggregate(t *testing.T) {
	c := testenv.Start(t, "tenant-roles", testenv.WithControllerManager())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := run(t, tool(t, "kubectl"), "--kubeconfig", c.KubeconfigPath, "apply", "-f",
		filepath.Join("..", "config", "rbac", "hub", "tenant_roles.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"team-a", "team-b"} {
		if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	for user, role := range map[string]string{"alice": "edit", "bob": "view"} {
		if err := c.Client.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: user},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user string) client.Client {
		cfg := rest.CopyConfig(c.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
		cl, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	alice, bob := as("alice"), as("bob")
	newJobSet := func(ns, name string) *jobset.JobSet {
		return jstesting.MakeJobSet(ns, name).
			ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(1).Container("c", "busybox").Obj()).
			Obj()
	}

	// The aggregation controller fills edit and view asynchronously.
	testenv.Eventually(t, time.Minute, "edit to allow creating JobSets", func() error {
		return alice.Create(ctx, newJobSet("team-a", "train"))
	})
	js := &jobset.JobSet{}
	if err := alice.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "train"}, js); err != nil {
		t.Errorf("edit: get JobSet: %v", err)
	}
	js.Labels = map[string]string{"team": "a"}
	if err := alice.Update(ctx, js); err != nil {
		t.Errorf("edit: update JobSet: %v", err)
	}
	if err := alice.List(ctx, &clusterinventory.PlacementDecisionList{}, client.InNamespace("team-a")); err != nil {
		t.Errorf("edit: list PlacementDecisions: %v", err)
	}

	testenv.Eventually(t, time.Minute, "view to allow reading JobSets", func() error {
		return bob.List(ctx, &jobset.JobSetList{}, client.InNamespace("team-a"))
	})
	if err := bob.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "train"}, &jobset.JobSet{}); err != nil {
		t.Errorf("view: get JobSet: %v", err)
	}
	if err := bob.List(ctx, &clusterinventory.PlacementDecisionList{}, client.InNamespace("team-a")); err != nil {
		t.Errorf("view: list PlacementDecisions: %v", err)
	}
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want Forbidden", what, err)
		}
	}
	forbidden("view: create JobSet", bob.Create(ctx, newJobSet("team-a", "sneaky")))
	forbidden("view: update JobSet", bob.Update(ctx, js.DeepCopy()))
	forbidden("view: delete JobSet", bob.Delete(ctx, js.DeepCopy()))
	forbidden("view: create PlacementDecision", bob.Create(ctx, &clusterinventory.PlacementDecision{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "train"}, Decisions: []clusterinventory.ClusterDecision{},
	}))
	forbidden("edit in another namespace: create JobSet", alice.Create(ctx, newJobSet("team-b", "train")))
	forbidden("view in another namespace: list JobSets", bob.List(ctx, &jobset.JobSetList{}, client.InNamespace("team-b")))

	if err := alice.Delete(ctx, js); err != nil {
		t.Errorf("edit: delete JobSet: %v", err)
	}
	if t.Failed() {
		fmt.Println(c.ControllerManagerLog())
	}
}
