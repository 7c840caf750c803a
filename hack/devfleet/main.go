// Command devfleet runs the local fleet (e2e/devfleet): a hub and two
// members as kwok clusters, with the hub and the agents as local processes.
//
//	devfleet up     bring it up and leave it running (make dev-up)
//	devfleet down   tear it down (make dev-down)
//	devfleet run    bring it up, wait, tear it down on Ctrl-C (make run)
//
// With -kueue=hub (or -kueue; make run KUEUE=1 or KUEUE=hub) Kueue runs on
// the hub too; with -kueue=members (make run KUEUE=members) on each member
// instead, and the hub places against the members' queues.
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
	fs.Var((*kueueFlag)(&o.Kueue), "kueue", "Install Kueue and run its manager (bin/kueue-manager, make tools-kueue) on the hub (-kueue or -kueue=hub: "+
		"JobSets naming a LocalQueue wait for admission at the hub) or on each member (-kueue=members: the hub runs none and places against the members' queues).")
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

// kueueFlag is -kueue: "hub" (also bare, "1" or "true", as KUEUE=1
// passes it) or "members".
type kueueFlag devfleet.KueueOn

func (k *kueueFlag) String() string { return string(*k) }

func (k *kueueFlag) IsBoolFlag() bool { return true }

func (k *kueueFlag) Set(s string) error {
	switch s {
	case "hub", "1", "true":
		*k = kueueFlag(devfleet.KueueOnHub)
	case "members":
		*k = kueueFlag(devfleet.KueueOnMembers)
	case "", "0", "false":
		*k = ""
	default:
		return fmt.Errorf("%q: want hub (or 1) or members", s)
	}
	return nil
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
	switch o.Kueue {
	case devfleet.KueueOnHub:
		fmt.Printf(`
Kueue runs on the hub (log: %[1]s). Try a ClusterQueue with one flavor per member,
and JobSets that wait for it (each asks for 8 cpu: 2 fit member-1's quota, 1 member-2's):

  kubectl --context hub apply --server-side -f examples/kueue-hub.yaml
  for i in 1 2 3 4; do kubectl --context hub create -f examples/kueue-jobset.yaml; done
  kubectl --context hub get jobsets,workloads -o wide
  kubectl --context hub get jobsets -o custom-columns=NAME:.metadata.name,SUSPENDED:.spec.suspend,MEMBER:.status.fleet.cluster
`, filepath.Join(o.Dir, "logs", "kueue.log"))
	case devfleet.KueueOnMembers:
		fmt.Printf(`
Kueue runs on each member, none on the hub (logs: %[1]s/kueue-member-*.log).
Give team-a 4 cpu of quota on member-1 and 8 on member-2:

  for m in member-1 member-2; do
    kubectl --context $m apply --server-side -f examples/kueue-members.yaml -l examples.jobset-fleet.io/member=$m
  done

Wait until both agents published their queues (at most 30 s), then apply two
JobSets of 8 cpu to the hub: both go to member-2, whose queue has room,
although member-1 has more free nodes; member-2's Kueue admits one, the other
waits in its queue (QueuedOnMember):

  kubectl --context hub -n fleet-system get clusterprofiles -o custom-columns='NAME:.metadata.name,KUEUE:.status.properties[?(@.name=="kueue-quotas")].value'
  kubectl --context hub apply --server-side -f examples/kueue-members-jobset.yaml
  kubectl --context hub get jobsets -o custom-columns=NAME:.metadata.name,MEMBER:.status.fleet.cluster
  kubectl fleet --context hub why train-1
  kubectl --context member-2 get workloads
  kubectl --context hub get jobsets -o jsonpath='{range .items[*]}{.metadata.name}{": "}{.status.conditions[?(@.type=="QueuedOnMember")].message}{"\n"}{end}'

Which of the two member-2's Kueue admits first varies. Delete that one
(the one without a message): the other is admitted, and its QueuedOnMember
condition goes away.

  kubectl --context hub delete jobset train-1   # or train-2
`, filepath.Join(o.Dir, "logs"))
	}
}
