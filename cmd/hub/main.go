// Command jobset-fleet-hub runs the fleet's hub: it places users' JobSets on
// member clusters, dispatches them to the members' agents and mirrors their
// status back.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobsetv1alpha2 "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/crdwait"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/restconfig"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/webhookcerts"
	"github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
)

// The webhook certificate (cert-controller, cmd/internal/webhookcerts): its
// Secret in the hub's namespace (watched there, created empty at start),
// and the CA bundle of the hub's two webhook configurations. The rotator
// watches webhook configurations cluster-wide but may change only these.
// The hub's leader-election Lease is covered by hub/inventory's markers.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-hub-mutating-webhook-configuration;jobset-fleet-hub-validating-webhook-configuration

const usage = `jobset-fleet-hub places JobSets applied to this (hub) cluster on member
clusters of the fleet and mirrors their status back.

Usage:
  jobset-fleet-hub [flags]

Members join with "jobset-fleet-agent join"; their ClusterProfiles live in
--inventory-namespace. A member whose agent has not renewed its heartbeat for
--heartbeat-timeout gets no new work; after --member-lost-timeout it is lost,
and its JobSets run elsewhere once their copy there is confirmed stopped (the
agent reported it, the hub stopped it through --clusterprofile-provider-file
access, an operator labelled the ClusterProfile
fleet.jobset.x-k8s.io/out-of-service=true, or the member was unjoined). Keep
the agents' --fence-timeout below --member-lost-timeout.

Flags:
`

type flags struct {
	kube restconfig.Flags
	hub  hub.Options

	disableWebhooks    bool
	webhookPort        int
	webhookCertDir     string
	manageWebhookCerts bool
	webhookService     string
	webhookSecret      string
	webhookDNSNames    string
	namespace          string

	leaderElect bool
	metricsAddr string
	probeAddr   string
}

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("jobset-fleet-hub", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	f := flags{hub: hub.DefaultOptions()}
	f.kube.AddFlags(fs, "Hub kubeconfig (default: $KUBECONFIG, else in-cluster config).")
	f.hub.AddFlags(fs)
	fs.BoolVar(&f.disableWebhooks, "disable-webhooks", false, "Do not serve the JobSet admission webhooks (e.g. for local runs).")
	fs.IntVar(&f.webhookPort, "webhook-port", 9443, "Webhook server port.")
	fs.StringVar(&f.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "jobset-fleet-hub-webhook-certs"), "Directory of the webhook serving certificate.")
	fs.BoolVar(&f.manageWebhookCerts, "manage-webhook-certs", true, "Generate and rotate the webhook certificate and inject its CA into the hub webhook configurations. Off: provide tls.crt and tls.key in --webhook-cert-dir.")
	fs.StringVar(&f.webhookService, "webhook-service", "jobset-fleet-hub-webhook-service", "Service in front of the webhook server (the certificate's name).")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "jobset-fleet-hub-webhook-certs", "Secret that stores the webhook CA and certificate.")
	fs.StringVar(&f.webhookDNSNames, "webhook-cert-extra-dns-names", "", "Extra DNS names of the managed webhook certificate, comma-separated (e.g. localhost, when the apiserver calls a local process by URL).")
	fs.StringVar(&f.namespace, "namespace", "jobset-fleet-system", "The hub's own namespace (leader election, webhook Secret).")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "Elect a leader so only one replica reconciles.")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Metrics address; 0 disables.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Health and readiness probe address.")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	ctrl.SetLogger(klog.NewKlogr())
	if err := errors.Join(f.hub.Validate(), f.kube.Validate()); err != nil {
		return err
	}
	cfg, err := f.kube.Load()
	if err != nil {
		return fmt.Errorf("hub kubeconfig: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if err := crdwait.Wait(ctx, ctrl.Log, cfg, servedKinds(), crdwait.Options{}); err != nil {
		return err
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        newScheme(),
		Cache:                         f.hub.CacheOptions(),
		Metrics:                       metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:        f.probeAddr,
		LeaderElection:                f.leaderElect,
		LeaderElectionID:              "jobset-fleet-hub",
		LeaderElectionNamespace:       f.namespace,
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: f.webhookPort, CertDir: f.webhookCertDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := hub.Setup(mgr, f.hub); err != nil {
		return err
	}
	if !f.disableWebhooks {
		if err := webhookcerts.Serve(ctx, mgr, webhookcerts.Options{
			Manage:                          f.manageWebhookCerts,
			Namespace:                       f.namespace,
			SecretName:                      f.webhookSecret,
			ServiceName:                     f.webhookService,
			ExtraDNSNames:                   splitList(f.webhookDNSNames),
			CertDir:                         f.webhookCertDir,
			CAName:                          "jobset-fleet-hub-webhook-ca",
			MutatingWebhookConfigurations:   []string{admission.MutatingWebhookConfigurationName},
			ValidatingWebhookConfigurations: []string{admission.ValidatingWebhookConfigurationName},
		}, f.hub.Admission()); err != nil {
			return fmt.Errorf("setting up admission webhooks: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("Starting hub", "inventoryNamespace", f.hub.InventoryNamespace, "policy", f.hub.PlacementPolicy,
		"heartbeatTimeout", f.hub.HeartbeatTimeout, "memberLostTimeout", f.hub.MemberLostTimeout, "webhooks", !f.disableWebhooks)
	return mgr.Start(ctx)
}

// servedKinds are the kinds the hub cannot start without: its own CRDs and
// cluster-inventory-api's.
func servedKinds() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{
		jobsetv1alpha2.GroupVersion.WithKind("JobSet"),
		fleetv1alpha1.GroupVersion.WithKind("JobSetDispatch"),
		clusterinventory.GroupVersion.WithKind("ClusterProfile"),
		clusterinventory.GroupVersion.WithKind("PlacementDecision"),
	}
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(jobsetv1alpha2.AddToScheme(s))
	utilruntime.Must(fleetv1alpha1.AddToScheme(s))
	utilruntime.Must(clusterinventory.AddToScheme(s))
	return s
}
