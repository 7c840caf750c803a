package v1alpha2

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Default fills in what upstream JobSet's defaulting webhook fills in on
// create, so that what is stored (and what `kubectl get -o yaml` shows) is
// what upstream would store. It is idempotent. groupName and replicas are
// defaulted by the CRD schema; they are set here too for objects that never
// passed through the apiserver (the reconciler plans on a defaulted copy).
func Default(js *JobSet) {
	spec := &js.Spec
	if spec.SuccessPolicy == nil {
		spec.SuccessPolicy = &SuccessPolicy{Operator: OperatorAll}
	}
	if spec.StartupPolicy == nil {
		spec.StartupPolicy = &StartupPolicy{StartupPolicyOrder: AnyOrder}
	}
	for i := range spec.ReplicatedJobs {
		rjob := &spec.ReplicatedJobs[i]
		if rjob.GroupName == "" {
			rjob.GroupName = DefaultGroupName
		}
		jobSpec := &rjob.Template.Spec
		if jobSpec.CompletionMode == nil {
			jobSpec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
		}
		if jobSpec.Template.Spec.RestartPolicy == "" {
			jobSpec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
		}
	}
	if spec.Network == nil {
		spec.Network = &Network{}
	}
	if spec.Network.EnableDNSHostnames == nil {
		spec.Network.EnableDNSHostnames = ptr.To(true)
	}
	if spec.Network.PublishNotReadyAddresses == nil {
		spec.Network.PublishNotReadyAddresses = ptr.To(true)
	}
	if fp := spec.FailurePolicy; fp != nil {
		// The CRD defaults restartStrategy; a typed client may omit it.
		if fp.RestartStrategy == "" {
			fp.RestartStrategy = Recreate
		}
		for i := range fp.Rules {
			if fp.Rules[i].Name == "" {
				fp.Rules[i].Name = fmt.Sprintf("failurePolicyRule%d", i)
			}
		}
	}
	for i := range spec.VolumeClaimPolicies {
		if spec.VolumeClaimPolicies[i].RetentionPolicy == nil {
			spec.VolumeClaimPolicies[i].RetentionPolicy = &VolumeRetentionPolicy{WhenDeleted: ptr.To(RetentionPolicyDelete)}
		}
	}
	// managedBy is left unset, as upstream leaves it: unset means the
	// built-in controller.
}

// Subdomain is the headless Service name and pod subdomain of a JobSet.
func (js *JobSet) Subdomain() string {
	if js.Spec.Network != nil && js.Spec.Network.Subdomain != "" {
		return js.Spec.Network.Subdomain
	}
	return js.Name
}

// DNSHostnamesEnabled reports whether the JobSet gets a headless Service.
func (js *JobSet) DNSHostnamesEnabled() bool {
	n := js.Spec.Network
	return n == nil || n.EnableDNSHostnames == nil || *n.EnableDNSHostnames
}

// ManagedByOther reports whether another controller owns this JobSet, in
// which case the built-in controller must not touch it.
func (js *JobSet) ManagedByOther() bool {
	m := js.Spec.ManagedBy
	return m != nil && *m != "" && *m != JobSetControllerName
}

// IsSuspended reports whether spec.suspend is true.
func (js *JobSet) IsSuspended() bool { return js.Spec.Suspend != nil && *js.Spec.Suspend }

// JobName is the name of Job index jobIndex of a ReplicatedJob.
func JobName(jobSetName, replicatedJobName string, jobIndex int) string {
	return fmt.Sprintf("%s-%s-%d", jobSetName, replicatedJobName, jobIndex)
}

// PVCName is the name of the PVC made from a volumeClaimPolicies template:
// <claim>-<jobset>, shared by all of the JobSet's pods.
func PVCName(jobSetName, claimName string) string {
	return fmt.Sprintf("%s-%s", claimName, jobSetName)
}

// CoordinatorEndpoint is the stable DNS name of the coordinator pod,
// published as the jobset.sigs.k8s.io/coordinator label and annotation.
// spec.coordinator must be set.
func CoordinatorEndpoint(js *JobSet) string {
	c := js.Spec.Coordinator
	return fmt.Sprintf("%s-%s-%d-%d.%s", js.Name, c.ReplicatedJob, c.JobIndex, c.PodIndex, js.Subdomain())
}

// CopySuspendMutableFields copies from src to dst the pod-template fields
// that may change while a JobSet is suspended — labels, annotations,
// nodeSelector, tolerations and schedulingGates, the ones a queueing system
// such as Kueue sets when it admits a workload (and that a suspended Job
// accepts). It is the one list of those fields.
func CopySuspendMutableFields(dst, src *corev1.PodTemplateSpec) {
	dst.Labels = src.Labels
	dst.Annotations = src.Annotations
	dst.Spec.NodeSelector = src.Spec.NodeSelector
	dst.Spec.Tolerations = src.Spec.Tolerations
	dst.Spec.SchedulingGates = src.Spec.SchedulingGates
}
