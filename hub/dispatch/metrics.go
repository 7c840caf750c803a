package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// latencyBuckets span 50ms to about 7 minutes.
var latencyBuckets = prometheus.ExponentialBuckets(0.05, 2, 14)

var (
	dispatchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "dispatch_latency_seconds",
		Help:    "Time from a JobSet's creation to the creation of its first JobSetDispatch (submit to dispatched).",
		Buckets: latencyBuckets,
	})
	startLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "start_latency_seconds",
		Help:    "Time from a placement's JobSetDispatch creation to the hub first seeing a Pod of it started on the member (dispatched to running).",
		Buckets: latencyBuckets,
	}, []string{inventory.ClusterLabel})
	queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "queue_wait_seconds",
		Help:    "Time from a JobSet's creation to its first dispatch, for JobSets that waited in the fleet queue (no member could take them at once).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 16),
	})

	waitingDesc = prometheus.NewDesc("jobset_fleet_hub_waiting_jobsets",
		"Unfinished JobSets waiting for a member cluster (the fleet queue's depth), by the reason of their Dispatched condition (Pending: not yet evaluated).",
		[]string{"reason"}, nil)
	perMemberDesc = prometheus.NewDesc("jobset_fleet_hub_member_jobsets",
		"Unfinished JobSets dispatched to each member cluster.", []string{inventory.ClusterLabel}, nil)
	awaitingFenceDesc = prometheus.NewDesc("jobset_fleet_hub_awaiting_fence_jobsets",
		"JobSets that cannot run elsewhere until their copy on this member is confirmed stopped.", []string{inventory.ClusterLabel}, nil)
	memberStateDesc = prometheus.NewDesc("jobset_fleet_hub_member_state",
		"1 for the member's current state, 0 for the others: healthy, cordoned, unhealthy, stale, lost, awaiting_fence, out_of_service.",
		[]string{inventory.ClusterLabel, "state"}, nil)

	registerOnce sync.Once
	fleetGauges  = &fleetCollector{}
)

// waitingReasons are the reasons a waiting JobSet's Dispatched condition
// can give; each has a series, 0 when no JobSet waits for it.
var waitingReasons = []string{
	reasonNotEvaluated, fleet.ReasonQueued, fleet.ReasonNoFit, fleet.ReasonMemberLost, fleet.ReasonInvalidPlacement,
	fleet.ReasonDispatchFailed, fleet.ReasonDispatchDeleted, fleet.ReasonStartTimeout,
}

// reasonNotEvaluated is the waiting reason of a JobSet the hub has not
// written a Dispatched condition for yet.
const reasonNotEvaluated = "Pending"

// registerMetrics registers the hub's metrics once per process; the fleet
// gauges read reader (the latest manager's cache) and inv, once elected
// closes: a standby hub observes no heartbeats, so it would report every
// member lost.
func registerMetrics(reader client.Reader, inv *inventory.Inventory, elected <-chan struct{}, kueueOnHub func() bool) {
	fleetGauges.set(reader, inv, elected, kueueOnHub)
	registerOnce.Do(func() {
		inventory.TrackMembers(startLatency.MetricVec)
		for _, c := range []prometheus.Collector{dispatchLatency, startLatency, queueWait, fleetGauges} {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	})
}

// observation is what the histograms compare a JobSet's new state with:
// its state before the reconcile applied its plan.
type observation struct {
	waited       bool
	startedEpoch int64
}

// observeBefore notes what the histograms need of js before apply
// changes it (nil: no JobSet).
func observeBefore(js *jobset.JobSet) observation {
	if js == nil {
		return observation{}
	}
	c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched)
	return observation{waited: c != nil && c.Status != metav1.ConditionTrue, startedEpoch: fleetOf(&js.Status).StartedEpoch}
}

// dispatched records a created dispatch: the first placement's latency,
// and its wait when the JobSet waited in the queue.
func (b observation) dispatched(js *jobset.JobSet, d *fleet.JobSetDispatch, now time.Time) {
	if d.Spec.Epoch != 1 {
		return
	}
	since := now.Sub(js.CreationTimestamp.Time).Seconds()
	dispatchLatency.Observe(since)
	if b.waited {
		queueWait.Observe(since)
	}
}

// statusWritten records, once per placement, the first report that a Pod
// of it started: the time since its dispatch was created.
func (b observation) statusWritten(o *Observed, now time.Time) {
	if o.JobSet == nil {
		return
	}
	fs := fleetOf(&o.JobSet.Status)
	if fs.StartedEpoch == 0 || fs.StartedEpoch == b.startedEpoch || fs.StartedEpoch != fs.Epoch {
		return
	}
	if d := currentDispatch(o.Dispatches, fs); d != nil {
		startLatency.WithLabelValues(fs.Cluster).Observe(max(0, now.Sub(d.CreationTimestamp.Time).Seconds()))
	}
}

// fleetCollector computes the fleet gauges from the cache and the
// inventory when scraped, so they can neither drift nor cost anything
// between scrapes.
type fleetCollector struct {
	mu        sync.Mutex
	reader    client.Reader
	inventory *inventory.Inventory
	elected   <-chan struct{}
	kueue     func() bool
}

func (c *fleetCollector) set(r client.Reader, inv *inventory.Inventory, elected <-chan struct{}, kueueOnHub func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reader, c.inventory, c.elected, c.kueue = r, inv, elected, kueueOnHub
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- waitingDesc
	ch <- perMemberDesc
	ch <- awaitingFenceDesc
	ch <- memberStateDesc
}

// scrapeTimeout bounds the reads of one scrape (the inventory may read a
// silent member's Lease from the API server).
const scrapeTimeout = 5 * time.Second

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	reader, inv, elected, kueueOnHub := c.reader, c.inventory, c.elected, c.kueue
	c.mu.Unlock()
	if reader == nil || inv == nil {
		return
	}
	select {
	case <-elected:
	default:
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	jobSets := &jobset.JobSetList{}
	dispatches := &fleet.JobSetDispatchList{}
	if reader.List(ctx, jobSets, client.UnsafeDisableDeepCopy) != nil || reader.List(ctx, dispatches, client.UnsafeDisableDeepCopy) != nil {
		return
	}
	members, err := inv.Members(ctx)
	if err != nil {
		members = nil // the JobSet gauges still count; member states need the members
	}
	g := computeGauges(members, inv.MemberLostTimeout(), jobSets.Items, dispatches.Items, kueueOnHub())
	for reason, n := range g.Waiting {
		ch <- prometheus.MustNewConstMetric(waitingDesc, prometheus.GaugeValue, float64(n), reason)
	}
	for m, n := range g.PerMember {
		ch <- prometheus.MustNewConstMetric(perMemberDesc, prometheus.GaugeValue, float64(n), m)
	}
	for m, n := range g.AwaitingFence {
		ch <- prometheus.MustNewConstMetric(awaitingFenceDesc, prometheus.GaugeValue, float64(n), m)
	}
	for m, state := range g.States {
		for _, s := range inventory.States {
			v := 0.0
			if s == state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(memberStateDesc, prometheus.GaugeValue, v, m, s)
		}
	}
}

// gauges are the values of the fleet gauges at one instant.
type gauges struct {
	// Waiting counts the JobSets in the queue by reason.
	Waiting map[string]int
	// PerMember counts the unfinished JobSets dispatched to each member.
	PerMember map[string]int
	// AwaitingFence counts, per member, the JobSets that wait for their
	// copy there to be confirmed stopped.
	AwaitingFence map[string]int
	// States is each member's state.
	States map[string]string
}

// computeGauges derives the fleet gauges. Every member and every waiting
// reason has a value, 0 when nothing counts for it; a member that left the
// fleet keeps an awaiting-fence value only while JobSets still wait on it.
func computeGauges(members []inventory.Member, lostTimeout time.Duration, jobSets []jobset.JobSet, dispatches []fleet.JobSetDispatch, kueueOnHub bool) gauges {
	g := gauges{Waiting: map[string]int{}, PerMember: map[string]int{}, AwaitingFence: map[string]int{}, States: map[string]string{}}
	for _, r := range waitingReasons {
		g.Waiting[r] = 0
	}
	for _, m := range members {
		g.PerMember[m.Name] = 0
		g.AwaitingFence[m.Name] = 0
	}
	unreleased := map[types.UID][]string{}
	for i := range dispatches {
		if d := &dispatches[i]; controllerutil.ContainsFinalizer(d, fleet.DispatchFinalizer) {
			unreleased[d.Spec.Origin.UID] = append(unreleased[d.Spec.Origin.UID], memberOf(d))
		}
	}
	for i := range jobSets {
		js := &jobSets[i]
		if ptr.Deref(js.Spec.ManagedBy, "") != fleet.ManagedByFleet || IsFinished(&js.Status) {
			continue
		}
		if c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionMemberStatusStale); c != nil && c.Status == metav1.ConditionTrue && c.Reason == fleet.ReasonAwaitingFence {
			seen := map[string]bool{}
			for _, m := range unreleased[js.UID] {
				if !seen[m] {
					seen[m] = true
					g.AwaitingFence[m]++
				}
			}
		}
		switch {
		case inQueue(js, kueueOnHub):
			reason := reasonNotEvaluated
			if c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionDispatched); c != nil && c.Status != metav1.ConditionTrue {
				reason = c.Reason
			}
			g.Waiting[reason]++
		case meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionDispatched):
			g.PerMember[fleetOf(&js.Status).Cluster]++
		}
	}
	for _, m := range members {
		g.States[m.Name] = inventory.State(m, lostTimeout, g.AwaitingFence[m.Name] > 0)
	}
	return g
}
