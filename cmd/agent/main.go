// Command jobset-fleet-agent runs in a member cluster. Without hub
// credentials it is a standalone JobSet controller (a drop-in for upstream
// JobSet); with them it also runs the fleet agent that executes the hub's
// JobSetDispatches here. `join` and `unjoin` add a member to the fleet and
// remove it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobsetv1alpha2 "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/crdwait"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/restconfig"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/webhookcerts"
	"github.com/jobset-fleet/jobset-fleet/hub/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
	"github.com/jobset-fleet/jobset-fleet/spoke/jobset"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
)

// The agent reads its hub kubeconfig Secret and holds its leader-election
// Lease in its own namespace on the member. Its webhook certificate
// (cert-controller, cmd/internal/webhookcerts) lives in a Secret there too
// (watched, created empty at start), and its CA goes into the agent's two
// webhook configurations; the rotator watches webhook configurations
// cluster-wide but may change only these.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=jobset-fleet-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-mutating-webhook-configuration;jobset-fleet-validating-webhook-configuration

const usage = `jobset-fleet-agent runs JobSets in a member cluster.

Usage:
  jobset-fleet-agent [flags]           run the controller (see flags below)
  jobset-fleet-agent join [flags]      join a member cluster to a fleet hub
  jobset-fleet-agent unjoin [flags]    remove a member cluster from the hub
  jobset-fleet-agent <command> --help  flags of a command

Without --hub-kubeconfig or --hub-kubeconfig-secret the agent is a standalone
JobSet controller for this cluster. With one of them it also executes the
JobSetDispatches of its member namespace on the hub, renews its heartbeat and
stops (fences) fleet JobSets when the hub is unreachable for --fence-timeout.
The Secret that join writes also holds the member's fleet name, so
--cluster-name is needed only with --hub-kubeconfig.

Flags:
`

func main() {
	scheme := newScheme()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "join":
		err = runJoin(os.Args[2:], scheme)
	case len(os.Args) > 1 && os.Args[1] == "unjoin":
		err = runUnjoin(os.Args[2:], scheme)
	default:
		err = runController(os.Args[1:], scheme)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(jobsetv1alpha2.AddToScheme(s))
	utilruntime.Must(fleetv1alpha1.AddToScheme(s))
	utilruntime.Must(clusterinventory.AddToScheme(s))
	return s
}

type controllerFlags struct {
	kube                restconfig.Flags
	hubKubeconfig       string
	hubKubeconfigSecret string
	clusterName         string
	inventoryNamespace  string
	fenceTimeout        time.Duration
	fenceAction         string
	heartbeatInterval   time.Duration
	topologyKeys        string

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

func runController(args []string, scheme *runtime.Scheme) error {
	fs := flag.NewFlagSet("jobset-fleet-agent", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	var f controllerFlags
	f.kube.AddFlags(fs, "Member cluster kubeconfig (default: $KUBECONFIG, else in-cluster config).")
	fs.StringVar(&f.hubKubeconfig, "hub-kubeconfig", "", "Hub kubeconfig of this agent (from `join --output-kubeconfig`). Enables the fleet agent.")
	fs.StringVar(&f.hubKubeconfigSecret, "hub-kubeconfig-secret", "", "Read the hub kubeconfig from this member Secret, <namespace>/<name> (key \"kubeconfig\"), e.g. "+membership.AgentNamespace+"/"+membership.KubeconfigSecret+". Enables the fleet agent.")
	fs.StringVar(&f.clusterName, "cluster-name", "", "This member's name in the fleet (default: key \""+membership.ClusterNameKey+"\" of --hub-kubeconfig-secret; required with --hub-kubeconfig).")
	fs.StringVar(&f.inventoryNamespace, "inventory-namespace", fleetv1alpha1.DefaultInventoryNamespace, "Hub namespace of the ClusterProfiles.")
	fs.DurationVar(&f.fenceTimeout, "fence-timeout", 30*time.Second, "Stop fleet JobSets when no heartbeat reached the hub for this long. Keep it below the hub's member-lost timeout.")
	fs.StringVar(&f.fenceAction, "fence-action", string(agent.FenceSuspend), "What fencing does to fleet JobSets: suspend or delete.")
	fs.DurationVar(&f.heartbeatInterval, "heartbeat-interval", 10*time.Second, "How often the heartbeat Lease on the hub is renewed.")
	fs.StringVar(&f.topologyKeys, "topology-keys", "kubernetes.io/hostname,topology.kubernetes.io/zone", "Node label keys whose number of domains is reported to the hub (comma-separated), so exclusive-topology JobSets are placed only where they fit.")
	fs.BoolVar(&f.disableWebhooks, "disable-webhooks", false, "Do not serve the JobSet and Pod admission webhooks (e.g. for local runs).")
	fs.IntVar(&f.webhookPort, "webhook-port", 9443, "Webhook server port.")
	fs.StringVar(&f.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "jobset-fleet-webhook-certs"), "Directory of the webhook serving certificate.")
	fs.BoolVar(&f.manageWebhookCerts, "manage-webhook-certs", true, "Generate and rotate the webhook certificate and inject its CA into the webhook configurations.")
	fs.StringVar(&f.webhookService, "webhook-service", "jobset-fleet-webhook-service", "Service in front of the webhook server (the certificate's name).")
	fs.StringVar(&f.webhookSecret, "webhook-secret", "jobset-fleet-webhook-certs", "Secret that stores the webhook CA and certificate.")
	fs.StringVar(&f.webhookDNSNames, "webhook-cert-extra-dns-names", "", "Extra DNS names of the managed webhook certificate, comma-separated (e.g. localhost, when the apiserver calls a local process by URL).")
	fs.StringVar(&f.namespace, "namespace", membership.AgentNamespace, "The agent's own namespace on the member (leader election, webhook Secret).")
	fs.BoolVar(&f.leaderElect, "leader-elect", true, "Elect a leader so only one replica reconciles.")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "Metrics address; 0 disables.")
	fs.StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "Health and readiness probe address.")
	// Logging flags (-v, --logtostderr, ...) are klog's, like every
	// Kubernetes component's.
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (commands: join, unjoin)", fs.Arg(0))
	}
	ctrl.SetLogger(klog.NewKlogr())
	fenceAction, err := agent.ParseFenceAction(f.fenceAction)
	if err != nil {
		return err
	}
	if err := f.kube.Validate(); err != nil {
		return err
	}
	cfg, err := f.kube.Load()
	if err != nil {
		return fmt.Errorf("member kubeconfig: %w", err)
	}
	ctx := ctrl.SetupSignalHandler()
	// The JobSet CRD may be installed right before the agent starts (join,
	// or the same kubectl apply -k): wait for it to be served.
	if err := crdwait.Wait(ctx, ctrl.Log, cfg, []schema.GroupVersionKind{jobsetv1alpha2.GroupVersion.WithKind("JobSet")}, crdwait.Options{}); err != nil {
		return err
	}

	hub, err := loadHub(ctx, ctrl.Log, cfg, scheme, f.hubKubeconfig, f.hubKubeconfigSecret)
	if err != nil {
		return err
	}
	var hubConfig *rest.Config
	if hub != nil {
		hubConfig = hub.config
		// The config's token follows hub.credentials (rotated Secret, own
		// token refreshes); the rate limits are ours.
		f.kube.Apply(hubConfig)
		if f.clusterName == "" {
			f.clusterName = hub.clusterName
		}
		if f.clusterName == "" {
			return fmt.Errorf("--cluster-name is required: neither the flag nor the hub kubeconfig Secret (key %q, written by join) names this member", membership.ClusterNameKey)
		}
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: f.metricsAddr},
		HealthProbeBindAddress:  f.probeAddr,
		LeaderElection:          f.leaderElect,
		LeaderElectionID:        "jobset-fleet-agent",
		LeaderElectionNamespace: f.namespace,
		// Stop renewing promptly on shutdown so a new replica takes over fast.
		LeaderElectionReleaseOnCancel: true,
		WebhookServer:                 webhook.NewServer(webhook.Options{Port: f.webhookPort, CertDir: f.webhookCertDir}),
	})
	if err != nil {
		return fmt.Errorf("creating manager: %w", err)
	}
	if err := jobset.NewReconciler(mgr.GetClient(), mgr.GetEventRecorder("jobset-controller")).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up JobSet controller: %w", err)
	}
	if !f.disableWebhooks {
		if err := webhookcerts.Serve(ctx, mgr, webhookcerts.Options{
			Manage:                          f.manageWebhookCerts,
			Namespace:                       f.namespace,
			SecretName:                      f.webhookSecret,
			ServiceName:                     f.webhookService,
			ExtraDNSNames:                   splitList(f.webhookDNSNames),
			CertDir:                         f.webhookCertDir,
			CAName:                          "jobset-fleet-webhook-ca",
			MutatingWebhookConfigurations:   []string{spokewebhook.MutatingWebhookConfigurationName},
			ValidatingWebhookConfigurations: []string{spokewebhook.ValidatingWebhookConfigurationName},
		}, spokewebhook.SetupWithManager); err != nil {
			return fmt.Errorf("setting up JobSet and Pod webhooks: %w", err)
		}
	}
	if hubConfig != nil {
		if _, err := agent.Setup(mgr, agent.Options{
			ClusterName:        f.clusterName,
			HubConfig:          hubConfig,
			Credentials:        hub.credentials,
			InventoryNamespace: f.inventoryNamespace,
			HeartbeatInterval:  f.heartbeatInterval,
			TopologyKeys:       splitList(f.topologyKeys),
			FenceTimeout:       f.fenceTimeout,
			FenceAction:        fenceAction,
		}); err != nil {
			return fmt.Errorf("setting up fleet agent: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("Starting", "fleetAgent", hubConfig != nil, "cluster", f.clusterName, "webhooks", !f.disableWebhooks)
	return mgr.Start(ctx)
}

// hubAccess is what the agent needs to reach the hub as this member.
type hubAccess struct {
	config      *rest.Config
	credentials *agent.HubCredentials
	// clusterName is the member's fleet name as join recorded it; empty
	// for a kubeconfig file.
	clusterName string
}

// loadHub loads the agent's hub credentials from a file or a member Secret;
// nil when neither is given (standalone mode). A missing Secret is waited
// for, with a log line: the agent may be installed before join wrote it.
func loadHub(ctx context.Context, log logr.Logger, member *rest.Config, scheme *runtime.Scheme, path, secretRef string) (*hubAccess, error) {
	switch {
	case path != "" && secretRef != "":
		return nil, errors.New("give --hub-kubeconfig or --hub-kubeconfig-secret, not both")
	case path != "":
		cfg, creds, err := agent.HubConfigFromFile(path, agent.CredentialsOptions{})
		if err != nil {
			return nil, fmt.Errorf("hub kubeconfig %s: %w", path, err)
		}
		return &hubAccess{config: cfg, credentials: creds}, nil
	case secretRef != "":
		ns, name, ok := strings.Cut(secretRef, "/")
		if !ok {
			return nil, fmt.Errorf("--hub-kubeconfig-secret %q: want <namespace>/<name>", secretRef)
		}
		c, err := client.New(member, client.Options{Scheme: scheme})
		if err != nil {
			return nil, err
		}
		key := client.ObjectKey{Namespace: ns, Name: name}
		secret := &corev1.Secret{}
		var lastErr error
		err = wait.PollUntilContextCancel(ctx, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			err := c.Get(ctx, key, secret)
			if err == nil {
				return true, nil
			}
			if lastErr == nil || err.Error() != lastErr.Error() {
				log.Info("Waiting for the hub kubeconfig Secret (jobset-fleet-agent join writes it)", "secret", secretRef, "error", err.Error())
			}
			lastErr = err
			return false, nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading hub kubeconfig Secret %s: %w (last error: %v)", secretRef, err, lastErr)
		}
		cfg, creds, err := agent.HubConfigFromSecret(ctx, c, key, agent.CredentialsOptions{})
		if err != nil {
			return nil, fmt.Errorf("hub kubeconfig in Secret %s: %w", secretRef, err)
		}
		return &hubAccess{config: cfg, credentials: creds, clusterName: string(secret.Data[membership.ClusterNameKey])}, nil
	}
	return nil, nil
}

type membershipFlags struct {
	hubKubeconfig, memberKubeconfig string
	opts                            membership.Options
	labels                          string
}

func membershipFlagSet(name, summary string, f *membershipFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("jobset-fleet-agent "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jobset-fleet-agent %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.hubKubeconfig, "hub-kubeconfig", "", "Admin kubeconfig of the hub (required).")
	fs.StringVar(&f.memberKubeconfig, "member-kubeconfig", "", "Admin kubeconfig of the member (required).")
	fs.StringVar(&f.opts.ClusterName, "cluster-name", "", "The member's name in the fleet (required).")
	fs.StringVar(&f.opts.InventoryNamespace, "inventory-namespace", fleetv1alpha1.DefaultInventoryNamespace, "Hub namespace of the ClusterProfiles.")
	fs.StringVar(&f.opts.CRDDir, "crd-dir", filepath.Join("config", "crd", "bases"), "Directory of the CRD manifests installed on (or, with --remove-crds, removed from) the member.")
	return fs
}

func (f *membershipFlags) clients(scheme *runtime.Scheme) (hub, member client.Client, hubCfg *rest.Config, err error) {
	if f.hubKubeconfig == "" || f.memberKubeconfig == "" || f.opts.ClusterName == "" {
		return nil, nil, nil, errors.New("--hub-kubeconfig, --member-kubeconfig and --cluster-name are required")
	}
	hubCfg, err = clientcmd.BuildConfigFromFlags("", f.hubKubeconfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("hub kubeconfig: %w", err)
	}
	memberCfg, err := clientcmd.BuildConfigFromFlags("", f.memberKubeconfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if hub, err = client.New(hubCfg, client.Options{Scheme: scheme}); err != nil {
		return nil, nil, nil, err
	}
	if member, err = client.New(memberCfg, client.Options{Scheme: scheme}); err != nil {
		return nil, nil, nil, err
	}
	return hub, member, hubCfg, nil
}

func runJoin(args []string, scheme *runtime.Scheme) error {
	var f membershipFlags
	var output string
	fs := membershipFlagSet("join", "Join a member cluster to the fleet: its ClusterProfile, hub namespace, agent\nServiceAccount, Roles and token on the hub; the CRDs, the namespace\n"+membership.AgentNamespace+" and the Secret "+membership.KubeconfigSecret+" on the member. Idempotent.", &f)
	fs.StringVar(&f.labels, "labels", "", "ClusterProfile labels, k=v,k2=v2.")
	fs.StringVar(&f.opts.HubServerURL, "hub-server", "", "Hub apiserver URL as the agent reaches it (default: the server of --hub-kubeconfig).")
	fs.StringVar(&output, "output-kubeconfig", "", "Also write the agent's hub kubeconfig to this file (for running the agent locally).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return err
	}
	f.opts.Labels = labels
	hub, member, hubCfg, err := f.clients(scheme)
	if err != nil {
		return err
	}
	if f.opts.HubServerURL == "" {
		f.opts.HubServerURL = hubCfg.Host
	}
	if f.opts.HubCAData, err = caData(hubCfg); err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	kubeconfig, err := membership.Join(ctx, hub, member, f.opts)
	if err != nil {
		return err
	}
	if output != "" {
		if err := os.WriteFile(output, kubeconfig, 0o600); err != nil {
			return fmt.Errorf("writing %s: %w", output, err)
		}
	}
	fmt.Printf("Joined %s. Run the agent on the member with --cluster-name=%s --hub-kubeconfig-secret=%s/%s\n",
		f.opts.ClusterName, f.opts.ClusterName, membership.AgentNamespace, membership.KubeconfigSecret)
	return nil
}

func runUnjoin(args []string, scheme *runtime.Scheme) error {
	var f membershipFlags
	fs := membershipFlagSet("unjoin", "Remove a member cluster from the fleet: everything join created, and the\nfleet's JobSets on the member. The member's CRDs stay unless --remove-crds. Idempotent.", &f)
	fs.BoolVar(&f.opts.RemoveCRDs, "remove-crds", false, "Also delete the CRDs (and every JobSet) from the member.")
	fs.BoolVar(&f.opts.KeepWorkloads, "keep-workloads", false, "Leave the fleet's JobSets on the member running.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	hub, member, _, err := f.clients(scheme)
	if err != nil {
		return err
	}
	if err := membership.Unjoin(ctrl.SetupSignalHandler(), hub, member, f.opts); err != nil {
		return err
	}
	fmt.Printf("Removed %s from the fleet.\n", f.opts.ClusterName)
	return nil
}

func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if s == "" {
		return labels, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels: %q is not k=v", kv)
		}
		labels[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return labels, nil
}

func caData(cfg *rest.Config) ([]byte, error) {
	if len(cfg.CAData) > 0 || cfg.CAFile == "" {
		return cfg.CAData, nil
	}
	data, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("hub CA file: %w", err)
	}
	return data, nil
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
