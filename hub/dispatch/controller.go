package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/fence"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
)

// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets,verbs=get;list;watch;update;patch;delete
// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=jobset.x-k8s.io,resources=jobsets/finalizers,verbs=update
// +kubebuilder:rbac:groups=fleet.jobset.x-k8s.io,resources=jobsetdispatches,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=placementdecisions,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=scheduling.k8s.io,resources=priorityclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// OriginIndex indexes JobSetDispatches by "<origin namespace>/<origin
// name>", so the hub finds a JobSet's dispatches in any member namespace
// (after a restart, or left on a lost member) without knowing where it put
// them — and those of an earlier JobSet of the same name, to collect them.
const OriginIndex = "spec.origin"

// Options configures a Reconciler.
type Options struct {
	// Policy scores members (default Spread).
	Policy placement.Policy
	// MaxConcurrentReconciles defaults to 4.
	MaxConcurrentReconciles int
	// Access is the hub's optional access to members, used to confirm or
	// enforce that a silent member's copy stopped; nil: none.
	Access *fence.Access
	// Clock defaults to the wall clock.
	Clock clock.PassiveClock
	// DeniedNamespaces are hub namespaces whose JobSets run on no member,
	// in addition to fleet.BuiltinDeniedNamespaces.
	DeniedNamespaces []string
	// QueueingStrategy orders the JobSets waiting for a member (default
	// BestEffortFIFO).
	QueueingStrategy QueueingStrategy
	// StartTimeout withdraws a placement none of whose Pods started within
	// it, and places the JobSet again elsewhere; zero: never. A JobSet's
	// fleet.StartTimeoutAnnotation overrides it.
	StartTimeout time.Duration
}

// Reconciler is the hub dispatcher.
type Reconciler struct {
	client client.Client
	// reader reads from the API server, not the cache.
	reader    client.Reader
	inventory *inventory.Inventory
	recorder  events.EventRecorder
	opts      Options

	// placing serializes "read commitments and the queue, choose,
	// reserve" so that concurrent placements see each other and go in
	// queue order.
	placing sync.Mutex
	ledger  ledger
	// kueue says whether the hub runs Kueue (SetupWithManager).
	kueue *kueueOnHub
	// placed are the JobSets this process placed, by the epoch it
	// recorded, until the cache shows the record (under placing): a
	// JobSet the cache still shows pending is not in the queue.
	placed map[types.UID]int64
	// walk is the last walk of the fleet queue, valid while the queue's
	// state is walkState (under placing).
	walk      *walk
	walkState queueState

	// kicks re-evaluates the waiting JobSets when one leaves the queue or
	// a commitment is released (SetupWithManager).
	kicks chan event.GenericEvent
	// members is the last view of each member affectedBy saw, to tell
	// whether a change could let a waiting JobSet fit.
	membersMu sync.Mutex
	members   map[string]memberView
}

// NewReconciler returns a Reconciler. c must be the manager's client (it
// reads dispatches through the OriginIndex that SetupWithManager adds), and
// reader its API reader.
func NewReconciler(c client.Client, reader client.Reader, inv *inventory.Inventory, recorder events.EventRecorder, opts Options) *Reconciler {
	if opts.Policy == "" {
		opts.Policy = placement.Spread
	}
	if opts.MaxConcurrentReconciles <= 0 {
		opts.MaxConcurrentReconciles = 4
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.QueueingStrategy == "" {
		opts.QueueingStrategy = BestEffortFIFO
	}
	return &Reconciler{client: c, reader: reader, inventory: inv, recorder: recorder, opts: opts,
		placed: map[types.UID]int64{}, kicks: make(chan event.GenericEvent, 1), members: map[string]memberView{}}
}

// SetupWithManager registers the index, metrics and controller. The
// inventory must be set up on the same manager.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	kueue, err := newKueueOnHub(mgr.GetConfig(), r.opts.Clock)
	if err != nil {
		return err
	}
	r.kueue = kueue
	if err := mgr.Add(kueue); err != nil {
		return fmt.Errorf("adding the Kueue-on-hub check: %w", err)
	}
	registerMetrics(mgr.GetClient(), r.inventory, mgr.Elected(), kueue.Served)
	ctx := context.Background()
	if err := mgr.GetFieldIndexer().IndexField(ctx, &fleet.JobSetDispatch{}, OriginIndex, func(o client.Object) []string {
		origin := o.(*fleet.JobSetDispatch).Spec.Origin
		return []string{origin.Namespace + "/" + origin.Name}
	}); err != nil {
		return fmt.Errorf("indexing JobSetDispatches by origin: %w", err)
	}

	toOrigin := func(_ context.Context, o client.Object) []reconcile.Request {
		d := o.(*fleet.JobSetDispatch)
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: d.Spec.Origin.Namespace, Name: d.Spec.Origin.Name}}}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("hub-dispatch").
		// Our own status writes need no reconcile; spec, metadata and
		// deletion changes do.
		For(&jobset.JobSet{}, builder.WithPredicates(managedByFleet(), predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&fleet.JobSetDispatch{}, handler.EnqueueRequestsFromMapFunc(toOrigin)).
		WatchesRawSource(source.Channel(r.inventory.Subscribe(), handler.EnqueueRequestsFromMapFunc(r.affectedBy))).
		WatchesRawSource(source.Channel(r.opts.Access.Probed(), handler.EnqueueRequestsFromMapFunc(r.affectedBy))).
		WatchesRawSource(source.Channel(r.kicks, handler.EnqueueRequestsFromMapFunc(r.waitingJobSets))).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.opts.MaxConcurrentReconciles}).
		Complete(r)
}

// kueueOnHub reports whether the hub runs Kueue; true until
// SetupWithManager looked (holding is the safe side).
func (r *Reconciler) kueueOnHub() bool {
	return r.kueue == nil || r.kueue.Served()
}

// kueueOnHubFor answers for the JobSet being reconciled, looking again
// when Kueue may have suspended it since the last look.
func (r *Reconciler) kueueOnHubFor(ctx context.Context, js *jobset.JobSet) bool {
	return r.kueue == nil || r.kueue.ServedFor(ctx, js)
}

func managedByFleet() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		js, ok := o.(*jobset.JobSet)
		return ok && ptr.Deref(js.Spec.ManagedBy, "") == fleet.ManagedByFleet
	})
}

// affectedBy maps a member change to the JobSets it may affect: those on
// that member, those being deleted or waiting for an old copy (which may be
// on any member); when the change could let a waiting JobSet fit
// (couldLetFit), a kick re-evaluates those of the queue it moves: a
// member's report that only churns does not re-evaluate the queue.
func (r *Reconciler) affectedBy(ctx context.Context, o client.Object) []reconcile.Request {
	member := o.(*clusterinventory.ClusterProfile).Name
	help, capacityChanged := r.noteMember(ctx, member)
	list := &jobset.JobSetList{}
	if err := r.client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing JobSets for a member change", "member", member)
		return nil
	}
	onHub := r.kueueOnHub() // one answer for the whole pass
	var reqs []reconcile.Request
	for i := range list.Items {
		js := &list.Items[i]
		if ptr.Deref(js.Spec.ManagedBy, "") != fleet.ManagedByFleet {
			continue
		}
		fs := fleetOf(&js.Status)
		queued := inQueue(js, onHub)
		// A JobSet a Kueue queue holds waits for admission, not for members.
		_, held := heldByQueue(js, onHub)
		held = held && fs.Cluster == ""
		waiting := !queued && !held && (!meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionDispatched) ||
			meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionMemberStatusStale))
		if fs.Cluster == member || waiting || js.DeletionTimestamp != nil ||
			(queued && capacityChanged && withdrawnFromMember(fs, member)) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(js)})
		}
	}
	if help {
		r.kick() // the queue's JobSets whose turn or condition changes
	}
	return reqs
}
