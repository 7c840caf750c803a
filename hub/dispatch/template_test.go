package dispatch

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
)

func TestTemplate(t *testing.T) {
	js := jstesting.MakeJobSet("team", "train").UID("uid-1").
		Label("app", "train").Label("fleet.jobset.x-k8s.io/cluster", "m1").
		Annotation("owner", "alice").Annotation(fleet.OnMemberLostAnnotation, fleet.OnMemberLostWait).
		Annotation("kubectl.kubernetes.io/last-applied-configuration", "{}").
		ManagedBy(fleet.ManagedByFleet).Suspend(true).FailurePolicy(&jobset.FailurePolicy{MaxRestarts: 5}).
		ReplicatedJob(jstesting.MakeReplicatedJob("w").Replicas(2).Obj()).
		Obj()
	tpl := Template(js, jobset.FleetStatus{Cluster: "m1", Epoch: 2, RestartsCarried: 3, RestartsCountTowardsMaxCarried: 2})
	if tpl.Spec.ManagedBy != nil {
		t.Error("the member copy must be left to the member's built-in controller")
	}
	if tpl.Spec.FailurePolicy.MaxRestarts != 3 {
		t.Errorf("maxRestarts = %d, want 5 - 2 carried", tpl.Spec.FailurePolicy.MaxRestarts)
	}
	if js.Spec.FailurePolicy.MaxRestarts != 5 {
		t.Error("Template must not modify the hub JobSet")
	}
	if d := cmp.Diff(map[string]string{"app": "train"}, tpl.Labels); d != "" {
		t.Errorf("labels: want the user's only (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"owner": "alice"}, tpl.Annotations); d != "" {
		t.Errorf("annotations: want the user's only (-want +got):\n%s", d)
	}
	if !ptr.Deref(tpl.Spec.Suspend, false) {
		t.Error("suspend must propagate")
	}
	js.Spec.FailurePolicy.MaxRestarts = 1
	if got := Template(js, jobset.FleetStatus{RestartsCountTowardsMaxCarried: 4}).Spec.FailurePolicy.MaxRestarts; got != 0 {
		t.Errorf("maxRestarts floor: got %d, want 0", got)
	}
	nsLabels := fleet.PodSecurityLabels(map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "team": "a"})
	d := NewDispatch(js, jobset.FleetStatus{Cluster: "m2", Epoch: 3}, nsLabels)
	type dispatch struct {
		Namespace, Name, OriginUIDLabel, FirstFinalizer string
		Epoch                                           int64
		Origin                                          fleet.Origin
		NamespaceLabels                                 map[string]string
	}
	want := dispatch{Namespace: "fleet-member-m2", Name: "team.train", OriginUIDLabel: "uid-1", FirstFinalizer: fleet.DispatchFinalizer,
		Epoch: 3, Origin: fleet.Origin{Namespace: "team", Name: "train", UID: "uid-1"},
		NamespaceLabels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}
	got := dispatch{Namespace: d.Namespace, Name: d.Name, OriginUIDLabel: d.Labels[fleet.OriginUIDLabel], FirstFinalizer: d.Finalizers[0],
		Epoch: d.Spec.Epoch, Origin: d.Spec.Origin, NamespaceLabels: d.Spec.NamespaceLabels}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewDispatch (-want +got):\n%s", diff)
	}
}
