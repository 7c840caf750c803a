package webhook

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"

	batchv1 "k8s.io/api/batch/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

const (
	// maxLabelLength is the DNS-1035/1123 label limit that Job names, pod
	// hostnames and the headless Service name must respect.
	maxLabelLength = validation.DNS1035LabelMaxLength

	// podNameSuffixLength is the "-xxxxx" the Job controller appends to a
	// pod's generateName. Upstream counts it when sizing pod names, so we do
	// too: a JobSet accepted here is accepted by upstream JobSet and vice versa.
	podNameSuffixLength = len("-abcde")

	maxRuleNameLength = 128
)

// ruleNamePattern is the failure-policy rule name syntax (same as the CRD
// pattern; repeated here so a typed client that skips the schema is caught).
var ruleNamePattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// validJobFailureReasons are the Failed-condition reasons a batch/v1 Job can
// carry; a rule naming anything else could never match.
var validJobFailureReasons = []string{
	batchv1.JobReasonBackoffLimitExceeded,
	batchv1.JobReasonDeadlineExceeded,
	batchv1.JobReasonFailedIndexes,
	batchv1.JobReasonMaxFailedIndexesExceeded,
	batchv1.JobReasonPodFailurePolicy,
}

// ValidateJobSet checks a JobSet the way admission does on create. It expects
// a defaulted object (the mutating webhook runs first) but tolerates missing
// defaults. It is exported so the hub can reject the same inputs, with the
// same field paths, before dispatch.
func ValidateJobSet(js *jobset.JobSet) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")

	errs = append(errs, validateNetwork(js, spec.Child("network"))...)
	errs = append(errs, validateManagedBy(js.Spec.ManagedBy, spec.Child("managedBy"))...)

	rjobsPath := spec.Child("replicatedJobs")
	names := make([]string, 0, len(js.Spec.ReplicatedJobs))
	for i := range js.Spec.ReplicatedJobs {
		rjob := &js.Spec.ReplicatedJobs[i]
		errs = append(errs, validateReplicatedJob(js.Name, rjob, names, rjobsPath.Index(i))...)
		names = append(names, rjob.Name)
	}

	if sp := js.Spec.SuccessPolicy; sp != nil {
		errs = append(errs, validateTargets(sp.TargetReplicatedJobs, names, spec.Child("successPolicy", "targetReplicatedJobs"))...)
	}
	errs = append(errs, validateFailurePolicy(js.Spec.FailurePolicy, names, spec.Child("failurePolicy"))...)
	errs = append(errs, validateCoordinator(js, spec.Child("coordinator"))...)
	return errs
}

// ValidateJobSetUpdate checks an update. Like upstream it does not re-run the
// create checks on unchanged fields: a stored object must stay updatable (for
// example to remove a finalizer) even if validation tightened since it was
// created. Fields that may change (the coordinator) are re-validated.
//
// The old object is defaulted before comparing: the new one always is (the
// mutating webhook ran), and an object stored before this webhook was
// installed must not look "changed" merely because defaults were filled in.
func ValidateJobSetUpdate(oldJS, newJS *jobset.JobSet) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	oldJS = oldJS.DeepCopy()
	jobset.Default(oldJS)
	suspended := oldJS.IsSuspended() || newJS.IsSuspended()
	errs = append(errs, validateReplicatedJobsUpdate(oldJS.Spec.ReplicatedJobs, newJS.Spec.ReplicatedJobs, suspended, spec.Child("replicatedJobs"))...)

	// CEL's "self == oldSelf" only fires when the field is set on both sides,
	// so setting or clearing managedBy has to be caught here.
	if managedBy(oldJS) != managedBy(newJS) {
		errs = append(errs, field.Invalid(spec.Child("managedBy"), ptr.Deref(newJS.Spec.ManagedBy, ""), "field is immutable"))
	}
	if !apiequality.Semantic.DeepEqual(oldJS.Spec.Coordinator, newJS.Spec.Coordinator) {
		errs = append(errs, validateCoordinator(newJS, spec.Child("coordinator"))...)
	}
	return errs
}

func validateNetwork(js *jobset.JobSet, path *field.Path) field.ErrorList {
	if js.Spec.Network == nil || js.Spec.Network.Subdomain == "" {
		return nil
	}
	var errs field.ErrorList
	sub := js.Spec.Network.Subdomain
	// The subdomain names the headless Service, so it must be a DNS-1035
	// label (which is also a valid DNS-1123 subdomain).
	for _, msg := range validation.IsDNS1035Label(sub) {
		errs = append(errs, field.Invalid(path.Child("subdomain"), sub, msg))
	}
	return errs
}

func validateManagedBy(managedBy *string, path *field.Path) field.ErrorList {
	if managedBy == nil {
		return nil
	}
	m := *managedBy
	errs := validation.IsDomainPrefixedPath(path, m)
	if len(m) > maxLabelLength {
		errs = append(errs, field.TooLong(path, m, maxLabelLength))
	}
	return errs
}

// validateReplicatedJob checks one entry; earlier holds the names of the
// entries before it (dependsOn may only point backwards).
func validateReplicatedJob(jobSetName string, rjob *jobset.ReplicatedJob, earlier []string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	jobSpec := &rjob.Template.Spec

	parallelism := int64(ptr.Deref(jobSpec.Parallelism, 1))
	if parallelism*int64(rjob.Replicas) > math.MaxInt32 {
		errs = append(errs, field.Invalid(path.Child("replicas"), rjob.Replicas,
			fmt.Sprintf("replicas times template.spec.parallelism (%d) must not exceed %d", parallelism, math.MaxInt32)))
	}

	if rjob.GroupName != "" {
		for _, msg := range validation.IsDNS1035Label(rjob.GroupName) {
			errs = append(errs, field.Invalid(path.Child("groupName"), rjob.GroupName, msg))
		}
	}

	// The longest child Job name uses the largest job index.
	maxJobIndex := max(int(rjob.Replicas)-1, 0)
	longestJob := jobset.JobName(jobSetName, rjob.Name, maxJobIndex)
	for _, msg := range validation.IsDNS1035Label(longestJob) {
		if len(longestJob) > maxLabelLength {
			msg = fmt.Sprintf("child Job name %q is %d characters, must be no more than %d: shorten the JobSet or replicatedJob name",
				longestJob, len(longestJob), maxLabelLength)
		} else {
			msg = fmt.Sprintf("child Job name %q is not a valid DNS-1035 label: %s", longestJob, msg)
		}
		errs = append(errs, field.Invalid(path.Child("name"), rjob.Name, msg))
	}

	// Pod hostnames <job>-<podIndex> exist only for Indexed Jobs with a fixed
	// number of completions; size the largest one plus the generated suffix.
	if isIndexed(jobSpec) && jobSpec.Completions != nil {
		maxPodIndex := max(int(*jobSpec.Completions)-1, 0)
		longestPod := longestJob + "-" + strconv.Itoa(maxPodIndex)
		if n := len(longestPod) + podNameSuffixLength; n > maxLabelLength {
			errs = append(errs, field.Invalid(path.Child("name"), rjob.Name,
				fmt.Sprintf("pod names generated for this JobSet (%s-xxxxx) would be %d characters, must be no more than %d: shorten the JobSet or replicatedJob name",
					longestPod, n, maxLabelLength)))
		}
	}

	depPath := path.Child("dependsOn")
	switch {
	case len(rjob.DependsOn) == 0:
	case len(earlier) == 0:
		errs = append(errs, field.Forbidden(depPath, "the first replicatedJob cannot depend on another replicatedJob"))
	case len(rjob.DependsOn) > 1:
		errs = append(errs, field.TooMany(depPath, len(rjob.DependsOn), 1))
	default:
		for k, dep := range rjob.DependsOn {
			if !slices.Contains(earlier, dep.Name) {
				errs = append(errs, field.Invalid(depPath.Index(k).Child("name"), dep.Name,
					fmt.Sprintf("must name a replicatedJob listed before %q (one of %v)", rjob.Name, earlier)))
			}
		}
	}
	return errs
}

func validateTargets(targets, names []string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range targets {
		if !slices.Contains(names, t) {
			errs = append(errs, field.NotFound(path.Index(i), t))
		}
	}
	return errs
}

func validateFailurePolicy(fp *jobset.FailurePolicy, names []string, path *field.Path) field.ErrorList {
	if fp == nil {
		return nil
	}
	var errs field.ErrorList
	if fp.RestartStrategy == jobset.InPlaceRestart {
		errs = append(errs, field.Invalid(path.Child("restartStrategy"), fp.RestartStrategy,
			"InPlaceRestart is not supported by jobset-fleet; use Recreate or BlockingRecreate"))
	}

	seen := map[string]int{}
	for i, rule := range fp.Rules {
		rulePath := path.Child("rules").Index(i)
		namePath := rulePath.Child("name")
		switch {
		case rule.Name == "":
			errs = append(errs, field.Required(namePath, "rule name must be set"))
		case len(rule.Name) > maxRuleNameLength:
			errs = append(errs, field.TooLong(namePath, rule.Name, maxRuleNameLength))
		case !ruleNamePattern.MatchString(rule.Name):
			errs = append(errs, field.Invalid(namePath, rule.Name,
				"must start with a letter, contain only letters, digits and '_,:', and end with a letter, digit or '_'"))
		}
		if first, dup := seen[rule.Name]; dup && rule.Name != "" {
			errs = append(errs, field.Duplicate(namePath, fmt.Sprintf("%s (also rules[%d])", rule.Name, first)))
		} else {
			seen[rule.Name] = i
		}

		errs = append(errs, validateTargets(rule.TargetReplicatedJobs, names, rulePath.Child("targetReplicatedJobs"))...)
		for k, reason := range rule.OnJobFailureReasons {
			if !slices.Contains(validJobFailureReasons, reason) {
				errs = append(errs, field.NotSupported(rulePath.Child("onJobFailureReasons").Index(k), reason, validJobFailureReasons))
			}
		}
		for k, pattern := range rule.OnJobFailureMessagePatterns {
			if _, err := regexp.Compile(pattern); err != nil {
				errs = append(errs, field.Invalid(rulePath.Child("onJobFailureMessagePatterns").Index(k), pattern,
					fmt.Sprintf("not a valid RE2 regular expression: %v", err)))
			}
		}
	}
	return errs
}

func validateCoordinator(js *jobset.JobSet, path *field.Path) field.ErrorList {
	c := js.Spec.Coordinator
	if c == nil {
		return nil
	}
	idx := slices.IndexFunc(js.Spec.ReplicatedJobs, func(r jobset.ReplicatedJob) bool { return r.Name == c.ReplicatedJob })
	if idx < 0 {
		return field.ErrorList{field.NotFound(path.Child("replicatedJob"), c.ReplicatedJob)}
	}
	rjob := &js.Spec.ReplicatedJobs[idx]
	var errs field.ErrorList
	if c.JobIndex < 0 || c.JobIndex >= int(rjob.Replicas) {
		errs = append(errs, field.Invalid(path.Child("jobIndex"), c.JobIndex,
			fmt.Sprintf("must be in [0, %d): replicatedJob %q has %d replicas", rjob.Replicas, rjob.Name, rjob.Replicas)))
	}
	jobSpec := &rjob.Template.Spec
	if !isIndexed(jobSpec) {
		// Only Indexed Jobs have stable pod hostnames to publish.
		errs = append(errs, field.Invalid(path.Child("replicatedJob"), c.ReplicatedJob,
			fmt.Sprintf("the coordinator's replicatedJob must use completionMode Indexed (spec.replicatedJobs[%d].template.spec.completionMode)", idx)))
		return errs
	}
	// An Indexed Job's completions default to 1 when parallelism is unset too.
	completions := int(ptr.Deref(jobSpec.Completions, 1))
	if c.PodIndex < 0 || c.PodIndex >= completions {
		errs = append(errs, field.Invalid(path.Child("podIndex"), c.PodIndex,
			fmt.Sprintf("must be in [0, %d): Jobs of replicatedJob %q have %d completions", completions, rjob.Name, completions)))
	}
	return errs
}

// validateReplicatedJobsUpdate enforces immutability of spec.replicatedJobs.
// While the JobSet is (or is becoming) suspended, the pod-template fields a
// queueing system such as Kueue needs to inject may change: labels,
// annotations, nodeSelector, tolerations and schedulingGates.
func validateReplicatedJobsUpdate(oldJobs, newJobs []jobset.ReplicatedJob, suspended bool, path *field.Path) field.ErrorList {
	if len(oldJobs) != len(newJobs) {
		return field.ErrorList{field.Invalid(path, len(newJobs),
			fmt.Sprintf("field is immutable: the number of replicatedJobs cannot change (was %d)", len(oldJobs)))}
	}
	var errs field.ErrorList
	for i := range newJobs {
		o, n := &oldJobs[i], newJobs[i].DeepCopy()
		p := path.Index(i)
		if suspended {
			ot, nt := &o.Template.Spec.Template, &n.Template.Spec.Template
			nt.Labels, nt.Annotations = ot.Labels, ot.Annotations
			nt.Spec.NodeSelector = ot.Spec.NodeSelector
			nt.Spec.Tolerations = ot.Spec.Tolerations
			nt.Spec.SchedulingGates = ot.Spec.SchedulingGates
		}
		immutable := "field is immutable"
		if !suspended {
			immutable += "; while the JobSet is suspended, the pod template's labels, annotations, nodeSelector, tolerations and schedulingGates may change"
		}
		if n.Name != o.Name {
			errs = append(errs, field.Invalid(p.Child("name"), n.Name, immutable))
		}
		if n.GroupName != o.GroupName {
			errs = append(errs, field.Invalid(p.Child("groupName"), n.GroupName, immutable))
		}
		if n.Replicas != o.Replicas {
			errs = append(errs, field.Invalid(p.Child("replicas"), n.Replicas, immutable))
		}
		if !apiequality.Semantic.DeepEqual(n.DependsOn, o.DependsOn) {
			errs = append(errs, field.Forbidden(p.Child("dependsOn"), immutable))
		}
		if !apiequality.Semantic.DeepEqual(n.Template, o.Template) {
			errs = append(errs, field.Forbidden(p.Child("template"), immutable))
		}
	}
	return errs
}

func isIndexed(spec *batchv1.JobSpec) bool {
	return ptr.Deref(spec.CompletionMode, batchv1.NonIndexedCompletion) == batchv1.IndexedCompletion
}

// managedBy normalizes spec.managedBy: unset, empty and the built-in
// controller's name all mean the built-in controller.
func managedBy(js *jobset.JobSet) string {
	if m := ptr.Deref(js.Spec.ManagedBy, ""); m != "" {
		return m
	}
	return jobset.JobSetControllerName
}
