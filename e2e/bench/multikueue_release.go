package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
)

// A Job that exists may still be suspended: MultiKueue copies the manager's
// JobSet, suspended until admitted, to the worker, whose JobSet controller
// creates its Jobs suspended until the worker's Kueue lets the copy run.
// So both contenders are also timed to the moment every Job of a JobSet is
// unsuspended ("released"), which is when its Pods could be made.

// releaseWatch records when all of a JobSet's Jobs on one cluster are
// unsuspended, keyed "<namespace>/<jobset>".
type releaseWatch struct {
	mu       sync.Mutex
	running  map[string]map[string]bool // jobset → its unsuspended Jobs
	released func(key string, at time.Time)
}

func (w *releaseWatch) observe(obj any) {
	j, ok := obj.(*batchv1.Job)
	if !ok || ptr.Deref(j.Spec.Suspend, false) {
		return
	}
	owner := j.Labels[jobset.JobSetNameKey]
	if owner == "" {
		return
	}
	key := j.Namespace + "/" + owner
	w.mu.Lock()
	if w.running[key] == nil {
		w.running[key] = map[string]bool{}
	}
	before := len(w.running[key])
	w.running[key][j.Name] = true
	done := before < workload.JobsPerJobSet && len(w.running[key]) == workload.JobsPerJobSet
	w.mu.Unlock()
	if done {
		w.released(key, time.Now())
	}
}

// watchReleases runs a Job informer on one cluster until ctx ends.
func watchReleases(ctx context.Context, cfg *rest.Config, released func(key string, at time.Time)) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	w := &releaseWatch{running: map[string]map[string]bool{}, released: released}
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Batch().V1().Jobs().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    w.observe,
		UpdateFunc: func(_, obj any) { w.observe(obj) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("job informer of %s never synced", cfg.Host)
	}
	return nil
}

func (f *hubFleet) onRelease(key string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, seen := f.released[key]; !seen {
		f.released[key] = at
	}
}

// releaseStats: submit → every Job unsuspended, over one phase's JobSets.
type releaseStats struct {
	released   int
	p50, p99   time.Duration
	throughput float64 // released / (first submit → last release)
}

func (f *hubFleet) releaseStats(keys []string) releaseStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s releaseStats
	var lat []time.Duration
	var first, last time.Time
	for _, k := range keys {
		sub, rel := f.submitted[k], f.released[k]
		if first.IsZero() || sub.Before(first) {
			first = sub
		}
		if rel.IsZero() {
			continue
		}
		lat = append(lat, rel.Sub(sub))
		if rel.After(last) {
			last = rel
		}
	}
	slices.Sort(lat)
	s.released = len(lat)
	s.p50, s.p99 = percentile(lat, 50), percentile(lat, 99)
	if d := last.Sub(first).Seconds(); d > 0 {
		s.throughput = float64(s.released) / d
	}
	return s
}
