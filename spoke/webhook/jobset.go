package webhook

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2/validation"
)

// JobSet admission, as upstream JobSet v0.12's: defaulting on create only
// (an update keeps what create stored), validation on create and update.
// failurePolicy=fail because an undefaulted or invalid JobSet must never be
// stored; the JobSet API is ours, so an outage of this webhook only blocks
// JobSet writes, nothing else in the cluster.
//
// +kubebuilder:webhook:path=/mutate-jobset-x-k8s-io-v1alpha2-jobset,mutating=true,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create,versions=v1alpha2,name=mjobset.kb.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10
// +kubebuilder:webhook:path=/validate-jobset-x-k8s-io-v1alpha2-jobset,mutating=false,failurePolicy=fail,sideEffects=None,groups=jobset.x-k8s.io,resources=jobsets,verbs=create;update,versions=v1alpha2,name=vjobset.kb.io,admissionReviewVersions=v1,serviceName=jobset-fleet-webhook-service,serviceNamespace=jobset-fleet-system,timeoutSeconds=10

// Creating a JobSet whose volumeClaimPolicies name an existing PVC is
// checked against that PVC.
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get

// jobSetWebhook defaults and validates JobSets. Every decision is a function
// of the object (and, on update, the old object), except that a new JobSet's
// PVC templates are compared with PVCs that already exist.
type jobSetWebhook struct {
	// pvcs reads PVCs live (no PVC informer: the webhook needs one PVC per
	// template, once per JobSet creation).
	pvcs client.Reader
}

var (
	_ admission.Defaulter[*jobset.JobSet] = jobSetWebhook{}
	_ admission.Validator[*jobset.JobSet] = jobSetWebhook{}
)

// SetupJobSetWebhook registers the JobSet defaulting and validating webhooks.
func SetupJobSetWebhook(mgr ctrl.Manager) error {
	w := jobSetWebhook{pvcs: mgr.GetAPIReader()}
	return ctrl.NewWebhookManagedBy(mgr, &jobset.JobSet{}).
		WithDefaulter(w).
		WithValidator(w).
		Complete()
}

// Default fills in the API defaults so the stored object is what runs.
func (jobSetWebhook) Default(_ context.Context, js *jobset.JobSet) error {
	jobset.Default(js)
	return nil
}

func (w jobSetWebhook) ValidateCreate(ctx context.Context, js *jobset.JobSet) (admission.Warnings, error) {
	return nil, invalid(js, validation.ValidateJobSet(ctx, js, w.existingPVC))
}

func (jobSetWebhook) ValidateUpdate(_ context.Context, oldJS, newJS *jobset.JobSet) (admission.Warnings, error) {
	return nil, invalid(newJS, validation.ValidateJobSetUpdate(oldJS, newJS))
}

func (jobSetWebhook) ValidateDelete(context.Context, *jobset.JobSet) (admission.Warnings, error) {
	return nil, nil
}

func (w jobSetWebhook) existingPVC(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error) {
	if w.pvcs == nil {
		return nil, nil
	}
	pvc := &corev1.PersistentVolumeClaim{}
	err := w.pvcs.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, pvc)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return pvc, nil
}

// invalid turns field errors into upstream's 422:
// `JobSet.jobset.x-k8s.io "x" is invalid: [...]`.
func invalid(js *jobset.JobSet, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(jobset.GroupVersion.WithKind("JobSet").GroupKind(), js.Name, errs)
}
