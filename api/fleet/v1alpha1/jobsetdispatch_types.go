package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Labels and annotations the fleet puts on objects.
const (
	// OriginUIDLabel on a member JobSet is the UID of the hub JobSet it copies.
	OriginUIDLabel = "fleet.jobset.x-k8s.io/origin-uid"
	// EpochLabel on a member JobSet is the dispatch epoch it was made for.
	EpochLabel = "fleet.jobset.x-k8s.io/epoch"
	// ManagedByFleet is the JobSet spec.managedBy value that keeps any
	// single-cluster JobSet controller on the hub away from fleet JobSets.
	ManagedByFleet = "fleet.jobset.x-k8s.io/hub"
)

// JobSetDispatch condition types.
const (
	// DispatchAccepted is True when the agent runs a member JobSet for this
	// dispatch, False (with a reason) when it refuses to.
	DispatchAccepted = "Accepted"
)

// Reasons of the DispatchAccepted condition, set by the agent.
const (
	ReasonAccepted = "Accepted"
	// ReasonConflict: a JobSet of the origin's namespace and name exists on
	// the member and was not made for this dispatch; the agent never takes
	// it over.
	ReasonConflict = "Conflict"
	// ReasonNewerEpoch: the member runs a copy made for a newer epoch.
	ReasonNewerEpoch = "NewerEpochOnMember"
	// ReasonCopyDeleted is the DispatchDeleted reason the agent writes once
	// the member copy of a deleting dispatch is gone.
	ReasonCopyDeleted = "MemberJobSetDeleted"

	// Refusals (Accepted=False): the member cannot run the copy for a
	// reason that lasts, so the hub places the JobSet elsewhere.
	//
	// ReasonMemberRefused: the member's apiserver refused the copy
	// (admission webhook or policy, validation, size).
	ReasonMemberRefused = "MemberRefused"
	// ReasonQuotaExceeded: a ResourceQuota of the namespace on the member
	// leaves no room for the copy (count/jobsets.jobset.x-k8s.io, ...).
	ReasonQuotaExceeded = "QuotaExceeded"
	// ReasonNamespaceTerminating: the namespace is being deleted on the
	// member.
	ReasonNamespaceTerminating = "NamespaceTerminating"
	// ReasonNamespaceMissing: the namespace does not exist on the member
	// and the agent runs with --create-namespaces=false.
	ReasonNamespaceMissing = "NamespaceMissing"
	// ReasonNamespaceDenied: the agent's namespace policy (the built-in
	// list and --denied-namespaces) denies the JobSet's namespace.
	ReasonNamespaceDenied = "NamespaceDenied"
)

// JobSetDispatch asks one member cluster to run one JobSet. The hub writes it
// in the member's namespace on the hub; that member's agent runs the JobSet
// and writes its status back here.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=jsd
// +kubebuilder:printcolumn:name="Origin",JSONPath=".spec.origin.namespace",type=string,description="Namespace of the hub JobSet"
// +kubebuilder:printcolumn:name="JobSet",JSONPath=".spec.origin.name",type=string,description="Name of the hub JobSet"
// +kubebuilder:printcolumn:name="Epoch",JSONPath=".spec.epoch",type=integer
// +kubebuilder:printcolumn:name="TerminalState",JSONPath=".status.jobSetStatus.terminalState",type=string
// +kubebuilder:printcolumn:name="Age",JSONPath=".metadata.creationTimestamp",type=date
type JobSetDispatch struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   JobSetDispatchSpec   `json:"spec,omitempty"`
	Status JobSetDispatchStatus `json:"status,omitempty"`
}

// JobSetDispatchSpec is what the member must run. The hub writes it whole,
// so for field ownership it is one value: the dispatch's managedFields then
// name it instead of every field of the JobSet it carries.
// +structType=atomic
type JobSetDispatchSpec struct {
	// origin identifies the user's JobSet on the hub.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	Origin Origin `json:"origin"`

	// epoch increases every time the hub places the JobSet anew. A member
	// copy made for an older epoch is stale and is removed.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	Epoch int64 `json:"epoch"`

	// jobSet is the JobSet to run: the user's labels, annotations and spec.
	JobSet JobSetTemplate `json:"jobSet"`

	// namespaceLabels are the pod-security.kubernetes.io/ labels of the
	// origin's namespace on the hub. A namespace the agent creates on the
	// member for the copy carries them, so the copy's Pods get no more
	// there than the hub would give them.
	// +optional
	NamespaceLabels map[string]string `json:"namespaceLabels,omitempty"`
}

// Origin identifies a hub JobSet.
type Origin struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       types.UID `json:"uid"`
}

// JobSetTemplate is the subset of a JobSet the member needs.
type JobSetTemplate struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// spec is the user's JobSet spec; its own validation ran on the hub.
	// +kubebuilder:pruning:PreserveUnknownFields
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	Spec jobset.JobSetSpec `json:"spec"`
}

// JobSetDispatchStatus is what the member reports. The agent writes it
// whole, so for field ownership it is one value, like the spec.
// +structType=atomic
type JobSetDispatchStatus struct {
	// jobSetStatus is the member JobSet's status, as the member sees it.
	// +optional
	JobSetStatus jobset.JobSetStatus `json:"jobSetStatus,omitempty"`

	// observedEpoch is the epoch of the member JobSet the status comes from.
	// +optional
	ObservedEpoch int64 `json:"observedEpoch,omitempty"`

	// observedGeneration is the dispatch generation the agent last applied.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// queued is set while the member copy waits in the member's Kueue
	// (kueue_member.go).
	// +optional
	Queued *MemberQueued `json:"queued,omitempty"`

	// lastSyncTime is when the agent last wrote this status.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
}

// JobSetDispatchList is a list of JobSetDispatches.
//
// +kubebuilder:object:root=true
type JobSetDispatchList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []JobSetDispatch `json:"items"`
}
