package v1alpha1

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// PropertyNodeSummary is the ClusterProfile property (status.properties)
// whose value is the member's NodeSummary as JSON. The agent publishes it
// with its other capacity properties. The ClusterProfile CRD caps a
// property value at MaxPropertyValue characters, so the JSON is cut into
// parts: NodeSummaryPart(0) (this name), NodeSummaryPart(1), ... hold it
// in order, each at most MaxPropertyValue long.
const PropertyNodeSummary = "node-summary"

// MaxPropertyValue is the longest property value the ClusterProfile CRD
// accepts (status.properties[].value maxLength).
const MaxPropertyValue = 1024

// NodeSummaryPart names the property holding part i (from 0) of the node
// summary's JSON: "node-summary", "node-summary.1", "node-summary.2", ...
func NodeSummaryPart(i int) string {
	if i == 0 {
		return PropertyNodeSummary
	}
	return PropertyNodeSummary + "." + strconv.Itoa(i)
}

// NodeSummary is what the hub knows of a member's schedulable nodes: enough
// to judge whether every Pod of a JobSet fits at once, node by node, with
// the scheduler's own rules for selectors, required node affinity and
// taints. It stays bounded whatever the number of nodes: nodes that look
// the same to placement are grouped, and free capacity is a histogram
// rounded down, so the hub may underestimate a member but never overstate
// it.
type NodeSummary struct {
	// LabelKeys are the node label keys the groups carry values of. A
	// selector or required affinity on another key cannot be judged from
	// the summary: placement treats it as matching, and the start deadline
	// withdraws a JobSet that then cannot start.
	// +optional
	LabelKeys []string `json:"labelKeys,omitempty"`
	// Groups are the schedulable nodes, grouped by their values of
	// LabelKeys and their NoSchedule and NoExecute taints.
	// +optional
	Groups []NodeGroup `json:"groups,omitempty"`
	// Omitted counts schedulable nodes left out to keep the summary
	// bounded (placement does not count on them).
	// +optional
	Omitted int32 `json:"omitted,omitempty"`
}

// NodeGroup is a set of schedulable nodes with the same values of the
// summary's label keys and the same NoSchedule and NoExecute taints.
type NodeGroup struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// Nodes is how many nodes the group has.
	Nodes int32 `json:"nodes"`
	// Allocatable is, per resource, the most any node of the group has:
	// a Pod asking for more fits on none of them, ever.
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// Free is the group's nodes by what they have free now (allocatable
	// minus the requests of unfinished Pods bound to them), rounded down.
	// Its counts add up to at most Nodes; nodes of no entry have nothing
	// placement can count on.
	// +optional
	Free []FreeNodes `json:"free,omitempty"`
}

// FreeNodes is Count nodes that each have at least Free free. A resource
// absent from Free (or from Allocatable) is none: the agent leaves zeros
// out.
type FreeNodes struct {
	Count int32               `json:"count"`
	Free  corev1.ResourceList `json:"free"`
}
