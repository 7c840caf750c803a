package spoke

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Upstream JobSet installs (its release manifests and its Helm chart alike)
// these webhook configurations, and a JobSet CRD that converts through its
// controller's webhook. jobset-fleet's CRD never has a conversion webhook,
// and its webhook configurations are named jobset-fleet-*.
const (
	UpstreamMutatingWebhookConfiguration   = "jobset-mutating-webhook-configuration"
	UpstreamValidatingWebhookConfiguration = "jobset-validating-webhook-configuration"
	JobSetCRDName                          = "jobsets.jobset.x-k8s.io"
)

// Reads by name only: the member learns whether upstream is installed and
// nothing else of its admission configuration or CRDs.
//
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get,resourceNames=jobset-mutating-webhook-configuration
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,verbs=get,resourceNames=jobset-validating-webhook-configuration
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get,resourceNames=jobsets.jobset.x-k8s.io

// ErrUpstreamJobSet is wrapped by CheckCoexistence's refusal.
var ErrUpstreamJobSet = errors.New("upstream JobSet is installed on this cluster")

// CheckCoexistence refuses a member that runs upstream JobSet: its
// controller and this one would both reconcile every JobSet (two sets of
// Jobs, two writers of every status), and its webhooks would judge the
// fleet's copies. The refusal names what it found and what to do.
func CheckCoexistence(ctx context.Context, c client.Reader) error {
	var found []string
	for _, wc := range []client.Object{
		&admissionregistrationv1.MutatingWebhookConfiguration{},
		&admissionregistrationv1.ValidatingWebhookConfiguration{},
	} {
		name := UpstreamMutatingWebhookConfiguration
		kind := "MutatingWebhookConfiguration"
		if _, ok := wc.(*admissionregistrationv1.ValidatingWebhookConfiguration); ok {
			name, kind = UpstreamValidatingWebhookConfiguration, "ValidatingWebhookConfiguration"
		}
		switch err := c.Get(ctx, client.ObjectKey{Name: name}, wc); {
		case err == nil:
			found = append(found, kind+" "+name)
		case !apierrors.IsNotFound(err):
			return fmt.Errorf("looking for upstream JobSet's %s %s: %w", kind, name, err)
		}
	}
	// Unstructured: the components' scheme has no apiextensions kinds.
	crd := &unstructured.Unstructured{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	switch err := c.Get(ctx, client.ObjectKey{Name: JobSetCRDName}, crd); {
	case err == nil:
		conv := &apiextensionsv1.CustomResourceConversion{}
		if raw, ok, _ := unstructured.NestedMap(crd.Object, "spec", "conversion"); ok {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, conv); err != nil {
				return fmt.Errorf("reading the CRD %s's conversion: %w", JobSetCRDName, err)
			}
		}
		if conv.Strategy == apiextensionsv1.WebhookConverter {
			found = append(found, "the CRD "+JobSetCRDName+" converting through "+conversionService(conv))
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("reading the CRD %s: %w", JobSetCRDName, err)
	}
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w (%s): its controller and this one would both run every JobSet. "+
		"Remove upstream's controller and webhooks, keep its CRD and JobSets, set the CRD's conversion to None, "+
		"then start this agent again; the README's \"Migrating from upstream JobSet\" gives the commands",
		ErrUpstreamJobSet, strings.Join(found, ", "))
}

func conversionService(conv *apiextensionsv1.CustomResourceConversion) string {
	if conv.Webhook == nil || conv.Webhook.ClientConfig == nil {
		return "a webhook"
	}
	if s := conv.Webhook.ClientConfig.Service; s != nil {
		return "the webhook Service " + s.Namespace + "/" + s.Name
	}
	if u := conv.Webhook.ClientConfig.URL; u != nil {
		return "the webhook " + *u
	}
	return "a webhook"
}

// refuseBesideUpstream is CheckCoexistence at start, bounded in time: a
// member whose apiserver cannot answer two reads cannot run JobSets either.
func refuseBesideUpstream(c client.Reader) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return CheckCoexistence(ctx, c)
}
