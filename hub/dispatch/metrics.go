package dispatch

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

var (
	dispatchLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "jobset_fleet", Subsystem: "hub", Name: "dispatch_latency_seconds",
		Help:    "Time from a JobSet's creation to the creation of its first JobSetDispatch.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
	})
	pendingDesc = prometheus.NewDesc("jobset_fleet_hub_pending_jobsets",
		"Unfinished JobSets waiting for a member cluster.", nil, nil)
	perMemberDesc = prometheus.NewDesc("jobset_fleet_hub_member_jobsets",
		"Unfinished JobSets dispatched to each member cluster.", []string{"member"}, nil)
	awaitingFenceDesc = prometheus.NewDesc("jobset_fleet_hub_awaiting_fence_jobsets",
		"JobSets that cannot run elsewhere until their copy on a silent member is confirmed stopped.", nil, nil)

	registerOnce sync.Once
	jobSets      = &jobSetCollector{}
)

// registerMetrics registers the hub's metrics once per process; the
// JobSet gauges read reader, the latest manager's cache.
func registerMetrics(reader client.Reader) {
	jobSets.setReader(reader)
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{dispatchLatency, jobSets} {
			if err := ctrlmetrics.Registry.Register(c); err != nil {
				if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
					panic(err)
				}
			}
		}
	})
}

// jobSetCollector computes the JobSet gauges from the cache when scraped,
// so they can neither drift nor cost anything between scrapes.
type jobSetCollector struct {
	mu     sync.Mutex
	reader client.Reader
}

func (c *jobSetCollector) setReader(r client.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reader = r
}

func (c *jobSetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- perMemberDesc
	ch <- awaitingFenceDesc
}

func (c *jobSetCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	reader := c.reader
	c.mu.Unlock()
	list := &jobset.JobSetList{}
	if reader == nil || reader.List(context.Background(), list, client.UnsafeDisableDeepCopy) != nil {
		return
	}
	pending, awaiting := 0, 0
	perMember := map[string]int{}
	for i := range list.Items {
		js := &list.Items[i]
		if ptr.Deref(js.Spec.ManagedBy, "") != fleet.ManagedByFleet || IsFinished(&js.Status) {
			continue
		}
		if c := meta.FindStatusCondition(js.Status.Conditions, fleet.ConditionMemberStatusStale); c != nil && c.Reason == fleet.ReasonAwaitingFence {
			awaiting++
		}
		if meta.IsStatusConditionTrue(js.Status.Conditions, fleet.ConditionDispatched) {
			perMember[fleetOf(&js.Status).Cluster]++
		} else {
			pending++
		}
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, float64(pending))
	ch <- prometheus.MustNewConstMetric(awaitingFenceDesc, prometheus.GaugeValue, float64(awaiting))
	for m, n := range perMember {
		ch <- prometheus.MustNewConstMetric(perMemberDesc, prometheus.GaugeValue, float64(n), m)
	}
}
