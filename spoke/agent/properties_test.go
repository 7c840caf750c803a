package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
)

func TestComputeProperties(t *testing.T) {
	q := resource.MustParse
	node := func(cpu, mem, gpu string, unschedulable bool) corev1.Node {
		n := corev1.Node{Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(mem)}}}
		if gpu != "" {
			n.Status.Allocatable[ResourceGPU] = q(gpu)
		}
		n.Spec.Unschedulable = unschedulable
		return n
	}
	pod := func(phase corev1.PodPhase, cpu, mem string) corev1.Pod {
		return corev1.Pod{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: q(cpu), corev1.ResourceMemory: q(mem)}}}}},
			Status: corev1.PodStatus{Phase: phase},
		}
	}
	tests := []struct {
		name  string
		nodes []corev1.Node
		pods  []corev1.Pod
		want  map[string]string
	}{
		{
			name: "empty cluster reports zeros",
			want: map[string]string{"allocatable.cpu": "0", "free.cpu": "0", "allocatable.nvidia.com/gpu": "0"},
		},
		{
			name:  "sum of schedulable nodes minus unfinished pods",
			nodes: []corev1.Node{node("4", "8Gi", "2", false), node("4", "8Gi", "", false), node("64", "1Ti", "8", true)},
			pods:  []corev1.Pod{pod(corev1.PodRunning, "1500m", "1Gi"), pod(corev1.PodPending, "500m", "1Gi"), pod(corev1.PodSucceeded, "4", "4Gi")},
			want: map[string]string{
				"allocatable.cpu": "8", "free.cpu": "6",
				"allocatable.memory": "16Gi", "free.memory": "14Gi",
				"allocatable.nvidia.com/gpu": "2", "free.nvidia.com/gpu": "2",
			},
		},
		{
			name:  "overcommitted floors at zero",
			nodes: []corev1.Node{node("1", "1Gi", "", false)},
			pods:  []corev1.Pod{pod(corev1.PodRunning, "2", "1Gi")},
			want:  map[string]string{"free.cpu": "0", "free.memory": "0"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := map[string]string{}
			for _, p := range ComputeProperties(tc.nodes, tc.pods, nil, nil, now) {
				got[p.Name] = p.Value
				if !p.LastObservedTime.Equal(&now) {
					t.Errorf("%s: lastObservedTime %v", p.Name, p.LastObservedTime)
				}
			}
			if len(got) != 9 {
				t.Errorf("want 9 properties, got %v", got)
			}
			for k, want := range tc.want {
				if got[k] != want {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], want, got)
				}
			}
		})
	}
}

func TestComputePropertiesReportsEveryResource(t *testing.T) {
	q := resource.MustParse
	node := corev1.Node{Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
		corev1.ResourceCPU: q("8"), corev1.ResourceMemory: q("32Gi"), corev1.ResourceEphemeralStorage: q("100Gi"),
		corev1.ResourcePods: q("110"), "hugepages-2Mi": q("1Gi"), "example.com/fpga": q("2"),
	}}}
	req := func(cpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: q(cpu)}}
	}
	pod := corev1.Pod{
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Resources: req("1")}, // plain init, alone
				{Resources: req("1"), RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)}, // sidecar
				{Resources: req("3")}, // runs with the sidecar: 4
			},
			Containers: []corev1.Container{
				{Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: q("1"), corev1.ResourceEphemeralStorage: q("10Gi"), "hugepages-2Mi": q("512Mi"), "example.com/fpga": q("1"),
				}}},
				{Resources: req("1")},
			},
			Overhead: corev1.ResourceList{corev1.ResourceCPU: q("100m")},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	got := map[string]string{}
	for _, p := range ComputeProperties([]corev1.Node{node}, []corev1.Pod{pod}, func(*corev1.Pod) bool { return true }, nil, now) {
		got[p.Name] = p.Value
	}
	want := map[string]string{
		// max(app 2 + sidecar 1 = 3, init 3 + sidecar 1 = 4) + overhead.
		"allocatable.cpu": "8", "free.cpu": "3900m", "fleet-used.cpu": "4100m",
		"allocatable.memory": "32Gi", "free.memory": "32Gi", "fleet-used.memory": "0",
		"allocatable.nvidia.com/gpu": "0", "free.nvidia.com/gpu": "0", "fleet-used.nvidia.com/gpu": "0",
		"allocatable.ephemeral-storage": "100Gi", "free.ephemeral-storage": "90Gi", "fleet-used.ephemeral-storage": "10Gi",
		"allocatable.pods": "110", "free.pods": "109", "fleet-used.pods": "1",
		"allocatable.hugepages-2Mi": "1Gi", "free.hugepages-2Mi": "512Mi", "fleet-used.hugepages-2Mi": "512Mi",
		"allocatable.example.com/fpga": "2", "free.example.com/fpga": "1", "fleet-used.example.com/fpga": "1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}

	// A flood of extended resources is cut, the always-reported ones kept.
	flood := corev1.Node{Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{}}}
	for i := range 100 {
		flood.Status.Allocatable[corev1.ResourceName(fmt.Sprintf("example.com/r%03d", i))] = q("1")
	}
	props := ComputeProperties([]corev1.Node{flood}, nil, nil, nil, now)
	if len(props) != 3*MaxReportedResources {
		t.Errorf("%d properties for 100 resources, want %d", len(props), 3*MaxReportedResources)
	}
	if props[0].Name != "allocatable.cpu" || props[6].Name != "allocatable.nvidia.com/gpu" || props[9].Name != "allocatable.example.com/r000" {
		t.Errorf("order: %s, %s, %s", props[0].Name, props[6].Name, props[9].Name)
	}
}

func TestProfileStatus(t *testing.T) {
	old := clusterinventory.ClusterProfileStatus{
		Properties: []clusterinventory.Property{{Name: "free.cpu", Value: "1"}, {Name: "site", Value: "eu"}},
	}
	props := []clusterinventory.Property{{Name: "free.cpu", Value: "2"}}
	st := ProfileStatus(old, Health{Healthy: true}, "v1.37.2", props)
	if st.Version.Kubernetes != "v1.37.2" {
		t.Errorf("version %q, want v1.37.2", st.Version.Kubernetes)
	}
	// The agent's properties replace their old values; the others stay.
	wantProps := []clusterinventory.Property{{Name: "site", Value: "eu"}, {Name: "free.cpu", Value: "2"}}
	if d := cmp.Diff(wantProps, st.Properties); d != "" {
		t.Errorf("properties (-want +got):\n%s", d)
	}
	if len(st.Conditions) != 1 || st.Conditions[0].Status != metav1.ConditionTrue {
		t.Errorf("conditions %+v", st.Conditions)
	}
	st = ProfileStatus(st, Health{Message: "etcd down"}, "", props)
	type health struct {
		Status           metav1.ConditionStatus
		Message, Version string
	}
	if d := cmp.Diff(health{metav1.ConditionFalse, "etcd down", "v1.37.2"}, health{st.Conditions[0].Status, st.Conditions[0].Message, st.Version.Kubernetes}); d != "" {
		t.Errorf("unhealthy status, version kept (-want +got):\n%s", d)
	}
	if old.Properties[0].Value != "1" {
		t.Error("ProfileStatus modified its input")
	}
	// Publishing again replaces every property the agent reports (the
	// apiserver rejects duplicate names), whatever its prefix.
	all := ComputeProperties(nil, nil, nil, []string{"rack"}, now)
	st = ProfileStatus(ProfileStatus(st, Health{Healthy: true}, "", all), Health{Healthy: true}, "", all)
	names := map[string]int{}
	for _, p := range st.Properties {
		names[p.Name]++
	}
	for name, n := range names {
		if n != 1 {
			t.Errorf("property %s published %d times", name, n)
		}
	}
	if names["site"] != 1 || names["topology.rack"] != 1 || names["fleet-used.cpu"] != 1 {
		t.Errorf("properties after republishing: %v", names)
	}
	// A resource no node has any more, and a dropped topology key, go.
	st = ProfileStatus(st, Health{Healthy: true}, "", ComputeProperties(nil, nil, nil, nil, now))
	for _, p := range st.Properties {
		if p.Name == "topology.rack" {
			t.Errorf("stale property %s kept", p.Name)
		}
	}
	// Health messages are bounded.
	st = ProfileStatus(st, Health{Message: strings.Repeat("x", 10000)}, "", nil)
	if n := len(st.Conditions[0].Message); n > MaxHealthMessage {
		t.Errorf("health message of %d bytes", n)
	}
}

func TestComputePropertiesCountsTopologyDomains(t *testing.T) {
	node := func(rack string, unschedulable bool) corev1.Node {
		n := corev1.Node{}
		if rack != "" {
			n.Labels = map[string]string{"rack": rack}
		}
		n.Spec.Unschedulable = unschedulable
		return n
	}
	nodes := []corev1.Node{node("r0", false), node("r0", false), node("r1", false), node("r2", true), node("", false)}
	got := map[string]string{}
	for _, p := range ComputeProperties(nodes, nil, nil, []string{"rack", "zone"}, now) {
		got[p.Name] = p.Value
	}
	// r2's only node is cordoned; nodes without the label are no domain.
	if got["topology.rack"] != "2" || got["topology.zone"] != "0" {
		t.Fatalf("topology properties = rack:%q zone:%q, want 2 and 0", got["topology.rack"], got["topology.zone"])
	}
}

func TestStorageClassProperties(t *testing.T) {
	now := metav1.Now()
	classes := []storagev1.StorageClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "standard", Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "fast"}},
	}
	var got []string
	for _, p := range StorageClassProperties(classes, now) {
		got = append(got, p.Name+"="+p.Value)
	}
	if diff := cmp.Diff([]string{"storageclass.fast=available", "storageclass.standard=default"}, got); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
}
