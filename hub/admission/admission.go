// Package admission is the hub's JobSet admission: it hands every new JobSet
// to the fleet (spec.managedBy, and the dispatcher's finalizer), fills in
// the API defaults, and, before anything is dispatched, rejects what could
// never run or is not the user's to set: invalid JobSets (the same checks
// and field paths as a member), bad placement annotations, JobSets in
// namespaces the fleet does not run, pod templates the namespace's Pod
// Security level forbids, resources no member has, Pods no member's nodes
// could ever hold, and the fleet's own keys. What it admits but is probably
// wrong (placement no member fits now) gets a warning.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=jobset-fleet-hub-mutating-webhook-configuration
// +kubebuilder:webhookconfiguration:mutating=false,name=jobset-fleet-hub-validating-webhook-configuration
package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	jobsetvalidation "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/validation"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// Names of the generated webhook configurations (config/hub-webhook).
const (
	MutatingWebhookConfigurationName   = "jobset-fleet-hub-mutating-webhook-configuration"
	ValidatingWebhookConfigurationName = "jobset-fleet-hub-validating-webhook-configuration"
)

// failurePolicy=fail: a JobSet that skipped admission would not be managed
// by the fleet (or not be valid), and the webhook only guards JobSets.
//
// +kubebuilder:webhook:path=/mutate-jobset-x-k8s-io-v1alpha2-jobset,mutating=true,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create;update,versions=v1alpha2,name=mjobset.fleet.jobset.x-k8s.io,admissionReviewVersions=v1,serviceName=jobset-fleet-hub-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10
// +kubebuilder:webhook:path=/validate-jobset-x-k8s-io-v1alpha2-jobset,mutating=false,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create;update,versions=v1alpha2,name=vjobset.fleet.jobset.x-k8s.io,admissionReviewVersions=v1,serviceName=jobset-fleet-hub-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10

// The hub's certificate rotator (spoke/webhook/certs) keeps the serving
// certificate in a Secret and injects its CA into the hub's configurations.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-hub-mutating-webhook-configuration;jobset-fleet-hub-validating-webhook-configuration

// Options configure the hub's JobSet admission.
type Options struct {
	// DeniedNamespaces are namespaces (a trailing * matches a prefix) whose
	// JobSets are rejected, in addition to fleet.BuiltinDeniedNamespaces,
	// which always are.
	DeniedNamespaces []string
	// InventoryNamespace holds the ClusterProfiles; default fleet-system.
	InventoryNamespace string
	// AdmitUnrunnable admits JobSets whose Pods no member's nodes could
	// ever hold (for fleets whose members add nodes on demand); by default
	// they are rejected.
	AdmitUnrunnable bool
}

type jobSetWebhook struct {
	opts   Options
	reader client.Reader
	// namespaces reads namespaces live (their Pod Security labels).
	namespaces  client.Reader
	podSecurity *PodSecurity
}

var (
	_ admission.Defaulter[*jobset.JobSet] = &jobSetWebhook{}
	_ admission.Validator[*jobset.JobSet] = &jobSetWebhook{}
)

// SetupWithManager registers the hub's JobSet webhooks on mgr's webhook
// server. They read ClusterProfiles through mgr's cache and namespaces
// from the API server.
func (o Options) SetupWithManager(mgr ctrl.Manager) error {
	if o.InventoryNamespace == "" {
		o.InventoryNamespace = fleet.DefaultInventoryNamespace
	}
	podSecurity, err := NewPodSecurity()
	if err != nil {
		return err
	}
	w := &jobSetWebhook{opts: o, reader: mgr.GetClient(), namespaces: mgr.GetAPIReader(), podSecurity: podSecurity}
	return ctrl.NewWebhookManagedBy(mgr, &jobset.JobSet{}).
		WithDefaulter(w).
		WithValidator(w).
		Complete()
}

// ClaimForFleet sets spec.managedBy to the fleet when it is unset or names
// the built-in controller: on the hub, "the built-in controller" means the
// fleet. Any other manager (e.g. a queueing system) is respected.
func ClaimForFleet(js *jobset.JobSet) {
	if m := ptr.Deref(js.Spec.ManagedBy, ""); m == "" || m == jobset.JobSetControllerName {
		js.Spec.ManagedBy = ptr.To(fleet.ManagedByFleet)
	}
}

// Default claims new JobSets for the fleet, with the dispatcher's finalizer
// (saving it a write), then applies the API defaults. On update an omitted
// managedBy keeps the stored value (a full replace that drops it must not
// trip the immutability check).
func (w *jobSetWebhook) Default(ctx context.Context, js *jobset.JobSet) error {
	req, err := admission.RequestFromContext(ctx)
	if err == nil && req.Operation == admissionv1.Update {
		if js.Spec.ManagedBy == nil && len(req.OldObject.Raw) > 0 {
			old := &jobset.JobSet{}
			if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
				return fmt.Errorf("decoding the stored JobSet: %w", err)
			}
			js.Spec.ManagedBy = old.Spec.ManagedBy
		}
	} else {
		ClaimForFleet(js)
		if ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet {
			controllerutil.AddFinalizer(js, fleet.JobSetFinalizer)
		}
	}
	jobset.Default(js)
	return nil
}

func (w *jobSetWebhook) ValidateCreate(ctx context.Context, js *jobset.JobSet) (admission.Warnings, error) {
	errs := jobsetvalidation.ValidateJobSetWithFieldPaths(ctx, js, nil)
	errs = append(errs, ValidateFleetAnnotations(js.Annotations)...)
	errs = append(errs, ValidateHubOwnedKeys(nil, js)...)
	// Whoever manages the JobSet, its pods get no more than the namespace
	// allows: the fleet runs them where the hub's admission cannot look.
	podErrs, warnings, err := w.checkPodSecurity(ctx, nil, js)
	if err != nil {
		return nil, err
	}
	errs = append(errs, podErrs...)
	if ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet {
		errs = append(errs, ValidateNamespace(js.Namespace, w.opts.DeniedNamespaces)...)
		members, err := w.fleetMembers(ctx)
		if err != nil {
			return nil, err
		}
		errs = append(errs, w.validateResources(js, members)...)
		warnings = append(warnings, PlacementWarnings(js.Annotations, members)...)
	}
	return warnings, invalid(js, errs)
}

func (w *jobSetWebhook) ValidateUpdate(ctx context.Context, oldJS, newJS *jobset.JobSet) (admission.Warnings, error) {
	errs := jobsetvalidation.ValidateJobSetUpdate(oldJS, newJS)
	errs = append(errs, ValidateFleetAnnotations(newJS.Annotations)...)
	errs = append(errs, ValidateHubOwnedKeys(oldJS, newJS)...)
	podErrs, warnings, err := w.checkPodSecurity(ctx, oldJS, newJS)
	if err != nil {
		return nil, err
	}
	errs = append(errs, podErrs...)
	return warnings, invalid(newJS, errs)
}

// checkPodSecurity applies the Pod Security level of the JobSet's
// namespace, read now, to its pod templates. old is nil on create.
func (w *jobSetWebhook) checkPodSecurity(ctx context.Context, old, js *jobset.JobSet) (field.ErrorList, admission.Warnings, error) {
	if old != nil && !templatesChanged(&old.Spec, &js.Spec) {
		// Most updates (finalizers, status-adjacent labels, the hub's own
		// bookkeeping) touch no template: nothing to judge, no namespace
		// read, and a flaky apiserver read cannot block a deletion.
		return nil, nil, nil
	}
	ns := &corev1.Namespace{}
	if err := w.namespaces.Get(ctx, client.ObjectKey{Name: js.Namespace}, ns); err != nil {
		return nil, nil, fmt.Errorf("reading namespace %s for its Pod Security level: %w", js.Namespace, err)
	}
	nsPolicy, labelErrs := NamespacePolicy(ns.Labels)
	var warnings admission.Warnings
	for _, e := range labelErrs {
		warnings = append(warnings, fmt.Sprintf("namespace %s: %s; enforcing Pod Security %q", js.Namespace, e.Error(), nsPolicy.Enforce.String()))
	}
	var oldSpec *jobset.JobSetSpec
	if old != nil {
		oldSpec = &old.Spec
	}
	errs, podWarnings := w.podSecurity.Check(nsPolicy, oldSpec, &js.Spec)
	return errs, append(warnings, podWarnings...), nil
}

func (w *jobSetWebhook) ValidateDelete(context.Context, *jobset.JobSet) (admission.Warnings, error) {
	return nil, nil
}

// validateResources rejects a JobSet asking for a resource no member of
// the fleet has at all, or (unless AdmitUnrunnable) whose Pods no member's
// nodes could ever hold: it could never run. Too little of one, now, only
// keeps it pending. A fleet with no members yet rejects nothing.
func (w *jobSetWebhook) validateResources(js *jobset.JobSet, members []inventory.Member) field.ErrorList {
	errs := ValidateResourcesExist(&js.Spec, members)
	// Kueue gives a queued JobSet its flavor's node labels and tolerations
	// when it admits it: its Pods are judged then, by placement.
	if !w.opts.AdmitUnrunnable && js.Labels[fleet.KueueQueueNameLabel] == "" {
		errs = append(errs, ValidateCouldEverRun(js, members)...)
	}
	return errs
}

// ValidateCouldEverRun reports each replicatedJob whose Pods no member
// could ever hold, judged by placement from the members' node summaries,
// at its pod template with, per member, why (such as its largest node).
// Members without a summary are not judged; with none, it reports nothing.
func ValidateCouldEverRun(js *jobset.JobSet, members []inventory.Member) field.ErrorList {
	var errs field.ErrorList
	for _, u := range placement.CouldEverRun(js, members) {
		var b strings.Builder
		b.WriteString("no member cluster could ever run these Pods, whatever else ran there: ")
		for i, v := range u.Members {
			part := v.Cluster + ": " + fleet.Bounded(v.Reason, fleet.MaxMemberReason)
			if b.Len()+len(part) > maxUnrunnableDetail {
				fmt.Fprintf(&b, "; … and %d more members", len(u.Members)-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
		path := field.NewPath("spec", "replicatedJobs").Index(u.Index).Child("template", "spec", "template", "spec")
		errs = append(errs, field.Forbidden(path, b.String()))
	}
	return errs
}

// maxUnrunnableDetail bounds one replicatedJob's part of the rejection,
// whatever the number of members.
const maxUnrunnableDetail = 2048

// ValidateResourcesExist reports each container request for a resource
// that no member reports allocatable. With no members it reports nothing.
func ValidateResourcesExist(spec *jobset.JobSetSpec, members []inventory.Member) field.ErrorList {
	if len(members) == 0 {
		return nil
	}
	known := map[corev1.ResourceName]bool{}
	for _, m := range members {
		for name := range m.Allocatable {
			known[name] = true
		}
	}
	var errs field.ErrorList
	for i := range spec.ReplicatedJobs {
		pod := &spec.ReplicatedJobs[i].Template.Spec.Template.Spec
		podPath := field.NewPath("spec", "replicatedJobs").Index(i).Child("template", "spec", "template", "spec")
		check := func(path *field.Path, r corev1.ResourceRequirements) {
			for _, list := range []struct {
				name string
				l    corev1.ResourceList
			}{{"requests", r.Requests}, {"limits", r.Limits}} {
				for _, name := range slices.Sorted(maps.Keys(list.l)) {
					if q := list.l[name]; !known[name] && !q.IsZero() {
						errs = append(errs, field.Invalid(path.Child(list.name).Key(string(name)), q.String(),
							fmt.Sprintf("no member cluster of the fleet has resource %s", name)))
					}
				}
			}
		}
		for j := range pod.InitContainers {
			check(podPath.Child("initContainers").Index(j).Child("resources"), pod.InitContainers[j].Resources)
		}
		for j := range pod.Containers {
			check(podPath.Child("containers").Index(j).Child("resources"), pod.Containers[j].Resources)
		}
		if pod.Resources != nil {
			check(podPath.Child("resources"), *pod.Resources)
		}
	}
	return errs
}

// ValidateNamespace rejects a JobSet in a namespace the fleet does not run:
// one of fleet.BuiltinDeniedNamespaces or of the hub's extra ones.
func ValidateNamespace(namespace string, extraDenied []string) field.ErrorList {
	if !fleet.NamespaceDenied(namespace, extraDenied) {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("metadata", "namespace"),
		fmt.Sprintf("the fleet does not run JobSets of namespace %s on member clusters (system and fleet namespaces, and hub --denied-namespaces)", namespace))}
}

// userAnnotations are the fleet.jobset.x-k8s.io/ keys a user may set.
var userAnnotations = map[string]bool{
	fleet.PinnedClusterAnnotation:   true,
	fleet.ClusterSelectorAnnotation: true,
	fleet.OnMemberLostAnnotation:    true,
	fleet.StartTimeoutAnnotation:    true,
}

// ValidateHubOwnedKeys rejects labels and annotations under the fleet's
// prefix that a user set or changed, other than the placement annotations
// users own: the rest is the fleet's bookkeeping (or was, in earlier
// versions), and a user editing it could steer a JobSet past placement.
// Removing one is allowed. old is nil on create.
func ValidateHubOwnedKeys(old, js *jobset.JobSet) field.ErrorList {
	var errs field.ErrorList
	check := func(path *field.Path, now, before map[string]string, allowed map[string]bool) {
		for _, k := range slices.Sorted(maps.Keys(now)) {
			if !strings.HasPrefix(k, fleetPrefix) || allowed[k] {
				continue
			}
			if v, ok := before[k]; ok && v == now[k] {
				continue
			}
			errs = append(errs, field.Forbidden(path.Key(k), "keys under "+fleetPrefix+" belong to the fleet hub"))
		}
	}
	var oldLabels, oldAnnotations map[string]string
	if old != nil {
		oldLabels, oldAnnotations = old.Labels, old.Annotations
	}
	check(field.NewPath("metadata", "labels"), js.Labels, oldLabels, nil)
	check(field.NewPath("metadata", "annotations"), js.Annotations, oldAnnotations, userAnnotations)
	return errs
}

const fleetPrefix = "fleet.jobset.x-k8s.io/"

// ValidateFleetAnnotations checks the placement annotations a user may set.
func ValidateFleetAnnotations(annotations map[string]string) field.ErrorList {
	var errs field.ErrorList
	path := field.NewPath("metadata", "annotations")
	if v, ok := annotations[fleet.ClusterSelectorAnnotation]; ok {
		if _, err := labels.Parse(v); err != nil {
			errs = append(errs, field.Invalid(path.Key(fleet.ClusterSelectorAnnotation), v, err.Error()))
		}
	}
	if v, ok := annotations[fleet.PinnedClusterAnnotation]; ok {
		for _, msg := range validation.IsDNS1123Subdomain(v) {
			errs = append(errs, field.Invalid(path.Key(fleet.PinnedClusterAnnotation), v, msg))
		}
	}
	if v, ok := annotations[fleet.OnMemberLostAnnotation]; ok && !slices.Contains(fleet.OnMemberLostPolicies, v) {
		errs = append(errs, field.NotSupported(path.Key(fleet.OnMemberLostAnnotation), v, fleet.OnMemberLostPolicies))
	}
	if v, ok := annotations[fleet.StartTimeoutAnnotation]; ok {
		if d, err := time.ParseDuration(v); err != nil || d < 0 {
			errs = append(errs, field.Invalid(path.Key(fleet.StartTimeoutAnnotation), v, `must be a non-negative duration such as "15m" ("0": never withdrawn)`))
		}
	}
	return errs
}

func invalid(js *jobset.JobSet, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(jobset.GroupVersion.WithKind("JobSet").GroupKind(), js.Name, errs)
}
