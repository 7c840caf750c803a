package inventory

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=clusterprofiles,verbs=get;list;watch
// The hub reads heartbeat Leases only: RBAC allows no other name (its cache
// lists and watches them with a metadata.name field selector, which RBAC
// matches against resourceNames), so no other Lease of the hub is exposed.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch,resourceNames=agent-heartbeat
// The hub's leader-election Lease (cmd/hub) lives in its own namespace.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=jobset-fleet-system,resources=leases,verbs=get;create;update

// Options configures an Inventory.
type Options struct {
	// HeartbeatTimeout is how long an agent's heartbeat stays fresh
	// (default 30s: three missed renewals at the agents' ~10s period).
	HeartbeatTimeout time.Duration
	// MemberLostTimeout is how long a silent member takes to count as lost
	// (default 60s). Subscribers are told when a member crosses it.
	MemberLostTimeout time.Duration
	// LiveReader reads Leases from the API server. Before a member counts
	// as stale or lost, its Lease is read live: a hub that was frozen, cut
	// off or slow must not judge members by a cache that stopped moving.
	// Nil: the cache alone decides.
	LiveReader client.Reader
	// Clock defaults to the wall clock.
	Clock clock.PassiveClock
}

// liveCheckEvery bounds the live reads of one member's Lease.
const liveCheckEvery = time.Second

// Inventory tracks the fleet's members. Its controller records, by the hub's
// own clock, when each heartbeat Lease last changed, and tells subscribers whenever a member's health, loss or
// capacity changes, so that they need no polling.
type Inventory struct {
	reader    client.Reader
	namespace string
	opts      Options

	mu          sync.Mutex
	started     time.Time
	heartbeats  map[string]leaseObservation
	lastState   map[string]string
	liveChecked map[string]time.Time
	subscribers []chan event.GenericEvent
}

type leaseObservation struct {
	resourceVersion string
	hb              Heartbeat
}

// New returns an Inventory reading ClusterProfiles from namespace through
// reader (the manager's cache, configured with CacheByObject).
func New(reader client.Reader, namespace string, opts Options) *Inventory {
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = 30 * time.Second
	}
	if opts.MemberLostTimeout <= 0 {
		opts.MemberLostTimeout = 60 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &Inventory{
		reader:      reader,
		namespace:   namespace,
		opts:        opts,
		heartbeats:  map[string]leaseObservation{},
		lastState:   map[string]string{},
		liveChecked: map[string]time.Time{},
	}
}

// confirmSilence reads the Lease of a member that looks silent from the API
// server and records a change the cache has not shown yet. It reads at
// most every liveCheckEvery per member.
func (i *Inventory) confirmSilence(ctx context.Context, name string) error {
	if i.opts.LiveReader == nil {
		return nil
	}
	now := i.opts.Clock.Now()
	i.mu.Lock()
	obs, ok := i.heartbeats[name]
	// Only a finished read counts as recent: a caller that skipped its own
	// read while another was still in flight would judge on the old view.
	recent := now.Sub(i.liveChecked[name]) < liveCheckEvery
	silent := ok && obs.hb.Seen && now.Sub(obs.hb.LastChange) > i.opts.HeartbeatTimeout
	i.mu.Unlock()
	if !silent || recent {
		return nil
	}
	lease := &coordinationv1.Lease{}
	err := i.opts.LiveReader.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace(name), Name: fleet.HeartbeatLeaseName}, lease)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		// The hub cannot see the truth; the member is not judged on a guess.
		return fmt.Errorf("confirming the heartbeat of member %s: %w", name, err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if now.After(i.liveChecked[name]) {
		i.liveChecked[name] = now
	}
	if cur := i.heartbeats[name]; cur.resourceVersion != lease.ResourceVersion {
		i.heartbeats[name] = observeLease(lease, i.opts.Clock.Now())
	}
	return nil
}

// Namespace is the inventory namespace holding the ClusterProfiles.
func (i *Inventory) Namespace() string { return i.namespace }

// MemberLostTimeout is the configured loss timeout.
func (i *Inventory) MemberLostTimeout() time.Duration { return i.opts.MemberLostTimeout }

// CacheByObject narrows the manager's cache to what the inventory reads:
// ClusterProfiles of the inventory namespace and heartbeat Leases only (not
// every Lease of the hub, e.g. leader-election ones; the hub's RBAC allows
// no others). A field selector cannot match a namespace prefix, so a Lease
// of that name outside fleet-member-* namespaces is cached too, and ignored.
func CacheByObject(namespace string) map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&clusterinventory.ClusterProfile{}: {Namespaces: map[string]cache.Config{namespace: {}}},
		&coordinationv1.Lease{}:            {Field: fields.OneTermEqualSelector("metadata.name", fleet.HeartbeatLeaseName)},
	}
}

// Subscribe returns a channel that receives an event, carrying a
// ClusterProfile with only its name and namespace set, whenever a member
// changes in a way placement cares about. Call it before the manager starts.
func (i *Inventory) Subscribe() <-chan event.GenericEvent {
	i.mu.Lock()
	defer i.mu.Unlock()
	ch := make(chan event.GenericEvent, 1024)
	i.subscribers = append(i.subscribers, ch)
	return ch
}

// SetupWithManager registers the inventory controller. Its requests are
// keyed by member name (no namespace).
func (i *Inventory) SetupWithManager(mgr ctrl.Manager) error {
	toMember := func(_ context.Context, obj client.Object) []reconcile.Request {
		switch o := obj.(type) {
		case *clusterinventory.ClusterProfile:
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.Name}}}
		case *coordinationv1.Lease:
			if name, ok := fleet.MemberOfNamespace(o.Namespace); ok && o.Name == fleet.HeartbeatLeaseName {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
			}
		}
		return nil
	}
	inNamespace := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetNamespace() == i.namespace })
	return ctrl.NewControllerManagedBy(mgr).
		Named("inventory").
		Watches(&clusterinventory.ClusterProfile{}, handler.EnqueueRequestsFromMapFunc(toMember), builder.WithPredicates(inNamespace)).
		Watches(&coordinationv1.Lease{}, handler.EnqueueRequestsFromMapFunc(toMember)).
		Complete(i)
}

// Reconcile records what changed for one member and notifies subscribers
// when its assessment changed. It requeues only for the member's next
// timeout (heartbeat going stale, member becoming lost).
func (i *Inventory) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	name := req.Name
	now := i.opts.Clock.Now()

	lease := &coordinationv1.Lease{}
	err := i.reader.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace(name), Name: fleet.HeartbeatLeaseName}, lease)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("reading heartbeat of member %s: %w", name, err)
	}
	leaseExists := err == nil

	profile := &clusterinventory.ClusterProfile{}
	err = i.reader.Get(ctx, types.NamespacedName{Namespace: i.namespace, Name: name}, profile)
	if err != nil && !apierrors.IsNotFound(err) {
		return reconcile.Result{}, fmt.Errorf("reading ClusterProfile %s: %w", name, err)
	}
	profileExists := err == nil && IsFleetProfile(profile)
	if leaseExists {
		i.recordLease(name, lease, now)
	}
	if err := i.confirmSilence(ctx, name); err != nil {
		return reconcile.Result{}, err
	}
	now = i.opts.Clock.Now()

	i.mu.Lock()
	i.startLocked(now)
	var m Member
	state := "absent"
	if profileExists {
		m = i.assessLocked(profile, now)
		state = fmt.Sprintf("healthy=%t lost=%t props=%s labels=%v allowed=%v access=%d reason=%s", m.Healthy, m.Lost(i.opts.MemberLostTimeout),
			propertiesFingerprint(profile.Status.Properties), profile.Labels, m.AllowedNamespaces, len(profile.Status.AccessProviders), m.Reason)
	}
	changed := i.lastState[name] != state
	if profileExists {
		i.lastState[name] = state
	} else {
		delete(i.lastState, name)
		if !leaseExists {
			delete(i.heartbeats, name)
		}
	}
	subscribers := i.subscribers
	i.mu.Unlock()
	memberSeen(name, profileExists)

	if changed {
		log.FromContext(ctx).V(1).Info("Member changed", "member", name, "state", state)
		ev := event.GenericEvent{Object: &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: i.namespace, Name: name}}}
		for _, ch := range subscribers {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return reconcile.Result{}, ctx.Err()
			}
		}
	}
	if !profileExists {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{RequeueAfter: nextTransition(m.SilentFor, i.opts.HeartbeatTimeout, i.opts.MemberLostTimeout)}, nil
}

// nextTransition is how long until a member silent for silentFor goes
// stale or lost; zero when both already happened. A small margin makes sure
// the timeout has really passed when the requeue fires.
func nextTransition(silentFor, heartbeatTimeout, lostTimeout time.Duration) time.Duration {
	const margin = 50 * time.Millisecond
	switch {
	case silentFor <= heartbeatTimeout:
		return heartbeatTimeout - silentFor + margin
	case silentFor <= lostTimeout:
		return lostTimeout - silentFor + margin
	}
	return 0
}

// startLocked fixes the instant the hub started watching, at first use
// (after leader election, not at process start, so that a standby that
// becomes leader late does not find every member long silent).
func (i *Inventory) startLocked(now time.Time) {
	if i.started.IsZero() {
		i.started = now
	}
}

func (i *Inventory) assessLocked(p *clusterinventory.ClusterProfile, now time.Time) Member {
	return Assess(p, i.heartbeats[p.Name].hb, now, Assessment{
		HeartbeatTimeout:  i.opts.HeartbeatTimeout,
		MemberLostTimeout: i.opts.MemberLostTimeout,
		WatchingSince:     i.started,
	})
}

// recordLease records a version of a member's Lease read from the cache.
func (i *Inventory) recordLease(name string, lease *coordinationv1.Lease, now time.Time) {
	i.mu.Lock()
	defer i.mu.Unlock()
	obs := i.heartbeats[name]
	if !obs.hb.Seen || obs.resourceVersion != lease.ResourceVersion {
		i.heartbeats[name] = observeLease(lease, now)
	}
}

// observeLease records that the hub saw this version of a heartbeat Lease
// at now (the hub's clock).
func observeLease(lease *coordinationv1.Lease, now time.Time) leaseObservation {
	hb := Heartbeat{Seen: true, LastChange: now}
	if d := lease.Spec.LeaseDurationSeconds; d != nil && *d > 0 {
		hb.FenceTimeout = time.Duration(*d) * time.Second
	}
	return leaseObservation{resourceVersion: lease.ResourceVersion, hb: hb}
}

// Members assesses every fleet ClusterProfile, sorted by name.
func (i *Inventory) Members(ctx context.Context) ([]Member, error) {
	list := &clusterinventory.ClusterProfileList{}
	if err := i.reader.List(ctx, list, client.InNamespace(i.namespace)); err != nil {
		return nil, fmt.Errorf("listing ClusterProfiles in %s: %w", i.namespace, err)
	}
	// A Lease our controller has not reconciled yet (just after a restart or
	// a leader change) is read here, so a live member never looks silent.
	var unseen []string
	i.mu.Lock()
	for k := range list.Items {
		if name := list.Items[k].Name; !i.heartbeats[name].hb.Seen {
			unseen = append(unseen, name)
		}
	}
	i.mu.Unlock()
	leases := map[string]*coordinationv1.Lease{}
	for _, name := range unseen {
		lease := &coordinationv1.Lease{}
		err := i.reader.Get(ctx, types.NamespacedName{Namespace: fleet.MemberNamespace(name), Name: fleet.HeartbeatLeaseName}, lease)
		switch {
		case err == nil:
			leases[name] = lease
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading heartbeat of member %s: %w", name, err)
		}
	}

	now := i.opts.Clock.Now()
	for name, lease := range leases {
		i.recordLease(name, lease, now)
	}
	for k := range list.Items {
		if err := i.confirmSilence(ctx, list.Items[k].Name); err != nil {
			return nil, err
		}
	}
	now = i.opts.Clock.Now()
	i.mu.Lock()
	defer i.mu.Unlock()
	i.startLocked(now)
	members := make([]Member, 0, len(list.Items))
	for k := range list.Items {
		if p := &list.Items[k]; IsFleetProfile(p) {
			members = append(members, i.assessLocked(p, now))
		}
	}
	sort.Slice(members, func(a, b int) bool { return members[a].Name < members[b].Name })
	return members, nil
}
