package jobset

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// buildService returns the headless Service that gives the JobSet's pods
// stable DNS names (<job>-<index>.<subdomain>). js must be defaulted.
func buildService(js *jobset.JobSet) *corev1.Service {
	publishNotReady := true
	if js.Spec.Network != nil {
		publishNotReady = ptr.Deref(js.Spec.Network.PublishNotReadyAddresses, true)
	}
	return &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      js.Subdomain(),
			Namespace: js.Namespace,
			Labels:    map[string]string{jobset.JobSetNameKey: js.Name},
			OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(js, jobset.GroupVersion.WithKind("JobSet")),
			},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{jobset.JobSetNameKey: js.Name},
			// Pods must find each other while they start, before they are
			// ready, so not-ready addresses are published by default.
			PublishNotReadyAddresses: publishNotReady,
		},
	}
}
