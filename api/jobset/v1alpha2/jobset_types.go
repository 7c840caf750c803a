package v1alpha2

import (
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels and annotations the JobSet controller puts on child Jobs and Pods.
// The keys are upstream's, so tooling written for upstream JobSet keeps working.
const (
	JobSetNameKey           = "jobset.sigs.k8s.io/jobset-name"
	JobSetUIDKey            = "jobset.sigs.k8s.io/jobset-uid"
	ReplicatedJobNameKey    = "jobset.sigs.k8s.io/replicatedjob-name"
	ReplicatedJobReplicas   = "jobset.sigs.k8s.io/replicatedjob-replicas"
	GlobalReplicasKey       = "jobset.sigs.k8s.io/global-replicas"
	JobIndexKey             = "jobset.sigs.k8s.io/job-index"
	JobGlobalIndexKey       = "jobset.sigs.k8s.io/job-global-index"
	JobKey                  = "jobset.sigs.k8s.io/job-key"
	RestartsKey             = "jobset.sigs.k8s.io/restart-attempt"
	CoordinatorKey          = "jobset.sigs.k8s.io/coordinator"
	GroupNameKey            = "jobset.sigs.k8s.io/group-name"
	GroupReplicasKey        = "jobset.sigs.k8s.io/group-replicas"
	JobGroupIndexKey        = "jobset.sigs.k8s.io/job-group-index"
	ExclusiveKey            = "alpha.jobset.sigs.k8s.io/exclusive-topology"
	NodeSelectorStrategyKey = "alpha.jobset.sigs.k8s.io/node-selector"
	NamespacedJobKey        = "alpha.jobset.sigs.k8s.io/namespaced-job"
	NoScheduleTaintKey      = "alpha.jobset.sigs.k8s.io/no-schedule"

	// JobSetControllerName is the managedBy value that means "the built-in
	// JobSet controller"; an empty managedBy means the same.
	JobSetControllerName = "jobset.sigs.k8s.io/jobset-controller"

	// DefaultGroupName is the groupName of a ReplicatedJob that names none.
	DefaultGroupName = "default"

	// InPlaceRestartAttemptKey is the pod annotation in which upstream's
	// in-place restart agent reports the restart attempt its pod is at.
	InPlaceRestartAttemptKey = "jobset.sigs.k8s.io/in-place-restart-attempt"
	// DisableInPlaceRestartKey, set on a JobSet, tells the in-place restart
	// agent to skip its barrier and start the worker at once.
	DisableInPlaceRestartKey = "jobset.sigs.k8s.io/disable-in-place-restart"

	// PriorityKey labels a JobSet pod with its priority (set by the pod
	// webhook): exclusive placement holds among pods of the same priority.
	PriorityKey = "jobset.sigs.k8s.io/priority"
)

// JobSetConditionType is the type of a JobSet status condition.
type JobSetConditionType string

const (
	JobSetCompleted               JobSetConditionType = "Completed"
	JobSetFailed                  JobSetConditionType = "Failed"
	JobSetSuspended               JobSetConditionType = "Suspended"
	JobSetRestarting              JobSetConditionType = "RestartingJobSet"
	JobSetStartupPolicyInProgress JobSetConditionType = "StartupPolicyInProgress"
	JobSetStartupPolicyCompleted  JobSetConditionType = "StartupPolicyCompleted"
)

// JobSetSpec is the desired state of a JobSet.
// +kubebuilder:validation:XValidation:rule="!(has(self.startupPolicy) && self.startupPolicy.startupPolicyOrder == 'InOrder' && self.replicatedJobs.exists(x, has(x.dependsOn)))",message="StartupPolicy and DependsOn APIs are mutually exclusive"
type JobSetSpec struct {
	// replicatedJobs is the group of jobs that form the set.
	// +listType=map
	// +listMapKey=name
	ReplicatedJobs []ReplicatedJob `json:"replicatedJobs,omitempty"`

	// network configures DNS for the JobSet's pods.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +optional
	Network *Network `json:"network,omitempty"`

	// successPolicy says when the JobSet has succeeded. By default it succeeds
	// when all of its Jobs complete.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +optional
	SuccessPolicy *SuccessPolicy `json:"successPolicy,omitempty"`

	// failurePolicy says how Job failures are handled. By default the JobSet
	// fails as soon as any Job fails.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +optional
	FailurePolicy *FailurePolicy `json:"failurePolicy,omitempty"`

	// startupPolicy configures the order in which ReplicatedJobs start.
	// Deprecated: use dependsOn.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +optional
	StartupPolicy *StartupPolicy `json:"startupPolicy,omitempty"`

	// suspend suspends all child Jobs when true.
	// +optional
	Suspend *bool `json:"suspend,omitempty"`

	// coordinator names one pod as the JobSet's coordinator; its stable
	// network endpoint is published on every Job and Pod as the
	// jobset.sigs.k8s.io/coordinator label and annotation.
	// +optional
	Coordinator *Coordinator `json:"coordinator,omitempty"`

	// managedBy names the controller that reconciles this JobSet. Empty or
	// "jobset.sigs.k8s.io/jobset-controller" means the built-in controller;
	// any other value makes the built-in controller leave the JobSet alone.
	// It must be a domain-prefixed path of at most 63 characters and cannot
	// change; admission checks both, as upstream's does (the schema does not).
	// +optional
	ManagedBy *string `json:"managedBy,omitempty"`

	// ttlSecondsAfterFinished deletes the JobSet this many seconds after it
	// completes or fails. Unset means never; zero means right away.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`

	// volumeClaimPolicies are PVC templates shared by the JobSet's pods.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	VolumeClaimPolicies []VolumeClaimPolicy `json:"volumeClaimPolicies,omitempty"`
}

// JobSetStatus is the observed state of a JobSet.
type JobSetStatus struct {
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// restarts counts whole-JobSet restarts (all Jobs recreated).
	// +optional
	Restarts int32 `json:"restarts"`

	// restartsCountTowardsMax counts the restarts that count towards
	// failurePolicy.maxRestarts.
	// +optional
	RestartsCountTowardsMax int32 `json:"restartsCountTowardsMax,omitempty"`

	// terminalState is Completed or Failed once the JobSet has finished.
	// +optional
	TerminalState string `json:"terminalState,omitempty"`

	// replicatedJobsStatus counts Job states per ReplicatedJob.
	// +listType=map
	// +listMapKey=name
	// +optional
	ReplicatedJobsStatus []ReplicatedJobStatus `json:"replicatedJobsStatus,omitempty"`

	// previousInPlaceRestartAttempt is kept for schema compatibility with
	// upstream's in-place restart; jobset-fleet does not implement it.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PreviousInPlaceRestartAttempt *int32 `json:"previousInPlaceRestartAttempt,omitempty"`

	// currentInPlaceRestartAttempt: see previousInPlaceRestartAttempt.
	// +kubebuilder:validation:Minimum=0
	// +optional
	CurrentInPlaceRestartAttempt *int32 `json:"currentInPlaceRestartAttempt,omitempty"`

	// fleet is the jobset-fleet hub's placement bookkeeping: set on a hub
	// JobSet only, by the hub (not part of upstream JobSet).
	// +optional
	Fleet *FleetStatus `json:"fleet,omitempty"`
}

// ReplicatedJobStatus counts the child Jobs of one ReplicatedJob by state.
type ReplicatedJobStatus struct {
	Name string `json:"name"`

	// ready counts Jobs whose ready plus succeeded pods reach
	// min(parallelism, completions).
	Ready int32 `json:"ready"`

	// succeeded counts completed Jobs.
	Succeeded int32 `json:"succeeded"`

	// failed counts failed Jobs.
	Failed int32 `json:"failed"`

	// active counts Jobs with at least one running or pending pod that are
	// not being deleted.
	Active int32 `json:"active"`

	// suspended counts suspended Jobs.
	Suspended int32 `json:"suspended"`

	// jobRestarts[i] counts individual restarts of Job index i.
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	// +optional
	JobRestarts []int32 `json:"jobRestarts,omitempty"`

	// jobRestartsCountTowardsMax[i] counts the individual restarts of Job
	// index i that count towards failurePolicy.maxRestarts.
	// +kubebuilder:validation:MaxItems=1024
	// +listType=atomic
	// +optional
	JobRestartsCountTowardsMax []int32 `json:"jobRestartsCountTowardsMax,omitempty"`
}

// JobSet runs a set of Jobs as one unit: created together, networked
// together, restarted together, finished together.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="TerminalState",JSONPath=".status.terminalState",type=string,description="Final state of the JobSet"
// +kubebuilder:printcolumn:name="Restarts",JSONPath=".status.restarts",type=string,description="Number of restarts"
// +kubebuilder:printcolumn:name="Completed",JSONPath=".status.conditions[?(@.type==\"Completed\")].status",type=string
// +kubebuilder:printcolumn:name="Suspended",JSONPath=".spec.suspend",type=string,description="JobSet suspended"
// +kubebuilder:printcolumn:name="Cluster",JSONPath=".status.fleet.cluster",type=string,priority=0,description="Member cluster the fleet placed the JobSet on"
// +kubebuilder:printcolumn:name="Age",JSONPath=".metadata.creationTimestamp",type=date
type JobSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   JobSetSpec   `json:"spec,omitempty"`
	Status JobSetStatus `json:"status,omitempty"`
}

// JobSetList is a list of JobSets.
//
// +kubebuilder:object:root=true
type JobSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []JobSet `json:"items"`
}

// ReplicatedJob is a Job template stamped out replicas times.
type ReplicatedJob struct {
	// name is the ReplicatedJob's name, used in child Job names:
	// <jobset>-<name>-<jobIndex>.
	Name string `json:"name"`

	// groupName is the group this ReplicatedJob belongs to.
	// +kubebuilder:default=default
	// +optional
	GroupName string `json:"groupName,omitempty"`

	// template is the Job template.
	Template batchv1.JobTemplateSpec `json:"template"`

	// replicas is the number of Jobs made from the template.
	// +kubebuilder:default=1
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// dependsOn delays this ReplicatedJob until the named earlier one reaches
	// the given state. At most one entry is supported today.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="Value is immutable"
	// +kubebuilder:validation:MaxItems=5
	// +listType=map
	// +listMapKey=name
	// +optional
	DependsOn []DependsOn `json:"dependsOn,omitempty"`
}

// DependsOn names an earlier ReplicatedJob and the state it must reach.
type DependsOn struct {
	Name string `json:"name"`

	// +kubebuilder:validation:Enum=Ready;Complete
	Status DependsOnStatus `json:"status"`
}

// DependsOnStatus is the state a dependency must reach.
type DependsOnStatus string

const (
	// DependencyReady: every Job of the dependency is ready, succeeded or failed.
	DependencyReady DependsOnStatus = "Ready"
	// DependencyComplete: every Job of the dependency succeeded.
	DependencyComplete DependsOnStatus = "Complete"
)

// Network configures pod DNS.
type Network struct {
	// enableDNSHostnames makes pods reachable at
	// <jobset>-<replicatedJob>-<jobIndex>-<podIndex>.<subdomain>. Defaults to true.
	// +optional
	EnableDNSHostnames *bool `json:"enableDNSHostnames,omitempty"`

	// subdomain is the headless Service's name. Defaults to the JobSet name.
	// +optional
	Subdomain string `json:"subdomain,omitempty"`

	// publishNotReadyAddresses publishes DNS records before pods are ready.
	// Defaults to true.
	// +optional
	PublishNotReadyAddresses *bool `json:"publishNotReadyAddresses,omitempty"`
}

// Operator says whether All or Any of the selected Jobs must succeed.
type Operator string

const (
	OperatorAll Operator = "All"
	OperatorAny Operator = "Any"
)

// SuccessPolicy says when a JobSet has succeeded.
type SuccessPolicy struct {
	// +kubebuilder:validation:Enum=All;Any
	Operator Operator `json:"operator"`

	// targetReplicatedJobs limits the policy to these ReplicatedJobs; empty
	// means all.
	// +listType=atomic
	// +optional
	TargetReplicatedJobs []string `json:"targetReplicatedJobs,omitempty"`
}

// FailurePolicyAction is what the controller does when a rule matches.
type FailurePolicyAction string

const (
	// FailJobSet fails the JobSet at once.
	FailJobSet FailurePolicyAction = "FailJobSet"
	// RestartJobSet recreates all Jobs, counting towards maxRestarts.
	RestartJobSet FailurePolicyAction = "RestartJobSet"
	// RestartJobSetAndIgnoreMaxRestarts recreates all Jobs without counting.
	RestartJobSetAndIgnoreMaxRestarts FailurePolicyAction = "RestartJobSetAndIgnoreMaxRestarts"
	// RestartJob recreates only the failed Job, counting towards maxRestarts.
	RestartJob FailurePolicyAction = "RestartJob"
	// RestartJobAndIgnoreMaxRestarts recreates only the failed Job without counting.
	RestartJobAndIgnoreMaxRestarts FailurePolicyAction = "RestartJobAndIgnoreMaxRestarts"
)

// FailurePolicyRule maps a Job failure to an action. Rules are tried in
// order; the first whose reasons, message patterns and targets all match wins.
type FailurePolicyRule struct {
	// name defaults to failurePolicyRule<N>, N being the rule's index.
	// Admission requires 1 to 128 characters matching
	// ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$, unique among the rules; the
	// schema does not check the name (nor does upstream's), so that unnamed
	// rules can be defaulted.
	Name string `json:"name"`

	// +kubebuilder:validation:Enum=FailJobSet;RestartJobSet;RestartJobSetAndIgnoreMaxRestarts;RestartJob;RestartJobAndIgnoreMaxRestarts
	Action FailurePolicyAction `json:"action"`

	// onJobFailureReasons matches the failed Job's Failed condition reason;
	// empty matches any.
	// +optional
	OnJobFailureReasons []string `json:"onJobFailureReasons,omitempty"`

	// onJobFailureMessagePatterns are RE2 regular expressions matched against
	// the failed Job's Failed condition message; empty matches any.
	// +optional
	OnJobFailureMessagePatterns []string `json:"onJobFailureMessagePatterns,omitempty"`

	// targetReplicatedJobs limits the rule to these ReplicatedJobs; empty
	// means all.
	// +listType=atomic
	// +optional
	TargetReplicatedJobs []string `json:"targetReplicatedJobs,omitempty"`
}

// FailurePolicy says how Job failures are handled.
type FailurePolicy struct {
	// maxRestarts limits the restarts that count towards it.
	// +optional
	MaxRestarts int32 `json:"maxRestarts,omitempty"`

	// restartStrategy says how Jobs are recreated on restart.
	// +kubebuilder:default=Recreate
	// +optional
	RestartStrategy JobSetRestartStrategy `json:"restartStrategy,omitempty"`

	// rules map failures to actions; with no match, RestartJobSet applies.
	// +optional
	Rules []FailurePolicyRule `json:"rules,omitempty"`
}

// JobSetRestartStrategy says how Jobs are recreated on restart.
// +kubebuilder:validation:Enum=Recreate;BlockingRecreate;InPlaceRestart
type JobSetRestartStrategy string

const (
	// Recreate recreates each Job as soon as its old copy is gone.
	Recreate JobSetRestartStrategy = "Recreate"
	// BlockingRecreate waits until every old Job is gone before creating any.
	BlockingRecreate JobSetRestartStrategy = "BlockingRecreate"
	// InPlaceRestart is upstream's agent-based restart; accepted by the schema
	// for compatibility, rejected by the jobset-fleet webhook.
	InPlaceRestart JobSetRestartStrategy = "InPlaceRestart"
)

// StartupPolicyOptions is the startup order of ReplicatedJobs.
type StartupPolicyOptions string

const (
	AnyOrder StartupPolicyOptions = "AnyOrder"
	InOrder  StartupPolicyOptions = "InOrder"
)

// StartupPolicy configures startup order.
type StartupPolicy struct {
	// startupPolicyOrder: InOrder starts each ReplicatedJob once all Jobs of
	// the previous one are ready; AnyOrder starts them all at once.
	// +kubebuilder:validation:Enum=AnyOrder;InOrder
	StartupPolicyOrder StartupPolicyOptions `json:"startupPolicyOrder"`
}

// Coordinator names the coordinator pod.
type Coordinator struct {
	ReplicatedJob string `json:"replicatedJob"`
	// +optional
	JobIndex int `json:"jobIndex,omitempty"`
	// +optional
	PodIndex int `json:"podIndex,omitempty"`
}

// VolumeClaimPolicy declares PVCs shared by the JobSet's pods.
// +kubebuilder:validation:XValidation:rule="self.templates.all(t, !has(t.metadata.namespace) || size(t.metadata.namespace) == 0)",message="namespace cannot be set for VolumeClaimPolicies templates"
type VolumeClaimPolicy struct {
	// templates are the shared claims, created as <claim>-<jobset>.
	// +kubebuilder:validation:MaxItems=50
	// +listType=atomic
	// +optional
	Templates []corev1.PersistentVolumeClaim `json:"templates,omitempty"`

	// +optional
	RetentionPolicy *VolumeRetentionPolicy `json:"retentionPolicy,omitempty"`
}

// VolumeRetentionPolicy says what happens to shared PVCs.
type VolumeRetentionPolicy struct {
	// +kubebuilder:default=Delete
	// +optional
	WhenDeleted *RetentionPolicyType `json:"whenDeleted,omitempty"`
}

// RetentionPolicyType is Delete or Retain.
// +kubebuilder:validation:Enum=Delete;Retain
type RetentionPolicyType string

const (
	RetentionPolicyDelete RetentionPolicyType = "Delete"
	RetentionPolicyRetain RetentionPolicyType = "Retain"
)
