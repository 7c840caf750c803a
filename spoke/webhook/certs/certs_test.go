package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

var (
	day  = 24 * time.Hour
	t0   = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	spec = Spec{
		DNSNames:     []string{"svc.ns.svc", "svc"},
		IPs:          []net.IP{net.ParseIP("127.0.0.1")},
		CAValidity:   100 * day,
		CertValidity: 30 * day,
		RenewBefore:  10 * day,
	}
)

func issue(t *testing.T, now time.Time) *Bundle {
	t.Helper()
	b, err := Renew(&Bundle{}, Check(&Bundle{}, spec, now), spec, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// verify checks the serving pair chains to the trust bundle for a DNS name
// at time at, the way the apiserver would.
func verify(t *testing.T, b *Bundle, dnsName string, at time.Time) error {
	t.Helper()
	pair, err := tls.X509KeyPair(b.Cert, b.Key)
	if err != nil {
		t.Fatalf("serving pair does not load: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CACerts) {
		t.Fatal("CA bundle has no certificates")
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsName, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestIssueFromScratch(t *testing.T) {
	r := Check(&Bundle{}, spec, t0)
	if !r.CA || !r.Cert {
		t.Fatalf("empty bundle: renewal = %+v, want CA and cert", r)
	}
	b := issue(t, t0)
	if r := Check(b, spec, t0); r.Needed() {
		t.Fatalf("fresh bundle needs renewal: %s", r.Reason)
	}
	for _, name := range []string{"svc.ns.svc", "svc"} {
		if err := verify(t, b, name, t0); err != nil {
			t.Errorf("serving cert does not verify for %s: %v", name, err)
		}
	}
	if err := verify(t, b, "other.ns.svc", t0); err == nil {
		t.Error("serving cert verifies for a name it should not cover")
	}
	if err := verify(t, b, "svc", t0.Add(31*day)); err == nil {
		t.Error("serving cert still valid after CertValidity")
	}
}

func TestCheck(t *testing.T) {
	b := issue(t, t0)
	other := issue(t, t0)
	cases := []struct {
		name       string
		bundle     *Bundle
		spec       func(s Spec) Spec
		at         time.Time
		wantCA     bool
		wantCert   bool
		wantReason string
	}{
		{name: "fresh", bundle: b, at: t0},
		{name: "just before renew window", bundle: b, at: t0.Add(19 * day)},
		{name: "inside renew window", bundle: b, at: t0.Add(21 * day), wantCert: true, wantReason: "serving certificate expires"},
		{name: "CA would not outlive a new cert", bundle: b, at: t0.Add(71 * day), wantCA: true, wantCert: true, wantReason: "CA expires"},
		{name: "new DNS name", bundle: b, at: t0, spec: func(s Spec) Spec {
			s.DNSNames = append(append([]string{}, s.DNSNames...), "webhook.example")
			return s
		}, wantCert: true, wantReason: "does not cover webhook.example"},
		{name: "new IP", bundle: b, at: t0, spec: func(s Spec) Spec {
			s.IPs = []net.IP{net.ParseIP("10.0.0.1")}
			return s
		}, wantCert: true, wantReason: "does not cover 10.0.0.1"},
		{name: "serving cert from another CA", bundle: &Bundle{CACerts: b.CACerts, CAKey: b.CAKey, Cert: other.Cert, Key: other.Key}, at: t0,
			wantCert: true, wantReason: "not signed by the current CA"},
		{name: "serving key mismatch", bundle: &Bundle{CACerts: b.CACerts, CAKey: b.CAKey, Cert: b.Cert, Key: other.Key}, at: t0,
			wantCert: true, wantReason: "does not match"},
		{name: "CA key mismatch", bundle: &Bundle{CACerts: b.CACerts, CAKey: other.CAKey, Cert: b.Cert, Key: b.Key}, at: t0,
			wantCA: true, wantCert: true, wantReason: "CA key does not match"},
		{name: "garbage", bundle: &Bundle{CACerts: []byte("x"), CAKey: []byte("y")}, at: t0, wantCA: true, wantCert: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			if tc.spec != nil {
				s = tc.spec(s)
			}
			r := Check(tc.bundle, s, tc.at)
			if r.CA != tc.wantCA || r.Cert != tc.wantCert {
				t.Errorf("renewal = %+v, want CA=%v cert=%v", r, tc.wantCA, tc.wantCert)
			}
			if !strings.Contains(r.Reason, tc.wantReason) {
				t.Errorf("reason %q does not contain %q", r.Reason, tc.wantReason)
			}
		})
	}
}

func TestRenewServingKeepsCA(t *testing.T) {
	b := issue(t, t0)
	at := t0.Add(25 * day)
	nb, err := Renew(b, Check(b, spec, at), spec, at)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(nb.CACerts, b.CACerts) || !bytes.Equal(nb.CAKey, b.CAKey) {
		t.Error("serving renewal replaced the CA")
	}
	if bytes.Equal(nb.Cert, b.Cert) || bytes.Equal(nb.Key, b.Key) {
		t.Error("serving pair not replaced")
	}
	if err := verify(t, nb, "svc", at.Add(29*day)); err != nil {
		t.Errorf("renewed cert invalid before its new expiry: %v", err)
	}
}

func TestRenewCAKeepsOldCATrusted(t *testing.T) {
	b, err := Renew(issue(t, t0), Renewal{Cert: true}, spec, t0.Add(65*day))
	if err != nil {
		t.Fatal(err)
	}
	at := t0.Add(75 * day)
	nb, err := Renew(b, Check(b, spec, at), spec, at)
	if err != nil {
		t.Fatal(err)
	}
	cas, err := parseCerts(nb.CACerts)
	if err != nil {
		t.Fatal(err)
	}
	if len(cas) != 2 {
		t.Fatalf("trust bundle has %d CAs, want new + old", len(cas))
	}
	// A replica still serving the old pair must stay trusted during rollover.
	old := &Bundle{CACerts: nb.CACerts, Cert: b.Cert, Key: b.Key}
	if err := verify(t, old, "svc", at); err != nil {
		t.Errorf("old serving cert not trusted by new bundle: %v", err)
	}
	if err := verify(t, nb, "svc", at); err != nil {
		t.Errorf("new serving cert not trusted: %v", err)
	}
	// Once the old CA expired, the next CA rotation drops it.
	later := at.Add(96 * day)
	nb2, err := Renew(nb, Renewal{CA: true}, spec, later)
	if err != nil {
		t.Fatal(err)
	}
	if cas, _ := parseCerts(nb2.CACerts); len(cas) != 2 {
		t.Errorf("after old CA expired: %d CAs in bundle, want 2 (newest two)", len(cas))
	}
}

func TestRotatorEnsure(t *testing.T) {
	ctx := context.Background()
	caBundleOf := func(c client.Client) (m, v []byte) {
		mw := &admissionregistrationv1.MutatingWebhookConfiguration{}
		vw := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: "m"}, mw); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, client.ObjectKey{Name: "v"}, vw); err != nil {
			t.Fatal(err)
		}
		for _, w := range mw.Webhooks[1:] {
			if !bytes.Equal(w.ClientConfig.CABundle, mw.Webhooks[0].ClientConfig.CABundle) {
				t.Error("webhooks of one configuration disagree on caBundle")
			}
		}
		return mw.Webhooks[0].ClientConfig.CABundle, vw.Webhooks[0].ClientConfig.CABundle
	}
	c := fake.NewClientBuilder().WithObjects(
		&admissionregistrationv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "m"},
			Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a.x.io"}, {Name: "b.x.io"}},
		},
		&admissionregistrationv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "v"},
			Webhooks:   []admissionregistrationv1.ValidatingWebhook{{Name: "a.x.io"}},
		},
	).Build()

	now := t0
	dir := t.TempDir()
	opts := Options{
		SecretNamespace: "sys", SecretName: "webhook-certs", ServiceName: "svc",
		MutatingWebhookConfigurations: []string{"m"}, ValidatingWebhookConfigurations: []string{"v"},
		CertDir: dir, CAValidity: 100 * day, CertValidity: 30 * day,
		Now: func() time.Time { return now },
	}
	r, err := New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ReadyCheck(nil); err == nil {
		t.Error("ready before first Ensure")
	}
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadyCheck(nil); err != nil {
		t.Errorf("not ready after Ensure: %v", err)
	}

	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "sys", Name: "webhook-certs"}, secret); err != nil {
		t.Fatal(err)
	}
	b := FromData(secret.Data)
	if err := verify(t, b, "svc.sys.svc", now); err != nil {
		t.Errorf("issued cert does not verify for the service: %v", err)
	}
	m, v := caBundleOf(c)
	if !bytes.Equal(m, b.CACerts) || !bytes.Equal(v, b.CACerts) {
		t.Error("caBundle not injected")
	}
	assertFile(t, filepath.Join(dir, "tls.crt"), b.Cert)
	assertFile(t, filepath.Join(dir, "tls.key"), b.Key)

	// Converged: a second pass writes nothing.
	rv := secret.ResourceVersion
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "sys", Name: "webhook-certs"}, secret); err != nil {
		t.Fatal(err)
	}
	if secret.ResourceVersion != rv {
		t.Error("idempotent Ensure updated the secret")
	}

	// A second replica with an empty CertDir adopts the same pair.
	dir2 := t.TempDir()
	opts2 := opts
	opts2.CertDir = dir2
	r2, err := New(c, opts2)
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	assertFile(t, filepath.Join(dir2, "tls.crt"), b.Cert)

	// Time passes into the renewal window: a new serving pair, same CA.
	now = t0.Add(25 * day)
	if err := r.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Namespace: "sys", Name: "webhook-certs"}, secret); err != nil {
		t.Fatal(err)
	}
	nb := FromData(secret.Data)
	if bytes.Equal(nb.Cert, b.Cert) {
		t.Fatal("serving cert not renewed")
	}
	if !bytes.Equal(nb.CACerts, b.CACerts) {
		t.Error("CA changed on serving renewal")
	}
	assertFile(t, filepath.Join(dir, "tls.crt"), nb.Cert)

	// Someone re-applies the manifests, wiping caBundle: the next pass restores it.
	mw := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKey{Name: "m"}, mw); err != nil {
		t.Fatal(err)
	}
	mw.Webhooks[0].ClientConfig.CABundle = nil
	if err := c.Update(ctx, mw); err != nil {
		t.Fatal(err)
	}
	if err := r2.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := caBundleOf(c); !bytes.Equal(m, nb.CACerts) {
		t.Error("wiped caBundle not restored")
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(nil, Options{SecretName: "x"}); err == nil {
		t.Error("missing required options accepted")
	}
	if _, err := New(nil, Options{SecretNamespace: "a", SecretName: "b", ServiceName: "c", CertDir: "d", CAValidity: day, CertValidity: 2 * day}); err == nil {
		t.Error("CA shorter-lived than serving cert accepted")
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not hold the expected content", path)
	}
}
