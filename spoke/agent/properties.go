package agent

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// ResourceGPU is the extended resource reported as GPUs.
const ResourceGPU corev1.ResourceName = "nvidia.com/gpu"

// alwaysReported are published even when no node has them (0), so
// placement can tell "none" from "not reported".
var alwaysReported = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, ResourceGPU}

// MaxReportedResources bounds how many resources the agent reports (three
// properties each), so nodes with a flood of extended resources cannot make
// the ClusterProfile huge: alwaysReported first, then the others in name
// order.
const MaxReportedResources = 32

// ComputeProperties returns the capacity properties of a member, for every
// resource schedulable nodes have (cpu, memory, ephemeral-storage, pods,
// hugepages-*, extended resources): allocatable.<r>, the sum over
// schedulable nodes; free.<r>, that minus what pods that have not finished
// request (floored at zero; a pod counts 1 of "pods"); fleet-used.<r>, the
// part of it that pods of fleet JobSets request (isFleetPod). And for each
// topology key the number of distinct values it has on schedulable nodes.
//
// Pod requests are computed by k8s.io/component-helpers, as the scheduler
// and Kueue compute them (sidecars, init containers, pod-level resources,
// overhead).
func ComputeProperties(nodes []corev1.Node, pods []corev1.Pod, isFleetPod func(*corev1.Pod) bool, topologyKeys []string, now metav1.Time) []clusterinventory.Property {
	alloc := corev1.ResourceList{}
	for i := range nodes {
		if nodes[i].Spec.Unschedulable {
			continue
		}
		addTo(alloc, nodes[i].Status.Allocatable)
	}
	used, fleetUsed := corev1.ResourceList{}, corev1.ResourceList{}
	onePod := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}
	for i := range pods {
		if p := &pods[i]; p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			reqs := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
			addTo(reqs, onePod)
			addTo(used, reqs)
			if isFleetPod != nil && isFleetPod(p) {
				addTo(fleetUsed, reqs)
			}
		}
	}
	names := reportedResources(alloc)
	props := make([]clusterinventory.Property, 0, 3*len(names)+len(topologyKeys))
	for _, r := range names {
		a := alloc[r]
		free := a.DeepCopy()
		free.Sub(used[r])
		if free.Sign() < 0 {
			free = resource.Quantity{Format: a.Format}
		}
		f := fleetUsed[r]
		props = append(props,
			clusterinventory.Property{Name: fleet.PropertyAllocatablePrefix + string(r), Value: a.String(), LastObservedTime: now},
			clusterinventory.Property{Name: fleet.PropertyFreePrefix + string(r), Value: free.String(), LastObservedTime: now},
			clusterinventory.Property{Name: fleet.PropertyFleetUsedPrefix + string(r), Value: f.String(), LastObservedTime: now},
		)
	}
	for _, key := range topologyKeys {
		domains := map[string]bool{}
		for i := range nodes {
			if v, ok := nodes[i].Labels[key]; ok && !nodes[i].Spec.Unschedulable {
				domains[v] = true
			}
		}
		props = append(props, clusterinventory.Property{Name: fleet.PropertyTopologyPrefix + key, Value: strconv.Itoa(len(domains)), LastObservedTime: now})
	}
	return props
}

// reportedResources are alwaysReported, then the other resources nodes
// have in name order, at most MaxReportedResources.
func reportedResources(alloc corev1.ResourceList) []corev1.ResourceName {
	names := slices.Clone(alwaysReported)
	var others []corev1.ResourceName
	for r := range alloc {
		if !slices.Contains(alwaysReported, r) {
			others = append(others, r)
		}
	}
	slices.Sort(others)
	names = append(names, others...)
	return names[:min(len(names), MaxReportedResources)]
}

func addTo(sum, add corev1.ResourceList) {
	for name, q := range add {
		v := sum[name]
		v.Add(q)
		sum[name] = v
	}
}

// MaxHealthMessage bounds the ControlPlaneHealthy message (the /readyz
// answer of a failing apiserver lists every check).
const MaxHealthMessage = 1024

// Health is what the agent observed of its member's control plane.
type Health struct {
	Healthy bool
	// Message says why not, or is empty.
	Message string
}

// agentPrefixes are the property prefixes only the agent publishes: a
// property with one of them that the agent no longer reports (a resource
// no node has any more, a topology key dropped, a part of a node summary
// that shrank) is removed.
var agentPrefixes = []string{
	fleet.PropertyAllocatablePrefix, fleet.PropertyFreePrefix,
	fleet.PropertyFleetUsedPrefix, fleet.PropertyTopologyPrefix,
	fleet.PropertyStorageClassPrefix, fleet.PropertyNodeSummary, fleet.PropertyKueueQuotas,
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
		msg := health.Message
		if len(msg) > MaxHealthMessage {
			msg = strings.ToValidUTF8(msg[:MaxHealthMessage-3], "") + "..."
		}
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "Unhealthy", msg
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
		return ours[p.Name] || slices.ContainsFunc(agentPrefixes, func(prefix string) bool { return strings.HasPrefix(p.Name, prefix) })
	})
	st.Properties = append(st.Properties, props...)
	return st
}

// defaultStorageClassAnnotation marks the cluster's default StorageClass.
const defaultStorageClassAnnotation = "storageclass.kubernetes.io/is-default-class"

// maxStorageClasses bounds the storage classes reported.
const maxStorageClasses = 16

// StorageClassProperties reports the member's storage classes, so the hub
// places JobSets with volumeClaimPolicies only where their claims can be
// provisioned.
func StorageClassProperties(classes []storagev1.StorageClass, now metav1.Time) []clusterinventory.Property {
	slices.SortFunc(classes, func(a, b storagev1.StorageClass) int { return strings.Compare(a.Name, b.Name) })
	props := make([]clusterinventory.Property, 0, min(len(classes), maxStorageClasses))
	for _, c := range classes[:min(len(classes), maxStorageClasses)] {
		v := fleet.PropertyStorageClassAvailable
		if c.Annotations[defaultStorageClassAnnotation] == "true" {
			v = fleet.PropertyStorageClassDefault
		}
		props = append(props, clusterinventory.Property{Name: fleet.PropertyStorageClassPrefix + c.Name, Value: v, LastObservedTime: now})
	}
	return props
}
