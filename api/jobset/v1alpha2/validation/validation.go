// Package validation is JobSet admission validation: what upstream JobSet
// v0.12's validating webhook accepts and rejects, with upstream's messages,
// error types and field paths, so that a JobSet rejected by upstream is
// rejected by jobset-fleet with the same text (clients and CI scripts match
// on it). The member's webhook and the hub's admission both use it.
//
// Where upstream reports an error without a field (a plain message, shown
// as "<nil>: Internal error: ..."), ValidateJobSet does the same;
// ValidateJobSetWithFieldPaths names the field instead, for the hub, whose
// users are promised a field path (see DESIGN.md, invariant 5).
package validation

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Messages and limits that upstream's webhook uses; they are part of its
// observable behavior.
const (
	// dns1035TooLong is how IsDNS1035Label says a value exceeds 63
	// characters; upstream replaces that message with its own per field.
	dns1035TooLong = "must be no more than 63 characters"

	groupNameTooLong = ".spec.replicatedJob[].groupName is too long, must be less than 63 characters"
	jobNameTooLong   = "JobSet name is too long, job names generated for this JobSet will exceed 63 characters"
	podNameTooLong   = "JobSet name is too long, pod names generated for this JobSet will exceed 63 characters"
	subdomainTooLong = ".spec.network.subdomain is too long, must be less than 63 characters"

	maxManagedByLength = 63
	maxPVCNameLength   = 63

	// maxReplicasForRestartJob: per-Job restart counters live in status lists
	// capped at 1024 items.
	maxReplicasForRestartJob = 1024

	minRuleNameLength = 1
	maxRuleNameLength = 128

	// podNameSuffix stands for the random suffix the Job controller appends
	// to a pod's name.
	podNameSuffix = "-abcde"
)

var ruleName = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// jobFailureReasons are the reasons a batch/v1 Job's Failed condition can
// carry; a failure policy rule naming another could never match.
var jobFailureReasons = []string{
	batchv1.JobReasonBackoffLimitExceeded,
	batchv1.JobReasonDeadlineExceeded,
	batchv1.JobReasonFailedIndexes,
	batchv1.JobReasonMaxFailedIndexesExceeded,
	batchv1.JobReasonPodFailurePolicy,
}

// PVCLookup returns the PVC namespace/name, or nil (and no error) when it
// does not exist. Creation-time validation of volumeClaimPolicies compares
// the templates with PVCs that already exist, as upstream's does.
type PVCLookup func(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error)

// ValidateJobSet checks a new, defaulted JobSet as upstream's webhook does,
// in the same order and with the same errors. existing may be nil, which
// skips the checks against PVCs that already exist (the hub, whose cluster
// runs no JobSet, has none to compare with).
func ValidateJobSet(ctx context.Context, js *jobset.JobSet, existing PVCLookup) field.ErrorList {
	return validateCreate(ctx, js, existing).upstream()
}

// ValidateJobSetWithFieldPaths is ValidateJobSet, except that errors
// upstream reports without a field name the field they are about.
func ValidateJobSetWithFieldPaths(ctx context.Context, js *jobset.JobSet, existing PVCLookup) field.ErrorList {
	return validateCreate(ctx, js, existing).withFieldPaths()
}

// finding is one validation error: as upstream reports it, and the field it
// is about when upstream names none.
type finding struct {
	err   *field.Error
	about *field.Path
}

type findings []finding

func (fs *findings) add(errs ...*field.Error) {
	for _, err := range errs {
		*fs = append(*fs, finding{err: err})
	}
}

// plain records an error upstream reports as a bare message.
func (fs *findings) plain(about *field.Path, format string, args ...any) {
	*fs = append(*fs, finding{err: field.InternalError(nil, fmt.Errorf(format, args...)), about: about})
}

func (fs findings) upstream() field.ErrorList {
	var out field.ErrorList
	for _, f := range fs {
		out = append(out, f.err)
	}
	return out
}

func (fs findings) withFieldPaths() field.ErrorList {
	var out field.ErrorList
	for _, f := range fs {
		if f.about == nil {
			out = append(out, f.err)
			continue
		}
		out = append(out, field.Invalid(f.about, field.OmitValueType{}, f.err.Detail))
	}
	return out
}

func validateCreate(ctx context.Context, js *jobset.JobSet, existing PVCLookup) findings {
	var fs findings
	spec := field.NewPath("spec")
	rjobsPath := spec.Child("replicatedJobs")
	fp := js.Spec.FailurePolicy
	inPlaceRestart := fp != nil && fp.RestartStrategy == jobset.InPlaceRestart

	if inPlaceRestart && !features.Enabled(features.InPlaceRestart) {
		fs.plain(spec.Child("failurePolicy", "restartStrategy"), "InPlaceRestart restart strategy cannot be set when InPlaceRestart feature gate is disabled")
	}
	// Upstream tests the slice against nil: "dependsOn: []" counts as set.
	if len(js.Spec.ReplicatedJobs) > 0 && js.Spec.ReplicatedJobs[0].DependsOn != nil {
		fs.plain(rjobsPath.Index(0).Child("dependsOn"), "DependsOn can't be set for the first ReplicatedJob")
	}

	if n := js.Spec.Network; n != nil && n.Subdomain != "" {
		path := spec.Child("network", "subdomain")
		for _, msg := range validation.IsDNS1123Subdomain(n.Subdomain) {
			fs.add(field.Invalid(path, n.Subdomain, msg))
		}
		// The subdomain names the headless Service, so it must also be a
		// DNS-1035 label.
		for _, msg := range validation.IsDNS1035Label(n.Subdomain) {
			fs.add(field.Invalid(path, n.Subdomain, replaceTooLong(msg, subdomainTooLong)))
		}
	}

	if js.Spec.ManagedBy != nil {
		path := spec.Child("managedBy")
		m := *js.Spec.ManagedBy
		fs.add(validation.IsDomainPrefixedPath(path, m)...)
		if len(m) > maxManagedByLength {
			fs.add(field.TooLong(path, "", maxManagedByLength))
		}
	}

	names := sets.New[string]()
	for i := range js.Spec.ReplicatedJobs {
		rjob := &js.Spec.ReplicatedJobs[i]
		path := rjobsPath.Index(i)
		// Upstream adds the name before checking dependsOn, so a
		// ReplicatedJob may name itself.
		names.Insert(rjob.Name)
		jobSpec := &rjob.Template.Spec

		parallelism := ptr.Deref(jobSpec.Parallelism, 1)
		if int64(parallelism)*int64(rjob.Replicas) > math.MaxInt32 {
			fs.plain(path.Child("replicas"), "the product of replicas and parallelism must not exceed %d for replicatedJob '%s'", math.MaxInt32, rjob.Name)
		}
		for _, msg := range validation.IsDNS1035Label(rjob.GroupName) {
			fs.add(field.Invalid(path.Child("groupName"), rjob.GroupName, replaceTooLong(msg, groupNameTooLong)))
		}
		// The last Job index makes the longest name.
		longestJob := jobset.JobName(js.Name, rjob.Name, int(rjob.Replicas-1))
		for _, msg := range validation.IsDNS1035Label(longestJob) {
			fs.add(field.Invalid(path.Child("name"), longestJob, replaceTooLong(msg, jobNameTooLong)))
		}
		if isIndexed(jobSpec) && jobSpec.Completions != nil {
			longestPod := fmt.Sprintf("%s-%s-%s-%s", js.Name, rjob.Name,
				strconv.Itoa(int(rjob.Replicas-1)), strconv.Itoa(int(*jobSpec.Completions-1))) + podNameSuffix
			for _, msg := range validation.IsDNS1035Label(longestPod) {
				fs.add(field.Invalid(path.Child("name"), longestJob, replaceTooLong(msg, podNameTooLong)))
			}
		}
		for k, dep := range rjob.DependsOn {
			if !names.Has(dep.Name) {
				fs.plain(path.Child("dependsOn").Index(k).Child("name"), "replicatedJob: %s cannot depend on replicatedJob: %s", rjob.Name, dep.Name)
			}
		}
		if inPlaceRestart && features.Enabled(features.InPlaceRestart) {
			fs.add(validateInPlaceRestartJob(rjob, path.Child("template", "spec"))...)
		}
	}

	if sp := js.Spec.SuccessPolicy; sp != nil {
		for k, target := range sp.TargetReplicatedJobs {
			if !names.Has(target) {
				fs.plain(spec.Child("successPolicy", "targetReplicatedJobs").Index(k), "invalid replicatedJob name '%s' does not appear in .spec.ReplicatedJobs", target)
			}
		}
	}
	if fp != nil {
		fs = append(fs, validateFailurePolicy(js, names, spec.Child("failurePolicy"))...)
	}
	if js.Spec.Coordinator != nil {
		fs = append(fs, validateCoordinator(js, spec.Child("coordinator"))...)
	}
	if len(js.Spec.VolumeClaimPolicies) > 0 {
		fs = append(fs, validateVolumeClaimPolicies(ctx, js, existing)...)
	}
	return fs
}

// validateInPlaceRestartJob: in-place restart relies on Jobs that never
// fail and never replace a pod early, with one pod per index.
func validateInPlaceRestartJob(rjob *jobset.ReplicatedJob, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	s := &rjob.Template.Spec
	if s.BackoffLimit == nil || *s.BackoffLimit != math.MaxInt32 {
		errs = append(errs, field.Invalid(path.Child("backoffLimit"), s.BackoffLimit,
			fmt.Sprintf("replicatedJob %s: must be set to %d (MaxInt32) when in-place restart is enabled", rjob.Name, math.MaxInt32)))
	}
	if s.PodReplacementPolicy == nil || *s.PodReplacementPolicy != batchv1.Failed {
		errs = append(errs, field.Invalid(path.Child("podReplacementPolicy"), s.PodReplacementPolicy,
			fmt.Sprintf("replicatedJob %s: must be set to %s when in-place restart is enabled", rjob.Name, batchv1.Failed)))
	}
	if s.Completions == nil || s.Parallelism == nil || *s.Completions != *s.Parallelism {
		errs = append(errs, field.Invalid(path.Child("completions"), s.Completions,
			fmt.Sprintf("replicatedJob %s: completions and parallelism must be set and equal to each other when in-place restart is enabled", rjob.Name)))
	}
	return errs
}

func validateFailurePolicy(js *jobset.JobSet, names sets.Set[string], path *field.Path) findings {
	var fs findings
	fp := js.Spec.FailurePolicy
	rulesPath := path.Child("rules")

	restartJob := slices.IndexFunc(fp.Rules, func(r jobset.FailurePolicyRule) bool {
		return r.Action == jobset.RestartJob || r.Action == jobset.RestartJobAndIgnoreMaxRestarts
	})
	if restartJob >= 0 {
		if !features.Enabled(features.RestartJob) {
			// Upstream reports this alone: nothing else about the policy
			// matters while its actions are not available.
			fs.plain(rulesPath.Index(restartJob).Child("action"), "RestartJob and RestartJobAndIgnoreMaxRestarts failure policy actions are not allowed when RestartJob feature gate is disabled")
			return fs
		}
		for i, rjob := range js.Spec.ReplicatedJobs {
			if rjob.Replicas > maxReplicasForRestartJob {
				fs.plain(field.NewPath("spec", "replicatedJobs").Index(i).Child("replicas"), "JobSet cannot have a failure policy rule with RestartJob or RestartJobAndIgnoreMaxRestarts action and a replicated job with replicas > %d", maxReplicasForRestartJob)
				break
			}
		}
	}

	// Rule indexes by name, in order of first use.
	var ruleNames []string
	byName := map[string][]int{}
	for i, rule := range fp.Rules {
		rulePath := rulesPath.Index(i)
		if n := len(rule.Name); n < minRuleNameLength || n > maxRuleNameLength {
			fs.plain(rulePath.Child("name"), "invalid failure policy rule name of length %v, the rule name must be at least %v characters long and at most %v characters long", n, minRuleNameLength, maxRuleNameLength)
		}
		if _, seen := byName[rule.Name]; !seen {
			ruleNames = append(ruleNames, rule.Name)
		}
		byName[rule.Name] = append(byName[rule.Name], i)
		if !ruleName.MatchString(rule.Name) {
			fs.plain(rulePath.Child("name"), "invalid failure policy rule name '%v', a failure policy rule name must start with an alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_'", rule.Name)
		}
		for k, target := range rule.TargetReplicatedJobs {
			if !names.Has(target) {
				fs.plain(rulePath.Child("targetReplicatedJobs").Index(k), "invalid replicatedJob name '%s' in failure policy does not appear in .spec.ReplicatedJobs", target)
			}
		}
		for k, reason := range rule.OnJobFailureReasons {
			if !slices.Contains(jobFailureReasons, reason) {
				fs.plain(rulePath.Child("onJobFailureReasons").Index(k), "invalid job failure reason '%s' in failure policy is not a recognized job failure reason", reason)
			}
		}
	}
	for _, name := range ruleNames {
		if indexes := byName[name]; len(indexes) > 1 {
			fs.plain(rulesPath.Index(indexes[1]).Child("name"), "rule names are not unique, rules with indices %v all have the same name '%v'", indexes, name)
		}
	}
	return fs
}

// validateCoordinator reports the first problem with the coordinator
// reference (upstream stops there), then whether its endpoint is a valid
// label value.
func validateCoordinator(js *jobset.JobSet, path *field.Path) findings {
	var fs findings
	c := js.Spec.Coordinator
	i := slices.IndexFunc(js.Spec.ReplicatedJobs, func(r jobset.ReplicatedJob) bool { return r.Name == c.ReplicatedJob })
	switch {
	case i < 0:
		fs.plain(path.Child("replicatedJob"), "coordinator replicatedJob %s does not exist", c.ReplicatedJob)
	case c.JobIndex < 0 || c.JobIndex >= int(js.Spec.ReplicatedJobs[i].Replicas):
		fs.plain(path.Child("jobIndex"), "coordinator job index %d is invalid for replicatedJob %s", c.JobIndex, c.ReplicatedJob)
	case !isIndexed(&js.Spec.ReplicatedJobs[i].Template.Spec) || js.Spec.ReplicatedJobs[i].Template.Spec.Completions == nil:
		fs.plain(path.Child("replicatedJob"), "job for coordinator pod must be indexed completion mode, and completions number must be set")
	case c.PodIndex < 0 || c.PodIndex >= int(*js.Spec.ReplicatedJobs[i].Template.Spec.Completions):
		fs.plain(path.Child("podIndex"), "coordinator pod index %d is invalid for replicatedJob %s job index %d", c.PodIndex, c.ReplicatedJob, c.JobIndex)
	}
	endpoint := jobset.CoordinatorEndpoint(js)
	if msgs := validation.IsValidLabelValue(endpoint); len(msgs) > 0 {
		fs.plain(path, "spec will lead to invalid label value %q for coordinator label %q (long JobSet / ReplicatedJob / SubDomain name?): %s", endpoint, jobset.CoordinatorKey, strings.Join(msgs, ", "))
	}
	return fs
}

func validateVolumeClaimPolicies(ctx context.Context, js *jobset.JobSet, existing PVCLookup) findings {
	var fs findings
	claims := sets.New[string]()
	for i, policy := range js.Spec.VolumeClaimPolicies {
		policyPath := field.NewPath("spec", "volumeClaimPolicies").Index(i)
		for k, tmpl := range policy.Templates {
			// Upstream names the list "template" in its paths.
			tmplPath := policyPath.Child("template").Index(k)
			if claims.Has(tmpl.Name) {
				fs.add(field.Invalid(tmplPath.Child("name"), tmpl.Name, "names must be unique for VolumeClaimPolicies template"))
			}
			for _, msg := range validation.IsDNS1123Subdomain(tmpl.Name) {
				fs.add(field.Invalid(tmplPath.Child("name"), tmpl.Name, msg))
			}
			pvcName := jobset.PVCName(js.Name, tmpl.Name)
			if len(pvcName) > maxPVCNameLength {
				fs.add(field.Invalid(tmplPath.Child("name"), tmpl.Name, "VolumeClaimPolicies template name is too long"))
			}
			fs.add(validateClaimMounts(js.Spec.ReplicatedJobs, tmpl.Name)...)
			if existing != nil {
				fs.add(validateExistingPVC(ctx, js, policy, tmpl, pvcName, policyPath, tmplPath, existing)...)
			}
			claims.Insert(tmpl.Name)
		}
	}
	return fs
}

// validateClaimMounts: some container or init container must mount the
// claim, and no pod template may define a volume of the same name (the
// controller adds that volume).
func validateClaimMounts(rjobs []jobset.ReplicatedJob, claim string) field.ErrorList {
	var errs field.ErrorList
	mounted := false
	for i, rjob := range rjobs {
		podSpec := &rjob.Template.Spec.Template.Spec
		for k, vol := range podSpec.Volumes {
			if vol.Name == claim {
				errs = append(errs, field.Invalid(
					field.NewPath("spec", "replicatedJobs").Index(i).Child("template", "spec", "template", "spec", "volumes").Index(k).Child("name"),
					vol.Name, fmt.Sprintf("volume name conflicts with VolumeClaimPolicy template name: %s", claim)))
			}
		}
		mounted = mounted || MountsVolume(podSpec, claim)
	}
	if !mounted {
		errs = append(errs, field.Invalid(field.NewPath("spec", "replicatedJobs"), rjobs,
			fmt.Sprintf("replicatedJob containers don't have a matching volumeMount: %s from VolumeClaimPolicies", claim)))
	}
	return errs
}

// MountsVolume reports whether a container or init container of podSpec
// mounts the volume name.
func MountsVolume(podSpec *corev1.PodSpec, name string) bool {
	for _, containers := range [][]corev1.Container{podSpec.InitContainers, podSpec.Containers} {
		for _, c := range containers {
			if slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == name }) {
				return true
			}
		}
	}
	return false
}

// validateExistingPVC: a JobSet may adopt a PVC that already exists only if
// the template describes it exactly and the JobSet will not delete it.
func validateExistingPVC(ctx context.Context, js *jobset.JobSet, policy jobset.VolumeClaimPolicy, tmpl corev1.PersistentVolumeClaim,
	pvcName string, policyPath, tmplPath *field.Path, existing PVCLookup) field.ErrorList {
	pvc, err := existing(ctx, js.Namespace, pvcName)
	if err != nil {
		return field.ErrorList{field.InternalError(tmplPath, fmt.Errorf("failed to check for existing PVC %s: %w", pvcName, err))}
	}
	if pvc == nil {
		return nil
	}
	var errs field.ErrorList
	if !reflect.DeepEqual(pvc.Spec, tmpl.Spec) {
		errs = append(errs, field.Invalid(tmplPath.Child("spec"), tmpl.Spec,
			fmt.Sprintf("spec does not match existing PVC %s in namespace %s", pvcName, js.Namespace)))
	}
	if rp := policy.RetentionPolicy; rp != nil && ptr.Deref(rp.WhenDeleted, jobset.RetentionPolicyDelete) != jobset.RetentionPolicyRetain {
		errs = append(errs, field.Invalid(policyPath.Child("retentionPolicy", "whenDeleted"), rp.WhenDeleted,
			"retentionPolicy must be retain when PVC exists"))
	}
	return errs
}

// ValidateJobSetUpdate checks an update as upstream's webhook does: the
// create checks are not repeated; spec.replicatedJobs may change only in
// the pod-template scheduling fields while the JobSet is (or is being)
// suspended, and, with ElasticJobSet, in parallelism and completions of
// Indexed Jobs; managedBy cannot change. The rest of the spec is immutable
// through the CRD's CEL rules.
func ValidateJobSetUpdate(oldJS, newJS *jobset.JobSet) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	masked := newJS.Spec.DeepCopy()
	old := map[string]*jobset.ReplicatedJob{}
	for i := range oldJS.Spec.ReplicatedJobs {
		old[oldJS.Spec.ReplicatedJobs[i].Name] = &oldJS.Spec.ReplicatedJobs[i]
	}

	if features.Enabled(features.ElasticJobSet) {
		finished := meta.IsStatusConditionTrue(oldJS.Status.Conditions, string(jobset.JobSetCompleted)) ||
			meta.IsStatusConditionTrue(oldJS.Status.Conditions, string(jobset.JobSetFailed))
		for i := range newJS.Spec.ReplicatedJobs {
			n := &newJS.Spec.ReplicatedJobs[i].Template.Spec
			o, ok := old[newJS.Spec.ReplicatedJobs[i].Name]
			if !ok || !isIndexed(n) {
				continue
			}
			errs = append(errs, validateScaling(&o.Template.Spec, n, finished, spec.Child("replicatedJobs").Index(i).Child("template", "spec"))...)
			masked.ReplicatedJobs[i].Template.Spec.Parallelism = o.Template.Spec.Parallelism
			masked.ReplicatedJobs[i].Template.Spec.Completions = o.Template.Spec.Completions
		}
	}

	// Queueing systems such as Kueue set these on a suspended JobSet before
	// they admit it.
	if oldJS.IsSuspended() || newJS.IsSuspended() {
		for i := range newJS.Spec.ReplicatedJobs {
			if o, ok := old[newJS.Spec.ReplicatedJobs[i].Name]; ok {
				jobset.CopySuspendMutableFields(&masked.ReplicatedJobs[i].Template.Spec.Template, &o.Template.Spec.Template)
			}
		}
	}

	errs = append(errs, apivalidation.ValidateImmutableField(masked.ReplicatedJobs, oldJS.Spec.ReplicatedJobs, spec.Child("replicatedJobs"))...)
	errs = append(errs, apivalidation.ValidateImmutableField(newJS.Spec.ManagedBy, oldJS.Spec.ManagedBy, spec.Child("managedBy"))...)
	return errs
}

// validateScaling checks a change of parallelism or completions under
// ElasticJobSet: only while the JobSet runs, to at least 1, kept equal.
func validateScaling(o, n *batchv1.JobSpec, finished bool, path *field.Path) field.ErrorList {
	parallelismChanged := !ptr.Equal(n.Parallelism, o.Parallelism)
	completionsChanged := !ptr.Equal(n.Completions, o.Completions)
	if !parallelismChanged && !completionsChanged {
		return nil
	}
	if finished {
		return field.ErrorList{field.Forbidden(path, "Cannot mutate parallelism or completions when JobSet is in a terminal state (Completed or Failed)")}
	}
	var errs field.ErrorList
	if parallelismChanged && n.Parallelism != nil && *n.Parallelism < 1 {
		errs = append(errs, field.Invalid(path.Child("parallelism"), *n.Parallelism, "parallelism must be >= 1"))
	}
	if completionsChanged && n.Completions != nil && *n.Completions < 1 {
		errs = append(errs, field.Invalid(path.Child("completions"), *n.Completions, "completions must be >= 1"))
	}
	if n.Parallelism != nil && n.Completions != nil && *n.Parallelism != *n.Completions {
		errs = append(errs, field.Invalid(path.Child("completions"), *n.Completions, "completions must be equal to parallelism for Elastic Indexed Jobs"))
	}
	return errs
}

func replaceTooLong(msg, replacement string) string {
	if strings.Contains(msg, dns1035TooLong) {
		return replacement
	}
	return msg
}

func isIndexed(s *batchv1.JobSpec) bool {
	return ptr.Deref(s.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
}
