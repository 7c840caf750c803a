// Package manager is what the hub and the agent binaries share around their
// controller-runtime manager: the flags of the process (client, leader
// election, metrics, probes, feature gates, the webhook server and its
// certificates), the manager built from them, and the boot sequence (Run,
// boot.go) each binary fills in with its own options, kinds, setup and
// webhooks.
package manager

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/jobset-fleet/jobset-fleet/api"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/features"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/restconfig"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/webhookcerts"
)

// Component names what differs between the binaries.
type Component struct {
	// Name is the leader-election Lease's name.
	Name string
	// Namespace is the default of --namespace.
	Namespace string
	// KubeconfigUsage is the help of --kubeconfig.
	KubeconfigUsage string
	// WebhookService and WebhookSecret are the defaults of --webhook-service
	// and --webhook-secret; CAName names the webhook CA.
	WebhookService, WebhookSecret, CAName string
	// The webhook configurations whose CA bundle the component manages.
	MutatingWebhookConfigurations, ValidatingWebhookConfigurations []string
	// APIServices returns, once flags are parsed, the aggregated APIs the
	// component serves with its webhook certificate, whose CA bundle it
	// manages as well (none when the API is turned off: cert-controller
	// would report each missing one on every reconcile).
	APIServices func() []string
}

// Flags are the process flags both binaries have.
type Flags struct {
	Kube restconfig.Flags
	// Namespace is the component's own (leader election, webhook Secret).
	Namespace   string
	LeaderElect bool
	// LeaseDuration, RenewDeadline and RetryPeriod time leader election.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS to authenticated and
	// authorized clients only (a bearer token whose identity may get the
	// non-resource URL /metrics); off: plain HTTP to anyone, for local runs.
	MetricsSecure bool
	ProbeAddr     string
	// PprofAddr serves net/http/pprof for profiling (a development aid,
	// off by default: it is unauthenticated).
	PprofAddr string
	TLS       TLSFlags

	DisableWebhooks    bool
	WebhookPort        int
	WebhookCertDir     string
	ManageWebhookCerts bool
	WebhookService     string
	WebhookSecret      string
	WebhookDNSNames    string
}

// The sections of --help, in the order AddFlags adds them after the
// component's own.
const (
	SectionClient         = "kube client"
	SectionLeaderElection = "leader election"
	SectionServing        = "metrics and probes"
	SectionWebhooks       = "webhooks"
	SectionFeatureGates   = "feature gates"
)

// AddFlags registers the flags in their sections of fss, --feature-gates
// among them.
func (f *Flags) AddFlags(fss *cliflag.NamedFlagSets, c Component) {
	fs := fss.FlagSet(SectionClient)
	f.Kube.AddFlags(fs, c.KubeconfigUsage)
	fs.StringVar(&f.Namespace, "namespace", c.Namespace, "The component's own namespace (leader election, webhook Secret).")
	fs = fss.FlagSet(SectionLeaderElection)
	fs.BoolVar(&f.LeaderElect, "leader-elect", true, "Elect a leader so only one replica reconciles.")
	// The defaults are client-go's and every Kubernetes component's.
	fs.DurationVar(&f.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a standby waits, after the leader's last renewal, before it takes over.")
	fs.DurationVar(&f.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader retries renewing before it gives up leadership (and exits).")
	fs.DurationVar(&f.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often the leader renews and standbys try to acquire.")
	fs = fss.FlagSet(SectionServing)
	fs.StringVar(&f.MetricsAddr, "metrics-bind-address", ":8443", "Metrics address; 0 disables.")
	fs.BoolVar(&f.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS (a self-signed certificate, with --tls-min-version and --tls-cipher-suites) "+
		"only to clients whose bearer token the apiserver authenticates and authorizes for GET /metrics (e.g. bound to the metrics-reader ClusterRole). "+
		"False: plain HTTP to anyone, for local development.")
	fs.StringVar(&f.ProbeAddr, "health-probe-bind-address", ":8081", "Health and readiness probe address.")
	fs.StringVar(&f.PprofAddr, "pprof-bind-address", "", "Serve Go's pprof profiles on this address, unauthenticated (development only); empty disables.")
	fs = fss.FlagSet(SectionWebhooks)
	fs.BoolVar(&f.DisableWebhooks, "disable-webhooks", false, "Do not serve the admission webhooks (e.g. for local runs).")
	fs.IntVar(&f.WebhookPort, "webhook-port", 9443, "Webhook server port.")
	fs.StringVar(&f.WebhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), c.Name+"-webhook-certs"), "Directory of the webhook serving certificate.")
	fs.BoolVar(&f.ManageWebhookCerts, "manage-webhook-certs", true, "Generate and rotate the webhook certificate and inject its CA into the webhook configurations. Off: provide tls.crt and tls.key in --webhook-cert-dir.")
	fs.StringVar(&f.WebhookService, "webhook-service", c.WebhookService, "Service in front of the webhook server (the certificate's name).")
	fs.StringVar(&f.WebhookSecret, "webhook-secret", c.WebhookSecret, "Secret that stores the webhook CA and certificate.")
	fs.StringVar(&f.WebhookDNSNames, "webhook-cert-extra-dns-names", "", "Extra DNS names of the managed webhook certificate, comma-separated (e.g. localhost, when the apiserver calls a local process by URL).")
	f.TLS.addFlags(fs)
	features.Gate.AddFlag(fss.FlagSet(SectionFeatureGates))
}

// Validate checks the flags.
func (f *Flags) Validate() error {
	var errs []error
	if err := f.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	if f.Namespace == "" {
		errs = append(errs, errors.New("--namespace must not be empty"))
	}
	if _, err := f.TLS.options(); err != nil {
		errs = append(errs, err)
	}
	if f.LeaderElect && (f.RetryPeriod <= 0 || f.RenewDeadline <= f.RetryPeriod || f.LeaseDuration <= f.RenewDeadline) {
		errs = append(errs, fmt.Errorf("leader election needs 0 < --leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s)",
			f.RetryPeriod, f.RenewDeadline, f.LeaseDuration))
	}
	return errors.Join(errs...)
}

// New loads the client configuration and creates the manager with the
// fleet's scheme, health and readiness checks; cacheOpts narrows its cache.
func New(f Flags, c Component, cacheOpts cache.Options) (*rest.Config, ctrl.Manager, error) {
	cfg, err := f.Kube.Load()
	if err != nil {
		return nil, nil, fmt.Errorf("kubeconfig: %w", err)
	}
	tlsOpts, err := f.TLS.options()
	if err != nil {
		return nil, nil, err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  api.NewScheme(),
		Cache:                   cacheOpts,
		Metrics:                 metricsOptions(f, tlsOpts),
		HealthProbeBindAddress:  f.ProbeAddr,
		PprofBindAddress:        f.PprofAddr,
		LeaderElection:          f.LeaderElect,
		LeaderElectionID:        c.Name,
		LeaderElectionNamespace: f.Namespace,
		LeaseDuration:           &f.LeaseDuration,
		RenewDeadline:           &f.RenewDeadline,
		RetryPeriod:             &f.RetryPeriod,
		// Stop renewing promptly on shutdown so a new replica takes over fast.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: f.WebhookPort, CertDir: f.WebhookCertDir, TLSOpts: tlsOpts}),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, nil, err
	}
	return cfg, mgr, nil
}

// metricsOptions serve metrics as the flags say: by default over HTTPS,
// each request authenticated (TokenReview) and authorized
// (SubjectAccessReview) by the apiserver, as kubebuilder projects do. Each
// binary's main carries the RBAC markers for those reviews.
func metricsOptions(f Flags, tlsOpts []func(*tls.Config)) metricsserver.Options {
	o := metricsserver.Options{BindAddress: f.MetricsAddr, SecureServing: f.MetricsSecure, TLSOpts: tlsOpts}
	if f.MetricsSecure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

// ServeWebhooks registers the component's webhooks (setup) on mgr, with a
// managed certificate unless --manage-webhook-certs=false; nothing with
// --disable-webhooks.
func ServeWebhooks(ctx context.Context, mgr ctrl.Manager, f Flags, c Component, setup func(ctrl.Manager) error) error {
	if f.DisableWebhooks {
		return nil
	}
	if err := webhookcerts.Serve(ctx, mgr, webhookcerts.Options{
		Manage:                          f.ManageWebhookCerts,
		Namespace:                       f.Namespace,
		SecretName:                      f.WebhookSecret,
		ServiceName:                     f.WebhookService,
		ExtraDNSNames:                   SplitList(f.WebhookDNSNames),
		CertDir:                         f.WebhookCertDir,
		CAName:                          c.CAName,
		MutatingWebhookConfigurations:   c.MutatingWebhookConfigurations,
		ValidatingWebhookConfigurations: c.ValidatingWebhookConfigurations,
		APIServices:                     c.apiServices(),
	}, setup); err != nil {
		return fmt.Errorf("setting up admission webhooks: %w", err)
	}
	return nil
}

func (c Component) apiServices() []string {
	if c.APIServices == nil {
		return nil
	}
	return c.APIServices()
}

// SplitList splits a comma-separated flag value, dropping blanks.
func SplitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}
