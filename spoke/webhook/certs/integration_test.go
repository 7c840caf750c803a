package certs_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
	"github.com/jobset-fleet/jobset-fleet/spoke/webhook/certs"
)

const systemNS = "jobset-fleet-system"

// TestCertificatesEndToEnd runs the agent's certificate path against a real
// apiserver: the webhook configurations start out trusting a different CA
// (envtest's), certs.Setup must provision a certificate and caBundle such
// that the apiserver can call our webhook server, and rotations of the
// serving certificate and of the CA must keep admission working.
func TestCertificatesEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := testenv.Start(t, "certs", testenv.WithWebhooks(filepath.Join(testenv.RepoRoot(), "config", "webhook")))
	c := cl.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: systemNS}}); err != nil {
		t.Fatal(err)
	}

	wo := &cl.Env.WebhookInstallOptions
	certDir := t.TempDir() // empty: nothing but the rotator puts a certificate here
	mgr, err := ctrl.NewManager(cl.Config, ctrl.Options{
		Scheme:                 testenv.Scheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		WebhookServer:          webhook.NewServer(webhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: certDir}),
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := certs.Options{
		SecretNamespace:                 systemNS,
		SecretName:                      "jobset-fleet-webhook-certs",
		ServiceName:                     "jobset-fleet-webhook-service",
		ExtraIPs:                        []net.IP{net.ParseIP(wo.LocalServingHost)},
		MutatingWebhookConfigurations:   []string{spokewebhook.MutatingWebhookConfigurationName},
		ValidatingWebhookConfigurations: []string{spokewebhook.ValidatingWebhookConfigurationName},
		CertDir:                         certDir,
	}
	rot, err := certs.Setup(ctx, mgr, opts)
	if err != nil {
		t.Fatalf("certs.Setup: %v", err)
	}
	if err := rot.ReadyCheck(nil); err != nil {
		t.Errorf("not ready after Setup: %v", err)
	}
	if err := spokewebhook.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mgrDone := make(chan error, 1)
	go func() { mgrDone <- mgr.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-mgrDone })

	secret := readSecret(t, c, opts)
	if bytes.Equal(secret.Data[certs.CACertKey], wo.LocalServingCAData) {
		t.Fatal("test is vacuous: secret CA equals envtest's CA")
	}
	assertCABundle(t, c, secret.Data[certs.CACertKey])
	addr := net.JoinHostPort(wo.LocalServingHost, strconv.Itoa(wo.LocalServingPort))
	waitServing(t, addr, secret.Data[certs.ServingCertKey])
	assertAdmissionWorks(t, c, "first")

	// Serving-certificate renewal (here triggered by a new SAN): same CA,
	// new pair, picked up by the running server without a restart.
	opts2 := opts
	opts2.ExtraDNSNames = []string{"webhook.example.internal"}
	rot2, err := certs.New(c, opts2)
	if err != nil {
		t.Fatal(err)
	}
	if err := rot2.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := readSecret(t, c, opts)
	if bytes.Equal(renewed.Data[certs.ServingCertKey], secret.Data[certs.ServingCertKey]) {
		t.Fatal("serving certificate not renewed")
	}
	if !bytes.Equal(renewed.Data[certs.CACertKey], secret.Data[certs.CACertKey]) {
		t.Error("CA changed on a serving renewal")
	}
	waitServing(t, addr, renewed.Data[certs.ServingCertKey])
	assertAdmissionWorks(t, c, "second")

	// CA rotation (triggered by a CA key that no longer matches): the new CA
	// is trusted first, the old one stays in the bundle, admission continues.
	renewed.Data[certs.CAKeyKey] = []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	if err := c.Update(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if err := rot.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	rotated := readSecret(t, c, opts)
	bundle := rotated.Data[certs.CACertKey]
	if n := countCerts(bundle); n != 2 {
		t.Errorf("CA bundle after CA rotation holds %d certificates, want new + old", n)
	}
	if !bytes.HasSuffix(bundle, secret.Data[certs.CACertKey]) {
		t.Error("old CA not kept at the end of the bundle")
	}
	assertCABundle(t, c, bundle)
	waitServing(t, addr, rotated.Data[certs.ServingCertKey])
	assertAdmissionWorks(t, c, "third")
}

func readSecret(t *testing.T, c client.Client, o certs.Options) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: o.SecretNamespace, Name: o.SecretName}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func assertCABundle(t *testing.T, c client.Client, want []byte) {
	t.Helper()
	ctx := context.Background()
	mw := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: spokewebhook.MutatingWebhookConfigurationName}, mw); err != nil {
		t.Fatal(err)
	}
	vw := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: spokewebhook.ValidatingWebhookConfigurationName}, vw); err != nil {
		t.Fatal(err)
	}
	for _, w := range mw.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, want) {
			t.Errorf("mutating webhook %s: caBundle not the rotator's CA", w.Name)
		}
	}
	for _, w := range vw.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, want) {
			t.Errorf("validating webhook %s: caBundle not the rotator's CA", w.Name)
		}
	}
}

// waitServing waits until the webhook server presents certPEM (the
// certificate watcher reloads files within seconds).
func waitServing(t *testing.T, addr string, certPEM []byte) {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM certificate")
	}
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return false, nil
		}
		defer conn.Close()
		return bytes.Equal(conn.ConnectionState().PeerCertificates[0].Raw, block.Bytes), nil
	})
	if err != nil {
		t.Fatalf("webhook server at %s never served the expected certificate: %v", addr, err)
	}
}

// assertAdmissionWorks proves the apiserver reaches our webhook over TLS:
// a defaulted JobSet is accepted and an invalid one is denied by our
// validator (a TLS failure would surface as "failed calling webhook").
func assertAdmissionWorks(t *testing.T, c client.Client, name string) {
	t.Helper()
	ctx := context.Background()
	js := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       jobset.JobSetSpec{ReplicatedJobs: []jobset.ReplicatedJob{{Name: "w", Replicas: 1}}},
	}
	js.Spec.ReplicatedJobs[0].Template.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	if err := c.Create(ctx, js); err != nil {
		t.Fatalf("valid JobSet %s rejected: %v", name, err)
	}
	if js.Spec.ManagedBy == nil {
		t.Errorf("JobSet %s not defaulted by the mutating webhook", name)
	}
	bad := js.DeepCopy()
	bad.ObjectMeta = metav1.ObjectMeta{Namespace: "default", Name: name + "-bad"}
	bad.Spec.Coordinator = &jobset.Coordinator{ReplicatedJob: "missing"}
	err := c.Create(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), `admission webhook "vjobset.jobset.x-k8s.io" denied the request`) {
		t.Fatalf("invalid JobSet %s: want denial by our validating webhook, got %v", name, err)
	}
}

func countCerts(data []byte) int {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return n
		}
		if _, err := x509.ParseCertificate(b.Bytes); err == nil {
			n++
		}
	}
}
