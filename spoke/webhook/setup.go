// Package webhook is the spoke's admission: JobSet defaulting and validation,
// and the pod webhooks that implement exclusive topology placement.
//
// +kubebuilder:webhookconfiguration:mutating=true,name=jobset-fleet-mutating-webhook-configuration
// +kubebuilder:webhookconfiguration:mutating=false,name=jobset-fleet-validating-webhook-configuration
package webhook

import (
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"
)

// Names of the generated webhook configurations (config/webhook/manifests.yaml);
// the certificate rotator patches its CA bundle into these.
const (
	MutatingWebhookConfigurationName   = "jobset-fleet-mutating-webhook-configuration"
	ValidatingWebhookConfigurationName = "jobset-fleet-validating-webhook-configuration"
)

// SetupWithManager registers every spoke webhook on mgr's webhook server:
// JobSet defaulting and validation, and the exclusive-placement pod webhooks
// (which read live through mgr.GetAPIReader(), never through a Pod cache).
func SetupWithManager(mgr ctrl.Manager) error {
	if err := SetupJobSetWebhook(mgr); err != nil {
		return fmt.Errorf("setting up JobSet webhooks: %w", err)
	}
	if err := SetupPodWebhook(mgr, mgr.GetAPIReader()); err != nil {
		return fmt.Errorf("setting up pod webhooks: %w", err)
	}
	return nil
}
