package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// cluster is a fresh envtest control plane (kube-apiserver + etcd, no
// controller-manager, no scheduler) with the pids of its processes.
type cluster struct {
	*testenv.Cluster
	stop                  func()
	apiserverPID, etcdPID int
}

// startCluster starts a control plane through e2e/testenv, retrying: on a
// loaded machine envtest's wait for the CRDs to be served can time out.
// Clusters are started one at a time so the new children are this
// cluster's; a failed attempt's processes are killed before the next.
func startCluster(name string) (c *cluster, err error) {
	for attempt := 1; attempt <= 3; attempt++ {
		if c, err = startClusterOnce(name); err == nil {
			return c, nil
		}
		logf("  cluster %s, attempt %d: %v", name, attempt, err)
	}
	return nil, err
}

func startClusterOnce(name string) (_ *cluster, err error) {
	before, err := testenv.Children()
	if err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("starting cluster %s: %v", name, r)
			// envtest leaves its processes running when it fails after
			// starting them (e.g. installing CRDs).
			after, _ := testenv.Children()
			for pid := range after {
				if _, old := before[pid]; !old {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}()
	tc, stop := testenv.StartMain(name)
	c := &cluster{Cluster: tc, stop: stop}
	after, _ := testenv.Children()
	for pid, comm := range after {
		if _, old := before[pid]; old {
			continue
		}
		switch comm {
		case "kube-apiserver":
			c.apiserverPID = pid
		case "etcd":
			c.etcdPID = pid
		}
	}
	return c, nil
}

// cpu is the control plane's CPU so far (0 for a process not found).
func (c *cluster) cpu() (apiserver, etcd time.Duration) {
	if c.apiserverPID != 0 {
		apiserver, _ = procstat.CPU(c.apiserverPID)
	}
	if c.etcdPID != 0 {
		etcd, _ = procstat.CPU(c.etcdPID)
	}
	return apiserver, etcd
}

func createNamespace(ctx context.Context, c client.Client, name string) error {
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return nil
}
