// Package placement decides which member cluster runs a JobSet: it filters
// the members (health, cordon, pinned cluster, cluster selector, resource fit net of
// the hub's own not-yet-reported commitments), scores the rest with a
// pluggable policy, and explains the outcome for every cluster considered.
// Everything here is a pure function of its inputs.
package placement

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// Policy scores the members that fit.
type Policy string

const (
	// Spread prefers the member with the largest fraction left free after
	// placement, so load evens out across the fleet.
	Spread Policy = "spread"
	// BinPack prefers the member with the smallest fraction left free after
	// placement, keeping other members empty for big JobSets.
	BinPack Policy = "binpack"
)

// ParsePolicy parses a --placement-policy value.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(s)); p {
	case Spread, BinPack:
		return p, nil
	}
	return "", fmt.Errorf("unknown placement policy %q: want %q or %q", s, Spread, BinPack)
}

// Request is the input of Place.
type Request struct {
	JobSet  *jobset.JobSet
	Members []inventory.Member
	// Committed is, per member, what the hub dispatched there after the
	// member last reported its free resources.
	Committed map[string]corev1.ResourceList
	// Excluded members are not candidates; the value says why (e.g. the
	// member the JobSet was lost on).
	Excluded map[string]string
	// QueueDemand is, per member and per LocalQueue of it
	// ("namespace/name"), what the hub dispatched there that the member's
	// Kueue quotas do not show yet: copies not yet reported and copies
	// waiting in the member's queue (QueueShortfall).
	QueueDemand map[string]map[string]corev1.ResourceList
	// Load is, per member, how many unfinished JobSets the hub has placed
	// there. It decides between members that resources cannot tell apart,
	// such as for JobSets that request nothing.
	Load   map[string]int
	Policy Policy
	// DeniedNamespaces are hub namespaces whose JobSets run nowhere, in
	// addition to fleet.BuiltinDeniedNamespaces (admission rejects them
	// first; this holds for JobSets admitted before a policy changed, or
	// past a webhook that did not run).
	DeniedNamespaces []string
}

// Verdict is the outcome for one member.
type Verdict struct {
	Cluster string
	Fits    bool
	// Score is the fraction of the scarcest requested resource left free
	// after placement (only meaningful when Fits).
	Score float64
	// Load is the member's unfinished JobSets placed by the hub.
	Load   int
	Reason string
	// QueueShortfall says why the member's Kueue cannot admit the JobSet
	// now (kueue.go); such a member is ranked after those whose can.
	QueueShortfall string
}

// Result is a placement decision with its explanation.
type Result struct {
	// Cluster is the chosen member, empty when none fits.
	Cluster string
	// Requests is the total the JobSet asks for.
	Requests corev1.ResourceList
	// Verdicts has one entry per member considered, by name.
	Verdicts []Verdict
	// Note explains a problem outside any member, e.g. a pinned cluster that
	// is not in the fleet.
	Note string
}

// Reason is the chosen member's verdict reason ("" when none was chosen).
func (r Result) Reason() string {
	for _, v := range r.Verdicts {
		if v.Cluster == r.Cluster {
			return v.Reason
		}
	}
	return ""
}

// MaxExplain bounds Explain: it goes into conditions, events and the
// PlacementDecision, whose limits a fleet of many members would pass.
const MaxExplain = 4096

// Explain lists the members' verdicts, "m1: <reason>; m2: <reason>", each
// reason bounded by fleet.MaxMemberReason and the whole by MaxExplain
// ("… and N more members").
func (r Result) Explain() string {
	if r.Note == "" && len(r.Verdicts) == 0 {
		return "no member clusters in the fleet"
	}
	var b strings.Builder
	add := func(part string) {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(part)
	}
	if r.Note != "" {
		add(fleet.Bounded(r.Note, fleet.MaxMemberReason))
	}
	for i, v := range r.Verdicts {
		part := v.Cluster + ": " + fleet.Bounded(v.Reason, fleet.MaxMemberReason)
		// Room for this part and for the longest possible tail.
		if b.Len()+len(part)+len("; … and 100000 more members") > MaxExplain {
			add(fmt.Sprintf("… and %d more members", len(r.Verdicts)-i))
			break
		}
		add(part)
	}
	return b.String()
}

// Place filters and scores the members for a JobSet. It fails only on a
// malformed selector annotation (admission rejects those, so this guards
// objects stored before the webhook existed).
func Place(req Request) (Result, error) {
	js := req.JobSet
	sets := jobSetPodSets(js)
	res := Result{Requests: totalRequests(sets)}
	selector := labels.Everything()
	if s, ok := js.Annotations[fleet.ClusterSelectorAnnotation]; ok {
		parsed, err := labels.Parse(s)
		if err != nil {
			return res, fmt.Errorf("annotation %s: %w", fleet.ClusterSelectorAnnotation, err)
		}
		selector = parsed
	}
	if fleet.NamespaceDenied(js.Namespace, req.DeniedNamespaces) {
		res.Note = fmt.Sprintf("the fleet does not run JobSets of namespace %s on member clusters", js.Namespace)
		return res, nil
	}
	pinned := js.Annotations[fleet.PinnedClusterAnnotation]
	exclusive := exclusiveJobs(sets)
	if pinned != "" && !containsMember(req.Members, pinned) {
		res.Note = fmt.Sprintf("pinned cluster %q is not in the fleet", pinned)
	}

	// refusal says why a member cannot take the JobSet, before resources
	// are weighed ("" when it can).
	refusal := func(m inventory.Member) string {
		switch {
		case req.Excluded[m.Name] != "":
			return req.Excluded[m.Name]
		case pinned != "" && m.Name != pinned:
			return fmt.Sprintf("not the pinned cluster %q", pinned)
		case !selector.Matches(labels.Set(m.Labels)):
			return fmt.Sprintf("labels do not match selector %q", selector.String())
		case !m.Healthy:
			return "unhealthy: " + m.Reason
		case m.Cordoned:
			// What runs there stays; only new work goes elsewhere.
			return inventory.CordonedReason
		case m.AllowedNamespaces != nil && !slices.Contains(m.AllowedNamespaces, js.Namespace):
			return fmt.Sprintf("namespace %q is not among the namespaces allowed on this member", js.Namespace)
		}
		if why := topologyShortfall(m, exclusive); why != "" {
			return why
		}
		if why := storageShortfall(m, js); why != "" {
			return why
		}
		if m.Nodes != nil {
			// Node by node first; the member-wide sums below still count
			// what the hub dispatched that the summary does not show yet.
			return newNodeFit(m).shortfall(sets, len(sets) > 1)
		}
		return ""
	}
	for _, m := range req.Members {
		v := Verdict{Cluster: m.Name}
		if why := refusal(m); why != "" {
			v.Reason = why
		} else {
			v = fit(m, res.Requests, req.Committed[m.Name])
			v.Load = req.Load[m.Name]
			if v.QueueShortfall = QueueShortfall(m, js, res.Requests, req.QueueDemand[m.Name]); v.Fits && v.QueueShortfall != "" {
				v.Reason += "; ranked after members whose Kueue can admit it now: " + v.QueueShortfall
			}
		}
		res.Verdicts = append(res.Verdicts, v)
	}

	byCount := len(res.Requests) == 0
	best := -1
	for i, v := range res.Verdicts {
		if !v.Fits {
			continue
		}
		if best < 0 || queueRanked(req.Policy, byCount, v, res.Verdicts[best]) {
			best = i
		}
	}
	if best >= 0 {
		res.Cluster = res.Verdicts[best].Cluster
		res.Verdicts[best].Reason = fmt.Sprintf("chosen by %s policy; %s", policyName(req.Policy), res.Verdicts[best].Reason)
	}
	return res, nil
}

func policyName(p Policy) Policy {
	if p == "" {
		return Spread
	}
	return p
}

// better reports whether a beats b under the policy. A JobSet that requests
// nothing leaves every member's free resources as they were, so it is
// placed by how many JobSets each member already runs; otherwise the load
// only breaks ties in the score. Remaining ties go to the name that sorts
// first, so decisions are reproducible.
func better(p Policy, byCount bool, a, b Verdict) bool {
	const eps = 1e-9
	fewer := func() bool { // a has the better load under p
		if p == BinPack {
			return a.Load > b.Load
		}
		return a.Load < b.Load
	}
	switch {
	case byCount && a.Load != b.Load:
		return fewer()
	case math.Abs(a.Score-b.Score) >= eps && p == BinPack:
		return a.Score < b.Score
	case math.Abs(a.Score-b.Score) >= eps:
		return a.Score > b.Score
	case a.Load != b.Load:
		return fewer()
	default:
		return a.Cluster < b.Cluster
	}
}

// fit checks every requested resource against free minus committed and
// scores what would be left.
func fit(m inventory.Member, requests, committed corev1.ResourceList) Verdict {
	v := Verdict{Cluster: m.Name, Fits: true}
	var short []string
	for _, name := range sortedNames(requests) {
		want := requests[name]
		avail := available(m.Free, committed, name)
		if avail.Cmp(want) < 0 {
			msg := fmt.Sprintf("needs %s %s, %s free", name, want.String(), avail.String())
			if c, ok := committed[name]; ok && !c.IsZero() {
				msg += fmt.Sprintf(" after %s committed to recent dispatches", c.String())
			}
			short = append(short, msg)
		}
	}
	if len(short) > 0 {
		return Verdict{Cluster: m.Name, Reason: "insufficient resources: " + strings.Join(short, ", ")}
	}

	// Score on the scarcest resource the JobSet asks for; a JobSet asking
	// nothing is scored on everything the member reports.
	scored := sortedNames(requests)
	if len(scored) == 0 {
		scored = sortedNames(m.Allocatable)
	}
	v.Score, v.Reason = 0, "fits; no allocatable resources reported"
	first := true
	for _, name := range scored {
		alloc, ok := m.Allocatable[name]
		if !ok || alloc.IsZero() {
			continue
		}
		left := available(m.Free, committed, name)
		if want, ok := requests[name]; ok {
			left.Sub(want)
		}
		frac := left.AsApproximateFloat64() / alloc.AsApproximateFloat64()
		if first || frac < v.Score {
			v.Score = frac
			v.Reason = fmt.Sprintf("fits; %.0f%% of %s free after placement (%s of %s)", 100*frac, name, left.String(), alloc.String())
			first = false
		}
	}
	return v
}

func available(free, committed corev1.ResourceList, name corev1.ResourceName) resource.Quantity {
	q := free[name].DeepCopy()
	if c, ok := committed[name]; ok {
		q.Sub(c)
	}
	return q
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return names[i] < names[j] })
	return names
}

func containsMember(ms []inventory.Member, name string) bool {
	for _, m := range ms {
		if m.Name == name {
			return true
		}
	}
	return false
}

// topologyShortfall says why a member has too few topology domains for the
// JobSet's exclusive Jobs, or "" when it has enough. Keys the member's node
// summary reports are judged node by node instead (nodeFit).
func topologyShortfall(m inventory.Member, need map[string]int) string {
	for _, key := range slices.Sorted(maps.Keys(need)) {
		if m.Nodes != nil && slices.Contains(m.Nodes.LabelKeys, key) {
			continue
		}
		have, reported := m.TopologyDomains[key]
		switch {
		case !reported:
			return fmt.Sprintf("does not report %q topology domains (agent --topology-keys); %d exclusive Jobs need one each", key, need[key])
		case have < need[key]:
			return fmt.Sprintf("has %d %q topology domains, %d exclusive Jobs need one each", have, key, need[key])
		}
	}
	return ""
}

// storageShortfall says why a member cannot provision the JobSet's
// volumeClaimPolicies claims (they are created on the member that runs
// it), or "" when it can.
func storageShortfall(m inventory.Member, js *jobset.JobSet) string {
	hasDefault := false
	for _, isDefault := range m.StorageClasses {
		hasDefault = hasDefault || isDefault
	}
	for i, vcp := range js.Spec.VolumeClaimPolicies {
		for j, claim := range vcp.Templates {
			class := ptr.Deref(claim.Spec.StorageClassName, "")
			switch {
			case claim.Spec.StorageClassName == nil && !hasDefault:
				return fmt.Sprintf("has no default storage class for volumeClaimPolicies[%d].templates[%d] (%s)", i, j, claim.Name)
			case class != "" && !hasKey(m.StorageClasses, class):
				return fmt.Sprintf("has no storage class %q for volumeClaimPolicies[%d].templates[%d] (%s)", class, i, j, claim.Name)
			}
		}
	}
	return ""
}

func hasKey(m map[string]bool, k string) bool {
	_, ok := m[k]
	return ok
}
