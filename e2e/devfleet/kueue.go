package devfleet

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// kueueProcess names Kueue's manager among the fleet's processes (its pid
// file, its log).
const kueueProcess = "kueue"

// startKueue installs Kueue's CRDs and webhooks on the hub and runs its
// manager against it, as the integration tests do (testenv.StartKueue):
// Kueue on the hub decides when a JobSet runs, the fleet where.
func (f *Fleet) startKueue(ctx context.Context) error {
	hub := f.Layout.Hub
	c := &testenv.Cluster{Name: hub, Config: f.configs[hub], Client: f.Clients[hub], KubeconfigPath: f.o.path(hub + ".kubeconfig")}
	k, err := testenv.StartKueue(ctx, c, testenv.KueueOptions{
		Dir: f.o.path(kueueProcess), LogPath: f.o.path("logs", kueueProcess+".log"), Detach: f.o.Detach,
	})
	if err != nil {
		return fmt.Errorf("starting Kueue on %s: %w", hub, err)
	}
	f.kueue = k
	f.procs[kueueProcess] = k.Process
	return os.WriteFile(f.o.path("pids", kueueProcess), []byte(strconv.Itoa(k.Pid())), 0o644)
}
