package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KwokCluster is a full local cluster run by kwokctl with the binary runtime:
// etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
// controller, which plays kubelet for fake nodes (pods become Running, and
// pods owned by Jobs complete).
type KwokCluster struct {
	Name string
	// Context is the kubeconfig context kwokctl wrote: "kwok-<name>".
	Context string
	// KubeconfigPath is the kubeconfig file holding Context.
	KubeconfigPath string
	Config         *rest.Config
	Client         client.Client

	workDir    string
	ownWorkDir bool // created by CreateKwokCluster, removed by Delete
}

// KwokOptions configures CreateKwokCluster.
type KwokOptions struct {
	// WorkDir holds kwokctl's state; clusters sharing it can be listed and
	// deleted together with kwokctl. Defaults to a new temporary directory.
	WorkDir string
	// KubeconfigPath is the kubeconfig file kwokctl adds its context to.
	// Defaults to <WorkDir>/kubeconfig.
	KubeconfigPath string
	// ExtraArgs are passed to `kwokctl create cluster` (e.g. --config).
	ExtraArgs []string
}

// StartKwok creates a kwok cluster and deletes it when the test ends.
func StartKwok(t testing.TB, name string, opts KwokOptions) *KwokCluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k, err := CreateKwokCluster(ctx, name, opts)
	if err != nil {
		t.Fatalf("create kwok cluster %q: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := k.Delete(ctx); err != nil {
			t.Errorf("delete kwok cluster %q: %v", name, err)
		}
	})
	return k
}

// CreateKwokCluster creates a kwok cluster from the project's binaries and
// waits until it serves.
func CreateKwokCluster(ctx context.Context, name string, opts KwokOptions) (*KwokCluster, error) {
	bins := map[string]string{}
	for _, b := range []string{"kwokctl", "kwok", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		path, err := Binary(b)
		if err != nil {
			return nil, err
		}
		bins[b] = path
	}
	ownWorkDir := opts.WorkDir == ""
	if ownWorkDir {
		dir, err := os.MkdirTemp("", "kwok-"+name+"-")
		if err != nil {
			return nil, err
		}
		opts.WorkDir = dir
	}
	if opts.KubeconfigPath == "" {
		opts.KubeconfigPath = filepath.Join(opts.WorkDir, "kubeconfig")
	}
	k := &KwokCluster{Name: name, Context: "kwok-" + name, KubeconfigPath: opts.KubeconfigPath, workDir: opts.WorkDir, ownWorkDir: ownWorkDir}
	args := append([]string{
		"create", "cluster",
		"--name=" + name,
		"--runtime=binary",
		"--kubeconfig=" + opts.KubeconfigPath,
		"--etcd-binary=" + bins["etcd"],
		"--kube-apiserver-binary=" + bins["kube-apiserver"],
		"--kube-controller-manager-binary=" + bins["kube-controller-manager"],
		"--kube-scheduler-binary=" + bins["kube-scheduler"],
		"--kwok-controller-binary=" + bins["kwok"],
		"--wait=2m",
	}, opts.ExtraArgs...)
	if out, err := k.kwokctl(ctx, args...); err != nil {
		return nil, fmt.Errorf("kwokctl create cluster: %w\n%s", err, out)
	}
	if err := k.connect(); err != nil {
		return nil, err
	}
	return k, nil
}

// KwokClusterIn returns the kwok cluster of that name in opts.WorkDir, or
// an error if there is none (kwokctl does not list it).
func KwokClusterIn(name string, opts KwokOptions) (*KwokCluster, error) {
	if opts.KubeconfigPath == "" {
		opts.KubeconfigPath = filepath.Join(opts.WorkDir, "kubeconfig")
	}
	k := &KwokCluster{Name: name, Context: "kwok-" + name, KubeconfigPath: opts.KubeconfigPath, workDir: opts.WorkDir}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := k.kwokctl(ctx, "get", "clusters")
	if err != nil {
		return nil, fmt.Errorf("kwokctl get clusters: %w\n%s", err, out)
	}
	if !slices.Contains(strings.Fields(string(out)), name) {
		return nil, fmt.Errorf("no kwok cluster %s in %s", name, opts.WorkDir)
	}
	return k, k.connect()
}

func (k *KwokCluster) connect() error {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: k.KubeconfigPath},
		&clientcmd.ConfigOverrides{CurrentContext: k.Context},
	).ClientConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig of kwok cluster %s: %w", k.Name, err)
	}
	k.Config = cfg
	k.Client, err = client.New(cfg, client.Options{Scheme: Scheme()})
	return err
}

func (k *KwokCluster) kwokctl(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := Binary("kwokctl")
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// KWOK_WORKDIR keeps every file of the cluster out of $HOME. kwokctl
	// runs kubectl from PATH: ours must come first, since another kubectl
	// may be too old for the server, or missing (kwokctl would download one).
	cmd.Env = append(os.Environ(),
		"KWOK_WORKDIR="+k.workDir,
		"PATH="+BinDir()+string(os.PathListSeparator)+os.Getenv("PATH"))
	return cmd.CombinedOutput()
}

// Delete tears the cluster down and removes its files.
func (k *KwokCluster) Delete(ctx context.Context) error {
	out, err := k.kwokctl(ctx, "delete", "cluster", "--name="+k.Name, "--kubeconfig="+k.KubeconfigPath)
	if err != nil {
		return fmt.Errorf("kwokctl delete cluster %s: %w\n%s", k.Name, err, out)
	}
	if k.ownWorkDir {
		return os.RemoveAll(k.workDir)
	}
	return nil
}

// NodeSpec describes fake nodes.
type NodeSpec struct {
	Labels map[string]string
	// Resources is the nodes' capacity and allocatable, e.g. cpu=8,
	// memory=32Gi, nvidia.com/gpu=4. pods defaults to 110.
	Resources corev1.ResourceList
}

// ParseResources turns "cpu=8,memory=32Gi" into a ResourceList.
func ParseResources(s string) (corev1.ResourceList, error) {
	list := corev1.ResourceList{}
	for _, kv := range strings.Split(s, ",") {
		if kv == "" {
			continue
		}
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("resource %q is not name=quantity", kv)
		}
		q, err := resource.ParseQuantity(value)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", kv, err)
		}
		list[corev1.ResourceName(name)] = q
	}
	return list, nil
}

// AddNode creates a fake node the kwok controller will keep Ready and run
// pods on.
func AddNode(ctx context.Context, c client.Client, name string, spec NodeSpec) error {
	labels := map[string]string{
		"kubernetes.io/hostname": name,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     "amd64",
		"type":                   "kwok",
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	resources := spec.Resources.DeepCopy()
	if resources == nil {
		resources = corev1.ResourceList{}
	}
	if _, ok := resources[corev1.ResourcePods]; !ok {
		resources[corev1.ResourcePods] = resource.MustParse("110")
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: labels,
			// The kwok controller manages nodes carrying this annotation.
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		// Capacity goes in with the create: a later status update races
		// with the kwok controller initializing the node.
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources.DeepCopy()},
	}
	if err := c.Create(ctx, node); err != nil {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	return nil
}

// AddNodes adds n fake nodes named <prefix>-<i>.
func (k *KwokCluster) AddNodes(ctx context.Context, prefix string, n int, spec NodeSpec) error {
	for i := range n {
		if err := AddNode(ctx, k.Client, fmt.Sprintf("%s-%d", prefix, i), spec); err != nil {
			return err
		}
	}
	return nil
}
