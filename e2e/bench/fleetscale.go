package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
)

// The fleet-scale scenario: the hub process and one hub apiserver, with
// simulated members (simmember.go), each joined by membership.Join and
// driven by an in-process agent loop under its agent identity
// (fleetscale_agent.go). Each member has room for a fixed number of
// JobSets ("slots"). For each member count, on a fresh hub:
//
//   - fill: as many JobSets as the members have slots, in one burst; the
//     agents accept them and keep them running;
//   - for each pending count, ascending: that many more JobSets of the same
//     shape wait in the queue for capacity; the hub's writes and CPU are
//     measured while nothing changes (idle); then the agents finish
//     JobSets one by one across members (churn), each freeing one slot,
//     and the time from a member's Succeeded report to the next dispatch
//     to that member is measured.

// fleetScaleQueue and fleetScaleFill hold the queued and the filling JobSets.
const (
	fleetScaleFill  = "bench-fill"
	fleetScaleQueue = "bench-queue"
)

// fleetScaleFleet is one member count's run.
type fleetScaleFleet struct {
	members, slots int
	fillN          int
	fillWall       time.Duration // first submit → last dispatch seen
	fillCPU        time.Duration // hub CPU, first submit → hub quiet
	rows           []fleetScaleRow
	peakRSS        int64
	hubCPU         time.Duration // the hub's whole life
	profiles       []string      // pprof files written
}

// fleetScaleRow is one pending count of a fleet.
type fleetScaleRow struct {
	pending int
	// settle: the pending JobSets' first submit → the hub quiet;
	// settleCPU: the hub's CPU over it.
	settle, settleCPU time.Duration
	// idle: the hub's CPU and writes over idleFor with nothing changing.
	idleFor     time.Duration
	idleCPU     time.Duration
	idleWrites  apicount.Counts
	agentWrites int64 // the agents' writes over the same window (heartbeats)
	// churn: releases finished JobSets, each followed by a dispatch;
	// latencies freed → dispatched, sorted; slowest: which release, in
	// the order of the releases (1 = the first after the idle window),
	// took the longest.
	releases   int
	latencies  []time.Duration
	slowest    int
	churnWall  time.Duration
	churnCPU   time.Duration
	churnHub   apicount.Counts
	load       string
	unanswered int // releases no dispatch followed within the timeout
}

func (r fleetScaleRow) p(q float64) time.Duration { return percentile(r.latencies, q) }

func (r fleetScaleRow) idleWritesPerMinute() float64 {
	_, w := r.idleWrites.Total()
	return float64(w) / r.idleFor.Minutes()
}

func (r fleetScaleRow) cpuPerDecision() time.Duration {
	return r.churnCPU / time.Duration(max(len(r.latencies), 1))
}

type fleetScaleResult struct {
	fleets []fleetScaleFleet
}

// runFleetScale runs the scenario for each member count on a fresh hub.
func runFleetScale(ctx context.Context, o options, cert *apicount.ServingCert) (*fleetScaleResult, error) {
	res := &fleetScaleResult{}
	for _, m := range o.fleetMembers {
		f, err := runFleetScaleFleet(ctx, o, cert, m)
		res.fleets = append(res.fleets, f)
		if err != nil {
			return res, fmt.Errorf("%d members: %w", m, err)
		}
	}
	return res, nil
}

// fleetScaleNodeGroups are a simulated member of slots slots: one node of
// 4 CPUs and 8 GiB per slot, each as free as it is big, which the fill's
// JobSet (8 Pods of 0.5 CPU and 1 GiB) takes whole.
func fleetScaleNodeGroups(slots int) []fleet.NodeGroup {
	q := resource.MustParse
	per := corev1.ResourceList{corev1.ResourceCPU: q("4"), corev1.ResourceMemory: q("8Gi")}
	return []fleet.NodeGroup{{
		Labels:      map[string]string{simPoolLabel: "cpu"},
		Nodes:       int32(slots),
		Allocatable: per,
		Free:        []fleet.FreeNodes{{Count: int32(slots), Free: per.DeepCopy()}},
	}}
}

// fleetScaleRun is the running hub of one member count.
type fleetScaleRun struct {
	*placementFleet
	agents     []*simAgent
	agentProxy *apicount.Proxy
	cert       *apicount.ServingCert
	pprofURL   string
	dir        string
}

func runFleetScaleFleet(ctx context.Context, o options, cert *apicount.ServingCert, members int) (res fleetScaleFleet, err error) {
	res = fleetScaleFleet{members: members, slots: o.fleetSlots}
	dir, err := os.MkdirTemp(o.workDir, fmt.Sprintf("fleet-scale-%d-", members))
	if err != nil {
		return res, err
	}
	logf("fleet-scale, %d members × %d slots: starting a hub (load %s)", members, o.fleetSlots, procstat.LoadAverage())
	args := slices.Clone(o.oursArgs)
	pprofURL := ""
	if o.profile {
		port, err := freePort()
		if err != nil {
			return res, err
		}
		args = append(args, fmt.Sprintf("--pprof-bind-address=127.0.0.1:%d", port))
		pprofURL = fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/", port)
	}
	pf, err := upFleet(ctx, dir, devfleet.Layout{Hub: "hub"}, cert, args)
	if err != nil {
		return res, err
	}
	defer pf.Stop()
	f := &fleetScaleRun{dir: dir, cert: cert, pprofURL: pprofURL,
		placementFleet: &placementFleet{proxiedFleet: pf, hub: pf.clusters["hub"], hubProxy: pf.proxies["hub"]["hub"], hubPID: pf.Processes()[0].Pid()}}
	defer func() {
		if u, err := procstat.Read(f.hubPID); err == nil {
			res.peakRSS, res.hubCPU = u.PeakRSS, u.CPU
		}
	}()
	if f.dispatch, err = watchDispatches(ctx, f.hub.Config); err != nil {
		return res, err
	}
	defer f.dispatch.stop()
	if f.agentProxy, err = apicount.Start(f.hub.Config, cert); err != nil {
		return res, err
	}
	defer f.agentProxy.Close()
	defer func() {
		if f.members != nil {
			f.members.Stop()
		}
		for _, a := range f.agents {
			a.Stop()
		}
	}()
	if err := f.join(ctx, o, members); err != nil {
		return res, err
	}
	if err := f.warmUp(ctx); err != nil {
		return res, err
	}
	if err := f.fill(ctx, o, &res); err != nil {
		return res, err
	}
	created := 0
	for _, p := range slices.Sorted(slices.Values(o.fleetPending)) {
		row := fleetScaleRow{pending: p, load: procstat.LoadAverage()}
		waiting := created - f.dispatch.countIn(fleetScaleQueue)
		if err := f.addQueued(ctx, o, created, p-waiting, &row); err != nil {
			return res, err
		}
		created += max(p-waiting, 0)
		if err := f.idle(ctx, o, &row); err != nil {
			return res, err
		}
		prof := f.profile(ctx, o, fmt.Sprintf("churn-%d-pending", p), time.Duration(float64(o.fleetReleases)/o.fleetReleaseRate*float64(time.Second))+5*time.Second)
		if err := f.churn(ctx, o, &row); err != nil {
			return res, err
		}
		if path := prof(); path != "" {
			res.profiles = append(res.profiles, path)
		}
		res.rows = append(res.rows, row)
		logf("  %d members, %d pending: settled in %s (hub CPU %s); idle: %.1f hub writes/min, hub CPU %s in %s; churn: %d freed → dispatched p50 %s p99 %s (the slowest: release %d), hub CPU %.1f ms/decision",
			members, p, secs(row.settle), secs(row.settleCPU), row.idleWritesPerMinute(), secs(row.idleCPU), row.idleFor, len(row.latencies), secs(row.p(50)), secs(row.p(99)), row.slowest, ms(row.cpuPerDecision()))
	}
	return res, f.agentErr()
}

// join joins the simulated members, each under its own agent identity,
// and reports their capacity and heartbeats through their agents.
func (f *fleetScaleRun) join(ctx context.Context, o options, n int) error {
	props, err := simProperties(fleetScaleNodeGroups(o.fleetSlots), metav1.Now())
	if err != nil {
		return err
	}
	f.members = &simMembers{}
	for i := range n {
		name := simMemberName(i)
		a, err := joinSimMember(ctx, f.dir, f.hub.Client, f.agentProxy, f.cert, name)
		if err != nil {
			return err
		}
		f.agents = append(f.agents, a)
		own := append(slices.Clone(props), clusterinventory.Property{Name: fleet.ClusterIDProperty, Value: simClusterID(name), LastObservedTime: metav1.Now()})
		if err := f.members.add(ctx, a.hub, name, own); err != nil {
			return err
		}
	}
	f.members.start(ctx)
	return nil
}

func (f *fleetScaleRun) agentErr() error {
	for _, a := range f.agents {
		if _, _, _, err := a.counts(); err != nil {
			return err
		}
	}
	return nil
}

// fill submits a JobSet for every slot left (the warm-up JobSet holds
// one) and waits until each is dispatched and accepted.
func (f *fleetScaleRun) fill(ctx context.Context, o options, res *fleetScaleFleet) error {
	res.fillN = res.members*res.slots - 1
	if err := createNamespace(ctx, f.hub.Client, fleetScaleFill); err != nil {
		return err
	}
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := createEach(ctx, f.hub.Client, jobSetNames(0, res.fillN), 50, func(name string) client.Object { return placementJobSet(fleetScaleFill, name) }); err != nil {
		return err
	}
	if err := f.waitDispatched(ctx, fleetScaleFill, res.fillN, o.runTimeout); err != nil {
		return err
	}
	res.fillWall = f.dispatch.last(fleetScaleFill).Sub(t0)
	if err := f.waitAccepted(ctx, o, res.fillN+1); err != nil {
		return err
	}
	if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{f.hubProxy}, o.runTimeout); err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	res.fillCPU = cpu1 - cpu0
	logf("  fill: %d JobSets placed in %s (%.1f decisions/s), hub CPU %.1f ms/decision",
		res.fillN, secs(res.fillWall), float64(res.fillN)/res.fillWall.Seconds(), ms(res.fillCPU/time.Duration(res.fillN)))
	return nil
}

func jobSetNames(from, to int) []string {
	names := make([]string, 0, max(to-from, 0))
	for i := from; i < to; i++ {
		names = append(names, workload.Name(i))
	}
	return names
}

// waitAccepted waits until the agents accepted n dispatches in all.
func (f *fleetScaleRun) waitAccepted(ctx context.Context, o options, n int) error {
	deadline := time.Now().Add(o.runTimeout)
	for {
		total := 0
		for _, a := range f.agents {
			acc, _, _, err := a.counts()
			if err != nil {
				return err
			}
			total += acc
		}
		if total >= n {
			return nil
		}
		if err := f.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out: the agents accepted %d of %d dispatches", total, n)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// addQueued submits add more JobSets, which wait for capacity, and waits
// until the hub stopped writing about them.
func (f *fleetScaleRun) addQueued(ctx context.Context, o options, created, add int, row *fleetScaleRow) error {
	if created == 0 {
		if err := createNamespace(ctx, f.hub.Client, fleetScaleQueue); err != nil {
			return err
		}
	}
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if add > 0 {
		if err := createEach(ctx, f.hub.Client, jobSetNames(created, created+add), 50, func(name string) client.Object { return placementJobSet(fleetScaleQueue, name) }); err != nil {
			return err
		}
	}
	quiet, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{f.hubProxy}, o.runTimeout)
	if err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	row.settle, row.settleCPU = quiet.Sub(t0), cpu1-cpu0
	if n := f.dispatch.countIn(fleetScaleQueue); n > 0 && created == 0 {
		return fmt.Errorf("%d queued JobSets were dispatched while every slot was taken", n)
	}
	return nil
}

// idle measures the hub while nothing changes but the heartbeats.
func (f *fleetScaleRun) idle(ctx context.Context, o options, row *fleetScaleRow) error {
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	base := f.hubProxy.Snapshot()
	_, agents0 := f.agentProxy.Snapshot().Total()
	if err := sleep(ctx, o.fleetIdle); err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	_, agents1 := f.agentProxy.Snapshot().Total()
	row.idleFor, row.idleCPU, row.idleWrites, row.agentWrites = o.fleetIdle, cpu1-cpu0, writesOnly(f.hubProxy.Snapshot().Minus(base)), agents1-agents0
	return nil
}

func writesOnly(c apicount.Counts) apicount.Counts {
	out := apicount.Counts{}
	for k, v := range c {
		if k.Write() && v > 0 {
			out[k] = v
		}
	}
	return out
}

// churn finishes o.fleetReleases JobSets, one member after another at
// o.fleetReleaseRate, and waits until a queued JobSet took each freed
// slot.
func (f *fleetScaleRun) churn(ctx context.Context, o options, row *fleetScaleRow) error {
	for _, a := range f.agents {
		a.takeLatencies()
	}
	cpu0, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	base := f.hubProxy.Snapshot()
	t0 := time.Now()
	every := time.Duration(float64(time.Second) / o.fleetReleaseRate)
	waiting := row.pending
	for i := 0; i < o.fleetReleases && waiting > 0; i++ {
		a := f.agents[i%len(f.agents)]
		ok, err := a.release(ctx)
		if err != nil {
			return err
		}
		if ok {
			row.releases++
			waiting--
		}
		if err := sleep(ctx, every); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(min(o.runTimeout, 5*time.Minute))
	for {
		open := 0
		for _, a := range f.agents {
			_, _, w, err := a.counts()
			if err != nil {
				return err
			}
			open += w
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			row.unanswered = open
			logf("  %d freed slots not taken by a queued JobSet after %s", open, time.Since(t0).Round(time.Second))
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	row.churnWall = time.Since(t0)
	if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{f.hubProxy}, o.runTimeout); err != nil {
		return err
	}
	cpu1, err := procstat.CPU(f.hubPID)
	if err != nil {
		return err
	}
	row.churnCPU, row.churnHub = cpu1-cpu0, f.hubProxy.Snapshot().Minus(base)
	var slots []freedSlot
	for _, a := range f.agents {
		slots = append(slots, a.takeLatencies()...)
	}
	slices.SortFunc(slots, func(a, b freedSlot) int { return a.freed.Compare(b.freed) })
	for i, s := range slots {
		if row.slowest == 0 || s.took > slots[row.slowest-1].took {
			row.slowest = i + 1
		}
		row.latencies = append(row.latencies, s.took)
	}
	slices.Sort(row.latencies)
	return nil
}

// profile records, with -profile, the hub's Go CPU profile for d from now
// (its pprof endpoint); the returned func waits for it and returns the
// file ("" when none).
func (f *fleetScaleRun) profile(ctx context.Context, o options, name string, d time.Duration) func() string {
	if !o.profile {
		return func() string { return "" }
	}
	path := filepath.Join(f.dir, "hub-"+name+".pprof")
	done := make(chan string, 1)
	go func() {
		url := fmt.Sprintf("%sprofile?seconds=%d", f.pprofURL, max(int(d.Seconds()), 1))
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			done <- ""
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			logf("  profiling the hub: %v", err)
			done <- ""
			return
		}
		defer resp.Body.Close()
		out, err := os.Create(path)
		if err == nil {
			_, err = io.Copy(out, resp.Body)
			_ = out.Close()
		}
		if err != nil {
			logf("  profiling the hub: %v", err)
			done <- ""
			return
		}
		done <- path
	}()
	return func() string { return <-done }
}

func (r *report) fleetScaleSection(b *strings.Builder) {
	fs := r.fleetScale
	if fs == nil || len(fs.fleets) == 0 {
		return
	}
	o := r.opts
	fmt.Fprintf(b, "\n### The hub at fleet scale (simulated members, %d slots each)\n\n", o.fleetSlots)
	fmt.Fprintf(b, "Members: each joined by membership.Join and driven by an in-process agent loop under its own agent identity (the hub's RBAC for agents), which renews its heartbeat Lease every %s, accepts each dispatch (finalizer, Accepted, running status) and keeps it running. Each member has room for %d JobSets of 8 Pods of 0.5 CPU. Fill: one JobSet per slot, 50 concurrent creates; decisions/s: JobSets / (first submit → last JobSetDispatch seen by a watch). Pending: that many more JobSets of the same shape wait for capacity; settle: their first submit → no hub write for 3 s. Idle: the hub's writes and CPU over %s with them waiting (goal: 0 writes). Churn: %d releases at %.0f/s, each an agent's Succeeded report on another member; freed → dispatched: that report → the next new dispatch to that member seen by its agent (goal p99 < 2 s); hub CPU per decision: the hub's CPU over the churn / decisions.\n\n",
		simRenewEvery, o.fleetSlots, o.fleetIdle, o.fleetReleases, o.fleetReleaseRate)
	b.WriteString("| members | fill decisions/s | fill hub CPU/decision | pending | settle | settle hub CPU | idle hub writes/min | idle hub CPU | freed → dispatched p50 | p99 | max | hub CPU/decision (churn) | hub writes/decision (churn) | hub peak RSS | load |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, f := range fs.fleets {
		for _, row := range f.rows {
			maxLat := time.Duration(0)
			if n := len(row.latencies); n > 0 {
				maxLat = row.latencies[n-1]
			}
			_, churnWrites := row.churnHub.Total()
			fmt.Fprintf(b, "| %d | %.1f | %.1f ms | %d | %s | %s | %.1f | %s | %s | %s | %s | %.1f ms | %.0f | %s | %s |\n",
				f.members, float64(f.fillN)/f.fillWall.Seconds(), ms(f.fillCPU/time.Duration(max(f.fillN, 1))), row.pending,
				secs(row.settle), secs(row.settleCPU), row.idleWritesPerMinute(), secs(row.idleCPU),
				secs(row.p(50)), secs(row.p(99)), secs(maxLat), ms(row.cpuPerDecision()),
				float64(churnWrites)/float64(max(len(row.latencies), 1)), mib(f.peakRSS), row.load)
		}
	}
	for _, f := range fs.fleets {
		for _, row := range f.rows {
			if _, w := row.idleWrites.Total(); w > 0 {
				fmt.Fprintf(b, "\nIdle hub writes at %d members, %d pending: %s\n", f.members, row.pending, row.idleWrites.WritesString(nil))
			}
			if row.unanswered > 0 {
				fmt.Fprintf(b, "\nAt %d members, %d pending: %d freed slots were not taken by a queued JobSet within the timeout.\n", f.members, row.pending, row.unanswered)
			}
		}
		for _, p := range f.profiles {
			fmt.Fprintf(b, "\nHub CPU profile (%d members): %s\n", f.members, p)
		}
	}
}
