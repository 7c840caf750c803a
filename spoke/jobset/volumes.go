package jobset

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/validation"
)

// buildPVCs returns the PVCs of the JobSet's volumeClaimPolicies, one per
// template, named <claim>-<jobset> and shared by all of its pods. A PVC of
// a policy whose retention is Delete is owned by the JobSet, so the garbage
// collector deletes it with the JobSet; one whose retention is Retain has
// no owner and outlives it. js must be defaulted.
func buildPVCs(js *jobset.JobSet) []*corev1.PersistentVolumeClaim {
	var pvcs []*corev1.PersistentVolumeClaim
	for _, policy := range js.Spec.VolumeClaimPolicies {
		deleteWithJobSet := policy.RetentionPolicy != nil &&
			ptr.Deref(policy.RetentionPolicy.WhenDeleted, "") == jobset.RetentionPolicyDelete
		for _, tmpl := range policy.Templates {
			labels := maps.Clone(tmpl.Labels)
			if labels == nil {
				labels = map[string]string{}
			}
			labels[jobset.JobSetNameKey] = js.Name
			pvc := &corev1.PersistentVolumeClaim{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
				ObjectMeta: metav1.ObjectMeta{
					Name:        jobset.PVCName(js.Name, tmpl.Name),
					Namespace:   js.Namespace,
					Labels:      labels,
					Annotations: maps.Clone(tmpl.Annotations),
				},
				Spec: *tmpl.Spec.DeepCopy(),
			}
			if deleteWithJobSet {
				pvc.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(js, jobset.GroupVersion.WithKind("JobSet"))}
			}
			pvcs = append(pvcs, pvc)
		}
	}
	return pvcs
}

// addClaimVolumes adds to a pod spec a volume for each claim template that
// one of its containers or init containers mounts. A pod that mounts none
// gets none: the claims are available to, not forced on, every pod.
func addClaimVolumes(js *jobset.JobSet, podSpec *corev1.PodSpec) {
	for _, policy := range js.Spec.VolumeClaimPolicies {
		for _, tmpl := range policy.Templates {
			if !validation.MountsVolume(podSpec, tmpl.Name) {
				continue
			}
			podSpec.Volumes = append(podSpec.Volumes, corev1.Volume{
				Name: tmpl.Name,
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
					ClaimName: jobset.PVCName(js.Name, tmpl.Name),
				}},
			})
		}
	}
}
