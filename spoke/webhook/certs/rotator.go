package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// The agent needs these to keep its serving certificate: the Secret in its
// own namespace and the two webhook configurations, by name.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-mutating-webhook-configuration;jobset-fleet-validating-webhook-configuration

// Options configure a Rotator. SecretNamespace, SecretName, ServiceName and
// CertDir are required.
type Options struct {
	// SecretNamespace/SecretName hold the CA and serving pair, shared by all
	// replicas so they serve certificates from the same CA.
	SecretNamespace string
	SecretName      string

	// ServiceName/ServiceNamespace is the webhook Service the apiserver
	// calls; the certificate covers <svc>, <svc>.<ns>, <svc>.<ns>.svc and
	// <svc>.<ns>.svc.cluster.local. ServiceNamespace defaults to
	// SecretNamespace.
	ServiceName      string
	ServiceNamespace string
	// ExtraDNSNames and ExtraIPs are added to the certificate (e.g.
	// "localhost" and 127.0.0.1 when the apiserver calls a URL).
	ExtraDNSNames []string
	ExtraIPs      []net.IP

	// MutatingWebhookConfigurations and ValidatingWebhookConfigurations are
	// patched with the CA bundle, every webhook in each.
	MutatingWebhookConfigurations   []string
	ValidatingWebhookConfigurations []string

	// CertDir is the webhook server's CertDir; CertName and KeyName default
	// to the webhook server's defaults, tls.crt and tls.key.
	CertDir  string
	CertName string
	KeyName  string

	// CAValidity defaults to 10 years, CertValidity to 1 year, RenewBefore
	// to a third of CertValidity, and CheckInterval (how often the Secret
	// and caBundles are re-checked) to 10 minutes.
	CAValidity    time.Duration
	CertValidity  time.Duration
	RenewBefore   time.Duration
	CheckInterval time.Duration

	// Now is the clock; defaults to time.Now. Tests move it forward.
	Now func() time.Time
}

func (o *Options) defaults() error {
	if o.SecretNamespace == "" || o.SecretName == "" || o.ServiceName == "" || o.CertDir == "" {
		return errors.New("certs: SecretNamespace, SecretName, ServiceName and CertDir are required")
	}
	if o.ServiceNamespace == "" {
		o.ServiceNamespace = o.SecretNamespace
	}
	if o.CertName == "" {
		o.CertName = ServingCertKey
	}
	if o.KeyName == "" {
		o.KeyName = ServingKeyKey
	}
	if o.CAValidity == 0 {
		o.CAValidity = 10 * 365 * 24 * time.Hour
	}
	if o.CertValidity == 0 {
		o.CertValidity = 365 * 24 * time.Hour
	}
	if o.RenewBefore == 0 {
		o.RenewBefore = o.CertValidity / 3
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CAValidity <= o.CertValidity {
		return fmt.Errorf("certs: CAValidity (%s) must exceed CertValidity (%s)", o.CAValidity, o.CertValidity)
	}
	return nil
}

func (o *Options) spec() Spec {
	svc, ns := o.ServiceName, o.ServiceNamespace
	dns := []string{
		fmt.Sprintf("%s.%s.svc", svc, ns),
		svc,
		fmt.Sprintf("%s.%s", svc, ns),
		fmt.Sprintf("%s.%s.svc.cluster.local", svc, ns),
	}
	return Spec{
		DNSNames:     append(dns, o.ExtraDNSNames...),
		IPs:          o.ExtraIPs,
		CAValidity:   o.CAValidity,
		CertValidity: o.CertValidity,
		RenewBefore:  o.RenewBefore,
	}
}

// Rotator keeps the webhook serving certificate current. Every replica runs
// one (it does not need leader election): each writes its own CertDir, and
// all converge on the Secret through optimistic concurrency.
type Rotator struct {
	c    client.Client
	opts Options

	mu    sync.Mutex
	ready bool
}

// New builds a Rotator. c must read directly from the apiserver, not through
// an informer cache (a cache on Secrets would watch every Secret).
func New(c client.Client, opts Options) (*Rotator, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return &Rotator{c: c, opts: opts}, nil
}

// Setup is what a main calls before mgr.Start: it makes sure a valid
// certificate is in CertDir and in the webhook configurations (so the
// webhook server can start), then adds the Rotator to the manager to renew
// in the background, and a readiness check named "webhook-certs".
func Setup(ctx context.Context, mgr manager.Manager, opts Options) (*Rotator, error) {
	c, err := uncachedClient(mgr.GetConfig(), mgr)
	if err != nil {
		return nil, err
	}
	r, err := New(c, opts)
	if err != nil {
		return nil, err
	}
	if err := r.Ensure(ctx); err != nil {
		return nil, err
	}
	if err := mgr.Add(r); err != nil {
		return nil, fmt.Errorf("adding certificate rotator to manager: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhook-certs", r.ReadyCheck); err != nil {
		return nil, fmt.Errorf("adding webhook-certs readiness check: %w", err)
	}
	return r, nil
}

func uncachedClient(cfg *rest.Config, mgr manager.Manager) (client.Client, error) {
	c, err := client.New(cfg, client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return nil, fmt.Errorf("building uncached client for certificates: %w", err)
	}
	return c, nil
}

// Start renews until ctx ends. It implements manager.Runnable.
func (r *Rotator) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhook-certs")
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		if err := r.Ensure(ctx); err != nil {
			log.Error(err, "Keeping webhook certificate current failed; will retry", "retryIn", r.opts.CheckInterval)
		}
	}, r.opts.CheckInterval, 0.1, true)
	return nil
}

// NeedLeaderElection is false: every replica serves webhooks.
func (r *Rotator) NeedLeaderElection() bool { return false }

// ReadyCheck is a healthz.Checker: ready once a certificate has been written
// and the webhook configurations trust it.
func (r *Rotator) ReadyCheck(_ *http.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.ready {
		return errors.New("webhook certificate not provisioned yet")
	}
	return nil
}

// Ensure converges once: load or create the Secret, renew what is due, make
// the webhook configurations trust the CA, then write CertDir. The caBundle
// is patched before the files change so the apiserver never sees a serving
// certificate from a CA it does not trust yet.
func (r *Rotator) Ensure(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("webhook-certs")
	b, err := r.ensureSecret(ctx)
	if err != nil {
		return err
	}
	if err := r.injectCABundle(ctx, b.CACerts); err != nil {
		return err
	}
	changed, err := r.writeFiles(b)
	if err != nil {
		return err
	}
	if changed {
		log.Info("Wrote webhook serving certificate", "dir", r.opts.CertDir)
	}
	r.mu.Lock()
	r.ready = true
	r.mu.Unlock()
	return nil
}

// ensureSecret returns a current bundle from the Secret, creating or
// renewing it. Concurrent replicas race through AlreadyExists/Conflict and
// then adopt the winner's bundle.
func (r *Rotator) ensureSecret(ctx context.Context) (*Bundle, error) {
	log := ctrl.LoggerFrom(ctx).WithName("webhook-certs")
	spec := r.opts.spec()
	key := client.ObjectKey{Namespace: r.opts.SecretNamespace, Name: r.opts.SecretName}
	var out *Bundle
	err := retry.OnError(retry.DefaultRetry, func(err error) bool {
		return apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
	}, func() error {
		secret := &corev1.Secret{}
		err := r.c.Get(ctx, key, secret)
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return fmt.Errorf("getting secret %s: %w", key, err)
		}
		b := FromData(secret.Data)
		now := r.opts.Now()
		renewal := Check(b, spec, now)
		if !renewal.Needed() {
			out = b
			return nil
		}
		nb, err := Renew(b, renewal, spec, now)
		if err != nil {
			return err
		}
		if create {
			secret = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
				Type:       corev1.SecretTypeTLS,
				Data:       nb.Data(),
			}
			if err := r.c.Create(ctx, secret); err != nil {
				return fmt.Errorf("creating secret %s: %w", key, err)
			}
		} else {
			if secret.Data == nil {
				secret.Data = map[string][]byte{}
			}
			for k, v := range nb.Data() {
				secret.Data[k] = v
			}
			if err := r.c.Update(ctx, secret); err != nil {
				return fmt.Errorf("updating secret %s: %w", key, err)
			}
		}
		log.Info("Issued webhook certificate", "secret", key.String(), "newCA", renewal.CA, "reason", renewal.Reason)
		out = nb
		return nil
	})
	return out, err
}

// injectCABundle sets caBundle on every webhook of the named configurations
// that does not already carry it.
func (r *Rotator) injectCABundle(ctx context.Context, caBundle []byte) error {
	for _, name := range r.opts.MutatingWebhookConfigurations {
		if err := r.injectInto(ctx, "MutatingWebhookConfiguration", &admissionregistrationv1.MutatingWebhookConfiguration{}, name, caBundle); err != nil {
			return err
		}
	}
	for _, name := range r.opts.ValidatingWebhookConfigurations {
		if err := r.injectInto(ctx, "ValidatingWebhookConfiguration", &admissionregistrationv1.ValidatingWebhookConfiguration{}, name, caBundle); err != nil {
			return err
		}
	}
	return nil
}

// injectInto updates one webhook configuration (cfg is an empty object of
// its kind), only when a caBundle differs.
func (r *Rotator) injectInto(ctx context.Context, kind string, cfg client.Object, name string, caBundle []byte) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := r.c.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
			return err
		}
		changed := false
		for _, cc := range clientConfigs(cfg) {
			changed = setCABundle(cc, caBundle) || changed
		}
		if !changed {
			return nil
		}
		return r.c.Update(ctx, cfg)
	})
	if err != nil {
		return fmt.Errorf("injecting caBundle into %s %s: %w", kind, name, err)
	}
	return nil
}

// clientConfigs returns every webhook's clientConfig of a webhook
// configuration, for editing in place.
func clientConfigs(cfg client.Object) []*admissionregistrationv1.WebhookClientConfig {
	var out []*admissionregistrationv1.WebhookClientConfig
	switch c := cfg.(type) {
	case *admissionregistrationv1.MutatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	case *admissionregistrationv1.ValidatingWebhookConfiguration:
		for i := range c.Webhooks {
			out = append(out, &c.Webhooks[i].ClientConfig)
		}
	}
	return out
}

func setCABundle(cc *admissionregistrationv1.WebhookClientConfig, caBundle []byte) bool {
	if bytes.Equal(cc.CABundle, caBundle) {
		return false
	}
	cc.CABundle = caBundle
	return true
}

// writeFiles writes the serving pair (and the CA, for debugging) into
// CertDir, each atomically, skipping files that already match. The key is
// written before the certificate: the webhook server reloads on a change to
// either and needs both to match.
func (r *Rotator) writeFiles(b *Bundle) (bool, error) {
	if err := os.MkdirAll(r.opts.CertDir, 0o700); err != nil {
		return false, fmt.Errorf("creating cert dir: %w", err)
	}
	changed := false
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{r.opts.KeyName, b.Key, 0o600},
		{r.opts.CertName, b.Cert, 0o644},
		{CACertKey, b.CACerts, 0o644},
	} {
		c, err := writeFileAtomic(filepath.Join(r.opts.CertDir, f.name), f.data, f.mode)
		if err != nil {
			return changed, err
		}
		changed = changed || c
	}
	return changed, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, nil
}
