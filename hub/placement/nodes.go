package placement

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// Node-level fit: whether every Pod of a JobSet can run at once on a
// member's nodes, judged from the node summary its agent publishes, with
// the scheduler's own helpers for node selectors, required node affinity
// and taints.
//
// What the summary cannot see is treated as no obstacle, so the hub never
// refuses a member that could run a JobSet: a selector or affinity on a
// label key the summary does not report (or on a node field), a resource
// the member does not report at all, preferred affinity, inter-pod
// affinity, DRA claims. A JobSet that then cannot start is withdrawn after
// the start deadline.

// nodeFit is one member's node summary, prepared for judging Pods.
type nodeFit struct {
	groups []fleet.NodeGroup
	// keys are the summary's label keys.
	keys map[string]bool
	// nodes is, per group, a node with the group's labels and taints, for
	// the scheduler's matchers.
	nodes []*corev1.Node
	// res are the resources judged here: those the groups report, and
	// those the member reports none of at all (so no node has them).
	// Others are left to the member-wide sum check.
	res []corev1.ResourceName
	// alloc is, per group, its largest node per resource in res (milli).
	alloc [][]int64
	// largest is, per resource in res, the largest node of the member.
	largest []int64
}

func newNodeFit(m inventory.Member) *nodeFit {
	s := m.Nodes
	f := &nodeFit{groups: s.Groups, keys: make(map[string]bool, len(s.LabelKeys))}
	for _, k := range s.LabelKeys {
		f.keys[k] = true
	}
	reported := map[corev1.ResourceName]bool{}
	for _, g := range s.Groups {
		for r := range g.Allocatable {
			reported[r] = true
		}
	}
	for r, q := range m.Allocatable {
		if q.IsZero() {
			reported[r] = true
		}
	}
	f.res = slices.Sorted(maps.Keys(reported))
	f.largest = make([]int64, len(f.res))
	for i := range s.Groups {
		g := &s.Groups[i]
		f.nodes = append(f.nodes, &corev1.Node{})
		f.nodes[i].Labels, f.nodes[i].Spec.Taints = g.Labels, g.Taints
		f.alloc = append(f.alloc, f.vector(g.Allocatable))
		for r, v := range f.alloc[i] {
			f.largest[r] = max(f.largest[r], v)
		}
	}
	return f
}

// conditionTaintPrefix marks the taints the node lifecycle controller puts
// on and takes off with a node's conditions (not-ready, unreachable,
// unschedulable, memory-pressure, …).
const conditionTaintPrefix = "node.kubernetes.io/"

// withoutConditionTaints judges the nodes as they are once healthy: a
// node that is not ready now takes no Pod now, but says nothing about
// whether the JobSet could ever run.
func (f *nodeFit) withoutConditionTaints() {
	for i, n := range f.nodes {
		kept := slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(t corev1.Taint) bool { return strings.HasPrefix(t.Key, conditionTaintPrefix) })
		f.nodes[i] = &corev1.Node{ObjectMeta: n.ObjectMeta, Spec: corev1.NodeSpec{Taints: kept}}
	}
}

// vector is l over f.res, in milli-units; what l lacks is 0.
func (f *nodeFit) vector(l corev1.ResourceList) []int64 {
	v := make([]int64, len(f.res))
	for i, r := range f.res {
		if q, ok := l[r]; ok {
			v[i] = q.MilliValue()
		}
	}
	return v
}

// podVector is what one Pod of s takes of a node, over f.res: its requests,
// and one of the node's "pods".
func (f *nodeFit) podVector(s *podSet) []int64 {
	v := f.vector(s.requests)
	if i, ok := slices.BinarySearch(f.res, corev1.ResourcePods); ok {
		v[i] = 1000
	}
	return v
}

// judgeable is the pod's nodeSelector and required node affinity without
// the requirements on label keys the summary does not report: they are
// treated as met. A required-affinity term left with no requirement is
// met by every node, and so then is the whole required affinity.
func (f *nodeFit) judgeable(spec *corev1.PodSpec) (map[string]string, *corev1.Affinity) {
	selector := spec.NodeSelector
	for k := range spec.NodeSelector {
		if !f.keys[k] {
			selector = maps.Clone(spec.NodeSelector)
			maps.DeleteFunc(selector, func(k, _ string) bool { return !f.keys[k] })
			break
		}
	}
	if spec.Affinity == nil || spec.Affinity.NodeAffinity == nil || spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return selector, nil
	}
	var terms []corev1.NodeSelectorTerm
	for _, t := range spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			terms = append(terms, t) // matches no node, for the scheduler too
			continue
		}
		var kept []corev1.NodeSelectorRequirement
		for _, r := range t.MatchExpressions {
			if f.keys[r.Key] {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			return selector, nil
		}
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: kept})
	}
	return selector, &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
}

// untoleratedEffects are the taints that keep a Pod off a node.
func untoleratedEffects(t *corev1.Taint) bool {
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}

// groupsFor says which groups could ever hold a Pod of s (by labels,
// taints, and their largest node), or, when none could, why, in words
// that stay the same from one report to the next.
func (f *nodeFit) groupsFor(s *podSet, req []int64) ([]bool, string) {
	if len(f.groups) == 0 {
		return nil, "has no schedulable nodes"
	}
	selector, affinity := f.judgeable(s.spec)
	bySelector := nodeaffinity.NewRequiredNodeAffinity(selector, nil)
	required := nodeaffinity.NewRequiredNodeAffinity(selector, affinity)
	ok := make([]bool, len(f.groups))
	var selected, matched, fitting int
	var tolerated []int
	var untolerated []string
	for g, node := range f.nodes {
		if m, _ := bySelector.Match(node); !m {
			continue
		}
		selected++
		if m, err := required.Match(node); err != nil || !m {
			continue
		}
		matched++
		// Comparison operators are judged as a member that enables them
		// would: the hub must not refuse what some member can run.
		if t, bad := corev1helpers.FindMatchingUntoleratedTaint(logr.Discard(), node.Spec.Taints, s.spec.Tolerations, untoleratedEffects, true); bad {
			if str := t.ToString(); !slices.Contains(untolerated, str) {
				untolerated = append(untolerated, str)
			}
			continue
		}
		tolerated = append(tolerated, g)
		if fits(f.alloc[g], req) {
			ok[g] = true
			fitting++
		}
	}
	selectorText := labels.SelectorFromSet(selector).String()
	switch {
	case selected == 0:
		return nil, fmt.Sprintf("nodeSelector %s matches no node", selectorText)
	case matched == 0 && len(selector) > 0:
		return nil, fmt.Sprintf("required node affinity matches no node with nodeSelector %s", selectorText)
	case matched == 0:
		return nil, "required node affinity matches no node"
	case len(tolerated) == 0:
		slices.Sort(untolerated)
		where := "on every node"
		if matched < len(f.groups) {
			where = "on every node its selectors match"
		}
		if len(untolerated) == 1 {
			return nil, fmt.Sprintf("Pods do not tolerate taint %s, %s", untolerated[0], where)
		}
		return nil, fmt.Sprintf("Pods do not tolerate taints %s; one is %s", listBounded(untolerated, 3), where)
	case fitting == 0:
		return nil, f.tooLarge(s, req, tolerated, len(tolerated) < len(f.groups))
	}
	return ok, ""
}

// tooLarge says why no node of groups holds one Pod of s: the resource it
// needs more of than the largest of those nodes has, or that no node has
// all of it together.
func (f *nodeFit) tooLarge(s *podSet, req []int64, groups []int, restricted bool) string {
	node := "its largest node"
	if restricted {
		node = "its largest node the Pods may run on"
	}
	var asked []string
	for r, name := range f.res {
		if req[r] == 0 || name == corev1.ResourcePods {
			continue
		}
		asked = append(asked, quantity(name, req[r])+" "+string(name))
		most := int64(0)
		for _, g := range groups {
			most = max(most, f.alloc[g][r])
		}
		if req[r] > most {
			return fmt.Sprintf("needs %s %s in one Pod; %s has %s", quantity(name, req[r]), name, node, quantity(name, most))
		}
	}
	if len(asked) == 0 { // only "pods": the nodes take no more Pods at all
		return "its nodes take no Pods"
	}
	return fmt.Sprintf("needs %s in one Pod; no node has all of it", strings.Join(asked, " and "))
}

// quantity formats milli-units of a resource as users write them.
func quantity(name corev1.ResourceName, milli int64) string {
	q := resource.NewMilliQuantity(milli, resource.DecimalSI)
	if name == corev1.ResourceMemory || name == corev1.ResourceEphemeralStorage || strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
		q = resource.NewQuantity(milli/1000, resource.BinarySI)
	}
	return q.String()
}

func listBounded(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}

func fits(free, req []int64) bool {
	for r := range req {
		if req[r] > free[r] {
			return false
		}
	}
	return true
}

// bin is nodes of one group that have the same free resources.
type bin struct {
	group int
	nodes int64
	free  []int64
}

func (f *nodeFit) bins() []bin {
	var bins []bin
	for g := range f.groups {
		for _, fr := range f.groups[g].Free {
			if fr.Count > 0 {
				bins = append(bins, bin{group: g, nodes: int64(fr.Count), free: f.vector(fr.Free)})
			}
		}
	}
	return bins
}

func cloneBins(bins []bin) []bin {
	out := make([]bin, len(bins))
	for i, b := range bins {
		out[i] = bin{group: b.group, nodes: b.nodes, free: slices.Clone(b.free)}
	}
	return out
}

// perNode is how many Pods asking req fit on a node with free, at most
// limit.
func perNode(free, req []int64, limit int64) int64 {
	k := limit
	for r := range req {
		if req[r] > 0 {
			k = min(k, max(free[r], 0)/req[r])
		}
	}
	return k
}

// place puts up to n Pods asking req on the nodes of bins whose group is
// allowed, consuming their free resources, and returns the bins after and
// how many Pods it placed. It fills the nodes with the least free of the
// Pod's dominant resource first, keeping large nodes for large Pods.
func place(bins []bin, allowed func(group int) bool, req []int64, dominant int, n int64) ([]bin, int64) {
	var order []int
	for i := range bins {
		if bins[i].nodes > 0 && allowed(bins[i].group) {
			order = append(order, i)
		}
	}
	if dominant >= 0 {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(bins[a].free[dominant], bins[b].free[dominant]) })
	}
	placed := int64(0)
	for _, i := range order {
		want := n - placed
		if want == 0 {
			break
		}
		k := perNode(bins[i].free, req, want)
		if k == 0 {
			continue
		}
		if bins[i].nodes <= want/k { // every node takes k
			take(bins[i].free, req, k)
			placed += k * bins[i].nodes
			continue
		}
		// want/k nodes take k, one node the rest, the others none.
		g, orig, nodes := bins[i].group, slices.Clone(bins[i].free), bins[i].nodes
		full, rest := want/k, want%k
		bins[i].nodes = full
		take(bins[i].free, req, k)
		nodes -= full
		if rest > 0 {
			partial := slices.Clone(orig)
			take(partial, req, rest)
			bins = append(bins, bin{group: g, nodes: 1, free: partial})
			nodes--
		}
		if nodes > 0 {
			bins = append(bins, bin{group: g, nodes: nodes, free: orig})
		}
		placed = n
	}
	return bins, placed
}

func take(free, req []int64, k int64) {
	for r := range req {
		free[r] -= k * req[r]
	}
}

// dominant is the resource of req largest relative to the member's
// largest node (-1: it asks for nothing judged), and that share.
func (f *nodeFit) dominant(req []int64) (int, float64) {
	best, share := -1, 0.0
	for r := range req {
		if req[r] == 0 || f.largest[r] == 0 {
			continue
		}
		if s := float64(req[r]) / float64(f.largest[r]); best < 0 || s > share {
			best, share = r, s
		}
	}
	return best, share
}

// judgedSet is a pod set with what the member's summary says of it.
type judgedSet struct {
	*podSet
	req      []int64
	eligible []bool
	dominant int
	share    float64
	// exclusive is true when its Jobs each need a domain of its
	// exclusive key and the summary reports that key.
	exclusive bool
}

// neverFits says why no node of the member could ever hold a Pod of s ("":
// some node could).
func (f *nodeFit) neverFits(s *podSet) string {
	_, why := f.groupsFor(s, f.podVector(s))
	return why
}

// shortfall says why the member's nodes cannot hold every Pod of the
// JobSet at once ("" when they can). named prefixes a reason about one
// replicatedJob with its name (for JobSets with several).
func (f *nodeFit) shortfall(sets []podSet, named bool) string {
	prefix := func(s *podSet, why string) string {
		if named {
			return fmt.Sprintf("replicatedJob %s: %s", s.name, why)
		}
		return why
	}
	judged := make([]judgedSet, len(sets))
	for i := range sets {
		j := judgedSet{podSet: &sets[i], req: f.podVector(&sets[i])}
		var why string
		if j.eligible, why = f.groupsFor(j.podSet, j.req); why != "" {
			return prefix(j.podSet, why)
		}
		j.dominant, j.share = f.dominant(j.req)
		j.exclusive = j.exclusiveKey != "" && f.keys[j.exclusiveKey]
		judged[i] = j
	}
	need := map[string]int{}
	for _, j := range judged {
		if j.exclusive {
			need[j.exclusiveKey] += int(j.jobs)
		}
	}
	domains := map[string][][]int{}
	for _, key := range slices.Sorted(maps.Keys(need)) {
		domains[key] = f.domains(key)
		if have := len(domains[key]); have < need[key] {
			return fmt.Sprintf("has %d %q topology domains, %d exclusive Jobs need one each", have, key, need[key])
		}
	}

	// Exclusive Jobs first (they are the most constrained), then the
	// largest Pods.
	slices.SortStableFunc(judged, func(a, b judgedSet) int {
		if a.exclusive != b.exclusive {
			if a.exclusive {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.share, a.share)
	})
	bins := f.bins()
	claimed := make([]bool, len(f.groups))
	var total, placed int64
	var jobsShort, jobsNeeded int
	shortKey := ""
	for _, j := range judged {
		total += j.pods()
		if !j.exclusive {
			var n int64
			bins, n = place(bins, func(g int) bool { return j.eligible[g] && !claimed[g] }, j.req, j.dominant, j.pods())
			placed += n
			continue
		}
		jobsNeeded += int(j.jobs)
		for job := int64(0); job < j.jobs; job++ {
			var ok bool
			if bins, ok = f.placeJob(bins, domains[j.exclusiveKey], claimed, &j); ok {
				placed += j.podsPerJob
				continue
			}
			// The Jobs left are alike: none of them fits either.
			jobsShort += int(j.jobs - job)
			if shortKey == "" {
				shortKey = j.exclusiveKey
			}
			break
		}
	}
	switch {
	case jobsShort > 0:
		return fmt.Sprintf("only %d of %d exclusive Jobs fit at once, each in a %q topology domain of its own", jobsNeeded-jobsShort, jobsNeeded, shortKey)
	case placed < total:
		return fmt.Sprintf("only %d of %d Pods fit at once", placed, total)
	}
	return ""
}

// domains are the topology domains of a label key (its values), each as
// its groups, smallest (by nodes) first.
func (f *nodeFit) domains(key string) [][]int {
	byValue := map[string][]int{}
	for g := range f.groups {
		if v, ok := f.groups[g].Labels[key]; ok {
			byValue[v] = append(byValue[v], g)
		}
	}
	values := slices.Sorted(maps.Keys(byValue))
	nodes := func(v string) (n int32) {
		for _, g := range byValue[v] {
			n += f.groups[g].Nodes
		}
		return n
	}
	slices.SortStableFunc(values, func(a, b string) int { return cmp.Compare(nodes(a), nodes(b)) })
	out := make([][]int, 0, len(values))
	for _, v := range values {
		out = append(out, byValue[v])
	}
	return out
}

// placeJob puts one exclusive Job's Pods in the first domain no other Job
// holds that has room for all of them, and claims that domain.
func (f *nodeFit) placeJob(bins []bin, domains [][]int, claimed []bool, j *judgedSet) ([]bin, bool) {
	for _, domain := range domains {
		if slices.ContainsFunc(domain, func(g int) bool { return claimed[g] }) {
			continue
		}
		inDomain := func(g int) bool { return j.eligible[g] && slices.Contains(domain, g) }
		trial, n := place(cloneBins(bins), inDomain, j.req, j.dominant, j.podsPerJob)
		if n < j.podsPerJob {
			continue
		}
		for _, g := range domain {
			claimed[g] = true
		}
		return trial, true
	}
	return bins, false
}

// Unrunnable is a replicatedJob whose Pods some members could never hold,
// whatever ran there: a Pod larger than every node, or selectors,
// required affinity or tolerations that match no node.
type Unrunnable struct {
	// Index is the replicatedJob's index in spec.replicatedJobs.
	Index int
	// Members are the members (with a node summary) that could never hold
	// its Pods, each with why.
	Members []Verdict
}

// CouldEverRun judges, with the same rules as Place, whether some member
// could ever run every Pod of the JobSet: it returns nil if so, and
// otherwise, per replicatedJob that cannot run somewhere, where and why.
// A member that publishes no node summary cannot be judged, so while one
// is in the fleet nothing is unrunnable. The cluster selector and pinned cluster are not taken
// into account: members' labels change, their nodes are what is judged.
func CouldEverRun(js *jobset.JobSet, members []inventory.Member) []Unrunnable {
	sets := jobSetPodSets(js)
	byIndex := map[int]*Unrunnable{}
	for _, m := range members {
		if m.Nodes == nil {
			// An agent that publishes no summary cannot be judged: it
			// may run it.
			return nil
		}
		f := newNodeFit(m)
		f.withoutConditionTaints()
		runs := true
		for i := range sets {
			if why := f.neverFits(&sets[i]); why != "" {
				runs = false
				u := byIndex[sets[i].index]
				if u == nil {
					u = &Unrunnable{Index: sets[i].index}
					byIndex[sets[i].index] = u
				}
				u.Members = append(u.Members, Verdict{Cluster: m.Name, Reason: why})
			}
		}
		if runs {
			return nil
		}
	}
	if len(byIndex) == 0 {
		return nil
	}
	out := make([]Unrunnable, 0, len(byIndex))
	for _, i := range slices.Sorted(maps.Keys(byIndex)) {
		out = append(out, *byIndex[i])
	}
	return out
}
