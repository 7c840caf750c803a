// Command jobset-fleet-hub runs the fleet's hub: it places users' JobSets on
// member clusters, dispatches them to the members' agents and mirrors their
// status back.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
	APIServices:                     []string{hubrelay.APIServiceName},
}

func main() {
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	opts := hub.DefaultOptions()
	var relayOpts hubrelay.Options
	return manager.Run(args, manager.Boot{
		Component: component,
		Usage:     usage,
		AddFlags: func(fs *flag.FlagSet) {
			opts.AddFlags(fs)
			relayFlags := pflag.NewFlagSet("relay", pflag.ContinueOnError)
			relayOpts.AddFlags(relayFlags)
			relayFlags.VisitAll(func(f *pflag.Flag) { fs.Var(f.Value, f.Name, f.Usage) })
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
