package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// compareRow is one figure of a phase for both contenders.
type compareRow struct {
	figure   string
	ours, mk float64
	unit     string
}

// perJob is a total per JobSet of the phase.
func perJob(d time.Duration, p hubPhase) float64 {
	if p.n == 0 {
		return 0
	}
	return ms(d) / float64(p.n)
}

// largestShare is the percentage of the phase's JobSets on its busiest member.
func largestShare(p hubPhase) float64 {
	if p.completed == 0 {
		return 0
	}
	most := 0
	for _, n := range p.perMember {
		most = max(most, n)
	}
	return 100 * float64(most) / float64(p.completed)
}

// compareRows are the figures the issue asks for, ours next to
// MultiKueue's. The first cluster of each is its hub (manager).
func compareRows(ours, mk hubPhase, oursIdle, mkIdle phaseUsage) []compareRow {
	rows := []compareRow{
		{"throughput (submit → all Jobs on a member)", ours.throughput, mk.throughput, "/s"},
		{"p50 latency", ours.p50.Seconds(), mk.p50.Seconds(), "s"},
		{"p99 latency", ours.p99.Seconds(), mk.p99.Seconds(), "s"},
		{"throughput to every Job unsuspended", ours.release.throughput, mk.release.throughput, "/s"},
		{"p50 to every Job unsuspended", ours.release.p50.Seconds(), mk.release.p50.Seconds(), "s"},
		{"p99 to every Job unsuspended", ours.release.p99.Seconds(), mk.release.p99.Seconds(), "s"},
		{"hub (manager) apiserver writes/JobSet", float64(ours.hubWrites()) / float64(ours.n), float64(mk.hubWrites()) / float64(mk.n), ""},
		{"member (worker) apiservers writes/JobSet", float64(ours.memberWrites()) / float64(ours.n), float64(mk.memberWrites()) / float64(mk.n), ""},
	}
	oc, mc := ours.usage.clusterNames(), mk.usage.clusterNames()
	for i := range min(len(oc), len(mc)) {
		label := oc[i]
		if oc[i] != mc[i] {
			label = oc[i] + " (" + mc[i] + ")"
		}
		op, mp := ours.usage.planes[oc[i]], mk.usage.planes[mc[i]]
		rows = append(rows,
			compareRow{label + " apiserver CPU/JobSet", perJob(op.apiserver, ours), perJob(mp.apiserver, mk), "ms"},
			compareRow{label + " etcd CPU/JobSet", perJob(op.etcd, ours), perJob(mp.etcd, mk), "ms"})
	}
	rows = append(rows,
		compareRow{"control-plane CPU/JobSet (3 apiservers + 3 etcds)", perJob(ours.usage.controlPlaneCPU(), ours), perJob(mk.usage.controlPlaneCPU(), mk), "ms"},
		compareRow{"control-plane CPU/JobSet above idle (idle rate × the phase's window subtracted)", perJob(ours.usage.aboveIdle(oursIdle), ours), perJob(mk.usage.aboveIdle(mkIdle), mk), "ms"},
		compareRow{"idle control-plane CPU (before the phases)", idleRate(oursIdle), idleRate(mkIdle), "ms/s"},
		compareRow{"phase window (first submit → quiet)", ours.usage.window.Seconds(), mk.usage.window.Seconds(), "s"},
		compareRow{"controllers CPU/JobSet", perJob(ours.usage.controllersCPU(), ours), perJob(mk.usage.controllersCPU(), mk), "ms"},
		compareRow{"controllers peak RSS (sum)", float64(ours.usage.controllersPeakRSS()) / (1 << 20), float64(mk.usage.controllersPeakRSS()) / (1 << 20), "MiB"},
		compareRow{"busiest member's share of JobSets", largestShare(ours), largestShare(mk), "%"},
	)
	return rows
}

// summaryLine is the phase's line scripts read (issue 21's exact form).
func summaryLine(phase string, ours, mk hubPhase) string {
	oc, mc := perJob(ours.usage.controlPlaneCPU(), ours), perJob(mk.usage.controlPlaneCPU(), mk)
	return fmt.Sprintf("vs-multikueue %s: throughput ours %.1f/s multikueue %.1f/s ratio %sx; cpu-per-jobset ours %.1fms multikueue %.1fms ratio %sx",
		phase, ours.throughput, mk.throughput, plainRatio(ours.throughput, mk.throughput), oc, mc, plainRatio(oc, mc))
}

func plainRatio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func (r *report) multiKueueSection(b *strings.Builder) {
	m := r.hubMultiKueue
	if m == nil {
		return
	}
	b.WriteString("\n### Kueue MultiKueue v0.17.0, same phases (manager: envtest control plane + Kueue with MultiKueue and the JobSet CRD; 2 workers: envtest control plane + Kueue + upstream JobSet v0.12.0)\n\n")
	b.WriteString("Set up as Kueue documents it: the manager's ClusterQueue has an AdmissionCheck of kueue.x-k8s.io/multikueue whose MultiKueueConfig lists a MultiKueueCluster per worker (kubeconfig Secrets in kueue-system); Kueue's webhook puts each JobSet in the namespace's LocalQueue `default` and sets spec.managedBy to MultiKueue; the workers have the same queues. Quotas are far above the burst. Latency, throughput and writes are measured as for ours; writes on the workers are MultiKueue's, the workers' Kueue's and the JobSet controllers' together.\n\n")
	b.WriteString("| phase | JobSets | offered | achieved submit rate | completed/s | p50 | p99 | max | spread (member-1/member-2) | manager writes/JobSet | worker writes/JobSet | load |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |\n")
	for _, p := range m.phases {
		offered := "burst"
		if p.rate > 0 {
			offered = fmt.Sprintf("%.1f/s", p.rate)
		}
		fmt.Fprintf(b, "| %s | %d | %s | %.1f/s | %.1f/s | %s | %s | %s | %s | %s | %s | %s |\n",
			p.name, p.n, offered, p.submitRate, p.throughput, secs(p.p50), secs(p.p99), secs(p.max),
			p.spreadString(), perJobSet(p.hubWrites(), p.n), perJobSet(p.memberWrites(), p.n), p.load)
	}
	b.WriteString("\nWrites by kind:\n\n")
	for _, p := range m.phases {
		fmt.Fprintf(b, "- %s, manager apiserver, by Kueue: %s\n", p.name, p.hubByHub.WritesString(p.failedHub))
		fmt.Fprintf(b, "- %s, worker apiservers, by MultiKueue, Kueue and JobSet: %s\n", p.name, p.memberByAgents.WritesString(p.failedMember))
	}
	r.usageTable(b, m)
	if r.hub == nil {
		return
	}
	b.WriteString("\n### Ours vs MultiKueue (ratio: ours / multikueue)\n\n")
	b.WriteString("CPU: from /proc, first submit → 3 s without a write by any process, divided by the phase's JobSets. Control plane: the three apiservers and etcds together.\n\n")
	var lines []string
	for _, mp := range m.phases {
		i := slices.IndexFunc(r.hub.phases, func(p hubPhase) bool { return p.name == mp.name })
		if i < 0 {
			continue
		}
		op := r.hub.phases[i]
		fmt.Fprintf(b, "%s (ours %d JobSets at %s, multikueue %d at %s; spread ours %s, multikueue %s):\n\n", mp.name, op.n, offeredString(op), mp.n, offeredString(mp), op.spreadString(), mp.spreadString())
		b.WriteString("| figure | ours | multikueue | ours/multikueue |\n| --- | ---: | ---: | ---: |\n")
		for _, row := range compareRows(op, mp, r.hub.idle, m.idle) {
			fmt.Fprintf(b, "| %s | %.2f %s | %.2f %s | %s |\n", row.figure, row.ours, row.unit, row.mk, row.unit, ratio(row.ours, row.mk))
		}
		b.WriteString("\n")
		lines = append(lines, summaryLine(mp.name, op, mp))
	}
	if len(lines) > 0 {
		b.WriteString("```\n" + strings.Join(lines, "\n") + "\n```\n")
	}
}

func offeredString(p hubPhase) string {
	if p.rate == 0 {
		return "burst"
	}
	return fmt.Sprintf("%.1f/s", p.rate)
}

// usageTable shows where a contender's CPU went, per cluster and process.
func (r *report) usageTable(b *strings.Builder, h *hubResult) {
	if len(h.phases) == 0 {
		return
	}
	idle := h.idle
	var planes []string
	for _, c := range idle.clusterNames() {
		pc := idle.planes[c]
		planes = append(planes, fmt.Sprintf("%s apiserver %.1f, etcd %.1f", c, ms(pc.apiserver)/max(idle.window.Seconds(), 1e-9), ms(pc.etcd)/max(idle.window.Seconds(), 1e-9)))
	}
	all, _ := idle.requests.Total()
	fmt.Fprintf(b, "\nIdle (%s before the first phase, nothing submitted): control planes %.1f ms/s (%s), controllers %.1f ms/s; the controllers' requests: %d, of them writes: %s.\n",
		idle.window.Round(time.Second), idleRate(idle), strings.Join(planes, "; "), ms(idle.controllersCPU())/max(idle.window.Seconds(), 1e-9), all, idle.requests.WritesString(nil))
	b.WriteString("\nCPU per JobSet by process (ms) and peak RSS at the phase's end:\n\n")
	for _, p := range h.phases {
		var parts []string
		for _, c := range p.usage.clusterNames() {
			pc := p.usage.planes[c]
			parts = append(parts, fmt.Sprintf("%s apiserver %.1f, etcd %.1f", c, perJob(pc.apiserver, p), perJob(pc.etcd, p)))
		}
		for _, name := range slices.Sorted(maps.Keys(p.usage.controllerCPU)) {
			parts = append(parts, fmt.Sprintf("%s %.1f (%s)", name, perJob(p.usage.controllerCPU[name], p), mib(p.usage.peakRSS[name])))
		}
		fmt.Fprintf(b, "- %s: %s\n", p.name, strings.Join(parts, "; "))
	}
}

// idleRate is the control planes' CPU per second of an idle window.
func idleRate(u phaseUsage) float64 {
	if u.window <= 0 {
		return 0
	}
	return ms(u.controlPlaneCPU()) / u.window.Seconds()
}
