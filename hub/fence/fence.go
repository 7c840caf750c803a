// Package fence is the hub's optional, direct access to member clusters,
// used for one thing only: to confirm that a JobSet's copy on a member whose
// agent went silent has stopped, and to stop it when it has not, so the
// JobSet may run elsewhere without ever running twice.
//
// Access follows cluster-inventory-api's standard mechanism
// (sigs.k8s.io/cluster-inventory-api/pkg/access): a ClusterProfile lists
// access providers in its status, and the hub's provider file
// (--clusterprofile-provider-file) says how to get credentials for each
// provider (an exec plugin). Without a provider file, or for a profile
// that lists no provider the file knows, the hub has no access and waits
// for other proof (see package dispatch). Agents may write their profile's
// status but not its access providers: config/hub/access-policy.yaml denies
// it, so a member cannot point the hub's credentials at a server it chooses.
//
// A member the hub needs this access for is silent, and may not answer at
// all. So no caller ever waits for a member: each member is probed by one
// probe at a time, in the background, bounded in time (exec plugin
// included) and backing off after failures; callers read the last probe's
// result, and Probed tells them when a new one is in.
//
// On the member, the hub's credentials need: list JobSets, Jobs and Pods
// in all namespaces; delete JobSets, Jobs and Pods; patch JobSets.
package fence

import (
	"errors"
	"fmt"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/cluster-inventory-api/pkg/access"
	"sigs.k8s.io/controller-runtime/pkg/event"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// Copy is what the hub saw of a JobSet's copy on a member.
type Copy struct {
	// Exists is true while anything of the copy is left on the member: a
	// JobSet made for the origin (same namespace, name and origin UID),
	// even while it is deleted, or Jobs or unfinished Pods of that
	// JobSet's name (a copy deleted in the background or with orphan
	// propagation leaves them running).
	Exists bool
	// Epoch is the dispatch epoch the copy was made for (0 when only its
	// Jobs or Pods are left).
	Epoch int64
	// Deleting is true once the copy's JobSet is being deleted.
	Deleting bool
	// Jobs and Pods are the copy's Jobs and unfinished Pods still there.
	Jobs, Pods int
	// Status is the copy's status: a result its agent never reported.
	Status jobset.JobSetStatus
}

// ErrNotProbedYet is returned while the first probe of a member runs.
var ErrNotProbedYet = errors.New("the hub's first look at the member is in progress")

// Access reaches members through their ClusterProfiles' access providers.
type Access struct {
	providers *access.Config
	scheme    *runtime.Scheme
	probed    chan event.GenericEvent

	mu      sync.Mutex
	members map[string]*member
}

// New reads the provider file. scheme must hold the JobSet, batch and core
// types.
func New(providerFile string, scheme *runtime.Scheme) (*Access, error) {
	providers, err := access.NewFromFile(providerFile)
	if err != nil {
		return nil, fmt.Errorf("cluster profile provider file %s: %w", providerFile, err)
	}
	return &Access{providers: providers, scheme: scheme, probed: make(chan event.GenericEvent, probedBuffer), members: map[string]*member{}}, nil
}

// Probed receives a ClusterProfile (name and namespace only) each time a
// probe of that member finished: what Look returns for it may have changed.
// On a nil Access it is a channel that never receives.
func (a *Access) Probed() <-chan event.GenericEvent {
	if a == nil {
		return make(chan event.GenericEvent)
	}
	return a.probed
}

// Available reports whether the hub has access to the profile's member.
// It never contacts the member.
func (a *Access) Available(p *clusterinventory.ClusterProfile) bool {
	if a == nil || p == nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.memberLocked(p).configErr == nil
}

// Look returns what the last probe of the member saw of origin's copy, and
// has the member probed again when it is due. It never waits for the
// member: before the first probe finished it returns ErrNotProbedYet, after
// a failed probe that probe's error.
func (a *Access) Look(p *clusterinventory.ClusterProfile, origin fleet.Origin) (Copy, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.memberLocked(p)
	if m.configErr != nil {
		return Copy{}, m.configErr
	}
	a.scheduleLocked(m)
	switch {
	case m.err != nil:
		return Copy{}, m.err
	case m.view == nil:
		return Copy{}, ErrNotProbedYet
	}
	return m.view.copyOf(origin), nil
}

// Stop has the next probe of the member take one step towards stopping
// origin's copy there (see stopSteps), and returns at once. Look tells
// when the copy is gone.
func (a *Access) Stop(p *clusterinventory.ClusterProfile, origin fleet.Origin) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.memberLocked(p)
	if m.configErr != nil {
		return m.configErr
	}
	m.stops[originKey(origin)] = origin
	a.scheduleLocked(m)
	return nil
}
