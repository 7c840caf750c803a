// Command jobset-fleet-hub runs the fleet's hub: it places users' JobSets on
// member clusters, dispatches them to the members' agents and mirrors their
// status back.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cliflag "k8s.io/component-base/cli/flag"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/cmd/internal/manager"
	"github.com/jobset-fleet/jobset-fleet/hub"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
	hubrelay "github.com/jobset-fleet/jobset-fleet/hub/relay"
)

// The webhook certificate (cert-controller, cmd/internal/webhookcerts): its
// Secret in the hub's namespace (watched there, created empty at start),
// and the CA bundle of the hub's two webhook configurations and of the relay's
// APIService (hub/relay, served with the same certificate). The rotator
// watches them cluster-wide but may change only these.
// The hub's leader-election Lease is covered by hub/inventory's markers.
//
// +kubebuilder:rbac:groups="",namespace=jobset-fleet-system,resources=secrets,verbs=get;list;watch;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=list;watch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;update,resourceNames=jobset-fleet-hub-mutating-webhook-configuration;jobset-fleet-hub-validating-webhook-configuration
// +kubebuilder:rbac:groups=apiregistration.k8s.io,resources=apiservices,verbs=list;watch
// +kubebuilder:rbac:groups=apiregistration.k8s.io,resources=apiservices,verbs=get;update,resourceNames=v1alpha1.relay.fleet.jobset.x-k8s.io
//
// Metrics are served to authorized clients only (cmd/internal/manager),
// which takes a TokenReview and a SubjectAccessReview per scrape.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

const long = `jobset-fleet-hub places JobSets applied to this (hub) cluster on member
clusters of the fleet and mirrors their status back.

Members join with "jobset-fleet-agent join" (or "jobset-fleet-agent token
create" here and "jobset-fleet-agent join --token" on the member); their
ClusterProfiles live in --inventory-namespace. A member whose agent has not
renewed its heartbeat for --heartbeat-timeout gets no new work; after
--member-lost-timeout it is lost, and its JobSets run elsewhere once their
copy there is confirmed stopped (the agent reported it, the hub stopped it
through --clusterprofile-provider-file access, an operator labelled the
ClusterProfile fleet.jobset.x-k8s.io/out-of-service=true, or the member was
unjoined). Keep the agents' --fence-timeout below --member-lost-timeout.`

const example = `  # Run against the cluster of $KUBECONFIG, without leader election
  jobset-fleet-hub --kubeconfig ~/.kube/hub --context admin@hub --leader-elect=false

  # Place on the member with the least room left that still fits
  jobset-fleet-hub --placement-policy=binpack`

// Section is the --help section of the hub's own flags.
const Section = "hub"

// component is what distinguishes the hub's manager from the agent's.
var component = manager.Component{
	Name:                            "jobset-fleet-hub",
	Namespace:                       fleet.SystemNamespace,
	KubeconfigUsage:                 "Hub kubeconfig (default: $KUBECONFIG, else in-cluster config).",
	WebhookService:                  "jobset-fleet-hub-webhook-service",
	WebhookSecret:                   "jobset-fleet-hub-webhook-certs",
	CAName:                          "jobset-fleet-hub-webhook-ca",
	MutatingWebhookConfigurations:   []string{admission.MutatingWebhookConfigurationName},
	ValidatingWebhookConfigurations: []string{admission.ValidatingWebhookConfigurationName},
}

func main() {
	if err := command().ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func command() *cobra.Command {
	opts := hub.DefaultOptions()
	var relayOpts hubrelay.Options
	c := component
	c.APIServices = func() []string {
		if relayOpts.BindAddress == "" {
			return nil
		}
		return []string{hubrelay.APIServiceName}
	}
	return manager.Command(manager.Boot{
		Component: c,
		Short:     "Place JobSets of the hub on the fleet's member clusters",
		Long:      long,
		Example:   example,
		AddFlags: func(fss *cliflag.NamedFlagSets) {
			manager.AddGoFlags(fss.FlagSet(Section), opts.AddFlags)
			relayOpts.AddFlags(fss.FlagSet("relay"))
		},
		Validate: func() error { return opts.Validate() },
		Cache:    func() cache.Options { return opts.CacheOptions() },
		Kinds:    servedKinds(),
		Setup: func(mgr ctrl.Manager, _ manager.Flags) error {
			if err := hub.Setup(mgr, opts); err != nil {
				return err
			}
			return hubrelay.Setup(mgr, relayOpts)
		},
		Webhooks:     func(mgr ctrl.Manager) error { return opts.Admission()(mgr) },
		StartMessage: "Starting hub",
		StartValues: func() []any {
			return []any{"inventoryNamespace", opts.InventoryNamespace, "policy", opts.PlacementPolicy,
				"heartbeatTimeout", opts.HeartbeatTimeout, "memberLostTimeout", opts.MemberLostTimeout}
		},
	})
}

// servedKinds are the kinds the hub cannot start without: its own CRDs and
// cluster-inventory-api's.
func servedKinds() []schema.GroupVersionKind {
	return []schema.GroupVersionKind{
		jobset.GroupVersion.WithKind("JobSet"),
		fleet.GroupVersion.WithKind("JobSetDispatch"),
		clusterinventory.GroupVersion.WithKind("ClusterProfile"),
		clusterinventory.GroupVersion.WithKind("PlacementDecision"),
	}
}
