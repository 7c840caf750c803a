// Package workload is the benchmark's JobSets: what each one is, how
// they are submitted (a burst of concurrent creates, or an open-loop fixed
// rate), and how a watch sees their children appear on a cluster and a
// list verifies them.
package workload

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
)

// The workload of every scenario, the issue's: each JobSet has one
// replicatedJob of 4 replicas with parallelism 2, so 4 Jobs, 8 Pods and one
// headless Service.
const (
	rjobName         = "workers"
	JobsPerJobSet    = 4
	PodsPerJob       = 2
	ObjectsPerJobSet = JobsPerJobSet + 1 // Jobs + the headless Service
)

// HoldAnnotation keeps a fake pod Running on the kwok stages of
// e2e/kwok/stages.yaml (it matches neither pod-complete nor
// pod-fail-first-attempt): the memory scenario wants ~10k live Pods.
const HoldAnnotation = "e2e.jobset-fleet.io/hold"

var (
	JobsGVR     = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	ServicesGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}
)

func Name(i int) string { return fmt.Sprintf("js-%05d", i) }

// New builds the workload JobSet, already defaulted the way upstream's
// defaulting webhook would: neither controller's webhook is in the
// admission path of the member scenarios, and upstream's controller reads
// network.enableDNSHostnames from the stored object (unset: no Service).
func New(ns, name string) *jobset.JobSet {
	js := &jobset.JobSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: jobset.JobSetSpec{
			ReplicatedJobs: []jobset.ReplicatedJob{{
				Name:     rjobName,
				Replicas: JobsPerJobSet,
				Template: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
					Parallelism:  ptr.To[int32](PodsPerJob),
					Completions:  ptr.To[int32](PodsPerJob),
					BackoffLimit: ptr.To[int32](0),
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{HoldAnnotation: "true"}},
						Spec: corev1.PodSpec{
							RestartPolicy: corev1.RestartPolicyNever,
							Containers: []corev1.Container{{
								Name:    "main",
								Image:   "registry.k8s.io/pause:3.10",
								Command: []string{"/pause"},
							}},
						},
					},
				}},
			}},
		},
	}
	jobset.Default(js)
	return js
}

// ChildJobNames are the names of the Jobs and the Service a JobSet must get:
// Jobs <jobset>-<rjob>-<index>, the Service named after the subdomain,
// which defaults to the JobSet's name.
func ChildJobNames(name string) []string {
	names := make([]string, JobsPerJobSet)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%s-%d", name, rjobName, i)
	}
	return names
}

// Create creates the JobSets named names with `workers` concurrent
// creates, calling submitted (if set) with each one's start time.
func Create(ctx context.Context, c client.Client, ns string, names []string, workers int, submitted func(name string, at time.Time)) error {
	work := make(chan string)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for name := range work {
				at := time.Now()
				if err := c.Create(ctx, New(ns, name)); err != nil && !apierrors.IsAlreadyExists(err) {
					errs <- fmt.Errorf("creating JobSet %s/%s: %w", ns, name, err)
					return
				}
				if submitted != nil {
					submitted(name, at)
				}
			}
		})
	}
	var err error
feed:
	for _, name := range names {
		select {
		case work <- name:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

// Tracker watches, with metadata-only informers, the Jobs and Services
// of one cluster (one namespace, or all) and records when each JobSet's
// children have all appeared. Event receipt time is the completion time:
// that is when a watching user would see them.
type Tracker struct {
	cluster string
	mu      sync.Mutex
	// jobs[jobset] = names of its Jobs seen; services[jobset] = seen.
	jobs     map[string]map[string]bool
	services map[string]bool
	// complete[jobset] = when its 4 Jobs and its Service were all seen.
	complete map[string]time.Time
	// want: how many JobSets must complete before done closes (0: never).
	want   int
	done   chan struct{}
	notify func(jobsetKey string, at time.Time)
	stop   context.CancelFunc
}

// Done is closed once the wanted number of JobSets are complete.
func (t *Tracker) Done() <-chan struct{} { return t.done }

// Stop stops the tracker's informers.
func (t *Tracker) Stop() { t.stop() }

// StartTracker starts tracking; ns "" is every namespace. notify (if
// set) is called once per JobSet whose children are complete, keyed
// "<namespace>/<jobset>".
func StartTracker(ctx context.Context, cluster string, cfg *rest.Config, ns string, want int, notify func(key string, at time.Time)) (*Tracker, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	t := &Tracker{
		cluster: cluster, jobs: map[string]map[string]bool{}, services: map[string]bool{},
		complete: map[string]time.Time{}, want: want, done: make(chan struct{}), notify: notify, stop: cancel,
	}
	factory := metadatainformer.NewFilteredSharedInformerFactory(mc, 0, ns, nil)
	for _, gvr := range []schema.GroupVersionResource{JobsGVR, ServicesGVR} {
		inf := factory.ForResource(gvr).Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { t.observe(gvr, obj) },
		}); err != nil {
			cancel()
			return nil, err
		}
	}
	factory.Start(ctx.Done())
	for gvr, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			cancel()
			return nil, fmt.Errorf("%s: %s informer never synced", cluster, gvr.Resource)
		}
	}
	return t, nil
}

func (t *Tracker) observe(gvr schema.GroupVersionResource, obj any) {
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return
	}
	now := time.Now()
	// Both controllers and the raw client label every Job with its JobSet;
	// a Service is named after its JobSet (subdomain default).
	var owner string
	if gvr == JobsGVR {
		owner = m.Labels[jobset.JobSetNameKey]
	} else {
		owner = m.Name
	}
	if owner == "" {
		return
	}
	key := m.Namespace + "/" + owner
	t.mu.Lock()
	if gvr == JobsGVR {
		if t.jobs[key] == nil {
			t.jobs[key] = map[string]bool{}
		}
		t.jobs[key][m.Name] = true
	} else {
		t.services[key] = true
	}
	var completed bool
	if _, already := t.complete[key]; !already && len(t.jobs[key]) == JobsPerJobSet && t.services[key] {
		t.complete[key] = now
		completed = true
		if t.want > 0 && len(t.complete) == t.want {
			close(t.done)
		}
	}
	t.mu.Unlock()
	if completed && t.notify != nil {
		t.notify(key, now)
	}
}

// Completions copies the completion times so far.
func (t *Tracker) Completions() map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.complete)
}

// Count is how many JobSets are complete so far.
func (t *Tracker) Count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.complete)
}

// Verify asserts what the benchmark counted really exists: every
// expected Job and the Service of each JobSet in names, listed from the
// apiserver (not the informers), each Job controlled by its JobSet.
// It returns how many Jobs and Services it found.
func Verify(ctx context.Context, cfg *rest.Config, ns string, names []string) (jobs, services int, err error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return 0, 0, err
	}
	list := func(gvr schema.GroupVersionResource) (map[string]metav1.PartialObjectMetadata, error) {
		out := map[string]metav1.PartialObjectMetadata{}
		opts := metav1.ListOptions{Limit: 500}
		for {
			l, err := mc.Resource(gvr).Namespace(ns).List(ctx, opts)
			if err != nil {
				return nil, fmt.Errorf("listing %s in %s: %w", gvr.Resource, ns, err)
			}
			for _, item := range l.Items {
				out[item.Name] = item
			}
			if opts.Continue = l.Continue; opts.Continue == "" {
				return out, nil
			}
		}
	}
	jobObjs, err := list(JobsGVR)
	if err != nil {
		return 0, 0, err
	}
	svcObjs, err := list(ServicesGVR)
	if err != nil {
		return 0, 0, err
	}
	var missing []string
	for _, name := range names {
		for _, jobName := range ChildJobNames(name) {
			j, ok := jobObjs[jobName]
			if !ok {
				missing = append(missing, "Job "+jobName)
				continue
			}
			if owner := metav1.GetControllerOfNoCopy(&j); owner == nil || owner.Kind != "JobSet" || owner.Name != name {
				missing = append(missing, "controller JobSet of Job "+jobName)
			}
			jobs++
		}
		if _, ok := svcObjs[name]; !ok {
			missing = append(missing, "Service "+name)
			continue
		}
		services++
	}
	if len(missing) > 0 {
		if len(missing) > 10 {
			missing = append(missing[:10], "and "+strconv.Itoa(len(missing)-10)+" more")
		}
		return jobs, services, fmt.Errorf("in namespace %s, missing %v", ns, missing)
	}
	return jobs, services, nil
}

// SubmitAtRate creates JobSets on a fixed schedule, open loop: a slow
// create does not delay the next one (each runs in its own goroutine), as
// users submitting independently would not wait for each other.
func SubmitAtRate(ctx context.Context, c client.Client, ns string, names []string, rate float64, submitted func(string, time.Time)) error {
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i, name := range names {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			}
		}
		wg.Go(func() {
			if err := Create(ctx, c, ns, []string{name}, 1, submitted); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
