// Command jobset-fleet-agent runs in a member cluster. Without hub
// credentials it is a standalone JobSet controller (a drop-in for upstream
// JobSet); with them it also runs the fleet agent that executes the hub's
// JobSetDispatches here. `join` and `unjoin` add a member to the fleet and
// remove it; `cordon`, `uncordon` and `drain` take it out of rotation and
// back.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cliflag "k8s.io/component-base/cli/flag"
	ctrl "sigs.k8s.io/controller-runtime"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/manager"
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

const long = `jobset-fleet-agent runs JobSets in a member cluster.

Without --hub-kubeconfig or --hub-kubeconfig-secret the agent is a standalone
JobSet controller for this cluster. With one of them it also executes the
JobSetDispatches of its member namespace on the hub, renews its heartbeat and
stops (fences) fleet JobSets when the hub is unreachable for --fence-timeout.
The Secret that join writes also holds the member's fleet name, so
--cluster-name is needed only with --hub-kubeconfig.

Its commands add a member to a fleet and take it out again (join, token,
unjoin), and take it out of rotation and back (cordon, drain, uncordon).`

const example = `  # Run the agent of a member joined with "join" (the Secret join wrote)
  jobset-fleet-agent --hub-kubeconfig-secret=jobset-fleet-system/hub-kubeconfig

  # Run it locally against the member of a kubeconfig context
  jobset-fleet-agent --kubeconfig ~/.kube/config --context member-1 \
    --hub-kubeconfig member-1-hub.kubeconfig --cluster-name member-1 --leader-elect=false`

// Section is the --help section of the agent's own flags.
const Section = "agent"

func main() {
	if err := command().ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// command is the agent: the controller, and the membership commands.
func command() *cobra.Command {
	cmd := controllerCommand()
	cmd.AddCommand(joinCommand(), tokenCommand(), unjoinCommand(),
		rotationCommand("cordon"), rotationCommand("uncordon"), rotationCommand("drain"))
	return cmd
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

func controllerCommand() *cobra.Command {
	opts := spoke.DefaultOptions()
	return manager.Command(manager.Boot{
		Component: component,
		Short:     "Run JobSets in a member cluster, and the fleet's work given to it",
		Long:      long,
		Example:   example,
		AddFlags: func(fss *cliflag.NamedFlagSets) {
			manager.AddGoFlags(fss.FlagSet(Section), opts.AddFlags)
		},
		Validate: func() error { return opts.Validate() },
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
