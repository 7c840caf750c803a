// Package webhookcerts provisions a component's webhook serving certificate
// with cert-controller (github.com/open-policy-agent/cert-controller, what
// upstream JobSet and Kueue use): a self-signed CA and a serving
// certificate for the webhook Service kept in a Secret, rotated before they
// expire, and the CA injected into the component's webhook configurations
// (and APIServices served with the same certificate).
//
// Every replica serves webhooks, so every replica runs the rotator (they
// converge on the one Secret through optimistic concurrency) and writes the
// Secret's serving pair into its own certificate directory. The pair is
// written by this package rather than through a Secret volume: the kubelet
// refreshes a mounted Secret only on its next pod sync (up to a minute or
// more after the rotator first fills it, which delays every install), and a
// component run as a local process, as in the development fleet, has no
// kubelet at all.
package webhookcerts

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Names of the files in the certificate directory: the webhook server's
// defaults.
const (
	CertName = "tls.crt"
	KeyName  = "tls.key"
)

// Options configure Setup. Every field but ExtraDNSNames is required.
type Options struct {
	// Manage turns certificate management on. Off, the serving pair is
	// provided in CertDir by someone else (e.g. cert-manager and a Secret
	// volume) and Serve only registers the webhooks.
	Manage bool
	// Namespace of the Secret and of the webhook Service.
	Namespace string
	// SecretName holds the CA and the serving pair; Setup creates it empty
	// when missing and the rotator fills it.
	SecretName string
	// ServiceName is the webhook Service the apiserver calls. The
	// certificate is for <svc>.<ns>.svc and <svc>.<ns>.svc.cluster.local.
	ServiceName string
	// ExtraDNSNames are added to the certificate, e.g. "localhost" when the
	// apiserver calls a local process by URL. Empty in production.
	ExtraDNSNames []string
	// CertDir is the webhook server's certificate directory.
	CertDir string
	// CAName names the CA (its common name).
	CAName string

	MutatingWebhookConfigurations   []string
	ValidatingWebhookConfigurations []string
	// APIServices are aggregated APIs served with the same certificate
	// (through the same Service): their caBundle is kept current too.
	APIServices []string

	// ControllerName names the rotator's controller; default
	// <SecretName>-rotator. Controller names are unique per process, so
	// only a test running two replicas in one process sets it.
	ControllerName string
}

func (o *Options) validate() error {
	if !o.Manage {
		return nil
	}
	if o.Namespace == "" || o.SecretName == "" || o.ServiceName == "" || o.CertDir == "" || o.CAName == "" {
		return errors.New("webhook certificates: Namespace, SecretName, ServiceName, CertDir and CAName are required")
	}
	return nil
}

// Serve wires a component's webhooks into mgr: the certificates (when
// opts.Manage), then register, which adds the webhooks to the webhook
// server, once the serving pair is in CertDir: the server cannot start
// without its files. It also adds the readiness check "webhooks", which
// passes once the server is serving, so a Service sends admission requests
// only to replicas that answer them.
func Serve(ctx context.Context, mgr ctrl.Manager, opts Options, register func(ctrl.Manager) error) error {
	if err := opts.validate(); err != nil {
		return err
	}
	ready := make(chan struct{})
	if opts.Manage {
		var err error
		if ready, err = setup(ctx, mgr, opts); err != nil {
			return err
		}
	} else {
		close(ready)
	}
	if err := mgr.Add(&registration{ready: ready, register: func() error { return register(mgr) }}); err != nil {
		return fmt.Errorf("adding webhook registration: %w", err)
	}
	if err := mgr.AddReadyzCheck("webhooks", func(req *http.Request) error {
		select {
		case <-ready:
			return mgr.GetWebhookServer().StartedChecker()(req)
		default:
			return errors.New("webhook serving certificate not ready yet")
		}
	}); err != nil {
		return fmt.Errorf("adding webhook readiness check: %w", err)
	}
	return nil
}

// registration registers the webhooks once the certificates are ready, on
// every replica: a Runnable so that a registration error stops the manager.
type registration struct {
	ready    <-chan struct{}
	register func() error
}

func (r *registration) Start(ctx context.Context) error {
	select {
	case <-r.ready:
	case <-ctx.Done():
		return nil
	}
	if err := r.register(); err != nil {
		return fmt.Errorf("registering webhooks: %w", err)
	}
	return nil
}

// NeedLeaderElection is false: every replica serves webhooks.
func (r *registration) NeedLeaderElection() bool { return false }

// setup creates the Secret if it is missing, then adds to mgr the rotator
// and the writer of CertDir. The returned channel is closed once a valid
// serving pair is in CertDir and the CA is in the webhook configurations.
func setup(ctx context.Context, mgr ctrl.Manager, opts Options) (chan struct{}, error) {
	key := types.NamespacedName{Namespace: opts.Namespace, Name: opts.SecretName}
	if err := ensureSecret(ctx, mgr, key); err != nil {
		return nil, err
	}
	var webhooks []rotator.WebhookInfo
	for _, name := range opts.MutatingWebhookConfigurations {
		webhooks = append(webhooks, rotator.WebhookInfo{Name: name, Type: rotator.Mutating})
	}
	for _, name := range opts.ValidatingWebhookConfigurations {
		webhooks = append(webhooks, rotator.WebhookInfo{Name: name, Type: rotator.Validating})
	}
	for _, name := range opts.APIServices {
		webhooks = append(webhooks, rotator.WebhookInfo{Name: name, Type: rotator.APIService})
	}
	ready := make(chan struct{})
	svc := fmt.Sprintf("%s.%s.svc", opts.ServiceName, opts.Namespace)
	if err := rotator.AddRotator(mgr, &rotator.CertRotator{
		SecretKey:      key,
		CertDir:        opts.CertDir,
		CertName:       CertName,
		KeyName:        KeyName,
		CAName:         opts.CAName,
		CAOrganization: "jobset-fleet",
		DNSName:        svc,
		ExtraDNSNames:  append([]string{svc + ".cluster.local"}, opts.ExtraDNSNames...),
		IsReady:        ready,
		Webhooks:       webhooks,
		// Every replica serves webhooks, so every replica keeps them
		// current, leader or not.
		RequireLeaderElection: false,
		// The files are reloaded by the webhook server; no restart.
		RestartOnSecretRefresh: false,
		ControllerName:         cmp.Or(opts.ControllerName, opts.SecretName+"-rotator"),
	}); err != nil {
		return nil, fmt.Errorf("webhook certificate rotator: %w", err)
	}
	if err := addFileWriter(mgr, key, opts.CertDir); err != nil {
		return nil, err
	}
	return ready, nil
}

// ensureSecret creates the empty Secret the rotator fills: cert-controller
// refuses to start without one, and creating it here keeps the install
// free of an empty Secret that a later `kubectl apply` could fight over.
func ensureSecret(ctx context.Context, mgr ctrl.Manager, key types.NamespacedName) error {
	// The manager's client reads from a cache that is not started yet.
	c, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("client for the webhook certificate Secret: %w", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := c.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating webhook certificate Secret %s: %w", key, err)
	}
	return nil
}

// addFileWriter keeps CertDir equal to the Secret's serving pair, on every
// replica, through an informer on that one Secret.
func addFileWriter(mgr ctrl.Manager, key types.NamespacedName, dir string) error {
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:            mgr.GetScheme(),
		Mapper:            mgr.GetRESTMapper(),
		DefaultNamespaces: map[string]cache.Config{key.Namespace: {}},
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("metadata.name", key.Name)},
		},
	})
	if err != nil {
		return fmt.Errorf("cache for the webhook certificate Secret: %w", err)
	}
	informer, err := c.GetInformer(context.Background(), &corev1.Secret{})
	if err != nil {
		return fmt.Errorf("informer for the webhook certificate Secret: %w", err)
	}
	log := mgr.GetLogger().WithName("webhook-certs")
	write := func(obj any) {
		secret, ok := obj.(*corev1.Secret)
		if !ok || secret.Name != key.Name {
			return
		}
		changed, err := WriteFiles(dir, secret.Data[CertName], secret.Data[KeyName])
		if err != nil {
			log.Error(err, "Writing the webhook serving certificate failed", "dir", dir)
			return
		}
		if changed {
			log.Info("Wrote the webhook serving certificate", "dir", dir, "secret", key.String())
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    write,
		UpdateFunc: func(_, obj any) { write(obj) },
	}); err != nil {
		return fmt.Errorf("watching the webhook certificate Secret: %w", err)
	}
	// Started with the manager's caches: on every replica, before the other
	// runnables. (Added bare, a cache is a leader-only runnable, and a
	// replica that is not the leader would never become ready.)
	if err := mgr.Add(everyReplicaCache{c}); err != nil {
		return fmt.Errorf("adding the webhook certificate cache: %w", err)
	}
	return nil
}

// everyReplicaCache makes the manager treat a cache as one of its own
// caches (see addFileWriter).
type everyReplicaCache struct{ cache.Cache }

func (c everyReplicaCache) GetCache() cache.Cache { return c.Cache }

// WriteFiles writes a serving pair into dir, each file atomically and only
// when it differs; an incomplete pair (the Secret before the rotator filled
// it) is skipped. The key goes first: the webhook server reloads on either
// file's change and needs them to match, which they do once both are
// written.
func WriteFiles(dir string, cert, key []byte) (bool, error) {
	if len(cert) == 0 || len(key) == 0 {
		return false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("creating %s: %w", dir, err)
	}
	changed := false
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyName, key}, {CertName, cert}} {
		c, err := writeFileAtomic(filepath.Join(dir, f.name), f.data)
		if err != nil {
			return changed, err
		}
		changed = changed || c
	}
	return changed, nil
}

func writeFileAtomic(path string, data []byte) (bool, error) {
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	if _, err := tmp.Write(data); err != nil {
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
