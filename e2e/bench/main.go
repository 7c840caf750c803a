// Command bench is jobset-fleet's scale benchmark (`make bench-scale`). In
// one run, on fresh local clusters and the same workload (JobSets of one
// replicatedJob × 4 replicas, parallelism 2), it compares side by side:
//
//   - member materialization, catch-up and steady: the raw client-go floor,
//     upstream JobSet v0.12.0 and jobset-fleet-agent standalone, on a
//     kube-apiserver + etcd with no controller-manager or scheduler:
//     wall time to every Job and Service, peak RSS, CPU, API requests;
//   - memory with pods: upstream vs ours on a kwok cluster (controller-
//     manager, scheduler, fake nodes) with ~10k Pods;
//   - hub throughput and latency: the hub and two agents as processes,
//     a burst and fixed offered rates, submit → all Jobs on a member.
//
// It prints tables and the targets as PASS/MISS with the measured
// value; it never fails on a time. It fails when what it apicount.Counts is not
// there (a Job missing, a JobSet on two members). Every process it starts is
// stopped on the way out, on failure and on SIGINT/SIGTERM too.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func main() {
	switch os.Getenv(roleEnv) {
	case "raw":
		os.Exit(rawMain(os.Args[1:]))
	case "worker":
		os.Exit(benchMain(os.Args[1:]))
	default:
		os.Exit(supervise(os.Args[1:]))
	}
}

func benchMain(args []string) int {
	o, code := parseOptions(args)
	if code >= 0 {
		return code
	}
	// The control-plane libraries log through klog and controller-runtime;
	// the benchmark's own output is its progress lines and the report.
	klog.SetLogger(logr.Discard())
	ctrl.SetLogger(logr.Discard())
	return run(o)
}

// supervise runs the benchmark in a child process and, whatever way that
// child ends (a panic, SIGKILL, a cleanup that hung), kills every process
// it left behind and deletes the kwok clusters left in the work dir.
// envtest's apiservers and etcds run in process groups of their own and
// are not told to die with their parent; as a child subreaper the
// supervisor inherits them (and kwokctl's daemons) when their parent dies,
// so it can find them. SIGINT and SIGTERM are passed on to the child,
// which stops everything in order.
func supervise(args []string) int {
	o, code := parseOptions(args)
	if code >= 0 {
		return code
	}
	if o.workDir == "" {
		dir, err := os.MkdirTemp("", "jobset-fleet-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "work dir:", err)
			return 1
		}
		args = append(args, "-work-dir="+dir)
		o.workDir = dir
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, linux/prctl.h
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		fmt.Fprintln(os.Stderr, "becoming a child subreaper:", errno)
		return 1
	}
	cmd := exec.Command(self, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), roleEnv+"=worker")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "starting the benchmark:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
wait:
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
		case waitErr = <-done:
			break wait
		}
	}
	// Whatever is still our child outlived the benchmark.
	if killed := killChildren(); len(killed) > 0 {
		logf("killed processes the benchmark left behind: %s", strings.Join(killed, ", "))
	}
	sweepKwok(o.workDir)
	if waitErr != nil {
		if exit, ok := waitErr.(*exec.ExitError); ok && exit.ExitCode() > 0 {
			return exit.ExitCode()
		}
		logf("benchmark ended: %v", waitErr)
		return 1
	}
	return 0
}

// sweepKwok deletes every kwok cluster whose kwokctl state is still in the
// work dir (a clean run deleted them all).
func sweepKwok(workDir string) {
	dirs, _ := filepath.Glob(filepath.Join(workDir, "*", "kwok-*", "clusters", "*"))
	for _, d := range dirs {
		kwokDir := filepath.Dir(filepath.Dir(d))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if err := deleteKwok(ctx, kwokDir, filepath.Base(d)); err != nil {
			logf("%v", err)
		} else {
			logf("deleted kwok cluster %s the benchmark left behind", filepath.Base(d))
		}
		cancel()
	}
}

func run(o options) (code int) {
	// SIGINT/SIGTERM cancel the context: every scenario unwinds through
	// its deferred stops, so no apiserver, etcd or controller outlives us.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	defer func() {
		if killed := killChildren(); len(killed) > 0 {
			logf("killed leftover processes: %s", strings.Join(killed, ", "))
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			logf("panic: %v", r)
			code = 1
		}
	}()

	var err error
	if o.workDir == "" {
		o.workDir, err = os.MkdirTemp("", "jobset-fleet-bench-")
	} else {
		err = os.MkdirAll(o.workDir, 0o755)
	}
	if err != nil {
		logf("work dir: %v", err)
		return 1
	}
	bins, err := findBins(binDir(), o)
	if err != nil {
		logf("%v", err)
		return 1
	}
	cert, err := apicount.NewServingCert()
	if err != nil {
		logf("%v", err)
		return 1
	}
	rep := &report{started: time.Now(), loadAtStart: procstat.LoadAverage(), opts: o}
	logf("jobset-fleet scale benchmark; logs in %s; load average %s", o.workDir, rep.loadAtStart)
	err = runScenarios(ctx, o, bins, cert, rep)
	rep.loadAtEnd = procstat.LoadAverage()
	rep.finished = time.Now()
	text := rep.markdown()
	fmt.Print(text)
	if o.out != "" {
		if werr := os.WriteFile(o.out, []byte(text), 0o644); werr != nil {
			logf("writing %s: %v", o.out, werr)
		}
	}
	if err != nil {
		logf("FAILED: %v (logs kept in %s)", err, o.workDir)
		return 1
	}
	if !o.keep {
		_ = os.RemoveAll(o.workDir)
	}
	return 0
}

func runScenarios(ctx context.Context, o options, bins benchBins, cert *apicount.ServingCert, rep *report) error {
	if o.scenarios["member"] {
		all := []contender{
			rawContender(bins, 50, false),
			rawContender(bins, 50, true),
			upstreamContender(bins, cert),
			oursContender(bins, "ours", "jobset-fleet-agent (--kubeconfig)", o.oursArgs...),
			oursContender(bins, "ours-unlimited", "jobset-fleet-agent --kube-api-qps=-1", append([]string{"--kube-api-qps=-1"}, o.oursArgs...)...),
		}
		for _, mode := range []memberMode{catchUp, steady} {
			for _, ct := range all {
				if !o.contenders[ct.key] {
					continue
				}
				res, err := runMember(ctx, o, ct, mode, cert)
				if err != nil {
					return fmt.Errorf("member scenario, %s, %s: %w", ct.name, mode, err)
				}
				rep.member = append(rep.member, res)
			}
		}
	}
	if o.scenarios["pods"] {
		for _, ct := range []contender{upstreamContender(bins, cert), oursContender(bins, "ours", "jobset-fleet-agent (--kubeconfig)", o.oursArgs...)} {
			res, err := runPods(ctx, o, ct, cert)
			if err != nil {
				return fmt.Errorf("memory scenario, %s: %w", ct.name, err)
			}
			rep.pods = append(rep.pods, res)
		}
	}
	if o.scenarios["hub"] {
		// Ours unless only multikueue is asked for; then multikueue, at
		// ours' measured capacity.
		var capacity float64
		if o.contenders["ours"] || !o.contenders["multikueue"] {
			res, err := runHub(ctx, o, cert)
			rep.hub = res
			if err != nil {
				return fmt.Errorf("hub scenario: %w", err)
			}
			capacity = res.phases[0].throughput
		}
		if o.contenders["multikueue"] {
			res, err := runMultiKueue(ctx, o, bins, cert, capacity)
			rep.hubMultiKueue = res
			if err != nil {
				return fmt.Errorf("hub scenario, multikueue: %w", err)
			}
		}
	}
	if o.scenarios["placement"] {
		res, err := runPlacement(ctx, o, cert)
		rep.placement = res
		if err != nil {
			return fmt.Errorf("placement scenario: %w", err)
		}
	}
	if o.scenarios["fleet-scale"] {
		res, err := runFleetScale(ctx, o, cert)
		rep.fleetScale = res
		if err != nil {
			return fmt.Errorf("fleet-scale scenario: %w", err)
		}
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return nil
}

// killChildren is the last line of defence: whatever child is still alive
// when the benchmark ends (a cleanup that failed) is killed.
func killChildren() []string {
	kids, _ := testenv.Children()
	var killed []string
	for pid, name := range kids {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, fmt.Sprintf("%s (pid %d)", name, pid))
		}
	}
	return killed
}
