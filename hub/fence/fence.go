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
// for other proof (see package dispatch).
package fence

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/cluster-inventory-api/pkg/access"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// RequestTimeout bounds each call to a member: an unreachable member must
// not hold a reconcile for long.
const RequestTimeout = 10 * time.Second

// Copy is what the hub saw of a JobSet's copy on a member.
type Copy struct {
	// Exists is true while a JobSet made for the origin (same namespace,
	// name and origin UID) exists on the member, even while it is deleted.
	Exists bool
	// Epoch is the dispatch epoch the copy was made for.
	Epoch int64
	// Deleting is true once the copy is being deleted.
	Deleting bool
	// Status is the copy's status: a result its agent never reported.
	Status jobset.JobSetStatus
}

// Access reaches members through their ClusterProfiles' access providers.
type Access struct {
	providers *access.Config
	scheme    *runtime.Scheme

	mu      sync.Mutex
	clients map[string]memberClient
}

type memberClient struct {
	fingerprint string
	client      client.Client
}

// New reads the provider file. scheme must hold the JobSet types.
func New(providerFile string, scheme *runtime.Scheme) (*Access, error) {
	providers, err := access.NewFromFile(providerFile)
	if err != nil {
		return nil, fmt.Errorf("cluster profile provider file %s: %w", providerFile, err)
	}
	return &Access{providers: providers, scheme: scheme, clients: map[string]memberClient{}}, nil
}

// Available reports whether the hub has access to the profile's member.
func (a *Access) Available(p *clusterinventory.ClusterProfile) bool {
	if a == nil || p == nil {
		return false
	}
	_, err := a.client(p)
	return err == nil
}

// client returns a client for the member, rebuilt whenever the profile's
// access providers change.
func (a *Access) client(p *clusterinventory.ClusterProfile) (client.Client, error) {
	raw, err := json.Marshal([]any{p.Status.AccessProviders, p.Status.CredentialProviders})
	if err != nil {
		return nil, err
	}
	fingerprint := fmt.Sprintf("%x", sha256.Sum256(raw))
	a.mu.Lock()
	defer a.mu.Unlock()
	if c, ok := a.clients[p.Name]; ok && c.fingerprint == fingerprint {
		if c.client == nil {
			return nil, fmt.Errorf("no access provider of ClusterProfile %s is configured on the hub", p.Name)
		}
		return c.client, nil
	}
	cfg, err := a.providers.BuildConfigFromCP(p)
	if err != nil {
		a.clients[p.Name] = memberClient{fingerprint: fingerprint}
		return nil, err
	}
	cfg.Timeout = RequestTimeout
	c, err := client.New(cfg, client.Options{Scheme: a.scheme})
	if err != nil {
		return nil, fmt.Errorf("client for member %s: %w", p.Name, err)
	}
	a.clients[p.Name] = memberClient{fingerprint: fingerprint, client: c}
	return c, nil
}

// Inspect reads the copy of origin on the member.
func (a *Access) Inspect(ctx context.Context, p *clusterinventory.ClusterProfile, origin fleet.Origin) (Copy, error) {
	c, err := a.client(p)
	if err != nil {
		return Copy{}, err
	}
	js, err := get(ctx, c, origin)
	if err != nil || js == nil {
		return Copy{}, err
	}
	cp := Copy{Exists: true, Deleting: js.DeletionTimestamp != nil, Status: *js.Status.DeepCopy()}
	_, _ = fmt.Sscan(js.Labels[fleet.EpochLabel], &cp.Epoch)
	return cp, nil
}

// Stop deletes the copy of origin on the member, in the foreground so it
// disappears only after its Jobs and their Pods, and reports whether it is
// gone. Once the garbage collector has removed the Jobs, the agent's
// report finalizer is all that keeps the copy: the hub takes over that
// report (it read the copy's status through Inspect) and removes it.
func (a *Access) Stop(ctx context.Context, p *clusterinventory.ClusterProfile, origin fleet.Origin) (gone bool, err error) {
	c, err := a.client(p)
	if err != nil {
		return false, err
	}
	js, err := get(ctx, c, origin)
	if err != nil || js == nil {
		return js == nil && err == nil, err
	}
	if js.DeletionTimestamp == nil {
		err := c.Delete(ctx, js, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: ptr.To(js.UID)})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return false, fmt.Errorf("deleting JobSet %s/%s on member %s: %w", js.Namespace, js.Name, p.Name, err)
		}
		return false, nil
	}
	if controllerutil.ContainsFinalizer(js, metav1.FinalizerDeleteDependents) || !controllerutil.ContainsFinalizer(js, fleet.ReportFinalizer) {
		return false, nil // its Jobs are still going away
	}
	patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(js, fleet.ReportFinalizer)
	if err := c.Patch(ctx, js, patch); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("releasing JobSet %s/%s on member %s: %w", js.Namespace, js.Name, p.Name, err)
	}
	return false, nil
}

// get returns the member JobSet made for origin, nil when there is none (a
// JobSet of the same name made for another origin is not this copy).
func get(ctx context.Context, c client.Client, origin fleet.Origin) (*jobset.JobSet, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	js := &jobset.JobSet{}
	err := c.Get(ctx, client.ObjectKey{Namespace: origin.Namespace, Name: origin.Name}, js)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading JobSet %s/%s on the member: %w", origin.Namespace, origin.Name, err)
	case js.Labels[fleet.OriginUIDLabel] != string(origin.UID):
		return nil, nil
	}
	return js, nil
}
