// Package fleet_test runs the local fleet exactly as `make dev-up` brings it
// up (e2e/devfleet) — three kwok clusters (hub, member-1, member-2) of real control-plane
// processes, the hub and both agents as separate processes — and drives it
// the way a user does: kubectl against the hub.
package fleet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

var devDir string

// The fleet's processes listen from this port on, away from a developer's
// own fleet (18080).
const portBase = 28080

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleet-e2e-")
	if err != nil {
		panic(err)
	}
	devDir = dir
	os.Exit(func() int {
		// The hub and agent binaries, as `make dev-up` builds them.
		build := exec.Command("make", "--no-print-directory", "build")
		build.Dir = testenv.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "make build: %v\n%s\n", err, out)
			return 1
		}
		ctx := context.Background()
		o := devfleet.Options{Dir: devDir, PortBase: portBase, Progress: os.Stderr}
		if _, err := devfleet.Up(ctx, devfleet.Default, o); err != nil {
			// Up tore down what it started, logs included.
			fmt.Fprintf(os.Stderr, "bringing the fleet up: %v\n", err)
			return 1
		}
		code := m.Run()
		if code != 0 {
			dumpLogs()
		}
		if err := devfleet.Down(ctx, devfleet.Default, o); err != nil {
			fmt.Fprintf(os.Stderr, "tearing the fleet down: %v\n", err)
		}
		return code
	}())
}

func dumpLogs() {
	kept, err := os.MkdirTemp("", "fleet-e2e-logs-")
	if err == nil {
		_ = exec.Command("cp", "-r", filepath.Join(devDir, "logs"), kept).Run()
		fmt.Fprintf(os.Stderr, "full logs kept in %s\n", kept)
	}
	logs, _ := filepath.Glob(filepath.Join(devDir, "logs", "*.log"))
	for _, l := range logs {
		fmt.Fprintf(os.Stderr, "===== %s (tail)\n%s\n", filepath.Base(l), testenv.Tail(l, 60))
	}
}

func kubectl(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, err := kubectlErr(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func kubectlErr(stdin []byte, args ...string) (string, error) {
	bin, err := testenv.Binary("kubectl")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, append([]string{"--kubeconfig", filepath.Join(devDir, "kubeconfig")}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// example reads an example JobSet and applies edit to it.
func example(t *testing.T, file string, edit func(obj map[string]any)) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "examples", file))
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return data
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatal(err)
	}
	edit(obj)
	out, err := yaml.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func namespace(t *testing.T, name string) string {
	t.Helper()
	kubectl(t, nil, "--context", "hub", "create", "namespace", name)
	return name
}

// every is how often a wait looks again: each look runs kubectl.
var every = testenv.Every(time.Second)

// jobSet reads a JobSet as the user sees it.
type jobSet struct {
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Status struct {
		TerminalState string `json:"terminalState"`
		Restarts      int    `json:"restarts"`
		Fleet         struct {
			Cluster string `json:"cluster"`
		} `json:"fleet"`
		Conditions []struct {
			Type    string `json:"type"`
			Status  string `json:"status"`
			Reason  string `json:"reason"`
			Message string `json:"message"`
		} `json:"conditions"`
	} `json:"status"`
}

func getJobSet(t *testing.T, context, ns, name string) (*jobSet, error) {
	out, err := kubectlErr(nil, "--context", context, "-n", ns, "get", "jobset", name, "-o", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	js := &jobSet{}
	if err := json.Unmarshal([]byte(out), js); err != nil {
		return nil, err
	}
	return js, nil
}

// waitPlaced waits for the hub to place a JobSet and returns the member.
func waitPlaced(t *testing.T, ns, name string) string {
	t.Helper()
	var member string
	testenv.Eventually(t, time.Minute, "placement of "+ns+"/"+name, func() error {
		js, err := getJobSet(t, "hub", ns, name)
		if err != nil {
			return err
		}
		member = js.Status.Fleet.Cluster
		if member == "" {
			return fmt.Errorf("hub JobSet %s/%s not placed yet: %+v", ns, name, js.Status.Conditions)
		}
		return nil
	}, every)
	return member
}

func waitTerminal(t *testing.T, ns, name, want string) *jobSet {
	t.Helper()
	var js *jobSet
	testenv.Eventually(t, 3*time.Minute, fmt.Sprintf("%s/%s terminalState %s", ns, name, want), func() error {
		var err error
		if js, err = getJobSet(t, "hub", ns, name); err != nil {
			return err
		}
		if js.Status.TerminalState != want {
			return fmt.Errorf("hub JobSet %s/%s terminalState %q, want %q; conditions %+v", ns, name, js.Status.TerminalState, want, js.Status.Conditions)
		}
		return nil
	}, every)
	return js
}

type podList struct {
	Items []struct {
		Metadata struct {
			Name        string            `json:"name"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Hostname  string `json:"hostname"`
			Subdomain string `json:"subdomain"`
			NodeName  string `json:"nodeName"`
		} `json:"spec"`
	} `json:"items"`
}

func pods(t *testing.T, context, ns, selector string) *podList {
	t.Helper()
	out := kubectl(t, nil, "--context", context, "-n", ns, "get", "pods", "--selector", selector, "-o", "json")
	list := &podList{}
	if err := json.Unmarshal([]byte(out), list); err != nil {
		t.Fatal(err)
	}
	return list
}

func TestSeedPytorchRunsOnAMemberAndCompletesOnTheHub(t *testing.T) {
	ns := namespace(t, "e2e-pytorch")
	kubectl(t, example(t, "pytorch.yaml", nil), "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	member := waitPlaced(t, ns, "pytorch")

	testenv.Eventually(t, time.Minute, "pytorch-workers-0 listed on "+member, func() error {
		out, err := kubectlErr(nil, "--context", member, "-n", ns, "get", "jobs", "--selector=jobset.sigs.k8s.io/jobset-name=pytorch", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "job.batch/pytorch-workers-0" {
			return fmt.Errorf("jobs on %s: %q %v", member, out, err)
		}
		return nil
	}, every)
	testenv.Eventually(t, time.Minute, "4 pods with stable hostnames on "+member, func() error {
		p := pods(t, member, ns, "jobset.sigs.k8s.io/jobset-name=pytorch")
		if len(p.Items) != 4 {
			return fmt.Errorf("%d pods on %s, want 4", len(p.Items), member)
		}
		for _, pod := range p.Items {
			idx := pod.Metadata.Labels["batch.kubernetes.io/job-completion-index"]
			if pod.Spec.Hostname != "pytorch-workers-0-"+idx || pod.Spec.Subdomain != "pytorch" {
				return fmt.Errorf("pod %s: hostname %q subdomain %q", pod.Metadata.Name, pod.Spec.Hostname, pod.Spec.Subdomain)
			}
		}
		return nil
	}, every)
	kubectl(t, nil, "--context", member, "-n", ns, "get", "service", "pytorch")
	waitTerminal(t, ns, "pytorch", "Completed")
}

func TestCoordinatorLabelsEveryPod(t *testing.T) {
	ns := namespace(t, "e2e-coordinator")
	kubectl(t, example(t, "coordinator.yaml", nil), "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	member := waitPlaced(t, ns, "pytorch")
	testenv.Eventually(t, time.Minute, "9 pods with the coordinator label and annotation", func() error {
		p := pods(t, member, ns, "jobset.sigs.k8s.io/jobset-name=pytorch")
		if len(p.Items) != 9 {
			return fmt.Errorf("%d pods, want 9", len(p.Items))
		}
		for _, pod := range p.Items {
			if pod.Metadata.Labels["jobset.sigs.k8s.io/coordinator"] != "pytorch-leader-0-0.pytorch" ||
				pod.Metadata.Annotations["jobset.sigs.k8s.io/coordinator"] != "pytorch-leader-0-0.pytorch" {
				return fmt.Errorf("pod %s lacks the coordinator label/annotation: %v", pod.Metadata.Name, pod.Metadata.Labels)
			}
		}
		return nil
	}, every)
	waitTerminal(t, ns, "pytorch", "Completed")
}

func TestExclusiveTopologyGivesEachJobItsOwnRack(t *testing.T) {
	ns := namespace(t, "e2e-exclusive")
	// 4 Jobs, one rack each: member-1 has 4 racks, member-2 only 2, so the
	// hub must choose member-1 on its own (the agents report rack domains).
	member1 := devfleet.Default.Members[0]
	kubectl(t, example(t, "exclusive-topology.yaml", nil), "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	if member := waitPlaced(t, ns, "pytorch"); member != member1.Name {
		t.Fatalf("placed on %s; only %s has a rack for each of the 4 Jobs", member, member1.Name)
	}
	rackOf := member1.Nodes()
	testenv.Eventually(t, 2*time.Minute, "8 pods of 4 Jobs, one rack each", func() error {
		p := pods(t, member1.Name, ns, "jobset.sigs.k8s.io/jobset-name=pytorch")
		if len(p.Items) != 8 {
			return fmt.Errorf("%d pods, want 8", len(p.Items))
		}
		jobRack := map[string]string{}
		rackJob := map[string]string{}
		for _, pod := range p.Items {
			job := pod.Metadata.Labels["job-name"]
			rack := rackOf[pod.Spec.NodeName]
			if rack == "" {
				return fmt.Errorf("pod %s not scheduled yet", pod.Metadata.Name)
			}
			if prev, ok := jobRack[job]; ok && prev != rack {
				return fmt.Errorf("job %s spans racks %s and %s", job, prev, rack)
			}
			if other, ok := rackJob[rack]; ok && other != job {
				return fmt.Errorf("jobs %s and %s share %s", job, other, rack)
			}
			jobRack[job], rackJob[rack] = rack, job
		}
		if len(rackJob) != 4 {
			return fmt.Errorf("jobs on %d racks, want 4", len(rackJob))
		}
		return nil
	}, every)
	waitTerminal(t, ns, "pytorch", "Completed")
}

func TestFailingPodRestartsTheJobSetWhichThenCompletes(t *testing.T) {
	ns := namespace(t, "e2e-restart")
	manifest := example(t, "pytorch.yaml", func(obj map[string]any) {
		spec := obj["spec"].(map[string]any)
		spec["failurePolicy"] = map[string]any{"maxRestarts": 1}
		podTemplate := spec["replicatedJobs"].([]any)[0].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["template"].(map[string]any)
		// The kwok stage fails pods with this annotation while their
		// restart-attempt is 0.
		podTemplate["metadata"] = map[string]any{"annotations": map[string]any{"e2e.jobset-fleet.io/fail-first-attempt": "true"}}
	})
	kubectl(t, manifest, "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	waitPlaced(t, ns, "pytorch")
	js := waitTerminal(t, ns, "pytorch", "Completed")
	if js.Status.Restarts != 1 {
		t.Fatalf("hub shows %d restarts, want 1", js.Status.Restarts)
	}
}

func TestMembersReportHealthAndCapacityToTheHub(t *testing.T) {
	want := map[string]string{}
	for _, m := range devfleet.Default.Members {
		q := m.Allocatable(corev1.ResourceCPU)
		want[m.Name] = q.String()
	}
	for member, cpu := range want {
		testenv.Eventually(t, time.Minute, member+" healthy with its capacity", func() error {
			out, err := kubectlErr(nil, "--context", "hub", "-n", "fleet-system", "get", "clusterprofile", member, "-o", "json")
			if err != nil {
				return errors.New(out)
			}
			var profile struct {
				Status struct {
					Conditions []struct{ Type, Status string } `json:"conditions"`
					Properties []struct{ Name, Value string }  `json:"properties"`
				} `json:"status"`
			}
			if err := json.Unmarshal([]byte(out), &profile); err != nil {
				return err
			}
			healthy := false
			for _, c := range profile.Status.Conditions {
				healthy = healthy || (c.Type == "ControlPlaneHealthy" && c.Status == "True")
			}
			props := map[string]string{}
			for _, p := range profile.Status.Properties {
				props[p.Name] = p.Value
			}
			if !healthy || props["allocatable.cpu"] != cpu || props["allocatable.nvidia.com/gpu"] == "" {
				return fmt.Errorf("%s: healthy=%v properties=%v, want allocatable.cpu=%s and GPUs", member, healthy, props, cpu)
			}
			return nil
		}, every)
	}
}

func TestTTLDeletesTheJobSetEverywhereAndNothingRunsTwice(t *testing.T) {
	ns := namespace(t, "e2e-ttl")
	manifest := example(t, "pytorch.yaml", func(obj map[string]any) {
		obj["spec"].(map[string]any)["ttlSecondsAfterFinished"] = 5
	})
	kubectl(t, manifest, "--context", "hub", "-n", ns, "apply", "--server-side", "-f", "-")
	member := waitPlaced(t, ns, "pytorch")
	waitTerminal(t, ns, "pytorch", "Completed")
	testenv.Eventually(t, time.Minute, "the JobSet deleted on the hub and the member", func() error {
		hub, hubErr := kubectlErr(nil, "--context", "hub", "-n", ns, "get", "jobsets", "-o", "name")
		mem, memErr := kubectlErr(nil, "--context", member, "-n", ns, "get", "jobsets,jobs", "-o", "name")
		if hubErr != nil || memErr != nil || strings.TrimSpace(hub) != "" || strings.TrimSpace(mem) != "" {
			return fmt.Errorf("after the TTL: hub has %q, %s has %q", hub, member, mem)
		}
		return nil
	}, every)
	// The finished copy must not come back to run a second time.
	time.Sleep(5 * time.Second)
	if out := kubectl(t, nil, "--context", member, "-n", ns, "get", "jobsets,jobs", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("the JobSet came back on %s after its TTL: %s", member, out)
	}
}
