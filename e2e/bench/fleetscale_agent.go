package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/jobset-fleet/jobset-fleet/api"
	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// A simulated agent of the fleet-scale scenario: one per simulated member,
// in process, speaking the hub API with the token membership.Join gave
// that member, so the hub's RBAC for agents applies to every request. It
// runs no copy: it accepts each dispatch (the agent's finalizer, then
// Accepted=True with a running status) and, when the scenario frees
// capacity on its member, reports the oldest running one Succeeded.

// simAgent is one member's agent loop.
type simAgent struct {
	name  string
	hub   client.Client // the agent's identity
	cache cache.Cache
	queue workqueue.TypedInterface[string]
	stop  context.CancelFunc
	done  sync.WaitGroup

	mu sync.Mutex
	// seen: when each dispatch (by name) was first seen by the informer.
	seen map[string]time.Time
	// running: accepted, unfinished dispatches, oldest first; taken: the
	// dispatches accepted so far (the cache may show a dispatch without
	// the agent's own status write for a moment: it is accepted once).
	running []string
	taken   map[string]bool
	// freed: when each release not yet followed by a new dispatch here
	// reported Succeeded, oldest first; latencies: freed → the next new
	// dispatch seen.
	freed     []time.Time
	latencies []freedSlot
	accepted  int
	err       error
}

// joinSimMember joins member name the way `jobset-fleet-agent join` does
// (membership.Join) and starts its agent loop. The member side of the join
// (its kube-system UID, the hub-kubeconfig Secret) goes to an in-memory
// client: a simulated member has no control plane. The agent reaches the
// hub through agentProxy, with the token Join returned.
func joinSimMember(ctx context.Context, dir string, admin client.Client, agentProxy *apicount.Proxy, cert *apicount.ServingCert, name string) (*simAgent, error) {
	member := fake.NewClientBuilder().WithScheme(api.NewScheme()).WithObjects(&corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: metav1.NamespaceSystem, UID: types.UID(simClusterID(name))}}).Build()
	raw, err := membership.Join(ctx, admin, member, membership.Options{ClusterName: name, HubServerURL: agentProxy.URL, SkipCRDs: true})
	if err != nil {
		return nil, fmt.Errorf("joining %s: %w", name, err)
	}
	joined, err := clientcmd.Load(raw)
	if err != nil {
		return nil, err
	}
	token := ""
	for _, a := range joined.AuthInfos {
		token = a.Token
	}
	path := filepath.Join(dir, name+"-agent-hub.kubeconfig")
	if err := agentProxy.WriteKubeconfig(path, cert, token); err != nil {
		return nil, err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0 // an agent's own limiter is not what is measured
	scheme := api.NewScheme()
	hub, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ns := fleet.MemberNamespace(name)
	c, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		return nil, err
	}
	a := &simAgent{name: name, hub: hub, cache: c, queue: workqueue.NewTyped[string](), seen: map[string]time.Time{}, taken: map[string]bool{}}
	inf, err := c.GetInformer(ctx, &fleet.JobSetDispatch{})
	if err != nil {
		return nil, err
	}
	enqueue := func(obj any) {
		if d, ok := obj.(*fleet.JobSetDispatch); ok {
			a.mu.Lock()
			if _, ok := a.seen[d.Name]; !ok {
				a.seen[d.Name] = time.Now()
			}
			a.mu.Unlock()
			a.queue.Add(d.Name)
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stop = cancel
	a.done.Go(func() { _ = c.Start(runCtx) })
	if !c.WaitForCacheSync(ctx) {
		a.Stop()
		return nil, fmt.Errorf("the dispatch cache of %s never synced", name)
	}
	a.done.Go(func() { a.work(runCtx) })
	return a, nil
}

// simClusterID is a simulated member's identity: the UID of its
// kube-system namespace, which its agent reports as fleet.ClusterIDProperty.
func simClusterID(name string) string { return "sim-kube-system-" + name }

// Stop ends the agent loop and its watch.
func (a *simAgent) Stop() {
	a.stop()
	a.queue.ShutDown()
	a.done.Wait()
}

func (a *simAgent) work(ctx context.Context) {
	for {
		name, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		if err := a.handle(ctx, name); err != nil && ctx.Err() == nil {
			if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
				a.queue.Done(name)
				a.queue.Add(name) // the cache brings the newer version
				continue
			}
			a.mu.Lock()
			if a.err == nil {
				a.err = fmt.Errorf("agent of %s, dispatch %s: %w", a.name, name, err)
			}
			a.mu.Unlock()
		}
		a.queue.Done(name)
	}
}

// handle does what the agent does for a dispatch: accept a new one, let
// a deleted one go.
func (a *simAgent) handle(ctx context.Context, name string) error {
	d := &fleet.JobSetDispatch{}
	if err := a.cache.Get(ctx, client.ObjectKey{Namespace: fleet.MemberNamespace(a.name), Name: name}, d); err != nil {
		return client.IgnoreNotFound(err)
	}
	if d.DeletionTimestamp != nil {
		if !controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer) {
			return nil
		}
		if !meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchDeleted) {
			patch := client.MergeFrom(d.DeepCopy())
			meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchDeleted, Status: metav1.ConditionTrue,
				Reason: fleet.ReasonCopyDeleted, Message: "the simulated member runs no copy", ObservedGeneration: d.Generation})
			if err := a.hub.Status().Patch(ctx, d, patch); err != nil {
				return err
			}
		}
		patch := client.MergeFrom(d.DeepCopy())
		controllerutil.RemoveFinalizer(d, fleet.AgentFinalizer)
		return a.hub.Patch(ctx, d, patch)
	}
	a.mu.Lock()
	accepted := a.taken[name]
	a.mu.Unlock()
	if accepted || (d.Status.ObservedEpoch == d.Spec.Epoch && meta.IsStatusConditionTrue(d.Status.Conditions, fleet.DispatchAccepted)) {
		return nil
	}
	if !controllerutil.ContainsFinalizer(d, fleet.AgentFinalizer) {
		patch := client.MergeFrom(d.DeepCopy())
		controllerutil.AddFinalizer(d, fleet.AgentFinalizer)
		if err := a.hub.Patch(ctx, d, patch); err != nil {
			return err
		}
	}
	patch := client.MergeFrom(d.DeepCopy())
	d.Status.ObservedEpoch = d.Spec.Epoch
	d.Status.JobSetStatus = runningStatus(&d.Spec.JobSet.Spec)
	meta.SetStatusCondition(&d.Status.Conditions, metav1.Condition{Type: fleet.DispatchAccepted, Status: metav1.ConditionTrue,
		Reason: fleet.ReasonAccepted, Message: "accepted by the simulated member", ObservedGeneration: d.Generation})
	d.Status.LastSyncTime = ptr.To(metav1.Now())
	if err := a.hub.Status().Patch(ctx, d, patch); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.accepted++
	a.taken[name] = true
	a.running = append(a.running, name)
	if len(a.freed) > 0 {
		a.latencies = append(a.latencies, freedSlot{freed: a.freed[0], took: a.seen[name].Sub(a.freed[0])})
		a.freed = a.freed[1:]
	}
	return nil
}

// runningStatus is what a member reports for a copy whose Jobs all run.
func runningStatus(spec *jobset.JobSetSpec) jobset.JobSetStatus {
	st := jobset.JobSetStatus{}
	for _, rj := range spec.ReplicatedJobs {
		st.ReplicatedJobsStatus = append(st.ReplicatedJobsStatus, jobset.ReplicatedJobStatus{Name: rj.Name, Ready: rj.Replicas, Active: rj.Replicas})
	}
	return st
}

// release reports the oldest running dispatch Succeeded, freeing its
// capacity; false when nothing runs.
func (a *simAgent) release(ctx context.Context) (bool, error) {
	a.mu.Lock()
	if len(a.running) == 0 {
		a.mu.Unlock()
		return false, nil
	}
	name := a.running[0]
	a.running = a.running[1:]
	a.mu.Unlock()
	d := &fleet.JobSetDispatch{}
	if err := a.cache.Get(ctx, client.ObjectKey{Namespace: fleet.MemberNamespace(a.name), Name: name}, d); err != nil {
		return false, err
	}
	patch := client.MergeFrom(d.DeepCopy())
	now := metav1.Now()
	st := jobset.JobSetStatus{TerminalState: string(jobset.JobSetCompleted)}
	for _, rj := range d.Spec.JobSet.Spec.ReplicatedJobs {
		st.ReplicatedJobsStatus = append(st.ReplicatedJobsStatus, jobset.ReplicatedJobStatus{Name: rj.Name, Succeeded: rj.Replicas})
	}
	st.Conditions = []metav1.Condition{{Type: string(jobset.JobSetCompleted), Status: metav1.ConditionTrue, Reason: "AllJobsCompleted",
		Message: "jobset completed successfully", LastTransitionTime: now}}
	d.Status.JobSetStatus = st
	d.Status.LastSyncTime = &now
	if err := a.hub.Status().Patch(ctx, d, patch); err != nil {
		return false, fmt.Errorf("reporting %s Succeeded: %w", name, err)
	}
	a.mu.Lock()
	a.freed = append(a.freed, time.Now())
	a.mu.Unlock()
	return true, nil
}

// counts are the dispatches accepted, the running ones, and the releases
// still waiting for a new dispatch.
func (a *simAgent) counts() (accepted, running, waiting int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.accepted, len(a.running), len(a.freed), a.err
}

// freedSlot is one release: when the slot was freed, and how long until a
// queued JobSet was dispatched into it.
type freedSlot struct {
	freed time.Time
	took  time.Duration
}

// takeLatencies returns and clears the freed → dispatched latencies.
func (a *simAgent) takeLatencies() []freedSlot {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.latencies
	a.latencies = nil
	return out
}
