package main

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// What a hub-scenario phase costs, for either contender: CPU of every
// control plane (apiserver and etcd, by cluster) and of every controller
// process, and the controllers' peak RSS.

type planeCPU struct{ apiserver, etcd time.Duration }

// usageSample is what the control planes and controllers used so far.
type usageSample struct {
	at     time.Time
	planes map[string]planeCPU
	procs  map[string]procstat.Usage
}

func sampleUsage(clusters map[string]*cluster, procs []*testenv.Process) usageSample {
	s := usageSample{at: time.Now(), planes: map[string]planeCPU{}, procs: map[string]procstat.Usage{}}
	for name, c := range clusters {
		a, e := c.cpu()
		s.planes[name] = planeCPU{a, e}
	}
	for _, p := range procs {
		if u, err := procstat.Read(p.Pid()); err == nil {
			s.procs[p.Name] = u
		}
	}
	return s
}

// phaseUsage is what was used between two samples; peak RSS is each
// controller's high-water mark at the later one.
type phaseUsage struct {
	window        time.Duration   // between the samples
	requests      apicount.Counts // idle only: every process's requests in the window
	planes        map[string]planeCPU
	controllerCPU map[string]time.Duration
	peakRSS       map[string]int64
}

func (a usageSample) until(b usageSample) phaseUsage {
	u := phaseUsage{window: b.at.Sub(a.at), planes: map[string]planeCPU{}, controllerCPU: map[string]time.Duration{}, peakRSS: map[string]int64{}}
	for name, p := range b.planes {
		u.planes[name] = planeCPU{p.apiserver - a.planes[name].apiserver, p.etcd - a.planes[name].etcd}
	}
	for name, p := range b.procs {
		u.controllerCPU[name] = p.CPU - a.procs[name].CPU
		u.peakRSS[name] = p.PeakRSS
	}
	return u
}

// controlPlaneCPU is every apiserver's and etcd's CPU together.
func (u phaseUsage) controlPlaneCPU() time.Duration {
	var d time.Duration
	for _, p := range u.planes {
		d += p.apiserver + p.etcd
	}
	return d
}

func (u phaseUsage) controllersCPU() time.Duration {
	var d time.Duration
	for _, c := range u.controllerCPU {
		d += c
	}
	return d
}

// controllersPeakRSS adds the controllers' peaks: the memory the contender
// needs at once at most.
func (u phaseUsage) controllersPeakRSS() int64 {
	var n int64
	for _, r := range u.peakRSS {
		n += r
	}
	return n
}

// clusterNames: the hub (or manager) first, then the members.
func (u phaseUsage) clusterNames() []string {
	names := slices.Sorted(maps.Keys(u.planes))
	slices.SortStableFunc(names, func(a, b string) int {
		return boolInt(slices.Contains(memberNames, a)) - boolInt(slices.Contains(memberNames, b))
	})
	return names
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// idleFor is how long the idle baseline is measured.
const idleFor = 10 * time.Second

// idleUsage measures the contender with nothing to do (after its writes
// have been quiet), so a slower contender's longer phases are not charged
// for the CPU it burns anyway (leases, resyncs, garbage collection).
func (f *hubFleet) idleUsage(ctx context.Context) (phaseUsage, error) {
	if _, err := apicount.WaitQuiet(ctx, f.allProxies(), time.Minute); err != nil {
		return phaseUsage{}, err
	}
	before, requests := sampleUsage(f.clusters, f.Processes()), apicount.Sum(f.allProxies(), (*apicount.Proxy).Snapshot)
	select {
	case <-ctx.Done():
		return phaseUsage{}, ctx.Err()
	case <-time.After(idleFor):
	}
	u := before.until(sampleUsage(f.clusters, f.Processes()))
	u.requests = apicount.Sum(f.allProxies(), (*apicount.Proxy).Snapshot).Minus(requests)
	return u, nil
}

// aboveIdle is the control planes' CPU of u less what idle would have
// used over u's window.
func (u phaseUsage) aboveIdle(idle phaseUsage) time.Duration {
	if idle.window <= 0 {
		return u.controlPlaneCPU()
	}
	rate := float64(idle.controlPlaneCPU()) / float64(idle.window)
	return max(0, u.controlPlaneCPU()-time.Duration(rate*float64(u.window)))
}
