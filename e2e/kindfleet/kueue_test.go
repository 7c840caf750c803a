package kindfleet_test

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/kind/cluster"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// kueueImage is the image of Kueue's manager this test builds from
// bin/kueue-manager (hack/images kueue) and loads into the hub.
var kueueImage = envOr("IMG_KUEUE", "jobset-fleet/kueue:dev")

// TestKueueOnHub: Kueue installed on the kind hub, from its own
// config/default of the version hack/kueue pins, running the image built
// here. A ClusterQueue with quota for one JobSet, two JobSets naming it:
// the first is admitted, dispatched and completes with real Pods on a
// member; the second waits suspended and undispatched at the hub all
// along, is admitted only once the first's completion released the quota,
// and completes too. The test installs Kueue and removes it again.
func TestKueueOnHub(t *testing.T) {
	installKueue(t)
	ns := newNamespace(t, "kf-kueue")
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata:
  name: kf-kueue
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: ClusterQueue
metadata:
  name: kf-kueue
spec:
  namespaceSelector: {}
  resourceGroups:
  - coveredResources: [cpu]
    flavors:
    - name: kf-kueue
      resources:
      - name: cpu
        nominalQuota: 100m
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata:
  name: kf-kueue
  namespace: %s
spec:
  clusterQueue: kf-kueue
`, ns))
	jobSet := func(name string) string {
		return fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
  labels:
    kueue.x-k8s.io/queue-name: kf-kueue
spec:
  replicatedJobs:
  - name: workers
    template:
      spec:
        parallelism: 1
        completions: 1
        backoffLimit: 0
        template:
          spec:
            restartPolicy: Never
            containers:
            - name: worker
              image: %[2]s
              args: [--print-env=HOSTNAME]
              resources:
                requests:
                  cpu: 100m
`, name, env.images.workload)
	}
	applyToHub(t, ns, jobSet("first"))
	eventually(t, time.Minute, "first admitted and dispatched", func() (bool, string, error) {
		js, err := getHubJobSet(context.Background(), ns, "first")
		if err != nil {
			return false, "", err
		}
		return placedOn(js) != "", describe(js), nil
	})
	applyToHub(t, ns, jobSet("second"))

	// All along, the second is dispatched only once the first completed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*jobSetTimeout)
	defer cancel()
	sawWaiting := false
	err := poll(ctx, time.Second, func() (bool, string, error) {
		first, err := getHubJobSet(ctx, ns, "first")
		if err != nil {
			return false, "", err
		}
		second, err := getHubJobSet(ctx, ns, "second")
		if err != nil {
			return false, "", err
		}
		firstDone := apimeta.IsStatusConditionTrue(first.Status.Conditions, conditionCompleted)
		if placedOn(second) != "" && !firstDone {
			t.Fatalf("second dispatched to %s while the first, holding the quota, has not completed: first %s", placedOn(second), describe(first))
		}
		if c := apimeta.FindStatusCondition(second.Status.Conditions, fleet.ConditionDispatched); placedOn(second) == "" && ptr.Deref(second.Spec.Suspend, false) &&
			c != nil && c.Reason == fleet.ReasonAwaitingAdmission {
			sawWaiting = true
		}
		return apimeta.IsStatusConditionTrue(second.Status.Conditions, conditionCompleted), "first: " + describe(first) + "; second: " + describe(second), nil
	})
	if err != nil {
		t.Fatalf("second not completed: %v", err)
	}
	if !sawWaiting {
		t.Error("the second was never seen waiting for admission (suspended, undispatched, AwaitingAdmission)")
	}
	// Both ran with real Pods on their members.
	for _, name := range []string{"first", "second"} {
		js, err := getHubJobSet(context.Background(), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		list, err := pods(context.Background(), member(t, placedOn(js)), ns, name)
		if err != nil {
			t.Fatal(err)
		}
		succeeded := 0
		for _, p := range list {
			if p.Status.Phase == corev1.PodSucceeded {
				succeeded++
			}
		}
		if succeeded != 1 {
			t.Errorf("%s on %s: %d succeeded Pods of %d, want 1", name, placedOn(js), succeeded, len(list))
		}
	}
}

// installKueue builds Kueue's image from bin/kueue-manager, loads it into
// the hub, applies Kueue's install (testenv.KueueInstallManifests) and
// waits until Kueue's webhooks answer; the test's cleanup removes it all.
func installKueue(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	build := exec.CommandContext(ctx, "hack/images/build.sh", "kueue="+kueueImage)
	build.Dir = env.root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", kueueImage, err, out)
	}
	if err := cluster.LoadImages(hubName, kueueImage); err != nil {
		t.Fatalf("loading %s into the hub: %v", kueueImage, err)
	}
	manifests, err := testenv.KueueInstallManifests(testenv.KueueInstallOptions{Image: kueueImage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		// Kueue's objects first, while its manager runs to release their
		// finalizers; then Kueue itself, its CRDs last.
		for _, args := range [][]string{
			{"delete", "workloads.kueue.x-k8s.io,localqueues.kueue.x-k8s.io", "--all", "--all-namespaces", "--ignore-not-found"},
			{"delete", "clusterqueues.kueue.x-k8s.io,resourceflavors.kueue.x-k8s.io", "--all", "--ignore-not-found"},
		} {
			if _, err := env.kubectlCmd(ctx, env.hub, nil, args...); err != nil {
				t.Errorf("removing Kueue's objects from the hub: %v", err)
			}
		}
		if _, err := env.kubectlCmd(ctx, env.hub, manifests, "delete", "-f", "-", "--ignore-not-found", "--wait=true"); err != nil {
			t.Errorf("removing Kueue from the hub: %v", err)
		}
	})
	if _, err := env.kubectlCmd(ctx, env.hub, manifests, "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.kubectlCmd(ctx, env.hub, nil, "-n", "kueue-system", "rollout", "status", "deployment/kueue-controller-manager", "--timeout=5m"); err != nil {
		logs, _ := env.kubectlCmd(ctx, env.hub, nil, "-n", "kueue-system", "logs", "deployment/kueue-controller-manager", "--tail=40")
		t.Fatalf("Kueue did not roll out: %v\n%s", err, logs)
	}
	// Kueue injects its webhooks' CA once its certificates exist: until
	// then the API server cannot call them.
	probe := []byte(`apiVersion: kueue.x-k8s.io/v1beta2
kind: ResourceFlavor
metadata:
  name: kf-kueue-probe
`)
	eventually(t, 2*time.Minute, "Kueue's webhooks answering", func() (bool, string, error) {
		out, err := env.kubectlCmd(ctx, env.hub, probe, "apply", "--server-side", "--dry-run=server", "-f", "-")
		return err == nil, out, nil
	})
	t.Logf("Kueue (%s) runs on the hub", kueueImage)
}
