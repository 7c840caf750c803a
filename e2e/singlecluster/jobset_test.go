package singlecluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// JobSets finish within seconds on kwok (pods complete 2-3 s after they
// start); the timeouts leave room for a loaded 2-core machine.
const (
	jobSetTimeout = 3 * time.Minute
	objectTimeout = time.Minute
)

// pollEvery is how often the suite's waits look again.
var pollEvery = testenv.Every(250 * time.Millisecond)

// TestPyTorchExample applies the concepts page's pytorch JobSet unchanged and
// checks what the page says a user sees: one Job pytorch-workers-0, four
// pods with the JobSet labels, stable hostnames under the subdomain pytorch,
// the headless Service pytorch, and a Completed JobSet.
func TestPyTorchExample(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "pytorch")
	phases := watchPodPhases(t, ns)
	kubectl(t, "-n", ns, "apply", "--server-side", "-f", "examples/pytorch.yaml")

	selector := "--selector=jobset.sigs.k8s.io/jobset-name=pytorch"
	testenv.Eventually(t, objectTimeout, "kubectl get jobs to list pytorch-workers-0", func() error {
		out, err := env.kubectl(context.Background(), "-n", ns, "get", "jobs", selector, "-o", "name")
		if err != nil {
			return fmt.Errorf("%s%w", out, err)
		}
		if strings.TrimSpace(out) != "job.batch/pytorch-workers-0" {
			return fmt.Errorf("listed %q", out)
		}
		return nil
	}, pollEvery)

	js := waitForTerminalState(t, ns, "pytorch")
	requireCompleted(t, js, 0)

	// kubectl get jobs --selector=... lists the one Job, fully completed.
	out := kubectl(t, "-n", ns, "get", "jobs", selector)
	if !strings.Contains(out, "pytorch-workers-0") || !strings.Contains(out, "4/4") {
		t.Errorf("kubectl get jobs %s: want pytorch-workers-0 with 4/4 completions, got\n%s", selector, out)
	}
	var jobs batchv1.JobList
	kubectlJSON(t, &jobs, "-n", ns, "get", "jobs", selector)
	if len(jobs.Items) != 1 {
		t.Fatalf("got %d Jobs, want 1", len(jobs.Items))
	}
	job := jobs.Items[0]
	wantLabels := map[string]string{
		jobset.JobSetNameKey:         "pytorch",
		jobset.ReplicatedJobNameKey:  "workers",
		jobset.ReplicatedJobReplicas: "1",
		jobset.JobIndexKey:           "0",
		jobset.JobGlobalIndexKey:     "0",
		jobset.RestartsKey:           "0",
	}
	checkLabels(t, "Job "+job.Name, job.Labels, wantLabels)
	if job.Labels[jobset.JobKey] == "" {
		t.Errorf("Job %s has no %s label", job.Name, jobset.JobKey)
	}
	if mode := job.Spec.CompletionMode; mode == nil || *mode != batchv1.IndexedCompletion {
		t.Errorf("Job %s completionMode = %v, want Indexed (the JobSet default)", job.Name, mode)
	}
	if owner := metav1.GetControllerOf(&job); owner == nil || owner.Kind != "JobSet" || owner.Name != "pytorch" {
		t.Errorf("Job %s is controlled by %+v, want JobSet pytorch", job.Name, owner)
	}

	// Four pods, each with the JobSet labels, hostname
	// pytorch-workers-0-<index> and subdomain pytorch; each ran, then
	// succeeded.
	var pods corev1.PodList
	kubectlJSON(t, &pods, "-n", ns, "get", "pods", selector)
	if len(pods.Items) != 4 {
		t.Fatalf("got %d pods, want 4", len(pods.Items))
	}
	var hostnames []string
	for _, pod := range pods.Items {
		checkLabels(t, "pod "+pod.Name, pod.Labels, wantLabels)
		if pod.Labels[jobset.JobKey] != job.Labels[jobset.JobKey] {
			t.Errorf("pod %s %s=%q, want the Job's %q", pod.Name, jobset.JobKey, pod.Labels[jobset.JobKey], job.Labels[jobset.JobKey])
		}
		index := pod.Annotations[batchv1.JobCompletionIndexAnnotation]
		if want := "pytorch-workers-0-" + index; index == "" || pod.Spec.Hostname != want {
			t.Errorf("pod %s (completion index %q) hostname = %q, want %q", pod.Name, index, pod.Spec.Hostname, want)
		}
		if pod.Spec.Subdomain != "pytorch" {
			t.Errorf("pod %s subdomain = %q, want pytorch", pod.Name, pod.Spec.Subdomain)
		}
		if pod.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
			t.Errorf("pod %s restartPolicy = %q, want OnFailure (the JobSet default)", pod.Name, pod.Spec.RestartPolicy)
		}
		if pod.Spec.NodeName == "" {
			t.Errorf("pod %s was never scheduled", pod.Name)
		}
		if seen := phases.seen(pod.Name); !ranThen(seen, corev1.PodSucceeded) {
			t.Errorf("pod %s went through phases %v, want Running then Succeeded", pod.Name, seen)
		}
		hostnames = append(hostnames, pod.Spec.Hostname)
	}
	sort.Strings(hostnames)
	if want := []string{"pytorch-workers-0-0", "pytorch-workers-0-1", "pytorch-workers-0-2", "pytorch-workers-0-3"}; !slices.Equal(hostnames, want) {
		t.Errorf("pod hostnames = %v, want %v", hostnames, want)
	}
	out = kubectl(t, "-n", ns, "get", "pods", selector,
		"-o", "custom-columns=Name:.metadata.name,HOSTNAME:.spec.hostname,Subdomain:.spec.subdomain")
	for _, h := range hostnames {
		if !containsFields(out, h, "pytorch") {
			t.Errorf("kubectl get pods -o custom-columns: no row with hostname %s and subdomain pytorch:\n%s", h, out)
		}
	}

	// The headless Service named after the JobSet.
	var services corev1.ServiceList
	kubectlJSON(t, &services, "-n", ns, "get", "services", selector)
	if len(services.Items) != 1 || services.Items[0].Name != "pytorch" {
		t.Fatalf("services with %s: %v, want exactly pytorch", selector, serviceNames(services.Items))
	}
	if ip := services.Items[0].Spec.ClusterIP; ip != corev1.ClusterIPNone {
		t.Errorf("Service pytorch clusterIP = %q, want None (headless)", ip)
	}
	out = kubectl(t, "-n", ns, "get", "services", selector)
	if !containsFields(out, "pytorch", "ClusterIP", "None") {
		t.Errorf("kubectl get services %s: want a headless pytorch row, got\n%s", selector, out)
	}
}

// TestExclusiveTopologyExample checks 1:1 Job-to-rack placement: the
// example's 4 Jobs each land on one rack of their own, and a fifth Job, with
// every rack taken, stays unschedulable.
//
// It is not parallel: exclusivity holds against the pods of every JobSet in
// the cluster, so it needs the racks to itself. Go runs it before the
// parallel tests start.
func TestExclusiveTopologyExample(t *testing.T) {
	start := time.Now()
	waitForNoRunningJobSetPods(t)
	ns := newNamespace(t, "exclusive")
	kubectl(t, "-n", ns, "apply", "--server-side", "-f", "examples/exclusive-topology.yaml")
	js := waitForTerminalState(t, ns, "pytorch")
	requireCompleted(t, js, 0)
	t.Logf("%s: the example completed", since(start))

	rackOf := nodeRacks(t)
	byJob := podsByJob(t, ns, "pytorch")
	if len(byJob) != 4 {
		t.Fatalf("pods belong to %d Jobs (%v), want 4", len(byJob), keys(byJob))
	}
	used := map[string]string{} // rack -> Job
	for job, pods := range byJob {
		if len(pods) != 2 {
			t.Errorf("Job %s has %d pods, want 2", job, len(pods))
		}
		rack, err := singleRack(pods, rackOf)
		if err != nil {
			t.Errorf("Job %s: %v", job, err)
			continue
		}
		if other, taken := used[rack]; taken {
			t.Errorf("Jobs %s and %s share rack %s", other, job, rack)
		}
		used[rack] = job
	}
	if t.Failed() {
		return
	}

	// Now five Jobs whose pods keep running. The example's finished pods
	// stay (as they would for a user) but hold no rack: the scheduler only
	// counts pods that have not finished.
	kubectl(t, "-n", ns, "apply", "--server-side", "-f", "e2e/singlecluster/testdata/exclusive-five-jobs.yaml")

	var pending string
	check := func() (bool, string) {
		byJob := podsByJobNow(ns, "five-jobs")
		running, unschedulable := map[string]string{}, []string{}
		var notes []string
		for job, pods := range byJob {
			switch {
			case allUnschedulable(pods):
				unschedulable = append(unschedulable, job)
			case len(pods) == 2 && allRunning(pods):
				rack, err := singleRack(pods, rackOf)
				if err != nil {
					return false, fmt.Sprintf("Job %s: %v", job, err)
				}
				if other, taken := running[rack]; taken {
					return false, fmt.Sprintf("Jobs %s and %s share rack %s", other, job, rack)
				}
				running[rack] = job
			default:
				notes = append(notes, fmt.Sprintf("Job %s: %s", job, describePods(pods)))
			}
		}
		state := fmt.Sprintf("running by rack %v, unschedulable %v, other %v", running, unschedulable, notes)
		if len(running) != 4 || len(unschedulable) != 1 || len(byJob) != 5 {
			return false, state
		}
		pending = unschedulable[0]
		return true, state
	}
	testenv.Eventually(t, jobSetTimeout, "4 Jobs running on 4 distinct racks and a 5th unschedulable", func() error {
		if ok, state := check(); !ok {
			return errors.New(state)
		}
		return nil
	}, pollEvery)
	t.Logf("%s: 4 Jobs run on 4 racks, Job %s is unschedulable", since(start), pending)
	// And it stays that way: the fifth Job never gets a rack.
	time.Sleep(5 * time.Second)
	if ok, state := check(); !ok || pendingJob(ns) != pending {
		t.Fatalf("after 5s: %s (pending Job was %s)", state, pending)
	}
	for _, pod := range podsByJobNow(ns, "five-jobs")[pending] {
		cond := podCondition(&pod, corev1.PodScheduled)
		t.Logf("pod %s of the fifth Job %s: PodScheduled=%s %s: %s", pod.Name, pending, cond.Status, cond.Reason, cond.Message)
	}
}

// TestRestartAfterPodFailure fails the first attempt's pods through the kwok
// fail stage: the JobSet restarts once, recreating its Jobs with
// restart-attempt=1, and then completes.
func TestRestartAfterPodFailure(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "restart")
	phases := watchPodPhases(t, ns)
	kubectl(t, "-n", ns, "apply", "--server-side", "-f", "e2e/singlecluster/testdata/restart.yaml")

	testenv.Eventually(t, jobSetTimeout, "status.restarts of JobSet flaky to become 1", func() error {
		js := &jobset.JobSet{}
		if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "flaky"}, js); err != nil {
			return err
		}
		if js.Status.Restarts < 1 {
			return errors.New(describeJobSet(js))
		}
		return nil
	}, pollEvery)
	js := waitForTerminalState(t, ns, "flaky")
	requireCompleted(t, js, 1)

	// A first-attempt pod really failed (after running), and no pod of the
	// second attempt did.
	failed := 0
	for name, labels := range phases.pods() {
		seen := phases.seen(name)
		switch labels[jobset.RestartsKey] {
		case "0":
			if ranThen(seen, corev1.PodFailed) {
				failed++
			}
		case "1":
			if slices.Contains(seen, corev1.PodFailed) {
				t.Errorf("pod %s of restart attempt 1 failed: phases %v", name, seen)
			}
		}
	}
	if failed == 0 {
		t.Errorf("no pod of restart attempt 0 was seen Running then Failed; pods seen: %v", phases.pods())
	}

	// The Jobs a user sees now are the recreated ones, all complete.
	var jobs batchv1.JobList
	kubectlJSON(t, &jobs, "-n", ns, "get", "jobs", "--selector=jobset.sigs.k8s.io/jobset-name=flaky")
	var names []string
	for _, job := range jobs.Items {
		names = append(names, job.Name)
		if got := job.Labels[jobset.RestartsKey]; got != "1" {
			t.Errorf("Job %s has %s=%q, want 1", job.Name, jobset.RestartsKey, got)
		}
		if got := job.Spec.Template.Labels[jobset.RestartsKey]; got != "1" {
			t.Errorf("Job %s pod template has %s=%q, want 1", job.Name, jobset.RestartsKey, got)
		}
		if !jobFinished(&job, batchv1.JobComplete) {
			t.Errorf("Job %s is not Complete: %+v", job.Name, job.Status.Conditions)
		}
	}
	sort.Strings(names)
	if want := []string{"flaky-workers-0", "flaky-workers-1"}; !slices.Equal(names, want) {
		t.Errorf("Jobs = %v, want %v", names, want)
	}
	out := kubectl(t, "-n", ns, "get", "jobs", "--selector=jobset.sigs.k8s.io/jobset-name=flaky,jobset.sigs.k8s.io/restart-attempt=1", "-o", "name")
	if got := strings.Fields(out); len(got) != 2 {
		t.Errorf("kubectl get jobs with restart-attempt=1: %v, want 2 Jobs", got)
	}
}

// TestCoordinatorExample checks that every Job and pod of the coordinator
// example carries the coordinator's stable endpoint as label and annotation.
func TestCoordinatorExample(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "coordinator")
	kubectl(t, "-n", ns, "apply", "--server-side", "-f", "examples/coordinator.yaml")
	js := waitForTerminalState(t, ns, "pytorch")
	requireCompleted(t, js, 0)

	const want = "pytorch-leader-0-0.pytorch"
	selector := "--selector=jobset.sigs.k8s.io/jobset-name=pytorch"
	var jobs batchv1.JobList
	kubectlJSON(t, &jobs, "-n", ns, "get", "jobs", selector)
	var pods corev1.PodList
	kubectlJSON(t, &pods, "-n", ns, "get", "pods", selector)
	if len(jobs.Items) != 2 {
		t.Errorf("got %d Jobs, want 2 (leader and workers)", len(jobs.Items))
	}
	if len(pods.Items) != 9 {
		t.Errorf("got %d pods, want 9 (1 leader, 8 workers)", len(pods.Items))
	}
	check := func(kind, name string, labels, annotations map[string]string) {
		if got := labels[jobset.CoordinatorKey]; got != want {
			t.Errorf("%s %s: label %s=%q, want %q", kind, name, jobset.CoordinatorKey, got, want)
		}
		if got := annotations[jobset.CoordinatorKey]; got != want {
			t.Errorf("%s %s: annotation %s=%q, want %q", kind, name, jobset.CoordinatorKey, got, want)
		}
	}
	for _, job := range jobs.Items {
		check("Job", job.Name, job.Labels, job.Annotations)
	}
	for _, pod := range pods.Items {
		check("pod", pod.Name, pod.Labels, pod.Annotations)
	}
	// The coordinator's address resolves through the headless Service: the
	// leader pod has exactly that hostname and subdomain.
	var leaders corev1.PodList
	kubectlJSON(t, &leaders, "-n", ns, "get", "pods", "--selector=jobset.sigs.k8s.io/jobset-name=pytorch,jobset.sigs.k8s.io/replicatedjob-name=leader")
	leader := leaders.Items
	if len(leader) != 1 || leader[0].Spec.Hostname+"."+leader[0].Spec.Subdomain != want {
		t.Errorf("leader pods %v: want one with hostname.subdomain %s", describePods(leader), want)
	}
}

// --- helpers -----------------------------------------------------------------

func since(start time.Time) time.Duration { return time.Since(start).Round(100 * time.Millisecond) }

func waitForTerminalState(t *testing.T, ns, name string) *jobset.JobSet {
	t.Helper()
	js := &jobset.JobSet{}
	testenv.Eventually(t, jobSetTimeout, fmt.Sprintf("JobSet %s/%s to finish", ns, name), func() error {
		if err := env.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, js); err != nil {
			return err
		}
		if js.Status.TerminalState == "" {
			return errors.New(describeJobSet(js))
		}
		return nil
	}, pollEvery)
	return js
}

func requireCompleted(t *testing.T, js *jobset.JobSet, restarts int32) {
	t.Helper()
	if js.Status.TerminalState != string(jobset.JobSetCompleted) {
		t.Fatalf("JobSet %s terminalState = %q, want Completed: %s", js.Name, js.Status.TerminalState, describeJobSet(js))
	}
	if !apimeta.IsStatusConditionTrue(js.Status.Conditions, string(jobset.JobSetCompleted)) {
		t.Errorf("JobSet %s has no Completed=True condition: %s", js.Name, describeJobSet(js))
	}
	if apimeta.IsStatusConditionTrue(js.Status.Conditions, string(jobset.JobSetFailed)) {
		t.Errorf("JobSet %s is both Completed and Failed: %s", js.Name, describeJobSet(js))
	}
	if js.Status.Restarts != restarts {
		t.Errorf("JobSet %s status.restarts = %d, want %d", js.Name, js.Status.Restarts, restarts)
	}
}

func describeJobSet(js *jobset.JobSet) string {
	var conds []string
	for _, c := range js.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s(%s: %s)", c.Type, c.Status, c.Reason, c.Message))
	}
	return fmt.Sprintf("terminalState=%q restarts=%d conditions=%v replicatedJobsStatus=%+v",
		js.Status.TerminalState, js.Status.Restarts, conds, js.Status.ReplicatedJobsStatus)
}

func checkLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: label %s=%q, want %q", what, k, got[k], v)
		}
	}
}

// ranThen reports whether phases show the pod Running and later in final.
func ranThen(phases []corev1.PodPhase, final corev1.PodPhase) bool {
	running := slices.Index(phases, corev1.PodRunning)
	return running >= 0 && slices.Index(phases[running:], final) > 0
}

// containsFields reports whether some line of a kubectl table has all the
// given columns.
func containsFields(table string, fields ...string) bool {
	for _, line := range strings.Split(table, "\n") {
		cols := strings.Fields(line)
		if !slices.ContainsFunc(fields, func(f string) bool { return !slices.Contains(cols, f) }) {
			return true
		}
	}
	return false
}

func serviceNames(svcs []corev1.Service) []string {
	var names []string
	for _, s := range svcs {
		names = append(names, s.Name)
	}
	return names
}

// nodeRacks maps node names to their rack label.
func nodeRacks(t *testing.T) map[string]string {
	t.Helper()
	var nodes corev1.NodeList
	if err := env.c.List(context.Background(), &nodes); err != nil {
		t.Fatal(err)
	}
	racks := map[string]string{}
	for _, n := range nodes.Items {
		racks[n.Name] = n.Labels["rack"]
	}
	return racks
}

// podsByJobNow groups the pods of a JobSet by the Job that controls them.
func podsByJobNow(ns, jobSet string) map[string][]corev1.Pod {
	var pods corev1.PodList
	if err := env.c.List(context.Background(), &pods, client.InNamespace(ns), client.MatchingLabels{jobset.JobSetNameKey: jobSet}); err != nil {
		return nil
	}
	byJob := map[string][]corev1.Pod{}
	for _, pod := range pods.Items {
		if pod.DeletionTimestamp != nil {
			continue
		}
		owner := metav1.GetControllerOf(&pod)
		if owner == nil {
			continue
		}
		byJob[owner.Name] = append(byJob[owner.Name], pod)
	}
	return byJob
}

func podsByJob(t *testing.T, ns, jobSet string) map[string][]corev1.Pod {
	t.Helper()
	byJob := podsByJobNow(ns, jobSet)
	if byJob == nil {
		t.Fatalf("listing pods of JobSet %s/%s failed", ns, jobSet)
	}
	return byJob
}

// pendingJob returns the one Job of five-jobs whose pods are all
// unschedulable, or "" when there is not exactly one.
func pendingJob(ns string) string {
	var pending []string
	for job, pods := range podsByJobNow(ns, "five-jobs") {
		if allUnschedulable(pods) {
			pending = append(pending, job)
		}
	}
	if len(pending) != 1 {
		return ""
	}
	return pending[0]
}

// singleRack returns the rack all pods are on, or an error if they are
// unscheduled or spread over several racks.
func singleRack(pods []corev1.Pod, rackOf map[string]string) (string, error) {
	racks := map[string][]string{}
	for _, pod := range pods {
		if pod.Spec.NodeName == "" {
			return "", fmt.Errorf("pod %s is not scheduled", pod.Name)
		}
		rack := rackOf[pod.Spec.NodeName]
		racks[rack] = append(racks[rack], pod.Name+"@"+pod.Spec.NodeName)
	}
	if len(racks) != 1 {
		return "", fmt.Errorf("pods spread over racks %v", racks)
	}
	for rack := range racks {
		if rack == "" {
			return "", fmt.Errorf("pods on nodes without a rack label: %v", racks)
		}
		return rack, nil
	}
	return "", fmt.Errorf("no pods")
}

func allRunning(pods []corev1.Pod) bool {
	return !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return p.Status.Phase != corev1.PodRunning })
}

// allUnschedulable: every pod is unscheduled with PodScheduled=False,
// reason Unschedulable, as the scheduler reports it.
func allUnschedulable(pods []corev1.Pod) bool {
	if len(pods) == 0 {
		return false
	}
	for i := range pods {
		cond := podCondition(&pods[i], corev1.PodScheduled)
		if pods[i].Spec.NodeName != "" || cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable {
			return false
		}
	}
	return true
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) corev1.PodCondition {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c
		}
	}
	return corev1.PodCondition{Type: t, Status: corev1.ConditionUnknown}
}

func describePods(pods []corev1.Pod) string {
	var out []string
	for i := range pods {
		p := &pods[i]
		sched := podCondition(p, corev1.PodScheduled)
		out = append(out, fmt.Sprintf("%s[%s node=%q scheduled=%s/%s]", p.Name, p.Status.Phase, p.Spec.NodeName, sched.Status, sched.Reason))
	}
	return strings.Join(out, " ")
}

func jobFinished(job *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range job.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// waitForNoRunningJobSetPods waits until no JobSet pod in the cluster is
// pending or running (the scheduler ignores finished pods), so exclusive
// placement starts from free racks.
func waitForNoRunningJobSetPods(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, "no live JobSet pods in the cluster", func() error {
		var pods corev1.PodList
		if err := env.c.List(context.Background(), &pods, client.HasLabels{jobset.JobSetNameKey}); err != nil {
			return err
		}
		var live []string
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				live = append(live, p.Namespace+"/"+p.Name)
			}
		}
		if len(live) > 0 {
			return fmt.Errorf("%d live: %s", len(live), strings.Join(live, ","))
		}
		return nil
	}, pollEvery)
}
