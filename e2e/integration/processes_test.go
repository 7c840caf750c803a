package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	fleet "github.com/jobset-fleet/jobset-fleet/api/fleet/v1alpha1"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// Some faults happen only to processes: a frozen (kill -STOP) or killed
// (kill -9) component, an agent that crash-loops while its member's
// apiserver is down. For those, a test swaps a member's in-process agent,
// or the hub's in-process controllers, for cmd/agent's or cmd/hub's binary,
// run with the harness's timings, and swaps them back when it ends.

// Leader election of agent processes, scaled down like the other timings
// (the defaults are 15s, 10s and 2s).
const (
	leaseDuration = 4 * time.Second
	renewDeadline = 3 * time.Second
	retryPeriod   = 500 * time.Millisecond
)

var binaries struct {
	once sync.Once
	dir  string
	err  error
}

// componentBinary builds cmd/hub and cmd/agent, once per run, and returns
// the path of "jobset-fleet-hub" or "jobset-fleet-agent".
func componentBinary(t *testing.T, name string) string {
	t.Helper()
	binaries.once.Do(func() {
		if binaries.dir, binaries.err = os.MkdirTemp("", "fleet-integration-bin-"); binaries.err != nil {
			return
		}
		for bin, pkg := range map[string]string{"jobset-fleet-hub": "./cmd/hub", "jobset-fleet-agent": "./cmd/agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binaries.dir, bin), pkg)
			cmd.Dir = testenv.RepoRoot()
			if out, err := cmd.CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
				return
			}
		}
	})
	must(t, binaries.err)
	return filepath.Join(binaries.dir, name)
}

// removeBinaries removes what componentBinary built (TestMain, at the end).
func removeBinaries() {
	if binaries.dir != "" {
		_ = os.RemoveAll(binaries.dir)
	}
}

// logDir is a directory for a test's process logs, kept (and named) if the
// test fails.
func logDir(t *testing.T, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fleet-integration-"+prefix+"-")
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs: %s", prefix, dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	return dir
}

// agentProcess is a member's agent run as cmd/agent. With restart, it is
// started again a second after it exits, as a kubelet restarts a crashed
// container, until the test ends.
type agentProcess struct {
	m       *member
	args    []string
	dir     string
	restart bool

	mu     sync.Mutex
	cur    *testenv.Process
	starts int
	quit   chan struct{}
	done   chan struct{}
}

type agentProcessOptions struct {
	// leaderElection runs the agent with leader election on its member,
	// with the timings above, as it is installed.
	leaderElection bool
	// restart starts the agent again whenever it exits.
	restart bool
	// args are added to the agent's flags (a later flag wins).
	args []string
}

// runAgentProcess stops the member's in-process agent and runs cmd/agent
// in its place until the test ends, then brings the in-process agent back.
// It returns once the process renews the member's heartbeat on the hub.
func (m *member) runAgentProcess(t *testing.T, o agentProcessOptions) *agentProcess {
	t.Helper()
	bin := componentBinary(t, "jobset-fleet-agent")
	dir := logDir(t, "agent-"+m.name)
	hubKubeconfig := filepath.Join(dir, "hub-kubeconfig")
	must(t, os.WriteFile(hubKubeconfig, m.hubKubeconfig, 0o600))
	a := &agentProcess{
		m: m, dir: dir, restart: o.restart, quit: make(chan struct{}), done: make(chan struct{}),
		args: []string{
			bin,
			"--kubeconfig=" + m.cluster.KubeconfigPath,
			"--hub-kubeconfig=" + hubKubeconfig,
			"--cluster-name=" + m.name,
			"--inventory-namespace=" + inventoryNS,
			"--heartbeat-interval=" + heartbeatInterval.String(),
			"--fence-timeout=" + fenceTimeout.String(),
			"--disable-webhooks",
			"--metrics-bind-address=0",
			"--health-probe-bind-address=0",
			"--leader-elect=" + strconv.FormatBool(o.leaderElection),
			"--leader-elect-lease-duration=" + leaseDuration.String(),
			"--leader-elect-renew-deadline=" + renewDeadline.String(),
			"--leader-elect-retry-period=" + retryPeriod.String(),
			"-v=2",
		},
	}
	a.args = append(a.args, o.args...)
	must(t, m.stopAgent())
	if err := a.start(); err != nil {
		must(t, m.startAgent())
		t.Fatal(err)
	}
	go a.supervise()
	t.Cleanup(func() {
		a.stop()
		must(t, m.startAgent())
	})
	host, err := os.Hostname()
	must(t, err)
	testenv.Eventually(t, time.Minute, "heartbeat of "+m.name+" renewed by the agent process", func() error {
		if err := a.process().Exited(); err != nil && !a.restart {
			return err
		}
		lease := &coordinationv1.Lease{}
		if err := env.hub.Client.Get(context.Background(), types.NamespacedName{Namespace: fleet.MemberNamespace(m.name), Name: fleet.HeartbeatLeaseName}, lease); err != nil {
			return err
		}
		if holder := ptr.Deref(lease.Spec.HolderIdentity, ""); holder != m.name+"/"+host {
			return fmt.Errorf("held by %q", holder)
		}
		return nil
	})
	return a
}

func (a *agentProcess) start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.starts++
	p, err := testenv.StartProcess(fmt.Sprintf("agent of %s (start %d)", a.m.name, a.starts),
		filepath.Join(a.dir, fmt.Sprintf("agent-%d.log", a.starts)), a.args[0], a.args[1:], nil)
	if err != nil {
		return err
	}
	a.cur = p
	return nil
}

// supervise restarts the agent when it exits, if asked to.
func (a *agentProcess) supervise() {
	defer close(a.done)
	for {
		p := a.process()
		select {
		case <-a.quit:
			return
		case <-p.Done():
		}
		if !a.restart {
			<-a.quit
			return
		}
		select {
		case <-a.quit:
			return
		case <-time.After(time.Second):
		}
		if err := a.start(); err != nil {
			fmt.Fprintln(os.Stderr, "restarting the agent process:", err)
		}
	}
}

// process is the current incarnation.
func (a *agentProcess) process() *testenv.Process {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// restarts is how many times the agent was started again.
func (a *agentProcess) restarts() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.starts - 1
}

// stop ends supervision and the process; idempotent.
func (a *agentProcess) stop() {
	select {
	case <-a.quit:
	default:
		close(a.quit)
	}
	<-a.done
	a.process().Stop()
}

// runHubProcess stops the hub's in-process controllers and runs cmd/hub in
// their place (the harness keeps serving the hub's webhooks) until the test
// ends, then brings the in-process controllers back. args are added to
// the hub's flags (a later flag wins).
func (e *fleetEnv) runHubProcess(t *testing.T, args ...string) *testenv.Process {
	t.Helper()
	bin := componentBinary(t, "jobset-fleet-hub")
	dir := logDir(t, "hub")
	must(t, e.stopHub())
	p, err := testenv.StartProcess("hub", filepath.Join(dir, "hub.log"), bin, append([]string{
		"--kubeconfig=" + e.hub.KubeconfigPath,
		"--inventory-namespace=" + inventoryNS,
		"--heartbeat-timeout=" + heartbeatTimeout.String(),
		"--member-lost-timeout=" + memberLostTimeout.String(),
		"--disable-webhooks",
		"--leader-elect=false",
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"-v=2",
	}, args...), nil)
	if err != nil {
		must(t, e.startHub())
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		must(t, e.startHub())
	})
	return p
}
