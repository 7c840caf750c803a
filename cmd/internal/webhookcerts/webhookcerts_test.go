package webhookcerts_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/jobset-fleet/jobset-fleet/cmd/internal/webhookcerts"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

const (
	namespace  = "jobset-fleet-system"
	secretName = "test-webhook-certs"
	configName = "test-validating-webhook-configuration"
)

// TestTwoReplicasServeOneCertificate runs what two replicas of a component
// run, against a real apiserver: both provision from the one Secret (which
// neither finds), both get the same serving pair in their own directory,
// the CA lands in the webhook configuration, both become ready, and the
// apiserver really calls the webhook over TLS it verifies.
func TestTwoReplicasServeOneCertificate(t *testing.T) {
	cl := testenv.Start(t, "webhookcerts")
	ctx := context.Background()
	if err := cl.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	ports := []int{freePort(t), freePort(t)}
	// The apiserver calls replica 0 by URL, as the development fleet does.
	if err := cl.Client.Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: configName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "deny.test.jobset-fleet.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(fmt.Sprintf("https://localhost:%d/deny", ports[0]))},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			ObjectSelector:          &metav1.LabelSelector{MatchLabels: map[string]string{"deny": "true"}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](5),
		}},
	}); err != nil {
		t.Fatal(err)
	}

	var dirs []string
	for i, port := range ports {
		dirs = append(dirs, startReplica(t, cl, i, port, webhookcerts.Options{
			Manage:                          true,
			Namespace:                       namespace,
			SecretName:                      secretName,
			ServiceName:                     "test-webhook-service",
			ExtraDNSNames:                   []string{"localhost"},
			CAName:                          "test-webhook-ca",
			ValidatingWebhookConfigurations: []string{configName},
		}))
	}

	// Same pair on both replicas, issued from the Secret's CA, for the
	// Service and the extra name.
	secret := &corev1.Secret{}
	if err := cl.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secretName}, secret); err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		for _, name := range []string{webhookcerts.CertName, webhookcerts.KeyName} {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(data, secret.Data[name]) {
				t.Errorf("%s in %s differs from the Secret's", name, dir)
			}
		}
	}
	cert := parseCert(t, secret.Data[webhookcerts.CertName])
	want := []string{"test-webhook-service.jobset-fleet-system.svc", "test-webhook-service.jobset-fleet-system.svc.cluster.local", "localhost"}
	if !slices.Equal(cert.DNSNames, want) {
		t.Errorf("certificate DNS names %q, want %q", cert.DNSNames, want)
	}
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := cl.Client.Get(ctx, client.ObjectKey{Name: configName}, cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cfg.Webhooks[0].ClientConfig.CABundle, secret.Data["ca.crt"]) {
		t.Error("the webhook configuration does not trust the Secret's CA")
	}

	// The apiserver verifies the serving certificate and gets the answer.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "denied", Labels: map[string]string{"deny": "true"}}}
	err := cl.Client.Create(ctx, cm)
	if err == nil || !strings.Contains(err.Error(), "denied by the test webhook") {
		t.Fatalf("want the webhook's denial, got %v", err)
	}
}

// TestNoLocalhostUnlessAsked: a production certificate names the Service
// only. An APIService served through that Service gets the CA, and the
// kube-apiserver, which verifies the name <service>.<namespace>.svc, can
// trust the certificate.
func TestNoLocalhostUnlessAsked(t *testing.T) {
	cl := testenv.Start(t, "webhookcerts-names")
	ctx := context.Background()
	if err := cl.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	const apiService = "v1alpha1.certs.test.jobset-fleet.io"
	apisvc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": apiService},
		"spec": map[string]any{
			"group": "certs.test.jobset-fleet.io", "version": "v1alpha1",
			"groupPriorityMinimum": int64(1000), "versionPriority": int64(15),
			"service": map[string]any{"namespace": namespace, "name": "svc", "port": int64(8444)},
		},
	}}
	if err := cl.Client.Create(ctx, apisvc); err != nil {
		t.Fatal(err)
	}
	startReplica(t, cl, 0, freePort(t), webhookcerts.Options{
		Manage:      true,
		Namespace:   namespace,
		SecretName:  secretName,
		ServiceName: "svc",
		CAName:      "test-webhook-ca",
		APIServices: []string{apiService},
	})
	secret := &corev1.Secret{}
	if err := cl.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: secretName}, secret); err != nil {
		t.Fatal(err)
	}
	cert := parseCert(t, secret.Data[webhookcerts.CertName])
	if want := []string{"svc.jobset-fleet-system.svc", "svc.jobset-fleet-system.svc.cluster.local"}; !slices.Equal(cert.DNSNames, want) || len(cert.IPAddresses) > 0 {
		t.Errorf("certificate names %q and IPs %v, want %q and none", cert.DNSNames, cert.IPAddresses, want)
	}

	if err := cl.Client.Get(ctx, client.ObjectKey{Name: apiService}, apisvc); err != nil {
		t.Fatal(err)
	}
	caB64, _, _ := unstructured.NestedString(apisvc.Object, "spec", "caBundle")
	ca, err := base64.StdEncoding.DecodeString(caB64)
	if err != nil || !bytes.Equal(ca, secret.Data["ca.crt"]) {
		t.Fatalf("APIService caBundle %q (%v), want the Secret's CA", caB64, err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	svcName, _, _ := unstructured.NestedString(apisvc.Object, "spec", "service", "name")
	svcNS, _, _ := unstructured.NestedString(apisvc.Object, "spec", "service", "namespace")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: svcName + "." + svcNS + ".svc"}); err != nil {
		t.Errorf("the kube-apiserver would not trust the certificate for the APIService's Service: %v", err)
	}
}

// startReplica runs a manager with the webhook wiring of the mains and a
// webhook that denies everything, and returns its certificate directory
// once the replica reports ready.
func startReplica(t *testing.T, cl *testenv.Cluster, i, port int, opts webhookcerts.Options) string {
	t.Helper()
	opts.CertDir = t.TempDir()
	opts.ControllerName = fmt.Sprintf("rotator-%s-%d", t.Name(), i)
	probe := freePort(t)
	mgr, err := ctrl.NewManager(cl.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: net.JoinHostPort("127.0.0.1", strconv.Itoa(probe)),
		// Two replicas in one process: their rotator controllers share a name.
		Controller:    config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{Port: port, CertDir: opts.CertDir}),
		// As installed: only one replica leads, and every one must serve.
		LeaderElection:                true,
		LeaderElectionID:              "webhookcerts-test-" + strings.ToLower(t.Name()),
		LeaderElectionNamespace:       opts.Namespace,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := webhookcerts.Serve(ctx, mgr, opts, func(mgr ctrl.Manager) error {
		mgr.GetWebhookServer().Register("/deny", &admission.Webhook{Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
			return admission.Denied("denied by the test webhook")
		})})
		return nil
	}); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		case <-time.After(time.Minute):
			t.Errorf("replica %d did not stop within a minute of its cancel", i)
		}
	})

	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", probe)
	deadline := time.Now().Add(time.Minute)
	probeClient := &http.Client{Timeout: 5 * time.Second}
	for {
		resp, err := probeClient.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return opts.CertDir
			}
		}
		select {
		case err := <-done:
			t.Fatalf("replica %d stopped: %v", i, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d not ready within a minute (last: %v)", i, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseCert(t *testing.T, data []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
