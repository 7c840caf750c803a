package v1alpha1

// Names shared by the hub and the agents. They are the contract between the
// two sides, so they live with the API.
const (
	// ClusterManagerName is spec.clusterManager.name (and the
	// x-k8s.io/cluster-manager label) of the ClusterProfiles the fleet owns.
	ClusterManagerName = "jobset-fleet"

	// DefaultInventoryNamespace holds the fleet's ClusterProfiles on the hub.
	DefaultInventoryNamespace = "fleet-system"

	// MemberNamespacePrefix + cluster name is the member's namespace on the
	// hub: its dispatches and heartbeat Lease live there, and nothing else of
	// the hub is visible to its agent.
	MemberNamespacePrefix = "fleet-member-"

	// HeartbeatLeaseName is the Lease an agent renews in its member namespace.
	HeartbeatLeaseName = "agent-heartbeat"

	// PropertyAllocatablePrefix and PropertyFreePrefix prefix resource names
	// (cpu, memory, nvidia.com/gpu) in ClusterProfile status.properties:
	// "allocatable.cpu" is the sum of node allocatable, "free.cpu" that minus
	// the requests of pods not yet finished.
	PropertyAllocatablePrefix = "allocatable."
	PropertyFreePrefix        = "free."
	// PropertyFleetUsedPrefix + resource ("fleet-used.cpu") is what the
	// unfinished pods of fleet JobSets request. The hub adds it back to free
	// and subtracts the full requests of its dispatches instead, so a burst
	// of dispatches whose pods do not exist yet is never counted as free.
	PropertyFleetUsedPrefix = "fleet-used."
	// PropertyTopologyPrefix + a node label key ("topology.rack") is the
	// number of distinct values of that label among schedulable nodes: the
	// topology domains an exclusive-topology JobSet can spread its Jobs over.
	PropertyTopologyPrefix = "topology."

	// DispatchAnnotation on a member JobSet is "<hub namespace>/<dispatch name>".
	DispatchAnnotation = "fleet.jobset.x-k8s.io/dispatch"

	// AgentFinalizer is put on a dispatch by its agent before the member copy
	// is created and removed once that copy (and its Jobs) is gone, so
	// deleting a dispatch can never leave a copy running.
	AgentFinalizer = "fleet.jobset.x-k8s.io/agent"

	// DispatchDeleted is the dispatch condition the agent sets True once the
	// member copy of a deleting dispatch is gone.
	DispatchDeleted = "Deleted"
)

// Annotations a user sets on a hub JobSet.
const (
	// PinnedClusterAnnotation names the only member the JobSet may run on.
	PinnedClusterAnnotation = "fleet.jobset.x-k8s.io/pinned-cluster"
	// ClusterSelectorAnnotation is a label selector (kubectl syntax, e.g.
	// "region=eu,gpu in (a100,h100)") over ClusterProfile labels.
	ClusterSelectorAnnotation = "fleet.jobset.x-k8s.io/cluster-selector"
	// OnMemberLostAnnotation says what happens when the member running the
	// JobSet is lost: Redispatch (default), Fail, or Wait.
	OnMemberLostAnnotation = "fleet.jobset.x-k8s.io/on-member-lost"
)

// MemberNamespace is the hub namespace of a member cluster.
func MemberNamespace(cluster string) string { return MemberNamespacePrefix + cluster }

// DispatchName is the JobSetDispatch name for a hub JobSet. Namespaces cannot
// contain dots, so "<namespace>.<name>" never collides.
func DispatchName(namespace, name string) string { return namespace + "." + name }
