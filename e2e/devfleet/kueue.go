package devfleet

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// KueueOn is where the local fleet runs Kueue: one of the two compositions
// of docs/kueue.md and docs/kueue-members.md, never both.
type KueueOn string

const (
	// KueueOnHub: Kueue on the hub decides when a JobSet runs, the fleet
	// where (make run KUEUE=hub, or KUEUE=1).
	KueueOnHub KueueOn = "hub"
	// KueueOnMembers: each member runs its own Kueue, whose free quota the
	// hub places against; the hub runs none (make run KUEUE=members).
	KueueOnMembers KueueOn = "members"
)

// kueueProcess names Kueue's manager on cluster among the fleet's
// processes (its pid file, its log, its directory): "kueue" on the hub,
// "kueue-<member>" on a member.
func (f *Fleet) kueueProcess(cluster string) string {
	if cluster == f.Layout.Hub {
		return "kueue"
	}
	return "kueue-" + cluster
}

// kueueClusters are the clusters Kueue runs on.
func (f *Fleet) kueueClusters() []string {
	switch f.o.Kueue {
	case KueueOnHub:
		return []string{f.Layout.Hub}
	case KueueOnMembers:
		var names []string
		for _, m := range f.Layout.Members {
			names = append(names, m.Name)
		}
		return names
	}
	return nil
}

// startKueue installs Kueue's CRDs and webhooks on each cluster of
// Options.Kueue and runs a manager against it, as the integration tests do
// (testenv.StartKueue).
func (f *Fleet) startKueue(ctx context.Context) error {
	for _, name := range f.kueueClusters() {
		process := f.kueueProcess(name)
		c := &testenv.Cluster{Name: name, Config: f.configs[name], Client: f.Clients[name], KubeconfigPath: f.o.path(name + ".kubeconfig")}
		k, err := testenv.StartKueue(ctx, c, testenv.KueueOptions{
			Dir: f.o.path(process), LogPath: f.o.path("logs", process+".log"), Detach: f.o.Detach,
		})
		if err != nil {
			return fmt.Errorf("starting Kueue on %s: %w", name, err)
		}
		f.kueues = append(f.kueues, k)
		f.procs[process] = k.Process
		if err := os.WriteFile(f.o.path("pids", process), []byte(strconv.Itoa(k.Pid())), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// kueueProcesses are the names of the Kueue managers the fleet runs.
func (f *Fleet) kueueProcesses() []string {
	var names []string
	for _, c := range f.kueueClusters() {
		names = append(names, f.kueueProcess(c))
	}
	return names
}
