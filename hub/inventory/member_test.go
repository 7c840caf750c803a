package inventory

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
)

func profile(healthy metav1.ConditionStatus, props ...string) *clusterinventory.ClusterProfile {
	p := &clusterinventory.ClusterProfile{ObjectMeta: metav1.ObjectMeta{Name: "m1", Namespace: "fleet-system"}}
	if healthy != "" {
		p.Status.Conditions = []metav1.Condition{{Type: clusterinventory.ClusterConditionControlPlaneHealthy, Status: healthy, Message: "apiserver down"}}
	}
	for i := 0; i+1 < len(props); i += 2 {
		p.Status.Properties = append(p.Status.Properties, clusterinventory.Property{Name: props[i], Value: props[i+1]})
	}
	return p
}

func TestAssess(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := Assessment{HeartbeatTimeout: 30 * time.Second, WatchingSince: t0}
	fresh := Heartbeat{Seen: true, LastChange: t0.Add(50 * time.Second)}
	now := t0.Add(60 * time.Second)
	tests := []struct {
		name        string
		profile     *clusterinventory.ClusterProfile
		hb          Heartbeat
		wantHealthy bool
		wantReason  []string
		wantSilent  time.Duration
	}{
		{"healthy and fresh", profile(metav1.ConditionTrue), fresh, true, []string{"healthy"}, 10 * time.Second},
		{"control plane unhealthy", profile(metav1.ConditionFalse), fresh, false, []string{"ControlPlaneHealthy is False: apiserver down"}, 10 * time.Second},
		{"condition missing", profile(""), fresh, false, []string{"ControlPlaneHealthy not reported"}, 10 * time.Second},
		{"heartbeat stale", profile(metav1.ConditionTrue), Heartbeat{Seen: true, LastChange: t0.Add(20 * time.Second)}, false, []string{"heartbeat not renewed within 30s"}, 40 * time.Second},
		{"heartbeat exactly at timeout is fresh", profile(metav1.ConditionTrue), Heartbeat{Seen: true, LastChange: t0.Add(30 * time.Second)}, true, []string{"healthy"}, 30 * time.Second},
		{"never seen: silent since watching", profile(metav1.ConditionTrue), Heartbeat{}, false, []string{"no heartbeat Lease fleet-member-m1/agent-heartbeat"}, 60 * time.Second},
		{"both problems listed", profile(metav1.ConditionUnknown), Heartbeat{}, false, []string{"ControlPlaneHealthy is Unknown", "no heartbeat Lease"}, 60 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Assess(tc.profile, tc.hb, now, a)
			if m.Healthy != tc.wantHealthy {
				t.Errorf("Healthy = %t, want %t (reason %q)", m.Healthy, tc.wantHealthy, m.Reason)
			}
			for _, w := range tc.wantReason {
				if !strings.Contains(m.Reason, w) {
					t.Errorf("Reason %q does not contain %q", m.Reason, w)
				}
			}
			if m.SilentFor != tc.wantSilent {
				t.Errorf("SilentFor = %s, want %s", m.SilentFor, tc.wantSilent)
			}
		})
	}
}

// TestAssessTrust: what an operator or join set on the profile, and what
// the agent claims, decide whether the hub gives the member work.
func TestAssessTrust(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Minute)
	a := Assessment{HeartbeatTimeout: 30 * time.Second, MemberLostTimeout: 60 * time.Second, WatchingSince: t0}
	fresh := Heartbeat{Seen: true, LastChange: now}
	withLabel := func(p *clusterinventory.ClusterProfile, k, v string) *clusterinventory.ClusterProfile {
		p.Labels = map[string]string{k: v}
		return p
	}
	withAnnotation := func(p *clusterinventory.ClusterProfile, k, v string) *clusterinventory.ClusterProfile {
		p.Annotations = map[string]string{k: v}
		return p
	}
	many := profile(metav1.ConditionTrue)
	for i := range MaxProperties + 1 {
		many.Status.Properties = append(many.Status.Properties, clusterinventory.Property{Name: fmt.Sprintf("p%d", i), Value: "1"})
	}
	tests := []struct {
		name        string
		profile     *clusterinventory.ClusterProfile
		hb          Heartbeat
		wantHealthy bool
		wantReason  string
	}{
		{"out of service", withLabel(profile(metav1.ConditionTrue), fleet.OutOfServiceLabel, "true"), fresh, false, "marked out of service"},
		{"cluster ID matches", withAnnotation(profile(metav1.ConditionTrue, fleet.ClusterIDProperty, "uid-1"), fleet.ClusterIDAnnotation, "uid-1"), fresh, true, "healthy"},
		{"cluster ID differs", withAnnotation(profile(metav1.ConditionTrue, fleet.ClusterIDProperty, "uid-2"), fleet.ClusterIDAnnotation, "uid-1"), fresh, false, `reports cluster ID "uid-2", but joined as "uid-1"`},
		{"cluster ID not reported", withAnnotation(profile(metav1.ConditionTrue), fleet.ClusterIDAnnotation, "uid-1"), fresh, false, `reports cluster ID ""`},
		{"fence timeout below lost timeout", profile(metav1.ConditionTrue), Heartbeat{Seen: true, LastChange: now, FenceTimeout: 30 * time.Second}, true, "healthy"},
		{"fence timeout not below lost timeout", profile(metav1.ConditionTrue), Heartbeat{Seen: true, LastChange: now, FenceTimeout: 60 * time.Second}, false, "agent fence timeout 1m0s is not below the hub's member-lost timeout 1m0s"},
		{"too many properties", many, fresh, false, "reports 513 properties"},
		{"cordoned stays healthy", withLabel(profile(metav1.ConditionTrue), fleet.CordonedLabel, "true"), fresh, true, "healthy; cordoned by an operator (label " + fleet.CordonedLabel + ")"},
		{"cordoned and unhealthy", withLabel(profile(metav1.ConditionFalse), fleet.CordonedLabel, "true"), fresh, false, "apiserver down; cordoned by an operator"},
		{"cordoned=false is not cordoned", withLabel(profile(metav1.ConditionTrue), fleet.CordonedLabel, "false"), fresh, true, "healthy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Assess(tc.profile, tc.hb, now, a)
			if m.Healthy != tc.wantHealthy || !strings.Contains(m.Reason, tc.wantReason) {
				t.Errorf("Healthy = %t (%q), want %t with %q", m.Healthy, m.Reason, tc.wantHealthy, tc.wantReason)
			}
		})
	}
	long := profile(metav1.ConditionFalse)
	long.Status.Conditions[0].Message = strings.Repeat("x", 10000)
	if m := Assess(long, fresh, now, a); len(m.Reason) > fleet.MaxMemberReason+100 {
		t.Errorf("a member's message must be bounded, got %d bytes", len(m.Reason))
	}
	allowed := withAnnotation(profile(metav1.ConditionTrue), fleet.AllowedNamespacesAnnotation, "team-a, team-b,")
	if m := Assess(allowed, fresh, now, a); !slices.Equal(m.AllowedNamespaces, []string{"team-a", "team-b"}) {
		t.Errorf("AllowedNamespaces = %v", m.AllowedNamespaces)
	}
	if m := Assess(profile(metav1.ConditionTrue), fresh, now, a); m.AllowedNamespaces != nil {
		t.Errorf("no annotation must mean no restriction, got %v", m.AllowedNamespaces)
	}
}

func TestMemberLost(t *testing.T) {
	m := Member{SilentFor: 61 * time.Second}
	if !m.Lost(time.Minute) || m.LostIn(time.Minute) != -time.Second {
		t.Errorf("61s silent with a 60s timeout must be lost")
	}
	m.SilentFor = 59 * time.Second
	if m.Lost(time.Minute) || m.LostIn(time.Minute) != time.Second {
		t.Errorf("59s silent with a 60s timeout must not be lost yet")
	}
}

func TestParseProperties(t *testing.T) {
	p := profile(metav1.ConditionTrue,
		"allocatable.cpu", "64", "free.cpu", "12500m",
		"allocatable.memory", "256Gi", "free.memory", "100Gi",
		"free.nvidia.com/gpu", "8",
		"free.bogus", "lots", // ignored: not a quantity
		"version", "1.36", // ignored: not a resource property
	)
	alloc, free := ParseProperties(p.Status.Properties)
	want := map[string]string{"cpu": "12500m", "memory": "100Gi", "nvidia.com/gpu": "8"}
	if len(free) != len(want) {
		t.Fatalf("free = %v, want %v", free, want)
	}
	for name, v := range want {
		q := free[corev1ResourceName(name)]
		if q.Cmp(resource.MustParse(v)) != 0 {
			t.Errorf("free %s = %s, want %s", name, q.String(), v)
		}
	}
	if q := alloc["cpu"]; q.Cmp(resource.MustParse("64")) != 0 || len(alloc) != 2 {
		t.Errorf("allocatable = %v", alloc)
	}
}

func TestPropertiesFingerprintIgnoresObservationTime(t *testing.T) {
	a := profile(metav1.ConditionTrue, "free.cpu", "4", "allocatable.cpu", "8")
	b := profile(metav1.ConditionTrue, "allocatable.cpu", "8", "free.cpu", "4")
	b.Status.Properties[0].LastObservedTime = metav1.Now()
	if propertiesFingerprint(a.Status.Properties) != propertiesFingerprint(b.Status.Properties) {
		t.Error("same values in another order or with another observation time must not count as a change")
	}
	c := profile(metav1.ConditionTrue, "free.cpu", "3", "allocatable.cpu", "8")
	if propertiesFingerprint(a.Status.Properties) == propertiesFingerprint(c.Status.Properties) {
		t.Error("a changed value must count as a change")
	}
}

func TestNextTransition(t *testing.T) {
	const m = 50 * time.Millisecond
	for _, tc := range []struct{ silent, want time.Duration }{
		{0, 30*time.Second + m},
		{25 * time.Second, 5*time.Second + m},
		{31 * time.Second, 29*time.Second + m},
		{61 * time.Second, 0},
	} {
		if got := nextTransition(tc.silent, 30*time.Second, 60*time.Second); got != tc.want {
			t.Errorf("nextTransition(%s) = %s, want %s", tc.silent, got, tc.want)
		}
	}
}

func corev1ResourceName(s string) corev1.ResourceName { return corev1.ResourceName(s) }
