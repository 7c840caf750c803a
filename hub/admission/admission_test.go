package admission_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
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
		{"start timeout", map[string]string{fleet.StartTimeoutAnnotation: "15m"}, ""},
		{"start timeout off", map[string]string{fleet.StartTimeoutAnnotation: "0"}, ""},
		{"bad start timeout", map[string]string{fleet.StartTimeoutAnnotation: "soon"}, "metadata.annotations[fleet.jobset.x-k8s.io/start-timeout]"},
		{"negative start timeout", map[string]string{fleet.StartTimeoutAnnotation: "-1m"}, "metadata.annotations[fleet.jobset.x-k8s.io/start-timeout]"},
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

func TestValidateHubOwnedKeys(t *testing.T) {
	withMeta := func(labels, annotations map[string]string) *jobset.JobSet {
		return &jobset.JobSet{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations}}
	}
	legacy := withMeta(map[string]string{"fleet.jobset.x-k8s.io/cluster": "m1"}, nil)
	for _, tc := range []struct {
		name     string
		old, new *jobset.JobSet
		want     []string
	}{
		{"user annotations", nil, withMeta(nil, map[string]string{fleet.PinnedClusterAnnotation: "m1", fleet.OnMemberLostAnnotation: "Wait"}), nil},
		{"other keys", nil, withMeta(map[string]string{"app": "x"}, map[string]string{"team": "y"}), nil},
		{"hub label on create", nil, withMeta(map[string]string{"fleet.jobset.x-k8s.io/cluster": "m1"}, nil), []string{"metadata.labels[fleet.jobset.x-k8s.io/cluster]"}},
		{"hub annotation on create", nil, withMeta(nil, map[string]string{"fleet.jobset.x-k8s.io/epoch": "7"}), []string{"metadata.annotations[fleet.jobset.x-k8s.io/epoch]"}},
		{"legacy key kept", legacy, legacy, nil},
		{"legacy key changed", legacy, withMeta(map[string]string{"fleet.jobset.x-k8s.io/cluster": "m2"}, nil), []string{"metadata.labels[fleet.jobset.x-k8s.io/cluster]"}},
		{"legacy key removed", legacy, withMeta(nil, nil), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range admission.ValidateHubOwnedKeys(tc.old, tc.new) {
				got = append(got, e.Field)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

// TestValidateNamespace: the hub's extra denied namespaces add to the
// built-in ones, never replace them.
func TestValidateNamespace(t *testing.T) {
	for _, extra := range [][]string{nil, {"foo", "batch-*"}} {
		for ns, denied := range map[string]bool{
			"kube-system": true, "kube-public": true, "kube-node-lease": true, "jobset-fleet-system": true, "fleet-system": true, "fleet-member-m1": true,
			"default": false, "team-a": false, "fleet-members": false,
			"foo": len(extra) > 0, "batch-x": len(extra) > 0,
		} {
			if got := len(admission.ValidateNamespace(ns, extra)) > 0; got != denied {
				t.Errorf("extra %v, namespace %s: denied = %t, want %t", extra, ns, got, denied)
			}
		}
	}
}

func TestValidateResourcesExist(t *testing.T) {
	members := []inventory.Member{
		{Name: "a", Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), "nvidia.com/gpu": resource.MustParse("0")}},
		{Name: "b", Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi")}},
	}
	spec := &jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{{Name: "w"}}}
	spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceEphemeralStorage: resource.MustParse("1Gi"), "example.com/fpga": resource.MustParse("1")},
		Limits:   corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")},
	}}}
	var got []string
	for _, e := range admission.ValidateResourcesExist(spec, members) {
		got = append(got, e.Field+": "+e.Detail)
	}
	want := []string{"spec.replicatedJobs[0].template.spec.template.spec.containers[0].resources.requests[example.com/fpga]: no member cluster of the fleet has resource example.com/fpga"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	if errs := admission.ValidateResourcesExist(spec, nil); len(errs) != 0 {
		t.Errorf("a fleet without members must reject nothing: %v", errs)
	}
}

// TestHubAdmission runs the generated webhook configuration against a real
// apiserver: a plain upstream JobSet is claimed for the fleet and defaulted;
// invalid ones are rejected with field paths.
func TestHubAdmission(t *testing.T) {
	c := testenv.Start(t, "hub-admission", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.ServeWebhooks(ctx, admission.Options{}.SetupWithManager); err != nil {
		t.Fatal(err)
	}

	js := jstesting.MakeJobSet("default", "plain").
		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(2).Container("c", "busybox").Obj()).
		Obj()
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
	if diff := cmp.Diff([]string{fleet.JobSetFinalizer}, got.Finalizers); diff != "" {
		t.Errorf("finalizers (-want +got):\n%s", diff)
	}

	// The fleet's own keys are not the user's.
	edited := got.DeepCopy()
	edited.Labels = map[string]string{"fleet.jobset.x-k8s.io/cluster": "elsewhere"}
	if err := c.Client.Update(ctx, edited); err == nil || !strings.Contains(err.Error(), "metadata.labels[fleet.jobset.x-k8s.io/cluster]") {
		t.Errorf("editing a hub-owned label: %v", err)
	}
	// Nor are system namespaces the fleet's to run.
	system := js.DeepCopy()
	system.Namespace = "kube-system"
	if err := c.Client.Create(ctx, system); err == nil || !strings.Contains(err.Error(), "metadata.namespace") {
		t.Errorf("a JobSet in kube-system: %v", err)
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

// TestHubAdmissionNamespaceBoundary: on a real apiserver with the hub's
// webhooks, a JobSet gets no more than its hub namespace allows. Its pod
// templates meet the namespace's Pod Security level, with the message the
// apiserver's own Pod Security admission gives a Pod, and the hub's extra
// denied namespaces add to the built-in ones.
func TestHubAdmissionNamespaceBoundary(t *testing.T) {
	c := testenv.Start(t, "hub-admission-ns", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "hub-webhook")))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.ServeWebhooks(ctx, admission.Options{DeniedNamespaces: []string{"foo"}}.SetupWithManager); err != nil {
		t.Fatal(err)
	}
	for name, labels := range map[string]map[string]string{
		"locked": {"pod-security.kubernetes.io/enforce": "restricted"},
		"foo":    nil,
	} {
		if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			t.Fatal(err)
		}
	}
	jobSet := func(ns, name string, edit func(*corev1.PodSpec)) *jobset.JobSet {
		js := jstesting.MakeJobSet(ns, name).
			ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(1).Container("c", "busybox").Obj()).
			Obj()
		if edit != nil {
			edit(&js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec)
		}
		return js
	}

	t.Run("pod security", func(t *testing.T) {
		withHostRoot := func(s *corev1.PodSpec) { privileged(s); hostRoot(s) }
		// What the apiserver's Pod Security admission says of such a Pod.
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "locked", Name: "p"}, Spec: podSpec(withHostRoot)}
		podErr := c.Client.Create(ctx, pod)
		_, psaMessage, ok := strings.Cut(fmt.Sprint(podErr), "is forbidden: ")
		if !ok || !strings.HasPrefix(psaMessage, `violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true)`) {
			t.Fatalf("the apiserver's Pod Security admission on a privileged Pod: %v", podErr)
		}

		err := c.Client.Create(ctx, jobSet("locked", "privileged", withHostRoot))
		want := "spec.replicatedJobs[0].template.spec.template: Forbidden: " + psaMessage
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a privileged JobSet in a restricted namespace: error %v, want one containing %q", err, want)
		}
		if err := c.Client.Create(ctx, jobSet("locked", "compliant", restrictedCompliant)); err != nil {
			t.Errorf("a restricted-compliant JobSet: %v", err)
		}
		if err := c.Client.Create(ctx, jobSet("default", "privileged", withHostRoot)); err != nil {
			t.Errorf("a privileged JobSet in an unlabelled (privileged) namespace: %v", err)
		}
	})

	t.Run("denied namespaces add to built-ins", func(t *testing.T) {
		for _, ns := range []string{"kube-system", "foo"} {
			if err := c.Client.Create(ctx, jobSet(ns, "denied", nil)); err == nil || !strings.Contains(err.Error(), "metadata.namespace") {
				t.Errorf("a JobSet in %s with --denied-namespaces=foo: %v", ns, err)
			}
		}
	})
}
