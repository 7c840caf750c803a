package agent

import (
	"cmp"
	"encoding/json"
	"math/bits"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Bounds of the node summary. A member of 5 000 nodes publishes at most
// MaxNodeSummaryBytes of JSON (16 properties of fleet.MaxPropertyValue).
const (
	// MaxNodeSummaryBytes bounds the summary's JSON.
	MaxNodeSummaryBytes = 16 << 10
	// MaxNodeLabelKeys bounds the label keys groups carry values of.
	MaxNodeLabelKeys = 16
	// MaxNodeGroups bounds the groups; the nodes of the smallest groups
	// beyond it are counted in Omitted.
	MaxNodeGroups = 32
	// MaxFreeEntries bounds a group's free histogram before the byte
	// budget shrinks it further.
	MaxFreeEntries = 16
	// MaxNodeTaints bounds the NoSchedule and NoExecute taints of a node
	// the summary can describe; a node with more is counted in Omitted.
	MaxNodeTaints = 8
	// MaxSummaryResources bounds the resources of a group: cpu, memory and
	// nvidia.com/gpu first, then the others by name. A resource left out
	// counts as none, so placement never counts on it.
	MaxSummaryResources = 16
)

// freeLevels is how finely cpu, memory and other divisible resources are
// reported: free is rounded down to a multiple of 1/freeLevels of the
// group's largest allocatable, so small changes of usage do not change the
// summary, and a wholly free node still reports all it has.
const freeLevels = 16

// maxExactExtended: an extended resource (GPUs, devices) is reported
// exactly while a node of the group has at most this many; larger ones are
// counters better rounded like cpu.
const maxExactExtended = 64

// WellKnownNodeLabelKeys are the node labels the summary always reports:
// what JobSets commonly select nodes by.
var WellKnownNodeLabelKeys = []string{
	corev1.LabelArchStable,
	corev1.LabelOSStable,
	corev1.LabelInstanceTypeStable,
	corev1.LabelTopologyZone,
	corev1.LabelTopologyRegion,
}

// uniquePerNode are label keys whose value differs on (nearly) every node:
// grouping by them would make a group per node, so they are never group
// keys, even when listed in --topology-keys.
var uniquePerNode = []string{corev1.LabelHostname}

// NodeSummaryLabelKeys is the rule for which node label keys the summary
// reports: WellKnownNodeLabelKeys, the agent's topology keys (exclusive
// topology needs to know which nodes share a domain) and the keys the
// operator adds (--node-label-keys: GPU product and other labels users
// select on), sorted, without duplicates and uniquePerNode keys, at most
// MaxNodeLabelKeys (the well-known and topology keys come first).
func NodeSummaryLabelKeys(topologyKeys, extra []string) []string {
	return groupKeys(slices.Concat(WellKnownNodeLabelKeys, topologyKeys, extra))
}

// groupKeys are the first MaxNodeLabelKeys distinct keys that are not
// uniquePerNode, sorted.
func groupKeys(candidates []string) []string {
	var keys []string
	for _, k := range candidates {
		if k != "" && !slices.Contains(uniquePerNode, k) && !slices.Contains(keys, k) && len(keys) < MaxNodeLabelKeys {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// ComputeNodeSummary returns the bounded summary of the schedulable nodes
// (spec.unschedulable false), grouped by their values of labelKeys and their
// NoSchedule and NoExecute taints. A node's free capacity is its allocatable
// minus what the unfinished pods bound to it request (k8s.io/component-
// helpers, as the scheduler computes it; a pod counts 1 of "pods"), rounded
// down: extended resources exactly, cpu, memory and the others to 1/16 of
// the group's largest allocatable. Nodes with the same rounded free share
// one histogram entry.
//
// To stay within the bounds, in this order: a label key with more than
// maxVariedKeyValues values is no longer reported while the groups beyond
// MaxNodeGroups would hold more than a tenth of the nodes (the most varied
// first; a selector on it is then not judged by the summary); the smallest
// groups beyond MaxNodeGroups are
// left out (counted in Omitted); histogram entries merge into one with the
// smaller free of each resource, the byte budget going to the entries that
// keep the most capacity; and if even one entry per group is too large,
// the smallest groups are left out. So the summary may understate a member,
// never overstate it. The same nodes and pods give the same summary, byte
// for byte once marshalled.
//
// Pods not yet bound to a node are not counted against any node: placement
// sees them in the cluster-wide free.* properties.
//
// labelKeys are normally NodeSummaryLabelKeys; uniquePerNode keys and keys
// beyond MaxNodeLabelKeys are dropped.
func ComputeNodeSummary(nodes []corev1.Node, pods []corev1.Pod, labelKeys []string) fleet.NodeSummary {
	keys := groupKeys(labelKeys)
	used := requestsByNode(pods)
	var described []*corev1.Node
	var omitted int32
	for i := range nodes {
		switch n := &nodes[i]; {
		case n.Spec.Unschedulable:
		case len(schedulingTaints(n.Spec.Taints)) > MaxNodeTaints:
			omitted++
		default:
			described = append(described, n)
		}
	}
	list := groupNodes(described, used, keys)
	for len(list) > MaxNodeGroups && 10*nodesIn(list[MaxNodeGroups:]) > len(described) {
		key := mostVariedKey(described, keys)
		if key == "" {
			break
		}
		keys = slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return k == key })
		list = groupNodes(described, used, keys)
	}
	for _, g := range list[min(len(list), MaxNodeGroups):] {
		omitted += int32(len(g.nodes))
	}
	list = list[:min(len(list), MaxNodeGroups)]
	for _, g := range list {
		g.measure()
	}

	// One histogram entry per group first; if even that is too large (long
	// label values, many taints), leave out the smallest groups.
	summary := assemble(keys, list, omitted)
	for len(list) > 0 && summarySize(summary) > MaxNodeSummaryBytes {
		omitted += int32(len(list[len(list)-1].nodes))
		list = list[:len(list)-1]
		summary = assemble(keys, list, omitted)
	}
	// Then give entries, one at a time, to the group where one more keeps
	// the most capacity, while the summary stays within its budget.
	full := make([]bool, len(list))
	for {
		best, bestGain := -1, 0.0
		for i, g := range list {
			if gain := g.nextEntryGain(); !full[i] && gain > bestGain {
				best, bestGain = i, gain
			}
		}
		if best < 0 {
			return summary
		}
		list[best].entries++
		grown := assemble(keys, list, omitted)
		if summarySize(grown) > MaxNodeSummaryBytes {
			list[best].entries--
			full[best] = true
			continue
		}
		summary = grown
	}
}

// maxVariedKeyValues: a label key with more values than this among the
// nodes (racks, instance types of a varied cluster) is dropped from the
// summary, the most varied first, while the groups beyond MaxNodeGroups
// would hold more than a tenth of the nodes. Keys with few values (zone,
// arch, os) are kept and the smallest groups left out.
const maxVariedKeyValues = 4

func nodesIn(groups []*nodeGroup) int {
	n := 0
	for _, g := range groups {
		n += len(g.nodes)
	}
	return n
}

// mostVariedKey is the key with the most values among nodes, if it has
// more than maxVariedKeyValues ("" if none has); ties go to the key first
// in order.
func mostVariedKey(nodes []*corev1.Node, keys []string) string {
	best, most := "", maxVariedKeyValues
	for _, k := range keys {
		values := map[string]bool{}
		for _, n := range nodes {
			if v, ok := n.Labels[k]; ok {
				values[v] = true
			}
		}
		if len(values) > most {
			best, most = k, len(values)
		}
	}
	return best
}

// groupNodes groups nodes by their values of keys and their taints, the
// largest groups first (ties in ID order).
func groupNodes(nodes []*corev1.Node, used map[string]corev1.ResourceList, keys []string) []*nodeGroup {
	groups := map[string]*nodeGroup{}
	for _, n := range nodes {
		taints := schedulingTaints(n.Spec.Taints)
		labels := map[string]string{}
		for _, k := range keys {
			if v, ok := n.Labels[k]; ok {
				labels[k] = v
			}
		}
		id := groupID(labels, taints)
		g := groups[id]
		if g == nil {
			g = &nodeGroup{id: id, labels: labels, taints: taints}
			groups[id] = g
		}
		g.nodes = append(g.nodes, nodeCapacity{allocatable: n.Status.Allocatable, used: used[n.Name]})
	}
	list := make([]*nodeGroup, 0, len(groups))
	for _, g := range groups {
		list = append(list, g)
	}
	slices.SortFunc(list, func(a, b *nodeGroup) int {
		return cmp.Or(cmp.Compare(len(b.nodes), len(a.nodes)), strings.Compare(a.id, b.id))
	})
	return list
}

// NodeSummaryProperties publishes the summary as compact JSON, cut into
// properties of at most fleet.MaxPropertyValue characters named
// fleet.NodeSummaryPart(0), (1), ... An empty summary is still published,
// so the hub can tell "no schedulable nodes" from "not reported".
func NodeSummaryProperties(s fleet.NodeSummary, now metav1.Time) []clusterinventory.Property {
	return jsonProperties(s, fleet.NodeSummaryPart, now)
}

func summarySize(s fleet.NodeSummary) int {
	raw, err := json.Marshal(s)
	if err != nil {
		panic("marshalling a node summary: " + err.Error())
	}
	return len(raw)
}

// requestsByNode sums, per node name, what the unfinished pods bound to it
// request, and one "pods" each.
func requestsByNode(pods []corev1.Pod) map[string]corev1.ResourceList {
	used := map[string]corev1.ResourceList{}
	onePod := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}
	for i := range pods {
		p := &pods[i]
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		sum := used[p.Spec.NodeName]
		if sum == nil {
			sum = corev1.ResourceList{}
			used[p.Spec.NodeName] = sum
		}
		addTo(sum, resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{}))
		addTo(sum, onePod)
	}
	return used
}

// schedulingTaints are the taints that keep Pods off a node (NoSchedule,
// NoExecute), without the time a NoExecute taint was added, sorted and
// without duplicates. PreferNoSchedule only steers the scheduler.
func schedulingTaints(taints []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			out = append(out, corev1.Taint{Key: t.Key, Value: t.Value, Effect: t.Effect})
		}
	}
	slices.SortFunc(out, func(a, b corev1.Taint) int {
		return cmp.Or(strings.Compare(a.Key, b.Key), strings.Compare(string(a.Effect), string(b.Effect)), strings.Compare(a.Value, b.Value))
	})
	return slices.Compact(out)
}

// groupID identifies a group by its label values and taints (JSON sorts
// map keys, so equal groups get equal IDs).
func groupID(labels map[string]string, taints []corev1.Taint) string {
	raw, err := json.Marshal(struct {
		L map[string]string
		T []corev1.Taint
	}{labels, taints})
	if err != nil {
		panic("marshalling a node group key: " + err.Error())
	}
	return string(raw)
}

type nodeCapacity struct {
	allocatable, used corev1.ResourceList
}

type nodeGroup struct {
	id     string
	labels map[string]string
	taints []corev1.Taint
	nodes  []nodeCapacity

	// Filled by measure: the resources reported, how each is counted, the
	// largest allocatable of each and the nodes' distinct rounded free
	// amounts in descending order, all in the resource's unit (unitValue).
	names       []corev1.ResourceName
	exact       []bool
	allocatable []int64
	// histograms[k-1] is the free histogram merged down to k entries, and
	// lost[k-1] the capacity that merging lost (mergeLoss units), for k up
	// to MaxFreeEntries or the distinct amounts.
	histograms [][]freeVector
	lost       []float64
	// entries is how many histogram entries the summary gives the group.
	entries int
}

// nextEntryGain is the capacity one more histogram entry would keep (0
// when the group has them all).
func (g *nodeGroup) nextEntryGain() float64 {
	if g.entries >= len(g.histograms) {
		return 0
	}
	return g.lost[g.entries-1] - g.lost[g.entries]
}

// freeVector is one node's (or a merged entry's) free, per group resource.
type freeVector struct {
	count int32
	free  []int64
}

// measure fills the group's resources, allocatable and rounded free.
func (g *nodeGroup) measure() {
	largest := map[corev1.ResourceName]int64{}
	for _, n := range g.nodes {
		for r, q := range n.allocatable {
			if v := unitValue(r, q); v > largest[r] {
				largest[r] = v
			}
		}
	}
	g.names = summaryResources(largest)
	for _, r := range g.names {
		a := largest[r]
		g.allocatable = append(g.allocatable, a)
		g.exact = append(g.exact, isExtended(r) && a <= maxExactExtended)
	}
	var free []freeVector
	for _, n := range g.nodes {
		v := freeVector{count: 1, free: make([]int64, len(g.names))}
		for i, r := range g.names {
			f := unitValue(r, n.allocatable[r]) - unitValue(r, n.used[r])
			v.free[i] = g.roundDown(i, max(f, 0))
		}
		free = append(free, v)
	}
	slices.SortFunc(free, descendingFree)
	g.histograms, g.lost = mergeFree(compactFree(free), g.allocatable, MaxFreeEntries)
	g.entries = 1
}

// roundDown rounds a node's free amount of resource i down: exact for
// extended resources, else to a multiple of 1/freeLevels of the group's
// largest allocatable, memory-like ones also to whole MiB below that.
func (g *nodeGroup) roundDown(i int, free int64) int64 {
	alloc := g.allocatable[i]
	if g.exact[i] || alloc <= 0 {
		return free
	}
	free = min(free, alloc)
	// level = free*freeLevels/alloc and back, in 128 bits: memory in bytes
	// times 16 may not fit in 64.
	hi, lo := bits.Mul64(uint64(free), freeLevels)
	level, _ := bits.Div64(hi, lo, uint64(alloc))
	hi, lo = bits.Mul64(level, uint64(alloc))
	rounded, _ := bits.Div64(hi, lo, freeLevels)
	v := int64(rounded)
	if level < freeLevels && isBytes(g.names[i]) {
		v -= v % (1 << 20)
	}
	return v
}

// assemble builds the summary of groups, each with its histogram of
// g.entries entries.
func assemble(keys []string, groups []*nodeGroup, omitted int32) fleet.NodeSummary {
	s := fleet.NodeSummary{LabelKeys: keys, Omitted: omitted}
	for _, g := range groups {
		out := fleet.NodeGroup{Nodes: int32(len(g.nodes)), Taints: g.taints}
		if len(g.labels) > 0 {
			out.Labels = g.labels
		}
		out.Allocatable = g.resourceList(g.allocatable)
		for _, v := range g.histograms[min(g.entries, len(g.histograms))-1] {
			out.Free = append(out.Free, fleet.FreeNodes{Count: v.count, Free: g.resourceList(v.free)})
		}
		s.Groups = append(s.Groups, out)
	}
	slices.SortFunc(s.Groups, func(a, b fleet.NodeGroup) int {
		return strings.Compare(groupID(a.Labels, a.Taints), groupID(b.Labels, b.Taints))
	})
	return s
}

// resourceList turns values in the group's units into quantities, leaving
// zeros out (absent means none).
func (g *nodeGroup) resourceList(values []int64) corev1.ResourceList {
	list := corev1.ResourceList{}
	for i, r := range g.names {
		if values[i] > 0 {
			list[r] = unitQuantity(r, values[i])
		}
	}
	if len(list) == 0 {
		return nil
	}
	return list
}

// mergeFree merges entries (distinct, in descending order) down to one:
// at each step the two neighbours whose merge loses the least capacity
// become one entry with the smaller free of each resource, so every node of
// a merged entry has at least what it says. It returns the histograms of
// 1, 2, ... up to most entries (in descending order) and the capacity each
// lost.
func mergeFree(entries []freeVector, allocatable []int64, most int) ([][]freeVector, []float64) {
	histograms := make([][]freeVector, min(len(entries), most))
	lost := make([]float64, len(histograms))
	var loss float64
	entries = slices.Clone(entries)
	for {
		if k := len(entries); k <= most {
			h := slices.Clone(entries)
			slices.SortFunc(h, descendingFree)
			histograms[k-1], lost[k-1] = compactFree(h), loss
		}
		if len(entries) <= 1 {
			return histograms, lost
		}
		best, bestLoss := 0, -1.0
		for i := 0; i+1 < len(entries); i++ {
			if l := mergeLoss(entries[i], entries[i+1], allocatable); bestLoss < 0 || l < bestLoss {
				best, bestLoss = i, l
			}
		}
		a, b := entries[best], entries[best+1]
		merged := freeVector{count: a.count + b.count, free: make([]int64, len(a.free))}
		for r := range merged.free {
			merged.free[r] = min(a.free[r], b.free[r])
		}
		entries = slices.Replace(entries, best, best+2, merged)
		loss += bestLoss
	}
}

func descendingFree(a, b freeVector) int { return slices.Compare(b.free, a.free) }

// compactFree merges neighbours with equal free (entries sorted).
func compactFree(entries []freeVector) []freeVector {
	out := entries[:0]
	for _, e := range entries {
		if n := len(out); n > 0 && slices.Equal(out[n-1].free, e.free) {
			out[n-1].count += e.count
			continue
		}
		out = append(out, e)
	}
	return out
}

// mergeLoss is the capacity two entries lose by merging, in node-sized
// units: per resource, each node's loss as a fraction of the largest
// allocatable.
func mergeLoss(a, b freeVector, allocatable []int64) float64 {
	var loss float64
	for r, alloc := range allocatable {
		if alloc <= 0 {
			continue
		}
		m := min(a.free[r], b.free[r])
		loss += (float64(a.count)*float64(a.free[r]-m) + float64(b.count)*float64(b.free[r]-m)) / float64(alloc)
	}
	return loss
}

// summaryResources are the resources a group reports: those some node has
// (not zero), cpu, memory and nvidia.com/gpu first, then by name, at most
// MaxSummaryResources.
func summaryResources(largest map[corev1.ResourceName]int64) []corev1.ResourceName {
	var names []corev1.ResourceName
	for r, v := range largest {
		if v > 0 {
			names = append(names, r)
		}
	}
	rank := func(r corev1.ResourceName) int {
		if i := slices.Index(alwaysReported, r); i >= 0 {
			return i
		}
		return len(alwaysReported)
	}
	slices.SortFunc(names, func(a, b corev1.ResourceName) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(string(a), string(b)))
	})
	return names[:min(len(names), MaxSummaryResources)]
}

// unitValue is q in the unit the summary counts r in: millicores for cpu,
// whole units (bytes, devices, pods) for the others.
func unitValue(r corev1.ResourceName, q resource.Quantity) int64 {
	if r == corev1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// unitQuantity is unitValue's inverse, in the format people read for r.
func unitQuantity(r corev1.ResourceName, v int64) resource.Quantity {
	switch {
	case r == corev1.ResourceCPU:
		return *resource.NewMilliQuantity(v, resource.DecimalSI)
	case isBytes(r):
		return *resource.NewQuantity(v, resource.BinarySI)
	}
	return *resource.NewQuantity(v, resource.DecimalSI)
}

// isBytes: memory, ephemeral-storage, storage and hugepages-<size>.
func isBytes(r corev1.ResourceName) bool {
	return r == corev1.ResourceMemory || r == corev1.ResourceEphemeralStorage || r == corev1.ResourceStorage ||
		strings.HasPrefix(string(r), corev1.ResourceHugePagesPrefix)
}

// isExtended: a resource outside the kubernetes.io domain (GPUs, devices),
// counted in whole units by the scheduler.
func isExtended(r corev1.ResourceName) bool {
	name := string(r)
	return strings.Contains(name, "/") && !strings.Contains(name, "kubernetes.io/") && !strings.HasPrefix(name, corev1.DefaultResourceRequestsPrefix)
}
