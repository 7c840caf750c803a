package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/jobset-fleet/jobset-fleet/e2e/bench/apicount"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/procstat"
	"github.com/jobset-fleet/jobset-fleet/e2e/bench/workload"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// podsPerNode is the fake nodes' pod capacity: few nodes keep the kwok
// controller's own load (heartbeats) small next to the Pods'.
const podsPerNode = 1000

// podsResult is one contender's run of the memory scenario.
type podsResult struct {
	contender     contender
	n, nodes      int
	pods, running int
	// allPods: contender launched → the last Pod created.
	allPods  time.Duration
	usage    procstat.Usage
	requests apicount.Counts
	failed   apicount.Counts
	load     string
}

// podCounter apicount.Counts a namespace's Pods and how many are Running, from an
// informer that keeps only name and phase of each (the benchmark must not
// weigh on the machine like the controllers it measures).
type podCounter struct {
	mu         sync.Mutex
	phase      map[string]corev1.PodPhase
	lastChange time.Time
}

func startPodCounter(ctx context.Context, cs kubernetes.Interface, ns string) (*podCounter, error) {
	pc := &podCounter{phase: map[string]corev1.PodPhase{}, lastChange: time.Now()}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTransform(func(obj any) (any, error) {
			if pod, ok := obj.(*corev1.Pod); ok {
				slim := &corev1.Pod{}
				slim.Name, slim.Namespace, slim.ResourceVersion = pod.Name, pod.Namespace, pod.ResourceVersion
				slim.Status.Phase = pod.Status.Phase
				return slim, nil
			}
			return obj, nil
		}))
	inf := factory.Core().V1().Pods().Informer()
	set := func(obj any) {
		if pod, ok := obj.(*corev1.Pod); ok {
			pc.mu.Lock()
			if pc.phase[pod.Name] != pod.Status.Phase || pod.Status.Phase == "" {
				pc.lastChange = time.Now()
			}
			pc.phase[pod.Name] = pod.Status.Phase
			pc.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			if pod, ok := obj.(*corev1.Pod); ok {
				pc.mu.Lock()
				delete(pc.phase, pod.Name)
				pc.lastChange = time.Now()
				pc.mu.Unlock()
			}
		},
	}); err != nil {
		return nil, err
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return nil, fmt.Errorf("pod informer never synced")
	}
	return pc, nil
}

func (pc *podCounter) counts() (pods, running int, lastChange time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for _, p := range pc.phase {
		if p == corev1.PodRunning {
			running++
		}
	}
	return len(pc.phase), running, pc.lastChange
}

// runPods: a kwok cluster (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, the kwok controller; e2e/kwok/stages.yaml, pods held
// Running), N JobSets created first, then the contender; once all 8N Pods
// exist and nothing changed for settle, its peak RSS.
func runPods(ctx context.Context, o options, ct contender, cert *apicount.ServingCert) (res podsResult, err error) {
	const settle = 15 * time.Second
	res = podsResult{contender: ct, n: o.podsN, load: procstat.LoadAverage()}
	wantPods := o.podsN * workload.JobsPerJobSet * workload.PodsPerJob
	res.nodes = wantPods/podsPerNode + 2 // one is the canary's
	dir, err := os.MkdirTemp(o.workDir, "pods-"+ct.key+"-")
	if err != nil {
		return res, err
	}
	logf("memory %s, N=%d (%d Pods): creating a kwok cluster (load %s)", ct.name, o.podsN, wantPods, res.load)
	k, cleanup, err := startKwok(ctx, dir, "bench-pods-"+ct.key)
	defer cleanup()
	if err != nil {
		return res, err
	}
	if err := k.AddNodes(ctx, "bench-node", res.nodes-1, nodeSpec); err != nil {
		return res, err
	}
	const ns = "bench"
	if err := createNamespace(ctx, k.Client, ns); err != nil {
		return res, err
	}
	names := make([]string, o.podsN)
	for i := range names {
		names[i] = workload.Name(i)
	}
	if err := workload.Create(ctx, k.Client, ns, names, 50, nil); err != nil {
		return res, err
	}
	cs, err := kubernetes.NewForConfig(k.Config)
	if err != nil {
		return res, err
	}
	pc, err := startPodCounter(ctx, cs, ns)
	if err != nil {
		return res, err
	}
	proxy, err := apicount.Start(k.Config, cert)
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxy.WriteKubeconfig(kubeconfig, cert, ""); err != nil {
		return res, err
	}
	t0 := time.Now()
	p, err := ct.start(dir, kubeconfig)
	if err != nil {
		return res, err
	}
	defer p.Stop()
	deadline := time.Now().Add(o.runTimeout)
	lastLog := time.Now()
	for {
		if err := p.Exited(); err != nil {
			return res, err
		}
		pods, running, lastChange := pc.counts()
		// A control-plane process that died (kwokctl does not restart
		// them) shows as no change at all: fail rather than wait out
		// the run timeout.
		if time.Since(lastChange) > 3*time.Minute && (pods < wantPods || running < wantPods) {
			return res, fmt.Errorf("no Pod changed for 3m at %d Pods, %d Running, want %d; kwok cluster logs in %s", pods, running, wantPods, dir)
		}
		if pods >= wantPods && res.allPods == 0 {
			res.allPods = lastChange.Sub(t0)
		}
		if pods >= wantPods && running >= wantPods && time.Since(lastChange) > settle {
			break
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("timed out after %s: %d Pods, %d Running, want %d", o.runTimeout, pods, running, wantPods)
		}
		if time.Since(lastLog) > 30*time.Second {
			logf("  %d/%d Pods, %d Running", pods, wantPods, running)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if _, err := apicount.WaitQuiet(ctx, []*apicount.Proxy{proxy}, time.Minute); err != nil {
		return res, err
	}
	if res.usage, err = procstat.Read(p.Pid()); err != nil {
		return res, err
	}
	res.requests, res.failed = proxy.Snapshot(), proxy.Failures()
	res.pods, res.running, _ = pc.counts()
	p.Stop()
	// What was measured exists: every Job and Service, and the Pods.
	if _, _, err := workload.Verify(ctx, k.Config, ns, names); err != nil {
		return res, fmt.Errorf("%s: %w", ct.name, err)
	}
	if res.pods < wantPods {
		return res, fmt.Errorf("%s: %d Pods, want %d", ct.name, res.pods, wantPods)
	}
	logf("  %s: %d Pods (%d Running), peak RSS %s, CPU %s", ct.name, res.pods, res.running, mib(res.usage.PeakRSS), res.usage.CPU)
	return res, nil
}

// nodeSpec is every fake node's: room for podsPerNode Pods.
var nodeSpec = testenv.NodeSpec{Resources: corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("1000"),
	corev1.ResourceMemory: resource.MustParse("4Ti"),
	corev1.ResourcePods:   *resource.NewQuantity(podsPerNode, resource.DecimalSI),
}}

// startKwok creates a kwok cluster with e2e/kwok/stages.yaml and the
// project's CRDs, and proves it works end to end with a canary Job whose
// Pod must run: on a loaded machine kube-controller-manager can give up
// waiting for a slow apiserver at start and exit, and kwokctl does not
// restart it, so a cluster failing the canary is deleted and made again.
// cleanup deletes whatever was created, even after an error.
func startKwok(ctx context.Context, dir, name string) (k *testenv.KwokCluster, cleanup func(), err error) {
	var workDir string
	cleanup = func() {
		if workDir == "" {
			return
		}
		// Keep the control plane's logs: kwokctl delete removes them.
		logs := filepath.Join(workDir, "clusters", name, "logs")
		_ = exec.Command("cp", "-r", logs, workDir+"-logs").Run()
		delCtx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if derr := deleteKwok(delCtx, workDir, name); derr != nil {
			logf("deleting kwok cluster %s: %v", name, derr)
		}
		workDir = ""
	}
	for attempt := 1; attempt <= 3; attempt++ {
		if err = ctx.Err(); err != nil {
			return nil, cleanup, err
		}
		// A fresh kwokctl work dir (and kubeconfig) per attempt: nothing
		// of a failed cluster is reused.
		workDir = filepath.Join(dir, fmt.Sprintf("kwok-%d", attempt))
		if err = os.MkdirAll(workDir, 0o755); err != nil {
			return nil, cleanup, err
		}
		noElection := filepath.Join(workDir, "no-leader-election.yaml")
		if err = os.WriteFile(noElection, []byte(kwokctlComponents), 0o644); err != nil {
			return nil, cleanup, err
		}
		createCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		k, err = testenv.CreateKwokCluster(createCtx, name, testenv.KwokOptions{
			WorkDir: workDir,
			ExtraArgs: []string{
				"--config=" + filepath.Join(testenv.RepoRoot(), "e2e", "kwok", "stages.yaml"),
				"--config=" + noElection,
			},
		})
		cancel()
		if err == nil {
			err = kwokCanary(ctx, k)
		}
		if err == nil {
			return k, cleanup, nil
		}
		logf("  kwok cluster %s, attempt %d: %v (its logs: %s-logs)", name, attempt, err, workDir)
		cleanup()
	}
	return nil, cleanup, err
}

// kwokctlComponents turns leader election off in the cluster's
// kube-controller-manager and kube-scheduler (kwokctl leaves it on): on a
// loaded machine a lease renewal that misses its 10 s deadline makes them
// exit, and kwokctl does not restart them. There is one replica of each.
// Their client rate limits (20 and 50 requests/s by default) are raised:
// at the defaults, making and binding 10k Pods takes longer than the
// controllers under test need, and the scenario measures their memory, not
// the Job controller's pace.
const kwokctlComponents = `apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
componentsPatches:
- name: kube-controller-manager
  extraArgs:
  - key: leader-elect
    value: "false"
  - key: kube-api-qps
    value: "500"
  - key: kube-api-burst
    value: "500"
  - key: concurrent-job-syncs
    value: "20"
- name: kube-scheduler
  extraArgs:
  - key: leader-elect
    value: "false"
  - key: kube-api-qps
    value: "500"
  - key: kube-api-burst
    value: "500"
`

// kwokCanary installs the CRDs, adds the first node and runs a one-pod Job
// to Running: controller-manager, scheduler and kwok all work.
func kwokCanary(ctx context.Context, k *testenv.KwokCluster) error {
	if _, err := envtest.InstallCRDs(k.Config, envtest.CRDInstallOptions{Paths: testenv.CRDPaths(), ErrorIfPathMissing: true, MaxTime: 2 * time.Minute}); err != nil {
		return fmt.Errorf("installing CRDs: %w", err)
	}
	if err := testenv.AddNode(ctx, k.Client, "bench-node-canary", nodeSpec); err != nil {
		return err
	}
	const ns = "canary"
	if err := createNamespace(ctx, k.Client, ns); err != nil {
		return err
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "canary"},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{workload.HoldAnnotation: "true"}},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
		}},
	}
	if err := k.Client.Create(ctx, job); err != nil {
		return fmt.Errorf("creating canary Job: %w", err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		pods := &corev1.PodList{}
		if err := k.Client.List(ctx, pods, client.InNamespace(ns)); err == nil {
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return errors.New("canary Job's Pod not Running after 2m (a control-plane process down?)")
}

// deleteKwok deletes a kwok cluster with kwokctl, as testenv does, whether
// or not its creation finished (testenv's Delete needs a created cluster).
func deleteKwok(ctx context.Context, workDir, name string) error {
	bin, err := testenv.Binary("kwokctl")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, "delete", "cluster", "--name="+name, "--kubeconfig="+filepath.Join(workDir, "kubeconfig"))
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+workDir,
		"PATH="+testenv.BinDir()+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kwokctl delete cluster %s: %w\n%s", name, err, out)
	}
	return nil
}
