// Command jobset-fleet-agent runs in a member cluster. Without hub
// credentials it is a standalone JobSet controller (a drop-in for upstream
// JobSet); with them it also runs the fleet agent that executes the hub's
// JobSetDispatches here. `join` and `unjoin` add a member to the fleet and
// remove it; `cordon`, `uncordon` and `drain` take it out of rotation and
// back.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/manager"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke"
	spokewebhook "github.com/jobset-fleet/jobset-fleet/spoke/webhook"
)

// The agent reads its hub kubeconfig Secret and holds its leader-election
// Lease (and records its leader-election events) in its own namespace on
// the member. Its webhook certificate
// (cert-controller, cmd/internal/webhookcerts) lives in a Secret there too
// (watched, created empty at start), and its CA goes into the agent's two
// webhook configurations; the rotator watches webhook configurations
// cluster-wide but may change only these.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=jobset-fleet-system,resources=leases,verbs=get;create;update
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-mutating-webhook-configuration;jobset-fleet-validating-webhook-configuration
//
// Metrics are served to authorized clients only (cmd/internal/manager),
// which takes a TokenReview and a SubjectAccessReview per scrape.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

const usage = `jobset-fleet-agent runs JobSets in a member cluster.

Usage:
  jobset-fleet-agent [flags]           run the controller (see flags below)
  jobset-fleet-agent join [flags]      join a member cluster to a fleet hub
  jobset-fleet-agent unjoin [flags]    remove a member cluster from the hub
  jobset-fleet-agent cordon [flags]    give a member no new JobSets; running ones stay
  jobset-fleet-agent uncordon [flags]  put a cordoned or draining member back in rotation
  jobset-fleet-agent drain [flags]     cordon, move JobSets not started, wait for the rest
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
	scheme := api.NewScheme()
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "join":
		err = runJoin(os.Args[2:], scheme)
	case len(os.Args) > 1 && os.Args[1] == "unjoin":
		err = runUnjoin(os.Args[2:], scheme)
	case len(os.Args) > 1 && os.Args[1] == "cordon":
		err = runRotation("cordon", membership.Cordoned, os.Args[2:], scheme)
	case len(os.Args) > 1 && os.Args[1] == "uncordon":
		err = runRotation("uncordon", membership.InRotation, os.Args[2:], scheme)
	case len(os.Args) > 1 && os.Args[1] == "drain":
		err = runRotation("drain", membership.Draining, os.Args[2:], scheme)
	default:
		err = runController(os.Args[1:])
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// component is what distinguishes the agent's manager from the hub's.
var component = manager.Component{
	Name:                            "jobset-fleet-agent",
	Namespace:                       fleet.SystemNamespace,
	KubeconfigUsage:                 "Member cluster kubeconfig (default: $KUBECONFIG, else in-cluster config).",
	WebhookService:                  "jobset-fleet-webhook-service",
	WebhookSecret:                   "jobset-fleet-webhook-certs",
	CAName:                          "jobset-fleet-webhook-ca",
	MutatingWebhookConfigurations:   []string{spokewebhook.MutatingWebhookConfigurationName},
	ValidatingWebhookConfigurations: []string{spokewebhook.ValidatingWebhookConfigurationName},
}

func runController(args []string) error {
	opts := spoke.DefaultOptions()
	return manager.Run(args, manager.Boot{
		Component: component,
		Usage:     usage,
		ArgsHint:  " (commands: join, unjoin, cordon, uncordon, drain)",
		AddFlags:  func(fs *flag.FlagSet) { opts.AddFlags(fs) },
		Validate:  func() error { return opts.Validate() },
		// The JobSet CRD may be installed right before the agent starts
		// (join, or the same kubectl apply -k): wait for it to be served.
		Kinds: []schema.GroupVersionKind{jobset.GroupVersion.WithKind("JobSet")},
		Setup: func(mgr ctrl.Manager, mf manager.Flags) error {
			opts.Agent.Namespace = mf.Namespace
			if _, err := spoke.Setup(mgr, opts); err != nil {
				return err
			}
			if opts.InFleet() {
				return spoke.SetupAgentOnceConnected(mgr, opts, mf.Kube.Apply)
			}
			return nil
		},
		Webhooks:     spokewebhook.SetupWithManager,
		StartMessage: "Starting",
		StartValues:  func() []any { return []any{"fleetAgent", opts.InFleet(), "cluster", opts.Agent.ClusterName} },
	})
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
	f.addHubFlags(fs, "Admin kubeconfig of the hub (required).")
	fs.StringVar(&f.memberKubeconfig, "member-kubeconfig", "", "Admin kubeconfig of the member (required, except for unjoin "+membership.ConfirmCopiesStoppedFlag+").")
	fs.StringVar(&f.opts.CRDDir, "crd-dir", filepath.Join("config", "crd", "bases"), "Directory of the CRD manifests installed on (or, with --remove-crds, removed from) the member.")
	return fs
}

// addHubFlags are the flags of the commands that act on the hub alone.
func (f *membershipFlags) addHubFlags(fs *flag.FlagSet, kubeconfigUsage string) {
	fs.StringVar(&f.hubKubeconfig, "hub-kubeconfig", "", kubeconfigUsage)
	fs.StringVar(&f.opts.ClusterName, "cluster-name", "", "The member's name in the fleet (required).")
	fs.StringVar(&f.opts.InventoryNamespace, "inventory-namespace", fleet.DefaultInventoryNamespace, "Hub namespace of the ClusterProfiles.")
}

func (f *membershipFlags) clients(scheme *runtime.Scheme) (hub, member client.Client, hubCfg *rest.Config, err error) {
	if f.hubKubeconfig == "" || f.memberKubeconfig == "" || f.opts.ClusterName == "" {
		return nil, nil, nil, errors.New("--hub-kubeconfig, --member-kubeconfig and --cluster-name are required")
	}
	if hub, hubCfg, err = f.hubClient(scheme); err != nil {
		return nil, nil, nil, err
	}
	memberCfg, err := clientcmd.BuildConfigFromFlags("", f.memberKubeconfig)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("member kubeconfig: %w", err)
	}
	if member, err = client.New(memberCfg, client.Options{Scheme: scheme}); err != nil {
		return nil, nil, nil, err
	}
	return hub, member, hubCfg, nil
}

func (f *membershipFlags) hubClient(scheme *runtime.Scheme) (client.Client, *rest.Config, error) {
	hubCfg, err := clientcmd.BuildConfigFromFlags("", f.hubKubeconfig)
	if err != nil {
		return nil, nil, fmt.Errorf("hub kubeconfig: %w", err)
	}
	hub, err := client.New(hubCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, nil, err
	}
	return hub, hubCfg, nil
}

func runJoin(args []string, scheme *runtime.Scheme) error {
	var f membershipFlags
	var output string
	fs := membershipFlagSet("join", "Join a member cluster to the fleet: its ClusterProfile, hub namespace, agent\nServiceAccount, Roles and token on the hub; the CRDs, the namespace\n"+fleet.SystemNamespace+" and the Secret "+fleet.HubKubeconfigSecret+" on the member. Idempotent.", &f)
	fs.StringVar(&f.labels, "labels", "", "ClusterProfile labels, k=v,k2=v2.")
	fs.StringVar(&f.opts.HubServerURL, "hub-server", "", "Hub apiserver URL as the agent reaches it (default: the server of --hub-kubeconfig).")
	fs.StringVar(&output, "output-kubeconfig", "", "Also write the agent's hub kubeconfig to this file (for running the agent locally).")
	fs.StringVar(&f.opts.DisplayName, "display-name", "", "The ClusterProfile's display name (default: --cluster-name).")
	fs.DurationVar(&f.opts.TokenExpiration, "token-expiration", 24*time.Hour, "Lifetime of the agent's hub token; the agent renews it itself before it expires. The hub may shorten it and refuses less than 10m.")
	fs.Func("allowed-namespaces", "Comma-separated hub namespaces whose JobSets may run on this member (default: all but the hub's denied ones).", func(s string) error {
		f.opts.AllowedNamespaces = manager.SplitList(s)
		return nil
	})
	fs.BoolVar(&f.opts.Force, "force", false, "Take over a cluster name that a different cluster joined with. The agent's ServiceAccount on the hub is\n"+
		"created anew, so the old cluster's agent tokens stop working. If the old cluster may still run some of the fleet's\n"+
		"JobSets (dispatches not confirmed stopped), join lists them and refuses, unless "+membership.ConfirmCopiesStoppedFlag+".")
	fs.BoolVar(&f.opts.ConfirmCopiesStopped, strings.TrimPrefix(membership.ConfirmCopiesStoppedFlag, "--"), false, "With --force: state that the old cluster's copies of the fleet's JobSets are stopped (stopped by hand,\n"+
		"or the cluster is gone). Each of its dispatches is marked Deleted (reason "+fleet.ReasonStopConfirmed+"), deleted and\n"+
		"released before the new cluster gets its token; the hub then runs those JobSets again, maybe on the new cluster.")
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
		f.opts.ClusterName, f.opts.ClusterName, fleet.SystemNamespace, fleet.HubKubeconfigSecret)
	return nil
}

func runUnjoin(args []string, scheme *runtime.Scheme) error {
	var f membershipFlags
	fs := membershipFlagSet("unjoin", "Remove a member cluster from the fleet: everything join created, and the\n"+
		"fleet's JobSets on the member. The member's CRDs stay unless --remove-crds. Idempotent.\n\n"+
		"The hub runs the member's JobSets elsewhere only on proof that their copies there\n"+
		"stopped: unjoin gives it by deleting the copies (the default), or, with\n"+
		membership.ConfirmCopiesStoppedFlag+", on your word. With --keep-workloads it gives none: the\n"+
		"hub waits, and the member's hub namespace stays Terminating, until a later\n"+
		"`unjoin --cluster-name <name> "+membership.ConfirmCopiesStoppedFlag+"` (or an unjoin without\n"+
		"--keep-workloads).", &f)
	fs.BoolVar(&f.opts.RemoveCRDs, "remove-crds", false, "Also delete the CRDs (and every JobSet) from the member.")
	fs.BoolVar(&f.opts.KeepWorkloads, "keep-workloads", false, "Leave the fleet's JobSets on the member running. Their dispatches stay on the hub, held for the\n"+
		"member: the hub runs those JobSets nowhere else until you stop the copies and run unjoin again with\n"+
		membership.ConfirmCopiesStoppedFlag+" (or without --keep-workloads, which deletes them).")
	fs.BoolVar(&f.opts.ConfirmCopiesStopped, strings.TrimPrefix(membership.ConfirmCopiesStoppedFlag, "--"), false, "State that the member's copies of the fleet's JobSets are stopped (stopped by hand, or the member is\n"+
		"gone). Works on the hub alone (no --member-kubeconfig): each dispatch left for the member is marked\n"+
		"Deleted (reason "+fleet.ReasonStopConfirmed+", with who said so), deleted and released, and the hub runs those\n"+
		"JobSets elsewhere. Wrong, it means two copies: only after checking.")
	fs.DurationVar(&f.opts.WaitTimeout, "wait-timeout", 5*time.Minute, "How long to wait for the fleet's JobSets on the member, Jobs included, to be gone.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var hub, member client.Client
	var err error
	if f.opts.ConfirmCopiesStopped {
		if f.memberKubeconfig != "" || f.opts.KeepWorkloads || f.opts.RemoveCRDs {
			return errors.New(membership.ConfirmCopiesStoppedFlag + " works on the hub alone: drop --member-kubeconfig, --keep-workloads and --remove-crds " +
				"(to delete the copies through a reachable member, unjoin without " + membership.ConfirmCopiesStoppedFlag + ")")
		}
		if f.hubKubeconfig == "" || f.opts.ClusterName == "" {
			return errors.New("--hub-kubeconfig and --cluster-name are required")
		}
		hub, _, err = f.hubClient(scheme)
	} else {
		hub, member, _, err = f.clients(scheme)
	}
	if err != nil {
		return err
	}
	if err := membership.Unjoin(ctrl.SetupSignalHandler(), hub, member, f.opts); err != nil {
		return err
	}
	fmt.Printf("Removed %s from the fleet.\n", f.opts.ClusterName)
	if f.opts.KeepWorkloads {
		fmt.Printf("Its JobSets keep running there, and the hub runs them nowhere else until you stop them and run\n"+
			"  jobset-fleet-agent unjoin --cluster-name %s %s\n", f.opts.ClusterName, membership.ConfirmCopiesStoppedFlag)
	}
	return nil
}

var rotationSummaries = map[string]string{
	"cordon": "Cordon a member: the hub places no new JobSets there; those running there stay.\n" +
		"Sets the label " + fleet.CordonedLabel + "=true on its ClusterProfile (and removes\n" +
		fleet.DrainingLabel + "). Needs only hub credentials. Idempotent.",
	"uncordon": "Put a cordoned or draining member back in rotation: removes the labels\n" +
		fleet.CordonedLabel + " and " + fleet.DrainingLabel + " from its ClusterProfile. Idempotent.",
	"drain": "Drain a member: cordon it and label it " + fleet.DrainingLabel + "=true, so the hub moves its\n" +
		"JobSets that have not started elsewhere, through the confirmed-stop path (never two copies).\n" +
		"JobSets that started are left to finish. Lists the member's dispatches as they change until\n" +
		"none is left, or until --timeout (then it exits non-zero and the member stays draining).\n" +
		"`uncordon` ends a drain.",
}

// runRotation is cordon, uncordon and drain: each sets the member's
// rotation on the hub, drain then watches the member empty.
func runRotation(verb string, r membership.Rotation, args []string, scheme *runtime.Scheme) error {
	var f membershipFlags
	fs := flag.NewFlagSet("jobset-fleet-agent "+verb, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jobset-fleet-agent %s --hub-kubeconfig FILE --cluster-name NAME [flags]\n\n%s\n\nFlags:\n", verb, rotationSummaries[verb])
		fs.PrintDefaults()
	}
	f.addHubFlags(fs, "Kubeconfig of the hub, allowed to patch ClusterProfiles (required).")
	drain := membership.DrainOptions{Out: os.Stdout}
	if r == membership.Draining {
		fs.DurationVar(&drain.Timeout, "timeout", 10*time.Minute, "How long to show progress and wait for the member to hold no dispatch; 0: show it once and return.")
		fs.DurationVar(&drain.Interval, "interval", 2*time.Second, "How often to list the member's dispatches.")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if f.hubKubeconfig == "" || f.opts.ClusterName == "" {
		return errors.New("--hub-kubeconfig and --cluster-name are required")
	}
	hub, _, err := f.hubClient(scheme)
	if err != nil {
		return err
	}
	ctx := ctrl.SetupSignalHandler()
	if r == membership.Draining {
		return membership.Drain(ctx, hub, f.opts, drain)
	}
	if err := membership.SetRotation(ctx, hub, f.opts, r); err != nil {
		return err
	}
	fmt.Printf("%s is %s.\n", f.opts.ClusterName, r)
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
