// Command devfleet runs the local fleet (e2e/devfleet): a hub and two
// members as kwok clusters, with the hub and the agents as local processes.
//
//	devfleet up     bring it up and leave it running (make dev-up)
//	devfleet down   tear it down (make dev-down)
//	devfleet run    bring it up, wait, tear it down on Ctrl-C (make run)
//
// With -kueue (make run KUEUE=1) Kueue runs on the hub too.
//
// It uses the binaries in bin/ (make tools build).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/jobset-fleet/jobset-fleet/e2e/devfleet"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

func main() {
	fs := flag.NewFlagSet("devfleet", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: devfleet [flags] up|down|run\n\nFlags:")
		fs.PrintDefaults()
	}
	// The client libraries' own logs (warnings, retries) stay out of the
	// progress output.
	ctrl.SetLogger(logr.Discard())
	o := devfleet.Options{Progress: os.Stdout}
	fs.StringVar(&o.Dir, "dir", filepath.Join(testenv.RepoRoot(), ".dev"), "Where the fleet keeps its kubeconfigs, logs and state.")
	fs.IntVar(&o.PortBase, "port-base", 18080, "First port of the hub and the agents (metrics, probes, webhooks).")
	fs.BoolVar(&o.Kueue, "kueue", false, "Install Kueue on the hub and run its manager (bin/kueue-manager, make tools-kueue): JobSets naming a LocalQueue wait for admission.")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		os.Exit(2)
	}
	if err := run(fs.Arg(0), o); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(verb string, o devfleet.Options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch verb {
	case "up":
		o.Detach = true
		f, err := devfleet.Up(ctx, devfleet.Default, o)
		if err != nil {
			return err
		}
		printUsage(f, o)
		return nil
	case "down":
		return devfleet.Down(context.WithoutCancel(ctx), devfleet.Default, o)
	case "run":
		f, err := devfleet.Up(ctx, devfleet.Default, o)
		if err != nil {
			return err
		}
		printUsage(f, o)
		fmt.Println("Running; Ctrl-C tears everything down.")
		err = f.Wait(ctx)
		return errors.Join(err, devfleet.Down(context.WithoutCancel(ctx), devfleet.Default, o))
	}
	return fmt.Errorf("unknown command %q (up, down, run)", verb)
}

func printUsage(f *devfleet.Fleet, o devfleet.Options) {
	fmt.Printf(`
The fleet is up. Kubeconfig: %[1]s (contexts: %[2]s)

  export KUBECONFIG=%[1]s
  kubectl --context hub apply --server-side -f examples/pytorch.yaml
  kubectl --context hub get jobsets
  kubectl --context member-1 get jobs,pods,services --selector=jobset.sigs.k8s.io/jobset-name=pytorch
  kubectl --context hub get clusterprofiles -n fleet-system

kubectl fleet (bin/kubectl-fleet), against the hub only:

  export PATH=%[4]s:$PATH
  kubectl fleet --context hub get jobsets
  kubectl fleet --context hub describe jobset pytorch
  kubectl fleet --context hub members
  kubectl fleet --context hub why pytorch
  kubectl fleet --context hub logs pytorch --tail 3   # through the hub, from the member's agent

Logs: %[3]s/  (hub.log, agent-member-1.log, agent-member-2.log)
`, f.Kubeconfig, fmt.Sprint(f.Layout.Clusters()), filepath.Join(o.Dir, "logs"), filepath.Join(testenv.RepoRoot(), "bin"))
	if o.Kueue {
		fmt.Printf(`
Kueue runs on the hub (log: %[1]s). Try a ClusterQueue with one flavor per member,
and JobSets that wait for it (each asks for 8 cpu: 2 fit member-1's quota, 1 member-2's):

  kubectl --context hub apply --server-side -f examples/kueue-hub.yaml
  for i in 1 2 3 4; do kubectl --context hub create -f examples/kueue-jobset.yaml; done
  kubectl --context hub get jobsets,workloads -o wide
  kubectl --context hub get jobsets -o custom-columns=NAME:.metadata.name,SUSPENDED:.spec.suspend,MEMBER:.status.fleet.cluster
`, filepath.Join(o.Dir, "logs", "kueue.log"))
	}
}
