package membership_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// TestPreflight checks, on real apiservers, that join's preflight names
// each problem (a bad cluster name, a loopback hub address, a member CRD
// that the fleet's would conflict with) and that Join refuses such a member
// before it writes anything on the hub.
func TestPreflight(t *testing.T) {
	clusters := testenv.StartN(t, "preflight-hub", "preflight-member")
	hub, member := clusters[0], clusters[1]
	ctx := context.Background()
	scheme := testenv.Scheme()
	must(t, apiextensionsv1.AddToScheme(scheme))
	memberAdmin, err := client.New(member.Config, client.Options{Scheme: scheme})
	must(t, err)

	bad := membership.Options{ClusterName: "Member_1", HubServerURL: "https://127.0.0.1:6443"}
	err = membership.Preflight(ctx, hub.Config, member.Config, bad)
	for _, want := range []string{`cluster name "Member_1" is not a DNS-1123 label`, "is a loopback address", membership.AllowLoopbackHubServerFlag} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("preflight of %+v: want %q, got %v", bad, want, err)
		}
	}
	if err := membership.Preflight(ctx, hub.Config, member.Config, membership.Options{ClusterName: strings.Repeat("a", 60), HubServerURL: "https://hub:6443"}); err == nil ||
		!strings.Contains(err.Error(), "too long") {
		t.Errorf("preflight of a name whose hub namespace is too long: %v", err)
	}
	good := membership.Options{ClusterName: "m1", HubServerURL: hub.Config.Host, HubCAData: hub.Config.CAData, AllowLoopbackHubServer: true}
	must(t, membership.Preflight(ctx, hub.Config, member.Config, good))

	// The member's JobSet CRD (testenv installs the fleet's) also stores
	// objects as v1alpha1, which the fleet's does not serve: applying the
	// fleet's would fail.
	old := &apiextensionsv1.CustomResourceDefinition{}
	must(t, memberAdmin.Get(ctx, client.ObjectKey{Name: "jobsets.jobset.x-k8s.io"}, old))
	for i := range old.Spec.Versions {
		old.Spec.Versions[i].Storage = false
	}
	old.Spec.Versions = append(old.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{Name: "v1alpha1", Served: true, Storage: true,
		Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}}})
	must(t, memberAdmin.Update(ctx, old))
	testenv.Eventually(t, 30*time.Second, "the old CRD's stored versions", func() error {
		if err := memberAdmin.Get(ctx, client.ObjectKeyFromObject(old), old); err != nil {
			return err
		}
		if !slices.Contains(old.Status.StoredVersions, "v1alpha1") {
			return errors.New("v1alpha1 not stored yet")
		}
		return nil
	})
	err = membership.Preflight(ctx, hub.Config, member.Config, good)
	if err == nil || !strings.Contains(err.Error(), "CRD jobsets.jobset.x-k8s.io") || !strings.Contains(err.Error(), "stored as v1alpha1") {
		t.Errorf("preflight with a conflicting CRD: %v", err)
	}
	if _, err := membership.Join(ctx, hub.Client, memberAdmin, good); err == nil || !strings.Contains(err.Error(), "stored as v1alpha1") {
		t.Errorf("join with a conflicting CRD: %v", err)
	}
	if err := hub.Client.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: "m1"}, &clusterinventory.ClusterProfile{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused join wrote the ClusterProfile: %v", err)
	}
	if err := hub.Client.Get(ctx, client.ObjectKey{Name: fleet.MemberNamespace("m1")}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("refused join created the member namespace: %v", err)
	}
}
