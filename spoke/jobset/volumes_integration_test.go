package jobset_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jstesting "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/testing"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func claimPolicy(retention jobset.RetentionPolicyType, claims ...string) jobset.VolumeClaimPolicy {
	p := jobset.VolumeClaimPolicy{RetentionPolicy: &jobset.VolumeRetentionPolicy{WhenDeleted: ptr.To(retention)}}
	for _, c := range claims {
		p.Templates = append(p.Templates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: c, Labels: map[string]string{"tier": "cache"}, Annotations: map[string]string{"note": c}},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		})
	}
	return p
}

func (e *env) pvc(t *testing.T, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{}
	err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, pvc)
	return pvc, err
}

// PVCs are created from the templates as <claim>-<jobset>, with the
// template's metadata plus the jobset-name label, owned by the JobSet when
// they are deleted with it; each pod template that mounts a claim gets its
// volume, so the Jobs are accepted by the apiserver. Like upstream, this
// happens while the JobSet is suspended too.
func TestVolumeClaimPolicies(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	trainer := rjob("trainer", 2, 1).VolumeMount("model", "/model").VolumeMount("cache", "/cache")
	evaluator := rjob("evaluator", 1, 1).VolumeMount("model", "/model")
	js := jstesting.MakeJobSet(ns, "vcp").
		ReplicatedJob(trainer.Obj(), evaluator.Obj()).
		Suspend(true).
		VolumeClaimPolicies(
			claimPolicy(jobset.RetentionPolicyDelete, "model"),
			claimPolicy(jobset.RetentionPolicyRetain, "cache"),
		).
		Obj()
	e.create(t, js)
	js = e.jobSet(t, js)

	jobs := e.waitJobs(t, js, []string{"vcp-evaluator-0", "vcp-trainer-0", "vcp-trainer-1"}, nil)
	claimVolume := func(claim string) corev1.Volume {
		return corev1.Volume{Name: claim, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim + "-vcp"},
		}}
	}
	wantVolumes := map[string][]corev1.Volume{
		"vcp-evaluator-0": {claimVolume("model")},
		"vcp-trainer-0":   {claimVolume("model"), claimVolume("cache")},
		"vcp-trainer-1":   {claimVolume("model"), claimVolume("cache")},
	}
	for _, j := range jobs {
		if d := cmp.Diff(wantVolumes[j.Name], j.Spec.Template.Spec.Volumes); d != "" {
			t.Errorf("%s volumes (-want +got):\n%s", j.Name, d)
		}
	}

	owner := metav1.OwnerReference{APIVersion: "jobset.x-k8s.io/v1alpha2", Kind: "JobSet", Name: js.Name, UID: js.UID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	for _, tc := range []struct {
		name   string
		owners []metav1.OwnerReference
	}{
		{"model-vcp", []metav1.OwnerReference{owner}},
		{"cache-vcp", nil},
	} {
		var pvc *corev1.PersistentVolumeClaim
		testenv.Eventually(t, timeout, "PVC "+tc.name, func() (err error) {
			pvc, err = e.pvc(t, ns, tc.name)
			return err
		})
		if d := cmp.Diff(tc.owners, pvc.OwnerReferences); d != "" {
			t.Errorf("%s owners (-want +got):\n%s", tc.name, d)
		}
		wantLabels := map[string]string{"tier": "cache", jobset.JobSetNameKey: "vcp"}
		if d := cmp.Diff(wantLabels, pvc.Labels); d != "" {
			t.Errorf("%s labels (-want +got):\n%s", tc.name, d)
		}
		if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
			t.Errorf("%s requests %v, want the template's 1Gi", tc.name, got.String())
		}
	}
}

// whenDeleted: Delete removes the PVC with the JobSet (garbage collector),
// Retain leaves it.
func TestVolumeClaimRetention(t *testing.T) {
	t.Parallel()
	e := gcEnv(t)
	ns := e.namespace(t)
	r := rjob("a", 1, 1).VolumeMount("scratch", "/scratch").VolumeMount("results", "/results")
	js := jstesting.MakeJobSet(ns, "keep").
		ReplicatedJob(r.Obj()).
		VolumeClaimPolicies(
			claimPolicy(jobset.RetentionPolicyDelete, "scratch"),
			claimPolicy(jobset.RetentionPolicyRetain, "results"),
		).
		Obj()
	e.create(t, js)
	for _, name := range []string{"scratch-keep", "results-keep"} {
		testenv.Eventually(t, gcTimeout, "PVC "+name, func() error { _, err := e.pvc(t, ns, name); return err })
	}
	if err := e.c.Delete(context.Background(), js, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, gcTimeout, "scratch-keep deleted with the JobSet", func() error {
		pvc, err := e.pvc(t, ns, "scratch-keep")
		if isNotFound(err) || (err == nil && pvc.DeletionTimestamp != nil) {
			return nil
		}
		return fmt.Errorf("PVC still there: %v", err)
	})
	testenv.Consistently(t, 3*time.Second, "results-keep retained", func() error {
		pvc, err := e.pvc(t, ns, "results-keep")
		if err != nil {
			return err
		}
		if pvc.DeletionTimestamp != nil {
			return fmt.Errorf("being deleted")
		}
		return nil
	})
}

// With ElasticJobSet, parallelism and completions changed on a running
// JobSet reach its running Jobs.
func TestElasticJobSetScalesRunningJobs(t *testing.T) {
	features.SetForTest(t, features.ElasticJobSet, true)
	e := plain
	ns := e.namespace(t)
	js := jstesting.MakeJobSet(ns, "elastic").ReplicatedJob(rjob("w", 2, 2).Obj()).Obj()
	e.create(t, js)
	e.waitJobs(t, js, []string{"elastic-w-0", "elastic-w-1"}, nil)
	// No webhook runs here; admission is tested in spoke/webhook.
	e.updateJobSet(t, js, func(js *jobset.JobSet) {
		s := &js.Spec.ReplicatedJobs[0].Template.Spec
		s.Parallelism, s.Completions = ptr.To[int32](4), ptr.To[int32](4)
	})
	e.waitJobs(t, js, []string{"elastic-w-0", "elastic-w-1"}, func(j batchv1.Job) error {
		if ptr.Deref(j.Spec.Parallelism, 0) != 4 || ptr.Deref(j.Spec.Completions, 0) != 4 {
			return fmt.Errorf("parallelism %v completions %v, want 4", ptr.Deref(j.Spec.Parallelism, 0), ptr.Deref(j.Spec.Completions, 0))
		}
		return nil
	})
}

// A PVC that cannot be created stops the reconcile before any Job is
// created, with a PVCCreationFailed warning carrying the apiserver's error,
// as upstream's reconcile does.
func TestPVCCreationFailure(t *testing.T) {
	t.Parallel()
	e := plain
	ns := e.namespace(t)
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "no-claims"},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePersistentVolumeClaims: resource.MustParse("0")}},
	}
	e.create(t, quota)
	// The quota admission plugin only enforces a quota once its usage is
	// computed (by the controller-manager, absent here): do it ourselves.
	quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePersistentVolumeClaims: resource.MustParse("0")}}
	if err := e.c.Status().Update(context.Background(), quota); err != nil {
		t.Fatal(err)
	}
	r := rjob("a", 1, 1).VolumeMount("data", "/data")
	js := jstesting.MakeJobSet(ns, "noquota").
		ReplicatedJob(r.Obj()).
		VolumeClaimPolicies(claimPolicy(jobset.RetentionPolicyDelete, "data")).
		Obj()
	e.create(t, js)
	note := e.waitEvent(t, js, corev1.EventTypeWarning, "PVCCreationFailed")
	if want := `persistentvolumeclaims "data-noquota" is forbidden: exceeded quota: no-claims`; !strings.HasPrefix(note, want) {
		t.Errorf("note %q, want it to start with %q", note, want)
	}
	testenv.Consistently(t, 2*time.Second, "no Job without its PVC", func() error {
		if jobs := e.jobs(t, js); len(jobs) != 0 {
			return fmt.Errorf("Jobs %v created", names(jobs))
		}
		return nil
	})
}
