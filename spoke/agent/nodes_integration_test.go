package agent_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
	"github.com/jobset-fleet/jobset-fleet/membership"
	"github.com/jobset-fleet/jobset-fleet/spoke/agent"
)

// TestAgentPublishesNodeSummary: the agent publishes a summary of the Node
// objects of a real member apiserver (a GPU node tainted and labelled by
// product, a plain node, a cordoned one, a Pod bound to the GPU node), and
// the hub's inventory reads it back from the ClusterProfile; an unchanged
// member republishes the same summary.
func TestAgentPublishesNodeSummary(t *testing.T) {
	hub := testenv.Start(t, "nodes-hub")
	member := testenv.Start(t, "nodes-member")
	ctx := context.Background()
	kubeconfig, err := membership.Join(ctx, hub.Client, member.Client, membership.Options{
		ClusterName:  clusterName,
		HubServerURL: hub.Config.Host,
		HubCAData:    hub.Config.CAData,
		CRDDir:       testenv.CRDPaths()[0],
	})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	agentCfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	must(t, err)

	addNode := func(name string, labels map[string]string, taints []corev1.Taint, unschedulable bool, alloc corev1.ResourceList) {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: corev1.NodeSpec{Taints: taints, Unschedulable: unschedulable}}
		must(t, member.Client.Create(ctx, node))
		node.Status.Allocatable, node.Status.Capacity = alloc, alloc
		must(t, member.Client.Status().Update(ctx, node))
	}
	q := resource.MustParse
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}
	addNode("gpu-1", map[string]string{"kubernetes.io/hostname": "gpu-1", "nvidia.com/gpu.product": "H100", "kubernetes.io/arch": "amd64"},
		[]corev1.Taint{gpuTaint, {Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}}, false,
		corev1.ResourceList{corev1.ResourceCPU: q("96"), corev1.ResourceMemory: q("1Ti"), agent.ResourceGPU: q("8")})
	addNode("cpu-1", map[string]string{"kubernetes.io/hostname": "cpu-1", "kubernetes.io/arch": "amd64", "team": "a"}, nil, false,
		corev1.ResourceList{corev1.ResourceCPU: q("16"), corev1.ResourceMemory: q("64Gi")})
	addNode("cordoned", map[string]string{"kubernetes.io/arch": "amd64"}, nil, true,
		corev1.ResourceList{corev1.ResourceCPU: q("64"), agent.ResourceGPU: q("8")})
	// A Pod bound to the GPU node takes 3 of its GPUs.
	must(t, member.Client.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: "trainer"},
		Spec: corev1.PodSpec{NodeName: "gpu-1", Containers: []corev1.Container{{Name: "c", Image: "busybox", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{agent.ResourceGPU: q("3")}, Limits: corev1.ResourceList{agent.ResourceGPU: q("3")},
		}}}},
	}))

	startAgent(t, t.Cleanup, member, agentCfg, func(o *agent.Options) { o.NodeLabelKeys = []string{"nvidia.com/gpu.product"} })

	read := func() (*fleet.NodeSummary, []clusterinventory.Property, error) {
		cp := &clusterinventory.ClusterProfile{}
		if err := hub.Client.Get(ctx, types.NamespacedName{Namespace: fleet.DefaultInventoryNamespace, Name: clusterName}, cp); err != nil {
			return nil, nil, err
		}
		s, err := inventory.ParseNodeSummary(cp.Status.Properties)
		return s, cp.Status.Properties, err
	}
	var summary *fleet.NodeSummary
	testenv.Eventually(t, 20*time.Second, "the node summary published", func() error {
		s, _, err := read()
		switch {
		case err != nil:
			return err
		case s == nil:
			return errors.New("no node summary yet")
		case len(s.Groups) != 2:
			return fmt.Errorf("%d groups: %+v", len(s.Groups), s)
		}
		summary = s
		return nil
	})
	if !contains(summary.LabelKeys, "nvidia.com/gpu.product") || contains(summary.LabelKeys, "kubernetes.io/hostname") {
		t.Errorf("label keys %v", summary.LabelKeys)
	}
	if summary.Omitted != 0 {
		t.Errorf("omitted %d", summary.Omitted)
	}
	// The apiserver taints new nodes not-ready (no kubelet here): the
	// summary shows it, as the scheduler would honour it.
	var cpu, gpu fleet.NodeGroup
	for _, g := range summary.Groups {
		if _, ok := g.Labels["nvidia.com/gpu.product"]; ok {
			gpu = g
		} else {
			cpu = g
		}
	}
	taintKeys := func(g fleet.NodeGroup) []string {
		var keys []string
		for _, t := range g.Taints {
			keys = append(keys, t.Key+":"+string(t.Effect))
		}
		return keys
	}
	if cpu.Labels["kubernetes.io/arch"] != "amd64" || len(cpu.Labels) != 1 || cpu.Nodes != 1 || len(cpu.Free) != 1 || cpu.Free[0].Free.Cpu().String() != "16" ||
		fmt.Sprint(taintKeys(cpu)) != "[node.kubernetes.io/not-ready:NoSchedule]" {
		t.Errorf("cpu group labels %v taints %v nodes %d free %v", cpu.Labels, taintKeys(cpu), cpu.Nodes, cpu.Free)
	}
	if gpu.Labels["nvidia.com/gpu.product"] != "H100" || gpu.Nodes != 1 ||
		fmt.Sprint(taintKeys(gpu)) != "[node.kubernetes.io/not-ready:NoSchedule nvidia.com/gpu:NoSchedule]" {
		t.Errorf("gpu group labels %v taints %v nodes %d", gpu.Labels, taintKeys(gpu), gpu.Nodes)
	}
	if a, f := gpu.Allocatable[agent.ResourceGPU], gpu.Free[0].Free[agent.ResourceGPU]; a.String() != "8" || f.String() != "5" || gpu.Free[0].Count != 1 {
		t.Errorf("gpu group allocatable %s, free %s (count %d); want 8 and 5", a.String(), f.String(), gpu.Free[0].Count)
	}

	// Republished with nothing changed: the same values.
	_, first, err := read()
	must(t, err)
	testenv.Eventually(t, 10*time.Second, "a republished profile", func() error {
		_, again, err := read()
		if err != nil {
			return err
		}
		if summaryValues(again) != summaryValues(first) {
			t.Fatalf("an unchanged member published another summary:\n%s\n%s", summaryValues(first), summaryValues(again))
		}
		for _, p := range again {
			if p.Name == fleet.PropertyNodeSummary && p.LastObservedTime.After(firstObserved(first).Time) {
				return nil
			}
		}
		return errors.New("not republished yet")
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func summaryValues(props []clusterinventory.Property) string {
	out := ""
	for _, p := range props {
		if p.Name == fleet.PropertyNodeSummary || len(p.Name) > len(fleet.PropertyNodeSummary) && p.Name[:len(fleet.PropertyNodeSummary)+1] == fleet.PropertyNodeSummary+"." {
			out += p.Name + "=" + p.Value + "\n"
		}
	}
	return out
}

func firstObserved(props []clusterinventory.Property) metav1.Time {
	for _, p := range props {
		if p.Name == fleet.PropertyNodeSummary {
			return p.LastObservedTime
		}
	}
	return metav1.Time{}
}
