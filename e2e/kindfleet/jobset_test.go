package kindfleet_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// jobSetTimeout bounds a JobSet's run on kind, from apply on the hub to
// Completed there: placement, dispatch, image already loaded, pods start.
const jobSetTimeout = 4 * time.Minute

// TestJobSets runs the seed's JobSets with real containers, in parallel:
// each is applied to the hub and checked as its user sees it, on the hub
// and on the member it landed on. (TestFailover stops an agent, so it runs
// after these.)
func TestJobSets(t *testing.T) {
	t.Run("DNS", testDNS)
	t.Run("Coordinator", testCoordinator)
	t.Run("Restart", testRestart)
	t.Run("ExclusiveTopology", testExclusiveTopology)
}

// testDNS: the seed's pytorch JobSet, 4 pods listening on 3389. Pod 0
// resolves every other pod as <js>-workers-0-<i>.<js> through cluster DNS
// (the JobSet's headless Service) and talks to it on that port; the others
// exit once answered, so Completed on the hub means every exchange worked.
func testDNS(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "kf-dns")
	const js = "pytorch"
	var peers []string
	for i := 1; i < 4; i++ {
		peers = append(peers, fmt.Sprintf("%s-workers-0-%d.%s:3389", js, i, js))
	}
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
spec:
  replicatedJobs:
  - name: workers
    template:
      spec:
        parallelism: 4
        completions: 4
        backoffLimit: 0
        template:
          spec:
            containers:
            - name: pytorch
              image: %[2]s
              ports:
              - containerPort: 3389
              args:
              - --listen=:3389
              - --serve-until=1
              - --call=%[3]s
              - --call-from-index=0
              - --timeout=3m
`, js, env.images.workload, strings.Join(peers, ",")))

	hubJS := waitCompleted(t, ns, js, jobSetTimeout)
	kc := member(t, placedOn(hubJS))
	ctx := context.Background()
	list, err := pods(ctx, kc, ns, js)
	if err != nil {
		t.Fatal(err)
	}
	pod0 := podByHostname(list, js+"-workers-0-0")
	if pod0 == nil {
		t.Fatalf("no pod with hostname %s-workers-0-0 on %s among %d pods", js, kc.name, len(list))
	}
	log, err := podLog(ctx, kc, ns, pod0.Name)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		want := fmt.Sprintf("Reached %s-workers-0-%d.%s:3389 at ", js, i, js)
		if !strings.Contains(log, want) {
			t.Errorf("pod 0 (%s on %s) did not log %q; its log:\n%s", pod0.Name, kc.name, want, log)
		}
	}
	// The exchange crossed nodes: the pods ran on both workers.
	nodes := map[string]bool{}
	for _, p := range list {
		nodes[p.Spec.NodeName] = true
	}
	t.Logf("%s/%s completed on %s; pods on nodes %v", ns, js, kc.name, keys(nodes))
}

// testCoordinator: with spec.coordinator, every pod gets the coordinator's
// stable address as label jobset.sigs.k8s.io/coordinator; the workers read
// it through the downward API into $COORDINATOR and call the coordinator
// there, which exits once both workers reached it.
func testCoordinator(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "kf-coordinator")
	const js = "coord"
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
spec:
  coordinator:
    replicatedJob: leader
    jobIndex: 0
    podIndex: 0
  replicatedJobs:
  - name: leader
    replicas: 1
    template:
      spec:
        parallelism: 1
        completions: 1
        backoffLimit: 0
        template:
          spec:
            containers:
            - name: leader
              image: %[2]s
              ports:
              - containerPort: 8080
              args: [--listen=:8080, --serve-until=2, --timeout=3m]
  - name: workers
    replicas: 1
    template:
      spec:
        parallelism: 2
        completions: 2
        backoffLimit: 0
        template:
          spec:
            containers:
            - name: worker
              image: %[2]s
              env:
              - name: COORDINATOR
                valueFrom:
                  fieldRef:
                    fieldPath: metadata.labels['jobset.sigs.k8s.io/coordinator']
              args: [--print-env=COORDINATOR, "--call=$(COORDINATOR):8080", --timeout=3m]
`, js, env.images.workload))

	hubJS := waitCompleted(t, ns, js, jobSetTimeout)
	kc := member(t, placedOn(hubJS))
	ctx := context.Background()
	list, err := pods(ctx, kc, ns, js)
	if err != nil {
		t.Fatal(err)
	}
	coordinator := js + "-leader-0-0." + js
	workers := 0
	for _, p := range list {
		if p.Labels["jobset.sigs.k8s.io/replicatedjob-name"] != "workers" {
			continue
		}
		workers++
		log, err := podLog(ctx, kc, ns, p.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"COORDINATOR=" + coordinator + "\n", "Reached " + coordinator + ":8080 at "} {
			if !strings.Contains(log, want) {
				t.Errorf("worker %s on %s did not log %q; its log:\n%s", p.Name, kc.name, strings.TrimSpace(want), log)
			}
		}
	}
	if workers != 2 {
		t.Errorf("found %d worker pods on %s, want 2", workers, kc.name)
	}
	leader := podByHostname(list, js+"-leader-0-0")
	if leader == nil {
		t.Fatalf("no coordinator pod %s-leader-0-0 on %s", js, kc.name)
	}
	if log, err := podLog(ctx, kc, ns, leader.Name); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(log, "Answered 2 requests") {
		t.Errorf("coordinator %s did not answer both workers; its log:\n%s", leader.Name, log)
	}
}

// testRestart: the container fails on the JobSet's first attempt (it reads
// jobset.sigs.k8s.io/restart-attempt through the downward API), the member
// restarts the JobSet, the second attempt succeeds, and the hub shows one
// restart and then Completed.
func testRestart(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "kf-restart")
	const js = "restart"
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
spec:
  failurePolicy:
    maxRestarts: 2
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
            containers:
            - name: worker
              image: %[2]s
              env:
              - name: RESTART_ATTEMPT
                valueFrom:
                  fieldRef:
                    fieldPath: metadata.labels['jobset.sigs.k8s.io/restart-attempt']
              args: [--fail-on-attempt=0]
`, js, env.images.workload))

	eventually(t, jobSetTimeout, "hub JobSet "+ns+"/"+js+" shows 1 restart", func() (bool, string, error) {
		hubJS, err := getHubJobSet(context.Background(), ns, js)
		if err != nil {
			return false, "", err
		}
		return hubJS.Status.Restarts >= 1, describe(hubJS), nil
	})
	hubJS := waitCompleted(t, ns, js, jobSetTimeout)
	if hubJS.Status.Restarts != 1 {
		t.Errorf("completed with %d restarts on the hub, want 1: %s", hubJS.Status.Restarts, describe(hubJS))
	}
}

// testExclusiveTopology: alpha.jobset.sigs.k8s.io/exclusive-topology: rack
// with as many Jobs as a member has racks: each Job's pods land in one rack
// and no two Jobs share one.
func testExclusiveTopology(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "kf-exclusive")
	const js = "exclusive"
	const racks = 2 // per member: overlays/agent and setUp
	applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
  annotations:
    alpha.jobset.sigs.k8s.io/exclusive-topology: %[3]s
spec:
  replicatedJobs:
  - name: workers
    replicas: %[4]d
    template:
      spec:
        parallelism: 2
        completions: 2
        backoffLimit: 0
        template:
          spec:
            containers:
            - name: worker
              image: %[2]s
`, js, env.images.workload, rackLabel, racks))

	hubJS := waitCompleted(t, ns, js, jobSetTimeout)
	kc := member(t, placedOn(hubJS))
	ctx := context.Background()
	list, err := pods(ctx, kc, ns, js)
	if err != nil {
		t.Fatal(err)
	}
	rackOfJob := map[string]string{} // job index -> rack
	jobOfRack := map[string]string{}
	for _, p := range list {
		node := &corev1.Node{}
		if err := kc.c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, node); err != nil {
			t.Fatalf("node %q of pod %s: %v", p.Spec.NodeName, p.Name, err)
		}
		rack, job := node.Labels[rackLabel], p.Labels[jobIndexLabel]
		if rack == "" {
			t.Errorf("pod %s ran on node %s, which has no %s label", p.Name, node.Name, rackLabel)
			continue
		}
		if r, ok := rackOfJob[job]; ok && r != rack {
			t.Errorf("job %s has pods in racks %s and %s", job, r, rack)
		}
		if j, ok := jobOfRack[rack]; ok && j != job {
			t.Errorf("rack %s runs pods of jobs %s and %s", rack, j, job)
		}
		rackOfJob[job], jobOfRack[rack] = rack, job
	}
	if len(rackOfJob) != racks {
		t.Errorf("pods of %d jobs found (%v), want %d, each in its own rack", len(rackOfJob), rackOfJob, racks)
	}
	t.Logf("%s/%s on %s: job -> rack %v", ns, js, kc.name, rackOfJob)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
