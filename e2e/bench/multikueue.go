package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// The multikueue contender of the hub scenario: Kueue v0.17.0's MultiKueue
// set up as Kueue documents it. The manager cluster runs Kueue with
// MultiKueue (on by default since v0.9) and has the JobSet CRD but no JobSet
// controller; each worker runs Kueue and upstream JobSet v0.12.0. The
// manager's ClusterQueue carries an AdmissionCheck of the MultiKueue
// controller whose MultiKueueConfig lists one MultiKueueCluster per worker,
// each reading a kubeconfig Secret in Kueue's namespace. Every namespace has
// a LocalQueue named "default", so Kueue's webhook labels the bench's
// JobSets for it (LocalQueueDefaulting) and, its ClusterQueue having the
// MultiKueue check, sets their spec.managedBy to MultiKueue; the workers'
// queues of the same name admit the copies. Quotas are far above the burst.
const (
	mkManager       = "manager"
	mkQueue         = "bench"   // ResourceFlavor and ClusterQueue, on every cluster
	mkLocalQueue    = "default" // Kueue's default LocalQueue name
	mkCheck         = "bench-multikueue"
	mkConfig        = "bench"
	mkControllerKey = "kueue.x-k8s.io/multikueue"
)

// mkFleet is the running multikueue contender: its control planes, its
// controllers (the three Kueue managers and the workers' JobSet
// controllers) and the counting proxies in front of each apiserver.
type mkFleet struct {
	clusters map[string]*cluster
	procs    []*testenv.Process
	stops    []func() // in start order; Stop runs them backwards
}

func (m *mkFleet) Processes() []*testenv.Process { return m.procs }

func (m *mkFleet) Exited() error {
	for _, p := range m.procs {
		if err := p.Exited(); err != nil {
			return fmt.Errorf("%s: %w; its log:\n%s", p.Name, err, testenv.Tail(p.LogPath, 20))
		}
	}
	return nil
}

// Stop stops the controllers, then the proxies, then the control planes.
func (m *mkFleet) Stop() {
	for i := len(m.stops) - 1; i >= 0; i-- {
		m.stops[i]()
	}
	m.stops = nil
}

// proxy starts a counting proxy in front of c for one process and writes
// its kubeconfig (admin credentials, the proxy's CA as data: MultiKueue
// refuses kubeconfigs that point at files).
func (m *mkFleet) proxy(dir string, c *cluster, process string, cert *apicount.ServingCert) (*apicount.Proxy, string, error) {
	p, err := apicount.Start(c.Config, cert)
	if err != nil {
		return nil, "", err
	}
	m.stops = append(m.stops, p.Close)
	path := filepath.Join(dir, process+"-to-"+c.Name+".kubeconfig")
	if err := p.WriteKubeconfig(path, cert, ""); err != nil {
		return nil, "", err
	}
	return p, path, nil
}

func (m *mkFleet) startKueue(ctx context.Context, c *cluster, kubeconfig string) error {
	k, err := testenv.StartKueue(ctx, c.Cluster, testenv.KueueOptions{Kubeconfig: kubeconfig})
	if err != nil {
		return fmt.Errorf("kueue on %s: %w", c.Name, err)
	}
	m.stops = append(m.stops, k.Stop)
	m.procs = append(m.procs, k.Process)
	return nil
}

// upMultiKueue brings the contender up: clusters first, then proxies, then
// the workers' controllers, then the manager's Kueue and its MultiKueue
// objects, and waits until both workers are active and the queue is.
func upMultiKueue(ctx context.Context, dir string, bins benchBins, cert *apicount.ServingCert) (_ *hubFleet, _ *mkFleet, err error) {
	mk := &mkFleet{clusters: map[string]*cluster{}}
	defer func() {
		if err != nil {
			mk.Stop()
		}
	}()
	for _, name := range append([]string{mkManager}, memberNames...) {
		c, err := startCluster(name)
		if err != nil {
			return nil, mk, err
		}
		mk.stops = append(mk.stops, c.stop)
		mk.clusters[name] = c
	}
	manager := mk.clusters[mkManager]
	f := newHubFleet(mk, mk.clusters, mkManager)
	var managerKubeconfig string
	if f.hubProxy, managerKubeconfig, err = mk.proxy(dir, manager, "kueue", cert); err != nil {
		return nil, mk, err
	}
	secrets := map[string][]byte{}
	for _, m := range memberNames {
		w := mk.clusters[m]
		// MultiKueue (in the manager's Kueue), the worker's Kueue and its
		// JobSet controller each write to the worker through a proxy of
		// their own.
		for _, process := range []string{"multikueue", "kueue", "jobset"} {
			p, path, err := mk.proxy(dir, w, process, cert)
			if err != nil {
				return nil, mk, err
			}
			f.agentMemberProxies = append(f.agentMemberProxies, p)
			switch process {
			case "multikueue":
				if secrets[m], err = os.ReadFile(path); err != nil {
					return nil, mk, err
				}
			case "kueue":
				if err := mk.startKueue(ctx, w, path); err != nil {
					return nil, mk, err
				}
			case "jobset":
				if err := os.MkdirAll(filepath.Join(dir, m), 0o755); err != nil {
					return nil, mk, err
				}
				p, err := upstreamContender(bins, cert).start(filepath.Join(dir, m), path)
				if err != nil {
					return nil, mk, fmt.Errorf("upstream JobSet on %s: %w", m, err)
				}
				p.Name = "jobset-controller/" + m
				mk.stops = append(mk.stops, p.Stop)
				mk.procs = append(mk.procs, p)
			}
		}
		if err := applyAll(ctx, w.Client, queueObjects(false)); err != nil {
			return nil, mk, fmt.Errorf("%s: %w", m, err)
		}
	}
	if err := mk.startKueue(ctx, manager, managerKubeconfig); err != nil {
		return nil, mk, err
	}
	if err := applyAll(ctx, manager.Client, multiKueueObjects(secrets)); err != nil {
		return nil, mk, err
	}
	if err := applyAll(ctx, manager.Client, queueObjects(true)); err != nil {
		return nil, mk, err
	}
	for _, m := range memberNames {
		if err := waitActive(ctx, manager.Client, kueueObject("MultiKueueCluster", "", m, nil), mk); err != nil {
			return nil, mk, err
		}
	}
	for _, obj := range []*unstructured.Unstructured{kueueObject("AdmissionCheck", "", mkCheck, nil), kueueObject("ClusterQueue", "", mkQueue, nil)} {
		if err := waitActive(ctx, manager.Client, obj, mk); err != nil {
			return nil, mk, err
		}
	}
	f.setupNamespace = func(ctx context.Context, ns string) error {
		for _, name := range append([]string{mkManager}, memberNames...) {
			c := mk.clusters[name].Client
			if err := createNamespace(ctx, c, ns); err != nil {
				return err
			}
			lq := kueueObject("LocalQueue", ns, mkLocalQueue, map[string]any{"clusterQueue": mkQueue})
			if err := c.Create(ctx, lq); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			// Kueue defaults the queue and admits only once its cache
			// has the LocalQueue.
			if err := waitActive(ctx, c, lq, mk); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}
	return f, mk, nil
}

// runMultiKueue runs the hub scenario's phases on the multikueue
// contender; capacity is ours' burst throughput (for the rate "half"; 0:
// its own).
func runMultiKueue(ctx context.Context, o options, bins benchBins, cert *apicount.ServingCert, capacity float64) (*hubResult, error) {
	res := &hubResult{}
	dir, err := os.MkdirTemp(o.workDir, "multikueue-")
	if err != nil {
		return res, err
	}
	logf("multikueue: starting a manager and %d worker clusters with Kueue (load %s)", len(memberNames), procstat.LoadAverage())
	f, mk, err := upMultiKueue(ctx, dir, bins, cert)
	if err != nil {
		return res, err
	}
	defer mk.Stop()
	stopTrackers, err := f.track(ctx)
	if err != nil {
		return res, err
	}
	defer stopTrackers() // before the fleet stops
	if err := f.warmUpJobSets(ctx, time.Now().Add(3*time.Minute)); err != nil {
		return res, err
	}
	return res, f.runPhases(ctx, o, res, capacity)
}

// kueueObject is a Kueue object (Kueue's Go types stay out of this module).
func kueueObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	u.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

// queueObjects are a cluster's ResourceFlavor and ClusterQueue, open to
// every namespace, with quotas no burst reaches; the manager's carries the
// MultiKueue admission check.
func queueObjects(manager bool) []client.Object {
	quota := func(name, v string) map[string]any { return map[string]any{"name": name, "nominalQuota": v} }
	spec := map[string]any{
		"namespaceSelector": map[string]any{},
		"resourceGroups": []any{map[string]any{
			"coveredResources": []any{"cpu", "memory", "pods"},
			"flavors": []any{map[string]any{"name": mkQueue, "resources": []any{
				quota("cpu", "1M"), quota("memory", "1Pi"), quota("pods", "10M"),
			}}},
		}},
	}
	if manager {
		spec["admissionChecksStrategy"] = map[string]any{"admissionChecks": []any{map[string]any{"name": mkCheck}}}
	}
	return []client.Object{kueueObject("ResourceFlavor", "", mkQueue, map[string]any{}), kueueObject("ClusterQueue", "", mkQueue, spec)}
}

// multiKueueObjects are the manager's MultiKueue setup: a kubeconfig
// Secret per worker in Kueue's namespace, a MultiKueueCluster reading it, a
// MultiKueueConfig listing them, and the AdmissionCheck that uses it.
func multiKueueObjects(kubeconfigs map[string][]byte) []client.Object {
	var objs []client.Object
	var clusters []any
	for _, m := range memberNames {
		secret := m + "-kubeconfig"
		objs = append(objs,
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kueue-system", Name: secret}, Data: map[string][]byte{"kubeconfig": kubeconfigs[m]}},
			kueueObject("MultiKueueCluster", "", m, map[string]any{
				"clusterSource": map[string]any{"kubeConfig": map[string]any{"locationType": "Secret", "location": secret}},
			}))
		clusters = append(clusters, m)
	}
	return append(objs,
		kueueObject("MultiKueueConfig", "", mkConfig, map[string]any{"clusters": clusters}),
		kueueObject("AdmissionCheck", "", mkCheck, map[string]any{
			"controllerName": mkControllerKey,
			"parameters":     map[string]any{"apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig", "name": mkConfig},
		}))
}

func applyAll(ctx context.Context, c client.Client, objs []client.Object) error {
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return nil
}

// waitActive waits until a Kueue object's Active condition is True.
func waitActive(ctx context.Context, c client.Client, obj *unstructured.Unstructured, mk *mkFleet) error {
	deadline := time.Now().Add(2 * time.Minute)
	var conds []any
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err == nil {
			conds, _, _ = unstructured.NestedSlice(obj.Object, "status", "conditions")
			for _, cond := range conds {
				if m, ok := cond.(map[string]any); ok && m["type"] == "Active" && m["status"] == "True" {
					return nil
				}
			}
		}
		if err := mk.Exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not active after 2m: %v", obj.GetKind(), obj.GetName(), conds)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
