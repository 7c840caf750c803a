package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Options configure the agent. ClusterName and HubConfig are required.
type Options struct {
	// ClusterName is this member's name: its ClusterProfile and its
	// namespace fleet-member-<ClusterName> on the hub.
	ClusterName string
	// HubConfig are the agent's hub credentials (from `join`).
	HubConfig *rest.Config
	// InventoryNamespace holds the ClusterProfiles; default fleet-system.
	InventoryNamespace string
	// HeartbeatInterval is how often the Lease is renewed; default 10s.
	HeartbeatInterval time.Duration
	// ProfileInterval is how often, at most, the ClusterProfile status is
	// written unless health changes; default 30s (the ClusterProfile KEP's
	// floor).
	ProfileInterval time.Duration
	// FenceTimeout: with no successful renewal for this long the agent stops
	// its fleet JobSets; default 30s. It must stay below the hub's
	// memberLostTimeout.
	FenceTimeout time.Duration
	// FenceAction is suspend (default) or delete.
	FenceAction FenceAction
	// TopologyKeys are node label keys whose domain counts are reported
	// (topology.<key>), so the hub places exclusive-topology JobSets only
	// where there are enough domains.
	TopologyKeys []string
	// Identity is the Lease holder identity; default "<cluster>/<hostname>".
	Identity string
	// ControllerName names the dispatch controller; default "jobset-fleet-agent".
	// Tests running several agents in one process give each its own.
	ControllerName string
	// Clock measures time since the last renewal; default the real clock.
	Clock clock.Clock
}

func (o *Options) defaults() error {
	if o.ClusterName == "" || o.HubConfig == nil {
		return errors.New("agent: ClusterName and HubConfig are required")
	}
	if o.InventoryNamespace == "" {
		o.InventoryNamespace = fleetv1alpha1.DefaultInventoryNamespace
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 10 * time.Second
	}
	if o.ProfileInterval <= 0 {
		o.ProfileInterval = 30 * time.Second
	}
	if o.FenceTimeout <= 0 {
		o.FenceTimeout = 30 * time.Second
	}
	if o.FenceAction == "" {
		o.FenceAction = FenceSuspend
	}
	if _, err := ParseFenceAction(string(o.FenceAction)); err != nil {
		return err
	}
	if o.FenceTimeout < 2*o.HeartbeatInterval {
		return fmt.Errorf("agent: fence timeout %s must be at least twice the heartbeat interval %s, or one slow renewal fences the member", o.FenceTimeout, o.HeartbeatInterval)
	}
	if o.Identity == "" {
		host, _ := os.Hostname()
		o.Identity = o.ClusterName + "/" + host
	}
	if o.ControllerName == "" {
		o.ControllerName = "jobset-fleet-agent"
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return nil
}

// Agent is a running agent's handle: tests and health checks read its
// liveness from it.
type Agent struct {
	live *liveness
	// Hub is the hub cluster, with a cache of the member namespace only.
	Hub cluster.Cluster
}

// LastRenewal is when a heartbeat last reached the hub (local clock).
func (a *Agent) LastRenewal() time.Time { return a.live.LastRenewal() }

// Fenced reports whether the agent currently stops its fleet JobSets.
func (a *Agent) Fenced() bool { return a.live.isFenced() }

var podsNotFinished = fields.ParseSelectorOrDie("status.phase!=Succeeded,status.phase!=Failed")

// Setup adds the agent to mgr, the member cluster's manager: the hub cluster,
// the dispatch controller, the heartbeat and the fencer. mgr's scheme must
// hold core, coordination, JobSet, fleet and cluster-inventory types.
func Setup(mgr ctrl.Manager, opts Options) (*Agent, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	memberNS := fleetv1alpha1.MemberNamespace(opts.ClusterName)
	hub, err := cluster.New(opts.HubConfig, func(o *cluster.Options) {
		o.Scheme = mgr.GetScheme()
		// The agent may list only its member namespace on the hub.
		o.Cache.DefaultNamespaces = map[string]cache.Config{memberNS: {}}
	})
	if err != nil {
		return nil, fmt.Errorf("hub cluster: %w", err)
	}
	if err := mgr.Add(hub); err != nil {
		return nil, fmt.Errorf("adding hub cluster to manager: %w", err)
	}
	ctx := context.Background()
	if err := hub.GetFieldIndexer().IndexField(ctx, &fleetv1alpha1.JobSetDispatch{}, originIndex, func(obj client.Object) []string {
		d := obj.(*fleetv1alpha1.JobSetDispatch)
		return []string{d.Spec.Origin.Namespace + "/" + d.Spec.Origin.Name}
	}); err != nil {
		return nil, fmt.Errorf("indexing dispatches by origin: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &v1alpha2.JobSet{}, dispatchIndex, func(obj client.Object) []string {
		if key, ok := obj.GetAnnotations()[fleetv1alpha1.DispatchAnnotation]; ok {
			return []string{key}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("indexing JobSets by dispatch: %w", err)
	}

	live := newLiveness(opts.Clock)
	r := &dispatchReconciler{
		hub:             hub.GetClient(),
		hubReader:       hub.GetAPIReader(),
		member:          mgr.GetClient(),
		clusterName:     opts.ClusterName,
		memberNamespace: memberNS,
		live:            live,
		clock:           opts.Clock,
	}
	var (
		queueMu sync.Mutex
		queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
	)
	// Captures the controller's queue so a reconnect can requeue everything.
	resyncSource := source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		queueMu.Lock()
		defer queueMu.Unlock()
		queue = q
		return nil
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named(opts.ControllerName).
		WatchesRawSource(source.Kind(hub.GetCache(), &fleetv1alpha1.JobSetDispatch{}, &handler.TypedEnqueueRequestForObject[*fleetv1alpha1.JobSetDispatch]{})).
		WatchesRawSource(source.Kind(mgr.GetCache(), &v1alpha2.JobSet{}, handler.TypedEnqueueRequestsFromMapFunc(r.jobSetToDispatches))).
		WatchesRawSource(resyncSource).
		Complete(r)
	if err != nil {
		return nil, fmt.Errorf("dispatch controller: %w", err)
	}

	resync := func(ctx context.Context) {
		reqs, err := r.allKeys(ctx)
		if err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Resyncing dispatches after reconnect")
			return
		}
		queueMu.Lock()
		defer queueMu.Unlock()
		if queue == nil {
			return
		}
		for _, req := range reqs {
			queue.Add(req)
		}
	}
	disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return nil, fmt.Errorf("member discovery client: %w", err)
	}
	hb := &heartbeat{
		hub:                hub.GetClient(),
		hubReader:          hub.GetAPIReader(),
		memberReader:       mgr.GetAPIReader(),
		memberDiscovery:    disc,
		clusterName:        opts.ClusterName,
		memberNamespace:    memberNS,
		inventoryNamespace: opts.InventoryNamespace,
		identity:           opts.Identity,
		interval:           opts.HeartbeatInterval,
		profileInterval:    opts.ProfileInterval,
		fenceTimeout:       opts.FenceTimeout,
		topologyKeys:       opts.TopologyKeys,
		live:               live,
	}
	f := &fencer{
		member:          mgr.GetClient(),
		memberNamespace: memberNS,
		timeout:         opts.FenceTimeout,
		action:          opts.FenceAction,
		live:            live,
		resync:          resync,
	}
	for _, run := range []interface {
		Start(context.Context) error
		NeedLeaderElection() bool
	}{hb, f} {
		if err := mgr.Add(run); err != nil {
			return nil, fmt.Errorf("adding agent runnable: %w", err)
		}
	}
	return &Agent{live: live, Hub: hub}, nil
}
