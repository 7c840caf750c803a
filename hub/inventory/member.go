// Package inventory is the hub's view of the fleet: the ClusterProfiles the
// fleet manages, the agents' heartbeat Leases, and from both a Member per
// cluster saying whether it can take work and how much.
package inventory

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

// Member is the hub's assessment of one member cluster at one instant.
type Member struct {
	// Name is the ClusterProfile name, which is also the cluster's name.
	Name string
	// ProfileNamespace is where the ClusterProfile lives.
	ProfileNamespace string
	// Labels are the ClusterProfile's labels; cluster selectors match them.
	Labels map[string]string
	// Healthy is true when the control plane reports healthy and the agent's
	// heartbeat is fresh. Reason says why not (or "healthy").
	Healthy bool
	Reason  string
	// Allocatable and Free are parsed from the profile's properties
	// (allocatable.<resource>, free.<resource>).
	Allocatable corev1.ResourceList
	Free        corev1.ResourceList
	// FleetUsed is what the pods of fleet JobSets request (fleet-used.<r>):
	// the part of Allocatable-Free the hub accounts for by its dispatches.
	FleetUsed corev1.ResourceList
	// TopologyDomains counts the domains per node label key
	// (topology.<key> properties); a key the agent does not report is absent.
	TopologyDomains map[string]int
	// HeartbeatFresh is true when the agent renewed its Lease within the
	// heartbeat timeout: the status it reports is current.
	HeartbeatFresh bool
	// SilentFor is how long, by the hub's clock, the heartbeat has not changed
	// (or, if never seen, how long the hub has been watching).
	SilentFor time.Duration
	// OutOfService is set when an operator labelled the ClusterProfile
	// out of service: nothing of the fleet runs there any more.
	OutOfService bool
	// Cordoned is set when an operator labelled the ClusterProfile
	// cordoned (fleet.CordonedLabel=true): the member stays healthy and
	// keeps what runs there, but gets no new placements. Draining
	// (fleet.DrainingLabel=true, only with Cordoned) also asks that its
	// JobSets that have not started move elsewhere.
	Cordoned, Draining bool
	// AllowedNamespaces, when not nil, are the only hub namespaces whose
	// JobSets may run on the member (the profile's allowed-namespaces
	// annotation, set at join).
	AllowedNamespaces []string
	// StorageClasses are the member's storage classes by name, true for
	// its default one (storageclass.<name> properties).
	StorageClasses map[string]bool
	// Nodes is the member's node summary (property node-summary): its
	// schedulable nodes grouped by labels and taints, with their free
	// capacity rounded down. Nil when the agent publishes none or one the
	// hub cannot use (Reason then says why; the member stays healthy).
	// Shared between assessments of the same summary: read only.
	Nodes *fleet.NodeSummary
	// Kueue is the member's Kueue quotas (property kueue-quotas): its
	// LocalQueues and the quota their ClusterQueues have free. Nil when
	// the member runs no Kueue or publishes quotas the hub cannot use.
	Kueue *fleet.KueueQuotas
	// Profile is the ClusterProfile the member was assessed from; the hub's
	// optional access to the member is read from its access providers.
	Profile *clusterinventory.ClusterProfile
}

// Lost reports whether the member has been silent for longer than timeout.
func (m Member) Lost(timeout time.Duration) bool { return m.SilentFor > timeout }

// LostIn is how long until the member counts as lost (<= 0: already).
func (m Member) LostIn(timeout time.Duration) time.Duration { return timeout - m.SilentFor }

// Heartbeat is what the hub observed of a member's heartbeat Lease. All
// times are the hub's own: the Lease's renewTime comes from the member's
// clock and is never compared with ours, only watched for change.
type Heartbeat struct {
	// Seen is true once the Lease has been observed at all.
	Seen bool
	// LastChange is when the hub last saw the Lease change (or first saw it).
	LastChange time.Time
	// FenceTimeout is the agent's fence timeout as it publishes it in the
	// Lease's leaseDurationSeconds (zero when not published).
	FenceTimeout time.Duration
}

// Assessment configures Assess.
type Assessment struct {
	// HeartbeatTimeout is how long a heartbeat stays fresh.
	HeartbeatTimeout time.Duration
	// MemberLostTimeout is when a silent member counts as lost. An agent
	// must fence (stop its copies) before that, so an agent whose published
	// fence timeout is not below it gets no work.
	MemberLostTimeout time.Duration
	// WatchingSince is when the hub started observing heartbeats; a member
	// never seen is silent since then.
	WatchingSince time.Time
}

// Bounds on what a member may report: a member's claims must not be able
// to make the hub's memory, conditions or events grow without limit.
const (
	// MaxProperties is the most ClusterProfile properties the hub reads.
	MaxProperties = 512
)

// CordonedReason is what a cordoned member's reason and the placement
// verdicts say.
const CordonedReason = "cordoned by an operator"

// Assess turns a ClusterProfile and the hub's heartbeat observation into a
// Member. It is pure: now is passed in.
func Assess(p *clusterinventory.ClusterProfile, hb Heartbeat, now time.Time, a Assessment) Member {
	m := Member{
		Name:             p.Name,
		ProfileNamespace: p.Namespace,
		Labels:           p.Labels,
		Profile:          p,
	}
	_, m.OutOfService = p.Labels[fleet.OutOfServiceLabel]
	m.Cordoned = p.Labels[fleet.CordonedLabel] == "true"
	m.Draining = m.Cordoned && p.Labels[fleet.DrainingLabel] == "true"
	if v, ok := p.Annotations[fleet.AllowedNamespacesAnnotation]; ok {
		m.AllowedNamespaces = splitList(v)
	}
	props := p.Status.Properties
	if len(props) > MaxProperties {
		props = props[:MaxProperties]
	}
	m.Allocatable, m.Free = ParseProperties(props)
	m.TopologyDomains = ParseTopology(props)
	m.FleetUsed = parseQuantities(props, fleet.PropertyFleetUsedPrefix)
	m.StorageClasses = parseStorageClasses(props)
	nodes, nodesErr := ParseNodeSummary(props)
	m.Nodes = nodes
	kueue, kueueErr := ParseKueueQuotas(props)
	m.Kueue = kueue

	since := a.WatchingSince
	if hb.Seen {
		since = hb.LastChange
	}
	if !since.IsZero() && now.After(since) {
		m.SilentFor = now.Sub(since)
	}

	var problems []string
	if m.OutOfService {
		problems = append(problems, fmt.Sprintf("marked out of service (label %s)", fleet.OutOfServiceLabel))
	}
	switch c := meta.FindStatusCondition(p.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy); {
	case c == nil:
		problems = append(problems, "ControlPlaneHealthy not reported")
	case c.Status != metav1.ConditionTrue:
		msg := fmt.Sprintf("ControlPlaneHealthy is %s", c.Status)
		if c.Message != "" {
			msg += ": " + fleet.Bounded(c.Message, fleet.MaxMemberReason)
		}
		problems = append(problems, msg)
	}
	if len(p.Status.Properties) > MaxProperties {
		problems = append(problems, fmt.Sprintf("reports %d properties, more than the %d the hub reads", len(p.Status.Properties), MaxProperties))
	}
	if want, ok := p.Annotations[fleet.ClusterIDAnnotation]; ok {
		if got := propertyValue(p.Status.Properties, fleet.ClusterIDProperty); got != want {
			// Another cluster (or a copy of the agent elsewhere) speaks for
			// this member: trusting it could run work twice.
			problems = append(problems, fmt.Sprintf("reports cluster ID %q, but joined as %q", fleet.Bounded(got, 64), want))
		}
	}
	if hb.FenceTimeout > 0 && a.MemberLostTimeout > 0 && hb.FenceTimeout >= a.MemberLostTimeout {
		problems = append(problems, fmt.Sprintf("agent fence timeout %s is not below the hub's member-lost timeout %s", hb.FenceTimeout, a.MemberLostTimeout))
	}
	switch {
	case !hb.Seen:
		problems = append(problems, fmt.Sprintf("no heartbeat Lease %s/%s", fleet.MemberNamespace(p.Name), fleet.HeartbeatLeaseName))
	case m.SilentFor > a.HeartbeatTimeout:
		// The timeout, not the elapsed time, keeps the message stable, so
		// conditions quoting it are not rewritten every reconcile.
		problems = append(problems, fmt.Sprintf("heartbeat not renewed within %s", a.HeartbeatTimeout))
	}
	m.HeartbeatFresh = hb.Seen && m.SilentFor <= a.HeartbeatTimeout
	m.Healthy = len(problems) == 0
	m.Reason = "healthy"
	if !m.Healthy {
		m.Reason = strings.Join(problems, "; ")
	}
	// Cordoning is not a health problem: the member still runs and
	// reports what it has, so it only adds to the reason.
	switch {
	case m.Draining:
		m.Reason += fmt.Sprintf("; %s, draining (labels %s, %s)", CordonedReason, fleet.CordonedLabel, fleet.DrainingLabel)
	case m.Cordoned:
		m.Reason += fmt.Sprintf("; %s (label %s)", CordonedReason, fleet.CordonedLabel)
	}
	if nodesErr != nil {
		m.Reason += "; node summary ignored: " + fleet.Bounded(nodesErr.Error(), MaxNodeSummaryReason)
	}
	if kueueErr != nil {
		m.Reason += "; Kueue quotas ignored: " + fleet.Bounded(kueueErr.Error(), MaxNodeSummaryReason)
	}
	return m
}

func propertyValue(props []clusterinventory.Property, name string) string {
	for _, p := range props {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// splitList splits a comma-separated annotation value, dropping blanks.
func splitList(s string) []string {
	out := []string{}
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// ParseProperties reads allocatable.<resource> and free.<resource>
// properties. Values that do not parse as quantities are ignored: a
// malformed report must not make a member look bigger than it is.
func ParseProperties(props []clusterinventory.Property) (allocatable, free corev1.ResourceList) {
	return parseQuantities(props, fleet.PropertyAllocatablePrefix), parseQuantities(props, fleet.PropertyFreePrefix)
}

// parseQuantities reads the properties <prefix><resource> as quantities.
func parseQuantities(props []clusterinventory.Property, prefix string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, p := range props {
		name, ok := strings.CutPrefix(p.Name, prefix)
		if !ok || name == "" {
			continue
		}
		if q, err := resource.ParseQuantity(strings.TrimSpace(p.Value)); err == nil {
			out[corev1.ResourceName(name)] = q
		}
	}
	return out
}

// parseStorageClasses reads storageclass.<name> properties.
func parseStorageClasses(props []clusterinventory.Property) map[string]bool {
	classes := map[string]bool{}
	for _, p := range props {
		if name, ok := strings.CutPrefix(p.Name, fleet.PropertyStorageClassPrefix); ok && name != "" {
			classes[name] = p.Value == fleet.PropertyStorageClassDefault
		}
	}
	return classes
}

// ParseTopology reads topology.<key> properties: domain counts per node
// label key. Malformed counts are ignored.
func ParseTopology(props []clusterinventory.Property) map[string]int {
	domains := map[string]int{}
	for _, p := range props {
		key, ok := strings.CutPrefix(p.Name, fleet.PropertyTopologyPrefix)
		if !ok || key == "" {
			continue
		}
		if n, err := strconv.Atoi(strings.TrimSpace(p.Value)); err == nil && n >= 0 {
			domains[key] = n
		}
	}
	return domains
}

// propertiesFingerprint changes whenever a property name or value changes
// (the node summary's included: a member whose nodes freed up is a changed
// member); lastObservedTime alone changing does not count. It is a hash,
// so the state the inventory keeps and logs per member stays small.
func propertiesFingerprint(props []clusterinventory.Property) string {
	parts := make([]string, 0, len(props))
	for _, p := range props {
		parts = append(parts, p.Name+"="+p.Value)
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(sum[:16])
}

// IsFleetProfile reports whether the fleet manages this ClusterProfile.
func IsFleetProfile(p *clusterinventory.ClusterProfile) bool {
	return p.Spec.ClusterManager.Name == fleet.ClusterManagerName
}
