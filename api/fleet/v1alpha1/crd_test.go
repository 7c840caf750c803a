package v1alpha1_test

import (
	"context"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
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

func dispatch() *fleetv1alpha1.JobSetDispatch {
	d := &fleetv1alpha1.JobSetDispatch{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "team-a-pytorch"},
		Spec: fleetv1alpha1.JobSetDispatchSpec{
			Origin: fleetv1alpha1.Origin{Namespace: "team-a", Name: "pytorch", UID: "0b8c1a7e-1111-2222-3333-444455556666"},
			Epoch:  1,
			JobSet: fleetv1alpha1.JobSetTemplate{
				Labels: map[string]string{"app": "train"},
				Spec: v1alpha2.JobSetSpec{
					Suspend: ptr.To(false),
					ReplicatedJobs: []v1alpha2.ReplicatedJob{{
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
	d.Status = fleetv1alpha1.JobSetDispatchStatus{
		ObservedEpoch:      1,
		ObservedGeneration: d.Generation,
		LastSyncTime:       ptr.To(metav1.Now()),
		JobSetStatus: v1alpha2.JobSetStatus{
			Restarts:             1,
			TerminalState:        string(v1alpha2.JobSetCompleted),
			ReplicatedJobsStatus: []v1alpha2.ReplicatedJobStatus{{Name: "workers", Succeeded: 2}},
		},
	}
	if err := cluster.Client.Status().Update(ctx, d); err != nil {
		t.Fatalf("status subresource: %v", err)
	}
	got := &fleetv1alpha1.JobSetDispatch{}
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

func clientKey(d *fleetv1alpha1.JobSetDispatch) types.NamespacedName {
	return types.NamespacedName{Namespace: d.Namespace, Name: d.Name}
}
