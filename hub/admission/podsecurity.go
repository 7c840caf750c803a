package admission

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// The hub reads the JobSet's namespace for its Pod Security labels, live,
// so a namespace tightened just before a create is never judged stale.
//
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get

// PodSecurity applies the Pod Security Standards of a JobSet's hub
// namespace to its pod templates. The pods run on a member, where the hub
// namespace's Pod Security admission never sees them; without this a user
// confined to restricted on the hub would get privileged pods there.
// It uses Pod Security admission's own checks and messages.
type PodSecurity struct {
	evaluator policy.Evaluator
}

// NewPodSecurity returns a PodSecurity with the checks Pod Security
// admission enables by default, at their latest version.
func NewPodSecurity() (*PodSecurity, error) {
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		return nil, fmt.Errorf("pod security checks: %w", err)
	}
	return &PodSecurity{evaluator: evaluator}, nil
}

// unlabelledLevel is Pod Security admission's built-in default for a
// namespace without labels: privileged, for every mode.
var unlabelledLevel = psapi.LevelVersion{Level: psapi.LevelPrivileged, Version: psapi.LatestVersion()}

// NamespacePolicy is the Pod Security policy of a namespace with these
// labels, resolved as Pod Security admission resolves it: an unset mode is
// privileged (the built-in default), and an enforce label that does not
// parse enforces restricted:latest. The errors name such labels.
func NamespacePolicy(labels map[string]string) (psapi.Policy, field.ErrorList) {
	return psapi.PolicyToEvaluate(labels, psapi.Policy{Enforce: unlabelledLevel, Audit: unlabelledLevel, Warn: unlabelledLevel})
}

// Check evaluates the pod template of every replicated job of spec against
// the namespace policy: a violation of the enforce level is an error at
// the template's field path with Pod Security admission's message for a
// Pod; one of only the warn level is a warning, as for a Pod. On update
// (old non-nil) only templates that changed are evaluated, as Pod Security
// admission re-evaluates a Pod only when its spec changes: a JobSet admitted
// before its namespace was tightened can still be edited, finalized and
// deleted.
func (p *PodSecurity) Check(nsPolicy psapi.Policy, old, spec *jobset.JobSetSpec) (field.ErrorList, []string) {
	var errs field.ErrorList
	var warnings []string
	for i := range spec.ReplicatedJobs {
		rjob := &spec.ReplicatedJobs[i]
		template := &rjob.Template.Spec.Template
		if old != nil && unchangedTemplate(old, rjob.Name, template) {
			continue
		}
		path := field.NewPath("spec", "replicatedJobs").Index(i).Child("template", "spec", "template")
		enforced := policy.AggregateCheckResults(p.evaluator.EvaluatePod(nsPolicy.Enforce, &template.ObjectMeta, &template.Spec))
		if !enforced.Allowed {
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("violates PodSecurity %q: %s", nsPolicy.Enforce.String(), enforced.ForbiddenDetail())))
			continue
		}
		warned := policy.AggregateCheckResults(p.evaluator.EvaluatePod(nsPolicy.Warn, &template.ObjectMeta, &template.Spec))
		if !warned.Allowed {
			warnings = append(warnings, fmt.Sprintf("%s: would violate PodSecurity %q: %s", path, nsPolicy.Warn.String(), warned.ForbiddenDetail()))
		}
	}
	return errs, warnings
}

// templatesChanged reports whether spec has a pod template old does not:
// Pod Security judges only those, as its admission does for Pods.
func templatesChanged(old, spec *jobset.JobSetSpec) bool {
	for i := range spec.ReplicatedJobs {
		rjob := &spec.ReplicatedJobs[i]
		if !unchangedTemplate(old, rjob.Name, &rjob.Template.Spec.Template) {
			return true
		}
	}
	return false
}

// unchangedTemplate reports whether old has a replicated job of this name
// with the same pod template.
func unchangedTemplate(old *jobset.JobSetSpec, name string, template *corev1.PodTemplateSpec) bool {
	for i := range old.ReplicatedJobs {
		if old.ReplicatedJobs[i].Name == name {
			return equality.Semantic.DeepEqual(&old.ReplicatedJobs[i].Template.Spec.Template, template)
		}
	}
	return false
}
