package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	jobset "github.com/jobset-fleet/jobset-fleet/api/jobset/v1alpha2"
	"github.com/jobset-fleet/jobset-fleet/e2e/testenv"
)

// roleEnv, set to "raw", makes the benchmark binary (or its test binary)
// run as the raw-client contender instead: the floor is measured in its own
// process, so its RSS and CPU are read the same way as a controller's.
const roleEnv = "JOBSET_FLEET_BENCH_ROLE"

// rawMain is the raw-client contender: the least a JobSet controller could
// do. It lists and watches JobSets (all namespaces) and, for each one, creates its 4 Jobs
// and its headless Service with plain client-go calls from `workers`
// goroutines, with no client-side rate limit, no cache of children, no
// status. It runs until SIGTERM, like a controller.
func rawMain(args []string) int {
	fs := flag.NewFlagSet("raw", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	workers := fs.Int("workers", 50, "concurrent creates")
	asController := fs.Bool("as-controller", false, "Also write each JobSet's status once and watch the Jobs, as any JobSet controller must.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	if err := runRaw(ctx, *kubeconfig, *workers, *asController); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "raw client:", err)
		return 1
	}
	return 0
}

func runRaw(ctx context.Context, kubeconfig string, workers int, asController bool) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side limit: this is the floor
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		return err
	}
	tasks := make(chan func() error, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for task := range tasks {
				if err := task(); err != nil {
					fmt.Fprintln(os.Stderr, err)
				}
			}
		})
	}
	defer func() { close(tasks); wg.Wait() }()

	seen := map[string]bool{}
	enqueue := func(js *jobset.JobSet) error {
		key := js.Namespace + "/" + js.Name
		if seen[key] {
			return nil
		}
		seen[key] = true
		js = js.DeepCopy()
		svc := rawService(js)
		jobs := rawJobs(js)
		send := func(f func() error) error {
			select {
			case tasks <- f:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := send(func() error {
			_, err := cs.CoreV1().Services(js.Namespace).Create(ctx, svc, metav1.CreateOptions{})
			return ignoreExists(err)
		}); err != nil {
			return err
		}
		for _, job := range jobs {
			if err := send(func() error {
				_, err := cs.BatchV1().Jobs(js.Namespace).Create(ctx, job, metav1.CreateOptions{})
				return ignoreExists(err)
			}); err != nil {
				return err
			}
		}
		if !asController {
			return nil
		}
		// The one status write a controller makes: its children's apicount.Counts.
		return send(func() error {
			patched := js.DeepCopy()
			patched.Status.ReplicatedJobsStatus = []jobset.ReplicatedJobStatus{{Name: js.Spec.ReplicatedJobs[0].Name}}
			return c.Status().Patch(ctx, patched, client.MergeFrom(js))
		})
	}
	if asController {
		// The Jobs it made, watched as a controller's cache would, with
		// their events drained.
		jw, err := cs.BatchV1().Jobs("").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("watching Jobs: %w", err)
		}
		defer jw.Stop()
		go func() {
			for range jw.ResultChan() {
			}
		}()
	}

	// Like an informer: list, then watch from there; a watch the apiserver
	// closes (it drops watchers that fall behind while every worker is
	// busy) resumes where it was, and one whose version is too old relists.
	// The seen set makes a relist cost nothing but the request.
	rv := ""
	for {
		if rv == "" {
			list := &jobset.JobSetList{}
			if err := c.List(ctx, list); err != nil {
				return fmt.Errorf("listing JobSets: %w", err)
			}
			for i := range list.Items {
				if err := enqueue(&list.Items[i]); err != nil {
					return err
				}
			}
			rv = list.ResourceVersion
		}
		w, err := c.Watch(ctx, &jobset.JobSetList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return fmt.Errorf("watching JobSets: %w", err)
		}
		if rv, err = follow(ctx, w, rv, enqueue); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// follow feeds a watch's JobSets to enqueue until the watch ends; it
// returns the version to resume from, or "" when the watch said its
// version is gone and a relist is due.
func follow(ctx context.Context, w watch.Interface, rv string, enqueue func(*jobset.JobSet) error) (string, error) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, nil
			}
			if ev.Type == watch.Error {
				return "", nil
			}
			if js, ok := ev.Object.(*jobset.JobSet); ok {
				rv = js.ResourceVersion
				if err := enqueue(js); err != nil {
					return rv, err
				}
			}
		}
	}
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func controllerRef(js *jobset.JobSet) []metav1.OwnerReference {
	return []metav1.OwnerReference{*metav1.NewControllerRef(js, jobset.GroupVersion.WithKind("JobSet"))}
}

// rawService is the JobSet's headless Service, as a controller makes it.
func rawService(js *jobset.JobSet) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: js.Name, Namespace: js.Namespace, OwnerReferences: controllerRef(js)},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 map[string]string{jobset.JobSetNameKey: js.Name},
			PublishNotReadyAddresses: true,
		},
	}
}

// rawJobs are the JobSet's Jobs with the labels and annotations the
// controllers put on them (so the objects are about the same size).
func rawJobs(js *jobset.JobSet) []*batchv1.Job {
	rjob := js.Spec.ReplicatedJobs[0]
	jobs := make([]*batchv1.Job, rjob.Replicas)
	for i := range jobs {
		meta := map[string]string{
			jobset.JobSetNameKey:         js.Name,
			jobset.JobSetUIDKey:          string(js.UID),
			jobset.ReplicatedJobNameKey:  rjob.Name,
			jobset.ReplicatedJobReplicas: strconv.Itoa(int(rjob.Replicas)),
			jobset.JobIndexKey:           strconv.Itoa(i),
			jobset.JobGlobalIndexKey:     strconv.Itoa(i),
			jobset.RestartsKey:           "0",
		}
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("%s-%s-%d", js.Name, rjob.Name, i), Namespace: js.Namespace,
				Labels: meta, Annotations: meta, OwnerReferences: controllerRef(js),
			},
			Spec: *rjob.Template.Spec.DeepCopy(),
		}
		tmpl := &job.Spec.Template
		if tmpl.Labels == nil {
			tmpl.Labels = map[string]string{}
		}
		if tmpl.Annotations == nil {
			tmpl.Annotations = map[string]string{}
		}
		for k, v := range meta {
			tmpl.Labels[k], tmpl.Annotations[k] = v, v
		}
		tmpl.Spec.Subdomain = js.Name
		job.Spec.CompletionMode = ptr.To(batchv1.IndexedCompletion)
		jobs[i] = job
	}
	return jobs
}
