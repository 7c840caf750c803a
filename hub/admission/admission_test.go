package admission_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
)

func TestClaimForFleet(t *testing.T) {
	for _, tc := range []struct {
		in, want *string
	}{
		{nil, ptr.To(fleet.ManagedByFleet)},
		{ptr.To(""), ptr.To(fleet.ManagedByFleet)},
		{ptr.To(jobset.JobSetControllerName), ptr.To(fleet.ManagedByFleet)},
		{ptr.To("kueue.x-k8s.io/multikueue"), ptr.To("kueue.x-k8s.io/multikueue")},
	} {
		js := &jobset.JobSet{}
		js.Spec.ManagedBy = tc.in
		admission.ClaimForFleet(js)
		if *js.Spec.ManagedBy != *tc.want {
			t.Errorf("ClaimForFleet(%v) = %q, want %q", ptr.Deref(tc.in, "<nil>"), *js.Spec.ManagedBy, *tc.want)
		}
	}
}

func TestValidateFleetAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		wantPath    string
	}{
		{"valid", map[string]string{fleet.ClusterSelectorAnnotation: "region in (eu,us),!spot", fleet.PinnedClusterAnnotation: "member-1", fleet.OnMemberLostAnnotation: "Fail"}, ""},
		{"bad selector", map[string]string{fleet.ClusterSelectorAnnotation: "region in (eu"}, "metadata.annotations[fleet.jobset.x-k8s.io/cluster-selector]"},
		{"bad pin", map[string]string{fleet.PinnedClusterAnnotation: "Member_1"}, "metadata.annotations[fleet.jobset.x-k8s.io/pinned-cluster]"},
		{"bad policy", map[string]string{fleet.OnMemberLostAnnotation: "Retry"}, "metadata.annotations[fleet.jobset.x-k8s.io/on-member-lost]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := admission.ValidateFleetAnnotations(tc.annotations)
			if tc.wantPath == "" {
				if len(errs) != 0 {
					t.Errorf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.wantPath {
				t.Errorf("errors %v, want one at %s", errs, tc.wantPath)
			}
		})
	}
}

// TestHubAdmission runs the generated webhook configuration against a real
// apiserver: a plain upstream JobSet is claimed for the fleet and defaulted;
// invalid ones are rejected with field paths.
func TestHubAdmission(t *testing.T) {
	c := testenv.Start(t, "hub-admission", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.ServeWebhooks(ctx, admission.SetupWithManager); err != nil {
		t.Fatal(err)
	}

	js := &jobset.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "plain"}}
	rj := jobset.ReplicatedJob{Name: "workers", Replicas: 2}
	rj.Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	js.Spec.ReplicatedJobs = []jobset.ReplicatedJob{rj}
	err := c.Client.Create(ctx, js.DeepCopy())
	if err != nil {
		t.Fatalf("creating a plain JobSet: %v", err)
	}
	got := &jobset.JobSet{}
	if err := c.Client.Get(ctx, client.ObjectKeyFromObject(js), got); err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(got.Spec.ManagedBy, "") != fleet.ManagedByFleet {
		t.Errorf("managedBy = %v, want %q", got.Spec.ManagedBy, fleet.ManagedByFleet)
	}
	if got.Spec.SuccessPolicy == nil || got.Spec.ReplicatedJobs[0].GroupName != jobset.DefaultGroupName || got.Spec.Network == nil {
		t.Errorf("defaults not applied: %+v", got.Spec)
	}

	// A full update that omits managedBy keeps it.
	got.Spec.ManagedBy = nil
	got.Labels = map[string]string{"touched": "yes"}
	if err := c.Client.Update(ctx, got); err != nil {
		t.Errorf("update without managedBy: %v", err)
	}

	bad := js.DeepCopy()
	bad.Name = "bad"
	bad.Annotations = map[string]string{fleet.ClusterSelectorAnnotation: "region in (eu"}
	bad.Spec.SuccessPolicy = &jobset.SuccessPolicy{Operator: jobset.OperatorAll, TargetReplicatedJobs: []string{"nope"}}
	err = c.Client.Create(ctx, bad)
	if err == nil {
		t.Fatal("an invalid JobSet was admitted")
	}
	for _, want := range []string{"metadata.annotations[fleet.jobset.x-k8s.io/cluster-selector]", "spec.successPolicy.targetReplicatedJobs"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
