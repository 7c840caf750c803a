package v1alpha1_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	c, stop := testenv.StartMain("fleet-api")
	cluster = c
	code := m.Run()
	stop()
	os.Exit(code)
}

func dispatch() *fleet.JobSetDispatch {
	d := &fleet.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "team-a-pytorch"},
		Spec: fleet.JobSetDispatchSpec{
			Origin: fleet.Origin{Namespace: "team-a", Name: "pytorch", UID: "0b8c1a7e-1111-2222-3333-444455556666"},
			Epoch:  1,
			JobSet: fleet.JobSetTemplate{
				Labels: map[string]string{"app": "train"},
				Spec: jobset.JobSetSpec{
					Suspend: ptr.To(false),
					ReplicatedJobs: []jobset.ReplicatedJob{{
						Name:     "workers",
						Replicas: 2,
					}},
				},
			},
		},
	}
	d.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	return d
}

func TestDispatchRoundTripsSpecAndStatus(t *testing.T) {
	ctx := context.Background()
	d := dispatch()
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Status = fleet.JobSetDispatchStatus{
		ObservedEpoch:      1,
		ObservedGeneration: d.Generation,
		LastSyncTime:       ptr.To(metav1.Now()),
		JobSetStatus: jobset.JobSetStatus{
			Restarts:             1,
			TerminalState:        string(jobset.JobSetCompleted),
			ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "workers", Succeeded: 2}},
		},
	}
	if err := cluster.Client.Status().Update(ctx, d); err != nil {
		t.Fatalf("status subresource: %v", err)
	}
	got := &fleet.JobSetDispatch{}
	if err := cluster.Client.Get(ctx, clientKey(d), got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.JobSet.Spec.ReplicatedJobs[0].Replicas != 2 || got.Spec.JobSet.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers[0].Image != "busybox" {
		t.Errorf("JobSet spec not preserved: %+v", got.Spec.JobSet.Spec)
	}
	if got.Status.JobSetStatus.TerminalState != "Completed" || got.Status.JobSetStatus.ReplicatedJobsStatus[0].Succeeded != 2 {
		t.Errorf("status not preserved: %+v", got.Status)
	}
}

func TestDispatchEpochAndOriginAreImmutable(t *testing.T) {
	ctx := context.Background()
	d := dispatch()
	d.Name = "immutable"
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	d.Spec.Epoch = 2
	err := cluster.Client.Update(ctx, d)
	if err == nil || !strings.Contains(err.Error(), "spec.epoch") {
		t.Fatalf("changing the epoch: want an error naming spec.epoch, got %v", err)
	}
	d.Spec.Epoch = 1
	d.Spec.Origin.UID = "other"
	err = cluster.Client.Update(ctx, d)
	if err == nil || !strings.Contains(err.Error(), "spec.origin") {
		t.Fatalf("changing the origin: want an error naming spec.origin, got %v", err)
	}
}

func TestDispatchRejectsZeroEpoch(t *testing.T) {
	d := dispatch()
	d.Name = "zero-epoch"
	d.Spec.Epoch = 0
	err := cluster.Client.Create(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "spec.epoch") {
		t.Fatalf("want an error naming spec.epoch, got %v", err)
	}
}

// The hub writes a dispatch's spec whole and the agent its status:
// field ownership records each as one value (the CRD's atomic spec and
// status), not every field of the JobSet it carries, which would double
// the size of every write, watch event and stored copy of the dispatch.
func TestDispatchOwnershipNamesSpecAndStatusWhole(t *testing.T) {
	ctx := context.Background()
	d := dispatch()
	d.Name = "ownership"
	if err := cluster.Client.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Status = fleet.JobSetDispatchStatus{
		ObservedEpoch:      1,
		ObservedGeneration: d.Generation,
		Conditions:         []metav1.Condition{{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue, Reason: fleet.ReasonAccepted, LastTransitionTime: metav1.Now()}},
		JobSetStatus:       jobset.JobSetStatus{ReplicatedJobsStatus: []jobset.ReplicatedJobStatus{{Name: "workers", Active: 2}}},
	}
	if err := cluster.Client.Status().Patch(ctx, d, patch); err != nil {
		t.Fatal(err)
	}
	for _, e := range d.ManagedFields {
		var fields map[string]any
		if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &fields); err != nil {
			t.Fatal(err)
		}
		for _, top := range []string{"f:spec", "f:status"} {
			if v, ok := fields[top]; ok && len(v.(map[string]any)) != 0 {
				t.Errorf("manager %s (%s): %s recorded field by field: %s", e.Manager, e.Subresource, top, e.FieldsV1.GetRawString())
			}
		}
	}
}

func clientKey(d *fleet.JobSetDispatch) types.NamespacedName {
	return types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
}
