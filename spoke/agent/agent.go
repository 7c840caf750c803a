package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/spoke/relay"
)

// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=jobset-fleet-system,resources=leases,verbs=get;create;update

// Options configure the agent. ClusterName and HubConfig are required.
type Options struct {
	// ClusterName is this member's name: its ClusterProfile and its
	// namespace fleet-member-<ClusterName> on the hub.
	ClusterName string
	// HubConfig are the agent's hub credentials (from `join`); see
	// HubConfigFromSecret and HubConfigFromFile for credentials that are
	// reloaded when they rotate.
	HubConfig *rest.Config
	// Credentials, when HubConfig came from HubConfigFromSecret or
	// HubConfigFromFile, are kept current by the agent while it leads: it
	// reloads rotated credentials and requests new tokens before they
	// expire.
	Credentials *HubCredentials
	// InventoryNamespace holds the ClusterProfiles; default fleet-system.
	InventoryNamespace string
	// Namespace is the agent's own namespace on the member, where it
	// records its last successful renewal; default jobset-fleet-system.
	Namespace string
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
	// NodeLabelKeys are node label keys the node summary reports besides
	// WellKnownNodeLabelKeys and TopologyKeys (see NodeSummaryLabelKeys).
	NodeLabelKeys []string
	// Concurrency is how many JobSetDispatches are reconciled at once;
	// default 8.
	Concurrency int
	// Identity is the Lease holder identity; default "<cluster>/<hostname>".
	Identity string
	// ControllerName names the dispatch controller; default "jobset-fleet-agent".
	// Tests running several agents in one process give each its own.
	ControllerName string
	// CacheSyncTimeout bounds how long the dispatch controller waits for its
	// sources once the hub cache has synced; default 2m. Waiting for the hub
	// itself has no timeout: an unreachable hub never stops the process.
	CacheSyncTimeout time.Duration
	// HubWaitLogInterval is how often the agent logs that it still waits
	// for the hub cache; default 30s.
	HubWaitLogInterval time.Duration
	// Clock measures time since the last renewal; default the real clock.
	Clock clock.Clock
	// DeniedNamespaces are namespaces (a trailing * matches a prefix) whose
	// JobSets the agent never runs, in addition to
	// fleet.BuiltinDeniedNamespaces: dispatches for them are
	// refused (Accepted=False, NamespaceDenied).
	DeniedNamespaces []string
	// RequireNamespaces: a copy's namespace must exist on the member; the
	// agent refuses the dispatch (Accepted=False, NamespaceMissing) instead
	// of creating the namespace (--create-namespaces=false).
	RequireNamespaces bool
}

// DefaultOptions are the agent's defaults (its flags' defaults too);
// Setup fills every zero field but TopologyKeys from them.
func DefaultOptions() Options {
	return Options{
		InventoryNamespace: fleet.DefaultInventoryNamespace,
		Namespace:          fleet.SystemNamespace,
		HeartbeatInterval:  10 * time.Second,
		ProfileInterval:    30 * time.Second,
		FenceTimeout:       30 * time.Second,
		FenceAction:        FenceSuspend,
		TopologyKeys:       []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"},
		Concurrency:        8,
	}
}

func (o *Options) defaults() error {
	if o.ClusterName == "" || o.HubConfig == nil {
		return errors.New("agent: ClusterName and HubConfig are required")
	}
	d := DefaultOptions()
	if o.InventoryNamespace == "" {
		o.InventoryNamespace = d.InventoryNamespace
	}
	if o.Namespace == "" {
		o.Namespace = d.Namespace
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = d.HeartbeatInterval
	}
	if o.ProfileInterval <= 0 {
		o.ProfileInterval = d.ProfileInterval
	}
	if o.FenceTimeout <= 0 {
		o.FenceTimeout = d.FenceTimeout
	}
	if o.FenceAction == "" {
		o.FenceAction = d.FenceAction
	}
	if o.Concurrency <= 0 {
		o.Concurrency = d.Concurrency
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
	if o.CacheSyncTimeout <= 0 {
		o.CacheSyncTimeout = 2 * time.Minute
	}
	if o.HubWaitLogInterval <= 0 {
		o.HubWaitLogInterval = 30 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return nil
}

// Agent is a running agent's handle: tests, health checks and metrics read
// its state from it.
type Agent struct {
	clusterName string
	live        *liveness
	access      *hubAccess
	states      *dispatchStates
	hubSynced   chan struct{}
	// Hub is the hub cluster, with a cache of the member namespace only.
	// The agent starts it itself, in the background.
	Hub cluster.Cluster
}

// LastRenewal is when a heartbeat last reached the hub (local clock), or,
// before the first renewal of this process, the renewal the previous
// process recorded on the member.
func (a *Agent) LastRenewal() time.Time { return a.live.LastRenewal() }

// HubUnauthorized reports whether the hub rejects the agent's credentials
// (401): its token expired or was revoked, and only a new join mends it.
func (a *Agent) HubUnauthorized() bool { return a.access.isUnauthorized() }

// Fenced reports whether the agent currently stops its fleet JobSets.
func (a *Agent) Fenced() bool { return a.live.isFenced() }

// HubSynced reports whether the hub cache has synced and the dispatch
// controller runs.
func (a *Agent) HubSynced() bool {
	select {
	case <-a.hubSynced:
		return true
	default:
		return false
	}
}

var podsNotFinished = fields.ParseSelectorOrDie("status.phase!=Succeeded,status.phase!=Failed")

// Setup adds the agent to mgr, the member cluster's manager. mgr's scheme
// must hold core, coordination, events, JobSet, fleet and cluster-inventory
// types.
//
// Nothing of the hub is a runnable of mgr: the member's caches, its JobSet
// controller and webhooks start and keep working whatever the hub does. The
// agent itself is one leader-elected runnable that starts the hub cluster in
// the background and runs, each on its own goroutine, the heartbeat renewal,
// the record of renewals on the member, the ClusterProfile publisher, the
// fencer, and — once the hub cache has synced, however long that takes —
// the dispatch controller.
func Setup(mgr ctrl.Manager, opts Options) (*Agent, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	memberNS := fleet.MemberNamespace(opts.ClusterName)
	hub, err := newHubCluster(mgr, opts.HubConfig, memberNS)
	if err != nil {
		return nil, err
	}
	if err := addIndexes(mgr, hub); err != nil {
		return nil, err
	}
	live := newLiveness(opts.Clock)
	access := newHubAccess(mgr, opts)
	a := &Agent{clusterName: opts.ClusterName, live: live, access: access, states: newDispatchStates(), hubSynced: make(chan struct{}), Hub: hub}
	r := &dispatchReconciler{
		hub:             hub.GetClient(),
		hubReader:       hub.GetAPIReader(),
		member:          mgr.GetClient(),
		clusterName:     opts.ClusterName,
		memberNamespace: memberNS,
		live:            live,
		clock:           opts.Clock,
		states:          a.states,
		errors:          agentErrors.WithLabelValues(opts.ClusterName, "reconcile"),

		deniedNamespaces:  opts.DeniedNamespaces,
		requireNamespaces: opts.RequireNamespaces,
	}
	q := &requeuer{}
	ctl, err := newDispatchController(mgr, hub, opts, r, q)
	if err != nil {
		return nil, err
	}
	record, loops, err := newLoops(mgr, hub, opts, live, access, resyncAfterReconnect(a, r, q))
	if err != nil {
		return nil, err
	}
	run := &runner{
		agent:        a,
		opts:         opts,
		hub:          hub,
		controller:   ctl,
		record:       record,
		loops:        loops,
		memberNS:     memberNS,
		waitInterval: opts.HubWaitLogInterval,
	}
	if err := mgr.Add(run); err != nil {
		return nil, fmt.Errorf("adding the agent to the manager: %w", err)
	}
	// Logs and exec of its copies' Pods, through its connection to the hub.
	if err := relay.Setup(mgr, relay.Options{ClusterName: opts.ClusterName, HubConfig: opts.HubConfig}); err != nil {
		return nil, err
	}
	return a, nil
}

// newHubCluster is the hub as the agent sees it: a cache of its member
// namespace only, with mgr's scheme.
func newHubCluster(mgr ctrl.Manager, cfg *rest.Config, memberNS string) (cluster.Cluster, error) {
	hub, err := cluster.New(cfg, func(o *cluster.Options) {
		o.Scheme = mgr.GetScheme()
		// The agent may list only its member namespace on the hub.
		o.Cache.DefaultNamespaces = map[string]cache.Config{memberNS: {}}
		// A fixed mapper: the agent uses a handful of hub kinds, and
		// discovery would make even registering an index fail while the
		// hub is unreachable.
		o.MapperProvider = hubRESTMapper
	})
	if err != nil {
		return nil, fmt.Errorf("hub cluster: %w", err)
	}
	return hub, nil
}

// addIndexes registers the agent's field indexes: hub dispatches by origin,
// member JobSets by dispatch.
func addIndexes(mgr ctrl.Manager, hub cluster.Cluster) error {
	ctx := context.Background()
	if err := hub.GetFieldIndexer().IndexField(ctx, &fleet.JobSetDispatch{}, originIndex, func(obj client.Object) []string {
		d := obj.(*fleet.JobSetDispatch)
		return []string{d.Spec.Origin.Namespace + "/" + d.Spec.Origin.Name}
	}); err != nil {
		return fmt.Errorf("indexing dispatches by origin: %w", err)
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &jobset.JobSet{}, dispatchIndex, func(obj client.Object) []string {
		if key, ok := obj.GetAnnotations()[fleet.DispatchAnnotation]; ok {
			return []string{key}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("indexing JobSets by dispatch: %w", err)
	}
	return nil
}

// newHubAccess tracks whether the hub accepts the agent's credentials.
func newHubAccess(mgr ctrl.Manager, opts Options) *hubAccess {
	access := &hubAccess{
		clusterName: opts.ClusterName,
		hubServer:   opts.HubConfig.Host,
		credentials: opts.Credentials,
		recorder:    mgr.GetEventRecorder(opts.ControllerName),
		token:       func() string { return opts.HubConfig.BearerToken },
	}
	if opts.Credentials != nil {
		access.token = opts.Credentials.Token
	}
	return access
}

// newDispatchController is the dispatch controller, unmanaged: the agent
// starts it once the hub cache has synced, so the controller's cache-sync
// timeout never sees an unreachable hub. It watches the member namespace's
// dispatches on the hub and the member's JobSets, and hands its queue to q.
func newDispatchController(mgr ctrl.Manager, hub cluster.Cluster, opts Options, r *dispatchReconciler, q *requeuer) (controller.Controller, error) {
	copts := controller.Options{Reconciler: r, CacheSyncTimeout: opts.CacheSyncTimeout, MaxConcurrentReconciles: opts.Concurrency}
	copts.DefaultFromConfig(mgr.GetControllerOptions())
	if copts.Logger.GetSink() == nil {
		copts.Logger = mgr.GetLogger()
	}
	ctl, err := controller.NewUnmanaged(opts.ControllerName, copts)
	if err != nil {
		return nil, fmt.Errorf("dispatch controller: %w", err)
	}
	for _, src := range []source.Source{
		source.Kind(hub.GetCache(), &fleet.JobSetDispatch{}, &handler.TypedEnqueueRequestForObject[*fleet.JobSetDispatch]{}),
		source.Kind(mgr.GetCache(), &jobset.JobSet{}, handler.TypedEnqueueRequestsFromMapFunc(r.jobSetToDispatches)),
		q.source(),
	} {
		if err := ctl.Watch(src); err != nil {
			return nil, fmt.Errorf("dispatch controller: %w", err)
		}
	}
	return ctl, nil
}

// requeuer holds the dispatch controller's queue, so a reconnect can
// requeue every dispatch.
type requeuer struct {
	mu    sync.Mutex
	queue workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// source is a controller source that only captures the queue.
func (q *requeuer) source() source.Source {
	return source.Func(func(_ context.Context, wq workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.queue = wq
		return nil
	})
}

// add queues reqs; nothing before the controller started.
func (q *requeuer) add(reqs []reconcile.Request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queue == nil {
		return
	}
	for _, req := range reqs {
		q.queue.Add(req)
	}
}

// resyncAfterReconnect is what the fencer calls when the hub is back:
// reconcile every dispatch, and every member copy made for one.
func resyncAfterReconnect(a *Agent, r *dispatchReconciler, q *requeuer) func(context.Context) {
	return func(ctx context.Context) {
		if !a.HubSynced() {
			// Listing an unsynced hub cache would block the fencer; the
			// controller enqueues every dispatch when it starts anyway.
			return
		}
		reqs, err := r.allKeys(ctx)
		if err != nil {
			log.FromContext(ctx).Error(err, "Resyncing dispatches after reconnect")
			return
		}
		q.add(reqs)
	}
}

// newLoops are the agent's background loops, each run on its own
// goroutine while it leads: the fencer, the heartbeat renewal, the record
// of renewals on the member, the ClusterProfile publisher and, with
// reloadable credentials, their refresh. record is the renewal record,
// which the runner restores before any loop starts.
func newLoops(mgr ctrl.Manager, hub cluster.Cluster, opts Options, live *liveness, access *hubAccess, resync func(context.Context)) (record *renewalRecord, loops []func(context.Context), err error) {
	memberNS := fleet.MemberNamespace(opts.ClusterName)
	disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return nil, nil, fmt.Errorf("member discovery client: %w", err)
	}
	record = &renewalRecord{
		member:    mgr.GetClient(),
		reader:    mgr.GetAPIReader(),
		namespace: opts.Namespace,
		identity:  opts.Identity,
		pending:   make(chan time.Time, 1),
		errors:    agentErrors.WithLabelValues(opts.ClusterName, "record"),
	}
	renew := &renewer{
		hub:             hub.GetClient(),
		hubReader:       hub.GetAPIReader(),
		memberNamespace: memberNS,
		identity:        opts.Identity,
		interval:        opts.HeartbeatInterval,
		fenceTimeout:    opts.FenceTimeout,
		clock:           opts.Clock,
		live:            live,
		record:          record,
		access:          access,
		errors:          agentErrors.WithLabelValues(opts.ClusterName, "renew"),
	}
	pub := &publisher{
		hub:                hub.GetClient(),
		hubReader:          hub.GetAPIReader(),
		memberReader:       mgr.GetAPIReader(),
		memberDiscovery:    disc,
		clusterName:        opts.ClusterName,
		inventoryNamespace: opts.InventoryNamespace,
		interval:           opts.HeartbeatInterval,
		profileInterval:    opts.ProfileInterval,
		topologyKeys:       opts.TopologyKeys,
		nodeLabelKeys:      NodeSummaryLabelKeys(opts.TopologyKeys, opts.NodeLabelKeys),
		errors:             agentErrors.WithLabelValues(opts.ClusterName, "profile"),
	}
	f := &fencer{
		member:          mgr.GetClient(),
		memberNamespace: memberNS,
		timeout:         opts.FenceTimeout,
		action:          opts.FenceAction,
		live:            live,
		resync:          resync,
		errors:          agentErrors.WithLabelValues(opts.ClusterName, "fence"),
	}
	loops = []func(context.Context){f.run, renew.run, record.run, pub.run}
	if opts.Credentials != nil {
		loops = append(loops, opts.Credentials.Run)
	}
	return record, loops, nil
}

// runner is the agent's one manager runnable.
type runner struct {
	agent        *Agent
	opts         Options
	hub          cluster.Cluster
	controller   controller.Controller
	record       *renewalRecord
	loops        []func(context.Context)
	memberNS     string
	waitInterval time.Duration
}

// NeedLeaderElection: one replica fences, renews and runs dispatches.
func (r *runner) NeedLeaderElection() bool { return true }

func (r *runner) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithValues("cluster", r.opts.ClusterName, "memberNamespace", r.memberNS)
	ctx = log.IntoContext(ctx, logger)
	register(r.agent)
	defer unregister(r.agent)

	// A restart is not a renewal: count from the last renewal any agent
	// process recorded, before anything can fence or renew.
	if err := r.restoreLastRenewal(ctx); err != nil {
		return nil // only when ctx is done
	}

	if r.opts.Credentials != nil {
		// A replica that just became leader may hold credentials read long
		// ago; the leader before it may have rotated them.
		r.opts.Credentials.Reload(ctx)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range r.loops {
		wg.Go(func() { loop(ctx) })
	}
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := r.hub.Start(ctx); err != nil {
			logger.Error(err, "Hub cluster stopped")
		}
	})
	wg.Go(func() { errc <- r.runDispatches(ctx) })

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	return err
}

// restoreLastRenewal reads the renewal recorded on the member, retrying
// until it can: an agent that cannot read the member could not fence it
// either.
//
// How long ago that renewal was is measured on the member apiserver's
// clock, never by comparing this node's wall clock with the one of the
// node the previous leader ran on: the apiserver stamped the record's last
// write (managedFields time) and stamps a fresh write now. This keeps a
// restart cheap: with the hub reachable a quick restart fences nothing,
// since the first renewal follows at once. Fencing at once after every
// leader change, until the first renewal succeeds, would be as safe but
// would suspend (or, with --fence-action=delete, delete) every running copy
// whenever the fencer looks before that renewal is through or the hub
// blips during a rollout. With the hub unreachable the new leader fences at
// the recorded renewal plus the fence timeout, as its predecessor would
// have; the stamps' whole seconds round towards fencing early, never late.
func (r *runner) restoreLastRenewal(ctx context.Context) error {
	logger := log.FromContext(ctx)
	for {
		err := r.restoreOnce(ctx)
		if err == nil {
			return nil
		}
		logger.Error(err, "Reading the last recorded renewal; retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (r *runner) restoreOnce(ctx context.Context) error {
	logger := log.FromContext(ctx)
	recorded, err := r.record.load(ctx)
	if err != nil {
		return err
	}
	if recorded.RenewTime.IsZero() {
		logger.Info("No renewal recorded on the member; counting towards the fence timeout from now")
		return nil
	}
	// Read before the fresh write: the stamp is no earlier than this, so
	// the time elapsed since the renewal is never underestimated.
	at := r.opts.Clock.Now()
	now, err := r.record.memberNow(ctx)
	if err != nil {
		return err
	}
	elapsed, ok := SinceRecordedRenewal(recorded.Stamp, now)
	if !ok {
		// Not measurable on one clock: count it as long ago as fences.
		elapsed = r.opts.FenceTimeout
		logger.Info("The member apiserver did not stamp the recorded renewal or a fresh write; fencing until the first renewal succeeds", "lastRenewal", recorded.RenewTime)
	}
	r.agent.live.restore(at, elapsed)
	logger.Info("Counting towards the fence timeout from the last recorded renewal, on the member apiserver's clock",
		"lastRenewal", recorded.RenewTime, "recordedAt", recorded.Stamp, "memberNow", now, "sinceLastRenewal", elapsed, "fenceTimeout", r.opts.FenceTimeout)
	return nil
}

// runDispatches waits for the hub cache, logging while it waits and never
// giving up, then runs the dispatch controller.
func (r *runner) runDispatches(ctx context.Context) error {
	logger := log.FromContext(ctx)
	started := time.Now()
	// Creating the informer here makes WaitForCacheSync wait for it.
	if _, err := r.hub.GetCache().GetInformer(ctx, &fleet.JobSetDispatch{}, cache.BlockUntilSynced(false)); err != nil {
		return fmt.Errorf("hub informer for JobSetDispatches: %w", err)
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, r.waitInterval)
		synced := r.hub.GetCache().WaitForCacheSync(wctx)
		cancel()
		if synced {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		logger.Info("Waiting for the hub cache to sync; the member's own JobSets are unaffected",
			"waiting", time.Since(started).Round(time.Second), "sinceLastRenewal", r.agent.live.sinceRenewal().Round(time.Second), "fenced", r.agent.live.isFenced())
	}
	logger.Info("Hub cache synced; starting the dispatch controller", "waited", time.Since(started).Round(time.Millisecond))
	close(r.agent.hubSynced)
	if err := r.controller.Start(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("dispatch controller: %w", err)
	}
	return nil
}

// hubRESTMapper maps the kinds the agent uses on the hub, without
// discovery.
func hubRESTMapper(*rest.Config, *http.Client) (meta.RESTMapper, error) {
	kinds := []struct {
		gvk      schema.GroupVersionKind
		resource string
	}{
		{fleet.GroupVersion.WithKind("JobSetDispatch"), "jobsetdispatches"},
		{coordinationv1.SchemeGroupVersion.WithKind("Lease"), "leases"},
		{clusterinventory.GroupVersion.WithKind("ClusterProfile"), "clusterprofiles"},
		{corev1.SchemeGroupVersion.WithKind("Event"), "events"},
		{eventsv1.SchemeGroupVersion.WithKind("Event"), "events"},
		{corev1.SchemeGroupVersion.WithKind("ServiceAccount"), "serviceaccounts"},
	}
	var versions []schema.GroupVersion
	for _, k := range kinds {
		versions = append(versions, k.gvk.GroupVersion())
	}
	m := meta.NewDefaultRESTMapper(versions)
	for _, k := range kinds {
		gv := k.gvk.GroupVersion()
		m.AddSpecific(k.gvk, gv.WithResource(k.resource), gv.WithResource(strings.ToLower(k.gvk.Kind)), meta.RESTScopeNamespace)
		// Caches look up a list's scope by its own kind, as discovery
		// mappers allow.
		m.Add(gv.WithKind(k.gvk.Kind+"List"), meta.RESTScopeNamespace)
	}
	return m, nil
}
