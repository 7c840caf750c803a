package placement

import (
	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// podSet is the Pods of one replicatedJob: made from one template, they
// ask for the same and fit on the same nodes.
type podSet struct {
	// index is the replicatedJob's index in spec.replicatedJobs.
	index int
	name  string
	// jobs x podsPerJob Pods run at once (replicas x parallelism).
	jobs, podsPerJob int64
	// requests is what one Pod asks for (PodRequests).
	requests corev1.ResourceList
	// spec is the pod template's spec: its nodeSelector, required node
	// affinity and tolerations decide which nodes it may run on.
	spec *corev1.PodSpec
	// exclusiveKey is the exclusive-topology key its Jobs each need a
	// domain of ("": none).
	exclusiveKey string
}

func (s *podSet) pods() int64 { return s.jobs * s.podsPerJob }

// podSets are the JobSet's replicatedJobs that run Pods. jobSetExclusive
// is the JobSet's own exclusive-topology annotation, which a Job
// template's annotation overrides.
func podSets(spec *jobset.JobSetSpec, jobSetExclusive string) []podSet {
	sets := make([]podSet, 0, len(spec.ReplicatedJobs))
	for i := range spec.ReplicatedJobs {
		rjob := &spec.ReplicatedJobs[i]
		s := podSet{
			index:        i,
			name:         rjob.Name,
			jobs:         int64(rjob.Replicas),
			podsPerJob:   int64(ptr.Deref(rjob.Template.Spec.Parallelism, 1)),
			spec:         &rjob.Template.Spec.Template.Spec,
			exclusiveKey: jobSetExclusive,
		}
		if k := rjob.Template.Annotations[jobset.ExclusiveKey]; k != "" {
			s.exclusiveKey = k
		}
		if s.pods() <= 0 {
			continue
		}
		s.requests = PodRequests(s.spec)
		sets = append(sets, s)
	}
	return sets
}

// jobSetPodSets are podSets of a JobSet, with its exclusive-topology
// annotation.
func jobSetPodSets(js *jobset.JobSet) []podSet {
	return podSets(&js.Spec, js.Annotations[jobset.ExclusiveKey])
}

// ExclusiveJobs counts, per topology key, the Jobs that each need a domain of
// their own (exclusive-topology annotation on the JobSet, or on a
// ReplicatedJob's Job template).
func ExclusiveJobs(js *jobset.JobSet) map[string]int {
	return exclusiveJobs(jobSetPodSets(js))
}

func exclusiveJobs(sets []podSet) map[string]int {
	need := map[string]int{}
	for _, s := range sets {
		if s.exclusiveKey != "" {
			need[s.exclusiveKey] += int(s.jobs)
		}
	}
	return need
}

// Requests is what a JobSet's pods ask for in total: the sum over
// replicatedJobs of replicas x parallelism x the pod's request. Only
// resources with a non-zero total are listed.
func Requests(spec *jobset.JobSetSpec) corev1.ResourceList {
	return totalRequests(podSets(spec, ""))
}

func totalRequests(sets []podSet) corev1.ResourceList {
	total := corev1.ResourceList{}
	for _, s := range sets {
		for name, q := range s.requests {
			q.Mul(s.pods())
			AddTo(total, corev1.ResourceList{name: q})
		}
	}
	for name, q := range total {
		if q.IsZero() {
			delete(total, name)
		}
	}
	return total
}

// PodRequests is what the scheduler accounts for one pod with this spec,
// computed by k8s.io/component-helpers (as the scheduler and Kueue do):
// containers, sidecars and init containers, pod-level resources and
// overhead. It first applies the defaulting the API server gives a pod but
// not a template: a request left unset where a limit is set is the limit.
func PodRequests(spec *corev1.PodSpec) corev1.ResourceList {
	pod := &corev1.Pod{Spec: *spec.DeepCopy()}
	for i := range pod.Spec.InitContainers {
		defaultRequestsToLimits(&pod.Spec.InitContainers[i].Resources)
	}
	for i := range pod.Spec.Containers {
		defaultRequestsToLimits(&pod.Spec.Containers[i].Resources)
	}
	if pod.Spec.Resources != nil {
		defaultRequestsToLimits(pod.Spec.Resources)
	}
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

func defaultRequestsToLimits(r *corev1.ResourceRequirements) {
	for name, q := range r.Limits {
		if _, ok := r.Requests[name]; !ok {
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = q.DeepCopy()
		}
	}
}

// AddTo adds add into total.
func AddTo(total, add corev1.ResourceList) {
	for name, q := range add {
		cur := total[name].DeepCopy()
		cur.Add(q)
		total[name] = cur
	}
}
