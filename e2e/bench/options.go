package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// halfCapacity in options.rates is the rate "half": half of ours'
// measured burst throughput.
const halfCapacity = -1

// options are the benchmark's flags.
type options struct {
	n          int // member scenario JobSets
	podsN      int // memory scenario JobSets (8 pods each)
	hubN       int // hub burst JobSets
	rates      []float64
	rateFor    time.Duration
	scenarios  map[string]bool
	contenders map[string]bool
	oursArgs   []string
	runTimeout time.Duration
	workDir    string
	keep       bool
	out        string
	profile    bool
	// placement scenario: simulated member counts, pending JobSet counts,
	// and the burst of JobSets that fit.
	placementMembers []int
	placementPending []int
	placementN       int
	// fleet-scale scenario: member counts, pending counts, each member's
	// slots, the churn's releases and their rate, the idle window.
	fleetMembers     []int
	fleetPending     []int
	fleetSlots       int
	fleetReleases    int
	fleetReleaseRate float64
	fleetIdle        time.Duration
}

// parseOptions parses the flags; code is -1 to go on, else the exit code.
func parseOptions(args []string) (o options, code int) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	var scenarios, rates, contenders, oursArgs, placementMembers, placementPending, fleetMembers, fleetPending string
	fs.IntVar(&o.n, "n", 1000, "JobSets in the member scenario (targets are stated at 1000).")
	fs.IntVar(&o.podsN, "pods-n", 1250, "JobSets in the memory scenario (8 Pods each: 1250 → 10k Pods).")
	fs.IntVar(&o.hubN, "hub-n", 1000, "JobSets of the hub burst (targets are stated at 1000).")
	fs.StringVar(&rates, "rates", "50,half", "Offered rates (JobSets/s) of the hub scenario, comma-separated; \"half\": half of ours' burst throughput.")
	fs.DurationVar(&o.rateFor, "rate-for", 20*time.Second, "How long each offered rate is held.")
	fs.StringVar(&scenarios, "scenarios", "member,pods,hub", "Which scenarios to run: member, pods, hub, placement, fleet-scale.")
	fs.StringVar(&placementMembers, "placement-members", "10,50,100", "Simulated members of the placement scenario, comma-separated: one fleet each.")
	fs.StringVar(&placementPending, "placement-pending", "0,200", "Pending JobSets (that fit nowhere) of the placement scenario, comma-separated: one burst each.")
	fs.IntVar(&o.placementN, "placement-n", 200, "JobSets of each placement burst (they fit).")
	fs.StringVar(&fleetMembers, "fleet-members", "100", "Simulated members of the fleet-scale scenario, comma-separated: one fleet each (e.g. 10,50,100).")
	fs.StringVar(&fleetPending, "fleet-pending", "5000", "JobSets waiting for capacity in the fleet-scale scenario, comma-separated, ascending levels of one fleet (e.g. 1000,5000,10000).")
	fs.IntVar(&o.fleetSlots, "fleet-slots", 50, "JobSets each simulated member of the fleet-scale scenario has room for (100 members × 50 = 5000 running).")
	fs.IntVar(&o.fleetReleases, "fleet-releases", 100, "JobSets the fleet-scale agents finish, at each pending level, to free capacity.")
	fs.Float64Var(&o.fleetReleaseRate, "fleet-release-rate", 5, "Releases per second in the fleet-scale churn.")
	fs.DurationVar(&o.fleetIdle, "fleet-idle", time.Minute, "How long the fleet-scale hub is watched while nothing changes.")
	fs.StringVar(&contenders, "contenders", "raw,raw-controller,upstream,ours,ours-unlimited", "Contenders of the member scenario (raw, raw-controller, upstream, ours, ours-unlimited) and of the hub scenario (ours, multikueue).")
	fs.StringVar(&oursArgs, "ours-args", "", "Extra flags for every jobset-fleet process, space-separated (e.g. -v=4 to debug).")
	fs.DurationVar(&o.runTimeout, "run-timeout", 20*time.Minute, "Give up on one run after this long.")
	fs.StringVar(&o.workDir, "work-dir", "", "Where logs and kubeconfigs go (default: a new temporary directory).")
	fs.BoolVar(&o.keep, "keep", false, "Keep the work dir (logs) even when the run succeeds.")
	fs.StringVar(&o.out, "out", "", "Also write the report (markdown) to this file.")
	fs.BoolVar(&o.profile, "profile", false, "Record CPU profiles (perf) of the controllers, the hub and the agents while they work; reports in the work dir, top lines in the report.")
	if err := fs.Parse(args); err != nil {
		return o, 2
	}
	o.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		switch s = strings.TrimSpace(s); s {
		case "member", "pods", "hub", "placement", "fleet-scale":
			o.scenarios[s] = true
		case "":
		default:
			fmt.Fprintf(os.Stderr, "unknown scenario %q (member, pods, hub, placement, fleet-scale)\n", s)
			return o, 2
		}
	}
	o.contenders = map[string]bool{}
	for _, c := range strings.Split(contenders, ",") {
		o.contenders[strings.TrimSpace(c)] = true
	}
	o.oursArgs = strings.Fields(oursArgs)
	for _, r := range strings.Split(rates, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if r == "half" {
			o.rates = append(o.rates, halfCapacity)
			continue
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "bad rate %q\n", r)
			return o, 2
		}
		o.rates = append(o.rates, v)
	}
	var ok bool
	if o.placementMembers, ok = counts("-placement-members", placementMembers, 1); !ok {
		return o, 2
	}
	if o.placementPending, ok = counts("-placement-pending", placementPending, 0); !ok {
		return o, 2
	}
	if o.fleetMembers, ok = counts("-fleet-members", fleetMembers, 1); !ok {
		return o, 2
	}
	if o.fleetPending, ok = counts("-fleet-pending", fleetPending, 0); !ok {
		return o, 2
	}
	if o.fleetSlots < 1 || o.fleetReleaseRate <= 0 || o.fleetIdle <= 0 {
		fmt.Fprintln(os.Stderr, "-fleet-slots must be at least 1, -fleet-release-rate and -fleet-idle positive")
		return o, 2
	}
	return o, -1
}

// counts parses a comma-separated list of whole numbers of at least least.
func counts(flag, list string, least int) ([]int, bool) {
	var out []int
	for _, v := range strings.Split(list, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < least {
			fmt.Fprintf(os.Stderr, "bad %s value %q\n", flag, v)
			return nil, false
		}
		out = append(out, n)
	}
	return out, true
}
