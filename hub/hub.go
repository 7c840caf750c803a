// Package hub is the fleet hub as one component: its options, their flags,
// and Setup, which adds the hub's controllers to a manager. cmd/hub and
// every test that runs a hub use it, so they run the same thing.
//
// The hub's parts live in packages named for what they hold: inventory
// (members and heartbeats), placement (which member), dispatch (the
// JobSet's lifecycle across members), fence (the hub's optional access to
// members), admission (what the hub accepts). Joining and removing members
// is not part of the running hub: see the top-level package membership.
package hub

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/admission"
	"github.com/jobset-fleet/jobset-fleet/hub/dispatch"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// Options configure the hub.
type Options struct {
	// InventoryNamespace holds the fleet's ClusterProfiles.
	InventoryNamespace string
	// HeartbeatTimeout: a member whose heartbeat did not change for this
	// long gets no new JobSets, and its JobSets show MemberStatusStale.
	HeartbeatTimeout time.Duration
	// MemberLostTimeout: a member silent for this long is lost.
	MemberLostTimeout time.Duration
	// PlacementPolicy is spread or binpack.
	PlacementPolicy string
	// Concurrency is how many JobSets are reconciled in parallel.
	Concurrency int
	// ClusterProfileProviderFile configures the hub's optional access to
	// members (cluster-inventory-api access providers); empty: none.
	ClusterProfileProviderFile string
	// DeniedNamespaces are hub namespaces whose JobSets are rejected and
	// never placed, in addition to fleet.BuiltinDeniedNamespaces, which
	// always are.
	DeniedNamespaces []string
	// RejectUnrunnable rejects at admission JobSets whose Pods no member's
	// nodes could ever hold; off for fleets with node autoscaling.
	RejectUnrunnable bool
	// QueueingStrategy orders JobSets waiting for a member: BestEffortFIFO
	// or StrictFIFO, as Kueue's ClusterQueue queueingStrategy.
	QueueingStrategy string
	// StartTimeout withdraws a placement none of whose Pods started within
	// it and places the JobSet elsewhere; 0 disables.
	StartTimeout time.Duration
	// Clock is for tests; default the wall clock.
	Clock clock.PassiveClock
}

// DefaultOptions are the hub's defaults.
func DefaultOptions() Options {
	return Options{
		InventoryNamespace: fleet.DefaultInventoryNamespace,
		HeartbeatTimeout:   30 * time.Second,
		MemberLostTimeout:  60 * time.Second,
		PlacementPolicy:    string(placement.Spread),
		Concurrency:        16,
		RejectUnrunnable:   true,
		QueueingStrategy:   string(dispatch.BestEffortFIFO),
		StartTimeout:       5 * time.Minute,
	}
}

// AddFlags registers the options as flags, with o's values as defaults.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.InventoryNamespace, "inventory-namespace", o.InventoryNamespace, "Namespace of the fleet's ClusterProfiles.")
	fs.DurationVar(&o.HeartbeatTimeout, "heartbeat-timeout", o.HeartbeatTimeout,
		"A member whose heartbeat Lease did not change for this long gets no new JobSets and its JobSets show MemberStatusStale.")
	fs.DurationVar(&o.MemberLostTimeout, "member-lost-timeout", o.MemberLostTimeout,
		"A member silent for this long is lost. Its JobSets run elsewhere once their copy there is confirmed stopped "+
			"(or at once, for JobSets that opt into at-least-once failover). Agents must fence before it: their --fence-timeout must be below it.")
	fs.StringVar(&o.PlacementPolicy, "placement-policy", o.PlacementPolicy, "How to choose among fitting members: spread (most free, fewest JobSets) or binpack (least free after placement).")
	fs.StringVar(&o.QueueingStrategy, "queueing-strategy", o.QueueingStrategy,
		"Order of JobSets waiting for a member (priority, then submission time), as Kueue's ClusterQueue: BestEffortFIFO (one that does not fit does not block "+
			"the rest, but a waiting higher-priority JobSet is never overtaken for the capacity it needs) or StrictFIFO (the first blocks the queue).")
	fs.DurationVar(&o.StartTimeout, "start-timeout", o.StartTimeout,
		"A dispatched JobSet none of whose Pods started within this is withdrawn (its copy confirmed deleted) and placed elsewhere, "+
			"excluding that member until its capacity changes. Annotation "+fleet.StartTimeoutAnnotation+" overrides it per JobSet; 0 disables.")
	fs.IntVar(&o.Concurrency, "concurrent-reconciles", o.Concurrency, "JobSets reconciled in parallel.")
	fs.StringVar(&o.ClusterProfileProviderFile, "clusterprofile-provider-file", o.ClusterProfileProviderFile,
		"cluster-inventory-api access provider file (JSON). With it the hub can reach members whose ClusterProfile lists a matching access provider, "+
			"and uses that only to confirm, or enforce, that a silent member's copy of a JobSet stopped. Empty: no access to members.")
	fs.BoolVar(&o.RejectUnrunnable, "reject-unrunnable", o.RejectUnrunnable,
		"Reject at creation a JobSet no member could ever run, judged from the node summaries agents publish: a Pod larger than "+
			"every member's largest node, or a nodeSelector, required node affinity or tolerations that match no node. "+
			"Set to false for fleets with node autoscaling, where such nodes may yet come; the JobSet then waits with the reason.")
	fs.Func("denied-namespaces", fmt.Sprintf("Comma-separated hub namespaces whose JobSets are rejected (a trailing * matches a prefix), "+
		"in addition to the built-in ones, which always are: %s.", strings.Join(fleet.BuiltinDeniedNamespaces, ",")), func(s string) error {
		o.DeniedNamespaces = strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		return nil
	})
}

// Validate checks the options.
func (o *Options) Validate() error {
	var errs []error
	if _, err := placement.ParsePolicy(o.PlacementPolicy); err != nil {
		errs = append(errs, err)
	}
	if o.HeartbeatTimeout <= 0 || o.MemberLostTimeout <= o.HeartbeatTimeout {
		errs = append(errs, fmt.Errorf("--member-lost-timeout (%s) must exceed --heartbeat-timeout (%s), which must be positive", o.MemberLostTimeout, o.HeartbeatTimeout))
	}
	if _, err := dispatch.ParseQueueingStrategy(o.QueueingStrategy); err != nil {
		errs = append(errs, fmt.Errorf("--queueing-strategy: %w", err))
	}
	if o.StartTimeout < 0 {
		errs = append(errs, fmt.Errorf("--start-timeout must not be negative, not %s", o.StartTimeout))
	}
	if o.Concurrency <= 0 {
		errs = append(errs, fmt.Errorf("--concurrent-reconciles must be positive, not %d", o.Concurrency))
	}
	if o.InventoryNamespace == "" {
		errs = append(errs, errors.New("--inventory-namespace must not be empty"))
	}
	return errors.Join(errs...)
}

// CacheOptions narrows a manager's cache to what the hub reads; the
// manager must be created with them.
func (o *Options) CacheOptions() cache.Options {
	return cache.Options{ByObject: inventory.CacheByObject(o.InventoryNamespace)}
}

// Setup adds the hub's controllers (inventory, dispatcher) to mgr.
func Setup(mgr ctrl.Manager, o Options) error {
	if err := o.Validate(); err != nil {
		return err
	}
	policy, _ := placement.ParsePolicy(o.PlacementPolicy)
	strategy, _ := dispatch.ParseQueueingStrategy(o.QueueingStrategy)
	var access *fence.Access
	if o.ClusterProfileProviderFile != "" {
		var err error
		if access, err = fence.New(o.ClusterProfileProviderFile, mgr.GetScheme()); err != nil {
			return err
		}
	}
	inv := inventory.New(mgr.GetCache(), o.InventoryNamespace, inventory.Options{
		HeartbeatTimeout:  o.HeartbeatTimeout,
		MemberLostTimeout: o.MemberLostTimeout,
		LiveReader:        mgr.GetAPIReader(),
		Clock:             o.Clock,
	})
	if err := inv.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up inventory: %w", err)
	}
	r := dispatch.NewReconciler(mgr.GetClient(), mgr.GetAPIReader(), inv, mgr.GetEventRecorder("jobset-fleet-hub"), dispatch.Options{
		Policy:                  policy,
		MaxConcurrentReconciles: o.Concurrency,
		Access:                  access,
		DeniedNamespaces:        o.extraDeniedNamespaces(),
		QueueingStrategy:        strategy,
		StartTimeout:            o.StartTimeout,
		Clock:                   o.Clock,
	})
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up dispatcher: %w", err)
	}
	return nil
}

// Admission is the setup of the hub's admission webhooks, for the webhook
// server of the same manager.
func (o Options) Admission() func(ctrl.Manager) error {
	return admission.Options{DeniedNamespaces: o.extraDeniedNamespaces(), InventoryNamespace: o.InventoryNamespace,
		AdmitUnrunnable: !o.RejectUnrunnable}.SetupWithManager
}

// extraDeniedNamespaces are --denied-namespaces and the inventory
// namespace, which the built-in list names only at its default.
func (o Options) extraDeniedNamespaces() []string {
	return append(slices.Clone(o.DeniedNamespaces), o.InventoryNamespace)
}
