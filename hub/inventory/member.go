// Package inventory is the hub's view of the fleet: the ClusterProfiles the
// fleet manages, the agents' heartbeat Leases, and from both a Member per
// cluster saying whether it can take work and how much.
package inventory

import (
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
}

// Assessment configures Assess.
type Assessment struct {
	// HeartbeatTimeout is how long a heartbeat stays fresh.
	HeartbeatTimeout time.Duration
	// WatchingSince is when the hub started observing heartbeats; a member
	// never seen is silent since then.
	WatchingSince time.Time
}

// Assess turns a ClusterProfile and the hub's heartbeat observation into a
// Member. It is pure: now is passed in.
func Assess(p *clusterinventory.ClusterProfile, hb Heartbeat, now time.Time, a Assessment) Member {
	m := Member{
		Name:             p.Name,
		ProfileNamespace: p.Namespace,
		Labels:           p.Labels,
	}
	m.Allocatable, m.Free = ParseProperties(p.Status.Properties)
	m.TopologyDomains = ParseTopology(p.Status.Properties)
	m.FleetUsed = parseQuantities(p.Status.Properties, fleet.PropertyFleetUsedPrefix)

	since := a.WatchingSince
	if hb.Seen {
		since = hb.LastChange
	}
	if !since.IsZero() && now.After(since) {
		m.SilentFor = now.Sub(since)
	}

	var problems []string
	switch c := meta.FindStatusCondition(p.Status.Conditions, clusterinventory.ClusterConditionControlPlaneHealthy); {
	case c == nil:
		problems = append(problems, "ControlPlaneHealthy not reported")
	case c.Status != metav1.ConditionTrue:
		msg := fmt.Sprintf("ControlPlaneHealthy is %s", c.Status)
		if c.Message != "" {
			msg += ": " + c.Message
		}
		problems = append(problems, msg)
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
	return m
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

// propertiesFingerprint changes whenever a property name or value changes;
// lastObservedTime alone changing does not count.
func propertiesFingerprint(props []clusterinventory.Property) string {
	parts := make([]string, 0, len(props))
	for _, p := range props {
		parts = append(parts, p.Name+"="+p.Value)
	}
	sort.Strings(parts)
	return strings.Join(parts, "\n")
}

// IsFleetProfile reports whether the fleet manages this ClusterProfile.
func IsFleetProfile(p *clusterinventory.ClusterProfile) bool {
	return p.Spec.ClusterManager.Name == fleet.ClusterManagerName
}
