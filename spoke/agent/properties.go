package agent

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// ResourceGPU is the extended resource reported as GPUs.
const ResourceGPU corev1.ResourceName = "nvidia.com/gpu"

// reportedResources are the resources published as allocatable.<r> and
// free.<r>; all three are always published (0 when absent) so placement can
// tell "none" from "not reported".
var reportedResources = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, ResourceGPU}

// ComputeProperties returns the capacity properties of a member: the sum of
// allocatable over schedulable nodes, that minus the requests of every pod
// that has not finished (floored at zero), and for each topology key the
// number of distinct values it has on schedulable nodes.
//
// isFleetPod tells the pods of fleet JobSets, whose requests are also
// reported apart as fleet-used.<r>.
func ComputeProperties(nodes []corev1.Node, pods []corev1.Pod, isFleetPod func(*corev1.Pod) bool, topologyKeys []string, now metav1.Time) []clusterinventory.Property {
	alloc := corev1.ResourceList{}
	for i := range nodes {
		if nodes[i].Spec.Unschedulable {
			continue
		}
		addTo(alloc, nodes[i].Status.Allocatable)
	}
	used, fleetUsed := corev1.ResourceList{}, corev1.ResourceList{}
	for i := range pods {
		if p := &pods[i]; p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			addTo(used, PodRequests(p))
			if isFleetPod != nil && isFleetPod(p) {
				addTo(fleetUsed, PodRequests(p))
			}
		}
	}
	props := make([]clusterinventory.Property, 0, 2*len(reportedResources))
	for _, r := range reportedResources {
		a := alloc[r]
		free := a.DeepCopy()
		free.Sub(used[r])
		if free.Sign() < 0 {
			free = resource.Quantity{Format: a.Format}
		}
		props = append(props,
			clusterinventory.Property{Name: fleetv1alpha1.PropertyAllocatablePrefix + string(r), Value: a.String(), LastObservedTime: now},
			clusterinventory.Property{Name: fleetv1alpha1.PropertyFreePrefix + string(r), Value: free.String(), LastObservedTime: now},
		)
		f := fleetUsed[r]
		props = append(props, clusterinventory.Property{Name: fleetv1alpha1.PropertyFleetUsedPrefix + string(r), Value: f.String(), LastObservedTime: now})
	}
	for _, key := range topologyKeys {
		domains := map[string]bool{}
		for i := range nodes {
			if v, ok := nodes[i].Labels[key]; ok && !nodes[i].Spec.Unschedulable {
				domains[v] = true
			}
		}
		props = append(props, clusterinventory.Property{Name: fleetv1alpha1.PropertyTopologyPrefix + key, Value: strconv.Itoa(len(domains)), LastObservedTime: now})
	}
	return props
}

// PodRequests is what the scheduler reserves for a pod: the larger of the
// app containers plus sidecars and the largest init container (with the
// sidecars started before it), plus the overhead; pod-level requests, when
// set, win for the resources they name.
func PodRequests(pod *corev1.Pod) corev1.ResourceList {
	reqs := corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		addTo(reqs, c.Resources.Requests)
	}
	sidecars := corev1.ResourceList{}
	initMax := corev1.ResourceList{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addTo(reqs, c.Resources.Requests)
			addTo(sidecars, c.Resources.Requests)
			continue
		}
		step := sidecars.DeepCopy()
		addTo(step, c.Resources.Requests)
		maxInto(initMax, step)
	}
	maxInto(reqs, initMax)
	if pod.Spec.Resources != nil {
		for name, q := range pod.Spec.Resources.Requests {
			reqs[name] = q.DeepCopy()
		}
	}
	addTo(reqs, pod.Spec.Overhead)
	return reqs
}

func addTo(sum, add corev1.ResourceList) {
	for name, q := range add {
		v := sum[name]
		v.Add(q)
		sum[name] = v
	}
}

func maxInto(dst, other corev1.ResourceList) {
	for name, q := range other {
		if v, ok := dst[name]; !ok || q.Cmp(v) > 0 {
			dst[name] = q.DeepCopy()
		}
	}
}

// Health is what the agent observed of its member's control plane.
type Health struct {
	Healthy bool
	// Message says why not, or is empty.
	Message string
}

// ProfileStatus is the ClusterProfile status the agent publishes: old with
// ControlPlaneHealthy, the Kubernetes version and the agent's capacity
// properties replaced. Properties other agents or tools publish stay.
func ProfileStatus(old clusterinventory.ClusterProfileStatus, health Health, version string, props []clusterinventory.Property) clusterinventory.ClusterProfileStatus {
	st := *old.DeepCopy()
	cond := metav1.Condition{
		Type:    clusterinventory.ClusterConditionControlPlaneHealthy,
		Status:  metav1.ConditionTrue,
		Reason:  "Healthy",
		Message: "the member's kube-apiserver reports ready",
	}
	if !health.Healthy {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unhealthy", health.Message
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if version != "" {
		st.Version.Kubernetes = version
	}
	// Replace what the agent reports, keep properties others publish.
	ours := map[string]bool{}
	for _, p := range props {
		ours[p.Name] = true
	}
	st.Properties = slices.DeleteFunc(st.Properties, func(p clusterinventory.Property) bool {
		return ours[p.Name] || strings.HasPrefix(p.Name, fleetv1alpha1.PropertyAllocatablePrefix) || strings.HasPrefix(p.Name, fleetv1alpha1.PropertyFreePrefix)
	})
	st.Properties = append(st.Properties, props...)
	return st
}
