package v1alpha2

import (
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// Default fills in every field the JobSet API defaults, so that what is stored
// (and what `kubectl get -o yaml` shows) is exactly what the controller runs.
// It is idempotent. The defaulting webhook and the Job builder both call it.
func Default(js *JobSet) {
	spec := &js.Spec
	for i := range spec.ReplicatedJobs {
		rjob := &spec.ReplicatedJobs[i]
		if rjob.GroupName == "" {
			rjob.GroupName = DefaultGroupName
		}
		// Replicas is not a pointer upstream; 0 after decoding means "unset"
		// only when the CRD default did not apply (e.g. a typed client call).
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
	if spec.SuccessPolicy == nil {
		spec.SuccessPolicy = &SuccessPolicy{Operator: OperatorAll}
	}
	if spec.StartupPolicy == nil {
		spec.StartupPolicy = &StartupPolicy{StartupPolicyOrder: AnyOrder}
	}
	if fp := spec.FailurePolicy; fp != nil {
		if fp.RestartStrategy == "" {
			fp.RestartStrategy = Recreate
		}
		for i := range fp.Rules {
			if fp.Rules[i].Name == "" {
				fp.Rules[i].Name = fmt.Sprintf("failurePolicyRule%d", i)
			}
		}
	}
	if spec.ManagedBy == nil {
		spec.ManagedBy = ptr.To(JobSetControllerName)
	}
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
