package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// renewer renews the heartbeat Lease in the member namespace on the hub.
// It runs on its own goroutine and does nothing else, so no member-side
// work can delay a renewal: the Lease is the liveness signal the hub and
// the fencer rely on.
type renewer struct {
	hub       client.Client // writes
	hubReader client.Reader // live reads: the agent cannot list Leases

	memberNamespace string
	identity        string
	interval        time.Duration
	fenceTimeout    time.Duration
	clock           clock.PassiveClock
	live            *liveness
	record          *renewalRecord
	access          *hubAccess
	errors          prometheus.Counter

	lease *coordinationv1.Lease
}

func (h *renewer) run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *renewer) beat(ctx context.Context) {
	// The renewal counts from when it was sent, not when the answer came:
	// the hub saw it no earlier, so the agent never believes itself more
	// recently renewed than the hub does.
	sent := h.clock.Now()
	// A renewal that takes longer than the interval is as good as lost.
	rctx, cancel := context.WithTimeout(ctx, h.interval)
	err := h.renew(rctx, metav1.NewMicroTime(sent))
	cancel()
	if ctx.Err() == nil {
		h.access.observe(ctx, err, h.clock.Now())
	}
	if err != nil {
		if ctx.Err() == nil {
			h.errors.Inc()
			log.FromContext(ctx).Error(err, "Renewing the heartbeat Lease", "lease", h.memberNamespace+"/"+fleet.HeartbeatLeaseName, "sinceLastRenewal", h.live.sinceRenewal())
		}
		return
	}
	h.live.markRenewed(sent)
	h.record.notify(sent)
}

// renew updates the Lease, reusing the last written object so a renewal is
// one request; it reads the Lease only when it has none or lost a race.
func (h *renewer) renew(ctx context.Context, now metav1.MicroTime) error {
	if h.lease == nil {
		lease := &coordinationv1.Lease{}
		err := h.hubReader.Get(ctx, client.ObjectKey{Namespace: h.memberNamespace, Name: fleet.HeartbeatLeaseName}, lease)
		switch {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: h.memberNamespace, Name: fleet.HeartbeatLeaseName}}
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

func (h *renewer) setLeaseSpec(lease *coordinationv1.Lease, now metav1.MicroTime) {
	lease.Spec.HolderIdentity = ptr.To(h.identity)
	// The hub may read the duration as a hint; it measures staleness itself.
	lease.Spec.LeaseDurationSeconds = ptr.To(int32(math.Ceil(h.fenceTimeout.Seconds())))
	lease.Spec.RenewTime = &now
}

// renewalRecord writes each successful renewal's wall-clock time to the
// Lease LastRenewalLeaseName in the agent's namespace on the member, on its
// own goroutine: the next agent process counts towards the fence timeout
// from there. A failed member write is logged and superseded by the next
// renewal's; it never delays a renewal.
type renewalRecord struct {
	member    client.Client // writes
	reader    client.Reader // live reads: no Lease informer on the member
	namespace string
	identity  string
	// pending holds the newest renewal not yet written (capacity 1).
	pending chan time.Time
	errors  prometheus.Counter

	lease *coordinationv1.Lease
}

// notify hands a renewal to the writer, replacing one not yet written. Only
// the renewer calls it, so the drain-then-send cannot block.
func (r *renewalRecord) notify(at time.Time) {
	select {
	case <-r.pending:
	default:
	}
	r.pending <- at
}

func (r *renewalRecord) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case at := <-r.pending:
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.write(wctx, at)
			cancel()
			if err != nil && ctx.Err() == nil {
				r.errors.Inc()
				log.FromContext(ctx).Error(err, "Recording the last renewal on the member", "lease", r.namespace+"/"+fleet.LastRenewalLeaseName)
			}
		}
	}
}

func (r *renewalRecord) key() client.ObjectKey {
	return client.ObjectKey{Namespace: r.namespace, Name: fleet.LastRenewalLeaseName}
}

// recordedRenewal is the last renewal recorded on the member.
type recordedRenewal struct {
	// RenewTime is the renewal as its writer's wall clock saw it: for
	// people and logs only, since the writer may have run on another node.
	RenewTime time.Time
	// Stamp is when the member apiserver stored that record, on its own
	// clock (the managedFields time of the write that set renewTime).
	Stamp time.Time
}

// load returns the recorded renewal; zero when none is recorded.
func (r *renewalRecord) load(ctx context.Context) (recordedRenewal, error) {
	lease := &coordinationv1.Lease{}
	switch err := r.reader.Get(ctx, r.key(), lease); {
	case apierrors.IsNotFound(err):
		return recordedRenewal{}, nil
	case err != nil:
		return recordedRenewal{}, fmt.Errorf("reading Lease %s: %w", r.key(), err)
	}
	r.lease = lease
	if lease.Spec.RenewTime == nil {
		return recordedRenewal{}, nil
	}
	return recordedRenewal{RenewTime: lease.Spec.RenewTime.Time, Stamp: fieldStamp(lease.ManagedFields, "f:spec", "f:renewTime")}, nil
}

// clockProbeManager is the field manager of the agent's clock probe, apart
// from the record's writer so the probe never moves the record's stamp.
const clockProbeManager = "jobset-fleet-agent-clock-probe"

// clockProbeAnnotation is the field the clock probe writes.
const clockProbeAnnotation = "fleet.jobset.x-k8s.io/clock-probe"

// memberNow makes a write the member apiserver stamps, on the record
// loaded last, and returns the stamp: now on the clock that stamped the
// record.
func (r *renewalRecord) memberNow(ctx context.Context) (time.Time, error) {
	lease := r.lease.DeepCopy()
	metav1.SetMetaDataAnnotation(&lease.ObjectMeta, clockProbeAnnotation, r.identity+" "+time.Now().UTC().Format(time.RFC3339Nano))
	// An update, not a patch: the agent may only get, create and update
	// its Leases. A concurrent write conflicts, and the caller reads again.
	if err := r.member.Update(ctx, lease, client.FieldOwner(clockProbeManager)); err != nil {
		r.lease = nil
		return time.Time{}, fmt.Errorf("stamping Lease %s: %w", r.key(), err)
	}
	r.lease = lease
	for _, e := range lease.ManagedFields {
		if e.Manager == clockProbeManager && e.Time != nil {
			return e.Time.Time, nil
		}
	}
	return time.Time{}, nil
}

// fieldStamp is the latest managedFields time among the entries that own
// the field at path (e.g. "f:spec", "f:renewTime"): when the apiserver last
// stored a change of it. Zero when none says.
func fieldStamp(entries []metav1.ManagedFieldsEntry, path ...string) time.Time {
	var latest time.Time
	for _, e := range entries {
		if e.Time == nil || e.FieldsV1 == nil || !ownsField(e.FieldsV1.GetRawBytes(), path) {
			continue
		}
		if e.Time.After(latest) {
			latest = e.Time.Time
		}
	}
	return latest
}

func ownsField(raw []byte, path []string) bool {
	for _, key := range path {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			return false
		}
		var ok bool
		if raw, ok = fields[key]; !ok {
			return false
		}
	}
	return true
}

func (r *renewalRecord) write(ctx context.Context, at time.Time) error {
	now := metav1.NewMicroTime(at)
	if r.lease == nil {
		lease := &coordinationv1.Lease{}
		switch err := r.reader.Get(ctx, r.key(), lease); {
		case apierrors.IsNotFound(err):
			lease = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: r.namespace, Name: fleet.LastRenewalLeaseName}}
			lease.Spec.HolderIdentity = ptr.To(r.identity)
			lease.Spec.RenewTime = &now
			if err := r.member.Create(ctx, lease); err != nil {
				return fmt.Errorf("creating Lease %s: %w", r.key(), err)
			}
			r.lease = lease
			return nil
		case err != nil:
			return fmt.Errorf("reading Lease %s: %w", r.key(), err)
		}
		r.lease = lease
	}
	lease := r.lease.DeepCopy()
	lease.Spec.HolderIdentity = ptr.To(r.identity)
	lease.Spec.RenewTime = &now
	if err := r.member.Update(ctx, lease); err != nil {
		r.lease = nil
		return fmt.Errorf("updating Lease %s: %w", r.key(), err)
	}
	r.lease = lease
	return nil
}

// publisher keeps the ClusterProfile status current, on its own goroutine:
// it lists nodes and pods of the member, which can take long on a large
// cluster, and the profile is inventory that may lag.
type publisher struct {
	hub             client.Client // writes
	hubReader       client.Reader // live reads: the agent cannot list ClusterProfiles
	memberReader    client.Reader // live reads of nodes and pods: no Pod informer
	memberDiscovery discovery.DiscoveryInterface

	clusterName        string
	inventoryNamespace string
	interval           time.Duration
	profileInterval    time.Duration
	topologyKeys       []string
	nodeLabelKeys      []string // the node summary's, NodeSummaryLabelKeys
	errors             prometheus.Counter

	lastProfile time.Time
	lastHealth  *Health
	clusterID   string
}

// +kubebuilder:rbac:groups="",resources=namespaces,resourceNames=kube-system,verbs=get

func (p *publisher) run(ctx context.Context) {
	// Health is checked every heartbeat interval so a change is published
	// at once; the rest at most every profileInterval.
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.publish(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *publisher) publish(ctx context.Context) {
	health := p.health(ctx)
	changed := p.lastHealth == nil || *p.lastHealth != health
	if !changed && time.Since(p.lastProfile) < p.profileInterval {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, max(p.interval, 30*time.Second))
	defer cancel()
	if err := p.publishProfile(pctx, health); err != nil {
		if ctx.Err() == nil {
			p.errors.Inc()
			log.FromContext(ctx).Error(err, "Publishing the ClusterProfile status", "clusterProfile", p.inventoryNamespace+"/"+p.clusterName)
		}
		return
	}
	p.lastHealth, p.lastProfile = &health, time.Now()
}

func (p *publisher) health(ctx context.Context) Health {
	ctx, cancel := context.WithTimeout(ctx, p.interval)
	defer cancel()
	body, err := p.memberDiscovery.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return Health{Message: fmt.Sprintf("/readyz: %v: %s", err, body)}
	}
	return Health{Healthy: true}
}

func (p *publisher) publishProfile(ctx context.Context, health Health) error {
	version := ""
	if v, err := p.memberDiscovery.ServerVersion(); err == nil {
		version = v.GitVersion
	}
	props, err := p.properties(ctx)
	if err != nil {
		return err
	}
	if p.clusterID == "" {
		// The member's identity, which `join` recorded on the profile: the
		// hub trusts the member only while both match.
		ns := &corev1.Namespace{}
		if err := p.memberReader.Get(ctx, client.ObjectKey{Name: metav1.NamespaceSystem}, ns); err != nil {
			return fmt.Errorf("reading namespace %s for the cluster ID: %w", metav1.NamespaceSystem, err)
		}
		p.clusterID = string(ns.UID)
	}
	props = append(props, clusterinventory.Property{Name: fleet.ClusterIDProperty, Value: p.clusterID, LastObservedTime: metav1.Now()})
	cp := &clusterinventory.ClusterProfile{}
	if err := p.hubReader.Get(ctx, client.ObjectKey{Namespace: p.inventoryNamespace, Name: p.clusterName}, cp); err != nil {
		return fmt.Errorf("reading ClusterProfile: %w", err)
	}
	patch := client.MergeFrom(cp.DeepCopy())
	cp.Status = ProfileStatus(cp.Status, health, version, props)
	if err := p.hub.Status().Patch(ctx, cp, patch); err != nil {
		return fmt.Errorf("patching ClusterProfile status: %w", err)
	}
	return nil
}

// +kubebuilder:rbac:groups=storage.k8s.io,resources=storageclasses,verbs=list

// properties lists nodes and unfinished pods live, page by page: this runs
// at most every profileInterval, which is far cheaper than a Pod informer on
// a large cluster.
func (p *publisher) properties(ctx context.Context) ([]clusterinventory.Property, error) {
	var nodes []corev1.Node
	for cont := ""; ; {
		var list corev1.NodeList
		if err := p.memberReader.List(ctx, &list, client.Limit(500), client.Continue(cont)); err != nil {
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
		if err := p.memberReader.List(ctx, &list, unfinished, client.Limit(500), client.Continue(cont)); err != nil {
			return nil, fmt.Errorf("listing pods: %w", err)
		}
		pods = append(pods, list.Items...)
		if cont = list.Continue; cont == "" {
			break
		}
	}
	var fleetJobSets metav1.PartialObjectMetadataList
	fleetJobSets.SetGroupVersionKind(jobset.GroupVersion.WithKind("JobSetList"))
	if err := p.memberReader.List(ctx, &fleetJobSets, client.HasLabels{fleet.OriginUIDLabel}); err != nil {
		return nil, fmt.Errorf("listing fleet JobSets: %w", err)
	}
	fleet := map[client.ObjectKey]bool{}
	for i := range fleetJobSets.Items {
		fleet[client.ObjectKeyFromObject(&fleetJobSets.Items[i])] = true
	}
	isFleetPod := func(pod *corev1.Pod) bool {
		name, ok := pod.Labels[jobset.JobSetNameKey]
		return ok && fleet[client.ObjectKey{Namespace: pod.Namespace, Name: name}]
	}
	var classes storagev1.StorageClassList
	if err := p.memberReader.List(ctx, &classes); err != nil {
		return nil, fmt.Errorf("listing storage classes: %w", err)
	}
	now := metav1.Now()
	props := slices.Concat(ComputeProperties(nodes, pods, isFleetPod, p.topologyKeys, now), StorageClassProperties(classes.Items, now),
		NodeSummaryProperties(ComputeNodeSummary(nodes, pods, p.nodeLabelKeys), now))
	// Kueue's quotas are extra: failing to read them must not stop the
	// capacity the hub needs (the hub then sees no Kueue here).
	switch quotas, err := readKueueQuotas(ctx, p.memberReader); {
	case err != nil:
		log.FromContext(ctx).Error(err, "Reading the member's Kueue quotas; publishing none")
	case quotas != nil:
		props = append(props, KueueQuotasProperties(*quotas, now)...)
	}
	return props, nil
}
