package webhook

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// JobSet admission: failurePolicy=fail because an undefaulted or invalid
// JobSet must never be stored; the JobSet API is ours, so an outage of this
// webhook only blocks JobSet writes, nothing else in the cluster.
//
// +kubebuilder:webhook:path=/mutate-jobset-x-k8s-io-v1alpha2-jobset,mutating=true,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create;update,versions=v1alpha2,name=mjobset.jobset.x-k8s.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10
// +kubebuilder:webhook:path=/validate-jobset-x-k8s-io-v1alpha2-jobset,mutating=false,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create;update,versions=v1alpha2,name=vjobset.jobset.x-k8s.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10

// jobSetWebhook defaults and validates JobSets. It is stateless: every
// decision is a function of the object (and, on update, the old object).
type jobSetWebhook struct{}

var (
	_ admission.Defaulter[*jobset.JobSet] = jobSetWebhook{}
	_ admission.Validator[*jobset.JobSet] = jobSetWebhook{}
)

// SetupJobSetWebhook registers the JobSet defaulting and validating webhooks.
// The hub can call it alone to reject bad JobSets before dispatch.
func SetupJobSetWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &jobset.JobSet{}).
		WithDefaulter(jobSetWebhook{}).
		WithValidator(jobSetWebhook{}).
		Complete()
}

// Default fills in the API defaults so the stored object is what runs.
func (jobSetWebhook) Default(_ context.Context, js *jobset.JobSet) error {
	jobset.Default(js)
	return nil
}

func (jobSetWebhook) ValidateCreate(_ context.Context, js *jobset.JobSet) (admission.Warnings, error) {
	return nil, invalid(js, ValidateJobSet(js))
}

func (jobSetWebhook) ValidateUpdate(_ context.Context, oldJS, newJS *jobset.JobSet) (admission.Warnings, error) {
	return nil, invalid(newJS, ValidateJobSetUpdate(oldJS, newJS))
}

func (jobSetWebhook) ValidateDelete(context.Context, *jobset.JobSet) (admission.Warnings, error) {
	return nil, nil
}

// invalid turns field errors into a 422 whose message lists every field path,
// e.g. `JobSet.jobset.x-k8s.io "x" is invalid: spec.replicatedJobs[0].name: ...`.
func invalid(js *jobset.JobSet, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(jobset.GroupVersion.WithKind("JobSet").GroupKind(), js.Name, errs)
}
