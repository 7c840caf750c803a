package kindfleet_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/hub/placement"
	"github.com/jobset-fleet/jobset-fleet/membership"
)

// rotationLabel is a node label key the agents do not report (not among
// their --topology-keys): the hub cannot judge a nodeSelector on it and
// counts it as met, and only the member's scheduler finds out that no node
// there has it. The test gives it to the kept member's nodes only.
const rotationLabel = "e2e.jobset-fleet.io/rotation"

// TestRotation takes a member out of rotation as an operator does, with
// the agent binary and hub credentials: cordoned, it gets no new JobSet
// and shows cordoned; drained, the hub withdraws its JobSet that has not
// started (its copy there gone before the JobSet runs on the other member,
// never two copies, not a restart) and leaves the running one alone;
// unjoin refuses while that one runs, and removes the member once it has
// finished. The member joins again (token join, agent chart) afterwards,
// for the tests after this one.
func TestRotation(t *testing.T) {
	ctx := context.Background()
	kept, rotated := env.members[memberNames[0]], env.members[memberNames[1]]
	ns := newNamespace(t, "kf-rotation")
	restore := keepFleetUsable(t, rotated)
	labelNodes(t, kept, rotationLabel, "open")
	kubectlFleet := buildKubectlFleet(t)

	// A JobSet of two Pods that print their epoch and exit.
	quick := func(name, annotations, nodeSelector string) string {
		return fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
  annotations: {%[3]s}
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
            nodeSelector: {%[4]s}
            containers:
            - name: worker
              image: %[2]s
              args: [--print-env=%[5]s]
`, name, env.images.workload, annotations, nodeSelector, fleet.EpochEnvVar)
	}

	if !t.Run("Cordon", func(t *testing.T) {
		out := rotationCmd(t, "cordon", rotated.name)
		if want := rotated.name + " is cordoned."; !strings.Contains(out, want) {
			t.Errorf("cordon printed %q, want %q", out, want)
		}
		checkProfileLabels(t, rotated.name, map[string]string{fleet.CordonedLabel: "true", fleet.DrainingLabel: ""})
		checkMembersScheduling(t, kubectlFleet, map[string]string{rotated.name: "Cordoned", kept.name: "Schedulable"})

		applyToHub(t, ns, quick("fresh", "", ""))
		js := waitPlacedOn(t, ns, "fresh", "")
		if got := placedOn(js); got != kept.name {
			t.Fatalf("a new JobSet went to %s while %s was cordoned: %s", got, rotated.name, describe(js))
		}
		// Spread could have chosen that member anyway: the verdict says
		// the cordon is why.
		eventually(t, 30*time.Second, "fresh's placement names the cordon", func() (bool, string, error) {
			pd := &clusterinventory.PlacementDecision{}
			if err := env.hub.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "fresh"}, pd); err != nil {
				return false, "", err
			}
			why := pd.Annotations[placement.ReasonsAnnotation]
			return strings.Contains(why, rotated.name+": cordoned by an operator"), "placement reasons " + why, nil
		})

		out = rotationCmd(t, "uncordon", rotated.name)
		if want := rotated.name + " is in rotation."; !strings.Contains(out, want) {
			t.Errorf("uncordon printed %q, want %q", out, want)
		}
		checkProfileLabels(t, rotated.name, map[string]string{fleet.CordonedLabel: "", fleet.DrainingLabel: ""})
	}) {
		return
	}

	var runningEpoch int64
	if !t.Run("Drain", func(t *testing.T) {
		// running: started on the member, left to finish by the drain. It
		// answers one request on :8080 and then exits: the test finishes it.
		applyToHub(t, ns, fmt.Sprintf(`
apiVersion: jobset.x-k8s.io/v1alpha2
kind: JobSet
metadata:
  name: %[1]s
  annotations:
    %[3]s: %[4]s
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
            terminationGracePeriodSeconds: 5
            containers:
            - name: worker
              image: %[2]s
              ports:
              - containerPort: 8080
              args: [--listen=:8080, --serve-until=1, --timeout=15m]
`, "running", env.images.workload, fleet.PinnedClusterAnnotation, rotated.name))

		// waiting: may run on either member, but its Pods need a node
		// label only the kept member's nodes have, and the hub cannot see
		// that. With the kept member cordoned, it can only go to the
		// other, where it cannot start. No start deadline: only the drain
		// moves it.
		rotationCmd(t, "cordon", kept.name)
		applyToHub(t, ns, quick("waiting",
			fmt.Sprintf("%s: %s=%s, %s: %q", fleet.ClusterSelectorAnnotation, poolLabel, poolValue, fleet.StartTimeoutAnnotation, "0"),
			fmt.Sprintf("%s: open", rotationLabel)))
		waitPlacedOn(t, ns, "waiting", rotated.name)
		copies := watchCopies(t, ns, "waiting")
		rotationCmd(t, "uncordon", kept.name)

		eventually(t, jobSetTimeout, "running's Pod Running on "+rotated.name, func() (bool, string, error) {
			running, total, err := countPods(ctx, rotated, ns, "running")
			return running == 1, fmt.Sprintf("%d of %d Pods Running", running, total), err
		})
		eventually(t, time.Minute, "waiting's Pods on "+rotated.name+" unschedulable", func() (bool, string, error) {
			list, err := pods(ctx, rotated, ns, "waiting")
			if err != nil {
				return false, "", err
			}
			var states []string
			unschedulable := 0
			for _, p := range list {
				c := podCondition(&p, corev1.PodScheduled)
				if p.Status.Phase == corev1.PodPending && c != nil && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
					unschedulable++
				}
				states = append(states, fmt.Sprintf("%s %s on %q", p.Name, p.Status.Phase, p.Spec.NodeName))
			}
			return len(list) == 2 && unschedulable == 2, strings.Join(states, ", "), nil
		})
		js, err := getHubJobSet(ctx, ns, "running")
		if err != nil {
			t.Fatal(err)
		}
		runningEpoch = js.Status.Fleet.Epoch

		drain := startRotationCmd(t, "drain", rotated.name, "--timeout", "30s", "--interval", "1s")

		// The hub withdraws waiting from the drained member; once that
		// member's copy is gone it runs, and finishes, on the other one.
		js = waitCompleted(t, ns, "waiting", jobSetTimeout)
		if got := placedOn(js); got != kept.name {
			t.Errorf("waiting completed on %s, want %s: %s", got, kept.name, describe(js))
		}
		if js.Status.Restarts != 0 {
			t.Errorf("waiting shows %d restarts after the drain moved it, want 0 (a withdrawal is not a restart): %s", js.Status.Restarts, describe(js))
		}
		if !slices.ContainsFunc(js.Status.Fleet.Withdrawals, func(w jobset.Withdrawal) bool { return w.Cluster == rotated.name }) {
			t.Errorf("waiting records no withdrawal from %s: %+v", rotated.name, js.Status.Fleet.Withdrawals)
		}
		eventually(t, 30*time.Second, "a "+fleet.ReasonMemberDraining+" event on waiting naming "+rotated.name, func() (bool, string, error) {
			msg, err := hubEvent(ctx, ns, "waiting", fleet.ReasonMemberDraining)
			return strings.Contains(msg, rotated.name), msg, err
		})
		if held := holds(ctx, rotated, ns, "waiting"); held != "" {
			t.Errorf("%s still holds the withdrawn copy of waiting: %s", rotated.name, held)
		}
		copies.stop(t, rotated.name)

		// running stays where it runs, same placement.
		js, err = getHubJobSet(ctx, ns, "running")
		if err != nil {
			t.Fatal(err)
		}
		if placedOn(js) != rotated.name || js.Status.Fleet.Epoch != runningEpoch {
			t.Errorf("the drain moved running (epoch %d before): %s", runningEpoch, describe(js))
		}
		if running, _, err := countPods(ctx, rotated, ns, "running"); err != nil || running != 1 {
			t.Errorf("running on %s after the drain: %d Pods Running (%v), want 1", rotated.name, running, err)
		}
		checkProfileLabels(t, rotated.name, map[string]string{fleet.CordonedLabel: "true", fleet.DrainingLabel: "true"})
		checkMembersScheduling(t, kubectlFleet, map[string]string{rotated.name: "Cordoned", kept.name: "Schedulable"})

		// The drain ends at its timeout, the started JobSet still there.
		out, err := drain.wait()
		if err == nil {
			t.Errorf("drain succeeded while running ran on %s:\n%s", rotated.name, out)
		}
		last := out[max(0, strings.LastIndex(out, rotated.name+": ")):]
		for _, want := range []string{membership.ErrNotDrained.Error(), "1 dispatches (1 started, 0 not started, 0 finished)", ns + "/running"} {
			if !strings.Contains(last, want) {
				t.Errorf("drain's last report does not say %q:\n%s", want, last)
			}
		}
		if strings.Contains(last, ns+"/waiting") {
			t.Errorf("drain's last report still lists waiting:\n%s", last)
		}
		if !strings.Contains(out, ns+"/waiting") {
			t.Errorf("drain never showed waiting among %s's JobSets:\n%s", rotated.name, out)
		}
	}) {
		return
	}

	t.Run("Unjoin", func(t *testing.T) {
		restore.unjoinTried = true
		out, err := agentCmd(ctx, "unjoin", unjoinFlags(rotated)...)
		t.Logf("unjoin while running runs:\n%s", out)
		// A refusal changes nothing.
		restore.unjoinTried = err == nil || !strings.Contains(out, membership.ErrWorkloadsRunning.Error())
		if err == nil {
			t.Fatalf("unjoin removed %s while running ran there", rotated.name)
		}
		for _, want := range []string{membership.ErrWorkloadsRunning.Error(), ns + "/running", membership.UnjoinDrainFlag, membership.UnjoinForceFlag} {
			if !strings.Contains(out, want) {
				t.Errorf("unjoin's refusal does not say %q", want)
			}
		}
		checkProfileLabels(t, rotated.name, map[string]string{fleet.CordonedLabel: "true"})

		// running finishes: its Pod gets the one request it waits for.
		list, err := pods(ctx, rotated, ns, "running")
		if err != nil || len(list) != 1 {
			t.Fatalf("running's Pods on %s: %d (%v)", rotated.name, len(list), err)
		}
		if out, err := env.kubectlCmd(ctx, rotated, nil, "-n", ns, "exec", list[0].Name, "--", "/usr/local/bin/jobset-fleet-workload",
			"--call=running-workers-0-0.running:8080", "--timeout=1m"); err != nil {
			t.Fatalf("calling running's Pod: %v\n%s", err, out)
		}
		waitCompleted(t, ns, "running", jobSetTimeout)

		restore.unjoinTried = true
		// --drain: a finished JobSet's dispatch stays until its hub JobSet
		// goes, and is nothing left to run.
		out, err = agentCmd(ctx, "unjoin", append(unjoinFlags(rotated), membership.UnjoinDrainFlag, "--drain-timeout", "1m")...)
		t.Logf("unjoin --drain once running finished:\n%s", out)
		if err != nil {
			t.Fatalf("unjoin: %v", err)
		}
		if want := "Removed " + rotated.name + " from the fleet."; !strings.Contains(out, want) {
			t.Errorf("unjoin did not say %q", want)
		}
		// The agent there lost its hub credentials.
		secret := &corev1.Secret{}
		if err := rotated.c.Get(ctx, client.ObjectKey{Namespace: fleet.SystemNamespace, Name: fleet.HubKubeconfigSecret}, secret); !apierrors.IsNotFound(err) {
			t.Errorf("Secret %s/%s on %s after the unjoin: %v, want it gone", fleet.SystemNamespace, fleet.HubKubeconfigSecret, rotated.name, err)
		}
		eventually(t, 2*time.Minute, rotated.name+"'s ClusterProfile and hub namespace gone", func() (bool, string, error) {
			var left []string
			for _, obj := range []client.Object{
				&clusterinventory.ClusterProfile{}, &corev1.Namespace{},
			} {
				key := client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: rotated.name}
				if _, ok := obj.(*corev1.Namespace); ok {
					key = client.ObjectKey{Name: fleet.MemberNamespace(rotated.name)}
				}
				switch err := env.hub.c.Get(ctx, key, obj); {
				case apierrors.IsNotFound(err):
				case err != nil:
					return false, "", err
				default:
					left = append(left, fmt.Sprintf("%T %s", obj, key))
				}
			}
			return len(left) == 0, "still there: " + strings.Join(left, ", "), nil
		})
		// The finished JobSet stays finished: the unjoin told the hub how
		// its copy ended.
		js, err := getHubJobSet(ctx, ns, "running")
		if err != nil {
			t.Fatal(err)
		}
		if !apimeta.IsStatusConditionTrue(js.Status.Conditions, conditionCompleted) {
			t.Errorf("running after the unjoin: %s", describe(js))
		}
		if _, total, err := countPods(ctx, kept, ns, "running"); err != nil || total != 0 {
			t.Errorf("running has %d Pods on %s after the unjoin (%v): it ran again", total, kept.name, err)
		}
	})
}

// agentCmd runs the harness's jobset-fleet-agent (the one join runs) and
// returns its output, stdout and stderr together.
func agentCmd(ctx context.Context, verb string, args ...string) (string, error) {
	var out lockedBuffer
	err := agentCmdTo(ctx, &out, verb, args...).Run()
	if err != nil {
		err = fmt.Errorf("jobset-fleet-agent %s: %w", verb, err)
	}
	return out.String(), err
}

func agentCmdTo(ctx context.Context, out *lockedBuffer, verb string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(env.root, "bin", "jobset-fleet-agent"), append([]string{verb}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	return cmd
}

// hubFlags give the agent binary the hub's admin credentials only.
func hubFlags(member string) []string {
	return []string{"--hub-kubeconfig", env.kubeconfig, "--hub-context", env.hub.context, "--cluster-name", member}
}

func unjoinFlags(kc *kindCluster) []string {
	return append(hubFlags(kc.name), "--member-kubeconfig", env.kubeconfig, "--member-context", kc.context, "--wait-timeout", "2m")
}

// rotationCmd runs cordon, uncordon or drain and fails the test on error.
func rotationCmd(t *testing.T, verb, member string, args ...string) string {
	t.Helper()
	out, err := agentCmd(context.Background(), verb, append(hubFlags(member), args...)...)
	t.Logf("jobset-fleet-agent %s %s: %s", verb, member, strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// background is an agent command running while the test goes on; its
// output goes to the test log line by line as it comes.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
	out    lockedBuffer
	err    error
}

func startRotationCmd(t *testing.T, verb, member string, args ...string) *background {
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cancel: cancel, done: make(chan struct{})}
	cmd := agentCmdTo(ctx, &b.out, verb, append(hubFlags(member), args...)...)
	cmd.Stdout = &lineLog{t: t, prefix: verb + ": ", to: &b.out}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("jobset-fleet-agent %s: %v", verb, err)
	}
	go func() {
		defer close(b.done)
		b.err = cmd.Wait()
	}()
	// The test log must not be written after the test ends.
	t.Cleanup(func() { b.cancel(); <-b.done })
	return b
}

// wait waits for the command to exit and returns its output.
func (b *background) wait() (string, error) {
	<-b.done
	return b.out.String(), b.err
}

// lineLog copies what it receives to to, and each whole line to the test
// log.
type lineLog struct {
	t      *testing.T
	prefix string
	to     *lockedBuffer
	mu     sync.Mutex
	buf    []byte
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.to.Write(p)
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.t.Logf("%s%s", l.prefix, l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// checkProfileLabels checks labels on a member's ClusterProfile: "" for
// a label that must be absent.
func checkProfileLabels(t *testing.T, member string, want map[string]string) {
	t.Helper()
	cp := &clusterinventory.ClusterProfile{}
	if err := env.hub.c.Get(context.Background(), client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: member}, cp); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got := cp.Labels[k]; got != v {
			t.Errorf("ClusterProfile %s: label %s=%q, want %q", member, k, got, v)
		}
	}
}

// checkMembersScheduling checks the SCHEDULING column of `kubectl fleet
// members` for the members named.
func checkMembersScheduling(t *testing.T, kubectlFleet string, want map[string]string) {
	t.Helper()
	out, err := exec.Command(kubectlFleet, "--kubeconfig", env.kubeconfig, "--context", env.hub.context, "members").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl fleet members: %v\n%s", err, out)
	}
	t.Logf("kubectl fleet members:\n%s", out)
	lines := strings.Split(string(out), "\n")
	col := slices.Index(strings.Fields(lines[0]), "SCHEDULING")
	if col < 0 {
		t.Fatalf("kubectl fleet members has no SCHEDULING column:\n%s", out)
	}
	for member, scheduling := range want {
		i := slices.IndexFunc(lines, func(l string) bool { f := strings.Fields(l); return len(f) > col && f[0] == member })
		if i < 0 {
			t.Errorf("kubectl fleet members does not list %s", member)
		} else if got := strings.Fields(lines[i])[col]; got != scheduling {
			t.Errorf("kubectl fleet members: %s is %s, want %s", member, got, scheduling)
		}
	}
}

// waitPlacedOn waits until the hub places the JobSet (on member, unless
// "": anywhere) and returns it.
func waitPlacedOn(t *testing.T, ns, name, member string) *jobset.JobSet {
	t.Helper()
	var js *jobset.JobSet
	eventually(t, time.Minute, fmt.Sprintf("%s/%s placed (want %q)", ns, name, member), func() (bool, string, error) {
		var err error
		if js, err = getHubJobSet(context.Background(), ns, name); err != nil {
			return false, "", err
		}
		on := placedOn(js)
		return on != "" && (member == "" || on == member), describe(js), nil
	})
	return js
}

// hubEvent is the message of the JobSet's latest hub event with reason.
func hubEvent(ctx context.Context, ns, name, reason string) (string, error) {
	list := &corev1.EventList{}
	if err := env.hub.c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return "", err
	}
	msg := ""
	for _, e := range list.Items {
		if e.InvolvedObject.Kind == "JobSet" && e.InvolvedObject.Name == name && e.Reason == reason {
			msg = e.Message
		}
	}
	return msg, nil
}

func podCondition(p *corev1.Pod, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// labelNodes labels every node of a cluster for the test.
func labelNodes(t *testing.T, kc *kindCluster, key, value string) {
	t.Helper()
	set := func(v any) error {
		nodes := &corev1.NodeList{}
		if err := kc.c.List(context.Background(), nodes); err != nil {
			return err
		}
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%s}}}`, key, v)
		for i := range nodes.Items {
			if err := kc.c.Patch(context.Background(), &nodes.Items[i], client.RawPatch(types.MergePatchType, patch)); err != nil {
				return fmt.Errorf("labelling node %s on %s: %w", nodes.Items[i].Name, kc.name, err)
			}
		}
		return nil
	}
	t.Cleanup(func() {
		if err := set("null"); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := set(fmt.Sprintf("%q", value)); err != nil {
		t.Fatal(err)
	}
}

// holds says what a member holds of a JobSet's copy: its JobSet, Jobs, or
// Pods that have not ended; "" when nothing. The hub places a withdrawn
// JobSet again only once the member's agent confirmed the copy gone.
func holds(ctx context.Context, kc *kindCluster, ns, name string) string {
	var held []string
	js := &jobset.JobSet{}
	switch err := kc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, js); {
	case err == nil:
		held = append(held, "its JobSet")
	case !apierrors.IsNotFound(err):
		return ""
	}
	jobs := &batchv1.JobList{}
	if err := kc.c.List(ctx, jobs, client.InNamespace(ns), client.MatchingLabels{jobSetNameLabel: name}); err == nil && len(jobs.Items) > 0 {
		held = append(held, fmt.Sprintf("%d Jobs", len(jobs.Items)))
	}
	if list, err := pods(ctx, kc, ns, name); err == nil {
		live := 0
		for _, p := range list {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				live++
			}
		}
		if live > 0 {
			held = append(held, fmt.Sprintf("%d Pods", live))
		}
	}
	return strings.Join(held, ", ")
}

// copyWatch samples both members every 200ms and records every moment at
// which both held a copy of the JobSet.
type copyWatch struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples int
	held    map[string]int // samples in which each member held a copy
	overlap []string
}

func watchCopies(t *testing.T, ns, name string) *copyWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &copyWatch{cancel: cancel, done: make(chan struct{}), held: map[string]int{}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var on []string
			for _, kc := range env.memberList() {
				if h := holds(ctx, kc, ns, name); h != "" {
					on = append(on, kc.name+" ("+h+")")
				}
			}
			w.mu.Lock()
			w.samples++
			for _, s := range on {
				w.held[strings.Fields(s)[0]]++
			}
			if len(on) > 1 {
				w.overlap = append(w.overlap, time.Now().Format("15:04:05.000")+": "+strings.Join(on, ", "))
			}
			w.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.cancel(); <-w.done })
	return w
}

// stop ends sampling and fails the test if both members ever held a copy,
// or if from was never seen holding one (the sampling proved nothing).
func (w *copyWatch) stop(t *testing.T, from string) {
	t.Helper()
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case len(w.overlap) > 0:
		t.Errorf("both members held a copy in %d of %d samples, first: %s", len(w.overlap), w.samples, strings.Join(w.overlap[:min(5, len(w.overlap))], "; "))
	case w.held[from] == 0:
		t.Errorf("the sampler never saw the copy on %s in %d samples", from, w.samples)
	default:
		t.Logf("at most one member held a copy in all %d samples (%v)", w.samples, w.held)
	}
}

// fleetRestore is what keepFleetUsable restores.
type fleetRestore struct {
	t *testing.T
	// unjoinTried: the test ran an unjoin that may have succeeded.
	unjoinTried bool
}

// keepFleetUsable puts the fleet back for the tests after this one, also
// when this one fails: every member uncordoned, and kc, if unjoined, joined
// again as the harness joined it (finishing an unjoin left half done),
// with its agent installed again if the unjoin took it away; kc healthy on
// the hub.
func keepFleetUsable(t *testing.T, kc *kindCluster) *fleetRestore {
	r := &fleetRestore{t: t}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
		defer cancel()
		start := time.Now()
		if err := r.restore(ctx, kc); err != nil {
			t.Errorf("cleanup: restoring the fleet: %v", err)
		}
		t.Logf("cleanup: fleet restored in %s", time.Since(start).Round(time.Second))
	})
	return r
}

func (r *fleetRestore) restore(ctx context.Context, kc *kindCluster) error {
	var errs []error
	for _, m := range memberNames {
		if m == kc.name && r.unjoinTried {
			continue
		}
		if out, err := agentCmd(ctx, "uncordon", hubFlags(m)...); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, out))
		}
	}
	if r.unjoinTried {
		errs = append(errs, r.rejoin(ctx, kc))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return env.waitMemberHealthy(ctx, kc.name, 3*time.Minute)
}

// rejoin joins kc again after an unjoin, with the harness's join, and
// reinstalls its agent.
func (r *fleetRestore) rejoin(ctx context.Context, kc *kindCluster) error {
	cp := &clusterinventory.ClusterProfile{}
	switch err := env.hub.c.Get(ctx, client.ObjectKey{Namespace: fleet.DefaultInventoryNamespace, Name: kc.name}, cp); {
	case err == nil:
		// An unjoin that did not finish: finish it.
		if out, err := agentCmd(ctx, "unjoin", append(unjoinFlags(kc), membership.UnjoinForceFlag)...); err != nil {
			return fmt.Errorf("%w\n%s", err, out)
		}
	case !apierrors.IsNotFound(err):
		return err
	}
	// Join recreates both namespaces: the old ones must be gone.
	if err := waitNamespaceGone(ctx, env.hub, fleet.MemberNamespace(kc.name)); err != nil {
		return err
	}
	if err := waitNamespaceGone(ctx, kc, systemNamespace); err != nil {
		return err
	}
	agentKept := kc.c.Get(ctx, client.ObjectKey{Namespace: systemNamespace, Name: agentDeployment}, &appsv1.Deployment{}) == nil
	r.t.Logf("cleanup: joining %s again (the unjoin kept its agent's Deployment: %t)", kc.name, agentKept)
	if err := env.join(ctx, kc.name); err != nil {
		return err
	}
	if kc.name != helmMember {
		return errors.New("keepFleetUsable reinstalls the agent with the chart, as the harness installs it on " + helmMember + " only")
	}
	if err := env.helmInstallAgent(ctx, kc); err != nil {
		return err
	}
	if agentKept {
		// Same Deployment, new hub credentials.
		if _, err := env.kubectlCmd(ctx, kc, nil, "-n", systemNamespace, "rollout", "restart", "deployment/"+agentDeployment); err != nil {
			return err
		}
		return env.rollOut(ctx, kc, agentDeployment)
	}
	return nil
}

// waitNamespaceGone waits until a namespace is not Terminating: deleted,
// or there without a deletion timestamp.
func waitNamespaceGone(ctx context.Context, kc *kindCluster, name string) error {
	return poll(ctx, time.Second, func() (bool, string, error) {
		ns := &corev1.Namespace{}
		switch err := kc.c.Get(ctx, client.ObjectKey{Name: name}, ns); {
		case apierrors.IsNotFound(err):
			return true, "", nil
		case err != nil:
			return false, "", err
		default:
			return ns.DeletionTimestamp == nil, fmt.Sprintf("namespace %s on %s Terminating", name, kc.name), nil
		}
	})
}
