package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"
)

// ServeWebhooks runs, until ctx ends, a manager whose webhook server listens
// where the cluster's webhook configurations (WithWebhooks) point, with the
// webhooks that setup registers. It returns once the server accepts TLS
// connections, so the first admission request does not race its start.
func (c *Cluster) ServeWebhooks(ctx context.Context, setup func(ctrl.Manager) error) error {
	wo := &c.Env.WebhookInstallOptions
	mgr, err := ctrl.NewManager(c.Config, ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// Tests may serve the same webhooks for several clusters.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir,
		}),
	})
	if err != nil {
		return fmt.Errorf("webhook manager for %s: %w", c.Name, err)
	}
	if err := setup(mgr); err != nil {
		return err
	}
	go func() {
		if err := mgr.Start(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "webhook manager for %s stopped: %v\n", c.Name, err)
		}
	}()
	addr := net.JoinHostPort(wo.LocalServingHost, strconv.Itoa(wo.LocalServingPort))
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("webhook server of %s at %s not serving: %w", c.Name, addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// InstallLocalWebhooks creates (or updates) the webhook configurations of a
// manifest (config/hub-webhook or config/webhook) with every webhook calling
// https://localhost:<port><path> instead of its in-cluster Service: for a
// component running as a local process, which injects its CA into them and
// serves a certificate that names localhost
// (--webhook-cert-extra-dns-names=localhost).
func InstallLocalWebhooks(ctx context.Context, c client.Client, manifest string, port int) error {
	data, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	toURL := func(cc *admissionv1.WebhookClientConfig) {
		if cc.Service != nil {
			cc.URL = ptr.To(fmt.Sprintf("https://localhost:%d%s", port, ptr.Deref(cc.Service.Path, "/")))
			cc.Service = nil
		}
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return fmt.Errorf("%s: %w", manifest, err)
		}
		var obj client.Object
		switch head.Kind {
		case "MutatingWebhookConfiguration":
			w := &admissionv1.MutatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(doc, w); err != nil {
				return fmt.Errorf("%s: %w", manifest, err)
			}
			for i := range w.Webhooks {
				toURL(&w.Webhooks[i].ClientConfig)
			}
			obj = w
		case "ValidatingWebhookConfiguration":
			w := &admissionv1.ValidatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict(doc, w); err != nil {
				return fmt.Errorf("%s: %w", manifest, err)
			}
			for i := range w.Webhooks {
				toURL(&w.Webhooks[i].ClientConfig)
			}
			obj = w
		default:
			continue
		}
		if err := apply(ctx, c, obj); err != nil {
			return fmt.Errorf("%s %s: %w", head.Kind, obj.GetName(), err)
		}
	}
	return nil
}

// AccessPolicyManifest is the policy that keeps agents from changing their
// ClusterProfile's access providers, relative to the repository root.
var AccessPolicyManifest = filepath.Join("config", "hub", "access-policy.yaml")

// InstallAccessPolicy creates (or replaces) the ValidatingAdmissionPolicy
// and binding of AccessPolicyManifest under repoRoot on the hub: the
// fleet's install (config/hub) has it, and every test or local fleet that
// installs the hub without kustomize must too.
func InstallAccessPolicy(ctx context.Context, hub client.Client, repoRoot string) error {
	path := filepath.Join(repoRoot, AccessPolicyManifest)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var obj client.Object
		switch head.Kind {
		case "ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		default:
			return fmt.Errorf("%s: unexpected kind %q", path, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := apply(ctx, hub, obj); err != nil {
			return fmt.Errorf("%s %s: %w", head.Kind, obj.GetName(), err)
		}
	}
	return nil
}

// apply creates obj, or replaces the object of that name.
func apply(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return err
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	return c.Update(ctx, obj)
}
