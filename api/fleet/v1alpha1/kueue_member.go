package v1alpha1

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Kueue on a member: the member's Kueue admits the copies of fleet JobSets
// that carry Kueue's queue-name label, and its quota is capacity the hub
// places against.

// PropertyKueueQuotas is the ClusterProfile property whose value is the
// member's KueueQuotas as JSON, cut into parts like the node summary:
// KueueQuotasPart(0) (this name), KueueQuotasPart(1), ... each at most
// MaxPropertyValue long. A member without Kueue publishes none.
const PropertyKueueQuotas = "kueue-quotas"

// KueueQuotasPart names the property holding part i (from 0) of the Kueue
// quotas' JSON: "kueue-quotas", "kueue-quotas.1", ...
func KueueQuotasPart(i int) string {
	if i == 0 {
		return PropertyKueueQuotas
	}
	return PropertyKueueQuotas + "." + strconv.Itoa(i)
}

// KueueQuotas is what the hub knows of a member's Kueue: its LocalQueues,
// and for the ClusterQueues they feed, the quota still free. It stays
// bounded: queues beyond the agent's budget are counted in Omitted.
type KueueQuotas struct {
	// LocalQueues are the member's LocalQueues with their ClusterQueue.
	// +optional
	LocalQueues []KueueLocalQueue `json:"localQueues,omitempty"`
	// ClusterQueues are the ClusterQueues the LocalQueues name.
	// +optional
	ClusterQueues []KueueClusterQueue `json:"clusterQueues,omitempty"`
	// Omitted counts LocalQueues left out to keep the report bounded: a
	// queue the hub does not find may be one of them.
	// +optional
	Omitted int32 `json:"omitted,omitempty"`
}

// KueueLocalQueue is one LocalQueue of the member.
type KueueLocalQueue struct {
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	ClusterQueue string `json:"clusterQueue"`
}

// KueueClusterQueue is the quota a ClusterQueue has free now.
type KueueClusterQueue struct {
	Name string `json:"name"`
	// Inactive is set when Kueue does not admit through the queue (it is
	// stopped or misconfigured): it has nothing free.
	// +optional
	Inactive bool `json:"inactive,omitempty"`
	// ResourceGroups are the queue's resource groups: Kueue takes every
	// resource of a group from one flavor of it.
	// +optional
	ResourceGroups []KueueResourceGroup `json:"resourceGroups,omitempty"`
}

// KueueResourceGroup is one resource group of a ClusterQueue.
type KueueResourceGroup struct {
	// +optional
	Flavors []KueueFlavorFree `json:"flavors,omitempty"`
}

// KueueFlavorFree is, for one flavor of a resource group, what is free of
// each resource the group covers (zeros included): nominal quota plus what
// the queue may borrow from its cohort, minus its usage. Free may
// underestimate (a cohort's own quota is not counted), never overstate.
type KueueFlavorFree struct {
	Name string              `json:"name"`
	Free corev1.ResourceList `json:"free"`
}

// ConditionQueuedOnMember on a hub JobSet is True while its member copy
// waits in the member's Kueue: the message names the member, the queue
// and Kueue's reason.
const ConditionQueuedOnMember = "QueuedOnMember"

// ReasonQueuedInMemberKueue is the reason of ConditionQueuedOnMember.
const ReasonQueuedInMemberKueue = "QueuedInMemberKueue"

// MemberQueued is the agent's report that the member copy waits in the
// member's Kueue: its Workload is not admitted.
type MemberQueued struct {
	// localQueue is the copy's LocalQueue (its queue-name label).
	// +kubebuilder:validation:MaxLength=253
	LocalQueue string `json:"localQueue"`
	// clusterQueue is the LocalQueue's ClusterQueue, when the LocalQueue
	// exists.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	ClusterQueue string `json:"clusterQueue,omitempty"`
	// message is Kueue's reason, bounded.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// QueuedMessage is what the hub JobSet says while its copy waits in the
// member's Kueue: "Queued in member-2's ClusterQueue team-a: <reason>".
func QueuedMessage(cluster string, q *MemberQueued) string {
	where := "ClusterQueue " + q.ClusterQueue
	if q.ClusterQueue == "" {
		where = "LocalQueue " + q.LocalQueue
	}
	msg := fmt.Sprintf("Queued in %s's %s", cluster, where)
	if q.Message != "" {
		msg += ": " + q.Message
	}
	return Bounded(msg, MaxMemberReason+2*253)
}
