package fence

import (
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

func TestStopSteps(t *testing.T) {
	deleted := ptr.To(metav1.Now())
	copyOf := func(deleting bool, finalizers ...string) *jobset.JobSet {
		js := &jobset.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "train", UID: "copy", Finalizers: finalizers}}
		if deleting {
			js.DeletionTimestamp = deleted
		}
		return js
	}
	owned := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "owned", OwnerReferences: []metav1.OwnerReference{{UID: "copy", Controller: ptr.To(true)}}}}
	orphan := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "orphan"}}
	orphanDeleting := batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "orphan", DeletionTimestamp: deleted, Finalizers: []string{metav1.FinalizerDeleteDependents}}}
	orphanPod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod"}}
	jobPod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod", OwnerReferences: []metav1.OwnerReference{{UID: "job", Controller: ptr.To(true)}}}}

	cases := map[string]struct {
		state copyState
		want  []stepKind
	}{
		"running copy: delete in the foreground": {copyState{jobSet: copyOf(false, fleet.ReportFinalizer), jobs: []batchv1.Job{owned}}, []stepKind{deleteForeground}},
		"foreground deletion under way: wait":    {copyState{jobSet: copyOf(true, fleet.ReportFinalizer, metav1.FinalizerDeleteDependents), jobs: []batchv1.Job{owned}}, nil},
		"deleted in the background with Jobs: delete again in the foreground": {
			copyState{jobSet: copyOf(true, fleet.ReportFinalizer), jobs: []batchv1.Job{owned}}, []stepKind{deleteForeground}},
		"deleted in the background, Jobs gone, Pods left: wait": {
			copyState{jobSet: copyOf(true, fleet.ReportFinalizer), pods: []corev1.Pod{jobPod}}, nil},
		"orphan deletion, Jobs orphaned: delete them, keep the copy": {
			copyState{jobSet: copyOf(true, fleet.ReportFinalizer), jobs: []batchv1.Job{orphan}}, []stepKind{deleteOrphanJob}},
		"orphan finalizer still there: never release": {
			copyState{jobSet: copyOf(true, fleet.ReportFinalizer, metav1.FinalizerOrphanDependents)}, nil},
		"orphaned Job already deleting: wait": {copyState{jobSet: copyOf(true, fleet.ReportFinalizer), jobs: []batchv1.Job{orphanDeleting}}, nil},
		"nothing left: release":               {copyState{jobSet: copyOf(true, fleet.ReportFinalizer)}, []stepKind{release}},
		"released already: nothing to do":     {copyState{jobSet: copyOf(true, "other")}, nil},
		"JobSet gone, orphaned Job and Pod left": {
			copyState{jobs: []batchv1.Job{orphan}, pods: []corev1.Pod{orphanPod}}, []stepKind{deleteOrphanJob, deleteOrphanPod}},
		"gone": {copyState{}, nil},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var got []stepKind
			for _, s := range stopSteps(tc.state) {
				got = append(got, s.kind)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("steps %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("steps %v, want %v", got, tc.want)
				}
			}
		})
	}
}
