package spoke_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/spoke"
)

// TestRefusesBesideUpstreamJobSet: on a real apiserver, as the agent's
// ServiceAccount with the generated RBAC, the member side starts beside
// its own CRD, and refuses, naming what it found and pointing at the
// README's migration, once upstream JobSet's webhook configurations exist
// or the JobSet CRD converts through upstream's webhook; it starts again
// once they are gone. Cost: one apiserver, ~5 s.
func TestRefusesBesideUpstreamJobSet(t *testing.T) {
	c := testenv.Start(t, "coexist")
	ctx := context.Background()
	if err := c.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fleet.SystemNamespace}}); err != nil {
		t.Fatal(err)
	}
	kubectl, err := testenv.Binary("kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", c.KubeconfigPath, "apply", "-k",
		filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent")).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply -k config/rbac/agent: %v\n%s", err, out)
	}
	agentCfg := rest.CopyConfig(c.Config)
	agentCfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + fleet.SystemNamespace + ":jobset-fleet-agent"}

	// spoke.Setup on a manager like cmd/agent's (the components' scheme).
	setup := func() error {
		mgr, err := ctrl.NewManager(agentCfg, ctrl.Options{
			Scheme:                 api.NewScheme(),
			Metrics:                metricsserver.Options{BindAddress: "0"},
			HealthProbeBindAddress: "0",
			Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = spoke.Setup(mgr, spoke.DefaultOptions())
		return err
	}
	refused := func(what string, wantFound string) {
		t.Helper()
		err := setup()
		if !errors.Is(err, spoke.ErrUpstreamJobSet) {
			t.Fatalf("%s: Setup: %v, want the refusal", what, err)
		}
		for _, want := range []string{wantFound, "Migrating from upstream JobSet", "set the CRD's conversion to None"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: refusal %q does not say %q", what, err, want)
			}
		}
	}

	if err := setup(); err != nil {
		t.Fatalf("beside its own CRD: %v", err)
	}

	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: spoke.UpstreamValidatingWebhookConfiguration}}
	if err := c.Client.Create(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	refused("upstream's validating webhooks", "ValidatingWebhookConfiguration jobset-validating-webhook-configuration")
	if err := c.Client.Delete(ctx, vwc); err != nil {
		t.Fatal(err)
	}

	// Upstream's CRD, once its controller and webhooks are gone: every
	// read of a JobSet would fail on the missing conversion webhook.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Client.Get(ctx, client.ObjectKey{Name: spoke.JobSetCRDName}, crd); err != nil {
		t.Fatal(err)
	}
	plain := crd.DeepCopy()
	crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
		Strategy: apiextensionsv1.WebhookConverter,
		Webhook: &apiextensionsv1.WebhookConversion{
			ClientConfig: &apiextensionsv1.WebhookClientConfig{Service: &apiextensionsv1.ServiceReference{
				Namespace: "jobset-system", Name: "jobset-webhook-service", Path: ptr.To("/convert"),
			}},
			ConversionReviewVersions: []string{"v1"},
		},
	}
	if err := c.Client.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}
	refused("upstream's CRD", "the CRD jobsets.jobset.x-k8s.io converting through the webhook Service jobset-system/jobset-webhook-service")

	// The README's migration step: conversion None.
	if err := c.Client.Get(ctx, client.ObjectKey{Name: spoke.JobSetCRDName}, crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec.Conversion = plain.Spec.Conversion
	if err := c.Client.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}
	if err := setup(); err != nil {
		t.Errorf("after the migration: %v", err)
	}
}
