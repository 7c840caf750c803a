package agent

import (
	"context"
	"fmt"
	"math"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleetv1alpha1 "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// heartbeat renews the Lease in the member namespace and publishes the
// ClusterProfile status. The Lease is the liveness signal the hub (and the
// fencer) rely on; the profile is inventory and may lag.
type heartbeat struct {
	hub             client.Client // writes
	hubReader       client.Reader // live reads: the agent cannot list Leases or ClusterProfiles
	memberReader    client.Reader // live reads of nodes and pods: no Pod informer
	memberDiscovery discovery.DiscoveryInterface

	clusterName        string
	memberNamespace    string
	inventoryNamespace string
	identity           string
	interval           time.Duration
	profileInterval    time.Duration
	fenceTimeout       time.Duration
	topologyKeys       []string
	live               *liveness

	lease       *coordinationv1.Lease
	lastProfile time.Time
	lastHealth  *Health
}

func (h *heartbeat) NeedLeaderElection() bool { return true }

func (h *heartbeat) Start(ctx context.Context) error {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("cluster", h.clusterName, "memberNamespace", h.memberNamespace))
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.beat(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *heartbeat) beat(ctx context.Context) {
	logger := log.FromContext(ctx)
	// A renewal that takes longer than the interval is as good as lost.
	rctx, cancel := context.WithTimeout(ctx, h.interval)
	err := h.renew(rctx)
	cancel()
	if err != nil {
		logger.Error(err, "Renewing the heartbeat Lease", "lease", h.memberNamespace+"/"+fleetv1alpha1.HeartbeatLeaseName, "sinceLastRenewal", h.live.sinceRenewal())
	} else {
		h.live.markRenewed()
	}

	health := h.health(ctx)
	changed := h.lastHealth == nil || *h.lastHealth != health
	if !changed && time.Since(h.lastProfile) < h.profileInterval {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	if err := h.publishProfile(pctx, health); err != nil {
		logger.Error(err, "Publishing the ClusterProfile status", "clusterProfile", h.inventoryNamespace+"/"+h.clusterName)
		return
	}
	h.lastHealth, h.lastProfile = &health, time.Now()
}

// renew updates the Lease, reusing the last written object so a renewal is
// one request; it reads the Lease only when it has none or lost a race.
func (h *heartbeat) renew(ctx context.Context) error {
	now := metav1.NowMicro()
	if h.lease == nil {
		lease := &coordinationv1.Lease{}
		err := h.hubReader.Get(ctx, client.ObjectKey{Namespace: h.memberNamespace, Name: fleetv1alpha1.HeartbeatLeaseName}, lease)
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: h.memberNamespace, Name: fleetv1alpha1.HeartbeatLeaseName}}
			h.setLeaseSpec(lease, now)
			lease.Spec.AcquireTime = &now
			if err := h.hub.Create(ctx, lease); err != nil {
				return fmt.Errorf("creating heartbeat Lease: %w", err)
			}
			h.lease = lease
			return nil
		case err != nil:
			return fmt.Errorf("reading heartbeat Lease: %w", err)
		}
		h.lease = lease
	}
	lease := h.lease.DeepCopy()
	h.setLeaseSpec(lease, now)
	if err := h.hub.Update(ctx, lease); err != nil {
		h.lease = nil
		return fmt.Errorf("updating heartbeat Lease: %w", err)
	}
	h.lease = lease
	return nil
}

func (h *heartbeat) setLeaseSpec(lease *coordinationv1.Lease, now metav1.MicroTime) {
	lease.Spec.HolderIdentity = ptr.To(h.identity)
	// The hub may read the duration as a hint; it measures staleness itself.
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(math.Ceil(h.fenceTimeout.Seconds())))
	lease.Spec.RenewTime = &now
}

func (h *heartbeat) health(ctx context.Context) Health {
	ctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	body, err := h.memberDiscovery.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return Health{Message: fmt.Sprintf("/readyz: %v: %s", err, body)}
	}
	return Health{Healthy: true}
}

func (h *heartbeat) publishProfile(ctx context.Context, health Health) error {
	cp := &clusterinventory.ClusterProfile{}
	if err := h.hubReader.Get(ctx, client.ObjectKey{Namespace: h.inventoryNamespace, Name: h.clusterName}, cp); err != nil {
		return fmt.Errorf("reading ClusterProfile: %w", err)
	}
	version := ""
	if v, err := h.memberDiscovery.ServerVersion(); err == nil {
		version = v.GitVersion
	}
	props, err := h.properties(ctx)
	if err != nil {
		return err
	}
	patch := client.MergeFrom(cp.DeepCopy())
	cp.Status = ProfileStatus(cp.Status, health, version, props)
	if err := h.hub.Status().Patch(ctx, cp, patch); err != nil {
		return fmt.Errorf("patching ClusterProfile status: %w", err)
	}
	return nil
}

// properties lists nodes and unfinished pods live, page by page: this runs
// at most every profileInterval, which is far cheaper than a Pod informer on
// a large cluster.
func (h *heartbeat) properties(ctx context.Context) ([]clusterinventory.Property, error) {
	var nodes []corev1.Node
	for cont := ""; ; {
		var list corev1.NodeList
		if err := h.memberReader.List(ctx, &list, client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing nodes: %w", err)
		}
		nodes = append(nodes, list.Items...)
		if cont = list.Continue; cont == "" {
			break
		}
	}
	var pods []corev1.Pod
	unfinished := client.MatchingFieldsSelector{Selector: podsNotFinished}
	for cont := ""; ; {
		var list corev1.PodList
		if err := h.memberReader.List(ctx, &list, unfinished, client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing pods: %w", err)
		}
		pods = append(pods, list.Items...)
		if cont = list.Continue; cont == "" {
			break
		}
	}
	var fleetJobSets metav1.PartialObjectMetadataList
	fleetJobSets.SetGroupVersionKind(v1alpha2.GroupVersion.WithKind("JobSetList"))
	if err := h.memberReader.List(ctx, &fleetJobSets, client.HasLabels{fleetv1alpha1.OriginUIDLabel}); err != nil {
		return nil, fmt.Errorf("listing fleet JobSets: %w", err)
	}
	fleet := map[client.ObjectKey]bool{}
	for i := range fleetJobSets.Items {
		fleet[client.ObjectKeyFromObject(&fleetJobSets.Items[i])] = true
	}
	isFleetPod := func(p *corev1.Pod) bool {
		name, ok := p.Labels[v1alpha2.JobSetNameKey]
		return ok && fleet[client.ObjectKey{Namespace: p.Namespace, Name: name}]
	}
	return ComputeProperties(nodes, pods, isFleetPod, h.topologyKeys, metav1.Now()), nil
}
