package kindfleet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/hub/inventory"
)

// TestTaintedMemberIsAvoided: GPU nodes are commonly tainted. Every node of
// one member gets a NoSchedule taint: once its agent reports it, a JobSet
// that does not tolerate it runs on the other member, and one that does,
// pinned to the tainted member, runs there with real Pods.
func TestTaintedMemberIsAvoided(t *testing.T) {
	ctx := context.Background()
	members := env.memberList()
	tainted, other := members[0], members[1]
	taint := corev1.Taint{Key: "example.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}

	nodes := &corev1.NodeList{}
	if err := tainted.c.List(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	for i := range nodes.Items {
		setTaint(t, tainted, nodes.Items[i].Name, taint, true)
		name := nodes.Items[i].Name
		t.Cleanup(func() { setTaint(t, tainted, name, taint, false) })
	}
	// The agent reports its nodes in the ClusterProfile's node summary.
	eventually(t, 2*time.Minute, tainted.name+"'s node summary shows the taint on every node", func() (bool, string, error) {
		cp := &clusterinventory.ClusterProfile{}
		if err := env.hub.c.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: tainted.name}, cp); err != nil {
			return false, "", err
		}
		summary, err := inventory.ParseNodeSummary(cp.Status.Properties)
		if err != nil || summary == nil {
			return false, fmt.Sprintf("summary %v, error %v", summary, err), nil
		}
		for _, g := range summary.Groups {
			if !slices.ContainsFunc(g.Taints, func(got corev1.Taint) bool { return got.Key == taint.Key && got.Effect == taint.Effect }) {
				return false, fmt.Sprintf("a group of %d nodes without it: %v", g.Nodes, g.Taints), nil
			}
		}
		return len(summary.Groups) > 0, "", nil
	})

	ns := newNamespace(t, "kf-taints")
	jobSet := func(name, extra string) string {
		return fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
%[3]s
spec:
  replicatedJobs:
  - name: workers
    template:
      spec:
        parallelism: 2
        completions: 2
        backoffLimit: 0
        template:
          spec:
            restartPolicy: Never
            tolerations: %[4]s
            containers:
            - name: worker
              image: %[2]s
              args: [--print-env=HOSTNAME]
`, name, env.images.workload, extra, tolerations(name == "tolerating", taint))
	}

	applyToHub(t, ns, jobSet("untolerating", ""))
	js := waitCompleted(t, ns, "untolerating", jobSetTimeout)
	if got := placedOn(js); got != other.name {
		t.Errorf("a JobSet that does not tolerate %s ran on %s, want %s: %s", taint.Key, got, other.name, describe(js))
	}

	applyToHub(t, ns, jobSet("tolerating", fmt.Sprintf("  annotations:\n    %s: %s", fleet.PinnedClusterAnnotation, tainted.name)))
	js = waitCompleted(t, ns, "tolerating", jobSetTimeout)
	if got := placedOn(js); got != tainted.name {
		t.Errorf("the tolerating JobSet pinned to %s ran on %s: %s", tainted.name, got, describe(js))
	}
	list, err := pods(ctx, tainted, ns, "tolerating")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 {
		t.Errorf("no Pods of the tolerating JobSet on %s", tainted.name)
	}
	for _, p := range list {
		if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("Pod %s on %s: node %q, phase %s; want it run to completion on a tainted node", p.Name, tainted.name, p.Spec.NodeName, p.Status.Phase)
		}
	}
}

// tolerations is the pod template's tolerations list, as YAML flow.
func tolerations(tolerate bool, taint corev1.Taint) string {
	if !tolerate {
		return "[]"
	}
	return fmt.Sprintf("[{key: %q, operator: Exists, effect: %s}]", taint.Key, taint.Effect)
}

// setTaint adds or removes taint on a node, leaving its other taints.
func setTaint(t *testing.T, kc *kindCluster, node string, taint corev1.Taint, on bool) {
	t.Helper()
	ctx := context.Background()
	n := &corev1.Node{}
	if err := kc.c.Get(ctx, client.ObjectKey{Name: node}, n); err != nil {
		t.Errorf("reading node %s on %s: %v", node, kc.name, err)
		return
	}
	taints := slices.DeleteFunc(slices.Clone(n.Spec.Taints), func(got corev1.Taint) bool { return got.Key == taint.Key })
	if on {
		taints = append(taints, taint)
	}
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"taints": taints}})
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.c.Patch(ctx, n, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Errorf("tainting node %s on %s: %v", node, kc.name, err)
	}
}
