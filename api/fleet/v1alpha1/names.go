package v1alpha1

import (
	"slices"
	"strings"
)

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
	// PropertyStorageClassPrefix + a StorageClass name is a storage class
	// the member has; the value is PropertyStorageClassDefault for the
	// default class, else PropertyStorageClassAvailable. JobSets with
	// volumeClaimPolicies are placed only where their claims' classes are.
	PropertyStorageClassPrefix    = "storageclass."
	PropertyStorageClassDefault   = "default"
	PropertyStorageClassAvailable = "available"

	// DispatchAnnotation on a member JobSet is "<hub namespace>/<dispatch name>".
	DispatchAnnotation = "fleet.jobset.x-k8s.io/dispatch"

	// AgentFinalizer is put on a dispatch by its agent before the member copy
	// is created and removed once that copy (and its Jobs) is gone, so
	// deleting a dispatch can never leave a copy running.
	AgentFinalizer = "fleet.jobset.x-k8s.io/agent"

	// DispatchDeleted is the dispatch condition the agent sets True once the
	// member copy of a deleting dispatch is gone. `unjoin` sets it too
	// (reason ReasonUnjoined) after deleting the member's copies itself. For
	// the hub it is proof that nothing of that dispatch runs any more.
	DispatchDeleted = "Deleted"
	// ReasonUnjoined is the DispatchDeleted reason `unjoin` writes.
	ReasonUnjoined = "Unjoined"
	// ReasonStopConfirmed is the DispatchDeleted reason of an operator's
	// statement, made through `join`/`unjoin`, that a copy no agent can
	// report on any more (the member was taken over or unjoined keeping
	// its workloads) is stopped. Like OutOfServiceLabel, it is proof the
	// hub acts on.
	ReasonStopConfirmed = "StopConfirmedByOperator"

	// ReportFinalizer is held by the agent on every member copy until the
	// copy's final status has reached the hub, so a copy deleted on the
	// member (ttlSecondsAfterFinished, by hand) while the hub is unreachable
	// is never mistaken for one that never ran, and never run again.
	ReportFinalizer = "fleet.jobset.x-k8s.io/report"
	// RestartsOffsetAnnotation on a member copy counts the restarts earlier
	// copies of the same dispatch made on this member (a copy deleted by hand
	// and created again): the agent reports the copy's restarts plus this,
	// and runs it with maxRestarts reduced by the part that counts towards
	// the maximum, so restarts are never lost or reset.
	RestartsOffsetAnnotation = "fleet.jobset.x-k8s.io/restarts-offset"
	// RestartsTowardsMaxOffsetAnnotation is the part of the offset that
	// counts towards failurePolicy.maxRestarts.
	RestartsTowardsMaxOffsetAnnotation = "fleet.jobset.x-k8s.io/restarts-towards-max-offset"

	// SystemNamespace is the fleet's own namespace, on the hub and on every
	// member: the hub and the agent run there, with their leader-election
	// Leases; on a member it holds the agent's hub kubeconfig Secret and its
	// LastRenewalLeaseName Lease. No fleet JobSet runs there.
	SystemNamespace = "jobset-fleet-system"
	// HubKubeconfigSecret in SystemNamespace on a member is the Secret `join`
	// writes and the agent reads: the agent's hub kubeconfig under
	// HubKubeconfigKey and the member's fleet name under ClusterNameKey, so
	// one agent install fits every member.
	HubKubeconfigSecret = "hub-kubeconfig"
	HubKubeconfigKey    = "kubeconfig"
	ClusterNameKey      = "cluster-name"

	// LastRenewalLeaseName is a Lease in the agent's namespace on the member
	// whose renewTime records the agent's last successful heartbeat, so an
	// agent that restarts while the hub is unreachable still fences on time.
	LastRenewalLeaseName = "agent-hub-renewal"
)

// ClusterProfile keys the hub reads. Agents may write only a profile's
// status, so everything here is set by `join` or an operator.
const (
	// OutOfServiceLabel on a ClusterProfile is an operator's statement that
	// nothing of the fleet runs on that member any more (shut down, wiped,
	// or its copies stopped by hand): the fleet's version of the
	// node.kubernetes.io/out-of-service taint. The hub places nothing there
	// and, once the member's agent is silent, moves its JobSets without
	// waiting for the agent to confirm their copies stopped.
	OutOfServiceLabel = "fleet.jobset.x-k8s.io/out-of-service"
	// CordonedLabel (value "true") on a ClusterProfile is an operator's
	// statement that the member takes no new work, for maintenance: the
	// hub places nothing new there, and what runs there stays. Unlike
	// OutOfServiceLabel it proves nothing about copies.
	CordonedLabel = "fleet.jobset.x-k8s.io/cordoned"
	// DrainingLabel (value "true"), with CordonedLabel, asks the hub to
	// also move the member's JobSets that have not started, through the
	// confirmed-stop path; started ones are left to finish.
	DrainingLabel = "fleet.jobset.x-k8s.io/draining"
	// ClusterIDAnnotation on a ClusterProfile is the member's identity, the
	// UID of its kube-system namespace, recorded by `join`. The agent
	// reports the same value as property ClusterIDProperty; the hub trusts
	// a heartbeat only from the member whose reports match, so one member
	// identity is held by one cluster.
	ClusterIDAnnotation = "fleet.jobset.x-k8s.io/cluster-id"
	// ClusterIDProperty is the KEP-2149 ClusterProperty name of the cluster
	// ID, reported in ClusterProfile status.properties.
	ClusterIDProperty = "cluster.clusterset.k8s.io"
	// AllowedNamespacesAnnotation on a ClusterProfile, when set, lists the
	// hub namespaces (comma-separated) whose JobSets may run on the member.
	AllowedNamespacesAnnotation = "fleet.jobset.x-k8s.io/allowed-namespaces"
)

// What the Pods of a fleet copy are given: the placement epoch, the number
// the hub fences on. Storage a workload writes to can reject writes from a
// lower epoch than it has seen (a fencing token), so a stale copy can never
// overwrite a newer one's checkpoint.
const (
	// PodEpochAnnotation on every Pod template of a member copy is its epoch.
	PodEpochAnnotation = "fleet.jobset.x-k8s.io/epoch"
	// EpochEnvVar is set in every container of a member copy from
	// PodEpochAnnotation through the Downward API.
	EpochEnvVar = "JOBSET_FLEET_EPOCH"
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

// MemberOfNamespace is the inverse of MemberNamespace: the member whose
// namespace ns is, and whether ns is a member namespace at all.
func MemberOfNamespace(ns string) (string, bool) { return strings.CutPrefix(ns, MemberNamespacePrefix) }

// DispatchName is the JobSetDispatch name for a hub JobSet. Namespaces cannot
// contain dots, so "<namespace>.<name>" never collides.
func DispatchName(namespace, name string) string { return namespace + "." + name }

// BuiltinDeniedNamespaces are hub namespaces whose JobSets never run on
// members, whatever the hub's --denied-namespaces add: the system's and the
// fleet's own (a JobSet there would run next to the agents' credentials),
// and every member namespace. A trailing * matches a prefix.
var BuiltinDeniedNamespaces = []string{
	"kube-*", SystemNamespace, DefaultInventoryNamespace, MemberNamespacePrefix + "*",
}

// NamespaceDenied reports whether JobSets of the hub namespace ns may not
// run on members: ns matches BuiltinDeniedNamespaces or extra.
func NamespaceDenied(ns string, extra []string) bool {
	match := func(pattern string) bool {
		prefix, wildcard := strings.CutSuffix(pattern, "*")
		return pattern == ns || (wildcard && strings.HasPrefix(ns, prefix))
	}
	return slices.ContainsFunc(BuiltinDeniedNamespaces, match) || slices.ContainsFunc(extra, match)
}

// The start deadline (hub --start-timeout): a placement none of whose Pods
// started within it is withdrawn and the JobSet placed again elsewhere.
const (
	// StartTimeoutAnnotation, set by a user on a hub JobSet, overrides the
	// hub's --start-timeout for it: a Go duration ("15m"); "0" turns the
	// withdrawal off for this JobSet.
	StartTimeoutAnnotation = "fleet.jobset.x-k8s.io/start-timeout"
	// DispatchStarted is a dispatch condition an agent may set True once a
	// Pod of the dispatch's epoch ran (scheduled and started containers).
	// The hub also infers a start from the reported JobSet status (ready,
	// succeeded or failed Jobs, restarts); this condition also covers a Job
	// only some of whose Pods run, which that status does not show.
	DispatchStarted = "Started"
)

// PodSecurityLabelPrefix prefixes a namespace's Pod Security labels.
const PodSecurityLabelPrefix = "pod-security.kubernetes.io/"

// PodSecurityLabels are the Pod Security labels among a namespace's labels
// (nil when none): what a dispatch carries of its JobSet's hub namespace
// (spec.namespaceLabels), and all an agent puts on a namespace it creates,
// so a copy's Pods get no more on the member than the hub gives them.
func PodSecurityLabels(namespaceLabels map[string]string) map[string]string {
	var out map[string]string
	for k, v := range namespaceLabels {
		if strings.HasPrefix(k, PodSecurityLabelPrefix) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
