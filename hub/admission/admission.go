// Package admission is the hub's JobSet admission: it hands every new JobSet
// to the fleet (spec.managedBy), fills in the API defaults, and rejects
// invalid JobSets with the same checks and field paths as a member, plus
// the fleet's placement annotations, before anything is dispatched.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=jobset-fleet-hub-mutating-webhook-configuration
// +kubebuilder:webhookconfiguration:mutating=false,name=jobset-fleet-hub-validating-webhook-configuration
package admission

import (
	"context"
	"encoding/json"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/dispatch"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
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

type jobSetWebhook struct{}

var (
	_ admission.Defaulter[*jobset.JobSet] = jobSetWebhook{}
	_ admission.Validator[*jobset.JobSet] = jobSetWebhook{}
)

// SetupWithManager registers the hub's JobSet webhooks on mgr's webhook server.
func SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &jobset.JobSet{}).
		WithDefaulter(jobSetWebhook{}).
		WithValidator(jobSetWebhook{}).
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

// Default claims new JobSets for the fleet, then applies the API defaults.
// On update an omitted managedBy keeps the stored value (a full replace
// that drops it must not trip the immutability check).
func (jobSetWebhook) Default(ctx context.Context, js *jobset.JobSet) error {
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
	}
	jobset.Default(js)
	return nil
}

func (jobSetWebhook) ValidateCreate(_ context.Context, js *jobset.JobSet) (admission.Warnings, error) {
	errs := spokewebhook.ValidateJobSet(js)
	errs = append(errs, ValidateFleetAnnotations(js.Annotations)...)
	return nil, invalid(js, errs)
}

func (jobSetWebhook) ValidateUpdate(_ context.Context, oldJS, newJS *jobset.JobSet) (admission.Warnings, error) {
	errs := spokewebhook.ValidateJobSetUpdate(oldJS, newJS)
	errs = append(errs, ValidateFleetAnnotations(newJS.Annotations)...)
	return nil, invalid(newJS, errs)
}

func (jobSetWebhook) ValidateDelete(context.Context, *jobset.JobSet) (admission.Warnings, error) {
	return nil, nil
}

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
	if v, ok := annotations[fleet.OnMemberLostAnnotation]; ok {
		allowed := []string{dispatch.OnMemberLostRedispatch, dispatch.OnMemberLostFail, dispatch.OnMemberLostWait}
		if v != allowed[0] && v != allowed[1] && v != allowed[2] {
			errs = append(errs, field.NotSupported(path.Key(fleet.OnMemberLostAnnotation), v, allowed))
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
