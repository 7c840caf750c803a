package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Simulated members: what an agent writes to the hub, and nothing more. A
// member is its namespace on the hub, its heartbeat Lease (renewed by
// simMembers as an agent would) and its ClusterProfile with the capacity
// properties and the node summary a member of simNodeGroups would report.
// No agent reads the dispatches: the placement scenario measures the hub.

// simRenewEvery is how often the heartbeat Leases are renewed (the agent's
// default interval; the hub's heartbeat timeout is 30 s).
const simRenewEvery = 10 * time.Second

// The node label keys the simulated summary carries, and the taint of its
// GPU nodes.
const (
	simPoolLabel = "node-pool"
	simZoneLabel = "topology.kubernetes.io/zone"
	simGPU       = corev1.ResourceName("nvidia.com/gpu")
)

var simGPUTaint = corev1.Taint{Key: string(simGPU), Value: "present", Effect: corev1.TaintEffectNoSchedule}

// simNodeGroups is every simulated member's nodes: untainted CPU nodes with
// room, two zones of tainted 8-GPU nodes with every GPU taken, and tainted
// control-plane nodes. A Pod asking for 8 GPUs fits a node's allocatable
// (so it is not never-runnable) but no node's free capacity, and the
// members' free GPU sums are 0 too: it waits, whichever fit is on main.
func simNodeGroups() []fleet.NodeGroup {
	q := resource.MustParse
	gpuNodes := func(zone string, nodes int32) fleet.NodeGroup {
		return fleet.NodeGroup{
			Labels:      map[string]string{simPoolLabel: "gpu", simZoneLabel: zone},
			Taints:      []corev1.Taint{simGPUTaint},
			Nodes:       nodes,
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: q("96"), simGPU: q("8")},
			Free:        []fleet.FreeNodes{{Count: nodes, Free: corev1.ResourceList{corev1.ResourceCPU: q("80"), simGPU: q("0")}}},
		}
	}
	return []fleet.NodeGroup{
		{
			Labels:      map[string]string{simPoolLabel: "cpu"},
			Nodes:       16,
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: q("64"), corev1.ResourceMemory: q("256Gi")},
			Free: []fleet.FreeNodes{
				{Count: 12, Free: corev1.ResourceList{corev1.ResourceCPU: q("64"), corev1.ResourceMemory: q("256Gi")}},
				{Count: 4, Free: corev1.ResourceList{corev1.ResourceCPU: q("8"), corev1.ResourceMemory: q("32Gi")}},
			},
		},
		gpuNodes("a", 8),
		gpuNodes("b", 4),
		{
			Labels:      map[string]string{simPoolLabel: "infra"},
			Taints:      []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}},
			Nodes:       3,
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: q("8")},
			Free:        []fleet.FreeNodes{{Count: 3, Free: corev1.ResourceList{corev1.ResourceCPU: q("4")}}},
		},
	}
}

// maxPropertyValue is the ClusterProfile CRD's bound on a property value.
const maxPropertyValue = 1024

// simProperties are the ClusterProfile properties of a simulated member:
// allocatable.<r> and free.<r> (sums over its nodes, as an agent reports
// them) and the node summary.
func simProperties(groups []fleet.NodeGroup, now metav1.Time) ([]clusterinventory.Property, error) {
	alloc, free := corev1.ResourceList{}, corev1.ResourceList{}
	add := func(sum corev1.ResourceList, r corev1.ResourceName, q resource.Quantity, times int32) {
		v := sum[r]
		for range times {
			v.Add(q)
		}
		sum[r] = v
	}
	for _, g := range groups {
		for r, q := range g.Allocatable {
			add(alloc, r, q, g.Nodes)
		}
		for _, f := range g.Free {
			for r, q := range f.Free {
				add(free, r, q, f.Count)
			}
		}
	}
	var props []clusterinventory.Property
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, simGPU} {
		a, f := alloc[r], free[r]
		props = append(props,
			clusterinventory.Property{Name: fleet.PropertyAllocatablePrefix + string(r), Value: a.String(), LastObservedTime: now},
			clusterinventory.Property{Name: fleet.PropertyFreePrefix + string(r), Value: f.String(), LastObservedTime: now})
	}
	summary, err := json.Marshal(fleet.NodeSummary{LabelKeys: []string{simPoolLabel, simZoneLabel}, Groups: groups})
	if err != nil {
		return nil, err
	}
	if len(summary) > maxPropertyValue {
		return nil, fmt.Errorf("the simulated node summary is %d bytes, more than a property value may hold (%d)", len(summary), maxPropertyValue)
	}
	return append(props, clusterinventory.Property{Name: fleet.PropertyNodeSummary, Value: string(summary), LastObservedTime: now}), nil
}

func simMemberName(i int) string { return fmt.Sprintf("sim-%03d", i) }

// simMembers are the simulated members on one hub, with the goroutine that
// renews their Leases.
type simMembers struct {
	names []string
	// clients[i] is what member i speaks to the hub with: its agent's
	// identity (fleet-scale) or the benchmark's admin client (placement).
	clients []client.Client
	leases  []*coordinationv1.Lease
	stop    context.CancelFunc
	done    sync.WaitGroup
}

// startSimMembers adds n simulated members to the hub: for each, its
// namespace and its ClusterProfile (created with the admin client), then
// what its agent would report (reportSimMember). The Leases are renewed
// every simRenewEvery until Stop.
func startSimMembers(ctx context.Context, hub client.Client, n int) (*simMembers, error) {
	props, err := simProperties(simNodeGroups(), metav1.Now())
	if err != nil {
		return nil, err
	}
	if err := createNamespace(ctx, hub, fleet.DefaultInventoryNamespace); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	s := &simMembers{}
	for i := range n {
		name := simMemberName(i)
		if err := createNamespace(ctx, hub, fleet.MemberNamespace(name)); err != nil {
			return nil, err
		}
		p := &clusterinventory.ClusterProfile{
			ObjectMeta: metav1.ObjectMeta{Namespace: fleet.DefaultInventoryNamespace, Name: name},
			Spec: clusterinventory.ClusterProfileSpec{DisplayName: name,
				ClusterManager: clusterinventory.ClusterManager{Name: fleet.ClusterManagerName}},
		}
		if err := hub.Create(ctx, p); err != nil {
			return nil, fmt.Errorf("creating the ClusterProfile of %s: %w", name, err)
		}
		if err := s.add(ctx, hub, name, props); err != nil {
			return nil, err
		}
	}
	s.start(ctx)
	return s, nil
}

// add reports what member name's agent would, through c: its heartbeat
// Lease, then its ClusterProfile's status (a healthy control plane and
// props). Those are the only writes an agent may make outside its
// dispatches (membership.AgentRules, membership.ProfileRules).
func (s *simMembers) add(ctx context.Context, c client.Client, name string, props []clusterinventory.Property) error {
	ns := fleet.MemberNamespace(name)
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fleet.HeartbeatLeaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	if err := c.Create(ctx, lease); err != nil {
		return fmt.Errorf("creating the heartbeat Lease of %s: %w", name, err)
	}
	p := &clusterinventory.ClusterProfile{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: name}, p); err != nil {
		return fmt.Errorf("reading the ClusterProfile of %s: %w", name, err)
	}
	p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy,
		Status: metav1.ConditionTrue, Reason: "Healthy", Message: "simulated by the benchmark", LastTransitionTime: metav1.Now()}}
	p.Status.Properties = props
	if err := c.Status().Update(ctx, p); err != nil {
		return fmt.Errorf("reporting the status of %s: %w", name, err)
	}
	s.names = append(s.names, name)
	s.clients = append(s.clients, c)
	s.leases = append(s.leases, lease)
	return nil
}

// start renews the Leases until Stop.
func (s *simMembers) start(ctx context.Context) {
	ctx, s.stop = context.WithCancel(context.WithoutCancel(ctx))
	s.done.Go(func() { s.renew(ctx) })
}

// renew renews every Lease each simRenewEvery, as n agents would: an
// update (an agent may not patch its Lease).
func (s *simMembers) renew(ctx context.Context) {
	tick := time.NewTicker(simRenewEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for i, lease := range s.leases {
			lease.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			err := s.clients[i].Update(ctx, lease)
			if apierrors.IsConflict(err) {
				err = s.clients[i].Get(ctx, client.ObjectKeyFromObject(lease), lease)
			}
			if err != nil && ctx.Err() == nil {
				logf("  renewing the heartbeat of %s: %v", s.names[i], err)
			}
		}
	}
}

// Stop stops renewing the Leases.
func (s *simMembers) Stop() {
	if s.stop == nil {
		return
	}
	s.stop()
	s.done.Wait()
}
