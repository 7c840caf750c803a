package membership_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestJoinUnjoinIdempotent joins a member twice and unjoins it twice, on two
// real apiservers, and checks what exists after each step.
func TestJoinUnjoinIdempotent(t *testing.T) {
	clusters := testenv.StartN(t, "membership-hub", "membership-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	scheme := testenv.Scheme()
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	memberClient, err := client.New(member.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	opts := membership.Options{
		ClusterName:  "m1",
		Labels:       map[string]string{"region": "eu", "gpu": "a100"},
		HubServerURL: hub.Config.Host,
		HubCAData:    hub.Config.CAData,
	}
	memberNS := fleet.MemberNamespace("m1")
	inv := fleet.DefaultInventoryNamespace

	hubObjects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: memberNS}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentServiceAccount}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentRole}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: memberNS, Name: membership.AgentRole}},
		&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: inv, Name: membership.AgentRole + "-m1"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: inv, Name: membership.AgentRole + "-m1"}},
		&clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: inv, Name: "m1"}},
	}
	memberObjects := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.SystemNamespace}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}},
	}

	for i := range 2 {
		start := time.Now()
		kubeconfig, err := membership.Join(ctx, hub.Client, memberClient, opts)
		if err != nil {
			t.Fatalf("join #%d: %v", i+1, err)
		}
		t.Logf("join #%d took %s", i+1, time.Since(start))
		for _, obj := range hubObjects {
			if err := hub.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Errorf("join #%d: hub %T %s: %v", i+1, obj, client.ObjectKeyFromObject(obj), err)
			}
		}
		for _, obj := range memberObjects {
			if err := memberClient.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
				t.Errorf("join #%d: member %T %s: %v", i+1, obj, client.ObjectKeyFromObject(obj), err)
			}
		}
		cp := &clusterinventory.ClusterProfile{}
		must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: inv, Name: "m1"}, cp))
		type profile struct{ ClusterManager, ClusterManagerLabel, RegionLabel string }
		want := profile{ClusterManager: fleet.ClusterManagerName, ClusterManagerLabel: fleet.ClusterManagerName, RegionLabel: "eu"}
		got := profile{ClusterManager: cp.Spec.ClusterManager.Name, ClusterManagerLabel: cp.Labels[clusterinventory.LabelClusterManagerKey], RegionLabel: cp.Labels["region"]}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("ClusterProfile (-want +got):\n%s", d)
		}
		role := &rbacv1.Role{}
		must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: inv, Name: membership.AgentRole + "-m1"}, role))
		for _, rule := range role.Rules {
			if len(rule.ResourceNames) != 1 || rule.ResourceNames[0] != "m1" {
				t.Errorf("inventory Role not limited to the member's profile: %+v", role.Rules)
			}
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		must(t, memberClient.Get(ctx, client.ObjectKey{Name: "jobsets.jobset.x-k8s.io"}, crd))
		if !managedBy(crd, membership.FieldOwner) {
			t.Errorf("JobSet CRD not applied by %s: %v", membership.FieldOwner, crd.ManagedFields)
		}

		// The stored kubeconfig is the returned one, and its token works and
		// is the agent's.
		secret := &corev1.Secret{}
		must(t, memberClient.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}, secret))
		if string(secret.Data[fleet.HubKubeconfigKey]) != string(kubeconfig) {
			t.Error("member Secret does not hold the returned kubeconfig")
		}
		agentClient := clientFor(t, kubeconfig, scheme)
		if err := agentClient.Get(ctx, client.ObjectKey{Namespace: inv, Name: "m1"}, &clusterinventory.ClusterProfile{}); err != nil {
			t.Errorf("join #%d: agent cannot read its ClusterProfile: %v", i+1, err)
		}
		if err := agentClient.List(ctx, &corev1.SecretList{}, client.InNamespace(memberNS)); !apierrors.IsForbidden(err) {
			t.Errorf("join #%d: agent listing Secrets: want Forbidden, got %v", i+1, err)
		}
	}

	// A member joined before Join recorded its namespace's UID joins again:
	// its profile names this same cluster.
	forgetNamespaceUID := func() {
		for _, obj := range []client.Object{
			&clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: inv, Name: "m1"}},
			&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: inv, Name: membership.AgentRole + "-m1"}},
		} {
			must(t, hub.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj))
			patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
			annotations := obj.GetAnnotations()
			delete(annotations, membership.MemberNamespaceUIDAnnotation)
			obj.SetAnnotations(annotations)
			must(t, hub.Client.Patch(ctx, obj, patch))
		}
	}
	forgetNamespaceUID()
	if _, err := membership.Join(ctx, hub.Client, memberClient, opts); err != nil {
		t.Fatalf("join of a member joined before namespace UIDs were recorded: %v", err)
	}
	cp := &clusterinventory.ClusterProfile{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Namespace: inv, Name: "m1"}, cp))
	ns := &corev1.Namespace{}
	must(t, hub.Client.Get(ctx, client.ObjectKey{Name: memberNS}, ns))
	if got := cp.Annotations[membership.MemberNamespaceUIDAnnotation]; got != string(ns.UID) {
		t.Errorf("after the legacy join, the profile records namespace UID %q, want %q", got, ns.UID)
	}
	confirmWithoutForce := opts
	confirmWithoutForce.ConfirmCopiesStopped = true
	if _, err := membership.Join(ctx, hub.Client, memberClient, confirmWithoutForce); err == nil || !strings.Contains(err.Error(), "without --force") {
		t.Errorf("join --confirm-copies-stopped without --force: %v, want an error saying it needs --force", err)
	}

	// And unjoins as one: its namespace goes too (checked below).
	forgetNamespaceUID()
	for i := range 2 {
		if err := membership.Unjoin(ctx, hub.Client, memberClient, opts); err != nil {
			t.Fatalf("unjoin #%d: %v", i+1, err)
		}
		for _, obj := range append(hubObjects[1:], hubObjects[0]) {
			if err := goneOrTerminating(ctx, hub.Client, obj); err != nil {
				t.Errorf("unjoin #%d: hub: %v", i+1, err)
			}
		}
		for _, obj := range memberObjects {
			if err := goneOrTerminating(ctx, memberClient, obj); err != nil {
				t.Errorf("unjoin #%d: member: %v", i+1, err)
			}
		}
		// The CRDs stay (other JobSets may use them), and so does the shared
		// inventory namespace.
		must(t, memberClient.Get(ctx, client.ObjectKey{Name: "jobsets.jobset.x-k8s.io"}, &apiextensionsv1.CustomResourceDefinition{}))
		must(t, hub.Client.Get(ctx, client.ObjectKey{Name: inv}, &corev1.Namespace{}))
	}
}

// goneOrTerminating: envtest runs no namespace controller, so a deleted
// namespace stays Terminating.
func goneOrTerminating(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return err
	case obj.GetDeletionTimestamp() != nil:
		return nil
	}
	return fmt.Errorf("%T %s still exists", obj, client.ObjectKeyFromObject(obj))
}

func managedBy(obj client.Object, manager string) bool {
	for _, f := range obj.GetManagedFields() {
		if f.Manager == manager {
			return true
		}
	}
	return false
}

func clientFor(t *testing.T, kubeconfig []byte, scheme *runtime.Scheme) client.Client {
	t.Helper()
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	must(t, err)
	return c
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
