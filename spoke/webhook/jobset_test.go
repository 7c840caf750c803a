package webhook

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
)

// Defaults are upstream's: managedBy stays unset, retention defaults to
// Delete.
func TestJobSetDefault(t *testing.T) {
	js := jstesting.MakeJobSet("", "pytorch").
		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(1).Container("c", "busybox").VolumeMount("data", "/d").Obj()).
		FailurePolicy(&jobset.FailurePolicy{Rules: []jobset.FailurePolicyRule{{Action: jobset.RestartJobSet}}}).
		VolumeClaimPolicies(jobset.VolumeClaimPolicy{Templates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}}).
		Obj()
	if err := (jobSetWebhook{}).Default(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	want := jobset.JobSetSpec{
		ReplicatedJobs: []jobset.ReplicatedJob{{
			Name: "workers", Replicas: 1, GroupName: "default",
			Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				CompletionMode: ptr.To(batchv1.IndexedCompletion),
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyOnFailure,
					Containers:    []corev1.Container{{Name: "c", Image: "busybox", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/d"}}}},
				}},
			}},
		}},
		Network:       &jobset.Network{EnableDNSHostnames: ptr.To(true), PublishNotReadyAddresses: ptr.To(true)},
		SuccessPolicy: &jobset.SuccessPolicy{Operator: jobset.OperatorAll},
		StartupPolicy: &jobset.StartupPolicy{StartupPolicyOrder: jobset.AnyOrder},
		FailurePolicy: &jobset.FailurePolicy{RestartStrategy: jobset.Recreate, Rules: []jobset.FailurePolicyRule{{Name: "failurePolicyRule0", Action: jobset.RestartJobSet}}},
		VolumeClaimPolicies: []jobset.VolumeClaimPolicy{{
			Templates:       []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
			RetentionPolicy: &jobset.VolumeRetentionPolicy{WhenDeleted: ptr.To(jobset.RetentionPolicyDelete)},
		}},
	}
	if d := cmp.Diff(want, js.Spec); d != "" {
		t.Errorf("defaulted spec (-want +got):\n%s", d)
	}
	if _, err := (jobSetWebhook{}).ValidateCreate(context.Background(), js); err != nil {
		t.Errorf("defaulted JobSet rejected: %v", err)
	}
}
