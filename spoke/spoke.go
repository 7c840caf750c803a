// Package spoke is the member side as one component: its options, their
// flags, and Setup, which adds the JobSet controller and, in a fleet, the
// agent to a manager. cmd/agent and the tests that run a member use it.
//
// Users, flags and docs say "member"; the tree says spoke because the
// design card's layout does (hub/ and spoke/). Its parts: jobset (the JobSet
// controller, a drop-in for upstream's), webhook (its admission webhooks),
// agent (what makes the member part of a fleet).
package spoke

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
	"github.com/jobset-fleet/jobset-fleet/spoke/jobset"
)

// Options configure the member side.
type Options struct {
	// Concurrency is how many JobSets the JobSet controller reconciles in
	// parallel.
	Concurrency int

	// HubKubeconfig or HubKubeconfigSecret (<namespace>/<name>, written by
	// join) make the member part of a fleet; with neither, the component
	// is a standalone JobSet controller.
	HubKubeconfig       string
	HubKubeconfigSecret string
	// Agent configures the fleet agent; SetupAgentOnceConnected fills in
	// its hub access (HubConfig, Credentials) and, from join's Secret, its
	// ClusterName.
	Agent agent.Options
	// Credentials configure how the agent keeps its hub credentials fresh.
	Credentials agent.CredentialsOptions
}

// DefaultOptions are the member side's defaults.
func DefaultOptions() Options {
	return Options{
		Concurrency: 8,
		Agent:       agent.DefaultOptions(),
		Credentials: agent.DefaultCredentialsOptions(),
	}
}

// AddFlags registers the options as flags, with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Concurrency, "concurrent-reconciles", o.Concurrency, "JobSets the JobSet controller reconciles in parallel.")
	fs.StringVar(&o.HubKubeconfig, "hub-kubeconfig", o.HubKubeconfig, "Hub kubeconfig of this agent (written by join --output-kubeconfig). Enables the fleet agent.")
	fs.StringVar(&o.HubKubeconfigSecret, "hub-kubeconfig-secret", o.HubKubeconfigSecret,
		"Read the hub kubeconfig from this member Secret, <namespace>/<name> (key \"kubeconfig\"), e.g. "+fleet.SystemNamespace+"/"+fleet.HubKubeconfigSecret+". Enables the fleet agent.")
	fs.StringVar(&o.Credentials.Context, "hub-context", o.Credentials.Context, "The context of the hub kubeconfig to use (default: its current context).")
	a := &o.Agent
	fs.StringVar(&a.ClusterName, "cluster-name", a.ClusterName, "This member's name in the fleet (default: key \""+fleet.ClusterNameKey+"\" of --hub-kubeconfig-secret; required with --hub-kubeconfig).")
	fs.StringVar(&a.InventoryNamespace, "inventory-namespace", a.InventoryNamespace, "Hub namespace of the ClusterProfiles.")
	fs.DurationVar(&a.FenceTimeout, "fence-timeout", a.FenceTimeout, "Stop fleet JobSets when no heartbeat reached the hub for this long. Keep it below the hub's --member-lost-timeout.")
	fs.Func("fence-action", fmt.Sprintf("What fencing does to fleet JobSets: %s or %s (default %s).", agent.FenceSuspend, agent.FenceDelete, a.FenceAction), func(s string) error {
		action, err := agent.ParseFenceAction(s)
		a.FenceAction = action
		return err
	})
	fs.DurationVar(&a.HeartbeatInterval, "heartbeat-interval", a.HeartbeatInterval, "How often the heartbeat Lease on the hub is renewed.")
	fs.Func("topology-keys", fmt.Sprintf("Node label keys whose number of domains is reported to the hub (comma-separated), so exclusive-topology JobSets are placed only where they fit (default %q).", strings.Join(a.TopologyKeys, ",")), func(s string) error {
		a.TopologyKeys = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		return nil
	})
	fs.Func("node-label-keys", fmt.Sprintf("Node label keys whose values the node summary reports to the hub (comma-separated, additive), e.g. nvidia.com/gpu.product, so JobSets selecting nodes by them are placed only where such nodes have room; besides %s and --topology-keys (%s is never reported).", strings.Join(agent.WellKnownNodeLabelKeys, ","), corev1.LabelHostname), func(s string) error {
		a.NodeLabelKeys = append(a.NodeLabelKeys, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
		return nil
	})
	fs.BoolFunc("create-namespaces", fmt.Sprintf("Create the namespace of a fleet JobSet when the member lacks it, with the hub namespace's %s* labels (default %t). With false the agent refuses such JobSets (Accepted=False, reason %s) and the hub places them elsewhere.", "pod-security.kubernetes.io/", !a.RequireNamespaces, fleet.ReasonNamespaceMissing), func(s string) error {
		create, err := strconv.ParseBool(s)
		a.RequireNamespaces = !create
		return err
	})
	fs.Func("denied-namespaces", fmt.Sprintf("Namespaces (comma-separated, a trailing * matches a prefix) whose fleet JobSets this member refuses (reason %s), in addition to the built-in %s.", fleet.ReasonNamespaceDenied, strings.Join(fleet.BuiltinDeniedNamespaces, ",")), func(s string) error {
		a.DeniedNamespaces = append(a.DeniedNamespaces, strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })...)
		return nil
	})
	fs.IntVar(&a.Concurrency, "concurrent-dispatch-reconciles", a.Concurrency, "JobSetDispatches the agent reconciles in parallel.")
	fs.Float64Var(&o.Credentials.RefreshFraction, "hub-token-refresh-fraction", o.Credentials.RefreshFraction,
		"Request a new hub token for the agent once this fraction of the current one's lifetime has passed.")
	fs.DurationVar(&o.Credentials.ReloadInterval, "hub-credentials-reload-interval", o.Credentials.ReloadInterval,
		"How often the hub kubeconfig Secret or file is read again, to pick up credentials an operator rotated.")
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if o.Concurrency <= 0 {
		errs = append(errs, fmt.Errorf("--concurrent-reconciles must be positive, not %d", o.Concurrency))
	}
	if o.HubKubeconfig != "" && o.HubKubeconfigSecret != "" {
		errs = append(errs, errors.New("give --hub-kubeconfig or --hub-kubeconfig-secret, not both"))
	}
	if o.HubKubeconfigSecret != "" {
		if ns, name, ok := strings.Cut(o.HubKubeconfigSecret, "/"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("--hub-kubeconfig-secret %q: want <namespace>/<name>", o.HubKubeconfigSecret))
		}
	}
	if o.HubKubeconfig != "" && o.Agent.ClusterName == "" {
		errs = append(errs, errors.New("--cluster-name is required with --hub-kubeconfig"))
	}
	if o.InFleet() {
		if o.Agent.Concurrency <= 0 {
			errs = append(errs, fmt.Errorf("--concurrent-dispatch-reconciles must be positive, not %d", o.Agent.Concurrency))
		}
		if r := o.Credentials.RefreshFraction; r <= 0 || r >= 1 {
			errs = append(errs, fmt.Errorf("--hub-token-refresh-fraction must be in (0, 1), not %v", r))
		}
	}
	return errors.Join(errs...)
}

// InFleet reports whether the member is part of a fleet (runs the agent).
func (o *Options) InFleet() bool { return o.HubKubeconfig != "" || o.HubKubeconfigSecret != "" }

// connectHub loads the agent's hub access into o.Agent: from the file, or
// from join's Secret on the member, which it waits for (with a log line):
// the agent may be installed before join wrote it. The hub config gets
// applyLimits (the process's client rate limits). Nothing to do outside a
// fleet.
func (o *Options) connectHub(ctx context.Context, log logr.Logger, member client.Client, applyLimits func(*rest.Config)) error {
	var (
		cfg   *rest.Config
		creds *agent.HubCredentials
		err   error
	)
	switch {
	case o.HubKubeconfig != "":
		if cfg, creds, err = agent.HubConfigFromFile(o.HubKubeconfig, o.Credentials); err != nil {
			return fmt.Errorf("hub kubeconfig %s: %w", o.HubKubeconfig, err)
		}
	case o.HubKubeconfigSecret != "":
		ns, name, _ := strings.Cut(o.HubKubeconfigSecret, "/")
		key := client.ObjectKey{Namespace: ns, Name: name}
		secret := &corev1.Secret{}
		var lastErr error
		err = wait.PollUntilContextCancel(ctx, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			err := member.Get(ctx, key, secret)
			if err == nil {
				return true, nil
			}
			if lastErr == nil || err.Error() != lastErr.Error() {
				log.Info("Waiting for the hub kubeconfig Secret (jobset-fleet-agent join writes it)", "secret", o.HubKubeconfigSecret, "error", err.Error())
			}
			lastErr = err
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("reading hub kubeconfig Secret %s: %w (last error: %v)", o.HubKubeconfigSecret, err, lastErr)
		}
		if cfg, creds, err = agent.HubConfigFromSecret(ctx, member, key, o.Credentials); err != nil {
			return fmt.Errorf("hub kubeconfig in Secret %s: %w", o.HubKubeconfigSecret, err)
		}
		if o.Agent.ClusterName == "" {
			o.Agent.ClusterName = string(secret.Data[fleet.ClusterNameKey])
		}
	default:
		return nil
	}
	if o.Agent.ClusterName == "" {
		return fmt.Errorf("--cluster-name is required: neither the flag nor the hub kubeconfig Secret (key %q, written by join) names this member", fleet.ClusterNameKey)
	}
	// The config's token follows creds (rotated Secret, own token
	// refreshes); the rate limits are the process's.
	if applyLimits != nil {
		applyLimits(cfg)
	}
	o.Agent.HubConfig, o.Agent.Credentials = cfg, creds
	return nil
}

// Setup adds the JobSet controller to mgr and, when the caller set
// o.Agent.HubConfig, the agent. The agent is nil otherwise. It refuses a
// cluster that runs upstream JobSet (CheckCoexistence).
func Setup(mgr ctrl.Manager, o Options) (*agent.Agent, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultOptions().Concurrency
	}
	if err := refuseBesideUpstream(mgr.GetAPIReader()); err != nil {
		return nil, err
	}
	r := jobset.NewReconciler(mgr.GetClient(), mgr.GetEventRecorder(jobset.ReportingController), jobset.WithConcurrency(o.Concurrency))
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the JobSet controller: %w", err)
	}
	if o.Agent.HubConfig == nil {
		return nil, nil
	}
	a, err := agent.Setup(mgr, o.Agent)
	if err != nil {
		return nil, fmt.Errorf("setting up the fleet agent: %w", err)
	}
	return a, nil
}

// SetupAgentOnceConnected adds the fleet agent to mgr once connectHub found
// its hub access, on the leader, after the manager started: join may write
// its Secret long after the agent was installed, and meanwhile the JobSet
// controller, the webhooks and the probes work as for a standalone member.
// A malformed Secret or kubeconfig stops the manager with the error.
func SetupAgentOnceConnected(mgr ctrl.Manager, o Options, applyLimits func(*rest.Config)) error {
	member, err := client.New(mgr.GetConfig(), client.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper()})
	if err != nil {
		return fmt.Errorf("member client: %w", err)
	}
	// Every replica, leader or not, fences from the process's start.
	name, secret := o.Agent.ClusterName, o.HubKubeconfigSecret
	if err := mgr.Add(agent.NewStandbyFencer(member, o.Agent, func(ctx context.Context) (string, error) {
		return fleetName(ctx, member, name, secret)
	})); err != nil {
		return fmt.Errorf("adding the standby fencer: %w", err)
	}
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		log := mgr.GetLogger().WithName("fleet-agent")
		if err := o.connectHub(ctx, log, member, applyLimits); err != nil {
			return err
		}
		if _, err := agent.Setup(mgr, o.Agent); err != nil {
			return fmt.Errorf("setting up the fleet agent: %w", err)
		}
		log.Info("Connected to the hub", "cluster", o.Agent.ClusterName)
		return nil
	}))
}

// fleetName is the member's name in the fleet as connectHub finds it, but
// without waiting: the flag, else what join wrote into the hub kubeconfig
// Secret; "" while neither says.
func fleetName(ctx context.Context, member client.Reader, flagName, secretRef string) (string, error) {
	if flagName != "" || secretRef == "" {
		return flagName, nil
	}
	ns, name, _ := strings.Cut(secretRef, "/")
	secret := &corev1.Secret{}
	if err := member.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, secret); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	return string(secret.Data[fleet.ClusterNameKey]), nil
}
