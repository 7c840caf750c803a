// Package testing builds JobSets for tests:
//
//	js := jstesting.MakeJobSet("team", "train").
//		ManagedBy(fleet.ManagedByFleet).
//		ReplicatedJob(jstesting.MakeReplicatedJob("workers").Replicas(2).
//			Parallelism(4).Completions(4).
//			Container("main", "busybox").
//			Requests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}).
//			Obj()).
//		Obj()
//
// A wrapper sets exactly the fields it is told to set and nothing else: no
// defaults, no empty maps, so a test's object is what it reads. Obj returns
// a copy, so one wrapper can be the base of several objects.
package testing

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// JobSetWrapper builds a JobSet.
type JobSetWrapper struct{ jobset.JobSet }

// MakeJobSet starts a JobSet with no replicatedJobs.
func MakeJobSet(namespace, name string) *JobSetWrapper {
	return &JobSetWrapper{jobset.JobSet{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}}
}

// Obj returns a copy of the JobSet built so far.
func (w *JobSetWrapper) Obj() *jobset.JobSet { return w.DeepCopy() }

// GenerateName sets metadata.generateName.
func (w *JobSetWrapper) GenerateName(prefix string) *JobSetWrapper {
	w.ObjectMeta.GenerateName = prefix
	return w
}

// UID sets metadata.uid, as the apiserver would.
func (w *JobSetWrapper) UID(uid types.UID) *JobSetWrapper {
	w.ObjectMeta.UID = uid
	return w
}

// CreationTimestamp sets metadata.creationTimestamp, as the apiserver would.
func (w *JobSetWrapper) CreationTimestamp(t time.Time) *JobSetWrapper {
	w.ObjectMeta.CreationTimestamp = metav1.NewTime(t)
	return w
}

// Label sets one label.
func (w *JobSetWrapper) Label(key, value string) *JobSetWrapper {
	if w.Labels == nil {
		w.Labels = map[string]string{}
	}
	w.Labels[key] = value
	return w
}

// Annotation sets one annotation.
func (w *JobSetWrapper) Annotation(key, value string) *JobSetWrapper {
	if w.Annotations == nil {
		w.Annotations = map[string]string{}
	}
	w.Annotations[key] = value
	return w
}

// Finalizers appends finalizers.
func (w *JobSetWrapper) Finalizers(finalizers ...string) *JobSetWrapper {
	w.ObjectMeta.Finalizers = append(w.ObjectMeta.Finalizers, finalizers...)
	return w
}

// ReplicatedJob appends replicatedJobs, in order.
func (w *JobSetWrapper) ReplicatedJob(rjobs ...jobset.ReplicatedJob) *JobSetWrapper {
	w.Spec.ReplicatedJobs = append(w.Spec.ReplicatedJobs, rjobs...)
	return w
}

// ManagedBy sets spec.managedBy.
func (w *JobSetWrapper) ManagedBy(controller string) *JobSetWrapper {
	w.Spec.ManagedBy = ptr.To(controller)
	return w
}

// Suspend sets spec.suspend.
func (w *JobSetWrapper) Suspend(suspend bool) *JobSetWrapper {
	w.Spec.Suspend = ptr.To(suspend)
	return w
}

// FailurePolicy sets spec.failurePolicy.
func (w *JobSetWrapper) FailurePolicy(p *jobset.FailurePolicy) *JobSetWrapper {
	w.Spec.FailurePolicy = p
	return w
}

// SuccessPolicy sets spec.successPolicy.
func (w *JobSetWrapper) SuccessPolicy(p *jobset.SuccessPolicy) *JobSetWrapper {
	w.Spec.SuccessPolicy = p
	return w
}

// StartupPolicy sets spec.startupPolicy.
func (w *JobSetWrapper) StartupPolicy(p *jobset.StartupPolicy) *JobSetWrapper {
	w.Spec.StartupPolicy = p
	return w
}

// Network sets spec.network.
func (w *JobSetWrapper) Network(n *jobset.Network) *JobSetWrapper {
	w.Spec.Network = n
	return w
}

// Coordinator sets spec.coordinator.
func (w *JobSetWrapper) Coordinator(c *jobset.Coordinator) *JobSetWrapper {
	w.Spec.Coordinator = c
	return w
}

// TTLSecondsAfterFinished sets spec.ttlSecondsAfterFinished.
func (w *JobSetWrapper) TTLSecondsAfterFinished(seconds int32) *JobSetWrapper {
	w.Spec.TTLSecondsAfterFinished = ptr.To(seconds)
	return w
}

// VolumeClaimPolicies appends spec.volumeClaimPolicies.
func (w *JobSetWrapper) VolumeClaimPolicies(policies ...jobset.VolumeClaimPolicy) *JobSetWrapper {
	w.Spec.VolumeClaimPolicies = append(w.Spec.VolumeClaimPolicies, policies...)
	return w
}

// ReplicatedJobWrapper builds a replicatedJob: its Job template and the pod
// template inside it.
type ReplicatedJobWrapper struct{ jobset.ReplicatedJob }

// MakeReplicatedJob starts a replicatedJob with an empty Job template and
// replicas unset.
func MakeReplicatedJob(name string) *ReplicatedJobWrapper {
	return &ReplicatedJobWrapper{jobset.ReplicatedJob{Name: name}}
}

// Obj returns a copy of the replicatedJob built so far.
func (w *ReplicatedJobWrapper) Obj() jobset.ReplicatedJob { return *w.DeepCopy() }

// Replicas sets how many Jobs the replicatedJob has.
func (w *ReplicatedJobWrapper) Replicas(n int32) *ReplicatedJobWrapper {
	w.ReplicatedJob.Replicas = n
	return w
}

// GroupName sets groupName.
func (w *ReplicatedJobWrapper) GroupName(group string) *ReplicatedJobWrapper {
	w.ReplicatedJob.GroupName = group
	return w
}

// DependsOn appends dependsOn.
func (w *ReplicatedJobWrapper) DependsOn(deps ...jobset.DependsOn) *ReplicatedJobWrapper {
	w.ReplicatedJob.DependsOn = append(w.ReplicatedJob.DependsOn, deps...)
	return w
}

// Parallelism sets the Job template's parallelism.
func (w *ReplicatedJobWrapper) Parallelism(n int32) *ReplicatedJobWrapper {
	w.Template.Spec.Parallelism = ptr.To(n)
	return w
}

// Completions sets the Job template's completions.
func (w *ReplicatedJobWrapper) Completions(n int32) *ReplicatedJobWrapper {
	w.Template.Spec.Completions = ptr.To(n)
	return w
}

// BackoffLimit sets the Job template's backoffLimit.
func (w *ReplicatedJobWrapper) BackoffLimit(n int32) *ReplicatedJobWrapper {
	w.Template.Spec.BackoffLimit = ptr.To(n)
	return w
}

// RestartPolicy sets the pod template's restartPolicy.
func (w *ReplicatedJobWrapper) RestartPolicy(p corev1.RestartPolicy) *ReplicatedJobWrapper {
	w.Template.Spec.Template.Spec.RestartPolicy = p
	return w
}

// Container appends a container with just a name and an image to the pod
// template.
func (w *ReplicatedJobWrapper) Container(name, image string) *ReplicatedJobWrapper {
	return w.Containers(corev1.Container{Name: name, Image: image})
}

// Containers appends containers to the pod template.
func (w *ReplicatedJobWrapper) Containers(containers ...corev1.Container) *ReplicatedJobWrapper {
	ps := &w.Template.Spec.Template.Spec
	ps.Containers = append(ps.Containers, containers...)
	return w
}

// Requests sets the resource requests of the pod template's last
// container.
func (w *ReplicatedJobWrapper) Requests(requests corev1.ResourceList) *ReplicatedJobWrapper {
	w.lastContainer("Requests").Resources.Requests = requests
	return w
}

// VolumeMount mounts the volume name at path in the pod template's last
// container.
func (w *ReplicatedJobWrapper) VolumeMount(name, path string) *ReplicatedJobWrapper {
	c := w.lastContainer("VolumeMount")
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: path})
	return w
}

func (w *ReplicatedJobWrapper) lastContainer(method string) *corev1.Container {
	cs := w.Template.Spec.Template.Spec.Containers
	if len(cs) == 0 {
		panic(method + ": the replicatedJob " + w.Name + " has no container yet")
	}
	return &cs[len(cs)-1]
}
