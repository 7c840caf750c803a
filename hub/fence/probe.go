package fence

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/cluster-inventory-api/pkg/access"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

const (
	// ProbeTimeout bounds one probe of a member, its exec plugin included.
	ProbeTimeout = 10 * time.Second
	// probeEvery is the least time between two probes of a member that
	// answers: while JobSets wait on it, it is looked at this often.
	probeEvery = 2 * time.Second
	// After a failed probe the next waits firstBackoff, doubling with each
	// failure up to maxBackoff.
	firstBackoff = time.Second
	maxBackoff   = time.Minute
	// probedBuffer holds finished probes until the dispatcher takes them.
	probedBuffer = 1024
	// credentialMargin: credentials that expire within it are renewed.
	credentialMargin = 30 * time.Second
)

// member is the hub's access to one member and the state of its probes.
type member struct {
	name, namespace string
	// fingerprint is of the profile's access fields; when they change,
	// everything below is rebuilt and earlier probes no longer count.
	fingerprint string
	generation  int
	// config reaches the member with the exec plugin still to run.
	config    *rest.Config
	configErr error
	// client carries the plugin's credentials until expires.
	client  client.Client
	expires time.Time

	probing   bool
	timer     *time.Timer
	notBefore time.Time
	failures  int
	// view is the last successful probe's; err the last probe's error.
	view *view
	err  error
	// stops are copies the next probe takes a step towards stopping.
	stops map[string]fleet.Origin
}

// memberLocked returns the member of p, rebuilt when p's access fields
// changed.
func (a *Access) memberLocked(p *clusterinventory.ClusterProfile) *member {
	raw, _ := json.Marshal([]any{p.Status.AccessProviders, p.Status.CredentialProviders})
	fingerprint := fmt.Sprintf("%x", sha256.Sum256(raw))
	m, ok := a.members[p.Name]
	if ok && m.fingerprint == fingerprint {
		return m
	}
	if !ok {
		m = &member{name: p.Name, stops: map[string]fleet.Origin{}}
		a.members[p.Name] = m
	}
	m.namespace, m.fingerprint = p.Namespace, fingerprint
	m.generation++
	m.client, m.view, m.err, m.failures, m.notBefore = nil, nil, nil, 0, time.Time{}
	m.config, m.configErr = a.configFor(p)
	return m
}

// configFor builds the member's rest.Config from a private copy of the
// provider file: cluster-inventory-api appends a profile's extra plugin
// arguments to the provider's own ExecConfig.
func (a *Access) configFor(p *clusterinventory.ClusterProfile) (*rest.Config, error) {
	providers := make([]access.Provider, len(a.providers.Providers))
	for i, pr := range a.providers.Providers {
		providers[i] = pr
		providers[i].ExecConfig = pr.ExecConfig.DeepCopy()
	}
	cfg, err := access.New(providers).BuildConfigFromCP(p.DeepCopy())
	if err != nil {
		return nil, fmt.Errorf("no access to member %s: %w", p.Name, err)
	}
	cfg.Timeout = ProbeTimeout
	return cfg, nil
}

// scheduleLocked starts a probe of m now, or when it is due, unless one
// runs or is already scheduled.
func (a *Access) scheduleLocked(m *member) {
	if m.probing || m.timer != nil {
		return
	}
	if wait := time.Until(m.notBefore); wait > 0 {
		m.timer = time.AfterFunc(wait, func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			m.timer = nil
			a.scheduleLocked(m)
		})
		return
	}
	m.probing = true
	stops := m.stops
	m.stops = map[string]fleet.Origin{}
	go a.probe(m, m.generation, m.config, m.client, m.expires, stops)
}

// probe reads the member, takes a step for each copy to stop, and records
// what it read.
func (a *Access) probe(m *member, generation int, cfg *rest.Config, c client.Client, expires time.Time, stops map[string]fleet.Origin) {
	ctx, cancel := context.WithTimeout(context.Background(), ProbeTimeout)
	defer cancel()
	logger := log.Log.WithName("fence").WithValues("member", m.name)
	var v *view
	var err error
	if c == nil || (!expires.IsZero() && time.Until(expires) < credentialMargin) {
		c, expires, err = a.connect(ctx, cfg)
	}
	if err == nil {
		v, err = read(ctx, c)
	}
	if err == nil {
		for _, origin := range stops {
			if err = takeSteps(ctx, c, stopSteps(v.stateOf(origin))); err != nil {
				break
			}
		}
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	m.probing = false
	if generation != m.generation {
		// The member's access changed while this probe ran: what it read
		// counts for nothing, and the next probe uses the new access.
		maps.Copy(m.stops, stops)
		a.scheduleLocked(m)
		return
	}
	now := time.Now()
	if err != nil {
		logger.V(1).Info("Probe of the member failed", "error", err.Error(), "failures", m.failures+1)
		m.err = fmt.Errorf("member %s did not answer the hub: %w", m.name, err)
		m.notBefore = now.Add(backoff(m.failures))
		m.failures++
		if apierrors.IsUnauthorized(err) {
			c = nil // fetch new credentials next time
		}
	} else {
		m.err, m.view, m.failures = nil, v, 0
		m.notBefore = now.Add(probeEvery)
	}
	m.client, m.expires = c, expires
	if err != nil {
		maps.Copy(m.stops, stops) // not done: the next probe tries again
	}
	if len(m.stops) > 0 {
		a.scheduleLocked(m)
	}
	profile := &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Namespace: m.namespace, Name: m.name}}
	select {
	case a.probed <- event.GenericEvent{Object: profile}:
	default:
		// The dispatcher is behind by probedBuffer probes; it reconciles
		// these JobSets anyway when it catches up.
	}
}

func backoff(failures int) time.Duration {
	d := firstBackoff
	for range failures {
		if d *= 2; d >= maxBackoff {
			return maxBackoff
		}
	}
	return d
}

// connect runs the exec plugin (bounded by ctx) and returns a client with
// its credentials. The client maps only the kinds the fence touches, so it
// sends no discovery requests.
func (a *Access) connect(ctx context.Context, cfg *rest.Config) (client.Client, time.Time, error) {
	withCreds, expires, err := withCredentials(ctx, cfg)
	if err != nil {
		return nil, time.Time{}, err
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	mapper.Add(jobset.GroupVersion.WithKind("JobSet"), meta.RESTScopeNamespace)
	mapper.Add(batchv1.SchemeGroupVersion.WithKind("Job"), meta.RESTScopeNamespace)
	mapper.Add(corev1.SchemeGroupVersion.WithKind("Pod"), meta.RESTScopeNamespace)
	c, err := client.New(withCreds, client.Options{Scheme: a.scheme, Mapper: mapper})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("client for the member: %w", err)
	}
	return c, expires, nil
}

// takeSteps applies stopSteps. Preconditions (UID, resourceVersion) keep
// each step to the object it was computed for.
func takeSteps(ctx context.Context, c client.Client, steps []step) error {
	for _, s := range steps {
		var err error
		switch s.kind {
		case deleteForeground, deleteOrphanJob:
			err = c.Delete(ctx, s.obj, client.PropagationPolicy(metav1.DeletePropagationForeground), client.Preconditions{UID: ptr.To(s.obj.GetUID())})
		case deleteOrphanPod:
			err = c.Delete(ctx, s.obj, client.Preconditions{UID: ptr.To(s.obj.GetUID())})
		case release:
			js := s.obj.(*jobset.JobSet)
			patch := client.MergeFromWithOptions(js.DeepCopy(), client.MergeFromWithOptimisticLock{})
			controllerutil.RemoveFinalizer(js, fleet.ReportFinalizer)
			err = c.Patch(ctx, js, patch)
		}
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("stopping the copy: %T %s/%s: %w", s.obj, s.obj.GetNamespace(), s.obj.GetName(), err)
		}
	}
	return nil
}
